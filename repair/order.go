package repair

// This file places the tables of a rebuilt MANIFEST. A point read takes
// the first entry it finds: in L0 newest table first (by largest sequence
// number, then file number: the order the MANIFEST's reader gives L0,
// which a MANIFEST cannot change), then one table per level from L1 down.
// So wherever two tables hold entries of one user key, the table holding
// the newer entries must be read first. The tables' own metadata cannot
// say that (a compacted table of a deep level may hold a larger sequence
// number than a shallower one that holds newer entries of some key), so
// placeTables reads every key of every table once and derives the order
// the reads need.

import (
	"bytes"
	"container/heap"
	"fmt"
	"slices"

	"github.com/plures/pluresdb/lsm"
)

// placedTable is a clean table to place, with an open iterator over it.
type placedTable struct {
	meta *lsm.FileMeta
	path string
	iter lsm.InternalIterator
}

// precedence says that table before must be read before table after.
type precedence struct{ before, after int }

// tableConstraints reads all tables in key order and returns the
// precedences the reads need. Two tables whose entries of one key
// interleave (each holds one older and one newer than the other's) can
// be read right in no order: that is an error.
func tableConstraints(tables []*placedTable) (map[precedence]bool, error) {
	h := &iterHeap{}
	for i, t := range tables {
		if t.iter.First() {
			h.items = append(h.items, heapItem{t: i, it: t.iter})
		} else if err := t.iter.Err(); err != nil {
			return nil, fmt.Errorf("repair: reading %s: %w", t.path, err)
		}
	}
	heap.Init(h)
	type holder struct {
		t              int
		maxSeq, minSeq lsm.SeqNum
	}
	var key []byte
	var holders []holder
	out := map[precedence]bool{}
	for h.Len() > 0 {
		key = append(key[:0], lsm.UserKey(h.items[0].it.Key())...)
		holders = holders[:0]
		for h.Len() > 0 && bytes.Equal(lsm.UserKey(h.items[0].it.Key()), key) {
			item := heap.Pop(h).(heapItem)
			_, seq, _, _ := lsm.SplitInternalKey(item.it.Key())
			hd := holder{t: item.t, maxSeq: seq, minSeq: seq}
			for item.it.Next() && bytes.Equal(lsm.UserKey(item.it.Key()), key) {
				_, s, _, _ := lsm.SplitInternalKey(item.it.Key())
				hd.minSeq = min(hd.minSeq, s)
			}
			if item.it.Valid() {
				heap.Push(h, item)
			} else if err := item.it.Err(); err != nil {
				return nil, fmt.Errorf("repair: reading %s: %w", tables[item.t].path, err)
			}
			holders = append(holders, hd)
		}
		if len(holders) < 2 {
			continue
		}
		// Newest first; an entry both hold at one sequence number (a
		// table compacted away but still on disk, and its output) is read
		// from the newer file, the compaction's output, which holds it
		// folded.
		slices.SortFunc(holders, func(a, b holder) int {
			if a.maxSeq != b.maxSeq {
				return cmpDesc(a.maxSeq, b.maxSeq)
			}
			return cmpDesc(tables[a.t].meta.Num, tables[b.t].meta.Num)
		})
		for i := 1; i < len(holders); i++ {
			a, b := holders[i-1], holders[i]
			if a.minSeq < b.maxSeq {
				return nil, fmt.Errorf("tables %s and %s hold entries of key %q whose sequence numbers interleave (%d..%d and %d..%d): no placement reads both right",
					tables[a.t].path, tables[b.t].path, key, a.minSeq, a.maxSeq, b.minSeq, b.maxSeq)
			}
			out[precedence{a.t, b.t}] = true
		}
	}
	return out, nil
}

func cmpDesc[T ~uint64](a, b T) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// placeTables returns the levels of the tables: all in L0 when L0's own
// order (largest sequence number first, then file number) satisfies
// every precedence; otherwise in levels 1 to 6, each table below every
// table that must be read before it, and no two tables of a level
// sharing a user key. It fails when six levels are not enough.
func placeTables(tables []*placedTable, prec map[precedence]bool) ([lsm.NumLevels][]*lsm.FileMeta, error) {
	var levels [lsm.NumLevels][]*lsm.FileMeta
	l0 := make([]int, len(tables))
	for i := range l0 {
		l0[i] = i
	}
	slices.SortFunc(l0, func(a, b int) int {
		ma, mb := tables[a].meta, tables[b].meta
		if ma.LargestSeq != mb.LargestSeq {
			return cmpDesc(ma.LargestSeq, mb.LargestSeq)
		}
		return cmpDesc(ma.Num, mb.Num)
	})
	pos := make([]int, len(tables))
	for p, t := range l0 {
		pos[t] = p
	}
	inOrder := true
	for p := range prec {
		if pos[p.before] > pos[p.after] {
			inOrder = false
			break
		}
	}
	if inOrder {
		for _, t := range l0 {
			levels[0] = append(levels[0], tables[t].meta)
		}
		return levels, nil
	}

	// Levels: a topological order (ties in L0's order), each table placed
	// at the shallowest level below its predecessors where no table of
	// the level overlaps its keys.
	preds := make([][]int, len(tables))
	indeg := make([]int, len(tables))
	succs := make([][]int, len(tables))
	for p := range prec {
		preds[p.after] = append(preds[p.after], p.before)
		succs[p.before] = append(succs[p.before], p.after)
		indeg[p.after]++
	}
	level := make([]int, len(tables))
	done := 0
	ready := []int{}
	for _, t := range l0 {
		if indeg[t] == 0 {
			ready = append(ready, t)
		}
	}
	for len(ready) > 0 {
		slices.SortFunc(ready, func(a, b int) int { return pos[a] - pos[b] })
		t := ready[0]
		ready = ready[1:]
		done++
		lv := 1
		for _, p := range preds[t] {
			lv = max(lv, level[p]+1)
		}
		for ; lv < lsm.NumLevels && overlapsAny(levels[lv], tables[t].meta); lv++ {
		}
		if lv >= lsm.NumLevels {
			return levels, fmt.Errorf("the tables need more than %d levels to be read newest first (%s cannot be placed)", lsm.NumLevels-1, tables[t].path)
		}
		level[t] = lv
		levels[lv] = append(levels[lv], tables[t].meta)
		for _, s := range succs[t] {
			if indeg[s]--; indeg[s] == 0 {
				ready = append(ready, s)
			}
		}
	}
	if done != len(tables) {
		return levels, fmt.Errorf("the tables' precedences form a cycle: no placement reads them right")
	}
	for lv := 1; lv < lsm.NumLevels; lv++ {
		slices.SortFunc(levels[lv], func(a, b *lsm.FileMeta) int { return lsm.CompareInternal(a.Smallest, b.Smallest) })
	}
	return levels, nil
}

// overlapsAny reports whether m shares user keys with a table of files.
func overlapsAny(files []*lsm.FileMeta, m *lsm.FileMeta) bool {
	for _, f := range files {
		if bytes.Compare(lsm.UserKey(f.Largest), lsm.UserKey(m.Smallest)) >= 0 &&
			bytes.Compare(lsm.UserKey(m.Largest), lsm.UserKey(f.Smallest)) >= 0 {
			return true
		}
	}
	return false
}

// heapItem is a table iterator in the merge.
type heapItem struct {
	t  int
	it lsm.InternalIterator
}

// iterHeap orders the iterators by user key, then table.
type iterHeap struct{ items []heapItem }

func (h *iterHeap) Len() int { return len(h.items) }
func (h *iterHeap) Less(i, j int) bool {
	if c := bytes.Compare(lsm.UserKey(h.items[i].it.Key()), lsm.UserKey(h.items[j].it.Key())); c != 0 {
		return c < 0
	}
	return h.items[i].t < h.items[j].t
}
func (h *iterHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *iterHeap) Push(x any)    { h.items = append(h.items, x.(heapItem)) }
func (h *iterHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}

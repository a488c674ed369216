package repair

import (
	"strings"
	"testing"

	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
)

// entry is one entry of a test table.
type entry struct {
	key string
	seq lsm.SeqNum
}

// memTable makes a placedTable over a memtable holding entries.
func memTable(t *testing.T, num layout.FileNum, entries ...entry) *placedTable {
	t.Helper()
	m := lsm.NewMemtable(1 << 20)
	meta := &lsm.FileMeta{Num: num, SmallestSeq: lsm.MaxSeqNum}
	for _, e := range entries {
		if err := m.Add(e.seq, lsm.KindSet, []byte(e.key), []byte("v")); err != nil {
			t.Fatal(err)
		}
		meta.SmallestSeq = min(meta.SmallestSeq, e.seq)
		meta.LargestSeq = max(meta.LargestSeq, e.seq)
	}
	it := m.NewIter()
	it.First()
	meta.Smallest = append([]byte(nil), it.Key()...)
	it.Last()
	meta.Largest = append([]byte(nil), it.Key()...)
	return &placedTable{meta: meta, path: num.String() + ".sst", iter: m.NewIter()}
}

func levelOf(levels [lsm.NumLevels][]*lsm.FileMeta, num layout.FileNum) int {
	for l, files := range levels {
		for _, f := range files {
			if f.Num == num {
				return l
			}
		}
	}
	return -1
}

func place(t *testing.T, tables ...*placedTable) ([lsm.NumLevels][]*lsm.FileMeta, error) {
	t.Helper()
	prec, err := tableConstraints(tables)
	if err != nil {
		return [lsm.NumLevels][]*lsm.FileMeta{}, err
	}
	return placeTables(tables, prec)
}

func TestPlaceFlushTablesInL0(t *testing.T) {
	// Tables of flushes: disjoint sequence ranges, L0's order is right.
	levels, err := place(t,
		memTable(t, 5, entry{"a", 1}, entry{"c", 2}),
		memTable(t, 7, entry{"b", 3}, entry{"c", 4}),
		memTable(t, 9, entry{"c", 6}, entry{"d", 5}),
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(levels[0]) != 3 {
		t.Fatalf("levels %v, want all in L0", levels)
	}
	for i, want := range []layout.FileNum{9, 7, 5} {
		if levels[0][i].Num != want {
			t.Fatalf("L0[%d] = %s, want %s", i, levels[0][i].Num, want)
		}
	}
}

func TestPlaceCompactedTablesInLevels(t *testing.T) {
	// Table 3 (of L1 once) holds c@900 and a largest seq of 1000; table 2
	// (of L2) holds the older c@100 but a larger largest seq, 1200, from
	// key y: L0's order would read c@100 first.
	t1 := memTable(t, 3, entry{"a", 950}, entry{"c", 900}, entry{"m", 1000})
	t2 := memTable(t, 2, entry{"a", 90}, entry{"c", 100}, entry{"y", 1200})
	t3 := memTable(t, 8, entry{"n", 1300}, entry{"p", 1301}) // shares no key
	levels, err := place(t, t1, t2, t3)
	if err != nil {
		t.Fatal(err)
	}
	l1, l2 := levelOf(levels, 3), levelOf(levels, 2)
	if l1 < 1 || l2 <= l1 {
		t.Fatalf("table 3 at L%d, table 2 at L%d: want 3 above 2, both below L0", l1, l2)
	}
	if levelOf(levels, 8) < 1 {
		t.Fatalf("table 8 at L%d", levelOf(levels, 8))
	}
	// Each level is sorted and without overlap (what the MANIFEST's
	// reader checks).
	for l := 1; l < lsm.NumLevels; l++ {
		files := levels[l]
		for i := 1; i < len(files); i++ {
			if strings.Compare(string(lsm.UserKey(files[i-1].Largest)), string(lsm.UserKey(files[i].Smallest))) >= 0 {
				t.Fatalf("L%d: %s and %s overlap", l, files[i-1].Num, files[i].Num)
			}
		}
	}
}

func TestPlaceRefusesInterleaved(t *testing.T) {
	_, err := place(t,
		memTable(t, 4, entry{"k", 10}, entry{"k", 30}),
		memTable(t, 6, entry{"k", 20}),
	)
	if err == nil || !strings.Contains(err.Error(), "interleave") {
		t.Fatalf("interleaved entries: %v", err)
	}
}

func TestPlaceRefusesTooDeep(t *testing.T) {
	// Eight tables each needing to be read before the next, whose largest
	// sequence numbers say the opposite: eight levels would be needed.
	var tables []*placedTable
	for i := range 8 {
		seq := lsm.SeqNum(1000 - 10*i)
		tables = append(tables, memTable(t, layout.FileNum(i+1), entry{"k", seq}, entry{"z", lsm.SeqNum(2000 + 10*i)}))
	}
	if _, err := place(t, tables...); err == nil {
		t.Fatal("a chain of eight tables placed in six levels")
	}
}

func TestPlaceSameSeqPrefersNewerFile(t *testing.T) {
	// A compacted table still on disk and its output hold k@5: the output
	// (the newer file) is read first.
	levels, err := place(t,
		memTable(t, 3, entry{"k", 5}, entry{"z", 9}),
		memTable(t, 4, entry{"k", 5}),
	)
	if err != nil {
		t.Fatal(err)
	}
	// L0 would read table 3 first (largest seq 9): levels instead.
	if l3, l4 := levelOf(levels, 3), levelOf(levels, 4); l4 < 1 || l3 <= l4 {
		t.Fatalf("table 4 at L%d, table 3 at L%d: want 4 read first, below L0", l4, l3)
	}
}

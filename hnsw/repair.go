package hnsw

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// minRepair is the fewest tombstones that start a background repair: a
// small graph is not worth a pass over every node.
const minRepair = 32

// Repair unlinks every tombstone (deleted or replaced vector) from the
// graph and frees its ID for reuse by later Adds. Each live node that links
// to a tombstone gets its list rebuilt by the selection heuristic from its
// live neighbours plus the live nodes reached through the tombstones (a
// bounded walk through tombstones only). A tombstone entry point is
// replaced by the live node with the highest level. Live keys keep their
// IDs.
//
// Writers (Add, Delete) wait for it; searches run alongside, and freeing
// the IDs waits for the searches that might still hold them.
func (x *Index) Repair() {
	x.writeMu.Lock()
	defer x.writeMu.Unlock()
	x.repair()
}

// maybeRepair starts a background Repair once tombstones pass the
// configured share of the nodes.
func (x *Index) maybeRepair() {
	ratio := x.cfg.TombstoneRatio
	dead := x.dead.Load()
	if ratio < 0 || dead < minRepair || float64(dead) <= ratio*float64(dead+x.live.Load()) {
		return
	}
	if !x.repairing.CompareAndSwap(false, true) {
		return
	}
	x.bgMu.Lock()
	defer x.bgMu.Unlock()
	if x.closed {
		x.repairing.Store(false)
		return
	}
	x.bg.Add(1)
	go func() {
		defer x.bg.Done()
		defer x.repairing.Store(false)
		x.Repair()
	}()
}

// repair is Repair; the caller holds writeMu exclusively, so no node is
// half-inserted and no state changes but the ones made here.
func (x *Index) repair() {
	x.allocMu.Lock()
	n := int(x.count)
	x.allocMu.Unlock()
	dead := make([]bool, n)
	var deadIDs []uint32
	for id := range n {
		if atomic.LoadUint32(&x.state[id]) == stateDead {
			dead[id] = true
			deadIDs = append(deadIDs, uint32(id))
		}
	}
	if len(deadIDs) == 0 {
		return
	}

	// Relink the live nodes, in parallel: each worker writes only its own
	// nodes' lists and reads only those and the tombstones' (which nobody
	// writes now).
	workers := min(runtime.GOMAXPROCS(0), max(1, n/1024))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := x.scratch.Get().(*searcher)
			defer x.scratch.Put(s)
			for id := w; id < n; id += workers {
				if atomic.LoadUint32(&x.state[id]) != stateLive {
					continue
				}
				for l := 0; l <= int(x.levels[id]); l++ {
					x.relink(s, uint32(id), l, dead, n)
				}
			}
		}()
	}
	wg.Wait()

	if ep, _, ok := x.loadEntry(); ok && dead[ep] {
		best, bestLevel := -1, -1
		for id := range n {
			if atomic.LoadUint32(&x.state[id]) == stateLive && int(x.levels[id]) > bestLevel {
				best, bestLevel = id, int(x.levels[id])
			}
		}
		if best < 0 {
			x.entry.Store(noEntry)
		} else {
			x.storeEntry(uint32(best), bestLevel)
		}
	}

	// No live list names a tombstone now, but a search may have read one
	// before; mu waits for it to finish before the IDs can be reused.
	x.mu.Lock()
	for _, id := range deadIDs {
		atomic.StoreUint32(&x.state[id], stateFree)
		x.links0[int(id)*(1+x.m0)] = 0
		x.levels[id], x.upper[id], x.keys[id] = 0, nil, nil
		clear(x.vec(id))
	}
	x.mu.Unlock()
	x.allocMu.Lock()
	// Descending, so that alloc hands out the lowest first.
	slices.Reverse(deadIDs)
	x.free = append(x.free, deadIDs...)
	x.allocMu.Unlock()
	x.dead.Add(-int64(len(deadIDs)))
}

// relink rebuilds u's list at layer if it names a tombstone.
func (x *Index) relink(s *searcher, u uint32, layer int, dead []bool, n int) {
	l := x.linkList(u, layer)
	cnt := int(l[0])
	if !slices.ContainsFunc(l[1:1+cnt], func(id uint32) bool { return dead[id] }) {
		return
	}
	maxL := x.maxLinks(layer)
	s.reset(n)
	s.visited[u] = s.epoch
	base := x.nodeProbe(u)
	s.sorted = s.sorted[:0]
	queue := s.nbs[:0]
	visit := func(id uint32) {
		if s.visited[id] == s.epoch {
			return
		}
		s.visited[id] = s.epoch
		if dead[id] {
			queue = append(queue, id)
		} else {
			s.sorted = append(s.sorted, item{x.dist(&base, id), id})
		}
	}
	for _, id := range l[1 : 1+cnt] {
		visit(id)
	}
	// Walk through tombstones to the live nodes behind them; a link at
	// layer points at a node that has that layer, dead or not. The bound
	// keeps a mostly-dead graph from costing a walk over all of it.
	for i := 0; i < len(queue) && i < 2*maxL; i++ {
		dl := x.linkList(queue[i], layer)
		for _, id := range dl[1 : 1+dl[0]] {
			visit(id)
		}
	}
	s.nbs = queue
	slices.SortFunc(s.sorted, func(a, b item) int { return cmpDist(a.dist, b.dist) })
	chosen := x.selectNeighbors(s, s.sorted, maxL)
	s.batch = s.batch[:0]
	for _, c := range chosen {
		s.batch = append(s.batch, c.id)
	}
	mu := x.stripe(u)
	mu.Lock()
	storeLinks(l, s.batch)
	mu.Unlock()
}

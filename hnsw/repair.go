package hnsw

import (
	"cmp"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/RoaringBitmap/roaring/v2"
)

// minRepair is the fewest tombstones that start a background repair: a
// small graph is not worth a pass over every node.
const minRepair = 32

// Repair unlinks every tombstone (deleted or replaced vector) from the
// graph and frees its ID for reuse by later Adds. Each live node that links
// to a tombstone keeps its live links and fills the freed slots from the
// live nodes nearest to it (see relink). A tombstone entry point is
// replaced by the live node with the highest level. Then every live node
// that the entry point no longer reaches, or that no longer reaches it, on
// any of its layers, is linked back (see reconnect), so that searches find
// every live key. Live keys keep their IDs.
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
	if !x.needsRepair() || !x.repairing.CompareAndSwap(false, true) {
		return
	}
	x.bgMu.Lock()
	defer x.bgMu.Unlock()
	if x.closed {
		x.repairing.Store(false)
		return
	}
	x.bg.Add(1)
	go x.backgroundRepair()
}

// needsRepair reports whether the tombstones passed the configured share.
func (x *Index) needsRepair() bool {
	ratio := x.cfg.TombstoneRatio
	dead := x.dead.Load()
	return ratio >= 0 && dead >= minRepair && float64(dead) > ratio*float64(dead+x.live.Load())
}

// backgroundRepair repairs until the tombstones are back under the
// threshold. A writer that passed it while repairing was set started no
// repair, so after clearing the flag this goroutine looks again and runs
// the repair it owes, even if Close came meanwhile (but then only one:
// Close waits for it). Otherwise tombstones could pile up past the
// threshold with no repair to come (a descheduled goroutine between the
// end of Repair and clearing the flag was enough).
func (x *Index) backgroundRepair() {
	defer x.bg.Done()
	for pass := 0; ; pass++ {
		x.Repair()
		x.repairing.Store(false)
		if !x.needsRepair() || !x.repairing.CompareAndSwap(false, true) {
			return // none needed, or a writer started one
		}
		x.bgMu.Lock()
		closed := x.closed
		x.bgMu.Unlock()
		if closed && pass > 0 {
			x.repairing.Store(false)
			return
		}
	}
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

	x.reconnect(n)

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

// relink replaces the tombstones in u's list at layer. u keeps its live
// links (many arrived as reverse links, which the heuristic would not pick
// from scratch: rebuilding cut TestRepair's mean layer-0 degree from 12 to
// 7) and fills the freed slots, by the selection heuristic against the
// links it keeps, from the live nodes nearest to it. Those are found by a
// short walk through the tombstones it linked to, or, when that is not
// enough, by a beam search from u.
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
	s.chosen = s.chosen[:0]
	queue := s.nbs[:0]
	for _, id := range l[1 : 1+cnt] {
		if s.visited[id] == s.epoch {
			continue
		}
		s.visited[id] = s.epoch
		if dead[id] {
			queue = append(queue, id)
		} else {
			s.chosen = append(s.chosen, item{x.dist(&base, id), id})
		}
	}
	// Walk through tombstones to the live nodes behind them; a link at
	// layer points at a node that has that layer, dead or not. The bound
	// keeps a mostly-dead graph from costing a walk over all of it.
	i := 0
	for ; i < len(queue) && i < 2*maxL; i++ {
		dl := x.linkList(queue[i], layer)
		for _, id := range dl[1 : 1+dl[0]] {
			if s.visited[id] == s.epoch {
				continue
			}
			s.visited[id] = s.epoch
			if dead[id] {
				queue = append(queue, id)
			} else {
				s.sorted = append(s.sorted, item{x.dist(&base, id), id})
			}
		}
	}
	s.nbs = queue
	cands := s.sorted
	if i < len(queue) || len(cands) < cnt-len(s.chosen) {
		// The walk was cut short, or found fewer live nodes than the
		// tombstones it replaces: u sits in a wide dead region, and the
		// live nodes it found are those a few hops away in any direction,
		// not the nearest (often all on one side of the region, so that a
		// search could no longer cross it), or none (links are one-way).
		// Find the nearest as an insert does: a beam search from u that
		// walks through the tombstones but keeps only live nodes, bounded
		// like a filtered search. (It leaves s.chosen alone.)
		live := resultFilter{}
		budget := max(4*exactMinScan, 16*x.cfg.EfConstruction)
		x.searchLayer(s, &base, item{0, u}, x.cfg.EfConstruction, layer, &live, n, budget)
		cands = slices.DeleteFunc(s.popSorted(), func(it item) bool {
			return it.id == u || slices.ContainsFunc(s.chosen, func(c item) bool { return c.id == it.id })
		})
	}
	slices.SortFunc(cands, func(a, b item) int { return cmp.Compare(a.dist, b.dist) })
	x.fillNeighbors(s, cands, maxL)
	s.batch = s.batch[:0]
	for _, c := range s.chosen {
		s.batch = append(s.batch, c.id)
	}
	mu := x.stripe(u)
	mu.Lock()
	storeLinks(l, s.batch)
	mu.Unlock()
}

// maxReconnectRounds bounds the passes of reconnect over one layer. A pass
// can only cut a node off where it forced a link into a full list, so one
// or two passes settle a layer; the bound is against pathological graphs.
const maxReconnectRounds = 8

// reconnect makes every live node reachable from the entry point, and able
// to reach it back, on each of its layers: the graph that a search walks
// is then strongly connected, whatever node the descent lands on.
//
// relink alone does not keep that: it gives new out-links only to the
// nodes that named a tombstone, and none of their new neighbours links
// back. A live node whose in-links all came from tombstones (its
// neighbourhood was deleted) is left where no search reaches it, unless a
// relinked node happens to pick it; a group of survivors whose way out
// led through the dead may find only each other, and a search that enters
// it cannot leave. Both happen when the deletes are clustered or a repair
// runs late, on a mostly dead graph (a busy machine starves the
// background goroutine).
//
// A node outside the entry point's component is linked to its nearest
// nodes inside it, found by a construction-wide beam search as an insert
// would: out-links when it cannot reach the component, reverse links when
// the component cannot reach it, with one link forced when the heuristic
// keeps it out. Then everything it reaches, and everything that reaches
// it, is in too, so a cut-off group usually costs one node's new links.
// Layers go top down, so each descent runs on fixed layers.
//
// The caller holds writeMu exclusively and has run relink and replaced a
// dead entry point, so a walk from the entry point meets no tombstone and
// this goroutine is the only writer of link lists.
func (x *Index) reconnect(n int) {
	ep, top, ok := x.loadEntry()
	if !ok {
		return
	}
	s := x.scratch.Get().(*searcher)
	defer x.scratch.Put(s)
	g := &component{fwd: make([]bool, n), back: make([]bool, n)}
	for l := top; l >= 0; l-- {
		for range maxReconnectRounds {
			x.findComponent(g, ep, l, n)
			fixed := 0
			for id := range uint32(n) {
				if g.has(id) || !x.isLive(id) || int(x.levels[id]) < l {
					continue
				}
				x.reconnectNode(s, g, id, l, n)
				// id now reaches the component and is reached from it, and
				// with it whatever it reaches and whatever reached it (up
				// to links cut since; the next pass checks).
				g.markFwd(x, id, l)
				g.markBack(id)
				fixed++
			}
			if fixed == 0 {
				break
			}
		}
	}
}

// component is the entry point's strongly connected component on one
// layer: fwd marks the live nodes reachable from the entry point, back
// those that reach it.
type component struct {
	fwd, back []bool
	queue     []uint32
	// Reverse links, in CSR form: the nodes linking to id are
	// from[start[id]:start[id+1]].
	start []int
	from  []uint32
	// members is has() as of the last findComponent, as a search filter;
	// built when first needed.
	members *roaring.Bitmap
}

func (g *component) has(id uint32) bool { return g.fwd[id] && g.back[id] }

// findComponent recomputes g for layer from the entry point ep.
func (x *Index) findComponent(g *component, ep uint32, layer, n int) {
	clear(g.fwd)
	clear(g.back)
	g.members = nil
	g.start = slices.Grow(g.start[:0], n+1)[:n+1]
	clear(g.start)
	g.from = g.from[:0]
	ownsLayer := func(id uint32) bool { return x.isLive(id) && int(x.levels[id]) >= layer }
	for id := range uint32(n) {
		if ownsLayer(id) {
			l := x.linkList(id, layer)
			for _, nb := range l[1 : 1+linkCount(l)] {
				g.start[nb+1]++
			}
		}
	}
	for i := 1; i <= n; i++ {
		g.start[i] += g.start[i-1]
	}
	g.from = slices.Grow(g.from, g.start[n])[:g.start[n]]
	fill := slices.Clone(g.start[:n])
	for id := range uint32(n) {
		if ownsLayer(id) {
			l := x.linkList(id, layer)
			for _, nb := range l[1 : 1+linkCount(l)] {
				g.from[fill[nb]] = id
				fill[nb]++
			}
		}
	}
	g.markFwd(x, ep, layer)
	g.markBack(ep)
}

// markFwd marks id and every live node it reaches at layer.
func (g *component) markFwd(x *Index, id uint32, layer int) {
	g.fwd[id] = true
	g.queue = append(g.queue[:0], id)
	for i := 0; i < len(g.queue); i++ {
		l := x.linkList(g.queue[i], layer)
		for _, nb := range l[1 : 1+linkCount(l)] {
			if !g.fwd[nb] && x.isLive(nb) {
				g.fwd[nb] = true
				g.queue = append(g.queue, nb)
			}
		}
	}
}

// markBack marks id and every node that reached it through the links seen
// by the last findComponent.
func (g *component) markBack(id uint32) {
	g.back[id] = true
	g.queue = append(g.queue[:0], id)
	for i := 0; i < len(g.queue); i++ {
		u := g.queue[i]
		for _, nb := range g.from[g.start[u]:g.start[u+1]] {
			if !g.back[nb] {
				g.back[nb] = true
				g.queue = append(g.queue, nb)
			}
		}
	}
}

// reconnectNode links the live node v, outside the component at layer, to
// its nearest nodes inside it: out-links if it cannot reach the component,
// in-links if the component cannot reach it. Rare (a few nodes per
// repair), so it allocates freely.
func (x *Index) reconnectNode(s *searcher, g *component, v uint32, layer, n int) {
	ep, top, _ := x.loadEntry()
	p := x.nodeProbe(v)
	start := item{x.dist(&p, ep), ep}
	cur := start
	for l := top; l > layer; l-- {
		cur = x.greedy(&p, cur, l)
	}
	cands := x.componentNear(s, g, &p, cur, layer, n, v)
	if len(cands) == 0 && cur.id != ep {
		// The descent landed outside the component; the entry point is
		// inside it, so a walk from there finds some.
		cands = x.componentNear(s, g, &p, start, layer, n, v)
	}
	if len(cands) == 0 {
		return // not reached: ep is in the component and is not v
	}

	if !g.back[v] {
		// Out-links: v keeps its links and adds candidates by the
		// heuristic, as relink does; if none of the component gets in,
		// one replaces v's farthest link.
		ll := x.linkList(v, layer)
		s.chosen = s.chosen[:0]
		for _, id := range ll[1 : 1+int(ll[0])] {
			s.chosen = append(s.chosen, item{x.dist(&p, id), id})
		}
		fresh := slices.DeleteFunc(slices.Clone(cands), func(it item) bool {
			return slices.ContainsFunc(s.chosen, func(c item) bool { return c.id == it.id })
		})
		out := false
		var chosen []uint32
		for _, c := range x.fillNeighbors(s, fresh, x.maxLinks(layer)) {
			chosen = append(chosen, c.id)
			out = out || g.has(c.id)
		}
		mu := x.stripe(v)
		mu.Lock()
		storeLinks(ll, chosen)
		mu.Unlock()
		if !out {
			x.forceLink(v, cands[0].id, layer)
		}
	}
	if !g.fwd[v] {
		// Reverse links from the nearest, as an insert adds them.
		in := false
		for _, c := range cands[:min(len(cands), x.cfg.M)] {
			if x.connect(s, c.id, v, layer) {
				in = true
				break
			}
		}
		if !in {
			x.forceLink(cands[0].id, v, layer)
		}
	}
}

// componentNear returns, nearest first, up to EfConstruction nodes of the
// component other than v that a beam search for p from ep finds at layer.
// The beam walks through every node but keeps only component nodes: near
// v there may be none but v's own outsiders. The result is a fresh slice.
func (x *Index) componentNear(s *searcher, g *component, p *probe, ep item, layer, n int, v uint32) []item {
	if g.members == nil {
		g.members = roaring.New()
		for id := range uint32(n) {
			if g.has(id) {
				g.members.Add(id)
			}
		}
	}
	f := resultFilter{allow: g.members}
	x.searchLayer(s, p, ep, x.cfg.EfConstruction, layer, &f, n, 0)
	var out []item
	for _, it := range s.popSorted() {
		if it.id != v && g.has(it.id) {
			out = append(out, it)
		}
	}
	return out
}

// forceLink adds u -> v at layer, replacing u's farthest link when the list
// is full. A node that loses its only in-link this way is found by the
// next reconnect pass.
func (x *Index) forceLink(u, v uint32, layer int) {
	mu := x.stripe(u)
	mu.Lock()
	defer mu.Unlock()
	l := x.linkList(u, layer)
	cnt := int(l[0])
	if slices.Contains(l[1:1+cnt], v) {
		return
	}
	if cnt < x.maxLinks(layer) {
		atomic.StoreUint32(&l[1+cnt], v)
		atomic.StoreUint32(&l[0], uint32(cnt+1))
		return
	}
	base := x.nodeProbe(u)
	far, farDist := 1, float32(-1)
	for i := 1; i <= cnt; i++ {
		if d := x.dist(&base, l[i]); d > farDist {
			far, farDist = i, d
		}
	}
	atomic.StoreUint32(&l[far], v)
}

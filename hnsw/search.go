package hnsw

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/plures/pluresdb/internal/prefetch"
)

// item is a node and its distance to the query.
type item struct {
	dist float32
	id   uint32
}

// minHeap and maxHeap are hand-rolled binary heaps over items: the
// container/heap interface would box every push.
type minHeap []item

func (h *minHeap) push(it item) {
	*h = append(*h, it)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s[p].dist <= s[i].dist {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *minHeap) pop() item {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && s[r].dist < s[l].dist {
			c = r
		}
		if s[i].dist <= s[c].dist {
			break
		}
		s[i], s[c] = s[c], s[i]
		i = c
	}
	*h = s
	return top
}

type maxHeap []item

func (h *maxHeap) push(it item) {
	*h = append(*h, it)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s[p].dist >= s[i].dist {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *maxHeap) pop() item {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && s[r].dist > s[l].dist {
			c = r
		}
		if s[i].dist >= s[c].dist {
			break
		}
		s[i], s[c] = s[c], s[i]
		i = c
	}
	*h = s
	return top
}

// searcher is the scratch space of one search or insert, pooled on the
// index so a search allocates only its result.
type searcher struct {
	// visited[id] == epoch: seen in this layer walk. 16-bit marks halve
	// the array's cache footprint; a wrap clears it every 65535 walks.
	visited []uint16
	epoch   uint16
	cand    minHeap
	top     maxHeap
	batch   []uint32 // a node's unvisited neighbours, prefetched
	query   []float32
	sorted  []item
	chosen  []item
	nbs     []uint32
	seeds   []item
	dists   int // distances measured by the current search, for tests
}

// reset starts a new layer walk over n nodes.
func (s *searcher) reset(n int) {
	if len(s.visited) < n {
		s.visited = make([]uint16, max(n, 2*len(s.visited)))
		s.epoch = 0
	}
	s.epoch++
	if s.epoch == 0 { // wrapped: old marks could alias the new epoch
		clear(s.visited)
		s.epoch = 1
	}
	s.cand = s.cand[:0]
	s.top = s.top[:0]
}

// popSorted empties s.top into s.sorted, nearest first.
func (s *searcher) popSorted() []item {
	n := len(s.top)
	s.sorted = slices.Grow(s.sorted[:0], n)[:n]
	for i := n - 1; i >= 0; i-- {
		s.sorted[i] = s.top.pop()
	}
	return s.sorted
}

// probeKind is how a probe measures distance; one switch per distance,
// on a value that never changes during a walk, so it predicts perfectly.
type probeKind uint8

const (
	probeL2     probeKind = iota // squared Euclidean
	probeCosine                  // 1 - dot, on normalized vectors
	probeDot                     // -dot: a Dot query
	probeAug                     // L2 plus the MIPS coordinate: the Dot graph
)

// probe is what a layer walk measures distances from: a query, or a stored
// node while building the graph.
type probe struct {
	vec   []float32
	kind  probeKind
	extra float32 // probeAug: the probe's own augmentation coordinate
}

func (x *Index) dist(p *probe, id uint32) float32 {
	v := x.vec(id)
	switch p.kind {
	case probeL2:
		return l2(p.vec, v)
	case probeCosine:
		return 1 - dot(p.vec, v)
	case probeDot:
		return -dot(p.vec, v)
	}
	e := p.extra - x.augCoord(id)
	return l2(p.vec, v) + e*e
}

// queryProbe measures the index metric from a prepared query.
func (x *Index) queryProbe(q []float32) probe {
	switch x.cfg.Metric {
	case Cosine:
		return probe{vec: q, kind: probeCosine}
	case Dot:
		return probe{vec: q, kind: probeDot}
	}
	return probe{vec: q, kind: probeL2}
}

// nodeProbe measures graph distances from a stored node.
func (x *Index) nodeProbe(id uint32) probe {
	switch x.graphMetric {
	case Cosine:
		return probe{vec: x.vec(id), kind: probeCosine}
	case L2:
		if x.cfg.Metric == Dot {
			return probe{vec: x.vec(id), kind: probeAug, extra: x.augCoord(id)}
		}
	}
	return probe{vec: x.vec(id), kind: probeL2}
}

// augCoord is sqrt(maxSqNorm - |v|²), the coordinate that turns maximum
// inner product into nearest neighbour: with it appended to stored vectors
// and 0 to the query, |q - v'|² = |q|² + maxSqNorm - 2 q·v.
func (x *Index) augCoord(id uint32) float32 {
	m := math.Float32frombits(x.maxSqNorm.Load())
	return float32(math.Sqrt(float64(max(0, m-x.sqNorms[id]))))
}

// resultFilter says which nodes a layer walk may return; every node may be
// walked through.
type resultFilter struct {
	any   bool            // building: tombstones may be linked too
	allow *roaring.Bitmap // nil: all
	keys  KeySet          // nil: all
	pred  func(key []byte) bool
}

func (f *resultFilter) ok(x *Index, id uint32) bool {
	if f.any {
		return true
	}
	if !x.isLive(id) {
		return false
	}
	if f.allow != nil && !f.allow.Contains(id) {
		return false
	}
	if f.keys != nil && !f.keys.Contains(x.keys[id]) {
		return false
	}
	return f.pred == nil || f.pred(x.keys[id])
}

// greedy walks layer from ep towards q, one nearest neighbour at a time
// (the ef = 1 search of the upper layers).
func (x *Index) greedy(p *probe, ep item, layer int) item {
	for changed := true; changed; {
		changed = false
		l := x.linkList(ep.id, layer)
		for i, n := 1, linkCount(l); i <= n; i++ {
			nb := atomic.LoadUint32(&l[i])
			if d := x.dist(p, nb); d < ep.dist {
				ep = item{d, nb}
				changed = true
			}
		}
	}
	return ep
}

// searchLayer is the ef-bounded beam search of one layer from ep; on return
// s.top holds up to ef nearest nodes that pass f (a max-heap). It stops
// early once it has measured more than budget nodes (0: no bound), which
// only a filtered search sets. n bounds every node ID.
func (x *Index) searchLayer(s *searcher, p *probe, ep item, ef, layer int, f *resultFilter, n, budget int) {
	s.reset(n)
	visited, epoch := s.visited[:n], s.epoch
	visited[ep.id] = epoch
	s.cand.push(ep)
	if f.ok(x, ep.id) {
		s.top.push(ep)
	}
	dim := x.cfg.Dim
	measured := 0
	for len(s.cand) > 0 {
		c := s.cand[0]
		if len(s.top) >= ef && c.dist > s.top[0].dist {
			break
		}
		s.cand.pop()
		// First collect the unvisited neighbours and prefetch their
		// vectors, so the memory loads overlap; then measure them.
		l := x.linkList(c.id, layer)
		batch := s.batch[:0]
		for i, cnt := 1, linkCount(l); i <= cnt; i++ {
			nb := atomic.LoadUint32(&l[i])
			if visited[nb] == epoch {
				continue
			}
			visited[nb] = epoch
			prefetch.Lines(unsafe.Pointer(&x.vecs[int(nb)*dim]))
			batch = append(batch, nb)
		}
		s.batch = batch
		for _, nb := range batch {
			d := x.dist(p, nb)
			if len(s.top) < ef || d < s.top[0].dist {
				s.cand.push(item{d, nb})
				if f.ok(x, nb) {
					s.top.push(item{d, nb})
					if len(s.top) > ef {
						s.top.pop()
					}
				}
			}
		}
		s.dists += len(batch)
		if measured += len(batch); budget > 0 && measured > budget {
			break
		}
	}
}

// searchTwoHop is the layer-0 beam search of a filtered query that only
// ever measures allowed nodes (ACORN-1, Patel et al. 2024, as Weaviate
// runs it): expanding a node, an allowed neighbour is measured, and a
// disallowed one is looked through to its own neighbours, which are
// measured when allowed. So a walk started inside the allowed set stays
// there, crossing one disallowed node at a time, and never floods a
// region the filter excludes, which is what a walk that measures every
// node does when the query sits among disallowed vectors. seeds are
// allowed, live nodes to start from; on return s.top holds up to ef
// nearest allowed nodes. Like searchLayer it stops after measuring more
// than budget nodes (0: no bound).
func (x *Index) searchTwoHop(s *searcher, p *probe, seeds []item, ef int, f *resultFilter, n, budget int) {
	s.reset(n)
	visited, epoch := s.visited[:n], s.epoch
	for _, sd := range seeds {
		if visited[sd.id] == epoch {
			continue
		}
		visited[sd.id] = epoch
		s.cand.push(sd)
		s.top.push(sd)
		if len(s.top) > ef {
			s.top.pop()
		}
	}
	dim := x.cfg.Dim
	measured := 0
	for len(s.cand) > 0 {
		c := s.cand[0]
		if len(s.top) >= ef && c.dist > s.top[0].dist {
			break
		}
		s.cand.pop()
		l := x.linkList(c.id, 0)
		batch := s.batch[:0]
		for i, cnt := 1, linkCount(l); i <= cnt; i++ {
			nb := atomic.LoadUint32(&l[i])
			if visited[nb] == epoch {
				continue
			}
			visited[nb] = epoch
			if f.ok(x, nb) {
				prefetch.Lines(unsafe.Pointer(&x.vecs[int(nb)*dim]))
				batch = append(batch, nb)
				continue
			}
			l2 := x.linkList(nb, 0)
			for j, cnt2 := 1, linkCount(l2); j <= cnt2; j++ {
				nb2 := atomic.LoadUint32(&l2[j])
				if visited[nb2] == epoch {
					continue
				}
				// A disallowed node two hops away is marked too: it was
				// seen, and reaching it again adds nothing.
				visited[nb2] = epoch
				if f.ok(x, nb2) {
					prefetch.Lines(unsafe.Pointer(&x.vecs[int(nb2)*dim]))
					batch = append(batch, nb2)
				}
			}
		}
		s.batch = batch
		for _, nb := range batch {
			d := x.dist(p, nb)
			if len(s.top) < ef || d < s.top[0].dist {
				s.cand.push(item{d, nb})
				s.top.push(item{d, nb})
				if len(s.top) > ef {
					s.top.pop()
				}
			}
		}
		s.dists += len(batch)
		if measured += len(batch); budget > 0 && measured > budget {
			break
		}
	}
}

// selectNeighbors applies the paper's heuristic (algorithm 4) to cands,
// sorted nearest first: keep a candidate only if it is nearer to the base
// than to every neighbour kept so far, which spreads links over directions
// instead of spending them all on one cluster. Returns at most m items in
// s.chosen.
func (x *Index) selectNeighbors(s *searcher, cands []item, m int) []item {
	s.chosen = s.chosen[:0]
	return x.fillNeighbors(s, cands, m)
}

// fillNeighbors is selectNeighbors for a base that already keeps the
// neighbours in s.chosen (which cands must not repeat): it adds candidates
// by the heuristic until s.chosen holds m.
func (x *Index) fillNeighbors(s *searcher, cands []item, m int) []item {
	if len(s.chosen)+len(cands) <= m {
		s.chosen = append(s.chosen, cands...)
		return s.chosen
	}
	for _, c := range cands {
		if len(s.chosen) >= m {
			break
		}
		good := true
		cp := x.nodeProbe(c.id)
		for _, r := range s.chosen {
			if x.dist(&cp, r.id) < c.dist {
				good = false
				break
			}
		}
		if good {
			s.chosen = append(s.chosen, c)
		}
	}
	return s.chosen
}

// insert links the new node id (vector, level, key and state already set)
// into the graph. The caller holds mu shared.
func (x *Index) insert(id uint32, level int) {
	x.entryMu.Lock()
	ep, top, ok := x.loadEntry()
	if !ok {
		x.storeEntry(id, level)
		x.entryMu.Unlock()
		return
	}
	if level > top {
		// Keep other inserts out of the entry point until this node's
		// upper layers are linked; rare, as in hnswlib.
		defer func() {
			x.storeEntry(id, level)
			x.entryMu.Unlock()
		}()
	} else {
		x.entryMu.Unlock()
	}
	s := x.scratch.Get().(*searcher)
	defer x.scratch.Put(s)
	p := x.nodeProbe(id)
	n := len(x.levels)
	cur := item{x.dist(&p, ep), ep}
	for l := top; l > level; l-- {
		cur = x.greedy(&p, cur, l)
	}
	build := resultFilter{any: true}
	for l := min(level, top); l >= 0; l-- {
		x.searchLayer(s, &p, cur, x.cfg.EfConstruction, l, &build, n, 0)
		// A concurrent insert may already have linked back to this node.
		sorted := slices.DeleteFunc(s.popSorted(), func(it item) bool { return it.id == id })
		if len(sorted) == 0 {
			continue
		}
		cur = sorted[0]
		chosen := x.selectNeighbors(s, sorted, x.cfg.M)
		// Copy: connect reuses s.sorted and s.chosen.
		s.nbs = s.nbs[:0]
		for _, c := range chosen {
			s.nbs = append(s.nbs, c.id)
		}
		mu := x.stripe(id)
		mu.Lock()
		storeLinks(x.linkList(id, l), s.nbs)
		mu.Unlock()
		for _, nb := range s.nbs {
			x.connect(s, nb, id, l)
		}
	}
}

// connect adds a link nb -> id at layer, shrinking nb's list with the
// heuristic when it is full, all under nb's stripe. It reports whether
// nb links to id afterwards (the heuristic may prefer nb's old links).
func (x *Index) connect(s *searcher, nb, id uint32, layer int) bool {
	maxL := x.maxLinks(layer)
	mu := x.stripe(nb)
	mu.Lock()
	defer mu.Unlock()
	l := x.linkList(nb, layer)
	cnt := int(l[0])
	if slices.Contains(l[1:1+cnt], id) {
		return true
	}
	if cnt < maxL {
		atomic.StoreUint32(&l[1+cnt], id)
		atomic.StoreUint32(&l[0], uint32(cnt+1))
		return true
	}
	base := x.nodeProbe(nb)
	s.sorted = append(s.sorted[:0], item{x.dist(&base, id), id})
	for _, o := range l[1 : 1+cnt] {
		s.sorted = append(s.sorted, item{x.dist(&base, o), o})
	}
	slices.SortFunc(s.sorted, func(a, b item) int { return cmp.Compare(a.dist, b.dist) })
	chosen := x.selectNeighbors(s, s.sorted, maxL)
	s.batch = s.batch[:0]
	kept := false
	for _, c := range chosen {
		s.batch = append(s.batch, c.id)
		kept = kept || c.id == id
	}
	storeLinks(l, s.batch)
	return kept
}

// Search returns the k nearest live vectors to q, nearest first. With
// opts.Keys, opts.Filter or opts.Allow, only vectors they allow are
// returned. It allocates only the result.
func (x *Index) Search(q []float32, k int, opts *SearchOptions) ([]Hit, error) {
	hits, _, err := x.search(q, k, opts)
	return hits, err
}

// search is Search, also returning the number of distances it measured.
func (x *Index) search(q []float32, k int, opts *SearchOptions) ([]Hit, int, error) {
	if len(q) != x.cfg.Dim {
		return nil, 0, fmt.Errorf("hnsw: query has %d dimensions, index has %d", len(q), x.cfg.Dim)
	}
	if !finite(q) || math.IsInf(float64(dot(q, q)), 0) {
		return nil, 0, fmt.Errorf("hnsw: query holds NaN or infinity, or its norm overflows float32")
	}
	if k <= 0 {
		return nil, 0, nil
	}
	var o SearchOptions
	if opts != nil {
		o = *opts
	}
	ef := o.Ef
	if ef <= 0 {
		ef = defaultEf
	}
	ef = max(ef, k)

	s := x.scratch.Get().(*searcher)
	defer x.scratch.Put(s)
	s.dists = 0
	s.seeds = s.seeds[:0]
	s.query = append(s.query[:0], q...)
	q = s.query
	if x.cfg.Metric == Cosine && !normalize(q) {
		return nil, 0, fmt.Errorf("hnsw: zero query has no cosine direction")
	}

	x.mu.RLock()
	defer x.mu.RUnlock()
	ep, top, ok := x.loadEntry()
	if !ok {
		return nil, 0, nil
	}
	// Every ID in a link list, the entry point and every slot an exact
	// scan meets is below n while we hold mu.
	n := len(x.levels)
	f := resultFilter{allow: o.Filter, keys: o.Keys, pred: o.Allow}
	filtered := o.Filter != nil || o.Keys != nil || o.Allow != nil
	exact, budget := false, 0
	if filtered {
		pl := x.planFiltered(&f, ef, n)
		exact, ef, budget = pl.exact, pl.ef, pl.budget
	}
	if !exact {
		p := x.queryProbe(q)
		cur := item{x.dist(&p, ep), ep}
		if filtered && top > 0 {
			// Seeds inside the allowed set: a beam on layer 1, which
			// has a 1/M sample of the nodes, keeps the allowed ones
			// nearest the query, from however many clusters.
			for l := top; l > 1; l-- {
				cur = x.greedy(&p, cur, l)
			}
			x.searchLayer(s, &p, cur, ef, 1, &f, n, budget)
			s.seeds = append(s.seeds[:0], s.popSorted()...)
		}
		if filtered && len(s.seeds) > 0 {
			x.searchTwoHop(s, &p, s.seeds, ef, &f, n, budget)
		} else {
			for l := top; l > 0; l-- {
				cur = x.greedy(&p, cur, l)
			}
			x.searchLayer(s, &p, cur, ef, 0, &f, n, budget)
		}
		// A filtered beam that could not fill k either ran out of budget
		// or walked the whole component: the scan is the sure answer.
		exact = filtered && len(s.top) < k
	}
	if exact {
		x.exactSearch(s, q, k, &f, n)
	}
	// Re-check tombstones: when a key is replaced during the walk, its old
	// node may have passed before its tombstone was set and its new node
	// been found after; the tombstone is set before the new node goes
	// live, so it is visible now and the key is returned once.
	res := slices.DeleteFunc(s.popSorted(), func(it item) bool { return !x.isLive(it.id) })
	res = res[:min(k, len(res))]
	size := 0
	for _, it := range res {
		size += len(x.keys[it.id])
	}
	hits := make([]Hit, len(res))
	buf := make([]byte, 0, size)
	for i, it := range res {
		start := len(buf)
		buf = append(buf, x.keys[it.id]...)
		hits[i] = Hit{Key: buf[start:len(buf):len(buf)], Distance: it.dist}
	}
	return hits, s.dists, nil
}

// planFiltered decides between the graph and a scan of the allowed set,
// and sizes the graph walk. The size of a bitmap or a key set is known; a
// predicate's is estimated from a sample. With a fraction p of the live
// nodes allowed, the walk (searchTwoHop) keeps a beam of ef/p: a filter
// that lines up with the data's clusters leaves the nearest allowed
// vectors spread over the edges of several clusters, and a beam of ef
// misses some of them (recall 0.96 at p = 1/2 against 0.98 for ef/p, on
// 50,000 clustered vectors; ARCHITECTURE.md, vector search). A walk
// measures about walkCost*beam nodes; a scan measures every allowed node.
// So scan when that is cheaper, when the set is small in absolute terms
// (exactMinScan), or under 1/exactFraction of the index, where the
// allowed nodes stop being connected even through one disallowed node.
func (x *Index) planFiltered(f *resultFilter, ef, n int) filterPlan {
	live := float64(x.live.Load())
	allowed := live
	if f.allow != nil {
		allowed = min(allowed, float64(f.allow.GetCardinality()))
	}
	if f.keys != nil {
		allowed = min(allowed, float64(f.keys.Len()))
	}
	if f.pred != nil {
		allowed = min(allowed, live*x.sampleFilter(f, n))
	}
	if allowed*exactFraction < live {
		return filterPlan{exact: true}
	}
	beam := int(float64(ef) * live / allowed) // at most exactFraction*ef
	if allowed <= float64(max(exactMinScan, walkCost*beam)) {
		return filterPlan{exact: true}
	}
	// Several times the walk's expected cost; past it the scan is cheaper.
	return filterPlan{ef: beam, budget: max(4*exactMinScan, budgetFactor*beam)}
}

// filterPlan is how a filtered search runs: an exact scan, or a walk of
// beam ef that falls back to the scan after measuring budget nodes.
type filterPlan struct {
	exact      bool
	ef, budget int
}

const (
	exactMinScan  = 2048
	exactFraction = 10
	walkCost      = 16 // nodes a walk measures per beam slot, about (measured: 9-20)
	budgetFactor  = 64
	filterSamples = 512
)

// sampleFilter estimates the fraction of live nodes that f allows from
// up to filterSamples slots spread over [0, n) by the golden ratio (no
// state, no aliasing with ID strides).
func (x *Index) sampleFilter(f *resultFilter, n int) float64 {
	const phi = 0.6180339887498949
	live, ok := 0, 0
	pos := 0.0
	for i := 0; i < min(n, filterSamples); i++ {
		pos += phi
		pos -= math.Floor(pos)
		id := uint32(pos * float64(n))
		if !x.isLive(id) {
			continue
		}
		live++
		if f.ok(x, id) {
			ok++
		}
	}
	if live == 0 {
		return 0
	}
	return float64(ok) / float64(live)
}

// exactSearch leaves in s.top the k nearest nodes below n that f allows.
// It measures every allowed node, drawn from the smallest source at hand:
// the bitmap, the key set (each key looked up to its current node), or
// every slot.
func (x *Index) exactSearch(s *searcher, q []float32, k int, f *resultFilter, n int) {
	s.top = s.top[:0]
	consider := func(g *resultFilter, id uint32) {
		if !g.ok(x, id) {
			return
		}
		s.dists++
		d := x.cfg.Metric.distance(q, x.vec(id))
		if len(s.top) < k || d < s.top[0].dist {
			s.top.push(item{d, id})
			if len(s.top) > k {
				s.top.pop()
			}
		}
	}
	fromBitmap, fromKeys := math.MaxInt, math.MaxInt
	if f.allow != nil {
		fromBitmap = int(min(f.allow.GetCardinality(), math.MaxInt32))
	}
	if f.keys != nil {
		// A key costs a map lookup where a slot costs a state load: scan
		// the set only when it is well below the slot count.
		fromKeys = 2 * f.keys.Len()
	}
	switch {
	case fromBitmap <= fromKeys && fromBitmap < n:
		it := f.allow.Iterator()
		for it.HasNext() {
			id := it.Next()
			if int64(id) >= int64(n) {
				break // ascending
			}
			consider(f, id)
		}
	case fromKeys < n:
		// Each key's node is its current one, and a key set may repeat a
		// key: the visited marks keep a node from being measured twice.
		g := *f
		g.keys = nil // the keys come from the set
		s.reset(n)   // also empties s.top, still empty here
		visited, epoch := s.visited[:n], s.epoch
		for key := range f.keys.All() {
			x.keyMu.RLock()
			id, ok := x.ids[string(key)]
			x.keyMu.RUnlock()
			if !ok || int64(id) >= int64(n) || visited[id] == epoch {
				continue
			}
			visited[id] = epoch
			consider(&g, id)
		}
	default:
		for id := 0; id < n; id++ {
			consider(f, uint32(id))
		}
	}
}

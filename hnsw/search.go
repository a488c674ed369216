package hnsw

import (
	"fmt"
	"math"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"
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

// searcher is the scratch space of one search, pooled on the index so a
// search allocates only its result.
type searcher struct {
	visited []uint32 // visited[id] == epoch: seen in this layer walk
	epoch   uint32
	cand    minHeap
	top     maxHeap
	links   []uint32 // copy of one link list, read under its stripe
	query   []float32
	sorted  []item
	chosen  []item
	nbs     []uint32
}

// reset starts a new layer walk over n nodes.
func (s *searcher) reset(n int) {
	if len(s.visited) < n {
		s.visited = make([]uint32, max(n, 2*len(s.visited)))
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

// probe is what a layer walk measures distances from: a query, or a stored
// node while building the graph.
type probe struct {
	vec    []float32
	metric Metric
	// aug: add the squared difference of the MIPS augmentation coordinate
	// (see Index.graphMetric); extra is the probe's own coordinate.
	aug   bool
	extra float32
}

func (x *Index) dist(p *probe, id uint32) float32 {
	d := p.metric.distance(p.vec, x.vec(id))
	if p.aug {
		e := p.extra - x.augCoord(id)
		d += e * e
	}
	return d
}

// nodeProbe measures graph distances from a stored node. Writer only.
func (x *Index) nodeProbe(id uint32) probe {
	p := probe{vec: x.vec(id), metric: x.graphMetric}
	if x.cfg.Metric == Dot {
		p.aug, p.extra = true, x.augCoord(id)
	}
	return p
}

// augCoord is sqrt(maxSqNorm - |v|²), the coordinate that turns maximum
// inner product into nearest neighbour: with it appended to stored vectors
// and 0 to the query, |q - v'|² = |q|² + maxSqNorm - 2 q·v. Writer only.
func (x *Index) augCoord(id uint32) float32 {
	return float32(math.Sqrt(float64(max(0, x.maxSqNorm-x.sqNorms[id]))))
}

// resultFilter says which nodes a layer walk may return; every node may be
// walked through.
type resultFilter struct {
	skipDeleted bool
	allow       *roaring.Bitmap // nil: all
}

func (f resultFilter) ok(x *Index, id uint32) bool {
	if f.skipDeleted && x.isDeleted(id) {
		return false
	}
	return f.allow == nil || f.allow.Contains(id)
}

// readLinks copies id's links at layer into s.links under id's stripe.
func (x *Index) readLinks(s *searcher, id uint32, layer int) []uint32 {
	mu := x.stripe(id)
	mu.RLock()
	l := x.linkList(id, layer)
	s.links = append(s.links[:0], l[1:1+l[0]]...)
	mu.RUnlock()
	return s.links
}

// greedy walks layer from ep towards q, one nearest neighbour at a time
// (the ef = 1 search of the upper layers).
func (x *Index) greedy(s *searcher, p *probe, ep item, layer int) item {
	for changed := true; changed; {
		changed = false
		for _, n := range x.readLinks(s, ep.id, layer) {
			if d := x.dist(p, n); d < ep.dist {
				ep = item{d, n}
				changed = true
			}
		}
	}
	return ep
}

// searchLayer is the ef-bounded beam search of one layer from ep; on return
// s.top holds up to ef nearest nodes that pass f (a max-heap).
func (x *Index) searchLayer(s *searcher, p *probe, ep item, ef, layer int, f resultFilter, n int) {
	s.reset(n)
	s.visited[ep.id] = s.epoch
	s.cand.push(ep)
	if f.ok(x, ep.id) {
		s.top.push(ep)
	}
	for len(s.cand) > 0 {
		c := s.cand[0]
		if len(s.top) >= ef && c.dist > s.top[0].dist {
			break
		}
		s.cand.pop()
		for _, nb := range x.readLinks(s, c.id, layer) {
			if s.visited[nb] == s.epoch {
				continue
			}
			s.visited[nb] = s.epoch
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
	}
}

// selectNeighbors applies the paper's heuristic (algorithm 4) to cands,
// sorted nearest first: keep a candidate only if it is nearer to the base
// than to every neighbour kept so far, which spreads links over directions
// instead of spending them all on one cluster. Returns at most m items in
// s.chosen.
func (x *Index) selectNeighbors(s *searcher, cands []item, m int) []item {
	s.chosen = s.chosen[:0]
	if len(cands) <= m {
		return append(s.chosen, cands...)
	}
	for _, c := range cands {
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
			if len(s.chosen) == m {
				break
			}
		}
	}
	return s.chosen
}

// insert links the new node id (vector, level and key already set) into
// the graph. Writer only.
func (x *Index) insert(id uint32, level int) {
	ep, top, ok := x.loadEntry()
	if !ok {
		x.storeEntry(id, level)
		return
	}
	s := x.scratch.Get().(*searcher)
	defer x.scratch.Put(s)
	p := x.nodeProbe(id)
	n := int(x.count)
	cur := item{x.dist(&p, ep), ep}
	for l := top; l > level; l-- {
		cur = x.greedy(s, &p, cur, l)
	}
	for l := min(level, top); l >= 0; l-- {
		x.searchLayer(s, &p, cur, x.cfg.EfConstruction, l, resultFilter{}, n)
		s.sorted = append(s.sorted[:0], s.top...)
		slices.SortFunc(s.sorted, func(a, b item) int { return cmpDist(a.dist, b.dist) })
		cur = s.sorted[0]
		chosen := x.selectNeighbors(s, s.sorted, x.cfg.M)

		mu := x.stripe(id)
		mu.Lock()
		own := x.linkList(id, l)
		own[0] = uint32(len(chosen))
		for i, c := range chosen {
			own[1+i] = c.id
		}
		mu.Unlock()

		// Copy: connect reuses s.sorted and s.chosen.
		s.nbs = s.nbs[:0]
		for _, c := range chosen {
			s.nbs = append(s.nbs, c.id)
		}
		for _, nb := range s.nbs {
			x.connect(s, nb, id, l)
		}
	}
	if level > top {
		x.storeEntry(id, level)
	}
}

// connect adds a link nb -> id at layer, shrinking nb's list with the
// heuristic when it is full. Writer only.
func (x *Index) connect(s *searcher, nb, id uint32, layer int) {
	maxL := x.maxLinks(layer)
	l := x.linkList(nb, layer) // writer reads without the stripe
	cnt := int(l[0])
	mu := x.stripe(nb)
	if cnt < maxL {
		mu.Lock()
		l[1+cnt] = id
		l[0] = uint32(cnt + 1)
		mu.Unlock()
		return
	}
	base := x.nodeProbe(nb)
	s.sorted = append(s.sorted[:0], item{x.dist(&base, id), id})
	for _, o := range l[1 : 1+cnt] {
		s.sorted = append(s.sorted, item{x.dist(&base, o), o})
	}
	slices.SortFunc(s.sorted, func(a, b item) int { return cmpDist(a.dist, b.dist) })
	chosen := x.selectNeighbors(s, s.sorted, maxL)
	mu.Lock()
	l[0] = uint32(len(chosen))
	for i, c := range chosen {
		l[1+i] = c.id
	}
	mu.Unlock()
}

func cmpDist(a, b float32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Search returns the k nearest live vectors to q, nearest first. With
// opts.Filter, only those internal IDs are returned.
func (x *Index) Search(q []float32, k int, opts *SearchOptions) ([]Hit, error) {
	if len(q) != x.cfg.Dim {
		return nil, fmt.Errorf("hnsw: query has %d dimensions, index has %d", len(q), x.cfg.Dim)
	}
	if !finite(q) || math.IsInf(float64(dot(q, q)), 0) {
		return nil, fmt.Errorf("hnsw: query holds NaN or infinity, or its norm overflows float32")
	}
	if k <= 0 {
		return nil, nil
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
	s.query = append(s.query[:0], q...)
	q = s.query
	if x.cfg.Metric == Cosine && !normalize(q) {
		return nil, fmt.Errorf("hnsw: zero query has no cosine direction")
	}

	x.mu.RLock()
	defer x.mu.RUnlock()
	ep, top, ok := x.loadEntry()
	if !ok {
		return nil, nil
	}
	// Nodes below n are complete: an ID read from a link list is always
	// below the count the writer had when it wrote that link, and count
	// only grows while we hold mu.
	n := len(x.levels)
	f := resultFilter{skipDeleted: true, allow: o.Filter}
	if o.Filter != nil && x.exactFilter(o.Filter, ef) {
		x.exactSearch(s, q, k, o.Filter)
	} else {
		p := probe{vec: q, metric: x.cfg.Metric}
		cur := item{x.dist(&p, ep), ep}
		for l := top; l > 0; l-- {
			cur = x.greedy(s, &p, cur, l)
		}
		x.searchLayer(s, &p, cur, ef, 0, f, n)
	}
	// Re-check tombstones: when a key is replaced during the walk, its old
	// node may have passed before its tombstone was set and its new node
	// been found after; the tombstone is set before the new node is
	// linked, so it is visible now and the key is returned once.
	s.sorted = s.sorted[:0]
	for _, it := range s.top {
		if !x.isDeleted(it.id) {
			s.sorted = append(s.sorted, it)
		}
	}
	slices.SortFunc(s.sorted, func(a, b item) int { return cmpDist(a.dist, b.dist) })
	res := s.sorted[:min(k, len(s.sorted))]
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
	return hits, nil
}

// exactFilter decides between the graph and a scan of the allowed set. A
// graph walk restricted to a fraction p of the nodes has to visit about
// ef/p nodes to fill its beam, and loses recall when the allowed nodes
// stop being connected among themselves; a scan costs one distance per
// allowed node. So scan when the allowed set is small in absolute terms
// (at most exactMinScan or 16*ef nodes, about what a beam search computes
// anyway) or small relative to the index (under 1/exactFraction of it).
func (x *Index) exactFilter(f *roaring.Bitmap, ef int) bool {
	card := f.GetCardinality()
	return card <= uint64(max(exactMinScan, 16*ef)) || card*exactFraction < uint64(x.published.Load())
}

const (
	exactMinScan  = 2048
	exactFraction = 10
)

// exactSearch leaves in s.top the k nearest live allowed nodes.
func (x *Index) exactSearch(s *searcher, q []float32, k int, allow *roaring.Bitmap) {
	s.top = s.top[:0]
	limit := x.published.Load()
	it := allow.Iterator()
	for it.HasNext() {
		id := it.Next()
		if id >= limit {
			break // ascending
		}
		if x.isDeleted(id) {
			continue
		}
		d := x.cfg.Metric.distance(q, x.vec(id))
		if len(s.top) < k || d < s.top[0].dist {
			s.top.push(item{d, id})
			if len(s.top) > k {
				s.top.pop()
			}
		}
	}
}

package timeseries

import (
	"slices"
	"sort"
	"sync"

	"github.com/RoaringBitmap/roaring/v2"
)

// SeriesID is a replica's local number for a series: dense, from 1, never
// reused. Replicas name series by their canonical form; each numbers them
// on its own.
type SeriesID = uint32

// Postings is the label index of a replica's series: for every label
// name and value, the bitmap of the series that carry it. It lives in
// memory; the engine rebuilds it at open from its series table. Select
// finds series by matchers without looking at one series it does not
// return, but for regular expressions, which are tried on the values of
// their label (the value dictionary, never the series).
//
// Postings is safe for concurrent use.
type Postings struct {
	mu     sync.RWMutex
	all    *roaring.Bitmap
	values map[string]map[string]*roaring.Bitmap // name -> value -> series
	labels map[SeriesID]Labels
}

// NewPostings returns an empty index.
func NewPostings() *Postings {
	return &Postings{all: roaring.New(), values: map[string]map[string]*roaring.Bitmap{}, labels: map[SeriesID]Labels{}}
}

// Add indexes series id with its labels. Adding an id twice replaces its
// labels.
func (p *Postings) Add(id SeriesID, ls Labels) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.labels[id]; ok {
		p.removeLocked(id)
	}
	p.labels[id] = ls
	p.all.Add(id)
	for _, l := range ls {
		vs := p.values[l.Name]
		if vs == nil {
			vs = map[string]*roaring.Bitmap{}
			p.values[l.Name] = vs
		}
		b := vs[l.Value]
		if b == nil {
			b = roaring.New()
			vs[l.Value] = b
		}
		b.Add(id)
	}
}

// Remove drops series id from the index.
func (p *Postings) Remove(id SeriesID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removeLocked(id)
}

func (p *Postings) removeLocked(id SeriesID) {
	ls, ok := p.labels[id]
	if !ok {
		return
	}
	delete(p.labels, id)
	p.all.Remove(id)
	for _, l := range ls {
		vs := p.values[l.Name]
		if b := vs[l.Value]; b != nil {
			b.Remove(id)
			if b.IsEmpty() {
				delete(vs, l.Value)
			}
		}
		if len(vs) == 0 {
			delete(p.values, l.Name)
		}
	}
}

// Labels returns the labels of series id.
func (p *Postings) Labels(id SeriesID) (Labels, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	ls, ok := p.labels[id]
	return ls, ok
}

// Len is the number of series indexed.
func (p *Postings) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return int(p.all.GetCardinality())
}

// Select returns the series every matcher matches (no matcher: none).
// A matcher that matches the empty string also selects the series
// without its label, as Prometheus does: name!="x" keeps the series that
// lack name.
func (p *Postings) Select(ms ...*Matcher) *roaring.Bitmap {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if len(ms) == 0 {
		return roaring.New()
	}
	// The narrowest sets first: equalities, then the rest.
	ordered := slices.Clone(ms)
	sort.SliceStable(ordered, func(i, j int) bool {
		return ordered[i].Type == MatchEqual && ordered[j].Type != MatchEqual
	})
	var out *roaring.Bitmap
	for _, m := range ordered {
		s := p.matchLocked(m)
		if out == nil {
			out = s
		} else {
			out.And(s)
		}
		if out.IsEmpty() {
			break
		}
	}
	return out
}

// matchLocked returns the series m selects, as a new bitmap.
func (p *Postings) matchLocked(m *Matcher) *roaring.Bitmap {
	vs := p.values[m.Name]
	if m.Type == MatchEqual && m.Value != "" {
		if b := vs[m.Value]; b != nil {
			return b.Clone()
		}
		return roaring.New()
	}
	if m.Matches("") {
		// Everything but the series whose value does not match.
		var drop []*roaring.Bitmap
		for v, b := range vs {
			if !m.Matches(v) {
				drop = append(drop, b)
			}
		}
		out := p.all.Clone()
		if len(drop) > 0 {
			out.AndNot(roaring.FastOr(drop...))
		}
		return out
	}
	var keep []*roaring.Bitmap
	for v, b := range vs {
		if m.Matches(v) {
			keep = append(keep, b)
		}
	}
	if len(keep) == 0 {
		return roaring.New()
	}
	return roaring.FastOr(keep...)
}

// LabelNames returns every label name in use, sorted.
func (p *Postings) LabelNames() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]string, 0, len(p.values))
	for n := range p.values {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// LabelValues returns the values of label name in use, sorted.
func (p *Postings) LabelValues(name string) []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]string, 0, len(p.values[name]))
	for v := range p.values[name] {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

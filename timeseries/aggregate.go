package timeseries

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
)

// Aggregator aggregates one series over time, streaming: it takes the
// samples in strictly ascending T, in as many calls as the caller likes
// (a chunk at a time), and produces one sample per non-empty window
// [from+i*step, from+(i+1)*step) within [from, to), stamped with the
// window's start; the last window ends at to. A step <= 0 makes one
// window, [from, to). Samples outside [from, to) are ignored (but must
// still ascend). Memory is O(1) but for the result, one sample a window,
// and for the quantiles, which keep the values of the current window.
//
// A sample at or before the one given before it is an error wrapping
// ErrOutOfOrder, and the aggregator keeps that error: every later Add
// and Result returns it, so no answer comes of unordered input.
type Aggregator struct {
	from, to, step int64
	kind           Agg
	q              float64

	seen  bool  // a sample was given
	lastT int64 // the last sample's T

	open     bool  // a window holds samples
	winStart int64 // the open window: [winStart, winEnd)
	winEnd   int64
	acc      acc
	lastRun  int // the length of the last run AddAll found in a window
	out      []Sample
	done     bool
	err      error
}

// NewAggregator returns an aggregator of fn over [from, to) by step (see
// Aggregator). An invalid fn, or from after to, is an error wrapping
// ErrInvalidQuery.
func NewAggregator(from, to, step int64, fn Agg) (*Aggregator, error) {
	if !fn.Valid() {
		return nil, fmt.Errorf("%w: unknown aggregation %v", ErrInvalidQuery, fn)
	}
	if from > to {
		return nil, fmt.Errorf("%w: from %d is after to %d", ErrInvalidQuery, from, to)
	}
	a := &Aggregator{from: from, to: to, step: step, kind: fn.kind()}
	a.q, _ = fn.Quantile()
	if a.kind == quantileFlag {
		a.acc.vals = (*quantileVals.Get().(*[]float64))[:0]
	}
	return a, nil
}

// Add takes the next sample.
func (a *Aggregator) Add(s Sample) error {
	if a.err != nil {
		return a.err
	}
	if a.done {
		a.err = fmt.Errorf("%w: a sample added after Result", ErrInvalidQuery)
		return a.err
	}
	if a.seen && s.T <= a.lastT {
		a.err = fmt.Errorf("%w: a sample at %d after one at %d", ErrOutOfOrder, s.T, a.lastT)
		return a.err
	}
	a.seen, a.lastT = true, s.T
	if s.T < a.from || s.T >= a.to {
		return nil
	}
	if !a.open || s.T >= a.winEnd {
		a.flush()
		a.openWindow(s.T)
	}
	a.acc.add(a.kind, s.T, s.V)
	return nil
}

// AddAll takes the next samples, in order. It checks their order first:
// samples that are not in order are an error and none of them is taken.
func (a *Aggregator) AddAll(samples []Sample) error {
	if a.err != nil {
		return a.err
	}
	if len(samples) == 0 {
		return nil
	}
	if a.done {
		a.err = fmt.Errorf("%w: a sample added after Result", ErrInvalidQuery)
		return a.err
	}
	prev := a.lastT
	for i, s := range samples {
		if (a.seen || i > 0) && s.T <= prev {
			a.err = fmt.Errorf("%w: a sample at %d after one at %d", ErrOutOfOrder, s.T, prev)
			return a.err
		}
		prev = s.T
	}
	a.seen, a.lastT = true, prev
	i, _ := slices.BinarySearchFunc(samples, a.from, func(s Sample, t int64) int { return cmp.Compare(s.T, t) })
	for i < len(samples) && samples[i].T < a.to {
		if t := samples[i].T; !a.open || t >= a.winEnd {
			a.flush()
			a.openWindow(t)
		}
		// The run of samples in the open window (which ends at to at
		// the latest): as long as the last run, most often (a regular
		// interval), else found by galloping.
		j := i + a.lastRun
		if j <= i || j > len(samples) || samples[j-1].T >= a.winEnd || j < len(samples) && samples[j].T < a.winEnd {
			j = runEnd(samples, i, a.winEnd)
		}
		a.lastRun = j - i
		a.acc.addRun(a.kind, samples[i:j])
		i = j
	}
	return nil
}

// runEnd returns the first j > i with s[j].T >= end, or len(s), given
// s[i].T < end and s ascending: galloping, then bisecting, so a run of
// one sample costs a comparison and one of n about 2·log2(n).
func runEnd(s []Sample, i int, end int64) int {
	n := len(s)
	lo, hi, d := i+1, i+1, 1 // s[lo-1].T < end
	for hi < n && s[hi].T < end {
		lo = hi + 1
		hi += d
		d <<= 1
	}
	hi = min(hi, n) // s[hi].T >= end, or hi == n: the answer is in [lo, hi]
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s[m].T < end {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// Rollup is what the aggregations over time need of a run of samples
// (ascending T, at least one) without the samples: a stored chunk's
// summary, so whole chunks are aggregated without decoding them.
type Rollup struct {
	Count int
	// Min and Max ignore NaN unless every value is NaN (then they are
	// NaN).
	Min, Max float64
	// Sum+SumC is the compensated sum of the values; Sum alone when it
	// is not finite (the compensation then means nothing).
	Sum, SumC float64
	// Drops is the sum of the values before each drop (a value below
	// the one before it: a counter reset).
	Drops         float64
	FirstT, LastT int64
	FirstV, LastV float64
}

// AddRollup takes the next samples by their rollup, when that gives the
// answer adding them would (a Sum or Avg up to the order of its
// additions): they lie in one window within [from, to), and fn is
// computed from rollups: every aggregation but the quantiles, Avg but
// when a sum is not finite (it goes to the incremental mean, which needs
// the values). ok false: nothing was taken, the samples are to be added.
// A rollup at or before a sample given before it is an error wrapping
// ErrOutOfOrder, kept as Add's.
func (a *Aggregator) AddRollup(r *Rollup) (ok bool, err error) {
	if a.err != nil {
		return false, a.err
	}
	if a.done {
		a.err = fmt.Errorf("%w: a sample added after Result", ErrInvalidQuery)
		return false, a.err
	}
	if r.Count < 1 || r.LastT < r.FirstT || r.Count > 1 && r.LastT == r.FirstT || r.Count == 1 && r.LastT != r.FirstT {
		return false, nil // not a rollup of samples: let them speak
	}
	if a.seen && r.FirstT <= a.lastT {
		a.err = fmt.Errorf("%w: a sample at %d after one at %d", ErrOutOfOrder, r.FirstT, a.lastT)
		return false, a.err
	}
	if r.FirstT < a.from || r.LastT >= a.to {
		return false, nil
	}
	if !a.open || r.FirstT >= a.winEnd {
		start, end := a.window(r.FirstT)
		if r.LastT >= end {
			return false, nil
		}
		if !a.acc.canRollup(a.kind, r, true) {
			return false, nil
		}
		a.flush()
		a.open, a.winStart, a.winEnd = true, start, end
	} else if r.LastT >= a.winEnd || !a.acc.canRollup(a.kind, r, false) {
		return false, nil
	}
	a.acc.addRollup(a.kind, r)
	a.seen, a.lastT = true, r.LastT
	return true, nil
}

// Result closes the aggregation and returns its windows, ascending; an
// aggregator that met an error returns it (and no samples). Result may
// be called again (it returns the same); Add may not.
func (a *Aggregator) Result() ([]Sample, error) {
	if a.err != nil {
		return nil, a.err
	}
	if !a.done {
		a.flush()
		a.done = true
		if v := a.acc.vals; cap(v) > 0 && cap(v) <= maxPooledVals {
			a.acc.vals = nil
			quantileVals.Put(&v)
		}
	}
	return a.out, nil
}

// quantileVals holds the buffers the quantiles collect a window's values
// in, reused from aggregation to aggregation; one of more than
// maxPooledVals is left to the collector.
var quantileVals = sync.Pool{New: func() any { return new([]float64) }}

const maxPooledVals = 1 << 18

// openWindow opens the window holding t (from <= t < to). The arithmetic
// is unsigned so that no range or step overflows: t-from and to-start
// are below 2^64.
func (a *Aggregator) openWindow(t int64) {
	a.open = true
	a.winStart, a.winEnd = a.window(t)
}

// window returns the window holding t (from <= t < to): [start, end).
func (a *Aggregator) window(t int64) (start, end int64) {
	if a.step <= 0 {
		return a.from, a.to
	}
	step := uint64(a.step)
	i := (uint64(t) - uint64(a.from)) / step
	start = int64(uint64(a.from) + i*step)
	if uint64(a.to)-uint64(start) <= step {
		return start, a.to
	}
	return start, int64(uint64(start) + step)
}

// flush appends the open window's result, if it has one.
func (a *Aggregator) flush() {
	if !a.open {
		return
	}
	if v, ok := a.acc.result(a.kind, a.q); ok {
		a.out = append(a.out, Sample{T: a.winStart, V: v})
	}
	a.acc.reset()
	a.open = false
}

// Aggregate aggregates samples (strictly ascending in T) with fn over
// [from, to) by step, as an Aggregator fed them all at once.
func Aggregate(samples []Sample, from, to, step int64, fn Agg) ([]Sample, error) {
	a, err := NewAggregator(from, to, step, fn)
	if err != nil {
		return nil, err
	}
	if err := a.AddAll(samples); err != nil {
		return nil, err
	}
	return a.Result()
}

package timeseries

import (
	"cmp"
	"fmt"
	"slices"
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
		// the latest).
		j := i + 1
		for j < len(samples) && samples[j].T < a.winEnd {
			j++
		}
		a.acc.addRun(a.kind, samples[i:j])
		i = j
	}
	return nil
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
	}
	return a.out, nil
}

// openWindow opens the window holding t (from <= t < to). The arithmetic
// is unsigned so that no range or step overflows: t-from and to-start
// are below 2^64.
func (a *Aggregator) openWindow(t int64) {
	a.open = true
	if a.step <= 0 {
		a.winStart, a.winEnd = a.from, a.to
		return
	}
	step := uint64(a.step)
	i := (uint64(t) - uint64(a.from)) / step
	a.winStart = int64(uint64(a.from) + i*step)
	if uint64(a.to)-uint64(a.winStart) <= step {
		a.winEnd = a.to
	} else {
		a.winEnd = int64(uint64(a.winStart) + step)
	}
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

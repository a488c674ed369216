package timeseries

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
)

// Errors of the aggregations.
var (
	// ErrInvalidQuery: an aggregation that cannot be run as asked: an
	// unknown Agg, from after to, an aggregation that has no meaning
	// across series, an Aggregator used after its Result.
	ErrInvalidQuery = errors.New("pluresdb: invalid time series query")
	// ErrOutOfOrder: samples given to an aggregation are not in strictly
	// ascending time (a sample at or before the one given before it).
	ErrOutOfOrder = errors.New("pluresdb: time series samples out of order")
)

// Agg is an aggregation function: one of the constants Min, Max, Sum,
// Count, Avg, First, Last, Rate, or a Quantile. The zero Agg is invalid.
// Aggs are comparable: Quantile(0.5) == Quantile(0.5). The semantics are
// those of ARCHITECTURE.md, "Time series: aggregation".
type Agg uint64

// The aggregation functions. Over time, each applies to the samples of
// one window of one series; across series (GroupBy), to the values the
// series have for one window.
const (
	// Min is the smallest value; NaN is ignored unless every value is NaN.
	Min Agg = iota + 1
	// Max is the largest value; NaN is ignored unless every value is NaN.
	Max
	// Sum adds the values (compensated summation); a NaN makes it NaN,
	// as +Inf and -Inf together do.
	Sum
	// Count is the number of samples (NaN included); across series, the
	// number of series with a value in the window.
	Count
	// Avg is the mean (compensated, and free of overflow when the values
	// are finite); NaN propagates as in Sum.
	Avg
	// First is the value of the window's earliest sample, bit for bit.
	First
	// Last is the value of the window's latest sample, bit for bit.
	Last
	// Rate is the window's increase per second between its first and last
	// sample, counter resets handled; windows with fewer than two samples
	// have none. Across series, the rates are summed.
	Rate
)

// A quantile is quantileFlag | the bits of q (q in [0, 1] has the two top
// bits clear); q above 1 is kept as +Inf, NaN as one quiet NaN, and q
// below 0 as quantileBelow, a NaN pattern Quantile never makes otherwise.
const (
	quantileFlag  Agg    = 1 << 63
	quantileBelow uint64 = 0x7FF0000000000001
	quantileNaN   uint64 = 0x7FF8000000000000
)

// Quantile returns the aggregation to the q-quantile of the values: the
// values sorted (NaN first), the rank q*(n-1) interpolated linearly
// between its two neighbours, as Prometheus's quantile_over_time; at a
// whole rank, the value there. q below 0 gives -Inf, above 1 +Inf, NaN
// gives NaN, for every window. q is kept exactly when in [0, 1]; any q
// below 0 is Quantile(-Inf), any above 1 Quantile(+Inf), any NaN one NaN.
func Quantile(q float64) Agg {
	switch {
	case math.IsNaN(q):
		return quantileFlag | Agg(quantileNaN)
	case q < 0:
		return quantileFlag | Agg(quantileBelow)
	case q > 1:
		return quantileFlag | Agg(math.Float64bits(math.Inf(1)))
	case q == 0:
		return quantileFlag // -0 and 0 are the same quantile
	}
	return quantileFlag | Agg(math.Float64bits(q))
}

// Quantile returns q and true when a is a Quantile.
func (a Agg) Quantile() (float64, bool) {
	if a&quantileFlag == 0 {
		return 0, false
	}
	bits := uint64(a &^ quantileFlag)
	if bits == quantileBelow {
		return math.Inf(-1), true
	}
	return math.Float64frombits(bits), true
}

// Valid reports whether a is one of the aggregations.
func (a Agg) Valid() bool {
	if q, ok := a.Quantile(); ok {
		return Quantile(q) == a
	}
	return a >= Min && a <= Rate
}

func (a Agg) String() string {
	if q, ok := a.Quantile(); ok && a.Valid() {
		return "quantile(" + strconv.FormatFloat(q, 'g', -1, 64) + ")"
	}
	switch a {
	case Min:
		return "min"
	case Max:
		return "max"
	case Sum:
		return "sum"
	case Count:
		return "count"
	case Avg:
		return "avg"
	case First:
		return "first"
	case Last:
		return "last"
	case Rate:
		return "rate"
	}
	return fmt.Sprintf("Agg(%#x)", uint64(a))
}

// kind is an Agg without its quantile: aggQuantile for every quantile.
func (a Agg) kind() Agg {
	if a&quantileFlag != 0 {
		return quantileFlag
	}
	return a
}

// acc is the state of one window: O(1) for every aggregation but the
// quantiles, which keep the window's values.
type acc struct {
	n    int
	v    float64 // min, max, last, or the running sum
	c    float64 // the sum's compensation
	mean float64 // Avg once the sum overflowed; Rate: the last value
	incr bool    // Avg went to the incremental mean

	firstT, lastT int64 // Rate; its increase but the last value is in v, c

	vals []float64 // quantiles
}

func (s *acc) reset() {
	vals := s.vals[:0]
	*s = acc{vals: vals}
}

// kahanSumInc adds inc to sum with the compensation c (Neumaier's
// improvement of Kahan's summation); an infinite sum drops the
// compensation, which would otherwise turn it into NaN.
func kahanSumInc(inc, sum, c float64) (float64, float64) {
	t := sum + inc
	if t-t != 0 { // ±Inf (or NaN, whose compensation is NaN anyway)
		return t, 0
	}
	if math.Abs(sum) >= math.Abs(inc) {
		return t, c + ((sum - t) + inc)
	}
	return t, c + ((inc - t) + sum)
}

// add takes one value (and its time, which only Rate, First and Last use)
// of the window for kind k.
func (s *acc) add(k Agg, t int64, v float64) {
	s.n++
	switch k {
	case Min:
		if s.n == 1 || v < s.v || math.IsNaN(s.v) {
			s.v = v
		}
	case Max:
		if s.n == 1 || v > s.v || math.IsNaN(s.v) {
			s.v = v
		}
	case Sum:
		s.v, s.c = kahanSumInc(v, s.v, s.c)
	case Count:
	case Avg:
		s.addAvg(v)
	case First:
		if s.n == 1 {
			s.v = v
		}
	case Last:
		s.v = v
	case Rate:
		// The increase is last - first + the value before each reset
		// (the counter restarted from zero, so the increase since the
		// reset is the new value itself), summed in v, c as -first, the
		// values before resets, and at the end the last value.
		if s.n == 1 {
			s.firstT, s.v = t, -v
		} else if v < s.mean {
			s.v, s.c = kahanSumInc(s.mean, s.v, s.c)
		}
		s.lastT, s.mean = t, v
	default: // quantiles
		s.vals = append(s.vals, v)
	}
}

// addRun takes samples of one window, in order: add for each, with the
// switch out of the loop.
func (s *acc) addRun(k Agg, run []Sample) {
	if len(run) == 0 {
		return
	}
	switch k {
	case Min:
		for _, x := range run {
			s.n++
			if s.n == 1 || x.V < s.v || s.v != s.v {
				s.v = x.V
			}
		}
	case Max:
		for _, x := range run {
			s.n++
			if s.n == 1 || x.V > s.v || s.v != s.v {
				s.v = x.V
			}
		}
	case Sum:
		v, c := s.v, s.c
		for _, x := range run {
			v, c = kahanSumInc(x.V, v, c)
		}
		s.v, s.c = v, c
		s.n += len(run)
	case Count:
		s.n += len(run)
	case First:
		if s.n == 0 {
			s.v = run[0].V
		}
		s.n += len(run)
	case Last:
		s.v = run[len(run)-1].V
		s.n += len(run)
	case Avg:
		// The compensated sum while it stays finite, as addAvg.
		i := 0
		if !s.incr {
			v, c, n := s.v, s.c, s.n
			if n == 0 {
				v, c, n, i = run[0].V, 0, 1, 1
			}
			for ; i < len(run); i++ {
				sum, c2 := kahanSumInc(run[i].V, v, c)
				if math.IsInf(sum, 0) {
					break
				}
				v, c = sum, c2
				n++
			}
			s.v, s.c, s.n = v, c, n
		}
		for _, x := range run[i:] {
			s.n++
			s.addAvg(x.V)
		}
	case Rate:
		if s.n == 0 {
			s.add(k, run[0].T, run[0].V)
			run = run[1:]
		}
		prev, v, c := s.mean, s.v, s.c
		for _, x := range run {
			if x.V < prev {
				v, c = kahanSumInc(prev, v, c)
			}
			prev = x.V
		}
		if len(run) > 0 {
			s.n += len(run)
			s.mean, s.v, s.c, s.lastT = prev, v, c, run[len(run)-1].T
		}
	case quantileFlag:
		s.vals = slices.Grow(s.vals, len(run))
		for _, x := range run {
			s.vals = append(s.vals, x.V)
		}
		s.n += len(run)
	default:
		for _, x := range run {
			s.add(k, x.T, x.V)
		}
	}
}

// canRollup reports whether addRollup takes r for kind k exactly (a Sum
// or Avg up to the order of its additions); fresh: into an empty window
// (s as reset leaves it).
func (s *acc) canRollup(k Agg, r *Rollup, fresh bool) bool {
	switch k {
	case Min, Max, Sum, Count, First, Last, Rate:
		return true
	case Avg:
		// The compensated sum while it stays finite; past that the
		// incremental mean, which needs the values.
		if isInfOrNaN(r.Sum) {
			return false
		}
		if fresh || s.n == 0 {
			return true
		}
		sum, _ := kahanSumInc(r.Sum, s.v, s.c)
		return !s.incr && !isInfOrNaN(sum)
	}
	return false // quantiles
}

func isInfOrNaN(f float64) bool { return f-f != 0 }

// addRollup takes the samples r rolls up (canRollup said so) for kind k:
// what add would make of them, a sum added in another order.
func (s *acc) addRollup(k Agg, r *Rollup) {
	sumC := r.SumC
	if isInfOrNaN(r.Sum) {
		sumC = 0
	}
	first := s.n == 0
	switch k {
	case Min:
		if first || r.Min < s.v || s.v != s.v {
			s.v = r.Min
		}
	case Max:
		if first || r.Max > s.v || s.v != s.v {
			s.v = r.Max
		}
	case Sum, Avg:
		if first && k == Avg { // as addAvg
			s.v, s.c = r.Sum, sumC
		} else {
			s.v, s.c = kahanSumInc(r.Sum, s.v, s.c)
			if !isInfOrNaN(s.v) {
				s.c += sumC
			}
		}
	case First:
		if first {
			s.v = r.FirstV
		}
	case Last:
		s.v = r.LastV
	case Rate:
		if first {
			s.firstT, s.v, s.c = r.FirstT, -r.FirstV, 0
		} else if r.FirstV < s.mean {
			s.v, s.c = kahanSumInc(s.mean, s.v, s.c)
		}
		if r.Drops != 0 {
			s.v, s.c = kahanSumInc(r.Drops, s.v, s.c)
		}
		s.lastT, s.mean = r.LastT, r.LastV
	}
	s.n += r.Count
}

// addAvg is Prometheus's avg_over_time: a compensated sum while it stays
// finite, then the incremental mean, so finite values never overflow.
func (s *acc) addAvg(v float64) {
	if s.n == 1 {
		s.v, s.c = v, 0
		return
	}
	n := float64(s.n)
	if !s.incr {
		sum, c := kahanSumInc(v, s.v, s.c)
		if !math.IsInf(sum, 0) {
			s.v, s.c = sum, c
			return
		}
		s.incr = true
		s.mean = s.v / (n - 1)
		s.c /= n - 1
	}
	q := (n - 1) / n
	s.mean, s.c = kahanSumInc(v/n, q*s.mean, q*s.c)
}

// result is the window's value for kind k (q for quantiles); ok is false
// when the window has none (Rate with fewer than two samples).
func (s *acc) result(k Agg, q float64) (float64, bool) {
	switch k {
	case Min, Max, First, Last:
		return s.v, true
	case Sum:
		return s.v + s.c, true
	case Count:
		return float64(s.n), true
	case Avg:
		if s.incr {
			return s.mean + s.c, true
		}
		n := float64(s.n)
		return s.v/n + s.c/n, true
	case Rate:
		if s.n < 2 {
			return 0, false
		}
		sum, c := kahanSumInc(s.mean, s.v, s.c)
		increase := sum + c
		// lastT > firstT; the difference may not fit an int64.
		secs := float64(uint64(s.lastT)-uint64(s.firstT)) / 1000
		return increase / secs, true
	}
	return quantile(q, s.vals), true
}

// quantile returns the q-quantile of vals (which it sorts), as
// Prometheus's quantile_over_time: NaN sorts first, the rank q*(n-1) is
// interpolated between its neighbours. At a whole rank the value there
// is returned as is (Prometheus multiplies the neighbour by 0, which
// makes NaN of an infinite neighbour).
func quantile(q float64, vals []float64) float64 {
	switch {
	case len(vals) == 0 || math.IsNaN(q):
		return math.NaN()
	case q < 0:
		return math.Inf(-1)
	case q > 1:
		return math.Inf(1)
	}
	rank := q * float64(len(vals)-1)
	lo := int(math.Floor(rank))
	weight := rank - float64(lo)
	if weight == 0 || lo+1 >= len(vals) {
		return selectNth(vals, lo)
	}
	a := selectNth(vals, lo)
	// vals[lo+1:] holds the values at or above a: the next is their least.
	b := slices.MinFunc(vals[lo+1:], cmp.Compare[float64])
	return a*(1-weight) + b*weight
}

// selectNth reorders v so that v[k] is the value a sort (NaN first) would
// put there, everything before it at or below it and everything after
// at or above it, and returns v[k]: a quickselect, O(len(v)) expected,
// falling back to sorting when its pivots keep going wrong.
func selectNth(v []float64, k int) float64 {
	m := 0
	for i, x := range v {
		if x != x { // NaN
			v[i], v[m] = v[m], v[i]
			m++
		}
	}
	if k < m {
		return v[k]
	}
	w, k := v[m:], k-m
	lo, hi := 0, len(w)-1
	for budget := 2*bits.Len(uint(len(w))) + 8; hi > lo; budget-- {
		if budget == 0 {
			slices.Sort(w[lo : hi+1])
			break
		}
		mid := lo + (hi-lo)/2
		if w[mid] < w[lo] {
			w[mid], w[lo] = w[lo], w[mid]
		}
		if w[hi] < w[lo] {
			w[hi], w[lo] = w[lo], w[hi]
		}
		if w[hi] < w[mid] {
			w[hi], w[mid] = w[mid], w[hi]
		}
		p := w[mid]
		i, j := lo, hi
		for i <= j {
			for w[i] < p {
				i++
			}
			for p < w[j] {
				j--
			}
			if i <= j {
				w[i], w[j] = w[j], w[i]
				i++
				j--
			}
		}
		// w[lo..j] <= p <= w[i..hi]; anything between equals p.
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return w[k]
		}
	}
	return w[k]
}

package timeseries

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

var allAggs = []Agg{Min, Max, Sum, Count, Avg, First, Last, Rate,
	Quantile(0), Quantile(0.25), Quantile(0.5), Quantile(0.9), Quantile(0.99), Quantile(1),
	Quantile(-0.5), Quantile(1.5), Quantile(math.NaN())}

// refStart is the start of the window holding t, in big integers.
func refStart(t, from, step int64) int64 {
	if step <= 0 {
		return from
	}
	d := new(big.Int).Sub(big.NewInt(t), big.NewInt(from))
	d.Div(d, big.NewInt(step))
	d.Mul(d, big.NewInt(step))
	d.Add(d, big.NewInt(from))
	return d.Int64()
}

// refWindows groups the samples in [from, to) by window.
func refWindows(samples []Sample, from, to, step int64) (starts []int64, wins [][]Sample) {
	for _, s := range samples {
		if s.T < from || s.T >= to {
			continue
		}
		st := refStart(s.T, from, step)
		if len(starts) == 0 || starts[len(starts)-1] != st {
			starts = append(starts, st)
			wins = append(wins, nil)
		}
		wins[len(wins)-1] = append(wins[len(wins)-1], s)
	}
	return starts, wins
}

func values(ss []Sample) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = s.V
	}
	return out
}

// refQuantile: sort a copy, interpolate between the rank's neighbours.
func refQuantile(q float64, vs []float64) float64 {
	if len(vs) == 0 || math.IsNaN(q) {
		return math.NaN()
	}
	if q < 0 {
		return math.Inf(-1)
	}
	if q > 1 {
		return math.Inf(1)
	}
	s := slices.Clone(vs)
	sort.Float64s(s) // NaN first
	rank := q * float64(len(s)-1)
	lo := math.Floor(rank)
	w := rank - lo
	if w == 0 {
		return s[int(lo)]
	}
	return s[int(lo)]*(1-w) + s[int(lo)+1]*w
}

// refValue is fn of values the plain way; scale bounds the rounding
// error allowed (0: the result must be exact).
func refValue(fn Agg, vs []float64) (v, scale float64) {
	var absSum, maxAbs float64
	nan, pinf, ninf := false, false, false
	for _, x := range vs {
		switch {
		case math.IsNaN(x):
			nan = true
		case math.IsInf(x, 1):
			pinf = true
		case math.IsInf(x, -1):
			ninf = true
		default:
			absSum += math.Abs(x)
			maxAbs = max(maxAbs, math.Abs(x))
		}
	}
	if q, ok := fn.Quantile(); ok {
		return refQuantile(q, vs), 0
	}
	switch fn {
	case Min, Max:
		var keep []float64
		for _, x := range vs {
			if !math.IsNaN(x) {
				keep = append(keep, x)
			}
		}
		if len(keep) == 0 {
			return math.NaN(), 0
		}
		if fn == Min {
			return slices.Min(keep), 0
		}
		return slices.Max(keep), 0
	case Sum:
		s := 0.0
		for _, x := range vs {
			s += x
		}
		return s, absSum
	case Count:
		return float64(len(vs)), 0
	case Avg:
		switch {
		case nan || pinf && ninf:
			return math.NaN(), 0
		case pinf:
			return math.Inf(1), 0
		case ninf:
			return math.Inf(-1), 0
		}
		s := new(big.Float).SetPrec(4096)
		for _, x := range vs {
			s.Add(s, new(big.Float).SetFloat64(x))
		}
		s.Quo(s, new(big.Float).SetInt64(int64(len(vs))))
		f, _ := s.Float64()
		return f, maxAbs
	case First:
		return vs[0], 0
	case Last:
		return vs[len(vs)-1], 0
	}
	panic("refValue: " + fn.String())
}

// refRate is Prometheus's increase without extrapolation, per second.
func refRate(ws []Sample) (v, scale float64, ok bool) {
	if len(ws) < 2 {
		return 0, 0, false
	}
	// The scale: the terms' magnitudes, the infinite ones left out (a
	// sum with infinite terms is the same in any order).
	finite := func(x float64) float64 {
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return 0
		}
		return math.Abs(x)
	}
	inc := ws[len(ws)-1].V - ws[0].V
	abs := finite(ws[0].V) + finite(ws[len(ws)-1].V)
	for i := 1; i < len(ws); i++ {
		if ws[i].V < ws[i-1].V {
			inc += ws[i-1].V
			abs += finite(ws[i-1].V)
		}
	}
	d := new(big.Int).Sub(big.NewInt(ws[len(ws)-1].T), big.NewInt(ws[0].T))
	secs, _ := new(big.Float).Quo(new(big.Float).SetInt(d), big.NewFloat(1000)).Float64()
	return inc / secs, abs / secs, true
}

// refAggregate is Aggregate the plain way.
func refAggregate(samples []Sample, from, to, step int64, fn Agg) (out []Sample, scales []float64) {
	starts, wins := refWindows(samples, from, to, step)
	for i, ws := range wins {
		if fn == Rate {
			v, sc, ok := refRate(ws)
			if ok {
				out = append(out, Sample{starts[i], v})
				scales = append(scales, sc)
			}
			continue
		}
		v, sc := refValue(fn, values(ws))
		out = append(out, Sample{starts[i], v})
		scales = append(scales, sc)
	}
	return out, scales
}

// near: the same value (NaN equals NaN), or finite values within
// 1e-9*scale; a scale beyond float64 (values near its limit) allows any.
func near(got, want, scale float64) bool {
	if got == want || math.IsNaN(got) && math.IsNaN(want) {
		return true
	}
	if math.IsInf(scale, 0) {
		// Values near the float64 limit: whether a sum overflows
		// depends on the order of its terms; nothing to judge.
		return true
	}
	if math.IsNaN(got) || math.IsInf(got, 0) || math.IsNaN(want) || math.IsInf(want, 0) {
		return false
	}
	return math.Abs(got-want) <= 1e-9*scale
}

// randIn is uniform in [lo, hi] (lo <= hi).
func randIn(r *rand.Rand, lo, hi int64) int64 {
	span := uint64(hi) - uint64(lo)
	if span == math.MaxUint64 {
		return int64(r.Uint64())
	}
	return int64(uint64(lo) + r.Uint64N(span+1))
}

func satAdd(a, b int64) int64 {
	s := a + b
	if b > 0 && s < a {
		return math.MaxInt64
	}
	if b < 0 && s > a {
		return math.MinInt64
	}
	return s
}

// randQuery draws a range and a step: unaligned, empty, huge, extreme.
func randQuery(r *rand.Rand) (from, to, step int64) {
	switch r.IntN(8) {
	case 0: // the whole int64 line
		from, to = math.MinInt64+r.Int64N(3), math.MaxInt64-r.Int64N(3)
	case 1: // empty or one millisecond
		from = r.Int64N(2e6) - 1e6
		to = from + r.Int64N(2)
	case 2: // negative times
		from = -r.Int64N(1e12) - 1
		to = from + r.Int64N(1e6)
	default:
		from = r.Int64N(2e9) - 1e9
		to = from + r.Int64N(1e6)
	}
	span := uint64(to) - uint64(from)
	switch r.IntN(8) {
	case 0:
		step = -r.Int64N(5) // 0 or negative: one window
	case 1:
		step = 1
	case 2:
		step = math.MaxInt64
	case 3: // more than the range
		step = int64(min(span+1+r.Uint64N(1000), math.MaxInt64))
	case 4: // huge
		step = 1<<62 + r.Int64N(1<<60)
	default: // a fraction of the range, rarely dividing it
		n := uint64(1 + r.IntN(50))
		step = int64(max(span/n, 1)) + r.Int64N(7)
	}
	return from, to, step
}

// randSamples draws ascending samples around [from, to) in clusters, so
// windows get 0, 1, 2 and more samples; values mix counters with resets,
// noise, NaN, ±Inf, -0 and (when huge) values near the float64 limit.
func randSamples(r *rand.Rand, from, to, step int64, huge bool) []Sample {
	margin := max(int64((uint64(to)-uint64(from))/8), 5)
	lo, hi := satAdd(from, -margin), satAdd(to, margin)
	gap := int64(1)
	if step > 0 {
		gap = max(step/4, 1)
	} else if hi-lo > 0 {
		gap = max((hi-lo)/50, 1)
	}
	var ts []int64
	for range r.IntN(40) {
		t := randIn(r, lo, hi)
		for range 1 + r.IntN(4) {
			ts = append(ts, t)
			t = satAdd(t, 1+r.Int64N(gap))
		}
	}
	slices.Sort(ts)
	ts = slices.Compact(ts)
	out := make([]Sample, len(ts))
	counter := r.IntN(2) == 0
	v := 0.0
	for i, t := range ts {
		if counter {
			v += r.Float64() * 10
			if r.IntN(10) == 0 {
				v = r.Float64() * 5 // a reset
			}
		} else {
			v = r.NormFloat64() * 100
		}
		x := v
		switch r.IntN(40) {
		case 0:
			x = math.NaN()
		case 1:
			x = math.Inf(1)
		case 2:
			x = math.Inf(-1)
		case 3:
			x = math.Copysign(0, -1)
		case 4:
			if huge {
				x = math.MaxFloat64 * (r.Float64()*2 - 1)
			}
		}
		out[i] = Sample{t, x}
	}
	return out
}

func sameBits(a, b []Sample) bool {
	return slices.EqualFunc(a, b, func(x, y Sample) bool {
		return x.T == y.T && math.Float64bits(x.V) == math.Float64bits(y.V)
	})
}

func TestAggregateAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	windows := map[int]int{} // samples per window -> windows seen
	for iter := range 3000 {
		from, to, step := randQuery(r)
		samples := randSamples(r, from, to, step, iter%3 == 0)
		for _, fn := range allAggs {
			got, err := Aggregate(samples, from, to, step, fn)
			if err != nil {
				t.Fatalf("iter %d %v: %v", iter, fn, err)
			}
			want, scales := refAggregate(samples, from, to, step, fn)
			if len(got) != len(want) {
				t.Fatalf("iter %d %v [%d,%d) step %d: %d windows, want %d\ngot  %v\nwant %v\nsamples %v", iter, fn, from, to, step, len(got), len(want), got, want, samples)
			}
			for i := range got {
				if got[i].T != want[i].T || !near(got[i].V, want[i].V, scales[i]) {
					t.Fatalf("iter %d %v [%d,%d) step %d: window %d = %v, want %v\nsamples %v", iter, fn, from, to, step, i, got[i], want[i], samples)
				}
			}
			if fn == First || fn == Last {
				if !sameBits(got, want) {
					t.Fatalf("iter %d %v: not bit for bit: %v, want %v", iter, fn, got, want)
				}
			}
			// Streamed in random chunks: the same bits.
			a, err := NewAggregator(from, to, step, fn)
			if err != nil {
				t.Fatal(err)
			}
			for rest := samples; len(rest) > 0; {
				n := min(r.IntN(5), len(rest))
				if n == 0 {
					if err := a.Add(rest[0]); err != nil {
						t.Fatal(err)
					}
					rest = rest[1:]
					continue
				}
				if err := a.AddAll(rest[:n]); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			streamed, err := a.Result()
			if err != nil || !sameBits(streamed, got) {
				t.Fatalf("iter %d %v: streamed %v, %v; at once %v", iter, fn, streamed, err, got)
			}
		}
		_, wins := refWindows(samples, from, to, step)
		for _, w := range wins {
			windows[min(len(w), 3)]++
		}
	}
	// The draw covers windows of one, two and more samples (and empty
	// ones, which the gaps between clusters make).
	for n := 1; n <= 3; n++ {
		if windows[n] < 100 {
			t.Fatalf("only %d windows with %d samples: %v", windows[n], n, windows)
		}
	}
}

// Without NaN, Rate's increase is the sum over consecutive samples of
// the rise, or of the new value after a drop (a reset).
func TestRatePairwise(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for iter := range 2000 {
		var ss []Sample
		tm, v := r.Int64N(1e6)-5e5, 0.0
		for range 2 + r.IntN(30) {
			tm += 1 + r.Int64N(5000)
			if r.IntN(5) == 0 {
				v = r.Float64() * 3
			} else {
				v += r.Float64() * 100
			}
			ss = append(ss, Sample{tm, v})
		}
		inc, abs := 0.0, 0.0
		for i := 1; i < len(ss); i++ {
			if ss[i].V < ss[i-1].V {
				inc += ss[i].V
			} else {
				inc += ss[i].V - ss[i-1].V
			}
			abs += math.Abs(ss[i].V) + math.Abs(ss[i-1].V)
		}
		secs := float64(ss[len(ss)-1].T-ss[0].T) / 1000
		got, err := Aggregate(ss, ss[0].T, ss[len(ss)-1].T+1, 0, Rate)
		if err != nil || len(got) != 1 || got[0].T != ss[0].T || !near(got[0].V, inc/secs, abs/secs) {
			t.Fatalf("iter %d: %v, %v; want %v (samples %v)", iter, got, err, inc/secs, ss)
		}
	}
}

func TestAggregateSemantics(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	at := func(vs ...float64) []Sample {
		out := make([]Sample, len(vs))
		for i, v := range vs {
			out[i] = Sample{int64(i) * 1000, v}
		}
		return out
	}
	for _, c := range []struct {
		fn   Agg
		in   []Sample
		want float64 // NaN: NaN; absent: see none
		none bool
	}{
		{Min, at(nan, 3, 1, nan), 1, false},
		{Min, at(nan, nan), nan, false},
		{Max, at(nan, 3, 1, nan), 3, false},
		{Max, at(-inf, nan), -inf, false},
		{Sum, at(1, nan, 2), nan, false},
		{Sum, at(inf, 1), inf, false},
		{Sum, at(inf, -inf), nan, false},
		{Sum, at(1e100, 1, -1e100), 1, false}, // compensated
		{Avg, at(1, nan), nan, false},
		{Avg, at(math.MaxFloat64, math.MaxFloat64), math.MaxFloat64, false},
		{Avg, at(1, 2, 3, 4), 2.5, false},
		{Count, at(nan, nan, 1), 3, false},
		{First, at(nan, 1), nan, false},
		{Last, at(1, -inf), -inf, false},
		// 10 -> 20 (+10), reset to 5 (+5), 15 (+10): 25 over 3 s.
		{Rate, at(10, 20, 5, 15), 25.0 / 3, false},
		{Rate, at(7), 0, true},
		{Rate, at(5, 5), 0, false},
		{Quantile(0.5), at(4, 1, 3, 2), 2.5, false},
		{Quantile(0), at(4, 1, 3, 2), 1, false},
		{Quantile(1), at(4, 1, 3, 2), 4, false},
		{Quantile(0.9), at(1, 2), 1.9, false},
		{Quantile(0), at(1, inf), 1, false}, // a whole rank: no 0*Inf
		{Quantile(-0.1), at(1, 2), -inf, false},
		{Quantile(7), at(1, 2), inf, false},
		{Quantile(nan), at(1, 2), nan, false},
		{Quantile(0.5), at(nan, 1, 2), 1, false}, // NaN sorts first
	} {
		got, err := Aggregate(c.in, -10, 1e9, 0, c.fn)
		if err != nil {
			t.Fatalf("%v %v: %v", c.fn, c.in, err)
		}
		if c.none {
			if len(got) != 0 {
				t.Fatalf("%v %v: %v, want no window", c.fn, c.in, got)
			}
			continue
		}
		if len(got) != 1 || got[0].T != -10 || !near(got[0].V, c.want, 1e-6) {
			t.Fatalf("%v %v: %v, want %v at -10", c.fn, c.in, got, c.want)
		}
	}

	// Windows: stamped with their start, empty ones left out, the last
	// cut at to, samples outside [from, to) ignored.
	in := []Sample{{-7, 1}, {-5, 2}, {-4, 3}, {3, 4}, {4, 5}, {12, 6}, {13, 7}}
	got, err := Aggregate(in, -5, 13, 4, Count)
	want := []Sample{{-5, 2}, {3, 2}, {11, 1}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("windows: %v, %v; want %v", got, err, want)
	}
}

func TestAggregateErrors(t *testing.T) {
	for _, fn := range []Agg{0, Rate + 1, quantileFlag | 12345 | 1<<62, quantileFlag | Agg(math.Float64bits(2))} {
		if fn.Valid() {
			t.Fatalf("%v is valid", fn)
		}
		if _, err := Aggregate(nil, 0, 10, 1, fn); !errors.Is(err, ErrInvalidQuery) {
			t.Fatalf("%v: %v", fn, err)
		}
		if _, err := GroupBy(nil, nil, fn); !errors.Is(err, ErrInvalidQuery) {
			t.Fatalf("GroupBy %v: %v", fn, err)
		}
	}
	if _, err := NewAggregator(10, 9, 1, Sum); !errors.Is(err, ErrInvalidQuery) {
		t.Fatalf("from after to: %v", err)
	}
	// Out of order, even outside [from, to), and a repeated time.
	for _, in := range [][]Sample{{{5, 1}, {4, 1}}, {{5, 1}, {5, 2}}, {{100, 1}, {99, 1}}, {{-3, 1}, {-4, 1}}} {
		if _, err := Aggregate(in, 0, 50, 10, Sum); !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("%v: %v", in, err)
		}
	}
	// The error stays: a caller that ignores Add's error gets it from Result.
	a, _ := NewAggregator(0, 100, 10, Sum)
	_ = a.Add(Sample{20, 1})
	_ = a.Add(Sample{10, 1})
	_ = a.Add(Sample{30, 1})
	if out, err := a.Result(); !errors.Is(err, ErrOutOfOrder) || out != nil {
		t.Fatalf("after an out-of-order sample: %v, %v", out, err)
	}
	// Nothing is added after Result.
	a, _ = NewAggregator(0, 100, 10, Sum)
	_ = a.Add(Sample{20, 1})
	first, err := a.Result()
	again, err2 := a.Result()
	if err != nil || err2 != nil || !slices.Equal(first, again) || len(first) != 1 {
		t.Fatalf("Result twice: %v %v, %v %v", first, err, again, err2)
	}
	if err := a.Add(Sample{30, 1}); !errors.Is(err, ErrInvalidQuery) {
		t.Fatalf("Add after Result: %v", err)
	}
}

func TestAggValues(t *testing.T) {
	half := 0.5
	if Quantile(half) != Quantile(0.5) || Quantile(math.Copysign(0, -1)) != Quantile(0) ||
		Quantile(-3) != Quantile(math.Inf(-1)) || Quantile(3) != Quantile(math.Inf(1)) ||
		Quantile(math.NaN()) != Quantile(-math.NaN()) || Quantile(0.5) == Quantile(0.50000001) {
		t.Fatal("quantiles do not compare as their q")
	}
	seen := map[Agg]bool{}
	for _, fn := range allAggs {
		if !fn.Valid() {
			t.Fatalf("%v invalid", fn)
		}
		if seen[fn] && fn != Quantile(math.NaN()) {
			t.Fatalf("%v twice", fn)
		}
		seen[fn] = true
	}
	for fn, s := range map[Agg]string{Min: "min", Rate: "rate", Quantile(0.99): "quantile(0.99)", Quantile(-2): "quantile(-Inf)", Quantile(math.NaN()): "quantile(NaN)"} {
		if fn.String() != s {
			t.Fatalf("%v, want %s", fn, s)
		}
	}
	for range 1000 {
		q := rand.Float64()
		if got, ok := Quantile(q).Quantile(); !ok || got != q {
			t.Fatalf("Quantile(%v) keeps %v", q, got)
		}
	}
}

// selectNth agrees with sorting on every index, NaN and repeats included.
func TestSelectNth(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 3000 {
		n := 1 + r.IntN(60)
		vs := make([]float64, n)
		for i := range vs {
			switch r.IntN(6) {
			case 0:
				vs[i] = math.NaN()
			case 1:
				vs[i] = float64(r.IntN(3)) // repeats
			case 2:
				vs[i] = math.Inf(2*r.IntN(2) - 1)
			default:
				vs[i] = r.NormFloat64()
			}
		}
		sorted := slices.Clone(vs)
		sort.Float64s(sorted)
		k := r.IntN(n)
		work := slices.Clone(vs)
		got := selectNth(work, k)
		if !(got == sorted[k] || math.IsNaN(got) && math.IsNaN(sorted[k])) {
			t.Fatalf("%v: %d-th %v, want %v", vs, k, got, sorted[k])
		}
		for i, x := range work {
			if i < k && (x > got || math.IsNaN(got) && !math.IsNaN(x)) || i > k && (x < got || math.IsNaN(x) && !math.IsNaN(got)) {
				t.Fatalf("%v: after selecting %d: %v", vs, k, work)
			}
		}
	}
	// Adversarial orders stay correct (and fall back to sorting).
	for _, n := range []int{1000, 4096} {
		vs := make([]float64, n)
		for i := range vs {
			vs[i] = float64(i % 2 * i) // organ-pipe-like
		}
		sorted := slices.Clone(vs)
		slices.Sort(sorted)
		for _, k := range []int{0, n / 2, n - 1} {
			if got := selectNth(slices.Clone(vs), k); got != sorted[k] {
				t.Fatalf("n %d k %d: %v want %v", n, k, got, sorted[k])
			}
		}
	}
}

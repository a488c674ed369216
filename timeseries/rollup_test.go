package timeseries

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// rollupOf is a run's rollup as a stored chunk summary makes it: min and
// max ignoring NaN, a plain Neumaier sum (its compensation NaN once the
// sum is infinite), drops summed plainly.
func rollupOf(run []Sample) Rollup {
	r := Rollup{Count: len(run), Min: math.NaN(), Max: math.NaN(), FirstT: run[0].T, FirstV: run[0].V,
		LastT: run[len(run)-1].T, LastV: run[len(run)-1].V}
	for i, x := range run {
		if x.V == x.V {
			if r.Min != r.Min || x.V < r.Min {
				r.Min = x.V
			}
			if r.Max != r.Max || x.V > r.Max {
				r.Max = x.V
			}
		}
		t := r.Sum + x.V
		if math.Abs(r.Sum) >= math.Abs(x.V) {
			r.SumC += (r.Sum - t) + x.V
		} else {
			r.SumC += (x.V - t) + r.Sum
		}
		r.Sum = t
		if i > 0 && x.V < run[i-1].V {
			r.Drops += run[i-1].V
		}
	}
	return r
}

// Runs of samples given by their rollups where AddRollup takes them, the
// others as samples: the reference's answer (sums up to their order).
func TestAggregateRollupsAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	taken, refused := map[Agg]int{}, map[Agg]int{}
	for iter := range 3000 {
		from, to, step := randQuery(r)
		samples := randSamples(r, from, to, step, iter%3 == 0)
		for _, fn := range allAggs {
			a, err := NewAggregator(from, to, step, fn)
			if err != nil {
				t.Fatal(err)
			}
			for rest := samples; len(rest) > 0; {
				n := 1 + r.IntN(min(len(rest), 6))
				ru := rollupOf(rest[:n])
				ok, err := a.AddRollup(&ru)
				if err != nil {
					t.Fatalf("iter %d %v: %v", iter, fn, err)
				}
				if ok {
					taken[fn]++
				} else {
					refused[fn]++
					if err := a.AddAll(rest[:n]); err != nil {
						t.Fatal(err)
					}
				}
				rest = rest[n:]
			}
			got, err := a.Result()
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
			if (fn == First || fn == Last || fn == Min || fn == Max || fn == Count) && !sameBits(got, want) {
				t.Fatalf("iter %d %v: not bit for bit: %v, want %v", iter, fn, got, want)
			}
		}
	}
	for _, fn := range []Agg{Min, Max, Sum, Count, Avg, First, Last, Rate} {
		if taken[fn] < 1000 || refused[fn] < 1000 {
			t.Errorf("%v: %d rollups taken, %d refused", fn, taken[fn], refused[fn])
		}
	}
	if taken[Quantile(0.5)] != 0 {
		t.Errorf("a quantile took %d rollups", taken[Quantile(0.5)])
	}
}

func TestAddRollupRefuses(t *testing.T) {
	a, _ := NewAggregator(0, 100, 10, Avg)
	// A sum that overflows: Avg goes to the incremental mean, which
	// needs the values.
	big := []Sample{{1, math.MaxFloat64}, {2, math.MaxFloat64}}
	if ru := rollupOf(big); must(a.AddRollup(&ru)) {
		t.Fatal("took an overflowing rollup for Avg")
	}
	first := rollupOf(big[:1])
	if !must(a.AddRollup(&first)) {
		t.Fatal("refused a finite rollup")
	}
	second := rollupOf([]Sample{{2, math.MaxFloat64}})
	if must(a.AddRollup(&second)) {
		t.Fatal("took a rollup whose sum with the window's overflows")
	}
	if err := a.AddAll(big[1:]); err != nil {
		t.Fatal(err)
	}
	// Across a window boundary, outside the range: refused.
	for _, ru := range []Rollup{rollupOf([]Sample{{15, 1}, {21, 2}}), rollupOf([]Sample{{95, 1}, {100, 2}})} {
		if must(a.AddRollup(&ru)) {
			t.Fatalf("took %+v", ru)
		}
	}
	got, err := a.Result()
	if err != nil || len(got) != 1 || got[0].V != math.MaxFloat64 {
		t.Fatalf("Avg: %v, %v", got, err)
	}
	// Before the last sample: out of order, and it sticks.
	b, _ := NewAggregator(0, 100, 10, Sum)
	ru := rollupOf([]Sample{{5, 1}, {6, 2}})
	if !must(b.AddRollup(&ru)) {
		t.Fatal("refused")
	}
	if _, err := b.AddRollup(&ru); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("a rollup out of order: %v", err)
	}
	if _, err := b.Result(); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("Result after: %v", err)
	}
}

func must(ok bool, err error) bool {
	if err != nil {
		panic(err)
	}
	return ok
}

package timeseries

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// refGroupKey names a series' group the plain way: by's names, sorted,
// each with the series' value, those without one left out.
func refGroupKey(ls Labels, by []string) string {
	names := slices.Clone(by)
	slices.Sort(names)
	names = slices.Compact(names)
	var b strings.Builder
	for _, n := range names {
		for _, l := range ls {
			if l.Name == n {
				b.WriteString(n + "\x00" + l.Value + "\x00")
			}
		}
	}
	return b.String()
}

func TestGroupByAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	bys := [][]string{nil, {"host"}, {"dc", "host"}, {"host", "dc", "host"}, {MetricLabel}, {"absent"}, {MetricLabel, "dc"}}
	for iter := range 1500 {
		// Series of two metrics over hosts and data centres (either
		// label sometimes missing), each with windows on a grid of 60
		// from a random start, some left out, a few off the grid.
		var results []SeriesResult
		base := r.Int64N(1e6) - 5e5
		for range r.IntN(25) {
			m := map[string]string{MetricLabel: []string{"cpu", "mem"}[r.IntN(2)]}
			if r.IntN(5) > 0 {
				m["host"] = string(rune('a' + r.IntN(4)))
			}
			if r.IntN(3) > 0 {
				m["dc"] = []string{"x", "y"}[r.IntN(2)]
			}
			ls, err := FromMap(m)
			if err != nil {
				t.Fatal(err)
			}
			var ss []Sample
			for w := range int64(20) {
				if r.IntN(3) == 0 {
					continue
				}
				tm := base + w*60
				if r.IntN(30) == 0 {
					tm += 1 + r.Int64N(58)
				}
				v := r.NormFloat64() * 50
				switch r.IntN(30) {
				case 0:
					v = math.NaN()
				case 1:
					v = math.Inf(1)
				case 2:
					v = math.Inf(-1)
				}
				ss = append(ss, Sample{tm, v})
			}
			results = append(results, SeriesResult{ls, ss})
		}
		by := bys[r.IntN(len(bys))]
		for _, fn := range []Agg{Min, Max, Sum, Count, Avg, Rate, Quantile(0.5), Quantile(0.9), Quantile(2)} {
			got, err := GroupBy(results, by, fn)
			if err != nil {
				t.Fatalf("iter %d %v by %v: %v", iter, fn, by, err)
			}
			// The reference: each group's values at each time.
			type refGroup struct {
				labels Labels
				at     map[int64][]float64
			}
			want := map[string]*refGroup{}
			for _, res := range results {
				if len(res.Samples) == 0 {
					continue
				}
				key := refGroupKey(res.Labels, by)
				g := want[key]
				if g == nil {
					var ls Labels
					for _, l := range res.Labels {
						if slices.Contains(by, l.Name) {
							ls = append(ls, l)
						}
					}
					g = &refGroup{labels: ls, at: map[int64][]float64{}}
					want[key] = g
				}
				for _, s := range res.Samples {
					g.at[s.T] = append(g.at[s.T], s.V)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("iter %d %v by %v: %d groups, want %d", iter, fn, by, len(got), len(want))
			}
			for i, gr := range got {
				if i > 0 && got[i-1].Labels.String() >= gr.Labels.String() {
					t.Fatalf("iter %d: groups out of order: %v then %v", iter, got[i-1].Labels, gr.Labels)
				}
				g := want[refGroupKey(gr.Labels, by)]
				if g == nil || !slices.Equal(g.labels, gr.Labels) {
					t.Fatalf("iter %d %v by %v: a group %v the reference lacks", iter, fn, by, gr.Labels)
				}
				ts := make([]int64, 0, len(g.at))
				for tm := range g.at {
					ts = append(ts, tm)
				}
				slices.Sort(ts)
				if len(ts) != len(gr.Samples) {
					t.Fatalf("iter %d %v by %v: group %v has %d times, want %d", iter, fn, by, gr.Labels, len(gr.Samples), len(ts))
				}
				for j, tm := range ts {
					vs := g.at[tm]
					var v, scale float64
					switch fn {
					case Count:
						v = float64(len(vs))
					case Rate:
						v, scale = refValue(Sum, vs)
					default:
						v, scale = refValue(fn, vs)
					}
					if s := gr.Samples[j]; s.T != tm || !near(s.V, v, scale) {
						t.Fatalf("iter %d %v by %v: group %v at %d: %v, want %v of %v", iter, fn, by, gr.Labels, tm, s, v, vs)
					}
				}
			}
		}
	}
}

// GroupBy over the windows Aggregate makes: sum by host of the rates.
func TestGroupByRates(t *testing.T) {
	var results []SeriesResult
	for i, host := range []string{"a", "a", "b"} {
		ls, _ := ParseSeries(`http_requests{host="` + host + `",core="` + string(rune('0'+i)) + `"}`)
		var ss []Sample
		for s := range int64(120) { // 2 minutes at 1 s, +i a second
			ss = append(ss, Sample{s * 1000, float64(s * int64(i+1))})
		}
		w, err := Aggregate(ss, 0, 120_000, 60_000, Rate)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, SeriesResult{ls, w})
	}
	got, err := GroupBy(results, []string{"host"}, Rate)
	if err != nil {
		t.Fatal(err)
	}
	want := []SeriesResult{
		{Labels{{"host", "a"}}, []Sample{{0, 3}, {60_000, 3}}},
		{Labels{{"host", "b"}}, []Sample{{0, 3}, {60_000, 3}}},
	}
	if len(got) != len(want) {
		t.Fatalf("%v, want %v", got, want)
	}
	for i := range got {
		if !slices.Equal(got[i].Labels, want[i].Labels) || !slices.Equal(got[i].Samples, want[i].Samples) {
			t.Fatalf("%v, want %v", got, want)
		}
	}
}

func TestGroupByErrors(t *testing.T) {
	ls, _ := ParseSeries(`cpu{host="a"}`)
	for _, fn := range []Agg{First, Last} {
		if _, err := GroupBy([]SeriesResult{{ls, []Sample{{1, 1}}}}, nil, fn); !errors.Is(err, ErrInvalidQuery) {
			t.Fatalf("%v: %v", fn, err)
		}
	}
	for _, ss := range [][]Sample{{{2, 1}, {1, 1}}, {{2, 1}, {2, 1}}} {
		_, err := GroupBy([]SeriesResult{{ls, []Sample{{1, 1}}}, {ls, ss}}, []string{"host"}, Sum)
		if !errors.Is(err, ErrOutOfOrder) || !strings.Contains(err.Error(), `cpu{host="a"}`) {
			t.Fatalf("%v: %v", ss, err)
		}
	}
	// No series, or none with samples: no groups.
	for _, in := range [][]SeriesResult{nil, {{ls, nil}}} {
		if out, err := GroupBy(in, nil, Sum); err != nil || len(out) != 0 {
			t.Fatalf("%v: %v, %v", in, out, err)
		}
	}
}

func TestUnionTimes(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for range 500 {
		var lists [][]int64
		set := map[int64]bool{}
		for range r.IntN(12) {
			var l []int64
			for tm := int64(r.IntN(5)); tm < 60; tm += 1 + r.Int64N(6) {
				l = append(l, tm)
				set[tm] = true
			}
			lists = append(lists, l)
		}
		got := unionTimes(lists)
		var want []int64
		for tm := range set {
			want = append(want, tm)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%v: %v, want %v", lists, got, want)
		}
		for _, l := range lists {
			j := 0
			for _, tm := range l {
				j = seek(got, j, tm)
				if got[j] != tm {
					t.Fatalf("seek %d in %v: %d", tm, got, j)
				}
			}
		}
	}
}

// Label values may hold any byte: groups that differ only there stay
// apart.
func TestGroupByKeyBytes(t *testing.T) {
	a := Labels{{"a", "x\x00b\x00y"}}
	b := Labels{{"a", "x"}, {"b", "y"}}
	out, err := GroupBy([]SeriesResult{{a, []Sample{{0, 1}}}, {b, []Sample{{0, 2}}}}, []string{"a", "b"}, Sum)
	if err != nil || len(out) != 2 {
		t.Fatalf("%v, %v: want two groups", out, err)
	}
}

package timeseries

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// daySeries is a day of one series at 1 s: a counter with resets.
func daySeries() []Sample {
	r := rand.New(rand.NewPCG(11, 12))
	ss := make([]Sample, 86_400)
	v := 0.0
	for i := range ss {
		v += r.Float64() * 10
		if r.IntN(10_000) == 0 {
			v = 0
		}
		ss[i] = Sample{1_700_000_000_000 + int64(i)*1000, v}
	}
	return ss
}

// BenchmarkAggregateDay: 86,400 samples, by minute and in one window.
func BenchmarkAggregateDay(b *testing.B) {
	ss := daySeries()
	from, to := ss[0].T, ss[len(ss)-1].T+1
	for _, step := range []struct {
		name string
		step int64
	}{{"minute", 60_000}, {"one", 0}} {
		for _, fn := range []Agg{Min, Max, Sum, Count, Avg, First, Last, Rate, Quantile(0.99)} {
			b.Run(fmt.Sprintf("%s/%v", step.name, fn), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Aggregate(ss, from, to, step.step, fn); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// groupInput is 1,000 series of an hour at 15 s, labelled host (10
// values) and instance.
func groupInput() []SeriesResult {
	r := rand.New(rand.NewPCG(13, 14))
	out := make([]SeriesResult, 1000)
	for i := range out {
		ls, err := FromMap(map[string]string{MetricLabel: "requests", "host": fmt.Sprintf("h%d", i%10), "instance": fmt.Sprint(i)})
		if err != nil {
			panic(err)
		}
		ss := make([]Sample, 240)
		v := 0.0
		for j := range ss {
			v += r.Float64() * 100
			ss[j] = Sample{1_700_000_000_000 + int64(j)*15_000, v}
		}
		out[i] = SeriesResult{ls, ss}
	}
	return out
}

// BenchmarkGroupBy: 1,000 series × an hour at 15 s grouped by a label
// of 10 values. "windows" aggregates each series by minute (Aggregate)
// and groups those; "raw" groups the 240 samples of each series as they
// are.
func BenchmarkGroupBy(b *testing.B) {
	in := groupInput()
	from, to := in[0].Samples[0].T, in[0].Samples[239].T+1
	for _, fn := range []Agg{Sum, Avg, Max, Count, Rate, Quantile(0.9)} {
		b.Run(fmt.Sprintf("windows/%v", fn), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				per := make([]SeriesResult, len(in))
				for i, s := range in {
					w, err := Aggregate(s.Samples, from, to, 60_000, fn)
					if err != nil {
						b.Fatal(err)
					}
					per[i] = SeriesResult{s.Labels, w}
				}
				if _, err := GroupBy(per, []string{"host"}, fn); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("raw/%v", fn), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := GroupBy(in, []string{"host"}, fn); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package tsdb

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries"
)

// benchDay returns a store holding a UTC day of one series at 1 s
// (86,400 samples), written in 24 operations of an hour and compacted
// into one cold state, as the bench module's series workload does: a
// gauge with two decimals, or a counter with resets.
func benchDay(b *testing.B, counter bool) (memStore, string, int64) {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	day := BucketOf(1_700_000_000_000)
	samples := make([]timeseries.Sample, 86_400)
	v := 50.0
	for i := range samples {
		if counter {
			v += float64(rng.IntN(20))
			if rng.IntN(20_000) == 0 {
				v = 0
			}
		} else {
			v = math.Round((v+rng.NormFloat64())*100) / 100
		}
		samples[i] = timeseries.Sample{T: day + int64(i)*1000, V: v}
	}
	var ops [][]byte
	for i := 0; i < len(samples); i += 3600 {
		c, err := EncodeSamples(samples[i : i+3600])
		if err != nil {
			b.Fatal(err)
		}
		op := AppendLocalOperand(nil, c)
		oplog.StampLocal(op, oplog.Timestamp(i+1))
		ops = append(ops, op)
	}
	m := &Merger{Self: self, Cold: true}
	name := `bench_1s{job="q"}`
	state, err := m.Merge(nil, ops, nil, false)
	if err != nil {
		b.Fatal(err)
	}
	return memStore{string(ChunkKey(nil, name, day)): state}, name, day
}

// BenchmarkAggregateDay is Aggregate over a day at 1 s, compacted into
// one cold state, at a 1 minute step (1,440 windows) and as one window.
func BenchmarkAggregateDay(b *testing.B) {
	gauge, gname, day := benchDay(b, false)
	counter, cname, _ := benchDay(b, true)
	for _, step := range []struct {
		name string
		ms   int64
	}{{"step1m", 60_000}, {"window", 0}} {
		for _, fn := range []timeseries.Agg{timeseries.Sum, timeseries.Max, timeseries.Avg, timeseries.Count,
			timeseries.Rate, timeseries.Quantile(0.99)} {
			st, name := gauge, gname
			if fn == timeseries.Rate {
				st, name = counter, cname
			}
			b.Run(step.name+"/"+fn.String(), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Aggregate(st, self, name, day, day+BucketMillis, step.ms, fn); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/86_400, "ns/sample")
			})
		}
	}
}

// BenchmarkDecodeDay is the decoding floor under BenchmarkAggregateDay.
func BenchmarkDecodeDay(b *testing.B) {
	st, name, day := benchDay(b, false)
	v := st[string(ChunkKey(nil, name, day))]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeSamplesIn(v, self, day, day+BucketMillis); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/86_400, "ns/sample")
	b.ReportMetric(float64(len(v))/86_400, "bytes/sample")
}

// BenchmarkAggregateHour is one series of AggregateSeries: an hour of a
// day at 15 s, compacted cold, avg by 15 s.
func BenchmarkAggregateHour(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	day := BucketOf(1_700_000_000_000)
	samples := make([]timeseries.Sample, 5760)
	for i := range samples {
		samples[i] = timeseries.Sample{T: day + int64(i)*15_000, V: math.Round(rng.Float64()*10000) / 100}
	}
	c, err := EncodeSamples(samples)
	if err != nil {
		b.Fatal(err)
	}
	op := AppendLocalOperand(nil, c)
	oplog.StampLocal(op, 1)
	state, err := (&Merger{Self: self, Cold: true}).Merge(nil, [][]byte{op}, nil, false)
	if err != nil {
		b.Fatal(err)
	}
	const name = `bench_15s{job="q"}`
	st := memStore{string(ChunkKey(nil, name, day)): state}
	from := day + 7*3_600_000
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Aggregate(st, self, name, from, from+3_600_000, 15_000, timeseries.Avg); err != nil {
			b.Fatal(err)
		}
	}
}

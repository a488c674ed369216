package tsdb

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries"
)

var (
	self  = oplog.ReplicaID{1}
	peerA = oplog.ReplicaID{2}
	peerB = oplog.ReplicaID{3}
)

// write is one samples operation: its stamp and samples.
type write struct {
	st      Stamp
	samples []timeseries.Sample
}

func (w write) operand(t testing.TB) []byte {
	c, err := EncodeSamples(w.samples)
	if err != nil {
		t.Fatal(err)
	}
	if w.st.Origin == self {
		v := AppendLocalOperand(nil, c)
		oplog.StampLocal(v, w.st.HLC)
		return v
	}
	return AppendRemoteOperand(nil, w.st.HLC, w.st.Origin, c)
}

func randomWrites(rng *rand.Rand, n int, bucket int64) []write {
	var ws []write
	origins := []oplog.ReplicaID{self, peerA, peerB}
	for range n {
		k := 1 + rng.IntN(30)
		ts := map[int64]bool{}
		for range k {
			ts[bucket+rng.Int64N(200)*1000] = true
		}
		var samples []timeseries.Sample
		for _, t := range slices.Sorted(func(yield func(int64) bool) {
			for t := range ts {
				if !yield(t) {
					return
				}
			}
		}) {
			v := float64(rng.IntN(1000)) / 10
			if rng.IntN(50) == 0 {
				v = math.NaN()
			}
			samples = append(samples, timeseries.Sample{T: t, V: v})
		}
		// An origin stamps each of its writes with its own HLC.
		ws = append(ws, write{st: Stamp{HLC: oplog.Timestamp(1 + rng.IntN(40)*100 + len(ws)), Origin: origins[rng.IntN(3)]}, samples: samples})
	}
	return ws
}

// reference folds writes: for each T the sample of the highest stamp.
func reference(ws []write) []timeseries.Sample {
	best := map[int64]struct {
		v  float64
		st Stamp
	}{}
	for _, w := range ws {
		for _, s := range w.samples {
			if b, ok := best[s.T]; !ok || w.st.Above(b.st) {
				best[s.T] = struct {
					v  float64
					st Stamp
				}{s.V, w.st}
			}
		}
	}
	var out []timeseries.Sample
	for t, b := range best {
		out = append(out, timeseries.Sample{T: t, V: b.v})
	}
	slices.SortFunc(out, func(a, b timeseries.Sample) int { return int(a.T - b.T) })
	return out
}

func sameSamples(a, b []timeseries.Sample) bool {
	return slices.EqualFunc(a, b, func(x, y timeseries.Sample) bool {
		return x.T == y.T && math.Float64bits(x.V) == math.Float64bits(y.V)
	})
}

// TestMergeIsLastWriterWinsInAnyGrouping folds random writes in random
// orders and groupings, hot and cold: every way gives the reference's
// samples, and the same stamps.
func TestMergeIsLastWriterWinsInAnyGrouping(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 300 {
		bucket := BucketOf(rng.Int64N(1<<40) - 1<<39)
		ws := randomWrites(rng, 1+rng.IntN(12), bucket)
		want := reference(ws)
		var first *Chunk
		for range 3 {
			order := rng.Perm(len(ws))
			m := &Merger{Self: self, Cold: rng.IntN(2) == 0}
			var state []byte
			has := false
			for i := 0; i < len(order); {
				n := 1 + rng.IntN(len(order)-i)
				var ops [][]byte
				for _, k := range order[i : i+n] {
					ops = append(ops, ws[k].operand(t))
				}
				var err error
				if state, err = m.Merge(nil, ops, state, has); err != nil {
					t.Fatalf("iter %d: %v", iter, err)
				}
				has = true
				i += n
			}
			c, err := DecodeChunk(state, self)
			if err != nil {
				t.Fatalf("iter %d: decode: %v", iter, err)
			}
			if !sameSamples(c.Samples, want) {
				t.Fatalf("iter %d: got %v, want %v", iter, c.Samples, want)
			}
			if first == nil {
				first = c
			} else if !slices.Equal(c.Stamps, first.Stamps) || !slices.Equal(c.Of, first.Of) {
				t.Fatalf("iter %d: stamps depend on the folding order", iter)
			}
			if s := Summarize(c.Samples); !sameSummary(s, c.Summary) {
				t.Fatalf("iter %d: stored summary %+v, want %+v", iter, c.Summary, s)
			}
		}
	}
}

func sameSummary(a, b Summary) bool {
	eq := func(x, y float64) bool { return math.Float64bits(x) == math.Float64bits(y) }
	return a.Count == b.Count && eq(a.Min, b.Min) && eq(a.Max, b.Max) && eq(a.Sum, b.Sum) && eq(a.SumC, b.SumC) &&
		eq(a.Drops, b.Drops) && a.FirstT == b.FirstT && a.LastT == b.LastT && eq(a.FirstV, b.FirstV) &&
		eq(a.LastV, b.LastV) && a.hasMinMaxNonNaN == b.hasMinMaxNonNaN
}

// TestSummaryMergeMatchesAggregate: summaries merged over consecutive
// runs give what the aggregation functions give on all the samples.
func TestSummaryMergeMatchesAggregate(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for iter := range 500 {
		n := 1 + rng.IntN(60)
		samples := make([]timeseries.Sample, n)
		v := 0.0
		for i := range samples {
			switch rng.IntN(10) {
			case 0:
				v = float64(rng.IntN(5)) // a reset
			case 1:
				if rng.IntN(5) == 0 {
					v = math.NaN()
					samples[i] = timeseries.Sample{T: int64(i) * 1000, V: v}
					v = 1
					continue
				}
			}
			v += float64(rng.IntN(100)) / 4
			samples[i] = timeseries.Sample{T: int64(i) * 1000, V: v}
		}
		var s Summary
		for i := 0; i < n; {
			k := 1 + rng.IntN(n-i)
			part := Summarize(samples[i : i+k])
			s.Merge(&part)
			i += k
		}
		check := func(fn timeseries.Agg, got float64, tol float64) {
			t.Helper()
			res, err := timeseries.Aggregate(samples, 0, int64(n)*1000, 0, fn)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) == 0 {
				return
			}
			want := res[0].V
			if math.IsNaN(want) != math.IsNaN(got) || !math.IsNaN(want) && math.Abs(got-want) > tol*math.Max(1, math.Abs(want)) {
				t.Fatalf("iter %d: %v = %v, want %v", iter, fn, got, want)
			}
		}
		check(timeseries.Min, s.Min, 0)
		check(timeseries.Max, s.Max, 0)
		check(timeseries.Count, float64(s.Count), 0)
		check(timeseries.First, s.FirstV, 0)
		check(timeseries.Last, s.LastV, 0)
		check(timeseries.Sum, s.Sum+s.SumC, 1e-12)
		if s.Count > 1 {
			check(timeseries.Rate, s.Increase()/(float64(s.LastT-s.FirstT)/1000), 1e-9)
		}
	}
}

func TestDecodeRefusesDamage(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	ws := randomWrites(rng, 5, 0)
	var ops [][]byte
	for _, w := range ws {
		ops = append(ops, w.operand(t))
	}
	for _, cold := range []bool{false, true} {
		state, err := (&Merger{Self: self, Cold: cold}).Merge(nil, ops, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		for i := range state {
			if _, err := DecodeChunk(state[:i], self); !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("cold %v: truncated to %d: %v", cold, i, err)
			}
		}
	}
	if _, err := DecodeOperand([]byte{kindOperand, 7, 0, 0, 0, 0, 0, 0, 0, 0}); !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("unknown flags: %v", err)
	}
}

func TestKeys(t *testing.T) {
	for _, b := range []int64{0, BucketMillis, -BucketMillis, BucketOf(MinTime), BucketOf(MaxTime)} {
		k := ChunkKey(nil, `cpu{host="a"}`, b)
		name, got, err := ParseChunkKey(k)
		if err != nil || name != `cpu{host="a"}` || got != b {
			t.Fatalf("bucket %d: %q %d %v", b, name, got, err)
		}
	}
	// Chunks sort by time first, then series.
	a := ChunkKey(nil, "cpu2", -BucketMillis)
	b := ChunkKey(nil, "cpu", 0)
	c := ChunkKey(nil, "cpu2", 0)
	if !(string(a) < string(b) && string(b) < string(c)) {
		t.Fatal("chunk keys out of order")
	}
	if f, l, ok := bucketRange(5, 2*BucketMillis+1); !ok || f != 0 || l != 2*BucketMillis {
		t.Fatal("bucketRange")
	}
	if BucketOf(-1) != -BucketMillis || BucketOf(BucketMillis-1) != 0 {
		t.Fatal("BucketOf")
	}
}

// TestColdBlocksDecodeInRange: a cold chunk is cut in blocks, and a read
// of part of its day decodes only the blocks that overlap it.
func TestColdBlocksDecodeInRange(t *testing.T) {
	var samples []timeseries.Sample
	for i := range 5000 {
		samples = append(samples, timeseries.Sample{T: int64(i) * 15000, V: float64(i%97) / 4}) // 20.8 h
	}
	c, err := EncodeSamples(samples[:5000])
	if err != nil {
		t.Fatal(err)
	}
	op := AppendLocalOperand(nil, c)
	oplog.StampLocal(op, 7)
	state, err := (&Merger{Self: self, Cold: true}).Merge(nil, [][]byte{op}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	all, err := DecodeSamples(state, self)
	if err != nil || !sameSamples(all, samples) {
		t.Fatalf("whole chunk: %d samples, %v", len(all), err)
	}
	from, to := int64(2000)*15000, int64(2100)*15000
	part, err := DecodeSamplesIn(state, self, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(part) >= len(samples) || len(part) < 100 {
		t.Fatalf("a range of 100 samples decoded %d", len(part))
	}
	var in []timeseries.Sample
	for _, s := range part {
		if s.T >= from && s.T < to {
			in = append(in, s)
		}
	}
	if !sameSamples(in, samples[2000:2100]) {
		t.Fatalf("the range's samples differ")
	}
	// Every truncation is refused.
	for i := range state {
		if _, err := DecodeSamplesIn(state[:i], self, from, to); err == nil {
			t.Fatalf("truncated to %d: accepted", i)
		}
	}
}

// TestColdBlocksOfManySamples: a day of millisecond samples (more than a
// cold block holds in a quarter of the day) folds and decodes.
func TestColdBlocksOfManySamples(t *testing.T) {
	m := &Merger{Self: self, Cold: true}
	var ops [][]byte
	var want []timeseries.Sample
	for k := range 6 {
		var samples []timeseries.Sample
		for i := range 60000 {
			samples = append(samples, timeseries.Sample{T: int64(k*60000 + i), V: float64(i % 13)})
		}
		want = append(want, samples...)
		c, err := EncodeSamples(samples)
		if err != nil {
			t.Fatal(err)
		}
		op := AppendLocalOperand(nil, c)
		oplog.StampLocal(op, oplog.Timestamp(k+1))
		ops = append(ops, op)
	}
	state, err := m.Merge(nil, ops, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSamples(state, self)
	if err != nil || !sameSamples(got, want) {
		t.Fatalf("%d samples, %v", len(got), err)
	}
}

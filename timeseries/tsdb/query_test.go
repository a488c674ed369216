package tsdb

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries"
)

// memStore is a Store of folded chunk states.
type memStore map[string][]byte

func (m memStore) Span(lo, hi []byte) (first, last []byte, ok bool, err error) {
	err = m.Scan(lo, hi, func(k, _ []byte) error {
		if !ok {
			first, ok = bytes.Clone(k), true
		}
		last = bytes.Clone(k)
		return nil
	})
	return first, last, ok, err
}

func (m memStore) Scan(lo, hi []byte, fn func(key, value []byte) error) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		if bytes.Compare([]byte(k), lo) >= 0 && bytes.Compare([]byte(k), hi) < 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn([]byte(k), m[k]); err != nil {
			return err
		}
	}
	return nil
}

// fill writes samples of a series as operations of at most 20 samples,
// split by bucket, folded as the engine's compactions would.
func fill(t testing.TB, rng *rand.Rand, st memStore, name string, samples []timeseries.Sample) {
	m := &Merger{Self: self, Cold: true}
	hlc := oplog.Timestamp(1)
	for i := 0; i < len(samples); {
		j := i + 1
		for j < len(samples) && j-i < 20 && BucketOf(samples[j].T) == BucketOf(samples[i].T) {
			j++
		}
		c, err := EncodeSamples(samples[i:j])
		if err != nil {
			t.Fatal(err)
		}
		op := AppendLocalOperand(nil, c)
		oplog.StampLocal(op, hlc)
		hlc++
		key := string(ChunkKey(nil, name, BucketOf(samples[i].T)))
		old, has := st[key]
		if st[key], err = m.Merge(nil, [][]byte{op}, old, has); err != nil {
			t.Fatal(err)
		}
		i = j
	}
}

func TestQueryAndAggregate(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	st := memStore{}
	var want []timeseries.Sample
	v := 0.0
	base := BucketOf(1_700_000_000_000)
	for i := range 400 {
		v += float64(rng.IntN(100))
		if rng.IntN(40) == 0 {
			v = 0 // a counter reset
		}
		want = append(want, timeseries.Sample{T: base + int64(i)*15*60*1000 + rng.Int64N(1000), V: v})
	}
	fill(t, rng, st, `req_total{job="a"}`, want)
	fill(t, rng, st, `req_total{job="ab"}`, []timeseries.Sample{{T: base, V: 1}}) // a neighbour name

	got, err := Query(st, self, `req_total{job="a"}`, math.MinInt64, math.MaxInt64)
	if err != nil || !sameSamples(got, want) {
		t.Fatalf("Query all: %d samples, %v; want %d", len(got), err, len(want))
	}
	fns := []timeseries.Agg{timeseries.Min, timeseries.Max, timeseries.Sum, timeseries.Count, timeseries.Avg,
		timeseries.First, timeseries.Last, timeseries.Rate, timeseries.Quantile(0.9)}
	end := want[len(want)-1].T + 1
	for iter := range 200 {
		from, to, step := base+rng.Int64N(3*BucketMillis), end-rng.Int64N(2*BucketMillis), rng.Int64N(2*BucketMillis)
		if iter%3 == 0 { // aligned to buckets: whole chunks come from rollups
			from, to, step = base, base+5*BucketMillis, BucketMillis*int64(1+rng.IntN(2))
		}
		if from > to {
			from, to = to, from
		}
		raw, err := Query(st, self, `req_total{job="a"}`, from, to)
		if err != nil {
			t.Fatal(err)
		}
		var inRange []timeseries.Sample
		for _, s := range want {
			if s.T >= from && s.T < to {
				inRange = append(inRange, s)
			}
		}
		if !sameSamples(raw, inRange) {
			t.Fatalf("iter %d: Query [%d, %d): %d samples, want %d", iter, from, to, len(raw), len(inRange))
		}
		for _, fn := range fns {
			got, err := Aggregate(st, self, `req_total{job="a"}`, from, to, step, fn)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := timeseries.Aggregate(inRange, from, to, step, fn)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, ref, func(a, b timeseries.Sample) bool {
				return a.T == b.T && (a.V == b.V || math.Abs(a.V-b.V) <= 1e-9*math.Max(1, math.Abs(b.V)))
			}) {
				t.Fatalf("iter %d: %v over [%d, %d) by %d:\n got %v\nwant %v", iter, fn, from, to, step, got, ref)
			}
		}
	}
}

func TestIndexSelect(t *testing.T) {
	x := NewIndex()
	for _, s := range []string{`cpu{host="a"}`, `cpu{host="b"}`, `mem{host="a"}`} {
		if err := x.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Add(`cpu{host="a"}`); err != nil || x.Len() != 3 {
		t.Fatalf("adding twice: %v, %d series", err, x.Len())
	}
	if err := x.Add(`cpu{ host="a"}`); err == nil {
		t.Fatal("a name not in canonical form was indexed")
	}
	ms, err := timeseries.ParseSelector(`{host="a"}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := x.Select(ms...); !slices.Equal(got, []string{`cpu{host="a"}`, `mem{host="a"}`}) {
		t.Fatalf("Select: %v", got)
	}
	st := memStore{string(SeriesKey(nil, `cpu{host="a"}`)): {1}, string(SeriesKey(nil, `up`)): {1}}
	y := NewIndex()
	if err := y.Load(st); err != nil || y.Len() != 2 || !y.Has("up") {
		t.Fatalf("Load: %v, %d", err, y.Len())
	}
}

// dayWrites returns random writes of one day: over a pool of timestamps
// (dense: all day long, every quarter's cold block; else an hour's few),
// each write a random ascending subset with its own values (counters
// with resets, now and then NaN) and stamp, so they overlap, repeat
// timestamps and come in no order of T.
func dayWrites(rng *rand.Rand, bucket int64, dense bool) []write {
	var pool []int64
	if dense {
		for t := bucket + rng.Int64N(5000); t < bucket+BucketMillis; t += 1 + rng.Int64N(60_000) {
			pool = append(pool, t)
		}
	} else {
		at := bucket + rng.Int64N(BucketMillis-3_600_000)
		for range 1 + rng.IntN(40) {
			pool = append(pool, at+rng.Int64N(3_600_000))
		}
		slices.Sort(pool)
		pool = slices.Compact(pool)
	}
	origins := []oplog.ReplicaID{self, peerA, peerB}
	var ws []write
	for range 1 + rng.IntN(12) {
		var samples []timeseries.Sample
		v := float64(rng.IntN(100))
		for _, t := range pool {
			if rng.IntN(3) != 0 {
				continue
			}
			v += float64(rng.IntN(1000)) / 8
			switch rng.IntN(60) {
			case 0:
				v = 0 // a counter reset
			case 1:
				samples = append(samples, timeseries.Sample{T: t, V: math.NaN()})
				continue
			}
			samples = append(samples, timeseries.Sample{T: t, V: v})
		}
		if len(samples) > 0 {
			ws = append(ws, write{st: Stamp{HLC: oplog.Timestamp(1 + rng.IntN(1000)), Origin: origins[rng.IntN(3)]}, samples: samples})
		}
	}
	return ws
}

// Aggregate over chunks stored every way a read meets them (cold states
// of many blocks, hot states, raw states a read folded, a lone operand),
// folded from overlapping writes, against the reference over the folded
// samples: windows aligned to days, to minutes, and not at all.
func TestAggregateOverStatesAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	fns := []timeseries.Agg{timeseries.Min, timeseries.Max, timeseries.Sum, timeseries.Count, timeseries.Avg,
		timeseries.First, timeseries.Last, timeseries.Rate, timeseries.Quantile(0.99), timeseries.Quantile(0.5)}
	forms := map[string]int{}
	for round := range 12 {
		st := memStore{}
		const name = `req_total{job="a"}`
		base := BucketOf(1_700_000_000_000) + int64(round)*10*BucketMillis
		var want []timeseries.Sample
		for d := range int64(4) {
			bucket := base + d*BucketMillis
			if rng.IntN(5) == 0 {
				continue // a day without a chunk
			}
			ws := dayWrites(rng, bucket, rng.IntN(3) != 0)
			if len(ws) == 0 {
				continue
			}
			key := string(ChunkKey(nil, name, bucket))
			var ops [][]byte
			for _, w := range ws {
				ops = append(ops, w.operand(t))
			}
			form := []string{"cold", "raw", "operand", "folded twice"}[rng.IntN(4)]
			var err error
			switch form {
			case "cold":
				st[key], err = (&Merger{Self: self, Cold: true}).Merge(nil, ops, nil, false)
			case "raw":
				st[key], err = (&Merger{Self: self}).Merge(nil, ops, nil, false)
			case "operand":
				ws, st[key] = ws[:1], ops[0]
			case "folded twice": // a cold state, then later writes folded by a read
				k := rng.IntN(len(ops))
				var cold []byte
				if cold, err = (&Merger{Self: self, Cold: true}).Merge(nil, ops[:k], nil, false); err == nil {
					st[key], err = (&Merger{Self: self}).Merge(nil, ops[k:], cold, true)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			if form == "cold" {
				c, err := DecodeChunk(st[key], self)
				if err != nil {
					t.Fatal(err)
				}
				if len(c.Samples) >= coldFrom {
					form = "cold blocks"
				}
			}
			forms[form]++
			want = append(want, reference(ws)...)
		}
		end := base + 4*BucketMillis
		for iter := range 60 {
			var from, to, step int64
			switch iter % 4 {
			case 0: // whole days
				from, to, step = base+rng.Int64N(2)*BucketMillis, end, BucketMillis*(1+rng.Int64N(2))
			case 1: // minutes and hours from a minute
				from = base + rng.Int64N(4*24*60)*60_000
				to = from + rng.Int64N(end-from+1)
				step = []int64{60_000, 3_600_000, 6 * 3_600_000, 0}[rng.IntN(4)]
			case 2: // anywhere
				from, to = base+rng.Int64N(end-base), base+rng.Int64N(end-base)
				if from > to {
					from, to = to, from
				}
				step = rng.Int64N(BucketMillis)
			case 3: // one window
				from, to, step = base-rng.Int64N(BucketMillis), end+rng.Int64N(BucketMillis), 0
			}
			var inRange []timeseries.Sample
			for _, s := range want {
				if s.T >= from && s.T < to {
					inRange = append(inRange, s)
				}
			}
			raw, err := Query(st, self, name, from, to)
			if err != nil || !sameSamples(raw, inRange) {
				t.Fatalf("round %d iter %d: Query [%d, %d): %d samples, %v; want %d", round, iter, from, to, len(raw), err, len(inRange))
			}
			var iterated []timeseries.Sample
			if err := Iterate(st, self, name, from, to, func(s []timeseries.Sample) error {
				iterated = append(iterated, s...)
				return nil
			}); err != nil || !sameSamples(iterated, inRange) {
				t.Fatalf("round %d iter %d: Iterate [%d, %d): %d samples, %v; want %d", round, iter, from, to, len(iterated), err, len(inRange))
			}
			for _, fn := range fns {
				got, err := Aggregate(st, self, name, from, to, step, fn)
				if err != nil {
					t.Fatal(err)
				}
				ref, err := timeseries.Aggregate(inRange, from, to, step, fn)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.EqualFunc(got, ref, func(a, b timeseries.Sample) bool {
					return a.T == b.T && (a.V == b.V || math.IsNaN(a.V) && math.IsNaN(b.V) ||
						math.Abs(a.V-b.V) <= 1e-9*math.Max(1, math.Abs(b.V)))
				}) {
					t.Fatalf("round %d iter %d: %v over [%d, %d) by %d:\n got %v\nwant %v", round, iter, fn, from, to, step, got, ref)
				}
			}
		}
	}
	for _, f := range []string{"cold blocks", "raw", "operand", "folded twice"} {
		if forms[f] == 0 {
			t.Errorf("no chunk stored as %s: %v", f, forms)
		}
	}
}

// A damaged chunk is an error wrapping ErrCorruption, not an answer:
// samples out of order (the Aggregator finds them, not the decoder), a
// chunk under another day's key.
func TestAggregateRefusesDamage(t *testing.T) {
	bucket := BucketOf(1_700_000_000_000)
	samples := []timeseries.Sample{{T: bucket + 1000, V: 1}, {T: bucket + 2000, V: 2}, {T: bucket + 3000, V: 3}}
	c, err := EncodeSamples(samples)
	if err != nil {
		t.Fatal(err)
	}
	op := AppendLocalOperand(nil, c)
	oplog.StampLocal(op, 5)
	state, err := (&Merger{Self: self}).Merge(nil, [][]byte{op}, nil, false) // raw
	if err != nil {
		t.Fatal(err)
	}
	const name = `x`
	swapped := slices.Clone(state)
	n := len(swapped)
	copy(swapped[n-32:n-16], state[n-16:])
	copy(swapped[n-16:], state[n-32:n-16])
	for _, tc := range []struct {
		what string
		st   memStore
		fn   timeseries.Agg
		step int64
	}{
		{what: "out of order, decoded", st: memStore{string(ChunkKey(nil, name, bucket)): swapped}, fn: timeseries.Quantile(0.5)},
		{what: "out of order, by 1.5 s", st: memStore{string(ChunkKey(nil, name, bucket)): swapped}, fn: timeseries.Sum, step: 1500},
		{what: "under another day", st: memStore{string(ChunkKey(nil, name, bucket+BucketMillis)): state}, fn: timeseries.Sum},
	} {
		_, err := Aggregate(tc.st, self, name, bucket-BucketMillis, bucket+3*BucketMillis, tc.step, tc.fn)
		if !errors.Is(err, errs.ErrCorruption) {
			t.Errorf("%s: %v", tc.what, err)
		}
	}
}

package tsdb

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

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

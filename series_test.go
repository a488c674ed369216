package pluresdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries"
)

// seriesModel is what a series should hold: per timestamp the value of
// the write that wins.
type seriesModel map[string]map[int64]float64

func (m seriesModel) samples(series string, from, to int64) []timeseries.Sample {
	var out []timeseries.Sample
	for t, v := range m[series] {
		if t >= from && t < to {
			out = append(out, timeseries.Sample{T: t, V: v})
		}
	}
	slices.SortFunc(out, func(a, b timeseries.Sample) int { return int(a.T - b.T) })
	return out
}

func sameSamples(t testing.TB, what string, got, want []timeseries.Sample) {
	t.Helper()
	if !slices.EqualFunc(got, want, func(a, b timeseries.Sample) bool {
		return a.T == b.T && math.Float64bits(a.V) == math.Float64bits(b.V)
	}) {
		t.Fatalf("%s: %d samples, want %d\n got %v\nwant %v", what, len(got), len(want), head(got), head(want))
	}
}

func head(s []timeseries.Sample) []timeseries.Sample {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

const day = timeseries.BucketMillis

// TestSeriesRoundTrip: appends in any order, repeated timestamps, across
// days, special values; read back across a flush, a compaction (chunks
// encoded cold) and a reopen.
func TestSeriesRoundTrip(t *testing.T) {
	fs := vfs.NewMem()
	opts := &Options{FS: fs, MemtableSize: 1 << 20}
	db, err := Open("/db", opts)
	must(t, err)
	rng := rand.New(rand.NewPCG(1, 2))
	m := seriesModel{}
	names := []string{`cpu{host="a",core="0"}`, `cpu{core="1",host="a"}`, `mem{host="b"}`, `up`}
	canon := func(s string) string { c, err := timeseries.Canonical(s); must(t, err); return c }
	base := int64(1_750_000_000_000)
	specials := []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), math.SmallestNonzeroFloat64}
	for i := range 400 {
		name := names[rng.IntN(len(names))]
		var samples []timeseries.Sample
		for range 1 + rng.IntN(40) {
			ts := base + rng.Int64N(4*day)/15000*15000 // some timestamps repeat
			v := float64(rng.IntN(10000)) / 100
			if rng.IntN(30) == 0 {
				v = specials[rng.IntN(len(specials))]
			}
			samples = append(samples, timeseries.Sample{T: ts, V: v})
		}
		must(t, db.AppendSamples(name, samples...))
		c := canon(name)
		if m[c] == nil {
			m[c] = map[int64]float64{}
		}
		for _, s := range samples { // the later sample of a call wins
			m[c][s.T] = s.V
		}
		switch i {
		case 150:
			must(t, db.Flush())
		case 300:
			must(t, db.compactRange([]byte{nsSeries}, []byte{nsSeries + 1}))
		}
	}
	check := func(what string) {
		t.Helper()
		for _, name := range names {
			got, err := db.QuerySamples(name, math.MinInt64, math.MaxInt64)
			must(t, err)
			sameSamples(t, what+" "+name, got, m.samples(canon(name), math.MinInt64, math.MaxInt64))
			from, to := base+day/2, base+3*day+17
			got, err = db.QuerySamples(name, from, to)
			must(t, err)
			sameSamples(t, what+" range "+name, got, m.samples(canon(name), from, to))
			var it []timeseries.Sample
			must(t, db.IterateSamples(name, from, to, func(s []timeseries.Sample) error { it = append(it, s...); return nil }))
			sameSamples(t, what+" iterate "+name, it, m.samples(canon(name), from, to))
		}
		got, err := db.SelectSeries(`cpu{host="a"}`)
		if err != nil || !slices.Equal(got, []string{`cpu{core="0",host="a"}`, `cpu{core="1",host="a"}`}) {
			t.Fatalf("%s: SelectSeries: %v %v", what, got, err)
		}
	}
	check("live")
	must(t, db.compactRange([]byte{nsSeries}, []byte{nsSeries + 1}))
	check("compacted")
	must(t, db.Close())
	db, err = Open("/db", opts)
	must(t, err)
	defer db.Close()
	check("reopened")

	// Bad input says so.
	for _, bad := range []func() error{
		func() error { return db.AppendSamples("cpu{", timeseries.Sample{T: 1, V: 1}) },
		func() error { return db.AppendSamples("cpu", timeseries.Sample{T: timeseries.MaxTime + 1, V: 1}) },
		func() error { _, err := db.QuerySamples("cpu{host=}", 0, 1); return err },
		func() error { _, err := db.SelectSeries("{"); return err },
	} {
		if err := bad(); !errors.Is(err, timeseries.ErrInvalidSeries) {
			t.Fatalf("bad input: %v, want ErrInvalidSeries", err)
		}
	}
}

// TestSeriesCrash: appends made with NoSync and synced, a power cut:
// every synced append is there after the reopen (replayed from the log),
// the series index included.
func TestSeriesCrash(t *testing.T) {
	mem := vfs.NewMem()
	db, err := Open("/db", &Options{FS: mem, NoSync: true})
	must(t, err)
	for i := range 100 {
		must(t, db.AppendSamples(fmt.Sprintf(`s{i="%d"}`, i%7), timeseries.Sample{T: int64(i) * 1000, V: float64(i)}))
	}
	b := db.NewBatch()
	must(t, b.AppendSamples(`s{i="last"}`, timeseries.Sample{T: 5, V: 5}))
	must(t, b.Commit(&WriteOptions{Sync: true}))
	crashed := mem.CrashClone()
	db.Close()
	db, err = Open("/db", &Options{FS: crashed})
	must(t, err)
	defer db.Close()
	names, err := db.SelectSeries(`{i=~".+"}`)
	must(t, err)
	if len(names) != 8 {
		t.Fatalf("after the crash: %d series, want 8: %v", len(names), names)
	}
	got, err := db.QuerySamples(`s{i="3"}`, 0, math.MaxInt64)
	must(t, err)
	if len(got) != 14 { // i = 3, 10, ..., 94
		t.Fatalf("after the crash: %d samples of s{i=\"3\"}, want 14", len(got))
	}
}

// TestSeriesReplicasConverge: three replicas append to the same series,
// with repeated timestamps, exchange changes in random orders, and end
// with the same samples; a later write of a timestamp wins everywhere.
func TestSeriesReplicasConverge(t *testing.T) {
	fs := vfs.NewMem()
	dbs := []*DB{openReplica(t, fs, "/a"), openReplica(t, fs, "/b"), openReplica(t, fs, "/c")}
	defer func() {
		for _, db := range dbs {
			db.Close()
		}
	}()
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 6 {
		for i, db := range dbs {
			for range 20 {
				var samples []timeseries.Sample
				for range 1 + rng.IntN(10) {
					samples = append(samples, timeseries.Sample{T: rng.Int64N(3*day) / 60000 * 60000, V: float64(i*1000 + round)})
				}
				must(t, db.AppendSamples(fmt.Sprintf(`temp{room="%d"}`, rng.IntN(3)), samples...))
			}
		}
		for range 4 {
			a, b := rng.IntN(3), rng.IntN(3)
			if a != b {
				syncPair(t, dbs[a], dbs[b])
			}
		}
		if round == 3 {
			must(t, dbs[1].compactRange([]byte{nsSeries}, []byte{nsSeries + 1}))
		}
	}
	for range 2 {
		for a := range dbs {
			for b := range dbs {
				if a != b {
					syncPair(t, dbs[a], dbs[b])
				}
			}
		}
	}
	for room := range 3 {
		name := fmt.Sprintf(`temp{room="%d"}`, room)
		want, err := dbs[0].QuerySamples(name, math.MinInt64, math.MaxInt64)
		must(t, err)
		if len(want) == 0 {
			t.Fatalf("%s: no samples", name)
		}
		for i := 1; i < 3; i++ {
			got, err := dbs[i].QuerySamples(name, math.MinInt64, math.MaxInt64)
			must(t, err)
			sameSamples(t, fmt.Sprintf("replica %d, %s", i, name), got, want)
		}
	}
	// A later write of an existing timestamp wins on every replica.
	must(t, dbs[2].AppendSamples(`temp{room="0"}`, timeseries.Sample{T: 0, V: -1}))
	for a := range dbs {
		for b := range dbs {
			if a != b {
				syncPair(t, dbs[a], dbs[b])
			}
		}
	}
	for i, db := range dbs {
		got, err := db.QuerySamples(`temp{room="0"}`, 0, 1)
		must(t, err)
		if len(got) != 1 || got[0].V != -1 {
			t.Fatalf("replica %d: %v, want the last write", i, got)
		}
		names, err := db.SelectSeries(`temp`)
		if err != nil || len(names) != 3 {
			t.Fatalf("replica %d: SelectSeries %v %v", i, names, err)
		}
	}
	// The change feed and the history carry the operations.
	var buf bytes.Buffer
	n, err := dbs[0].ExportChanges(&buf, oplog.VersionVector{})
	must(t, err)
	if n == 0 {
		t.Fatal("no operations exported")
	}
}

// TestAggregateSeries checks Aggregate and AggregateSeries against the
// aggregation of the raw samples.
func TestAggregateSeries(t *testing.T) {
	db := openReplica(t, vfs.NewMem(), "/db")
	defer db.Close()
	base := int64(1_750_000_000_000) / day * day
	var raw = map[string][]timeseries.Sample{}
	for host := range 4 {
		for dc := range 2 {
			name := fmt.Sprintf(`req_total{host="h%d",dc="d%d"}`, host, dc)
			v := 0.0
			var all []timeseries.Sample
			for i := range 2 * 24 * 60 {
				v += float64(host + 1)
				all = append(all, timeseries.Sample{T: base + int64(i)*60000, V: v})
			}
			for i := 0; i < len(all); i += 100 {
				must(t, db.AppendSamples(name, all[i:min(i+100, len(all))]...))
			}
			c, _ := timeseries.Canonical(name)
			raw[c] = all
		}
	}
	must(t, db.Flush())
	must(t, db.compactRange([]byte{nsSeries}, []byte{nsSeries + 1}))
	for _, fn := range []timeseries.Agg{timeseries.Sum, timeseries.Max, timeseries.Rate, timeseries.Count, timeseries.Quantile(0.5)} {
		for _, step := range []int64{3600_000, day, 0} {
			got, err := db.Aggregate(`req_total{host="h1",dc="d0"}`, base, base+2*day, step, fn)
			must(t, err)
			want, err := timeseries.Aggregate(raw[`req_total{dc="d0",host="h1"}`], base, base+2*day, step, fn)
			must(t, err)
			if len(got) != len(want) {
				t.Fatalf("%v by %d: %d windows, want %d", fn, step, len(got), len(want))
			}
			for i := range got {
				if got[i].T != want[i].T || math.Abs(got[i].V-want[i].V) > 1e-9*math.Max(1, math.Abs(want[i].V)) {
					t.Fatalf("%v by %d, window %d: %v, want %v", fn, step, i, got[i], want[i])
				}
			}
		}
	}
	res, err := db.AggregateSeries(`req_total`, base, base+2*day, day, timeseries.Rate, []string{"dc"}, timeseries.Sum)
	must(t, err)
	if len(res) != 2 || res[0].Labels.Get("dc") != "d0" || len(res[0].Samples) != 2 {
		t.Fatalf("AggregateSeries: %+v", res)
	}
	// Each host's counter rises by host+1 per minute: 10 per minute summed.
	if r := res[0].Samples[0].V; math.Abs(r-10.0/60) > 1e-9 {
		t.Fatalf("sum of rates by dc: %v, want %v", r, 10.0/60)
	}
}

// TestSeriesSnapshot: a replica bootstrapped from a snapshot holds the
// series (samples and index) and goes on by sync; a snapshot joined into
// a replica with its own samples keeps, per timestamp, the later write.
func TestSeriesSnapshot(t *testing.T) {
	fs := vfs.NewMem()
	a := openReplica(t, fs, "/a")
	defer a.Close()
	for i := range 50 {
		must(t, a.AppendSamples(fmt.Sprintf(`load{cpu="%d"}`, i%4), timeseries.Sample{T: int64(i) * 3600_000, V: float64(i)}))
	}
	must(t, a.Put([]byte("doc"), []byte("v")))
	must(t, a.Flush())
	must(t, a.compactRange([]byte{0}, []byte{0xff}))
	must(t, a.AppendSamples(`load{cpu="0"}`, timeseries.Sample{T: 1, V: 0.5})) // in the memtable

	c := openReplica(t, fs, "/c")
	defer c.Close()
	time.Sleep(2 * time.Millisecond) // c's write of T=1 comes later, by the clock
	must(t, c.AppendSamples(`load{cpu="0"}`, timeseries.Sample{T: 1, V: 99}, timeseries.Sample{T: 2, V: 2}))
	must(t, c.AppendSamples(`other`, timeseries.Sample{T: 7, V: 7}))

	var buf bytes.Buffer
	info, err := a.ExportSnapshot(&buf)
	must(t, err)
	if info.Series == 0 {
		t.Fatal("the snapshot carries no series")
	}
	snap := buf.Bytes()
	b := openReplica(t, fs, "/b")
	defer b.Close()
	if _, err := b.ImportSnapshot(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	for cpu := range 4 {
		name := fmt.Sprintf(`load{cpu="%d"}`, cpu)
		want, err := a.QuerySamples(name, math.MinInt64, math.MaxInt64)
		must(t, err)
		got, err := b.QuerySamples(name, math.MinInt64, math.MaxInt64)
		must(t, err)
		sameSamples(t, "snapshot "+name, got, want)
	}
	if names, err := b.SelectSeries(`load`); err != nil || len(names) != 4 {
		t.Fatalf("SelectSeries after the snapshot: %v %v", names, err)
	}
	must(t, a.AppendSamples(`load{cpu="3"}`, timeseries.Sample{T: 5, V: 5}))
	syncPair(t, a, b)
	got, err := b.QuerySamples(`load{cpu="3"}`, 5, 6)
	must(t, err)
	if len(got) != 1 || got[0].V != 5 {
		t.Fatalf("sync after the snapshot: %v", got)
	}

	// Into a replica with samples of its own: c wrote T=1 after a did
	// (a later HLC), so c's value stays; T=2 and c's other series stay.
	if _, err := c.ImportSnapshot(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	got, err = c.QuerySamples(`load{cpu="0"}`, 0, 3)
	must(t, err)
	if len(got) != 3 || got[1].V != 99 || got[2].V != 2 {
		t.Fatalf("joined snapshot: %v", got)
	}
	if names, err := c.SelectSeries(`{__name__=~"load|other"}`); err != nil || len(names) != 5 {
		t.Fatalf("SelectSeries after the join: %v %v", names, err)
	}
}

// TestSeriesRetention: a retention pass drops the days retention no
// longer keeps, per prefix, and nothing else; it runs once a day expires.
func TestSeriesRetention(t *testing.T) {
	fs := vfs.NewMem()
	opts := &Options{FS: fs, MemtableSize: 1 << 20, NoSync: true}
	db, err := Open("/db", opts)
	must(t, err)
	now := time.Now()
	for d := range 10 {
		ts := now.Add(-time.Duration(d) * 24 * time.Hour).UnixMilli()
		for _, s := range []string{`cpu{host="a"}`, `cpu{host="b"}`, `audit_log`} {
			must(t, db.AppendSamples(s, timeseries.Sample{T: ts, V: float64(d)}))
		}
	}
	must(t, db.Put([]byte("doc"), []byte("v")))
	must(t, db.Close())
	opts.SeriesRetention = 3 * 24 * time.Hour
	opts.SeriesRetentionFor = []SeriesRetention{{Prefix: "audit", Keep: 0}, {Prefix: "cpu{host=\"b\"", Keep: 24 * time.Hour}}
	db, err = Open("/db", opts)
	must(t, err)
	defer db.Close()
	must(t, db.applySeriesRetention(now))
	count := func(s string) int {
		got, err := db.QuerySamples(s, math.MinInt64, math.MaxInt64)
		must(t, err)
		return len(got)
	}
	// Kept: the days whose bucket ends after now - keep (the bucket of
	// the cut included).
	if n := count(`audit_log`); n != 10 {
		t.Fatalf("audit_log (kept for ever): %d samples, want 10", n)
	}
	if n := count(`cpu{host="a"}`); n < 3 || n > 4 {
		t.Fatalf(`cpu{host="a"} (3 days): %d samples, want 3 or 4`, n)
	}
	if n := count(`cpu{host="b"}`); n < 1 || n > 2 {
		t.Fatalf(`cpu{host="b"} (1 day): %d samples, want 1 or 2`, n)
	}
	if v, err := db.Get([]byte("doc")); err != nil || string(v) != "v" {
		t.Fatalf("a document: %q %v", v, err)
	}
	if _, err := Open("/x", &Options{FS: fs, SeriesRetention: -1}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("negative retention: %v", err)
	}
}

// TestSeriesRetentionWholeTables: with one retention for every series,
// the tables of expired days go whole; later days and documents stay.
func TestSeriesRetentionWholeTables(t *testing.T) {
	fs := vfs.NewMem()
	// Written first, retention after: samples that arrive for a day that
	// expired before are dropped only by the next day's pass, and the
	// background pass may run at any flush.
	db, err := Open("/db", &Options{FS: fs, MemtableSize: 1 << 20, NoSync: true})
	must(t, err)
	now := time.Now()
	for d := 9; d >= 0; d-- {
		day := timeseries.BucketOf(now.Add(-time.Duration(d) * 24 * time.Hour).UnixMilli())
		for s := range 20 {
			var samples []timeseries.Sample
			for i := range 500 {
				samples = append(samples, timeseries.Sample{T: day + int64(i)*60_000, V: float64(i)})
			}
			must(t, db.AppendSamples(fmt.Sprintf(`m{s="%d"}`, s), samples...))
		}
		must(t, db.Flush())
	}
	must(t, db.Put([]byte("doc"), []byte("v")))
	must(t, db.Close())
	db, err = Open("/db", &Options{FS: fs, MemtableSize: 1 << 20, NoSync: true, SeriesRetention: 2 * 24 * time.Hour})
	must(t, err)
	defer db.Close()
	must(t, db.applySeriesRetention(now))
	for s := range 20 {
		got, err := db.QuerySamples(fmt.Sprintf(`m{s="%d"}`, s), math.MinInt64, math.MaxInt64)
		must(t, err)
		if n := len(got) / 500; n < 2 || n > 3 || len(got)%500 != 0 {
			t.Fatalf(`m{s="%d"}: %d samples, want 2 or 3 days of 500`, s, len(got))
		}
	}
	if v, err := db.Get([]byte("doc")); err != nil || string(v) != "v" {
		t.Fatalf("a document: %q %v", v, err)
	}
	if names, err := db.SelectSeries("m"); err != nil || len(names) != 20 {
		t.Fatalf("series after retention: %d, %v", len(names), err)
	}
}

// TestSeriesVerifyClean: the checker finds nothing wrong with a
// database holding series (operands, folded cold states, the table).
func TestSeriesVerifyClean(t *testing.T) {
	db := openReplica(t, vfs.NewMem(), "/db")
	defer db.Close()
	for i := range 300 {
		must(t, db.AppendSamples(fmt.Sprintf(`v{i="%d"}`, i%5), timeseries.Sample{T: int64(i) * 60_000, V: float64(i) / 3}))
	}
	must(t, db.compactRange([]byte{0}, []byte{0xff}))
	must(t, db.AppendSamples(`v{i="0"}`, timeseries.Sample{T: 1, V: 1}))
	must(t, db.Flush())
	rep, err := db.Verify(context.Background(), nil)
	must(t, err)
	for _, f := range rep.Findings {
		if f.Kind.Damage() {
			t.Fatalf("finding: %+v", f)
		}
	}
}

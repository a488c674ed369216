package pluresdb

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries"
	"github.com/plures/pluresdb/timeseries/tsdb"
)

func querySeries(t *testing.T, db *DB, name string) []timeseries.Sample {
	t.Helper()
	got, err := db.QuerySamples(name, math.MinInt64, math.MaxInt64)
	must(t, err)
	return got
}

func listed(t *testing.T, db *DB, selector string) []string {
	t.Helper()
	names, err := db.SelectSeries(selector)
	must(t, err)
	return names
}

// rawSamples reads a series with its deleted samples: what the tables
// still hold.
func rawSamples(t *testing.T, db *DB, name string) int {
	t.Helper()
	c, err := timeseries.Canonical(name)
	must(t, err)
	n := 0
	st := db.rawSeriesStore()
	must(t, st.Scan([]byte{'c'}, []byte{'d'}, func(key, value []byte) error {
		if bytes.HasSuffix(key, []byte(c)) && len(key) == 9+len(c) {
			samples, err := tsdb.DecodeSamples(value, db.ol.self)
			if err != nil {
				return err
			}
			n += len(samples)
		}
		return nil
	}))
	return n
}

// TestDeleteSeries: a deletion hides every sample written before it, in
// every read, across flushes, compactions and a reopen; later writes
// bring the series back; the compaction drops the deleted samples once
// no snapshot could read them.
func TestDeleteSeries(t *testing.T) {
	fs := vfs.NewMem()
	opts := &Options{FS: fs, MemtableSize: 1 << 20}
	db, err := Open("/db", opts)
	must(t, err)
	const gone, kept = `cpu{host="a"}`, `cpu{host="b"}`
	var old []timeseries.Sample
	for d := range 3 {
		for i := range 200 {
			old = append(old, timeseries.Sample{T: int64(d)*day + int64(i)*60_000, V: float64(i)})
		}
	}
	must(t, db.AppendSamples(gone, old...))
	must(t, db.AppendSamples(kept, old...))
	must(t, db.Flush())
	must(t, db.AppendSamples(gone, timeseries.Sample{T: 5*day + 1, V: 1})) // in the memtable

	if err := db.DeleteSeries(`cpu{host=`); !errors.Is(err, timeseries.ErrInvalidSeries) {
		t.Fatalf("a bad name: %v", err)
	}
	snap := db.NewSnapshot() // older than the deletion
	must(t, db.DeleteSeries(gone))
	must(t, db.DeleteSeries(`never{written="x"}`))
	check := func(what string, wantGone []timeseries.Sample) {
		t.Helper()
		sameSamples(t, what+": deleted series", querySeries(t, db, gone), wantGone)
		sameSamples(t, what+": other series", querySeries(t, db, kept), old)
		agg, err := db.Aggregate(gone, math.MinInt64/2, math.MaxInt64/2, 0, timeseries.Count)
		must(t, err)
		if len(wantGone) == 0 && len(agg) != 0 || len(wantGone) > 0 && (len(agg) != 1 || agg[0].V != float64(len(wantGone))) {
			t.Fatalf("%s: Aggregate count %v, want %d samples", what, agg, len(wantGone))
		}
		want := []string{`cpu{host="b"}`}
		if len(wantGone) > 0 {
			want = []string{`cpu{host="a"}`, `cpu{host="b"}`}
		}
		if got := listed(t, db, `cpu`); !slices.Equal(got, want) {
			t.Fatalf("%s: SelectSeries %v, want %v", what, got, want)
		}
		res, err := db.AggregateSeries(`cpu`, 0, 6*day, 6*day, timeseries.Count, nil, timeseries.Sum)
		must(t, err)
		if len(res) != 1 || len(res[0].Samples) != 1 || res[0].Samples[0].V != float64(len(old)+len(wantGone)) {
			t.Fatalf("%s: AggregateSeries %v", what, res)
		}
	}
	check("deleted", nil)
	must(t, db.Flush())
	must(t, db.Compact(nil, nil))
	check("compacted with a snapshot open", nil)
	if n := rawSamples(t, db, gone); n != len(old)+1 {
		t.Fatalf("a snapshot older than the deletion is open: the tables hold %d samples, want all %d", n, len(old)+1)
	}
	must(t, snap.Close())
	must(t, db.Compact(nil, nil))
	check("compacted", nil)
	if n := rawSamples(t, db, gone); n != 0 {
		t.Fatalf("the compaction kept %d deleted samples", n)
	}

	// Written again: listed again, only the new samples.
	again := []timeseries.Sample{{T: 1, V: 7}, {T: 2 * day, V: 8}}
	must(t, db.AppendSamples(gone, again...))
	check("written again", again)
	must(t, db.Close())
	db, err = Open("/db", opts)
	must(t, err)
	defer db.Close()
	check("reopened", again)
	must(t, db.Compact(nil, nil))
	check("reopened and compacted", again)
	must(t, db.DeleteSeries(gone))
	check("deleted twice", nil)
}

// TestDeleteSeriesReplicas: a deletion replicates and deletes, on every
// replica, exactly the samples of writes that sort before it, whatever
// order the operations arrive in; snapshots carry it.
func TestDeleteSeriesReplicas(t *testing.T) {
	fs := vfs.NewMem()
	a, b, c := openReplica(t, fs, "/a"), openReplica(t, fs, "/b"), openReplica(t, fs, "/c")
	defer a.Close()
	defer b.Close()
	defer c.Close()
	const s = `temp{room="1"}`
	must(t, a.AppendSamples(s, timeseries.Sample{T: 1, V: 1}, timeseries.Sample{T: 2, V: 2}))
	syncPair(t, a, b)
	// b writes concurrently, before a's deletion by the clock: deleted.
	must(t, b.AppendSamples(s, timeseries.Sample{T: 3, V: 3}))
	time.Sleep(2 * time.Millisecond)
	must(t, a.DeleteSeries(s))
	time.Sleep(2 * time.Millisecond)
	// c writes concurrently, after it by the clock: kept.
	must(t, c.AppendSamples(s, timeseries.Sample{T: 4, V: 4}))
	// c hears of the deletion before b's write it deletes.
	syncPair(t, a, c)
	syncPair(t, b, c)
	for range 2 {
		for _, x := range []*DB{a, b, c} {
			for _, y := range []*DB{a, b, c} {
				if x != y {
					syncPair(t, x, y)
				}
			}
		}
	}
	want := []timeseries.Sample{{T: 4, V: 4}}
	for i, db := range []*DB{a, b, c} {
		sameSamples(t, string(rune('a'+i)), querySeries(t, db, s), want)
		if got := listed(t, db, `temp`); len(got) != 1 {
			t.Fatalf("replica %c: SelectSeries %v", 'a'+i, got)
		}
		must(t, db.Compact(nil, nil))
		sameSamples(t, string(rune('a'+i))+" compacted", querySeries(t, db, s), want)
	}
	// The feed carries the deletion.
	var buf bytes.Buffer
	_, err := a.ExportChanges(&buf, oplog.VersionVector{})
	must(t, err)
	stream, err := oplog.ReadStream(bytes.NewReader(buf.Bytes()))
	must(t, err)
	found := false
	for _, op := range stream.Ops {
		found = found || op.Kind == oplog.KindDeleteSeries && string(op.Key) == s
	}
	if !found {
		t.Fatal("the deletion is not in the exported changes")
	}

	// A snapshot carries the floor: b's late write of T=3 stays deleted
	// in a replica made from it.
	var snap bytes.Buffer
	_, err = a.ExportSnapshot(&snap)
	must(t, err)
	d := openReplica(t, fs, "/d")
	defer d.Close()
	_, err = d.ImportSnapshot(bytes.NewReader(snap.Bytes()))
	must(t, err)
	sameSamples(t, "from a snapshot", querySeries(t, d, s), want)
	syncPair(t, b, d)
	sameSamples(t, "from a snapshot, then synced", querySeries(t, d, s), want)
}

// TestDeleteSeriesCrash: an acknowledged deletion survives a crash (the
// floor is rebuilt from the log at open), and so do writes after it.
func TestDeleteSeriesCrash(t *testing.T) {
	mem := vfs.NewMem()
	db, err := Open("/db", &Options{FS: mem})
	must(t, err)
	must(t, db.AppendSamples(`s{i="1"}`, timeseries.Sample{T: 1, V: 1}, timeseries.Sample{T: 2, V: 2}))
	must(t, db.AppendSamples(`s{i="2"}`, timeseries.Sample{T: 1, V: 1}))
	must(t, db.Flush())
	must(t, db.DeleteSeries(`s{i="1"}`))
	must(t, db.DeleteSeries(`s{i="2"}`))
	must(t, db.AppendSamples(`s{i="2"}`, timeseries.Sample{T: 3, V: 3}))
	crashed := mem.CrashClone()
	db.Close()
	db, err = Open("/db", &Options{FS: crashed})
	must(t, err)
	defer db.Close()
	sameSamples(t, "deleted", querySeries(t, db, `s{i="1"}`), nil)
	sameSamples(t, "deleted, written again", querySeries(t, db, `s{i="2"}`), []timeseries.Sample{{T: 3, V: 3}})
	if got := listed(t, db, `s`); !slices.Equal(got, []string{`s{i="2"}`}) {
		t.Fatalf("after the crash: SelectSeries %v", got)
	}
}

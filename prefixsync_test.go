package pluresdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
)

// prefixSync sends src's operations on prefix that dst lacks, as dst's
// PrefixVersionVector says, and returns how many the stream held.
func prefixSync(t *testing.T, src, dst *DB, prefix string) int {
	t.Helper()
	var buf bytes.Buffer
	n, err := src.ExportChangesPrefix(&buf, dst.PrefixVersionVector([]byte(prefix)), []byte(prefix))
	if err != nil {
		t.Fatalf("export %q: %v", prefix, err)
	}
	if _, err := dst.ImportChanges(&buf); err != nil {
		t.Fatalf("import %q: %v", prefix, err)
	}
	return n
}

// feedAll reads db's whole change feed: want changes, then checks that no
// more come.
func feedAll(t *testing.T, db *DB, want int) []Change {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := db.Subscribe(ctx, Position{})
	must(t, err)
	defer sub.Close()
	var out []Change
	for range want {
		c, err := sub.Next()
		if err != nil {
			t.Fatalf("feed: after %d of %d changes: %v", len(out), want, err)
		}
		out = append(out, c)
	}
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	if c, err := sub.Next(); err == nil {
		t.Fatalf("feed: change %d beyond the %d expected: %s/%d %q", want+1, want, c.Op.Replica, c.Op.Seq, c.Op.Key)
	}
	return out
}

// checkOnce checks that the feed delivers each operation once, in
// ascending positions.
func checkOnce(t *testing.T, changes []Change) {
	t.Helper()
	seen := map[string]bool{}
	for i, c := range changes {
		id := fmt.Sprintf("%s/%d", c.Op.Replica, c.Op.Seq)
		if seen[id] {
			t.Fatalf("feed: operation %s delivered twice (change %d, %q)", id, i, c.Op.Key)
		}
		seen[id] = true
		if i > 0 && !changes[i-1].Pos.Less(c.Pos) {
			t.Fatalf("feed: position %v after %v", c.Pos, changes[i-1].Pos)
		}
	}
}

// TestPrefixSyncIsFirstClass: a selective import is logged: as-of reads
// and the change feed show it, its cursor makes the next selective sync
// send only what is new (across a restart too), the version vector claims
// nothing it lacks, and a later full sync converges without counting or
// delivering anything twice; a third replica syncing from the second, from
// its log and from its archive, ends like the first.
func TestPrefixSyncIsFirstClass(t *testing.T) {
	fs := vfs.NewMem()
	a := openReplica(t, fs, "/a")
	defer a.Close()
	bOpts := &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, HotHistory: -1}
	b, err := Open("/b", bOpts)
	must(t, err)
	defer func() { b.Close() }()

	written := 0 // a's operations
	write := func(round, n int) {
		written += 4 * n
		for i := range n {
			must(t, a.Put(fmt.Appendf(nil, "users/%d-%d", round, i), fmt.Appendf(nil, "u%d", i)))
			must(t, a.Put(fmt.Appendf(nil, "orders/%d-%d", round, i), []byte("o")))
			must(t, a.Incr([]byte("users/count"), []byte("n"), 1))
			must(t, a.SetField(fmt.Appendf(nil, "users/%d-%d", round, i), []byte("seen"), []byte("y")))
		}
	}
	write(0, 20) // 80 ops, 60 on users/

	if n := prefixSync(t, a, b, "users/"); n != 60 {
		t.Fatalf("first selective sync: %d operations, want 60", n)
	}
	// Logged: as-of reads and the feed see it.
	if d, err := b.GetAsOf([]byte("users/0-3"), b.Now()); err != nil || string(d.Value) != "u3" || string(d.Fields["seen"]) != "y" {
		t.Fatalf("GetAsOf after a selective import: %+v, %v", d, err)
	}
	if d, err := b.GetAsOf([]byte("users/count"), b.Now()); err != nil || d.Counters["n"] != 20 {
		t.Fatalf("GetAsOf of a counter after a selective import: %+v, %v", d, err)
	}
	checkOnce(t, feedAll(t, b, 60))
	// The version vector claims none of it; the cursor claims all of a's.
	if got := b.VersionVector()[a.ReplicaID()]; got != 0 {
		t.Fatalf("version vector claims a's operations up to %d after a selective import", got)
	}
	if got, want := b.PrefixVersionVector([]byte("users/"))[a.ReplicaID()], a.VersionVector()[a.ReplicaID()]; got != want {
		t.Fatalf("cursor for users/ at %d, want %d", got, want)
	}
	if got := b.PrefixVersionVector([]byte("orders/"))[a.ReplicaID()]; got != 0 {
		t.Fatalf("cursor for users/ claims orders/ up to %d", got)
	}
	// A longer prefix is covered by the shorter one's cursor.
	if got, want := b.PrefixVersionVector([]byte("users/0-"))[a.ReplicaID()], a.VersionVector()[a.ReplicaID()]; got != want {
		t.Fatalf("cursor for users/0- at %d, want %d", got, want)
	}

	// Nothing new: nothing sent. Then only what is new, across a restart.
	if n := prefixSync(t, a, b, "users/"); n != 0 {
		t.Fatalf("repeated selective sync sent %d operations", n)
	}
	write(1, 10)
	must(t, b.Close())
	b, err = Open("/b", bOpts)
	must(t, err)
	if n := prefixSync(t, a, b, "users/"); n != 30 {
		t.Fatalf("selective sync after new writes and a restart: %d operations, want 30", n)
	}
	// A stream from before the cursor is a gap for the version vector
	// only: the selective import of an older stream is refused as a gap
	// if it starts after what the cursor holds.
	var ahead bytes.Buffer
	since := b.PrefixVersionVector([]byte("users/"))
	since[a.ReplicaID()] += 5
	write(2, 5)
	if _, err := a.ExportChangesPrefix(&ahead, since, []byte("users/")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ImportChanges(&ahead); !errors.Is(err, ErrCausalGap) {
		t.Fatalf("selective stream past the cursor: %v, want ErrCausalGap", err)
	}
	if n := prefixSync(t, a, b, "users/"); n != 15 {
		t.Fatalf("third selective sync: %d operations, want 15", n)
	}
	checkOnce(t, feedAll(t, b, 105))

	// The full sync brings the rest; repeats change nothing and are not
	// delivered again.
	write(3, 5)
	syncPair(t, a, b)
	if da, db := dump(t, a), dump(t, b); da != db {
		t.Fatalf("after a full sync the replicas differ:\n%s---\n%s", da, db)
	}
	total := written
	if got, want := b.VersionVector()[a.ReplicaID()], a.VersionVector()[a.ReplicaID()]; got != want {
		t.Fatalf("version vector at %d after a full sync, want %d", got, want)
	}
	checkOnce(t, feedAll(t, b, total))
	if d, err := b.GetAsOf([]byte("users/count"), b.Now()); err != nil || d.Counters["n"] != 40 {
		t.Fatalf("GetAsOf of a counter after full sync: %+v, %v", d, err)
	}

	// A third replica gets everything from b's log: each replica's
	// operations in order, none twice.
	c := openReplica(t, fs, "/c")
	defer c.Close()
	if n := syncPair(t, b, c); n != total {
		t.Fatalf("c imported %d operations from b, want %d", n, total)
	}
	if da, dc := dump(t, a), dump(t, c); da != dc {
		t.Fatalf("c differs from a:\n%s---\n%s", da, dc)
	}

	// The same from b's archive, after a restart.
	must(t, b.Flush())
	must(t, b.applyRetention(time.Now()))
	if b.Metrics().OpLog.ArchivedSegments == 0 {
		t.Fatal("nothing archived")
	}
	must(t, b.Close())
	b, err = Open("/b", bOpts)
	must(t, err)
	checkOnce(t, feedAll(t, b, total))
	if d, err := b.GetAsOf([]byte("users/1-3"), b.Now()); err != nil || string(d.Value) != "u3" {
		t.Fatalf("GetAsOf from the archive: %+v, %v", d, err)
	}
	d := openReplica(t, fs, "/d")
	defer d.Close()
	if n := syncPair(t, b, d); n != total {
		t.Fatalf("d imported %d operations from b's archive, want %d", n, total)
	}
	if da, dd := dump(t, a), dump(t, d); da != dd {
		t.Fatalf("d differs from a:\n%s---\n%s", da, dd)
	}
}

// TestPrefixSyncNeverClaimsMissing: replicas exchanging selective and
// full streams at random, over several prefixes and origins, converge, and
// no version vector or cursor ever claims an operation its replica lacks:
// every export a replica's vectors ask for is accepted (no gap) and leaves
// nothing behind.
func TestPrefixSyncNeverClaimsMissing(t *testing.T) {
	fs := vfs.NewMem()
	const n = 3
	dbs := make([]*DB, n)
	for i := range dbs {
		dbs[i] = openReplica(t, fs, fmt.Sprintf("/r%d", i))
		defer func(i int) { dbs[i].Close() }(i)
	}
	prefixes := []string{"a/", "a/x", "b/", ""}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	total := 0 // operations written
	for step := range 300 {
		r := dbs[rng.IntN(n)]
		switch rng.IntN(4) {
		case 0, 1:
			total++
			k := fmt.Sprintf("%s%d", prefixes[rng.IntN(3)], rng.IntN(20))
			if rng.IntN(4) == 0 {
				must(t, r.Incr([]byte(k), []byte("c"), 1))
			} else {
				must(t, r.Put([]byte(k), fmt.Appendf(nil, "%d", step)))
			}
		case 2:
			src, dst := dbs[rng.IntN(n)], dbs[rng.IntN(n)]
			if src != dst {
				prefixSync(t, src, dst, prefixes[rng.IntN(len(prefixes))])
			}
		default:
			src, dst := dbs[rng.IntN(n)], dbs[rng.IntN(n)]
			if src != dst {
				syncPair(t, src, dst)
			}
		}
		if step%100 == 99 {
			i := rng.IntN(n)
			must(t, dbs[i].Close())
			dbs[i] = openReplica(t, fs, fmt.Sprintf("/r%d", i))
		}
	}
	for range 2 {
		for i := range dbs {
			for j := range dbs {
				if i != j {
					syncPair(t, dbs[i], dbs[j])
				}
			}
		}
	}
	want := dump(t, dbs[0])
	for i := 1; i < n; i++ {
		if got := dump(t, dbs[i]); got != want {
			t.Fatalf("replica %d differs from 0:\n%s---\n%s", i, got, want)
		}
	}
	// As-of reads of now agree with the state everywhere.
	for i, db := range dbs {
		it := db.NewIter(nil, nil)
		for ok := it.First(); ok; ok = it.Next() {
			cur, err := db.GetFields(it.Key())
			must(t, err)
			old, err := db.GetAsOf(it.Key(), db.Now())
			if err != nil || string(old.Value) != string(cur.Value) || fmt.Sprint(old.Counters) != fmt.Sprint(cur.Counters) {
				t.Fatalf("replica %d: GetAsOf(%q, now) = %+v, %v; the state is %+v", i, it.Key(), old, err, cur)
			}
		}
		must(t, it.Close())
	}
	// Each feed delivers every operation once.
	vv := dbs[0].VersionVector()
	for _, db := range dbs {
		checkOnce(t, feedAll(t, db, total))
	}
	var ids []oplog.ReplicaID
	for _, db := range dbs {
		ids = append(ids, db.ReplicaID())
	}
	for i, db := range dbs {
		got := db.VersionVector()
		for _, id := range ids {
			if got[id] != vv[id] {
				t.Fatalf("replica %d: version vector %v, want %v", i, got, vv)
			}
		}
	}
}

// TestPrefixSyncThenBulkImport: a full import large enough to go straight
// to L0 tables, of which a selective import logged a part before, marks
// that part as repeats: the replicas converge, and the feed and a third
// replica see every operation once.
func TestPrefixSyncThenBulkImport(t *testing.T) {
	fs := vfs.NewMem()
	a, b, c := openReplica(t, fs, "/a"), openReplica(t, fs, "/b"), openReplica(t, fs, "/c")
	defer a.Close()
	defer b.Close()
	defer c.Close()
	const n = 4000
	for i := range n {
		must(t, a.Put(fmt.Appendf(nil, "users/%05d", i), bytes.Repeat([]byte("u"), 50)))
		must(t, a.Put(fmt.Appendf(nil, "orders/%05d", i), bytes.Repeat([]byte("o"), 50)))
	}
	if got := prefixSync(t, a, b, "users/"); got != n {
		t.Fatalf("selective sync: %d operations, want %d", got, n)
	}
	before := b.Metrics().IngestedTables
	if got := syncPair(t, a, b); got != n {
		t.Fatalf("full sync applied %d new operations, want %d", got, n)
	}
	if b.Metrics().IngestedTables == before {
		t.Fatal("the full import was not a bulk import")
	}
	if da, db := dump(t, a), dump(t, b); da != db {
		t.Fatal("replicas differ after the bulk import")
	}
	checkOnce(t, feedAll(t, b, 2*n))
	if got := syncPair(t, b, c); got != 2*n {
		t.Fatalf("c imported %d operations from b, want %d", got, 2*n)
	}
	if da, dc := dump(t, a), dump(t, c); da != dc {
		t.Fatal("c differs from a")
	}
	// The cursor is spent: the version vector holds all it held.
	if got := b.PrefixVersionVector([]byte("users/")); got[a.ReplicaID()] != b.VersionVector()[a.ReplicaID()] {
		t.Fatalf("cursor %v beyond the version vector %v", got, b.VersionVector())
	}
}

// TestImportRefusesLogOrderStream: a stream in log order (an archive's)
// is no sync stream: ImportChanges refuses it and changes nothing.
func TestImportRefusesLogOrderStream(t *testing.T) {
	fs := vfs.NewMem()
	a, b := openReplica(t, fs, "/a"), openReplica(t, fs, "/b")
	defer a.Close()
	defer b.Close()
	var buf bytes.Buffer
	sw, err := oplog.NewStreamWriter(&buf, oplog.StreamHeader{Source: a.ReplicaID(), LogOrder: true,
		Ranges: []oplog.Range{{Replica: a.ReplicaID(), To: 2}}})
	must(t, err)
	for _, seq := range []uint64{2, 1} {
		must(t, sw.Add(&oplog.Op{Replica: a.ReplicaID(), Seq: seq, HLC: a.Now(), Kind: oplog.KindPut, Key: []byte("k")}))
	}
	_, err = sw.Close()
	must(t, err)
	if _, err := b.ImportChanges(&buf); !errors.Is(err, ErrCorruption) {
		t.Fatalf("import of a log-order stream: %v, want ErrCorruption", err)
	}
	if _, err := b.Get([]byte("k")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused stream left k: %v", err)
	}
}

package pluresdb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
)

// fullDump is dump plus the keys that hold only counters.
func fullDump(t *testing.T, db *DB) string {
	t.Helper()
	out := dump(t, db)
	it := db.newIter(nsCounters, nil, nil, lsm.SeqNum(db.visible.Load()))
	for ok := it.First(); ok; ok = it.Next() {
		d, err := oplog.DecodeDocument(it.Value())
		if err != nil {
			t.Fatal(err)
		}
		out += fmt.Sprintf("counters %q=%v\n", it.Key(), d.Counters)
	}
	must(t, it.Close())
	return out
}

func exportSnapshot(t *testing.T, db *DB) []byte {
	t.Helper()
	var buf bytes.Buffer
	info, err := db.ExportSnapshot(&buf)
	if err != nil {
		t.Fatalf("export snapshot: %v", err)
	}
	if info.Bytes != int64(buf.Len()) {
		t.Fatalf("snapshot info says %d bytes, wrote %d", info.Bytes, buf.Len())
	}
	return buf.Bytes()
}

// randomWrites writes n random operations on a small key space: puts,
// deletes, field sets and deletes, increments.
func randomWrites(t *testing.T, rng *rand.Rand, db *DB, n int) {
	t.Helper()
	for i := range n {
		k := fmt.Appendf(nil, "k%03d", rng.IntN(60))
		f := fmt.Appendf(nil, "f%d", rng.IntN(3))
		switch p := rng.IntN(100); {
		case p < 30:
			must(t, db.Put(k, fmt.Appendf(nil, "v%d", i)))
		case p < 42:
			must(t, db.Delete(k))
		case p < 65:
			must(t, db.SetField(k, f, fmt.Appendf(nil, "x%d", i)))
		case p < 75:
			must(t, db.DeleteField(k, f))
		default:
			must(t, db.Incr(k, f, rng.Int64N(11)-5))
		}
	}
}

// A replica bootstrapped from a snapshot of A converges with its peers:
// three replicas write at random (fields, counters, deletes), sync in
// part, then C imports a snapshot of A and everyone exchanges changes.
func TestSnapshotBootstrapConverges(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 11))
	fs := vfs.NewMem()
	a, b, c := openReplica(t, fs, "/a"), openReplica(t, fs, "/b"), openReplica(t, fs, "/c")
	defer a.Close()
	defer b.Close()
	defer c.Close()
	for round := range 4 {
		randomWrites(t, rng, a, 300)
		randomWrites(t, rng, b, 300)
		randomWrites(t, rng, c, 100)
		if round%2 == 0 {
			syncPair(t, a, b)
			syncPair(t, b, a)
		}
		if round == 1 {
			must(t, a.Flush())
			syncPair(t, c, b) // some of C's writes reach A through B
		}
	}
	syncPair(t, b, a)
	randomWrites(t, rng, a, 200) // B lacks these

	snap := exportSnapshot(t, a)
	info, err := c.ImportSnapshot(bytes.NewReader(snap))
	if err != nil {
		t.Fatalf("seed %d: import snapshot: %v", seed, err)
	}
	if info.Source != a.ReplicaID() || !info.VersionVector.Equal(a.VersionVector()) || info.Changed == 0 {
		t.Fatalf("import info %+v", info)
	}
	// C holds A's operations up to the snapshot without their history:
	// B, which lacks some, must not get a silent hole from C.
	var buf bytes.Buffer
	if _, err := c.ExportChanges(&buf, b.VersionVector()); !errors.Is(err, ErrHistoryUnavailable) {
		t.Fatalf("seed %d: export to a peer behind the snapshot: %v, want ErrHistoryUnavailable", seed, err)
	}
	// C's own entry is below A's? No: A never had all of C's writes.
	randomWrites(t, rng, c, 50)
	randomWrites(t, rng, a, 50)

	order := [][2]*DB{{a, b}, {b, a}, {c, a}, {c, b}, {a, c}, {b, c}, {a, b}, {b, a}}
	for _, p := range order {
		syncPair(t, p[0], p[1])
	}
	want := fullDump(t, a)
	for name, db := range map[string]*DB{"b": b, "c": c} {
		if got := fullDump(t, db); got != want {
			t.Fatalf("seed %d: %s differs from a after the exchange:\n%s\nwant\n%s", seed, name, got, want)
		}
		if !db.VersionVector().Equal(a.VersionVector()) {
			t.Fatalf("seed %d: %s's version vector %v, a's %v", seed, name, db.VersionVector(), a.VersionVector())
		}
	}
	// And after a restart of C, which reads its metadata back.
	must(t, c.Close())
	c = openReplica(t, fs, "/c")
	if got := fullDump(t, c); got != want || !c.VersionVector().Equal(a.VersionVector()) {
		t.Fatalf("seed %d: c differs after a restart", seed)
	}
}

// Importing a snapshot is not logged as operations: the change feed and
// exports of the importer show none.
func TestSnapshotImportNotLogged(t *testing.T) {
	fs := vfs.NewMem()
	a, c := openReplica(t, fs, "/a"), openReplica(t, fs, "/c")
	defer a.Close()
	defer c.Close()
	must(t, a.Put([]byte("k"), []byte("v")))
	must(t, a.Incr([]byte("k"), []byte("n"), 3))
	var ops int
	sub, err := c.Subscribe(t.Context(), Position{})
	must(t, err)
	defer sub.Close()
	if _, err := c.ImportSnapshot(bytes.NewReader(exportSnapshot(t, a))); err != nil {
		t.Fatal(err)
	}
	must(t, c.Put([]byte("after"), []byte("x")))
	for {
		ch, err := sub.Next()
		must(t, err)
		ops++
		if string(ch.Op.Key) == "after" {
			break
		}
	}
	if ops != 1 {
		t.Fatalf("the feed showed %d operations, want only the Put after the import", ops)
	}
	var buf bytes.Buffer
	n, err := c.ExportChanges(&buf, a.VersionVector())
	if err != nil || n != 1 {
		t.Fatalf("export to a: %d ops, %v; want the one local Put", n, err)
	}
	if d, err := c.GetFields([]byte("k")); err != nil || string(d.Value) != "v" || d.Counters["n"] != 3 {
		t.Fatalf("imported document: %+v, %v", d, err)
	}
}

// Importing the same snapshot twice changes nothing.
func TestSnapshotImportTwice(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 12))
	fs := vfs.NewMem()
	a, c := openReplica(t, fs, "/a"), openReplica(t, fs, "/c")
	defer a.Close()
	defer c.Close()
	randomWrites(t, rng, a, 500)
	randomWrites(t, rng, c, 100)
	snap := exportSnapshot(t, a)
	if _, err := c.ImportSnapshot(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	before, vv, last := fullDump(t, c), c.VersionVector(), c.lastSeq
	info, err := c.ImportSnapshot(bytes.NewReader(snap))
	if err != nil {
		t.Fatal(err)
	}
	if info.Changed != 0 || fullDump(t, c) != before || !c.VersionVector().Equal(vv) {
		t.Fatalf("seed %d: second import changed %d keys", seed, info.Changed)
	}
	if c.lastSeq-last > 3 {
		// Only the metadata batch (version vector, floor, horizon) is
		// written again.
		t.Errorf("second import wrote %d sequence numbers", c.lastSeq-last)
	}
}

// A truncated or damaged snapshot is refused and leaves the database
// unchanged, and no temp file behind.
func TestSnapshotDamageRefused(t *testing.T) {
	fs := vfs.NewMem()
	a, c := openReplica(t, fs, "/a"), openReplica(t, fs, "/c")
	defer a.Close()
	defer c.Close()
	randomWrites(t, rand.New(rand.NewPCG(1, 2)), a, 800)
	must(t, c.Put([]byte("mine"), []byte("v")))
	snap := exportSnapshot(t, a)
	before, vv := fullDump(t, c), c.VersionVector()
	files, err := fs.List("/c")
	must(t, err)
	try := func(what string, d []byte) {
		t.Helper()
		_, err := c.ImportSnapshot(bytes.NewReader(d))
		if !errors.Is(err, ErrCorruption) && !errors.Is(err, ErrNewerFormat) {
			t.Fatalf("%s: %v", what, err)
		}
		if fullDump(t, c) != before || !c.VersionVector().Equal(vv) {
			t.Fatalf("%s: the database changed", what)
		}
	}
	for _, n := range []int{0, 8, 20, len(snap) / 3, len(snap) / 2, len(snap) - 9, len(snap) - 1} {
		try(fmt.Sprintf("truncated to %d", n), snap[:n])
	}
	for _, i := range []int{3, 9, 30, len(snap) / 4, len(snap) / 2, len(snap) - 20, len(snap) - 3} {
		d := bytes.Clone(snap)
		d[i] ^= 0x10
		try(fmt.Sprintf("bit flipped at %d", i), d)
	}
	after, err := fs.List("/c")
	must(t, err)
	if strings.Join(after, " ") != strings.Join(files, " ") {
		t.Fatalf("files before %v, after %v", files, after)
	}
	// The whole snapshot still goes in.
	if _, err := c.ImportSnapshot(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
}

// A crash at any point of an import leaves a database that opens, whose
// version vector claims nothing it lacks, and which converges after the
// import is repeated.
func TestSnapshotImportCrash(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 13))
	src := openReplica(t, vfs.NewMem(), "/a")
	randomWrites(t, rng, src, 3000)
	for i := range 2000 {
		must(t, src.Put(fmt.Appendf(nil, "bulk%05d", i), bytes.Repeat([]byte{byte(i)}, 200)))
	}
	snap := exportSnapshot(t, src)
	srcVV := src.VersionVector()
	defer src.Close()

	opts := func(fs vfs.FS) *Options { return &Options{FS: fs, MemtableSize: 1 << 20} }
	setup := func(db *DB) {
		must(t, db.Put([]byte("mine"), []byte("local")))
		must(t, db.Put([]byte("k001"), []byte("local k001")))
	}
	counter := vfs.FailAfter(1<<62, vfs.ErrInjected)
	base := vfs.NewMem()
	clean, err := Open("/b", opts(base))
	must(t, err)
	setup(clean)
	must(t, clean.Close())
	cleanFS := vfs.WithFaults(base.CrashClone(), counter.Inject)
	clean, err = Open("/b", opts(cleanFS))
	must(t, err)
	_, err = clean.ImportSnapshot(bytes.NewReader(snap))
	must(t, err)
	wantB := fullDump(t, clean)
	must(t, clean.Close())
	total := counter.Count()
	runs := 24
	if testing.Short() {
		runs = 6
	}
	for run := range runs {
		mem := base.CrashClone()
		cd := vfs.FailAfter(rng.Int64N(total)+1, vfs.ErrInjected)
		acked := false
		if b, err := Open("/b", opts(vfs.WithFaults(mem, cd.Inject))); err == nil {
			_, err = b.ImportSnapshot(bytes.NewReader(snap))
			acked = err == nil
			b.Close()
		}
		mode := vfs.CrashModes[run%len(vfs.CrashModes)]
		b, err := Open("/b", opts(mem.CrashCloneWith(rand.New(rand.NewPCG(seed, uint64(run))), mode)))
		if err != nil {
			t.Fatalf("seed %d run %d %v: reopen after a crash: %v", seed, run, mode, err)
		}
		got := fullDump(t, b)
		claims := b.VersionVector()[src.ReplicaID()] >= srcVV[src.ReplicaID()]
		if (acked || claims) && got != wantB {
			t.Fatalf("seed %d run %d %v: the version vector claims the snapshot (acked %v), the state lacks it", seed, run, mode, acked)
		}
		if _, err := b.ImportSnapshot(bytes.NewReader(snap)); err != nil {
			t.Fatalf("seed %d run %d %v: import after a crash: %v", seed, run, mode, err)
		}
		if got := fullDump(t, b); got != wantB {
			t.Fatalf("seed %d run %d %v: repeated import differs from a clean one", seed, run, mode)
		}
		// b converges with the source once it sends its own writes.
		syncPair(t, b, src)
		if got, w := fullDump(t, b), fullDump(t, src); got != w {
			t.Fatalf("seed %d run %d %v: b and the source differ after a sync", seed, run, mode)
		}
		must(t, b.Close())
	}
}

// The export streams: a large database goes out in many writes of about a
// chunk each, never in one piece.
func TestSnapshotExportStreams(t *testing.T) {
	db := openReplica(t, vfs.NewMem(), "/a")
	defer db.Close()
	value := make([]byte, 512)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 40000 {
		for j := range value {
			value[j] = byte(rng.IntN(256))
		}
		must(t, db.Put(fmt.Appendf(nil, "doc%06d", i), value))
	}
	w := &chunkCountingWriter{}
	info, err := db.ExportSnapshot(w)
	must(t, err)
	if info.Documents != 40000 || w.n != info.Bytes || w.n < 20<<20 {
		t.Fatalf("exported %d documents, %d bytes (counted %d)", info.Documents, info.Bytes, w.n)
	}
	if w.maxWrite > 1<<20 || w.writes < int(w.n/(1<<20)) {
		t.Fatalf("%d bytes in %d writes, the largest %d: not streamed", w.n, w.writes, w.maxWrite)
	}
	c := openReplica(t, vfs.NewMem(), "/c")
	defer c.Close()
	// Import reads from a reader that hands out small pieces.
	var buf bytes.Buffer
	_, err = db.ExportSnapshot(&buf)
	must(t, err)
	if _, err := c.ImportSnapshot(&smallReader{b: buf.Bytes()}); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get([]byte("doc039999")); err != nil || len(v) != 512 {
		t.Fatalf("imported doc: %d bytes, %v", len(v), err)
	}
}

type chunkCountingWriter struct {
	n        int64
	writes   int
	maxWrite int
}

func (w *chunkCountingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	w.writes++
	w.maxWrite = max(w.maxWrite, len(p))
	return len(p), nil
}

type smallReader struct{ b []byte }

func (r *smallReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 777)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// A replica whose peer dropped the history it needs, and collected a
// tombstone it never saw, rejoins through a snapshot and then syncs
// normally. A replica holding writes the peer refuses as stale cannot
// rejoin in place (they would be refused for ever): the import says so
// and changes nothing, and a new replica takes its place.
func TestSnapshotStaleRejoin(t *testing.T) {
	fs := vfs.NewMem()
	const retention = 50 * time.Millisecond
	a, err := Open("/a", &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, Retention: retention})
	must(t, err)
	defer a.Close()
	lag := openReplica(t, fs, "/lag")
	defer lag.Close()
	away := openReplica(t, fs, "/away")
	defer away.Close()
	must(t, away.Put([]byte("other"), []byte("x")))
	must(t, away.Put([]byte("k"), []byte("old write")))
	var stale bytes.Buffer
	_, err = away.ExportChanges(&stale, a.VersionVector())
	must(t, err)

	must(t, a.Put([]byte("k"), []byte("v")))
	must(t, a.SetField([]byte("k"), []byte("f"), []byte("x")))
	must(t, a.Put([]byte("stays"), []byte("v")))
	must(t, a.Incr([]byte("stays"), []byte("n"), 2))
	syncPair(t, a, lag)
	must(t, a.Flush())
	must(t, a.Delete([]byte("k")))
	must(t, a.Flush())
	time.Sleep(3 * retention)
	must(t, a.Compact(nil, nil))
	must(t, a.applyRetention(time.Now()))
	if _, _, err := a.getRaw([]byte("\x01k"), lsm.SeqNum(a.visible.Load())); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tombstone not collected: %v", err)
	}
	if _, err := a.ImportChanges(bytes.NewReader(stale.Bytes())); !errors.Is(err, ErrStaleReplica) {
		t.Fatalf("stale import: %v", err)
	}
	var buf bytes.Buffer
	if _, err := a.ExportChanges(&buf, lag.VersionVector()); !errors.Is(err, ErrHistoryUnavailable) {
		t.Fatalf("export to the lagging replica: %v, want ErrHistoryUnavailable", err)
	}
	snap := exportSnapshot(t, a)

	// The lagging replica rejoins in place: k, which A deleted and
	// collected, goes from it too.
	must(t, lag.Put([]byte("mine"), []byte("m")))
	if _, err := lag.ImportSnapshot(bytes.NewReader(snap)); err != nil {
		t.Fatalf("lagging replica: %v", err)
	}
	if v, err := lag.Get([]byte("k")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("k after the import: %q, %v", v, err)
	}
	must(t, a.Put([]byte("new"), []byte("n")))
	syncPair(t, a, lag)
	syncPair(t, lag, a)
	if fullDump(t, a) != fullDump(t, lag) || !a.VersionVector().Equal(lag.VersionVector()) {
		t.Fatalf("lag and a differ after the rejoin:\n%s\n%s", fullDump(t, lag), fullDump(t, a))
	}

	// The replica with stale writes is refused, unchanged.
	before, vv := fullDump(t, away), away.VersionVector()
	_, err = away.ImportSnapshot(bytes.NewReader(snap))
	if !errors.Is(err, ErrStaleReplica) || !strings.Contains(err.Error(), "new directory") {
		t.Fatalf("stale replica's import: %v", err)
	}
	if fullDump(t, away) != before || !away.VersionVector().Equal(vv) {
		t.Fatal("the refused import changed the stale replica")
	}
	// A new replica takes its place and syncs normally.
	fresh := openReplica(t, fs, "/fresh")
	defer fresh.Close()
	if _, err := fresh.ImportSnapshot(bytes.NewReader(exportSnapshot(t, a))); err != nil {
		t.Fatal(err)
	}
	must(t, fresh.Put([]byte("fresh"), []byte("f")))
	must(t, a.Put([]byte("newer"), []byte("n")))
	syncPair(t, fresh, a)
	syncPair(t, a, fresh)
	if fullDump(t, a) != fullDump(t, fresh) {
		t.Fatal("fresh and a differ")
	}
}

// A snapshot that claims this replica's own operations beyond what it
// has (it was restored from an old copy) is refused.
func TestSnapshotAheadRefused(t *testing.T) {
	mem := vfs.NewMem()
	c, err := Open("/c", &Options{FS: mem, MemtableSize: 1 << 20})
	must(t, err)
	must(t, c.Put([]byte("x"), []byte("1")))
	must(t, c.Close())
	old := mem.CrashClone()
	c, err = Open("/c", &Options{FS: mem, MemtableSize: 1 << 20})
	must(t, err)
	must(t, c.Put([]byte("y"), []byte("2")))
	b := openReplica(t, vfs.NewMem(), "/b")
	defer b.Close()
	syncPair(t, c, b)
	must(t, c.Close())

	restored, err := Open("/c", &Options{FS: old, MemtableSize: 1 << 20})
	must(t, err)
	defer restored.Close()
	before := fullDump(t, restored)
	if _, err := restored.ImportSnapshot(bytes.NewReader(exportSnapshot(t, b))); !errors.Is(err, ErrSnapshotAhead) {
		t.Fatalf("import of a snapshot ahead of this replica: %v", err)
	}
	if fullDump(t, restored) != before {
		t.Fatal("the refused import changed the replica")
	}
}

// TestSnapshotSpeed measures export and import of about a million small
// documents on disk. It runs only with PLURES_SNAPSHOT_SPEED=1 (and -v to
// see the figures).
func TestSnapshotSpeed(t *testing.T) {
	if os.Getenv("PLURES_SNAPSHOT_SPEED") == "" {
		t.Skip("set PLURES_SNAPSHOT_SPEED=1 to run")
	}
	n := 1_000_000
	dir := t.TempDir()
	a, err := Open(dir+"/a", &Options{NoSync: true})
	must(t, err)
	defer a.Close()
	b := a.NewBatch()
	for i := range n {
		must(t, b.Put(fmt.Appendf(nil, "user/%08d", i), fmt.Appendf(nil, `{"name":"user %d","n":%d}`, i, i*7)))
		if b.Len() == 1000 {
			must(t, b.Commit(nil))
			b.Reset()
		}
	}
	must(t, b.Commit(nil))
	must(t, a.Flush())
	f, err := os.Create(dir + "/snap")
	must(t, err)
	start := time.Now()
	info, err := a.ExportSnapshot(f)
	must(t, err)
	must(t, f.Sync())
	must(t, f.Close())
	exp := time.Since(start)
	c, err := Open(dir+"/c", &Options{NoSync: true})
	must(t, err)
	defer c.Close()
	f, err = os.Open(dir + "/snap")
	must(t, err)
	defer f.Close()
	start = time.Now()
	if _, err := c.ImportSnapshot(f); err != nil {
		t.Fatal(err)
	}
	imp := time.Since(start)
	mb := float64(info.Bytes) / (1 << 20)
	t.Logf("%d documents, snapshot %.1f MiB", info.Documents, mb)
	t.Logf("export: %v, %.1f MiB/s, %.0f keys/s", exp.Round(time.Millisecond), mb/exp.Seconds(), float64(n)/exp.Seconds())
	t.Logf("import: %v, %.1f MiB/s, %.0f keys/s", imp.Round(time.Millisecond), mb/imp.Seconds(), float64(n)/imp.Seconds())
	if v, err := c.Get([]byte("user/00999999")); err != nil || !bytes.Contains(v, []byte("user 999999")) {
		t.Fatalf("last document: %q, %v", v, err)
	}
}

// TestSnapshotAsOfRefusesHole: a snapshot brings state whose operations
// the importer's log never held. An as-of read that would fold from an
// older whole write in the log, missing the snapshot's field, says
// ErrHistoryUnavailable instead; a whole write after the snapshot starts
// a complete fold again.
func TestSnapshotAsOfRefusesHole(t *testing.T) {
	fs := vfs.NewMem()
	a, b := openReplica(t, fs, "/a"), openReplica(t, fs, "/b")
	defer a.Close()
	defer func() { b.Close() }()
	must(t, b.Put([]byte("k"), []byte("b's older whole value")))
	time.Sleep(2 * time.Millisecond) // a's field orders above b's value
	must(t, a.SetField([]byte("k"), []byte("f"), []byte("from a")))
	if _, err := b.ImportSnapshot(bytes.NewReader(exportSnapshot(t, a))); err != nil {
		t.Fatal(err)
	}
	d, err := b.GetFields([]byte("k"))
	if err != nil || string(d.Fields["f"]) != "from a" {
		t.Fatalf("state after the snapshot: %+v, %v", d, err)
	}
	if d, err := b.GetAsOf([]byte("k"), b.Now()); !errors.Is(err, ErrHistoryUnavailable) {
		t.Fatalf("GetAsOf across the snapshot: %+v, %v; want ErrHistoryUnavailable", d, err)
	}
	before := b.Now()
	must(t, b.Put([]byte("k"), []byte("after")))
	if d, err := b.GetAsOf([]byte("k"), b.Now()); err != nil || string(d.Value) != "after" {
		t.Fatalf("GetAsOf after a whole write: %+v, %v", d, err)
	}
	// The mark survives a restart.
	must(t, b.Close())
	b = openReplica(t, fs, "/b")
	if d, err := b.GetAsOf([]byte("k"), before); !errors.Is(err, ErrHistoryUnavailable) {
		t.Fatalf("GetAsOf before the whole write, after a restart: %+v, %v", d, err)
	}
}

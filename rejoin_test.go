package pluresdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/plures/pluresdb/hnsw"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/verify"
)

// rejoinSetup: replica a writes (documents, fields, counters), is
// checkpointed to /a-copy, writes more, and exchanges with b both ways, so
// b holds a's later operations. a's directory is then lost, and the copy
// is marked rejoining as backup.Restore marks it. It returns b and the
// last of a's sequence numbers b holds.
func rejoinSetup(t *testing.T, fs *vfs.MemFS) (b *DB, id oplog.ReplicaID, bHeld uint64) {
	t.Helper()
	a := openReplica(t, fs, "/a")
	b = openReplica(t, fs, "/b")
	for i := range 5 {
		must(t, a.Put(fmt.Appendf(nil, "k%d", i), []byte("old")))
		must(t, a.Incr([]byte("c"), []byte("n"), 1))
	}
	must(t, a.SetField([]byte("doc"), []byte("f"), []byte("before")))
	must(t, a.Checkpoint("/a-copy"))
	for i := range 20 {
		must(t, a.Put(fmt.Appendf(nil, "later%02d", i), []byte("written after the copy")))
	}
	must(t, a.Incr([]byte("c"), []byte("n"), 10))
	// Vector writes take sequence numbers and are no operations: the
	// import that brings a's later operations back takes fewer numbers
	// than a did, and a's next write would reuse some without the jump.
	vi, err := a.VectorIndex("vec", hnsw.Config{Dim: 2})
	must(t, err)
	for i := range 50 {
		must(t, vi.Add(fmt.Appendf(nil, "v%d", i), []float32{float32(i), 1}))
	}
	must(t, a.SetField([]byte("doc"), []byte("f"), []byte("after")))
	must(t, a.Delete([]byte("k0")))
	must(t, b.Put([]byte("fromb"), []byte("b's")))
	must(t, b.Incr([]byte("c"), []byte("n"), 100))
	syncPair(t, a, b)
	syncPair(t, b, a)
	// b's operations come between a's: a's later writes interleave with
	// the imports in its log.
	must(t, a.Put([]byte("last"), []byte("a's last")))
	syncPair(t, a, b)
	id = a.ReplicaID()
	bHeld = b.VersionVector()[id]
	if bHeld <= a.VersionVector()[id]-1 || bHeld == 0 {
		t.Fatalf("setup: b holds a's operations up to %d, a's last is %d", bHeld, a.VersionVector()[id])
	}
	must(t, a.Close())
	must(t, vfs.RemoveAll(fs, "/a")) // the node is lost
	must(t, oplog.WriteRejoinFile(fs, layout.Path("/a-copy", layout.TypeRejoin, 0), id))
	return b, id, bHeld
}

// rejoinOpts opens the copy with synced commits, so that what an import
// applied survives a power cut.
func rejoinOpts(fs vfs.FS) *Options { return &Options{FS: fs, MemtableSize: 1 << 20} }

// checkRefusesWrites checks that every local write fails with
// ErrRejoining, and that reads work.
func checkRefusesWrites(t *testing.T, db *DB) {
	t.Helper()
	if !db.Rejoining() {
		t.Fatal("not rejoining")
	}
	if h := db.Health(); !h.Rejoining || h.Writable {
		t.Fatalf("Health while rejoining: %+v", h)
	}
	if !db.Metrics().OpLog.Rejoining {
		t.Fatal("Metrics().OpLog.Rejoining is false")
	}
	b := db.NewBatch()
	must(t, b.Put([]byte("x"), []byte("y")))
	writes := map[string]error{
		"Put":         db.Put([]byte("x"), []byte("y")),
		"Delete":      db.Delete([]byte("k1")),
		"SetField":    db.SetField([]byte("doc"), []byte("f"), []byte("v")),
		"DeleteField": db.DeleteField([]byte("doc"), []byte("f")),
		"Incr":        db.Incr([]byte("c"), []byte("n"), 1),
		"Batch":       b.Commit(nil),
	}
	vi, err := db.VectorIndex("vec", hnsw.Config{Dim: 2})
	must(t, err)
	writes["VectorIndex.Add"] = vi.Add([]byte("x"), []float32{1, 2})
	writes["VectorIndex.Delete"] = vi.Delete([]byte("x"))
	for name, err := range writes {
		if !errors.Is(err, ErrRejoining) {
			t.Errorf("%s while rejoining: %v, want ErrRejoining", name, err)
		}
	}
	if v, err := db.Get([]byte("k1")); err != nil || string(v) != "old" {
		t.Fatalf("Get while rejoining: %q, %v", v, err)
	}
}

func checkClean(t *testing.T, fs vfs.FS, dir string, rejoining bool) {
	t.Helper()
	rep, err := verify.Dir(context.Background(), fs, dir, verify.Options{})
	must(t, err)
	if !rep.Clean || len(rep.Findings) != 0 {
		t.Fatalf("verify %s: %+v", dir, rep.Findings)
	}
	if rep.Rejoining != rejoining {
		t.Fatalf("verify %s: rejoining %v, want %v", dir, rep.Rejoining, rejoining)
	}
}

// TestRejoinTakesOwnOperationsBack: a replica restored in place refuses
// local writes, takes its own later operations back from a peer, and once
// finished writes under sequence numbers beyond every one its peer held;
// the two converge.
func TestRejoinTakesOwnOperationsBack(t *testing.T) {
	fs := vfs.NewMem()
	b, id, bHeld := rejoinSetup(t, fs)
	defer b.Close()
	a, err := Open("/a-copy", rejoinOpts(fs))
	must(t, err)
	defer func() { a.Close() }()
	if a.ReplicaID() != id {
		t.Fatal("setup: the copy has another replica ID")
	}
	checkRefusesWrites(t, a)

	// A snapshot cannot bring the operations back, nor a selective stream.
	var snap bytes.Buffer
	_, err = b.ExportSnapshot(&snap)
	must(t, err)
	if _, err := a.ImportSnapshot(&snap); !errors.Is(err, ErrSnapshotAhead) {
		t.Fatalf("snapshot while rejoining: %v, want ErrSnapshotAhead", err)
	}
	var sel bytes.Buffer
	_, err = b.ExportChangesPrefix(&sel, a.VersionVector(), []byte("later"))
	must(t, err)
	if _, err := a.ImportChanges(&sel); !errors.Is(err, ErrRejoining) {
		t.Fatalf("selective stream with own operations while rejoining: %v, want ErrRejoining", err)
	}
	// A stream starting after a's own last leaves a gap.
	since := a.VersionVector()
	since[id]++
	var gap bytes.Buffer
	_, err = b.ExportChanges(&gap, since)
	must(t, err)
	if _, err := a.ImportChanges(&gap); !errors.Is(err, ErrCausalGap) {
		t.Fatalf("stream after a's own last: %v, want ErrCausalGap", err)
	}

	// The state survives a restart.
	must(t, a.Close())
	a, err = Open("/a-copy", rejoinOpts(fs))
	must(t, err)
	checkRefusesWrites(t, a)

	// The import brings a's later operations back.
	before := a.VersionVector()[id]
	n := syncPair(t, b, a)
	if got := a.VersionVector()[id]; got != bHeld {
		t.Fatalf("after the import a's own entry is %d (was %d), b held %d", got, before, bHeld)
	}
	if n == 0 {
		t.Fatal("the import applied nothing")
	}
	if v, err := a.Get([]byte("later07")); err != nil || string(v) != "written after the copy" {
		t.Fatalf("a's own later write after the import: %q, %v", v, err)
	}
	if _, err := a.Get([]byte("k0")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a's own later delete after the import: %v", err)
	}
	// Importing again changes nothing.
	if n := syncPair(t, b, a); n != 0 {
		t.Fatalf("a second import applied %d operations", n)
	}
	checkRefusesWrites(t, a)

	// A power cut before FinishRejoin: still rejoining, and the
	// operations taken back are there (the import synced).
	crashed := fs.CrashClone()
	a.Close()
	a, err = Open("/a-copy", rejoinOpts(crashed))
	must(t, err)
	checkRefusesWrites(t, a)
	if got := a.VersionVector()[id]; got != bHeld {
		t.Fatalf("after a power cut a's own entry is %d, b held %d", got, bHeld)
	}
	must(t, a.Close())
	checkClean(t, crashed, "/a-copy", true)

	a, err = Open("/a-copy", rejoinOpts(crashed))
	must(t, err)
	must(t, a.FinishRejoin())
	if a.Rejoining() || !a.Health().Writable {
		t.Fatalf("after FinishRejoin: rejoining %v, health %+v", a.Rejoining(), a.Health())
	}
	must(t, a.FinishRejoin()) // a no-op now
	must(t, a.Put([]byte("new"), []byte("after the rejoin")))
	if got := a.VersionVector()[id]; got <= bHeld {
		t.Fatalf("a's first write after the rejoin has sequence number %d; b holds a's operations up to %d", got, bHeld)
	}
	must(t, a.Incr([]byte("c"), []byte("n"), 1000))

	// Writable after a reopen, and still beyond what b held.
	must(t, a.Close())
	a, err = Open("/a-copy", rejoinOpts(crashed))
	must(t, err)
	if a.Rejoining() {
		t.Fatal("rejoining again after a reopen")
	}
	must(t, a.Put([]byte("new2"), []byte("after the reopen")))

	syncPair(t, a, b)
	syncPair(t, b, a)
	syncPair(t, a, b)
	if da, db := dump(t, a), dump(t, b); da != db {
		t.Fatalf("replicas diverged:\na:\n%s\nb:\n%s", da, db)
	}
	if va, vb := a.VersionVector(), b.VersionVector(); !va.Equal(vb) {
		t.Fatalf("version vectors differ: a %v, b %v", va, vb)
	}
	d, err := a.GetFields([]byte("c"))
	must(t, err)
	if got := d.Counters["n"]; got != 5+10+100+1000 {
		t.Fatalf("counter after the rejoin: %d, want %d", got, 5+10+100+1000)
	}
	must(t, a.Close())
	checkClean(t, crashed, "/a-copy", false)
}

// TestRejoinSeqJumpSurvivesPowerCut: the jump past the operations taken
// back is in the log before them, so a power cut that keeps them keeps
// the jump, also with NoSync imports; one that loses both leaves the
// replica rejoining, and importing again completes it.
func TestRejoinSeqJumpSurvivesPowerCut(t *testing.T) {
	fs := vfs.NewMem()
	b, id, bHeld := rejoinSetup(t, fs)
	defer b.Close()
	a := openReplica(t, fs, "/a-copy") // NoSync
	must(t, a.Close())
	a = openReplica(t, fs, "/a-copy") // the jump starts a segment
	syncPair(t, b, a)
	must(t, a.Close())
	checkClean(t, fs, "/a-copy", true)
	a = openReplica(t, fs, "/a-copy")
	crashed := fs.CrashClone()
	a.Close()
	a = openReplica(t, crashed, "/a-copy")
	checkRefusesWrites(t, a)
	if got := a.VersionVector()[id]; got != bHeld {
		syncPair(t, b, a) // lost in the power cut: again
	}
	if got := a.VersionVector()[id]; got != bHeld {
		t.Fatalf("a's own entry %d, b held %d", got, bHeld)
	}
	must(t, a.FinishRejoin()) // syncs the log
	crashed2 := crashed.CrashClone()
	a.Close()
	a = openReplica(t, crashed2, "/a-copy")
	defer a.Close()
	if a.Rejoining() {
		t.Fatal("rejoining after FinishRejoin and a power cut")
	}
	if got := a.VersionVector()[id]; got != bHeld {
		t.Fatalf("after FinishRejoin and a power cut a's own entry is %d, b held %d", got, bHeld)
	}
	must(t, a.Put([]byte("new"), []byte("v")))
	if got := a.VersionVector()[id]; got <= bHeld {
		t.Fatalf("a's write after the power cut has sequence number %d; b holds a's operations up to %d", got, bHeld)
	}
	syncPair(t, a, b)
	syncPair(t, b, a)
	if da, db := dump(t, a), dump(t, b); da != db {
		t.Fatalf("replicas diverged:\na:\n%s\nb:\n%s", da, db)
	}
}

// TestRejoinMarkerChecked: a damaged marker, or one of another replica,
// refuses the open; a checkpoint of a rejoining replica rejoins too.
func TestRejoinMarkerChecked(t *testing.T) {
	fs := vfs.NewMem()
	b, id, _ := rejoinSetup(t, fs)
	defer b.Close()
	a, err := Open("/a-copy", rejoinOpts(fs))
	must(t, err)
	must(t, a.Checkpoint("/a-copy2"))
	must(t, a.Close())
	c, err := Open("/a-copy2", rejoinOpts(fs))
	must(t, err)
	checkRefusesWrites(t, c)
	must(t, c.Close())
	checkClean(t, fs, "/a-copy2", true)

	path := layout.Path("/a-copy2", layout.TypeRejoin, 0)
	must(t, oplog.WriteRejoinFile(fs, path, b.ReplicaID()))
	if _, err := Open("/a-copy2", rejoinOpts(fs)); !errors.Is(err, ErrCorruption) {
		t.Fatalf("open with another replica's marker: %v, want ErrCorruption", err)
	}
	must(t, oplog.WriteRejoinFile(fs, path, id))
	r, err := fs.Open(path)
	must(t, err)
	good, err := io.ReadAll(r)
	must(t, err)
	must(t, r.Close())
	good[20] ^= 1 // a bit of the ID: the checksum fails
	f, err := fs.Create(path)
	must(t, err)
	_, err = f.Write(good)
	must(t, err)
	must(t, f.Close())
	if _, err := Open("/a-copy2", rejoinOpts(fs)); !errors.Is(err, ErrCorruption) {
		t.Fatalf("open with a damaged marker: %v, want ErrCorruption", err)
	}
	must(t, oplog.WriteRejoinFile(fs, path, id))
	c, err = Open("/a-copy2", &Options{FS: fs, ReadOnly: true})
	must(t, err)
	defer c.Close()
	if !c.Rejoining() || !c.Health().Rejoining {
		t.Fatal("a read-only open does not say rejoining")
	}
	if err := c.FinishRejoin(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("FinishRejoin on a read-only open: %v, want ErrReadOnly", err)
	}
}

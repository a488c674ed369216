package pluresdb

import (
	"bytes"
	"errors"
	"github.com/plures/pluresdb/lsm"
	"strings"
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/vfs"
)

// TestClockSurvivesDroppedHistory: a replica that imported writes from a
// peer whose clock runs 50 s ahead, and then dropped that history, must
// not come back from a restart with a clock behind them. Its later local
// write to the same key must win on both replicas.
func TestClockSurvivesDroppedHistory(t *testing.T) {
	fs := vfs.NewMem()
	ahead := func() time.Time { return time.Now().Add(50 * time.Second) }
	a, err := Open("/a", &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, Clock: ahead})
	must(t, err)
	defer func() { a.Close() }()
	bOpts := &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, Retention: -1}
	b, err := Open("/b", bOpts)
	must(t, err)
	must(t, a.Put([]byte("k"), []byte("from a")))
	if n := syncPair(t, a, b); n != 1 {
		t.Fatalf("synced %d", n)
	}
	must(t, b.Flush())
	must(t, b.applyRetention(time.Now()))
	if b.Metrics().OpLog.SegmentsDropped == 0 {
		t.Fatal("no history dropped")
	}
	must(t, b.Close())
	b, err = Open("/b", bOpts)
	must(t, err)
	defer func() { b.Close() }()
	must(t, b.Put([]byte("k"), []byte("from b, later")))
	syncPair(t, b, a)
	syncPair(t, a, b)
	for name, db := range map[string]*DB{"a": a, "b": b} {
		v, err := db.Get([]byte("k"))
		must(t, err)
		if string(v) != "from b, later" {
			t.Errorf("%s reads %q, want b's later write", name, v)
		}
	}
}

// TestStaleReplicaRefused: once a tombstone is collected, an older write
// to its key from a replica that was away must not be applied: the whole
// stream is refused with ErrStaleReplica, the key stays deleted, and the
// refusal is counted. Fresh changes still sync.
func TestStaleReplicaRefused(t *testing.T) {
	fs := vfs.NewMem()
	const retention = 50 * time.Millisecond
	a, err := Open("/a", &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, Retention: retention})
	must(t, err)
	defer a.Close()
	away := openReplica(t, fs, "/away")
	defer away.Close()
	must(t, away.Put([]byte("other"), []byte("x")))
	must(t, away.Put([]byte("k"), []byte("old write")))
	var stale bytes.Buffer
	_, err = away.ExportChanges(&stale, a.VersionVector())
	must(t, err)

	must(t, a.Put([]byte("k"), []byte("v")))
	must(t, a.Put([]byte("stays"), []byte("v")))
	must(t, a.Flush())
	must(t, a.Delete([]byte("k")))
	must(t, a.Flush()) // two tables: the compaction rewrites, not moves
	time.Sleep(3 * retention)
	must(t, a.Compact(nil, nil))
	if _, _, err := a.getRaw([]byte("\x01k"), lsm.SeqNum(a.visible.Load())); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tombstone not collected: %v", err)
	}

	n, err := a.ImportChanges(bytes.NewReader(stale.Bytes()))
	if !errors.Is(err, ErrStaleReplica) || !errors.Is(err, ErrHistoryUnavailable) || n != 0 {
		t.Fatalf("import of a stale write: %d, %v", n, err)
	}
	if !strings.Contains(err.Error(), "snapshot") {
		t.Errorf("the error does not say to re-bootstrap: %v", err)
	}
	for _, k := range []string{"k", "other"} {
		if v, err := a.Get([]byte(k)); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s after the refused import: %q, %v", k, v, err)
		}
	}
	if got := a.Metrics().OpLog.StaleImports; got != 1 {
		t.Errorf("StaleImports = %d, want 1", got)
	}
	// The horizon survives a restart.
	must(t, a.Close())
	a, err = Open("/a", &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, Retention: retention})
	must(t, err)
	if _, err := a.ImportChanges(bytes.NewReader(stale.Bytes())); !errors.Is(err, ErrStaleReplica) {
		t.Fatalf("import of a stale write after a restart: %v", err)
	}

	// A replica that keeps up syncs as ever.
	fresh := openReplica(t, fs, "/fresh")
	defer fresh.Close()
	must(t, fresh.Put([]byte("new"), []byte("n")))
	if n := syncPair(t, fresh, a); n != 1 {
		t.Fatalf("fresh sync applied %d", n)
	}
	syncPair(t, a, fresh)
	if dump(t, a) != dump(t, fresh) {
		t.Fatal("replicas differ after a normal exchange")
	}
}

package pluresdb

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/archive"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
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

// TestSubscribeGapRefused: resuming the feed from a position whose history
// retention dropped fails instead of skipping what was dropped.
func TestSubscribeGapRefused(t *testing.T) {
	fs := vfs.NewMem()
	db, err := Open("/a", &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, Retention: -1})
	must(t, err)
	defer db.Close()
	ctx := context.Background()
	sub, err := db.Subscribe(ctx, Position{})
	must(t, err)
	for i := range 50 {
		must(t, db.Put(fmt.Appendf(nil, "k%d", i), []byte("v")))
	}
	var saved Position
	for range 10 {
		c, err := sub.Next()
		must(t, err)
		saved = c.Pos
	}
	sub.Close()
	must(t, db.Flush())
	must(t, db.applyRetention(time.Now()))
	must(t, db.Put([]byte("after"), []byte("v")))
	sub, err = db.Subscribe(ctx, saved)
	if err == nil {
		c, nerr := sub.Next()
		err = nerr
		if err == nil {
			t.Fatalf("resumed across dropped history: got %q at %+v", c.Op.Key, c.Pos)
		}
	}
	if !errors.Is(err, ErrHistoryUnavailable) {
		t.Fatalf("resume across dropped history: %v", err)
	}
	// The same after a restart.
	must(t, db.Close())
	db, err = Open("/a", &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, Retention: -1})
	must(t, err)
	if _, err := db.Subscribe(ctx, saved); !errors.Is(err, ErrHistoryUnavailable) {
		t.Fatalf("after a restart: %v", err)
	}
}

// TestSubscribeInsideArchive: the feed resumes from any position inside
// archived history, imports' multi-operation records included, with
// exactly the operations after it, in order, then live ones.
func TestSubscribeInsideArchive(t *testing.T) {
	fs := vfs.NewMem()
	opts := &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, HotHistory: -1}
	db, err := Open("/a", opts)
	must(t, err)
	defer func() { db.Close() }()
	peer := openReplica(t, fs, "/peer")
	defer peer.Close()
	for i := range 30 {
		must(t, peer.Put(fmt.Appendf(nil, "p%d", i), []byte("x")))
	}
	for i := range 300 {
		must(t, db.Put(fmt.Appendf(nil, "k%03d", i), []byte("v")))
		if i == 100 {
			syncPair(t, peer, db)
		}
	}
	b := db.NewBatch()
	for i := range 5 {
		must(t, b.Put(fmt.Appendf(nil, "b%d", i), []byte("v")))
	}
	must(t, b.Commit(nil))

	ctx := context.Background()
	read := func(from Position, n int) []Change {
		t.Helper()
		sub, err := db.Subscribe(ctx, from)
		must(t, err)
		defer sub.Close()
		var out []Change
		for range n {
			c, err := sub.Next()
			must(t, err)
			out = append(out, c)
		}
		return out
	}
	const total = 300 + 30 + 5
	want := read(Position{}, total)
	must(t, db.Flush())
	must(t, db.applyRetention(time.Now()))
	if db.Metrics().OpLog.ArchivedSegments == 0 {
		t.Fatal("nothing archived")
	}
	must(t, db.Close())
	db, err = Open("/a", opts)
	must(t, err)
	must(t, db.Put([]byte("live"), []byte("v")))
	for _, i := range []int{0, 50, 100, 101, 115, 130, 131, 200, total - 2, total - 1} {
		got := read(want[i].Pos, total-1-i+1)
		for j, c := range got[:len(got)-1] {
			w := want[i+1+j]
			if c.Pos != w.Pos || string(c.Op.Key) != string(w.Op.Key) || c.Op.Seq != w.Op.Seq || c.Op.Replica != w.Op.Replica {
				t.Fatalf("from %d: change %d is %+v %q, want %+v %q", i, j, c.Pos, c.Op.Key, w.Pos, w.Op.Key)
			}
		}
		if last := got[len(got)-1]; string(last.Op.Key) != "live" {
			t.Fatalf("from %d: after the archive %q, want the live write", i, last.Op.Key)
		}
	}
}

// TestArchiveVersion1 reads archives written before they kept positions
// (a bare change stream): export and as-of reads use them as before, and
// the feed refuses to resume inside them rather than guess.
func TestArchiveVersion1(t *testing.T) {
	fs := vfs.NewMem()
	opts := &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, HotHistory: -1}
	db, err := Open("/a", opts)
	must(t, err)
	for i := range 200 {
		must(t, db.Put(fmt.Appendf(nil, "k%03d", i), []byte("v")))
	}
	must(t, db.Flush())
	must(t, db.applyRetention(time.Now()))
	must(t, db.Close())
	names, err := fs.List("/a")
	must(t, err)
	n := 0
	for _, name := range names {
		if !strings.HasSuffix(name, ".oparc") {
			continue
		}
		// Rewrite as version 1: the stream alone.
		f, err := fs.Open("/a/" + name)
		must(t, err)
		data, err := io.ReadAll(f)
		must(t, err)
		f.Close()
		l, k := binary.Uvarint(data[len(archive.Magic)+1:])
		start := len(archive.Magic) + 1 + k
		must(t, vfs.WriteFileAtomic(fs, "/a/tmp", "/a/"+name, data[start:start+int(l)]))
		n++
	}
	if n == 0 {
		t.Fatal("nothing archived")
	}
	db, err = Open("/a", opts)
	must(t, err)
	defer db.Close()
	b := openReplica(t, fs, "/b")
	defer b.Close()
	if got := syncPair(t, db, b); got != 200 {
		t.Fatalf("export from version 1 archives: %d operations", got)
	}
	if _, err := db.GetAsOf([]byte("k007"), db.Now()); err != nil {
		t.Fatalf("as-of read from a version 1 archive: %v", err)
	}
	sub, err := db.Subscribe(context.Background(), Position{Seq: 5})
	if err == nil {
		_, err = sub.Next()
	}
	if !errors.Is(err, ErrHistoryUnavailable) {
		t.Fatalf("resume inside a version 1 archive: %v", err)
	}
}

// TestHorizonsSurviveCrash: the clock mark and the tombstone collection
// horizon are durable once the history or tombstones under them are gone,
// whatever a power cut leaves of unsynced writes (the databases run with
// NoSync).
func TestHorizonsSurviveCrash(t *testing.T) {
	fs := vfs.NewMem()
	ahead := func() time.Time { return time.Now().Add(50 * time.Second) }
	a, err := Open("/a", &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, Clock: ahead})
	must(t, err)
	defer a.Close()
	const retention = 50 * time.Millisecond
	bOpts := func(fs vfs.FS) *Options {
		return &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, Retention: retention}
	}
	b, err := Open("/b", bOpts(fs))
	must(t, err)
	away := openReplica(t, fs, "/away")
	defer away.Close()
	must(t, away.Put([]byte("gone"), []byte("old write")))
	var stale bytes.Buffer
	_, err = away.ExportChanges(&stale, b.VersionVector())
	must(t, err)

	must(t, a.Put([]byte("k"), []byte("from a")))
	syncPair(t, a, b)
	must(t, b.Put([]byte("gone"), []byte("v")))
	must(t, b.Flush())
	must(t, b.Delete([]byte("gone")))
	must(t, b.Flush())
	time.Sleep(3 * retention)
	must(t, b.Compact(nil, nil))
	syncPair(t, b, a)
	must(t, b.applyRetention(time.Now().Add(time.Minute)))
	if b.Metrics().OpLog.SegmentsDropped == 0 {
		t.Fatal("no history dropped")
	}
	crashed := fs.CrashClone()
	must(t, b.Close())

	b, err = Open("/b", bOpts(crashed))
	must(t, err)
	defer b.Close()
	if _, err := b.ImportChanges(bytes.NewReader(stale.Bytes())); !errors.Is(err, ErrStaleReplica) {
		t.Fatalf("stale import after a crash: %v", err)
	}
	must(t, b.Put([]byte("k"), []byte("from b, later")))
	var buf bytes.Buffer
	_, err = b.ExportChanges(&buf, a.VersionVector())
	must(t, err)
	_, err = a.ImportChanges(&buf)
	must(t, err)
	for name, db := range map[string]*DB{"a": a, "b": b} {
		v, err := db.Get([]byte("k"))
		must(t, err)
		if string(v) != "from b, later" {
			t.Errorf("%s reads %q, want b's later write", name, v)
		}
	}
}

// TestTombstoneKeptUnderNewerOperand: a tombstone at the bottom of the
// tree is not collected while an imported operand of its key, older by
// timestamp (a concurrent write from a replica whose clock is behind),
// sits above it outside the compaction: the operand would fold onto
// nothing and bring the deleted document back. Once a compaction folds
// them together, the key stays deleted.
func TestTombstoneKeptUnderNewerOperand(t *testing.T) {
	fs := vfs.NewMem()
	a, err := Open("/a", &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, Retention: -1})
	must(t, err)
	defer a.Close()
	behind := func() time.Time { return time.Now().Add(-10 * time.Second) }
	b, err := Open("/b", &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, Clock: behind})
	must(t, err)
	defer b.Close()
	must(t, b.Put([]byte("k"), []byte("b's older write")))

	// a deletes k; a lagging peer keeps the tombstone while it goes to
	// the bottom.
	var lagging oplog.ReplicaID
	lagging[0] = 9
	must(t, a.AcknowledgePeer(lagging, oplog.VersionVector{}))
	must(t, a.Put([]byte("k"), []byte("a's")))
	must(t, a.Put([]byte("other"), []byte("v")))
	must(t, a.Flush())
	must(t, a.Delete([]byte("k")))
	must(t, a.Compact(nil, nil))
	must(t, a.ForgetPeer(lagging))

	// b's write arrives: an operand above the tombstone.
	syncPair(t, b, a)
	ukey := []byte("\x01k")
	a.stateMu.RLock()
	_, _, opSeq, _, err := a.getLocked(ukey, lsm.MaxSeqNum)
	must(t, err)
	tomb, kind, tombSeq, found, err := a.getLocked(ukey, opSeq-1)
	a.stateMu.RUnlock()
	must(t, err)
	if !found || kind != lsm.KindSet || tombSeq >= opSeq {
		t.Fatalf("setup: below the operand at %d: found %v kind %v seq %d", opSeq, found, kind, tombSeq)
	}
	// By its timestamps alone the tombstone may go: every peer has it.
	if ok, err := oplog.Collectible(tomb, a.ReplicaID(), func(oplog.ReplicaID) oplog.Timestamp { return a.Now() }); err != nil || !ok {
		t.Fatalf("setup: the tombstone is not collectible by its timestamp (%v, %v)", ok, err)
	}
	collect := a.tombstoneCollector()
	if collect(ukey, tomb, tombSeq) {
		t.Fatal("the tombstone would be collected under a newer operand of its key")
	}
	// Folded together, the key stays deleted.
	must(t, a.Compact(nil, nil))
	if _, err := a.Get([]byte("k")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted key after the fold: %v", err)
	}
}

// TestKeyHistory: the operations on a key, from the log and the archive,
// in log order at their feed positions, a peer's included.
func TestKeyHistory(t *testing.T) {
	fs := vfs.NewMem()
	opts := &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, HotHistory: -1}
	db, err := Open("/a", opts)
	must(t, err)
	defer func() { db.Close() }()
	peer := openReplica(t, fs, "/peer")
	defer peer.Close()
	must(t, peer.SetField([]byte("k"), []byte("f"), []byte("peer's")))
	must(t, db.Put([]byte("k"), []byte("v1")))
	must(t, db.Put([]byte("other"), []byte("x")))
	syncPair(t, peer, db)
	must(t, db.Flush())
	must(t, db.applyRetention(time.Now())) // the first segment to the archive
	must(t, db.Incr([]byte("k"), []byte("n"), 2))
	must(t, db.Delete([]byte("k")))

	got, complete, err := db.KeyHistory([]byte("k"))
	must(t, err)
	if !complete {
		t.Fatal("history reported incomplete with nothing dropped")
	}
	want := []oplog.OpKind{oplog.KindPut, oplog.KindSetField, oplog.KindIncr, oplog.KindDelete}
	if len(got) != len(want) {
		t.Fatalf("%d operations, want %d: %+v", len(got), len(want), got)
	}
	for i, c := range got {
		if c.Op.Kind != want[i] || string(c.Op.Key) != "k" {
			t.Fatalf("operation %d: %v on %q, want %v", i, c.Op.Kind, c.Op.Key, want[i])
		}
		if i > 0 && !got[i-1].Pos.Less(c.Pos) {
			t.Fatalf("positions out of order: %v then %v", got[i-1].Pos, c.Pos)
		}
	}
	if got[1].Op.Replica != peer.ReplicaID() {
		t.Fatalf("the peer's write is attributed to %s", got[1].Op.Replica)
	}
	if db.Metrics().OpLog.ArchivedSegments == 0 {
		t.Fatal("nothing archived: the test reads only the log")
	}
}

// TestTryNext: TryNext delivers what is committed, then says so instead of
// waiting, and sees a later commit.
func TestTryNext(t *testing.T) {
	db := openReplica(t, vfs.NewMem(), "/a")
	defer db.Close()
	for i := range 5 {
		must(t, db.Put(fmt.Appendf(nil, "k%d", i), []byte("v")))
	}
	sub, err := db.Subscribe(context.Background(), Position{})
	must(t, err)
	defer sub.Close()
	n := 0
	for {
		_, ok, err := sub.TryNext()
		must(t, err)
		if !ok {
			break
		}
		n++
	}
	if n != 5 {
		t.Fatalf("TryNext delivered %d changes, want 5", n)
	}
	must(t, db.Put([]byte("later"), []byte("v")))
	var c Change
	ok := false
	for range 1000 { // the live record may take a moment to become visible
		if c, ok, err = sub.TryNext(); err != nil || ok {
			break
		}
		time.Sleep(time.Millisecond)
	}
	must(t, err)
	if !ok || string(c.Op.Key) != "later" {
		t.Fatalf("TryNext after a commit: %v %q", ok, c.Op.Key)
	}
}

// TestMissingHistoryFileIsLoud: an archive or a sealed log segment that
// the op log's index lists but that is gone (deleted, never synced) is
// history lost: exports and the feed from before it fail with
// ErrHistoryUnavailable instead of sending less than asked, Health and
// LostRanges name it, and exports after it still work.
func TestMissingHistoryFileIsLoud(t *testing.T) {
	for _, victim := range []string{"archive", "log"} {
		t.Run(victim, func(t *testing.T) {
			fs := vfs.NewMem()
			opts := &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, HotHistory: -1}
			if victim == "log" {
				opts.HotHistory = 0 // keep sealed segments as they are
			}
			db, err := Open("/a", opts)
			must(t, err)
			for round := range 3 {
				for i := range 300 {
					must(t, db.Put(fmt.Appendf(nil, "r%d-k%03d", round, i), bytes.Repeat([]byte("v"), 50)))
				}
				must(t, db.Flush())
			}
			if victim == "archive" {
				must(t, db.applyRetention(time.Now()))
			}
			db.ol.mu.Lock()
			segs := db.ol.snapshotSegs()
			db.ol.mu.Unlock()
			must(t, db.Close())
			// The second retained history file of the kind goes.
			var matching []*segIndex
			for _, g := range segs {
				if g.archived == (victim == "archive") && len(g.ranges) > 0 {
					matching = append(matching, g)
				}
			}
			if len(matching) < 2 {
				t.Fatalf("%d %s files to choose from", len(matching), victim)
			}
			s := matching[1]
			path := layout.Path("/a", layout.TypeLog, s.num)
			if victim == "archive" {
				path = layout.Path("/a", layout.TypeArchive, s.num)
			}
			must(t, fs.Remove(path))

			db, err = Open("/a", opts)
			must(t, err)
			defer func() { db.Close() }()
			if lost := db.Health().Lost; len(lost) != 1 || lost[0].Segment != path || !errors.Is(lost[0].Err, ErrCorruption) {
				t.Fatalf("Health().Lost = %+v, want %s", lost, path)
			}
			var buf bytes.Buffer
			if n, err := db.ExportChanges(&buf, nil); !errors.Is(err, ErrHistoryUnavailable) {
				t.Fatalf("export from the start: %d operations, %v; want ErrHistoryUnavailable", n, err)
			}
			// The feed fails at Subscribe or at the first Next.
			sub, err := db.Subscribe(context.Background(), Position{})
			if err == nil {
				_, err = sub.Next()
				sub.Close()
			}
			if !errors.Is(err, ErrHistoryUnavailable) {
				t.Fatalf("feed from the start: %v", err)
			}
			// From past the loss, all is there: the floor is in the vector.
			since := oplog.VersionVector{db.ReplicaID(): s.ranges[db.ReplicaID()].max}
			if _, err := db.ExportChanges(&buf, since); err != nil {
				t.Fatalf("export after the loss: %v", err)
			}
			// And it stays so across a write and a restart.
			must(t, db.Put([]byte("x"), []byte("y")))
			must(t, db.Close())
			db, err = Open("/a", opts)
			must(t, err)
			if _, err := db.ExportChanges(&buf, nil); !errors.Is(err, ErrHistoryUnavailable) {
				t.Fatalf("export from the start after a restart: %v", err)
			}
		})
	}
}

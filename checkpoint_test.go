package pluresdb

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plures/pluresdb/hnsw"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
)

// scanAll returns every document of db.
func scanAll(t testing.TB, db *DB) map[string]string {
	t.Helper()
	it := db.NewIter(nil, nil)
	out := map[string]string{}
	for ok := it.First(); ok; ok = it.Next() {
		out[string(it.Key())] = string(it.Value())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameScan(t testing.TB, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("scan has %d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Fatalf("key %q: got %q (present %v), want %q", k, g, ok, v)
		}
	}
}

// TestCheckpointConcurrentWriters: writers commit three-key batches while
// a checkpoint is taken; the checkpoint holds every batch acknowledged
// before the call, each writer's batches as a prefix, and no batch in
// part.
func TestCheckpointConcurrentWriters(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	fs := vfs.NewMem()
	db, err := Open("/db", &Options{FS: fs, MemtableSize: 1 << 20, NoSync: seed%2 == 0})
	must(t, err)
	defer db.Close()

	const writers = 4
	var acked [writers]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(seed), uint64(w)))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				b := db.NewBatch()
				val := bytes.Repeat([]byte{byte('a' + w)}, 50+r.IntN(400))
				for _, part := range []string{"a", "b", "c"} {
					if err := b.Put(fmt.Appendf(nil, "w%d/%06d/%s", w, i, part), val); err != nil {
						t.Error(err)
						return
					}
				}
				if err := b.Commit(nil); err != nil {
					t.Error(err)
					return
				}
				acked[w].Store(int64(i + 1))
			}
		}()
	}
	var flushes sync.WaitGroup
	for round := range 3 {
		time.Sleep(30 * time.Millisecond)
		if round > 0 {
			// A flush beside the checkpoint, however slowly the writers
			// fill the memtable (the race detector slows them down).
			flushes.Add(1)
			go func() {
				defer flushes.Done()
				if err := db.Flush(); err != nil {
					t.Error(err)
				}
			}()
		}
		var before [writers]int64
		for w := range writers {
			before[w] = acked[w].Load()
		}
		dir := fmt.Sprintf("/ck%d", before[0])
		must(t, db.Checkpoint(dir))
		var after [writers]int64
		for w := range writers {
			after[w] = acked[w].Load()
		}
		ck, err := Open(dir, &Options{FS: fs})
		must(t, err)
		got := scanAll(t, ck)
		must(t, ck.Close())
		batches := map[int]map[int]int{} // writer -> batch -> keys
		for k := range got {
			var w, i int
			var part string
			if _, err := fmt.Sscanf(strings.ReplaceAll(k, "/", " "), "w%d %d %s", &w, &i, &part); err != nil {
				t.Fatalf("unexpected key %q", k)
			}
			if batches[w] == nil {
				batches[w] = map[int]int{}
			}
			batches[w][i]++
		}
		for w := range writers {
			n := len(batches[w])
			for i, c := range batches[w] {
				if c != 3 {
					t.Fatalf("%s: writer %d batch %d has %d of its 3 keys", dir, w, i, c)
				}
				if i >= n {
					t.Fatalf("%s: writer %d has batch %d but only %d batches: not a prefix", dir, w, i, n)
				}
			}
			if int64(n) < before[w] {
				t.Fatalf("%s: writer %d had %d batches acknowledged before the checkpoint, it holds %d", dir, w, before[w], n)
			}
			// One more than acknowledged after: a batch in its commit.
			if int64(n) > after[w]+1 {
				t.Fatalf("%s: writer %d: checkpoint holds %d batches, only %d acknowledged after it", dir, w, n, after[w])
			}
		}
	}
	close(stop)
	wg.Wait()
	flushes.Wait()
	// The checkpoints ran beside flushes and compactions.
	if m := db.Metrics(); m.Flushes == 0 {
		t.Fatalf("no flush during the test: %+v", m)
	}
}

// TestCheckpointOSFS: on the operating system's filesystem the tables are
// hard links, and the checkpoint outlives the compaction that deletes
// the database's copies.
func TestCheckpointOSFS(t *testing.T) {
	root := t.TempDir()
	src := filepath.Join(root, "db")
	db, err := Open(src, &Options{MemtableSize: 1 << 20, NoSync: true})
	must(t, err)
	defer db.Close()
	for i := range 5000 {
		must(t, db.Put(fmt.Appendf(nil, "k%06d", i), fmt.Appendf(nil, "v%d", i)))
	}
	must(t, db.Flush())
	for i := range 100 {
		must(t, db.Put(fmt.Appendf(nil, "live%03d", i), []byte("in the log only")))
	}
	want := scanAll(t, db)
	dst := filepath.Join(root, "ck")
	info, err := db.CheckpointWith(dst, nil)
	must(t, err)
	if info.LinkedBytes == 0 {
		t.Fatalf("nothing hard-linked: %+v", info)
	}
	var linkedTable string
	for _, f := range info.Files {
		if f.Linked && strings.HasSuffix(f.Name, ".sst") {
			linkedTable = f.Name
		}
	}
	if linkedTable == "" {
		t.Fatal("no table linked")
	}
	a, err := os.Stat(filepath.Join(src, linkedTable))
	must(t, err)
	b, err := os.Stat(filepath.Join(dst, linkedTable))
	must(t, err)
	if !os.SameFile(a, b) {
		t.Fatalf("%s is a copy, not a link", linkedTable)
	}
	// Later writes and a full compaction change nothing in the copy.
	for i := range 1000 {
		must(t, db.Put(fmt.Appendf(nil, "k%06d", i), []byte("overwritten")))
	}
	must(t, db.Compact(nil, nil))
	ck, err := Open(dst, nil)
	must(t, err)
	sameScan(t, scanAll(t, ck), want)
	must(t, ck.Close())

	// Refusals: a non-empty target, the database's own directory.
	if err := db.Checkpoint(dst); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("checkpoint into a non-empty directory: %v", err)
	}
	if err := db.Checkpoint(src); err == nil {
		t.Fatal("checkpoint into the database's directory succeeded")
	}
	// An empty existing directory is fine.
	empty := filepath.Join(root, "empty")
	must(t, os.Mkdir(empty, 0o755))
	must(t, db.Checkpoint(empty))
	leftovers, _ := filepath.Glob(filepath.Join(root, ".*checkpoint-*"))
	if len(leftovers) > 0 {
		t.Fatalf("temporary directories left: %v", leftovers)
	}
}

// TestCheckpointArchivesAndVectors: history (archives and sealed
// segments) and vector indexes come along.
func TestCheckpointArchivesAndVectors(t *testing.T) {
	fs := vfs.NewMem()
	opts := &Options{FS: fs, MemtableSize: 1 << 20, HotHistory: -1, ColdDir: "/cold", ColdLevels: 1}
	db, err := Open("/db", opts)
	must(t, err)
	defer db.Close()
	peer := openReplica(t, fs, "/peer")
	defer peer.Close()
	for i := range 50 {
		must(t, peer.Put(fmt.Appendf(nil, "peer%03d", i), []byte("p")))
	}
	syncPair(t, peer, db)
	for i := range 4000 {
		must(t, db.Put(fmt.Appendf(nil, "k%06d", i), bytes.Repeat([]byte("x"), 100)))
	}
	must(t, db.Flush())
	must(t, db.applyRetention(time.Now()))
	if db.Metrics().OpLog.ArchivedSegments == 0 {
		t.Fatal("nothing archived")
	}
	must(t, db.Compact(nil, nil))
	vi := mustIndex(t, db, "emb", hnsw.Config{Dim: 8})
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		must(t, vi.Add(vkey(i), randVec(r, 8)))
	}
	must(t, vi.checkpoint())
	for i := 300; i < 350; i++ {
		must(t, vi.Add(vkey(i), randVec(r, 8)))
	}
	for i := range 20 {
		must(t, db.Put(fmt.Appendf(nil, "after%02d", i), []byte("live")))
	}
	want := scanAll(t, db)
	q := randVec(r, 8)
	wantHits, err := vi.Search(q, 10, nil)
	must(t, err)
	var wantExport bytes.Buffer
	wantN, err := db.ExportChanges(&wantExport, oplog.VersionVector{})
	must(t, err)
	wantVV := db.VersionVector()

	info, err := db.CheckpointWith("/ck", nil)
	must(t, err)
	kinds := map[layout.FileType]int{}
	for _, f := range info.Files {
		ty, _, _ := layout.Parse(f.Name)
		kinds[ty]++
	}
	for _, ty := range []layout.FileType{layout.TypeArchive, layout.TypeVectorGraph, layout.TypeTable, layout.TypeLog, layout.TypeReplica} {
		if kinds[ty] == 0 {
			t.Fatalf("checkpoint has no file of type %d: %+v", ty, info.Files)
		}
	}
	if !info.VersionVector.Equal(wantVV) {
		t.Fatalf("checkpoint version vector %v, want %v", info.VersionVector, wantVV)
	}

	ck, err := Open("/ck", &Options{FS: fs})
	must(t, err)
	defer ck.Close()
	sameScan(t, scanAll(t, ck), want)
	if ck.ReplicaID() != db.ReplicaID() {
		t.Fatal("checkpoint has another replica ID")
	}
	if got := ck.VersionVector(); !got.Equal(wantVV) {
		t.Fatalf("reopened checkpoint version vector %v, want %v", got, wantVV)
	}
	var gotExport bytes.Buffer
	gotN, err := ck.ExportChanges(&gotExport, oplog.VersionVector{})
	must(t, err)
	if gotN != wantN {
		t.Fatalf("checkpoint exports %d operations of history, the database %d", gotN, wantN)
	}
	cvi := mustIndex(t, ck, "emb", hnsw.Config{Dim: 8})
	if cvi.Len() != vi.Len() {
		t.Fatalf("checkpoint's index has %d vectors, want %d", cvi.Len(), vi.Len())
	}
	gotHits, err := cvi.Search(q, 10, nil)
	must(t, err)
	if len(gotHits) != len(wantHits) {
		t.Fatalf("%d hits, want %d", len(gotHits), len(wantHits))
	}
	for i := range gotHits {
		if !bytes.Equal(gotHits[i].Key, wantHits[i].Key) {
			t.Fatalf("hit %d: %q, want %q", i, gotHits[i].Key, wantHits[i].Key)
		}
	}
	if h := ck.Health(); len(h.Quarantined) > 0 {
		t.Fatalf("checkpoint open quarantined %v", h.Quarantined)
	}
}

// TestCheckpointFaults fails the checkpoint at every operation on its
// files in turn: a failed one leaves nothing under the target's name, not
// even after a crash, and the one that succeeds opens after a crash.
func TestCheckpointFaults(t *testing.T) {
	mem := vfs.NewMem()
	var cd atomic.Pointer[vfs.Countdown]
	cd.Store(vfs.FailAfter(1<<62, vfs.ErrInjected))
	fs := vfs.WithFaults(mem, func(op vfs.Op, path string) error {
		if !strings.Contains(path, "ck") && op != vfs.OpLink {
			return nil
		}
		return cd.Load().Inject(op, path)
	})
	db, err := Open("/db", &Options{FS: fs, MemtableSize: 1 << 20})
	must(t, err)
	defer db.Close()
	for i := range 2000 {
		must(t, db.Put(fmt.Appendf(nil, "k%05d", i), bytes.Repeat([]byte("v"), 60)))
	}
	must(t, db.Flush())
	for i := range 50 {
		must(t, db.Put(fmt.Appendf(nil, "live%02d", i), []byte("v")))
	}
	want := scanAll(t, db)

	// Count the operations of a checkpoint.
	must(t, db.Checkpoint("/count/ck"))
	total := cd.Load().Count()
	if total < 10 {
		t.Fatalf("only %d operations counted", total)
	}
	for n := int64(0); ; n++ {
		c := vfs.FailAfter(n, vfs.ErrInjected)
		cd.Store(c)
		dir := fmt.Sprintf("/t%d/ck", n)
		err := db.Checkpoint(dir)
		cd.Store(vfs.FailAfter(1<<62, vfs.ErrInjected))
		crashed := mem.CrashClone()
		if err == nil {
			if c.Fired() {
				t.Fatalf("n=%d: fault injected, yet no error", n)
			}
			ck, err := Open(dir, &Options{FS: crashed})
			if err != nil {
				t.Fatalf("n=%d: the checkpoint does not open after a crash: %v", n, err)
			}
			sameScan(t, scanAll(t, ck), want)
			must(t, ck.Close())
			if n < total/2 {
				t.Fatalf("succeeded with a fault after %d of %d operations", n, total)
			}
			break
		}
		if !errors.Is(err, vfs.ErrInjected) {
			t.Fatalf("n=%d: %v, want the injected fault", n, err)
		}
		for _, f := range []vfs.FS{mem, crashed} {
			if _, serr := f.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
				t.Fatalf("n=%d: failed checkpoint left %s (%v)", n, dir, serr)
			}
		}
		if n > total+10 {
			t.Fatalf("still failing after %d operations", n)
		}
	}
	// The database is untouched and writable.
	must(t, db.Put([]byte("after"), []byte("v")))
	if h := db.Health(); !h.Writable {
		t.Fatalf("database not writable after failed checkpoints: %+v", h)
	}
}

// TestCheckpointLarge times a checkpoint of a database of about
// PLURES_CHECKPOINT_MB megabytes on the operating system's filesystem
// (skipped unless set), with writes going on.
func TestCheckpointLarge(t *testing.T) {
	mb, _ := strconv.Atoi(os.Getenv("PLURES_CHECKPOINT_MB"))
	if mb <= 0 {
		t.Skip("set PLURES_CHECKPOINT_MB to run")
	}
	root := t.TempDir()
	db, err := Open(filepath.Join(root, "db"), &Options{NoSync: true})
	must(t, err)
	defer db.Close()
	r := rand.New(rand.NewPCG(1, 1))
	val := make([]byte, 1000)
	start := time.Now()
	b := db.NewBatch()
	for i := 0; i < mb*1000; i++ {
		for j := range val {
			val[j] = byte(r.Uint32())
		}
		must(t, b.Put(fmt.Appendf(nil, "key%012d", r.Uint64N(1<<40)), val))
		if b.Len() >= 100 {
			must(t, b.Commit(nil))
			b = db.NewBatch()
		}
	}
	must(t, b.Commit(nil))
	must(t, db.Flush())
	must(t, db.WaitForCompactions())
	var size int64
	for _, ti := range db.Tables() {
		size += int64(ti.Size)
	}
	t.Logf("loaded %d MB of values in %v; tables hold %d MB", mb, time.Since(start), size>>20)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			db.Put(fmt.Appendf(nil, "during%09d", i), val[:100])
		}
	}()
	start = time.Now()
	info, err := db.CheckpointWith(filepath.Join(root, "ck"), nil)
	took := time.Since(start)
	close(stop)
	<-done
	must(t, err)
	t.Logf("checkpoint of %d MB: %v (%d files, %d MB linked, %d KB copied)",
		(info.LinkedBytes+info.CopiedBytes)>>20, took, len(info.Files), info.LinkedBytes>>20, info.CopiedBytes>>10)
	start = time.Now()
	_, err = db.CheckpointWith(filepath.Join(root, "ck-copy"), &CheckpointOptions{NoLink: true})
	must(t, err)
	t.Logf("the same with copies (NoLink): %v", time.Since(start))
	ck, err := Open(filepath.Join(root, "ck"), nil)
	must(t, err)
	must(t, ck.Close())
}

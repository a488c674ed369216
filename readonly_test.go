package pluresdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"testing"

	"github.com/plures/pluresdb/hnsw"
	"github.com/plures/pluresdb/internal/vfs"
)

// fileState reads every file under dir: path and contents.
func fileState(t *testing.T, fs vfs.FS, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(d string)
	walk = func(d string) {
		names, err := fs.List(d)
		must(t, err)
		for _, n := range names {
			p := filepath.Join(d, n)
			fi, err := fs.Stat(p)
			must(t, err)
			if fi.IsDir() {
				out[p+"/"] = ""
				walk(p)
				continue
			}
			f, err := fs.Open(p)
			must(t, err)
			b, err := io.ReadAll(io.NewSectionReader(f, 0, fi.Size()))
			f.Close()
			must(t, err)
			out[p] = string(b)
		}
	}
	walk(dir)
	return out
}

// sameFiles fails unless two file states are identical.
func sameFiles(t *testing.T, before, after map[string]string) {
	t.Helper()
	var diff []string
	for p, b := range before {
		if a, ok := after[p]; !ok {
			diff = append(diff, "removed "+p)
		} else if a != b {
			diff = append(diff, fmt.Sprintf("changed %s (%d -> %d bytes)", p, len(b), len(a)))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diff = append(diff, "created "+p)
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		t.Fatalf("a read-only open wrote to the directory: %v", diff)
	}
}

// checkWritesRefused tries every kind of write on db: each fails with
// ErrReadOnly.
func checkWritesRefused(t *testing.T, db *DB, stream []byte) {
	t.Helper()
	b := db.NewBatch()
	must(t, b.Put([]byte("x"), []byte("y")))
	writes := map[string]func() error{
		"Put":          func() error { return db.Put([]byte("x"), []byte("y")) },
		"Delete":       func() error { return db.Delete([]byte("k001")) },
		"SetField":     func() error { return db.SetField([]byte("k001"), []byte("f"), []byte("v")) },
		"DeleteField":  func() error { return db.DeleteField([]byte("k001"), []byte("f")) },
		"Incr":         func() error { return db.Incr([]byte("k001"), []byte("n"), 1) },
		"Batch.Commit": func() error { return b.Commit(nil) },
		"Flush":        db.Flush,
		"Compact":      func() error { return db.Compact(nil, nil) },
		"ImportChanges": func() error {
			_, err := db.ImportChanges(bytes.NewReader(stream))
			return err
		},
		"AcknowledgePeer": func() error { return db.AcknowledgePeer(db.ReplicaID(), db.VersionVector()) },
		"ImportSnapshot": func() error {
			var snap bytes.Buffer
			if _, err := db.ExportSnapshot(&snap); err != nil {
				return err
			}
			_, err := db.ImportSnapshot(&snap)
			return err
		},
	}
	for name, w := range writes {
		if err := w(); !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a read-only open: %v, want ErrReadOnly", name, err)
		}
	}
	if h := db.Health(); h.Writable || h.Reason == "" {
		t.Errorf("Health of a read-only open: %+v", h)
	}
}

// TestReadOnlyWritesNothing: a read-only open of a database (after a clean
// close, and after a crash that left a torn log tail and unflushed
// writes) reads everything, refuses every write, and changes no byte of
// the directory, not even LOCK.
func TestReadOnlyWritesNothing(t *testing.T) {
	fs := vfs.NewMem()
	opts := &Options{FS: fs, MemtableSize: 4 << 20}
	db, err := Open("/db", opts)
	must(t, err)
	peer := openReplica(t, fs, "/peer")
	defer peer.Close()
	for i := range 50 {
		must(t, peer.Put(fmt.Appendf(nil, "p%03d", i), []byte("from the peer")))
	}
	var stream bytes.Buffer
	_, err = peer.ExportChanges(&stream, nil)
	must(t, err)
	_, err = db.ImportChanges(bytes.NewReader(stream.Bytes()))
	must(t, err)
	for i := range 3000 {
		must(t, db.Put(fmt.Appendf(nil, "k%03d", i), bytes.Repeat([]byte{byte(i)}, 100)))
		if i == 1500 {
			must(t, db.Flush())
		}
	}
	must(t, db.Incr([]byte("k001"), []byte("n"), 5))
	vi, err := db.VectorIndex("v", hnsw.Config{Dim: 4})
	must(t, err)
	must(t, vi.Add([]byte("vec1"), []float32{1, 2, 3, 4}))
	want := dump(t, db)
	must(t, db.Close())

	check := func(name string, fs vfs.FS, want string, synced int) {
		t.Helper()
		before := fileState(t, fs, "/db")
		ro, err := Open("/db", &Options{FS: fs, ReadOnly: true, MemtableSize: 1 << 20})
		if err != nil {
			t.Fatalf("%s: read-only open: %v", name, err)
		}
		if want == "" && len(ro.imms) == 0 {
			t.Fatalf("%s: the replay fit one memtable; the test wants more", name)
		}
		if got := dump(t, ro); want != "" && got != want {
			t.Fatalf("%s: read-only open reads differently", name)
		}
		if v, err := ro.Get(fmt.Appendf(nil, "k%03d", synced-1)); err != nil || v[0] != byte(synced-1) {
			t.Fatalf("%s: Get of the last synced write: %v, %v", name, v, err)
		}
		if d, err := ro.GetAsOf([]byte("p007"), ro.Now()); err != nil || string(d.Value) != "from the peer" {
			t.Fatalf("%s: GetAsOf: %+v, %v", name, d, err)
		}
		var out bytes.Buffer
		if n, err := ro.ExportChanges(&out, nil); err != nil || n < synced+50 {
			t.Fatalf("%s: export from a read-only open: %d, %v", name, n, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		sub, err := ro.Subscribe(ctx, Position{})
		must(t, err)
		for i := range synced + 50 {
			if _, err := sub.Next(); err != nil {
				t.Fatalf("%s: feed change %d: %v", name, i, err)
			}
		}
		cancel()
		sub.Close()
		checkWritesRefused(t, ro, stream.Bytes())
		must(t, ro.Close())
		sameFiles(t, before, fileState(t, fs, "/db"))
	}
	check("clean close", fs, want, 3000)

	// Without a LOCK file, none is made.
	must(t, fs.Remove("/db/LOCK"))
	check("no LOCK file", fs, want, 3000)

	// After a crash: writes in the log only, some unsynced (dropped or
	// torn), the log longer than the read-only memtable.
	db, err = Open("/db", &Options{FS: fs, MemtableSize: 8 << 20})
	must(t, err)
	for i := range 3000 {
		must(t, db.Put(fmt.Appendf(nil, "k%03d", i), bytes.Repeat([]byte{byte(i)}, 500)))
	}
	b := db.NewBatch()
	for i := range 100 {
		must(t, b.Put(fmt.Appendf(nil, "unsynced%d", i), []byte("maybe")))
	}
	must(t, b.Commit(&WriteOptions{NoSync: true}))
	seed := testSeed(t)
	for _, mode := range vfs.CrashModes {
		crashed := fs.CrashCloneWith(rand.New(rand.NewPCG(seed, uint64(mode))), mode)
		check(fmt.Sprint("crash ", mode), crashed, "", 3000)
		// A writable open afterwards works as always.
		w, err := Open("/db", &Options{FS: crashed})
		must(t, err)
		must(t, w.Close())
	}
	db.Close()
}

// TestReadOnlyRefuses: a read-only open of what is not a database, of a
// locked one, or with Salvage, fails and creates nothing.
func TestReadOnlyRefuses(t *testing.T) {
	fs := vfs.NewMem()
	if _, err := Open("/none", &Options{FS: fs, ReadOnly: true}); !errors.Is(err, ErrNotDatabase) {
		t.Fatalf("read-only open of a missing directory: %v", err)
	}
	if _, err := fs.Stat("/none"); err == nil {
		t.Fatal("a read-only open created the directory")
	}
	must(t, fs.MkdirAll("/empty"))
	if _, err := Open("/empty", &Options{FS: fs, ReadOnly: true}); !errors.Is(err, ErrNotDatabase) {
		t.Fatalf("read-only open of an empty directory: %v", err)
	}
	if names, _ := fs.List("/empty"); len(names) != 0 {
		t.Fatalf("a read-only open wrote %v", names)
	}
	if _, err := Open("/x", &Options{FS: fs, ReadOnly: true, Salvage: true}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("ReadOnly with Salvage: %v", err)
	}
	db, err := Open("/db", &Options{FS: fs})
	must(t, err)
	defer db.Close()
	if _, err := Open("/db", &Options{FS: fs, ReadOnly: true}); !errors.Is(err, ErrLocked) {
		t.Fatalf("read-only open of a database open elsewhere: %v", err)
	}
}

// TestReadOnlyCheckpoint: a read-only open (after a crash, the log longer
// than its memtable) checkpoints what it reads, and the copy opens with
// the same contents; the source directory is unchanged.
func TestReadOnlyCheckpoint(t *testing.T) {
	fs := vfs.NewMem()
	db, err := Open("/db", &Options{FS: fs, MemtableSize: 8 << 20})
	must(t, err)
	for i := range 3000 {
		must(t, db.Put(fmt.Appendf(nil, "k%04d", i), bytes.Repeat([]byte{byte(i)}, 500)))
	}
	crashed := fs.CrashClone()
	db.Close()
	before := fileState(t, crashed, "/db")
	ro, err := Open("/db", &Options{FS: crashed, ReadOnly: true, MemtableSize: 1 << 20})
	must(t, err)
	want := dump(t, ro)
	must(t, ro.Checkpoint("/copy"))
	must(t, ro.Close())
	sameFiles(t, before, fileState(t, crashed, "/db"))
	cp, err := Open("/copy", &Options{FS: crashed})
	must(t, err)
	defer cp.Close()
	if got := dump(t, cp); got != want {
		t.Fatal("the checkpoint of a read-only open differs from what it read")
	}
}

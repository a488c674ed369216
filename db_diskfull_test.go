package pluresdb

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/vfs"
)

// switchable fails the chosen operations on paths containing a substring
// while it is on.
type switchable struct {
	on   atomic.Bool
	ops  map[vfs.Op]bool
	path string
}

func (s *switchable) inject(op vfs.Op, path string) error {
	if s.on.Load() && s.ops[op] && strings.Contains(path, s.path) {
		return syscall.ENOSPC
	}
	return nil
}

// TestDiskFullDuringFlush fills the "disk" while tables are written:
// flushes fail and are retried, Health says why, writers that would have
// to wait for the flush get an error instead of hanging, and once space
// returns every acknowledged write is there, before and after a reopen.
func TestDiskFullDuringFlush(t *testing.T) {
	mem := vfs.NewMem()
	full := &switchable{ops: map[vfs.Op]bool{vfs.OpWrite: true, vfs.OpCreate: true}, path: ".sst"}
	fs := vfs.WithFaults(mem, full.inject)
	opts := &Options{FS: fs, MemtableSize: 1 << 20, MaxImmutableMemtables: 1}
	db, err := Open("/db", opts)
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]string{}
	put := func(i int) error {
		k, v := fmt.Sprintf("key%06d", i), strings.Repeat(fmt.Sprint(i%10), 200)
		err := db.Put([]byte(k), []byte(v))
		if err == nil {
			acked[k] = v
		}
		return err
	}
	for i := range 1000 {
		if err := put(i); err != nil {
			t.Fatal(err)
		}
	}
	full.on.Store(true)
	var stalledErr error
	for i := 1000; i < 20000; i++ {
		if err := put(i); err != nil {
			stalledErr = err
			break
		}
	}
	if stalledErr == nil || !errors.Is(stalledErr, syscall.ENOSPC) {
		t.Fatalf("writes behind a failing flush: %v, want an error wrapping ENOSPC", stalledErr)
	}
	if h := db.Health(); !strings.Contains(h.Reason, "no space") {
		t.Fatalf("Health while the disk is full: %+v", h)
	}
	if err := db.Flush(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush while the disk is full: %v", err)
	}
	full.on.Store(false)
	// The flusher retries every second.
	deadline := time.Now().Add(10 * time.Second)
	for db.Health().Reason != "" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if h := db.Health(); !h.Writable || h.Reason != "" {
		t.Fatalf("Health after space returned: %+v", h)
	}
	for i := 20000; i < 21000; i++ {
		if err := put(i); err != nil {
			t.Fatalf("put after space returned: %v", err)
		}
	}
	check := func(db *DB, when string) {
		for k, v := range acked {
			got, err := db.Get([]byte(k))
			if err != nil || string(got) != v {
				t.Fatalf("%s: %s = %d bytes, %v", when, k, len(got), err)
			}
		}
	}
	check(db, "after space returned")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open("/db", &Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	check(db, "after reopen")
	db.Close()
}

// TestDiskFullInLog makes the log's writes fail: the commit that hits it
// fails with ErrReadOnly wrapping the cause, later writes are refused,
// reads go on, and a reopen finds every acknowledged write.
func TestDiskFullInLog(t *testing.T) {
	mem := vfs.NewMem()
	full := &switchable{ops: map[vfs.Op]bool{vfs.OpWrite: true, vfs.OpSync: true}, path: ".log"}
	db, err := Open("/db", &Options{FS: vfs.WithFaults(mem, full.inject)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := db.Put(fmt.Appendf(nil, "k%03d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	full.on.Store(true)
	err = db.Put([]byte("late"), []byte("v"))
	if !errors.Is(err, ErrReadOnly) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("put with a full log disk: %v, want ErrReadOnly wrapping ENOSPC", err)
	}
	full.on.Store(false)
	if err := db.Put([]byte("later"), []byte("v")); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("put after a log failure: %v, want ErrReadOnly until reopen", err)
	}
	if h := db.Health(); h.Writable {
		t.Fatalf("Health after a log failure: %+v", h)
	}
	if v, err := db.Get([]byte("k007")); err != nil || string(v) != "v" {
		t.Fatalf("read after a log failure: %q, %v", v, err)
	}
	db.Close()
	db, err = Open("/db", &Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 100 {
		if _, err := db.Get(fmt.Appendf(nil, "k%03d", i)); err != nil {
			t.Fatalf("k%03d after reopen: %v", i, err)
		}
	}
	if err := db.Put([]byte("again"), []byte("v")); err != nil {
		t.Fatalf("put after reopen: %v", err)
	}
}

// TestCreationCutShortReopens: a database whose creation fails at any
// filesystem operation (a full disk) opens once there is room again: a
// creation cut short before CURRENT leaves its first MANIFEST, which is
// moved aside, never deleted, and the replica keeps the ID it was given.
func TestCreationCutShortReopens(t *testing.T) {
	for n := int64(1); n < 60; n++ {
		mem := vfs.NewMem()
		fail := vfs.FailAfter(n, syscall.ENOSPC)
		db, err := Open("/db", &Options{FS: vfs.WithFaults(mem, fail.Inject)})
		if err == nil {
			db.Close()
			if n > 5 && fail.Count() < n {
				return // creation took fewer operations than n: all covered
			}
			continue
		}
		var id []byte
		if _, serr := mem.Stat("/db/REPLICA"); serr == nil {
			if f, err := mem.Open("/db/REPLICA"); err == nil {
				sz, _ := f.Size()
				id = make([]byte, sz)
				f.ReadAt(id, 0)
				f.Close()
			}
		}
		db, err = Open("/db", &Options{FS: mem})
		if err != nil {
			t.Fatalf("creation failed at operation %d; reopen with room: %v", n, err)
		}
		must(t, db.Put([]byte("k"), []byte("v")))
		must(t, db.Close())
		if id != nil {
			if f, err := mem.Open("/db/REPLICA"); err == nil {
				sz, _ := f.Size()
				got := make([]byte, sz)
				f.ReadAt(got, 0)
				f.Close()
				if len(id) == int(sz) && string(got) != string(id) {
					t.Fatalf("creation failed at operation %d: the replica ID changed", n)
				}
			}
		}
	}
	t.Fatal("creation still failing after 60 operations")
}

// TestManifestSyncFailureKeepsTables: a flush whose MANIFEST edit was
// written but not synced must not remove its table: the edit may be read
// at the next open (here it is: the file holds it), which must find the
// table and every key.
func TestManifestSyncFailureKeepsTables(t *testing.T) {
	mem := vfs.NewMem()
	var failing atomic.Bool
	fs := vfs.WithFaults(mem, func(op vfs.Op, name string) error {
		if failing.Load() && op == vfs.OpSync && strings.Contains(name, "MANIFEST") {
			return syscall.ENOSPC
		}
		return nil
	})
	db, err := Open("/db", &Options{FS: fs, MemtableSize: 1 << 20})
	must(t, err)
	for i := range 500 {
		must(t, db.Put(fmt.Appendf(nil, "k%04d", i), bytes.Repeat([]byte("v"), 100)))
	}
	failing.Store(true)
	if err := db.Flush(); err == nil {
		t.Fatal("the flush succeeded with the MANIFEST sync failing")
	}
	db.Close()
	db, err = Open("/db", &Options{FS: mem})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	for i := range 500 {
		if _, err := db.Get(fmt.Appendf(nil, "k%04d", i)); err != nil {
			t.Fatalf("k%04d: %v", i, err)
		}
	}
}

package vfs

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func mustWrite(t *testing.T, fs FS, name, data string, sync bool) File {
	t.Helper()
	f, err := fs.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func readAll(t *testing.T, fs FS, name string) (string, error) {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), nil
}

func wantContent(t *testing.T, fs FS, name, want string) {
	t.Helper()
	got, err := readAll(t, fs, name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if got != want {
		t.Fatalf("%s = %q, want %q", name, got, want)
	}
}

func wantMissing(t *testing.T, fs FS, name string) {
	t.Helper()
	if _, err := fs.Open(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s: err = %v, want ErrNotExist", name, err)
	}
}

// Both implementations must agree on the basic semantics.
func TestFSBasics(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   FS
		dir  func(t *testing.T) string
	}{
		{"os", Default, func(t *testing.T) string { return t.TempDir() }},
		{"mem", NewMem(), func(*testing.T) string { return "/db" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, dir := tc.fs, tc.dir(t)
			if _, err := fs.Create(filepath.Join(dir, "nodir", "f")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("create in missing dir: %v", err)
			}
			if err := fs.MkdirAll(filepath.Join(dir, "sub", "deeper")); err != nil {
				t.Fatal(err)
			}
			a := filepath.Join(dir, "a")
			f := mustWrite(t, fs, a, "hello world", false)
			if sz, err := f.Size(); err != nil || sz != 11 {
				t.Fatalf("size = %d, %v", sz, err)
			}
			if err := f.Truncate(5); err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write([]byte("!")); err != nil { // position is past the new end: a hole
				t.Fatal(err)
			}
			f.Close()
			wantContent(t, fs, a, "hello\x00\x00\x00\x00\x00\x00!")

			rw, err := fs.OpenReadWrite(a)
			if err != nil {
				t.Fatal(err)
			}
			rw.Write([]byte("J"))
			buf := make([]byte, 4)
			if n, err := rw.ReadAt(buf, 1); n != 4 || err != nil || string(buf) != "ello" {
				t.Fatalf("ReadAt = %d %v %q", n, err, buf)
			}
			if n, err := rw.ReadAt(buf, 10); n != 2 || err != io.EOF {
				t.Fatalf("ReadAt at end = %d %v", n, err)
			}
			rw.Close()

			ro, _ := fs.Open(a)
			if _, err := ro.Write([]byte("x")); err == nil {
				t.Fatal("write to a read-only file succeeded")
			}
			ro.Close()

			b := filepath.Join(dir, "b")
			if err := fs.Rename(a, b); err != nil {
				t.Fatal(err)
			}
			wantMissing(t, fs, a)
			if fi, err := fs.Stat(b); err != nil || fi.Size() != 12 || fi.IsDir() {
				t.Fatalf("stat = %v %v", fi, err)
			}
			if _, err := fs.Stat(a); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("stat missing: %v", err)
			}
			names, err := fs.List(dir)
			if err != nil || len(names) != 2 || names[0] != "b" || names[1] != "sub" {
				t.Fatalf("List = %v %v", names, err)
			}
			if err := fs.Remove(b); err != nil {
				t.Fatal(err)
			}
			if err := fs.Remove(b); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("second remove: %v", err)
			}
			if _, err := fs.OpenReadWrite(b); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("openrw missing: %v", err)
			}
			if err := fs.Remove(filepath.Join(dir, "sub")); err == nil {
				t.Fatal("removed a non-empty directory")
			}
			if err := fs.SyncDir(dir); err != nil {
				t.Fatal(err)
			}
			if _, err := fs.List(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("list missing: %v", err)
			}

			// Lock twice fails, also within one process; release lets it through.
			lockPath := filepath.Join(dir, "LOCK")
			l, err := fs.Lock(lockPath)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fs.Lock(lockPath); !errors.Is(err, ErrLocked) {
				t.Fatalf("second lock: %v", err)
			}
			if _, err := fs.Lock(filepath.Join(dir, ".", "LOCK")); !errors.Is(err, ErrLocked) {
				t.Fatalf("second lock, unclean path: %v", err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l2, err := fs.Lock(lockPath)
			if err != nil {
				t.Fatalf("lock after release: %v", err)
			}
			l2.Close()
		})
	}
}

func TestMemCrashCloneData(t *testing.T) {
	fs := NewMem()
	fs.MkdirAll("/db")
	f := mustWrite(t, fs, "/db/a", "synced", true)
	f.Write([]byte("+lost"))
	fs.SyncDir("/db")
	mustWrite(t, fs, "/db/b", "never-dir-synced", true)

	c := fs.CrashClone()
	wantContent(t, c, "/db/a", "synced")
	wantMissing(t, c, "/db/b")
	// The live FS still sees everything.
	wantContent(t, fs, "/db/a", "synced+lost")

	// Open handles of the old FS do not reach the clone.
	f.Write([]byte("more"))
	f.Sync()
	wantContent(t, c, "/db/a", "synced")
	wantContent(t, fs.CrashClone(), "/db/a", "synced+lostmore")

	// A truncation is durable only after Sync.
	f.Truncate(2)
	wantContent(t, fs.CrashClone(), "/db/a", "synced+lostmore")
	f.Sync()
	wantContent(t, fs.CrashClone(), "/db/a", "sy")
	f.Close()

	// Clones are ordinary MemFSs: writable, with their own durability.
	g := mustWrite(t, c, "/db/c", "x", true)
	g.Close()
	wantMissing(t, c.CrashClone(), "/db/c")
}

func TestMemCrashCloneRenameRemove(t *testing.T) {
	fs := NewMem()
	fs.MkdirAll("/db")
	mustWrite(t, fs, "/db/tmp", "v2", true).Close()
	mustWrite(t, fs, "/db/cur", "v1", true).Close()
	fs.SyncDir("/db")

	// Rename not followed by SyncDir is undone.
	if err := fs.Rename("/db/tmp", "/db/cur"); err != nil {
		t.Fatal(err)
	}
	c := fs.CrashClone()
	wantContent(t, c, "/db/cur", "v1")
	wantContent(t, c, "/db/tmp", "v2")
	wantMissing(t, fs, "/db/tmp")

	// After SyncDir the renamed file keeps its data under the new name.
	fs.SyncDir("/db")
	c = fs.CrashClone()
	wantContent(t, c, "/db/cur", "v2")
	wantMissing(t, c, "/db/tmp")

	// Remove not followed by SyncDir is undone.
	fs.Remove("/db/cur")
	wantContent(t, fs.CrashClone(), "/db/cur", "v2")
	fs.SyncDir("/db")
	wantMissing(t, fs.CrashClone(), "/db/cur")

	// Re-creating an existing durable file: the entry is durable, the new
	// bytes are not until synced.
	mustWrite(t, fs, "/db/x", "old", true).Close()
	fs.SyncDir("/db")
	f := mustWrite(t, fs, "/db/x", "new", false)
	wantContent(t, fs.CrashClone(), "/db/x", "old")
	f.Sync()
	wantContent(t, fs.CrashClone(), "/db/x", "new")

	// Locks are not carried into the clone.
	if _, err := fs.Lock("/db/LOCK"); err != nil {
		t.Fatal(err)
	}
	fs.SyncDir("/db")
	if l, err := fs.CrashClone().Lock("/db/LOCK"); err != nil {
		t.Fatalf("lock in clone: %v", err)
	} else {
		l.Close()
	}
}

func TestMemConcurrentReadAt(t *testing.T) {
	fs := NewMem()
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	f := mustWrite(t, fs, "big", string(data), true)
	defer f.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 100)
			for i := range 500 {
				off := int64((g*7919 + i*104729) % (len(data) - 100))
				if _, err := f.ReadAt(buf, off); err != nil || !bytes.Equal(buf, data[off:off+100]) {
					t.Errorf("ReadAt(%d) = %v", off, err)
					return
				}
			}
		}()
	}
	// Directory operations run beside the readers.
	for i := range 100 {
		mustWrite(t, fs, "other", "x", i%2 == 0).Close()
		fs.SyncDir(".")
		fs.CrashClone()
	}
	wg.Wait()
}

func TestMemClosedFile(t *testing.T) {
	fs := NewMem()
	f := mustWrite(t, fs, "f", "x", false)
	f.Close()
	if _, err := f.Write([]byte("y")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if err := f.Close(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
}

func TestFaultsFailOn(t *testing.T) {
	mem := NewMem()
	fs := WithFaults(mem, FailOn([]Op{OpSync, OpWrite}, ".log", syscall.ENOSPC))
	f, err := fs.Create("000001.log")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write([]byte("abc"))
	var pe *os.PathError
	if !errors.Is(err, syscall.ENOSPC) || !errors.As(err, &pe) || pe.Op != "write" || pe.Path != "000001.log" {
		t.Fatalf("write: %v", err)
	}
	if sz, _ := f.Size(); sz != 0 {
		t.Fatalf("a failed write wrote %d bytes", sz)
	}
	if err := f.Sync(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("sync: %v", err)
	}
	// Other paths and operations pass.
	g, err := fs.Create("MANIFEST-000002")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	wantContent(t, mem, "MANIFEST-000002", "ok")
}

func TestFaultsTornWrite(t *testing.T) {
	mem := NewMem()
	fs := WithTornWrites(mem, FailOn([]Op{OpWrite}, "", ErrInjected))
	f, _ := fs.Create("f")
	n, err := f.Write([]byte("abcdef"))
	if n != 3 || !errors.Is(err, ErrInjected) {
		t.Fatalf("torn write = %d, %v", n, err)
	}
	wantContent(t, mem, "f", "abc")
}

func TestFaultsFailAfter(t *testing.T) {
	work := func(fs FS) error {
		if err := fs.MkdirAll("/d"); err != nil {
			return err
		}
		f, err := fs.Create("/d/f")
		if err != nil {
			return err
		}
		defer f.Close()
		for range 3 {
			if _, err := f.Write([]byte("x")); err != nil {
				return err
			}
		}
		if err := f.Sync(); err != nil {
			return err
		}
		return fs.SyncDir("/d")
	}
	probe := FailAfter(math.MaxInt64, ErrInjected)
	if err := work(WithFaults(NewMem(), probe.Inject)); err != nil || probe.Fired() {
		t.Fatal(err)
	}
	total := probe.Count()
	if total != 8 { // mkdir, create, 3 writes, sync, syncdir, close
		t.Fatalf("count = %d", total)
	}
	for n := range total {
		mem := NewMem()
		c := FailAfter(n, ErrInjected)
		err := work(WithFaults(mem, c.Inject))
		if n < total-1 { // the final Close's error is dropped by work
			if !errors.Is(err, ErrInjected) || !c.Fired() {
				t.Fatalf("n=%d: err = %v fired=%v", n, err, c.Fired())
			}
		}
		// Once fired, mutating operations keep failing but reads work.
		fs := WithFaults(mem, c.Inject)
		if _, err := fs.Create("/x"); !errors.Is(err, ErrInjected) {
			t.Fatalf("n=%d: create after death: %v", n, err)
		}
		if _, err := fs.List("/"); err != nil {
			t.Fatalf("n=%d: list after death: %v", n, err)
		}
	}
}

func TestOpString(t *testing.T) {
	if OpSyncDir.String() != "syncdir" || OpCreate.String() != "create" || Op(99).String() != "op(99)" {
		t.Fatal(OpSyncDir, OpCreate, Op(99))
	}
}

func TestWriteFileAtomic(t *testing.T) {
	mem := NewMem()
	if err := mem.MkdirAll("/d"); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(mem, "/d/f.tmp", "/d/f", []byte("one")); err != nil {
		t.Fatal(err)
	}
	// Durable without any further sync: it survives a power cut.
	if got, err := readAll(t, mem.CrashClone(), "/d/f"); err != nil || got != "one" {
		t.Fatalf("after a crash: %q, %v", got, err)
	}
	// A failed rewrite leaves the old contents and no temp file.
	failing := WithFaults(mem, func(op Op, path string) error {
		if op == OpRename {
			return ErrInjected
		}
		return nil
	})
	if err := WriteFileAtomic(failing, "/d/f.tmp", "/d/f", []byte("two")); !errors.Is(err, ErrInjected) {
		t.Fatalf("rename failure: %v", err)
	}
	if got, err := readAll(t, mem, "/d/f"); err != nil || got != "one" {
		t.Fatalf("after a failed rewrite: %q, %v", got, err)
	}
	if _, err := mem.Stat("/d/f.tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file left behind: %v", err)
	}
}

// TestMemCrashCloneWith checks what each crash mode may leave of a file's
// unsynced writes, that every allowed outcome shows up over many seeds, and
// that a seed reproduces its crash.
func TestMemCrashCloneWith(t *testing.T) {
	build := func() (*MemFS, File) {
		fs := NewMem()
		fs.MkdirAll("/db")
		f := mustWrite(t, fs, "/db/a", "AAAA", true)
		for _, s := range []string{"BBBB", "CCCC", "DDDD"} {
			f.Write([]byte(strings.Repeat(s, 300)))
		}
		fs.SyncDir("/db")
		return fs, f
	}
	full := "AAAA" + strings.Repeat("BBBB", 300) + strings.Repeat("CCCC", 300) + strings.Repeat("DDDD", 300)
	for _, mode := range CrashModes {
		t.Run(mode.String(), func(t *testing.T) {
			var sawTorn, sawHole, sawAll, sawNone bool
			for seed := range uint64(400) {
				fs, _ := build()
				got, err := readAll(t, fs.CrashCloneWith(rand.New(rand.NewPCG(seed, 1)), mode), "/db/a")
				if err != nil {
					t.Fatal(err)
				}
				again, _ := readAll(t, fs.CrashCloneWith(rand.New(rand.NewPCG(seed, 1)), mode), "/db/a")
				if again != got {
					t.Fatalf("seed %d: %q then %q from the same seed", seed, got, again)
				}
				if len(got) < 4 || got[:4] != "AAAA" || len(got) > len(full) {
					t.Fatalf("seed %d: %q lost synced bytes or grew", seed, got)
				}
				switch mode {
				case DropUnsynced:
					if got != "AAAA" {
						t.Fatalf("seed %d: %q kept unsynced bytes", seed, got)
					}
				case PersistPrefix:
					if got != full[:len(got)] {
						t.Fatalf("seed %d: %q is not a prefix of the writes", seed, got)
					}
				case PersistSubset:
					for i := 4; i < len(got); i++ {
						if got[i] != full[i] && got[i] != 0 {
							t.Fatalf("seed %d: %q byte %d is neither written nor zero", seed, got, i)
						}
					}
				}
				sawNone = sawNone || got == "AAAA"
				sawAll = sawAll || got == full
				for i := 4; i < len(got); i += 1200 {
					// Each write covers [4+1200k, 4+1200(k+1)): kept in part,
					// it ends at a sector boundary.
					end := min(i+1200, len(got))
					if n := len(strings.TrimRight(got[i:end], "\x00")); n > 0 && n < end-i {
						if (i+n)%SectorSize != 0 {
							t.Fatalf("seed %d: a write torn at %d, not a sector boundary", seed, i+n)
						}
						sawTorn = true
					}
				}
				if len(got) != len(full) && len(got) > 4 && (len(got)-4)%1200 != 0 {
					if len(got)%SectorSize != 0 {
						t.Fatalf("seed %d: file cut at %d, inside a sector", seed, len(got))
					}
					sawTorn = true
				}
				if i := strings.IndexByte(got, 0); i >= 0 && strings.TrimLeft(got[i:], "\x00") != "" {
					sawHole = true // a lost write followed by a kept one
				}
			}
			if mode == DropUnsynced {
				return
			}
			if !sawTorn || !sawAll || !sawNone {
				t.Fatalf("outcomes seen: torn %v, all %v, none %v", sawTorn, sawAll, sawNone)
			}
			if mode == PersistSubset && !sawHole {
				t.Fatal("never kept a later write after losing an earlier one")
			}
		})
	}

	// Unsynced truncations are changes like writes: a prefix keeps them in
	// order.
	seen := map[string]bool{}
	for seed := range uint64(300) {
		fs, f := build()
		f.Sync()
		f.Truncate(2)
		f.Write([]byte("EE")) // at offset 3604: the file grows again, zero-filled
		got, _ := readAll(t, fs.CrashCloneWith(rand.New(rand.NewPCG(seed, 2)), PersistPrefix), "/db/a")
		seen[got] = true
		grown := "AA" + strings.Repeat("\x00", len(full)-2) + "EE"
		switch {
		case got == full, got == "AA", got == grown:
		default:
			t.Fatalf("seed %d: %q after truncate and write", seed, got)
		}
		// A Sync makes everything durable: no mode may lose it.
		f.Sync()
		for _, mode := range CrashModes {
			if got, _ := readAll(t, fs.CrashCloneWith(rand.New(rand.NewPCG(seed, 3)), mode), "/db/a"); got != grown {
				t.Fatalf("seed %d %v: synced file reads %q", seed, mode, got)
			}
		}
	}
	if len(seen) < 3 {
		t.Fatalf("only %d outcomes of truncate+write: %v", len(seen), seen)
	}
}

func TestLink(t *testing.T) {
	for name, fs := range map[string]FS{"mem": NewMem(), "os": Default} {
		t.Run(name, func(t *testing.T) {
			dir := "/l"
			if name == "os" {
				dir = t.TempDir()
			}
			if err := fs.MkdirAll(filepath.Join(dir, "sub")); err != nil {
				t.Fatal(err)
			}
			a, b := filepath.Join(dir, "a"), filepath.Join(dir, "sub", "b")
			if err := WriteFileAtomic(fs, a+".tmp", a, []byte("hello")); err != nil {
				t.Fatal(err)
			}
			if err := Link(fs, a, b); err != nil {
				t.Fatal(err)
			}
			if err := Link(fs, a, b); err == nil {
				t.Fatal("link over an existing name succeeded")
			}
			if err := fs.Remove(a); err != nil {
				t.Fatal(err)
			}
			f, err := fs.Open(b)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(f)
			f.Close()
			if string(got) != "hello" {
				t.Fatalf("link reads %q", got)
			}
		})
	}
	// A filesystem without links says so; fault injection passes links on.
	if err := Link(noLinkFS{NewMem()}, "/a", "/b"); !errors.Is(err, ErrLinkUnsupported) {
		t.Fatalf("link on a filesystem without links: %v", err)
	}
	mem := NewMem()
	if err := WriteFileAtomic(mem, "/x.tmp", "/x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	ffs := WithFaults(mem, FailOn([]Op{OpLink}, "/x", ErrInjected))
	if err := Link(ffs, "/x", "/y"); !errors.Is(err, ErrInjected) {
		t.Fatalf("injected link fault: %v", err)
	}
	if err := Link(WithFaults(mem, func(Op, string) error { return nil }), "/x", "/y"); err != nil {
		t.Fatal(err)
	}
}

type noLinkFS struct{ FS }

func TestMemLinkCrash(t *testing.T) {
	fs := NewMem()
	fs.MkdirAll("/d")
	if err := WriteFileAtomic(fs, "/a.tmp", "/a", []byte("data")); err != nil {
		t.Fatal(err)
	}
	if err := Link(fs, "/a", "/d/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.CrashClone().Stat("/d/b"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unsynced link survived a crash: %v", err)
	}
	if err := fs.SyncDir("/d"); err != nil {
		t.Fatal(err)
	}
	if fi, err := fs.CrashClone().Stat("/d/b"); err != nil || fi.Size() != 4 {
		t.Fatalf("synced link after a crash: %v, %v", fi, err)
	}
}

func TestMemRenameDir(t *testing.T) {
	fs := NewMem()
	for _, d := range []string{"/src/sub", "/empty", "/full"} {
		if err := fs.MkdirAll(d); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"/src/f", "/src/sub/g", "/full/h"} {
		if err := WriteFileAtomic(fs, p+".tmp", p, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.Rename("/src", "/full"); err == nil {
		t.Fatal("rename over a non-empty directory succeeded")
	}
	if err := fs.Rename("/src", "/src/sub/x"); err == nil {
		t.Fatal("rename into itself succeeded")
	}
	if err := fs.Rename("/src", "/empty"); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat("/src"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old name still there: %v", err)
	}
	for _, p := range []string{"/empty/f", "/empty/sub/g"} {
		if fi, err := fs.Stat(p); err != nil || fi.Size() == 0 {
			t.Fatalf("%s after the rename: %v", p, err)
		}
	}
	if names, _ := fs.CrashClone().List("/empty/sub"); len(names) != 1 {
		t.Fatalf("renamed directory after a crash holds %v", names)
	}
}

// TestKillClone: a killed process's clone keeps every written byte and
// directory entry, but what was unsynced stays unsynced.
func TestKillClone(t *testing.T) {
	fs := NewMem()
	if err := fs.MkdirAll("/d"); err != nil {
		t.Fatal(err)
	}
	f, err := fs.Create("/d/f")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("synced"))
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := fs.SyncDir("/d"); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte(" and not"))
	g, _ := fs.Create("/d/new")
	g.Write([]byte("x"))

	read := func(fs *MemFS, name string) string {
		t.Helper()
		h, err := fs.Open(name)
		if err != nil {
			return "<" + err.Error() + ">"
		}
		defer h.Close()
		n, _ := h.Size()
		b := make([]byte, n)
		h.ReadAt(b, 0)
		return string(b)
	}
	k := fs.KillClone()
	if got := read(k, "/d/f"); got != "synced and not" {
		t.Fatalf("kill clone holds %q", got)
	}
	if got := read(k, "/d/new"); got != "x" {
		t.Fatalf("kill clone lost an unsynced directory entry: %q", got)
	}
	c := k.CrashClone()
	if got := read(c, "/d/f"); got != "synced" {
		t.Fatalf("power cut after the kill holds %q", got)
	}
	if _, err := c.Stat("/d/new"); err == nil {
		t.Fatal("power cut after the kill kept an unsynced directory entry")
	}
	// The original is untouched by the clones.
	if got := read(fs, "/d/f"); got != "synced and not" {
		t.Fatalf("original holds %q", got)
	}
}

// TestTreeHelpers: MoveAside never overwrites, CheckEmptyDir tells empty
// from not, RemoveAll removes a tree.
func TestTreeHelpers(t *testing.T) {
	fs := NewMem()
	for _, p := range []string{"/d/a", "/e/a"} {
		if err := fs.MkdirAll(filepath.Dir(p)); err != nil {
			t.Fatal(err)
		}
		if err := WriteFileAtomic(fs, p+".tmp", p, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	first, err := MoveAside(fs, "/d/a", "/q")
	if err != nil || first != "/q/a" {
		t.Fatalf("MoveAside: %q, %v", first, err)
	}
	second, err := MoveAside(fs, "/e/a", "/q")
	if err != nil || second != "/q/a.1" {
		t.Fatalf("MoveAside over a taken name: %q, %v", second, err)
	}
	if fi, err := fs.CrashClone().Stat("/q/a.1"); err != nil || fi.Size() != 4 {
		t.Fatalf("the move is not durable: %v", err)
	}
	if err := CheckEmptyDir(fs, "/d"); err != nil {
		t.Fatalf("empty directory: %v", err)
	}
	if err := CheckEmptyDir(fs, "/none"); err != nil {
		t.Fatalf("missing directory: %v", err)
	}
	if err := CheckEmptyDir(fs, "/q"); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("non-empty directory: %v", err)
	}
	if err := CheckEmptyDir(fs, "/q/a"); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("a file: %v", err)
	}
	if err := RemoveAll(fs, "/q"); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat("/q"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after RemoveAll: %v", err)
	}
}

package lsm

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
)

// countingFS counts opens and closes of table files.
type countingFS struct {
	vfs.FS
	opens, closes atomic.Int64
}

func newCountingFS(mem vfs.FS) *countingFS {
	c := &countingFS{}
	c.FS = vfs.WithFaults(mem, func(op vfs.Op, path string) error {
		if strings.HasSuffix(path, ".sst") {
			switch op {
			case vfs.OpOpen:
				c.opens.Add(1)
			case vfs.OpClose:
				c.closes.Add(1)
			}
		}
		return nil
	})
	return c
}

func (c *countingFS) openNow() int64 { return c.opens.Load() - c.closes.Load() }

// tableFiles writes n one-entry tables numbered 1..n and returns their metas.
func tableFiles(t testing.TB, fs vfs.FS, n int) []*FileMeta {
	t.Helper()
	if err := fs.MkdirAll("db"); err != nil {
		t.Fatal(err)
	}
	metas := make([]*FileMeta, n)
	for i := range metas {
		k := fmt.Sprintf("k%04d", i)
		metas[i] = writeTestTable(t, fs, "db", layout.FileNum(i+1), []testEntry{{k, 1, KindSet, "v" + k}})
	}
	return metas
}

func checkTableValue(t *testing.T, tb *Table, m *FileMeta) {
	t.Helper()
	ukey := UserKey(m.Smallest)
	v, _, _, found, err := tb.Get(ukey, MaxSeqNum)
	if err != nil || !found || string(v) != "v"+string(ukey) {
		t.Fatalf("table %s: Get(%s) = %q %v %v", m.Num, ukey, v, found, err)
	}
}

func TestTableCacheHitsAndEviction(t *testing.T) {
	mem := vfs.NewMem()
	metas := tableFiles(t, mem, 6)
	fs := newCountingFS(mem)
	tc := NewTableCache(fs, "db", nil, 2)

	a, err := tc.Acquire(metas[0])
	if err != nil {
		t.Fatal(err)
	}
	b, err := tc.Acquire(metas[0])
	if err != nil {
		t.Fatal(err)
	}
	if a != b || fs.opens.Load() != 1 {
		t.Fatalf("second Acquire: same table %v, opens %d", a == b, fs.opens.Load())
	}
	checkTableValue(t, a, metas[0])
	tc.Release(a)
	tc.Release(b)

	// Cycling through six tables with room for two keeps at most two open.
	for round := range 3 {
		for _, m := range metas {
			tb, err := tc.Acquire(m)
			if err != nil {
				t.Fatal(err)
			}
			checkTableValue(t, tb, m)
			tc.Release(tb)
			if n := fs.openNow(); n > 2 {
				t.Fatalf("round %d: %d tables open, max 2", round, n)
			}
		}
	}

	// A held table survives eviction pressure and Evict; it closes at its
	// last Release.
	held, err := tc.Acquire(metas[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range metas[1:] {
		tb, err := tc.Acquire(m)
		if err != nil {
			t.Fatal(err)
		}
		tc.Release(tb)
	}
	tc.Evict(metas[0].Num)
	closesBefore := fs.closes.Load()
	checkTableValue(t, held, metas[0])
	if fs.closes.Load() != closesBefore {
		t.Fatal("held table closed by Evict")
	}
	tc.Release(held)
	if fs.closes.Load() != closesBefore+1 {
		t.Fatal("evicted table not closed at its last Release")
	}
	// Evicted: the next Acquire opens it again.
	opens := fs.opens.Load()
	tb, err := tc.Acquire(metas[0])
	if err != nil {
		t.Fatal(err)
	}
	tc.Release(tb)
	if fs.opens.Load() != opens+1 {
		t.Fatal("Acquire after Evict did not reopen")
	}

	if err := tc.Close(); err != nil {
		t.Fatal(err)
	}
	if n := fs.openNow(); n != 0 {
		t.Fatalf("%d tables open after Close", n)
	}
	if _, err := tc.Acquire(metas[0]); !errors.Is(err, errs.ErrClosed) {
		t.Fatalf("Acquire after Close: %v", err)
	}
}

func TestTableCacheCloseWhileHeld(t *testing.T) {
	mem := vfs.NewMem()
	metas := tableFiles(t, mem, 2)
	fs := newCountingFS(mem)
	tc := NewTableCache(fs, "db", nil, 0)
	held, err := tc.Acquire(metas[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.Close(); err != nil {
		t.Fatal(err)
	}
	checkTableValue(t, held, metas[1])
	if fs.openNow() != 1 {
		t.Fatal("held table closed by Close")
	}
	tc.Release(held)
	if fs.openNow() != 0 {
		t.Fatal("table still open after its last Release")
	}
}

func TestTableCacheOpenErrors(t *testing.T) {
	mem := vfs.NewMem()
	mem.MkdirAll("db")
	tc := NewTableCache(mem, "db", nil, 0)
	defer tc.Close()
	m := meta(7, "a", "b", 1, 1)
	if _, err := tc.Acquire(m); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing table: got %v", err)
	}
	// A damaged file: corruption, and the file handle is not leaked.
	f, _ := mem.Create("db/000007.sst")
	f.Write([]byte("not a table at all, but long enough to have a footer? no: garbage garbage garbage garbage"))
	f.Close()
	if _, err := tc.Acquire(m); !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("garbage table: got %v", err)
	}
	// The failure is not cached: once the file is right, Acquire works.
	good := writeTestTable(t, mem, "db", 7, []testEntry{{"a", 1, KindSet, "va"}})
	tb, err := tc.Acquire(good)
	if err != nil {
		t.Fatal(err)
	}
	checkTableValue(t, tb, good)
	tc.Release(tb)
}

// TestTableCacheSingleFlight: concurrent misses on one table open it once.
func TestTableCacheSingleFlight(t *testing.T) {
	mem := vfs.NewMem()
	metas := tableFiles(t, mem, 1)
	fs := newCountingFS(mem)
	tc := NewTableCache(fs, "db", nil, 0)
	defer tc.Close()
	var wg sync.WaitGroup
	start := make(chan struct{})
	tables := make([]*Table, 16)
	for i := range tables {
		wg.Go(func() {
			<-start
			tb, err := tc.Acquire(metas[0])
			if err != nil {
				t.Error(err)
				return
			}
			tables[i] = tb
		})
	}
	close(start)
	wg.Wait()
	for _, tb := range tables {
		if tb != tables[0] {
			t.Fatal("concurrent Acquires returned different tables")
		}
		tc.Release(tb)
	}
	if n := fs.opens.Load(); n != 1 {
		t.Fatalf("%d opens, want 1", n)
	}
}

// TestTableCacheConcurrent hammers Acquire, Release, Evict and eviction
// pressure from several goroutines (for -race), then checks every file is
// closed after Close.
func TestTableCacheConcurrent(t *testing.T) {
	rng := newVersionRand(t)
	seed := rng.Uint64()
	mem := vfs.NewMem()
	metas := tableFiles(t, mem, 12)
	fs := newCountingFS(mem)
	tc := NewTableCache(fs, "db", NewBlockCache(1<<20), 3)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			x := seed + uint64(g)*0x9e3779b97f4a7c15
			for range 2000 {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				m := metas[x%uint64(len(metas))]
				if x%97 == 0 {
					tc.Evict(m.Num)
					continue
				}
				tb, err := tc.Acquire(m)
				if err != nil {
					t.Error(err)
					return
				}
				ukey := UserKey(m.Smallest)
				if v, _, _, found, err := tb.Get(ukey, MaxSeqNum); err != nil || !found || string(v) != "v"+string(ukey) {
					t.Errorf("table %s: %q %v %v", m.Num, v, found, err)
				}
				tc.Release(tb)
			}
		})
	}
	wg.Wait()
	if n := fs.openNow(); n > 3 {
		t.Errorf("%d tables open at rest, max 3", n)
	}
	if err := tc.Close(); err != nil {
		t.Fatal(err)
	}
	if n := fs.openNow(); n != 0 {
		t.Fatalf("%d tables open after Close", n)
	}
}

func BenchmarkTableCacheAcquireHit(b *testing.B) {
	mem := vfs.NewMem()
	metas := tableFiles(b, mem, 64)
	tc := NewTableCache(mem, "db", nil, 0)
	defer tc.Close()
	for _, m := range metas {
		tb, err := tc.Acquire(m)
		if err != nil {
			b.Fatal(err)
		}
		tc.Release(tb)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			tb, err := tc.Acquire(metas[i&63])
			if err != nil {
				b.Error(err)
				return
			}
			tc.Release(tb)
			i++
		}
	})
}

package pluresdb

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/plures/pluresdb/hnsw"
	"github.com/plures/pluresdb/internal/vfs"
)

// TestVectorIndexCrashRandomPoints runs adds, replaces, deletes and
// flushes on a vector index that checkpoints every few dozen changes, on a
// filesystem that dies at a random operation (every later one fails), then
// cuts the power (unsynced data and directory entries dropped) and
// reopens: the index must open, hold every acknowledged write and nothing
// never written, its graph must match its stored vectors, and no stray
// checkpoint file may remain.
func TestVectorIndexCrashRandomPoints(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 21))
	runs := 150
	if testing.Short() {
		runs = 40
	}
	total := vectorCrashWorkload(t, vfs.NewMem(), nil, seed)
	t.Logf("a fault-free run makes %d filesystem operations", total)
	for run := range runs {
		cd := vfs.FailAfter(rng.Int64N(total)+1, vfs.ErrInjected)
		vectorCrashWorkload(t, vfs.NewMem(), cd, seed+uint64(run))
	}
}

// vectorCrashWorkload runs the workload on mem (through cd if not nil),
// crashes, reopens and checks. It returns the filesystem operations made.
func vectorCrashWorkload(t *testing.T, mem *vfs.MemFS, cd *vfs.Countdown, seed uint64) int64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 22))
	counter := vfs.FailAfter(1<<62, vfs.ErrInjected)
	inj := counter.Inject
	if cd != nil {
		inj = cd.Inject
	}
	context := fmt.Sprintf("seed %d fault at op %v", seed, faultAt(cd))
	h := history{}
	cfg := hnsw.Config{Dim: 4, M: 4, EfConstruction: 16}
	db, err := Open("/db", &Options{FS: vfs.WithFaults(mem, inj), MemtableSize: 1 << 20})
	if err == nil {
		vi, err := db.VectorIndex("crash", cfg)
		if err == nil {
			vi.ckEvery.Store(25)
			for i := 0; i < 300; i++ {
				k := fmt.Sprintf("key%02d", rng.IntN(60))
				switch r := rng.IntN(100); {
				case r < 70:
					v := []float32{rng.Float32(), rng.Float32(), rng.Float32(), float32(i)}
					h.attempt(k, fmt.Sprint(v))
					if err := vi.Add([]byte(k), v); err == nil {
						h.durable(k, fmt.Sprint(v))
					}
				case r < 95:
					h.attempt(k, "")
					if err := vi.Delete([]byte(k)); err == nil {
						h.durable(k, "")
					}
				default:
					_ = db.Flush()
				}
				if cd != nil && cd.Fired() && rng.IntN(30) == 0 {
					break
				}
			}
		}
	}
	// The power cut: whatever Close would still write is lost.
	crashed := mem.CrashClone()
	if db != nil {
		_ = db.Close()
	}

	check := func(db *DB, context string) *VectorIndex {
		// (Dim given: an index the fault kept from being created is
		// created now, empty.)
		vi, err := db.VectorIndex("crash", cfg)
		if err != nil {
			t.Fatalf("%s: open index: %v", context, err)
		}
		recs := storedVectors(t, vi)
		for k, allowed := range h {
			got := ""
			if v, ok := recs[k]; ok {
				got = fmt.Sprint(v)
			}
			ok := false
			for _, a := range allowed {
				ok = ok || a == got
			}
			if !ok {
				t.Fatalf("%s: key %q = %q after crash, allowed %q", context, k, got, allowed)
			}
		}
		for k := range recs {
			if _, ok := h[k]; !ok {
				t.Fatalf("%s: key %q never written", context, k)
			}
		}
		checkGraphMatchesRecords(t, vi, context)
		vi.ckMu.Lock()
		ck := vi.ck.file
		vi.ckMu.Unlock()
		for _, n := range graphFiles(t, crashed, "/db") {
			if n != ck {
				t.Fatalf("%s: checkpoint file %v left over (live: %v)", context, n, ck)
			}
		}
		return vi
	}

	db2, err := Open("/db", &Options{FS: crashed, MemtableSize: 1 << 20})
	if err != nil {
		t.Fatalf("%s: reopen after crash: %v", context, err)
	}
	vi := check(db2, context)
	// The recovered index takes writes and survives a clean cycle.
	v := []float32{9, 9, 9, 9}
	if err := vi.Add([]byte("after"), v); err != nil {
		t.Fatalf("%s: add after recovery: %v", context, err)
	}
	h.durable("after", fmt.Sprint(v))
	if err := db2.Close(); err != nil {
		t.Fatalf("%s: close after recovery: %v", context, err)
	}
	db3, err := Open("/db", &Options{FS: crashed, MemtableSize: 1 << 20})
	if err != nil {
		t.Fatalf("%s: second reopen: %v", context, err)
	}
	if vi3 := check(db3, context+" (second reopen)"); !vi3.loadedCheckpoint || vi3.replayed != 0 {
		t.Fatalf("%s: second reopen did not load the clean checkpoint", context)
	}
	db3.Close()
	return counter.Count()
}

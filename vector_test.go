package pluresdb

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/plures/pluresdb/hnsw"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
)

func randVec(r *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = r.Float32()*2 - 1
	}
	return v
}

func vkey(i int) []byte { return fmt.Appendf(nil, "k%05d", i) }

// openMemDB opens a database on fs (in memory) at /db.
func openMemDB(t testing.TB, fs vfs.FS) *DB {
	t.Helper()
	db, err := Open("/db", &Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// mustIndex opens index name on db.
func mustIndex(t testing.TB, db *DB, name string, cfg hnsw.Config) *VectorIndex {
	t.Helper()
	vi, err := db.VectorIndex(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return vi
}

// graphFiles lists the .hnsw files of dir.
func graphFiles(t testing.TB, fs vfs.FS, dir string) []layout.FileNum {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []layout.FileNum
	for _, name := range names {
		if ty, n, ok := layout.Parse(name); ok && ty == layout.TypeVectorGraph {
			out = append(out, n)
		}
	}
	return out
}

// logEntries counts the change-log entries of vi in the LSM.
func logEntries(t testing.TB, vi *VectorIndex) int {
	t.Helper()
	lo, hi := vi.tagRange(vecTagLog)
	it := vi.db.newIter(nsVector, lo, hi, lsm.SeqNum(vi.db.visible.Load()))
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return n
}

// storedVectors returns the 'v' records of vi: key -> vector.
func storedVectors(t testing.TB, vi *VectorIndex) map[string][]float32 {
	t.Helper()
	lo, hi := vi.tagRange(vecTagVector)
	it := vi.db.newIter(nsVector, lo, hi, lsm.SeqNum(vi.db.visible.Load()))
	out := map[string][]float32{}
	for ok := it.First(); ok; ok = it.Next() {
		key := it.Key()[len(vi.pfx)+1:]
		_, vec, err := vi.decodeVector(it.Value(), key, nil)
		if err != nil {
			t.Fatal(err)
		}
		out[string(key)] = vec
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkGraphMatchesRecords checks that the graph holds exactly the stored
// vectors: every key is in it with its stored vector (a search restricted
// to the key's ID finds it at distance 0: exact, whatever the graph's
// recall), and no other key is live.
func checkGraphMatchesRecords(t testing.TB, vi *VectorIndex, context string) {
	t.Helper()
	recs := storedVectors(t, vi)
	if vi.Len() != len(recs) {
		t.Fatalf("%s: graph has %d vectors, records %d", context, vi.Len(), len(recs))
	}
	for k, vec := range recs {
		id, ok := vi.ID([]byte(k))
		if !ok {
			t.Fatalf("%s: key %q stored but not in the graph", context, k)
		}
		hits, err := vi.Search(vec, 1, &hnsw.SearchOptions{Filter: roaring.BitmapOf(id)})
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) != 1 || string(hits[0].Key) != k || hits[0].Distance != 0 {
			t.Fatalf("%s: search for the vector of %q gave %v", context, k, hits)
		}
	}
}

func TestVectorIndexAddSearchDelete(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 1))
	db := openMemDB(t, vfs.NewMem())
	defer db.Close()
	vi := mustIndex(t, db, "docs", hnsw.Config{Dim: 8})
	if got := vi.Config(); got.M != hnsw.DefaultM || got.EfConstruction != hnsw.DefaultEfConstruction || got.Dim != 8 {
		t.Fatalf("config %+v: defaults not filled", got)
	}
	vecs := map[int][]float32{}
	for i := range 300 {
		vecs[i] = randVec(r, 8)
		if err := vi.Add(vkey(i), vecs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if vi.Len() != 300 {
		t.Fatalf("Len %d, want 300", vi.Len())
	}
	// Nearest first, and the exact vector is found at distance 0.
	hits, err := vi.Search(vecs[7], 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 5 || !bytes.Equal(hits[0].Key, vkey(7)) || hits[0].Distance != 0 {
		t.Fatalf("search for key 7's vector: %v", hits)
	}
	if !slices.IsSortedFunc(hits, func(a, b hnsw.Hit) int { return cmp.Compare(a.Distance, b.Distance) }) {
		t.Fatalf("hits not nearest first: %v", hits)
	}

	// Replace: the new vector is found, the old one no longer leads to the key.
	old := vecs[7]
	vecs[7] = randVec(r, 8)
	if err := vi.Add(vkey(7), vecs[7]); err != nil {
		t.Fatal(err)
	}
	if vi.Len() != 300 {
		t.Fatalf("Len after replace %d, want 300", vi.Len())
	}
	hits, _ = vi.Search(vecs[7], 1, nil)
	if len(hits) != 1 || !bytes.Equal(hits[0].Key, vkey(7)) || hits[0].Distance != 0 {
		t.Fatalf("replaced vector not found: %v", hits)
	}
	hits, _ = vi.Search(old, 1, nil)
	if len(hits) == 1 && bytes.Equal(hits[0].Key, vkey(7)) && hits[0].Distance == 0 {
		t.Fatalf("old vector of a replaced key still found: %v", hits)
	}

	// Delete: gone from searches and records; deleting again is fine.
	if err := vi.Delete(vkey(9)); err != nil {
		t.Fatal(err)
	}
	if err := vi.Delete(vkey(9)); err != nil {
		t.Fatalf("deleting an absent key: %v", err)
	}
	if err := vi.Delete([]byte("never")); err != nil {
		t.Fatalf("deleting a never-added key: %v", err)
	}
	delete(vecs, 9)
	hits, _ = vi.Search(vecs[8], 300, &hnsw.SearchOptions{Ef: 400})
	for _, h := range hits {
		if bytes.Equal(h.Key, vkey(9)) {
			t.Fatal("deleted key returned by a search")
		}
	}
	if vi.Len() != 299 {
		t.Fatalf("Len after delete %d, want 299", vi.Len())
	}
	checkGraphMatchesRecords(t, vi, "after add, replace, delete")

	// Two indexes keep apart; the same name gives the same index.
	other := mustIndex(t, db, "other", hnsw.Config{Dim: 3, Metric: hnsw.Cosine})
	if err := other.Add(vkey(1), []float32{1, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if other.Len() != 1 || vi.Len() != 299 {
		t.Fatalf("indexes share state: %d, %d", other.Len(), vi.Len())
	}
	if again := mustIndex(t, db, "docs", hnsw.Config{}); again != vi {
		t.Fatal("second VectorIndex call returned another object")
	}
	// The documents namespace is untouched.
	it := db.NewIter(nil, nil)
	if it.First() {
		t.Fatalf("vector writes visible as documents: %q", it.Key())
	}
	it.Close()
}

func TestVectorIndexErrors(t *testing.T) {
	fs := vfs.NewMem()
	db := openMemDB(t, fs)
	for _, name := range []string{"", strings.Repeat("a", 65), "a/b", "sp ace", "é", "x\x00"} {
		if _, err := db.VectorIndex(name, hnsw.Config{Dim: 4}); err == nil {
			t.Fatalf("name %q accepted", name)
		}
	}
	if _, err := db.VectorIndex(strings.Repeat("a", 64), hnsw.Config{Dim: 4}); err != nil {
		t.Fatalf("64-byte name: %v", err)
	}
	if _, err := db.VectorIndex("Ok_name-1.2", hnsw.Config{Dim: 4}); err != nil {
		t.Fatalf("valid name: %v", err)
	}
	if _, err := db.VectorIndex("nodim", hnsw.Config{}); err == nil || !strings.Contains(err.Error(), "Dim") {
		t.Fatalf("create without Dim: %v", err)
	}
	if _, err := db.VectorIndex("badm", hnsw.Config{Dim: 4, M: 1}); err == nil {
		t.Fatal("M 1 accepted")
	}
	vi := mustIndex(t, db, "v", hnsw.Config{Dim: 4, Metric: hnsw.Cosine})
	for _, tc := range []struct {
		what string
		key  []byte
		vec  []float32
		want error
	}{
		{"wrong dim", []byte("k"), []float32{1, 2, 3}, nil},
		{"NaN", []byte("k"), []float32{1, float32(math.NaN()), 0, 0}, nil},
		{"Inf", []byte("k"), []float32{1, float32(math.Inf(1)), 0, 0}, nil},
		{"norm overflow", []byte("k"), []float32{3e38, 3e38, 0, 0}, nil},
		{"zero vector (cosine)", []byte("k"), []float32{0, 0, 0, 0}, nil},
		{"empty key", nil, []float32{1, 0, 0, 0}, ErrInvalidKey},
		{"key too large", make([]byte, MaxKeySize), []float32{1, 0, 0, 0}, ErrKeyTooLarge},
	} {
		err := vi.Add(tc.key, tc.vec)
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Fatalf("%s: Add gave %v", tc.what, err)
		}
	}
	if vi.Len() != 0 || logEntries(t, vi) != 0 {
		t.Fatal("a rejected Add left a trace")
	}
	if _, err := vi.Search([]float32{1}, 3, nil); err == nil {
		t.Fatal("wrong-dim query accepted")
	}
	// A different Dim or Metric than stored is refused, on the open object
	// and after a reopen; zero fields take the stored values.
	for _, cfg := range []hnsw.Config{{Dim: 5}, {Dim: 4, Metric: hnsw.Dot}, {Dim: 4, M: 8}} {
		if _, err := db.VectorIndex("v", cfg); err == nil {
			t.Fatalf("config %+v accepted for an index of %+v", cfg, vi.Config())
		}
	}
	if err := vi.Add([]byte("k"), []float32{1, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := db.VectorIndex("v", hnsw.Config{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("VectorIndex on a closed DB: %v", err)
	}
	if err := vi.Add([]byte("k2"), []float32{1, 0, 0, 0}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add on a closed DB: %v", err)
	}
	if err := vi.Delete([]byte("k")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Delete on a closed DB: %v", err)
	}
	if _, err := vi.Search([]float32{1, 0, 0, 0}, 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Search on a closed DB: %v", err)
	}

	db = openMemDB(t, fs)
	defer db.Close()
	if _, err := db.VectorIndex("v", hnsw.Config{Dim: 5}); err == nil {
		t.Fatal("reopen with another Dim accepted")
	}
	if _, err := db.VectorIndex("v", hnsw.Config{Dim: 4, Metric: hnsw.Dot}); err == nil {
		t.Fatal("reopen with another Metric accepted")
	}
	vi = mustIndex(t, db, "v", hnsw.Config{})
	if got := vi.Config(); got.Dim != 4 || got.Metric != hnsw.Cosine {
		t.Fatalf("reopened config %+v", got)
	}
	if vi.Len() != 1 {
		t.Fatalf("reopened index has %d vectors, want 1", vi.Len())
	}
}

// TestVectorIndexReopenLoadsCheckpoint: a reopen loads the graph from the
// checkpoint Close wrote (no rebuild, no replay) and answers searches
// exactly as before; old checkpoints and the change log are cleaned up.
func TestVectorIndexReopenLoadsCheckpoint(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 2))
	fs := vfs.NewMem()
	db := openMemDB(t, fs)
	vi := mustIndex(t, db, "emb", hnsw.Config{Dim: 16, EfConstruction: 64})
	for i := range 2000 {
		if err := vi.Add(vkey(i), randVec(r, 16)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2000; i += 10 {
		if err := vi.Delete(vkey(i)); err != nil {
			t.Fatal(err)
		}
	}
	queries := make([][]float32, 50)
	want := make([][]hnsw.Hit, len(queries))
	for i := range queries {
		queries[i] = randVec(r, 16)
		want[i], _ = vi.Search(queries[i], 10, nil)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(graphFiles(t, fs, "/db")); n != 1 {
		t.Fatalf("%d checkpoint files after Close, want 1", n)
	}

	for round := range 3 {
		db = openMemDB(t, fs)
		vi = mustIndex(t, db, "emb", hnsw.Config{})
		if !vi.loadedCheckpoint || vi.rebuilt != 0 || vi.replayed != 0 {
			t.Fatalf("round %d: loaded %v, rebuilt %d, replayed %d: want the checkpoint alone",
				round, vi.loadedCheckpoint, vi.rebuilt, vi.replayed)
		}
		if vi.Len() != 1800 {
			t.Fatalf("round %d: Len %d, want 1800", round, vi.Len())
		}
		for i, q := range queries {
			got, err := vi.Search(q, 10, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, want[i], func(a, b hnsw.Hit) bool {
				return bytes.Equal(a.Key, b.Key) && a.Distance == b.Distance
			}) {
				t.Fatalf("round %d query %d: after reopen %v, before %v", round, i, got, want[i])
			}
		}
		if n := logEntries(t, vi); n != 0 {
			t.Fatalf("round %d: %d change-log entries left after a checkpoint", round, n)
		}
		if round == 1 {
			// A change makes Close write a new checkpoint and drop the old.
			if err := vi.Delete(vkey(1)); err != nil {
				t.Fatal(err)
			}
			if err := vi.Add(vkey(1), randVec(r, 16)); err != nil {
				t.Fatal(err)
			}
			for i, q := range queries {
				want[i], _ = vi.Search(q, 10, nil)
			}
		}
		before := graphFiles(t, fs, "/db")
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		after := graphFiles(t, fs, "/db")
		if len(after) != 1 || round == 1 && after[0] == before[0] || round != 1 && after[0] != before[0] {
			t.Fatalf("round %d: checkpoint files %v before Close, %v after", round, before, after)
		}
	}
}

// TestVectorIndexBackgroundCheckpoint: checkpoints are taken while writes
// go on, trim the change log, and a reopen without Close loads the last one
// and replays only what came after.
func TestVectorIndexBackgroundCheckpoint(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 3))
	mem := vfs.NewMem()
	db := openMemDB(t, mem)
	vi := mustIndex(t, db, "bg", hnsw.Config{Dim: 8, EfConstruction: 32})
	vi.ckEvery.Store(100)
	for i := range 1000 {
		if err := vi.Add(vkey(i%700), randVec(r, 8)); err != nil {
			t.Fatal(err)
		}
	}
	waitCheckpoints(t, vi)
	ck := vi.ckChange.Load()
	if ck == 0 {
		t.Fatal("no background checkpoint")
	}
	t.Logf("last background checkpoint at change %d of 1000", ck)
	if n := logEntries(t, vi); n != int(1000-ck) {
		t.Fatalf("%d change-log entries after a checkpoint at %d of 1000, want %d", n, ck, 1000-ck)
	}
	if n := len(graphFiles(t, mem, "/db")); n != 1 {
		t.Fatalf("%d checkpoint files, want 1", n)
	}
	for i := range 37 {
		if err := vi.Delete(vkey(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitCheckpoints(t, vi)
	ck = vi.ckChange.Load()

	// Power cut: no Close, so no final checkpoint.
	crashed := mem.CrashClone()
	db.Close()
	db = openMemDB(t, crashed)
	defer db.Close()
	vi = mustIndex(t, db, "bg", hnsw.Config{})
	if !vi.loadedCheckpoint || vi.rebuilt != 0 || vi.replayed != int(1037-ck) {
		t.Fatalf("loaded %v, rebuilt %d, replayed %d: want the checkpoint at %d and %d replayed",
			vi.loadedCheckpoint, vi.rebuilt, vi.replayed, ck, 1037-ck)
	}
	if vi.Len() != 700-37 {
		t.Fatalf("Len %d, want %d", vi.Len(), 700-37)
	}
	checkGraphMatchesRecords(t, vi, "after crash")
	// Change numbers go on from where they were.
	if err := vi.Add(vkey(5000), randVec(r, 8)); err != nil {
		t.Fatal(err)
	}
	if vi.last != 1038 {
		t.Fatalf("next change number %d, want 1038", vi.last)
	}
}

// waitCheckpoints waits until no background checkpoint of vi runs.
func waitCheckpoints(t *testing.T, vi *VectorIndex) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for vi.ckRunning.Load() {
		if time.Now().After(deadline) {
			t.Fatal("background checkpoint does not finish")
		}
		time.Sleep(time.Millisecond)
	}
}

// corruptFile flips a byte in the middle of name.
func corruptFile(t *testing.T, fs vfs.FS, name string) {
	t.Helper()
	f, err := fs.OpenReadWrite(name)
	if err != nil {
		t.Fatal(err)
	}
	size, _ := f.Size()
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	buf[size/2] ^= 0x40
	if _, err := f.Write(buf); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// TestVectorIndexDamagedCheckpoint: a damaged or missing checkpoint file
// never fails the open: the graph is rebuilt from the stored vectors,
// searches are right, and the next checkpoint replaces the bad file.
func TestVectorIndexDamagedCheckpoint(t *testing.T) {
	for _, damage := range []string{"flipped byte", "missing file", "truncated"} {
		t.Run(damage, func(t *testing.T) {
			seed := testSeed(t)
			r := rand.New(rand.NewPCG(seed, 4))
			fs := vfs.NewMem()
			db := openMemDB(t, fs)
			vi := mustIndex(t, db, "d", hnsw.Config{Dim: 8, EfConstruction: 32})
			for i := range 400 {
				if err := vi.Add(vkey(i), randVec(r, 8)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 20 {
				vi.Delete(vkey(i * 3))
			}
			last := vi.last
			db.Close()
			files := graphFiles(t, fs, "/db")
			if len(files) != 1 {
				t.Fatalf("checkpoint files %v", files)
			}
			path := layout.Path("/db", layout.TypeVectorGraph, files[0])
			switch damage {
			case "flipped byte":
				corruptFile(t, fs, path)
			case "missing file":
				if err := fs.Remove(path); err != nil {
					t.Fatal(err)
				}
			case "truncated":
				f, _ := fs.OpenReadWrite(path)
				f.Truncate(100)
				f.Sync()
				f.Close()
			}

			db = openMemDB(t, fs)
			vi = mustIndex(t, db, "d", hnsw.Config{})
			if vi.loadedCheckpoint || vi.rebuilt != 380 {
				t.Fatalf("loaded %v, rebuilt %d: want a rebuild of 380", vi.loadedCheckpoint, vi.rebuilt)
			}
			if vi.last != last {
				t.Fatalf("change number %d after rebuild, want %d", vi.last, last)
			}
			checkGraphMatchesRecords(t, vi, "after rebuild")
			db.Close()
			files2 := graphFiles(t, fs, "/db")
			if len(files2) != 1 || files2[0] == files[0] {
				t.Fatalf("checkpoint files %v after the rebuild's Close (damaged was %v)", files2, files[0])
			}

			db = openMemDB(t, fs)
			defer db.Close()
			vi = mustIndex(t, db, "d", hnsw.Config{})
			if !vi.loadedCheckpoint || vi.rebuilt != 0 || vi.Len() != 380 {
				t.Fatalf("after repair: loaded %v, rebuilt %d, Len %d", vi.loadedCheckpoint, vi.rebuilt, vi.Len())
			}
		})
	}
}

// TestVectorIndexUnreferencedGraphRemoved: .hnsw files no checkpoint
// record names are removed at open; the live one stays.
func TestVectorIndexUnreferencedGraphRemoved(t *testing.T) {
	fs := vfs.NewMem()
	db := openMemDB(t, fs)
	vi := mustIndex(t, db, "a", hnsw.Config{Dim: 2})
	if err := vi.Add([]byte("x"), []float32{1, 2}); err != nil {
		t.Fatal(err)
	}
	mustIndex(t, db, "b", hnsw.Config{Dim: 2}) // empty: no checkpoint
	db.Close()
	live := graphFiles(t, fs, "/db")
	if len(live) != 1 {
		t.Fatalf("checkpoint files %v, want one", live)
	}
	for _, n := range []layout.FileNum{999999, live[0] + 1000} {
		f, err := fs.Create(layout.Path("/db", layout.TypeVectorGraph, n))
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("leftover"))
		f.Close()
	}
	db = openMemDB(t, fs)
	defer db.Close()
	if got := graphFiles(t, fs, "/db"); !slices.Equal(got, live) || len(live) != 1 {
		t.Fatalf("checkpoint files %v after open, want %v", got, live)
	}
	// The leftover's number is never handed out again.
	if n := db.vs.NewFileNum(); n <= 999999 {
		t.Fatalf("file number %d handed out below a file in the directory", n)
	}
}

// TestVectorIndexConcurrent runs writers and searchers on one index with
// frequent background checkpoints; each writer owns its keys, so the final
// state is known.
func TestVectorIndexConcurrent(t *testing.T) {
	seed := testSeed(t)
	fs := vfs.NewMem()
	db, err := Open("/db", &Options{FS: fs, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	vi := mustIndex(t, db, "c", hnsw.Config{Dim: 8, M: 8, EfConstruction: 32})
	vi.ckEvery.Store(150)
	const writers, ops = 4, 400
	want := make([]map[string][]float32, writers)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, writers+2)
	for w := range writers {
		want[w] = map[string][]float32{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := range ops {
				k := fmt.Sprintf("w%d-%03d", w, r.IntN(100))
				if r.IntN(5) == 0 {
					if err := vi.Delete([]byte(k)); err != nil {
						errc <- err
						return
					}
					delete(want[w], k)
					continue
				}
				v := randVec(r, 8)
				v[0] = float32(i) // distinct vectors
				if err := vi.Add([]byte(k), v); err != nil {
					errc <- err
					return
				}
				want[w][k] = v
			}
		}()
	}
	var sg sync.WaitGroup
	for s := range 2 {
		sg.Add(1)
		go func() {
			defer sg.Done()
			r := rand.New(rand.NewPCG(seed, 100+uint64(s)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := vi.Search(randVec(r, 8), 5, nil); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	sg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	check := func(vi *VectorIndex, context string) {
		t.Helper()
		recs := storedVectors(t, vi)
		n := 0
		for w := range writers {
			for k, v := range want[w] {
				n++
				if !slices.Equal(recs[k], v) {
					t.Fatalf("%s: key %s holds %v, want %v", context, k, recs[k], v)
				}
			}
		}
		if len(recs) != n {
			t.Fatalf("%s: %d stored vectors, want %d", context, len(recs), n)
		}
		checkGraphMatchesRecords(t, vi, context)
	}
	check(vi, "live")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openMemDB(t, fs)
	defer db.Close()
	vi = mustIndex(t, db, "c", hnsw.Config{})
	if !vi.loadedCheckpoint || vi.replayed != 0 {
		t.Fatalf("reopen: loaded %v, replayed %d", vi.loadedCheckpoint, vi.replayed)
	}
	check(vi, "reopened")
}

// buildReopenDB writes n random vectors of dim to a database in dir and
// closes it (which checkpoints).
func buildReopenDB(tb testing.TB, dir string, n, dim int) {
	tb.Helper()
	db, err := Open(dir, &Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	// EfConstruction only changes how long the build takes, not what a
	// reopen loads (M does).
	vi := mustIndex(tb, db, "big", hnsw.Config{Dim: dim, EfConstruction: 32})
	vi.ckEvery.Store(math.MaxInt64)
	r := rand.New(rand.NewPCG(9, 9))
	for i := range n {
		if err := vi.Add(vkey(i), randVec(r, dim)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := db.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
}

// TestVectorIndexReopen100k times opening a database holding 100k vectors
// of 128 dimensions until its index answers (target: under a second).
func TestVectorIndexReopen100k(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 100k-vector index")
	}
	dir := t.TempDir()
	start := time.Now()
	buildReopenDB(t, dir, 100000, 128)
	t.Logf("built 100k×128 in %v", time.Since(start))
	for range 2 {
		start = time.Now()
		db, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		opened := time.Since(start)
		vi := mustIndex(t, db, "big", hnsw.Config{})
		ready := time.Since(start)
		if vi.Len() != 100000 || !vi.loadedCheckpoint || vi.rebuilt != 0 || vi.replayed != 0 {
			t.Fatalf("Len %d, loaded %v, rebuilt %d, replayed %d", vi.Len(), vi.loadedCheckpoint, vi.rebuilt, vi.replayed)
		}
		if _, err := vi.Search(randVec(rand.New(rand.NewPCG(1, 1)), 128), 10, nil); err != nil {
			t.Fatal(err)
		}
		t.Logf("reopen 100k×128: DB open %v, index ready %v", opened, ready)
		if ready > 5*time.Second {
			t.Fatalf("reopen took %v", ready)
		}
		db.Close()
	}
}

// BenchmarkVectorIndexReopen opens a database of 100k×128 vectors and its
// index (loading the checkpoint), then closes it.
func BenchmarkVectorIndexReopen(b *testing.B) {
	dir := b.TempDir()
	buildReopenDB(b, dir, 100000, 128)
	for b.Loop() {
		db, err := Open(dir, nil)
		if err != nil {
			b.Fatal(err)
		}
		vi := mustIndex(b, db, "big", hnsw.Config{})
		if vi.Len() != 100000 {
			b.Fatal("wrong size")
		}
		db.Close()
	}
}

// BenchmarkVectorIndexAdd compares Add through the database (synced and
// not, one and several writers) with hnsw alone, 128 dimensions, default
// M and EfConstruction.
func BenchmarkVectorIndexAdd(b *testing.B) {
	const dim = 128
	r := rand.New(rand.NewPCG(1, 1))
	pool := make([][]float32, 20000)
	for i := range pool {
		pool[i] = randVec(r, dim)
	}
	b.Run("hnsw", func(b *testing.B) {
		x, err := hnsw.New(hnsw.Config{Dim: dim})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := x.Add(vkey(i), pool[i%len(pool)]); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, tc := range []struct {
		name     string
		noSync   bool
		parallel bool
	}{{"db-nosync", true, false}, {"db-sync", false, false}, {"db-sync-parallel", false, true}} {
		b.Run(tc.name, func(b *testing.B) {
			db, err := Open(b.TempDir(), &Options{NoSync: tc.noSync})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			vi := mustIndex(b, db, "bench", hnsw.Config{Dim: dim})
			vi.ckEvery.Store(math.MaxInt64)
			b.ReportAllocs()
			b.ResetTimer()
			if tc.parallel {
				var next atomic.Int64
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						i := int(next.Add(1))
						if err := vi.Add(vkey(i), pool[i%len(pool)]); err != nil {
							b.Error(err)
							return
						}
					}
				})
				return
			}
			for i := 0; i < b.N; i++ {
				if err := vi.Add(vkey(i), pool[i%len(pool)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestVectorIndexKeyFilterStable: a filter built from internal IDs goes
// stale (after deletes and a repair, new keys take the IDs and the bitmap
// selects them), while the same filter as hnsw.Keys selects exactly the
// allowed keys' nearest neighbours after deletes, reinserts, replaces, a
// reopen from the checkpoint and a reopen that rebuilds the graph.
func TestVectorIndexKeyFilterStable(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 9))
	const n, dim = 3000, 8
	fs := vfs.NewMem()
	db := openMemDB(t, fs)
	vi := mustIndex(t, db, "f", hnsw.Config{Dim: dim, EfConstruction: 32})
	for i := range n {
		if err := vi.Add(vkey(i), randVec(r, dim)); err != nil {
			t.Fatal(err)
		}
	}
	staleIDs := roaring.New()
	var gone, allowed [][]byte
	for i := 0; i < n; i += 3 {
		id, _ := vi.ID(vkey(i))
		staleIDs.Add(id)
		gone = append(gone, vkey(i))
	}
	for i := 0; i < n+1000; i++ {
		// Deleted, kept and new keys (i%40), and replaced ones (i%60 == 1).
		if i%40 == 0 || i%60 == 1 {
			allowed = append(allowed, vkey(i))
		}
	}
	goneSet, allowedSet := hnsw.NewKeys(gone), hnsw.NewKeys(allowed)
	for _, k := range gone {
		if err := vi.Delete(k); err != nil {
			t.Fatal(err)
		}
	}
	vi.g.Repair() // frees the deleted keys' IDs now rather than in the background
	for i := n; i < n+1000; i++ {
		if err := vi.Add(vkey(i), randVec(r, dim)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i < n; i += 20 {
		if i%3 == 0 {
			continue // deleted
		}
		if err := vi.Add(vkey(i), randVec(r, dim)); err != nil { // replace
			t.Fatal(err)
		}
	}
	q := randVec(r, dim)
	hits, err := vi.Search(q, 500, &hnsw.SearchOptions{Filter: staleIDs})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) == 0 {
		t.Fatal("the stale bitmap selected nothing: the ID reuse this test reproduces did not happen")
	}
	for _, h := range hits {
		if !bytes.HasPrefix(h.Key, []byte("k")) || bytes.Compare(h.Key, vkey(n)) < 0 {
			t.Fatalf("stale bitmap hit %q: want only new keys", h.Key)
		}
	}
	t.Logf("a bitmap of %d deleted keys' IDs selected %d hits, all new keys", staleIDs.GetCardinality(), len(hits))

	// check compares key-filtered searches with brute force over the
	// stored vectors: the allowed set is small, so the search is exact.
	check := func(context string) {
		t.Helper()
		if hits, err := vi.Search(q, 10, &hnsw.SearchOptions{Keys: goneSet}); err != nil || len(hits) != 0 {
			t.Fatalf("%s: deleted keys as Keys gave %v, %v", context, hits, err)
		}
		recs := storedVectors(t, vi)
		for range 20 {
			q := randVec(r, dim)
			type kd struct {
				key string
				d   float32
			}
			var truth []kd
			for k, v := range recs {
				if allowedSet.Contains([]byte(k)) {
					var d float32
					for j := range v {
						d += (v[j] - q[j]) * (v[j] - q[j])
					}
					truth = append(truth, kd{k, d})
				}
			}
			slices.SortFunc(truth, func(a, b kd) int { return cmp.Compare(a.d, b.d) })
			hits, err := vi.Search(q, 10, &hnsw.SearchOptions{Keys: allowedSet})
			if err != nil {
				t.Fatal(err)
			}
			if len(hits) != 10 {
				t.Fatalf("%s: %d hits, want 10", context, len(hits))
			}
			for i, h := range hits {
				if string(h.Key) != truth[i].key {
					t.Fatalf("%s: hit %d is %q, want %q", context, i, h.Key, truth[i].key)
				}
			}
		}
	}
	check("after deletes, reinserts and replaces")
	db.Close()

	db = openMemDB(t, fs)
	vi = mustIndex(t, db, "f", hnsw.Config{})
	if !vi.loadedCheckpoint {
		t.Fatal("reopen did not load the checkpoint")
	}
	check("after a reopen from the checkpoint")
	db.Close()

	for _, f := range graphFiles(t, fs, "/db") {
		if err := fs.Remove(layout.Path("/db", layout.TypeVectorGraph, f)); err != nil {
			t.Fatal(err)
		}
	}
	db = openMemDB(t, fs)
	defer db.Close()
	vi = mustIndex(t, db, "f", hnsw.Config{})
	if vi.loadedCheckpoint || vi.rebuilt != vi.Len() {
		t.Fatalf("loaded %v, rebuilt %d of %d: want a rebuild", vi.loadedCheckpoint, vi.rebuilt, vi.Len())
	}
	check("after a rebuild")
}

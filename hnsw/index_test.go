package hnsw

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cespare/xxhash/v2"
	"github.com/plures/pluresdb/internal/errs"
)

var seedFlag = flag.Uint64("seed", 1, "seed for the randomized hnsw tests")

func testRand(t testing.TB) *rand.Rand {
	t.Helper()
	t.Logf("seed %d", *seedFlag)
	return rand.New(rand.NewPCG(*seedFlag, 0x5eed))
}

// size picks n for a randomized test: smaller in -short and under -race.
func size(t testing.TB, n int) int {
	if raceEnabled {
		return n / 5
	}
	if testing.Short() {
		return n / 3
	}
	return n
}

func uniformData(r *rand.Rand, n, dim int) [][]float32 {
	out := make([][]float32, n)
	for i := range out {
		v := make([]float32, dim)
		for j := range v {
			v[j] = r.Float32()*2 - 1
		}
		out[i] = v
	}
	return out
}

// blobData draws n points from Gaussian blobs: around each random centre,
// a Gaussian in a random latent subspace of latent dimensions plus a little
// isotropic noise, as real embeddings have a low intrinsic dimension. Each
// call draws new blobs: draw queries in the same call as the data (split).
func blobData(r *rand.Rand, n, dim, blobs, latent int) [][]float32 {
	centres := uniformData(r, blobs, dim)
	bases := make([][][]float32, blobs)
	for b := range bases {
		bases[b] = uniformData(r, latent, dim)
	}
	out := make([][]float32, n)
	for i := range out {
		b := r.IntN(blobs)
		v := make([]float32, dim)
		for j := range v {
			v[j] = centres[b][j] + float32(r.NormFloat64())*0.01
		}
		for _, e := range bases[b] {
			c := float32(r.NormFloat64()) * 0.3
			for j := range v {
				v[j] += c * e[j]
			}
		}
		out[i] = v
	}
	return out
}

// split returns data without its last nq points, and those points.
func split(data [][]float32, nq int) ([][]float32, [][]float32) {
	return data[:len(data)-nq], data[len(data)-nq:]
}

func keyOf(i int) []byte { return fmt.Appendf(nil, "k%06d", i) }

// prepared returns v as the index stores it.
func prepared(m Metric, v []float32) []float32 {
	v = slices.Clone(v)
	if m == Cosine {
		normalize(v)
	}
	return v
}

// bruteForce returns the keys of the k nearest vectors in data (prepared,
// by key index) that pass allow.
func bruteForce(m Metric, data map[int][]float32, q []float32, k int, allow func(i int) bool) []string {
	q = prepared(m, q)
	var all []item
	for i, v := range data {
		if allow != nil && !allow(i) {
			continue
		}
		all = append(all, item{m.distance(q, v), uint32(i)})
	}
	slices.SortFunc(all, func(a, b item) int { return cmp.Compare(a.dist, b.dist) })
	var out []string
	for _, it := range all[:min(k, len(all))] {
		out = append(out, string(keyOf(int(it.id))))
	}
	return out
}

func recallOf(hits []Hit, truth []string) float64 {
	if len(truth) == 0 {
		return 1
	}
	got := 0
	for _, h := range hits {
		if slices.Contains(truth, string(h.Key)) {
			got++
		}
	}
	return float64(got) / float64(len(truth))
}

func build(t testing.TB, cfg Config, data [][]float32) (*Index, map[int][]float32) {
	t.Helper()
	x, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[int][]float32, len(data))
	for i, v := range data {
		if err := x.Add(keyOf(i), v); err != nil {
			t.Fatal(err)
		}
		m[i] = v
	}
	if x.Len() != len(data) {
		t.Fatalf("Len %d, want %d", x.Len(), len(data))
	}
	return x, m
}

// meanRecall runs queries and returns the mean recall@k against brute force.
func meanRecall(t testing.TB, x *Index, data map[int][]float32, queries [][]float32, k, ef int, filter *roaring.Bitmap, allow func(int) bool) float64 {
	t.Helper()
	prep := make(map[int][]float32, len(data))
	for i, v := range data {
		prep[i] = prepared(x.cfg.Metric, v)
	}
	sum := 0.0
	for _, q := range queries {
		hits, err := x.Search(q, k, &SearchOptions{Ef: ef, Filter: filter})
		if err != nil {
			t.Fatal(err)
		}
		checkHits(t, hits)
		for _, h := range hits {
			var i int
			fmt.Sscanf(string(h.Key), "k%d", &i)
			if _, ok := data[i]; !ok {
				t.Fatalf("hit %q is not live", h.Key)
			}
			if allow != nil && !allow(i) {
				t.Fatalf("hit %q is not allowed by the filter", h.Key)
			}
		}
		truth := bruteForce(x.cfg.Metric, prep, q, k, allow)
		if len(hits) != len(truth) {
			t.Fatalf("%d hits, want %d", len(hits), len(truth))
		}
		sum += recallOf(hits, truth)
	}
	return sum / float64(len(queries))
}

func checkHits(t testing.TB, hits []Hit) {
	t.Helper()
	seen := map[string]bool{}
	for i, h := range hits {
		if i > 0 && h.Distance < hits[i-1].Distance {
			t.Fatalf("hits not nearest first: %v", hits)
		}
		if seen[string(h.Key)] {
			t.Fatalf("key %q returned twice", h.Key)
		}
		seen[string(h.Key)] = true
	}
}

func TestRecall(t *testing.T) {
	for _, metric := range []Metric{L2, Cosine, Dot} {
		for _, ds := range []struct {
			name string
			dim  int
			gen  func(r *rand.Rand, n, dim int) [][]float32
		}{
			{"uniform", 32, uniformData},
			{"blobs", 96, func(r *rand.Rand, n, dim int) [][]float32 { return blobData(r, n, dim, 16, 8) }},
		} {
			t.Run(fmt.Sprintf("%v/%s", metric, ds.name), func(t *testing.T) {
				t.Parallel()
				r := testRand(t)
				n := size(t, 6000)
				points, queries := split(ds.gen(r, n+100, ds.dim), 100)
				x, data := build(t, Config{Dim: ds.dim, Metric: metric, EfConstruction: 100}, points)
				rec := meanRecall(t, x, data, queries, 10, 100, nil, nil)
				t.Logf("n %d dim %d recall@10 %.4f", n, ds.dim, rec)
				if rec < 0.95 {
					t.Errorf("recall@10 %.4f < 0.95", rec)
				}
			})
		}
	}
}

func TestDelete(t *testing.T) {
	r := testRand(t)
	n := size(t, 4500)
	x, data := build(t, Config{Dim: 32, EfConstruction: 100}, uniformData(r, n, 32))
	for i := 0; i < n; i++ {
		if r.IntN(10) < 3 {
			if err := x.Delete(keyOf(i)); err != nil {
				t.Fatal(err)
			}
			delete(data, i)
		}
	}
	if x.Len() != len(data) {
		t.Fatalf("Len %d, want %d", x.Len(), len(data))
	}
	if err := x.Delete(keyOf(-1)); !errors.Is(err, ErrNotFound) || !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("Delete of an absent key: %v", err)
	}
	for i := 0; i < n; i++ {
		if _, live := data[i]; !live {
			if err := x.Delete(keyOf(i)); !errors.Is(err, ErrNotFound) {
				t.Fatalf("second Delete: %v", err)
			}
			if _, ok := x.ID(keyOf(i)); ok {
				t.Fatalf("ID of deleted key %d", i)
			}
		}
	}
	// meanRecall fails on any hit that is not live.
	rec := meanRecall(t, x, data, uniformData(r, 100, 32), 10, 100, nil, nil)
	t.Logf("recall@10 after deleting 30%%: %.4f", rec)
	if rec < 0.95 {
		t.Errorf("recall@10 %.4f < 0.95", rec)
	}
	// Queries at deleted vectors themselves must not find them.
	for i := 0; i < n; i++ {
		if _, live := data[i]; live {
			continue
		}
		v := uniformData(r, 1, 32)[0]
		hits, err := x.Search(v, 5, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hits {
			if bytes.Equal(h.Key, keyOf(i)) {
				t.Fatalf("deleted key %q returned", h.Key)
			}
		}
		break
	}
}

func TestDeleteAll(t *testing.T) {
	r := testRand(t)
	x, _ := build(t, Config{Dim: 8}, uniformData(r, 50, 8))
	for i := 0; i < 50; i++ {
		if err := x.Delete(keyOf(i)); err != nil {
			t.Fatal(err)
		}
	}
	hits, err := x.Search(make([]float32, 8), 10, nil)
	if err != nil || len(hits) != 0 {
		t.Fatalf("search of an all-deleted index: %v, %v", hits, err)
	}
	if x.Len() != 0 {
		t.Fatalf("Len %d", x.Len())
	}
}

func TestReplace(t *testing.T) {
	r := testRand(t)
	n := size(t, 3000)
	for _, metric := range []Metric{L2, Cosine} {
		// No repair: the replaced IDs must stay tombstones to be checked.
		x, data := build(t, Config{Dim: 32, Metric: metric, EfConstruction: 100, TombstoneRatio: -1}, uniformData(r, n, 32))
		oldIDs := roaring.New()
		for i := 0; i < n; i += 5 {
			oldID, _ := x.ID(keyOf(i))
			oldIDs.Add(oldID)
			v := uniformData(r, 1, 32)[0]
			if err := x.Add(keyOf(i), v); err != nil {
				t.Fatal(err)
			}
			data[i] = v
			if newID, ok := x.ID(keyOf(i)); !ok || newID == oldID {
				t.Fatalf("replace kept ID %d (%v)", newID, ok)
			}
		}
		if x.Len() != n {
			t.Fatalf("Len %d after replace, want %d", x.Len(), n)
		}
		// Replaced nodes are tombstones: a filter of only them finds nothing.
		if h, err := x.Search(data[0], 10, &SearchOptions{Filter: oldIDs}); err != nil || len(h) != 0 {
			t.Fatalf("filter of replaced IDs: %v %v", h, err)
		}
		// Each replaced key is found at its new vector, once.
		for i := 0; i < n; i += 50 {
			hits, err := x.Search(data[i], 3, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkHits(t, hits)
			if len(hits) == 0 || !bytes.Equal(hits[0].Key, keyOf(i)) || hits[0].Distance > 1e-4 {
				t.Fatalf("%v: search at key %d's new vector: %v", metric, i, hits)
			}
		}
		rec := meanRecall(t, x, data, uniformData(r, 100, 32), 10, 100, nil, nil)
		t.Logf("%v recall@10 after replacing 20%%: %.4f", metric, rec)
		if rec < 0.95 {
			t.Errorf("recall@10 %.4f < 0.95", rec)
		}
	}
}

func TestFilter(t *testing.T) {
	r := testRand(t)
	n := size(t, 9000)
	points, queries := split(blobData(r, n+100, 32, 10, 8), 100)
	x, data := build(t, Config{Dim: 32, EfConstruction: 100}, points)
	for _, frac := range []float64{0.01, 0.5} {
		allowed := map[int]bool{}
		bm := roaring.New()
		for i := 0; i < n; i++ {
			if r.Float64() < frac {
				allowed[i] = true
				id, ok := x.ID(keyOf(i))
				if !ok {
					t.Fatal("ID of a live key")
				}
				bm.Add(id)
			}
		}
		rec := meanRecall(t, x, data, queries, 10, 100, bm, func(i int) bool { return allowed[i] })
		t.Logf("filter %.0f%% (%d ids) recall@10 %.4f", frac*100, len(allowed), rec)
		if rec < 0.95 {
			t.Errorf("filter %.2f: recall@10 %.4f < 0.95", frac, rec)
		}
	}
	// An empty filter allows nothing.
	hits, err := x.Search(data[0], 10, &SearchOptions{Filter: roaring.New()})
	if err != nil || len(hits) != 0 {
		t.Fatalf("empty filter: %v, %v", hits, err)
	}
}

// TestFilterGraphPath forces the graph walk with a filter (a set too large
// for the exact scan) and checks it against brute force.
func TestFilterGraphPath(t *testing.T) {
	r := testRand(t)
	n := 3300 // 2/3 of it is above the exact-scan threshold
	x, data := build(t, Config{Dim: 16, EfConstruction: 48}, uniformData(r, n, 16))
	allowed := map[int]bool{}
	bm := roaring.New()
	for i := 0; i < n; i++ {
		if i%3 != 0 {
			allowed[i] = true
			id, _ := x.ID(keyOf(i))
			bm.Add(id)
		}
	}
	f := resultFilter{allow: bm}
	if x.planFiltered(&f, 50, len(x.levels)).exact {
		t.Fatalf("%d of %d ids should take the graph path", bm.GetCardinality(), n)
	}
	rec := meanRecall(t, x, data, uniformData(r, 100, 16), 10, 50, bm, func(i int) bool { return allowed[i] })
	t.Logf("graph-path filter recall@10 %.4f", rec)
	if rec < 0.95 {
		t.Errorf("recall@10 %.4f < 0.95", rec)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	r := testRand(t)
	n := size(t, 3000)
	for _, metric := range []Metric{L2, Cosine, Dot} {
		x, data := build(t, Config{Dim: 24, Metric: metric, M: 8, EfConstruction: 64}, uniformData(r, n, 24))
		for i := 0; i < n; i += 7 {
			if err := x.Delete(keyOf(i)); err != nil {
				t.Fatal(err)
			}
			delete(data, i)
		}
		// A seventh of the nodes dead starts a background repair; wait
		// for it, so that x does not change after the encoding.
		x.Close()
		b, err := x.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		y, err := Unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if y.Len() != x.Len() || y.Config() != x.Config() {
			t.Fatalf("loaded Len %d Config %+v, want %d %+v", y.Len(), y.Config(), x.Len(), x.Config())
		}
		b2, err := y.MarshalBinary()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("re-encoding differs (%v)", err)
		}
		queries := uniformData(r, 50, 24)
		bm := roaring.New()
		for i := 0; i < n; i += 2 {
			if id, ok := x.ID(keyOf(i)); ok {
				bm.Add(id)
			}
		}
		for _, q := range queries {
			for _, opts := range []*SearchOptions{nil, {Ef: 20}, {Filter: bm}} {
				h1, err1 := x.Search(q, 10, opts)
				h2, err2 := y.Search(q, 10, opts)
				if err1 != nil || err2 != nil || !slices.EqualFunc(h1, h2, func(a, b Hit) bool {
					return bytes.Equal(a.Key, b.Key) && a.Distance == b.Distance
				}) {
					t.Fatalf("%v: results differ after round trip:\n%v\n%v", metric, h1, h2)
				}
			}
		}
		// The loaded index keeps working.
		if err := y.Add([]byte("new"), queries[0]); err != nil {
			t.Fatal(err)
		}
		if h, _ := y.Search(queries[0], 1, nil); len(h) != 1 || string(h[0].Key) != "new" {
			t.Fatalf("search after Add on a loaded index: %v", h)
		}
	}
}

func TestUnmarshalErrors(t *testing.T) {
	r := testRand(t)
	x, _ := build(t, Config{Dim: 4, M: 4}, uniformData(r, 40, 4))
	b, err := x.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	empty, _ := New(Config{Dim: 3})
	eb, _ := empty.MarshalBinary()
	if y, err := Unmarshal(eb); err != nil || y.Len() != 0 {
		t.Fatalf("empty round trip: %v", err)
	}
	for i := 0; i < len(b); i++ {
		c := slices.Clone(b)
		c[i] ^= 0x40
		_, err := Unmarshal(c)
		if i >= 8 && i < 12 { // version
			if !errors.Is(err, errs.ErrNewerFormat) {
				t.Fatalf("flip at %d (version): %v", i, err)
			}
			continue
		}
		if !errors.Is(err, errs.ErrCorruption) {
			t.Fatalf("flip at %d: %v", i, err)
		}
	}
	for i := 0; i < len(b); i++ {
		if _, err := Unmarshal(b[:i]); !errors.Is(err, errs.ErrCorruption) {
			t.Fatalf("truncated to %d: %v", i, err)
		}
	}
}

func TestConfigAndInputErrors(t *testing.T) {
	for _, cfg := range []Config{{}, {Dim: -1}, {Dim: MaxDim + 1}, {Dim: 4, Metric: 7}, {Dim: 4, M: 1}, {Dim: 4, M: MaxM + 1},
		{Dim: 4, EfConstruction: -1}, {Dim: 4, TombstoneRatio: 1.5}, {Dim: 4, TombstoneRatio: math.NaN()}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	x, err := New(Config{Dim: 3, Metric: Cosine})
	if err != nil {
		t.Fatal(err)
	}
	if c := x.Config(); c.M != DefaultM || c.EfConstruction != DefaultEfConstruction || c.TombstoneRatio != DefaultTombstoneRatio {
		t.Fatalf("defaults not applied: %+v", c)
	}
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, v := range [][]float32{{1, 2}, {1, 2, 3, 4}, {1, nan, 3}, {inf, 0, 0}, {0, 0, 0}, {3e38, 1, 1}} {
		if err := x.Add([]byte("a"), v); err == nil {
			t.Errorf("Add(%v) succeeded", v)
		}
	}
	if err := x.Add(nil, []float32{1, 2, 3}); !errors.Is(err, errs.ErrInvalidKey) {
		t.Errorf("Add with empty key: %v", err)
	}
	if x.Len() != 0 {
		t.Fatalf("failed Adds changed Len to %d", x.Len())
	}
	if _, err := x.Search([]float32{1, 2}, 3, nil); err == nil {
		t.Error("Search with the wrong dimension succeeded")
	}
	if _, err := x.Search([]float32{nan, 1, 1}, 3, nil); err == nil {
		t.Error("Search with NaN succeeded")
	}
	if h, err := x.Search([]float32{1, 1, 1}, 3, nil); err != nil || len(h) != 0 {
		t.Errorf("Search of an empty index: %v %v", h, err)
	}
	if err := x.Add([]byte("a"), []float32{3, 0, 0}); err != nil {
		t.Fatal(err)
	}
	h, err := x.Search([]float32{1, 0, 0}, 3, nil)
	if err != nil || len(h) != 1 || string(h[0].Key) != "a" || math.Abs(float64(h[0].Distance)) > 1e-6 {
		t.Errorf("cosine search: %v %v", h, err)
	}
}

func TestConcurrentAddSearch(t *testing.T) {
	r := testRand(t)
	const dim = 16
	n := size(t, 3000)
	data := uniformData(r, n, dim)
	queries := uniformData(r, 50, dim)
	x, err := New(Config{Dim: dim, EfConstruction: 50})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 2 {
				if err := x.Add(keyOf(i), data[i]); err != nil {
					errc <- err
					return
				}
				switch i % 10 {
				case 5:
					if err := x.Delete(keyOf(i)); err != nil {
						errc <- err
						return
					}
				case 7, 8: // replace, with the same vector so the truth holds
					if err := x.Add(keyOf(i-4), data[i-4]); err != nil {
						errc <- err
						return
					}
				}
			}
		}(w)
	}
	stop := make(chan struct{})
	var sg sync.WaitGroup
	for s := 0; s < 3; s++ {
		sg.Add(1)
		go func(s int) {
			defer sg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				bm := roaring.New()
				for i := 0; i < n; i += 3 {
					bm.Add(uint32(i))
				}
				opts := []*SearchOptions{nil, {Filter: bm}}[j%2]
				hits, err := x.Search(queries[j%len(queries)], 10, opts)
				if err != nil {
					errc <- err
					return
				}
				seen := map[string]bool{}
				for i, h := range hits {
					if i > 0 && h.Distance < hits[i-1].Distance || seen[string(h.Key)] {
						errc <- fmt.Errorf("unordered or repeated hits %v", hits)
						return
					}
					seen[string(h.Key)] = true
				}
			}
		}(s)
	}
	wg.Wait()
	close(stop)
	sg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	want := n - n/10
	if x.Len() != want {
		t.Fatalf("Len %d, want %d", x.Len(), want)
	}
	live := map[int][]float32{}
	for i := 0; i < n; i++ {
		if i%10 != 5 {
			live[i] = data[i]
		}
	}
	rec := meanRecall(t, x, live, queries, 10, 100, nil, nil)
	t.Logf("recall@10 after concurrent build: %.4f", rec)
	if rec < 0.95 {
		t.Errorf("recall@10 %.4f < 0.95", rec)
	}
}

// TestUnmarshalValidates mutates encoded graphs and recomputes the
// checksum, so the structural checks behind it are what stands between the
// bytes and a panic: every result must be an error or a usable index.
func TestUnmarshalValidates(t *testing.T) {
	r := testRand(t)
	for _, metric := range []Metric{L2, Dot} {
		x, _ := build(t, Config{Dim: 3, Metric: metric, M: 3, EfConstruction: 8}, uniformData(r, 30, 3))
		if err := x.Delete(keyOf(4)); err != nil {
			t.Fatal(err)
		}
		b, err := x.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		accepted := 0
		for i := 0; i < len(b)-trailerSize; i++ {
			for _, mask := range []byte{0x01, 0x10, 0x80, 0xff} {
				c := slices.Clone(b)
				c[i] ^= mask
				body := c[:len(c)-trailerSize]
				binary.LittleEndian.PutUint64(c[len(body):], xxhash.Sum64(body))
				y, err := Unmarshal(c)
				if err != nil {
					if !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
						t.Fatalf("byte %d ^ %#x: unexpected error %v", i, mask, err)
					}
					continue
				}
				accepted++
				q := []float32{0.1, 0.2, 0.3}
				if _, err := y.Search(q, 5, &SearchOptions{Ef: 10}); err != nil {
					t.Fatalf("byte %d ^ %#x: search: %v", i, mask, err)
				}
				if err := y.Add([]byte("new"), q); err != nil {
					t.Fatalf("byte %d ^ %#x: add: %v", i, mask, err)
				}
				// Repair relinks whatever graph it was given (the
				// deleted key is a tombstone) into a connected one.
				y.Repair()
				if f := graphFaults(y, true); len(f) > 0 {
					t.Fatalf("byte %d ^ %#x: after Repair: %v", i, mask, f)
				}
				if _, err := y.Search(q, 5, &SearchOptions{Ef: 10}); err != nil {
					t.Fatalf("byte %d ^ %#x: search after Repair: %v", i, mask, err)
				}
			}
		}
		t.Logf("%v: %d of %d mutations decoded (vector bits, links within bounds)", metric, accepted, 4*(len(b)-trailerSize))
	}
}

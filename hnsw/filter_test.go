package hnsw

import (
	"iter"
	"slices"
	"strconv"
	"testing"

	"github.com/RoaringBitmap/roaring/v2"
)

// keyIndex inverts keyOf.
func keyIndex(key []byte) int {
	i, _ := strconv.Atoi(string(key[1:]))
	return i
}

// TestAllow checks predicate filters of 1% and 50% (and one combined with
// a bitmap) against filtered brute force, on clustered data where a
// selective predicate leaves the beam far from any allowed node.
func TestAllow(t *testing.T) {
	r := testRand(t)
	n := size(t, 9000)
	points, queries := split(blobData(r, n+100, 32, 10, 8), 100)
	x, data := build(t, Config{Dim: 32, EfConstruction: 100}, points)
	for _, tc := range []struct {
		name  string
		allow func(i int) bool
	}{
		{"1%", func(i int) bool { return i%100 == 37 }},
		{"50%", func(i int) bool { return (i/7)%2 == 0 }},
		{"3 keys", func(i int) bool { return i == 5 || i == 500 || i == 1500 }},
		{"none", func(i int) bool { return false }},
	} {
		calls := 0
		pred := func(key []byte) bool {
			calls++
			return tc.allow(keyIndex(key))
		}
		sum := 0.0
		for _, q := range queries {
			hits, err := x.Search(q, 10, &SearchOptions{Ef: 100, Allow: pred})
			if err != nil {
				t.Fatal(err)
			}
			checkHits(t, hits)
			truth := bruteForce(L2, data, q, 10, tc.allow)
			if len(hits) != len(truth) {
				t.Fatalf("%s: %d hits, want %d", tc.name, len(hits), len(truth))
			}
			for _, h := range hits {
				if !tc.allow(keyIndex(h.Key)) {
					t.Fatalf("%s: hit %q not allowed", tc.name, h.Key)
				}
			}
			sum += recallOf(hits, truth)
		}
		rec := sum / float64(len(queries))
		t.Logf("predicate %s: recall@10 %.4f, %d predicate calls per search", tc.name, rec, calls/len(queries))
		if rec < 0.95 {
			t.Errorf("predicate %s: recall@10 %.4f < 0.95", tc.name, rec)
		}
	}
}

// TestAllowGraphPath forces the bounded graph walk with a predicate (an
// allowed set too large for the scan) and checks it against brute force.
func TestAllowGraphPath(t *testing.T) {
	r := testRand(t)
	n := 3300 // 2/3 of it is above the exact-scan threshold
	x, data := build(t, Config{Dim: 16, EfConstruction: 48}, uniformData(r, n, 16))
	allow := func(i int) bool { return i%3 != 0 }
	pred := func(key []byte) bool { return allow(keyIndex(key)) }
	f := resultFilter{pred: pred}
	if pl := x.planFiltered(&f, 50, len(x.levels)); pl.exact || pl.budget == 0 {
		t.Fatalf("a 2/3 predicate should take the bounded graph path (%+v)", pl)
	}
	sum := 0.0
	queries := uniformData(r, 100, 16)
	for _, q := range queries {
		hits, err := x.Search(q, 10, &SearchOptions{Ef: 50, Allow: pred})
		if err != nil {
			t.Fatal(err)
		}
		sum += recallOf(hits, bruteForce(L2, data, q, 10, allow))
	}
	rec := sum / float64(len(queries))
	t.Logf("graph-path predicate recall@10 %.4f", rec)
	if rec < 0.95 {
		t.Errorf("recall@10 %.4f < 0.95", rec)
	}
}

// TestParallelBuild builds with AddBatch and checks recall, and that
// Adds, Deletes and searches from several goroutines agree on Len.
func TestParallelBuild(t *testing.T) {
	r := testRand(t)
	n := size(t, 6000)
	points, queries := split(blobData(r, n+100, 48, 16, 8), 100)
	x, err := New(Config{Dim: 48, EfConstruction: 100})
	if err != nil {
		t.Fatal(err)
	}
	keys := make([][]byte, n)
	data := make(map[int][]float32, n)
	for i := range keys {
		keys[i] = keyOf(i)
		data[i] = points[i]
	}
	if err := x.AddBatch(keys, points, 4); err != nil {
		t.Fatal(err)
	}
	if x.Len() != n {
		t.Fatalf("Len %d after AddBatch of %d", x.Len(), n)
	}
	rec := meanRecall(t, x, data, queries, 10, 100, nil, nil)
	t.Logf("recall@10 after a 4-goroutine build: %.4f", rec)
	if rec < 0.95 {
		t.Errorf("recall@10 %.4f < 0.95", rec)
	}
	if err := x.AddBatch(keys[:2], points[:1], 2); err == nil {
		t.Error("AddBatch with mismatched lengths succeeded")
	}
	if err := x.AddBatch(keys[:1], [][]float32{{1}}, 2); err == nil {
		t.Error("AddBatch with a bad vector succeeded")
	}
}

// TestKeysFilterStable reproduces the instability of internal-ID filters
// (a bitmap of deleted keys' IDs selects the new keys that reuse them
// after a Repair; a replaced key leaves its old ID) and checks that the
// same filters given as Keys select exactly the allowed keys, against
// brute force, on the exact and the graph path.
func TestKeysFilterStable(t *testing.T) {
	r := testRand(t)
	const n, dim = 3000, 16
	x, data := build(t, Config{Dim: dim, EfConstruction: 64, TombstoneRatio: -1}, uniformData(r, n, dim))
	var gone [][]byte
	goneIDs := roaring.New()
	for i := 0; i < n; i += 3 {
		id, _ := x.ID(keyOf(i))
		goneIDs.Add(id)
		gone = append(gone, keyOf(i))
	}
	goneKeys := NewKeys(gone)
	for _, k := range gone {
		if err := x.Delete(k); err != nil {
			t.Fatal(err)
		}
		delete(data, keyIndex(k))
	}
	x.Repair()
	// New keys take the freed IDs.
	for i := n; i < n+len(gone); i++ {
		data[i] = uniformData(r, 1, dim)[0]
		if err := x.Add(keyOf(i), data[i]); err != nil {
			t.Fatal(err)
		}
	}
	q := uniformData(r, 1, dim)[0]
	hits, err := x.Search(q, 100, &SearchOptions{Filter: goneIDs})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) == 0 {
		t.Fatal("the stale bitmap selected nothing: the reuse this test reproduces did not happen")
	}
	for _, h := range hits {
		if keyIndex(h.Key) < n {
			t.Fatalf("stale bitmap hit %q: want only new keys, which reuse the deleted keys' IDs", h.Key)
		}
	}
	t.Logf("a bitmap of %d deleted keys' IDs selected %d of 100 hits, all new keys", goneIDs.GetCardinality(), len(hits))
	if hits, err := x.Search(q, 100, &SearchOptions{Keys: goneKeys}); err != nil || len(hits) != 0 {
		t.Fatalf("deleted keys as Keys: %d hits, %v; want none", len(hits), err)
	}

	// Replace a third of the remaining old keys, then filter by a small
	// set (the exact scan) and a large one (the graph walk) of old and new
	// keys, some of them deleted and some never added.
	for i := 1; i < n; i += 9 {
		data[i] = uniformData(r, 1, dim)[0]
		if err := x.Add(keyOf(i), data[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, frac := range []int{50, 2} { // every 50th key, every 2nd
		var keys [][]byte
		allowed := map[int]bool{}
		for i := 0; i < n+len(gone)+100; i += frac {
			keys = append(keys, keyOf(i))
			allowed[i] = true
		}
		set := NewKeys(keys)
		f := resultFilter{keys: set}
		t.Logf("1 key in %d: %d keys, plan %+v", frac, set.Len(), x.planFiltered(&f, 64, len(x.levels)))
		sum := 0.0
		queries := uniformData(r, 50, dim)
		for _, q := range queries {
			hits, err := x.Search(q, 10, &SearchOptions{Keys: set})
			if err != nil {
				t.Fatal(err)
			}
			checkHits(t, hits)
			truth := bruteForce(L2, data, q, 10, func(i int) bool { return allowed[i] })
			if len(hits) != len(truth) {
				t.Fatalf("%d hits, want %d", len(hits), len(truth))
			}
			for _, h := range hits {
				if _, live := data[keyIndex(h.Key)]; !live || !allowed[keyIndex(h.Key)] {
					t.Fatalf("hit %q: live %v, allowed %v", h.Key, live, allowed[keyIndex(h.Key)])
				}
			}
			sum += recallOf(hits, truth)
		}
		rec := sum / float64(len(queries))
		if frac == 50 && rec != 1 {
			t.Errorf("1 key in %d (an exact scan): recall %.4f, want 1", frac, rec)
		}
		if rec < 0.95 {
			t.Errorf("1 key in %d: recall %.4f < 0.95", frac, rec)
		}
	}
}

// dupKeys is a KeySet whose All repeats every key, as a set computed
// elsewhere may: a search must still return each key once.
type dupKeys struct{ *Keys }

func (d dupKeys) All() iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for k := range d.Keys.All() {
			for range 2 {
				if !yield(k) {
					return
				}
			}
		}
	}
}

func TestKeys(t *testing.T) {
	s := NewKeys([][]byte{[]byte("b"), []byte("a"), []byte("b"), {}, []byte("c")})
	if s.Len() != 4 {
		t.Fatalf("Len %d, want 4 (one duplicate dropped)", s.Len())
	}
	var got []string
	for k := range s.All() {
		got = append(got, string(k))
	}
	if want := []string{"b", "a", "", "c"}; !slices.Equal(got, want) {
		t.Fatalf("All %q, want %q", got, want)
	}
	for _, k := range []string{"a", "b", "c", ""} {
		if !s.Contains([]byte(k)) {
			t.Errorf("Contains(%q) false", k)
		}
	}
	if s.Contains([]byte("d")) || s.Contains([]byte("ab")) {
		t.Error("Contains of an absent key")
	}
	if e := NewKeys(nil); e.Len() != 0 || e.Contains(nil) {
		t.Error("empty set not empty")
	}

	r := testRand(t)
	x, data := build(t, Config{Dim: 8}, uniformData(r, 500, 8))
	keys := NewKeys([][]byte{keyOf(3), keyOf(7), keyOf(11), []byte("absent")})
	hits, err := x.Search(data[7], 10, &SearchOptions{Keys: dupKeys{keys}})
	if err != nil {
		t.Fatal(err)
	}
	checkHits(t, hits)
	if len(hits) != 3 || string(hits[0].Key) != string(keyOf(7)) || hits[0].Distance != 0 {
		t.Fatalf("hits %v: want keys 3, 7 and 11 once each, 7 first", hits)
	}
	// Keys and Allow combine.
	hits, _ = x.Search(data[7], 10, &SearchOptions{Keys: keys, Allow: func(k []byte) bool { return keyIndex(k) != 7 }})
	if len(hits) != 2 || keyIndex(hits[0].Key) == 7 || keyIndex(hits[1].Key) == 7 {
		t.Fatalf("Keys with Allow: %v", hits)
	}
	if hits, _ := x.Search(data[7], 10, &SearchOptions{Keys: NewKeys(nil)}); len(hits) != 0 {
		t.Fatalf("empty Keys: %v", hits)
	}
}

package hnsw

import (
	"strconv"
	"testing"
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
	if exact, budget := x.planFiltered(&f, 50, len(x.levels)); exact || budget == 0 {
		t.Fatalf("a 2/3 predicate should take the bounded graph path (exact %v, budget %d)", exact, budget)
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

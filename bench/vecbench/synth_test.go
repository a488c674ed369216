package main

import (
	"cmp"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomized tests (0: from the clock)")

func testSeed(t *testing.T) uint64 {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d", seed)
	return seed
}

// naiveTruth ranks every base vector with float64 arithmetic and a full
// sort: the reference groundTruth must agree with.
func naiveTruth(base, queries Vectors, metric string, depth int) [][]int32 {
	out := make([][]int32, queries.Len())
	for qi := range out {
		q := queries.At(qi)
		type cand struct {
			d  float64
			id int32
		}
		cs := make([]cand, base.Len())
		for id := range cs {
			b := base.At(id)
			var d, dot, nq, nb float64
			for j := range q {
				x, y := float64(q[j]), float64(b[j])
				d += (x - y) * (x - y)
				dot += x * y
				nq += x * x
				nb += y * y
			}
			switch metric {
			case metricCosine:
				d = 1 - dot/math.Sqrt(nq*nb)
			case metricDot:
				d = -dot
			}
			cs[id] = cand{d, int32(id)}
		}
		slices.SortFunc(cs, func(a, b cand) int { return cmp.Or(cmp.Compare(a.d, b.d), cmp.Compare(a.id, b.id)) })
		for _, c := range cs[:depth] {
			out[qi] = append(out[qi], c.id)
		}
	}
	return out
}

func TestGroundTruth(t *testing.T) {
	seed := testSeed(t)
	for _, metric := range []string{metricL2, metricCosine, metricDot} {
		for _, kind := range []string{kindUniform, kindClustered} {
			t.Run(metric+"/"+kind, func(t *testing.T) {
				s := synthSpec{N: 300, Dim: 7, NQ: 20, Kind: kind, Metric: metric, Seed: seed}
				base, queries := generate(s)
				got := groundTruth(base, queries, metric, 25)
				want := naiveTruth(base, queries, metric, 25)
				if got.Dim != 25 || got.Len() != 20 {
					t.Fatalf("ground truth is %d x %d, want 20 x 25", got.Len(), got.Dim)
				}
				// float32 and float64 sums may order near-ties differently;
				// with random data over 7 dims that never moves a set.
				mismatch := 0
				for qi := range want {
					if !slices.Equal(got.At(qi), want[qi]) {
						mismatch++
						t.Logf("query %d: got %v want %v", qi, got.At(qi), want[qi])
					}
				}
				if mismatch > 1 {
					t.Fatalf("%d of 20 queries differ from the naive ranking", mismatch)
				}
			})
		}
	}
}

// Duplicated base vectors tie: the lower ID ranks first, and the depth
// is capped by the base size.
func TestGroundTruthTiesAndSmallBase(t *testing.T) {
	base := Vectors{Dim: 2, Data: []float32{5, 5, 1, 1, 0, 0, 1, 1, 1, 1}}
	queries := Vectors{Dim: 2, Data: []float32{1, 1}}
	got := groundTruth(base, queries, metricL2, 100)
	if want := []int32{1, 3, 4, 2, 0}; !slices.Equal(got.At(0), want) {
		t.Fatalf("got %v, want %v", got.At(0), want)
	}
}

func TestGenerateDeterministic(t *testing.T) {
	s := synthSpec{N: 50, Dim: 16, NQ: 5, Kind: kindClustered, Metric: metricL2, Seed: 7}
	b1, q1 := generate(s)
	b2, q2 := generate(s)
	if !slices.Equal(b1.Data, b2.Data) || !slices.Equal(q1.Data, q2.Data) {
		t.Fatal("same spec, different data")
	}
	// The base set does not depend on the number of queries.
	s.NQ = 9
	b3, q3 := generate(s)
	if !slices.Equal(b1.Data, b3.Data) || q3.Len() != 9 {
		t.Fatal("changing -nq changed the base set")
	}
	s.Seed = 8
	if b4, _ := generate(s); slices.Equal(b1.Data, b4.Data) {
		t.Fatal("different seeds, same data")
	}
	if slices.Equal(b1.Data[:16], q1.Data[:16]) {
		t.Fatal("queries repeat the base vectors")
	}
}

// Clustered data really is clustered: relative to a random point, a
// query's nearest neighbour is much nearer than in uniform data.
func TestClusteredHasStructure(t *testing.T) {
	ratio := func(kind string) float64 {
		s := synthSpec{N: 2000, Dim: 32, NQ: 50, Kind: kind, Metric: metricL2, Seed: 3}
		base, queries := generate(s)
		gt := groundTruth(base, queries, metricL2, 1)
		r := rand.New(rand.NewPCG(1, 2))
		var near, random float64
		for qi := range queries.Len() {
			near += float64(distL2(queries.At(qi), base.At(int(gt.At(qi)[0]))))
			random += float64(distL2(queries.At(qi), base.At(r.IntN(base.Len()))))
		}
		return near / random
	}
	c, u := ratio(kindClustered), ratio(kindUniform)
	t.Logf("nearest/random squared distance: clustered %.3f, uniform %.3f", c, u)
	if c > 0.75*u {
		t.Fatalf("clustered %.3f is not well below uniform %.3f: no clusters", c, u)
	}
}

func TestSynthCache(t *testing.T) {
	dir := t.TempDir()
	s := synthSpec{N: 200, Dim: 8, NQ: 10, Kind: kindUniform, Metric: metricCosine, Seed: 1}
	var logs []string
	logf := func(f string, a ...any) { logs = append(logs, f) }
	ds, err := synthDataset(s, dir, logf)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Base.Len() != 200 || ds.Queries.Len() != 10 || ds.Truth.Len() != 10 || ds.Truth.Dim != gtDepth {
		t.Fatalf("set is %d/%d/%dx%d", ds.Base.Len(), ds.Queries.Len(), ds.Truth.Len(), ds.Truth.Dim)
	}
	// The files hold what was returned.
	again := &dataset{BasePath: ds.BasePath, QueryPath: ds.QueryPath, TruthPath: ds.TruthPath}
	if err := again.load(0); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Base.Data, ds.Base.Data) || !slices.Equal(again.Truth.Data, ds.Truth.Data) {
		t.Fatal("cached files differ from the generated set")
	}
	// A rerun reads the cache: make the ground truth recognisable and see
	// it come back.
	ds.Truth.Data[0], ds.Truth.Data[1] = ds.Truth.Data[1], ds.Truth.Data[0]
	if err := writeIvecs(ds.TruthPath, ds.Truth); err != nil {
		t.Fatal(err)
	}
	logs = nil
	cached, err := synthDataset(s, dir, logf)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cached.Truth.Data, ds.Truth.Data) {
		t.Fatal("rerun recomputed instead of reading the cache")
	}
	// Another parameter is another directory.
	s.Metric = metricL2
	if _, err := synthDataset(s, dir, logf); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("cache holds %d entries, want 2 (no temporary leftovers)", len(entries))
	}
	// A damaged cache is an error, not a silent regeneration.
	if err := os.WriteFile(filepath.Join(dir, s.dirName(), "base.fvecs"), []byte{1, 2, 3}, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := synthDataset(s, dir, logf); err == nil {
		t.Fatal("damaged cache accepted")
	}
}

func TestRecallAt(t *testing.T) {
	truth := IntVectors{Dim: 4, Data: []int32{
		0, 1, 2, 3,
		9, 8, 7, 6,
	}}
	for _, tc := range []struct {
		found []int32
		k     int
		want  float64
	}{
		{[]int32{0, 1, 9, 8}, 2, 1},
		{[]int32{1, 0, 8, 9}, 2, 1},    // order within the top k does not matter
		{[]int32{2, 0, 7, 6}, 2, 0.25}, // ranks 3+ are not in the top 2
		{[]int32{0, -1, -1, -1}, 2, 0.25},
		{[]int32{0, 1, 2, 5, 6, 7, 8, 9}, 4, 7.0 / 8},
	} {
		if got := recallAt(tc.found, truth, tc.k); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("recallAt(%v, k=%d) = %v, want %v", tc.found, tc.k, got, tc.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	lat := []time.Duration{5, 1, 4, 2, 3} // µs after scaling below
	for i := range lat {
		lat[i] *= time.Microsecond
	}
	if got := percentile(lat, 0.5); got != 3 {
		t.Errorf("p50 = %v, want 3", got)
	}
	if got := percentile(lat, 0.99); math.Abs(got-4.96) > 1e-9 {
		t.Errorf("p99 = %v, want 4.96 (numpy's linear interpolation)", got)
	}
}

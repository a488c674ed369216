package hnsw

import (
	"cmp"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
)

var (
	filteredN      = flag.Int("hnsw.filtered", 0, "TestFilteredRecall: this many vectors (0: 20,000, fewer in -short and -race)")
	filteredDim    = flag.Int("hnsw.filtereddim", 64, "TestFilteredRecall: dimensions")
	filteredFracs  = flag.String("hnsw.fracs", "0.01,0.1,0.5", "TestFilteredRecall: allowed fractions")
	filteredLatent = flag.Int("hnsw.latent", 32, "TestFilteredRecall: latent dimensions per cluster")
)

// clusteredData draws n points from c Gaussian clusters and returns each
// point's cluster. A cluster is its centre plus a Gaussian in a random
// subspace of latent dimensions plus a little isotropic noise; centres are
// far enough apart that clusters barely touch, the case where a filter
// made of whole clusters leaves a query's own neighbourhood all
// disallowed.
func clusteredData(r *rand.Rand, n, dim, c, latent int) ([][]float32, []int) {
	centres := make([][]float32, c)
	for i := range centres {
		centres[i] = make([]float32, dim)
		for j := range centres[i] {
			centres[i][j] = float32(r.NormFloat64())
		}
	}
	bases := make([][][]float32, c)
	for b := range bases {
		bases[b] = make([][]float32, latent)
		for l := range bases[b] {
			bases[b][l] = make([]float32, dim)
			for j := range bases[b][l] {
				bases[b][l][j] = float32(r.NormFloat64()) * 0.15
			}
		}
	}
	out := make([][]float32, n)
	labels := make([]int, n)
	for i := range out {
		b := r.IntN(c)
		labels[i] = b
		v := make([]float32, dim)
		for j := range v {
			v[j] = centres[b][j] + float32(r.NormFloat64())*0.02
		}
		for _, e := range bases[b] {
			g := float32(r.NormFloat64())
			for j := range v {
				v[j] += g * e[j]
			}
		}
		out[i] = v
	}
	return out, labels
}

// filterCase is one allowed set: which points it allows.
type filterCase struct {
	name    string
	frac    float64
	allowed []bool
}

// filterCases returns random and cluster-aligned allowed sets of each
// fraction. A cluster-aligned set is whole clusters taken in a random
// order, the last one only in part, until the fraction is reached; at 1%
// it is part of one cluster.
func filterCases(r *rand.Rand, labels []int, clusters int, fracs []float64) []filterCase {
	n := len(labels)
	var out []filterCase
	for _, frac := range fracs {
		want := int(frac * float64(n))
		rnd := make([]bool, n)
		for _, i := range r.Perm(n)[:want] {
			rnd[i] = true
		}
		out = append(out, filterCase{fmt.Sprintf("random/%g%%", frac*100), frac, rnd})
		byCluster := make([][]int, clusters)
		for i, l := range labels {
			byCluster[l] = append(byCluster[l], i)
		}
		cl := make([]bool, n)
		got := 0
		for _, c := range r.Perm(clusters) {
			for _, i := range byCluster[c] {
				if got == want {
					break
				}
				cl[i] = true
				got++
			}
		}
		out = append(out, filterCase{fmt.Sprintf("clustered/%g%%", frac*100), frac, cl})
	}
	return out
}

// filteredTruth returns the k nearest allowed points to q, by index.
func filteredTruth(points [][]float32, allowed []bool, q []float32, k int) []int {
	var all []item
	for i, v := range points {
		if allowed[i] {
			all = append(all, item{L2.distance(q, v), uint32(i)})
		}
	}
	slices.SortFunc(all, func(a, b item) int { return cmp.Compare(a.dist, b.dist) })
	out := make([]int, 0, k)
	for _, it := range all[:min(k, len(all))] {
		out = append(out, int(it.id))
	}
	return out
}

// filteredRun is what one allowed set measured: mean recall@k, mean and
// 99th-percentile latency.
type filteredRun struct {
	recall    float64
	mean, p99 time.Duration
	dists     float64 // distances measured per search
}

func measureFiltered(t testing.TB, x *Index, points, queries [][]float32, fc filterCase, k int, opts func(fc filterCase) *SearchOptions) filteredRun {
	t.Helper()
	o := opts(fc)
	var lat []time.Duration
	sum, dists := 0.0, 0
	for _, q := range queries {
		truth := filteredTruth(points, fc.allowed, q, k)
		t0 := time.Now()
		hits, d, err := x.search(q, k, o)
		lat = append(lat, time.Since(t0))
		dists += d
		if err != nil {
			t.Fatal(err)
		}
		checkHits(t, hits)
		if len(hits) != len(truth) {
			t.Fatalf("%s: %d hits, want %d", fc.name, len(hits), len(truth))
		}
		got := 0
		for _, h := range hits {
			i := keyIndex(h.Key)
			if !fc.allowed[i] {
				t.Fatalf("%s: hit %q not allowed", fc.name, h.Key)
			}
			if slices.Contains(truth, i) {
				got++
			}
		}
		if len(truth) > 0 {
			sum += float64(got) / float64(len(truth))
		} else {
			sum++
		}
	}
	var total time.Duration
	for _, l := range lat {
		total += l
	}
	slices.Sort(lat)
	return filteredRun{sum / float64(len(queries)), total / time.Duration(len(lat)), lat[len(lat)*99/100],
		float64(dists) / float64(len(queries))}
}

// bitmapOpts is the internal-ID form of a filter, built just before the
// search.
func bitmapOpts(x *Index) func(fc filterCase) *SearchOptions {
	return func(fc filterCase) *SearchOptions {
		bm := roaring.New()
		for i, ok := range fc.allowed {
			if ok {
				id, _ := x.ID(keyOf(i))
				bm.Add(id)
			}
		}
		return &SearchOptions{Filter: bm}
	}
}

// keysOpts is the key form of a filter.
func keysOpts(fc filterCase) *SearchOptions {
	var keys [][]byte
	for i, ok := range fc.allowed {
		if ok {
			keys = append(keys, keyOf(i))
		}
	}
	return &SearchOptions{Keys: NewKeys(keys)}
}

// TestFilteredRecall checks recall@10 at the default ef for random and
// cluster-aligned filters allowing 1%, 10% and 50% of the vectors,
// against the exact filtered answer. -hnsw.filtered N measures a larger
// index:
//
//	go test ./hnsw -run TestFilteredRecall -hnsw.filtered 50000 -hnsw.filtereddim 128 -v
func TestFilteredRecall(t *testing.T) {
	r := testRand(t)
	n := *filteredN
	if n == 0 {
		n = size(t, 20000)
	}
	const clusters, nq, k = 20, 200, 10
	dim := *filteredDim
	all, labels := clusteredData(r, n+nq, dim, clusters, *filteredLatent)
	points, queries := split(all, nq)
	labels = labels[:n]
	x, err := New(Config{Dim: dim})
	if err != nil {
		t.Fatal(err)
	}
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = keyOf(i)
	}
	t0 := time.Now()
	if err := x.AddBatch(keys, points, 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("built %d vectors of %d dimensions in %v", n, dim, time.Since(t0).Round(time.Millisecond))
	un := measureFiltered(t, x, points, queries, filterCase{"none", 1, slices.Repeat([]bool{true}, n)}, k,
		func(filterCase) *SearchOptions { return nil })
	t.Logf("%-16s recall@10 %.4f  mean %6.1f µs  p99 %6.1f µs  %6.0f distances", "unfiltered", un.recall, us(un.mean), us(un.p99), un.dists)
	var fracs []float64
	for _, f := range strings.Split(*filteredFracs, ",") {
		v, _ := strconv.ParseFloat(f, 64)
		fracs = append(fracs, v)
	}
	for _, fc := range filterCases(r, labels, clusters, fracs) {
		for _, form := range []struct {
			name string
			opts func(fc filterCase) *SearchOptions
		}{
			{"bitmap", bitmapOpts(x)},
			{"keys", keysOpts},
		} {
			run := measureFiltered(t, x, points, queries, fc, k, form.opts)
			t.Logf("%-16s %-7s recall@10 %.4f  mean %6.1f µs  p99 %6.1f µs  %6.0f distances", fc.name, form.name, run.recall, us(run.mean), us(run.p99), run.dists)
			if run.recall < 0.95 {
				t.Errorf("%s, %s: recall@10 %.4f < 0.95", fc.name, form.name, run.recall)
			}
		}
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

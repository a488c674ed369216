package main

// Synthetic data sets with exact ground truth, cached on disk as TEXMEX
// files so that a rerun, and the Python anchors, read the very same bytes.

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
)

// Data set kinds.
const (
	kindUniform   = "uniform"
	kindClustered = "clustered"
)

// Metric names, as flags, file names and the anchors spell them.
const (
	metricL2     = "l2"
	metricCosine = "cosine"
	metricDot    = "dot"
)

// gtDepth is how many exact neighbours the ground truth keeps per query
// (as SIFT1M's does), whatever k the run uses.
const gtDepth = 100

// synthVersion is part of the cache directory name; bump it when the
// generator changes so stale caches are not reused.
const synthVersion = 1

// synthSpec is everything a synthetic data set depends on.
type synthSpec struct {
	N, Dim, NQ int
	Kind       string // kindUniform or kindClustered
	Metric     string // metricL2, metricCosine or metricDot
	Seed       uint64
}

func (s synthSpec) validate() error {
	switch {
	case s.N <= 0 || s.Dim <= 0 || s.NQ <= 0:
		return fmt.Errorf("-n, -dim and -nq must be positive")
	case s.Dim > maxFileDim:
		return fmt.Errorf("-dim %d above %d", s.Dim, maxFileDim)
	case s.N > math.MaxInt32:
		return fmt.Errorf("-n %d does not fit the int32 IDs of a ground truth file", s.N)
	case s.Kind != kindUniform && s.Kind != kindClustered:
		return fmt.Errorf("unknown -kind %q (uniform or clustered)", s.Kind)
	}
	return checkMetric(s.Metric)
}

func checkMetric(m string) error {
	switch m {
	case metricL2, metricCosine, metricDot:
		return nil
	}
	return fmt.Errorf("unknown -metric %q (l2, cosine or dot)", m)
}

// dirName names the cache directory of the set.
func (s synthSpec) dirName() string {
	return fmt.Sprintf("synth-v%d-%s-n%d-d%d-q%d-%s-seed%d", synthVersion, s.Kind, s.N, s.Dim, s.NQ, s.Metric, s.Seed)
}

// dataset is a base set, its queries and their exact neighbours.
type dataset struct {
	Base, Queries Vectors
	Truth         IntVectors // per query, the IDs of its nearest base vectors, nearest first
	// Files, for the anchors.
	BasePath, QueryPath, TruthPath string
}

// synthDataset returns the set described by s from cacheDir, generating
// and writing it first when it is not there. logf reports progress.
func synthDataset(s synthSpec, cacheDir string, logf func(string, ...any)) (*dataset, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	dir := filepath.Join(cacheDir, s.dirName())
	ds := &dataset{
		BasePath:  filepath.Join(dir, "base.fvecs"),
		QueryPath: filepath.Join(dir, "query.fvecs"),
		TruthPath: filepath.Join(dir, "groundtruth.ivecs"),
	}
	if _, err := os.Stat(dir); err == nil {
		logf("vecbench: reading cached %s", dir)
		if err := ds.load(0); err != nil {
			return nil, fmt.Errorf("cached set %s (delete it to regenerate): %w", dir, err)
		}
		if ds.Base.Len() != s.N || ds.Base.Dim != s.Dim || ds.Queries.Len() != s.NQ {
			return nil, fmt.Errorf("cached set %s does not match its name (delete it to regenerate)", dir)
		}
		return ds, nil
	}

	logf("vecbench: generating %s", s.dirName())
	ds.Base, ds.Queries = generate(s)
	logf("vecbench: exact top-%d for %d queries on %d cores", min(gtDepth, s.N), s.NQ, runtime.GOMAXPROCS(0))
	ds.Truth = groundTruth(ds.Base, ds.Queries, s.Metric, min(gtDepth, s.N))

	// Write into a temporary directory and rename it, so an interrupted
	// run never leaves a half-written cache behind.
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(cacheDir, ".tmp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := writeFvecs(filepath.Join(tmp, "base.fvecs"), ds.Base); err != nil {
		return nil, err
	}
	if err := writeFvecs(filepath.Join(tmp, "query.fvecs"), ds.Queries); err != nil {
		return nil, err
	}
	if err := writeIvecs(filepath.Join(tmp, "groundtruth.ivecs"), ds.Truth); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	return ds, nil
}

// load reads the three files; nq > 0 keeps only the first nq queries.
func (ds *dataset) load(nq int) error {
	var err error
	if ds.Base, err = readVectors(ds.BasePath, 0); err != nil {
		return err
	}
	if ds.Queries, err = readVectors(ds.QueryPath, nq); err != nil {
		return err
	}
	if ds.Truth, err = readIvecs(ds.TruthPath, nq); err != nil {
		return err
	}
	switch {
	case ds.Queries.Dim != ds.Base.Dim:
		return fmt.Errorf("queries have dimension %d, base vectors %d", ds.Queries.Dim, ds.Base.Dim)
	case ds.Truth.Len() < ds.Queries.Len():
		return fmt.Errorf("ground truth has %d rows for %d queries", ds.Truth.Len(), ds.Queries.Len())
	}
	ds.Truth.Data = ds.Truth.Data[:ds.Queries.Len()*ds.Truth.Dim]
	for _, id := range ds.Truth.Data {
		if id < 0 || int(id) >= ds.Base.Len() {
			return fmt.Errorf("ground truth ID %d outside the %d base vectors", id, ds.Base.Len())
		}
	}
	return nil
}

// generate returns s.N base vectors and s.NQ queries from one
// distribution. Base and queries come from separate PRNG streams, so the
// base set does not depend on the number of queries.
//
// uniform: every component uniform in [0, 1). In high dimensions this is
// the hardest case for a graph index (no structure, every distance alike).
//
// clustered: Gaussian blobs with random centres, closer to real
// embeddings. Each blob has its own spread per axis, falling off as
// rank^-spectrumPower over a random permutation of the axes, so a blob is
// a flattened ellipsoid (real embeddings have most of their variance in a
// few directions) and the blobs together still span every axis. Centres
// are spread about as far apart as a blob is wide, so blobs overlap and
// near neighbours can lie in another blob.
func generate(s synthSpec) (base, queries Vectors) {
	shape := rand.New(rand.NewPCG(s.Seed, 0x5eed0001))
	var blobs []blob
	if s.Kind == kindClustered {
		blobs = makeBlobs(shape, s)
	}
	draw := func(stream uint64, n int) Vectors {
		r := rand.New(rand.NewPCG(s.Seed, stream))
		v := Vectors{Dim: s.Dim, Data: make([]float32, n*s.Dim)}
		for i := range n {
			x := v.At(i)
			if blobs == nil {
				for j := range x {
					x[j] = r.Float32()
				}
				continue
			}
			b := &blobs[r.IntN(len(blobs))]
			for j := range x {
				x[j] = b.centre[j] + b.sigma[j]*float32(r.NormFloat64())
			}
		}
		return v
	}
	return draw(0x5eed0002, s.N), draw(0x5eed0003, s.NQ)
}

type blob struct {
	centre, sigma []float32
}

// spectrumPower sets how fast a blob's spread falls off over its axes.
// At 0.3 and dim 128 the variance is spread over about 65 effective
// dimensions (participation ratio); HNSW at M 16 then needs ef 20 to 80
// for recall@10 0.95 at 20k to 100k vectors, as on SIFT1M. At 0.5 nearly
// every engine reaches 0.95 at ef 10, which compares nothing.
const spectrumPower = 0.3

// makeBlobs returns about sqrt(N) blobs (8 to 1024).
func makeBlobs(r *rand.Rand, s synthSpec) []blob {
	nb := min(max(int(math.Sqrt(float64(s.N))), 8), 1024)
	// A blob's squared radius is sum(sigma²) = spread² * h; centres at
	// per-axis deviation c are sqrt(2*Dim)*c apart. Choosing
	// c = spread*sqrt(h/Dim) puts centres about 1.4 blob radii apart.
	const spread = 1.0
	h := 0.0
	for j := 1; j <= s.Dim; j++ {
		h += math.Pow(float64(j), -2*spectrumPower)
	}
	c := spread * math.Sqrt(h/float64(s.Dim))
	blobs := make([]blob, nb)
	for b := range blobs {
		centre := make([]float32, s.Dim)
		for j := range centre {
			centre[j] = float32(c * r.NormFloat64())
		}
		sigma := make([]float32, s.Dim)
		for rank, axis := range r.Perm(s.Dim) {
			sigma[axis] = float32(spread * math.Pow(float64(rank+1), -spectrumPower))
		}
		blobs[b] = blob{centre, sigma}
	}
	return blobs
}

// groundTruth returns, per query, the IDs of the depth nearest base
// vectors under metric, nearest first, ties by lower ID. Queries are
// spread over every core.
func groundTruth(base, queries Vectors, metric string, depth int) IntVectors {
	depth = min(depth, base.Len())
	out := IntVectors{Dim: depth, Data: make([]int32, queries.Len()*depth)}
	if depth == 0 {
		return out
	}
	// Cosine ranks by 1 - cos: normalize both sides once, then it is -dot.
	if metric == metricCosine {
		base, queries = normalized(base), normalized(queries)
	}
	dist := distL2
	if metric != metricL2 {
		dist = negDot
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := make(neighbourHeap, 0, depth+1)
			for {
				qi := int(next.Add(1) - 1)
				if qi >= queries.Len() {
					return
				}
				q := queries.At(qi)
				h = h[:0]
				for id := range base.Len() {
					d := dist(q, base.At(id))
					if len(h) < depth {
						heap.Push(&h, neighbour{d, int32(id)})
					} else if d < h[0].dist {
						// Equal distances keep the lower ID, which came first.
						h[0] = neighbour{d, int32(id)}
						heap.Fix(&h, 0)
					}
				}
				row := out.At(qi)
				for i := len(h) - 1; i >= 0; i-- {
					row[i] = heap.Pop(&h).(neighbour).id
				}
			}
		}()
	}
	wg.Wait()
	return out
}

type neighbour struct {
	dist float32
	id   int32
}

// neighbourHeap is a max-heap: the farthest kept neighbour on top, and of
// equal distances the higher ID, so the lower ones survive.
type neighbourHeap []neighbour

func (h neighbourHeap) Len() int { return len(h) }
func (h neighbourHeap) Less(i, j int) bool {
	if h[i].dist != h[j].dist {
		return h[i].dist > h[j].dist
	}
	return h[i].id > h[j].id
}
func (h neighbourHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *neighbourHeap) Push(x any)   { *h = append(*h, x.(neighbour)) }
func (h *neighbourHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// normalized returns a unit-length copy of v (zero vectors stay zero).
func normalized(v Vectors) Vectors {
	out := Vectors{Dim: v.Dim, Data: make([]float32, len(v.Data))}
	for i := range v.Len() {
		x, y := v.At(i), out.At(i)
		n := math.Sqrt(float64(-negDot(x, x)))
		if n == 0 {
			continue
		}
		for j := range x {
			y[j] = float32(float64(x[j]) / n)
		}
	}
	return out
}

// distL2 is the squared Euclidean distance.
func distL2(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		d0, d1, d2, d3 := a[i]-b[i], a[i+1]-b[i+1], a[i+2]-b[i+2], a[i+3]-b[i+3]
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(a); i++ {
		d := a[i] - b[i]
		s0 += d * d
	}
	return (s0 + s1) + (s2 + s3)
}

// negDot is the negated inner product, so that smaller is nearer.
func negDot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return -((s0 + s1) + (s2 + s3))
}

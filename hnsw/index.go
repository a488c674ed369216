package hnsw

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/plures/pluresdb/internal/errs"
)

// Metric is how two vectors are compared. Smaller distances are nearer for
// every metric.
type Metric int

const (
	// L2 is the squared Euclidean distance.
	L2 Metric = iota
	// Cosine is 1 - cos(a, b); vectors are normalized once, at insert.
	Cosine
	// Dot is the negated inner product, so that larger products are nearer.
	Dot
)

func (m Metric) String() string {
	switch m {
	case L2:
		return "L2"
	case Cosine:
		return "Cosine"
	case Dot:
		return "Dot"
	}
	return fmt.Sprintf("Metric(%d)", int(m))
}

// Limits on Config. They also bound what Unmarshal allocates.
const (
	MaxDim            = 1 << 16
	MaxM              = 100
	MaxEfConstruction = 1 << 16
	// maxLevel caps the random level; with M >= 2 a level above it has
	// probability below 1e-7 per node.
	maxLevel = 24
)

// Defaults for zero Config fields.
const (
	DefaultM              = 16
	DefaultEfConstruction = 200
	// defaultEf is the search beam when SearchOptions.Ef is 0 (raised to k).
	defaultEf = 64
)

// Config describes an index. Dim and Metric are fixed for its life.
type Config struct {
	Dim    int    // vector length; required, 1..MaxDim
	Metric Metric // L2 (default), Cosine or Dot
	// M is the number of links per node on the upper layers (layer 0 keeps
	// 2*M); 0: DefaultM. Larger M: better recall, more memory, slower
	// inserts. 2..MaxM.
	M int
	// EfConstruction is the beam width used while inserting; 0:
	// DefaultEfConstruction. Larger: better graph, slower inserts.
	EfConstruction int
}

// withDefaults fills zero fields and validates the result.
func (c Config) withDefaults() (Config, error) {
	if c.M == 0 {
		c.M = DefaultM
	}
	if c.EfConstruction == 0 {
		c.EfConstruction = DefaultEfConstruction
	}
	switch {
	case c.Dim <= 0 || c.Dim > MaxDim:
		return c, fmt.Errorf("hnsw: Dim %d out of range 1..%d", c.Dim, MaxDim)
	case c.Metric < L2 || c.Metric > Dot:
		return c, fmt.Errorf("hnsw: unknown metric %d", int(c.Metric))
	case c.M < 2 || c.M > MaxM:
		return c, fmt.Errorf("hnsw: M %d out of range 2..%d", c.M, MaxM)
	case c.EfConstruction < 1 || c.EfConstruction > MaxEfConstruction:
		return c, fmt.Errorf("hnsw: EfConstruction %d out of range 1..%d", c.EfConstruction, MaxEfConstruction)
	}
	return c, nil
}

// SearchOptions tune one search; nil means defaults.
type SearchOptions struct {
	// Ef is the beam width: the number of candidates kept while walking
	// layer 0. 0: max(k, 64). Raised to k when smaller. Larger: better
	// recall, slower.
	Ef int
	// Filter, when not nil, restricts results to these internal IDs (see
	// Index.ID). The bitmap is only read; it must not change during the
	// search. Small allowed sets are searched exactly (see doc.go).
	Filter *roaring.Bitmap
}

// Hit is one search result.
type Hit struct {
	Key      []byte
	Distance float32
}

// ErrNotFound: the key is not in the index (never added, or deleted). It
// also matches the engine's errs.ErrNotFound under errors.Is.
var ErrNotFound = fmt.Errorf("hnsw: key %w", errs.ErrNotFound)

// noEntry marks the empty graph in Index.entry.
const noEntry = 0

// Index is an in-memory HNSW graph.
//
// Concurrency: all methods are safe from several goroutines. Writers (Add,
// Delete) are serialized by writeMu; searches run in parallel with each
// other and with the one writer. A node's vector, level and key are written
// before the node is linked, so a search reaches only complete nodes; link
// lists are read and written under a striped RWMutex (linkLocks, by node
// ID; nobody holds two stripes at once). grow replaces the flat arrays
// under mu, which every search holds for reading; only the writer writes
// those slice headers, so the writer reads them without mu. Tombstones are
// atomic, and (entry point, top level) is one atomic word.
type Index struct {
	cfg Config
	m0  int // layer-0 link capacity, 2*M
	// graphMetric compares stored vectors while building the graph. It is
	// the index metric except for Dot: the negated inner product is not a
	// distance (a vector is often not its own nearest neighbour), and a
	// graph built on it links everything to a few long vectors and falls
	// apart. For Dot the graph is built on L2 over vectors augmented with
	// one coordinate (see augCoord), the reduction of maximum inner product
	// to nearest neighbour search (Bachrach et al., 2014); searching that
	// space from an augmented query is exactly searching by -dot.
	graphMetric Metric
	sqNorms     []float32 // Dot only: |v|² per node; writer only
	maxSqNorm   float32   // Dot only: the largest sqNorms; writer only
	mult        float64   // level multiplier, 1/ln(M)

	writeMu sync.Mutex
	mu      sync.RWMutex

	// Per node, indexed by internal ID, grown by doubling.
	vecs    []float32  // Dim floats per node
	levels  []uint8    // top layer of the node
	links0  []uint32   // (1+m0) words per node: count, then IDs
	upper   [][]uint32 // level*(1+M) words: layers 1..level, count then IDs; nil at level 0
	deleted []uint32   // 1: tombstone; accessed atomically
	keys    [][]byte

	count     uint32        // node slots in use; writer only
	published atomic.Uint32 // nodes below it are fully inserted
	live      atomic.Int64  // nodes not deleted
	entry     atomic.Uint64 // (top level + 1) << 32 | entry ID; 0: empty

	keyMu sync.RWMutex
	ids   map[string]uint32 // live key -> ID

	rng       *rand.Rand // writer only
	linkLocks [linkStripes]sync.RWMutex
	scratch   sync.Pool // *searcher
}

const linkStripes = 1024

// New returns an empty index.
func New(cfg Config) (*Index, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return newIndex(cfg), nil
}

func newIndex(cfg Config) *Index {
	x := &Index{
		cfg:         cfg,
		m0:          2 * cfg.M,
		graphMetric: cfg.Metric,
		mult:        1 / math.Log(float64(cfg.M)),
		ids:         make(map[string]uint32),
		// A fixed seed keeps builds reproducible.
		rng: rand.New(rand.NewPCG(0x9e3779b97f4a7c15, uint64(cfg.M))),
	}
	if cfg.Metric == Dot {
		x.graphMetric = L2
	}
	x.scratch.New = func() any { return new(searcher) }
	return x
}

// Config returns the index's configuration with defaults filled in.
func (x *Index) Config() Config { return x.cfg }

// Len returns the number of live (not deleted) vectors.
func (x *Index) Len() int { return int(x.live.Load()) }

// ID returns the internal ID of a live key, for building search filters.
// Replacing a key's vector gives it a new ID.
func (x *Index) ID(key []byte) (uint32, bool) {
	x.keyMu.RLock()
	id, ok := x.ids[string(key)]
	x.keyMu.RUnlock()
	return id, ok
}

// Add inserts key with vector vec, or replaces the vector of an existing
// key. vec is copied. A replaced key gets a new internal ID; its old node
// stays in the graph as a tombstone (until a rebuild).
func (x *Index) Add(key []byte, vec []float32) error {
	if len(key) == 0 {
		return fmt.Errorf("hnsw: %w: empty key", errs.ErrInvalidKey)
	}
	if len(vec) != x.cfg.Dim {
		return fmt.Errorf("hnsw: vector has %d dimensions, index has %d", len(vec), x.cfg.Dim)
	}
	if !finite(vec) {
		return fmt.Errorf("hnsw: vector holds NaN or infinity")
	}
	switch sq := dot(vec, vec); {
	case math.IsInf(float64(sq), 0):
		// Distances to it would overflow to Inf and order nothing.
		return fmt.Errorf("hnsw: vector norm overflows float32")
	case sq == 0 && x.cfg.Metric == Cosine:
		return fmt.Errorf("hnsw: zero vector has no cosine direction")
	}

	x.writeMu.Lock()
	defer x.writeMu.Unlock()
	if x.count == math.MaxUint32 {
		return fmt.Errorf("hnsw: index full")
	}
	if x.count == uint32(len(x.levels)) {
		x.grow()
	}
	id := x.count
	v := x.vec(id)
	copy(v, vec)
	if x.cfg.Metric == Cosine && !normalize(v) {
		return fmt.Errorf("hnsw: vector cannot be normalized")
	}
	if x.cfg.Metric == Dot {
		x.sqNorms[id] = dot(v, v)
		x.maxSqNorm = max(x.maxSqNorm, x.sqNorms[id])
	}
	level := x.randomLevel()
	x.levels[id] = uint8(level)
	x.keys[id] = append([]byte(nil), key...)
	x.links0[int(id)*(1+x.m0)] = 0
	if level > 0 {
		x.upper[id] = make([]uint32, level*(1+x.cfg.M))
	}
	x.count++

	// A replaced node is buried before its successor is linked, so no
	// search returns the key twice (one may briefly miss it instead).
	x.keyMu.RLock()
	old, replaced := x.ids[string(key)]
	x.keyMu.RUnlock()
	if replaced {
		atomic.StoreUint32(&x.deleted[old], 1)
	}
	x.insert(id, level)
	x.published.Store(x.count)
	x.keyMu.Lock()
	x.ids[string(key)] = id
	x.keyMu.Unlock()
	if !replaced {
		x.live.Add(1)
	}
	return nil
}

// Delete removes key: its node becomes a tombstone that searches walk
// through but never return.
func (x *Index) Delete(key []byte) error {
	x.writeMu.Lock()
	defer x.writeMu.Unlock()
	x.keyMu.Lock()
	id, ok := x.ids[string(key)]
	if ok {
		delete(x.ids, string(key))
	}
	x.keyMu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	atomic.StoreUint32(&x.deleted[id], 1)
	x.live.Add(-1)
	return nil
}

// grow doubles the per-node arrays. Writer only.
func (x *Index) grow() {
	n := max(2*len(x.levels), 1024)
	x.mu.Lock()
	defer x.mu.Unlock()
	x.vecs = append(make([]float32, 0, n*x.cfg.Dim), x.vecs...)[:n*x.cfg.Dim]
	x.levels = append(make([]uint8, 0, n), x.levels...)[:n]
	x.links0 = append(make([]uint32, 0, n*(1+x.m0)), x.links0...)[:n*(1+x.m0)]
	x.upper = append(make([][]uint32, 0, n), x.upper...)[:n]
	x.deleted = append(make([]uint32, 0, n), x.deleted...)[:n]
	x.keys = append(make([][]byte, 0, n), x.keys...)[:n]
	if x.cfg.Metric == Dot {
		x.sqNorms = append(make([]float32, 0, n), x.sqNorms...)[:n]
	}
}

func (x *Index) randomLevel() int {
	l := int(-math.Log(1-x.rng.Float64()) * x.mult)
	return min(l, maxLevel)
}

func (x *Index) vec(id uint32) []float32 {
	d := x.cfg.Dim
	return x.vecs[int(id)*d : int(id)*d+d : int(id)*d+d]
}

// linkList returns the link words (count, then capacity IDs) of id at layer.
// Callers hold id's stripe, or are the writer reading.
func (x *Index) linkList(id uint32, layer int) []uint32 {
	if layer == 0 {
		o := int(id) * (1 + x.m0)
		return x.links0[o : o+1+x.m0]
	}
	o := (layer - 1) * (1 + x.cfg.M)
	return x.upper[id][o : o+1+x.cfg.M]
}

func (x *Index) maxLinks(layer int) int {
	if layer == 0 {
		return x.m0
	}
	return x.cfg.M
}

func (x *Index) stripe(id uint32) *sync.RWMutex { return &x.linkLocks[id%linkStripes] }

// loadEntry returns the entry point and the top layer; ok is false for an
// empty graph.
func (x *Index) loadEntry() (id uint32, top int, ok bool) {
	e := x.entry.Load()
	if e == noEntry {
		return 0, 0, false
	}
	return uint32(e), int(e>>32) - 1, true
}

func (x *Index) storeEntry(id uint32, top int) {
	x.entry.Store(uint64(top+1)<<32 | uint64(id))
}

func (x *Index) isDeleted(id uint32) bool { return atomic.LoadUint32(&x.deleted[id]) != 0 }

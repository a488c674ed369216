package hnsw

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cespare/xxhash/v2"
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
	// DefaultTombstoneRatio is the share of tombstones among all nodes
	// above which a background repair starts.
	DefaultTombstoneRatio = 0.1
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
	// TombstoneRatio: once tombstones (deleted and replaced vectors) exceed
	// this fraction of all nodes, Delete and Add start a background Repair;
	// 0: DefaultTombstoneRatio; negative: only explicit Repair calls.
	// Lower: less memory and search time spent on the dead, more repairs
	// (each pauses writers, not searches). At most 1.
	TombstoneRatio float64
}

// withDefaults fills zero fields and validates the result.
func (c Config) withDefaults() (Config, error) {
	if c.M == 0 {
		c.M = DefaultM
	}
	if c.EfConstruction == 0 {
		c.EfConstruction = DefaultEfConstruction
	}
	if c.TombstoneRatio == 0 {
		c.TombstoneRatio = DefaultTombstoneRatio
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
	case !(c.TombstoneRatio <= 1) || math.IsInf(c.TombstoneRatio, 0): // also NaN
		return c, fmt.Errorf("hnsw: TombstoneRatio %v above 1", c.TombstoneRatio)
	}
	return c, nil
}

// SearchOptions tune one search; nil means defaults.
type SearchOptions struct {
	// Ef is the beam width: the number of candidates kept while walking
	// layer 0. 0: max(k, 64). Raised to k when smaller. Larger: better
	// recall, slower.
	Ef int
	// Keys, when not nil, restricts results to keys in the set: the
	// stable form of a filter, right across deletes, replaces, repairs,
	// rebuilds and reopens, since each node's own key is checked (or each
	// key looked up) during the search. See KeySet.
	Keys KeySet
	// Filter, when not nil, restricts results to these internal IDs (see
	// Index.ID). Unstable: an ID names a key only until the next write to
	// the index (a replaced key gets a new ID, and a Repair hands the IDs
	// of deleted keys to new ones), so a bitmap built before a write may
	// select unrelated keys; use Keys. The bitmap is only read; it must
	// not change during the search.
	Filter *roaring.Bitmap
	// Allow, when not nil, restricts results to keys it returns true for.
	// It is called from the searching goroutine, possibly many times per
	// search (on every node the walk meets), and must not modify or keep
	// key. A set of keys known up front is better given as Keys: its size
	// is known, so the search can plan.
	//
	// Keys, Filter and Allow combine: a result passes every one given.
	// Small allowed sets are searched exactly (see doc.go).
	Allow func(key []byte) bool
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

// Node states, in Index.state.
const (
	// stateFree: a slot on the free list, or one being filled by Add. No
	// link points at it, so only an exact filtered scan can meet it.
	stateFree uint32 = iota
	stateLive
	// stateDead: a tombstone, walked through but never returned, until a
	// Repair unlinks it and frees the slot.
	stateDead
)

// Index is an in-memory HNSW graph.
//
// Concurrency: all methods are safe from several goroutines, and Adds from
// several goroutines run in parallel (hnswlib's scheme):
//
//   - writeMu: Add and Delete hold it shared; Repair and MarshalBinary
//     hold it exclusively, so they see no half-inserted node.
//   - keyLocks (striped by key hash) serialize Add and Delete of one key.
//   - allocMu guards ID allocation (count, free, rng); it is held for a
//     few instructions, plus grow.
//   - mu guards the slice headers of the per-node arrays: grow and the
//     end of Repair (freeing IDs) hold it exclusively; searches and
//     inserts hold it shared for their whole run.
//   - entryMu serializes entry point changes. An insert whose level tops
//     the graph holds it for its whole run (rare: log_M(n) times).
//   - A node's link lists are written under its linkLocks stripe (nobody
//     holds two stripes) with atomic stores, and read with atomic loads
//     and no lock: a reader may see a list half rewritten, which is a
//     mix of valid IDs, as in hnswlib. A node's vector, key and level are
//     written before its ID is first stored in a list, so whoever loads
//     that ID sees them.
//   - state, entry, live, dead and maxSqNorm are atomics.
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
	sqNorms     []float32     // Dot only: |v|² per node
	maxSqNorm   atomic.Uint32 // Dot only: float32 bits of the largest sqNorms; only grows
	mult        float64       // level multiplier, 1/ln(M)

	writeMu sync.RWMutex
	allocMu sync.Mutex
	mu      sync.RWMutex
	entryMu sync.Mutex

	// Per node, indexed by internal ID, grown by doubling.
	vecs   []float32  // Dim floats per node
	levels []uint8    // top layer of the node
	links0 []uint32   // (1+m0) words per node: count, then IDs
	upper  [][]uint32 // level*(1+M) words: layers 1..level, count then IDs; nil at level 0
	state  []uint32   // stateFree, stateLive or stateDead; atomic
	keys   [][]byte   // never written in place: a new node gets a new slice

	count uint32     // slots handed out; allocMu
	free  []uint32   // IDs freed by Repair, reused first; allocMu
	rng   *rand.Rand // allocMu
	live  atomic.Int64
	dead  atomic.Int64  // tombstones not yet freed
	entry atomic.Uint64 // (top level + 1) << 32 | entry ID; 0: empty

	keyMu    sync.RWMutex
	ids      map[string]uint32 // live key -> ID
	keyLocks [keyStripes]sync.Mutex

	linkLocks [linkStripes]sync.Mutex
	scratch   sync.Pool // *searcher

	repairing atomic.Bool // a background repair is running or starting
	bgMu      sync.Mutex  // orders closed and bg.Add against Close
	closed    bool        // bgMu
	bg        sync.WaitGroup
}

const (
	linkStripes = 4096
	keyStripes  = 256
)

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
		// A fixed seed keeps serial builds reproducible.
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

// Tombstones returns the number of deleted or replaced vectors still in
// the graph, waiting for a Repair.
func (x *Index) Tombstones() int { return int(x.dead.Load()) }

// ID returns the internal ID of a live key, for SearchOptions.Filter. It
// is valid only until the next write to the index: replacing a key's
// vector gives it a new ID, and Repair hands the IDs of deleted keys to
// new ones. Filter by SearchOptions.Keys instead.
func (x *Index) ID(key []byte) (uint32, bool) {
	x.keyMu.RLock()
	id, ok := x.ids[string(key)]
	x.keyMu.RUnlock()
	return id, ok
}

// Close waits for a running background repair (and the one it owes to
// writers that passed the threshold while it ran) and starts no more; the
// index stays usable, with Repair called explicitly.
func (x *Index) Close() error {
	x.bgMu.Lock()
	x.closed = true
	x.bgMu.Unlock()
	x.bg.Wait()
	return nil
}

// Add inserts key with vector vec, or replaces the vector of an existing
// key. vec is copied. A replaced key gets a new internal ID; its old node
// stays in the graph as a tombstone until a Repair. Adds from several
// goroutines run in parallel.
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
	x.writeMu.RLock()
	err := x.add(key, vec, x.cfg.Metric == Cosine)
	x.writeMu.RUnlock()
	x.maybeRepair()
	return err
}

// AddBatch adds keys[i] with vecs[i] from workers goroutines (<= 0:
// GOMAXPROCS), and returns the first error. It is Add in parallel; the
// insertion order, and so the graph, varies from run to run.
func (x *Index) AddBatch(keys [][]byte, vecs [][]float32, workers int) error {
	if len(keys) != len(vecs) {
		return fmt.Errorf("hnsw: AddBatch of %d keys and %d vectors", len(keys), len(vecs))
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(keys))
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				// Small chunks keep the workers' inserts close in order.
				const chunk = 16
				i := int(next.Add(chunk)) - chunk
				if i >= len(keys) {
					return
				}
				for j := i; j < min(i+chunk, len(keys)); j++ {
					if err := x.Add(keys[j], vecs[j]); err != nil {
						errOnce.Do(func() { firstErr = fmt.Errorf("hnsw: AddBatch item %d: %w", j, err) })
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// add inserts a validated vector; the caller holds writeMu shared.
func (x *Index) add(key []byte, vec []float32, normalizeVec bool) error {
	kl := &x.keyLocks[xxhash.Sum64(key)%keyStripes]
	kl.Lock()
	defer kl.Unlock()
	id, level, err := x.alloc()
	if err != nil {
		return err
	}
	x.mu.RLock()
	v := x.vec(id)
	copy(v, vec)
	if normalizeVec && !normalize(v) {
		// Not reached after Add's checks. Release after RUnlock: alloc
		// may hold allocMu while it waits for mu.
		x.mu.RUnlock()
		x.release(id)
		return fmt.Errorf("hnsw: vector cannot be normalized")
	}
	defer x.mu.RUnlock()
	if x.cfg.Metric == Dot {
		sq := dot(v, v)
		x.sqNorms[id] = sq
		for {
			old := x.maxSqNorm.Load()
			if sq <= math.Float32frombits(old) || x.maxSqNorm.CompareAndSwap(old, math.Float32bits(sq)) {
				break
			}
		}
	}
	x.levels[id] = uint8(level)
	x.keys[id] = append([]byte(nil), key...)
	if level > 0 {
		x.upper[id] = make([]uint32, level*(1+x.cfg.M))
	}

	// A replaced node is buried before its successor goes live, so no
	// search returns the key twice (one may briefly miss it instead).
	x.keyMu.RLock()
	old, replaced := x.ids[string(key)]
	x.keyMu.RUnlock()
	if replaced {
		atomic.StoreUint32(&x.state[old], stateDead)
		x.dead.Add(1)
	}
	atomic.StoreUint32(&x.state[id], stateLive)
	x.insert(id, level)
	x.keyMu.Lock()
	x.ids[string(key)] = id
	x.keyMu.Unlock()
	if !replaced {
		x.live.Add(1)
	}
	return nil
}

// alloc hands out a node ID (a freed one first) and draws its level.
func (x *Index) alloc() (uint32, int, error) {
	x.allocMu.Lock()
	defer x.allocMu.Unlock()
	level := min(int(-math.Log(1-x.rng.Float64())*x.mult), maxLevel)
	if n := len(x.free); n > 0 {
		id := x.free[n-1]
		x.free = x.free[:n-1]
		return id, level, nil
	}
	if x.count == math.MaxUint32 {
		return 0, 0, fmt.Errorf("hnsw: index full")
	}
	if x.count == uint32(len(x.levels)) {
		x.grow()
	}
	x.count++
	return x.count - 1, level, nil
}

// release returns an allocated ID that was never linked (nor given a key
// or upper layers). The caller must not hold mu.
func (x *Index) release(id uint32) {
	x.allocMu.Lock()
	x.free = append(x.free, id)
	x.allocMu.Unlock()
}

// Delete removes key: its node becomes a tombstone that searches walk
// through but never return, until a Repair.
func (x *Index) Delete(key []byte) error {
	x.writeMu.RLock()
	err := x.delete(key)
	x.writeMu.RUnlock()
	x.maybeRepair()
	return err
}

func (x *Index) delete(key []byte) error {
	kl := &x.keyLocks[xxhash.Sum64(key)%keyStripes]
	kl.Lock()
	defer kl.Unlock()
	x.keyMu.Lock()
	id, ok := x.ids[string(key)]
	if ok {
		delete(x.ids, string(key))
	}
	x.keyMu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	x.mu.RLock()
	atomic.StoreUint32(&x.state[id], stateDead)
	x.mu.RUnlock()
	x.dead.Add(1)
	x.live.Add(-1)
	return nil
}

// grow doubles the per-node arrays. Caller holds allocMu.
func (x *Index) grow() {
	n := max(2*len(x.levels), 1024)
	x.mu.Lock()
	defer x.mu.Unlock()
	x.vecs = append(make([]float32, 0, n*x.cfg.Dim), x.vecs...)[:n*x.cfg.Dim]
	x.levels = append(make([]uint8, 0, n), x.levels...)[:n]
	x.links0 = append(make([]uint32, 0, n*(1+x.m0)), x.links0...)[:n*(1+x.m0)]
	x.upper = append(make([][]uint32, 0, n), x.upper...)[:n]
	// Every state access holds mu shared, so a plain copy is safe.
	x.state = append(make([]uint32, 0, n), x.state...)[:n]
	x.keys = append(make([][]byte, 0, n), x.keys...)[:n]
	if x.cfg.Metric == Dot {
		x.sqNorms = append(make([]float32, 0, n), x.sqNorms...)[:n]
	}
}

func (x *Index) vec(id uint32) []float32 {
	d := x.cfg.Dim
	return x.vecs[int(id)*d : int(id)*d+d : int(id)*d+d]
}

// linkList returns the link words (count, then capacity IDs) of id at
// layer. Read them with loadLinks or under id's stripe.
func (x *Index) linkList(id uint32, layer int) []uint32 {
	if layer == 0 {
		o := int(id) * (1 + x.m0)
		return x.links0[o : o+1+x.m0 : o+1+x.m0]
	}
	o := (layer - 1) * (1 + x.cfg.M)
	return x.upper[id][o : o+1+x.cfg.M : o+1+x.cfg.M]
}

// linkCount loads the count word of a list, clamped to its capacity (a
// torn read never indexes out of it).
func linkCount(l []uint32) int {
	return min(int(atomic.LoadUint32(&l[0])), len(l)-1)
}

// storeLinks writes ids into list l. Caller holds the owner's stripe.
func storeLinks(l []uint32, ids []uint32) {
	for i, id := range ids {
		atomic.StoreUint32(&l[1+i], id)
	}
	atomic.StoreUint32(&l[0], uint32(len(ids)))
}

func (x *Index) maxLinks(layer int) int {
	if layer == 0 {
		return x.m0
	}
	return x.cfg.M
}

func (x *Index) stripe(id uint32) *sync.Mutex { return &x.linkLocks[id%linkStripes] }

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

func (x *Index) isLive(id uint32) bool { return atomic.LoadUint32(&x.state[id]) == stateLive }

package pluresdb

// Vector indexes (DESIGN.md §11 "Vectors"): each named index is an
// in-memory hnsw graph whose truth lives in the LSM, in namespace
// nsVector, written through the ordinary batch path, so an acknowledged
// Add is in the WAL and synced exactly like a Put.
//
// Keys (after the namespace byte 0x03; name is 1..64 bytes of
// [A-Za-z0-9_.-]):
//
//	+-------------+------+-----+--------------------+
//	| len(name) u8| name | tag | ...                |
//	+-------------+------+-----+--------------------+
//	tag 'c'                          -> config
//	tag 'l' | change u64 big-endian  -> change log entry: flag u8 (1 add, 2 delete) | user key
//	tag 's'                          -> checkpoint
//	tag 'v' | user key               -> change u64 | dim × f32 (the vector as given to Add)
//
// Values, integers little-endian:
//
//	config     (36 bytes): version u32 | dim u32 | metric u32 | M u32 | efC u32 | tombstone ratio f64 | xxhash64 of the 28 bytes before
//	checkpoint (52 bytes): version u32 | file u64 | change u64 | trimmed u64 | size u64 | file xxhash64 | xxhash64 of the 44 bytes before
//
// The 'v' records are the truth; the graph is a projection of them. Every
// write gets the next change number of its index (no gaps) and commits, in
// one batch, its 'v' record (or its deletion) and its 'l' entry; only then
// is it applied to the graph. Writes of one key apply in change-number
// order; writes of different keys apply concurrently.
//
// A checkpoint is the graph encoded by hnsw.MarshalBinary (it has its own
// magic, version and checksum) in a file NNNNNN.hnsw of the database
// directory: written to a temp file, synced, renamed, the directory
// synced; then the 's' record is committed (synced) pointing at it with
// the change number it includes, the file's size and xxhash64; then the
// 'l' entries up to that change are deleted and the previous checkpoint
// file removed. 'trimmed' is the change through which the log was known
// deleted when the record was written: a crash during the deletions leaves
// entries in (trimmed, change], which the next checkpoint deletes again.
// Checkpoints run in the background once the changes since the last pass
// max(10000, Len/4), and on Close.
//
// Opening an index loads the checkpoint (no recomputation) and replays the
// change log after it: for each entry, the key's 'v' record says the
// outcome (present with that change: add; absent: delete; present with a
// later change: a later entry handles it). Without a usable checkpoint (none
// yet, damaged, or missing) the graph is rebuilt from the 'v' records; a
// projection never fails the open. At DB open, .hnsw files that no 's'
// record references (a crash between rename and commit, or before the old
// file's removal) are removed.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/hnsw"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
)

// Tags, flags and record versions below are part of the on-disk format.
const (
	vecTagConfig     byte = 'c'
	vecTagLog        byte = 'l'
	vecTagCheckpoint byte = 's'
	vecTagVector     byte = 'v'

	vecLogAdd    byte = 1
	vecLogDelete byte = 2

	vecConfigVersion     = 1
	vecConfigLen         = 5*4 + 8 + 8
	vecCheckpointVersion = 1
	vecCheckpointLen     = 4 + 6*8

	maxVectorIndexName = 64

	// defaultCheckpointEvery is the least number of changes between two
	// background checkpoints; a quarter of the index is the other bound,
	// so rewriting the graph stays a fraction of the work that fed it.
	defaultCheckpointEvery = 10000
	// vecTrimBatch bounds the change-log deletions of one batch (a batch
	// must fit in half a memtable).
	vecTrimBatch = 1000
	// checkpointRetryAfter spaces background attempts after a failure (a
	// full disk, say), so writers do not start one per Add.
	checkpointRetryAfter = 10 * time.Second
)

// vectorSet holds the open vector indexes of a DB.
//
// Concurrency: openMu serializes opening indexes (so one name loads once);
// mu guards indexes, closing and the accounting of background checkpoints
// in wg. Neither is held while an index writes.
type vectorSet struct {
	openMu  sync.Mutex
	mu      sync.Mutex
	indexes map[string]*VectorIndex
	closing bool
	wg      sync.WaitGroup // background checkpoints
}

// close checkpoints and releases every open vector index. Called by Close
// while the database is still writable.
func (vs *vectorSet) close(db *DB) error {
	vs.mu.Lock()
	vs.closing = true
	list := make([]*VectorIndex, 0, len(vs.indexes))
	for _, vi := range vs.indexes {
		list = append(list, vi)
	}
	vs.mu.Unlock()
	vs.wg.Wait()
	var first error
	for _, vi := range list {
		// Stop the graph's background repairs first; the checkpoint would
		// wait for a running one anyway.
		_ = vi.g.Close()
		if err := vi.checkpoint(); err != nil && first == nil {
			first = fmt.Errorf("pluresdb: checkpointing vector index %q: %w", vi.name, err)
		}
	}
	return first
}

// VectorIndex is a named, persistent HNSW index of the database: Add and
// Delete are durable when they return (as Put is), and Search sees every
// write that has returned.
//
// Concurrency: all methods are safe from several goroutines. Searches run
// in parallel with each other and with writes. A write holds its key's
// stripe lock from numbering to graph insert, so writes of one key apply
// in order; it holds mu only to number and append its batch (the fsync
// comes after, shared with concurrent writers), then inserts into the
// graph alongside writes of other keys (hnsw inserts in parallel). Every
// write holds applyRW shared; a checkpoint (ckMu) takes it exclusively
// while it encodes the graph, so the graph then holds exactly the changes
// numbered so far: writers wait that long (a memory copy), searches not
// at all.
type VectorIndex struct {
	db   *DB
	name string
	pfx  []byte // len(name) | name: the keys' prefix after the namespace byte
	cfg  hnsw.Config
	g    *hnsw.Index

	mu    sync.Mutex
	last  uint64 // last change number committed; guarded by mu
	batch *Batch // guarded by mu
	kbuf  []byte // guarded by mu
	lbuf  []byte // guarded by mu
	vbuf  []byte // guarded by mu

	applyRW sync.RWMutex              // writes shared, a checkpoint's encoding exclusive
	keyMu   [vecKeyStripes]sync.Mutex // per-key order of writes

	ckMu    sync.Mutex
	ck      vecCheckpoint // the current checkpoint (change 0: none usable); guarded by ckMu
	trimmed uint64        // change log deleted through here; guarded by ckMu

	ckChange  atomic.Uint64 // ck.change, for writers deciding on a checkpoint
	ckRunning atomic.Bool
	ckFailed  atomic.Int64 // time of the last failed background checkpoint, UnixNano
	ckEvery   atomic.Int64 // least changes between background checkpoints

	// How the graph was loaded; for tests and logs.
	loadedCheckpoint bool
	rebuilt          int // vectors inserted from 'v' records at open
	replayed         int // change-log entries replayed at open
}

// vecCheckpoint is the value of an 's' record.
type vecCheckpoint struct {
	file    layout.FileNum
	change  uint64
	trimmed uint64
	size    uint64
	sum     uint64
}

// VectorIndex opens the vector index called name (1 to 64 bytes of
// [A-Za-z0-9_.-]), creating it if it does not exist. Creating needs
// cfg.Dim; the other zero fields take hnsw's defaults. Opening an existing
// index takes its stored configuration for zero fields (Metric's zero, L2,
// included) and refuses a different non-zero one. Calls with the same name
// return the same *VectorIndex.
func (db *DB) VectorIndex(name string, cfg hnsw.Config) (*VectorIndex, error) {
	if err := checkVectorIndexName(name); err != nil {
		return nil, err
	}
	vs := &db.vectors
	vs.openMu.Lock()
	defer vs.openMu.Unlock()
	vs.mu.Lock()
	closing := vs.closing
	vi := vs.indexes[name]
	vs.mu.Unlock()
	if closing || db.closed.Load() {
		return nil, errs.ErrClosed
	}
	if vi != nil {
		if _, err := vi.mergeConfig(vi.cfg, cfg); err != nil {
			return nil, err
		}
		return vi, nil
	}
	vi, err := db.openVectorIndex(name, cfg)
	if err != nil {
		return nil, err
	}
	vs.mu.Lock()
	if vs.indexes == nil {
		vs.indexes = make(map[string]*VectorIndex)
	}
	vs.indexes[name] = vi
	vs.mu.Unlock()
	// A rebuilt graph is worth saving before the next open has to repeat
	// the work.
	vi.maybeCheckpoint(vi.last)
	return vi, nil
}

func checkVectorIndexName(name string) error {
	if len(name) == 0 || len(name) > maxVectorIndexName {
		return fmt.Errorf("pluresdb: vector index name %q: must be 1 to %d bytes", name, maxVectorIndexName)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("pluresdb: vector index name %q: byte %q not in [A-Za-z0-9_.-]", name, c)
		}
	}
	return nil
}

// Name returns the index's name.
func (vi *VectorIndex) Name() string { return vi.name }

// Config returns the index's configuration, defaults filled in.
func (vi *VectorIndex) Config() hnsw.Config { return vi.cfg }

// Len returns the number of vectors in the index.
func (vi *VectorIndex) Len() int { return vi.g.Len() }

// ID returns the internal ID of key, for building SearchOptions.Filter.
// Unstable: it is valid only until the next write to the index. Replacing
// a key's vector changes it, a repair hands deleted keys' IDs to new keys,
// and reopening (or rebuilding) the graph may renumber every key, so a
// bitmap built from IDs can select unrelated keys. Filter by
// SearchOptions.Keys (hnsw.NewKeys) instead.
func (vi *VectorIndex) ID(key []byte) (uint32, bool) { return vi.g.ID(key) }

// Add inserts key with vector vec, or replaces the vector of an existing
// key. When it returns nil the write is durable (per Options.NoSync, as a
// Put) and visible to Search.
//
// A rejoining database (see DB.FinishRejoin) refuses it with ErrRejoining,
// as every local write.
func (vi *VectorIndex) Add(key []byte, vec []float32) error {
	if err := vi.checkKey(key); err != nil {
		return err
	}
	if err := vi.db.refuseLocalWrite(); err != nil {
		return err
	}
	if err := vi.checkVector(vec); err != nil {
		return err
	}
	km := vi.keyLock(key)
	km.Lock()
	defer km.Unlock()
	vi.applyRW.RLock()
	vi.mu.Lock()
	c := vi.last + 1
	vi.vbuf = binary.LittleEndian.AppendUint64(vi.vbuf[:0], c)
	for _, f := range vec {
		vi.vbuf = binary.LittleEndian.AppendUint32(vi.vbuf, math.Float32bits(f))
	}
	vi.lbuf = append(append(vi.lbuf[:0], vecLogAdd), key...)
	b := vi.batch
	b.Reset()
	b.add(lsm.KindSet, nsVector, vi.vectorKey(key), vi.vbuf)
	b.add(lsm.KindSet, nsVector, vi.logKey(c), vi.lbuf)
	err := vi.commitLocked(b, c)
	vi.mu.Unlock()
	if err == nil {
		err = vi.syncAndApply(c, key, vec)
	}
	vi.applyRW.RUnlock()
	if err == nil {
		vi.maybeCheckpoint(c)
	}
	return err
}

// vecKeyStripes is the number of per-key write locks of an index.
const vecKeyStripes = 64

func (vi *VectorIndex) keyLock(key []byte) *sync.Mutex {
	return &vi.keyMu[xxhash.Sum64(key)%vecKeyStripes]
}

// commitLocked appends b (change c) without waiting for its fsync: the
// writer syncs after releasing mu, so concurrent writers share one fsync.
// Called with mu held.
func (vi *VectorIndex) commitLocked(b *Batch, c uint64) error {
	if err := b.Commit(&WriteOptions{NoSync: true}); err != nil {
		return err
	}
	vi.last = c
	return nil
}

// syncAndApply makes change c durable (unless Options.NoSync) and applies
// it to the graph: vec nil is a deletion.
func (vi *VectorIndex) syncAndApply(c uint64, key []byte, vec []float32) error {
	if !vi.db.opts.NoSync {
		if err := vi.db.wal.Sync(); err != nil {
			vi.db.setBroken(err)
			return fmt.Errorf("%w: %w", errs.ErrReadOnly, err)
		}
	}
	return vi.apply(c, key, vec)
}

// Delete removes key. Deleting an absent key is not an error. A
// rejoining database refuses it with ErrRejoining.
func (vi *VectorIndex) Delete(key []byte) error {
	if err := vi.checkKey(key); err != nil {
		return err
	}
	if err := vi.db.refuseLocalWrite(); err != nil {
		return err
	}
	km := vi.keyLock(key)
	km.Lock()
	defer km.Unlock()
	vi.applyRW.RLock()
	defer vi.applyRW.RUnlock()
	vi.mu.Lock()
	if vi.db.closed.Load() {
		vi.mu.Unlock()
		return errs.ErrClosed
	}
	// Under the key's lock every earlier write of it has committed, so the
	// record says whether key is there.
	ukey := append([]byte{nsVector}, vi.vectorKey(key)...)
	if _, err := vi.db.vectorGet(ukey, lsm.SeqNum(vi.db.visible.Load())); err != nil {
		vi.mu.Unlock()
		if errors.Is(err, errs.ErrNotFound) {
			// Absent, as far as what is visible goes; but a write whose
			// sync failed is visible too, and then the database is
			// read-only: nothing may be acknowledged.
			return vi.db.writable()
		}
		return err
	}
	c := vi.last + 1
	vi.lbuf = append(append(vi.lbuf[:0], vecLogDelete), key...)
	b := vi.batch
	b.Reset()
	b.add(lsm.KindDelete, nsVector, ukey[1:], nil)
	b.add(lsm.KindSet, nsVector, vi.logKey(c), vi.lbuf)
	err := vi.commitLocked(b, c)
	vi.mu.Unlock()
	if err != nil {
		return err
	}
	if err := vi.syncAndApply(c, key, nil); err != nil {
		return err
	}
	vi.maybeCheckpoint(c)
	return nil
}

// Search returns the k nearest vectors to q, nearest first. A filter is
// best given as opts.Keys (hnsw.NewKeys, or any hnsw.KeySet): keys are
// resolved during the search, so the filter stays right across writes,
// repairs and reopens.
func (vi *VectorIndex) Search(q []float32, k int, opts *hnsw.SearchOptions) ([]hnsw.Hit, error) {
	if vi.db.closed.Load() {
		return nil, errs.ErrClosed
	}
	hits, err := vi.g.Search(q, k, opts)
	if err != nil {
		return nil, fmt.Errorf("pluresdb: vector index %q: %w", vi.name, err)
	}
	return hits, nil
}

// apply makes committed change c (an add, or a delete when vec is nil) in
// the graph, after every earlier change.
func (vi *VectorIndex) apply(c uint64, key []byte, vec []float32) error {
	var err error
	if vec != nil {
		err = vi.g.Add(key, vec)
	} else if err = vi.g.Delete(key); errors.Is(err, hnsw.ErrNotFound) {
		err = nil
	}
	if err != nil {
		// checkVector mirrors hnsw's checks, so this is a bug; the record
		// is durable and the next open retries it.
		vi.db.log.Error().Err(err).Str("index", vi.name).Uint64("change", c).Msg("vector committed but not indexed")
		return fmt.Errorf("pluresdb: vector index %q: %w", vi.name, err)
	}
	return nil
}

func (vi *VectorIndex) checkKey(key []byte) error {
	switch limit := MaxKeySize - 3 - len(vi.name); {
	case len(key) == 0:
		return errs.ErrInvalidKey
	case len(key) > limit:
		return fmt.Errorf("%w: %d bytes, limit %d in vector index %q", errs.ErrKeyTooLarge, len(key), limit, vi.name)
	}
	return nil
}

// checkVector makes the checks hnsw.Index.Add makes, before the commit,
// with margins that hold whatever order hnsw sums in (its kernels may be
// SIMD), so that a committed vector is always accepted by the graph.
func (vi *VectorIndex) checkVector(vec []float32) error {
	if len(vec) != vi.cfg.Dim {
		return fmt.Errorf("pluresdb: vector index %q: vector has %d dimensions, index has %d", vi.name, len(vec), vi.cfg.Dim)
	}
	var sq float64
	for _, f := range vec {
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return fmt.Errorf("pluresdb: vector index %q: vector holds NaN or infinity", vi.name)
		}
		sq += float64(f) * float64(f)
	}
	switch {
	case sq > math.MaxFloat32/2:
		// A float32 sum of these non-negative squares could overflow.
		return fmt.Errorf("pluresdb: vector index %q: squared norm %g too large for float32 distances", vi.name, sq)
	case vi.cfg.Metric == hnsw.Cosine && sq < 1e-30:
		// Below it every square may underflow in float32 (Dim <= 65536):
		// no direction to normalize to.
		return fmt.Errorf("pluresdb: vector index %q: zero (or nearly zero) vector has no cosine direction", vi.name)
	}
	return nil
}

// Keys, without the namespace byte (Batch.add takes it apart). vectorKey
// and logKey reuse buffers guarded by mu.

func (vi *VectorIndex) vectorKey(key []byte) []byte {
	vi.kbuf = append(append(append(vi.kbuf[:0], vi.pfx...), vecTagVector), key...)
	return vi.kbuf
}

func (vi *VectorIndex) logKey(c uint64) []byte {
	k := append(append(make([]byte, 0, len(vi.pfx)+9), vi.pfx...), vecTagLog)
	return binary.BigEndian.AppendUint64(k, c)
}

// tagKey returns namespace | prefix | tag | rest, a key for get.
func (vi *VectorIndex) tagKey(tag byte, rest ...byte) []byte {
	return append(append(append([]byte{nsVector}, vi.pfx...), tag), rest...)
}

// tagRange returns the bounds of the keys with tag, without the namespace
// byte, for newIter.
func (vi *VectorIndex) tagRange(tag byte) (lo, hi []byte) {
	lo = append(append([]byte(nil), vi.pfx...), tag)
	hi = append(append([]byte(nil), vi.pfx...), tag+1)
	return lo, hi
}

// mergeConfig returns stored with want checked against it: a non-zero
// field of want must match.
func (vi *VectorIndex) mergeConfig(stored, want hnsw.Config) (hnsw.Config, error) {
	if (want.Dim != 0 && want.Dim != stored.Dim) || (want.Metric != 0 && want.Metric != stored.Metric) ||
		(want.M != 0 && want.M != stored.M) || (want.EfConstruction != 0 && want.EfConstruction != stored.EfConstruction) ||
		(want.TombstoneRatio != 0 && want.TombstoneRatio != stored.TombstoneRatio) {
		return stored, fmt.Errorf("pluresdb: vector index %q has config %+v; asked for %+v (0: as stored)", vi.name, stored, want)
	}
	return stored, nil
}

// openVectorIndex loads (or creates) an index: configuration, checkpoint,
// change log.
func (db *DB) openVectorIndex(name string, want hnsw.Config) (*VectorIndex, error) {
	vi := &VectorIndex{db: db, name: name, pfx: append([]byte{byte(len(name))}, name...)}
	vi.ckEvery.Store(defaultCheckpointEvery)
	vi.batch = db.NewBatch()
	start := time.Now()
	snap := lsm.SeqNum(db.visible.Load())
	cfg, err := vi.loadConfig(want, snap)
	if err != nil {
		return nil, err
	}
	vi.cfg = cfg

	var g *hnsw.Index
	var floor uint64
	raw, err := db.vectorGet(vi.tagKey(vecTagCheckpoint), snap)
	switch {
	case errors.Is(err, errs.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		rec, err := decodeVecCheckpoint(raw, name)
		if err == nil {
			// Change numbers never go back, even when the file is lost.
			floor = rec.change
		}
		if err != nil {
			db.log.Error().Err(err).Str("index", name).Msg("vector index checkpoint record damaged; rebuilding the graph")
			break
		}
		vi.ck, vi.trimmed = rec, rec.trimmed
		g, err = db.loadVectorGraph(rec)
		if err == nil && g.Config() != cfg {
			err = fmt.Errorf("graph has config %+v, index %+v", g.Config(), cfg)
		}
		if err != nil {
			db.log.Error().Err(err).Str("index", name).Msg("vector index checkpoint unusable; rebuilding the graph")
			// Keep the file number, so the next checkpoint removes it;
			// change 0 says no checkpoint is usable.
			g, vi.ck.change = nil, 0
		}
	}
	var last uint64
	if g != nil {
		vi.loadedCheckpoint = true
		if last, err = vi.replay(g, vi.ck.change, snap); err != nil {
			return nil, err
		}
	} else {
		if g, err = hnsw.New(cfg); err != nil {
			return nil, err
		}
		if last, err = vi.rebuild(g, floor, snap); err != nil {
			return nil, err
		}
	}
	vi.g, vi.last = g, last
	vi.ckChange.Store(vi.ck.change)
	db.log.Debug().Str("index", name).Int("vectors", g.Len()).Bool("checkpoint", vi.loadedCheckpoint).
		Int("replayed", vi.replayed).Int("rebuilt", vi.rebuilt).Dur("took", time.Since(start)).Msg("opened vector index")
	return vi, nil
}

// loadConfig reads the 'c' record, or creates it from want.
func (vi *VectorIndex) loadConfig(want hnsw.Config, snap lsm.SeqNum) (hnsw.Config, error) {
	db := vi.db
	key := vi.tagKey(vecTagConfig)
	raw, err := db.vectorGet(key, snap)
	if err == nil {
		stored, err := decodeVecConfig(raw, vi.name)
		if err != nil {
			return hnsw.Config{}, err
		}
		return vi.mergeConfig(stored, want)
	}
	if !errors.Is(err, errs.ErrNotFound) {
		return hnsw.Config{}, err
	}
	if want.Dim == 0 {
		return hnsw.Config{}, fmt.Errorf("pluresdb: vector index %q does not exist; creating it needs Config.Dim", vi.name)
	}
	g, err := hnsw.New(want)
	if err != nil {
		return hnsw.Config{}, fmt.Errorf("pluresdb: vector index %q: %w", vi.name, err)
	}
	cfg := g.Config()
	b := db.NewBatch()
	b.add(lsm.KindSet, nsVector, key[1:], encodeVecConfig(cfg))
	if err := b.Commit(nil); err != nil {
		return hnsw.Config{}, err
	}
	return cfg, nil
}

func encodeVecConfig(c hnsw.Config) []byte {
	le := binary.LittleEndian
	b := make([]byte, 0, vecConfigLen)
	for _, v := range []uint32{vecConfigVersion, uint32(c.Dim), uint32(c.Metric), uint32(c.M), uint32(c.EfConstruction)} {
		b = le.AppendUint32(b, v)
	}
	b = le.AppendUint64(b, math.Float64bits(c.TombstoneRatio))
	return le.AppendUint64(b, xxhash.Sum64(b))
}

func decodeVecConfig(b []byte, name string) (hnsw.Config, error) {
	where := "vector index " + name + " config"
	le := binary.LittleEndian
	if len(b) >= 4 && le.Uint32(b) > vecConfigVersion {
		return hnsw.Config{}, errs.NewerFormatf(where, le.Uint32(b), vecConfigVersion)
	}
	if len(b) != vecConfigLen {
		return hnsw.Config{}, errs.Corruptf(where, 0, "%d bytes, want %d", len(b), vecConfigLen)
	}
	if got, want := xxhash.Sum64(b[:28]), le.Uint64(b[28:]); got != want {
		return hnsw.Config{}, errs.Corruptf(where, 28, "checksum mismatch: computed %#x, stored %#x", got, want)
	}
	if v := le.Uint32(b); v == 0 {
		return hnsw.Config{}, errs.Corruptf(where, 0, "version 0")
	}
	c := hnsw.Config{Dim: int(le.Uint32(b[4:])), Metric: hnsw.Metric(le.Uint32(b[8:])),
		M: int(le.Uint32(b[12:])), EfConstruction: int(le.Uint32(b[16:])),
		TombstoneRatio: math.Float64frombits(le.Uint64(b[20:]))}
	if c.Dim == 0 || c.M == 0 || c.EfConstruction == 0 || c.TombstoneRatio == 0 {
		return hnsw.Config{}, errs.Corruptf(where, 4, "zero field in %+v", c)
	}
	if _, err := hnsw.New(c); err != nil {
		return hnsw.Config{}, errs.Corruptf(where, 4, "%v", err)
	}
	return c, nil
}

func (r vecCheckpoint) encode() []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(make([]byte, 0, vecCheckpointLen), vecCheckpointVersion)
	for _, v := range []uint64{uint64(r.file), r.change, r.trimmed, r.size, r.sum} {
		b = le.AppendUint64(b, v)
	}
	return le.AppendUint64(b, xxhash.Sum64(b))
}

func decodeVecCheckpoint(b []byte, name string) (vecCheckpoint, error) {
	where := "vector index " + name + " checkpoint record"
	le := binary.LittleEndian
	if len(b) >= 4 && le.Uint32(b) > vecCheckpointVersion {
		return vecCheckpoint{}, errs.NewerFormatf(where, le.Uint32(b), vecCheckpointVersion)
	}
	if len(b) != vecCheckpointLen {
		return vecCheckpoint{}, errs.Corruptf(where, 0, "%d bytes, want %d", len(b), vecCheckpointLen)
	}
	if got, want := xxhash.Sum64(b[:44]), le.Uint64(b[44:]); got != want {
		return vecCheckpoint{}, errs.Corruptf(where, 44, "checksum mismatch: computed %#x, stored %#x", got, want)
	}
	r := vecCheckpoint{file: layout.FileNum(le.Uint64(b[4:])), change: le.Uint64(b[12:]),
		trimmed: le.Uint64(b[20:]), size: le.Uint64(b[28:]), sum: le.Uint64(b[36:])}
	if le.Uint32(b) == 0 || r.change == 0 || r.trimmed > r.change {
		return vecCheckpoint{}, errs.Corruptf(where, 0, "inconsistent record %+v", r)
	}
	return r, nil
}

// loadVectorGraph reads and decodes the checkpoint file rec names.
func (db *DB) loadVectorGraph(rec vecCheckpoint) (*hnsw.Index, error) {
	path := layout.Path(db.dir, layout.TypeVectorGraph, rec.file)
	f, err := db.fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	if uint64(size) != rec.size {
		return nil, errs.Corruptf(path, size, "file has %d bytes, its record says %d", size, rec.size)
	}
	buf := make([]byte, size)
	if n, err := f.ReadAt(buf, 0); n != len(buf) {
		return nil, fmt.Errorf("pluresdb: reading %s: %d of %d bytes: %w", path, n, len(buf), err)
	}
	if sum := xxhash.Sum64(buf); sum != rec.sum {
		return nil, errs.Corruptf(path, 0, "file checksum %#x, its record says %#x", sum, rec.sum)
	}
	g, err := hnsw.Unmarshal(buf)
	if err != nil {
		return nil, fmt.Errorf("pluresdb: %s: %w", path, err)
	}
	return g, nil
}

// vectorGet returns a copy of the value of ukey (namespace byte included)
// as of snap, or an error wrapping ErrNotFound.
func (db *DB) vectorGet(ukey []byte, snap lsm.SeqNum) ([]byte, error) {
	v, _, err := db.getRaw(ukey, snap)
	return v, err
}

// decodeVector parses a 'v' value into its change number and vec (reusing
// buf).
func (vi *VectorIndex) decodeVector(raw, key []byte, buf []float32) (uint64, []float32, error) {
	if len(raw) != 8+4*vi.cfg.Dim {
		return 0, nil, errs.Corruptf("vector index "+vi.name, -1, "key %q: vector record of %d bytes, want %d",
			key, len(raw), 8+4*vi.cfg.Dim)
	}
	buf = buf[:0]
	for i := 8; i < len(raw); i += 4 {
		buf = append(buf, math.Float32frombits(binary.LittleEndian.Uint32(raw[i:])))
	}
	return binary.LittleEndian.Uint64(raw), buf, nil
}

// replay applies to g the change-log entries after change from and
// returns the last change number.
func (vi *VectorIndex) replay(g *hnsw.Index, from uint64, snap lsm.SeqNum) (uint64, error) {
	db := vi.db
	last := from
	lo, hi := vi.tagRange(vecTagLog)
	it := db.newIter(nsVector, binary.BigEndian.AppendUint64(lo, from+1), hi, snap)
	var vec []float32
	var ukey []byte
	var err error
	for ok := it.First(); ok && err == nil; ok = it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != len(vi.pfx)+9 || len(v) < 2 || (v[0] != vecLogAdd && v[0] != vecLogDelete) {
			err = errs.Corruptf("vector index "+vi.name, -1, "bad change log entry %q = %q", k, v)
			break
		}
		c := binary.BigEndian.Uint64(k[len(vi.pfx)+1:])
		key := v[1:]
		ukey = append(append(append(ukey[:0], nsVector), vi.pfx...), vecTagVector)
		ukey = append(ukey, key...)
		raw, gerr := db.vectorGet(ukey, snap)
		switch {
		case errors.Is(gerr, errs.ErrNotFound):
			if derr := g.Delete(key); derr != nil && !errors.Is(derr, hnsw.ErrNotFound) {
				err = derr
			}
		case gerr != nil:
			err = gerr
		default:
			var vc uint64
			vc, vec, err = vi.decodeVector(raw, key, vec)
			if err == nil && vc <= c {
				// vc > c: a later entry of the log replaces this one.
				if aerr := g.Add(key, vec); aerr != nil {
					db.log.Error().Err(aerr).Str("index", vi.name).Bytes("key", key).Msg("stored vector rejected by the graph")
				}
			}
		}
		last = max(last, c)
		vi.replayed++
	}
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	return last, err
}

// rebuild inserts every 'v' record into g and returns the last change
// number of the index (at least floor).
func (vi *VectorIndex) rebuild(g *hnsw.Index, floor uint64, snap lsm.SeqNum) (uint64, error) {
	db := vi.db
	last := floor
	lo, hi := vi.tagRange(vecTagVector)
	it := db.newIter(nsVector, lo, hi, snap)
	var vec []float32
	var err error
	for ok := it.First(); ok; ok = it.Next() {
		key := it.Key()[len(vi.pfx)+1:]
		var c uint64
		if c, vec, err = vi.decodeVector(it.Value(), key, vec); err != nil {
			break
		}
		if aerr := g.Add(key, vec); aerr != nil {
			db.log.Error().Err(aerr).Str("index", vi.name).Bytes("key", key).Msg("stored vector rejected by the graph")
		}
		last = max(last, c)
		vi.rebuilt++
	}
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	// A delete's change number lives only in its log entry.
	lo, hi = vi.tagRange(vecTagLog)
	it = db.newIter(nsVector, lo, hi, snap)
	if it.Last() {
		if k := it.Key(); len(k) == len(vi.pfx)+9 {
			last = max(last, binary.BigEndian.Uint64(k[len(vi.pfx)+1:]))
		}
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	return last, nil
}

// maybeCheckpoint starts a background checkpoint when enough changes have
// piled up since the last one (applied is the last change applied).
func (vi *VectorIndex) maybeCheckpoint(applied uint64) {
	if vi.db.opts.ReadOnly {
		return
	}
	pending := int64(applied - vi.ckChange.Load())
	if pending <= 0 || pending < max(vi.ckEvery.Load(), int64(vi.g.Len()/4)) {
		return
	}
	if t := vi.ckFailed.Load(); t != 0 && time.Since(time.Unix(0, t)) < checkpointRetryAfter {
		return
	}
	if !vi.ckRunning.CompareAndSwap(false, true) {
		return
	}
	vs := &vi.db.vectors
	vs.mu.Lock()
	if vs.closing {
		vs.mu.Unlock()
		vi.ckRunning.Store(false)
		return
	}
	vs.wg.Add(1)
	vs.mu.Unlock()
	go func() {
		defer vs.wg.Done()
		defer vi.ckRunning.Store(false)
		if err := vi.checkpoint(); err != nil {
			vi.ckFailed.Store(time.Now().UnixNano())
			vi.db.log.Error().Err(err).Str("index", vi.name).Msg("vector index checkpoint failed")
		}
	}()
}

// checkpoint writes the graph to a new file, points the 's' record at it,
// trims the change log and removes the previous file. It does nothing when
// no change has been applied since the current checkpoint.
func (vi *VectorIndex) checkpoint() error {
	if vi.db.opts.ReadOnly {
		return nil // a read-only open writes nothing; the next open rebuilds
	}
	vi.ckMu.Lock()
	defer vi.ckMu.Unlock()
	db := vi.db
	start := time.Now()
	// Exclusive: every write numbered so far is in the graph, none is
	// half-way.
	vi.applyRW.Lock()
	vi.mu.Lock()
	upto := vi.last
	vi.mu.Unlock()
	if upto == vi.ck.change {
		vi.applyRW.Unlock()
		return nil
	}
	data, err := vi.g.MarshalBinary()
	vi.applyRW.Unlock()
	if err != nil {
		return err
	}

	num := db.vs.NewFileNum()
	if err := db.writeVectorGraph(num, data); err != nil {
		return err
	}
	rec := vecCheckpoint{file: num, change: upto, trimmed: vi.trimmed, size: uint64(len(data)), sum: xxhash.Sum64(data)}
	b := db.NewBatch()
	b.add(lsm.KindSet, nsVector, vi.tagKey(vecTagCheckpoint)[1:], rec.encode())
	// Synced before the old file goes: the record must never point at a
	// removed file. (An error may still leave the record in the log, so
	// the new file stays; open removes it if unreferenced.)
	if err := b.Commit(&WriteOptions{Sync: true}); err != nil {
		return err
	}
	old := vi.ck
	vi.ck = rec
	vi.ckChange.Store(upto)

	// Trim the log. These deletions need no sync: a crash only leaves
	// entries that replay skips (they are at or below the checkpoint) and
	// that the next checkpoint deletes again, from rec.trimmed.
	for c := vi.trimmed + 1; c <= upto; {
		b.Reset()
		for ; c <= upto && b.Len() < vecTrimBatch; c++ {
			b.add(lsm.KindDelete, nsVector, vi.tagKey(vecTagLog, binary.BigEndian.AppendUint64(nil, c)...)[1:], nil)
		}
		if err := b.Commit(&WriteOptions{NoSync: true}); err != nil {
			return err
		}
	}
	vi.trimmed = upto
	if old.file != 0 {
		path := layout.Path(db.dir, layout.TypeVectorGraph, old.file)
		if err := db.fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			db.log.Error().Err(err).Str("file", path).Msg("removing old vector index checkpoint")
		}
	}
	db.log.Debug().Str("index", vi.name).Uint64("change", upto).Int("bytes", len(data)).
		Dur("took", time.Since(start)).Msg("vector index checkpoint")
	return nil
}

// writeVectorGraph writes data durably to the checkpoint file num.
func (db *DB) writeVectorGraph(num layout.FileNum, data []byte) error {
	err := vfs.WriteFileAtomic(db.fs, layout.Path(db.dir, layout.TypeTemp, num),
		layout.Path(db.dir, layout.TypeVectorGraph, num), data)
	if err != nil {
		return fmt.Errorf("pluresdb: writing vector index checkpoint %s: %w", num, err)
	}
	return nil
}

// removeUnreferencedVectorGraphs deletes the .hnsw files that no
// checkpoint record references: a crash between a checkpoint's rename and
// its commit, or before the previous file's removal, leaves them. Called
// at the end of open. Any doubt (an unreadable namespace) keeps the files.
func (db *DB) removeUnreferencedVectorGraphs() {
	names, err := db.fs.List(db.dir)
	if err != nil {
		return
	}
	var graphs []layout.FileNum
	for _, name := range names {
		if t, n, ok := layout.Parse(name); ok && t == layout.TypeVectorGraph {
			graphs = append(graphs, n)
		}
	}
	if len(graphs) == 0 {
		return
	}
	live, err := db.vectorCheckpointFiles()
	if err != nil {
		db.log.Error().Err(err).Msg("listing vector index checkpoints; keeping every .hnsw file")
		return
	}
	for _, n := range graphs {
		if _, ok := live[n]; ok {
			continue
		}
		path := layout.Path(db.dir, layout.TypeVectorGraph, n)
		if err := db.fs.Remove(path); err != nil {
			db.log.Error().Err(err).Str("file", path).Msg("removing unreferenced vector index checkpoint")
		}
	}
}

// vectorCheckpointFiles returns the files the 's' records name. It visits
// each index with two seeks, never its vectors.
func (db *DB) vectorCheckpointFiles() (map[layout.FileNum]struct{}, error) {
	snap := lsm.SeqNum(db.visible.Load())
	live := map[layout.FileNum]struct{}{}
	var lower []byte // the next index's keys are >= lower
	for {
		it := db.newIter(nsVector, lower, nil, snap)
		ok := it.First()
		var pfx []byte
		if ok {
			k := it.Key()
			if len(k) == 0 || len(k) < 1+int(k[0]) || len(lower) > 0 && string(k[:1+int(k[0])]) == string(lower[:len(lower)-1]) {
				it.Close()
				return nil, errs.Corruptf("vector namespace", -1, "malformed key %q", k)
			}
			pfx = append([]byte(nil), k[:1+int(k[0])]...)
		}
		if err := it.Close(); err != nil {
			return nil, err
		}
		if !ok {
			return live, nil
		}
		sKey := append(append([]byte{nsVector}, pfx...), vecTagCheckpoint)
		raw, err := db.vectorGet(sKey, snap)
		switch {
		case errors.Is(err, errs.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			// A damaged record references nothing usable: its index
			// rebuilds, and the file may go.
			if rec, err := decodeVecCheckpoint(raw, string(pfx[1:])); err == nil {
				live[rec.file] = struct{}{}
			}
		}
		// Past every tag of this index: tags are below 0xff.
		lower = append(pfx, 0xff)
	}
}

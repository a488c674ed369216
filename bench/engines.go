package main

// This file holds the adapters that put every compared engine behind one
// small interface, and the settings each is run with. The settings are the
// point of the comparison, so each adapter says why it is configured the way
// it is; the notes printed under the table repeat them.

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/dgraph-io/badger/v4"
	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/util"
	bolt "go.etcd.io/bbolt"
)

// errNotFound is what every adapter's get returns for an absent key, so the
// workloads need not know each engine's sentinel.
var errNotFound = errors.New("bench: key not found")

// engine is one open database under test.
//
// put must be safe for concurrent use (fillsync calls it from 16
// goroutines); the other methods are called from one goroutine at a time.
// put does not retain k or v after it returns. The slice get returns is
// valid until the next call on the engine.
type engine interface {
	put(k, v []byte) error
	get(k []byte) ([]byte, error)
	// scan visits every key in ascending order; k and v are valid only
	// during the call. It returns the number of keys visited.
	scan(fn func(k, v []byte) error) (int, error)
	// settle makes every write durable in the engine's tables: it flushes
	// memtables and waits for background compactions where the engine lets
	// a caller wait for them.
	settle() error
	close() error
}

// engineConfig is what the harness varies per run.
type engineConfig struct {
	// sync asks for each put to wait for fsync (fillsync); otherwise puts
	// go to the WAL without syncing.
	sync bool
	// cache is the block cache size in bytes for engines configured to use
	// the harness's cache size (pluresdb, pebble-samecache).
	cache int64
}

// engineSpec names an engine and says how to open it.
type engineSpec struct {
	name  string
	notes string
	// open opens or creates the database in dir (a directory the engine may
	// fill as it likes).
	open func(dir string, cfg engineConfig) (engine, error)
}

// engineSpecs lists the engines compiled in, by name. The pluresdb adapter
// registers itself from its own file so the harness still builds (with
// -tags nopluresdb) while the engine root package does not.
var engineSpecs = map[string]engineSpec{}

func registerEngine(s engineSpec) { engineSpecs[s.name] = s }

// defaultEngineOrder is the -engines default; names not compiled in are
// skipped with a note.
var defaultEngineOrder = []string{"pluresdb", "pebble", "pebble-samecache", "badger", "goleveldb", "bbolt"}

// defaultCacheSize is the -cache default. The pluresdb adapter replaces it
// with pluresdb.DefaultCacheSize(); the value here is used only when the
// engine is not compiled in.
var defaultCacheSize = func() int64 { return 256 << 20 }

func knownEngines() string {
	names := make([]string, 0, len(engineSpecs))
	for n := range engineSpecs {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

func init() {
	registerEngine(engineSpec{
		name:  "pebble",
		notes: "Pebble v2 defaults (8 MiB block cache; keeps old WALs for recycling, counted in disk); NoSync / Sync write options; single Set per key; info log off.",
		open: func(dir string, cfg engineConfig) (engine, error) {
			return openPebble(dir, cfg, 0)
		},
	})
	registerEngine(engineSpec{
		name:  "pebble-samecache",
		notes: "Pebble v2 defaults but block cache = -cache: the like-for-like read comparison.",
		open: func(dir string, cfg engineConfig) (engine, error) {
			return openPebble(dir, cfg, cfg.cache)
		},
	})
	registerEngine(engineSpec{
		name: "badger",
		notes: "Badger v4 DefaultOptions (its own 256 MiB block cache, not -cache), SyncWrites=false / true, " +
			"logger off; one Update txn per key; no API to flush, so settle = close+reopen, then poll Levels() until no level scores >= 1.",
		open: openBadger,
	})
	registerEngine(engineSpec{
		name: "goleveldb",
		notes: "goleveldb defaults (8 MiB block cache); Sync:false / true; single Put per key; " +
			"no API to flush, so settle = close+reopen (recovery writes the journal to L0), then wait until a compaction round trip finds nothing to do.",
		open: openLevelDB,
	})
	registerEngine(engineSpec{
		name: "bbolt",
		notes: "bbolt defaults, no WAL (copy-on-write B+tree); fills use NoSync=true and 1000 puts per Update tx " +
			"(one tx per key is absurd for it); fillsync uses db.Batch, its own way to share a sync among concurrent writers.",
		open: openBolt,
	})
}

// ---- Pebble ----

type pebbleEngine struct {
	db     *pebble.DB
	wo     *pebble.WriteOptions
	buf    []byte
	stalls *stallClock
}

// openPebble opens Pebble with its defaults; cache > 0 replaces the default
// block cache.
func openPebble(dir string, cfg engineConfig, cache int64) (engine, error) {
	// Pebble v2's Metrics has no write-stall counters; its event listener
	// reports each stall's start and end.
	stalls := &stallClock{}
	o := &pebble.Options{
		Logger: quietPebbleLogger{pebble.DefaultLogger},
		EventListener: &pebble.EventListener{
			WriteStallBegin: func(pebble.WriteStallBeginInfo) { stalls.begin() },
			WriteStallEnd:   stalls.end,
		},
	}
	if cache > 0 {
		c := pebble.NewCache(cache)
		defer c.Unref() // the DB holds its own reference
		o.Cache = c
	}
	db, err := pebble.Open(dir, o)
	if err != nil {
		return nil, err
	}
	wo := pebble.NoSync
	if cfg.sync {
		wo = pebble.Sync
	}
	return &pebbleEngine{db: db, wo: wo, stalls: stalls}, nil
}

// quietPebbleLogger drops Pebble's informational lines ("Found 0 WALs" on
// every open), which would interleave with the progress output; errors still
// go to the standard logger.
type quietPebbleLogger struct{ pebble.Logger }

func (quietPebbleLogger) Infof(string, ...any) {}

func (e *pebbleEngine) put(k, v []byte) error { return e.db.Set(k, v, e.wo) }

func (e *pebbleEngine) get(k []byte) ([]byte, error) {
	v, closer, err := e.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	// The value is valid only until closer.Close; copy it like a caller
	// that keeps it would.
	e.buf = append(e.buf[:0], v...)
	return e.buf, closer.Close()
}

func (e *pebbleEngine) scan(fn func(k, v []byte) error) (int, error) {
	it, err := e.db.NewIter(nil)
	if err != nil {
		return 0, err
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			it.Close()
			return n, err
		}
		n++
	}
	if err := it.Error(); err != nil {
		it.Close()
		return n, err
	}
	return n, it.Close()
}

func (e *pebbleEngine) settle() error {
	if err := e.db.Flush(); err != nil {
		return err
	}
	// Pebble has no "wait for compactions"; idle means nothing running and
	// nothing the picker would start, seen twice in a row.
	return pollUntil(func() bool {
		if e.db.Metrics().Compact.NumInProgress > 0 {
			return false
		}
		waiting, _ := e.db.GetWaitingCompaction()
		return !waiting
	})
}

func (e *pebbleEngine) close() error { return e.db.Close() }

func (e *pebbleEngine) writeStalls() (int64, time.Duration) { return e.stalls.read() }

// ---- Badger ----

type badgerEngine struct {
	dir string
	db  *badger.DB
	opt badger.Options
	buf []byte
}

func openBadger(dir string, cfg engineConfig) (engine, error) {
	o := badger.DefaultOptions(dir).WithSyncWrites(cfg.sync).WithLogger(nil)
	db, err := badger.Open(o)
	if err != nil {
		return nil, err
	}
	return &badgerEngine{dir: dir, db: db, opt: o}, nil
}

func (e *badgerEngine) put(k, v []byte) error {
	// Update commits before it returns, and the commit copies k and v into
	// the memtable and the value log, so the caller may reuse them.
	return e.db.Update(func(txn *badger.Txn) error { return txn.Set(k, v) })
}

func (e *badgerEngine) get(k []byte) ([]byte, error) {
	err := e.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(k)
		if err != nil {
			return err
		}
		e.buf, err = item.ValueCopy(e.buf[:0])
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, errNotFound
	}
	return e.buf, err
}

func (e *badgerEngine) scan(fn func(k, v []byte) error) (int, error) {
	n := 0
	err := e.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			err := item.Value(func(v []byte) error { return fn(item.Key(), v) })
			if err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

func (e *badgerEngine) settle() error {
	// Close flushes the memtable to L0; there is no other public flush.
	if err := e.db.Close(); err != nil {
		return err
	}
	db, err := badger.Open(e.opt)
	if err != nil {
		return err
	}
	e.db = db
	// Levels() reports a score only for levels the compactor would pick.
	return pollUntil(func() bool {
		for _, l := range e.db.Levels() {
			if l.Score >= 1 {
				return false
			}
		}
		return true
	})
}

func (e *badgerEngine) close() error { return e.db.Close() }

// ---- goleveldb ----

type levelDBEngine struct {
	dir string
	db  *leveldb.DB
	wo  *opt.WriteOptions
}

func openLevelDB(dir string, cfg engineConfig) (engine, error) {
	db, err := leveldb.OpenFile(dir, nil)
	if err != nil {
		return nil, err
	}
	return &levelDBEngine{dir: dir, db: db, wo: &opt.WriteOptions{Sync: cfg.sync}}, nil
}

func (e *levelDBEngine) put(k, v []byte) error { return e.db.Put(k, v, e.wo) }

func (e *levelDBEngine) get(k []byte) ([]byte, error) {
	v, err := e.db.Get(k, nil)
	if errors.Is(err, leveldb.ErrNotFound) {
		return nil, errNotFound
	}
	return v, err
}

func (e *levelDBEngine) scan(fn func(k, v []byte) error) (int, error) {
	it := e.db.NewIterator(nil, nil)
	defer it.Release()
	n := 0
	for it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			return n, err
		}
		n++
	}
	return n, it.Error()
}

// levelDBPastAllKeys is above every 16-byte key, so a compaction of
// [levelDBPastAllKeys, ∞) touches no table and serves as a round trip
// through the compaction goroutine.
var levelDBPastAllKeys = bytes.Repeat([]byte{0xff}, 32)

func (e *levelDBEngine) settle() error {
	// No public flush: closing leaves the memtable in the journal, and
	// reopening writes it to an L0 table.
	if err := e.db.Close(); err != nil {
		return err
	}
	db, err := leveldb.OpenFile(e.dir, nil)
	if err != nil {
		return err
	}
	e.db = db
	// The compaction goroutine handles one command, then runs one automatic
	// compaction step (if one is due) before it takes the next command. So
	// if the shape of the tree did not change from before one command was
	// sent to after the next was acknowledged, the step between them found
	// nothing to do: the tree is settled. The shape includes table counts,
	// since a trivial move writes nothing.
	var st leveldb.DBStats
	shape := func() (string, error) {
		if err := e.db.Stats(&st); err != nil {
			return "", err
		}
		return fmt.Sprint(st.LevelTablesCounts, st.LevelSizes, st.LevelWrite), nil
	}
	roundTrip := func() error { return e.db.CompactRange(util.Range{Start: levelDBPastAllKeys}) }
	deadline := time.Now().Add(settleTimeout)
	for time.Now().Before(deadline) {
		before, err := shape()
		if err != nil {
			return err
		}
		if err := roundTrip(); err != nil {
			return err
		}
		if err := roundTrip(); err != nil {
			return err
		}
		after, err := shape()
		if err != nil {
			return err
		}
		if before == after {
			return nil
		}
	}
	return errSettleTimeout
}

func (e *levelDBEngine) close() error { return e.db.Close() }

// writeStalls reports goleveldb's write delays: the 1 ms sleeps of its L0
// slowdown as well as the waits for a memtable flush or L0 compaction.
func (e *levelDBEngine) writeStalls() (int64, time.Duration) {
	var st leveldb.DBStats
	if err := e.db.Stats(&st); err != nil {
		return -1, 0
	}
	return int64(st.WriteDelayCount), st.WriteDelayDuration
}

// ---- bbolt ----

// boltBatch is how many puts share one Update transaction in the no-sync
// fills.
const boltBatch = 1000

var boltBucket = []byte("bench")

// boltEngine batches no-sync puts into transactions of boltBatch keys.
// mu guards pending and arena; bbolt's Put keeps the key and value slices
// until commit, so pending ones point into arena, not at the caller's.
type boltEngine struct {
	db   *bolt.DB
	sync bool

	mu      sync.Mutex
	arena   []byte
	pending [][2]int // offsets of key end and value end in arena
	buf     []byte
}

func openBolt(dir string, cfg engineConfig) (engine, error) {
	db, err := bolt.Open(filepath.Join(dir, "bolt.db"), 0o600, &bolt.Options{NoSync: !cfg.sync})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &boltEngine{db: db, sync: cfg.sync}, nil
}

func (e *boltEngine) put(k, v []byte) error {
	if e.sync {
		// Batch coalesces concurrent callers into one synced transaction
		// and returns after it commits, so k and v stay valid throughout.
		return e.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(boltBucket).Put(k, v) })
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.arena = append(e.arena, k...)
	kEnd := len(e.arena)
	e.arena = append(e.arena, v...)
	e.pending = append(e.pending, [2]int{kEnd, len(e.arena)})
	if len(e.pending) >= boltBatch {
		return e.commitLocked()
	}
	return nil
}

func (e *boltEngine) commitLocked() error {
	if len(e.pending) == 0 {
		return nil
	}
	err := e.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBucket)
		start := 0
		for _, p := range e.pending {
			if err := b.Put(e.arena[start:p[0]], e.arena[p[0]:p[1]]); err != nil {
				return err
			}
			start = p[1]
		}
		return nil
	})
	e.pending = e.pending[:0]
	e.arena = e.arena[:0]
	return err
}

func (e *boltEngine) flushPending() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.commitLocked()
}

func (e *boltEngine) get(k []byte) ([]byte, error) {
	if err := e.flushPending(); err != nil {
		return nil, err
	}
	found := false
	err := e.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(boltBucket).Get(k)
		if v != nil {
			found = true
			// v points into the mmap and is valid only inside the tx.
			e.buf = append(e.buf[:0], v...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, errNotFound
	}
	return e.buf, nil
}

func (e *boltEngine) scan(fn func(k, v []byte) error) (int, error) {
	if err := e.flushPending(); err != nil {
		return 0, err
	}
	n := 0
	err := e.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(boltBucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := fn(k, v); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

func (e *boltEngine) settle() error {
	if err := e.flushPending(); err != nil {
		return err
	}
	// No background work; Sync is the closest thing to a flush under NoSync.
	return e.db.Sync()
}

func (e *boltEngine) close() error {
	err := e.flushPending()
	return errors.Join(err, e.db.Close())
}

// ---- shared ----

// stallClock counts write stalls from an engine's begin and end events:
// every begin is one stall, and the time is wall time during which at least
// one writer was stalled (the same as the sum of the waits with one
// writer). Safe for concurrent use; mu guards every field.
type stallClock struct {
	mu     sync.Mutex
	active int // writers stalled now
	since  time.Time
	n      int64
	total  time.Duration
}

func (c *stallClock) begin() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	if c.active == 0 {
		c.since = time.Now()
	}
	c.active++
}

func (c *stallClock) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active == 0 {
		return
	}
	c.active--
	if c.active == 0 {
		c.total += time.Since(c.since)
	}
}

// read returns the stalls so far and their time, counting a stall still in
// progress up to now.
func (c *stallClock) read() (int64, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.total
	if c.active > 0 {
		t += time.Since(c.since)
	}
	return c.n, t
}

// settleTimeout bounds every wait for background compactions, so an engine
// whose compactions never go idle cannot hang the run.
const settleTimeout = 2 * time.Minute

// errSettleTimeout is returned by settle when compactions were still running
// at settleTimeout. The harness goes on and reports it as a warning: the
// data is all there, only the "settled" premise of the reads is weaker.
var errSettleTimeout = errors.New("compactions still running after the settle timeout")

// pollUntil calls idle every 50 ms until it returns true twice in a row.
func pollUntil(idle func() bool) error {
	deadline := time.Now().Add(settleTimeout)
	streak := 0
	for time.Now().Before(deadline) {
		if idle() {
			streak++
			if streak == 2 {
				return nil
			}
		} else {
			streak = 0
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errSettleTimeout
}

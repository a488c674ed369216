package lsm

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
)

const (
	defaultMaxOpenTables = 1000
	tableCacheShards     = 16 // a power of two
)

// TableCache keeps up to maxOpen tables open, keyed by file number.
//
// Every Acquire is paired with a Release. A table leaves the cache when it
// is evicted to make room (CLOCK: a table used since the hand last passed is
// spared once), when Evict is called, or at Close; its file is closed only
// once the last holder has released it.
//
// Concurrency: all methods are safe for concurrent use. Each shard's map is
// copied on write under the shard's mutex and published through an atomic
// pointer, so Acquire of an open table takes no lock: a map load, a lookup
// and an atomic increment, no allocation. (Writes copy a map of about
// maxOpen/16 entries; they happen on misses, which open a file anyway.)
// Concurrent Acquires of a table not yet open share one open: the first
// opens it, the rest wait.
type TableCache struct {
	fs         vfs.FS
	dir        string
	coldDir    string // where cold-tier tables live; "" means dir
	blockCache *BlockCache
	maxOpen    int64

	shards  [tableCacheShards]tableCacheShard
	handles sync.Map // *Table → *tableEntry, so Release finds its entry
	open    atomic.Int64
	hand    atomic.Uint32 // next shard the eviction clock visits
	closed  atomic.Bool

	errMu    sync.Mutex
	closeErr error // first error from closing a table file

	damage damageRegistry // tables found damaged (damage.go)
}

type tableCacheShard struct {
	mu sync.Mutex // serializes writers of m
	m  atomic.Pointer[map[layout.FileNum]*tableEntry]
}

// tableMap is a shard's current map; read it without the lock, never
// modify it.
func (s *tableCacheShard) tableMap() map[layout.FileNum]*tableEntry { return *s.m.Load() }

// update replaces the shard's map with a copy edited by fn. Called with mu
// held.
func (s *tableCacheShard) update(fn func(m map[layout.FileNum]*tableEntry)) {
	old := s.tableMap()
	m := make(map[layout.FileNum]*tableEntry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	fn(m)
	s.m.Store(&m)
}

// tableEntry is one table, open or being opened. refs counts holders, plus
// one while the entry is in its shard's map; whoever removes it from the
// map drops that reference, and whoever drops the last closes the table. A
// reader of a stale map may find an entry already at zero: tryRef refuses
// it.
type tableEntry struct {
	num        layout.FileNum
	cold       bool
	refs       atomic.Int32
	referenced atomic.Bool   // CLOCK bit: acquired since the hand passed
	ready      chan struct{} // closed once t or err is set
	isReady    atomic.Bool   // set with ready; spares the hot path a channel lock
	t          *Table
	err        error
}

// NewTableCache returns a cache that opens tables in dir through fs with
// blockCache (which may be nil) and keeps at most maxOpen of them open
// (0: 1000). More may be open while held.
func NewTableCache(fs vfs.FS, dir string, blockCache *BlockCache, maxOpen int) *TableCache {
	if maxOpen <= 0 {
		maxOpen = defaultMaxOpenTables
	}
	tc := &TableCache{fs: fs, dir: dir, blockCache: blockCache, maxOpen: int64(maxOpen)}
	for i := range tc.shards {
		m := make(map[layout.FileNum]*tableEntry)
		tc.shards[i].m.Store(&m)
	}
	return tc
}

func (tc *TableCache) shard(num layout.FileNum) *tableCacheShard {
	return &tc.shards[uint64(num)&(tableCacheShards-1)]
}

// Acquire returns the open table for meta, opening it on a miss. The
// caller must Release it.
func (tc *TableCache) Acquire(meta *FileMeta) (*Table, error) {
	if tc.closed.Load() {
		return nil, errs.ErrClosed
	}
	s := tc.shard(meta.Num)
	e := s.tableMap()[meta.Num]
	if e == nil || !e.tryRef() {
		var opener bool
		if e, opener = tc.insert(s, meta.Num, meta.Cold); e == nil {
			return nil, errs.ErrClosed
		}
		if opener {
			tc.openEntry(s, e)
		}
	}
	if !e.isReady.Load() {
		<-e.ready
	}
	if e.err != nil {
		tc.unref(e)
		return nil, e.err
	}
	if !e.referenced.Load() {
		e.referenced.Store(true)
	}
	return e.t, nil
}

// insert returns the entry for num with a reference for the caller,
// creating it if it is still absent; opener says the caller created it and
// must open it. It returns nil once the cache is closed.
func (tc *TableCache) insert(s *tableCacheShard, num layout.FileNum, cold bool) (e *tableEntry, opener bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tc.closed.Load() { // checked under the lock so Close sees every entry
		return nil, false
	}
	if e = s.tableMap()[num]; e != nil {
		// In the current map, so the map's reference keeps it alive.
		e.refs.Add(1)
		return e, false
	}
	e = &tableEntry{num: num, cold: cold, ready: make(chan struct{})}
	e.refs.Store(2) // the map's and the caller's
	s.update(func(m map[layout.FileNum]*tableEntry) { m[num] = e })
	tc.open.Add(1)
	return e, true
}

// tryRef adds a reference unless the entry is already dead.
func (e *tableEntry) tryRef() bool {
	for {
		n := e.refs.Load()
		if n <= 0 {
			return false
		}
		if e.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// SetColdDir tells the cache where cold-tier tables live. Call it before
// the first Acquire.
func (tc *TableCache) SetColdDir(dir string) { tc.coldDir = dir }

// TableDir returns the directory that holds a table of the given tier.
func TableDir(dir, coldDir string, cold bool) string {
	if cold && coldDir != "" {
		return coldDir
	}
	return dir
}

func (tc *TableCache) openEntry(s *tableCacheShard, e *tableEntry) {
	name := layout.Path(TableDir(tc.dir, tc.coldDir, e.cold), layout.TypeTable, e.num)
	f, err := tc.fs.Open(name)
	if err != nil {
		err = fmt.Errorf("lsm: open table: %w", err)
	} else if e.t, err = OpenTable(f, name, e.num, tc.blockCache); err != nil {
		f.Close()
	}
	if err != nil {
		tc.noteDamage(e.num, name, err)
	}
	e.err = err
	if e.t != nil {
		e.t.tc = tc
		tc.handles.Store(e.t, e)
	}
	e.isReady.Store(true)
	close(e.ready)
	if err != nil {
		// Forget the failure so a later Acquire retries.
		tc.remove(s, e)
		return
	}
	tc.evictIfFull()
}

// remove takes e out of its shard's map if it is still there and drops the
// map's reference.
func (tc *TableCache) remove(s *tableCacheShard, e *tableEntry) {
	s.mu.Lock()
	mine := s.tableMap()[e.num] == e
	if mine {
		s.update(func(m map[layout.FileNum]*tableEntry) { delete(m, e.num) })
		tc.open.Add(-1)
	}
	s.mu.Unlock()
	if mine {
		tc.unref(e)
	}
}

func (tc *TableCache) unref(e *tableEntry) {
	switch n := e.refs.Add(-1); {
	case n == 0:
		if e.t != nil {
			tc.handles.Delete(e.t)
			if err := e.t.Close(); err != nil {
				tc.errMu.Lock()
				if tc.closeErr == nil {
					tc.closeErr = err
				}
				tc.errMu.Unlock()
			}
		}
	case n < 0:
		panic("lsm: table cache entry released more often than acquired")
	}
}

// Release returns a table obtained from Acquire.
func (tc *TableCache) Release(t *Table) {
	e, ok := tc.handles.Load(t)
	if !ok {
		panic("lsm: TableCache.Release of a table it did not hand out")
	}
	tc.unref(e.(*tableEntry))
	// Evictions skip held tables; catch up once they are released.
	if tc.open.Load() > tc.maxOpen {
		tc.evictIfFull()
	}
}

// Evict drops table num from the cache (its file is being deleted); the
// file is closed once no holder is left.
func (tc *TableCache) Evict(num layout.FileNum) {
	s := tc.shard(num)
	if e := s.tableMap()[num]; e != nil {
		tc.remove(s, e)
	}
}

// evictIfFull runs the clock until at most maxOpen tables are cached, or
// until two sweeps found nothing to evict (every table is held or opening).
func (tc *TableCache) evictIfFull() {
	for spins := 0; tc.open.Load() > tc.maxOpen && spins < 2*tableCacheShards; spins++ {
		s := &tc.shards[tc.hand.Add(1)&(tableCacheShards-1)]
		var victim *tableEntry
		s.mu.Lock()
		for _, e := range s.tableMap() {
			if !e.isReady.Load() {
				continue // still opening
			}
			if e.refs.Load() > 1 {
				continue // held: evicting would only open it twice
			}
			if e.referenced.Load() {
				e.referenced.Store(false)
				continue
			}
			victim = e
			break
		}
		if victim != nil {
			s.update(func(m map[layout.FileNum]*tableEntry) { delete(m, victim.num) })
			tc.open.Add(-1)
		}
		s.mu.Unlock()
		if victim != nil {
			tc.unref(victim)
			spins = 0
		}
	}
}

// Close drops every table; files still held close at their last Release.
// Later Acquires return ErrClosed. It returns the first error met closing a
// table file.
func (tc *TableCache) Close() error {
	if tc.closed.Swap(true) {
		return nil
	}
	var entries []*tableEntry
	for i := range tc.shards {
		s := &tc.shards[i]
		s.mu.Lock()
		for _, e := range s.tableMap() {
			entries = append(entries, e)
			tc.open.Add(-1)
		}
		empty := make(map[layout.FileNum]*tableEntry)
		s.m.Store(&empty)
		s.mu.Unlock()
	}
	for _, e := range entries {
		tc.unref(e)
	}
	tc.errMu.Lock()
	defer tc.errMu.Unlock()
	return tc.closeErr
}

// heldTableIter wraps a table's iterator with the hold on the table (and on the
// Version it came from), both dropped by Close.
type heldTableIter struct {
	InternalIterator
	tc     *TableCache
	t      *Table
	v      *Version
	closed bool
}

func (it *heldTableIter) Close() error {
	if it.closed {
		return it.Err()
	}
	it.closed = true
	err := it.InternalIterator.Close()
	it.tc.Release(it.t)
	if it.v != nil {
		it.v.Unref()
	}
	return err
}

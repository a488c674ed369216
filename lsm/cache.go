package lsm

// This file owns the block cache: decoded data blocks shared by every table
// of a database, keyed by (file number, block offset).

import (
	"sync"

	"github.com/plures/pluresdb/internal/layout"
)

// cacheEntryOverhead approximates the memory an entry costs beyond its
// block's bytes (entry, block header, map slot), so many tiny blocks
// cannot overrun the capacity.
const cacheEntryOverhead = 128

// BlockCache holds decoded blocks (decompressed, checksum verified, restart
// array located), so a hit does no decoding work. It is split into shards,
// each an LRU list with its own mutex and an equal part of the capacity,
// so concurrent readers rarely contend.
//
// The LRU order is approximate: a hit moves its entry to the front only if
// at least a quarter of the shard's entries were inserted since the entry
// last moved. Hot blocks then cost a hit no writes to neighbouring entries
// (each a likely cache miss), and a block still cannot drift to the tail
// while it is being read.
//
// BlockCache is safe for concurrent use. Cached blocks are immutable; an
// evicted block is simply dropped and the garbage collector frees it once
// no reader holds it, so there are no reference counts.
type BlockCache struct {
	shards   []cacheShard
	mask     uint64
	capacity int64
}

// CacheStats is a snapshot of a cache's counters.
type CacheStats struct {
	Hits, Misses    uint64
	Bytes, Capacity int64 // bytes held (with per-entry overhead) and the limit
}

type cacheKey struct {
	file   layout.FileNum
	offset uint64
}

type cacheEntry struct {
	key        cacheKey
	blk        *block
	size       int64
	moved      uint64 // shard.inserts when the entry last went to the front
	prev, next *cacheEntry
}

// cacheShard is one LRU list; mu guards every field.
type cacheShard struct {
	mu           sync.Mutex
	m            map[cacheKey]*cacheEntry
	lru          cacheEntry // sentinel: lru.next is the most recently used
	bytes        int64
	capacity     int64
	hits, misses uint64
	inserts      uint64
	_            [64]byte // keep shards' mutexes on separate cache lines
}

// NewBlockCache returns a cache holding up to capacityBytes. A capacity <=
// 0 disables caching: every read decodes its block.
func NewBlockCache(capacityBytes int64) *BlockCache {
	c := &BlockCache{capacity: max(capacityBytes, 0)}
	if capacityBytes <= 0 {
		return c
	}
	// Up to 32 shards, but keep each at least 1 MiB so a shard holds a
	// useful number of blocks.
	n := 32
	for n > 1 && capacityBytes/int64(n) < 1<<20 {
		n /= 2
	}
	c.shards = make([]cacheShard, n)
	c.mask = uint64(n - 1)
	for i := range c.shards {
		s := &c.shards[i]
		s.m = make(map[cacheKey]*cacheEntry)
		s.lru.next, s.lru.prev = &s.lru, &s.lru
		s.capacity = capacityBytes / int64(n)
	}
	return c
}

func (c *BlockCache) shard(k cacheKey) *cacheShard {
	h := uint64(k.file)*0x9e3779b97f4a7c15 ^ k.offset
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return &c.shards[h&c.mask]
}

// get returns the cached block or nil. It does not allocate.
func (c *BlockCache) get(file layout.FileNum, offset uint64) *block {
	if c == nil || len(c.shards) == 0 {
		return nil
	}
	k := cacheKey{file, offset}
	s := c.shard(k)
	s.mu.Lock()
	e := s.m[k]
	if e == nil {
		s.misses++
		s.mu.Unlock()
		return nil
	}
	s.hits++
	if s.inserts-e.moved > uint64(len(s.m)/4) {
		e.unlink()
		s.pushFront(e)
	}
	s.mu.Unlock()
	return e.blk
}

// insert adds a decoded block, evicting the least recently used blocks of
// its shard as needed. A block larger than a shard is not cached.
func (c *BlockCache) insert(file layout.FileNum, offset uint64, b *block) {
	if c == nil || len(c.shards) == 0 {
		return
	}
	k := cacheKey{file, offset}
	s := c.shard(k)
	size := int64(len(b.data)) + cacheEntryOverhead
	if size > s.capacity {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[k]; e != nil {
		// Another reader decoded the same block; keep the cached copy.
		return
	}
	e := &cacheEntry{key: k, blk: b, size: size}
	s.inserts++
	s.m[k] = e
	s.pushFront(e)
	s.bytes += size
	for s.bytes > s.capacity {
		s.remove(s.lru.prev)
	}
}

// EvictFile drops every block of table num (after the table is deleted).
func (c *BlockCache) EvictFile(num layout.FileNum) {
	if c == nil {
		return
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for e := s.lru.next; e != &s.lru; {
			next := e.next
			if e.key.file == num {
				s.remove(e)
			}
			e = next
		}
		s.mu.Unlock()
	}
}

// Stats returns the cache's counters summed over its shards.
func (c *BlockCache) Stats() CacheStats {
	if c == nil {
		return CacheStats{}
	}
	st := CacheStats{Capacity: c.capacity}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.Hits += s.hits
		st.Misses += s.misses
		st.Bytes += s.bytes
		s.mu.Unlock()
	}
	return st
}

func (s *cacheShard) pushFront(e *cacheEntry) {
	e.moved = s.inserts
	e.prev = &s.lru
	e.next = s.lru.next
	e.next.prev = e
	s.lru.next = e
}

func (s *cacheShard) remove(e *cacheEntry) {
	e.unlink()
	delete(s.m, e.key)
	s.bytes -= e.size
}

func (e *cacheEntry) unlink() {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

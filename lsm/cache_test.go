package lsm

import (
	"sync"
	"testing"

	"github.com/plures/pluresdb/internal/layout"
)

func testBlock(size int) *block { return &block{data: make([]byte, size)} }

func TestBlockCacheBasics(t *testing.T) {
	c := NewBlockCache(1 << 20) // one shard of 1 MiB
	if len(c.shards) != 1 {
		t.Fatalf("%d shards for 1 MiB", len(c.shards))
	}
	b := testBlock(1000)
	if c.get(1, 0) != nil {
		t.Fatal("hit in an empty cache")
	}
	c.insert(1, 0, b)
	if c.get(1, 0) != b || c.get(1, 4096) != nil || c.get(2, 0) != nil {
		t.Fatal("lookup by (file, offset) wrong")
	}
	st := c.Stats()
	if st.Hits != 1 || st.Misses != 3 || st.Bytes != 1000+cacheEntryOverhead || st.Capacity != 1<<20 {
		t.Fatalf("stats %+v", st)
	}
	c.insert(1, 0, testBlock(5)) // a racing reader's copy: the first stays
	if c.get(1, 0) != b {
		t.Fatal("duplicate insert replaced the cached block")
	}
	if c.insert(1, 1, testBlock(2<<20)); c.get(1, 1) != nil {
		t.Fatal("block larger than the shard was cached")
	}
}

func TestBlockCacheEvictsToCapacity(t *testing.T) {
	const blockSize = 4096
	c := NewBlockCache(1 << 20)
	per := int64(blockSize + cacheEntryOverhead)
	fits := (1 << 20) / per
	for i := 0; i < 1000; i++ {
		c.insert(7, uint64(i)*blockSize, testBlock(blockSize))
		if c.get(7, 0) == nil { // block 0 stays hot while others stream through
			t.Fatalf("hot block 0 evicted after %d inserts", i)
		}
		if st := c.Stats(); st.Bytes > 1<<20 {
			t.Fatalf("cache holds %d bytes, capacity 1 MiB", st.Bytes)
		}
	}
	if got := int64(len(c.shards[0].m)); got != fits {
		t.Fatalf("cache holds %d blocks, want %d", got, fits)
	}
	// The oldest cold blocks went first.
	if c.get(7, blockSize) != nil || c.get(7, 999*blockSize) == nil {
		t.Fatal("eviction is not least-recently-used")
	}
}

func TestBlockCacheEvictFile(t *testing.T) {
	c := NewBlockCache(64 << 20)
	for f := layout.FileNum(1); f <= 3; f++ {
		for i := uint64(0); i < 100; i++ {
			c.insert(f, i*100, testBlock(100))
		}
	}
	c.EvictFile(2)
	for i := uint64(0); i < 100; i++ {
		if c.get(2, i*100) != nil || c.get(1, i*100) == nil || c.get(3, i*100) == nil {
			t.Fatal("EvictFile dropped the wrong blocks")
		}
	}
	if st := c.Stats(); st.Bytes != 200*(100+cacheEntryOverhead) {
		t.Fatalf("bytes after EvictFile: %d", st.Bytes)
	}
}

func TestBlockCacheDisabled(t *testing.T) {
	for _, c := range []*BlockCache{NewBlockCache(0), NewBlockCache(-1), nil} {
		c.insert(1, 0, testBlock(10))
		if c.get(1, 0) != nil {
			t.Fatal("disabled cache returned a block")
		}
		c.EvictFile(1)
		if st := c.Stats(); st.Bytes != 0 || st.Capacity != 0 {
			t.Fatalf("disabled cache stats %+v", st)
		}
	}
}

func TestBlockCacheConcurrent(t *testing.T) {
	c := NewBlockCache(4 << 20)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				off := uint64((i * (g + 1)) % 3000)
				if b := c.get(layout.FileNum(g%3), off); b == nil {
					c.insert(layout.FileNum(g%3), off, testBlock(1000))
				} else if len(b.data) != 1000 {
					t.Error("wrong block")
					return
				}
				if i%1000 == 0 {
					c.EvictFile(layout.FileNum(g % 3))
				}
			}
		}(g)
	}
	wg.Wait()
	if st := c.Stats(); st.Bytes > 4<<20 || st.Hits == 0 {
		t.Fatalf("stats after concurrent use %+v", st)
	}
}

func BenchmarkBlockCacheHit(b *testing.B) {
	c := NewBlockCache(256 << 20)
	const n = 1 << 14
	for i := uint64(0); i < n; i++ {
		c.insert(1, i*4096, testBlock(4096))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if c.get(1, uint64(i&(n-1))*4096) == nil {
			b.Fatal("miss")
		}
	}
}

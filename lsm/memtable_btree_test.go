package lsm

// The contender for the memtable: a github.com/google/btree BTreeG of
// entries behind an RWMutex, the simplest memtable one could write. It lives
// in a test file only so the benchmarks below can compare it with the arena
// skiplist:
//
//	go test ./lsm -run '^$' -bench 'BenchmarkMemtable' -benchmem
//
// Every benchmark uses 1M random 16-byte keys and 100-byte values.

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"sync"
	"testing"

	"github.com/google/btree"
)

type btreeMemItem struct {
	ukey    []byte
	trailer uint64
	value   []byte
}

func btreeMemLess(a, b btreeMemItem) bool {
	if c := bytes.Compare(a.ukey, b.ukey); c != 0 {
		return c < 0
	}
	return a.trailer > b.trailer
}

// btreeMemtable: a BTreeG guarded by an RWMutex. Add copies key and value
// (callers reuse their buffers), as the skiplist does into its arena.
type btreeMemtable struct {
	mu   sync.RWMutex
	tree *btree.BTreeG[btreeMemItem]
}

func newBTreeMemtable() *btreeMemtable {
	return &btreeMemtable{tree: btree.NewG(32, btreeMemLess)}
}

func (m *btreeMemtable) Add(seq SeqNum, kind Kind, ukey, value []byte) {
	buf := make([]byte, len(ukey)+len(value))
	copy(buf, ukey)
	copy(buf[len(ukey):], value)
	item := btreeMemItem{ukey: buf[:len(ukey):len(ukey)], trailer: MakeTrailer(seq, kind), value: buf[len(ukey):]}
	m.mu.Lock()
	m.tree.ReplaceOrInsert(item)
	m.mu.Unlock()
}

func (m *btreeMemtable) Get(ukey []byte, snap SeqNum) (value []byte, kind Kind, seq SeqNum, found bool) {
	m.mu.RLock()
	m.tree.AscendGreaterOrEqual(btreeMemItem{ukey: ukey, trailer: MakeTrailer(snap, KindMax)}, func(it btreeMemItem) bool {
		if bytes.Equal(it.ukey, ukey) {
			value, kind, seq, found = it.value, Kind(it.trailer&0xff), SeqNum(it.trailer>>8), true
		}
		return false
	})
	m.mu.RUnlock()
	return
}

// btreeMemIter is an InternalIterator over the btree. BTreeG only iterates
// with callbacks, so it copies the next batch of items under the read lock
// and re-seeks after the last one when the batch is used up.
type btreeMemIter struct {
	m     *btreeMemtable
	batch []btreeMemItem
	pos   int
	done  bool // the last batch was short: no more after it
	key   []byte
}

const btreeMemIterBatch = 64

func (it *btreeMemIter) fill(pivot btreeMemItem, skipFirstEqual bool) bool {
	it.batch, it.pos = it.batch[:0], 0
	it.m.mu.RLock()
	it.m.tree.AscendGreaterOrEqual(pivot, func(item btreeMemItem) bool {
		if skipFirstEqual && len(it.batch) == 0 && !btreeMemLess(pivot, item) {
			return true
		}
		it.batch = append(it.batch, item)
		return len(it.batch) < btreeMemIterBatch
	})
	it.m.mu.RUnlock()
	it.done = len(it.batch) < btreeMemIterBatch
	return it.setKey()
}

func (it *btreeMemIter) setKey() bool {
	if it.pos >= len(it.batch) {
		return false
	}
	item := &it.batch[it.pos]
	it.key = binary.LittleEndian.AppendUint64(append(it.key[:0], item.ukey...), item.trailer)
	return true
}

func (it *btreeMemIter) First() bool { return it.fill(btreeMemItem{}, false) }
func (it *btreeMemIter) SeekGE(ikey []byte) bool {
	return it.fill(btreeMemItem{ukey: UserKey(ikey), trailer: Trailer(ikey)}, false)
}
func (it *btreeMemIter) Next() bool {
	if it.pos >= len(it.batch) {
		return false
	}
	it.pos++
	if it.pos < len(it.batch) {
		return it.setKey()
	}
	if it.done {
		return false
	}
	return it.fill(it.batch[it.pos-1], true)
}

// Backward moves keep a batch of one item; a Next after them refills
// forward from it.
func (it *btreeMemIter) one(item btreeMemItem, ok bool) bool {
	it.batch, it.pos, it.done = it.batch[:0], 0, false
	if ok {
		it.batch = append(it.batch, item)
	}
	return it.setKey()
}
func (it *btreeMemIter) Last() bool {
	it.m.mu.RLock()
	item, ok := it.m.tree.Max()
	it.m.mu.RUnlock()
	return it.one(item, ok)
}
func (it *btreeMemIter) seekLT(pivot btreeMemItem) bool {
	var item btreeMemItem
	ok := false
	it.m.mu.RLock()
	it.m.tree.DescendLessOrEqual(pivot, func(i btreeMemItem) bool {
		if !btreeMemLess(i, pivot) {
			return true
		}
		item, ok = i, true
		return false
	})
	it.m.mu.RUnlock()
	return it.one(item, ok)
}
func (it *btreeMemIter) SeekLT(ikey []byte) bool {
	return it.seekLT(btreeMemItem{ukey: UserKey(ikey), trailer: Trailer(ikey)})
}
func (it *btreeMemIter) Prev() bool {
	if it.pos >= len(it.batch) {
		return false
	}
	return it.seekLT(it.batch[it.pos])
}
func (it *btreeMemIter) Valid() bool   { return it.pos < len(it.batch) }
func (it *btreeMemIter) Key() []byte   { return it.key }
func (it *btreeMemIter) Value() []byte { return it.batch[it.pos].value }
func (it *btreeMemIter) Err() error    { return nil }
func (it *btreeMemIter) Close() error  { return nil }

func TestBTreeMemtableContender(t *testing.T) {
	// Keep the contender honest: it must agree with the skiplist.
	rng := memTestRand(t)
	es := randomMemTestEntries(rng, 2000, 300)
	m := newBTreeMemtable()
	for _, e := range es {
		m.Add(e.seq, e.kind, e.ukey, e.value)
	}
	sortMemTestEntries(es)
	it := &btreeMemIter{m: m}
	checkIterMatches(t, it, it.First(), es)
	v, _, seq, found := m.Get(es[5].ukey, es[5].seq)
	if !found || seq != es[5].seq || !bytes.Equal(v, es[5].value) {
		t.Fatalf("Get = %q/%d/%v", v, seq, found)
	}
}

const memBenchEntries = 1 << 20

// memBenchKeys: 1M random 16-byte keys and one 100-byte value.
var memBenchKeys = sync.OnceValues(func() ([][]byte, []byte) {
	rng := rand.New(rand.NewSource(1))
	keys := make([][]byte, memBenchEntries)
	for i := range keys {
		keys[i] = make([]byte, 16)
		rng.Read(keys[i])
	}
	value := make([]byte, 100)
	rng.Read(value)
	return keys, value
})

// memBenchArena fits memBenchEntries entries whatever their tower heights.
const memBenchArena = memBenchEntries * (16 + 100 + MemtableEntryOverhead)

var memBenchSkiplist = sync.OnceValue(func() *Memtable {
	keys, value := memBenchKeys()
	m := NewMemtable(memBenchArena)
	for i, k := range keys {
		if err := m.Add(SeqNum(i+1), KindSet, k, value); err != nil {
			panic(err)
		}
	}
	return m
})

var memBenchBTree = sync.OnceValue(func() *btreeMemtable {
	keys, value := memBenchKeys()
	m := newBTreeMemtable()
	for i, k := range keys {
		m.Add(SeqNum(i+1), KindSet, k, value)
	}
	return m
})

// memInserter is what the skiplist insert benchmarks time: a Memtable's
// Add, or an Inserter's.
type memInserter interface {
	Add(seq SeqNum, kind Kind, ukey, value []byte) error
}

// benchSkiplistInsert times one Add of key(i) per op through what open
// makes of a fresh memtable, one every memBenchEntries entries (flushing
// the previous inserter, if it is an Inserter).
func benchSkiplistInsert(b *testing.B, key func(i int) []byte, value []byte, open func(*Memtable) memInserter) {
	var in memInserter
	b.ReportAllocs()
	b.SetBytes(16 + 100)
	for i := 0; b.Loop(); i++ {
		if i%memBenchEntries == 0 {
			b.StopTimer()
			if f, ok := in.(*Inserter); ok {
				if err := f.Flush(); err != nil {
					b.Fatal(err)
				}
			}
			in = open(NewMemtable(memBenchArena))
			b.StartTimer()
		}
		if err := in.Add(SeqNum(i+1), KindSet, key(i), value); err != nil {
			b.Fatal(err)
		}
	}
}

// Insert: one op is one Add; a fresh memtable every 1M entries.
func BenchmarkMemtableSkiplistInsert(b *testing.B) {
	keys, value := memBenchKeys()
	benchSkiplistInsert(b, func(i int) []byte { return keys[i%memBenchEntries] }, value,
		func(m *Memtable) memInserter { return m })
}

// Insert in ascending order, one Add at a time: the splice's case.
func BenchmarkMemtableSkiplistInsertSequential(b *testing.B) {
	key := make([]byte, 16)
	benchSkiplistInsert(b, func(i int) []byte {
		binary.BigEndian.PutUint64(key[8:], uint64(i))
		return key
	}, make([]byte, 100), func(m *Memtable) memInserter { return m })
}

// Insert through an Inserter, in groups.
func BenchmarkMemtableSkiplistInsertGroups(b *testing.B) {
	keys, value := memBenchKeys()
	benchSkiplistInsert(b, func(i int) []byte { return keys[i%memBenchEntries] }, value,
		func(m *Memtable) memInserter { return m.NewInserter() })
}

func BenchmarkMemtableBTreeInsert(b *testing.B) {
	keys, value := memBenchKeys()
	var m *btreeMemtable
	b.ReportAllocs()
	b.SetBytes(16 + 100)
	b.ResetTimer()
	for i := range b.N {
		if i%memBenchEntries == 0 {
			b.StopTimer()
			m = newBTreeMemtable()
			b.StartTimer()
		}
		m.Add(SeqNum(i+1), KindSet, keys[i%memBenchEntries], value)
	}
}

// Get: point reads of present keys, in random order, in a 1M-entry memtable.
func BenchmarkMemtableSkiplistGet(b *testing.B) {
	keys, _ := memBenchKeys()
	m := memBenchSkiplist()
	order := rand.New(rand.NewSource(2)).Perm(memBenchEntries)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, _, _, found := m.Get(keys[order[i%memBenchEntries]], MaxSeqNum); !found {
			b.Fatal("not found")
		}
	}
}

func BenchmarkMemtableBTreeGet(b *testing.B) {
	keys, _ := memBenchKeys()
	m := memBenchBTree()
	order := rand.New(rand.NewSource(2)).Perm(memBenchEntries)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, _, _, found := m.Get(keys[order[i%memBenchEntries]], MaxSeqNum); !found {
			b.Fatal("not found")
		}
	}
}

// Iter: one op is one Next (Key and Value read) through InternalIterator.
func BenchmarkMemtableSkiplistIter(b *testing.B) {
	benchmarkMemIter(b, memBenchSkiplist().NewIter())
}

func BenchmarkMemtableBTreeIter(b *testing.B) {
	benchmarkMemIter(b, &btreeMemIter{m: memBenchBTree()})
}

func benchmarkMemIter(b *testing.B, it InternalIterator) {
	it.First()
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if !it.Next() {
			it.First()
		}
		n += len(it.Key()) + len(it.Value())
	}
	if n == 0 {
		b.Fatal("iterated nothing")
	}
}

// BTreeAscend: the btree's own callback iteration, its best case (no
// InternalIterator, no lock per batch). One op is one item.
func BenchmarkMemtableBTreeAscend(b *testing.B) {
	m := memBenchBTree()
	b.ReportAllocs()
	b.ResetTimer()
	left, n := b.N, 0
	for left > 0 {
		m.mu.RLock()
		m.tree.Ascend(func(it btreeMemItem) bool {
			n += len(it.ukey) + len(it.value)
			left--
			return left > 0
		})
		m.mu.RUnlock()
	}
	if n == 0 {
		b.Fatal("iterated nothing")
	}
}

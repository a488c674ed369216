package lsm

// The memtable holds the newest writes in memory, sorted, until they are
// flushed to an L0 sstable. It is an arena skiplist (skiplist.go): a fixed
// amount of memory chosen at creation, no per-entry Go allocation, and reads
// that never block on the writer.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/plures/pluresdb/internal/prefetch"
)

// ErrMemtableFull is returned by Add when the entry does not fit in the
// memtable's arena. The DB checks Room before applying a batch, so in
// practice it means the entry is larger than an empty memtable's Capacity.
var ErrMemtableFull = errors.New("lsm: memtable is full")

// MemtableEntryOverhead bounds the arena bytes an entry takes beyond
// len(ukey)+len(value): the node header, a full-height tower and alignment
// padding. A batch fits if Room() >= sum(len(ukey)+len(value)+MemtableEntryOverhead).
const MemtableEntryOverhead = arenaNodeHeader + skiplistMaxHeight*4 + arenaAlign - 1

// Memtable is an in-memory sorted set of internal keys and their values.
//
// Concurrency: Add must be serialized by the caller (the DB calls it under
// its commit mutex). Get, NewIter, iterators, Len, Size, Room and Empty are
// safe at any time, from any number of goroutines, concurrently with Add.
// An entry becomes visible to readers atomically, fully written.
//
// Values returned by Get and iterators alias the arena. They are never
// modified once written, and stay valid until the owner recycles the
// Memtable (Recycle) and, for an iterator's, until it is closed.
type Memtable struct {
	list *skiplist

	// refs counts the owner (until Recycle) and the open iterators;
	// recycle receives the arena when it drops to zero after Recycle.
	refs    atomic.Int32
	recycle atomic.Pointer[func([]uint64)]
}

// NewMemtable returns an empty memtable backed by one arena of about
// arenaSize bytes (e.g. 64 MiB), allocated now. Sizes are clamped to what
// uint32 offsets can address (4 GiB) and to at least room for the list head.
func NewMemtable(arenaSize int) *Memtable {
	return NewMemtableIn(arenaSize, nil)
}

// NewMemtableIn is NewMemtable in a recycled arena (one that Recycle
// handed over), when it is of the size arenaSize needs; otherwise, or
// with nil, it allocates one. Reusing an arena saves the page faults and
// the zeroing of a fresh one.
func NewMemtableIn(arenaSize int, arena []uint64) *Memtable {
	m := &Memtable{list: newSkiplistIn(arenaSize, arena)}
	m.refs.Store(1)
	return m
}

// Recycle gives up the caller's hold on m and has f receive m's arena
// once nothing uses m any more: at once, or when the last iterator open
// on it is closed. Values read from m (Get, iterators) are invalid from
// then on, so its owner calls Recycle only once m is unreachable for new
// readers, and readers copy what they keep. Nothing may use m after
// Recycle but the iterators already open.
func (m *Memtable) Recycle(f func(arena []uint64)) {
	m.recycle.Store(&f)
	m.unref()
}

func (m *Memtable) unref() {
	if m.refs.Add(-1) == 0 {
		if f := m.recycle.Load(); f != nil {
			(*f)(m.list.words)
		}
	}
}

// Add inserts the entry (ukey, seq, kind) → value, copying ukey and value
// into the arena. It returns ErrMemtableFull, having changed nothing, if the
// entry does not fit. Adding an internal key that is already present (same
// user key, seq and kind) stores a second entry that sorts before the first,
// so it shadows it. Only one goroutine may call Add at a time.
func (m *Memtable) Add(seq SeqNum, kind Kind, ukey, value []byte) error {
	if seq > MaxSeqNum || kind > KindMax {
		return fmt.Errorf("lsm: memtable add: invalid seq %d or kind %v", seq, kind)
	}
	if !m.list.add(ukey, MakeTrailer(seq, kind), value) {
		return ErrMemtableFull
	}
	return nil
}

// Inserter adds entries to a Memtable in groups: the searches of a group
// overlap their cache misses, which makes a run of random inserts into a
// large memtable about twice as fast as Add one at a time. Entries are
// added in the order given, exactly as Add would add them; keys and values
// are copied when Flush (or a full group) inserts them, so they must stay
// unchanged until then. Only one goroutine may use an Inserter, or Add, on
// a memtable at a time.
type Inserter struct {
	m  *Memtable
	es [groupSize]groupEntry
	n  int
}

// NewInserter returns an Inserter for m.
func (m *Memtable) NewInserter() *Inserter { return &Inserter{m: m} }

// Add queues the entry (ukey, seq, kind) → value and inserts the queue
// once a group is full. It returns ErrMemtableFull, having inserted none
// of the group, if the group does not fit.
func (in *Inserter) Add(seq SeqNum, kind Kind, ukey, value []byte) error {
	if seq > MaxSeqNum || kind > KindMax {
		return fmt.Errorf("lsm: memtable add: invalid seq %d or kind %v", seq, kind)
	}
	in.es[in.n] = groupEntry{ukey: ukey, trailer: MakeTrailer(seq, kind), value: value}
	in.n++
	if in.n == groupSize {
		return in.Flush()
	}
	return nil
}

// Flush inserts the queued entries.
func (in *Inserter) Flush() error {
	n := in.n
	in.n = 0
	if n == 0 {
		return nil
	}
	ok := in.m.list.addGroup(in.es[:n])
	clear(in.es[:n])
	if !ok {
		return ErrMemtableFull
	}
	return nil
}

// Get returns the newest entry for ukey whose seq is <= snap. A KindDelete
// entry is returned as found (kind tells the caller it is a tombstone); a
// KindMerge entry is returned as is, its older operands are not folded.
func (m *Memtable) Get(ukey []byte, snap SeqNum) (value []byte, kind Kind, seq SeqNum, found bool) {
	if snap > MaxSeqNum {
		snap = MaxSeqNum
	}
	off := m.list.seekGE(ukey, MakeTrailer(snap, KindMax))
	if off == 0 {
		return nil, 0, 0, false
	}
	n := m.list.node(off)
	if !bytes.Equal(m.list.userKey(n), ukey) {
		return nil, 0, 0, false
	}
	return m.list.value(n), Kind(n.trailer & 0xff), SeqNum(n.trailer >> 8), true
}

// Len returns the number of entries.
func (m *Memtable) Len() int { return int(m.list.count.Load()) }

// Size returns the arena bytes in use, including the fixed list head.
func (m *Memtable) Size() int { return int(m.list.used.Load()) }

// Room returns the arena bytes still free.
func (m *Memtable) Room() int { return int(m.list.limit - m.list.used.Load()) }

// Capacity returns the arena bytes usable for entries in an empty memtable
// of this size: an entry larger than Capacity()-MemtableEntryOverhead never
// fits.
func (m *Memtable) Capacity() int { return int(m.list.limit) - arenaHeadEnd }

// Empty reports whether the memtable holds no entries.
func (m *Memtable) Empty() bool { return m.list.count.Load() == 0 }

// NewIter returns an iterator over every entry, in CompareInternal order.
// It sees entries added after its creation if it has not yet passed their
// position. Its Key is assembled in a buffer owned by the iterator.
func (m *Memtable) NewIter() InternalIterator {
	m.refs.Add(1)
	return &memtableIter{m: m, list: m.list}
}

// memtableIter walks the skiplist's level 0. It is used by one goroutine at
// a time, while the memtable's writer may keep adding.
type memtableIter struct {
	m    *Memtable // nil once closed
	list *skiplist
	nd   uint32 // current node; 0 when not positioned
	key  []byte // the current internal key, rebuilt on every move
}

var _ InternalIterator = (*memtableIter)(nil)

func (it *memtableIter) First() bool {
	return it.setNode(it.list.next(it.list.node(it.list.head), 0))
}

// SeekGE moves to the first entry >= ikey. An ikey shorter than a trailer
// is taken as a bare user key and lands on that key's newest entry.
func (it *memtableIter) SeekGE(ikey []byte) bool {
	ukey, trailer := ikey, uint64(1<<64-1)
	if len(ikey) >= TrailerLen {
		ukey, trailer = UserKey(ikey), Trailer(ikey)
	}
	return it.setNode(it.list.seekGE(ukey, trailer))
}

func (it *memtableIter) Next() bool {
	if it.nd == 0 {
		return false
	}
	if !it.setNode(it.list.next(it.list.node(it.nd), 0)) {
		return false
	}
	// Nodes lie in the arena in insertion order, so a walk in key order
	// misses the cache at every step: start loading the next node while
	// the caller works on this one (a flush writes each entry out).
	if nx := it.list.next(it.list.node(it.nd), 0); nx != 0 {
		prefetch.Lines(unsafe.Pointer(&it.list.buf[nx]))
	}
	return true
}

func (it *memtableIter) Last() bool { return it.setNode(it.list.last()) }

// SeekLT moves to the last entry < ikey. An ikey shorter than a trailer
// is taken as a bare user key: the answer is the last entry of a smaller
// user key.
func (it *memtableIter) SeekLT(ikey []byte) bool {
	ukey, trailer := ikey, uint64(1<<64-1)
	if len(ikey) >= TrailerLen {
		ukey, trailer = UserKey(ikey), Trailer(ikey)
	}
	return it.setNode(it.list.seekLT(ukey, trailer))
}

// Prev searches the list for the node before the current one: O(log n).
func (it *memtableIter) Prev() bool {
	if it.nd == 0 {
		return false
	}
	return it.setNode(it.list.prev(it.nd))
}

func (it *memtableIter) setNode(off uint32) bool {
	it.nd = off
	if off == 0 {
		it.key = it.key[:0]
		return false
	}
	n := it.list.node(off)
	it.key = append(it.key[:0], it.list.userKey(n)...)
	it.key = binary.LittleEndian.AppendUint64(it.key, n.trailer)
	return true
}

func (it *memtableIter) Valid() bool { return it.nd != 0 }

func (it *memtableIter) Key() []byte {
	if it.nd == 0 {
		return nil
	}
	return it.key
}

func (it *memtableIter) Value() []byte {
	if it.nd == 0 {
		return nil
	}
	return it.list.value(it.list.node(it.nd))
}

func (it *memtableIter) Err() error { return nil }

func (it *memtableIter) Close() error {
	it.nd = 0
	if it.m != nil {
		it.m.unref()
		it.m = nil
	}
	return nil
}

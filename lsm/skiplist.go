package lsm

// The memtable's skiplist lives in one preallocated byte arena, in the style
// of Badger's skl and Pebble's arenaskl: nodes, keys and values are carved
// out of the arena with a bump allocator and addressed by uint32 offsets, so
// a memtable of a million entries is one pointer-free Go object that the
// collector never scans, freed at once after its flush.
//
// Arena layout (every node starts 8-byte aligned, so two nodes never share
// a machine word and atomic uint32 links are naturally aligned):
//
//	0        8                                              used       limit      len
//	+--------+------------+------------------------+-------+- - - - - -+----------+
//	| unused | head node  | node | key | value | pad | ... |   free    |  slack   |
//	+--------+------------+------------------------+-------+- - - - - -+----------+
//
// Offset 0 is never a node, so a link of 0 means "end of list". The slack
// (one full-size node) keeps the *arenaNode view of the last node inside the
// arena even though its tower is shorter than skiplistMaxHeight.
//
// A node, as stored (tower truncated to the node's height):
//
//	+-------------+-------------+-------------+-------------+----------------------+-----+-------+
//	| trailer u64 | keyOff u32  | keyLen u32  | valLen u32  | tower[height] u32... | key | value |
//	+-------------+-------------+-------------+-------------+----------------------+-----+-------+
//
// The user key and the trailer are stored apart, so comparisons never build
// an internal key.
//
// Concurrency: one writer at a time (the caller serializes Add), any number
// of concurrent readers. A node is completely written, its own tower
// included, before an atomic store links it in at level 0 and then at each
// higher level; readers load links atomically, so a reader that reaches a
// node sees all of it. Levels are linked bottom-up, so at every instant each
// level is a sorted sublist of the level below it.

import (
	"encoding/binary"
	"math"
	"sync/atomic"
	"unsafe"

	"github.com/plures/pluresdb/internal/prefetch"
)

const (
	// skiplistMaxHeight is the tallest tower. With p = 1/4, 20 levels index far
	// more entries than a uint32-addressed arena can hold.
	skiplistMaxHeight = 20

	arenaAlign = 8

	// arenaNodeHeader is the size of a node without its tower.
	arenaNodeHeader = int(unsafe.Offsetof(arenaNode{}.tower))

	// arenaNodeMax is the size of a node with a full tower, before its key
	// and value.
	arenaNodeMax = int(unsafe.Sizeof(arenaNode{}))

	// arenaSlack is kept free at the end of the arena so that viewing any
	// node as a *arenaNode stays inside the allocation (checkptr checks this
	// under -race).
	arenaSlack = arenaNodeMax

	// arenaHeadEnd is where entries start: after the unused word and the
	// head node, aligned.
	arenaHeadEnd = (arenaAlign + arenaNodeMax + arenaAlign - 1) &^ (arenaAlign - 1)
)

// maxArenaSize keeps every offset, plus a key or value length, within
// uint32. A variable, not a constant, so 32-bit builds compile.
var maxArenaSize uint64 = math.MaxUint32 - uint64(arenaSlack) - arenaAlign

// arenaNode is the arena representation of one entry. Only trailer, keyOffset,
// keyLen and valueLen are written before the node is published and never
// change afterwards; tower links change (atomically) as later nodes are
// linked after this one.
type arenaNode struct {
	trailer   uint64
	keyOffset uint32
	keyLen    uint32
	valueLen  uint32
	tower     [skiplistMaxHeight]uint32
}

// skiplist is an arena skiplist of internal keys sorted by CompareInternal.
// See the file comment for its concurrency rules.
type skiplist struct {
	words []uint64 // the arena's allocation
	buf   []byte   // the arena, as bytes; its base is 8-byte aligned
	limit uint32   // allocations end here; beyond is slack
	head  uint32   // offset of the head node (empty key, full tower)

	used   atomic.Uint32 // bytes allocated; read by Room and Size
	height atomic.Uint32 // tallest tower in use, >= 1
	count  atomic.Int64  // entries

	rng uint64 // writer-only state for tower heights

	// The splice add leaves: on every level below spHeight, the nodes
	// before and after the entry it added last (0 after: the end). Writer
	// only; spHeight 0: none (addGroup invalidates it).
	spPrev, spNext [skiplistMaxHeight]uint32
	spHeight       int
}

// arenaWords is the length in words of the arena of a skiplist of
// arenaSize bytes, and that size, clamped to what offsets address and to
// at least room for the head.
func arenaWords(arenaSize int) (words, size int) {
	if arenaSize < arenaHeadEnd {
		arenaSize = arenaHeadEnd
	}
	if uint64(arenaSize) > maxArenaSize {
		arenaSize = int(maxArenaSize)
	}
	arenaSize &^= arenaAlign - 1 // so the aligned bump pointer lands exactly on limit
	return (arenaSize + arenaSlack + 7) / 8, arenaSize
}

// newSkiplistIn returns an empty skiplist in the arena words, when it
// has the right length (a recycled one: see Memtable.Recycle), else in a
// new arena of about arenaSize bytes. A
// recycled arena is not cleared: nothing reads a node before writing it
// but the head, which is.
func newSkiplistIn(arenaSize int, words []uint64) *skiplist {
	n, arenaSize := arenaWords(arenaSize)
	fresh := len(words) != n
	if fresh {
		// Allocate as uint64 words so the base is 8-byte aligned.
		words = make([]uint64, n)
	}
	s := &skiplist{
		words: words,
		buf:   unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(words)*8),
		limit: uint32(arenaSize),
		rng:   0x9e3779b97f4a7c15,
	}
	if fresh && len(s.buf) >= 8<<20 {
		adviseHugePages(s.buf)
	}
	if !fresh {
		clear(s.buf[:arenaHeadEnd])
	}
	s.used.Store(arenaAlign) // offset 0 stays unused: it is the nil link
	head, ok := s.alloc(arenaNodeMax)
	if !ok {
		panic("lsm: arena too small for the skiplist head") // unreachable: arenaSize >= arenaHeadEnd
	}
	s.head = head
	s.height.Store(1)
	return s
}

// alloc reserves size bytes, 8-byte aligned; ok is false if they do not fit.
func (s *skiplist) alloc(size int) (off uint32, ok bool) {
	used := s.used.Load()
	if size < 0 || size > int(s.limit-used) {
		return 0, false
	}
	end := uint64(used) + uint64(size)
	end = (end + arenaAlign - 1) &^ (arenaAlign - 1) // <= limit: limit is aligned
	s.used.Store(uint32(end))
	return used, true
}

func (s *skiplist) node(off uint32) *arenaNode {
	return (*arenaNode)(unsafe.Pointer(&s.buf[off]))
}

func (s *skiplist) next(n *arenaNode, level int) uint32 {
	return atomic.LoadUint32(&n.tower[level])
}

func (s *skiplist) userKey(n *arenaNode) []byte {
	end := n.keyOffset + n.keyLen
	return s.buf[n.keyOffset:end:end]
}

func (s *skiplist) value(n *arenaNode) []byte {
	start := n.keyOffset + n.keyLen
	end := start + n.valueLen
	return s.buf[start:end:end]
}

// compare orders the internal key (ukey, trailer) against node n, like
// CompareInternal.
func (s *skiplist) compare(ukey []byte, trailer uint64, n *arenaNode) int {
	if c := compareKeys(ukey, s.userKey(n)); c != 0 {
		return c
	}
	switch {
	case trailer > n.trailer:
		return -1
	case trailer < n.trailer:
		return 1
	}
	return 0
}

// compareKeys is bytes.Compare, inlined for the short keys of a skiplist
// search: eight bytes at a time, without a call.
func compareKeys(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		x, y := binary.BigEndian.Uint64(a[i:]), binary.BigEndian.Uint64(b[i:])
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	for ; i < n; i++ {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// randomHeight draws a tower height with P(h > k) = 4^-k.
func (s *skiplist) randomHeight() int {
	// xorshift64*: cheap, and only the writer touches it.
	s.rng ^= s.rng >> 12
	s.rng ^= s.rng << 25
	s.rng ^= s.rng >> 27
	r := s.rng * 2685821657736338717
	h := 1
	for h < skiplistMaxHeight && r&3 == 0 {
		h++
		r >>= 2
	}
	return h
}

// seekGE returns the offset of the first node >= (ukey, trailer), or 0.
func (s *skiplist) seekGE(ukey []byte, trailer uint64) uint32 {
	x := s.node(s.head)
	var stop uint32 // a node known to be >= the target (0: the end)
	for level := int(s.height.Load()) - 1; level >= 0; level-- {
		for {
			nx := s.next(x, level)
			// Often the level below leads to the node that stopped us on
			// the level above: skip comparing it again.
			if nx == stop {
				break
			}
			n := s.node(nx)
			if s.compare(ukey, trailer, n) <= 0 {
				stop = nx
				break
			}
			x = n
		}
	}
	// Return the node compared on level 0, not a fresh load of x's link:
	// the writer may have linked a smaller node after x since.
	return stop
}

// seekLT returns the offset of the last node < (ukey, trailer), or 0.
func (s *skiplist) seekLT(ukey []byte, trailer uint64) uint32 {
	x := s.head
	for level := int(s.height.Load()) - 1; level >= 0; level-- {
		for {
			nx := s.next(s.node(x), level)
			if nx == 0 || s.compare(ukey, trailer, s.node(nx)) <= 0 {
				break
			}
			x = nx
		}
	}
	if x == s.head {
		return 0
	}
	return x
}

// last returns the offset of the last node, or 0 if the list is empty.
func (s *skiplist) last() uint32 {
	x := s.head
	for level := int(s.height.Load()) - 1; level >= 0; level-- {
		for {
			nx := s.next(s.node(x), level)
			if nx == 0 {
				break
			}
			x = nx
		}
	}
	if x == s.head {
		return 0
	}
	return x
}

// prev returns the offset of the node linked just before off at level 0,
// or 0 if off is the first. The skiplist has no back links: it searches for
// the last node < off's key, then walks over entries equal to it (Add
// allows duplicates) up to off. Nodes linked meanwhile before off may be
// returned; that is the same view a forward walk would have had.
func (s *skiplist) prev(off uint32) uint32 {
	n := s.node(off)
	x := s.seekLT(s.userKey(n), n.trailer)
	if x == 0 {
		x = s.head
	}
	for {
		nx := s.next(s.node(x), 0)
		if nx == off || nx == 0 || s.compare(s.userKey(n), n.trailer, s.node(nx)) != 0 {
			break
		}
		x = nx
	}
	if x == s.head {
		return 0
	}
	return x
}

// add inserts an entry. Only one goroutine may call add at a time. An entry
// equal to an existing one (same user key and trailer) is placed before it.
func (s *skiplist) add(ukey []byte, trailer uint64, value []byte) bool {
	if len(ukey) > int(s.limit) || len(value) > int(s.limit) {
		return false
	}
	h := s.randomHeight()
	towerEnd := arenaNodeHeader + h*4
	off, ok := s.alloc(towerEnd + len(ukey) + len(value))
	if !ok {
		return false
	}
	n := s.node(off)
	n.trailer = trailer
	n.keyOffset = off + uint32(towerEnd)
	n.keyLen = uint32(len(ukey))
	n.valueLen = uint32(len(value))
	copy(s.buf[n.keyOffset:], ukey)
	copy(s.buf[n.keyOffset+n.keyLen:], value)

	// Find the predecessor and successor at every level. Nothing changes
	// under us: we are the only writer. An entry just after the last one
	// (sequential writes) fits the splice that add left, and needs no
	// search: one or two comparisons instead of a walk from the head.
	var prev, next [skiplistMaxHeight]uint32
	listHeight := int(s.height.Load())
	if s.spHeight == listHeight && s.spliceHolds(ukey, trailer) {
		prev, next = s.spPrev, s.spNext
	} else {
		x, stop := s.head, uint32(0) // as in seekGE
		for level := listHeight - 1; level >= 0; level-- {
			for {
				nx := s.next(s.node(x), level)
				if nx == stop {
					break
				}
				if s.compare(ukey, trailer, s.node(nx)) <= 0 {
					stop = nx
					break
				}
				x = nx
			}
			prev[level], next[level] = x, stop
		}
	}
	for level := listHeight; level < h; level++ {
		prev[level], next[level] = s.head, 0
	}

	for level := 0; level < h; level++ {
		atomic.StoreUint32(&n.tower[level], next[level])
	}
	// Publish bottom-up: once linked at level 0 the node is reachable, and
	// it is complete.
	for level := 0; level < h; level++ {
		atomic.StoreUint32(&s.node(prev[level]).tower[level], off)
	}
	if h > listHeight {
		s.height.Store(uint32(h))
	}
	s.count.Add(1)
	// The splice now surrounds the new node.
	for level := range h {
		prev[level] = off
	}
	s.spPrev, s.spNext, s.spHeight = prev, next, max(listHeight, h)
	return true
}

// spliceHolds reports whether the splice brackets (ukey, trailer) on level
// 0: its node there sorts before the key and its successor not before.
// Splice levels nest (each level's pair lies within the pair above it), so
// it then brackets the key on every level.
func (s *skiplist) spliceHolds(ukey []byte, trailer uint64) bool {
	p, nx := s.spPrev[0], s.spNext[0]
	return (p == s.head || s.compare(ukey, trailer, s.node(p)) > 0) &&
		(nx == 0 || s.compare(ukey, trailer, s.node(nx)) <= 0)
}

// groupSize is how many entries addGroup searches for at once: about as
// many cache misses as a core keeps in flight.
const groupSize = 16

// groupEntry is one entry for addGroup.
type groupEntry struct {
	ukey    []byte
	trailer uint64
	value   []byte
}

// addGroup inserts up to groupSize entries, in order, exactly as add would
// one after the other. It first walks down the list for all of them at
// once, a step of each in turn, so the cache misses of their searches
// overlap instead of following one another; then it links each entry,
// walking forward on every level from the predecessor found (nodes are
// only ever added, so that node is still on its level and still before
// the key). It returns false, having inserted nothing, if the entries do
// not all fit. Only one goroutine may call add or addGroup at a time.
func (s *skiplist) addGroup(es []groupEntry) bool {
	if len(es) > groupSize {
		panic("lsm: skiplist group too large")
	}
	s.spHeight = 0
	var (
		heights [groupSize]int
		prev    [groupSize][skiplistMaxHeight]uint32
		x       [groupSize]uint32
		stop    [groupSize]uint32
		level   [groupSize]int
	)
	// Draw the towers first, as add would in turn, and check the room
	// they take (aligned as alloc aligns).
	rng := s.rng
	end := uint64(s.used.Load())
	for i := range es {
		e := &es[i]
		if len(e.ukey) > int(s.limit) || len(e.value) > int(s.limit) {
			s.rng = rng
			return false
		}
		heights[i] = s.randomHeight()
		end += uint64(arenaNodeHeader + heights[i]*4 + len(e.ukey) + len(e.value))
		end = (end + arenaAlign - 1) &^ (arenaAlign - 1)
	}
	if end > uint64(s.limit) {
		s.rng = rng
		return false
	}

	// Walk down for every entry at once, a step of each in turn. The next
	// node of a search is prefetched as soon as it is known, and compared
	// only once the other searches have taken their step: the searches'
	// cache misses overlap instead of following one another.
	listHeight := int(s.height.Load())
	var next [groupSize]uint32
	for i := range es {
		x[i], level[i] = s.head, listHeight-1
		next[i] = s.next(s.node(s.head), listHeight-1)
		if next[i] != 0 {
			prefetch.Lines(unsafe.Pointer(&s.buf[next[i]]))
		}
	}
	for active := len(es); active > 0; {
		for i := range es {
			l := level[i]
			if l < 0 {
				continue
			}
			nx := next[i]
			if nx != stop[i] && s.compare(es[i].ukey, es[i].trailer, s.node(nx)) > 0 {
				x[i] = nx
			} else {
				stop[i] = nx
				prev[i][l] = x[i]
				l--
				level[i] = l
				if l < 0 {
					active--
					continue
				}
			}
			nx = s.next(s.node(x[i]), l)
			next[i] = nx
			if nx != stop[i] {
				prefetch.Lines(unsafe.Pointer(&s.buf[nx]))
			}
		}
	}

	// Link them one by one.
	for i := range es {
		e := &es[i]
		h := heights[i]
		towerEnd := arenaNodeHeader + h*4
		off, ok := s.alloc(towerEnd + len(e.ukey) + len(e.value))
		if !ok {
			panic("lsm: skiplist arena ran out after its check")
		}
		n := s.node(off)
		n.trailer = e.trailer
		n.keyOffset = off + uint32(towerEnd)
		n.keyLen = uint32(len(e.ukey))
		n.valueLen = uint32(len(e.value))
		copy(s.buf[n.keyOffset:], e.ukey)
		copy(s.buf[n.keyOffset+n.keyLen:], e.value)
		var pv [skiplistMaxHeight]uint32
		for l := range h {
			p := s.head
			if l < listHeight {
				p = prev[i][l]
			}
			for {
				nx := s.next(s.node(p), l)
				if nx == 0 || s.compare(e.ukey, e.trailer, s.node(nx)) <= 0 {
					break
				}
				p = nx
			}
			pv[l] = p
		}
		for l := range h {
			atomic.StoreUint32(&n.tower[l], s.next(s.node(pv[l]), l))
		}
		// Publish bottom-up, as add does.
		for l := range h {
			atomic.StoreUint32(&s.node(pv[l]).tower[l], off)
		}
		if h > int(s.height.Load()) {
			s.height.Store(uint32(h))
		}
		s.count.Add(1)
	}
	return true
}

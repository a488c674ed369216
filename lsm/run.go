package lsm

import (
	"encoding/binary"
	"slices"
	"sort"
	"unsafe"

	"github.com/plures/pluresdb/internal/prefetch"
)

// A Run is a sorted list of internal entries built in memory apart from
// the memtable, to be written out as a table whole: what a bulk load
// (an import of many remote operations) sorts once instead of inserting
// entry by entry into a skiplist.
//
// Add the entries in any order, Sort, then read them with NewIter. Keys
// are copied into the run; values are not: they must stay unchanged until
// the run is Reset or dropped.
type Run struct {
	keys []byte // the internal keys, back to back
	ents []runEntry
	// Sort's buffers, kept for the next sort.
	radix [2][]radixKey
	spare []runEntry
}

type runEntry struct {
	off   uint32 // of the internal key in keys
	ulen  uint32 // length of the user key
	value []byte
}

// Add adds an entry.
func (r *Run) Add(seq SeqNum, kind Kind, ukey, value []byte) {
	off := len(r.keys)
	r.keys = AppendInternalKey(r.keys, ukey, seq, kind)
	r.ents = append(r.ents, runEntry{off: uint32(off), ulen: uint32(len(ukey)), value: value})
}

// Len returns the number of entries.
func (r *Run) Len() int { return len(r.ents) }

// Reset empties the run, keeping its memory.
func (r *Run) Reset() {
	clear(r.ents) // drop the values
	r.keys, r.ents = r.keys[:0], r.ents[:0]
}

// Sort orders the entries as internal keys (CompareInternal).
func (r *Run) Sort() {
	if len(r.ents) == 0 {
		return
	}
	// The leading bytes all keys share decide nothing: compare the eight
	// after them first, as one integer.
	first := r.ukey(&r.ents[0])
	shared := len(first)
	for i := 1; i < len(r.ents) && shared > 0; i++ {
		shared = commonPrefixLen(first[:shared], r.ukey(&r.ents[i]))
	}
	n := len(r.ents)
	keys := slices.Grow(r.radix[0][:0], n)[:n]
	for i := range r.ents {
		keys[i] = radixKey{prefix64(r.ukey(&r.ents[i])[shared:]), uint32(i)}
	}
	tmp := slices.Grow(r.radix[1][:0], n)[:n]
	r.radix = [2][]radixKey{keys, tmp}
	keys = radixSort(keys, tmp)
	// Equal prefixes (keys alike in their first eight bytes past the
	// shared ones, or one key at several sequence numbers) are ordered
	// by the whole internal key.
	for i := 0; i < len(keys); {
		j := i + 1
		for j < len(keys) && keys[j].prefix == keys[i].prefix {
			j++
		}
		if j-i > 1 {
			slices.SortFunc(keys[i:j], func(a, b radixKey) int {
				return CompareInternal(r.ikey(&r.ents[a.idx]), r.ikey(&r.ents[b.idx]))
			})
		}
		i = j
	}
	sorted := slices.Grow(r.spare[:0], n)[:n]
	for i, k := range keys {
		sorted[i] = r.ents[k.idx]
	}
	clear(r.ents)
	r.ents, r.spare = sorted, r.ents[:0]
}

type radixKey struct {
	prefix uint64
	idx    uint32
}

// radixSort sorts keys by prefix (stable, least significant byte first,
// skipping the bytes all prefixes share) and returns the sorted slice:
// keys or tmp, of the same length.
func radixSort(keys, tmp []radixKey) []radixKey {
	and, or := ^uint64(0), uint64(0)
	for _, k := range keys {
		and &= k.prefix
		or |= k.prefix
	}
	varying := and ^ or
	for shift := uint(0); shift < 64; shift += 8 {
		if (varying>>shift)&0xff == 0 {
			continue
		}
		var count [256]int
		for _, k := range keys {
			count[(k.prefix>>shift)&0xff]++
		}
		pos := 0
		for b := range count {
			c := count[b]
			count[b] = pos
			pos += c
		}
		for _, k := range keys {
			b := (k.prefix >> shift) & 0xff
			tmp[count[b]] = k
			count[b]++
		}
		keys, tmp = tmp, keys
	}
	return keys
}

func (r *Run) ukey(e *runEntry) []byte { return r.keys[e.off : e.off+e.ulen] }

func (r *Run) ikey(e *runEntry) []byte {
	end := e.off + e.ulen + TrailerLen
	return r.keys[e.off:end:end]
}

// prefix64 returns the first eight bytes of b as a big-endian integer,
// zero-padded: it orders as bytes.Compare of those bytes does, ties aside.
func prefix64(b []byte) uint64 {
	if len(b) >= 8 {
		return binary.BigEndian.Uint64(b)
	}
	var p [8]byte
	copy(p[:], b)
	return binary.BigEndian.Uint64(p[:])
}

// NewIter returns an iterator over the sorted run. It must not be used
// after the run changes.
func (r *Run) NewIter() InternalIterator { return &runIter{r: r, pos: -1} }

type runIter struct {
	r   *Run
	pos int // -1 or len(ents): not valid
}

var _ InternalIterator = (*runIter)(nil)

func (it *runIter) set(pos int) bool {
	if pos < 0 || pos >= len(it.r.ents) {
		it.pos = -1
		return false
	}
	it.pos = pos
	return true
}

func (it *runIter) First() bool { return it.set(0) }
func (it *runIter) Last() bool  { return it.set(len(it.r.ents) - 1) }

func (it *runIter) Next() bool {
	if it.pos < 0 {
		return false
	}
	// The entries are in key order, their keys and values in the order
	// they came: start loading a few entries ahead.
	if ahead := it.pos + runPrefetch; ahead < len(it.r.ents) {
		e := &it.r.ents[ahead]
		prefetch.Lines(unsafe.Pointer(&it.r.keys[e.off]))
		if len(e.value) > 0 {
			prefetch.Lines(unsafe.Pointer(unsafe.SliceData(e.value)))
		}
	}
	return it.set(it.pos + 1)
}

// runPrefetch is how many entries ahead runIter.Next prefetches.
const runPrefetch = 8

func (it *runIter) Prev() bool {
	if it.pos < 0 {
		return false
	}
	return it.set(it.pos - 1)
}

func (it *runIter) SeekGE(ikey []byte) bool {
	ents := it.r.ents
	return it.set(sort.Search(len(ents), func(i int) bool { return CompareInternal(it.r.ikey(&ents[i]), ikey) >= 0 }))
}

func (it *runIter) SeekLT(ikey []byte) bool {
	ents := it.r.ents
	return it.set(sort.Search(len(ents), func(i int) bool { return CompareInternal(it.r.ikey(&ents[i]), ikey) >= 0 }) - 1)
}

func (it *runIter) Valid() bool   { return it.pos >= 0 }
func (it *runIter) Key() []byte   { return it.r.ikey(&it.r.ents[it.pos]) }
func (it *runIter) Value() []byte { return it.r.ents[it.pos].value }
func (it *runIter) Err() error    { return nil }
func (it *runIter) Close() error  { return nil }

package index

import (
	"errors"
	"slices"
	"strings"
	"unsafe"

	"github.com/google/btree"
)

var (
	// ErrUniqueViolation: a write would give a unique index's value to a
	// second document. Nothing of the write was applied.
	ErrUniqueViolation = errors.New("pluresdb: unique index violation")
	// ErrNotReady: the index is still being built (or its extractor is not
	// registered): it cannot answer queries, which never return partial
	// results.
	ErrNotReady = errors.New("pluresdb: index not ready")
	// ErrInvalid: an invalid index specification, query, cursor or value.
	ErrInvalid = errors.New("pluresdb: invalid index request")
)

// Store is what the engine gives this package: its index namespace (keys
// as this package makes them, without the namespace byte), read at one
// consistent view.
type Store interface {
	// Get returns the value of key; ok false when absent. The value is
	// valid until the next call on the Store.
	Get(key []byte) (value []byte, ok bool, err error)
	// Scan calls fn for every key in [lo, hi) in key order (hi nil: no
	// upper bound) with its value, both valid during the call only, and
	// returns fn's first error unchanged.
	Scan(lo, hi []byte, fn func(key, value []byte) error) error
}

// ReadWriter is a Store that takes writes and whose reads see them
// (Overlay). The engine applies the writes in the same batch as the
// document changes that caused them.
type ReadWriter interface {
	Store
	Set(key, value []byte)
	Delete(key []byte)
}

// errStop ends a Scan early.
var errStop = errors.New("stop")

// Overlay is a ReadWriter over a Store: it keeps writes in memory and
// reads through them. The engine opens one per batch, runs every Update
// (and BuildStep, Create, Drop) of the batch on it, so each sees the ones
// before, then writes Writes into the batch. Not safe for concurrent use.
//
// Writes are kept in arrival order with a map for Get; key order (a
// btree of their positions) is built only when a Scan needs it (a unique
// index, a drop) and kept up from then on, so a batch that never scans
// sorts its writes once, in Writes.
type Overlay struct {
	base  Store
	at    map[string]int32 // key -> position in ps
	ps    []pending
	t     *btree.BTreeG[int32] // positions in key order; nil until a Scan
	arena []byte               // the keys' and values' bytes
}

type pending struct {
	key   string // aliases arena
	value []byte // aliases arena
	del   bool
}

// NewOverlay returns an empty overlay over base.
func NewOverlay(base Store) *Overlay {
	return &Overlay{base: base, at: map[string]int32{}}
}

// Reset empties o and puts it over base, keeping its memory for the next
// batch (a large one's is let go). Whatever Get and Writes returned
// before is invalid after it.
func (o *Overlay) Reset(base Store) {
	o.base = base
	clear(o.at)
	clear(o.ps)
	o.ps, o.t = o.ps[:0], nil
	if cap(o.arena) > maxKeptArena {
		o.arena = nil
	}
	o.arena = o.arena[:0]
	if len(o.at) == 0 && cap(o.ps) > maxKeptArena/64 {
		o.at, o.ps = map[string]int32{}, nil
	}
}

// maxKeptArena bounds the memory Reset keeps.
const maxKeptArena = 4 << 20

// Get implements Store.
func (o *Overlay) Get(key []byte) ([]byte, bool, error) {
	if i, ok := o.at[string(key)]; ok {
		p := &o.ps[i]
		return p.value, !p.del, nil
	}
	return o.base.Get(key)
}

// keep copies b into the arena. Bytes in the arena are never changed:
// appending beyond its capacity moves on to a new array, leaving the old
// one to what aliases it.
func (o *Overlay) keep(b []byte) []byte {
	if cap(o.arena)-len(o.arena) < len(b) {
		o.arena = make([]byte, 0, max(4096, 2*cap(o.arena), len(b)))
	}
	start := len(o.arena)
	o.arena = append(o.arena, b...)
	return o.arena[start:len(o.arena):len(o.arena)]
}

func (o *Overlay) put(key, value []byte, del bool) {
	if del {
		value = nil
	} else {
		value = o.keep(value)
	}
	if i, ok := o.at[string(key)]; ok {
		o.ps[i].value, o.ps[i].del = value, del
		return
	}
	k := o.keep(key)
	ks := unsafe.String(unsafe.SliceData(k), len(k))
	i := int32(len(o.ps))
	o.ps = append(o.ps, pending{key: ks, value: value, del: del})
	o.at[ks] = i
	if o.t != nil {
		o.t.ReplaceOrInsert(i)
	}
}

// Set records key = value (both copied).
func (o *Overlay) Set(key, value []byte) { o.put(key, value, false) }

// Delete records the deletion of key.
func (o *Overlay) Delete(key []byte) { o.put(key, nil, true) }

// Len is the number of pending writes.
func (o *Overlay) Len() int { return len(o.ps) }

// sorted returns the key-order btree, building it on first use.
func (o *Overlay) sorted() *btree.BTreeG[int32] {
	if o.t == nil {
		o.t = btree.NewG(16, func(a, b int32) bool { return o.ps[a].key < o.ps[b].key })
		for i := range o.ps {
			o.t.ReplaceOrInsert(int32(i))
		}
	}
	return o.t
}

// Writes calls fn for every pending write in key order (value nil when
// deleted), returning fn's first error. The bytes are valid until the
// Overlay is dropped.
func (o *Overlay) Writes(fn func(key, value []byte, deleted bool) error) error {
	var order []int32
	if o.t != nil {
		order = make([]int32, 0, len(o.ps))
		o.t.Ascend(func(i int32) bool { order = append(order, i); return true })
	} else {
		order = make([]int32, len(o.ps))
		for i := range order {
			order[i] = int32(i)
		}
		slices.SortFunc(order, func(a, b int32) int { return strings.Compare(o.ps[a].key, o.ps[b].key) })
	}
	for _, i := range order {
		p := &o.ps[i]
		if err := fn(unsafe.Slice(unsafe.StringData(p.key), len(p.key)), p.value, p.del); err != nil {
			return err
		}
	}
	return nil
}

// Scan implements Store: the base's keys merged with the pending writes.
func (o *Overlay) Scan(lo, hi []byte, fn func(key, value []byte) error) error {
	var ps []pending
	t := o.sorted()
	o.ps = append(o.ps, pending{key: string(lo)}) // a probe, not in t, taken back at once
	probe := int32(len(o.ps) - 1)
	t.AscendGreaterOrEqual(probe, func(i int32) bool {
		if i == probe {
			return true
		}
		p := o.ps[i]
		if hi != nil && p.key >= string(hi) {
			return false
		}
		ps = append(ps, p)
		return true
	})
	o.ps = o.ps[:probe]
	if len(ps) == 0 {
		return o.base.Scan(lo, hi, fn)
	}
	i := 0
	emit := func(p pending) error {
		if p.del {
			return nil
		}
		return fn([]byte(p.key), p.value)
	}
	err := o.base.Scan(lo, hi, func(k, v []byte) error {
		for i < len(ps) && ps[i].key < string(k) {
			if err := emit(ps[i]); err != nil {
				return err
			}
			i++
		}
		if i < len(ps) && ps[i].key == string(k) {
			i++
			return emit(ps[i-1])
		}
		return fn(k, v)
	})
	if err != nil {
		return err
	}
	for ; i < len(ps); i++ {
		if err := emit(ps[i]); err != nil {
			return err
		}
	}
	return nil
}

package index

import (
	"errors"

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

// Overlay is a ReadWriter over a Store: it keeps writes in memory, in key
// order, and reads through them. The engine opens one per batch, runs
// every Update (and BuildStep, Create, Drop) of the batch on it, so each
// sees the ones before, then writes Writes into the batch. Not safe for
// concurrent use.
type Overlay struct {
	base Store
	t    *btree.BTreeG[pending]
}

type pending struct {
	key   string
	value []byte
	del   bool
}

func lessPending(a, b pending) bool { return a.key < b.key }

// NewOverlay returns an empty overlay over base.
func NewOverlay(base Store) *Overlay {
	return &Overlay{base: base, t: btree.NewG(16, lessPending)}
}

// Get implements Store.
func (o *Overlay) Get(key []byte) ([]byte, bool, error) {
	if p, ok := o.t.Get(pending{key: string(key)}); ok {
		return p.value, !p.del, nil
	}
	return o.base.Get(key)
}

// Set records key = value (both copied).
func (o *Overlay) Set(key, value []byte) {
	o.t.ReplaceOrInsert(pending{key: string(key), value: append([]byte{}, value...)})
}

// Delete records the deletion of key.
func (o *Overlay) Delete(key []byte) {
	o.t.ReplaceOrInsert(pending{key: string(key), del: true})
}

// Len is the number of pending writes.
func (o *Overlay) Len() int { return o.t.Len() }

// Writes calls fn for every pending write in key order (value nil when
// deleted), returning fn's first error.
func (o *Overlay) Writes(fn func(key, value []byte, deleted bool) error) error {
	var err error
	o.t.Ascend(func(p pending) bool {
		err = fn([]byte(p.key), p.value, p.del)
		return err == nil
	})
	return err
}

// Scan implements Store: the base's keys merged with the pending writes.
func (o *Overlay) Scan(lo, hi []byte, fn func(key, value []byte) error) error {
	var ps []pending
	o.t.AscendGreaterOrEqual(pending{key: string(lo)}, func(p pending) bool {
		if hi != nil && p.key >= string(hi) {
			return false
		}
		ps = append(ps, p)
		return true
	})
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

package pluresdb

import (
	"sync"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/lsm"
)

// keyBufPool holds buffers for namespaced lookup keys, so Get does not
// allocate beyond the copy it returns.
var keyBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64); return &b }}

// Get returns a copy of the value stored under key, or an error wrapping
// ErrNotFound if there is none.
func (db *DB) Get(key []byte) ([]byte, error) {
	return db.getAt(key, lsm.SeqNum(db.visible.Load()))
}

func (db *DB) getAt(key []byte, snap lsm.SeqNum) ([]byte, error) {
	if err := checkKV(key, nil); err != nil {
		return nil, err
	}
	if db.closed.Load() {
		return nil, errs.ErrClosed
	}
	bp := keyBufPool.Get().(*[]byte)
	ukey := append(append((*bp)[:0], nsDocuments), key...)
	v, err := db.get(ukey, snap)
	*bp = ukey
	keyBufPool.Put(bp)
	return v, err
}

// get looks ukey up in the memtables, then the tables, newest first.
func (db *DB) get(ukey []byte, snap lsm.SeqNum) ([]byte, error) {
	db.stateMu.RLock()
	defer db.stateMu.RUnlock()
	if v, kind, _, ok := db.mem.m.Get(ukey, snap); ok {
		return found(v, kind)
	}
	for i := len(db.imms) - 1; i >= 0; i-- {
		if v, kind, _, ok := db.imms[i].m.Get(ukey, snap); ok {
			return found(v, kind)
		}
	}
	v, kind, _, ok, err := db.version.Get(db.tc, ukey, snap)
	if err != nil {
		return nil, err
	}
	if ok {
		return found(v, kind)
	}
	return nil, errs.ErrNotFound
}

func found(v []byte, kind lsm.Kind) ([]byte, error) {
	if kind == lsm.KindDelete {
		return nil, errs.ErrNotFound
	}
	out := make([]byte, len(v))
	copy(out, v)
	return out, nil
}

// Iter walks the keys of a range in ascending or descending order (Next and
// Prev may be mixed freely while it is at a key), over a consistent view of
// the database taken when it was created. An Iter is not safe for
// concurrent use; close it when done.
type Iter struct {
	ui      *lsm.UserIter
	version *lsm.Version
	seekBuf []byte
	err     error
	closed  bool
}

// NewIter returns an iterator over [lower, upper); nil bounds are open.
// The iterator starts unpositioned: call First or SeekGE.
func (db *DB) NewIter(lower, upper []byte) *Iter {
	return db.newIter(nsDocuments, lower, upper, lsm.SeqNum(db.visible.Load()))
}

// newIter iterates [lower, upper) within namespace ns as of snap; Key
// returns keys without the namespace byte.
func (db *DB) newIter(ns byte, lower, upper []byte, snap lsm.SeqNum) *Iter {
	if db.closed.Load() {
		return &Iter{err: errs.ErrClosed}
	}
	db.stateMu.RLock()
	iters := make([]lsm.InternalIterator, 0, 2+len(db.imms)+8)
	iters = append(iters, db.mem.m.NewIter())
	for i := len(db.imms) - 1; i >= 0; i-- {
		iters = append(iters, db.imms[i].m.NewIter())
	}
	v := db.version
	v.Ref()
	db.stateMu.RUnlock()

	tableIters, err := v.NewIters(db.tc)
	if err != nil {
		v.Unref()
		for _, it := range iters {
			_ = it.Close()
		}
		return &Iter{err: err}
	}
	iters = append(iters, tableIters...)
	lo := append([]byte{ns}, lower...)
	var hi []byte
	if upper != nil {
		hi = append([]byte{ns}, upper...)
	} else {
		hi = []byte{ns + 1}
	}
	return &Iter{
		ui:      lsm.NewUserIter(lsm.NewMergingIter(iters...), snap, lo, hi),
		version: v,
	}
}

// First moves to the first key of the range and reports whether there is one.
func (it *Iter) First() bool {
	if it.ui == nil || it.closed {
		return false
	}
	return it.ui.First()
}

// SeekGE moves to the first key >= key (within the range).
func (it *Iter) SeekGE(key []byte) bool {
	if it.ui == nil || it.closed {
		return false
	}
	it.seekBuf = append(append(it.seekBuf[:0], nsDocuments), key...)
	return it.ui.SeekGE(it.seekBuf)
}

// Next moves to the next key.
func (it *Iter) Next() bool {
	if it.ui == nil || it.closed {
		return false
	}
	return it.ui.Next()
}

// Last moves to the last key of the range and reports whether there is one.
func (it *Iter) Last() bool {
	if it.ui == nil || it.closed {
		return false
	}
	return it.ui.Last()
}

// SeekLT moves to the last key < key (within the range).
func (it *Iter) SeekLT(key []byte) bool {
	if it.ui == nil || it.closed {
		return false
	}
	it.seekBuf = append(append(it.seekBuf[:0], nsDocuments), key...)
	return it.ui.SeekLT(it.seekBuf)
}

// Prev moves to the previous key. Like Next, it returns false once the
// iterator is off the range; a fresh First, Last or seek starts over.
func (it *Iter) Prev() bool {
	if it.ui == nil || it.closed {
		return false
	}
	return it.ui.Prev()
}

// Valid reports whether the iterator is at a key.
func (it *Iter) Valid() bool { return it.ui != nil && !it.closed && it.ui.Valid() }

// Key returns the current key, valid until the next move; nil when the
// iterator is not at a key.
func (it *Iter) Key() []byte {
	if !it.Valid() {
		return nil
	}
	return it.ui.Key()[1:]
}

// Value returns the current value, valid until the next move; nil when
// the iterator is not at a key.
func (it *Iter) Value() []byte {
	if !it.Valid() {
		return nil
	}
	return it.ui.Value()
}

// Err returns the error that stopped the iterator, if any.
func (it *Iter) Err() error {
	if it.err != nil {
		return it.err
	}
	if it.closed {
		return errs.ErrClosed
	}
	return it.ui.Err()
}

// Close releases the iterator. It returns the iterator's error, if any.
func (it *Iter) Close() error {
	if it.closed {
		return errs.ErrClosed
	}
	it.closed = true
	if it.ui == nil {
		return it.err
	}
	err := it.ui.Close()
	it.version.Unref()
	it.ui = nil
	if it.err == nil {
		it.err = err
	}
	return err
}

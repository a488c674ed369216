package pluresdb

import (
	"bytes"
	"fmt"
	"slices"
	"sync"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
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
	state, _, err := db.getRaw(ukey, snap)
	*bp = ukey
	keyBufPool.Put(bp)
	if err != nil {
		return nil, err
	}
	v, exists, err := oplog.DocumentValue(state)
	if err != nil {
		return nil, fmt.Errorf("%w: document %q: %v", errs.ErrCorruption, key, err)
	}
	if !exists {
		return nil, errs.ErrNotFound
	}
	return v, nil
}

// getRaw returns a copy of the value stored under ukey as of snap, with
// merge operands folded in (merged says there were some). A tombstone or
// no entry gives ErrNotFound.
func (db *DB) getRaw(ukey []byte, snap lsm.SeqNum) (v []byte, merged bool, err error) {
	db.stateMu.RLock()
	defer db.stateMu.RUnlock()
	v, kind, seq, ok, err := db.getLocked(ukey, snap)
	switch {
	case err != nil:
		return nil, false, err
	case !ok || kind == lsm.KindDelete:
		return nil, false, errs.ErrNotFound
	case kind == lsm.KindMerge:
		v, err := db.getMergedLocked(ukey, v, seq)
		return v, true, err
	}
	return v, false, nil
}

// getLocked finds the newest entry of ukey visible at snap: memtables,
// then tables, newest first. It returns a copy of the value. Called with
// stateMu read-held.
func (db *DB) getLocked(ukey []byte, snap lsm.SeqNum) ([]byte, lsm.Kind, lsm.SeqNum, bool, error) {
	if v, kind, seq, ok := db.mem.m.Get(ukey, snap); ok {
		return bytes.Clone(v), kind, seq, true, nil
	}
	for i := len(db.imms) - 1; i >= 0; i-- {
		if v, kind, seq, ok := db.imms[i].m.Get(ukey, snap); ok {
			return bytes.Clone(v), kind, seq, true, nil
		}
	}
	v, kind, seq, ok, err := db.version.Get(db.tc, ukey, snap)
	if err != nil || !ok {
		return nil, 0, 0, false, err
	}
	return bytes.Clone(v), kind, seq, true, nil
}

// getMergedLocked reads a key whose newest entry is the merge operand op
// at seq: point lookups below seq, one entry at a time (bloom filters
// skip the tables without the key), gather the operands down to a full
// value or the bottom, and the Merger folds them. Called with stateMu
// read-held, so no compaction folds the entries meanwhile.
func (db *DB) getMergedLocked(ukey, op []byte, seq lsm.SeqNum) ([]byte, error) {
	ops := [][]byte{op} // newest first
	var base []byte
	hasBase := false
	for seq > 0 {
		v, kind, s, ok, err := db.getLocked(ukey, seq-1)
		if err != nil {
			return nil, err
		}
		if !ok || kind == lsm.KindDelete {
			break
		}
		if kind != lsm.KindMerge {
			base, hasBase = v, true
			break
		}
		ops = append(ops, v)
		seq = s
	}
	slices.Reverse(ops) // oldest first, as the Merger wants them
	return db.ol.merger.Merge(ukey, ops, base, hasBase)
}

// Iter walks the keys of a range in ascending or descending order (Next and
// Prev may be mixed freely while it is at a key), over a consistent view of
// the database taken when it was created. An Iter is not safe for
// concurrent use; close it when done.
type Iter struct {
	ui      *lsm.UserIter
	version *lsm.Version
	ns      byte
	seekBuf []byte
	val     []byte // the current document's value
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
	lo := append([]byte{ns}, lower...)
	var hi []byte
	if upper != nil {
		hi = append([]byte{ns}, upper...)
	} else {
		hi = []byte{ns + 1}
	}
	ui, v, err := db.newUserIter(lo, hi, snap)
	if err != nil {
		return &Iter{err: err}
	}
	return &Iter{ui: ui, version: v, ns: ns}
}

// newUserIter returns an iterator over the stored keys [lo, hi) as of snap,
// with merge operands folded, and the version it reads (ref'd: Unref it
// after closing the iterator).
func (db *DB) newUserIter(lo, hi []byte, snap lsm.SeqNum) (*lsm.UserIter, *lsm.Version, error) {
	db.stateMu.RLock()
	iters := make([]lsm.InternalIterator, 0, 2+len(db.imms)+8)
	iters = append(iters, db.mem.m.NewIter())
	for i := len(db.imms) - 1; i >= 0; i-- {
		iters = append(iters, db.imms[i].m.NewIter())
	}
	v := db.version
	v.Ref()
	db.stateMu.RUnlock()

	tableIters, err := v.NewItersRange(db.tc, lo, hi)
	if err != nil {
		v.Unref()
		for _, it := range iters {
			_ = it.Close()
		}
		return nil, nil, err
	}
	iters = append(iters, tableIters...)
	ui := lsm.NewUserIter(lsm.NewMergingIter(iters...), snap, lo, hi)
	ui.Merger = db.ol.merger
	return ui, v, nil
}

// usable says whether the iterator may move: it is open and has met no
// error. An iteration that failed stays failed, so a loop cannot step past
// a damaged document as if it were not there.
func (it *Iter) usable() bool { return it.ui != nil && !it.closed && it.err == nil }

// settle moves past documents that do not exist (tombstones), forward or
// backward, and decodes the value of the one it stops at.
func (it *Iter) settle(ok, forward bool) bool {
	if it.ns != nsDocuments {
		return ok
	}
	for ok {
		v, exists, err := oplog.DocumentValue(it.ui.Value())
		if err != nil {
			it.err = fmt.Errorf("%w: document %q: %v", errs.ErrCorruption, it.ui.Key()[1:], err)
			return false
		}
		if exists {
			it.val = v
			return true
		}
		if forward {
			ok = it.ui.Next()
		} else {
			ok = it.ui.Prev()
		}
	}
	return false
}

// First moves to the first key of the range and reports whether there is one.
func (it *Iter) First() bool {
	if !it.usable() {
		return false
	}
	return it.settle(it.ui.First(), true)
}

// SeekGE moves to the first key >= key (within the range).
func (it *Iter) SeekGE(key []byte) bool {
	if !it.usable() {
		return false
	}
	it.seekBuf = append(append(it.seekBuf[:0], it.ns), key...)
	return it.settle(it.ui.SeekGE(it.seekBuf), true)
}

// Next moves to the next key.
func (it *Iter) Next() bool {
	if !it.usable() {
		return false
	}
	return it.settle(it.ui.Next(), true)
}

// Last moves to the last key of the range and reports whether there is one.
func (it *Iter) Last() bool {
	if !it.usable() {
		return false
	}
	return it.settle(it.ui.Last(), false)
}

// SeekLT moves to the last key < key (within the range).
func (it *Iter) SeekLT(key []byte) bool {
	if !it.usable() {
		return false
	}
	it.seekBuf = append(append(it.seekBuf[:0], it.ns), key...)
	return it.settle(it.ui.SeekLT(it.seekBuf), false)
}

// Prev moves to the previous key. Like Next, it returns false once the
// iterator is off the range; a fresh First, Last or seek starts over.
func (it *Iter) Prev() bool {
	if !it.usable() {
		return false
	}
	return it.settle(it.ui.Prev(), false)
}

// Valid reports whether the iterator is at a key.
func (it *Iter) Valid() bool { return it.ui != nil && !it.closed && it.err == nil && it.ui.Valid() }

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
	if it.ns == nsDocuments {
		return it.val
	}
	return it.ui.Value()
}

// Err returns the first error the iteration met, whatever its source (a
// damaged block, a document that does not decode), or nil. After Close
// without an error it returns ErrClosed.
func (it *Iter) Err() error {
	if it.err != nil {
		return it.err
	}
	if it.closed {
		return errs.ErrClosed
	}
	if err := it.ui.Err(); err != nil {
		it.err = err
	}
	return it.err
}

// Close releases the iterator and returns the first error the iteration
// met, if any: a scan that stopped early on damage does not look complete.
func (it *Iter) Close() error {
	if it.closed {
		return errs.ErrClosed
	}
	it.closed = true
	if it.ui == nil {
		return it.err
	}
	if it.err == nil {
		it.err = it.ui.Err()
	}
	err := it.ui.Close()
	it.version.Unref()
	it.ui = nil
	if it.err == nil {
		it.err = err
	}
	return it.err
}

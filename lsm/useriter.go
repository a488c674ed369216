package lsm

// UserIter turns a stream of internal keys (usually a merging iterator over
// every source) into what a reader at one snapshot should see: each user key
// once, with its newest visible value, deleted keys hidden, within bounds.

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/plures/pluresdb/internal/errs"
)

// Merger folds KindMerge operands into a value. The LSM knows nothing of
// what the bytes mean; the op-log package supplies the CRDT merge.
//
// operands are the key's visible merge operands above its newest visible
// full value, oldest first. base is that full value when hasBase; hasBase
// is false when the operands sit on a tombstone or on nothing. Merge may
// keep none of its arguments after it returns; its result may alias them.
type Merger interface {
	Merge(key []byte, operands [][]byte, base []byte, hasBase bool) ([]byte, error)
}

// userIterNextsBeforeSeek is how many Next calls UserIter spends walking
// over older versions of one user key before it seeks past them instead.
// A seek costs a few Nexts, and most keys have one or two versions.
const userIterNextsBeforeSeek = 8

// UserIter iterates over user keys in [lower, upper) as of snapshot snap:
//   - entries with seq > snap are invisible;
//   - only the newest visible entry of each user key counts;
//   - a key whose newest visible entry is a KindDelete is skipped;
//   - a KindMerge entry is folded with the older visible entries of its key
//     by Merger (the engine sets the op log's). If Merger is nil a
//     KindMerge entry reads exactly like a KindSet: its operand is the
//     value and older entries are hidden.
//
// Moving backward (Last, SeekLT, Prev) reads every version of a key, oldest
// first, and copies the value it settles on; Next and Prev may be mixed at
// any point while the iterator is at a key.
//
// Key and Value are valid until the next positioning call. A UserIter is
// used by one goroutine at a time; it owns its InternalIterator and closes
// it on Close.
type UserIter struct {
	// Merger folds merge operands; set it before the first positioning
	// call. nil: KindMerge reads as KindSet.
	Merger Merger

	it           InternalIterator
	snap         SeqNum
	lower, upper []byte

	valid bool
	// advanced: it already stands past every entry of key (after a merge
	// read ahead to find the base), so Next must not skip again.
	advanced bool
	// backward: the last move was Last, SeekLT or Prev; it stands before
	// every entry of key (on an older user key's entry, or exhausted).
	backward bool
	closed   bool
	err      error

	key     []byte // the current user key, copied: it outlives moves of it
	value   []byte // the current value: aliases it, or valBuf after a merge
	seekBuf []byte
	valBuf  []byte
	opBuf   []byte   // merge operands, copied end to end
	opEnds  []int    // end offset in opBuf of each operand: newest first forward, oldest first backward
	ops     [][]byte // operands handed to Merger, oldest first
	baseBuf []byte   // backward: the base value of a merge, copied
}

// NewUserIter returns a UserIter over it at snapshot snap, bounded to user
// keys in [lower, upper); a nil bound is unbounded. lower and upper are
// kept, not copied: the caller must not modify them while the iterator is
// in use.
func NewUserIter(it InternalIterator, snap SeqNum, lower, upper []byte) *UserIter {
	if snap > MaxSeqNum {
		snap = MaxSeqNum
	}
	return &UserIter{it: it, snap: snap, lower: lower, upper: upper}
}

// First moves to the first visible key >= lower.
func (u *UserIter) First() bool {
	u.err, u.backward = nil, false
	if u.lower != nil {
		u.seek(u.lower, MakeTrailer(u.snap, KindMax))
	} else {
		u.it.First()
	}
	return u.findNext()
}

// SeekGE moves to the first visible key >= ukey (and >= lower).
func (u *UserIter) SeekGE(ukey []byte) bool {
	u.err, u.backward = nil, false
	if u.lower != nil && bytes.Compare(ukey, u.lower) < 0 {
		ukey = u.lower
	}
	// (ukey, snap, KindMax) sorts after every entry of ukey newer than the
	// snapshot, so the seek skips those too.
	u.seek(ukey, MakeTrailer(u.snap, KindMax))
	return u.findNext()
}

// Next moves to the next visible key.
func (u *UserIter) Next() bool {
	if !u.valid {
		return false
	}
	if u.backward {
		return u.turnForward()
	}
	if !u.advanced {
		u.skipPast(u.key)
	}
	return u.findNext()
}

// turnForward is Next after a backward move, which left it before key:
// it goes to key's oldest possible entry, past which the next key starts.
// Kept out of Next so the forward path stays small.
func (u *UserIter) turnForward() bool {
	u.backward = false
	u.seek(u.key, MakeTrailer(0, KindDelete))
	for u.it.Valid() && internalKeyHasUserKey(u.it.Key(), u.key) {
		u.it.Next()
	}
	return u.findNext()
}

// Last moves to the last visible key < upper.
func (u *UserIter) Last() bool {
	u.err, u.backward = nil, true
	if u.upper != nil {
		u.seekLT(u.upper)
	} else {
		u.it.Last()
	}
	return u.findPrev()
}

// SeekLT moves to the last visible key < ukey (and < upper).
func (u *UserIter) SeekLT(ukey []byte) bool {
	u.err, u.backward = nil, true
	if u.upper != nil && bytes.Compare(ukey, u.upper) > 0 {
		ukey = u.upper
	}
	u.seekLT(ukey)
	return u.findPrev()
}

// Prev moves to the previous visible key.
func (u *UserIter) Prev() bool {
	if !u.valid {
		return false
	}
	if !u.backward {
		u.backward = true
		u.seekLT(u.key)
	}
	return u.findPrev()
}

// Valid reports whether the iterator is at a key.
func (u *UserIter) Valid() bool { return u.valid }

// Key returns the current user key, valid until the next move.
func (u *UserIter) Key() []byte {
	if !u.valid {
		return nil
	}
	return u.key[:len(u.key):len(u.key)]
}

// Value returns the current value, valid until the next move.
func (u *UserIter) Value() []byte {
	if !u.valid {
		return nil
	}
	return u.value
}

// Err returns the error that stopped the iteration, if any.
func (u *UserIter) Err() error { return u.err }

// Close closes the underlying iterator and returns the first error met.
func (u *UserIter) Close() error {
	if u.closed {
		return u.err
	}
	u.closed = true
	u.valid = false
	if err := u.it.Close(); err != nil && u.err == nil {
		u.err = err
	}
	return u.err
}

// seek positions it at the first entry >= (ukey, trailer).
func (u *UserIter) seek(ukey []byte, trailer uint64) {
	u.seekBuf = append(u.seekBuf[:0], ukey...)
	u.seekBuf = binary.LittleEndian.AppendUint64(u.seekBuf, trailer)
	u.it.SeekGE(u.seekBuf)
}

// seekLT positions it at the last entry of a user key < ukey.
func (u *UserIter) seekLT(ukey []byte) {
	// (ukey, MaxSeqNum, KindMax) is ukey's smallest internal key.
	u.seekBuf = append(u.seekBuf[:0], ukey...)
	u.seekBuf = binary.LittleEndian.AppendUint64(u.seekBuf, MakeTrailer(MaxSeqNum, KindMax))
	u.it.SeekLT(u.seekBuf)
}

// findPrev settles on the last visible, live key at or before it's
// position, or invalidates the iterator. Backward, a key's versions come
// oldest first, so it reads all of them (a later one overrides, or with a
// Merger stacks an operand on, the state of the earlier ones) and leaves
// it on the entry before the key. Values are copied: it moves on.
func (u *UserIter) findPrev() bool {
	u.valid, u.advanced = false, false
	it := u.it
	for {
		if !it.Valid() {
			u.err = it.Err()
			return false
		}
		ukey, _, _, ok := SplitInternalKey(it.Key())
		if !ok {
			u.err = fmt.Errorf("%w: internal key of %d bytes", errs.ErrCorruption, len(it.Key()))
			return false
		}
		if u.lower != nil && bytes.Compare(ukey, u.lower) < 0 {
			return false
		}
		u.key = append(u.key[:0], ukey...)
		// State of the key as of the versions read so far.
		exists, hasBase := false, false
		u.opBuf, u.opEnds = u.opBuf[:0], u.opEnds[:0]
		for {
			_, seq, kind, ok := SplitInternalKey(it.Key())
			if !ok {
				u.err = fmt.Errorf("%w: internal key of %d bytes", errs.ErrCorruption, len(it.Key()))
				return false
			}
			if seq <= u.snap {
				switch {
				case kind == KindDelete:
					exists, hasBase = false, false
					u.opBuf, u.opEnds = u.opBuf[:0], u.opEnds[:0]
				case kind == KindSet || (kind == KindMerge && u.Merger == nil):
					exists, hasBase = true, true
					u.baseBuf = append(u.baseBuf[:0], it.Value()...)
					u.opBuf, u.opEnds = u.opBuf[:0], u.opEnds[:0]
				case kind == KindMerge:
					exists = true
					u.opBuf = append(u.opBuf, it.Value()...)
					u.opEnds = append(u.opEnds, len(u.opBuf))
				default:
					u.err = fmt.Errorf("%w: key %q has unknown kind %d", errs.ErrCorruption, u.key, kind)
					return false
				}
			}
			if !it.Prev() {
				if err := it.Err(); err != nil {
					u.err = err
					return false
				}
				break
			}
			if !internalKeyHasUserKey(it.Key(), u.key) {
				break
			}
		}
		if !exists {
			continue
		}
		if len(u.opEnds) == 0 {
			u.value, u.valid = u.baseBuf, true
			return true
		}
		// opEnds here is oldest first, the order Merger wants.
		u.ops = u.ops[:0]
		start := 0
		for _, end := range u.opEnds {
			u.ops = append(u.ops, u.opBuf[start:end:end])
			start = end
		}
		var base []byte
		if hasBase {
			base = u.baseBuf
		}
		merged, err := u.Merger.Merge(u.key, u.ops, base, hasBase)
		if err != nil {
			u.err = fmt.Errorf("lsm: merge of key %q: %w", u.key, err)
			return false
		}
		u.valBuf = append(u.valBuf[:0], merged...)
		u.value, u.valid = u.valBuf, true
		return true
	}
}

// findNext settles on the first visible, live key at or after it's
// position, or invalidates the iterator.
func (u *UserIter) findNext() bool {
	u.valid, u.advanced = false, false
	it := u.it
	for {
		if !it.Valid() {
			u.err = it.Err()
			return false
		}
		ukey, seq, kind, ok := SplitInternalKey(it.Key())
		if !ok {
			u.err = fmt.Errorf("%w: internal key of %d bytes", errs.ErrCorruption, len(it.Key()))
			return false
		}
		if u.upper != nil && bytes.Compare(ukey, u.upper) >= 0 {
			return false
		}
		u.key = append(u.key[:0], ukey...)
		if seq > u.snap {
			u.skipNewer()
			continue
		}
		switch kind {
		case KindDelete:
			u.skipPast(u.key)
			continue
		case KindSet:
			u.value, u.valid = it.Value(), true
			return true
		case KindMerge:
			if u.Merger == nil {
				u.value, u.valid = it.Value(), true
				return true
			}
			return u.merge()
		}
		u.err = fmt.Errorf("%w: key %q has unknown kind %d", errs.ErrCorruption, ukey, kind)
		return false
	}
}

// internalKeyHasUserKey reports whether ikey is a well-formed internal key of ukey.
func internalKeyHasUserKey(ikey, ukey []byte) bool {
	return len(ikey) >= TrailerLen && bytes.Equal(UserKey(ikey), ukey)
}

// skipNewer moves it past the entries of u.key newer than the snapshot; it
// stands on one of them.
func (u *UserIter) skipNewer() {
	it := u.it
	for n := 0; ; n++ {
		if n == userIterNextsBeforeSeek {
			u.seek(u.key, MakeTrailer(u.snap, KindMax))
			return
		}
		if !it.Next() {
			return
		}
		ikey := it.Key()
		if !internalKeyHasUserKey(ikey, u.key) || SeqNum(Trailer(ikey)>>8) <= u.snap {
			return
		}
	}
}

// skipPast moves it to the first entry of a user key other than ukey; it
// stands on an entry of ukey. ukey must not alias it's memory.
func (u *UserIter) skipPast(ukey []byte) {
	it := u.it
	for n := 0; ; n++ {
		if n == userIterNextsBeforeSeek {
			// (ukey, 0, KindDelete) has the smallest trailer: at most that
			// one entry of ukey is left after the seek.
			u.seek(ukey, MakeTrailer(0, KindDelete))
			for it.Valid() && internalKeyHasUserKey(it.Key(), ukey) {
				it.Next()
			}
			return
		}
		if !it.Next() || !internalKeyHasUserKey(it.Key(), ukey) {
			return
		}
	}
}

// merge folds the merge operand it stands on with the older entries of
// u.key, leaving it past the key.
func (u *UserIter) merge() bool {
	it := u.it
	u.opBuf = append(u.opBuf[:0], it.Value()...)
	u.opEnds = append(u.opEnds[:0], len(u.opBuf))
	var base []byte
	hasBase := false
collect:
	for it.Next() {
		ukey, _, kind, ok := SplitInternalKey(it.Key())
		if !ok || !bytes.Equal(ukey, u.key) {
			break // a malformed key is reported by findNext on the next move
		}
		switch kind {
		case KindMerge:
			u.opBuf = append(u.opBuf, it.Value()...)
			u.opEnds = append(u.opEnds, len(u.opBuf))
		case KindSet:
			base, hasBase = it.Value(), true
			break collect
		case KindDelete:
			break collect
		default:
			u.err = fmt.Errorf("%w: key %q has unknown kind %d", errs.ErrCorruption, ukey, kind)
			return false
		}
	}
	if err := it.Err(); err != nil {
		u.err = err
		return false
	}
	u.ops = u.ops[:0]
	for i := len(u.opEnds) - 1; i >= 0; i-- {
		start := 0
		if i > 0 {
			start = u.opEnds[i-1]
		}
		u.ops = append(u.ops, u.opBuf[start:u.opEnds[i]:u.opEnds[i]])
	}
	merged, err := u.Merger.Merge(u.key, u.ops, base, hasBase)
	if err != nil {
		u.err = fmt.Errorf("lsm: merge of key %q: %w", u.key, err)
		return false
	}
	// Copy before moving it: merged may alias base.
	u.valBuf = append(u.valBuf[:0], merged...)
	u.value = u.valBuf
	if it.Valid() && internalKeyHasUserKey(it.Key(), u.key) {
		u.skipPast(u.key)
	}
	u.advanced, u.valid = true, true
	return true
}

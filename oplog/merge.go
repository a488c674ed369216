package oplog

import (
	"fmt"
	"slices"
	"sync"
)

// The CRDT merge rules: how an operation changes a document state. Merger
// (local operands, for the LSM) and ApplyOp (any op, for imports and as-of
// reads) share them, so a document reached either way is the same.
//
// Rules, with registers ordered by (HLC, replica ID):
//   - Put and Delete replace the whole register if they order above it and
//     drop every field register ordered at or below them (the document was
//     replaced). Otherwise they change nothing.
//   - SetField and DeleteField write a field register if they order above
//     the whole register and above the field's register. A DeleteField
//     leaves a field tombstone, so an older SetField arriving later loses.
//   - Incr adds to its origin's share of the counter. A remote share also
//     records the highest sequence number counted and ignores ops at or
//     below it (a replica's ops arrive in sequence order, so those were
//     counted already). Local increments always add: the caller never
//     applies one of its own ops twice.
//   - Put and Delete leave counters alone: a PN counter cannot be reset
//     without coordination (a reset would have to know which concurrent
//     increments it saw). A deleted document that holds counters still
//     exists, with an empty value.
//
// Caveat for writers: a local Put or Delete written blindly as a state
// (AppendPutState, AppendDeleteState) shadows the stored state in the LSM,
// counters included, while replicas importing that Put keep theirs. A
// writer that wants a key's counters to survive a local Put must apply the
// Put to the current state (ApplyOp) instead.

// Merger folds merge operands onto a state: local ones (field writes and
// increments of this replica) and remote ones (imported operations of any
// kind, AppendRemoteOperand). It has the method set of lsm.Merger. Self
// resolves the local origin of registers when they are compared with
// remote ones.
//
// A Merger is safe for concurrent use; it holds no state beyond Self.
type Merger struct{ Self ReplicaID }

// docStates recycles decoded states, so Merge and ApplyOp allocate only
// their result.
var docStates = sync.Pool{New: func() any { return new(docState) }}

func getDocState() *docState { return docStates.Get().(*docState) }

func putDocState(ds *docState) {
	ds.reset(ReplicaID{})
	docStates.Put(ds)
}

// Merge folds operands (local and remote operands, oldest first) onto base (a state
// when hasBase, else nothing) and returns the resulting state, which
// aliases none of its arguments. Folding operands in groups gives the same
// document as folding them all at once. Errors wrap errs.ErrCorruption.
func (m *Merger) Merge(key []byte, operands [][]byte, base []byte, hasBase bool) ([]byte, error) {
	return m.MergeAppend(nil, key, operands, base, hasBase)
}

// MergeAppend is Merge appending the state to dst, for callers that copy
// it at once and reuse dst (compaction, which folds every key of an
// import). The result aliases dst's array when it has room.
func (m *Merger) MergeAppend(dst, key []byte, operands [][]byte, base []byte, hasBase bool) ([]byte, error) {
	ds := getDocState()
	defer putDocState(ds)
	if hasBase {
		if err := ds.decode(base, m.Self); err != nil {
			return nil, err
		}
	} else {
		ds.reset(m.Self)
	}
	for _, b := range operands {
		op, remote, err := decodeOperand(b)
		if err != nil {
			return nil, err
		}
		if remote {
			ds.apply(&op, op.Replica, op.Replica == m.Self)
		} else {
			ds.apply(&op, m.Self, true)
		}
	}
	return ds.encode(slices.Grow(dst, ds.size())), nil
}

// ApplyOp merges one operation into a state (hasState false: none) and
// returns the new state and whether it changed. Unchanged (the op was
// dominated or a duplicate), it returns state itself and the caller writes
// nothing. op.Replica == self makes the op local. The new state aliases
// neither argument. Errors wrap errs.ErrCorruption for a bad state.
func ApplyOp(state []byte, hasState bool, op *Op, self ReplicaID) (newState []byte, changed bool, err error) {
	if !op.Kind.Document() {
		return nil, false, fmt.Errorf("oplog: apply: op kind %v does not change a document", op.Kind)
	}
	ds := getDocState()
	defer putDocState(ds)
	if hasState {
		if err := ds.decode(state, self); err != nil {
			return nil, false, err
		}
	} else {
		ds.reset(self)
	}
	if !ds.apply(op, op.Replica, op.Replica == self) {
		return state, false, nil
	}
	return ds.encode(make([]byte, 0, ds.size())), true, nil
}

// apply applies op from origin to ds and reports whether ds changed.
func (ds *docState) apply(op *Op, origin ReplicaID, local bool) bool {
	switch op.Kind {
	case KindPut, KindDelete:
		return ds.setWhole(register{ts: op.HLC, origin: origin, tomb: op.Kind == KindDelete, value: op.Value})
	case KindSetField, KindDeleteField:
		return ds.setField(op.Field, register{ts: op.HLC, origin: origin, tomb: op.Kind == KindDeleteField, value: op.Value})
	case KindIncr:
		return ds.incr(op.Field, origin, op.Delta, op.Seq, local)
	}
	return false
}

func (ds *docState) setWhole(r register) bool {
	if ds.hasWhole && !orderAbove(r.ts, r.origin, ds.whole.ts, ds.whole.origin) {
		return false
	}
	if r.tomb {
		r.value = nil
	}
	ds.hasWhole, ds.whole = true, r
	// Field registers at or below the new whole register were replaced
	// with the document. (At: an op of the same replica and timestamp
	// cannot happen, but the rule must not depend on arrival order.)
	ds.fields = slices.DeleteFunc(ds.fields, func(f fieldReg) bool {
		return !orderAbove(f.reg.ts, f.reg.origin, r.ts, r.origin)
	})
	return true
}

func (ds *docState) setField(name []byte, r register) bool {
	if ds.hasWhole && !orderAbove(r.ts, r.origin, ds.whole.ts, ds.whole.origin) {
		return false // the document was replaced after this write
	}
	if r.tomb {
		r.value = nil
	}
	i, found := slices.BinarySearchFunc(ds.fields, name, func(f fieldReg, n []byte) int { return compareBytes(f.name, n) })
	if found {
		if !orderAbove(r.ts, r.origin, ds.fields[i].reg.ts, ds.fields[i].reg.origin) {
			return false
		}
		ds.fields[i].reg = r
		return true
	}
	ds.fields = slices.Insert(ds.fields, i, fieldReg{name: name, reg: r})
	return true
}

func (ds *docState) incr(name []byte, origin ReplicaID, delta int64, seq uint64, local bool) bool {
	if local {
		// Local increments need no sequence numbers (they always add), so
		// none is kept: a local share is the same whether its increments
		// came as operands or through ApplyOp.
		seq = 0
	}
	i, found := slices.BinarySearchFunc(ds.counters, name, func(e counterEntry, n []byte) int {
		return ds.compareCounter(&e, n, origin)
	})
	if !found {
		ds.counters = slices.Insert(ds.counters, i, counterEntry{name: name, origin: origin, sum: delta, seq: seq})
		return true
	}
	e := &ds.counters[i]
	if !local && seq <= e.seq {
		return false // counted already
	}
	e.sum += delta
	e.seq = seq
	return true
}

// Collectible reports whether state is a bare tombstone every peer has
// seen, which compaction may drop: the whole register is a tombstone, no
// field is live, no counter exists, and the whole register and every field
// tombstone are at or below the horizon. horizon(origin) returns the HLC up
// to which every peer holds origin's ops (0: unknown, keep); self resolves
// local origins. Errors wrap errs.ErrCorruption.
func Collectible(state []byte, self ReplicaID, horizon func(ReplicaID) Timestamp) (bool, error) {
	if len(state) >= 2 && state[0] == stateVersion && state[1]&stTomb == 0 {
		// The whole register is no tombstone: the common case, decided
		// without decoding (compaction asks about every value).
		return false, nil
	}
	ds := getDocState()
	defer putDocState(ds)
	if err := ds.decode(state, self); err != nil {
		return false, err
	}
	if !ds.hasWhole || !ds.whole.tomb || len(ds.counters) > 0 {
		return false, nil
	}
	seen := func(r *register) bool {
		h := horizon(r.origin)
		return h != 0 && r.ts <= h
	}
	if !seen(&ds.whole) {
		return false, nil
	}
	for i := range ds.fields {
		if r := &ds.fields[i].reg; !r.tomb || !seen(r) {
			return false, nil
		}
	}
	return true, nil
}

package oplog

import (
	"bytes"
	"slices"

	"github.com/plures/pluresdb/internal/errs"
)

// Portable states and their join: what a state snapshot carries, and how
// an importer folds it into its own states (see "State snapshot" in the
// package doc).
//
// A stored state names this replica's registers and counter shares with
// origin code 0 ("self"), which only its own replica can resolve. A
// portable state spells every origin out: it is the state encoded with
// the zero replica ID as self, which no replica has, so origin code 0
// never occurs and the decoder refuses it. The local counter shares of
// the exporting replica, which keep no sequence number (they always add),
// become shares of its ID that record the highest sequence number it had
// issued when the state was read: every local increment at or below it is
// counted, none above.
//
// The join of two states is the state holding the operations of both:
//   - the whole register is the higher of the two, by (HLC, replica);
//   - a field register is the higher of the two for its name, kept only
//     if it orders above the joined whole register (a Put or Delete
//     replaces the fields written before it);
//   - a counter share (name, origin) is the one that counted the higher
//     sequence number of its origin. A replica's operations reach every
//     other replica in sequence order, so that share counts every
//     increment the other counted. The importer's own local share has no
//     sequence number and counts all of its increments: it always wins.
//
// On portable states (JoinPortable) the join is associative, commutative
// and idempotent; merge_test.go and join_test.go hold the properties.

// joinSelf is the self of portable states: no replica has the zero ID.
var joinSelf = ReplicaID{}

const whatPortable = "portable state"

// AppendPortableState appends the portable form of state, a stored state
// of replica self: every origin spelled out, and self's local counter
// shares recording selfSeq (the highest sequence number self had issued
// when state was read) as counted. Errors wrap errs.ErrCorruption
// (errs.ErrNewerFormat for a newer version).
func AppendPortableState(dst, state []byte, self ReplicaID, selfSeq uint64) ([]byte, error) {
	if self.IsZero() {
		return nil, errs.Corruptf(whatPortable, -1, "the zero replica ID cannot own a state")
	}
	ds := getDocState()
	defer putDocState(ds)
	if err := ds.decode(state, self); err != nil {
		return nil, err
	}
	for i := range ds.counters {
		if ds.counters[i].origin == self {
			ds.counters[i].seq = selfSeq
		}
	}
	ds.self = joinSelf
	// Self sorted first among a counter's shares; now it sorts by its ID.
	slices.SortStableFunc(ds.counters, func(a, b counterEntry) int {
		return ds.compareCounter(&a, b.name, b.origin)
	})
	return ds.encode(slices.Grow(dst, ds.size())), nil
}

// decodePortable decodes a portable state into ds, refusing origin code
// 0.
func (ds *docState) decodePortable(p []byte) error {
	if err := ds.decode(p, joinSelf); err != nil {
		return err
	}
	bad := ds.hasWhole && ds.whole.origin.IsZero()
	for i := range ds.fields {
		bad = bad || ds.fields[i].reg.origin.IsZero()
	}
	for i := range ds.counters {
		bad = bad || ds.counters[i].origin.IsZero()
	}
	if bad {
		return errs.Corruptf(whatPortable, -1, "a register or counter share of origin 0 (this replica): not a portable state")
	}
	return nil
}

// CheckPortableState checks that p is a canonical portable state.
func CheckPortableState(p []byte) error {
	ds := getDocState()
	defer putDocState(ds)
	return ds.decodePortable(p)
}

// PortableRegisters calls fn with the origin and timestamp of every
// register (whole and field, value or tombstone) of portable state p.
func PortableRegisters(p []byte, fn func(origin ReplicaID, ts Timestamp)) error {
	ds := getDocState()
	defer putDocState(ds)
	if err := ds.decodePortable(p); err != nil {
		return err
	}
	if ds.hasWhole {
		fn(ds.whole.origin, ds.whole.ts)
	}
	for i := range ds.fields {
		fn(ds.fields[i].reg.origin, ds.fields[i].reg.ts)
	}
	return nil
}

// JoinPortable appends the join of portable states a and b to dst.
func JoinPortable(dst, a, b []byte) ([]byte, error) {
	da, db := getDocState(), getDocState()
	defer putDocState(da)
	defer putDocState(db)
	if err := da.decodePortable(a); err != nil {
		return nil, err
	}
	if err := db.decodePortable(b); err != nil {
		return nil, err
	}
	da.join(db)
	return da.encode(slices.Grow(dst, da.size())), nil
}

// JoinState joins portable state p into local, a stored state of replica
// self (hasLocal false: none), and returns the new stored state and
// whether it differs from local. Unchanged, it returns local itself. The
// new state aliases neither argument. Errors wrap errs.ErrCorruption.
func JoinState(local []byte, hasLocal bool, p []byte, self ReplicaID) (newState []byte, changed bool, err error) {
	return joinState(local, hasLocal, p, self, 0)
}

// JoinStateRefill is JoinState for a state that refills a key the
// importer lost (a damaged table dropped): its own counter share may be
// missing increments, so a share of self in p that counted every
// increment self has issued (its sequence number at least selfSeq, self's
// last) replaces the local one instead of losing to it. A share that
// counted fewer loses, as in JoinState.
func JoinStateRefill(local []byte, hasLocal bool, p []byte, self ReplicaID, selfSeq uint64) (newState []byte, changed bool, err error) {
	if selfSeq == 0 {
		selfSeq = 1 // no increment issued: a source share of 0 counts them all, but there is none to take
	}
	return joinState(local, hasLocal, p, self, selfSeq)
}

func joinState(local []byte, hasLocal bool, p []byte, self ReplicaID, selfSeq uint64) (newState []byte, changed bool, err error) {
	if self.IsZero() {
		return nil, false, errs.Corruptf(whatPortable, -1, "the zero replica ID cannot own a state")
	}
	ds, o := getDocState(), getDocState()
	defer putDocState(ds)
	defer putDocState(o)
	if hasLocal {
		if err := ds.decode(local, self); err != nil {
			return nil, false, err
		}
	} else {
		ds.reset(self)
	}
	if err := o.decodePortable(p); err != nil {
		return nil, false, err
	}
	ds.joinOwn(o, selfSeq)
	out := ds.encode(make([]byte, 0, ds.size()))
	if hasLocal && bytes.Equal(out, local) {
		return local, false, nil
	}
	return out, true, nil
}

// PruneState drops from state, a stored state of replica self, every
// register for which drop returns true, and returns the new state,
// whether it changed and whether it is now empty (no register, no
// counter share). The importer of a snapshot uses it on keys the
// snapshot lacks: see DB.ImportSnapshot. Errors wrap errs.ErrCorruption.
func PruneState(state []byte, self ReplicaID, drop func(origin ReplicaID, ts Timestamp) bool) (newState []byte, changed, empty bool, err error) {
	ds := getDocState()
	defer putDocState(ds)
	if err := ds.decode(state, self); err != nil {
		return nil, false, false, err
	}
	if ds.hasWhole && drop(ds.whole.origin, ds.whole.ts) {
		ds.hasWhole, ds.whole, changed = false, register{}, true
	}
	n := len(ds.fields)
	ds.fields = slices.DeleteFunc(ds.fields, func(f fieldReg) bool { return drop(f.reg.origin, f.reg.ts) })
	changed = changed || len(ds.fields) != n
	empty = !ds.hasWhole && len(ds.fields) == 0 && len(ds.counters) == 0
	if !changed {
		return state, false, empty, nil
	}
	return ds.encode(make([]byte, 0, ds.size())), true, empty, nil
}

// join merges o (a state of any self, origins resolved) into ds. A share
// of ds.self's counter in ds counts all of ds.self's increments and
// always wins; any other share is replaced by o's if o's counted a higher
// sequence number.
func (ds *docState) join(o *docState) { ds.joinOwn(o, 0) }

// joinOwn is join where, if selfSeq is not 0, a share of ds.self in o
// that counted at least selfSeq replaces ds.self's own (see
// JoinStateRefill).
func (ds *docState) joinOwn(o *docState, selfSeq uint64) {
	if o.hasWhole {
		ds.setWhole(o.whole)
	}
	for i := range o.fields {
		ds.setField(o.fields[i].name, o.fields[i].reg)
	}
	if ds.hasWhole {
		// A state that was not canonical about it: no field at or below
		// the whole register survives a join.
		ds.fields = slices.DeleteFunc(ds.fields, func(f fieldReg) bool {
			return !orderAbove(f.reg.ts, f.reg.origin, ds.whole.ts, ds.whole.origin)
		})
	}
	for _, e := range o.counters {
		i, found := slices.BinarySearchFunc(ds.counters, e.name, func(c counterEntry, n []byte) int {
			return ds.compareCounter(&c, n, e.origin)
		})
		if e.origin == ds.self {
			complete := selfSeq != 0 && e.seq >= selfSeq
			e.seq = 0 // a local share keeps none
			switch {
			case !found:
				ds.counters = slices.Insert(ds.counters, i, e)
			case complete:
				ds.counters[i].sum = e.sum
			}
			continue
		}
		switch {
		case !found:
			ds.counters = slices.Insert(ds.counters, i, e)
		case e.seq > ds.counters[i].seq:
			ds.counters[i].sum, ds.counters[i].seq = e.sum, e.seq
		}
	}
}

package pluresdb

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
)

// Range refills (see "Repair" in ARCHITECTURE.md): a key range a repair
// lost (a damaged table dropped) is filled again with the state of its
// keys, from a source replica (ExportSnapshotRange there,
// ImportSnapshotRange here) or from this replica's own retained op
// history (ExportHistoryRange, then ImportSnapshotRange). Both go through
// the state snapshot import's join (snapshotImport), limited to the
// range; the orchestration is package refill's.

// storedRange is a range of stored keys (namespace byte first), both
// bounds inclusive; a nil bound is open. A nil *storedRange is every key.
type storedRange struct{ lo, hi []byte }

// bounds returns the iteration bounds [lo, hi) of the range's keys in
// namespace ns, and false when it holds none of them.
func (r *storedRange) bounds(ns byte) (lo, hi []byte, ok bool) {
	lo, hi = []byte{ns}, []byte{ns + 1}
	if r == nil {
		return lo, hi, true
	}
	if r.lo != nil && bytes.Compare(r.lo, lo) > 0 {
		lo = r.lo
	}
	if r.hi != nil {
		// The first key after hi.
		if end := append(slices.Clip(r.hi), 0); bytes.Compare(end, hi) < 0 {
			hi = end
		}
	}
	return lo, hi, bytes.Compare(lo, hi) < 0
}

// contains says whether the stored key ns+key lies in the range.
func (r *storedRange) contains(ns byte, key []byte) bool {
	if r == nil {
		return true
	}
	sk := append([]byte{ns}, key...)
	return (r.lo == nil || bytes.Compare(r.lo, sk) <= 0) && (r.hi == nil || bytes.Compare(sk, r.hi) <= 0)
}

func (r *storedRange) String() string {
	if r == nil {
		return "every key"
	}
	b := func(k []byte) string {
		if k == nil {
			return "(open)"
		}
		return fmt.Sprintf("%q", k)
	}
	return "stored keys " + b(r.lo) + " .. " + b(r.hi)
}

func newStoredRange(lo, hi []byte) (*storedRange, error) {
	if lo != nil && hi != nil && bytes.Compare(lo, hi) > 0 {
		return nil, fmt.Errorf("%w: key range %q .. %q is empty (lo above hi)", errs.ErrInvalidOptions, lo, hi)
	}
	return &storedRange{lo: bytes.Clone(lo), hi: bytes.Clone(hi)}, nil
}

// ExportSnapshotRange is ExportSnapshot limited to the stored keys (the
// namespace byte first: 0x01 documents, 0x05 counters) from lo to hi,
// both included; a nil bound is open. Only document and counter states
// are exported, as ExportSnapshot does. The header is a whole
// snapshot's: the version vector, horizon and clock say what the states
// of the range hold.
func (db *DB) ExportSnapshotRange(w io.Writer, lo, hi []byte) (SnapshotInfo, error) {
	rng, err := newStoredRange(lo, hi)
	if err != nil {
		return SnapshotInfo{}, err
	}
	return db.exportSnapshot(w, rng)
}

// RangeImport is what ImportSnapshotRange applied.
type RangeImport struct {
	SnapshotInfo
	// Lacking holds, for each replica whose operations this replica holds
	// (its version vector and its selective-sync cursors) beyond what the
	// snapshot's version vector claims, the highest of them: the source
	// lacked that replica's operations from SnapshotInfo.VersionVector's
	// entry + 1 up to this, and the joined states of the range hold none
	// of them. Empty: the source held every operation this replica holds,
	// so the range now holds everything it held.
	Lacking oplog.VersionVector
}

// ImportSnapshotRange joins into this replica the states of a snapshot
// (ExportSnapshotRange of a source, or ExportHistoryRange of this
// replica) for the stored keys from lo to hi, both included (nil: open),
// as ImportSnapshot joins a whole snapshot: verified whole first (a
// snapshot holding a key outside the range is refused, ErrCorruption),
// each state joined with the local state of its key, and a local key of
// the range the snapshot lacks pruned of the registers the source
// collected under its horizon. Keys outside the range are not touched.
//
// Unlike ImportSnapshot, it takes neither the source's version vector
// nor its history floor: see finishRange for why what it does keeps the
// replicas convergent. It refuses what ImportSnapshot refuses
// (ErrSnapshotAhead, oplog.ErrClockDrift, ErrStaleReplica for a register
// this replica may have collected a tombstone over), but not an importer
// holding operations the source lacks under the source's horizon: the
// range import claims nothing of the source's, so it changes nothing
// about what this replica can pass on.
func (db *DB) ImportSnapshotRange(r io.Reader, lo, hi []byte) (RangeImport, error) {
	rng, err := newStoredRange(lo, hi)
	if err != nil {
		return RangeImport{}, err
	}
	im, err := db.importSnapshot(r, rng)
	out := RangeImport{SnapshotInfo: *im.info, Lacking: im.lacking}
	return out, err
}

// finishRange ends a range import. It never moves the version vector or
// the history floor, and moves the snapshot clock and the tombstone
// collection horizon only when the joined states require it, in one
// durable batch (under commitMu, like finish).
//
// Why this keeps replicas convergent:
//   - The version vector claims every operation of a replica up to a
//     sequence number, on every key; the range's states are those of a
//     few keys only. Claiming the source's vector would make this replica
//     skip, and never pass on, the source's operations on every other
//     key. Not claiming them costs nothing: a later ImportChanges brings
//     those operations again, and applying an operation whose effect a
//     joined state holds already changes nothing (merges are joins;
//     a counter share keeps the higher sequence number counted).
//   - The history floor says which claimed operations the log no longer
//     holds; since nothing new is claimed, no export can hand out a hole.
//   - The snapshot clock makes as-of reads ask for a whole-document write
//     after it: it is raised only when the states may hold operations this
//     replica's log never held (the source claimed an operation of another
//     replica this one does not), since GetAsOf folds the log alone.
//   - The collection horizon is raised to the source's, when that is
//     higher and a state was changed: the range now holds the source's
//     state, in which tombstones the source collected under its horizon
//     are gone (and prune dropped what they hid here); an operation at or
//     below that horizon this replica lacks must be refused, as the
//     source refuses it, or it would come back here and not there.
//   - The clock was raised past the snapshot's in apply, as for a whole
//     snapshot: local writes after it order above every joined register.
func (im *snapshotImport) finishRange() error {
	db, info := im.db, im.info
	self := db.ol.self
	held := im.have.Clone()
	for _, c := range db.ol.cursors {
		for r, s := range c {
			held[r] = max(held[r], s)
		}
	}
	im.lacking = oplog.VersionVector{}
	for r, s := range held {
		if s > info.VersionVector[r] {
			im.lacking[r] = s
		}
	}
	foreign := false
	for r, s := range info.VersionVector {
		if r != self && s > im.have[r] {
			foreign = true
		}
	}
	db.ol.mu.Lock()
	snapClock := db.ol.snapClock
	db.ol.mu.Unlock()
	raiseClock := foreign && info.Clock > snapClock
	horizon := oplog.Timestamp(db.ol.gcHorizon.Load())
	raiseHorizon := info.Changed > 0 && info.Horizon > horizon
	if !raiseClock && !raiseHorizon {
		return nil
	}
	b := db.NewBatch()
	if raiseClock {
		snapClock = info.Clock
		b.add(lsm.KindSet, nsMeta, metaSnapClock, binary.BigEndian.AppendUint64(nil, uint64(snapClock)))
	}
	if raiseHorizon {
		horizon = info.Horizon
		b.add(lsm.KindSet, nsMeta, metaGCHorizon, binary.BigEndian.AppendUint64(nil, uint64(horizon)))
	}
	if err := im.write(b); err != nil {
		return err
	}
	if err := db.syncThrough(im.last); err != nil {
		return err
	}
	db.ol.mu.Lock()
	db.ol.snapClock = snapClock
	db.ol.mu.Unlock()
	db.ol.gcHorizon.Store(uint64(horizon))
	return nil
}

// HistoryRange is what ExportHistoryRange found in the retained history.
type HistoryRange struct {
	// Documents and Counters count the states written: keys of the range
	// whose state the retained history rebuilds.
	Documents, Counters int
	// Unavailable are the stored keys of the range the retained history
	// names but cannot rebuild: a document with no whole-document write
	// (Put or Delete) retained after the history floor and the last
	// snapshot import, a counter once history was dropped (its shares
	// would miss dropped increments). Sorted.
	Unavailable [][]byte
	// Complete: nothing was dropped from the history and no snapshot
	// imported, so every operation this replica applied is in it, and
	// every key of the range that has a state is among those written.
	Complete bool
}

// ExportHistoryRange writes to w a state snapshot (the format of
// ExportSnapshot, for ImportSnapshotRange) of the keys from lo to hi
// (stored keys, both included; nil: open) whose state this replica's
// retained op history rebuilds: for each key it names, every retained
// operation on it folded, as GetAsOf(key, db.Now()) does, tombstones
// included (a key whose last whole write is a Delete gets its tombstone
// state, so that a join hides any older state of it). A key it cannot
// rebuild is left out and listed in HistoryRange.Unavailable.
//
// The snapshot's version vector is this replica's own and its horizon
// zero: it claims nothing this replica lacks, and prunes nothing when
// imported. It scans every retained segment and archive once, keeping
// the folded states of the range's keys in memory.
func (db *DB) ExportHistoryRange(w io.Writer, lo, hi []byte) (HistoryRange, error) {
	var out HistoryRange
	rng, err := newStoredRange(lo, hi)
	if err != nil {
		return out, err
	}
	if db.closed.Load() {
		return out, errs.ErrClosed
	}
	// Without the op log's metadata the history floor is unknown.
	if err := db.opLogUsable(); err != nil {
		return out, err
	}
	db.commitMu.Lock()
	if db.closed.Load() {
		db.commitMu.Unlock()
		return out, errs.ErrClosed
	}
	size, err := db.liveLogSize()
	if err != nil {
		db.commitMu.Unlock()
		return out, err
	}
	live := db.ol.cur.clone()
	vv := db.versionVectorLocked()
	h := oplog.SnapshotHeader{Source: db.ol.self, VV: vv, Clock: db.ol.clock.Last()}
	db.ol.mu.Lock()
	segs := append(db.ol.snapshotSegs(), live)
	snapClock := db.ol.snapClock
	truncated := len(db.ol.floor) > 0 || snapClock != 0
	db.ol.mu.Unlock()
	db.commitMu.Unlock()
	out.Complete = !truncated

	type fold struct {
		state []byte
		whole bool
	}
	folds := [2]map[string]*fold{{}, {}} // documents, counters
	self := db.ol.self
	apply := func(op *oplog.Op) error {
		ns, i := nsDocuments, 0
		if op.Kind == oplog.KindIncr {
			ns, i = nsCounters, 1
		}
		if !rng.contains(ns, op.Key) {
			return nil
		}
		f := folds[i][string(op.Key)]
		if f == nil {
			f = &fold{}
			folds[i][string(op.Key)] = f
		}
		var err error
		if f.state, _, err = oplog.ApplyOp(f.state, f.state != nil, op, self); err != nil {
			return fmt.Errorf("%w: rebuilding key %q from the op history: %v", errs.ErrCorruption, op.Key, err)
		}
		f.whole = f.whole || (op.Kind == oplog.KindPut || op.Kind == oplog.KindDelete) && op.HLC > snapClock
		return nil
	}
	for _, s := range segs {
		if s.minHLC == 0 {
			continue // no operations
		}
		limit := int64(-1)
		if s == live {
			limit = size
		}
		if err := db.scanHistory(s, limit, apply); err != nil {
			return out, err
		}
	}

	sw, err := oplog.NewSnapshotWriter(w, h, oplog.SnapshotS2)
	if err != nil {
		return out, err
	}
	var buf []byte
	for i, ns := range []byte{nsDocuments, nsCounters} {
		keys := make([]string, 0, len(folds[i]))
		for k := range folds[i] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			f := folds[i][k]
			// A document needs a whole write when history was dropped; a
			// counter's shares need every increment.
			if truncated && (ns == nsCounters || !f.whole) {
				out.Unavailable = append(out.Unavailable, append([]byte{ns}, k...))
				continue
			}
			if buf, err = oplog.AppendPortableState(buf[:0], f.state, self, vv[self]); err != nil {
				return out, fmt.Errorf("%w: rebuilding key %q from the op history: %v", errs.ErrCorruption, k, err)
			}
			if err := sw.Add(ns, []byte(k), buf); err != nil {
				return out, err
			}
			if ns == nsDocuments {
				out.Documents++
			} else {
				out.Counters++
			}
		}
	}
	_, err = sw.Close()
	return out, err
}

package pluresdb

import (
	"bytes"
	"fmt"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
)

// Now returns a timestamp of this replica's hybrid logical clock: every
// operation committed before the call has a smaller one, so GetAsOf(key,
// db.Now()) sees them all.
func (db *DB) Now() oplog.Timestamp { return db.ol.clock.Now() }

// GetAsOf returns the document under key as it was at ts: every retained
// operation on it with a timestamp at or before ts, folded. It reads the
// op history (hot segments and the cold archive): the segments whose key
// filter says they may hold an operation on key at or before ts, and the
// few recent ones not yet filtered.
//
// Once retention has dropped history, or a snapshot was imported
// (ImportSnapshot: its states hold operations the log never had), the
// answer needs an operation that wrote the whole document (Put or Delete)
// at or before ts within what is retained, and after the clock of every
// snapshot imported; without one GetAsOf returns ErrHistoryUnavailable.
// Counters are exact only while no history has been dropped.
func (db *DB) GetAsOf(key []byte, ts oplog.Timestamp) (Document, error) {
	if err := checkKV(key, nil); err != nil {
		return Document{}, err
	}
	// Without the op log's metadata the history floor is unknown: an
	// answer could lack operations retention dropped, and not say so.
	if err := db.opLogUsable(); err != nil {
		return Document{}, err
	}
	db.commitMu.Lock()
	if db.closed.Load() {
		db.commitMu.Unlock()
		return Document{}, errs.ErrClosed
	}
	size, err := db.liveLogSize()
	if err != nil {
		db.commitMu.Unlock()
		return Document{}, err
	}
	live := db.ol.cur.clone()
	db.ol.mu.Lock()
	segs := append(db.ol.snapshotSegs(), live)
	// History is incomplete once retention dropped some, or a snapshot
	// brought state whose operations the log never held: then only a
	// whole-document write (after the snapshot's clock) starts a fold.
	snapClock := db.ol.snapClock
	truncated := len(db.ol.floor) > 0 || snapClock != 0
	db.ol.mu.Unlock()
	db.commitMu.Unlock()

	var doc, counters []byte
	sawWhole := false
	apply := func(op *oplog.Op) error {
		if op.HLC > ts || !bytes.Equal(op.Key, key) {
			return nil
		}
		var err error
		if op.Kind == oplog.KindIncr {
			counters, _, err = oplog.ApplyOp(counters, counters != nil, op, db.ol.self)
		} else {
			doc, _, err = oplog.ApplyOp(doc, doc != nil, op, db.ol.self)
			sawWhole = sawWhole || (op.Kind == oplog.KindPut || op.Kind == oplog.KindDelete) && op.HLC > snapClock
		}
		return err
	}
	h := keyHash(key)
	for _, s := range segs {
		if s.minHLC == 0 || s.minHLC > ts {
			continue // no operations, or none old enough
		}
		if s.keys != nil && !s.keys.Contains(h) {
			continue // none on this key
		}
		limit := int64(-1)
		var hashes []uint32
		fn := apply
		if s == live {
			limit = size
		} else if s.keys == nil {
			// Build the segment's filter on the way.
			fn = func(op *oplog.Op) error {
				hashes = append(hashes, keyHash(op.Key))
				return apply(op)
			}
		}
		if err := db.scanHistory(s, limit, fn); err != nil {
			return Document{}, err
		}
		if hashes != nil {
			db.setKeyFilter(uint64(s.num), keyFilterOf(hashes))
		}
	}
	if truncated && !sawWhole {
		return Document{}, fmt.Errorf("%w: no write of the whole document %q at or before %s in the retained history",
			ErrHistoryUnavailable, key, ts)
	}
	var d Document
	if doc != nil {
		if d, err = oplog.DecodeDocument(doc); err != nil {
			return Document{}, err
		}
	}
	if counters != nil {
		c, err := oplog.DecodeDocument(counters)
		if err != nil {
			return Document{}, err
		}
		d.Counters = c.Counters
	}
	if !d.Exists && len(d.Counters) == 0 {
		return Document{}, errs.ErrNotFound
	}
	return d, nil
}

// scanHistory calls fn for every document operation of segment s that
// as-of reads see (read up to limit bytes; -1: all; repeats and samples
// left out), from the segment or its archive.
func (db *DB) scanHistory(s *segIndex, limit int64, fn func(op *oplog.Op) error) error {
	return db.scanPositions(s, limit, func(_ Position, op *oplog.Op, c opClass) error {
		if !c.history() || !op.Kind.Document() {
			return nil
		}
		return fn(op)
	}, nil)
}

// VersionVectorAt returns the version vector of this replica's state as
// of ts: for every replica, the operations it holds of that replica with
// timestamps at or before ts. A replica's operations carry timestamps in
// sequence order, so these are a prefix of them, and the vector names a
// state ExportChangesUpTo can rebuild on another replica (a point-in-time
// restore). It never splits a log record: of the operations one record
// holds of one replica (a local transaction, or an import's batch of a
// peer's whole transactions), all are at or before ts or none counts.
//
// Operations retention dropped (or a snapshot import brought without
// their history) count when they are known to be at or before ts: the
// replica's first retained operation is, or the clock mark of what left
// the log is. Otherwise the vector is unknown and VersionVectorAt returns
// ErrHistoryUnavailable, naming the replica and the oldest time it can
// answer for.
func (db *DB) VersionVectorAt(ts oplog.Timestamp) (oplog.VersionVector, error) {
	if db.closed.Load() {
		return nil, errs.ErrClosed
	}
	if err := db.opLogUsable(); err != nil {
		return nil, err
	}
	db.commitMu.Lock()
	if db.closed.Load() {
		db.commitMu.Unlock()
		return nil, errs.ErrClosed
	}
	upTo := db.versionVectorLocked()
	size, err := db.liveLogSize()
	if err != nil {
		db.commitMu.Unlock()
		return nil, err
	}
	live := db.ol.cur.clone()
	db.ol.mu.Lock()
	segs := append(db.ol.snapshotSegs(), live)
	floor := db.ol.floor.Clone()
	left := max(db.ol.clockMark, db.ol.snapClock)
	db.ol.mu.Unlock()
	db.commitMu.Unlock()

	vv := oplog.VersionVector{}
	// open: the replicas whose boundary is still ahead.
	open := map[oplog.ReplicaID]bool{}
	for r, to := range upTo {
		if to == 0 {
			continue
		}
		open[r] = true
		if floor[r] == 0 {
			continue
		}
		// The dropped operations are at or before ts if the first
		// retained one is (timestamps rise with sequence numbers), or
		// if everything that left the log is.
		first, ok := oplog.Timestamp(0), false
		for _, s := range segs {
			if rg, has := s.ranges[r]; has && rg.max > floor[r] {
				first, ok = rg.minHLC, true
				break
			}
		}
		if (ok && first <= ts) || left <= ts {
			vv[r] = floor[r]
			continue
		}
		return nil, fmt.Errorf("%w: replica %s's operations up to %d left the history, and may be after %s; "+
			"the oldest time this replica can rebuild is %s", ErrHistoryUnavailable, r, floor[r], ts, left)
	}
	for _, s := range segs {
		if len(open) == 0 {
			break
		}
		var straddle []oplog.ReplicaID
		for r, rg := range s.ranges {
			if !open[r] || rg.max <= vv[r] {
				continue
			}
			switch {
			case rg.maxHLC <= ts:
				vv[r] = max(vv[r], min(rg.max, upTo[r]))
			case rg.minHLC > ts:
				delete(open, r)
			default:
				straddle = append(straddle, r)
			}
		}
		if len(straddle) == 0 {
			continue
		}
		limit := int64(-1)
		if s == live {
			limit = size
		}
		if err := db.boundaryIn(s, limit, ts, straddle, upTo, vv); err != nil {
			return nil, err
		}
		for _, r := range straddle {
			delete(open, r)
		}
	}
	return vv, nil
}

// boundaryIn reads segment s for the replicas rs, whose operations in it
// start at or before ts and end after it, and raises vv[r] to the last
// sequence number of r's last record part wholly at or before ts.
func (db *DB) boundaryIn(s *segIndex, limit int64, ts oplog.Timestamp, rs []oplog.ReplicaID, upTo, vv oplog.VersionVector) error {
	type part struct {
		last   uint64
		maxHLC oplog.Timestamp
	}
	want := map[oplog.ReplicaID]bool{}
	for _, r := range rs {
		want[r] = true
	}
	cur := map[oplog.ReplicaID]*part{}
	done := map[oplog.ReplicaID]bool{}
	return db.scanTransactions(s, limit, func(op *oplog.Op) error {
		if !want[op.Replica] || done[op.Replica] || op.Seq <= vv[op.Replica] || op.Seq > upTo[op.Replica] {
			return nil
		}
		p := cur[op.Replica]
		if p == nil {
			p = &part{}
			cur[op.Replica] = p
		}
		p.last = max(p.last, op.Seq)
		p.maxHLC = max(p.maxHLC, op.HLC)
		return nil
	}, func() {
		for r, p := range cur {
			if p.maxHLC <= ts {
				vv[r] = max(vv[r], p.last)
			} else {
				done[r] = true
			}
			delete(cur, r)
		}
	})
}

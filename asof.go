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

// scanHistory calls fn for every operation of segment s that as-of reads
// see (read up to limit bytes; -1: all; repeats left out), from the
// segment or its archive.
func (db *DB) scanHistory(s *segIndex, limit int64, fn func(op *oplog.Op) error) error {
	return db.scanPositions(s, limit, func(_ Position, op *oplog.Op, c opClass) error {
		if !c.history() {
			return nil
		}
		return fn(op)
	}, nil)
}

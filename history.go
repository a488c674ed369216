package pluresdb

import (
	"bytes"
	"errors"
	"os"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/wal"
)

// KeyHistory returns the operations on key that the retained op history
// holds (hot segments and the cold archive), in log order, each at its
// log position, as the change feed delivers them (a selective import's
// included, a full import's repeats left out). complete is false when
// retention has dropped history: older operations on key may be gone.
// Operations in an archive written before archives kept positions have
// the zero Position.
func (db *DB) KeyHistory(key []byte) (changes []Change, complete bool, err error) {
	if err := checkKV(key, nil); err != nil {
		return nil, false, err
	}
	if err := db.opLogUsable(); err != nil {
		return nil, false, err
	}
	db.commitMu.Lock()
	if db.closed.Load() {
		db.commitMu.Unlock()
		return nil, false, errs.ErrClosed
	}
	size, err := db.liveLogSize()
	if err != nil {
		db.commitMu.Unlock()
		return nil, false, err
	}
	live := db.ol.cur.clone()
	db.ol.mu.Lock()
	segs := append(db.ol.snapshotSegs(), live)
	complete = len(db.ol.floor) == 0
	db.ol.mu.Unlock()
	db.commitMu.Unlock()

	h := keyHash(key)
	add := func(pos Position, op *oplog.Op, c opClass) error {
		if !c.history() || !op.Kind.Document() || !bytes.Equal(op.Key, key) {
			return nil
		}
		ch := Change{Pos: pos, Op: *op}
		ch.Op.Key, ch.Op.Field, ch.Op.Value = bytes.Clone(op.Key), bytes.Clone(op.Field), bytes.Clone(op.Value)
		changes = append(changes, ch)
		return nil
	}
	for _, s := range segs {
		if s.keys != nil && !s.keys.Contains(h) {
			continue // none on this key
		}
		limit := int64(-1)
		if s == live {
			limit = size
		}
		if err := db.scanPositions(s, limit, add, nil); err != nil {
			return nil, false, err
		}
	}
	return changes, complete, nil
}

// scanPositions calls fn for every operation of segment s (read up to
// limit bytes; -1: all), from the segment or its archive, with its log
// position and class, and end (if not nil) after the last operation of
// every transaction: a log record (a local batch, or an import's batch of
// whole remote transactions), or what an archive's stream says.
func (db *DB) scanPositions(s *segIndex, limit int64, fn func(pos Position, op *oplog.Op, c opClass) error, end func()) error {
	if !s.archived {
		sr, err := wal.OpenSegmentPrefix(db.fs, db.dir, s.num, limit)
		if err == nil {
			defer sr.Close()
			for {
				rec, err := sr.Next()
				if err != nil {
					if isEOF(err) {
						return nil
					}
					return err
				}
				if err := decodeRecord(rec, db.ol.self, fn); err != nil {
					return err
				}
				if end != nil {
					end()
				}
			}
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		// Archived since the snapshot.
	}
	a, err := db.readArchive(s.num)
	if err != nil {
		return err
	}
	ends := a.stream.Ends
	for i := range a.stream.Ops {
		var pos Position
		if a.pos != nil {
			pos = a.pos[i]
		}
		if err := fn(pos, &a.stream.Ops[i], a.class(i)); err != nil {
			return err
		}
		if len(ends) > 0 && ends[0] == i {
			ends = ends[1:]
			if end != nil {
				end()
			}
		}
	}
	return nil
}

// RecordClock returns the newest timestamp of the document operations in
// rec, one record of a log segment (0: it holds none). Tools that read a
// closed or running database's sealed segments (a backup follower) learn
// with it how far in time the log they hold reaches.
func RecordClock(rec []byte) (oplog.Timestamp, error) {
	var last oplog.Timestamp
	err := decodeRecord(rec, oplog.ReplicaID{}, func(_ Position, op *oplog.Op, _ opClass) error {
		last = max(last, op.HLC)
		return nil
	})
	return last, err
}

package pluresdb

import (
	"encoding/binary"
	"path/filepath"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
)

// LostRange is a range of the log that Open found lost: damaged bytes a
// salvaging Open (Options.Salvage) dropped, or a history file (a sealed
// log segment or its archive) that the op log's index lists but that is
// gone; with the sequence numbers of the records they held, which a peer
// or a backup may still supply.
type LostRange struct {
	Segment     string // the log segment (or archive) that held them
	Offset      int64  // where the dropped bytes started in it
	Bytes       int64  // how many bytes were dropped (0: unknown, a missing file)
	Quarantined string // the copy of the segment as it was, before the salvage rewrote it
	// First and Last bound the lost sequence numbers: those between the
	// last record replayed before the damage and the first one after it.
	// Last is 0 when no record followed (the end is unknown). First > Last
	// means the damage held no writes.
	First, Last uint64
	Err         error // the damage found
}

// LostRanges returns what this Open found lost from the log (see
// LostRange); nil when nothing was lost. Each range was
// also logged at error level.
func (db *DB) LostRanges() []LostRange {
	return append([]LostRange(nil), db.lost...)
}

// historyLost handles segments whose index survives but whose files (log
// segment and archive) are gone: their operations are lost to exports and
// the change feed. They are treated as history retention dropped, so that
// asking for them fails with ErrHistoryUnavailable instead of getting
// less than asked: the history floor and the feed floor are raised past
// them (durably, with the next commit; in memory only when read-only),
// their clock is kept, and each is reported (LostRanges, Health, and the
// log at error level). A peer or a backup holds what was lost.
func (db *DB) historyLost(missing []*segIndex) {
	ol := &db.ol
	floor := ol.floor.Clone()
	feedFloor := ol.feedFloor
	for _, s := range missing {
		for r, rg := range s.ranges {
			floor[r] = max(floor[r], rg.max)
		}
		if p := (Position{Seq: uint64(s.lastSeq), Index: 1<<32 - 1}); !ol.feedFloorSet || feedFloor.Less(p) {
			feedFloor = p
		}
		ol.clock.Restore(s.maxHLC)
		path := layout.Path(db.dir, layout.TypeArchive, s.num)
		if !s.archived {
			path = layout.Path(db.dir, layout.TypeLog, s.num)
		}
		err := errs.Corruptf(path, 0, "missing: the op log's index lists it (log records %d..%d)", s.firstSeq, s.lastSeq)
		db.lost = append(db.lost, LostRange{Segment: path, First: uint64(s.firstSeq), Last: uint64(s.lastSeq), Err: err})
		db.log.Error().Err(err).Str("segment", path).Uint64("first_seq", uint64(s.firstSeq)).Uint64("last_seq", uint64(s.lastSeq)).
			Msg("op history lost: exports and the change feed from before it now fail with ErrHistoryUnavailable; a peer or a backup holds it")
	}
	mark, raise := ol.clockMarkFor(missing...)
	ol.floor = floor
	ol.feedFloor, ol.feedFloorSet = feedFloor, true
	db.queueMeta(metaFloor, floor.Append(nil))
	db.queueMeta(metaFeedFloor, binary.AppendUvarint(binary.AppendUvarint(nil, feedFloor.Seq), uint64(feedFloor.Index)))
	if raise {
		ol.clockMark = mark
		db.queueMeta(metaClock, binary.BigEndian.AppendUint64(nil, uint64(mark)))
	}
	for _, s := range missing {
		db.queueMeta(segIndexKey(s.num), nil)
	}
}

// historySalvaged handles the log records a salvaging Open dropped
// (lost, each in a replayed segment): the operations they held are gone
// from the history, but the sequence numbers around them are not, and an
// export or a feed that read past them would hand out less than it
// claims (a peer taking the stream would claim the dropped operations and
// never get them from a replica that has them). So, as for a lost history
// file, the floors are raised past them:
//   - this replica's own operations carry the log's sequence numbers:
//     its floor goes to the last one lost (to its last operation when the
//     end of the loss is unknown);
//   - another replica's operations in a dropped import record have
//     sequence numbers between its last before the damage and its first
//     after it: its floor goes to the highest it has in the damaged
//     segment or before, or to one below the first it has after, if it
//     has one;
//   - the feed floor goes past the damaged segment.
//
// The state of the keys the records wrote is lost too; a peer that holds
// them refills it (package refill, plures-fsck --repair --from-peer).
func (db *DB) historySalvaged(lost []LostRange) {
	ol := &db.ol
	floor := ol.floor.Clone()
	feedFloor := ol.feedFloor
	raised := false
	for _, lr := range lost {
		t, num, ok := layout.Parse(filepath.Base(lr.Segment))
		if !ok || (t != layout.TypeLog && t != layout.TypeManifest) || lr.First > lr.Last && lr.Last != 0 {
			continue // no write was lost
		}
		if t == layout.TypeManifest {
			// Records between the tables and the log: before every
			// segment.
			num = 0
		}
		last := lr.Last
		if last == 0 || last > ol.localSeq {
			last = ol.localSeq
		}
		if last > floor[ol.self] {
			floor[ol.self], raised = last, true
		}
		before, after := map[oplog.ReplicaID]uint64{}, map[oplog.ReplicaID]uint64{}
		segLast := lsm.SeqNum(0)
		for _, s := range ol.segs {
			for r, rg := range s.ranges {
				if s.num <= num {
					before[r] = max(before[r], rg.max)
				} else if a, ok := after[r]; !ok || rg.min < a {
					after[r] = rg.min
				}
			}
			if s.num == num {
				segLast = s.lastSeq
			}
		}
		for r, b := range before {
			if r == ol.self {
				continue
			}
			f := b
			if a, ok := after[r]; ok && a > 0 {
				f = max(f, a-1)
			}
			if f > floor[r] {
				floor[r], raised = f, true
			}
		}
		for r, a := range after {
			if _, ok := before[r]; !ok && r != ol.self && a > 0 && a-1 > floor[r] {
				floor[r], raised = a-1, true
			}
		}
		end := max(uint64(segLast), lr.Last)
		if p := (Position{Seq: end, Index: 1<<32 - 1}); end > 0 && (!ol.feedFloorSet || feedFloor.Less(p)) {
			feedFloor, raised = p, true
		}
	}
	if !raised {
		return
	}
	ol.floor = floor
	ol.feedFloor, ol.feedFloorSet = feedFloor, true
	db.queueMeta(metaFloor, floor.Append(nil))
	db.queueMeta(metaFeedFloor, binary.AppendUvarint(binary.AppendUvarint(nil, feedFloor.Seq), uint64(feedFloor.Index)))
	db.log.Error().Str("floor", floor.String()).Msg("salvage dropped log records: exports and the change feed from before them now fail with ErrHistoryUnavailable")
}

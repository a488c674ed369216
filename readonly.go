package pluresdb

import (
	"fmt"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/wal"
)

// Read-only opens (Options.ReadOnly). Open reads the MANIFEST without
// rewriting it (lsm.VersionSetOptions.ReadOnly), replays the log without
// truncating a torn tail (wal.RecoverOptions.ReadOnly), keeps what it
// replayed in memtables instead of flushing them, and starts no log
// segment and no background work. The last replayed segment stands in
// for the live one, read up to the end of its last whole record, so the
// change feed, exports and as-of reads see what it holds.

// errReadOnlyOpen is what every write to a read-only open returns.
var errReadOnlyOpen = fmt.Errorf("%w: opened with Options.ReadOnly", errs.ErrReadOnly)

// replayedReadOnly ends a read-only replay: mem holds what was replayed
// last (nil: nothing), live the segments replayed and res what Replay
// found.
func (db *DB) replayedReadOnly(mem *lsm.Memtable, live []layout.FileNum, res wal.Result, lastSeq lsm.SeqNum) error {
	if mem == nil {
		mem = lsm.NewMemtable(db.opts.MemtableSize)
	}
	cur := db.vs.LogNum()
	size := int64(0)
	if n := len(live); n > 0 {
		cur = live[n-1]
		if res.TornTail {
			size = res.TruncatedAt
		} else {
			path := layout.Path(db.dir, layout.TypeLog, cur)
			f, err := db.fs.Open(path)
			if err != nil {
				return err
			}
			size, err = f.Size()
			f.Close()
			if err != nil {
				return fmt.Errorf("pluresdb: %s: %w", path, err)
			}
		}
	}
	// The last segment's index (built by the replay) becomes the live one.
	db.ol.cur = newSegIndex(cur)
	if n := len(db.ol.segs); n > 0 && db.ol.segs[n-1].num == cur {
		db.ol.cur = db.ol.segs[n-1]
		db.ol.segs = db.ol.segs[:n-1]
	}
	db.roLiveSize = size
	// Nothing replayed was flushed: every memtable needs the log from the
	// first replayed segment (a checkpoint copies from there).
	first := cur
	if len(live) > 0 {
		first = live[0]
	}
	for _, imm := range db.imms {
		imm.logNum = first
	}
	db.mem = &memtable{m: mem, logNum: first, maxSeq: lastSeq}
	db.vs.SetLastSeq(lastSeq)
	db.lastSeq = lastSeq
	db.visible.Store(uint64(lastSeq))
	return nil
}

// liveLogSize is how much of the live log segment readers of the op log
// may read: what has been written to it (all of it, read-only). Called
// with commitMu held.
func (db *DB) liveLogSize() (int64, error) {
	if db.wal == nil {
		return db.roLiveSize, nil
	}
	return db.wal.WriteBuffered()
}

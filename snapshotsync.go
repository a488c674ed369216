package pluresdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries/tsdb"
)

// State snapshots (see "Snapshots" in ARCHITECTURE.md): a replica joins
// from another's full user state instead of its whole op history. Not to
// be confused with Snapshot (snapshot.go), a read view of this database.
//
// ExportSnapshot streams the documents and counters namespaces as of one
// sequence number, with the version vector at that number, in the format
// of oplog.SnapshotWriter. ImportSnapshot verifies a snapshot whole (into
// a temp file), then joins each of its states with the local state of its
// key, and last moves the version vector, the history floor and the
// tombstone collection horizon in one durable batch.

// ErrSnapshotAhead: a snapshot claims operations of this replica that it
// does not have (its own replica ID with a sequence number above its
// last). The replica lost history it had passed on (a node restored in
// place from an old copy); joining the snapshot would make it reuse
// sequence numbers its peers hold already.
// It wraps ErrRewound.
var ErrSnapshotAhead = fmt.Errorf("pluresdb: a snapshot from a peer: %w", ErrRewound)

// SnapshotInfo describes a state snapshot written or applied.
type SnapshotInfo struct {
	// Source is the replica whose state the snapshot holds.
	Source oplog.ReplicaID
	// VersionVector says which operations the state holds: the source's
	// version vector when it was read, its own entry included.
	VersionVector oplog.VersionVector
	// Horizon is the source's tombstone collection horizon, and Clock its
	// clock, when the state was read.
	Horizon, Clock oplog.Timestamp
	// Documents and Counters count the snapshot's entries: document states
	// and counter states (the counters of a document are kept apart);
	// Series its time series entries (series-table keys and chunks).
	Documents, Counters, Series int
	// Bytes is the snapshot's size.
	Bytes int64
	// Changed (import only) counts the keys whose state the import changed:
	// new, joined with what the snapshot held, or pruned of registers the
	// source had collected.
	Changed int
}

// snapshotLogKey is the key of the op log entry that starts a record
// written by ImportSnapshot: its document and counter entries are states
// joined from a snapshot, not operations, so the change feed, exports and
// the segment indexes see none (decodeRecord finds an import record
// holding no operations).
var snapshotLogKey = []byte("snapshot")

// ExportSnapshot writes to w a state snapshot of this replica: every
// document and counter state (tombstones included) as of one point, with
// the version vector at that point (this replica's own entry included),
// the tombstone collection horizon and the clock. It streams: it holds a
// chunk of about 256 KiB of states at a time, never the whole state.
//
// The point is taken between commits and made durable first (as
// ExportChanges does), and the read holds it like a Snapshot would, so
// concurrent writes and compactions go on. Vector indexes, secondary
// index postings and time series are not in a snapshot: vector indexes
// are local to each replica (rebuild them on the importer), and the rest
// are projections of the documents.
func (db *DB) ExportSnapshot(w io.Writer) (SnapshotInfo, error) {
	return db.exportSnapshot(w, nil)
}

// exportSnapshot is ExportSnapshot, limited to the stored keys of rng
// (nil: all).
func (db *DB) exportSnapshot(w io.Writer, rng *storedRange) (SnapshotInfo, error) {
	if db.closed.Load() {
		return SnapshotInfo{}, errs.ErrClosed
	}
	if err := db.opLogUsable(); err != nil {
		return SnapshotInfo{}, err
	}
	db.commitMu.Lock()
	if db.closed.Load() {
		db.commitMu.Unlock()
		return SnapshotInfo{}, errs.ErrClosed
	}
	vv := db.versionVectorLocked()
	cut := db.lastSeq
	h := oplog.SnapshotHeader{
		Source:  db.ol.self,
		VV:      vv,
		Horizon: oplog.Timestamp(db.ol.gcHorizon.Load()),
		Clock:   db.ol.clock.Last(),
	}
	// Compactions keep what a read at cut sees until the export is done.
	hold := &Snapshot{db: db, seq: cut}
	db.snapMu.Lock()
	db.snaps[hold] = struct{}{}
	db.snapMu.Unlock()
	db.commitMu.Unlock()
	defer hold.Close()
	if err := db.syncThrough(cut); err != nil {
		return SnapshotInfo{}, err
	}

	info := SnapshotInfo{Source: h.Source, VersionVector: vv.Clone(), Horizon: h.Horizon, Clock: h.Clock}
	sw, err := oplog.NewSnapshotWriter(w, h, oplog.SnapshotS2)
	if err != nil {
		return info, err
	}
	var buf []byte
	namespaces := []byte{nsDocuments, nsSeries, nsCounters}
	if rng != nil {
		namespaces = []byte{nsDocuments, nsCounters} // range refills: documents and counters
	}
	for _, ns := range namespaces {
		lo, hi, inRange := rng.bounds(ns)
		if !inRange {
			continue
		}
		ui, v, err := db.newUserIter(lo, hi, cut)
		if err != nil {
			return info, err
		}
		for ok := ui.First(); ok; ok = ui.Next() {
			key := ui.Key()[1:]
			if ns == nsSeries {
				// Chunk states spell every origin out already; a read
				// folds them raw, the snapshot carries them compacted.
				var sv []byte
				if sv, err = tsdb.ExportValue(key, ui.Value(), db.ol.self); err != nil {
					err = fmt.Errorf("%w: exporting series key %q: %v", errs.ErrCorruption, key, err)
					break
				}
				if err = sw.Add(ns, key, sv); err != nil {
					break
				}
				info.Series++
				continue
			}
			if buf, err = oplog.AppendPortableState(buf[:0], ui.Value(), db.ol.self, vv[db.ol.self]); err != nil {
				err = fmt.Errorf("%w: exporting key %q: %v", errs.ErrCorruption, key, err)
				break
			}
			if err = sw.Add(ns, key, buf); err != nil {
				break
			}
			if ns == nsDocuments {
				info.Documents++
			} else {
				info.Counters++
			}
		}
		if err == nil {
			err = ui.Err()
		}
		err = errors.Join(err, ui.Close())
		v.Unref()
		if err != nil {
			return info, err
		}
	}
	_, err = sw.Close()
	info.Bytes = sw.Written()
	return info, err
}

// ImportSnapshot applies a state snapshot written by a peer's
// ExportSnapshot and returns what it held. Afterwards this replica holds
// the join of its state and the snapshot's, and its version vector is the
// maximum of both: ImportChanges from any replica goes on from there.
//
// The snapshot is verified whole before anything is applied: it is
// copied into a temp file in the database directory while every
// checksum, the order of its entries and every state are checked, so a
// truncated, damaged or newer-format snapshot is refused (ErrCorruption
// with the offset, ErrNewerFormat) and leaves the database unchanged.
// Then it is applied from that file, and the file removed.
//
// Applying joins each snapshot state with the local state of its key (see
// oplog.JoinState), in batches each atomic and each holding whole keys;
// a key the snapshot lacks loses the registers the source must have held
// and collected under its horizon (oplog.PruneState: the source holds
// every operation of their origin that this replica holds, so only a
// collected tombstone explains the key's absence). The clock is made
// durable past the snapshot's first; the version vector, the history
// floor and the tombstone collection horizon move last, in one durable
// batch, so a crash during the import leaves a replica that claims
// nothing it lacks: importing the snapshot again completes it (joining a
// state twice changes nothing).
//
// A snapshot import is not an operation: the change feed does not show
// it, as-of reads do not see its states, and this replica cannot pass
// the operations it brought on as history. So the history floor of each
// replica whose operations the snapshot brought is raised to the
// snapshot's version vector: a peer that asks this replica for older
// operations gets ErrHistoryUnavailable (and must ask another replica, or
// import a snapshot itself).
//
// Refused, leaving the database unchanged:
//   - a snapshot that claims operations of this replica it lacks
//     (ErrSnapshotAhead), also while the replica is rejoining (see
//     FinishRejoin): a snapshot carries no history, so the replica could
//     neither pass those operations on nor count its own increments
//     among them; ImportChanges takes them back;
//   - one whose clock is more than Options.MaxClockDrift ahead
//     (oplog.ErrClockDrift);
//   - one holding a register this replica lacks at or below its own
//     tombstone collection horizon, as ImportChanges refuses such
//     operations (ErrStaleReplica);
//   - an import into a replica that holds operations the source lacks at
//     or below the source's horizon (ErrStaleReplica): the source, and
//     every replica that collected under that horizon, would refuse them
//     for ever, so this replica could not sync with them. Its state
//     cannot be made to forget them: rebuild it in a new directory from
//     the snapshot, which loses them (the error names them).
//
// ImportSnapshot holds the commit lock while it applies, as a bulk
// ImportChanges does: writers wait. Retention waits too.
func (db *DB) ImportSnapshot(r io.Reader) (SnapshotInfo, error) {
	im, err := db.importSnapshot(r, nil)
	return *im.info, err
}

// importSnapshot is ImportSnapshot, or with rng a range import (see
// ImportSnapshotRange).
func (db *DB) importSnapshot(r io.Reader, rng *storedRange) (*snapshotImport, error) {
	im := &snapshotImport{db: db, info: &SnapshotInfo{}, rng: rng}
	if db.closed.Load() {
		return im, errs.ErrClosed
	}
	if err := db.opLogUsable(); err != nil {
		return im, err
	}
	// Before the temp file: a read-only open writes nothing.
	if err := db.writable(); err != nil {
		return im, err
	}
	im.tmp = layout.Path(db.dir, layout.TypeTemp, db.vs.NewFileNum())
	defer func() {
		if err := db.fs.Remove(im.tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
			db.log.Error().Err(err).Str("file", im.tmp).Msg("removing a snapshot's temp file")
		}
	}()
	info, err := db.receiveSnapshot(r, im.tmp, rng)
	*im.info = info
	if err != nil {
		return im, err
	}

	// No retention pass meanwhile: it would write back the history floor
	// and clock mark it read before the import raised them.
	db.retentionMu.Lock()
	defer db.retentionMu.Unlock()
	db.commitMu.Lock()
	if err := db.writable(); err != nil {
		db.commitMu.Unlock()
		return im, err
	}
	err = im.check()
	if err == nil {
		err = im.apply()
	}
	db.commitMu.Unlock()
	if im.last != 0 {
		// What was written stays: make it visible and durable, as a
		// retry expects.
		err = errors.Join(err, db.publish(im.last, true))
	}
	return im, err
}

// receiveSnapshot copies a snapshot from r into the file tmp while
// verifying it whole, and returns what its header and entries say.
func (db *DB) receiveSnapshot(r io.Reader, tmp string, rng *storedRange) (SnapshotInfo, error) {
	f, err := db.fs.Create(tmp)
	if err != nil {
		return SnapshotInfo{}, err
	}
	cw := &countingWriter{w: f}
	var inRange func(ns byte, key, state []byte) error
	if rng != nil {
		// A range import joins nothing outside its range: a snapshot
		// holding more is refused before anything is applied.
		inRange = func(ns byte, key, _ []byte) error {
			if !rng.contains(ns, key) {
				return fmt.Errorf("%w: snapshot entry %q of namespace %d outside the range imported (%s)",
					errs.ErrCorruption, key, ns, rng)
			}
			return nil
		}
	}
	info, err := scanSnapshot(io.TeeReader(r, cw), inRange)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && cw.err != nil {
		err = fmt.Errorf("pluresdb: writing a snapshot's temp file %s: %w", tmp, cw.err)
	}
	info.Bytes = cw.n
	return info, err
}

// scanSnapshot reads a whole snapshot from r, checking it, and calls fn
// (if not nil) for each entry. Only the documents and counters namespaces
// and keys the engine accepts are allowed.
func scanSnapshot(r io.Reader, fn func(ns byte, key, state []byte) error) (SnapshotInfo, error) {
	sr, err := oplog.NewSnapshotReader(r)
	if err != nil {
		return SnapshotInfo{}, err
	}
	sr.Check = checkSnapshotState
	h := sr.Header()
	info := SnapshotInfo{Source: h.Source, VersionVector: h.VV, Horizon: h.Horizon, Clock: h.Clock}
	for {
		at := sr.Offset()
		ns, key, state, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return info, nil
		}
		if err != nil {
			return info, err
		}
		switch {
		case ns != nsDocuments && ns != nsCounters && ns != nsSeries:
			return info, errs.Corruptf("state snapshot", at, "entry of namespace %d", ns)
		case len(key) > MaxKeySize:
			return info, errs.Corruptf("state snapshot", at, "key of %d bytes (limit %d)", len(key), MaxKeySize)
		}
		switch ns {
		case nsDocuments:
			info.Documents++
		case nsSeries:
			info.Series++
		default:
			info.Counters++
		}
		if fn != nil {
			if err := fn(ns, key, state); err != nil {
				return info, err
			}
		}
	}
}

// countingWriter counts what it writes and keeps the first error, so a
// TeeReader does not turn a write failure into a read failure.
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return len(p), nil
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	c.err = err
	return len(p), nil
}

// snapshotImport applies a verified snapshot under commitMu.
type snapshotImport struct {
	db   *DB
	info *SnapshotInfo
	tmp  string
	have oplog.VersionVector // this replica's version vector, its own entry included
	// rng limits a range import (ImportSnapshotRange) to its stored keys;
	// nil: a whole snapshot.
	rng *storedRange
	// lacking is what finishRange found the source lacked (see
	// RangeImport.Lacking).
	lacking oplog.VersionVector

	b    *Batch
	last lsm.SeqNum // last sequence number written
	// series are the series the snapshot added to the series table: the
	// index learns of them once they are written.
	series []string
	// floors are the deletion floors the import raised.
	floors []snapshotFloor
}

// check refuses a snapshot this replica must not join (see
// ImportSnapshot).
func (im *snapshotImport) check() error {
	db, info := im.db, im.info
	self := db.ol.self
	im.have = db.versionVectorLocked()
	if s := info.VersionVector[self]; s > im.have[self] && db.rejoining.Load() {
		// A snapshot holds no history: this replica could not pass the
		// operations on, and its local counter share would not count
		// them. A change stream brings them back whole.
		return fmt.Errorf("%w: it holds this replica's (%s) operations up to %d, this replica's last is %d; "+
			"while rejoining, take them back with ImportChanges of the peer's ExportChanges since VersionVector()",
			ErrSnapshotAhead, self, s, im.have[self])
	}
	if s := info.VersionVector[self]; s > im.have[self] {
		return fmt.Errorf("%w: it holds this replica's (%s) operations up to %d, this replica's last is %d; "+
			"this replica lost history its peers have (restored from an old copy?) and cannot rejoin in place",
			ErrSnapshotAhead, self, s, im.have[self])
	}
	if limit := db.opts.MaxClockDrift; limit >= 0 && info.Clock != 0 {
		wall := db.ol.clock.Wall()
		if ahead := info.Clock.Time().Sub(wall); ahead > limit {
			return fmt.Errorf("%w: the snapshot's clock %s is %v ahead of the local clock %s (Options.MaxClockDrift %v)",
				oplog.ErrClockDrift, info.Clock, ahead.Round(time.Millisecond), wall.UTC().Format(time.RFC3339Nano), limit)
		}
	}
	// A range import does not take the source's version vector, so it
	// changes nothing about which operations this replica can pass on
	// to the source: the check of a whole snapshot's
	// (checkUndeliverable) is not its business.
	if im.rng == nil {
		if err := im.checkUndeliverable(); err != nil {
			return err
		}
	}
	return im.checkStale()
}

// checkUndeliverable refuses the import if this replica holds operations
// the source lacks at or below the source's collection horizon.
func (im *snapshotImport) checkUndeliverable() error {
	db, info := im.db, im.info
	h := info.Horizon
	if h == 0 {
		return nil
	}
	db.ol.mu.Lock()
	segs := append(db.ol.snapshotSegs(), db.ol.cur.clone())
	floor := db.ol.floor.Clone()
	db.ol.mu.Unlock()
	for r, s := range im.have {
		if s > info.VersionVector[r] && floor[r] > info.VersionVector[r] {
			// Some of them are no longer in the log: their timestamps
			// are unknown.
			return fmt.Errorf("%w: this replica holds replica %s's operations %d..%d, which the snapshot's source lacks, "+
				"and no longer has the history to tell whether they lie above the source's collection horizon %s; "+
				"rebuild this replica in a new directory from the snapshot (those operations are lost)",
				ErrStaleReplica, r, info.VersionVector[r]+1, s, h)
		}
	}
	size, err := db.liveLogSize()
	if err != nil {
		return err
	}
	for i, s := range segs {
		suspect := false
		for r, rg := range s.ranges {
			if rg.max > info.VersionVector[r] && rg.minHLC <= h {
				suspect = true
			}
		}
		if !suspect {
			continue
		}
		limit := int64(-1)
		if i == len(segs)-1 {
			limit = size
		}
		var found *oplog.Op
		err := db.scanTransactions(s, limit, func(op *oplog.Op) error {
			if found == nil && op.Seq > info.VersionVector[op.Replica] && op.HLC <= h {
				c := *op
				found = &c
			}
			return nil
		}, func() {})
		if err != nil {
			return err
		}
		if found != nil {
			return fmt.Errorf("%w: this replica holds operation %s/%d of %s, which the snapshot's source lacks and "+
				"which lies at or below its tombstone collection horizon %s: the source refuses it, and so would every "+
				"replica that collected under that horizon; rebuild this replica in a new directory from the snapshot "+
				"(its operations the source lacks are lost)",
				ErrStaleReplica, found.Replica, found.Seq, found.HLC, h)
		}
	}
	return nil
}

// checkStale refuses a snapshot holding a register this replica lacks at
// or below its own collection horizon: a tombstone collected here might
// have beaten it (see refuseStale). A register of replica r is one this
// replica holds if its timestamp is at most that of the newest operation
// of r in the retained log (r's timestamps rise with its sequence
// numbers); without that history, any at or below the horizon is
// refused.
func (im *snapshotImport) checkStale() error {
	db, info := im.db, im.info
	h := oplog.Timestamp(db.ol.gcHorizon.Load())
	if h == 0 {
		return nil
	}
	known := map[oplog.ReplicaID]oplog.Timestamp{}
	lacking := false
	db.ol.mu.Lock()
	segs := append(db.ol.snapshotSegs(), db.ol.cur.clone())
	db.ol.mu.Unlock()
	for r, s := range info.VersionVector {
		if r == db.ol.self || s <= im.have[r] {
			continue
		}
		lacking = true
		known[r] = 0
		for _, sg := range segs {
			if rg, ok := sg.ranges[r]; ok {
				known[r] = max(known[r], rg.maxHLC)
			}
		}
	}
	if !lacking {
		return nil
	}
	f, err := db.fs.Open(im.tmp)
	if err != nil {
		return err
	}
	defer f.Close()
	var stale error
	_, err = scanSnapshot(f, func(ns byte, key, state []byte) error {
		return oplog.PortableRegisters(state, func(origin oplog.ReplicaID, ts oplog.Timestamp) {
			k, lacks := known[origin]
			if stale == nil && lacks && ts <= h && ts > k {
				db.m.staleImports.Add(1)
				stale = fmt.Errorf("%w: the snapshot holds a register of replica %s at %s on key %q, which this replica may lack "+
					"and which is at or below its tombstone collection horizon %s",
					ErrStaleReplica, origin, ts, key, h)
			}
		})
	})
	if err != nil {
		return err
	}
	return stale
}

// apply writes the joined states, then the metadata.
func (im *snapshotImport) apply() error {
	db, info := im.db, im.info

	// The clock first, durably: the states carry timestamps up to the
	// snapshot's clock that this replica's log does not, and a local
	// write after a crash must still order above them.
	db.ol.clock.Restore(info.Clock)
	db.ol.mu.Lock()
	mark := db.ol.clockMark
	db.ol.mu.Unlock()
	if info.Clock > mark {
		b := db.NewBatch()
		addClockMark(b, info.Clock)
		if err := im.write(b); err != nil {
			return err
		}
		if err := db.syncThrough(im.last); err != nil {
			return err
		}
		db.ol.mu.Lock()
		db.ol.clockMark = max(db.ol.clockMark, info.Clock)
		db.ol.mu.Unlock()
	}

	f, err := db.fs.Open(im.tmp)
	if err != nil {
		return err
	}
	defer f.Close()
	sr, err := oplog.NewSnapshotReader(f)
	if err != nil {
		return err
	}
	sr.Check = checkSnapshotState
	im.newBatch()
	// pending is the snapshot's next entry, read ahead.
	var (
		pNS              byte
		pKey, pState     []byte
		pendingOK, atEOF bool
	)
	next := func() error {
		ns, key, state, err := sr.Next()
		if errors.Is(err, io.EOF) {
			pendingOK, atEOF = false, true
			return nil
		}
		if err != nil {
			return err
		}
		pNS, pKey, pState, pendingOK = ns, key, state, true
		return nil
	}
	if err := next(); err != nil {
		return err
	}
	readAt := db.lastSeq
	for _, ns := range []byte{nsDocuments, nsSeries, nsCounters} {
		lo, hi, inRange := im.rng.bounds(ns)
		if !inRange {
			continue // receiveSnapshot refused entries of ns
		}
		ui, v, err := db.newUserIter(lo, hi, readAt)
		if err != nil {
			return err
		}
		err = im.walk(ns, ui, func() (bool, []byte, []byte) {
			if !pendingOK || pNS != ns {
				return false, nil, nil
			}
			return true, pKey, pState
		}, next)
		err = errors.Join(err, ui.Err(), ui.Close())
		v.Unref()
		if err != nil {
			return err
		}
	}
	if !atEOF {
		return fmt.Errorf("%w: snapshot entry of namespace %d after the counters", errs.ErrCorruption, pNS)
	}
	if err := im.flush(); err != nil {
		return err
	}
	for _, f := range im.floors {
		db.seriesDel.Set(f.name, f.floor, uint64(db.lastSeq))
	}
	db.seriesDel.TouchAll(uint64(db.lastSeq))
	if err := db.indexSeries(im.series); err != nil {
		return err
	}
	if im.rng != nil {
		return im.finishRange()
	}
	return im.finish()
}

// walk joins the snapshot's entries of namespace ns (peek returns the
// next, if it is of ns; advance moves on) with the local states ui walks,
// in key order.
func (im *snapshotImport) walk(ns byte, ui *lsm.UserIter, peek func() (bool, []byte, []byte), advance func() error) error {
	db := im.db
	self := db.ol.self
	local := ui.First()
	for {
		ok, key, p := peek()
		// Local keys before the snapshot's next (or all that are left).
		for local && (!ok || bytes.Compare(ui.Key()[1:], key) < 0) {
			if ns == nsDocuments && im.info.Horizon != 0 {
				if err := im.prune(ui.Key()[1:], ui.Value()); err != nil {
					return err
				}
			}
			local = ui.Next()
		}
		if !ok {
			return nil
		}
		var state []byte
		var changed bool
		var err error
		hasLocal := local && bytes.Equal(ui.Key()[1:], key)
		var lv []byte
		if hasLocal {
			lv = ui.Value()
		}
		switch {
		case ns == nsSeries:
			state, changed, err = im.joinSeries(key, lv, hasLocal, p)
		case im.rng != nil:
			// A refill: this replica's own share of a lost key may lack
			// increments the source counted.
			state, changed, err = oplog.JoinStateRefill(lv, hasLocal, p, self, db.ol.localSeq)
		default:
			state, changed, err = oplog.JoinState(lv, hasLocal, p, self)
		}
		if hasLocal {
			local = ui.Next()
		}
		if err != nil {
			return fmt.Errorf("%w: joining key %q: %v", errs.ErrCorruption, key, err)
		}
		if changed {
			if err := im.put(lsm.KindSet, ns, key, state); err != nil {
				return err
			}
		}
		if err := advance(); err != nil {
			return err
		}
	}
}

// prune drops from the local state of key, which the snapshot lacks, the
// registers the source held (it holds every operation of their origin
// that this replica holds) at or below its horizon: only a tombstone the
// source collected explains their absence there.
func (im *snapshotImport) prune(key, state []byte) error {
	db, info := im.db, im.info
	holds := func(origin oplog.ReplicaID) uint64 {
		s := im.have[origin]
		for p, c := range db.ol.cursors {
			if bytes.HasPrefix(key, []byte(p)) {
				s = max(s, c[origin])
			}
		}
		return s
	}
	ns, changed, empty, err := oplog.PruneState(state, db.ol.self, func(origin oplog.ReplicaID, ts oplog.Timestamp) bool {
		return ts <= info.Horizon && holds(origin) <= info.VersionVector[origin]
	})
	if err != nil {
		return fmt.Errorf("%w: document %q: %v", errs.ErrCorruption, key, err)
	}
	switch {
	case !changed:
		return nil
	case empty:
		return im.put(lsm.KindDelete, nsDocuments, key, nil)
	}
	return im.put(lsm.KindSet, nsDocuments, key, ns)
}

// newBatch starts a batch of joined states: its op log entry marks it as
// such (snapshotLogKey).
func (im *snapshotImport) newBatch() {
	if im.b == nil {
		im.b = im.db.NewBatch()
	}
	b := im.b
	b.Reset()
	b.data = batchrepr.AppendEntry(b.data, batchrepr.KindLogData, nsMeta, snapshotLogKey, nil)
	b.count++
}

// put adds a joined state to the batch, writing the batch once it holds
// about a quarter memtable.
func (im *snapshotImport) put(kind lsm.Kind, ns byte, key, state []byte) error {
	im.b.add(kind, ns, key, state)
	im.info.Changed++
	if im.b.memSize >= im.db.opts.MemtableSize/4 {
		return im.flush()
	}
	return nil
}

func (im *snapshotImport) flush() error {
	if im.b.count <= 1 {
		return nil
	}
	if err := im.write(im.b); err != nil {
		return err
	}
	im.newBatch()
	return nil
}

// write logs b and inserts it into the memtable.
func (im *snapshotImport) write(b *Batch) error {
	// The documents it joins, through the indexes.
	if set, err := im.db.activeIndexes(); err != nil {
		return err
	} else if set != nil {
		changes, err := im.db.ixScratch.docChanges(b.data, b.count)
		if err != nil {
			return fmt.Errorf("pluresdb: own batch encoding: %w", err)
		}
		if err := im.db.indexChanges(set, b, changes, true); err != nil {
			return err
		}
	}
	if b.memSize > im.db.opts.MemtableSize/2 {
		return fmt.Errorf("%w: a snapshot state needs %d bytes, limit is half the memtable (%d)",
			errs.ErrValueTooLarge, b.memSize, im.db.opts.MemtableSize/2)
	}
	last, err := im.db.appendLocked(b)
	if err != nil {
		return err
	}
	im.last = last
	return nil
}

// finish writes the version vector, the history floor and the collection
// horizon in one durable batch, and then adopts them.
func (im *snapshotImport) finish() error {
	db, info := im.db, im.info
	self := db.ol.self
	remote := db.ol.remote.Clone()
	db.ol.mu.Lock()
	floor := db.ol.floor.Clone()
	db.ol.mu.Unlock()
	for r, s := range info.VersionVector {
		if r == self || s <= remote[r] {
			continue
		}
		// This replica's log lacks r's operations up to s.
		remote[r] = s
		floor[r] = max(floor[r], s)
	}
	horizon := max(oplog.Timestamp(db.ol.gcHorizon.Load()), info.Horizon)
	db.ol.mu.Lock()
	snapClock := max(db.ol.snapClock, info.Clock)
	db.ol.mu.Unlock()
	b := db.NewBatch()
	b.add(lsm.KindSet, nsMeta, metaVV, remote.Append(nil))
	b.add(lsm.KindSet, nsMeta, metaFloor, floor.Append(nil))
	// As-of reads cannot see the states' operations: see metaSnapClock.
	b.add(lsm.KindSet, nsMeta, metaSnapClock, binary.BigEndian.AppendUint64(nil, uint64(snapClock)))
	if horizon != 0 {
		b.add(lsm.KindSet, nsMeta, metaGCHorizon, binary.BigEndian.AppendUint64(nil, uint64(horizon)))
	}
	if err := im.write(b); err != nil {
		return err
	}
	if err := db.syncThrough(im.last); err != nil {
		return err
	}
	db.ol.remote = remote
	db.ol.mu.Lock()
	db.ol.floor = floor
	db.ol.snapClock = snapClock
	db.ol.mu.Unlock()
	db.ol.gcHorizon.Store(uint64(horizon))
	return nil
}

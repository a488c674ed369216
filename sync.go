package pluresdb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
)

// ReplicaID returns this database's replica ID.
func (db *DB) ReplicaID() oplog.ReplicaID { return db.ol.self }

// VersionVector says which operations this replica has: for every replica,
// the sequence number up to which it holds all of that replica's
// operations. Hand it to a peer's ExportChanges to get what is missing.
func (db *DB) VersionVector() oplog.VersionVector {
	db.commitMu.Lock()
	defer db.commitMu.Unlock()
	return db.versionVectorLocked()
}

func (db *DB) versionVectorLocked() oplog.VersionVector {
	vv := db.ol.remote.Clone()
	if db.ol.localSeq > 0 {
		vv[db.ol.self] = db.ol.localSeq
	}
	return vv
}

// ExportChanges writes to w a change stream of every operation this
// replica holds that the holder of since lacks, and returns how many
// operations it wrote. The stream is self-describing and checksummed (see
// oplog.ReadStream); ImportChanges applies it on the peer. since older than
// the retained history gives ErrHistoryUnavailable.
func (db *DB) ExportChanges(w io.Writer, since oplog.VersionVector) (int, error) {
	return db.ExportChangesPrefix(w, since, nil)
}

// ExportChangesPrefix is ExportChanges limited to keys with the given
// prefix (selective sync; nil: all keys). The importer applies such a
// stream but does not advance its version vector, since it lacks the
// other keys' operations: ask again with since = its VersionVector().
func (db *DB) ExportChangesPrefix(w io.Writer, since oplog.VersionVector, prefix []byte) (int, error) {
	if db.closed.Load() {
		return 0, errs.ErrClosed
	}
	// A consistent cut: the version vector, the segments and the size of
	// the live one, all as of one moment between commits.
	db.commitMu.Lock()
	if db.closed.Load() {
		db.commitMu.Unlock()
		return 0, errs.ErrClosed
	}
	upTo := db.versionVectorLocked()
	size, err := db.wal.WriteBuffered()
	if err != nil {
		db.commitMu.Unlock()
		return 0, err
	}
	live := db.ol.cur.clone()
	db.ol.mu.Lock()
	segs := db.ol.snapshotSegs()
	floor := db.ol.floor.Clone()
	db.ol.mu.Unlock()
	db.commitMu.Unlock()

	h := oplog.StreamHeader{Source: db.ol.self, Prefix: prefix}
	from := oplog.VersionVector{}
	for r, to := range upTo {
		f := since[r]
		from[r] = f
		if f >= to {
			continue
		}
		if f < floor[r] {
			return 0, fmt.Errorf("%w: replica %s operations after %d (retained: after %d)",
				ErrHistoryUnavailable, r, f, floor[r])
		}
		h.Ranges = append(h.Ranges, oplog.Range{Replica: r, From: f, To: to})
	}
	sort.Slice(h.Ranges, func(i, j int) bool { return h.Ranges[i].Replica.Compare(h.Ranges[j].Replica) < 0 })
	sw, err := oplog.NewStreamWriter(w, h)
	if err != nil {
		return 0, err
	}
	if len(h.Ranges) > 0 {
		type ref struct {
			idx   *segIndex
			limit int64
		}
		refs := make([]ref, 0, len(segs)+1)
		for _, s := range segs {
			refs = append(refs, ref{s, -1})
		}
		refs = append(refs, ref{live, size})
		for _, rf := range refs {
			if !rf.idx.has(from, upTo) {
				continue
			}
			if err := db.exportSegment(sw, rf.idx, rf.limit, from, upTo, prefix); err != nil {
				return 0, err
			}
		}
	}
	return sw.Close()
}

func (db *DB) exportSegment(sw *oplog.StreamWriter, idx *segIndex, limit int64, from, upTo oplog.VersionVector, prefix []byte) error {
	// A segment and an archive both hold each replica's operations in
	// ascending order, as a stream wants them.
	return db.scanHistory(idx, limit, func(op *oplog.Op) error {
		if op.Seq <= from[op.Replica] || op.Seq > upTo[op.Replica] ||
			(prefix != nil && !bytes.HasPrefix(op.Key, prefix)) {
			return nil
		}
		return sw.Add(op)
	})
}

// ImportChanges applies a change stream written by a peer's ExportChanges
// and returns how many operations it applied (operations this replica
// already had are skipped: importing a stream twice changes nothing).
//
// The whole stream is read and verified before anything is applied: a
// truncated, corrupt or newer-format stream is refused with an error
// wrapping ErrCorruption or ErrNewerFormat and leaves the database
// unchanged; so does a stream that starts after what this replica has
// (ErrCausalGap) or one whose timestamps are implausibly far ahead of the
// local clock (oplog.ErrClockDrift). A stream that fits in half a memtable
// is applied in one atomic batch; a larger one in several, each leaving
// the database consistent, so that an import cut short by a crash is
// completed by importing the stream again.
func (db *DB) ImportChanges(r io.Reader) (int, error) {
	if db.closed.Load() {
		return 0, errs.ErrClosed
	}
	st, err := oplog.ReadStream(r)
	if err != nil {
		return 0, err
	}
	var maxTS oplog.Timestamp
	for i := range st.Ops {
		maxTS = max(maxTS, st.Ops[i].HLC)
	}
	filtered := st.Header.Prefix != nil

	db.commitMu.Lock()
	if err := db.writable(); err != nil {
		db.commitMu.Unlock()
		return 0, err
	}
	for _, rg := range st.Header.Ranges {
		if rg.Replica != db.ol.self && rg.From > db.ol.remote[rg.Replica] {
			db.commitMu.Unlock()
			return 0, fmt.Errorf("%w: the stream has replica %s's operations after %d, this replica has them up to %d",
				ErrCausalGap, rg.Replica, rg.From, db.ol.remote[rg.Replica])
		}
	}
	if maxTS > 0 {
		if err := db.ol.clock.Observe(maxTS); err != nil {
			db.commitMu.Unlock()
			return 0, err
		}
	}
	im := importer{db: db, filtered: filtered, remote: db.ol.remote.Clone()}
	last, n, err := im.apply(st.Ops)
	db.commitMu.Unlock()
	if err != nil {
		return n, err
	}
	if last == 0 {
		return n, nil
	}
	return n, db.publish(last, !db.opts.NoSync)
}

// importer applies remote operations under commitMu.
type importer struct {
	db       *DB
	filtered bool
	remote   oplog.VersionVector // advanced as operations are applied
	b        *Batch
	applied  []oplog.Op        // operations of the current batch, for its log entry
	states   map[string][]byte // current states of the keys touched
	dirty    map[string]bool   // states changed by the current batch
	size     int               // bytes the current batch will take, roughly
	logBuf   []byte
}

// apply applies ops in batches and returns the last sequence number written.
func (im *importer) apply(ops []oplog.Op) (lsm.SeqNum, int, error) {
	db := im.db
	im.b = db.NewBatch()
	im.states = map[string][]byte{}
	im.dirty = map[string]bool{}
	var last lsm.SeqNum
	n := 0
	var ukey []byte
	for i := range ops {
		op := &ops[i]
		if op.Replica == db.ol.self || op.Seq <= im.remote[op.Replica] {
			continue // already here
		}
		ns := nsDocuments
		if op.Kind == oplog.KindIncr {
			ns = nsCounters
		}
		ukey = append(append(ukey[:0], ns), op.Key...)
		state, ok := im.states[string(ukey)]
		if !ok {
			v, _, err := db.getRaw(ukey, db.lastSeq)
			switch {
			case err == nil:
				state = v
			case errors.Is(err, errs.ErrNotFound):
			default:
				return last, n, err
			}
		}
		next, changed, err := oplog.ApplyOp(state, state != nil, op, db.ol.self)
		if err != nil {
			return last, n, fmt.Errorf("%w: applying operation %d of replica %s: %v", errs.ErrCorruption, op.Seq, op.Replica, err)
		}
		if changed {
			state = next
			im.dirty[string(ukey)] = true
			im.size += len(ukey) + len(state) + lsm.MemtableEntryOverhead
		}
		im.states[string(ukey)] = state
		if !im.filtered {
			im.remote[op.Replica] = op.Seq
			im.applied = append(im.applied, *op)
			im.size += len(op.Key) + len(op.Field) + len(op.Value) + 24
		}
		n++
		if im.size > db.opts.MemtableSize/4 {
			l, err := im.flush()
			if err != nil {
				return last, n, err
			}
			last = l
		}
	}
	l, err := im.flush()
	if err != nil {
		return last, n, err
	}
	if l != 0 {
		last = l
	}
	return last, n, nil
}

// flush writes the batch built so far: the log entry with the operations,
// the changed states and the version vector.
func (im *importer) flush() (lsm.SeqNum, error) {
	db := im.db
	if len(im.dirty) == 0 && len(im.applied) == 0 {
		clear(im.states)
		im.size = 0
		return 0, nil
	}
	b := im.b
	b.Reset()
	// The log entry comes first: it marks the record as an import, whose
	// document entries are projections, not operations of this replica.
	// Operations of one replica in a row share a delta-encoded run. (A
	// filtered import logs none: see ExportChangesPrefix.)
	im.logBuf = im.logBuf[:0]
	for start := 0; start < len(im.applied); {
		end := start + 1
		for end < len(im.applied) && im.applied[end].Replica == im.applied[start].Replica {
			end++
		}
		im.logBuf = oplog.AppendBatch(im.logBuf, im.applied[start].Replica, im.applied[start:end])
		start = end
	}
	b.data = batchrepr.AppendEntry(b.data, batchrepr.KindLogData, nsMeta, nil, im.logBuf)
	b.count++
	keys := make([]string, 0, len(im.dirty))
	for k := range im.dirty {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.add(lsm.KindSet, k[0], []byte(k)[1:], im.states[k])
	}
	if !im.filtered {
		b.add(lsm.KindSet, nsMeta, metaVV, im.remote.Append(nil))
	}
	if b.memSize > db.opts.MemtableSize/2 {
		return 0, fmt.Errorf("%w: import batch of %d bytes", errs.ErrValueTooLarge, b.memSize)
	}
	last, err := db.appendLocked(b)
	if err != nil {
		return 0, err
	}
	// The log entry's operations go into the segment's index.
	for i := range im.applied {
		op := &im.applied[i]
		db.ol.cur.noteOps(op.Replica, op.Seq, op.Seq, op.HLC, op.HLC)
	}
	db.ol.remote = im.remote.Clone()
	im.applied = im.applied[:0]
	clear(im.states)
	clear(im.dirty)
	im.size = 0
	return last, nil
}

package pluresdb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
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
// local clock (oplog.ErrClockDrift). A stream of up to about a quarter
// memtable of operations is applied in one atomic batch; a larger one in
// several, each leaving the database consistent, so that an import cut
// short by a crash is completed by importing the stream again.
//
// Operations are written without reading the stored state (see importer),
// so Gets of the imported keys fold them until compaction has.
func (db *DB) ImportChanges(r io.Reader) (int, error) {
	if db.closed.Load() {
		return 0, errs.ErrClosed
	}
	vs, err := oplog.VerifyStream(r)
	if err != nil {
		return 0, err
	}
	filtered := vs.Header.Prefix != nil

	// Decode the chunks ahead of the apply, on another goroutine.
	stop := make(chan struct{})
	defer close(stop)
	chunks := make(chan []oplog.Op, importDecodeAhead)
	go func() {
		defer close(chunks)
		for i := range vs.NumChunks() {
			ops, err := vs.Chunk(i, nil)
			if err != nil {
				// Verified already: only a bug gets here. The apply
				// sees the channel close early and reports it.
				return
			}
			select {
			case chunks <- ops:
			case <-stop:
				return
			}
		}
	}()

	db.commitMu.Lock()
	if err := db.writable(); err != nil {
		db.commitMu.Unlock()
		return 0, err
	}
	for _, rg := range vs.Header.Ranges {
		if rg.Replica != db.ol.self && rg.From > db.ol.remote[rg.Replica] {
			db.commitMu.Unlock()
			return 0, fmt.Errorf("%w: the stream has replica %s's operations after %d, this replica has them up to %d",
				ErrCausalGap, rg.Replica, rg.From, db.ol.remote[rg.Replica])
		}
	}
	if vs.MaxHLC > 0 {
		if err := db.ol.clock.Observe(vs.MaxHLC); err != nil {
			db.commitMu.Unlock()
			return 0, err
		}
	}
	im := importer{db: db, filtered: filtered, remote: db.ol.remote.Clone()}
	last, n, seen, err := im.apply(chunks)
	db.commitMu.Unlock()
	if err == nil && seen != vs.Count {
		err = fmt.Errorf("%w: change stream: decoded %d of its %d operations", errs.ErrCorruption, seen, vs.Count)
	}
	if err != nil {
		if last != 0 {
			// What was written stays: make it visible (and durable), as a
			// retry expects.
			err = errors.Join(err, db.publish(last, !db.opts.NoSync))
		}
		return n, err
	}
	if last == 0 {
		return n, nil
	}
	return n, db.publish(last, !db.opts.NoSync)
}

// importDecodeAhead is how many decoded chunks (of about 64 KiB of ops
// each) an import keeps ready ahead of its apply.
const importDecodeAhead = 32

// importer applies remote operations under commitMu.
//
// Each operation is written as a remote merge operand
// (oplog.AppendRemoteOperand) without reading the stored state: the merge
// rules are joins, so the operand folds with whatever lies beneath it, on
// reads and in compactions, into the document that merging it with the
// stored state now would give. An operation that the stored state
// dominates therefore costs a little space until compaction folds it, but
// never shadows newer state (DESIGN.md §4). Only Get and iterators over
// such keys pay for the fold until then.
//
// The memtable insert of a batch runs on a goroutine of its own while the
// next batch is encoded and logged (one insert at a time: the memtable
// has one writer). The batches take turns between two buffers, so the one
// being inserted is never the one being encoded.
type importer struct {
	db       *DB
	filtered bool
	remote   oplog.VersionVector // advanced as operations are applied
	batches  [2]*Batch
	turn     int
	applied  []oplog.Op // operations of the current batch
	logBuf   []byte
	opBuf    []byte
	// The operands of the batches, by turn, as the record refers to them.
	opArenas [2][]byte
	opLists  [2][][]byte

	inserting  chan struct{} // closed when the insert in flight is done; nil: none
	insertSize int           // memtable bytes of the insert in flight
}

// wait waits for the memtable insert in flight, if any.
func (im *importer) wait() {
	if im.inserting != nil {
		<-im.inserting
		im.inserting = nil
	}
}

// importNamespace is the namespace an imported operation's operand goes
// to: counters apart from documents.
func importNamespace(op *oplog.Op) byte {
	if op.Kind == oplog.KindIncr {
		return nsCounters
	}
	return nsDocuments
}

// importBatchOverhead is a rough per-operation size of an import batch
// beyond key, field and value, which it holds twice: in the log entry and
// in the operand the memtable gets.
const importBatchOverhead = lsm.MemtableEntryOverhead + 48

// apply applies the operations of chunks in batches of at most a quarter
// memtable. It returns the last sequence number written, how many
// operations it applied and how many it saw.
func (im *importer) apply(chunks <-chan []oplog.Op) (last lsm.SeqNum, n, seen int, err error) {
	db := im.db
	im.batches = [2]*Batch{db.NewBatch(), db.NewBatch()}
	defer im.wait()
	limit := db.opts.MemtableSize / 4
	size := 0
	flush := func() error {
		if len(im.applied) == 0 {
			return nil
		}
		l, err := im.write()
		if err != nil {
			return err
		}
		last = l
		n += len(im.applied)
		im.applied = im.applied[:0]
		size = 0
		return nil
	}
	for ops := range chunks {
		seen += len(ops)
		for i := range ops {
			op := &ops[i]
			if op.Replica == db.ol.self || op.Seq <= im.remote[op.Replica] {
				continue // already here
			}
			if !im.filtered {
				im.remote[op.Replica] = op.Seq
			}
			im.applied = append(im.applied, *op)
			size += 2*(len(op.Key)+len(op.Field)+len(op.Value)) + importBatchOverhead
			if size >= limit {
				if err := flush(); err != nil {
					return last, n, seen, err
				}
			}
		}
	}
	return last, n, seen, flush()
}

// write commits the operations in im.applied as one batch: the log entry
// with the operations, their operands and the version vector.
func (im *importer) write() (lsm.SeqNum, error) {
	db := im.db
	turn := im.turn
	im.turn ^= 1
	b := im.batches[turn]
	b.Reset()
	// The log entry comes first: it marks the record as an import, whose
	// document entries are projections, not operations of this replica.
	// Operations of one replica in a row share a delta-encoded run. (A
	// filtered import logs none, see ExportChangesPrefix, but still has
	// the entry: without it its operands would read as local operations.)
	im.logBuf = im.logBuf[:0]
	for start := 0; start < len(im.applied) && !im.filtered; {
		end := start + 1
		for end < len(im.applied) && im.applied[end].Replica == im.applied[start].Replica {
			end++
		}
		im.logBuf = oplog.AppendBatch(im.logBuf, im.applied[start].Replica, im.applied[start:end])
		start = end
	}
	b.data = batchrepr.AppendEntry(b.data, batchrepr.KindLogData, nsMeta, nil, im.logBuf)
	b.count++
	// The operands: in the record, or (when the log entry holds the
	// operations) only referred to, and handed to the memtable insert
	// beside the record (see recordEntries).
	var operands [][]byte
	if im.filtered {
		for i := range im.applied {
			op := &im.applied[i]
			im.opBuf = oplog.AppendRemoteOperand(im.opBuf[:0], op)
			b.add(lsm.KindMerge, importNamespace(op), op.Key, im.opBuf)
		}
	} else {
		size := 0
		for i := range im.applied {
			size += remoteOperandSize(&im.applied[i])
		}
		arena := slices.Grow(im.opArenas[turn][:0], size)
		operands = im.opLists[turn][:0]
		for i := range im.applied {
			op := &im.applied[i]
			start := len(arena)
			arena = oplog.AppendRemoteOperand(arena, op)
			operands = append(operands, arena[start:len(arena):len(arena)])
			b.add(lsm.KindMerge, importNamespace(op), op.Key, nil)
			b.memSize += len(arena) - start
		}
		im.opArenas[turn], im.opLists[turn] = arena, operands
	}
	if !im.filtered {
		b.add(lsm.KindSet, nsMeta, metaVV, im.remote.Append(nil))
	}
	if b.memSize > db.opts.MemtableSize/2 {
		return 0, fmt.Errorf("%w: import batch of %d bytes", errs.ErrValueTooLarge, b.memSize)
	}
	// Logging may rotate the memtable or write pending metadata: both
	// need the insert in flight done first.
	if im.inserting != nil && (db.mem.m.Room()-im.insertSize < b.memSize+db.pendingMetaSize() || len(db.pendingMeta) > 0) {
		im.wait()
	}
	rec, seq, last, err := db.logLocked(b)
	if err != nil {
		return 0, err
	}
	im.wait()
	done, mem := make(chan struct{}), db.mem
	im.inserting, im.insertSize = done, b.memSize
	go func() {
		defer close(done)
		db.insertLocked(mem, rec, seq, last, operands)
	}()
	if !im.filtered {
		// The log entry's operations go into the segment's index, a run
		// of one replica at a time.
		for start := 0; start < len(im.applied); {
			first := &im.applied[start]
			lo, hi := first.HLC, first.HLC
			end := start + 1
			for ; end < len(im.applied) && im.applied[end].Replica == first.Replica; end++ {
				lo, hi = min(lo, im.applied[end].HLC), max(hi, im.applied[end].HLC)
			}
			db.ol.cur.noteOps(first.Replica, first.Seq, im.applied[end-1].Seq, lo, hi)
			start = end
		}
		db.ol.remote = im.remote.Clone()
	}
	return last, nil
}

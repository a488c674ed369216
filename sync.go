package pluresdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"time"

	"github.com/plures/pluresdb/compaction"
	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries/tsdb"
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
//
// Only durable operations are exported: ExportChanges first syncs the log
// up to its cut, so writes made with NoSync are exported too, at the cost
// of that fsync.
func (db *DB) ExportChanges(w io.Writer, since oplog.VersionVector) (int, error) {
	return db.ExportChangesPrefix(w, since, nil)
}

// ExportChangesPrefix is ExportChanges limited to keys with the given
// prefix (selective sync; nil: all keys). The importer logs and applies
// such a stream (its change feed and as-of reads show the operations)
// but does not advance its version vector, since it lacks the other
// keys' operations; it advances its cursor for the prefix instead. Ask
// again with since = the importer's PrefixVersionVector(prefix) to get
// only what is new.
//
// A replica exports what its version vector covers: operations it holds
// only through a selective import are not passed on until a full import
// brings the rest of their replica's operations.
func (db *DB) ExportChangesPrefix(w io.Writer, since oplog.VersionVector, prefix []byte) (int, error) {
	return db.exportChanges(w, since, nil, prefix)
}

// ExportChangesUpTo is ExportChanges limited to the operations at or
// below upTo (per replica; a replica upTo lacks is left out): the changes
// that take the holder of since to the state upTo names, such as one
// VersionVectorAt returned (a point-in-time restore). upTo should end
// where records do, as VersionVectorAt's does: the importer applies the
// stream's transactions whole, and a bound inside one cuts it.
func (db *DB) ExportChangesUpTo(w io.Writer, since, upTo oplog.VersionVector) (int, error) {
	if upTo == nil {
		upTo = oplog.VersionVector{}
	}
	return db.exportChanges(w, since, upTo, nil)
}

// exportChanges writes the operations above since, at or below bound
// (nil: no bound), of keys with prefix (nil: all).
func (db *DB) exportChanges(w io.Writer, since, bound oplog.VersionVector, prefix []byte) (int, error) {
	if db.closed.Load() {
		return 0, errs.ErrClosed
	}
	if err := db.opLogUsable(); err != nil {
		return 0, err
	}
	// A consistent cut: the version vector, the segments and the size of
	// the live one, all as of one moment between commits.
	db.commitMu.Lock()
	if db.closed.Load() {
		db.commitMu.Unlock()
		return 0, errs.ErrClosed
	}
	upTo := db.versionVectorLocked()
	if bound != nil {
		for r, to := range upTo {
			upTo[r] = min(to, bound[r])
		}
	}
	cut := db.lastSeq
	size, err := db.liveLogSize()
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
	// Only durable operations leave: an operation a crash could still
	// lose would have its sequence number reused for another after the
	// restart, and the peer, holding the lost one, would skip the new one.
	// So the cut is made durable first (a no-op unless NoSync writes, or
	// commits still in their group commit, are in it).
	if err := db.syncThrough(cut); err != nil {
		return 0, err
	}

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
	// ascending order, as a stream wants them, leaving out the selective
	// imports' copies (opFiltered).
	return db.scanTransactions(idx, limit, func(op *oplog.Op) error {
		if op.Seq <= from[op.Replica] || op.Seq > upTo[op.Replica] ||
			(prefix != nil && !bytes.HasPrefix(op.Key, prefix)) {
			return nil
		}
		return sw.Add(op)
	}, sw.EndTransaction)
}

// scanTransactions calls fn for every operation of segment s that
// exports see (read up to limit bytes; -1: all), from the segment or its
// archive, and end after the last operation of every transaction: a log
// record (a local batch, or an import's batch of whole remote
// transactions), or what an archive's stream says.
func (db *DB) scanTransactions(s *segIndex, limit int64, fn func(op *oplog.Op) error, end func()) error {
	return db.scanPositions(s, limit, func(_ Position, op *oplog.Op, c opClass) error {
		if !c.exported() {
			return nil
		}
		return fn(op)
	}, end)
}

// ImportChanges applies a change stream written by a peer's ExportChanges
// (or ExportChangesPrefix) and returns how many operations it applied
// that this replica did not have. Operations it already had are skipped
// (importing a stream twice changes nothing), but for those a selective
// import brought before a full one: the full import logs them again,
// in their replica's order, without applying anything new (see
// PrefixVersionVector).
//
// The whole stream is read and verified before anything is applied: a
// truncated, corrupt or newer-format stream is refused with an error
// wrapping ErrCorruption or ErrNewerFormat and leaves the database
// unchanged; so does a stream that starts after what this replica has
// (ErrCausalGap) or one with a timestamp more than Options.MaxClockDrift
// ahead of the local clock (oplog.ErrClockDrift), and one holding this
// replica's own operations beyond its last (ErrRewound: it was restored
// from an older copy, and its peers hold what it wrote since).
//
// A replica restored in place (backup.Restore with SameReplica) is
// rejoining (see FinishRejoin) until told otherwise: then a full stream
// holding its own operations beyond its last is taken, and they are
// applied as any replica's are (they were its writes, coming back); its
// version vector's own entry moves up to the last of them, and the log
// jumps past their sequence numbers first, so that no later write, after
// a crash or not, takes one again. Such a stream must follow what the
// replica has of its own operations too (ErrCausalGap), is applied
// through the memtable (never a bulk import) and may not be selective
// (ErrRejoining). A stream of up to about a quarter
// memtable of operations is applied in one atomic batch; a larger one in
// several, each ending where a transaction of the stream does (the
// operations their origin committed together), so a crash or a failure
// leaves each transaction wholly applied or wholly absent, and an import
// cut short is completed by importing the stream again. Readers see the
// import once it is done (or has failed: then what it applied). A
// selective stream (see ExportChangesPrefix) splits a transaction of
// more than half a memtable.
//
// Operations are written without reading the stored state (see importer),
// so Gets of the imported keys fold them until compaction has. A stream
// of more than a quarter memtable of operations is a bulk import: its
// operands are sorted and written straight to L0 tables, about a
// memtable each, instead of going through the memtable
// (Metrics().IngestedTables counts them); it first waits for the
// memtable's writes to reach L0. While it runs, L0 compacts only from two
// tables short of L0StopWritesThreshold and may grow to twice that
// threshold (see compaction.Picker.SetBulkLoad): the import leaves
// compaction work behind, done in fewer, larger compactions once it ends,
// and until then reads consult more L0 tables.
func (db *DB) ImportChanges(r io.Reader) (int, error) {
	if db.closed.Load() {
		return 0, errs.ErrClosed
	}
	if err := db.opLogUsable(); err != nil {
		return 0, err
	}
	vs, err := oplog.VerifyStream(r)
	if err != nil {
		return 0, err
	}
	if vs.Header.LogOrder {
		return 0, fmt.Errorf("%w: change stream in log order (an op-log archive's), not a sync stream", errs.ErrCorruption)
	}
	filtered := vs.Header.Prefix != nil
	if len(vs.Header.Prefix) > MaxKeySize {
		// No key has it, and its cursor could not be stored.
		return 0, fmt.Errorf("%w: change stream prefix of %d bytes, limit %d", errs.ErrKeyTooLarge, len(vs.Header.Prefix), MaxKeySize)
	}

	// Decode the chunks ahead of the apply, on another goroutine, into
	// the buffers of chunks the apply is done with.
	stop := make(chan struct{})
	defer close(stop)
	chunks := make(chan *decodedChunk, importDecodeAhead)
	free := make(chan *decodedChunk, importFreeChunks)
	go func() {
		defer close(chunks)
		for i := range vs.NumChunks() {
			var c *decodedChunk
			select {
			case c = <-free:
			default:
				c = new(decodedChunk)
			}
			var err error
			if c.ops, c.ends, c.buf, err = vs.ChunkIn(i, c.ops[:0], c.ends[:0], c.buf); err != nil {
				// Verified already: only a bug gets here. The apply
				// sees the channel close early and reports it.
				return
			}
			select {
			case chunks <- c:
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
	have := db.ol.remote
	if filtered {
		have = db.prefixVersionVectorLocked(vs.Header.Prefix)
	}
	var ownTo uint64 // while rejoining: the last of this replica's own operations the stream brings back
	for _, rg := range vs.Header.Ranges {
		if rg.Replica == db.ol.self && rg.To > db.ol.localSeq {
			var err error
			switch {
			case !db.rejoining.Load():
				err = fmt.Errorf("%w: the stream from %s holds this replica's (%s) operations up to %d, its own last is %d; "+
					"do not write on this copy: rejoin as a new replica (restore without --same-replica, or ImportSnapshot into a new database)",
					ErrRewound, vs.Header.Source, db.ol.self, rg.To, db.ol.localSeq)
			case filtered:
				err = fmt.Errorf("%w: the selective stream from %s holds this replica's (%s) operations up to %d, its own last is %d; "+
					"they come back only through a full stream (ExportChanges), which holds them on every key",
					ErrRejoining, vs.Header.Source, db.ol.self, rg.To, db.ol.localSeq)
			case rg.From > db.ol.localSeq:
				err = fmt.Errorf("%w: the stream has this replica's (%s) own operations after %d, this replica has them up to %d",
					ErrCausalGap, db.ol.self, rg.From, db.ol.localSeq)
			}
			if err != nil {
				db.commitMu.Unlock()
				return 0, err
			}
			ownTo = rg.To
		}
		if rg.Replica != db.ol.self && rg.From > have[rg.Replica] {
			db.commitMu.Unlock()
			return 0, fmt.Errorf("%w: the stream has replica %s's operations after %d, this replica has them up to %d",
				ErrCausalGap, rg.Replica, rg.From, have[rg.Replica])
		}
	}
	if err := db.refuseStale(vs); err != nil {
		db.commitMu.Unlock()
		return 0, err
	}
	if err := db.observeStream(vs); err != nil {
		db.commitMu.Unlock()
		return 0, err
	}
	im := importer{db: db, filtered: filtered, remote: db.ol.remote.Clone(), count: vs.Count, free: free}
	var jump lsm.SeqNum
	if ownTo > 0 {
		// This replica's own operations come back (it is rejoining):
		// the log jumps past them first (see jumpSeqLocked), and they go
		// through the memtable, never a bulk import's tables, whose
		// operands a crash can leave without their record: applied
		// again, a local increment would count twice.
		im.own, im.localSeq = true, db.ol.localSeq
		if jump, err = db.jumpSeqLocked(lsm.SeqNum(ownTo)); err != nil {
			db.commitMu.Unlock()
			return 0, err
		}
	}
	if filtered {
		im.prefix = vs.Header.Prefix
		im.cursor = db.ol.cursors[string(im.prefix)].Clone()
		if im.cursor == nil {
			im.cursor = oplog.VersionVector{}
		}
		for _, rg := range vs.Header.Ranges {
			if rg.Replica != db.ol.self {
				im.ranges = append(im.ranges, rg)
			}
		}
	} else {
		im.repeats = len(db.ol.cursors) > 0
	}
	last, n, seen, err := im.apply(chunks)
	last = max(last, jump)
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

// observeStream moves the clock past the newest timestamp of vs, unless
// that is more than Options.MaxClockDrift ahead of the local wall clock:
// then it refuses the stream, naming the operation. Called with commitMu
// held.
func (db *DB) observeStream(vs *oplog.VerifiedStream) error {
	if vs.MaxHLC == 0 {
		return nil
	}
	if limit := db.opts.MaxClockDrift; limit >= 0 {
		wall := db.ol.clock.Wall()
		ahead := vs.MaxHLC.Time().Sub(wall)
		if ahead > limit {
			return fmt.Errorf("%w: replica %s operation %d has timestamp %s (%s), %v ahead of the local clock %s (Options.MaxClockDrift %v)",
				oplog.ErrClockDrift, vs.MaxHLCReplica, vs.MaxHLCSeq, vs.MaxHLC,
				vs.MaxHLC.Time().UTC().Format(time.RFC3339Nano), ahead.Round(time.Millisecond),
				wall.UTC().Format(time.RFC3339Nano), limit)
		}
	}
	db.ol.clock.Restore(vs.MaxHLC)
	return nil
}

// importDecodeAhead is how many decoded chunks (of about 64 KiB of ops
// each) an import keeps ready ahead of its apply.
const importDecodeAhead = 32

// importFreeChunks bounds the decoded chunks an import keeps for reuse.
const importFreeChunks = 512

// decodedChunk is a chunk of a change stream decoded for the apply: its
// ops, whose bytes alias buf.
type decodedChunk struct {
	ops  []oplog.Op
	ends []int // indices in ops of the ops that end a transaction
	buf  []byte
}

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
//
// A bulk import (ingest) skips the memtable: each batch's operands are
// sorted in an lsm.Run and written as an L0 table on a goroutine while the
// next batch is encoded; then the table is installed and only then is the
// batch logged (see install), its record marked so that replay leaves the
// operands to the table (ingestedLogKey). Sorting a batch costs a fraction
// of inserting it into a skiplist, and the table is written once, with
// no memtable to flush.
type importer struct {
	db       *DB
	filtered bool
	remote   oplog.VersionVector // advanced as operations are applied (but by a selective import)
	// own: the replica is rejoining and the stream brings back its own
	// operations above localSeq, which advances as they are applied.
	own      bool
	localSeq uint64
	count    int // the stream's operations
	// A selective import advances the cursor of its prefix instead (see
	// prefixsync.go): each batch writes it as far as the operations seen
	// so far, the last one to the ends of the stream's ranges.
	prefix      []byte
	cursor      oplog.VersionVector
	ranges      []oplog.Range
	cursorDirty bool // the cursor moved since a batch last wrote it
	// repeats: a full import while cursors exist. repeatIdx lists the
	// operations of the batch that a cursor holds (opRepeat).
	repeats   bool
	repeatIdx []int
	batches   [2]*Batch
	turn      int
	applied   []oplog.Op // operations of the current batch
	logBuf    []byte
	// The operands of the batches, by turn, as the record refers to them.
	opArenas [2][]byte
	opLists  [2][][]byte

	inserting  chan struct{} // closed when the insert in flight is done; nil: none
	insertSize int           // memtable bytes of the insert in flight

	// A bulk import (ingest) writes each batch's operands to an L0 table
	// of their own, sorted in a run, instead of the memtable; the record
	// is logged once the table is in the tree. One table is written
	// while the next batch is encoded.
	ingest       bool
	runs         [2]lsm.Run
	pending      *ingestTable // the batch whose table is being written
	appliedSpare []oplog.Op
	keyBuf       []byte

	// Decoded chunks whose ops are all in im.applied, and where they go
	// for reuse once the batch is encoded: nothing reads an op's bytes
	// after that.
	held []*decodedChunk
	free chan<- *decodedChunk
}

// ingestTable is a batch of an ingesting import whose table is being
// written.
type ingestTable struct {
	b         *Batch
	seq, last lsm.SeqNum
	applied   []oplog.Op
	repeats   int // how many of applied are repeats
	vv        oplog.VersionVector
	done      chan struct{} // closed when the table is written
	metas     []*lsm.FileMeta
	st        compaction.Stats
	err       error
}

// wait waits for the memtable insert in flight, if any.
func (im *importer) wait() {
	if im.inserting != nil {
		<-im.inserting
		im.inserting = nil
	}
}

// importBatchOverhead is a rough per-operation size of an import batch
// beyond key, field and value, which it holds twice: in the log entry and
// in the operand the memtable gets.
const importBatchOverhead = lsm.MemtableEntryOverhead + 48

// apply applies the operations of chunks in batches of about a quarter
// memtable (a memtable for a bulk import), each ending where a
// transaction of the stream does: a batch is logged as one record and made
// visible with the rest of the import, so readers and a crash see each
// transaction whole or not at all. A transaction larger than a batch
// makes its batch larger: in a bulk import, whose operands go to L0
// tables, that costs only memory. It returns the last sequence number written, how many
// operations it applied and how many it saw.
func (im *importer) apply(chunks <-chan *decodedChunk) (last lsm.SeqNum, n, seen int, err error) {
	db := im.db
	im.batches = [2]*Batch{db.NewBatch(), db.NewBatch()}
	defer im.wait()
	defer im.endIngest()
	limit := db.opts.MemtableSize / 4
	size := 0
	flush := func() error {
		if len(im.applied) == 0 && !im.cursorDirty {
			return nil
		}
		l, k, err := im.write()
		if l != 0 {
			last = l
		}
		n += k
		if err != nil {
			return err
		}
		im.applied, im.repeatIdx = im.applied[:0], im.repeatIdx[:0]
		size = 0
		for i, c := range im.held {
			select {
			case im.free <- c:
			default:
			}
			im.held[i] = nil
		}
		im.held = im.held[:0]
		return nil
	}
	for c := range chunks {
		ops, ends := c.ops, c.ends
		seen += len(ops)
		for i := range ops {
			op := &ops[i]
			// A batch ends only where a transaction does, so that each is
			// applied (and survives a crash) all or nothing.
			end := len(ends) > 0 && ends[0] == i
			if end {
				ends = ends[1:]
			}
			if op.Replica == db.ol.self {
				if im.own && op.Seq > im.localSeq {
					// One of this replica's operations, coming back.
					im.localSeq = op.Seq
					im.applied = append(im.applied, *op)
					size += im.cost(op)
				}
			} else if op.Seq > im.remote[op.Replica] {
				switch {
				case im.filtered:
					// The stream holds every operation on the prefix's
					// keys from what the cursor has: past this one, the
					// cursor holds them all.
					if op.Seq > im.cursor[op.Replica] {
						im.cursor[op.Replica] = op.Seq
						im.cursorDirty = true
					}
					if !db.heldByCursor(op) {
						im.applied = append(im.applied, *op)
						size += im.cost(op)
					}
				default:
					im.remote[op.Replica] = op.Seq
					if im.repeats && db.heldByCursor(op) {
						im.repeatIdx = append(im.repeatIdx, len(im.applied))
					}
					im.applied = append(im.applied, *op)
					size += im.cost(op)
				}
			}
			// (A selective import, which never ingests, holds up to
			// half a memtable in a batch: a transaction bigger than that
			// is split.)
			if size < limit || !end && !(im.filtered && size >= 2*limit) {
				continue
			}
			if !im.ingest && !im.filtered && !im.own && n == 0 && !db.hasIndexes() {
				// A bulk import: its operands go to tables of their
				// own, a memtable's worth of entries at a time. Its
				// batches of operations are about as many as this one
				// scaled up.
				if err := im.startIngest(); err != nil {
					return last, n, seen, err
				}
				limit, size = db.opts.MemtableSize, 0
				for i := range im.applied {
					size += im.cost(&im.applied[i])
				}
				want := len(im.applied)*(limit/size+1) + 1024
				im.applied = slices.Grow(im.applied, want-len(im.applied))
				im.appliedSpare = make([]oplog.Op, 0, want)
				continue
			}
			if err := flush(); err != nil {
				return last, n, seen, err
			}
		}
		im.held = append(im.held, c)
	}
	if im.filtered && seen == im.count {
		// The whole stream is in: the cursor reaches its ranges' ends.
		for _, rg := range im.ranges {
			if rg.To > im.cursor[rg.Replica] {
				im.cursor[rg.Replica] = rg.To
				im.cursorDirty = true
			}
		}
	}
	if err := flush(); err != nil {
		return last, n, seen, err
	}
	l, k, err := im.finishIngest()
	if l != 0 {
		last = l
	}
	return last, n + k, seen, err
}

// cost is what op adds to the size of a batch: in the memtable (and in
// the log, which holds it too), or for a bulk import in its table.
func (im *importer) cost(op *oplog.Op) int {
	kv := len(op.Key) + len(op.Field) + len(op.Value)
	if im.ingest {
		return kv + ingestEntryOverhead
	}
	return 2*kv + importBatchOverhead
}

// ingestEntryOverhead is about what an ingested entry takes beyond its
// key, field and value: the namespace byte, the internal key's trailer and
// the remote operand's header (kind, timestamp, origin, lengths).
const ingestEntryOverhead = 1 + lsm.TrailerLen + 1 + 8 + 16 + 4

// write commits the operations in im.applied as one batch: the log entry
// with the operations, their operands and the version vector. It returns
// the last sequence number and the number of operations it logged (an
// ingesting import logs a batch once its table is written: the previous
// one, or none).
func (im *importer) write() (lsm.SeqNum, int, error) {
	db := im.db
	turn := im.turn
	im.turn ^= 1
	b := im.batches[turn]
	b.Reset()
	// The log entry comes first: it marks the record as an import, whose
	// document entries are projections, not operations of this replica,
	// and a selective import's as such (filteredLogKey). Operations of one
	// replica in a row share a delta-encoded run. The log entry, the
	// record and the operands grow once, to about what they need (a bulk
	// import's batches are megabytes, and new ones for each import).
	logSize, recSize, opSize := 0, 256, 0
	for i := range im.applied {
		op := &im.applied[i]
		logSize += len(op.Key) + len(op.Field) + len(op.Value) + 3*binary.MaxVarintLen64
		recSize += 1 + 2*binary.MaxVarintLen32 + 1 + len(op.Key) // an operand entry
		opSize += remoteOperandSize(op)
	}
	im.logBuf = slices.Grow(im.logBuf[:0], logSize)
	for start := 0; start < len(im.applied); {
		end := start + 1
		for end < len(im.applied) && im.applied[end].Replica == im.applied[start].Replica {
			end++
		}
		im.logBuf = oplog.AppendBatch(im.logBuf, im.applied[start].Replica, im.applied[start:end])
		start = end
	}
	var logKey []byte
	switch {
	case im.ingest:
		logKey = ingestedLogKey
	case im.filtered:
		logKey = filteredLogKey
	}
	b.data = slices.Grow(b.data, len(im.logBuf)+recSize)
	b.data = batchrepr.AppendEntry(b.data, batchrepr.KindLogData, nsMeta, logKey, im.logBuf)
	b.count++
	// The operands are only referred to in the record, and handed to the
	// memtable insert beside it (see recordEntries).
	arena := slices.Grow(im.opArenas[turn][:0], opSize)
	operands := im.opLists[turn][:0]
	key := im.keyBuf
	for i := range im.applied {
		op := &im.applied[i]
		start := len(arena)
		arena = remoteOperand(arena, op)
		operands = append(operands, arena[start:len(arena):len(arena)])
		var ns byte
		ns, key = importKey(key[:0], op)
		b.add(lsm.KindMerge, ns, key, nil)
		b.memSize += len(arena) - start
		if op.Kind == oplog.KindSamples && !db.series.Has(string(op.Key)) && !slices.Contains(b.series, string(op.Key)) {
			b.series = append(b.series, string(op.Key))
		}
	}
	im.keyBuf = key
	// The documents' indexes, in step (after the operands, which an
	// ingest numbers; an import into indexes never ingests). The fold
	// reads every earlier batch: the insert in flight first.
	if set, err := db.activeIndexes(); err != nil {
		return 0, 0, err
	} else if set != nil {
		im.wait()
		if err := db.indexImport(b, im.applied, operands); err != nil {
			return 0, 0, err
		}
	}
	// New series go into the series table after the operands (which an
	// ingest numbers from the record's first sequence number on); the
	// index learns of them once the record is logged.
	for _, s := range b.series {
		b.add(lsm.KindSet, nsSeries, tsdb.SeriesKey(nil, s), seriesEntry)
	}
	im.opArenas[turn], im.opLists[turn] = arena, operands
	if im.ingest {
		// The operands go to the table, the rest of the record to the
		// memtable.
		b.memSize = 0
	}
	if im.filtered {
		// What the version vector holds, the cursor need not.
		c := im.cursor.Clone()
		pruneCursor(c, im.remote)
		if len(c) > 0 {
			b.add(lsm.KindSet, nsMeta, cursorKey(im.prefix), c.Append(nil))
		} else {
			b.add(lsm.KindDelete, nsMeta, cursorKey(im.prefix), nil)
		}
		im.cursorDirty = false
	} else {
		b.add(lsm.KindSet, nsMeta, metaVV, im.remote.Append(nil))
	}
	if len(im.repeatIdx) > 0 {
		// Last in the record, after the entries an ingest numbers.
		b.data = batchrepr.AppendEntry(b.data, batchrepr.KindLogData, nsMeta, repeatsLogKey, appendRepeats(nil, im.repeatIdx))
		b.count++
	}
	if im.ingest {
		return im.ingestBatch(b, turn, operands)
	}
	if b.memSize > db.opts.MemtableSize/2 {
		return 0, 0, fmt.Errorf("%w: import batch of %d bytes", errs.ErrValueTooLarge, b.memSize)
	}
	// Logging may rotate the memtable or write pending metadata: both
	// need the insert in flight done first.
	if im.inserting != nil && (db.mem.m.Room()-im.insertSize < b.memSize+db.pendingMetaSize() || len(db.pendingMeta) > 0) {
		im.wait()
	}
	rec, seq, last, err := db.logLocked(b)
	if err != nil {
		return 0, 0, err
	}
	db.noteSeriesOps(im.applied, last)
	if err := db.indexSeries(b.series); err != nil {
		return 0, 0, err
	}
	im.wait()
	done, mem := make(chan struct{}), db.mem
	im.inserting, im.insertSize = done, b.memSize
	go func() {
		defer close(done)
		db.insertLocked(mem, rec, seq, last, operands)
	}()
	im.logged(im.applied, im.remote)
	return last, len(im.applied) - len(im.repeatIdx), nil
}

// logged records the operations of a batch just logged: in the index of
// the log segment, a run of one replica at a time, and in the version
// vector.
func (im *importer) logged(applied []oplog.Op, vv oplog.VersionVector) {
	db := im.db
	if im.filtered {
		for i := range applied {
			db.ol.cur.noteHLC(applied[i].HLC, applied[i].HLC)
		}
		c := im.cursor.Clone()
		pruneCursor(c, db.ol.remote)
		if db.ol.cursors == nil {
			db.ol.cursors = map[string]oplog.VersionVector{}
		}
		if len(c) > 0 {
			db.ol.cursors[string(im.prefix)] = c
		} else {
			delete(db.ol.cursors, string(im.prefix))
		}
		return
	}
	for start := 0; start < len(applied); {
		first := &applied[start]
		lo, hi := first.HLC, first.HLC
		end := start + 1
		for ; end < len(applied) && applied[end].Replica == first.Replica; end++ {
			lo, hi = min(lo, applied[end].HLC), max(hi, applied[end].HLC)
		}
		db.ol.cur.noteOps(first.Replica, first.Seq, applied[end-1].Seq, lo, hi)
		if first.Replica == db.ol.self {
			// Own operations taken back while rejoining: the segment
			// index just noted them, where the next open finds them.
			db.ol.localSeq = max(db.ol.localSeq, applied[end-1].Seq)
		}
		start = end
	}
	db.ol.remote = vv.Clone()
}

// Keys (after their namespace byte) of op log entries.
var (
	// ingestedLogKey marks the op log entry of an import record whose
	// operands were written to an L0 table before the record was logged:
	// its KindMerge entries are in that table, and neither the memtable
	// nor replay takes them (see recordEntries).
	ingestedLogKey = []byte("ingested")
	// filteredLogKey marks the op log entry of a selective import's
	// record: its operations are opFiltered.
	filteredLogKey = []byte("filtered")
	// repeatsLogKey is that of the entry ending a full import's record
	// that lists which of its operations are repeats (appendRepeats).
	repeatsLogKey = []byte("repeats")
)

// isLogKey says whether key, an op log entry's, is nsMeta + name.
func isLogKey(key, name []byte) bool {
	return len(key) == 1+len(name) && key[0] == nsMeta && string(key[1:]) == string(name)
}

// startIngest readies the tree for an import's tables: the memtable's and
// the sealed memtables' entries go to L0 first, since the tables will be
// newer than anything in them (reads look at memtables before L0). While
// the import runs, the memtable gets only metadata (the version vector),
// whose keys no table of the import has.
func (im *importer) startIngest() error {
	im.ingest = true
	im.db.picker.SetBulkLoad(true)
	return im.db.drainMemtablesLocked()
}

// endIngest ends the bulk load that startIngest began: L0 compacts at its
// usual threshold again, starting now if it is over it. A table still
// being written (the import failed) is removed.
func (im *importer) endIngest() {
	if !im.ingest {
		return
	}
	if t := im.pending; t != nil {
		im.pending = nil
		<-t.done
		im.db.removeTableFiles(t.metas)
	}
	im.db.picker.SetBulkLoad(false)
	im.db.kickCompactions()
}

// ingestBatch starts writing the table of the batch just encoded in b,
// once the previous batch is in the tree, and logs that one. It returns
// what finishIngest does.
func (im *importer) ingestBatch(b *Batch, turn int, operands [][]byte) (lsm.SeqNum, int, error) {
	db := im.db
	prev := im.pending
	if prev != nil {
		<-prev.done
		if err := im.seal(prev); err != nil {
			return 0, 0, err
		}
	}
	// The record's entries: its log entry, the operands (seq+1 on, in
	// the table) and the version vector.
	seq := db.lastSeq + 1
	if prev != nil {
		seq = prev.last + 1
	}
	t := &ingestTable{b: b, seq: seq, last: seq + lsm.SeqNum(b.count) - 1,
		applied: im.applied, repeats: len(im.repeatIdx), vv: im.remote.Clone(), done: make(chan struct{})}
	im.applied = im.appliedSpare[:0]
	run := &im.runs[turn]
	run.Reset()
	key := im.keyBuf
	for i := range t.applied {
		op := &t.applied[i]
		key = append(key[:0], 0)
		var ns byte
		ns, key = importKey(key, op)
		key[0] = ns
		run.Add(seq+1+lsm.SeqNum(i), lsm.KindMerge, key, operands[i])
	}
	im.keyBuf = key
	env := db.tableEnv(false, 0)
	go func() {
		defer close(t.done)
		run.Sort()
		t.metas, t.st, t.err = compaction.Write(env, run.NewIter(), compaction.WriteSpec{})
	}()
	im.pending = t
	if prev == nil {
		return 0, 0, nil
	}
	return im.install(prev)
}

// finishIngest waits for the table in flight and logs its batch.
func (im *importer) finishIngest() (lsm.SeqNum, int, error) {
	t := im.pending
	if t == nil {
		return 0, 0, nil
	}
	im.pending = nil
	<-t.done
	if err := im.seal(t); err != nil {
		return 0, 0, err
	}
	return im.install(t)
}

// seal fixes the last sequence number of t's record: a memtable rotation
// it needs, and the metadata that rotation (or anything else) left to
// write, go in now, the metadata at the end of the record so the
// sequence numbers of its table stay as they are.
func (im *importer) seal(t *ingestTable) error {
	db := im.db
	if t.err != nil {
		return fmt.Errorf("pluresdb: import: writing a table: %w", t.err)
	}
	if db.mem.m.Room() < t.b.memSize+db.pendingMetaSize() {
		if err := db.rotateMemtable(); err != nil {
			im.db.removeTableFiles(t.metas)
			return err
		}
	}
	db.takePendingMeta(t.b)
	t.last = t.seq + lsm.SeqNum(t.b.count) - 1
	return nil
}

// install puts t's table into L0, then logs t's record and inserts the
// rest of it into the memtable. A crash in between leaves the operands
// in the tree without the record: the version vector has not moved, so
// the peer's stream brings them again, and applying them twice changes
// nothing.
func (im *importer) install(t *ingestTable) (lsm.SeqNum, int, error) {
	db := im.db
	if err := db.waitForBulkL0Room(); err != nil {
		im.db.removeTableFiles(t.metas)
		return 0, 0, err
	}
	ve := &lsm.VersionEdit{}
	for _, m := range t.metas {
		ve.NewFiles = append(ve.NewFiles, lsm.NewFile{Level: 0, Meta: m})
	}
	db.vs.SetLastSeq(t.last)
	if err := db.logAndInstall(ve, nil); err != nil {
		if uninstalled(err) {
			im.db.removeTableFiles(t.metas)
		}
		return 0, 0, fmt.Errorf("pluresdb: recording an import's table: %w", err)
	}
	db.m.ingests.Add(1)
	db.m.flushBytes.Add(t.st.BytesWritten)
	db.m.levelWritten[0].Add(t.st.BytesWritten)
	db.kickCompactions()
	if db.lastSeq+1 != t.seq {
		return 0, 0, fmt.Errorf("pluresdb: import: batch at seq %d logged after seq %d", t.seq, db.lastSeq)
	}
	rec, seq, last, err := db.logLocked(t.b)
	if err != nil {
		return 0, 0, err
	}
	db.noteSeriesOps(t.applied, last)
	if err := db.indexSeries(t.b.series); err != nil {
		return 0, 0, err
	}
	db.insertLocked(db.mem, rec, seq, last, nil)
	im.logged(t.applied, t.vv)
	im.appliedSpare = t.applied
	return last, len(t.applied) - t.repeats, nil
}

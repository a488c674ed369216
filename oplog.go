package pluresdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries/tsdb"
	"github.com/plures/pluresdb/wal"
)

// The op log (DESIGN.md §1, §4–§6). The WAL is the log: a local write is
// encoded once, as the CRDT state or operand the memtable stores, and the
// operation is read back from that encoding; an import's batch carries the
// remote operations themselves in a KindLogData entry, beside the states
// they produced. Sealed segments are kept as history until retention drops
// them. Every segment has an index (segIndex) that says which operations it
// holds, so "changes since a version vector" reads only the segments that
// can have some.

// Keys of the op log's metadata in the meta namespace.
var (
	metaVV       = []byte("oplog/vv")     // remote replicas' highest applied seq
	metaFloor    = []byte("oplog/floor")  // per replica, the highest seq no longer retained
	metaPeers    = []byte("oplog/peers/") // + replica ID: a peer's acknowledged version vector
	metaSegIndex = []byte("oplog/seg/")   // + segment number (8 bytes BE): its segIndex
	metaDocFmt   = []byte("oplog/docfmt") // document value format; absent in format-1 databases
	// metaClock is the clock's durable high-water mark (8 bytes, big
	// endian): at least every timestamp of the history that has left the
	// log (dropped or archived). What the log still holds is replayed.
	metaClock = []byte("oplog/clock")
	// metaFeedFloor is the log position of the last operation dropped by
	// retention (uvarint seq | uvarint index): the change feed cannot
	// resume before it.
	metaFeedFloor = []byte("oplog/feedfloor")
	// metaSnapClock is the newest clock of a snapshot this replica
	// imported (8 bytes, big endian): the snapshot's states hold
	// operations at or before it that the log does not, so as-of reads
	// fold only from a whole-document write after it.
	metaSnapClock = []byte("oplog/snapclock")
)

// seqRange is what a segment holds of one replica's operations: the
// lowest and highest sequence number and timestamp.
type seqRange struct {
	min, max       uint64
	minHLC, maxHLC oplog.Timestamp
}

// segIndex summarizes one log segment.
type segIndex struct {
	num               layout.FileNum
	firstSeq, lastSeq lsm.SeqNum // sequence numbers of its records (0, 0: none)
	minHLC, maxHLC    oplog.Timestamp
	ranges            map[oplog.ReplicaID]seqRange
	// archived: the segment was moved to the cold archive (its .oparc
	// file holds its operations and, from archive version 2, their log
	// positions).
	archived bool
	// keys filters the keys of its operations (keyfilter.go); nil: none
	// built yet. Set once, under ol.mu; read-only after. Not persisted.
	keys *roaring.Bitmap
}

func newSegIndex(num layout.FileNum) *segIndex {
	return &segIndex{num: num, ranges: map[oplog.ReplicaID]seqRange{}}
}

// clone copies s, ranges included.
func (s *segIndex) clone() *segIndex {
	c := *s
	c.ranges = make(map[oplog.ReplicaID]seqRange, len(s.ranges))
	for r, rg := range s.ranges {
		c.ranges[r] = rg
	}
	return &c
}

// snapshotSegs copies the retained segments' indexes. Called with ol.mu
// held.
func (ol *opLog) snapshotSegs() []*segIndex {
	out := make([]*segIndex, len(ol.segs))
	for i, s := range ol.segs {
		c := *s // sealed: only archived changes, under ol.mu
		out[i] = &c
	}
	return out
}

func (s *segIndex) noteRecord(first, last lsm.SeqNum) {
	if s.firstSeq == 0 {
		s.firstSeq = first
	}
	s.lastSeq = last
}

// noteOps records operations of replica r, as exports see them: their
// sequence numbers and timestamps.
func (s *segIndex) noteOps(r oplog.ReplicaID, minSeq, maxSeq uint64, minTS, maxTS oplog.Timestamp) {
	if rg, ok := s.ranges[r]; ok {
		s.ranges[r] = seqRange{min(rg.min, minSeq), max(rg.max, maxSeq), min(rg.minHLC, minTS), max(rg.maxHLC, maxTS)}
	} else {
		s.ranges[r] = seqRange{minSeq, maxSeq, minTS, maxTS}
	}
	s.noteHLC(minTS, maxTS)
}

// noteHLC records the timestamps of operations that exports do not see
// (opFiltered): the ranges leave them out, so that what retention drops
// of them never moves the history floor, but as-of reads and the clock
// mark need their timestamps.
func (s *segIndex) noteHLC(minTS, maxTS oplog.Timestamp) {
	if s.minHLC == 0 || minTS < s.minHLC {
		s.minHLC = minTS
	}
	s.maxHLC = max(s.maxHLC, maxTS)
}

// has reports whether the segment can hold an operation of some replica
// above since and at most upTo.
func (s *segIndex) has(since, upTo oplog.VersionVector) bool {
	for r, rg := range s.ranges {
		if rg.max > since[r] && rg.min <= upTo[r] {
			return true
		}
	}
	return false
}

const segIndexVersion = 1

// encode is the segment index as the meta namespace keeps it:
//
//	version u8 | num | firstSeq | lastSeq | minHLC | maxHLC | archived | n |
//	n × (replica 16 bytes | min | max | minHLC | maxHLC)
//
// every number a uvarint. (The LSM checksums it.)
func (s *segIndex) encode() []byte {
	b := []byte{segIndexVersion}
	b = binary.AppendUvarint(b, uint64(s.num))
	b = binary.AppendUvarint(b, uint64(s.firstSeq))
	b = binary.AppendUvarint(b, uint64(s.lastSeq))
	b = binary.AppendUvarint(b, uint64(s.minHLC))
	b = binary.AppendUvarint(b, uint64(s.maxHLC))
	arch := uint64(0)
	if s.archived {
		arch = 1
	}
	b = binary.AppendUvarint(b, arch)
	ids := make([]oplog.ReplicaID, 0, len(s.ranges))
	for r := range s.ranges {
		ids = append(ids, r)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].Compare(ids[j]) < 0 })
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, r := range ids {
		rg := s.ranges[r]
		b = append(b, r[:]...)
		b = binary.AppendUvarint(b, rg.min)
		b = binary.AppendUvarint(b, rg.max)
		b = binary.AppendUvarint(b, uint64(rg.minHLC))
		b = binary.AppendUvarint(b, uint64(rg.maxHLC))
	}
	return b
}

func decodeSegIndex(b []byte) (*segIndex, error) {
	if len(b) == 0 || b[0] != segIndexVersion {
		return nil, fmt.Errorf("segment index: unknown version")
	}
	p := b[1:]
	next := func() (uint64, error) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, fmt.Errorf("segment index: truncated")
		}
		p = p[n:]
		return v, nil
	}
	var vals [7]uint64
	for i := range vals {
		v, err := next()
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	s := newSegIndex(layout.FileNum(vals[0]))
	s.firstSeq, s.lastSeq = lsm.SeqNum(vals[1]), lsm.SeqNum(vals[2])
	s.minHLC, s.maxHLC = oplog.Timestamp(vals[3]), oplog.Timestamp(vals[4])
	s.archived = vals[5] == 1
	if vals[6] > uint64(len(p))/20 {
		return nil, fmt.Errorf("segment index: %d replicas in %d bytes", vals[6], len(p))
	}
	for i := uint64(0); i < vals[6]; i++ {
		if len(p) < 16 {
			return nil, fmt.Errorf("segment index: truncated")
		}
		var r oplog.ReplicaID
		copy(r[:], p)
		p = p[16:]
		var rg [4]uint64
		for j := range rg {
			v, err := next()
			if err != nil {
				return nil, err
			}
			rg[j] = v
		}
		if rg[0] > rg[1] || rg[2] > rg[3] {
			return nil, fmt.Errorf("segment index: bad range")
		}
		s.ranges[r] = seqRange{rg[0], rg[1], oplog.Timestamp(rg[2]), oplog.Timestamp(rg[3])}
	}
	return s, nil
}

// opLog is the DB's op-log state.
type opLog struct {
	self  oplog.ReplicaID
	clock *oplog.Clock
	// merger folds merge operands for reads; compactMerger for
	// compactions (it encodes series chunks for the cold tier).
	merger, compactMerger *engineMerger

	// Guarded by commitMu.
	remote   oplog.VersionVector // highest applied seq of each other replica
	localSeq uint64              // sequence number of the last local operation
	cur      *segIndex           // index of the segment being written
	// cursors are the selective-sync cursors, by prefix (metaCursor; see
	// prefixsync.go).
	cursors map[string]oplog.VersionVector

	mu    sync.Mutex
	segs  []*segIndex         // sealed segments still retained, oldest first
	floor oplog.VersionVector // per replica: operations at or below are no longer retained
	// gcHorizon is the durable tombstone collection horizon
	// (metaGCHorizon), a Timestamp; raised under commitMu.
	gcHorizon atomic.Uint64
	// feedFloor is the position of the last operation retention dropped
	// (metaFeedFloor); feedFloorSet: it is known.
	feedFloor    Position
	feedFloorSet bool
	// clockMark is the persisted high-water mark of the clock (metaClock).
	clockMark oplog.Timestamp
	// snapClock is metaSnapClock (0: no snapshot imported); raised under
	// commitMu and ol.mu.
	snapClock oplog.Timestamp
	peers     map[oplog.ReplicaID]oplog.VersionVector

	subs subscribers

	// legacy: the database was written before the op log; its old log
	// segments are not history (set at open only).
	legacy bool
	// damage, set at open only, says why the op log's metadata could not
	// be read (it wraps ErrCorruption and names the table): sync refuses
	// until the database is repaired (see opLogUsable).
	damage error
}

// opClass says which copy of an operation a log record holds, and so
// who reads it (see "Selective imports" in ARCHITECTURE.md).
type opClass uint8

const (
	// opLogged: a local write, or an operation of a full import; the
	// version vector covers it. Everything reads it.
	opLogged opClass = iota
	// opFiltered: an operation of a selective import (a stream of
	// ExportChangesPrefix), beyond the version vector. The change feed
	// and as-of reads read it; exports do not (the version vector does
	// not cover it, and a later full import logs it again).
	opFiltered
	// opRepeat: a full import's copy of an operation that a selective
	// import logged before. Exports read it (it keeps each replica's
	// operations in order there); the feed and as-of reads do not (they
	// had the first copy).
	opRepeat
	numOpClasses
)

// history says whether the change feed and as-of reads see the class.
func (c opClass) history() bool { return c != opRepeat }

// exported says whether exports (and the segment indexes they use) see
// the class.
func (c opClass) exported() bool { return c != opFiltered }

// decodeRecord calls fn for every operation in a WAL record, in
// order, with its class. self is this replica's ID. The Op's byte slices
// alias rec.
//
// An import record starts with a KindLogData entry holding the remote
// operations (its key: none, ingestedLogKey or filteredLogKey); the
// document entries after it are their projections. A full import's
// record may end with a second KindLogData entry (repeatsLogKey) listing
// which of its operations are repeats.
func decodeRecord(rec []byte, self oplog.ReplicaID, fn func(pos Position, op *oplog.Op, class opClass) error) error {
	r, err := batchrepr.NewReader(rec)
	if err != nil {
		return err
	}
	for i := lsm.SeqNum(0); ; i++ {
		e, ok, err := r.Next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		seq := r.Seq + i
		if e.Kind == batchrepr.KindLogData {
			return decodeImport(&r, seq, e.Key, e.Value, fn)
		}
		if len(e.Key) == 0 || e.Kind == lsm.KindDelete {
			continue
		}
		var op oplog.Op
		switch {
		case e.Key[0] == nsDocuments || e.Key[0] == nsCounters:
			if op, err = oplog.LocalOp(e.Key[1:], e.Value, e.Kind == lsm.KindMerge); err != nil {
				return err
			}
		case e.Key[0] == nsSeries && e.Kind == lsm.KindMerge:
			// A local samples operation (series.go): its operand.
			if op, err = localSamplesOp(e.Key[1:], e.Value); err != nil {
				return err
			}
		default:
			continue
		}
		op.Replica = self
		op.Seq = uint64(seq)
		if err := fn(Position{Seq: uint64(seq)}, &op, opLogged); err != nil {
			return err
		}
	}
}

// decodeImport calls fn for the operations of an import record whose
// first entry, a KindLogData one at seq with key and value p, r has just
// read.
func decodeImport(r *batchrepr.Reader, seq lsm.SeqNum, key, p []byte, fn func(pos Position, op *oplog.Op, class opClass) error) error {
	class := opLogged
	if isLogKey(key, filteredLogKey) {
		class = opFiltered
	}
	// The repeats, if any, are listed at the end of the record.
	var repeats []byte
	for {
		e, ok, err := r.Next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if e.Kind == batchrepr.KindLogData {
			if !isLogKey(e.Key, repeatsLogKey) || class == opFiltered || repeats != nil {
				return fmt.Errorf("import record at seq %d: unexpected op log entry %q", seq, e.Key)
			}
			repeats = e.Value
		}
	}
	next, left, err := firstRepeat(&repeats)
	if err != nil {
		return fmt.Errorf("import record at seq %d: %w", seq, err)
	}
	var ops []oplog.Op
	idx := uint32(0)
	for len(p) > 0 {
		_, batch, n, err := oplog.DecodeBatch(ops[:0], p)
		if err != nil {
			return err
		}
		ops = batch
		p = p[n:]
		for j := range batch {
			c := class
			if left > 0 && uint64(idx) == next {
				c = opRepeat
				if next, left, err = nextRepeat(&repeats, next, left); err != nil {
					return fmt.Errorf("import record at seq %d: %w", seq, err)
				}
			}
			if err := fn(Position{Seq: uint64(seq), Index: idx}, &batch[j], c); err != nil {
				return err
			}
			idx++
		}
	}
	if left > 0 {
		return fmt.Errorf("import record at seq %d: repeat %d of %d operations", seq, next, idx)
	}
	return nil
}

// appendRepeats encodes the indices (ascending) of an import record's
// repeated operations: uvarint count | uvarint first | uvarint gaps.
func appendRepeats(dst []byte, idx []int) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(idx)))
	prev := -1
	for _, i := range idx {
		dst = binary.AppendUvarint(dst, uint64(i-prev-1))
		prev = i
	}
	return dst
}

// firstRepeat reads the count and first index of an encoded repeats list
// (none: 0 left).
func firstRepeat(b *[]byte) (next, left uint64, err error) {
	if *b == nil {
		return 0, 0, nil
	}
	n, k := binary.Uvarint(*b)
	if k <= 0 || n > uint64(len(*b)) {
		return 0, 0, errors.New("bad repeats list")
	}
	*b = (*b)[k:]
	if n == 0 {
		return 0, 0, nil
	}
	d, k := binary.Uvarint(*b)
	if k <= 0 {
		return 0, 0, errors.New("bad repeats list")
	}
	*b = (*b)[k:]
	return d, n, nil
}

// nextRepeat moves past index cur of a repeats list with left entries.
func nextRepeat(b *[]byte, cur, left uint64) (next, rest uint64, err error) {
	left--
	if left == 0 {
		if len(*b) != 0 {
			return 0, 0, errors.New("bytes after the repeats list")
		}
		return 0, 0, nil
	}
	d, k := binary.Uvarint(*b)
	if k <= 0 || d > 1<<32 {
		return 0, 0, errors.New("bad repeats list")
	}
	*b = (*b)[k:]
	return cur + d + 1, left, nil
}

// indexRecord adds a record's operations to a segment index.
func indexRecord(s *segIndex, rec []byte, self oplog.ReplicaID) error {
	r, err := batchrepr.NewReader(rec)
	if err != nil {
		return err
	}
	s.noteRecord(r.Seq, r.Seq+lsm.SeqNum(r.Count)-1)
	return decodeRecord(rec, self, func(_ Position, op *oplog.Op, c opClass) error {
		if c.exported() {
			s.noteOps(op.Replica, op.Seq, op.Seq, op.HLC, op.HLC)
		} else {
			s.noteHLC(op.HLC, op.HLC)
		}
		return nil
	})
}

// indexSegment reads a whole segment to build its index.
func (db *DB) indexSegment(num layout.FileNum) (*segIndex, error) {
	sr, err := wal.OpenSegment(db.fs, db.dir, num)
	if err != nil {
		return nil, err
	}
	defer sr.Close()
	s := newSegIndex(num)
	for {
		rec, err := sr.Next()
		if err != nil {
			if isEOF(err) {
				return s, nil
			}
			return nil, err
		}
		if err := indexRecord(s, rec, db.ol.self); err != nil {
			return nil, errs.Corruptf(layout.Path(db.dir, layout.TypeLog, num), -1, "%v", err)
		}
	}
}

// metaKV is an engine metadata write waiting for the next commit.
type metaKV struct{ key, value []byte }

// queueMeta has the next commit write value under the meta key key (nil
// value: delete). Called with commitMu held. Such writes are bookkeeping
// that can be recomputed (segment indexes): losing them in a crash costs a
// rescan at open, nothing else.
func (db *DB) queueMeta(key, value []byte) {
	db.pendingMeta = append(db.pendingMeta, metaKV{key, value})
}

func (db *DB) pendingMetaSize() int {
	n := 0
	for _, kv := range db.pendingMeta {
		n += len(kv.key) + 1 + len(kv.value) + lsm.MemtableEntryOverhead
	}
	return n
}

// appendPendingMeta writes the queued metadata as a record of its own,
// through appendLocked (which finds the queue empty then). Called with
// commitMu held and room in the memtable.
func (db *DB) appendPendingMeta() error {
	b := &Batch{db: db}
	b.Reset()
	db.takePendingMeta(b)
	_, err := db.appendLocked(b)
	return err
}

// takePendingMeta adds the queued metadata writes to b and empties the
// queue. Called with commitMu held.
func (db *DB) takePendingMeta(b *Batch) {
	for _, kv := range db.pendingMeta {
		if kv.value == nil {
			b.add(lsm.KindDelete, nsMeta, kv.key, nil)
		} else {
			b.add(lsm.KindSet, nsMeta, kv.key, kv.value)
		}
	}
	db.pendingMeta = db.pendingMeta[:0]
}

// sealSegment moves the index of the segment just sealed to the retained
// history and starts the index of next. Called with commitMu held.
func (db *DB) sealSegment(next layout.FileNum) {
	sealed := db.ol.cur
	db.ol.cur = newSegIndex(next)
	db.ol.mu.Lock()
	db.ol.segs = append(db.ol.segs, sealed)
	db.ol.mu.Unlock()
	db.queueMeta(segIndexKey(sealed.num), sealed.encode())
}

func segIndexKey(num layout.FileNum) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), metaSegIndex...), uint64(num))
}

// getMeta reads a metadata value; ok is false if there is none.
func (db *DB) getMeta(key []byte) ([]byte, bool, error) {
	v, _, err := db.getRaw(append([]byte{nsMeta}, key...), lsm.SeqNum(db.visible.Load()))
	if err != nil {
		if errors.Is(err, errs.ErrNotFound) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return v, true, nil
}

// metaVersionVector reads the version vector kept under the meta key key
// (what names it in errors); none is an empty one.
func (db *DB) metaVersionVector(key []byte, what string) (oplog.VersionVector, error) {
	v, ok, err := db.getMeta(key)
	if err != nil || !ok {
		return oplog.VersionVector{}, err
	}
	vv, _, err := oplog.DecodeVersionVector(v)
	if err != nil {
		return nil, errs.Corruptf(db.dir, -1, "%s: %v", what, err)
	}
	return vv, nil
}

// readOpLogMeta reads the op log's metadata: the version vector of remote
// replicas, the history floor, the peers and the segment indexes (into
// known).
func (db *DB) readOpLogMeta(known map[layout.FileNum]*segIndex) error {
	ol := &db.ol
	var err error
	if ol.remote, err = db.metaVersionVector(metaVV, "op log version vector"); err != nil {
		return err
	}
	if ol.floor, err = db.metaVersionVector(metaFloor, "op log floor"); err != nil {
		return err
	}
	if v, ok, err := db.getMeta(metaClock); err != nil {
		return err
	} else if ok {
		if len(v) != 8 {
			return errs.Corruptf(db.dir, -1, "op log clock mark: %d bytes, want 8", len(v))
		}
		ol.clockMark = oplog.Timestamp(binary.BigEndian.Uint64(v))
		ol.clock.Restore(ol.clockMark)
	}
	if v, ok, err := db.getMeta(metaFeedFloor); err != nil {
		return err
	} else if ok {
		seq, n := binary.Uvarint(v)
		idx, k := binary.Uvarint(v[max(n, 0):])
		if n <= 0 || k <= 0 || idx > 1<<32-1 {
			return errs.Corruptf(db.dir, -1, "op log feed floor: bad encoding")
		}
		ol.feedFloor, ol.feedFloorSet = Position{seq, uint32(idx)}, true
	}
	if v, ok, err := db.getMeta(metaSnapClock); err != nil {
		return err
	} else if ok {
		if len(v) != 8 {
			return errs.Corruptf(db.dir, -1, "op log snapshot clock: %d bytes, want 8", len(v))
		}
		ol.snapClock = oplog.Timestamp(binary.BigEndian.Uint64(v))
	}
	if v, ok, err := db.getMeta(metaGCHorizon); err != nil {
		return err
	} else if ok {
		if len(v) != 8 {
			return errs.Corruptf(db.dir, -1, "tombstone collection horizon: %d bytes, want 8", len(v))
		}
		ol.gcHorizon.Store(binary.BigEndian.Uint64(v))
	}
	ol.peers = map[oplog.ReplicaID]oplog.VersionVector{}
	ol.cursors = map[string]oplog.VersionVector{}
	it := db.newIter(nsMeta, []byte("oplog/"), []byte("oplog0"), lsm.SeqNum(db.visible.Load()))
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		switch {
		case bytes.HasPrefix(k, metaCursor):
			p, vv, err := db.decodeCursor(k, it.Value())
			if err != nil {
				it.Close()
				return err
			}
			ol.cursors[p] = vv
		case bytes.HasPrefix(k, metaPeers) && len(k) == len(metaPeers)+16:
			var id oplog.ReplicaID
			copy(id[:], k[len(metaPeers):])
			vv, _, err := oplog.DecodeVersionVector(it.Value())
			if err != nil {
				it.Close()
				return errs.Corruptf(db.dir, -1, "op log peer %s: %v", id, err)
			}
			ol.peers[id] = vv
		case bytes.HasPrefix(k, metaSegIndex):
			s, err := decodeSegIndex(it.Value())
			if err != nil {
				it.Close()
				return errs.Corruptf(db.dir, -1, "op log %v", err)
			}
			known[s.num] = s
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	return nil
}

// openOpLog loads the op log's state after the WAL replay: the replica ID
// is already known and the replayed segments indexed (db.ol.segs).
func (db *DB) openOpLog() error {
	ol := &db.ol
	known := map[layout.FileNum]*segIndex{}
	if err := db.readOpLogMeta(known); err != nil {
		if !errors.Is(err, errs.ErrCorruption) {
			return err
		}
		// Damaged metadata is not replaced by guesses: sync refuses
		// (opLogUsable), retention and tombstone collection stay off,
		// and nothing is written over it. Segment indexes are rebuilt
		// by scanning the segments, so the clock and the local
		// sequence still come from the log itself.
		ol.damage = err
		ol.remote, ol.floor = oplog.VersionVector{}, oplog.VersionVector{}
		ol.peers = map[oplog.ReplicaID]oplog.VersionVector{}
		ol.cursors = map[string]oplog.VersionVector{}
		clear(known)
		db.log.Error().Err(err).Msg("op log metadata unreadable: sync disabled until the database is repaired")
	}

	// Every retained segment gets an index: the replayed ones have theirs
	// already, older ones have one in the meta namespace or are scanned.
	segs, err := wal.List(db.fs, db.dir)
	if err != nil {
		return err
	}
	replayed := map[layout.FileNum]*segIndex{}
	for _, s := range ol.segs {
		replayed[s.num] = s
	}
	var all []*segIndex
	for _, num := range segs {
		if num == db.ol.cur.num {
			continue
		}
		if db.ol.legacy {
			// Replayed and flushed; raw values, not operations.
			if err := db.fs.Remove(layout.Path(db.dir, layout.TypeLog, num)); err != nil {
				return err
			}
			continue
		}
		if s, ok := replayed[num]; ok {
			all = append(all, s)
			if _, ok := known[num]; !ok && ol.damage == nil {
				db.queueMeta(segIndexKey(num), s.encode())
			}
			continue
		}
		if s, ok := known[num]; ok {
			all = append(all, s)
			continue
		}
		s, err := db.indexSegment(num)
		if err != nil {
			return err
		}
		all = append(all, s)
		if ol.damage == nil {
			db.queueMeta(segIndexKey(num), s.encode())
		}
	}
	// Archived segments, and index entries of segments that are gone.
	// Retention deletes a segment's index before its files, and archiving
	// writes the archive before the index says so: an index whose files
	// are gone means history was lost (a file deleted or never synced),
	// never that it was dropped.
	var missing []*segIndex
	for num, s := range known {
		if slices.Contains(segs, num) {
			continue
		}
		if _, err := db.fs.Stat(layout.Path(db.dir, layout.TypeArchive, num)); err == nil {
			if !s.archived {
				s.archived = true
				db.queueMeta(segIndexKey(num), s.encode())
			}
			all = append(all, s)
			continue
		}
		missing = append(missing, s)
	}
	// What a salvaging replay dropped (the losses so far are all its).
	salvaged := slices.Clone(db.lost)
	if len(missing) > 0 && ol.damage == nil {
		db.historyLost(missing)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].num < all[j].num })
	ol.segs = all
	ol.localSeq = ol.floor[ol.self]
	for _, s := range all {
		ol.clock.Restore(s.maxHLC)
		ol.localSeq = max(ol.localSeq, s.ranges[ol.self].max)
	}
	if len(salvaged) > 0 && ol.damage == nil {
		db.historySalvaged(salvaged)
	}
	return nil
}

// clockMarkFor returns the clock mark to persist before the segments segs
// leave the log, and whether it is above the persisted one. Called with
// ol.mu held or by the one retention pass.
func (ol *opLog) clockMarkFor(segs ...*segIndex) (oplog.Timestamp, bool) {
	m := ol.clockMark
	for _, s := range segs {
		m = max(m, s.maxHLC)
	}
	return m, m > ol.clockMark
}

// lastPosition returns the log position of the last operation of segment
// s, read from the segment or its archive. An archive without positions
// gives the highest position the segment could hold.
func (db *DB) lastPosition(s *segIndex) (Position, error) {
	var last Position
	if s.archived {
		a, err := db.readArchive(s.num)
		if err != nil {
			return Position{}, err
		}
		if a.pos == nil {
			return Position{Seq: uint64(s.lastSeq), Index: 1<<32 - 1}, nil
		}
		for i, p := range a.pos {
			if a.class(i).history() && last.Less(p) {
				last = p
			}
		}
		return last, nil
	}
	sr, err := wal.OpenSegment(db.fs, db.dir, s.num)
	if err != nil {
		return Position{}, err
	}
	defer sr.Close()
	for {
		rec, err := sr.Next()
		if err != nil {
			if isEOF(err) {
				return last, nil
			}
			return Position{}, err
		}
		if err := decodeRecord(rec, db.ol.self, func(p Position, _ *oplog.Op, c opClass) error {
			if c.history() {
				last = p
			}
			return nil
		}); err != nil {
			return Position{}, err
		}
	}
}

// addClockMark adds the write of clock mark m to b.
func addClockMark(b *Batch, m oplog.Timestamp) {
	b.add(lsm.KindSet, nsMeta, metaClock, binary.BigEndian.AppendUint64(nil, uint64(m)))
}

// openReplica reads this replica's ID, or makes one. It never changes
// the ID of a database that has one: a database whose REPLICA file is
// missing is refused (its log and tables are another replica's history,
// and a new ID would let peers take them for new operations). Only a new
// directory, or a database of the first format (firstFormat: written
// before the op log, never had a REPLICA file), gets a new ID. hasFile says
// whether the directory listing showed the file.
func (db *DB) openReplica(firstFormat, hasFile bool) error {
	path := layout.Path(db.dir, layout.TypeReplica, 0)
	var id oplog.ReplicaID
	var err error
	if hasFile {
		id, err = oplog.ReadReplicaFile(db.fs, path)
	} else {
		err = os.ErrNotExist
	}
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist) && (firstFormat || !db.hasCurrent()):
		id = oplog.NewReplicaID()
		if err := oplog.WriteReplicaFile(db.fs, path, id); err != nil {
			return err
		}
		if firstFormat {
			db.log.Info().Str("replica", id.String()).Msg("database had no replica ID; made one")
		}
	case errors.Is(err, os.ErrNotExist):
		return errs.Corruptf(path, -1, "missing: the database's op log and tables belong to a replica "+
			"whose ID this file held; restore it (never a new ID) before opening")
	default:
		return err
	}
	// Written before the op log: its log segments hold raw values, not
	// operations. They are replayed, then dropped.
	db.ol.legacy = firstFormat
	db.ol.self = id
	db.ol.clock = oplog.NewClock(nil)
	if db.opts.Clock != nil {
		db.ol.clock = oplog.NewClock(&oplog.ClockOptions{Wall: db.opts.Clock})
	}
	doc := &oplog.Merger{Self: id}
	db.ol.merger = &engineMerger{doc: doc, series: &tsdb.Merger{Self: id}}
	db.ol.compactMerger = &engineMerger{doc: doc, series: &tsdb.Merger{Self: id, Cold: true, Floors: db.seriesFloor}}
	return nil
}

// hasCurrent says whether the directory has a CURRENT file: whether it is
// an existing database rather than a new one.
func (db *DB) hasCurrent() bool {
	_, err := db.fs.Stat(layout.Path(db.dir, layout.TypeCurrent, 0))
	return err == nil
}

// upgradeDocuments rewrites the documents of a database written before the
// op log (format 1: raw values) as CRDT states, as local Puts. It runs once;
// the meta key docfmt says it is done.
func (db *DB) upgradeDocuments() error {
	if _, ok, err := db.getMeta(metaDocFmt); err != nil || ok {
		return err
	}
	// Raw values can be read only by an iterator that does not decode
	// them: iterate the namespace as if it were internal.
	snap := lsm.SeqNum(db.visible.Load())
	it := db.newIter(nsDocuments, nil, nil, snap)
	it.ns = 0xff // no document decoding
	b := db.NewBatch()
	n := 0
	flush := func() error {
		if b.Len() == 0 {
			return nil
		}
		err := b.Commit(&WriteOptions{NoSync: true})
		b.Reset()
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := b.Put(it.ui.Key()[1:], it.ui.Value()); err != nil {
			it.Close()
			return err
		}
		n++
		if b.memSize > db.opts.MemtableSize/4 {
			if err := flush(); err != nil {
				it.Close()
				return err
			}
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	b.add(lsm.KindSet, nsMeta, metaDocFmt, []byte{1})
	if err := b.Commit(&WriteOptions{Sync: true}); err != nil {
		return err
	}
	if n > 0 {
		db.log.Info().Int("documents", n).Msg("upgraded documents to CRDT states")
	}
	return nil
}

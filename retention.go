package pluresdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
)

// Retention of op history. Sealed, flushed log segments are history: they
// serve ExportChanges, the change feed and as-of reads. A background
// goroutine drops the oldest ones once they are older than
// Options.Retention (with a negative Retention, as soon as they are
// flushed), but never one holding operations a known peer has not
// acknowledged (AcknowledgePeer): sync needs those. Dropping is oldest
// first, so what is retained is always a contiguous stretch of the log;
// the floor records, per replica, the highest sequence number dropped.

// retentionInterval is how often retention looks at the log besides after
// every flush.
const retentionInterval = time.Minute

func (db *DB) startRetention() {
	db.retentionC = make(chan struct{}, 1)
	db.wg.Add(1)
	go func() {
		defer db.wg.Done()
		t := time.NewTicker(retentionInterval)
		defer t.Stop()
		for {
			select {
			case <-db.ol.subs.done:
				return
			case <-t.C:
			case <-db.retentionC:
			}
			if err := db.applyRetention(time.Now()); err != nil && !db.closed.Load() {
				db.log.Error().Err(err).Msg("op log retention")
			}
			if err := db.applySeriesRetention(time.Now()); err != nil && !db.closed.Load() {
				db.log.Error().Err(err).Msg("time series retention")
			}
		}
	}()
}

// retentionKick asks the retention goroutine to look at the log.
func (db *DB) retentionKick() {
	if db.retentionC == nil {
		return
	}
	select {
	case db.retentionC <- struct{}{}:
	default:
	}
}

// retention returns how long history is kept; negative: not at all beyond
// what sync and recovery need.
func (db *DB) retention() time.Duration { return db.opts.Retention }

// applyRetention archives the segments older than HotHistory and drops
// those older than Retention.
func (db *DB) applyRetention(now time.Time) error {
	db.retentionMu.Lock()
	defer db.retentionMu.Unlock()
	if err := db.dropHistory(now); err != nil {
		return err
	}
	return db.archiveHistory(now)
}

// horizonTS is the timestamp of the wall clock d ago; 0 for d <= 0
// (everything is older).
func horizonTS(now time.Time, d time.Duration) oplog.Timestamp {
	if d <= 0 {
		return oplog.Timestamp(1<<64 - 1)
	}
	return oplog.MakeTimestamp(uint64(now.Add(-d).UnixMilli()), 0)
}

// dropHistory (called with retentionMu held) drops, oldest first, the flushed segments (or their
// archives) that retention no longer keeps.
func (db *DB) dropHistory(now time.Time) error {
	before := horizonTS(now, db.retention())
	flushedBelow := db.vs.LogNum()

	db.ol.mu.Lock()
	var drop []*segIndex
	for _, s := range db.ol.segs {
		if s.num >= flushedBelow || s.maxHLC > before || db.peerNeedsLocked(s) {
			break
		}
		drop = append(drop, s)
	}
	if len(drop) == 0 {
		db.ol.mu.Unlock()
		return nil
	}
	floor := db.ol.floor.Clone()
	for _, s := range drop {
		for r, rg := range s.ranges {
			floor[r] = max(floor[r], rg.max)
		}
	}
	mark, raise := db.ol.clockMarkFor(drop...)
	feedFloor := db.ol.feedFloor
	db.ol.mu.Unlock()
	for _, s := range drop {
		p, err := db.lastPosition(s)
		if err != nil {
			// Unreadable: the highest position it could hold.
			p = Position{Seq: uint64(s.lastSeq), Index: 1<<32 - 1}
		}
		if feedFloor.Less(p) {
			feedFloor = p
		}
	}

	// The floor and the clock mark are durable before any history goes.
	b := db.NewBatch()
	b.add(lsm.KindSet, nsMeta, metaFloor, floor.Append(nil))
	if raise {
		addClockMark(b, mark)
	}
	b.add(lsm.KindSet, nsMeta, metaFeedFloor,
		binary.AppendUvarint(binary.AppendUvarint(nil, feedFloor.Seq), uint64(feedFloor.Index)))
	for _, s := range drop {
		b.add(lsm.KindDelete, nsMeta, segIndexKey(s.num), nil)
	}
	if err := b.Commit(&WriteOptions{Sync: true}); err != nil {
		return err
	}
	db.ol.mu.Lock()
	db.ol.floor = floor
	db.ol.clockMark = mark
	db.ol.feedFloor, db.ol.feedFloorSet = feedFloor, true
	db.ol.segs = db.ol.segs[len(drop):]
	db.ol.mu.Unlock()
	for _, s := range drop {
		t := layout.TypeLog
		if s.archived {
			t = layout.TypeArchive
		}
		path := layout.Path(db.dir, t, s.num)
		if err := db.fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			db.log.Error().Err(err).Str("file", path).Msg("removing op history")
		}
	}
	db.m.opSegmentsDropped.Add(uint64(len(drop)))
	return nil
}

// archiveHistory moves flushed segments older than HotHistory to the cold
// archive.
func (db *DB) archiveHistory(now time.Time) error {
	before := horizonTS(now, db.opts.HotHistory)
	flushedBelow := db.vs.LogNum()
	db.ol.mu.Lock()
	var todo []*segIndex
	for _, s := range db.ol.segs {
		if s.num >= flushedBelow || s.maxHLC > before {
			break
		}
		if !s.archived {
			todo = append(todo, s)
		}
	}
	db.ol.mu.Unlock()
	for _, s := range todo {
		if db.closed.Load() {
			return nil
		}
		if err := db.archiveSegment(s); err != nil {
			return err
		}
	}
	return nil
}

// peerNeedsLocked reports whether an acknowledged peer lacks operations of
// segment s. Called with ol.mu held.
func (db *DB) peerNeedsLocked(s *segIndex) bool {
	for _, vv := range db.ol.peers {
		for r, rg := range s.ranges {
			if rg.max > vv[r] {
				return true
			}
		}
	}
	return false
}

// AcknowledgePeer records that peer holds the operations vv says (its
// VersionVector, received over sync). History a known peer lacks is kept
// whatever the retention, and tombstones are dropped by compaction only
// once every known peer has seen them. A peer that leaves for good must be
// forgotten with ForgetPeer, or history is kept for it forever.
func (db *DB) AcknowledgePeer(peer oplog.ReplicaID, vv oplog.VersionVector) error {
	if err := db.opLogUsable(); err != nil {
		return err
	}
	b := db.NewBatch()
	key := append(append([]byte(nil), metaPeers...), peer[:]...)
	db.ol.mu.Lock()
	merged := vv.Clone()
	if old, ok := db.ol.peers[peer]; ok {
		merged = old.Merge(vv)
	}
	db.ol.mu.Unlock()
	b.add(lsm.KindSet, nsMeta, key, merged.Append(nil))
	if err := b.Commit(nil); err != nil {
		return err
	}
	db.ol.mu.Lock()
	db.ol.peers[peer] = merged
	db.ol.mu.Unlock()
	db.retentionKick()
	return nil
}

// ForgetPeer removes a peer recorded by AcknowledgePeer.
func (db *DB) ForgetPeer(peer oplog.ReplicaID) error {
	if err := db.opLogUsable(); err != nil {
		return err
	}
	b := db.NewBatch()
	b.add(lsm.KindDelete, nsMeta, append(append([]byte(nil), metaPeers...), peer[:]...), nil)
	if err := b.Commit(nil); err != nil {
		return err
	}
	db.ol.mu.Lock()
	delete(db.ol.peers, peer)
	db.ol.mu.Unlock()
	db.retentionKick()
	return nil
}

// tombstoneCollector returns the compaction hook that drops CRDT
// tombstones below the causal GC horizon: for every replica, the
// timestamp up to which every acknowledged peer has its operations, and
// never later than the retention horizon (a peer away for longer than
// Retention cannot get a delta anyway and must resync in full) nor than
// the clock (no stored timestamp is above it).
//
// The horizon is durable before any tombstone under it goes: the highest
// one ever used (meta key oplog/gchorizon) is what ImportChanges checks
// remote operations against (ErrStaleReplica). It is raised here when
// that takes no wait (the commit lock free, room in the memtable: a
// compaction must never wait for writers, who may be waiting for it), and
// otherwise the collection stays under the persisted horizon.
func (db *DB) tombstoneCollector() func(ukey, value []byte, seq lsm.SeqNum) bool {
	limit := min(horizonTS(time.Now(), db.retention()), db.ol.clock.Last())
	db.ol.mu.Lock()
	segs := db.ol.snapshotSegs()
	peers := make([]oplog.VersionVector, 0, len(db.ol.peers))
	for _, vv := range db.ol.peers {
		peers = append(peers, vv.Clone())
	}
	db.ol.mu.Unlock()
	cache := map[oplog.ReplicaID]oplog.Timestamp{}
	horizon := func(r oplog.ReplicaID) oplog.Timestamp {
		if h, ok := cache[r]; ok {
			return h
		}
		h := limit
		for _, vv := range peers {
			// The newest of r's timestamps in segments the peer has all
			// of r's operations of. r's timestamps rise with its
			// sequence numbers, so every earlier one is covered too.
			var covered oplog.Timestamp
			for _, s := range segs {
				if rg, ok := s.ranges[r]; ok && rg.max <= vv[r] {
					covered = max(covered, rg.maxHLC)
				}
			}
			h = min(h, covered)
		}
		cache[r] = h
		return h
	}
	// The highest horizon this collection may use: any replica's, which
	// without peers is limit, and with peers that of a replica in the
	// retained segments (any other has none covered).
	want := limit
	if len(peers) > 0 {
		want = horizon(db.ol.self)
		for _, s := range segs {
			for r := range s.ranges {
				want = max(want, horizon(r))
			}
		}
	}
	durable := db.raiseGCHorizon(want)
	self := db.ol.self
	return func(ukey, value []byte, seq lsm.SeqNum) bool {
		if len(ukey) == 0 || ukey[0] != nsDocuments {
			return false
		}
		ok, err := oplog.Collectible(value, self, func(r oplog.ReplicaID) oplog.Timestamp {
			return min(horizon(r), durable)
		})
		if err != nil || !ok {
			return false
		}
		// Only if nothing newer of the key lies outside the compaction:
		// an imported operand older than the tombstone (by timestamp)
		// may sit above it, in a memtable or a higher level, and would
		// fold onto nothing, bringing the deleted document back. (Imports
		// after the horizon was raised are refused, see refuseStale; the
		// ones before are in the tree now.)
		return db.newestIs(ukey, seq)
	}
}

// newestIs says whether seq is the newest entry of ukey in the whole
// tree (memtables and every level): only then may a compaction drop it,
// or an operand above it would fold onto nothing.
func (db *DB) newestIs(ukey []byte, seq lsm.SeqNum) bool {
	db.stateMu.RLock()
	_, _, newest, found, err := db.getLocked(ukey, lsm.MaxSeqNum)
	db.stateMu.RUnlock()
	return err == nil && found && newest == seq
}

// metaGCHorizon is the highest tombstone collection horizon ever used (8
// bytes, big endian).
var metaGCHorizon = []byte("oplog/gchorizon")

// raiseGCHorizon makes want the durable collection horizon if that takes
// no wait, and returns the durable horizon.
func (db *DB) raiseGCHorizon(want oplog.Timestamp) oplog.Timestamp {
	cur := oplog.Timestamp(db.ol.gcHorizon.Load())
	if want <= cur || !db.commitMu.TryLock() {
		return cur
	}
	b := &Batch{db: db}
	b.Reset()
	b.add(lsm.KindSet, nsMeta, metaGCHorizon, binary.BigEndian.AppendUint64(nil, uint64(want)))
	if db.mem.m.Room() < b.memSize+db.pendingMetaSize()+lsm.MemtableEntryOverhead {
		db.commitMu.Unlock()
		return cur
	}
	last, err := db.appendLocked(b)
	db.commitMu.Unlock()
	if err == nil {
		err = db.publish(last, true)
	}
	if err != nil {
		if !db.closed.Load() {
			db.log.Error().Err(err).Msg("recording the tombstone collection horizon")
		}
		return cur
	}
	for {
		c := db.ol.gcHorizon.Load()
		if c >= uint64(want) || db.ol.gcHorizon.CompareAndSwap(c, uint64(want)) {
			break
		}
	}
	return want
}

// refuseStale refuses a stream that holds an operation this replica lacks
// and that a tombstone it may have collected would have beaten: one at or
// below the collection horizon. Applying it would bring a deleted key back
// here only. Called with commitMu held, before anything is applied.
func (db *DB) refuseStale(vs *oplog.VerifiedStream) error {
	h := oplog.Timestamp(db.ol.gcHorizon.Load())
	if h == 0 {
		return nil
	}
	lacks := false
	for _, rg := range vs.Header.Ranges {
		if rg.Replica != db.ol.self && rg.To > db.ol.remote[rg.Replica] {
			lacks = true
		}
	}
	if !lacks {
		return nil
	}
	var ops []oplog.Op
	var buf []byte
	for i := range vs.NumChunks() {
		var err error
		if ops, _, buf, err = vs.ChunkIn(i, ops[:0], nil, buf); err != nil {
			return err
		}
		for j := range ops {
			op := &ops[j]
			if op.Replica == db.ol.self || op.Seq <= db.ol.remote[op.Replica] || op.HLC > h {
				continue
			}
			db.m.staleImports.Add(1)
			return fmt.Errorf("%w: operation %s/%d of %s is at or below the tombstone collection horizon %s; "+
				"the sending replica was away too long and must re-bootstrap from a snapshot",
				ErrStaleReplica, op.Replica, op.Seq, op.HLC, h)
		}
	}
	return nil
}

func (db *DB) opLogMetrics() OpLogMetrics {
	m := OpLogMetrics{
		ArchivedBytes:   db.m.opArchivedBytes.Load(),
		ArchivedOps:     db.m.opArchivedOps.Load(),
		SegmentsDropped: db.m.opSegmentsDropped.Load(),
		StaleImports:    db.m.staleImports.Load(),
		Rejoining:       db.rejoining.Load(),
	}
	db.ol.mu.Lock()
	var nums []layout.FileNum
	for _, s := range db.ol.segs {
		if s.archived {
			m.ArchivedSegments++
		} else {
			nums = append(nums, s.num)
		}
	}
	db.ol.mu.Unlock()
	if db.wal != nil {
		nums = append(nums, db.wal.Num())
	}
	for _, n := range nums {
		if fi, err := db.fs.Stat(layout.Path(db.dir, layout.TypeLog, n)); err == nil {
			m.HotSegments++
			m.HotBytes += fi.Size()
		}
	}
	return m
}

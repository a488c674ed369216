package pluresdb

import (
	"errors"
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
func (db *DB) retention() time.Duration {
	if db.opts.Retention == 0 {
		return 7 * 24 * time.Hour
	}
	return db.opts.Retention
}

// applyRetention drops the segments that retention no longer keeps.
func (db *DB) applyRetention(now time.Time) error {
	keepAfter := oplog.Timestamp(0)
	if r := db.retention(); r > 0 {
		keepAfter = oplog.MakeTimestamp(uint64(now.Add(-r).UnixMilli()), 0)
	}
	flushedBelow := db.vs.LogNum()

	db.ol.mu.Lock()
	var drop []*segIndex
	for _, s := range db.ol.segs {
		if s.num >= flushedBelow || (keepAfter != 0 && s.maxHLC > keepAfter) || db.peerNeedsLocked(s) {
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
			floor.Advance(r, rg.max)
		}
	}
	db.ol.mu.Unlock()

	// The floor is durable before any history goes.
	b := db.NewBatch()
	b.add(lsm.KindSet, nsMeta, metaFloor, floor.Append(nil))
	for _, s := range drop {
		b.add(lsm.KindDelete, nsMeta, segIndexKey(s.num), nil)
	}
	if err := b.Commit(&WriteOptions{Sync: true}); err != nil {
		return err
	}
	db.ol.mu.Lock()
	db.ol.floor = floor
	db.ol.segs = db.ol.segs[len(drop):]
	db.ol.mu.Unlock()
	for _, s := range drop {
		path := layout.Path(db.dir, layout.TypeLog, s.num)
		if err := db.fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			db.log.Error().Err(err).Str("file", path).Msg("removing op log segment")
		}
	}
	db.m.opSegmentsDropped.Add(uint64(len(drop)))
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

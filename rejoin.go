package pluresdb

import (
	"errors"
	"fmt"
	"os"

	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
)

// Rejoining (ARCHITECTURE.md, "Checkpoints and backups" and "Selective
// imports"). A replica restored in place from an older copy (a backup
// restored with SameReplica, a checkpoint put back) has lost whatever it
// wrote after the copy, and its peers may hold those operations. Until it
// has them back, a local write would take a sequence number a peer holds
// for another operation of this replica, and the replicas would diverge
// without a word. The restore leaves a REJOINING marker in the directory
// (oplog.WriteRejoinFile); while it is there:
//
//   - local writes fail with ErrRejoining;
//   - ImportChanges takes this replica's own operations beyond its last
//     back, as it takes any replica's (after a sequence jump record, so
//     that no later write reuses their numbers);
//   - FinishRejoin removes the marker.

// metaSeqJump is the meta key of a sequence jump record's one entry (see
// batchrepr.SeqJumpKey).
var metaSeqJump = []byte(batchrepr.SeqJumpKey[1:])

// openRejoin reads the REJOINING marker, when the directory listing
// showed one (has): the database is rejoining. Called at open once the
// replica ID is known. A damaged marker, or one naming another replica,
// refuses the open: whether this copy may write cannot be told.
func (db *DB) openRejoin(has bool) error {
	if !has {
		return nil
	}
	path := layout.Path(db.dir, layout.TypeRejoin, 0)
	id, err := oplog.ReadRejoinFile(db.fs, path)
	if err != nil {
		return err
	}
	if id != db.ol.self {
		return errs.Corruptf(path, 12, "rejoining marker of replica %s in the database of replica %s", id, db.ol.self)
	}
	db.rejoining.Store(true)
	db.log.Warn().Str("replica", id.String()).
		Msg("replica restored in place is rejoining: local writes are refused until its own operations are imported from its peers and FinishRejoin is called")
	return nil
}

// Rejoining reports whether the database is a replica restored in place
// that has not finished rejoining (see FinishRejoin): it takes no local
// writes (ErrRejoining).
func (db *DB) Rejoining() bool { return db.rejoining.Load() }

// FinishRejoin ends the rejoining state of a replica restored in place
// (backup.Restore with SameReplica): its REJOINING marker is removed
// durably and local writes are accepted again. It does nothing on a
// database that is not rejoining.
//
// Call it once every peer that may hold operations this replica wrote
// after the copy it was restored from has been imported from (each
// peer's ExportChanges since this replica's VersionVector, given to
// ImportChanges). Finishing early risks exactly what the state prevents:
// an operation of this replica that a peer not yet imported from holds
// has a sequence number that this replica's next writes can take again,
// and the replicas diverge silently; a later import of that peer then
// fails with ErrRewound (the operations this replica lacks cannot come
// back once it has written past them).
//
// The log is synced first, so that the operations taken back (and the
// jump past their sequence numbers) are durable before the state ends.
func (db *DB) FinishRejoin() error {
	db.commitMu.Lock()
	defer db.commitMu.Unlock()
	if err := db.writable(); err != nil {
		return err
	}
	if !db.rejoining.Load() {
		return nil
	}
	if db.lastSeq < lsm.SeqNum(db.ol.localSeq) {
		// The import jumps first; reaching here is a bug, and writing
		// would reuse sequence numbers.
		return fmt.Errorf("pluresdb: finishing a rejoin: the last sequence number %d is below this replica's last operation %d",
			db.lastSeq, db.ol.localSeq)
	}
	if err := db.syncThrough(db.lastSeq); err != nil {
		return err
	}
	path := layout.Path(db.dir, layout.TypeRejoin, 0)
	if err := db.fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pluresdb: finishing a rejoin: %w", err)
	}
	if err := db.fs.SyncDir(db.dir); err != nil {
		return fmt.Errorf("pluresdb: finishing a rejoin: %w", err)
	}
	db.rejoining.Store(false)
	db.log.Info().Str("replica", db.ol.self.String()).Uint64("local_seq", db.ol.localSeq).Msg("rejoin finished: local writes accepted")
	return nil
}

// refuseLocalWrite returns ErrRejoining while the database is rejoining.
func (db *DB) refuseLocalWrite() error {
	if db.rejoining.Load() {
		return ErrRejoining
	}
	return nil
}

// jumpSeqLocked makes every sequence number up to to used, if the log has
// not reached it: a sequence jump record (batchrepr.SeqJump) is logged at
// to+1, declaring the numbers between the previous record and it
// skipped. It returns the record's sequence number (0: none was needed).
// An import that brings this replica's own operations back calls it
// before logging them, with the highest of them: in the log the jump
// comes first, so a crash that keeps the operations keeps the jump, and
// no later write takes one of their numbers. Called with commitMu held.
func (db *DB) jumpSeqLocked(to lsm.SeqNum) (lsm.SeqNum, error) {
	if err := db.writable(); err != nil {
		return 0, err
	}
	need := len(metaSeqJump) + 1 + 10 + lsm.MemtableEntryOverhead
	for db.lastSeq < to {
		// Whatever logLocked would log before the record goes first, so
		// that the record follows the jump directly.
		switch {
		case db.mem.m.Room() < need+db.pendingMetaSize():
			if err := db.rotateMemtable(); err != nil {
				return 0, err
			}
		case len(db.pendingMeta) > 0:
			if err := db.appendPendingMeta(); err != nil {
				return 0, err
			}
		default:
			b := db.NewBatch()
			b.add(lsm.KindSet, nsMeta, metaSeqJump, batchrepr.AppendSeqJumpValue(nil, db.lastSeq+1))
			db.lastSeq = to
			last, err := db.appendLocked(b)
			if err != nil {
				return 0, err
			}
			db.log.Info().Uint64("to", uint64(to)).Msg("rejoin: sequence numbers jumped past this replica's operations taken back from a peer")
			return last, nil
		}
	}
	return 0, nil
}

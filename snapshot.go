package pluresdb

import (
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/lsm"
)

// Snapshot is a read-only, point-in-time view of the database. Reads
// through it see exactly the writes committed before it was taken. A
// Snapshot keeps older versions of keys from being compacted away, so close
// it when done. Safe for concurrent use.
type Snapshot struct {
	db  *DB
	seq lsm.SeqNum
}

// NewSnapshot takes a snapshot of the committed state.
func (db *DB) NewSnapshot() *Snapshot {
	db.snapMu.Lock()
	defer db.snapMu.Unlock()
	s := &Snapshot{db: db, seq: lsm.SeqNum(db.visible.Load())}
	db.snaps[s] = struct{}{}
	return s
}

// Get reads key as of the snapshot.
func (s *Snapshot) Get(key []byte) ([]byte, error) {
	if !s.live() {
		return nil, errs.ErrClosed
	}
	return s.db.getAt(key, s.seq)
}

// NewIter iterates [lower, upper) as of the snapshot.
func (s *Snapshot) NewIter(lower, upper []byte) *Iter {
	if !s.live() {
		return &Iter{err: errs.ErrClosed}
	}
	return s.db.newIter(nsDocuments, lower, upper, s.seq)
}

// Close releases the snapshot.
func (s *Snapshot) Close() error {
	s.db.snapMu.Lock()
	defer s.db.snapMu.Unlock()
	if _, ok := s.db.snaps[s]; !ok {
		return errs.ErrClosed
	}
	delete(s.db.snaps, s)
	return nil
}

func (s *Snapshot) live() bool {
	s.db.snapMu.Lock()
	defer s.db.snapMu.Unlock()
	_, ok := s.db.snaps[s]
	return ok
}

// snapshotSeqs lists the sequence numbers flushes and compactions must
// keep readable: the live snapshots' and the visible one, which every
// read without a snapshot uses. Entries above it (a batch logged but not
// yet published, the tables of an import in progress) must not be folded
// into, or shadow, the entries readers see until it moves.
func (db *DB) snapshotSeqs() []lsm.SeqNum {
	db.snapMu.Lock()
	defer db.snapMu.Unlock()
	seqs := make([]lsm.SeqNum, 0, len(db.snaps)+1)
	for s := range db.snaps {
		seqs = append(seqs, s.seq)
	}
	return append(seqs, lsm.SeqNum(db.visible.Load()))
}

package pluresdb

import (
	"bytes"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
)

// Selective sync (see "Selective imports" in ARCHITECTURE.md). A stream of
// ExportChangesPrefix holds only the operations on keys with its prefix,
// so it cannot move the version vector, which claims every operation up
// to a sequence number. The importer logs those operations all the same
// (as opFiltered: the feed and as-of reads see them, exports do not) and
// keeps, per prefix, a cursor: a version vector that claims only the
// operations on keys with that prefix. PrefixVersionVector combines the
// two, so a repeated selective sync asks for what is new and nothing
// else.
//
// A later full import still brings the operations a cursor holds (its
// stream is cut by the version vector). It logs them again, as repeats,
// so that each replica's operations stay in ascending order in the log's
// exported copy, and lists them in the record so the feed does not
// deliver them twice. Applying them again changes no state: the merge
// rules are joins, and a counter's share ignores sequence numbers it has
// counted.

// metaCursor is the meta key prefix of the selective-sync cursors: +
// the prefix, a version vector.
var metaCursor = []byte("oplog/cursor/")

// PrefixVersionVector is VersionVector for the keys with the given
// prefix: for every replica, the sequence number up to which this
// replica holds all of that replica's operations on those keys, through
// full imports or selective ones (ExportChangesPrefix) of this prefix or
// a shorter one. Hand it to a peer's ExportChangesPrefix with the same
// prefix to get only what is new. A nil prefix gives VersionVector().
func (db *DB) PrefixVersionVector(prefix []byte) oplog.VersionVector {
	db.commitMu.Lock()
	defer db.commitMu.Unlock()
	return db.prefixVersionVectorLocked(prefix)
}

func (db *DB) prefixVersionVectorLocked(prefix []byte) oplog.VersionVector {
	vv := db.versionVectorLocked()
	if prefix == nil {
		return vv
	}
	for p, c := range db.ol.cursors {
		if !bytes.HasPrefix(prefix, []byte(p)) {
			continue
		}
		for r, s := range c {
			if s > vv[r] {
				vv[r] = s
			}
		}
	}
	return vv
}

// heldByCursor says whether a cursor claims op: a selective import logged
// it before. Called with commitMu held.
func (db *DB) heldByCursor(op *oplog.Op) bool {
	for p, c := range db.ol.cursors {
		if c[op.Replica] >= op.Seq && bytes.HasPrefix(op.Key, []byte(p)) {
			return true
		}
	}
	return false
}

// cursorKey is the meta key of prefix's cursor.
func cursorKey(prefix []byte) []byte {
	return append(bytes.Clone(metaCursor), prefix...)
}

// pruneCursor drops the entries of c that vv covers, which claim nothing
// more.
func pruneCursor(c, vv oplog.VersionVector) {
	for r, s := range c {
		if s <= vv[r] {
			delete(c, r)
		}
	}
}

// decodeCursor decodes the cursor stored under meta key k.
func (db *DB) decodeCursor(k, v []byte) (string, oplog.VersionVector, error) {
	prefix := string(k[len(metaCursor):])
	vv, _, err := oplog.DecodeVersionVector(v)
	if err != nil {
		return "", nil, errs.Corruptf(db.dir, -1, "op log cursor for prefix %q: %v", prefix, err)
	}
	return prefix, vv, nil
}

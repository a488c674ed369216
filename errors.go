package pluresdb

import (
	"errors"
	"fmt"

	"github.com/plures/pluresdb/internal/errs"
)

// Errors returned by the engine. Test for them with errors.Is: the engine
// wraps them with the file, offset or key involved.
var (
	// ErrNotFound: Get found no value for the key (absent or deleted).
	ErrNotFound = errs.ErrNotFound
	// ErrCorruption: stored bytes failed a checksum or could not be
	// decoded. The message names the file and offset.
	ErrCorruption = errs.ErrCorruption
	// ErrClosed: the database, iterator, snapshot or batch was closed.
	ErrClosed = errs.ErrClosed
	// ErrLocked: another process, or another open DB in this process,
	// holds the directory.
	ErrLocked = errs.ErrLocked
	// ErrNewerFormat: the directory was written by a newer version of the
	// engine.
	ErrNewerFormat = errs.ErrNewerFormat
	// ErrNotDatabase: the path is a regular file, or a directory that
	// holds files other than a database's.
	ErrNotDatabase = errs.ErrNotDatabase
	// ErrInvalidKey: an empty key.
	ErrInvalidKey = errs.ErrInvalidKey
	// ErrKeyTooLarge: a key longer than MaxKeySize.
	ErrKeyTooLarge = errs.ErrKeyTooLarge
	// ErrValueTooLarge: a value longer than MaxValueSize, or a batch larger
	// than half the memtable.
	ErrValueTooLarge = errs.ErrValueTooLarge
	// ErrReadOnly: the database takes no writes. Either it was opened with
	// Options.ReadOnly, or a write to the log failed (a full disk, an I/O
	// error) and it refuses further writes until it is reopened; reads go
	// on, and Health says why.
	ErrReadOnly = errs.ErrReadOnly
	// ErrInvalidOptions: Options.Validate rejected a field.
	ErrInvalidOptions = errs.ErrInvalidOptions
	// ErrHistoryUnavailable: the operations asked for (changes since a
	// version vector, a change-feed position, an as-of read) are older than
	// the history the log still retains.
	ErrHistoryUnavailable = errors.New("pluresdb: history no longer retained")
	// ErrStaleReplica: a change stream holds an operation this replica
	// lacks that is at or below the horizon under which it has collected
	// tombstones: a deletion it no longer remembers may have beaten it, so
	// applying it could bring a deleted key back on this replica alone.
	// The sending replica was away for longer than Retention (or than its
	// acknowledged peers kept history for it) and must re-bootstrap from a
	// snapshot of a current replica. It wraps ErrHistoryUnavailable.
	ErrStaleReplica = fmt.Errorf("pluresdb: stale replica, re-bootstrap it from a snapshot: %w", ErrHistoryUnavailable)
	// ErrCausalGap: a change stream starts after what this replica has of
	// some replica's operations; applying it would leave a hole. Ask the
	// peer for the changes since VersionVector() instead.
	ErrCausalGap = errors.New("pluresdb: change stream does not follow this replica's history")
	// ErrRewound: a peer holds operations of this replica that it lacks:
	// this replica lost history it had already passed on (restored in
	// place from an older copy, say). Its next writes would reuse sequence
	// numbers its peers hold for other operations, and the replicas would
	// diverge. A replica restored with backup.Restore's SameReplica is
	// rejoining (ErrRejoining) and takes them back instead; otherwise
	// rejoin as a new replica (a default backup restore, or ImportSnapshot
	// into a new database).
	ErrRewound = errors.New("pluresdb: a peer holds operations of this replica that it lacks")
	// ErrRejoining: the database is a replica restored in place
	// (backup.Restore with SameReplica) that may lack operations it wrote
	// after the backup, which its peers hold. It takes no local writes
	// until it has them back: import from every peer that may hold them
	// (ImportChanges of their ExportChanges since VersionVector()), then
	// call FinishRejoin (or run plures-backup rejoin-finish DIR). Reads
	// and imports work meanwhile. See DB.FinishRejoin.
	ErrRejoining = errors.New("pluresdb: replica restored in place is rejoining: import its own operations " +
		"from every peer (ImportChanges), then call FinishRejoin (plures-backup rejoin-finish DIR) before writing")
)

// Package errs holds the sentinel errors shared by every package of the
// engine. The root package re-exports them (pluresdb.ErrCorruption is
// errs.ErrCorruption), so callers test with errors.Is against either name.
//
// Errors that come from disk name the file and the offset: use Corruptf,
// whose result wraps ErrCorruption.
package errs

import (
	"errors"
	"fmt"

	"github.com/plures/pluresdb/internal/vfs"
)

var (
	// ErrNotFound: the key is absent or deleted.
	ErrNotFound = errors.New("pluresdb: not found")
	// ErrCorruption: stored bytes failed a checksum or could not be decoded.
	ErrCorruption = errors.New("pluresdb: corruption")
	// ErrClosed: the database (or iterator, snapshot, batch) is closed.
	ErrClosed = errors.New("pluresdb: closed")
	// ErrLocked: another process (or another DB in this process) holds the
	// directory's LOCK. Defined by vfs, which reports it.
	ErrLocked = vfs.ErrLocked
	// ErrNewerFormat: a file was written by a newer format version than this
	// code understands.
	ErrNewerFormat = errors.New("pluresdb: format version is newer than this build supports")
	// ErrNotDatabase: the path is not a PluresDB database (a regular file,
	// or a directory holding other files).
	ErrNotDatabase = errors.New("pluresdb: not a database")
	// ErrKeyTooLarge: a key longer than MaxKeySize, or an empty key.
	ErrKeyTooLarge = errors.New("pluresdb: key too large")
	// ErrValueTooLarge: a value longer than MaxValueSize.
	ErrValueTooLarge = errors.New("pluresdb: value too large")
	// ErrInvalidKey: an empty key.
	ErrInvalidKey = errors.New("pluresdb: invalid key")
	// ErrReadOnly: the database takes no writes: it was opened with
	// Options.ReadOnly, or the engine stopped accepting writes after a
	// failed write to disk (see DB.Health).
	ErrReadOnly = errors.New("pluresdb: database is read-only")
	// ErrInvalidOptions: Options.Validate rejected a field.
	ErrInvalidOptions = errors.New("pluresdb: invalid options")
)

// CorruptionError describes damaged bytes: which file, where, and what was
// wrong. It matches ErrCorruption under errors.Is.
type CorruptionError struct {
	File   string // path or base name of the damaged file
	Offset int64  // byte offset of the damaged record or block; -1 if unknown
	Reason string
}

func (e *CorruptionError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("pluresdb: corruption in %s: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("pluresdb: corruption in %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorruption) true.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorruption }

// Corruptf returns a *CorruptionError for file at offset.
func Corruptf(file string, offset int64, format string, args ...any) error {
	return &CorruptionError{File: file, Offset: offset, Reason: fmt.Sprintf(format, args...)}
}

// NewerFormatf returns an error wrapping ErrNewerFormat that names the file
// and both versions.
func NewerFormatf(file string, got, max uint32) error {
	return fmt.Errorf("%w: %s has format version %d, this build reads up to %d", ErrNewerFormat, file, got, max)
}

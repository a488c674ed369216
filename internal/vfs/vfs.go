// Package vfs is the filesystem the engine does all its I/O through.
//
// Three implementations: Default (the operating system), NewMem (in memory,
// strict about durability) and WithFaults (wraps another FS and fails chosen
// operations). Tests use MemFS.CrashClone to see exactly what a machine
// would hold after a power cut: file data written since the last File.Sync
// is gone, and directory entries created, renamed or removed since the last
// SyncDir of their directory are rolled back. MemFS.CrashCloneWith models
// a disk that wrote back part of the unsynced data before the power went:
// a prefix or a random subset of each file's unsynced writes, some of them
// torn.
package vfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
)

// ErrLocked: a lock on the file is held, by another process or through
// another Lock call of this one. The engine re-exports it as
// pluresdb.ErrLocked.
var ErrLocked = errors.New("pluresdb: database directory is locked")

// File is an open file. A File is not safe for concurrent use, except that
// ReadAt may be called from several goroutines at once.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.Closer
	// Sync makes the file's data durable (fsync/fdatasync).
	Sync() error
	// Size returns the current length of the file.
	Size() (int64, error)
	// Truncate changes the length of the file. The new length is durable
	// only after Sync.
	Truncate(size int64) error
}

// FS is a filesystem. All methods are safe for concurrent use.
type FS interface {
	// Create creates the named file, or truncates it if it exists, and
	// opens it for reading and writing. The directory entry is durable only
	// after SyncDir of its directory.
	Create(name string) (File, error)
	// Open opens an existing file for reading.
	Open(name string) (File, error)
	// OpenReadWrite opens an existing file for reading and writing,
	// positioned at offset 0.
	OpenReadWrite(name string) (File, error)
	// Remove removes a file or an empty directory.
	Remove(name string) error
	// Rename atomically replaces newname with oldname.
	Rename(oldname, newname string) error
	// MkdirAll creates a directory and its parents (0755).
	MkdirAll(dir string) error
	// List returns the base names of the entries of dir, sorted.
	List(dir string) ([]string, error)
	// Stat describes the named file.
	Stat(name string) (os.FileInfo, error)
	// Lock takes an exclusive lock on the named file, creating it if needed.
	// A lock already held (by this or another process) fails at once with
	// an error wrapping ErrLocked. Closing the returned Closer releases
	// the lock.
	Lock(name string) (io.Closer, error)
	// SyncDir makes the directory's entries durable.
	SyncDir(dir string) error
}

// Linker is implemented by a filesystem that can give a file a second
// name (a hard link): both names then refer to the same bytes. The new
// name is durable only after SyncDir of its directory. Checkpoints use it
// where they can and copy where they cannot (see Link).
type Linker interface {
	Link(oldname, newname string) error
}

// ErrLinkUnsupported: the filesystem cannot make hard links.
var ErrLinkUnsupported = errors.New("vfs: hard links not supported")

// Link makes newname a hard link to oldname if fs implements Linker, and
// returns an error wrapping ErrLinkUnsupported otherwise.
func Link(fs FS, oldname, newname string) error {
	l, ok := fs.(Linker)
	if !ok {
		return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: ErrLinkUnsupported}
	}
	return l.Link(oldname, newname)
}

// WriteFileAtomic makes path hold data, durably and all at once: data goes
// to tmp, which is synced, renamed over path, and the directory synced.
// After a crash path holds either its old contents or data; tmp may be
// left behind (callers name it so that open removes it). On an error tmp
// is removed.
func WriteFileAtomic(fs FS, tmp, path string, data []byte) error {
	f, err := fs.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, path)
	}
	if err != nil {
		fs.Remove(tmp)
		return err
	}
	return fs.SyncDir(filepath.Dir(path))
}

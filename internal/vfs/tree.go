package vfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrNotEmpty: a directory that was to be created or filled exists and
// holds something (or is a file).
var ErrNotEmpty = errors.New("vfs: target exists and is not an empty directory")

// CheckEmptyDir returns nil if dir does not exist or is an empty
// directory, else an error wrapping ErrNotEmpty (or the Stat/List error).
func CheckEmptyDir(fs FS, dir string) error {
	fi, err := fs.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%w: %s exists and is a file", ErrNotEmpty, dir)
	}
	names, err := fs.List(dir)
	if err != nil {
		return err
	}
	if len(names) > 0 {
		return fmt.Errorf("%w: %s exists and is not empty (%d entries, %s first)", ErrNotEmpty, dir, len(names), names[0])
	}
	return nil
}

// RemoveAll removes dir and everything under it. It is for directories
// the caller made itself (temporary ones), never for a database's.
func RemoveAll(fs FS, dir string) error {
	names, err := fs.List(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		p := filepath.Join(dir, name)
		if fi, err := fs.Stat(p); err == nil && fi.IsDir() {
			if err := RemoveAll(fs, p); err != nil {
				return err
			}
			continue
		}
		if err := fs.Remove(p); err != nil {
			return err
		}
	}
	return fs.Remove(dir)
}

// MoveAside moves the file src into the directory qdir (made if need be)
// under its own name, or with a suffix .1, .2, ... that no file there has
// (nothing is ever overwritten), and makes the move durable (both
// directories synced). It returns the new path; on an error after the
// rename, the path too.
func MoveAside(fs FS, src, qdir string) (string, error) {
	if err := fs.MkdirAll(qdir); err != nil {
		return "", err
	}
	name := filepath.Base(src)
	dst := filepath.Join(qdir, name)
	for i := 1; ; i++ {
		_, err := fs.Stat(dst)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return "", err
		}
		dst = filepath.Join(qdir, fmt.Sprintf("%s.%d", name, i))
	}
	if err := fs.Rename(src, dst); err != nil {
		return "", err
	}
	if err := fs.SyncDir(qdir); err != nil {
		return dst, err
	}
	return dst, fs.SyncDir(filepath.Dir(src))
}

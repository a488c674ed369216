package vfs

import (
	"os"
	"syscall"
)

// Sync uses fdatasync: it makes the data and the metadata needed to read
// it back (the file size) durable, and skips timestamps, which saves a
// journal write per sync on most filesystems.
func (f osFile) Sync() error {
	rc, err := f.File.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				break
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

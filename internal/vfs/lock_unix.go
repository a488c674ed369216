//go:build unix

package vfs

import (
	"errors"
	"os"
	"syscall"
)

var errWouldBlock = errors.New("vfs: lock would block")

// flock takes a non-blocking exclusive lock; errWouldBlock means another
// open file description holds it.
func flock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err == syscall.EWOULDBLOCK {
		return errWouldBlock
	}
	return err
}

//go:build !unix

package vfs

import (
	"errors"
	"os"
)

var errWouldBlock = errors.New("vfs: lock would block")

// flock is a no-op where flock(2) does not exist; the process-wide set of
// locked paths still keeps two DBs of this process apart.
func flock(*os.File) error { return nil }

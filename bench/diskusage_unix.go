//go:build unix

package main

import (
	"os"
	"syscall"
)

// allocatedSize is the space a file takes on disk, as du counts it, so
// sparse or preallocated files (Badger's memtables, Pebble's WAL) count for
// what they hold, not their length.
func allocatedSize(info os.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}

// writeBack has the kernel write every dirty page to disk, so that what
// earlier phases wrote is not written back during the next timed one.
func writeBack() { syscall.Sync() }

//go:build !unix

package main

import "os"

// allocatedSize falls back to the file length where block counts are not
// available.
func allocatedSize(info os.FileInfo) int64 { return info.Size() }

// writeBack is a no-op where there is no sync(2).
func writeBack() {}

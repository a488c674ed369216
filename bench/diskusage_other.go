//go:build !unix

package main

import "os"

// allocatedSize falls back to the file length where block counts are not
// available.
func allocatedSize(info os.FileInfo) int64 { return info.Size() }

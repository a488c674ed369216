package prefetch

import "unsafe"

// Lines asks the CPU to start loading the two cache lines at p without
// waiting for them. A hint: it never faults, whatever p is.
//
//go:noescape
func Lines(p unsafe.Pointer)

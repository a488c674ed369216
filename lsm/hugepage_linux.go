package lsm

import (
	"syscall"
	"unsafe"
)

// adviseHugePages asks the kernel to back buf with transparent huge
// pages where it can. A memtable's searches touch its arena at random, and
// with 4 KiB pages most of them also miss the TLB. It is a hint: errors
// are ignored.
func adviseHugePages(buf []byte) {
	const huge = 2 << 20
	start := (uintptr(unsafe.Pointer(unsafe.SliceData(buf))) + huge - 1) &^ (huge - 1)
	end := (uintptr(unsafe.Pointer(unsafe.SliceData(buf))) + uintptr(len(buf))) &^ (huge - 1)
	if end <= start {
		return
	}
	syscall.Syscall(syscall.SYS_MADVISE, start, end-start, 14 /* MADV_HUGEPAGE */)
}

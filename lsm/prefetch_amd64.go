package lsm

// prefetch asks the CPU to start loading the two cache lines at p (a
// skiplist node: its header, tower and usually its key) without waiting
// for them. A hint: it never faults.
//
//go:noescape
func prefetch(p *byte)

//go:build !amd64

package lsm

// prefetch is a no-op where no prefetch instruction is wired in.
func prefetch(*byte) {}

//go:build !amd64

package hnsw

// prefetch is a no-op without the amd64 assembly.
func prefetch(*float32) {}

//go:build race

package hnsw

// raceEnabled shrinks the randomized tests: the race detector makes the
// distance kernels about ten times slower.
const raceEnabled = true

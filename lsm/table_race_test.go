//go:build race

package lsm

// The race detector makes sync.Pool drop items at random, so allocation
// counts are meaningless under it.
func init() { raceEnabledSST = true }

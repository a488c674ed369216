//go:build race

package wal

// raceEnabled skips tests whose cost is all in the race detector's
// accounting of huge copies, not in concurrency.
const raceEnabled = true

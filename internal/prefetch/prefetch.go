// Package prefetch asks the CPU to start loading memory that will be read
// soon, so that independent cache misses overlap (a search touching many
// scattered nodes or vectors).
package prefetch

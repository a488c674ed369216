// Package compaction writes sorted tables out of merged inputs and decides
// which tables to merge.
//
// Two pieces live here:
//
//   - Writer: the one routine that turns a merged stream of internal keys
//     into output tables. It drops what no reader can see (older versions
//     shadowed within the same snapshot stripe, tombstones at the bottom of
//     the tree that every snapshot already sees), splits outputs at
//     TargetFileSize on user-key boundaries, and syncs every file before it
//     is reported. Memtable flushes and compactions both use it.
//   - The picker and runner: the engine's first compaction policy, a plain
//     L0 → L1 merge triggered by the L0 file count, which keeps point reads
//     bounded. Leveled, tiered (hot/cold) compaction replaces the picker
//     without touching the Writer.
//
// Snapshot stripes: with live snapshots s1 < s2 < ... < sn, the sequence
// space splits into stripes (0, s1], (s1, s2], ..., (sn, ∞). A reader at any
// snapshot sees, for a key, the newest entry of some stripe, so within one
// stripe only the newest entry (and, beneath a merge operand, the entries
// down to the first full value) needs keeping.
package compaction

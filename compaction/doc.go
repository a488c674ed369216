// Package compaction writes sorted tables out of merged inputs and decides
// which tables to merge.
//
// Two pieces live here:
//
//   - Write: the one routine that turns a merged stream of internal keys
//     into output tables. It drops what no reader can see (older versions
//     shadowed within the same snapshot stripe, tombstones at the bottom of
//     the tree that every snapshot and every peer — the GC horizon —
//     already sees), folds merge operands onto the value beneath them
//     through a Merger, splits outputs on user-key boundaries, and syncs
//     every file before it is reported. Flushes and compactions both use
//     it.
//   - Picker and Run: leveled compaction with dynamic level sizes. Scores
//     (L0 by file count, other levels by bytes over their targets) decide
//     what is due: L0 → base level, intra-L0 when the base level is busy,
//     Ln → Ln+1 taking the table with the least overlap below (the least
//     rewriting per byte moved), tombstone-dense tables when nothing else
//     is due, trivial moves when nothing overlaps. The bottom ColdLevels
//     levels form the cold tier (written with a stronger codec, possibly
//     in another directory); moving data between tiers is an ordinary
//     compaction that rewrites it. Compactions that share no table and no
//     key range of a level can run at once.
//
// Snapshot stripes: with live snapshots s1 < s2 < ... < sn, the sequence
// space splits into stripes (0, s1], (s1, s2], ..., (sn, ∞). A reader at any
// snapshot sees, for a key, the newest entry of some stripe, so within one
// stripe only the newest entry (and, beneath a merge operand, the entries
// down to the first full value) needs keeping.
package compaction

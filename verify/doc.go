// Package verify checks a database directory file by file, reading
// everything and writing nothing: the checking half of plures-fsck, and
// DB.Verify in the root package. It never imports the root package; it
// reads each file with the package that owns its format.
//
// What it checks (see "Checking a database" in ARCHITECTURE.md):
//
//   - every checksum of every file: WAL segments record by record
//     (internal/record), tables block by block (lsm.CheckTable: header,
//     footer, metaindex, properties, filter, index, data blocks), the
//     MANIFEST edit by edit (lsm.ReadManifestState), CURRENT, REPLICA
//     (oplog.DecodeReplicaFile), archives (internal/archive), vector
//     checkpoints (hnsw.Unmarshal);
//   - invariants: keys in order inside each table and across the tables
//     of a level, no overlap at levels >= 1, each table's bounds, size,
//     sequence numbers and counts against its MANIFEST entry; the files
//     on disk against the MANIFEST (missing, unknown, truncated, of
//     another size; tables the MANIFEST deleted are obsolete, not
//     damage; quarantine/ is listed, not checked); log sequence numbers
//     ascending and contiguous inside and across segments, archives'
//     positions rising and between their neighbours'; every history
//     file the op log's own index lists (segindex.go) present.
//
// Damage goes into the Report as Findings; the error of Dir is only for
// a check that could not run. Each Finding names the file, the offset,
// its Kind and, where known, the keys and the sequence numbers it
// affects, so a repair can act on it.
//
// Speed: each file is read once, sequentially, with large reads; files
// are checked in parallel, one goroutine per file, as many at once as
// GOMAXPROCS (Options.Parallelism).
package verify

// Package lsm is the storage tree: memtables, sstables (table.go draws the
// file), the block and table caches, and versions recorded in the
// MANIFEST (manifest.go draws the records). It knows nothing of CRDTs: it
// sees opaque values and a merge interface.
//
// # Damage
//
// Every block is checksummed; a read that hits a bad block, index or
// footer returns an error wrapping errs.ErrCorruption that names the file
// and offset, and the TableCache records the table as damaged
// (TableCache.Damaged), on the error path only. Other tables, and other
// blocks of the same table, stay readable. Version.NewItersRange opens only
// the tables a range read can need, so a damaged table outside the range
// never fails it.
//
// # Checking the tables at open
//
// ReadManifestState reads the live manifest without writing. Its
// CheckTables makes sure every table the version lists exists, in its
// tier's directory, with the size the manifest recorded; a table missing
// or of another size is an error naming the file, before anything is
// written. The manifest also says which files are provably obsolete:
// tables one of its edits deleted (ManifestState.Deleted). A table the
// version does not list and the manifest never deleted may be the output
// of a flush or compaction cut short by a crash, or a live table a damaged
// or rolled-back manifest forgot; the engine cannot tell them apart, so it
// keeps such files (moving them to a quarantine folder) rather than
// deleting them.
package lsm

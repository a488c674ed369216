// Package pluresdb is an embeddable, event-sourced storage engine.
//
// Every write is appended to a durable, checksummed log and applied to a
// log-structured merge tree built for the engine: a memtable (an arena
// skiplist) that is flushed to sorted tables, which compaction merges into
// levels. Reads look in the memtables first, then the tables newest first,
// through bloom filters and a block cache.
//
//	db, err := pluresdb.Open(dir, nil)
//	if err != nil { ... }
//	defer db.Close()
//	err = db.Put([]byte("k"), []byte("v"))
//	v, err := db.Get([]byte("k"))          // errors.Is(err, pluresdb.ErrNotFound)
//	it := db.NewIter(nil, nil)
//	for ok := it.First(); ok; ok = it.Next() { use(it.Key(), it.Value()) }
//	for ok := it.Last(); ok; ok = it.Prev() { ... }   // and SeekGE, SeekLT
//	err = it.Close()
//
// Every write is a CRDT operation (DESIGN.md §5). A key holds a document:
// a last-writer-wins value for the whole document (Put, Delete), one per
// field (SetField, DeleteField, read with GetFields) and PN counters
// (Incr), ordered by hybrid logical clock timestamps and replica IDs. Each
// database is one replica; replicas exchange operations and converge:
//
//	var buf bytes.Buffer
//	_, err = a.ExportChanges(&buf, b.VersionVector()) // what b lacks
//	_, err = b.ImportChanges(&buf)                    // verified whole, then applied; idempotent
//	sub, err := db.Subscribe(ctx, pos)                // every committed operation after pos
//	d, err := db.GetAsOf(key, ts)                     // the document as it was at ts
//
// The log is the history: sealed log segments are kept (then compacted
// into a zstd cold archive) for Options.Retention, and longer for peers
// registered with AcknowledgePeer that have not yet seen them.
//
// Durability: by default a write returns once its log record is fsynced;
// concurrent writers share one fsync (group commit). Options.NoSync, or
// WriteOptions.NoSync per batch, trades the last writes before a crash for
// speed; the database itself never becomes inconsistent.
//
// Files in a database directory (see internal/layout): CURRENT, LOCK,
// MANIFEST-*, REPLICA (this replica's ID), REJOINING (while a replica
// restored in place rejoins, see DB.FinishRejoin), *.log (write-ahead log and op
// history segments), *.oparc (archived history), *.sst (tables), *.hnsw
// (vector index checkpoints). Every file
// begins with a magic number and a format version, and every record and
// block carries an xxhash64 checksum: damage is reported as ErrCorruption
// naming the file and offset, never returned as data.
package pluresdb

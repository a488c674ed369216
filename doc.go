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
// Durability: by default a write returns once its log record is fsynced;
// concurrent writers share one fsync (group commit). Options.NoSync, or
// WriteOptions.NoSync per batch, trades the last writes before a crash for
// speed; the database itself never becomes inconsistent.
//
// Files in a database directory (see internal/layout): CURRENT, LOCK,
// MANIFEST-*, *.log (write-ahead log segments), *.sst (tables). Every file
// begins with a magic number and a format version, and every record and
// block carries an xxhash64 checksum: damage is reported as ErrCorruption
// naming the file and offset, never returned as data.
package pluresdb

// Package oplog owns the CRDT operation log's primitives: replica IDs and
// the REPLICA file, the hybrid logical clock, version vectors, the
// encoding of operations, alone and in per-replica runs (batches), document
// states and their merge rules, the change-stream format and the
// state-snapshot format. The root package keeps the log itself (its WAL
// segments) and wires these in.
//
// Every change to a database is an Op stamped with this replica's ID, a
// per-replica sequence number (rising; the engine uses its log sequence
// numbers, so not consecutive) and an HLC timestamp. (Replica,
// Seq) names an op; (HLC, Replica) orders ops for last-writer-wins. A
// VersionVector summarises which ops a replica holds, so two replicas can
// tell each other what they lack.
//
// # REPLICA file
//
// One per database directory, written once (temp file, sync, rename, sync
// directory). Little endian; 36 bytes:
//
//	+-----------------+-------------+-----------------+--------------+
//	| magic (8)       | version (4) | replica ID (16) | checksum (8) |
//	| "PLRSRPLC"      | uint32 = 1  |                 | xxhash64     |
//	+-----------------+-------------+-----------------+--------------+
//
// The checksum covers the 28 bytes before it. A version above 1 is reported
// as errs.ErrNewerFormat before length and checksum are judged, since a
// newer layout may differ.
//
// # REJOINING file
//
// Present while a replica restored in place from an older copy takes its
// own operations back from its peers (WriteRejoinFile). The REPLICA
// layout, with the magic "PLRSRJIN" and version 1; the ID must be the
// one REPLICA holds.
//
// # Timestamp (HLC)
//
//	 63                               16 15             0
//	+-----------------------------------+---------------+
//	| physical: ms since Unix epoch (48)| logical (16)  |
//	+-----------------------------------+---------------+
//
// # Encodings inside records
//
// The encodings below are fields of larger records (WAL records, sync
// streams) that carry the magic, format version and xxhash64 checksum, so
// they carry none themselves. varint is encoding/binary's unsigned varint
// (uvarint) and zz its zig-zag signed form (varint); decoders accept only
// minimal-length varints, so every value has exactly one encoding. A
// bytes field is a uvarint length followed by that many bytes.
//
// Version vector: entries sorted by replica ID, no zero entries, so equal
// vectors have equal bytes.
//
//	+---------------+-----------------+-------------+-----------------+----
//	| count varint  | replica ID (16) | seq varint  | replica ID (16) | ...
//	+---------------+-----------------+-------------+-----------------+----
//
// Op, standalone (AppendOp):
//
//	+----------+-----------------+------------+------------+-------+---------+---------+----------+
//	| kind (1) | replica ID (16) | seq varint | hlc varint | key   | [field] | [value] | [delta]  |
//	+----------+-----------------+------------+------------+-------+---------+---------+----------+
//
// kind is 1 put, 2 delete, 3 set field, 4 delete field, 5 incr. key, field
// and value are bytes fields; delta is zz. Which optional parts are present
// depends on the kind alone:
//
//	put          key value
//	delete       key
//	setfield     key field value
//	deletefield  key field
//	incr         key field delta
//
// Batch: a run of ops from one replica (AppendBatch). The replica is
// written once, and sequence numbers and timestamps are differences from
// the previous op, so a run written by one clock costs about three bytes
// per op beyond key, field and value (a header and two lengths; see
// TestBatchOverhead):
//
//	+-----------------+--------------+-------------+-------------+------+------+----
//	| replica ID (16) | count varint | seq0 varint | hlc0 varint | op 0 | op 1 | ...
//	+-----------------+--------------+-------------+-------------+------+------+----
//	                                  (seq0 and hlc0 absent when count is 0)
//
//	op:
//	+------------+------------------+-------------------------------------+------+---------+---------+---------+
//	| header (1) | [seq delta zz]   | [physical delta zz, logical varint] | key  | [field] | [value] | [delta] |
//	+------------+------------------+-------------------------------------+------+---------+---------+---------+
//
//	header bits: 0-2 kind, 3 seq is previous + 1, 4 hlc is previous + 1, 5-7 zero
//
// The "previous" op of op 0 is (seq0-1, hlc0-1), so op 0 always has bits 3
// and 4 set. Without bit 3, the seq delta from the previous op follows;
// without bit 4, the physical milliseconds as a delta from the previous
// op's and the logical counter in full (it usually restarts at 0 when the
// milliseconds move). Differences wrap modulo 2^64, so any sequence of
// ops round trips; a writer's run is simply the short case. The writer
// always uses the short forms when they apply and the reader refuses the
// long form where the short one applies, so a decoded batch re-encodes to
// the same bytes.
//
// Decoded Key, Field and Value slices alias the input, so a length read
// off damaged input never causes an allocation, and every count is checked
// against the bytes present before anything is allocated for it.
//
// # Document state (LSM value, KindSet)
//
// A key holds a document: a whole register (a value or a tombstone),
// field registers (a value or a field tombstone) and per-replica counter
// shares; see merge.go for the rules. The first byte is the format version
// (1; a higher one is errs.ErrNewerFormat), the second the flags:
//
//	bit 0 W  whole register present (its timestamp follows)
//	bit 1 T  the whole register is a tombstone (only with W)
//	bit 2 X  extended form (below); clear: the compact form
//	bit 3 E  the document exists (only with X)
//	bits 4-7 zero
//
// Compact form: only a whole register of this replica, or nothing. A
// local Put (AppendPutState) costs 10 bytes beyond its value, and Get
// finds the value at offset 10 without parsing anything:
//
//	+-------------+-----------+-------------------+------------------------+
//	| version (1) | flags (1) | [hlc, 8 bytes LE] | [value: the rest]      |
//	+-------------+-----------+-------------------+------------------------+
//	  W=0: nothing follows the flags; W=1,T=1: nothing follows the hlc
//
// Extended form: any field or counter, or a whole register of another
// replica. The whole value comes early so DocumentValue reads it (and E)
// without walking the fields:
//
//	+---------+-------+-------+------------------------------------------+----------------+---------+
//	| version | flags | [hlc] | replica table: count varint, IDs (16 ea) | [origin varint]| [value] |
//	+---------+-------+-------+------------------------------------------+----------------+---------+
//	+---------------------+-------+-----+-----------------------+---------+-----+
//	| field count varint  | field | ... | counter count varint  | counter | ... |
//	+---------------------+-------+-----+-----------------------+---------+-----+
//
//	field:   name bytes | tag varint (origin<<1 | tombstone) | hlc (8 LE) | [value bytes, if live]
//	counter: name bytes | entry count varint (>= 1) | entries: origin varint, sum zz, seq varint
//
// An origin is 0 for this replica (resolved to Merger.Self or ApplyOp's
// self) or 1+i for entry i of the replica table, so a remote replica costs
// 16 bytes once per state and a byte per register. The table is sorted and
// holds the referenced replicas; fields and counters are sorted by name,
// a counter's entries by origin. The encoding is canonical: the decoder
// refuses anything else (a compact document in the extended form, a wrong
// E flag, disorder, trailing bytes), so merging is deterministic to the
// byte.
//
// # Merge operand (LSM value, KindMerge)
//
// One local SetField, DeleteField or Incr, written without reading:
//
//	+-------------+----------+--------------+-------------+----------------------------------+
//	| version (1) | kind (1) | hlc (8 LE)   | field bytes | setfield: value (the rest)       |
//	|             | 3, 4, 5  |              |             | deletefield: nothing; incr: zz   |
//	+-------------+----------+--------------+-------------+----------------------------------+
//
// One imported operation of any kind (AppendRemoteOperand), also written
// without reading: bit 7 of the kind byte is set and the origin follows
// the timestamp. An incr carries its sequence number, so a share counts
// each of its origin's increments once:
//
//	+-------------+------------+------------+-----------------+------------------------------------+
//	| version (1) | kind|0x80  | hlc (8 LE) | origin (16)     | put: value (the rest)              |
//	|             | 0x81..0x85 |            |                 | delete: nothing                    |
//	|             |            |            |                 | setfield: field bytes, value       |
//	|             |            |            |                 | deletefield: field bytes           |
//	|             |            |            |                 | incr: field bytes, seq varint, zz  |
//	+-------------+------------+------------+-----------------+------------------------------------+
//
// # Change stream
//
// What ExportChanges writes and ImportChanges reads: a header, chunks of
// op batches, a trailer. Little endian; every section is checksummed with
// xxhash64, and the trailer's checksum covers every byte before it.
//
//	+--------------------+-------------+----------------------+--------+----------------------+
//	| magic "PLRSCHNG" 8 | version (1) | header length varint | header | xxhash64 of all      |
//	|                    | = 2         |                      |        | bytes before it (8)  |
//	+--------------------+-------------+----------------------+--------+----------------------+
//	header: flags (1: bit 0 prefix, bit 1 compress, bit 2 log order) | source (16) |
//	        [prefix bytes] | range count varint |
//	        ranges: replica (16), from varint, to varint (sorted by replica)
//
//	In a sync stream each replica's ops come in ascending sequence within
//	its range. A stream with the log-order flag (only the cold archive
//	writes one) keeps the order of a log instead, where an op need only lie
//	in its range; no importer accepts it.
//
//	chunk:
//	+---------+-----------+-----------------+-------------------------+---------------+
//	| tag = 1 | codec (1) | raw size varint | stored bytes            | xxhash64 (8)  |
//	|         |           |                 | (length varint + bytes) | of tag..bytes |
//	+---------+-----------+-----------------+-------------------------+---------------+
//	codec: 0 none, 1 S2, 2 zstd. Raw (what the codec compresses):
//
//	+-------------------------+------------------------------+-------+-------+----
//	| end count varint        | ends: varint each            | batch | batch | ...
//	+-------------------------+------------------------------+-------+-------+----
//
//	The batches (see Batch) are runs of consecutive ops of one replica, never
//	empty; a chunk holds at least one op. The ends mark the ops that end a
//	transaction: ops their origin committed together (a Batch.Commit; an import
//	logs whole transactions of other replicas in one record, which its export
//	keeps together), which a reader applies all or none. Each end is the number
//	of the chunk's ops from the previous end (or the chunk's start) to the op
//	that ends the transaction, less one, so a chunk of single-op transactions
//	spends a zero byte on each. A transaction may go on into the next chunks;
//	the stream's last op always ends one. The writer keeps a chunk's raw
//	size under 64 KiB (an op larger than that gets its own); the reader refuses raw
//	sizes above 16 MiB + 128 KiB, and chunks whose raw sizes add up to more than
//	1024 times the stream's size (the writer stores a chunk raw rather than do so).
//
//	trailer:
//	+---------+------------------+-----------------------------------------+
//	| tag = 2 | op count varint  | xxhash64 (8) of every byte before this   |
//	+---------+------------------+-----------------------------------------+
//	and nothing after it.
//
// The reader validates everything before it returns an op: every op
// belongs to a range of the header (From < Seq <= To), in ascending
// sequence per replica, and its key has the prefix; every end lies within
// its chunk's ops, and the last op ends a transaction.
//
// Version 1 streams, still read, have no ends: their raw chunks are only
// the batches, and each op reads as a transaction of its own (they were
// applied in batches cut anywhere).
//
// # State snapshot
//
// What DB.ExportSnapshot writes and DB.ImportSnapshot reads: a replica's
// full user state at one point (snapshot.go), so another joins without
// its op history. Little endian; streamed a chunk at a time.
//
//	+--------------------+-------------+----------------------+--------+----------------------+
//	| magic "PLRSSNAP" 8 | version (1) | header length varint | header | xxhash64 of all      |
//	|                    | = 2         |                      |        | bytes before it (8)  |
//	+--------------------+-------------+----------------------+--------+----------------------+
//	header: source replica ID (16) | clock (8) | collection horizon (8) |
//	        version vector (as above; the source's own entry included)
//
//	chunk:
//	+---------+-----------+-----------------+--------------------+----------------+---------------+
//	| tag = 1 | codec (1) | raw size varint | stored size varint | stored bytes   | xxhash64 (8)  |
//	|         |           |                 |                    |                | of tag..bytes |
//	+---------+-----------+-----------------+--------------------+----------------+---------------+
//	codec: 0 none, 1 S2, 2 zstd. Raw (what the codec compresses):
//
//	+---------------------+-----------------------------------------------+-----
//	| entry count varint  | entry: namespace (1) | key bytes | state bytes | ...
//	+---------------------+-----------------------------------------------+-----
//
//	trailer:
//	+---------+----------------------+----------------------+-----------------------------------------+
//	| tag = 2 | entry count varint   | chunk count varint   | xxhash64 (8) of every byte before this  |
//	+---------+----------------------+----------------------+-----------------------------------------+
//	and nothing after it.
//
// The counts are in the trailer, not the header: the writer streams in
// one pass and knows them only at the end. Entries are in strictly
// ascending (namespace, key) order, keys non-empty, across chunks; a
// chunk holds at least one entry. The writer keeps a chunk's raw size
// under 256 KiB (a larger entry gets its own chunk) and stores a chunk
// raw rather than compress it beyond the reader's bound on expansion
// (1024 times the bytes read so far); the reader refuses raw and stored
// sizes above 16 MiB + 128 KiB. The root package allows the documents
// (1), time series (4, from version 2; package timeseries/tsdb's keys and
// values, which the reader checks through SnapshotReader.Check) and
// counters (5) namespaces only.
//
// A state in a snapshot is portable: a document state (above) encoded
// with the zero replica ID as "self", so every origin is in the replica
// table and origin code 0 never occurs (the reader refuses it). The
// source's local counter shares become shares of its ID that record as
// counted the source's own entry of the version vector. Portable states
// join (JoinPortable, JoinState): the higher whole register; per field the
// higher register if above the whole one; per (counter, origin) the share
// that counted the higher sequence number, but the importer's own share,
// which counts all its increments. The join is associative, commutative
// and idempotent.
//
// The reader checks every chunk's checksum, every entry's order and every
// state before it returns an entry, and returns io.EOF only once the
// trailer's counts and checksum match and nothing follows.
//
// Merger is safe for concurrent use; a StreamWriter, SnapshotWriter or
// SnapshotReader belongs to one goroutine.
//
// # Concurrency
//
// Clock is safe for concurrent use. VersionVector is a map with the usual
// rules. The encoders and decoders are pure functions.
package oplog

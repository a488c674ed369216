// Package oplog owns the CRDT operation log's primitives: replica IDs and
// the REPLICA file, the hybrid logical clock, version vectors, and the
// encoding of operations, alone and in per-replica runs (batches).
//
// Every change to a database is an Op stamped with this replica's ID, a
// per-replica sequence number (1, 2, 3, ...) and an HLC timestamp. (Replica,
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
// # Concurrency
//
// Clock is safe for concurrent use. VersionVector is a map with the usual
// rules. The encoders and decoders are pure functions.
package oplog

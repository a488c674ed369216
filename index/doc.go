// Package index keeps secondary indexes over document fields, as
// projections of the documents written in the same batch as the document
// changes (ARCHITECTURE.md, "Secondary indexes"). It never imports the
// root package: it reads through the narrow Store interface, writes
// through a ReadWriter (an Overlay the engine commits with its batch), and
// takes documents as oplog.Document.
//
// An index (Spec) is over one document field, or over the whole value
// through an Extractor; a document has at most one value per index. The
// field's bytes become a value by one convention per Kind (ParseValue:
// decimal text for Int64 and Float64, RFC 3339 for Time, the bytes for
// Bytes and String); a value that does not parse leaves the document out
// of that index and is counted (Info.Unparsed), it never fails a write.
//
// Values are encoded so that bytewise key order is value order:
//
//	Bytes, String  the bytes with 0x00 written 0x00 0xFF, then 0x00 0x01
//	               (prefix-free: a value followed by more key bytes sorts
//	               by the value first; the escaped form of p, unterminated,
//	               prefixes exactly the values starting with p)
//	Int64, Time    8 bytes big-endian, sign bit flipped (Time: Unix ns)
//	Float64        8 bytes big-endian: positive numbers with the sign bit
//	               set, negative ones with every bit flipped; -0 as +0;
//	               NaN refused
//
// Keys within the index namespace (the engine prefixes its namespace
// byte):
//
//	'i' name                    catalog: the index's definition and build state
//	'I'                         the next index id, uint32 BE
//	'e' id(4 BE) value docnum(4 BE)  an entry: empty value
//	'f' docKey                  forward key: the document's number (4 BE),
//	                            then per index it has a value in, by
//	                            ascending id: id (4 BE), length (2 BE), the
//	                            encoded value it is indexed under
//	'n' docnum(4 BE)            the document's key
//	'N'                         the next document number, uint64 BE
//
// A catalog value is: version (1; 2 since the forward keys are per
// document, version 1 is refused), id (4 BE), kind (1), flags (1: 0x01
// unique, 0x02 extractor, 0x04 ready), field (uvarint length, bytes),
// build cursor (uvarint length, bytes: the last document key the build
// indexed), documents built (uvarint), estimate (uvarint), xxhash64 of
// all that (8, LE). Every decoder (DecodeValue, ParseKey, DecodeCatalog,
// DecodeForward) refuses what the encoders never write with an error
// wrapping errs.ErrCorruption, and never panics.
//
// Document numbers are dense uint32s, assigned when a document gets its
// first entry in any index and kept for ever after (across its deletion),
// so the entries of a value are a roaring bitmap of numbers. They are
// local to a replica.
//
// Upkeep (Set.Update, or Set.UpdateChange for a local write described by
// its own operations) reads the document's forward key, once for every
// index, and writes only where a value changed: delete the old entry,
// write the new entry and the forward key. Unique indexes refuse a
// local write whose value another document holds (ErrUniqueViolation,
// before anything is written); imported writes are indexed anyway and
// counted, as replicas must apply them alike. Builds over existing
// documents (Set.BuildStep) advance a cursor stored in the catalog in the
// same writes; queries (Eval, Count, Find, Explain) read only the entry
// ranges a query names, and refuse an index that is not ready
// (ErrNotReady). Set.Check compares indexes with the documents for fsck;
// Set.Rebuild clears one to build it again.
package index

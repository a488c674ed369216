package pluresdb

// One LSM holds everything; the first byte of every stored key says which
// part of the engine owns it. The public key-value API sees only the
// documents namespace. These values are part of the on-disk format.
const (
	nsMeta      byte = 0x00 // engine metadata
	nsDocuments byte = 0x01 // the user's keys
	nsIndex     byte = 0x02 // secondary index postings
	nsVector    byte = 0x03 // vector index graphs
	nsSeries    byte = 0x04 // time-series chunks
	nsCounters  byte = 0x05 // the counter fields of documents (see Batch.Incr)
)

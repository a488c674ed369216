package pluresdb

// LostRange is a range of the log that a salvaging Open (Options.Salvage)
// could not replay: the damaged bytes it dropped and the sequence numbers
// of the writes they held, which a peer or a backup may still supply.
type LostRange struct {
	Segment     string // the log segment that held them
	Offset      int64  // where the dropped bytes started in it
	Bytes       int64  // how many bytes were dropped
	Quarantined string // the copy of the segment as it was, before the salvage rewrote it
	// First and Last bound the lost sequence numbers: those between the
	// last record replayed before the damage and the first one after it.
	// Last is 0 when no record followed (the end is unknown). First > Last
	// means the damage held no writes.
	First, Last uint64
	Err         error // the damage found
}

// LostRanges returns what the salvaging recovery of this Open dropped
// from the log, in log order; nil when nothing was lost. Each range was
// also logged at error level.
func (db *DB) LostRanges() []LostRange {
	return append([]LostRange(nil), db.lost...)
}

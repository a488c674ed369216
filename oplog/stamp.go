package oplog

import "encoding/binary"

// StampLocal writes ts into a value made by AppendPutState,
// AppendDeleteState, AppendFieldOperand or AppendIncrOperand (all of which
// hold their timestamp at the same place). The engine encodes a batch's
// values when they are added and stamps them at commit, under its commit
// lock, so timestamps rise with sequence numbers.
func StampLocal(v []byte, ts Timestamp) {
	binary.LittleEndian.PutUint64(v[2:10], uint64(ts))
}

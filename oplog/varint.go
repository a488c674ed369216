package oplog

import "encoding/binary"

// uvarint decodes a minimal-length unsigned varint from the start of b.
// It returns n <= 0 for truncated, overflowing or over-long input, so every
// value has exactly one accepted encoding.
func uvarint(b []byte) (uint64, int) {
	x, n := binary.Uvarint(b)
	if n > 1 && b[n-1] == 0 {
		// A final zero byte adds nothing: an over-long encoding.
		return 0, -1
	}
	return x, n
}

// varint decodes a minimal-length zig-zag varint, like uvarint.
func varint(b []byte) (int64, int) {
	ux, n := uvarint(b)
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x, n
}

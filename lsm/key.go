package lsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// SeqNum orders every write: a larger sequence number is newer. Sequence
// numbers fit in 56 bits; the low byte of the trailer holds the Kind.
type SeqNum uint64

// MaxSeqNum is the largest sequence number; a read at MaxSeqNum sees every
// write.
const MaxSeqNum SeqNum = 1<<56 - 1

// Kind says what an entry does to its key.
//
// The numeric values are part of the on-disk format (WAL batches and
// sstables): never renumber them.
type Kind uint8

const (
	KindDelete Kind = 0 // a tombstone: the key has no value at this sequence
	KindSet    Kind = 1 // a full value
	KindMerge  Kind = 2 // an operand merged onto older values (CRDT field ops)

	// KindMax is the largest kind; seeking to (key, seq, KindMax) lands on
	// the first entry for key visible at seq.
	KindMax Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindDelete:
		return "DEL"
	case KindSet:
		return "SET"
	case KindMerge:
		return "MERGE"
	}
	return fmt.Sprintf("KIND(%d)", uint8(k))
}

// TrailerLen is the length of the trailer that ends every internal key.
const TrailerLen = 8

// An internal key is the user key followed by an 8-byte little-endian
// trailer, seq<<8 | kind:
//
//	+--------------------+---------------------------+
//	| user key (n bytes) | seq (56 bits) | kind (8)  |
//	+--------------------+---------------------------+
//
// Internal keys sort by user key ascending, then by trailer descending, so
// the newest version of a key comes first.

// MakeTrailer packs a sequence number and kind.
func MakeTrailer(seq SeqNum, kind Kind) uint64 { return uint64(seq)<<8 | uint64(kind) }

// AppendInternalKey appends the internal key (ukey, seq, kind) to dst.
func AppendInternalKey(dst, ukey []byte, seq SeqNum, kind Kind) []byte {
	dst = append(dst, ukey...)
	return binary.LittleEndian.AppendUint64(dst, MakeTrailer(seq, kind))
}

// MakeInternalKey returns a new internal key.
func MakeInternalKey(ukey []byte, seq SeqNum, kind Kind) []byte {
	return AppendInternalKey(make([]byte, 0, len(ukey)+TrailerLen), ukey, seq, kind)
}

// SplitInternalKey splits an internal key; ok is false if ikey is shorter
// than the trailer.
func SplitInternalKey(ikey []byte) (ukey []byte, seq SeqNum, kind Kind, ok bool) {
	n := len(ikey) - TrailerLen
	if n < 0 {
		return nil, 0, 0, false
	}
	t := binary.LittleEndian.Uint64(ikey[n:])
	return ikey[:n:n], SeqNum(t >> 8), Kind(t & 0xff), true
}

// UserKey returns the user key part of a well-formed internal key.
func UserKey(ikey []byte) []byte { return ikey[: len(ikey)-TrailerLen : len(ikey)-TrailerLen] }

// Trailer returns the trailer of a well-formed internal key.
func Trailer(ikey []byte) uint64 { return binary.LittleEndian.Uint64(ikey[len(ikey)-TrailerLen:]) }

// CompareInternal orders internal keys: user key ascending, then trailer
// descending (newer first). Both keys must be well formed.
func CompareInternal(a, b []byte) int {
	if c := bytes.Compare(UserKey(a), UserKey(b)); c != 0 {
		return c
	}
	ta, tb := Trailer(a), Trailer(b)
	switch {
	case ta > tb:
		return -1
	case ta < tb:
		return 1
	}
	return 0
}

// InternalIterator walks internal keys in CompareInternal order. It is the
// interface shared by memtable, block, table, level and merging iterators.
// An iterator is used by one goroutine at a time.
//
// Key and Value are valid until the next positioning call; callers that keep
// them must copy. After a positioning call returns false, Err says whether
// the iterator is exhausted (nil) or failed. Next and Prev may be mixed
// freely while the iterator is valid; on an exhausted iterator they return
// false.
type InternalIterator interface {
	// First moves to the first entry.
	First() bool
	// SeekGE moves to the first entry whose internal key is >= ikey.
	SeekGE(ikey []byte) bool
	// Next moves to the following entry.
	Next() bool
	// Last moves to the last entry.
	Last() bool
	// SeekLT moves to the last entry whose internal key is < ikey.
	SeekLT(ikey []byte) bool
	// Prev moves to the preceding entry.
	Prev() bool
	// Valid reports whether the iterator is at an entry.
	Valid() bool
	// Key returns the current internal key.
	Key() []byte
	// Value returns the current value.
	Value() []byte
	// Err returns the first error the iterator met.
	Err() error
	// Close releases the iterator's resources and returns Err.
	Close() error
}

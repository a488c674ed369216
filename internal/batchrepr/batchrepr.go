// Package batchrepr is the encoding of a write batch. A batch is encoded
// once, in the form the WAL stores it, and applied to the memtable from that
// same encoding:
//
//	+---------------+-----------------+---------+---------+-----
//	| seq (uvarint) | count (uvarint) | entry 1 | entry 2 | ...
//	+---------------+-----------------+---------+---------+-----
//
//	entry: kind (1) | key length (uvarint) | key | value length (uvarint) | value
//
// seq is the sequence number of the first entry; entry i gets seq+i. The
// header is varint-encoded because every byte of it is written to the log
// once per commit. While a batch is built, HeaderLen bytes are reserved in
// front of the entries; SetHeader writes the header right-aligned into that
// space and returns the encoded batch, so nothing is copied. Keys
// carry their namespace byte. Delete entries have no value. The WAL's record
// framing checksums the whole batch; this layout is part of WAL format
// version 1.
package batchrepr

import (
	"encoding/binary"
	"fmt"

	"github.com/plures/pluresdb/lsm"
)

// KindLogData marks an entry that is only history: the log keeps it, the
// memtable never sees it. The op log stores the operations an import
// applied this way (their projections are ordinary entries of the same
// batch). Its key is a namespace byte, alone or followed by a marker the
// engine defines (a bulk import's "ingested"); its value is opaque here.
const KindLogData lsm.Kind = 0x7f

// HeaderLen is the space reserved for the header in front of a batch's
// entries: the longest uvarint of a 56-bit sequence number (8 bytes) and of
// a uint32 count (5 bytes).
const HeaderLen = 13

// SetHeader writes the header for the first sequence number and the entry
// count into data[:HeaderLen] and returns the encoded batch, a suffix of
// data.
func SetHeader(data []byte, seq lsm.SeqNum, count uint32) []byte {
	var h [HeaderLen]byte
	n := binary.PutUvarint(h[:], uint64(seq))
	n += binary.PutUvarint(h[n:], uint64(count))
	start := HeaderLen - n
	copy(data[start:HeaderLen], h[:n])
	return data[start:]
}

// AppendEntry appends one entry; key is written as ns followed by key.
func AppendEntry(dst []byte, kind lsm.Kind, ns byte, key, value []byte) []byte {
	dst = append(dst, byte(kind))
	dst = binary.AppendUvarint(dst, uint64(len(key)+1))
	dst = append(dst, ns)
	dst = append(dst, key...)
	if kind != lsm.KindDelete {
		dst = binary.AppendUvarint(dst, uint64(len(value)))
		dst = append(dst, value...)
	}
	return dst
}

// Entry is one decoded write.
type Entry struct {
	Kind       lsm.Kind
	Key, Value []byte // alias the batch's bytes
}

// Reader decodes an encoded batch, checking every bound: the bytes may
// come from a damaged log.
type Reader struct {
	Seq   lsm.SeqNum
	Count uint32
	data  []byte
	pos   int
	read  uint32
}

// NewReader checks the header of data and returns a Reader.
func NewReader(data []byte) (Reader, error) {
	seq, n1 := binary.Uvarint(data)
	if n1 <= 0 {
		return Reader{}, fmt.Errorf("batch header: bad sequence number")
	}
	count, n2 := binary.Uvarint(data[n1:])
	if n2 <= 0 || count > 1<<32-1 {
		return Reader{}, fmt.Errorf("batch header: bad count")
	}
	r := Reader{data: data, Seq: lsm.SeqNum(seq), Count: uint32(count), pos: n1 + n2}
	if r.Count == 0 || seq+count > uint64(lsm.MaxSeqNum) {
		return Reader{}, fmt.Errorf("batch header seq %d count %d out of range", r.Seq, r.Count)
	}
	return r, nil
}

// Next returns the next entry; ok is false at the end. An error means the
// encoding is damaged (also when the entries do not match the count).
func (r *Reader) Next() (e Entry, ok bool, err error) {
	if r.pos == len(r.data) {
		if r.read != r.Count {
			return e, false, fmt.Errorf("batch holds %d entries, header says %d", r.read, r.Count)
		}
		return e, false, nil
	}
	if r.read == r.Count {
		return e, false, fmt.Errorf("batch has %d trailing bytes", len(r.data)-r.pos)
	}
	e.Kind = lsm.Kind(r.data[r.pos])
	r.pos++
	if e.Kind > lsm.KindMax && e.Kind != KindLogData {
		return e, false, fmt.Errorf("batch entry %d has unknown kind %d", r.read, e.Kind)
	}
	if e.Key, err = r.bytes(); err != nil {
		return e, false, err
	}
	if len(e.Key) == 0 {
		return e, false, fmt.Errorf("batch entry %d has an empty key", r.read)
	}
	if e.Kind != lsm.KindDelete {
		if e.Value, err = r.bytes(); err != nil {
			return e, false, err
		}
	}
	r.read++
	return e, true, nil
}

func (r *Reader) bytes() ([]byte, error) {
	n, w := binary.Uvarint(r.data[r.pos:])
	if w <= 0 || n > uint64(len(r.data)-r.pos-w) {
		return nil, fmt.Errorf("batch entry %d: bad length at byte %d", r.read, r.pos)
	}
	r.pos += w
	b := r.data[r.pos : r.pos+int(n) : r.pos+int(n)]
	r.pos += int(n)
	return b, nil
}

// SeqJumpKey is the key (the engine metadata namespace, 0x00, then a
// name) of the one entry of a sequence jump record: a record that starts
// above the sequence number after the previous record's last, on purpose.
// A replica restored in place takes its own operations back from its
// peers, with sequence numbers above anything its log has handed out; it
// jumps past them before it applies them, so that no later write reuses
// one. The entry's value is the first sequence number skipped (uvarint);
// the record's own is one past the last. Readers that check that
// sequence numbers run on (verify) take such a record's declared start
// for the previous record's end.
const SeqJumpKey = "\x00oplog/seqjump"

// AppendSeqJumpValue appends the value of a sequence jump entry whose
// first skipped sequence number is from.
func AppendSeqJumpValue(dst []byte, from lsm.SeqNum) []byte {
	return binary.AppendUvarint(dst, uint64(from))
}

// SeqJump reports whether rec (an encoded batch) is a sequence jump
// record, and the first sequence number it skipped. A record that is not
// exactly one (a single KindSet entry under SeqJumpKey whose value is one
// uvarint below the record's sequence number) is not one.
func SeqJump(rec []byte) (from lsm.SeqNum, ok bool) {
	r, err := NewReader(rec)
	if err != nil || r.Count != 1 {
		return 0, false
	}
	e, more, err := r.Next()
	if err != nil || !more || e.Kind != lsm.KindSet || string(e.Key) != SeqJumpKey {
		return 0, false
	}
	if _, more, err := r.Next(); err != nil || more {
		return 0, false
	}
	v, n := binary.Uvarint(e.Value)
	if n <= 0 || n != len(e.Value) || v == 0 || v >= uint64(r.Seq) {
		return 0, false
	}
	return lsm.SeqNum(v), true
}

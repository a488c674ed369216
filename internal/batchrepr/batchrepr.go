// Package batchrepr is the encoding of a write batch. A batch is encoded
// once, in the form the WAL stores it, and applied to the memtable from that
// same encoding:
//
//	+-------------+-----------+---------+---------+-----
//	| seq (8, LE) | count (4) | entry 1 | entry 2 | ...
//	+-------------+-----------+---------+---------+-----
//
//	entry: kind (1) | key length (uvarint) | key | value length (uvarint) | value
//
// seq is the sequence number of the first entry; entry i gets seq+i. Keys
// carry their namespace byte. Delete entries have no value. The WAL's record
// framing checksums the whole batch; this layout is part of WAL format
// version 1.
package batchrepr

import (
	"encoding/binary"
	"fmt"

	"github.com/plures/pluresdb/lsm"
)

// HeaderLen is the length of a batch header.
const HeaderLen = 12

// SetHeader stamps the first sequence number and the entry count.
func SetHeader(data []byte, seq lsm.SeqNum, count uint32) {
	binary.LittleEndian.PutUint64(data[0:8], uint64(seq))
	binary.LittleEndian.PutUint32(data[8:12], count)
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
	if len(data) < HeaderLen {
		return Reader{}, fmt.Errorf("batch of %d bytes is shorter than its header", len(data))
	}
	r := Reader{
		data:  data,
		Seq:   lsm.SeqNum(binary.LittleEndian.Uint64(data[0:8])),
		Count: binary.LittleEndian.Uint32(data[8:12]),
		pos:   HeaderLen,
	}
	if r.Count == 0 || uint64(r.Seq)+uint64(r.Count) > uint64(lsm.MaxSeqNum) {
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
	if e.Kind > lsm.KindMax {
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

package pluresdb

import (
	"encoding/binary"
	"fmt"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/lsm"
)

// A batch is encoded once, in the form the WAL stores it, and applied to
// the memtable from that same encoding:
//
//	+-------------+-----------+---------+---------+-----
//	| seq (8, LE) | count (4) | entry 1 | entry 2 | ...
//	+-------------+-----------+---------+---------+-----
//
//	entry: kind (1) | key length (uvarint) | key | value length (uvarint) | value
//
// seq is the sequence number of the first entry; entry i gets seq+i. Keys
// carry their namespace byte (see keyspace.go). Delete entries have no
// value. The WAL record framing checksums the whole batch; the layout is
// part of WAL format version 1.
const batchHeaderLen = 12

// Batch collects writes that commit atomically: after a crash either all of
// them are there or none. A Batch is not safe for concurrent use; reuse it
// after Commit with Reset.
type Batch struct {
	db      *DB
	data    []byte
	count   uint32
	memSize int // arena bytes the entries need in a memtable
	err     error
}

// NewBatch returns an empty batch for db.
func (db *DB) NewBatch() *Batch {
	b := &Batch{db: db}
	b.Reset()
	return b
}

// Reset empties the batch, keeping its buffer.
func (b *Batch) Reset() {
	if cap(b.data) < batchHeaderLen {
		b.data = make([]byte, batchHeaderLen, 1024)
	}
	b.data = b.data[:batchHeaderLen]
	clear(b.data)
	b.count, b.memSize, b.err = 0, 0, nil
}

// Len returns the number of writes in the batch.
func (b *Batch) Len() int { return int(b.count) }

// Put adds a write of value under key. Errors for a bad key or value are
// returned here and again by Commit.
func (b *Batch) Put(key, value []byte) error {
	if err := checkKV(key, value); err != nil {
		return b.fail(err)
	}
	b.add(lsm.KindSet, nsDocuments, key, value)
	return nil
}

// Delete adds a deletion of key.
func (b *Batch) Delete(key []byte) error {
	if err := checkKV(key, nil); err != nil {
		return b.fail(err)
	}
	b.add(lsm.KindDelete, nsDocuments, key, nil)
	return nil
}

func (b *Batch) fail(err error) error {
	if b.err == nil {
		b.err = err
	}
	return err
}

func (b *Batch) add(kind lsm.Kind, ns byte, key, value []byte) {
	b.data = append(b.data, byte(kind))
	b.data = binary.AppendUvarint(b.data, uint64(len(key)+1))
	b.data = append(b.data, ns)
	b.data = append(b.data, key...)
	if kind != lsm.KindDelete {
		b.data = binary.AppendUvarint(b.data, uint64(len(value)))
		b.data = append(b.data, value...)
	}
	b.count++
	b.memSize += len(key) + 1 + len(value) + lsm.MemtableEntryOverhead
}

// Commit applies the batch atomically. opts nil follows Options.NoSync.
func (b *Batch) Commit(opts *WriteOptions) error {
	if b.err != nil {
		return b.err
	}
	if b.count == 0 {
		return nil
	}
	return b.db.commit(b, opts)
}

func checkKV(key, value []byte) error {
	switch {
	case len(key) == 0:
		return errs.ErrInvalidKey
	case len(key) > MaxKeySize:
		return fmt.Errorf("%w: %d bytes, limit %d", errs.ErrKeyTooLarge, len(key), MaxKeySize)
	case len(value) > MaxValueSize:
		return fmt.Errorf("%w: %d bytes, limit %d", errs.ErrValueTooLarge, len(value), MaxValueSize)
	}
	return nil
}

// batchEntry is one decoded write.
type batchEntry struct {
	kind       lsm.Kind
	key, value []byte
}

// batchReader decodes an encoded batch, checking every bound: the bytes
// may come from a damaged log.
type batchReader struct {
	data  []byte
	seq   lsm.SeqNum
	count uint32
	pos   int
	read  uint32
}

func newBatchReader(data []byte) (batchReader, error) {
	if len(data) < batchHeaderLen {
		return batchReader{}, fmt.Errorf("batch of %d bytes is shorter than its header", len(data))
	}
	r := batchReader{
		data:  data,
		seq:   lsm.SeqNum(binary.LittleEndian.Uint64(data[0:8])),
		count: binary.LittleEndian.Uint32(data[8:12]),
		pos:   batchHeaderLen,
	}
	if r.count == 0 || uint64(r.seq)+uint64(r.count) > uint64(lsm.MaxSeqNum) {
		return batchReader{}, fmt.Errorf("batch header seq %d count %d out of range", r.seq, r.count)
	}
	return r, nil
}

// next returns the next entry; ok is false at the end. An error means the
// encoding is damaged.
func (r *batchReader) next() (e batchEntry, ok bool, err error) {
	if r.pos == len(r.data) {
		if r.read != r.count {
			return e, false, fmt.Errorf("batch holds %d entries, header says %d", r.read, r.count)
		}
		return e, false, nil
	}
	if r.read == r.count {
		return e, false, fmt.Errorf("batch has %d trailing bytes", len(r.data)-r.pos)
	}
	e.kind = lsm.Kind(r.data[r.pos])
	r.pos++
	if e.kind > lsm.KindMax {
		return e, false, fmt.Errorf("batch entry %d has unknown kind %d", r.read, e.kind)
	}
	if e.key, err = r.bytes(); err != nil {
		return e, false, err
	}
	if len(e.key) == 0 {
		return e, false, fmt.Errorf("batch entry %d has an empty key", r.read)
	}
	if e.kind != lsm.KindDelete {
		if e.value, err = r.bytes(); err != nil {
			return e, false, err
		}
	}
	r.read++
	return e, true, nil
}

func (r *batchReader) bytes() ([]byte, error) {
	n, w := binary.Uvarint(r.data[r.pos:])
	if w <= 0 || n > uint64(len(r.data)-r.pos-w) {
		return nil, fmt.Errorf("batch entry %d: bad length at byte %d", r.read, r.pos)
	}
	r.pos += w
	b := r.data[r.pos : r.pos+int(n) : r.pos+int(n)]
	r.pos += int(n)
	return b, nil
}

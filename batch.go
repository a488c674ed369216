package pluresdb

import (
	"fmt"

	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
)

// Batch collects writes (encoded as internal/batchrepr describes) that commit atomically: after a crash either all of
// them are there or none. A Batch is not safe for concurrent use; reuse it
// after Commit with Reset.
type Batch struct {
	db      *DB
	data    []byte
	count   uint32
	memSize int // arena bytes the entries need in a memtable
	err     error

	// stamps holds, for every local operation in data, the offset of its
	// encoded value: commit writes the operation's HLC timestamp there,
	// under the commit lock, so timestamps rise with sequence numbers.
	stamps []int32
	// buf is scratch space for encoding one value.
	buf []byte
	// series are the series this batch adds to the series table: the
	// index learns of them once it is committed.
	series []string
	// seriesWrites are the series this batch appends samples to, and
	// seriesDeletes the deletions it holds: recorded under the commit
	// lock (DB.noteSeriesBatch).
	seriesWrites  []string
	seriesDeletes []seriesDelete
}

// NewBatch returns an empty batch for db.
func (db *DB) NewBatch() *Batch {
	b := &Batch{db: db}
	b.Reset()
	return b
}

// Reset empties the batch, keeping its buffer.
func (b *Batch) Reset() {
	if cap(b.data) < batchrepr.HeaderLen {
		b.data = make([]byte, batchrepr.HeaderLen, 1024)
	}
	b.data = b.data[:batchrepr.HeaderLen]
	clear(b.data)
	b.count, b.memSize, b.err = 0, 0, nil
	b.stamps = b.stamps[:0]
	b.series = b.series[:0]
	b.seriesWrites = b.seriesWrites[:0]
	b.seriesDeletes = b.seriesDeletes[:0]
}

// Len returns the number of writes in the batch.
func (b *Batch) Len() int { return int(b.count) }

// Put adds a write of value under key: the whole document becomes value,
// replacing its fields. Errors for a bad key or value are returned here and
// again by Commit.
func (b *Batch) Put(key, value []byte) error {
	if err := checkKV(key, value); err != nil {
		return b.fail(err)
	}
	b.buf = oplog.AppendPutState(b.buf[:0], 0, value)
	b.addLocal(lsm.KindSet, nsDocuments, key, b.buf)
	return nil
}

// Delete adds a deletion of key: a tombstone that hides every earlier
// write of the document, here and on every replica, and loses to later
// ones. Counters survive it (see Incr).
func (b *Batch) Delete(key []byte) error {
	if err := checkKV(key, nil); err != nil {
		return b.fail(err)
	}
	b.buf = oplog.AppendDeleteState(b.buf[:0], 0)
	b.addLocal(lsm.KindSet, nsDocuments, key, b.buf)
	return nil
}

// SetField adds a write of one field of the document under key. Fields
// merge one by one across replicas (last writer wins per field); a later
// Put or Delete of the whole document replaces them.
func (b *Batch) SetField(key, field, value []byte) error {
	if err := checkField(key, field, value); err != nil {
		return b.fail(err)
	}
	b.buf = oplog.AppendFieldOperand(b.buf[:0], 0, field, value, false)
	b.addLocal(lsm.KindMerge, nsDocuments, key, b.buf)
	return nil
}

// DeleteField adds a removal of one field of the document under key.
func (b *Batch) DeleteField(key, field []byte) error {
	if err := checkField(key, field, nil); err != nil {
		return b.fail(err)
	}
	b.buf = oplog.AppendFieldOperand(b.buf[:0], 0, field, nil, true)
	b.addLocal(lsm.KindMerge, nsDocuments, key, b.buf)
	return nil
}

// Incr adds delta to the counter field of the document under key. Counters
// are PN counters: every replica's increments add up, whatever the order
// they arrive in. They are kept beside the document, not in it: Put and
// Delete leave them alone (resetting a counter that other replicas
// increment concurrently needs coordination this engine does not do), and
// a key that has only counters is not listed by Get or iterators;
// GetFields shows them.
func (b *Batch) Incr(key, field []byte, delta int64) error {
	if err := checkField(key, field, nil); err != nil {
		return b.fail(err)
	}
	b.buf = oplog.AppendIncrOperand(b.buf[:0], 0, field, delta)
	b.addLocal(lsm.KindMerge, nsCounters, key, b.buf)
	return nil
}

// addLocal adds a local operation on a document and remembers where its
// value starts, for the timestamp.
func (b *Batch) addLocal(kind lsm.Kind, ns byte, key, value []byte) {
	b.data = batchrepr.AppendEntry(b.data, kind, ns, key, value)
	b.stamps = append(b.stamps, int32(len(b.data)-len(value)))
	b.count++
	b.memSize += len(key) + 1 + len(value) + lsm.MemtableEntryOverhead
}

func (b *Batch) fail(err error) error {
	if b.err == nil {
		b.err = err
	}
	return err
}

func (b *Batch) add(kind lsm.Kind, ns byte, key, value []byte) {
	b.data = batchrepr.AppendEntry(b.data, kind, ns, key, value)
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

func checkField(key, field, value []byte) error {
	if err := checkKV(key, value); err != nil {
		return err
	}
	switch {
	case len(field) == 0:
		return fmt.Errorf("%w: empty field name", errs.ErrInvalidKey)
	case len(field) > MaxKeySize:
		return fmt.Errorf("%w: field name of %d bytes, limit %d", errs.ErrKeyTooLarge, len(field), MaxKeySize)
	}
	return nil
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

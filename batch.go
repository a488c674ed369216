package pluresdb

import (
	"fmt"

	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/lsm"
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

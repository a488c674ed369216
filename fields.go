package pluresdb

import (
	"errors"
	"fmt"
	"io"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
)

// SetField sets one field of the document under key (see Batch.SetField).
func (db *DB) SetField(key, field, value []byte) error {
	b := db.NewBatch()
	if err := b.SetField(key, field, value); err != nil {
		return err
	}
	return b.Commit(nil)
}

// DeleteField removes one field of the document under key.
func (db *DB) DeleteField(key, field []byte) error {
	b := db.NewBatch()
	if err := b.DeleteField(key, field); err != nil {
		return err
	}
	return b.Commit(nil)
}

// Incr adds delta to the counter field of the document under key (see
// Batch.Incr).
func (db *DB) Incr(key, field []byte, delta int64) error {
	b := db.NewBatch()
	if err := b.Incr(key, field, delta); err != nil {
		return err
	}
	return b.Commit(nil)
}

// Document is the whole state of a key: its value (what Get returns), its
// fields and its counters.
type Document = oplog.Document

// GetFields returns the document under key with its fields and counter
// totals, or an error wrapping ErrNotFound if it has neither a value, nor
// a field, nor a counter. (Exists is false for a key with only counters.)
func (db *DB) GetFields(key []byte) (Document, error) {
	return db.getDocument(key, lsm.SeqNum(db.visible.Load()))
}

func (db *DB) getDocument(key []byte, snap lsm.SeqNum) (Document, error) {
	if err := checkKV(key, nil); err != nil {
		return Document{}, err
	}
	if db.closed.Load() {
		return Document{}, errs.ErrClosed
	}
	var d Document
	for _, ns := range []byte{nsDocuments, nsCounters} {
		state, _, err := db.getRaw(append([]byte{ns}, key...), snap)
		if errors.Is(err, errs.ErrNotFound) {
			continue
		}
		if err != nil {
			return Document{}, err
		}
		part, err := oplog.DecodeDocument(state)
		if err != nil {
			return Document{}, fmt.Errorf("%w: document %q: %v", errs.ErrCorruption, key, err)
		}
		if ns == nsDocuments {
			d = part
		} else if len(part.Counters) > 0 {
			d.Counters = part.Counters
		}
	}
	if !d.Exists && len(d.Counters) == 0 {
		return Document{}, errs.ErrNotFound
	}
	return d, nil
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }

package pluresdb

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
)

// Key filters of history segments. GetAsOf needs the operations of one key;
// a sealed segment's filter (a roaring bitmap of 32-bit hashes of the keys
// its operations touch) lets it skip every segment that cannot hold one.
// Filters are built off the write path: the retention goroutine reads each
// newly sealed segment once (archiving builds one from the operations it
// writes). The live segment and segments not yet filtered are read whole.

var metaSegKeys = []byte("oplog/keys/") // + segment number (8 bytes BE): its key filter

const keyFilterVersion = 1

func keyHash(key []byte) uint32 { return uint32(xxhash.Sum64(key)) }

func segKeysKey(num layout.FileNum) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), metaSegKeys...), uint64(num))
}

func encodeKeyFilter(bm *roaring.Bitmap) ([]byte, error) {
	bm.RunOptimize()
	b, err := bm.ToBytes()
	if err != nil {
		return nil, err
	}
	return append([]byte{keyFilterVersion}, b...), nil
}

func decodeKeyFilter(b []byte) (bm *roaring.Bitmap, err error) {
	if len(b) == 0 || b[0] != keyFilterVersion {
		return nil, fmt.Errorf("key filter: unknown version")
	}
	bm = roaring.New()
	// roaring validates what it reads, but guard against a panic on
	// hostile bytes all the same: a filter is an optimization.
	defer func() {
		if r := recover(); r != nil {
			bm, err = nil, fmt.Errorf("key filter: %v", r)
		}
	}()
	if _, err := bm.FromBuffer(append([]byte(nil), b[1:]...)); err != nil {
		return nil, fmt.Errorf("key filter: %w", err)
	}
	return bm, nil
}

// buildKeyFilters gives every sealed segment without a key filter one.
func (db *DB) buildKeyFilters() error {
	db.ol.mu.Lock()
	var todo []*segIndex
	for _, s := range db.ol.segs {
		if s.keys == nil && !s.archived {
			todo = append(todo, s)
		}
	}
	db.ol.mu.Unlock()
	for _, s := range todo {
		if db.closed.Load() {
			return nil
		}
		var hashes []uint32
		err := db.scanHistory(s, -1, func(op *oplog.Op) error {
			hashes = append(hashes, keyHash(op.Key))
			return nil
		})
		if err != nil {
			return err
		}
		if err := db.saveKeyFilter(s, keyFilterOf(hashes)); err != nil {
			return err
		}
	}
	return nil
}

// keyFilterOf builds a filter from key hashes (reordering them): adding
// them sorted is several times faster than one by one.
func keyFilterOf(hashes []uint32) *roaring.Bitmap {
	slices.Sort(hashes)
	hashes = slices.Compact(hashes)
	bm := roaring.New()
	bm.AddMany(hashes)
	return bm
}

func (db *DB) saveKeyFilter(s *segIndex, bm *roaring.Bitmap) error {
	enc, err := encodeKeyFilter(bm)
	if err != nil {
		return err
	}
	b := db.NewBatch()
	b.add(lsm.KindSet, nsMeta, segKeysKey(s.num), enc)
	if err := b.Commit(&WriteOptions{NoSync: true}); err != nil {
		return err
	}
	db.ol.mu.Lock()
	s.keys = bm
	db.ol.mu.Unlock()
	return nil
}

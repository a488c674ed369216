package pluresdb

import (
	"slices"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/cespare/xxhash/v2"
)

// Key filters of history segments. GetAsOf needs the operations of one key;
// a sealed segment's filter (a roaring bitmap of 32-bit hashes of the keys
// its operations touch) lets it skip every segment that cannot hold one.
// Filters cost nothing until as-of reads are used: the first GetAsOf that
// reads a sealed segment whole builds its filter on the way (archiving
// builds one from the operations it writes), and it is kept in memory for
// the life of the DB.

func keyHash(key []byte) uint32 { return uint32(xxhash.Sum64(key)) }

// keyFilterOf builds a filter from key hashes (reordering them): adding
// them sorted is several times faster than one by one.
func keyFilterOf(hashes []uint32) *roaring.Bitmap {
	slices.Sort(hashes)
	hashes = slices.Compact(hashes)
	bm := roaring.New()
	bm.AddMany(hashes)
	bm.RunOptimize()
	return bm
}

// setKeyFilter gives the retained segment num its filter.
func (db *DB) setKeyFilter(num uint64, bm *roaring.Bitmap) {
	db.ol.mu.Lock()
	defer db.ol.mu.Unlock()
	for _, s := range db.ol.segs {
		if uint64(s.num) == num && s.keys == nil {
			s.keys = bm
		}
	}
}

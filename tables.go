package pluresdb

import "github.com/plures/pluresdb/lsm"

// TableInfo describes one live table of the tree.
type TableInfo struct {
	Level int
	Num   uint64
	Size  uint64 // bytes on disk
	Cold  bool   // in the cold tier (under Options.ColdDir when set)
	// Smallest and Largest are the table's first and last keys (inclusive),
	// as the user wrote them.
	Smallest, Largest       []byte
	SmallestSeq, LargestSeq uint64
	Entries, Deletions      uint64
}

// Tables lists every live table, by level, then by key (L0: newest first).
func (db *DB) Tables() []TableInfo {
	db.stateMu.RLock()
	v := db.version
	v.Ref()
	db.stateMu.RUnlock()
	defer v.Unref()
	var out []TableInfo
	for level, files := range v.Levels {
		for _, f := range files {
			out = append(out, TableInfo{
				Level:       level,
				Num:         uint64(f.Num),
				Size:        f.Size,
				Cold:        f.Cold,
				Smallest:    userKeyOf(f.Smallest),
				Largest:     userKeyOf(f.Largest),
				SmallestSeq: uint64(f.SmallestSeq),
				LargestSeq:  uint64(f.LargestSeq),
				Entries:     f.NumEntries,
				Deletions:   f.NumDeletions,
			})
		}
	}
	return out
}

// userKeyOf strips the trailer and the namespace byte from an internal key.
func userKeyOf(ikey []byte) []byte {
	uk := lsm.UserKey(ikey)
	if len(uk) > 0 {
		uk = uk[1:]
	}
	return append([]byte(nil), uk...)
}

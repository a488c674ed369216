package lsm

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/plures/pluresdb/internal/layout"
)

// Version is the set of tables that make up the tree at one moment.
//
// A Version is immutable once installed and is shared by readers through a
// reference count: Ref before use, Unref after. When the last reference to
// the last Version holding a table goes away, the VersionSet reports the
// table obsolete. Ref, Unref and every read method are safe for concurrent
// use.
type Version struct {
	// Levels[0] is sorted by LargestSeq descending (newest first) and its
	// tables may overlap. Levels[1:] are each sorted by Smallest, and no two
	// tables of one level share a user key, so at most one table of a level
	// can hold a given key.
	Levels [NumLevels][]*FileMeta

	refs atomic.Int32
	vs   *VersionSet // nil for a Version not built by a VersionSet
}

// Ref adds a reference.
func (v *Version) Ref() { v.refs.Add(1) }

// Unref drops a reference. Dropping the last one releases the Version's
// hold on its tables, which may report some of them obsolete (from this
// goroutine).
func (v *Version) Unref() {
	switch n := v.refs.Add(-1); {
	case n == 0:
		if v.vs != nil {
			v.vs.releaseVersion(v)
		}
	case n < 0:
		panic("lsm: Version.Unref without a matching Ref")
	}
}

// NumFiles returns the number of tables at level.
func (v *Version) NumFiles(level int) int { return len(v.Levels[level]) }

// LevelSize returns the total size in bytes of the tables at level.
func (v *Version) LevelSize(level int) uint64 {
	var n uint64
	for _, f := range v.Levels[level] {
		n += f.Size
	}
	return n
}

// Overlaps returns the tables of level whose user-key range meets
// [smallest, largest] (inclusive; a nil bound is unbounded). The result must
// not be modified.
//
// At level 0 the range grows to cover every table that overlaps a table in
// the result, transitively: L0 tables overlap each other, and a compaction
// that took a newer L0 table without an older one it overlaps would move
// newer data below older data.
func (v *Version) Overlaps(level int, smallest, largest []byte) []*FileMeta {
	if level < 0 || level >= NumLevels {
		return nil
	}
	if level == 0 {
		return v.overlapsL0(smallest, largest)
	}
	files := v.Levels[level]
	lo, hi := 0, len(files)
	if smallest != nil {
		lo = searchLargest(files, smallest)
	}
	if largest != nil {
		// First table starting above largest.
		i, j := lo, len(files)
		for i < j {
			h := int(uint(i+j) >> 1)
			if bytes.Compare(UserKey(files[h].Smallest), largest) <= 0 {
				i = h + 1
			} else {
				j = h
			}
		}
		hi = i
	}
	if lo >= hi {
		return nil
	}
	return files[lo:hi:hi]
}

func (v *Version) overlapsL0(smallest, largest []byte) []*FileMeta {
	var out []*FileMeta
	for {
		out = out[:0]
		grown := false
		for _, f := range v.Levels[0] {
			fs, fl := UserKey(f.Smallest), UserKey(f.Largest)
			if (largest != nil && bytes.Compare(fs, largest) > 0) || (smallest != nil && bytes.Compare(fl, smallest) < 0) {
				continue
			}
			out = append(out, f)
			if smallest != nil && bytes.Compare(fs, smallest) < 0 {
				smallest, grown = fs, true
			}
			if largest != nil && bytes.Compare(fl, largest) > 0 {
				largest, grown = fl, true
			}
		}
		if !grown {
			return out
		}
	}
}

// searchLargest returns the index of the first table of a sorted level
// whose largest user key is >= ukey (len(files) if none). A hand-written
// search keeps the read path free of closures.
func searchLargest(files []*FileMeta, ukey []byte) int {
	i, j := 0, len(files)
	for i < j {
		h := int(uint(i+j) >> 1)
		if bytes.Compare(UserKey(files[h].Largest), ukey) < 0 {
			i = h + 1
		} else {
			j = h
		}
	}
	return i
}

// versionBuilder applies edits to a base version. Used by one goroutine.
type versionBuilder struct {
	files [NumLevels]map[layout.FileNum]*FileMeta
	// deleted, for a builder replaying a manifest from nothing (no
	// base), collects every table an edit removed: the tables the
	// manifest proves obsolete, unless a later edit adds them back.
	deleted map[layout.FileNum]struct{}
}

func newVersionBuilder(base *Version) *versionBuilder {
	b := &versionBuilder{}
	if base == nil {
		b.deleted = make(map[layout.FileNum]struct{})
	}
	for level := range b.files {
		b.files[level] = make(map[layout.FileNum]*FileMeta)
		if base != nil {
			for _, f := range base.Levels[level] {
				b.files[level][f.Num] = f
			}
		}
	}
	return b
}

// apply applies e: deletions first, so an edit may move a table between
// levels by deleting and adding the same number. It checks that deleted
// tables exist and added ones do not; on error the builder is unusable.
func (b *versionBuilder) apply(e *VersionEdit) error {
	for _, d := range e.DeletedFiles {
		if d.Level < 0 || d.Level >= NumLevels {
			return fmt.Errorf("lsm: edit deletes table %s at level %d, out of range", d.Num, d.Level)
		}
		if _, ok := b.files[d.Level][d.Num]; !ok {
			return fmt.Errorf("lsm: edit deletes table %s at level %d, which does not hold it", d.Num, d.Level)
		}
		delete(b.files[d.Level], d.Num)
		if b.deleted != nil {
			b.deleted[d.Num] = struct{}{}
		}
	}
	for _, nf := range e.NewFiles {
		if nf.Level < 0 || nf.Level >= NumLevels {
			return fmt.Errorf("lsm: edit adds a table at level %d, out of range", nf.Level)
		}
		m := nf.Meta
		if m == nil {
			return fmt.Errorf("lsm: edit adds a table without metadata at level %d", nf.Level)
		}
		if err := checkFileMeta(m.Num, m.Smallest, m.Largest, m.SmallestSeq, m.LargestSeq); err != nil {
			return fmt.Errorf("lsm: edit adds a bad table: %w", err)
		}
		for level := range b.files {
			if _, ok := b.files[level][m.Num]; ok {
				return fmt.Errorf("lsm: edit adds table %s at level %d, already at level %d", m.Num, nf.Level, level)
			}
		}
		b.files[nf.Level][m.Num] = m
	}
	return nil
}

// build returns the sorted Version, checking that levels 1 and up do not
// overlap.
func (b *versionBuilder) build() (*Version, error) {
	v := &Version{}
	for level, m := range b.files {
		if len(m) == 0 {
			continue
		}
		files := make([]*FileMeta, 0, len(m))
		for _, f := range m {
			files = append(files, f)
		}
		if level == 0 {
			slices.SortFunc(files, func(a, b *FileMeta) int {
				if a.LargestSeq != b.LargestSeq {
					if a.LargestSeq > b.LargestSeq {
						return -1
					}
					return 1
				}
				switch {
				case a.Num > b.Num:
					return -1
				case a.Num < b.Num:
					return 1
				}
				return 0
			})
		} else {
			slices.SortFunc(files, func(a, b *FileMeta) int { return CompareInternal(a.Smallest, b.Smallest) })
			for i := 1; i < len(files); i++ {
				if bytes.Compare(UserKey(files[i-1].Largest), UserKey(files[i].Smallest)) >= 0 {
					return nil, fmt.Errorf("lsm: tables %s and %s overlap at level %d", files[i-1].Num, files[i].Num, level)
				}
			}
		}
		v.Levels[level] = files
	}
	return v, nil
}

// Get returns the newest entry for ukey with seq <= snap, looking at L0
// newest first and then at the one table of each deeper level whose range
// holds ukey; the first entry found wins. Tables whose key range misses
// ukey, or whose entries are all newer than snap, are not opened. value
// aliases table memory (see Table.Get): callers copy it. Apart from what
// Table.Get does, Get allocates nothing.
func (v *Version) Get(tc *TableCache, ukey []byte, snap SeqNum) (value []byte, kind Kind, seq SeqNum, found bool, err error) {
	for _, f := range v.Levels[0] {
		if f.SmallestSeq > snap || bytes.Compare(ukey, UserKey(f.Smallest)) < 0 || bytes.Compare(ukey, UserKey(f.Largest)) > 0 {
			continue
		}
		if value, kind, seq, found, err = getFromTable(tc, f, ukey, snap); found || err != nil {
			return value, kind, seq, found, err
		}
	}
	for level := 1; level < NumLevels; level++ {
		files := v.Levels[level]
		i := searchLargest(files, ukey)
		if i == len(files) {
			continue
		}
		f := files[i]
		if f.SmallestSeq > snap || bytes.Compare(ukey, UserKey(f.Smallest)) < 0 {
			continue
		}
		if value, kind, seq, found, err = getFromTable(tc, f, ukey, snap); found || err != nil {
			return value, kind, seq, found, err
		}
	}
	return nil, 0, 0, false, nil
}

func getFromTable(tc *TableCache, f *FileMeta, ukey []byte, snap SeqNum) (value []byte, kind Kind, seq SeqNum, found bool, err error) {
	t, err := tc.Acquire(f)
	if err != nil {
		return nil, 0, 0, false, err
	}
	value, kind, seq, found, err = t.Get(ukey, snap)
	tc.Release(t)
	return value, kind, seq, found, err
}

// NewIters returns the iterators a merging iterator needs to read v: one
// per L0 table, newest first, then one level iterator per non-empty level
// from 1 down. Each iterator holds its tables and a reference on v until
// its Close, so the caller may Unref v at once.
func (v *Version) NewIters(tc *TableCache) ([]InternalIterator, error) {
	return v.NewItersRange(tc, nil, nil)
}

// NewItersRange is NewIters for a reader of the user keys [lower, upper)
// only (nil: unbounded): tables wholly outside the range are left out, so
// they are neither opened nor read, and a damaged table outside the range
// cannot fail the read.
func (v *Version) NewItersRange(tc *TableCache, lower, upper []byte) ([]InternalIterator, error) {
	iters := make([]InternalIterator, 0, len(v.Levels[0])+NumLevels-1)
	for _, f := range v.Levels[0] {
		if !overlapsRange(f, lower, upper) {
			continue
		}
		t, err := tc.Acquire(f)
		if err != nil {
			for _, it := range iters {
				it.Close()
			}
			return nil, err
		}
		v.Ref()
		iters = append(iters, &heldTableIter{InternalIterator: t.NewIter(), tc: tc, t: t, v: v})
	}
	for level := 1; level < NumLevels; level++ {
		files := v.Levels[level]
		if lower != nil {
			files = files[searchLargest(files, lower):]
		}
		if upper != nil {
			files = files[:sort.Search(len(files), func(i int) bool {
				return bytes.Compare(UserKey(files[i].Smallest), upper) >= 0
			})]
		}
		if len(files) == 0 {
			continue
		}
		v.Ref()
		iters = append(iters, &levelIter{tc: tc, files: files, v: v, idx: len(files)})
	}
	return iters, nil
}

// overlapsRange reports whether f may hold a user key in [lower, upper).
func overlapsRange(f *FileMeta, lower, upper []byte) bool {
	if lower != nil && bytes.Compare(UserKey(f.Largest), lower) < 0 {
		return false
	}
	return upper == nil || bytes.Compare(UserKey(f.Smallest), upper) < 0
}

package lsm

import "sort"

// levelIter concatenates the tables of one sorted level (1 and up). It
// opens a table only when the walk reaches it and releases each table when
// it moves past, so a scan of a large level holds one table at a time. Used
// by one goroutine at a time.
type levelIter struct {
	tc    *TableCache
	files []*FileMeta // sorted by key, non-overlapping
	v     *Version    // held until Close, if the iterator came from a Version

	idx  int // index in files of the open table; len(files) when none
	t    *Table
	iter InternalIterator
	err  error
}

// NewLevelIter returns an iterator over the concatenation of files, which
// must be sorted and non-overlapping (a level >= 1 of a Version). The caller
// keeps the files alive (holds their Version) until Close.
func NewLevelIter(tc *TableCache, files []*FileMeta) InternalIterator {
	return &levelIter{tc: tc, files: files, idx: len(files)}
}

// openFile makes files[i] the current table, releasing the previous one.
func (it *levelIter) openFile(i int) bool {
	it.closeFile()
	it.idx = i
	if i >= len(it.files) {
		it.idx = len(it.files)
		return false
	}
	t, err := it.tc.Acquire(it.files[i])
	if err != nil {
		it.err = err
		it.idx = len(it.files)
		return false
	}
	it.t = t
	it.iter = t.NewIter()
	return true
}

func (it *levelIter) closeFile() {
	if it.iter == nil {
		return
	}
	if err := it.iter.Close(); err != nil && it.err == nil {
		it.err = err
	}
	it.tc.Release(it.t)
	it.iter, it.t = nil, nil
}

// skipForward moves to the first entry of the next tables after the current
// table ran out, stopping at an error.
func (it *levelIter) skipForward() bool {
	for {
		if err := it.iter.Err(); err != nil {
			it.err = err
			it.closeFile()
			it.idx = len(it.files)
			return false
		}
		if !it.openFile(it.idx + 1) {
			return false
		}
		if it.iter.First() {
			return true
		}
	}
}

// skipBackward moves to the last entry of the previous tables after the
// current table ran out going backward, stopping at an error.
func (it *levelIter) skipBackward() bool {
	for {
		if err := it.iter.Err(); err != nil {
			it.err = err
			it.closeFile()
			it.idx = len(it.files)
			return false
		}
		if it.idx == 0 {
			it.closeFile()
			it.idx = len(it.files)
			return false
		}
		if !it.openFile(it.idx - 1) {
			return false
		}
		if it.iter.Last() {
			return true
		}
	}
}

func (it *levelIter) Last() bool {
	it.err = nil
	if len(it.files) == 0 || !it.openFile(len(it.files)-1) {
		return false
	}
	return it.iter.Last() || it.skipBackward()
}

func (it *levelIter) SeekLT(ikey []byte) bool {
	it.err = nil
	// The last table whose smallest key is < ikey is the only one that can
	// hold the answer's start.
	i := sort.Search(len(it.files), func(h int) bool { return CompareInternal(it.files[h].Smallest, ikey) >= 0 })
	if i == 0 {
		it.closeFile()
		it.idx = len(it.files)
		return false
	}
	if !it.openFile(i - 1) {
		return false
	}
	return it.iter.SeekLT(ikey) || it.skipBackward()
}

func (it *levelIter) Prev() bool {
	if it.iter == nil || it.err != nil {
		return false
	}
	return it.iter.Prev() || it.skipBackward()
}

func (it *levelIter) First() bool {
	it.err = nil
	if !it.openFile(0) {
		return false
	}
	return it.iter.First() || it.skipForward()
}

func (it *levelIter) SeekGE(ikey []byte) bool {
	it.err = nil
	// The first table whose largest key is >= ikey is the only one that can
	// hold the answer's start.
	i := sort.Search(len(it.files), func(h int) bool { return CompareInternal(it.files[h].Largest, ikey) >= 0 })
	if !it.openFile(i) {
		return false
	}
	return it.iter.SeekGE(ikey) || it.skipForward()
}

func (it *levelIter) Next() bool {
	if it.iter == nil || it.err != nil {
		return false
	}
	return it.iter.Next() || it.skipForward()
}

func (it *levelIter) Valid() bool {
	return it.err == nil && it.iter != nil && it.iter.Valid()
}

func (it *levelIter) Key() []byte   { return it.iter.Key() }
func (it *levelIter) Value() []byte { return it.iter.Value() }
func (it *levelIter) Err() error    { return it.err }

func (it *levelIter) Close() error {
	it.closeFile()
	it.idx = len(it.files)
	if it.v != nil {
		it.v.Unref()
		it.v = nil
	}
	return it.err
}

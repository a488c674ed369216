package lsm

// This file owns reading a table (format in table.go).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
)

// indexEntry is one decoded index entry: every key of the data block is
// <= sep, and sep < the first key of the next block.
type indexEntry struct {
	sep []byte
	h   blockHandle
}

// Table reads one sstable. Opening reads and verifies the header, footer,
// metaindex, properties, filter and index and keeps them in memory, so a
// point read costs at most one data block read.
//
// A Table is safe for concurrent use by many goroutines: after OpenTable it
// is immutable, and data blocks come from the BlockCache or from f.ReadAt,
// which vfs.File allows concurrently. Close must not race with reads.
type Table struct {
	f       vfs.File
	name    string
	num     layout.FileNum
	cache   *BlockCache
	index   []indexEntry
	filter  bloomFilter
	hasBF   bool
	props   TableProps
	dataEnd uint64 // end of the last data block (with trailer)
	// tc, when the table came from a TableCache, is told of damage found
	// in a data block (on the error path only).
	tc *TableCache
}

// OpenTable reads the metadata of the table in f and keeps f open for
// reads; name (used in errors) and num (the cache key) identify it. cache
// may be nil. Damaged metadata gives an error wrapping errs.ErrCorruption
// that names the file and offset; a newer format gives errs.ErrNewerFormat.
// On error f is left open for the caller to close.
func OpenTable(f vfs.File, name string, num layout.FileNum, cache *BlockCache) (*Table, error) {
	t := &Table{f: f, name: name, num: num, cache: cache}
	size, err := f.Size()
	if err != nil {
		return nil, fmt.Errorf("lsm: open table %s: %w", name, err)
	}
	if size < tableHeaderLen+tableFooterLen {
		return nil, errs.Corruptf(name, 0, "file of %d bytes is too short for a table", size)
	}
	var hdr [tableHeaderLen]byte
	if err := t.readAt(hdr[:], 0); err != nil {
		return nil, err
	}
	if string(hdr[:8]) != tableMagic {
		return nil, errs.Corruptf(name, 0, "bad table magic")
	}
	if binary.LittleEndian.Uint32(hdr[12:]) != uint32(xxhash.Sum64(hdr[:12])) {
		return nil, errs.Corruptf(name, 0, "header checksum mismatch")
	}
	version := binary.LittleEndian.Uint32(hdr[8:])
	if version > tableFormatVersion {
		return nil, errs.NewerFormatf(name, version, tableFormatVersion)
	}
	if version == 0 {
		return nil, errs.Corruptf(name, 8, "format version 0")
	}

	footerOff := size - tableFooterLen
	var fb [tableFooterLen]byte
	if err := t.readAt(fb[:], footerOff); err != nil {
		return nil, err
	}
	ft, reason := decodeFooter(fb[:])
	if reason != "" {
		return nil, errs.Corruptf(name, footerOff, "%s", reason)
	}
	if ft.version != version {
		return nil, errs.Corruptf(name, footerOff, "footer version %d differs from header version %d", ft.version, version)
	}
	limit := uint64(footerOff)

	meta, err := t.readMetaBlock(ft.metaindex, limit, "metaindex")
	if err != nil {
		return nil, err
	}
	var filterH, propsH blockHandle
	var haveProps bool
	var it blockIter
	it.init(meta, 0)
	for ok := it.First(); ok; ok = it.Next() {
		h, ok := decodeHandle(it.val)
		if !ok {
			return nil, errs.Corruptf(name, int64(ft.metaindex.offset), "metaindex: bad handle for %q", it.key)
		}
		switch string(it.key) {
		case metaFilterName:
			filterH, t.hasBF = h, true
		case metaPropertiesName:
			propsH, haveProps = h, true
		}
	}
	if it.err != nil {
		return nil, errs.Corruptf(name, int64(ft.metaindex.offset), "metaindex: %v", it.err)
	}
	if !haveProps {
		return nil, errs.Corruptf(name, int64(ft.metaindex.offset), "metaindex has no properties")
	}

	pb, err := t.readMetaBlock(propsH, limit, "properties")
	if err != nil {
		return nil, err
	}
	if t.props, reason = decodeProps(pb); reason != "" {
		return nil, errs.Corruptf(name, int64(propsH.offset), "%s", reason)
	}
	t.props.FileSize = uint64(size)

	if t.hasBF {
		raw, err := t.readBlockContents(filterH, limit, "filter")
		if err != nil {
			return nil, err
		}
		if t.filter, err = decodeBloom(raw); err != nil {
			return nil, errs.Corruptf(name, int64(filterH.offset), "filter: %v", err)
		}
	}

	ib, err := t.readMetaBlock(ft.index, limit, "index")
	if err != nil {
		return nil, err
	}
	if err := t.loadIndex(ib, int64(ft.index.offset), limit); err != nil {
		return nil, err
	}
	return t, nil
}

// loadIndex decodes the index block into t.index, checking that the
// separators increase and the handles are in order inside the file.
func (t *Table) loadIndex(ib *block, off int64, limit uint64) error {
	var it blockIter
	it.init(ib, TrailerLen)
	n, keyBytes := 0, 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
		keyBytes += len(it.key)
	}
	if it.err != nil {
		return errs.Corruptf(t.name, off, "index: %v", it.err)
	}
	if uint64(n) != t.props.DataBlocks {
		return errs.Corruptf(t.name, off, "index has %d entries, properties say %d data blocks", n, t.props.DataBlocks)
	}
	arena := make([]byte, 0, keyBytes)
	t.index = make([]indexEntry, 0, n)
	prevEnd := uint64(tableHeaderLen)
	for ok := it.First(); ok; ok = it.Next() {
		h, ok := decodeHandle(it.val)
		if !ok || h.offset != prevEnd || h.length > limit || h.end() > limit {
			return errs.Corruptf(t.name, off, "index: bad handle for block %d", len(t.index))
		}
		prevEnd = h.end()
		if len(t.index) > 0 && CompareInternal(t.index[len(t.index)-1].sep, it.key) >= 0 {
			return errs.Corruptf(t.name, off, "index: separators out of order at block %d", len(t.index))
		}
		arena = append(arena, it.key...)
		t.index = append(t.index, indexEntry{sep: arena[len(arena)-len(it.key):], h: h})
	}
	t.dataEnd = prevEnd
	return nil
}

// readAt reads len(b) bytes at off; a short read is corruption.
func (t *Table) readAt(b []byte, off int64) error {
	n, err := t.f.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errs.Corruptf(t.name, off, "short read: %d of %d bytes", n, len(b))
	}
	return fmt.Errorf("lsm: read table %s at %d: %w", t.name, off, err)
}

// readBlockContents reads, verifies and decompresses the block at h, which
// must end by limit.
func (t *Table) readBlockContents(h blockHandle, limit uint64, what string) ([]byte, error) {
	if h.offset < tableHeaderLen || h.offset > limit || h.length > limit || h.end() > limit {
		return nil, errs.Corruptf(t.name, int64(min(h.offset, 1<<62)), "%s: block handle (%d, %d) outside the file", what, h.offset, h.length)
	}
	raw := make([]byte, h.length+blockTrailerLen)
	if err := t.readAt(raw, int64(h.offset)); err != nil {
		return nil, err
	}
	payload, typ, err := splitBlock(raw)
	if err != nil {
		return nil, errs.Corruptf(t.name, int64(h.offset), "%s: %v", what, err)
	}
	contents, err := decompress(payload, typ)
	if err != nil {
		return nil, errs.Corruptf(t.name, int64(h.offset), "%s: %v", what, err)
	}
	return contents, nil
}

func (t *Table) readMetaBlock(h blockHandle, limit uint64, what string) (*block, error) {
	contents, err := t.readBlockContents(h, limit, what)
	if err != nil {
		return nil, err
	}
	b, err := parseBlock(contents)
	if err != nil {
		return nil, errs.Corruptf(t.name, int64(h.offset), "%s: %v", what, err)
	}
	return b, nil
}

// dataBlock returns data block i, from the cache or decoded from the file.
func (t *Table) dataBlock(i int) (*block, error) {
	h := t.index[i].h
	if b := t.cache.get(t.num, h.offset); b != nil {
		return b, nil
	}
	b, err := t.readMetaBlock(h, t.dataEnd, "data block")
	if err != nil {
		return nil, t.damaged(err)
	}
	t.cache.insert(t.num, h.offset, b)
	return b, nil
}

// searchIndex returns the first block whose separator is >= (ukey,
// trailer), or len(t.index).
func (t *Table) searchIndex(ukey []byte, trailer uint64) int {
	lo, hi := 0, len(t.index)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if compareIKey(t.index[mid].sep, ukey, trailer) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// Props returns the table's properties.
func (t *Table) Props() TableProps { return t.props }

// MayContain reports whether the table may hold an entry for ukey; false
// is definite. Without a filter it is always true.
func (t *Table) MayContain(ukey []byte) bool {
	return !t.hasBF || t.filter.mayContain(xxhash.Sum64(ukey))
}

// Get returns the newest entry for ukey with seq <= snap. The value aliases
// a block that may be cached: callers copy it and never modify it. A
// tombstone is returned as found with kind KindDelete.
func (t *Table) Get(ukey []byte, snap SeqNum) (value []byte, kind Kind, seq SeqNum, found bool, err error) {
	if t.hasBF && !t.filter.mayContain(xxhash.Sum64(ukey)) {
		return nil, 0, 0, false, nil
	}
	trailer := MakeTrailer(min(snap, MaxSeqNum), KindMax)
	i := t.searchIndex(ukey, trailer)
	if i == len(t.index) {
		return nil, 0, 0, false, nil
	}
	b, err := t.dataBlock(i)
	if err != nil {
		return nil, 0, 0, false, err
	}
	// The separators guarantee that an entry for ukey visible at snap, if
	// any, is in block i: running off its end means there is none.
	var keyBuf [128]byte
	key, val, _, _, found, ok := b.seek(ukey, trailer, keyBuf[:0], TrailerLen)
	if !ok {
		return nil, 0, 0, false, t.damaged(errs.Corruptf(t.name, int64(t.index[i].h.offset), "data block: %v", errBadEntry))
	}
	if !found {
		return nil, 0, 0, false, nil
	}
	n := len(key) - TrailerLen
	if !bytes.Equal(key[:n], ukey) {
		return nil, 0, 0, false, nil
	}
	tr := binary.LittleEndian.Uint64(key[n:])
	kind, seq = Kind(tr&0xff), SeqNum(tr>>8)
	if kind > KindMax {
		return nil, 0, 0, false, t.damaged(errs.Corruptf(t.name, int64(t.index[i].h.offset), "data block: unknown kind %d", kind))
	}
	return val, kind, seq, true, nil
}

// ApproximateOffset returns the file offset where entries >= ikey begin:
// the offset of the data block that would hold ikey, or the file size if
// ikey is past the last entry.
func (t *Table) ApproximateOffset(ikey []byte) uint64 {
	ukey, trailer := splitSeekKey(ikey)
	i := t.searchIndex(ukey, trailer)
	if i == len(t.index) {
		return t.props.FileSize
	}
	return t.index[i].h.offset
}

// Close closes the file. The table must not be used afterwards.
func (t *Table) Close() error {
	return t.f.Close()
}

// NewIter returns an iterator over the table's entries.
func (t *Table) NewIter() InternalIterator {
	return &tableIter{t: t, idx: len(t.index)}
}

// tableIter walks the index and, inside each data block, a blockIter whose
// key buffer is reused from block to block. Used by one goroutine.
type tableIter struct {
	t      *Table
	idx    int // current data block; len(t.index) when exhausted
	bi     blockIter
	valid  bool
	err    error
	closed bool
}

var _ InternalIterator = (*tableIter)(nil)

// loadBlock positions bi on block idx (not on an entry).
func (it *tableIter) loadBlock() bool {
	b, err := it.t.dataBlock(it.idx)
	if err != nil {
		it.err = err
		return false
	}
	it.bi.init(b, TrailerLen)
	return true
}

// settle skips past the end of exhausted blocks to the next entry.
func (it *tableIter) settle(ok bool) bool {
	for !ok {
		if it.bi.err != nil {
			it.err = it.t.damaged(errs.Corruptf(it.t.name, int64(it.t.index[it.idx].h.offset), "data block: %v", it.bi.err))
			return it.stop()
		}
		it.idx++
		if it.idx >= len(it.t.index) || !it.loadBlock() {
			return it.stop()
		}
		ok = it.bi.First()
	}
	it.valid = true
	return true
}

// settleBack skips back over exhausted blocks to the previous entry.
func (it *tableIter) settleBack(ok bool) bool {
	for !ok {
		if it.bi.err != nil {
			it.err = it.t.damaged(errs.Corruptf(it.t.name, int64(it.t.index[it.idx].h.offset), "data block: %v", it.bi.err))
			return it.stop()
		}
		if it.idx == 0 {
			return it.stop()
		}
		it.idx--
		if !it.loadBlock() {
			return it.stop()
		}
		ok = it.bi.Last()
	}
	it.valid = true
	return true
}

func (it *tableIter) stop() bool {
	it.valid = false
	it.bi.b, it.bi.val = nil, nil
	return false
}

// First moves to the first entry.
func (it *tableIter) First() bool {
	if it.closed || it.err != nil {
		return it.stop()
	}
	it.idx = 0
	if len(it.t.index) == 0 || !it.loadBlock() {
		return it.stop()
	}
	return it.settle(it.bi.First())
}

// SeekGE moves to the first entry whose internal key is >= ikey.
func (it *tableIter) SeekGE(ikey []byte) bool {
	if it.closed || it.err != nil {
		return it.stop()
	}
	ukey, trailer := splitSeekKey(ikey)
	it.idx = it.t.searchIndex(ukey, trailer)
	if it.idx >= len(it.t.index) || !it.loadBlock() {
		return it.stop()
	}
	return it.settle(it.bi.seekGE(ukey, trailer))
}

// Next moves to the following entry.
func (it *tableIter) Next() bool {
	if !it.valid {
		return false
	}
	return it.settle(it.bi.Next())
}

// Last moves to the last entry.
func (it *tableIter) Last() bool {
	if it.closed || it.err != nil || len(it.t.index) == 0 {
		return it.stop()
	}
	it.idx = len(it.t.index) - 1
	if !it.loadBlock() {
		return it.stop()
	}
	return it.settleBack(it.bi.Last())
}

// SeekLT moves to the last entry whose internal key is < ikey.
func (it *tableIter) SeekLT(ikey []byte) bool {
	if it.closed || it.err != nil {
		return it.stop()
	}
	ukey, trailer := splitSeekKey(ikey)
	// Block i is the first whose separator is >= ikey: every entry of the
	// blocks after it is >= ikey, so the answer is in block i or before.
	i := it.t.searchIndex(ukey, trailer)
	if i >= len(it.t.index) {
		return it.Last()
	}
	it.idx = i
	if !it.loadBlock() {
		return it.stop()
	}
	return it.settleBack(it.bi.seekLT(ukey, trailer))
}

// Prev moves to the preceding entry.
func (it *tableIter) Prev() bool {
	if !it.valid {
		return false
	}
	return it.settleBack(it.bi.Prev())
}

func (it *tableIter) Valid() bool   { return it.valid }
func (it *tableIter) Key() []byte   { return it.bi.key }
func (it *tableIter) Value() []byte { return it.bi.val }
func (it *tableIter) Err() error    { return it.err }

// Close releases the iterator and returns Err. The table stays open.
func (it *tableIter) Close() error {
	it.closed = true
	it.stop()
	return it.err
}

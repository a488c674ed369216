package lsm

// This file checks a whole table file (format in table.go) for the
// verifier: every block's checksum and encoding, key order, and the
// properties against the data. Unlike OpenTable, which stops at the first
// damage, CheckTable goes on past a damaged data block and reports each.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/errs"
)

// TableIssueKind classifies damage CheckTable found.
type TableIssueKind uint8

const (
	// TableChecksum: bytes fail their checksum (a block trailer, the
	// header or the footer).
	TableChecksum TableIssueKind = iota + 1
	// TableFormat: bytes that pass their checksum do not decode (a bad
	// handle, a malformed block, a file too short to be a table).
	TableFormat
	// TableKeyOrder: keys out of order, or outside their block's
	// separators.
	TableKeyOrder
	// TablePropsMismatch: the properties block disagrees with the data blocks.
	TablePropsMismatch
	// TableNewerFormat: the table was written by a newer format version.
	TableNewerFormat
)

// TableIssue is one piece of damage in a table.
type TableIssue struct {
	Kind   TableIssueKind
	Offset int64
	Err    error // wraps errs.ErrCorruption (errs.ErrNewerFormat for TableNewerFormat), naming the file and offset
	// Lower and Upper bound the internal keys the damaged part holds
	// when the index says: a data block holds keys above the previous
	// block's separator (Lower, exclusive; nil for the first block) and
	// up to its own (Upper, inclusive). Both nil: the whole table.
	Lower, Upper []byte
}

// TableCheck is what CheckTable found in a table.
type TableCheck struct {
	// Props is what the properties block says; PropsOK is false when it
	// could not be read.
	Props   TableProps
	PropsOK bool
	// DataBlocks is the number of data blocks the index lists;
	// BlocksChecked how many of them were read whole and intact.
	DataBlocks, BlocksChecked int
	// Entries, Deletions and Merges count the entries of the intact data
	// blocks; Smallest and Largest are their first and last internal
	// keys, SmallestSeq and LargestSeq their sequence number bounds.
	Entries, Deletions, Merges uint64
	Smallest, Largest          []byte
	SmallestSeq, LargestSeq    SeqNum
	Issues                     []TableIssue
	// Collected are the entries of the intact data blocks whose user key
	// has the prefix given to CheckTableCollect, in order (copies).
	Collected []TableEntry

	collect []byte // the prefix to collect; nil: none
}

// TableEntry is an entry of a table: its internal key and value.
type TableEntry struct{ Key, Value []byte }

// tableCheckBuffer is the size of the sequential reads of data blocks.
const tableCheckBuffer = 1 << 20

// CheckTable reads the table of size bytes in r (name is used in errors)
// and checks all of it: header, footer, metaindex, properties, filter and
// index, then every data block in file order through one sequential
// reader (checksum, decompression, entries, key order against the
// previous key and the index separators), and last the properties
// against what the blocks hold. progress, if not nil, is called with the
// bytes read as they are read. Damage goes into the result; the error is
// for I/O only.
func CheckTable(r io.ReaderAt, size int64, name string, progress func(n int64)) (*TableCheck, error) {
	return CheckTableCollect(r, size, name, progress, nil)
}

// CheckTableCollect is CheckTable that also returns, in
// TableCheck.Collected, the entries of the intact data blocks whose user
// key has prefix (nil: none), read in the same pass: a checker that
// needs some of a table's contents reads the file once.
func CheckTableCollect(r io.ReaderAt, size int64, name string, progress func(n int64), prefix []byte) (*TableCheck, error) {
	c := &TableCheck{collect: prefix}
	note := func(kind TableIssueKind, off int64, lower, upper []byte, format string, args ...any) {
		c.Issues = append(c.Issues, TableIssue{Kind: kind, Offset: off, Err: errs.Corruptf(name, off, format, args...),
			Lower: lower, Upper: upper})
	}
	if progress == nil {
		progress = func(int64) {}
	}
	readAt := func(b []byte, off int64) (bool, error) {
		n, err := r.ReadAt(b, off)
		progress(int64(n))
		if n == len(b) {
			return true, nil
		}
		if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			note(TableFormat, off, nil, nil, "short read: %d of %d bytes", n, len(b))
			return false, nil
		}
		return false, fmt.Errorf("lsm: read table %s at %d: %w", name, off, err)
	}
	if size < tableHeaderLen+tableFooterLen {
		note(TableFormat, 0, nil, nil, "file of %d bytes is too short for a table", size)
		return c, nil
	}
	var hdr [tableHeaderLen]byte
	if ok, err := readAt(hdr[:], 0); !ok {
		return c, err
	}
	version := binary.LittleEndian.Uint32(hdr[8:])
	switch {
	case string(hdr[:8]) != tableMagic:
		note(TableFormat, 0, nil, nil, "bad table magic")
	case binary.LittleEndian.Uint32(hdr[12:]) != uint32(xxhash.Sum64(hdr[:12])):
		note(TableChecksum, 0, nil, nil, "header checksum mismatch")
	case version > tableFormatVersion:
		c.Issues = append(c.Issues, TableIssue{Kind: TableNewerFormat, Err: errs.NewerFormatf(name, version, tableFormatVersion)})
		return c, nil
	case version == 0:
		note(TableFormat, 8, nil, nil, "format version 0")
	}

	footerOff := size - tableFooterLen
	var fb [tableFooterLen]byte
	if ok, err := readAt(fb[:], footerOff); !ok {
		return c, err
	}
	ft, reason := decodeFooter(fb[:])
	if reason != "" {
		kind := TableFormat
		if reason == "footer checksum mismatch" {
			kind = TableChecksum
		}
		note(kind, footerOff, nil, nil, "%s; no block checked", reason)
		return c, nil
	}
	if ft.version > tableFormatVersion {
		c.Issues = append(c.Issues, TableIssue{Kind: TableNewerFormat, Offset: footerOff, Err: errs.NewerFormatf(name, ft.version, tableFormatVersion)})
		return c, nil
	}
	limit := uint64(footerOff)

	// readBlock reads and decodes the block at h; nil after noting why
	// not, or with an I/O error.
	readBlock := func(h blockHandle, what string, lower, upper []byte) ([]byte, error) {
		if h.offset < tableHeaderLen || h.offset > limit || h.length > limit || h.end() > limit {
			note(TableFormat, int64(min(h.offset, 1<<62)), lower, upper, "%s: block handle (%d, %d) outside the file", what, h.offset, h.length)
			return nil, nil
		}
		raw := make([]byte, h.length+blockTrailerLen)
		if ok, err := readAt(raw, int64(h.offset)); !ok {
			return nil, err
		}
		return c.decodeBlock(raw, int64(h.offset), what, lower, upper, note), nil
	}
	parse := func(contents []byte, off int64, what string) *block {
		if contents == nil {
			return nil
		}
		b, err := parseBlock(contents)
		if err != nil {
			note(TableFormat, off, nil, nil, "%s: %v", what, err)
			return nil
		}
		return b
	}

	contents, err := readBlock(ft.metaindex, "metaindex", nil, nil)
	if err != nil {
		return c, err
	}
	meta := parse(contents, int64(ft.metaindex.offset), "metaindex")
	var filterH, propsH blockHandle
	var hasFilter, hasProps bool
	if meta != nil {
		var it blockIter
		it.init(meta, 0)
		for ok := it.First(); ok; ok = it.Next() {
			h, ok := decodeHandle(it.val)
			if !ok {
				note(TableFormat, int64(ft.metaindex.offset), nil, nil, "metaindex: bad handle for %q", it.key)
				continue
			}
			switch string(it.key) {
			case metaFilterName:
				filterH, hasFilter = h, true
			case metaPropertiesName:
				propsH, hasProps = h, true
			}
		}
		if it.err != nil {
			note(TableFormat, int64(ft.metaindex.offset), nil, nil, "metaindex: %v", it.err)
		} else if !hasProps {
			note(TableFormat, int64(ft.metaindex.offset), nil, nil, "metaindex has no properties")
		}
	}
	if hasProps {
		contents, err := readBlock(propsH, "properties", nil, nil)
		if err != nil {
			return c, err
		}
		if pb := parse(contents, int64(propsH.offset), "properties"); pb != nil {
			if c.Props, reason = decodeProps(pb); reason != "" {
				note(TableFormat, int64(propsH.offset), nil, nil, "%s", reason)
			} else {
				c.PropsOK = true
				c.Props.FileSize = uint64(size)
			}
		}
	}
	if hasFilter {
		contents, err := readBlock(filterH, "filter", nil, nil)
		if err != nil {
			return c, err
		}
		if contents != nil {
			if _, err := decodeBloom(contents); err != nil {
				note(TableFormat, int64(filterH.offset), nil, nil, "filter: %v", err)
			}
		}
	}
	contents, err = readBlock(ft.index, "index", nil, nil)
	if err != nil {
		return c, err
	}
	ib := parse(contents, int64(ft.index.offset), "index")
	if ib == nil {
		c.Issues[len(c.Issues)-1].Err = fmt.Errorf("%w; data blocks not checked", c.Issues[len(c.Issues)-1].Err)
		return c, nil
	}
	index, ok := c.decodeIndex(ib, int64(ft.index.offset), limit, note)
	if !ok {
		return c, nil
	}
	c.DataBlocks = len(index)
	if c.PropsOK && uint64(len(index)) != c.Props.DataBlocks {
		note(TablePropsMismatch, int64(ft.index.offset), nil, nil, "index has %d entries, properties say %d data blocks", len(index), c.Props.DataBlocks)
	}
	if err := c.checkData(r, name, index, progress, note); err != nil {
		return c, err
	}
	if c.PropsOK && c.BlocksChecked == c.DataBlocks {
		c.checkProps(propsH, note)
	}
	return c, nil
}

type noteFunc func(kind TableIssueKind, off int64, lower, upper []byte, format string, args ...any)

// decodeBlock verifies and decompresses an on-disk block (payload and
// trailer); nil after noting the damage.
func (c *TableCheck) decodeBlock(raw []byte, off int64, what string, lower, upper []byte, note noteFunc) []byte {
	payload, typ, err := splitBlock(raw)
	if err != nil {
		kind := TableFormat
		if len(raw) >= blockTrailerLen {
			kind = TableChecksum
		}
		note(kind, off, lower, upper, "%s: %v", what, err)
		return nil
	}
	contents, err := decompress(payload, typ)
	if err != nil {
		note(TableFormat, off, lower, upper, "%s: %v", what, err)
		return nil
	}
	return contents
}

// decodeIndex decodes the index entries, which must locate the data
// blocks one after the other from the header on; ok is false after
// noting why they cannot be read.
func (c *TableCheck) decodeIndex(ib *block, off int64, limit uint64, note noteFunc) ([]indexEntry, bool) {
	var it blockIter
	it.init(ib, TrailerLen)
	var index []indexEntry
	prevEnd := uint64(tableHeaderLen)
	for ok := it.First(); ok; ok = it.Next() {
		h, ok := decodeHandle(it.val)
		if !ok || h.offset != prevEnd || h.length > limit || h.end() > limit {
			note(TableFormat, off, nil, nil, "index: bad handle for block %d; data blocks not checked", len(index))
			return nil, false
		}
		prevEnd = h.end()
		if len(index) > 0 && CompareInternal(index[len(index)-1].sep, it.key) >= 0 {
			note(TableKeyOrder, off, nil, nil, "index: separators out of order at block %d; data blocks not checked", len(index))
			return nil, false
		}
		index = append(index, indexEntry{sep: bytes.Clone(it.key), h: h})
	}
	if it.err != nil {
		note(TableFormat, off, nil, nil, "index: %v; data blocks not checked", it.err)
		return nil, false
	}
	return index, true
}

// checkData reads the data blocks in file order through one buffered
// sequential reader and checks each.
func (c *TableCheck) checkData(r io.ReaderAt, name string, index []indexEntry, progress func(int64), note noteFunc) error {
	if len(index) == 0 {
		return nil
	}
	end := int64(index[len(index)-1].h.end())
	br := bufio.NewReaderSize(io.NewSectionReader(r, tableHeaderLen, end-tableHeaderLen), tableCheckBuffer)
	var raw []byte
	var prevKey []byte // the last key of the previous intact block
	var it blockIter
	for i, e := range index {
		var lower []byte
		if i > 0 {
			lower = index[i-1].sep
		}
		n := int(e.h.length + blockTrailerLen)
		if cap(raw) < n {
			raw = make([]byte, n)
		}
		raw = raw[:n]
		got, err := io.ReadFull(br, raw)
		progress(int64(got))
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				note(TableFormat, int64(e.h.offset), lower, nil, "data block %d: short read: %d of %d bytes", i, got, n)
				return nil
			}
			return fmt.Errorf("lsm: read table %s at %d: %w", name, e.h.offset, err)
		}
		contents := c.decodeBlock(raw, int64(e.h.offset), fmt.Sprintf("data block %d", i), lower, e.sep, note)
		if contents == nil {
			prevKey = nil
			continue
		}
		b, err := parseBlock(contents)
		if err != nil {
			note(TableFormat, int64(e.h.offset), lower, e.sep, "data block %d: %v", i, err)
			prevKey = nil
			continue
		}
		if c.checkBlock(&it, b, i, e, lower, prevKey, note) {
			c.BlocksChecked++
			prevKey = append(prevKey[:0], it.key...)
		} else {
			prevKey = nil
		}
	}
	return nil
}

// checkBlock walks the entries of data block i; false after noting
// damage. On success it.key is the block's last key.
func (c *TableCheck) checkBlock(it *blockIter, b *block, i int, e indexEntry, lower, prevKey []byte, note noteFunc) bool {
	off := int64(e.h.offset)
	var entries, dels, merges uint64
	var first []byte
	minSeq, maxSeq := MaxSeqNum, SeqNum(0)
	it.init(b, TrailerLen)
	prev := prevKey
	var last []byte
	var collected []TableEntry // committed only if the block is intact
	for ok := it.First(); ok; ok = it.Next() {
		k := it.key
		if c.collect != nil && len(k) >= TrailerLen && bytes.HasPrefix(k[:len(k)-TrailerLen], c.collect) {
			collected = append(collected, TableEntry{Key: bytes.Clone(k), Value: bytes.Clone(it.val)})
		}
		if prev != nil && CompareInternal(prev, k) >= 0 {
			note(TableKeyOrder, off, lower, e.sep, "data block %d: key %q does not follow %q", i, k, prev)
			return false
		}
		if CompareInternal(k, e.sep) > 0 || lower != nil && CompareInternal(k, lower) <= 0 {
			note(TableKeyOrder, off, lower, e.sep, "data block %d: key %q outside the block's index bounds", i, k)
			return false
		}
		tr := binary.LittleEndian.Uint64(k[len(k)-TrailerLen:])
		kind, seq := Kind(tr&0xff), SeqNum(tr>>8)
		switch kind {
		case KindDelete:
			dels++
		case KindMerge:
			merges++
		case KindSet:
		default:
			note(TableFormat, off, lower, e.sep, "data block %d: unknown kind %d", i, kind)
			return false
		}
		minSeq, maxSeq = min(minSeq, seq), max(maxSeq, seq)
		if first == nil {
			first = bytes.Clone(k)
		}
		entries++
		last = append(last[:0], k...)
		prev = last
	}
	if it.err != nil {
		note(TableFormat, off, lower, e.sep, "data block %d: %v", i, it.err)
		return false
	}
	if entries == 0 {
		note(TableFormat, off, lower, e.sep, "data block %d holds no entry", i)
		return false
	}
	if c.Entries == 0 || CompareInternal(first, c.Smallest) < 0 {
		c.Smallest = first
	}
	if c.Entries == 0 || CompareInternal(last, c.Largest) > 0 {
		c.Largest = bytes.Clone(last)
	}
	if c.Entries == 0 {
		c.SmallestSeq, c.LargestSeq = minSeq, maxSeq
	}
	c.SmallestSeq, c.LargestSeq = min(c.SmallestSeq, minSeq), max(c.LargestSeq, maxSeq)
	c.Entries += entries
	c.Deletions += dels
	c.Merges += merges
	c.Collected = append(c.Collected, collected...)
	it.key = last
	return true
}

// checkProps compares the properties with what the data blocks hold.
func (c *TableCheck) checkProps(propsH blockHandle, note noteFunc) {
	p := &c.Props
	off := int64(propsH.offset)
	switch {
	case p.NumEntries != c.Entries || p.NumDeletions != c.Deletions || p.NumMerges != c.Merges:
		note(TablePropsMismatch, off, nil, nil, "properties count %d entries (%d deletions, %d merges), the data blocks %d (%d, %d)",
			p.NumEntries, p.NumDeletions, p.NumMerges, c.Entries, c.Deletions, c.Merges)
	case !bytes.Equal(p.Smallest, c.Smallest) || !bytes.Equal(p.Largest, c.Largest):
		note(TablePropsMismatch, off, nil, nil, "properties bound the keys by %q..%q, the data blocks hold %q..%q",
			p.Smallest, p.Largest, c.Smallest, c.Largest)
	case c.Entries > 0 && (p.SmallestSeq != c.SmallestSeq || p.LargestSeq != c.LargestSeq):
		note(TablePropsMismatch, off, nil, nil, "properties bound the sequence numbers by %d..%d, the data blocks hold %d..%d",
			p.SmallestSeq, p.LargestSeq, c.SmallestSeq, c.LargestSeq)
	}
}

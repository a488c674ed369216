package lsm

// This file owns the sstable file format: the header, the footer, block
// handles, the block trailer and the properties block. The writer is in
// table_writer.go, the reader in table_reader.go, the block encoding in
// block.go and the filter in bloom.go.
//
// A table file:
//
//	+--------+--------------+-----+--------------+--------+-------+-------+-----------+--------+
//	| header | data block 0 | ... | data block n | filter | props | index | metaindex | footer |
//	+--------+--------------+-----+--------------+--------+-------+-------+-----------+--------+
//
// header (16 bytes):
//
//	+----------------------+-------------------+-----------------------------+
//	| magic "PLURSST\x00"  | version uint32 LE | checksum uint32 LE          |
//	| (8)                  | (4)               | low 32 bits of xxhash64 of  |
//	|                      |                   | the first 12 bytes          |
//	+----------------------+-------------------+-----------------------------+
//
// Every block on disk (data, filter, props, index, metaindex) is
//
//	+-----------------+--------------------+----------------------------------+
//	| payload (n)     | compression (1)    | xxhash64 of payload+compression  |
//	|                 | 0 none, 1 s2,      | (8, LE)                          |
//	|                 | 2 zstd             |                                  |
//	+-----------------+--------------------+----------------------------------+
//
// A block handle (offset, length) names the payload: length is n and does
// not count the 9-byte trailer. A compressed payload is
// uvarint(uncompressed length) followed by the codec's bytes; a block is
// stored compressed only if that saves at least 1/8 of its size.
//
// The uncompressed contents of data, index, metaindex and properties blocks
// use the block format of block.go (prefix-compressed entries, restart
// points). Data blocks hold internal keys and values. The index holds one
// entry per data block: key = a separator >= the block's last key and < the
// next block's first key, value = uvarint offset, uvarint length. The
// metaindex maps "filter" and "properties" to handles (the filter entry is
// absent when the table has no filter). The properties block maps property
// names (propXxx below) to values. The filter block is the blocked bloom
// filter of bloom.go.
//
// footer (52 bytes, at the end of the file):
//
//	+-------------------+-------------------+---------+-------+----------------+
//	| metaindex handle  | index handle      | version | magic | xxhash64 of    |
//	| offset(8) len(8)  | offset(8) len(8)  | (4)     | (8)   | the 44 bytes   |
//	|                   |                   |         |       | before it (8)  |
//	+-------------------+-------------------+---------+-------+----------------+
//
// All integers are little endian. Every number and name in this comment is
// part of the on-disk format.

import (
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// Compression names the codec of a block. The values are part of the
// on-disk format.
type Compression uint8

const (
	CompressionNone Compression = 0
	CompressionS2   Compression = 1 // hot tier: fast
	CompressionZstd Compression = 2 // cold tier: small
)

func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "none"
	case CompressionS2:
		return "s2"
	case CompressionZstd:
		return "zstd"
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

const (
	// tableMagic opens and closes every table file.
	tableMagic = "PLURSST\x00"
	// tableFormatVersion is the newest version this code writes and reads.
	tableFormatVersion uint32 = 1

	tableHeaderLen  = 16
	tableFooterLen  = 52
	blockTrailerLen = 9 // compression type (1) + xxhash64 (8)

	// metaindex entry names.
	metaFilterName     = "filter"
	metaPropertiesName = "properties"
)

// Property names in the properties block; sorted, because a block's keys
// are added in order.
const (
	propCompression  = "compression"
	propCreationTime = "creation-time" // Unix nanoseconds
	propDataBlocks   = "data-blocks"
	propFilterBits   = "filter-bits-per-key"
	propLargest      = "largest" // raw internal key
	propLargestSeq   = "largest-seq"
	propNumDeletions = "num-deletions"
	propNumEntries   = "num-entries"
	propNumMerges    = "num-merges"
	propRawKeySize   = "raw-key-size"
	propRawValueSize = "raw-value-size"
	propSmallest     = "smallest" // raw internal key
	propSmallestSeq  = "smallest-seq"
)

// TableProps describes a table. Smallest and Largest are internal keys and
// nil for an empty table.
type TableProps struct {
	NumEntries, NumDeletions, NumMerges, RawKeySize, RawValueSize, DataBlocks uint64
	SmallestSeq, LargestSeq                                                   SeqNum
	Smallest, Largest                                                         []byte // internal keys
	Compression                                                               Compression
	FileSize                                                                  uint64

	// FilterBitsPerKey is the bloom filter density the table was written
	// with; 0 when it has no filter.
	FilterBitsPerKey uint64
	// CreationTime is when the writer finished the table, in Unix
	// nanoseconds.
	CreationTime int64
}

// blockHandle locates a block's payload in the file.
type blockHandle struct {
	offset, length uint64
}

// end returns the offset just past the block's trailer.
func (h blockHandle) end() uint64 { return h.offset + h.length + blockTrailerLen }

func appendHandle(dst []byte, h blockHandle) []byte {
	dst = binary.AppendUvarint(dst, h.offset)
	return binary.AppendUvarint(dst, h.length)
}

// decodeHandle decodes a varint handle that must fill b exactly.
func decodeHandle(b []byte) (blockHandle, bool) {
	off, n := binary.Uvarint(b)
	if n <= 0 {
		return blockHandle{}, false
	}
	length, m := binary.Uvarint(b[n:])
	if m <= 0 || n+m != len(b) {
		return blockHandle{}, false
	}
	return blockHandle{offset: off, length: length}, true
}

func encodeHeader() []byte {
	b := make([]byte, tableHeaderLen)
	copy(b, tableMagic)
	binary.LittleEndian.PutUint32(b[8:], tableFormatVersion)
	binary.LittleEndian.PutUint32(b[12:], uint32(xxhash.Sum64(b[:12])))
	return b
}

type footer struct {
	metaindex, index blockHandle
	version          uint32
}

func (f footer) encode() []byte {
	b := make([]byte, tableFooterLen)
	binary.LittleEndian.PutUint64(b[0:], f.metaindex.offset)
	binary.LittleEndian.PutUint64(b[8:], f.metaindex.length)
	binary.LittleEndian.PutUint64(b[16:], f.index.offset)
	binary.LittleEndian.PutUint64(b[24:], f.index.length)
	binary.LittleEndian.PutUint32(b[32:], f.version)
	copy(b[36:], tableMagic)
	binary.LittleEndian.PutUint64(b[44:], xxhash.Sum64(b[:44]))
	return b
}

// decodeFooter parses the last tableFooterLen bytes of a file. It returns a
// reason string on failure so the caller can name the file and offset.
func decodeFooter(b []byte) (footer, string) {
	if len(b) != tableFooterLen {
		return footer{}, "short footer"
	}
	if string(b[36:44]) != tableMagic {
		return footer{}, "bad footer magic"
	}
	if binary.LittleEndian.Uint64(b[44:]) != xxhash.Sum64(b[:44]) {
		return footer{}, "footer checksum mismatch"
	}
	return footer{
		metaindex: blockHandle{binary.LittleEndian.Uint64(b[0:]), binary.LittleEndian.Uint64(b[8:])},
		index:     blockHandle{binary.LittleEndian.Uint64(b[16:]), binary.LittleEndian.Uint64(b[24:])},
		version:   binary.LittleEndian.Uint32(b[32:]),
	}, ""
}

// encodeProps returns the uncompressed properties block.
func encodeProps(p *TableProps) []byte {
	var bw blockWriter
	bw.restartInterval = 1
	var num []byte
	u := func(name string, v uint64) {
		num = binary.AppendUvarint(num[:0], v)
		bw.add([]byte(name), num)
	}
	u(propCompression, uint64(p.Compression))
	u(propCreationTime, uint64(p.CreationTime))
	u(propDataBlocks, p.DataBlocks)
	u(propFilterBits, p.FilterBitsPerKey)
	bw.add([]byte(propLargest), p.Largest)
	u(propLargestSeq, uint64(p.LargestSeq))
	u(propNumDeletions, p.NumDeletions)
	u(propNumEntries, p.NumEntries)
	u(propNumMerges, p.NumMerges)
	u(propRawKeySize, p.RawKeySize)
	u(propRawValueSize, p.RawValueSize)
	bw.add([]byte(propSmallest), p.Smallest)
	u(propSmallestSeq, uint64(p.SmallestSeq))
	return bw.finish()
}

// decodeProps parses a properties block. Unknown names are skipped so a
// later writer may add properties without a format bump.
func decodeProps(b *block) (TableProps, string) {
	var p TableProps
	var it blockIter
	it.init(b, 0)
	for ok := it.First(); ok; ok = it.Next() {
		name, v := it.key, it.val
		switch string(name) {
		case propSmallest:
			p.Smallest = append([]byte(nil), v...)
			continue
		case propLargest:
			p.Largest = append([]byte(nil), v...)
			continue
		}
		x, n := binary.Uvarint(v)
		if n <= 0 || n != len(v) {
			return p, fmt.Sprintf("bad property %q", name)
		}
		switch string(name) {
		case propCompression:
			p.Compression = Compression(x)
		case propCreationTime:
			p.CreationTime = int64(x)
		case propDataBlocks:
			p.DataBlocks = x
		case propFilterBits:
			p.FilterBitsPerKey = x
		case propLargestSeq:
			p.LargestSeq = SeqNum(x)
		case propNumDeletions:
			p.NumDeletions = x
		case propNumEntries:
			p.NumEntries = x
		case propNumMerges:
			p.NumMerges = x
		case propRawKeySize:
			p.RawKeySize = x
		case propRawValueSize:
			p.RawValueSize = x
		case propSmallestSeq:
			p.SmallestSeq = SeqNum(x)
		}
	}
	if err := it.err; err != nil {
		return p, err.Error()
	}
	if len(p.Smallest) == 0 {
		p.Smallest = nil
	}
	if len(p.Largest) == 0 {
		p.Largest = nil
	}
	if (p.Smallest == nil) != (p.NumEntries == 0) || (p.Largest == nil) != (p.NumEntries == 0) {
		return p, "properties: bounds disagree with entry count"
	}
	if p.Smallest != nil && (len(p.Smallest) < TrailerLen || len(p.Largest) < TrailerLen) {
		return p, "properties: bounds are not internal keys"
	}
	return p, ""
}

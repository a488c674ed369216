package lsm

// This file owns writing a table (format in table.go).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/vfs"
)

// TableWriterOptions tune a table's layout. The zero value gives 4 KiB
// blocks, a restart point every 16 entries, a 10 bits/key filter and no
// compression.
type TableWriterOptions struct {
	// BlockSize is the target uncompressed size of a data block; 0: 4096.
	// Larger blocks compress better and shrink the index; smaller ones
	// make a point read decode less.
	BlockSize int
	// RestartInterval is the number of entries between restart points;
	// 0: 16. Fewer means faster seeks in a block and worse prefix
	// compression.
	RestartInterval int
	// BloomBitsPerKey is the filter density; 0: 10 (about 1% false
	// positives); negative: no filter.
	BloomBitsPerKey int
	// Compression is the codec for data and index blocks. The zero value
	// is CompressionNone; callers pass CompressionS2 explicitly.
	Compression Compression
}

// writerBufferSize is how much the writer buffers before writing to the
// file, so small blocks do not cost a system call each.
const writerBufferSize = 256 << 10

// TableWriter writes one table. Add entries in strictly increasing
// internal-key order, then call Finish. A TableWriter is used by one
// goroutine. After a failed write every call returns the same error.
type TableWriter struct {
	f    vfs.File
	opts TableWriterOptions

	out      []byte // bytes not yet written to f
	offset   uint64 // logical end of the file, including out
	err      error
	finished bool

	data, index   blockWriter
	pendingIndex  bool        // a data block was flushed and awaits its index entry
	pendingHandle blockHandle // that block's handle
	lastKey       []byte
	hashes        []uint64 // filter: one hash per distinct user key
	props         TableProps
	comp          compressor
	scratch       []byte
}

// NewTableWriter returns a writer that writes a table to f, which must be
// empty: block offsets are counted from the start of the file.
func NewTableWriter(f vfs.File, opts TableWriterOptions) *TableWriter {
	if opts.BlockSize <= 0 {
		opts.BlockSize = 4096
	}
	if opts.RestartInterval <= 0 {
		opts.RestartInterval = 16
	}
	if opts.BloomBitsPerKey == 0 {
		opts.BloomBitsPerKey = 10
	}
	w := &TableWriter{f: f, opts: opts}
	w.data.restartInterval = opts.RestartInterval
	w.index.restartInterval = opts.RestartInterval
	w.out = append(w.out, encodeHeader()...)
	w.offset = uint64(len(w.out))
	return w
}

// Add appends an entry. ikey must be an internal key greater than the
// previous one; the writer copies ikey and value.
func (w *TableWriter) Add(ikey, value []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.finished {
		return errors.New("lsm: table writer: Add after Finish")
	}
	ukey, seq, kind, ok := SplitInternalKey(ikey)
	if !ok {
		return fmt.Errorf("lsm: table writer: internal key of %d bytes is shorter than its trailer", len(ikey))
	}
	if kind > KindMax {
		return fmt.Errorf("lsm: table writer: unknown kind %d", kind)
	}
	if len(ikey)+len(value) > maxBlockEntryLen {
		return fmt.Errorf("lsm: table writer: entry of %d bytes exceeds %d", len(ikey)+len(value), maxBlockEntryLen)
	}
	first := w.props.NumEntries == 0
	if !first && CompareInternal(w.lastKey, ikey) >= 0 {
		return fmt.Errorf("lsm: table writer: key %q #%d out of order after %q", ukey, seq, UserKey(w.lastKey))
	}
	if w.pendingIndex {
		w.addIndexEntry(appendSeparator(w.scratch[:0], w.lastKey, ikey))
	}
	if w.opts.BloomBitsPerKey > 0 && (first || !bytes.Equal(UserKey(w.lastKey), ukey)) {
		w.hashes = append(w.hashes, xxhash.Sum64(ukey))
	}
	w.data.add(ikey, value)

	p := &w.props
	if first {
		p.Smallest = append([]byte(nil), ikey...)
		p.SmallestSeq, p.LargestSeq = seq, seq
	}
	p.NumEntries++
	switch kind {
	case KindDelete:
		p.NumDeletions++
	case KindMerge:
		p.NumMerges++
	}
	p.RawKeySize += uint64(len(ikey))
	p.RawValueSize += uint64(len(value))
	p.SmallestSeq = min(p.SmallestSeq, seq)
	p.LargestSeq = max(p.LargestSeq, seq)
	w.lastKey = append(w.lastKey[:0], ikey...)

	if w.data.estimatedSize() >= w.opts.BlockSize {
		w.flushDataBlock()
	}
	return w.err
}

// EstimatedSize returns the bytes written so far plus those buffered in the
// current data block.
func (w *TableWriter) EstimatedSize() uint64 {
	n := w.offset + uint64(w.index.estimatedSize())
	if w.data.entries > 0 {
		n += uint64(w.data.estimatedSize())
	}
	return n
}

func (w *TableWriter) addIndexEntry(sep []byte) {
	var hbuf [2 * binary.MaxVarintLen64]byte
	w.index.add(sep, appendHandle(hbuf[:0], w.pendingHandle))
	w.scratch = sep[:0]
	w.pendingIndex = false
}

func (w *TableWriter) flushDataBlock() {
	w.pendingHandle = w.writeBlock(w.data.finish(), w.opts.Compression)
	w.pendingIndex = true
	w.props.DataBlocks++
	w.data.reset()
}

// writeBlock compresses raw as asked, appends it with its trailer and
// returns its handle.
func (w *TableWriter) writeBlock(raw []byte, c Compression) blockHandle {
	payload, used := w.comp.compress(c, raw)
	h := blockHandle{offset: w.offset, length: uint64(len(payload))}
	start := len(w.out)
	w.out = append(w.out, payload...)
	w.out = append(w.out, byte(used))
	w.out = binary.LittleEndian.AppendUint64(w.out, blockChecksum(w.out[start:]))
	w.offset += uint64(len(w.out) - start)
	if len(w.out) >= writerBufferSize {
		w.flushOut()
	}
	return h
}

func (w *TableWriter) flushOut() {
	if w.err != nil || len(w.out) == 0 {
		return
	}
	if _, err := w.f.Write(w.out); err != nil {
		w.err = fmt.Errorf("lsm: table writer: %w", err)
	}
	w.out = w.out[:0]
}

// Finish writes the last data block, the filter, properties, index,
// metaindex and footer. It does not sync or close the file.
func (w *TableWriter) Finish() (TableProps, error) {
	if w.err != nil {
		return TableProps{}, w.err
	}
	if w.finished {
		return TableProps{}, errors.New("lsm: table writer: Finish called twice")
	}
	w.finished = true
	defer w.comp.release()

	if w.data.entries > 0 {
		w.flushDataBlock()
	}
	if w.pendingIndex {
		w.addIndexEntry(appendSuccessor(w.scratch[:0], w.lastKey))
	}

	var meta blockWriter
	meta.restartInterval = 1
	var hbuf []byte
	if w.opts.BloomBitsPerKey > 0 {
		h := w.writeBlock(buildBloom(w.hashes, w.opts.BloomBitsPerKey), CompressionNone)
		hbuf = appendHandle(hbuf[:0], h)
		meta.add([]byte(metaFilterName), hbuf)
		w.props.FilterBitsPerKey = uint64(w.opts.BloomBitsPerKey)
	}
	w.props.Largest = append([]byte(nil), w.lastKey...)
	if w.props.NumEntries == 0 {
		w.props.Largest = nil
	}
	w.props.Compression = w.opts.Compression
	w.props.CreationTime = time.Now().UnixNano()
	ph := w.writeBlock(encodeProps(&w.props), CompressionNone)
	meta.add([]byte(metaPropertiesName), appendHandle(hbuf[:0], ph))

	ft := footer{version: tableFormatVersion}
	ft.index = w.writeBlock(w.index.finish(), w.opts.Compression)
	ft.metaindex = w.writeBlock(meta.finish(), CompressionNone)
	w.out = append(w.out, ft.encode()...)
	w.offset += tableFooterLen
	w.flushOut()
	if w.err != nil {
		return TableProps{}, w.err
	}
	w.props.FileSize = w.offset
	return w.props, nil
}

// appendSeparator appends a short internal key k with a <= k < b (a < b),
// as LevelDB's FindShortestSeparator: when the user keys differ past a
// common prefix by more than one in the first differing byte, the user key
// is cut after that byte, incremented, and given the largest trailer so
// that it sorts before every real entry of that user key.
func appendSeparator(dst, a, b []byte) []byte {
	ua, ub := UserKey(a), UserKey(b)
	n := commonPrefixLen(ua, ub)
	if n < len(ua) && n < len(ub) && ua[n] < 0xff && ua[n]+1 < ub[n] {
		dst = append(dst, ua[:n+1]...)
		dst[len(dst)-1]++
		return binary.LittleEndian.AppendUint64(dst, MakeTrailer(MaxSeqNum, KindMax))
	}
	return append(dst, a...)
}

// appendSuccessor appends a short internal key k >= a, as LevelDB's
// FindShortSuccessor.
func appendSuccessor(dst, a []byte) []byte {
	ua := UserKey(a)
	for i, c := range ua {
		if c != 0xff {
			dst = append(dst, ua[:i+1]...)
			dst[len(dst)-1]++
			return binary.LittleEndian.AppendUint64(dst, MakeTrailer(MaxSeqNum, KindMax))
		}
	}
	return append(dst, a...)
}

// Package record frames a stream of records into checksummed chunks inside
// fixed 32 KiB blocks. The WAL segments and the MANIFEST use it.
//
// The stream is a sequence of blocks. A record is split into one or more
// chunks; a chunk never crosses a block boundary, so every block begins at
// a chunk header, which lets a reader resynchronise after damage:
//
//	       block 0 (32 KiB)                       block 1
//	+----------+----------+-----+------------+----------+---------+---
//	| chunk    | chunk    | ... | zero pad   | chunk    | chunk   |
//	+----------+----------+-----+ (< 11 B)   +----------+---------+---
//
//	chunk:
//	+--------------+-----------+---------+-----------------+
//	| checksum (8) | length(2) | type(1) | payload (length)|
//	+--------------+-----------+---------+-----------------+
//
// checksum is xxhash64, little endian, over type, length and payload;
// length is little endian. type is 1 (full record), 2 (first fragment),
// 3 (middle) or 4 (last). A block whose remaining space is smaller than a
// header is padded with zeros. All numbers here are part of the format.
//
// The stream may start after a file header that the caller writes and
// reads itself; offsets in errors add that base.
package record

import (
	"encoding/binary"
	"errors"
	"io"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/errs"
)

const (
	// BlockSize is the size of a block.
	BlockSize = 32 << 10
	// HeaderSize is the size of a chunk header.
	HeaderSize = 11

	typeFull   = 1
	typeFirst  = 2
	typeMiddle = 3
	typeLast   = 4
)

// MaxRecordSize bounds a record so a damaged length cannot make a reader
// allocate without limit.
const MaxRecordSize = 1 << 30

func checksum(typ byte, payload []byte) uint64 {
	var h [3]byte
	binary.LittleEndian.PutUint16(h[0:2], uint16(len(payload)))
	h[2] = typ
	d := xxhash.New()
	d.Write(h[:])
	d.Write(payload)
	return d.Sum64()
}

// Framer appends framed records to a byte slice. It remembers where in the
// current block the stream is. The zero Framer starts at a block boundary.
type Framer struct {
	blockOff int // bytes used in the current block
}

// NewFramer returns a Framer for a stream that already holds streamLen
// bytes (not counting a file header).
func NewFramer(streamLen int64) Framer { return Framer{blockOff: int(streamLen % BlockSize)} }

// Append frames record p onto dst and returns the extended slice.
func (f *Framer) Append(dst, p []byte) []byte {
	first := true
	for {
		room := BlockSize - f.blockOff
		if room < HeaderSize {
			dst = append(dst, make([]byte, room)...)
			f.blockOff = 0
			room = BlockSize
		}
		n := min(len(p), room-HeaderSize)
		last := n == len(p)
		var typ byte
		switch {
		case first && last:
			typ = typeFull
		case first:
			typ = typeFirst
		case last:
			typ = typeLast
		default:
			typ = typeMiddle
		}
		var h [HeaderSize]byte
		binary.LittleEndian.PutUint64(h[0:8], checksum(typ, p[:n]))
		binary.LittleEndian.PutUint16(h[8:10], uint16(n))
		h[10] = typ
		dst = append(dst, h[:]...)
		dst = append(dst, p[:n]...)
		f.blockOff += HeaderSize + n
		p = p[n:]
		first = false
		if last {
			return dst
		}
	}
}

// FramedSize returns how many bytes Append would add for a record of n bytes
// at the Framer's current position.
func (f Framer) FramedSize(n int) int {
	total := 0
	off := f.blockOff
	for first := true; first || n > 0; first = false {
		room := BlockSize - off
		if room < HeaderSize {
			total += room
			off = 0
			room = BlockSize
		}
		c := min(n, room-HeaderSize)
		total += HeaderSize + c
		off += HeaderSize + c
		n -= c
	}
	return total
}

// Writer writes framed records to an io.Writer, buffering until Flush.
type Writer struct {
	w      io.Writer
	framer Framer
	buf    []byte
}

// NewWriter returns a Writer for a stream that starts at a block boundary.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write frames one record into the buffer.
func (w *Writer) Write(p []byte) { w.buf = w.framer.Append(w.buf, p) }

// Flush writes the buffered bytes to the underlying writer.
func (w *Writer) Flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.w.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Reader reads records back. It reads the stream block by block.
type Reader struct {
	r    io.Reader
	file string
	base int64 // offset of the stream in the file

	block    []byte // the current block's bytes (may be short at EOF)
	blockNum int64  // index of the current block
	pos      int    // read position within block
	eof      bool   // the underlying reader is exhausted
	rec      []byte // record being assembled

	recOff int64 // file offset where the last returned record (or error) starts
	endOff int64 // file offset just past the last whole record
}

// NewReader returns a Reader over r. file names the file in errors; base is
// the file offset at which the stream starts.
func NewReader(r io.Reader, file string, base int64) *Reader {
	return &Reader{r: r, file: file, base: base, block: make([]byte, 0, BlockSize), blockNum: -1,
		recOff: base, endOff: base}
}

// Offset is the file offset at which the record last returned by Next
// starts, or at which the damage Next reported was found.
func (r *Reader) Offset() int64 { return r.recOff }

// End is the file offset just past the last record Next returned
// successfully (base before the first). A caller that finds a torn tail
// truncates the file here.
func (r *Reader) End() int64 { return r.endOff }

func (r *Reader) fileOff() int64 {
	if r.blockNum < 0 {
		return r.base
	}
	return r.base + r.blockNum*BlockSize + int64(r.pos)
}

// loadBlock reads the next block; it returns io.EOF when none is left.
func (r *Reader) loadBlock() error {
	if r.eof {
		return io.EOF
	}
	r.block = r.block[:BlockSize]
	n, err := io.ReadFull(r.r, r.block)
	r.block = r.block[:n]
	r.pos = 0
	r.blockNum++
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		r.eof = true
		if n == 0 {
			return io.EOF
		}
	case err != nil:
		return err
	}
	return nil
}

// nextChunk returns the next chunk's type and payload. At the end of the
// stream it returns io.EOF; a damaged chunk gives a corruption error.
func (r *Reader) nextChunk() (byte, []byte, error) {
	for {
		if r.blockNum < 0 || BlockSize-r.pos < HeaderSize || (r.pos >= len(r.block)) {
			if r.blockNum >= 0 && len(r.block) < BlockSize && r.pos >= len(r.block) {
				return 0, nil, io.EOF
			}
			if r.blockNum >= 0 && BlockSize-r.pos < HeaderSize {
				// Block tail padding (possibly cut short at the end of
				// the stream).
				for _, b := range r.block[r.pos:] {
					if b != 0 {
						return 0, nil, errs.Corruptf(r.file, r.fileOff(), "non-zero block padding")
					}
				}
			}
			if err := r.loadBlock(); err != nil {
				return 0, nil, err
			}
			continue
		}
		rest := r.block[r.pos:]
		if len(rest) < HeaderSize {
			return 0, nil, errs.Corruptf(r.file, r.fileOff(), "truncated chunk header (%d bytes)", len(rest))
		}
		sum := binary.LittleEndian.Uint64(rest[0:8])
		n := int(binary.LittleEndian.Uint16(rest[8:10]))
		typ := rest[10]
		if typ < typeFull || typ > typeLast {
			if typ == 0 && sum == 0 && n == 0 {
				return 0, nil, errs.Corruptf(r.file, r.fileOff(), "zeroed chunk header")
			}
			return 0, nil, errs.Corruptf(r.file, r.fileOff(), "invalid chunk type %d", typ)
		}
		if HeaderSize+n > len(rest) {
			return 0, nil, errs.Corruptf(r.file, r.fileOff(), "chunk length %d overruns block", n)
		}
		payload := rest[HeaderSize : HeaderSize+n]
		if checksum(typ, payload) != sum {
			return 0, nil, errs.Corruptf(r.file, r.fileOff(), "chunk checksum mismatch")
		}
		r.pos += HeaderSize + n
		return typ, payload, nil
	}
}

// Next returns the next record. The slice is valid until the next call.
// At the clean end of the stream it returns io.EOF. Damage gives an error
// wrapping errs.ErrCorruption that names the file and offset; a stream that
// ends inside a record gives one too.
func (r *Reader) Next() ([]byte, error) {
	r.rec = r.rec[:0]
	inRecord := false
	for {
		off := r.fileOff()
		typ, payload, err := r.nextChunk()
		if err != nil {
			if err == io.EOF {
				if inRecord {
					r.recOff = off
					return nil, errs.Corruptf(r.file, off, "stream ends inside a record")
				}
				r.recOff = off
				return nil, io.EOF
			}
			var ce *errs.CorruptionError
			if errors.As(err, &ce) {
				r.recOff = ce.Offset
			} else {
				r.recOff = off
			}
			return nil, err
		}
		if !inRecord {
			// Chunk headers begin on the first block with room; recompute
			// the record's start from the chunk just read.
			r.recOff = r.fileOff() - int64(HeaderSize+len(payload))
		}
		switch typ {
		case typeFull:
			if inRecord {
				return nil, errs.Corruptf(r.file, r.recOff, "full chunk inside a fragmented record")
			}
			r.endOff = r.fileOff()
			return payload, nil
		case typeFirst:
			if inRecord {
				return nil, errs.Corruptf(r.file, r.recOff, "first chunk inside a fragmented record")
			}
			inRecord = true
			r.rec = append(r.rec, payload...)
		case typeMiddle, typeLast:
			if !inRecord {
				return nil, errs.Corruptf(r.file, r.recOff, "fragment without a first chunk")
			}
			if len(r.rec)+len(payload) > MaxRecordSize {
				return nil, errs.Corruptf(r.file, r.recOff, "record exceeds %d bytes", MaxRecordSize)
			}
			r.rec = append(r.rec, payload...)
			if typ == typeLast {
				r.endOff = r.fileOff()
				return r.rec, nil
			}
		}
	}
}

// ValidChunkAfter reports whether a chunk with a valid checksum starts at
// any byte offset in [from, size) of f, for a stream that starts at file
// offset base. After Next reports damage at offset d, a caller asks
// ValidChunkAfter(f, base, d+1, size) to tell a torn tail (nothing valid
// follows: the write was cut short) from damage in the middle of the stream,
// which must not be mistaken for a tail: records after it were acknowledged.
//
// Every offset is tried, not only block starts, since damage and the next
// record often share a block. The scan stops at the first valid chunk, so
// it is cheap when data follows; when none does, what is left is a torn
// write, which is short.
func ValidChunkAfter(f io.ReaderAt, base, from, size int64) (bool, error) {
	if from < base {
		from = base
	}
	block := make([]byte, BlockSize)
	for start := base + (from-base)/BlockSize*BlockSize; start < size; start += BlockSize {
		n := int(min(int64(BlockSize), size-start))
		if _, err := f.ReadAt(block[:n], start); err != nil && err != io.EOF {
			return false, err
		}
		b := block[:n]
		for p := int(max(0, from-start)); p+HeaderSize <= n; p++ {
			typ := b[p+10]
			if typ < typeFull || typ > typeLast {
				continue
			}
			end := p + HeaderSize + int(binary.LittleEndian.Uint16(b[p+8:p+10]))
			if end > n {
				continue
			}
			if checksum(typ, b[p+HeaderSize:end]) == binary.LittleEndian.Uint64(b[p:p+8]) {
				return true, nil
			}
		}
	}
	return false, nil
}

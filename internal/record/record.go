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
	started  bool   // a block has been loaded
	startOff int64  // file offset where reading starts
	skip     int    // bytes of the first block to skip (NewReaderAt)
	eof      bool   // the underlying reader is exhausted
	rec      []byte // record being assembled

	recOff int64 // file offset where the last returned record (or error) starts
	endOff int64 // file offset just past the last whole record
}

// NewReader returns a Reader over r. file names the file in errors; base is
// the file offset at which the stream starts.
func NewReader(r io.Reader, file string, base int64) *Reader {
	return &Reader{r: r, file: file, base: base, block: make([]byte, 0, BlockSize), blockNum: -1,
		startOff: base, recOff: base, endOff: base}
}

// NewReaderAt returns a Reader over the first size bytes of f that starts
// reading at file offset off, which must be where a chunk starts (or
// block padding): a reader resynchronised after damage (see
// NextRecordStart). base is the file offset at which the stream starts.
func NewReaderAt(f io.ReaderAt, file string, base, off, size int64) *Reader {
	off = max(off, base)
	bstart := base + (off-base)/BlockSize*BlockSize
	r := NewReader(io.NewSectionReader(f, bstart, max(0, size-bstart)), file, base)
	r.blockNum = (bstart-base)/BlockSize - 1
	r.skip = int(off - bstart)
	r.startOff, r.recOff, r.endOff = off, off, off
	return r
}

// Offset is the file offset at which the record last returned by Next
// starts, or at which the damage Next reported was found.
func (r *Reader) Offset() int64 { return r.recOff }

// End is the file offset just past the last record Next returned
// successfully (base before the first). A caller that finds a torn tail
// truncates the file here.
func (r *Reader) End() int64 { return r.endOff }

func (r *Reader) fileOff() int64 {
	if !r.started {
		return r.startOff
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
	r.pos = r.skip
	r.skip = 0
	r.started = true
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
		if !r.started || BlockSize-r.pos < HeaderSize || (r.pos >= len(r.block)) {
			if r.started && len(r.block) < BlockSize && r.pos >= len(r.block) {
				return 0, nil, io.EOF
			}
			if r.started && BlockSize-r.pos < HeaderSize {
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

// A torn tail is what a crash can leave after the last whole record of a
// stream whose writes were cut short or reached the disk only in part:
// CheckTail tells it from damage. Torn damage always shows as zero bytes
// or a short file, since a write that did not reach the disk leaves the
// bytes it would have written as zeroes (or leaves the file shorter), and
// a write that reached it in part kept a prefix of its bytes. So every
// byte after the last whole record must be one of:
//
//   - part of a whole chunk with a valid checksum (a later write that was
//     kept, even though an earlier one was lost);
//   - a zero byte (a write that was lost; block padding);
//   - part of a cut chunk: a chunk whose header is whole but which runs past
//     the end of the file (without crossing its block) or whose bytes are
//     zero from a sector boundary on (the rest of it was lost; see
//     SectorSize), or a header whose bytes are zero from a sector boundary
//     on (a write that kept fewer than HeaderSize bytes of it).
//
// Chunks are looked for right after the previous chunk and, after a run of
// zeros, at each of its bytes (a chunk's checksum may begin with up to 8
// zero bytes). Anything else is corruption: a whole chunk whose checksum fails
// and whose last byte is not zero (a bit flip), non-zero block padding, a
// chunk longer than its block, bytes that start no chunk.
//
// The ambiguity: damage that zeroes bytes from a sector boundary on (a
// flip into a chunk whose own last bytes are zero across a sector
// boundary, a zeroed sector), or that makes a last chunk's length run past
// the end of the file, looks exactly like a torn write. A caller that knows
// the stream was closed cleanly must treat any damage as corruption.

// CheckTail reports whether bytes [from, size) of f, a stream that starts
// at file offset base, are a torn tail (see above). It returns nil if they
// are, or an error wrapping errs.ErrCorruption naming file and the offset
// of the first byte that no crash explains.
func CheckTail(f io.ReaderAt, file string, base, from, size int64) error {
	from = max(from, base)
	block := make([]byte, BlockSize)
	for p := from; p < size; {
		bstart := base + (p-base)/BlockSize*BlockSize
		n := int(min(BlockSize, size-bstart))
		if _, err := f.ReadAt(block[:n], bstart); err != nil && err != io.EOF {
			return err
		}
		b := block[:n]
		atEOF := bstart+int64(n) == size
		i := int(p - bstart)
		// zeroStart: where the bytes since the last chunk (all zero so
		// far) begin; a chunk may start anywhere from there.
		zeroStart := i
		for i < n {
			if BlockSize-i < HeaderSize {
				// Block padding: zeros, whether written or lost.
				for j := i; j < n; j++ {
					if b[j] != 0 {
						return errs.Corruptf(file, bstart+int64(j), "non-zero block padding after the last whole record")
					}
				}
				break
			}
			if end, ok := wholeChunk(b, i); ok {
				i, zeroStart = end, end
				continue
			}
			if b[i] == 0 {
				i++
				continue
			}
			// The first non-zero byte since the last chunk: a chunk
			// starts here, or up to 8 bytes earlier if its checksum
			// begins with zero bytes. It must be one cut short. Fewer
			// zeros than a header are no lost write (a write holds at
			// least one chunk): the chunk starts where they do.
			found := false
			lo := max(zeroStart, i-8)
			if i-zeroStart < HeaderSize {
				lo = zeroStart
				i = zeroStart
			}
			for c := i; c >= lo; c-- {
				if end, ok := cutChunk(b, bstart, c, atEOF); ok {
					i, zeroStart, found = end, end, true
					break
				}
			}
			if !found {
				return errs.Corruptf(file, bstart+int64(i), "damage after the last whole record is not a torn write (a whole chunk with a bad checksum, or garbage)")
			}
		}
		p = bstart + int64(n)
	}
	return nil
}

// wholeChunk reports whether a chunk with a valid checksum starts at b[i]
// (b is one block, maybe short), and where it ends.
func wholeChunk(b []byte, i int) (int, bool) {
	if len(b)-i < HeaderSize {
		return 0, false
	}
	typ := b[i+10]
	if typ < typeFull || typ > typeLast {
		return 0, false
	}
	end := i + HeaderSize + int(binary.LittleEndian.Uint16(b[i+8:i+10]))
	if end > len(b) {
		return 0, false
	}
	return end, checksum(typ, b[i+HeaderSize:end]) == binary.LittleEndian.Uint64(b[i:i+8])
}

// SectorSize is the unit a disk writes whole. A write cut short by a power
// loss keeps a prefix that ends at a multiple of it (a file offset), so the
// zeros that end a cut chunk start at a sector boundary. (A write cut short
// by the process, on a full disk say, ends the file instead: a chunk
// running past the end of the file may end anywhere.)
const SectorSize = 512

// cutChunk reports whether a chunk starting at b[c] was cut short by a
// crash (see CheckTail), and where its bytes end. b is one block, at file
// offset bstart; atEOF: the file ends with b.
func cutChunk(b []byte, bstart int64, c int, atEOF bool) (int, bool) {
	if len(b)-c < HeaderSize {
		return len(b), atEOF // the header runs past the end of the file
	}
	typ := b[c+10]
	if typ == 0 {
		// The header's last bytes were lost.
		return c + HeaderSize, zeroTailAtSector(b, bstart, c, c+HeaderSize)
	}
	if typ > typeLast {
		return 0, false
	}
	end := c + HeaderSize + int(binary.LittleEndian.Uint16(b[c+8:c+10]))
	switch {
	case end > BlockSize:
		return 0, false // no writer makes such a chunk
	case end > len(b):
		return len(b), atEOF
	case zeroTailAtSector(b, bstart, c, end):
		return end, true
	}
	return 0, false
}

// zeroTailAtSector reports whether b[c:end] ends in zeros that begin at or
// before a sector boundary after c: what a write torn there leaves.
func zeroTailAtSector(b []byte, bstart int64, c, end int) bool {
	z := end
	for z > c && b[z-1] == 0 {
		z--
	}
	if z == end {
		return false
	}
	lo := bstart + int64(max(z, c+1))
	q := (lo + SectorSize - 1) / SectorSize * SectorSize
	return q < bstart+int64(end)
}

// NextRecordStart returns the first file offset in [from, size) of f, a
// stream that starts at file offset base, at which a chunk with a valid
// checksum starts a record (a full or first chunk): where a reader
// resynchronises after damage. ok is false if there is none.
//
// Every offset is tried, not only block starts, since damage and the next
// record often share a block; a 64-bit checksum makes a false match
// negligible.
func NextRecordStart(f io.ReaderAt, base, from, size int64) (off int64, ok bool, err error) {
	from = max(from, base)
	block := make([]byte, BlockSize)
	for start := base + (from-base)/BlockSize*BlockSize; start < size; start += BlockSize {
		n := int(min(int64(BlockSize), size-start))
		if _, err := f.ReadAt(block[:n], start); err != nil && err != io.EOF {
			return 0, false, err
		}
		b := block[:n]
		for p := int(max(0, from-start)); p+HeaderSize <= n; p++ {
			if typ := b[p+10]; typ != typeFull && typ != typeFirst {
				continue
			}
			if _, valid := wholeChunk(b, p); valid {
				return start + int64(p), true, nil
			}
		}
	}
	return 0, false, nil
}

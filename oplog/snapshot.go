package oplog

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/s2"

	"github.com/plures/pluresdb/internal/errs"
)

// State snapshots: the full user state of a replica at one point, as
// (namespace, key, portable state) entries in ascending order, with the
// replica's version vector, tombstone collection horizon and clock (see
// "State snapshot" in the package doc for the bytes). SnapshotWriter
// streams one out a chunk at a time; SnapshotReader reads one from any
// io.Reader a chunk at a time and checks everything before it returns an
// entry, so neither holds more than a chunk in memory.

// Snapshot constants. All are part of the format but for
// snapshotChunkTarget, which only the writer uses.
const (
	snapshotMagic = "PLRSSNAP"
	// snapshotVersion 2 allows entries whose state the caller checks
	// (SnapshotReader.Check): the time series namespace's.
	snapshotVersion = 2
	whatSnapshot    = "state snapshot"

	// snapshotChunkTarget is the raw size a writer keeps a chunk under
	// when it can (an entry larger than that gets a chunk of its own).
	snapshotChunkTarget = 256 << 10
	// maxSnapshotChunk bounds the raw (and stored) size of a chunk a
	// reader accepts, as for change streams: a state of the largest value
	// the engine accepts, with its key and fields.
	maxSnapshotChunk = maxStreamChunk
	// maxSnapshotHeader bounds the header: a version vector of a million
	// replicas.
	maxSnapshotHeader = 64 << 20
	// minSnapshotEntry is the smallest encoded entry: namespace, key
	// length, a one-byte key, state length, a two-byte state.
	minSnapshotEntry = 6
)

// SnapshotCodec says how a SnapshotWriter compresses its chunks.
type SnapshotCodec uint8

const (
	// SnapshotS2 compresses with S2: fast, the default.
	SnapshotS2 SnapshotCodec = codecS2
	// SnapshotZstd compresses with zstd: smaller, slower.
	SnapshotZstd SnapshotCodec = codecZstd
	// SnapshotRaw stores chunks uncompressed (tests, incompressible data).
	SnapshotRaw SnapshotCodec = codecNone
)

// SnapshotHeader describes a snapshot: whose state it is and what that
// state covers.
type SnapshotHeader struct {
	// Source is the replica the state was read from.
	Source ReplicaID
	// VV is the source's version vector at the point the state was read,
	// its own entry (its last local sequence number) included: the state
	// holds exactly the operations it covers.
	VV VersionVector
	// Horizon is the source's tombstone collection horizon: tombstones at
	// or below it may have been dropped from the state.
	Horizon Timestamp
	// Clock is the source's clock: no timestamp in the state is above it.
	Clock Timestamp
}

// SnapshotTrailer is what a snapshot's trailer says, checked by the
// reader against what it read.
type SnapshotTrailer struct {
	Entries uint64 // (namespace, key, state) entries
	Chunks  uint64
}

// SnapshotWriter writes a snapshot: the header when created, entries as
// they come (in chunks), the trailer on Close. It holds one chunk in
// memory. A SnapshotWriter is used by one goroutine at a time.
type SnapshotWriter struct {
	w      io.Writer
	codec  SnapshotCodec
	digest *xxhash.Digest // every byte written so far
	err    error          // sticky
	closed bool

	chunk      []byte // raw entries of the chunk being filled
	chunkN     int
	raw        []byte
	out        []byte
	frame      []byte
	lastNS     byte
	lastKey    []byte
	hasLast    bool
	written    int64
	trailer    SnapshotTrailer
	rawTotal   int64
	frameTotal int64
}

// NewSnapshotWriter writes the header of a snapshot to w and returns a
// writer for its entries.
func NewSnapshotWriter(w io.Writer, h SnapshotHeader, codec SnapshotCodec) (*SnapshotWriter, error) {
	if codec != SnapshotS2 && codec != SnapshotZstd && codec != SnapshotRaw {
		return nil, fmt.Errorf("oplog: snapshot codec %d", codec)
	}
	if h.Source.IsZero() {
		return nil, errors.New("oplog: snapshot of the zero replica ID")
	}
	for r, s := range h.VV {
		if r.IsZero() || s == 0 {
			return nil, fmt.Errorf("oplog: snapshot version vector entry %s:%d", r, s)
		}
	}
	sw := &SnapshotWriter{w: w, codec: codec, digest: xxhash.New()}
	hdr := appendSnapshotHeader(nil, &h)
	b := append([]byte(snapshotMagic), snapshotVersion)
	b = binary.AppendUvarint(b, uint64(len(hdr)))
	b = append(b, hdr...)
	b = binary.LittleEndian.AppendUint64(b, xxhash.Sum64(b))
	if err := sw.write(b); err != nil {
		return nil, err
	}
	return sw, nil
}

func appendSnapshotHeader(dst []byte, h *SnapshotHeader) []byte {
	dst = append(dst, h.Source[:]...)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(h.Clock))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(h.Horizon))
	return h.VV.Append(dst)
}

func (sw *SnapshotWriter) write(b []byte) error {
	if sw.err != nil {
		return sw.err
	}
	_, _ = sw.digest.Write(b)
	n, err := sw.w.Write(b)
	sw.written += int64(n)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		sw.err = fmt.Errorf("oplog: writing a snapshot: %w", err)
	}
	return sw.err
}

// Written returns the number of bytes written so far.
func (sw *SnapshotWriter) Written() int64 { return sw.written }

// Add appends an entry: namespace ns, key and portable state (see
// AppendPortableState). Entries must come in strictly ascending (ns, key)
// order, with a non-empty key. The state is not checked here (the reader
// checks it). An entry too large for a chunk is refused.
func (sw *SnapshotWriter) Add(ns byte, key, state []byte) error {
	if sw.err != nil {
		return sw.err
	}
	if sw.closed {
		return errors.New("oplog: snapshot writer is closed")
	}
	if len(key) == 0 {
		return errors.New("oplog: snapshot entry with an empty key")
	}
	if sw.hasLast && (ns < sw.lastNS || ns == sw.lastNS && bytes.Compare(key, sw.lastKey) <= 0) {
		return fmt.Errorf("oplog: snapshot entry %d/%q after %d/%q: not ascending", ns, key, sw.lastNS, sw.lastKey)
	}
	size := 1 + 2*binary.MaxVarintLen64 + len(key) + len(state)
	if size+binary.MaxVarintLen64 > maxSnapshotChunk {
		return fmt.Errorf("oplog: snapshot entry %q of %d bytes is above the %d a chunk holds", key, size, maxSnapshotChunk)
	}
	if len(sw.chunk) > 0 && len(sw.chunk)+size > snapshotChunkTarget {
		if err := sw.flushChunk(); err != nil {
			return err
		}
	}
	sw.chunk = append(sw.chunk, ns)
	sw.chunk = appendBytes(sw.chunk, key)
	sw.chunk = appendBytes(sw.chunk, state)
	sw.chunkN++
	sw.lastNS, sw.lastKey, sw.hasLast = ns, append(sw.lastKey[:0], key...), true
	sw.trailer.Entries++
	return nil
}

// flushChunk compresses and writes the chunk being filled.
func (sw *SnapshotWriter) flushChunk() error {
	if sw.chunkN == 0 {
		return nil
	}
	raw := binary.AppendUvarint(sw.raw[:0], uint64(sw.chunkN))
	raw = append(raw, sw.chunk...)
	sw.raw = raw
	codec := byte(sw.codec)
	var stored []byte
	switch sw.codec {
	case SnapshotS2:
		stored = s2.Encode(sw.out[:cap(sw.out)], raw)
	case SnapshotZstd:
		stored = zstdEncoder().EncodeAll(raw, sw.out[:0])
	}
	sw.rawTotal += int64(len(raw))
	frameSize := int64(2 + uvarintLen(uint64(len(raw))) + uvarintLen(uint64(len(stored))) + len(stored) + 8)
	if sw.codec == SnapshotRaw || len(stored) >= len(raw) ||
		sw.rawTotal > maxExpansion*(sw.frameTotal+frameSize) {
		// Incompressible, or so compressible that the reader's bound on
		// expansion would refuse it.
		codec, stored = codecNone, raw
	} else {
		sw.out = stored[:0]
	}
	f := append(sw.frame[:0], tagChunk, codec)
	f = binary.AppendUvarint(f, uint64(len(raw)))
	f = binary.AppendUvarint(f, uint64(len(stored)))
	f = append(f, stored...)
	f = binary.LittleEndian.AppendUint64(f, xxhash.Sum64(f))
	sw.frame = f
	sw.frameTotal += int64(len(f))
	sw.chunk, sw.chunkN = sw.chunk[:0], 0
	sw.trailer.Chunks++
	return sw.write(f)
}

// Close writes the last chunk and the trailer and returns what the
// trailer says. It does not close the underlying writer.
func (sw *SnapshotWriter) Close() (SnapshotTrailer, error) {
	if sw.closed {
		return sw.trailer, sw.err
	}
	if err := sw.flushChunk(); err != nil {
		return sw.trailer, err
	}
	sw.closed = true
	t := []byte{tagTrailer}
	t = binary.AppendUvarint(t, sw.trailer.Entries)
	t = binary.AppendUvarint(t, sw.trailer.Chunks)
	_, _ = sw.digest.Write(t)
	t = binary.LittleEndian.AppendUint64(t, sw.digest.Sum64())
	n, err := sw.w.Write(t)
	sw.written += int64(n)
	if err == nil && n < len(t) {
		err = io.ErrShortWrite
	}
	if err != nil {
		sw.err = fmt.Errorf("oplog: writing a snapshot: %w", err)
	}
	return sw.trailer, sw.err
}

// SnapshotReader reads a snapshot from an io.Reader, a chunk at a time.
// Every chunk's checksum is verified and every entry checked (ascending
// order, a canonical portable state) before Next returns one of its
// entries; Next returns io.EOF only after the trailer's counts and
// whole-stream checksum have been verified and nothing follows it. A
// caller that must not act on a damaged snapshot reads it to io.EOF first
// (DB.ImportSnapshot copies it to a file meanwhile, then reads the file).
//
// Errors wrap errs.ErrCorruption with the offset in the stream, or
// errs.ErrNewerFormat. A SnapshotReader is used by one goroutine at a
// time.
type SnapshotReader struct {
	r      *bufio.Reader
	off    int64
	digest *xxhash.Digest // every byte read so far
	header SnapshotHeader
	err    error // sticky

	frame   []byte // the chunk being read, as stored
	raw     []byte // its decompressed entries
	entries []byte // what is left of raw
	left    uint64 // entries left in the chunk
	chunkAt int64  // offset of the chunk
	rawTotal,
	frameTotal int64

	// Check, if set, checks each entry's state instead of
	// CheckPortableState: the caller knows the namespaces whose states
	// are not documents. Set it before the first Next.
	Check func(ns byte, key, state []byte) error

	count   SnapshotTrailer
	lastNS  byte
	lastKey []byte
	hasLast bool
	done    bool
}

// NewSnapshotReader reads and checks the header of a snapshot from r.
func NewSnapshotReader(r io.Reader) (*SnapshotReader, error) {
	sr := &SnapshotReader{r: bufio.NewReaderSize(r, 64<<10), digest: xxhash.New()}
	var head [len(snapshotMagic) + 1]byte
	if err := sr.readFull(head[:], "header"); err != nil {
		return nil, err
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return nil, errs.Corruptf(whatSnapshot, 0, "bad magic %q", head[:len(snapshotMagic)])
	}
	switch v := head[len(snapshotMagic)]; {
	case v > snapshotVersion:
		return nil, errs.NewerFormatf(whatSnapshot, uint32(v), snapshotVersion)
	case v == 0:
		return nil, errs.Corruptf(whatSnapshot, int64(len(snapshotMagic)), "format version 0")
	}
	n, err := sr.readUvarint("header length")
	if err != nil {
		return nil, err
	}
	hdrAt := sr.off
	if n < 16+8+8+1 || n > maxSnapshotHeader {
		return nil, errs.Corruptf(whatSnapshot, hdrAt, "header length %d", n)
	}
	hdr, err := sr.readN(nil, n, "header")
	if err != nil {
		return nil, err
	}
	want := sr.digest.Sum64()
	var sum [8]byte
	if err := sr.readFull(sum[:], "header checksum"); err != nil {
		return nil, err
	}
	if binary.LittleEndian.Uint64(sum[:]) != want {
		return nil, errs.Corruptf(whatSnapshot, sr.off-8, "header checksum mismatch")
	}
	h := &sr.header
	copy(h.Source[:], hdr)
	h.Clock = Timestamp(binary.LittleEndian.Uint64(hdr[16:]))
	h.Horizon = Timestamp(binary.LittleEndian.Uint64(hdr[24:]))
	vv, k, err := DecodeVersionVector(hdr[32:])
	if err != nil {
		return nil, errs.Corruptf(whatSnapshot, hdrAt+32, "header: %v", err)
	}
	if 32+k != len(hdr) {
		return nil, errs.Corruptf(whatSnapshot, hdrAt+32+int64(k), "%d bytes after the header's version vector", len(hdr)-32-k)
	}
	if h.Source.IsZero() {
		return nil, errs.Corruptf(whatSnapshot, hdrAt, "zero source replica ID")
	}
	if _, ok := vv[ReplicaID{}]; ok {
		return nil, errs.Corruptf(whatSnapshot, hdrAt+32, "version vector names the zero replica ID")
	}
	h.VV = vv
	return sr, nil
}

// Header returns the snapshot's header.
func (sr *SnapshotReader) Header() SnapshotHeader { return sr.header }

// Offset returns how many bytes of the snapshot have been read.
func (sr *SnapshotReader) Offset() int64 { return sr.off }

// Trailer returns the trailer, once Next has returned io.EOF.
func (sr *SnapshotReader) Trailer() SnapshotTrailer { return sr.count }

func (sr *SnapshotReader) corrupt(off int64, format string, args ...any) error {
	sr.err = errs.Corruptf(whatSnapshot, off, format, args...)
	return sr.err
}

// readFull reads len(b) bytes into b, hashing them.
func (sr *SnapshotReader) readFull(b []byte, what string) error {
	n, err := io.ReadFull(sr.r, b)
	sr.off += int64(n)
	_, _ = sr.digest.Write(b[:n])
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return sr.corrupt(sr.off, "truncated in the %s", what)
		}
		sr.err = fmt.Errorf("oplog: reading a snapshot at offset %d: %w", sr.off, err)
		return sr.err
	}
	return nil
}

// readN appends n bytes to dst, growing it as the bytes arrive, so a
// damaged length costs no more memory than the bytes present.
func (sr *SnapshotReader) readN(dst []byte, n uint64, what string) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	got, err := io.CopyN(buf, sr.r, int64(n))
	b := buf.Bytes()
	sr.off += got
	_, _ = sr.digest.Write(b[len(dst):])
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, sr.corrupt(sr.off, "truncated in the %s", what)
		}
		sr.err = fmt.Errorf("oplog: reading a snapshot at offset %d: %w", sr.off, err)
		return nil, sr.err
	}
	return b, nil
}

// readUvarint reads a minimal-length uvarint, hashing it; into, if not
// nil, gets its bytes too.
func (sr *SnapshotReader) readUvarint(what string) (uint64, error) {
	v, _, err := sr.readUvarintInto(nil, what)
	return v, err
}

func (sr *SnapshotReader) readUvarintInto(dst []byte, what string) (uint64, []byte, error) {
	start := sr.off
	var b [binary.MaxVarintLen64]byte
	for i := range b {
		c, err := sr.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, nil, sr.corrupt(sr.off, "truncated in the %s", what)
			}
			sr.err = fmt.Errorf("oplog: reading a snapshot at offset %d: %w", sr.off, err)
			return 0, nil, sr.err
		}
		b[i] = c
		sr.off++
		_, _ = sr.digest.Write(b[i : i+1])
		if c < 0x80 {
			v, n := uvarint(b[:i+1])
			if n <= 0 {
				return 0, nil, sr.corrupt(start, "bad %s", what)
			}
			return v, append(dst, b[:i+1]...), nil
		}
	}
	return 0, nil, sr.corrupt(start, "bad %s", what)
}

// Next returns the next entry: its namespace, key and portable state,
// which alias the reader's buffers until the next call. After the last
// entry it verifies the trailer and returns io.EOF.
func (sr *SnapshotReader) Next() (ns byte, key, state []byte, err error) {
	if sr.err != nil {
		return 0, nil, nil, sr.err
	}
	if sr.done {
		return 0, nil, nil, io.EOF
	}
	for sr.left == 0 {
		if err := sr.nextChunk(); err != nil {
			return 0, nil, nil, err
		}
		if sr.done {
			return 0, nil, nil, io.EOF
		}
	}
	if len(sr.entries) == 0 {
		return 0, nil, nil, sr.corrupt(sr.chunkAt, "chunk ends before its %d entries", sr.left)
	}
	d := decoder{what: whatSnapshot, b: sr.entries}
	ns = sr.entries[0]
	d.off = 1
	if key, err = d.bytes("key"); err == nil {
		state, err = d.bytes("state")
	}
	if err != nil {
		return 0, nil, nil, sr.corrupt(sr.chunkAt, "chunk entry: %v", err)
	}
	if len(key) == 0 {
		return 0, nil, nil, sr.corrupt(sr.chunkAt, "entry with an empty key")
	}
	if sr.hasLast && (ns < sr.lastNS || ns == sr.lastNS && bytes.Compare(key, sr.lastKey) <= 0) {
		return 0, nil, nil, sr.corrupt(sr.chunkAt, "entry %d/%q after %d/%q: not ascending", ns, key, sr.lastNS, sr.lastKey)
	}
	check := sr.Check
	if check == nil {
		check = func(_ byte, _, state []byte) error { return CheckPortableState(state) }
	}
	if err := check(ns, key, state); err != nil {
		return 0, nil, nil, sr.corrupt(sr.chunkAt, "state of key %q: %v", key, err)
	}
	sr.lastNS, sr.lastKey, sr.hasLast = ns, append(sr.lastKey[:0], key...), true
	sr.entries = sr.entries[d.off:]
	sr.left--
	sr.count.Entries++
	if sr.left == 0 && len(sr.entries) != 0 {
		return 0, nil, nil, sr.corrupt(sr.chunkAt, "%d bytes after the chunk's entries", len(sr.entries))
	}
	return ns, key, state, nil
}

// nextChunk reads the next chunk, or the trailer (then sets done).
func (sr *SnapshotReader) nextChunk() error {
	at := sr.off
	tag, err := sr.r.ReadByte()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return sr.corrupt(at, "truncated: no trailer")
		}
		sr.err = fmt.Errorf("oplog: reading a snapshot at offset %d: %w", at, err)
		return sr.err
	}
	sr.off++
	switch tag {
	case tagTrailer:
		_, _ = sr.digest.Write([]byte{tag})
		return sr.readTrailer(at)
	case tagChunk:
	default:
		return sr.corrupt(at, "unknown section tag %d", tag)
	}
	// The chunk's own checksum covers its bytes; the whole-stream digest
	// is fed the same bytes as they arrive.
	sr.chunkAt = at
	f := append(sr.frame[:0], tag)
	_, _ = sr.digest.Write(f)
	var codec [1]byte
	if err := sr.readFull(codec[:], "chunk codec"); err != nil {
		return err
	}
	f = append(f, codec[0])
	raw, f, err := sr.readUvarintInto(f, "chunk raw size")
	if err != nil {
		return err
	}
	stored, f, err := sr.readUvarintInto(f, "chunk stored size")
	if err != nil {
		return err
	}
	switch {
	case raw == 0 || raw > maxSnapshotChunk:
		return sr.corrupt(at, "chunk raw size %d (limit %d)", raw, maxSnapshotChunk)
	case stored == 0 || stored > maxSnapshotChunk:
		return sr.corrupt(at, "chunk stored size %d (limit %d)", stored, maxSnapshotChunk)
	case codec[0] == codecNone && stored != raw:
		return sr.corrupt(at, "uncompressed chunk of %d bytes stores %d", raw, stored)
	case codec[0] > codecZstd:
		return sr.corrupt(at+1, "unknown codec %d", codec[0])
	}
	body := len(f)
	if f, err = sr.readN(f, stored, "chunk"); err != nil {
		return err
	}
	var sum [8]byte
	if err := sr.readFull(sum[:], "chunk checksum"); err != nil {
		return err
	}
	sr.frame = f
	if binary.LittleEndian.Uint64(sum[:]) != xxhash.Sum64(f) {
		return sr.corrupt(at, "chunk checksum mismatch")
	}
	sr.frameTotal += int64(len(f)) + 8
	sr.rawTotal += int64(raw)
	if sr.rawTotal > maxExpansion*sr.frameTotal {
		return sr.corrupt(at, "chunks expand to %d bytes from %d", sr.rawTotal, sr.frameTotal)
	}
	data := f[body:]
	switch codec[0] {
	case codecNone:
		sr.raw = append(sr.raw[:0], data...)
	case codecS2:
		n, err := s2.DecodedLen(data)
		if err != nil || uint64(n) != raw {
			return sr.corrupt(at, "S2 chunk does not hold %d bytes", raw)
		}
		if cap(sr.raw) < n {
			sr.raw = make([]byte, n)
		}
		if sr.raw, err = s2.Decode(sr.raw[:n], data); err != nil {
			return sr.corrupt(at, "S2 chunk: %v", err)
		}
	case codecZstd:
		// The decoder decodes up to the capacity it is given: raw.
		if uint64(cap(sr.raw)) < raw {
			sr.raw = make([]byte, 0, raw)
		}
		out, err := zstdDecoder().DecodeAll(data, sr.raw[:0:raw])
		if err != nil || uint64(len(out)) != raw {
			return sr.corrupt(at, "zstd chunk does not hold %d bytes (%v)", raw, err)
		}
		sr.raw = out
	}
	n, k := uvarint(sr.raw)
	if k <= 0 || n == 0 || n > uint64(len(sr.raw)-k)/minSnapshotEntry {
		return sr.corrupt(at, "chunk entry count")
	}
	sr.entries, sr.left = sr.raw[k:], n
	sr.count.Chunks++
	return nil
}

// readTrailer reads the trailer (its tag at offset at already read and
// hashed) and checks that nothing follows it.
func (sr *SnapshotReader) readTrailer(at int64) error {
	entries, err := sr.readUvarint("trailer entry count")
	if err != nil {
		return err
	}
	chunks, err := sr.readUvarint("trailer chunk count")
	if err != nil {
		return err
	}
	want := sr.digest.Sum64()
	var sum [8]byte
	if err := sr.readFull(sum[:], "trailer checksum"); err != nil {
		return err
	}
	if binary.LittleEndian.Uint64(sum[:]) != want {
		return sr.corrupt(at, "snapshot checksum mismatch")
	}
	if entries != sr.count.Entries || chunks != sr.count.Chunks {
		return sr.corrupt(at, "trailer says %d entries in %d chunks, read %d in %d",
			entries, chunks, sr.count.Entries, sr.count.Chunks)
	}
	if _, err := sr.r.ReadByte(); err == nil {
		return sr.corrupt(sr.off, "bytes after the trailer")
	} else if !errors.Is(err, io.EOF) {
		sr.err = fmt.Errorf("oplog: reading a snapshot at offset %d: %w", sr.off, err)
		return sr.err
	}
	sr.done = true
	return nil
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

package oplog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/plures/pluresdb/internal/errs"
)

// Change streams: the self-describing, checksummed byte stream of ops
// that serves sync, incremental backup, debug dumps and the cold archive
// (see "Change stream" in the package doc for the format).

// Change stream constants. All are part of the format but for
// streamChunkTarget, which only the writer uses.
const (
	streamMagic   = "PLRSCHNG"
	streamVersion = 2 // 1: no transaction boundaries (still read)
	whatStream    = "change stream"

	streamFlagPrefix   = 0x01
	streamFlagCompress = 0x02
	streamFlagLogOrder = 0x04
	streamFlagReserved = 0xf8

	tagChunk   = 1
	tagTrailer = 2

	codecNone = 0
	codecS2   = 1
	codecZstd = 2

	// streamChunkTarget is the raw size a writer keeps a chunk under when
	// it can (an op larger than that gets a chunk of its own).
	streamChunkTarget = 64 << 10
	// maxStreamChunk bounds the raw size of a chunk a reader accepts:
	// 16 MiB, plus room for the key and field that go with a value of the
	// largest size the engine accepts (16 MiB).
	maxStreamChunk = 16<<20 + 128<<10
	// maxExpansion bounds how much larger than the whole stream its
	// chunks may decompress to, so memory stays proportional to the input.
	// The writer stores a chunk raw rather than exceed it.
	maxExpansion = 1024
)

// Range is a span of one replica's ops: those with From < Seq <= To
// (matching the stream's Prefix).
type Range struct {
	Replica  ReplicaID
	From, To uint64
}

// StreamHeader describes a change stream.
type StreamHeader struct {
	Source ReplicaID // the replica that wrote the stream
	// Prefix, if non-nil, restricts the stream to ops whose Key has it
	// (selective sync).
	Prefix []byte
	// Ranges say which ops of which replica the stream holds; one range
	// per replica. The writer sorts them by replica.
	Ranges []Range
	// Compress selects zstd chunks (the cold archive: about half the size
	// of S2, slower to write). Otherwise chunks are S2, which compresses
	// and decompresses at several GB/s, so sync and backup pay nothing
	// noticeable for it and save on typical (JSON-like) values. Either
	// way a chunk that does not shrink is stored raw.
	Compress bool
	// LogOrder says the ops are in the order of a replica's log rather
	// than of a sync stream: within its replica an op's sequence number
	// need only lie in its range, not follow the previous one. The cold
	// archive writes it for segments whose log holds selective imports
	// (whose ops come ahead of older ones of the same replica). Such a
	// stream reads like any other but is no sync stream: importers refuse
	// it.
	LogOrder bool
}

// validateHeader checks what a writer is given and a reader decodes: a
// non-zero source, ranges sorted by distinct non-zero replicas, From <= To.
func validateHeader(h *StreamHeader) error {
	if h.Source.IsZero() {
		return errors.New("zero source replica")
	}
	for i, r := range h.Ranges {
		switch {
		case r.Replica.IsZero():
			return fmt.Errorf("range %d: zero replica", i)
		case r.From > r.To:
			return fmt.Errorf("range %d: from %d above to %d", i, r.From, r.To)
		case i > 0 && r.Replica.Compare(h.Ranges[i-1].Replica) <= 0:
			return fmt.Errorf("range %d: replicas repeated or out of order", i)
		}
	}
	return nil
}

// rangeChecker enforces what the header promises about ops: each belongs
// to a range, in ascending sequence within its replica, and matches the
// prefix.
type rangeChecker struct {
	h    *StreamHeader
	last []uint64 // per range: the last sequence number seen (From at first)
}

func newRangeChecker(h *StreamHeader) rangeChecker {
	c := rangeChecker{h: h, last: make([]uint64, len(h.Ranges))}
	for i, r := range h.Ranges {
		c.last[i] = r.From
	}
	return c
}

func (c *rangeChecker) check(op *Op, _ int) error {
	i, err := c.h.rangeOf(op)
	if err != nil {
		return err
	}
	last := c.last[i]
	if c.h.LogOrder {
		last = c.h.Ranges[i].From
	}
	if err := checkSeq(op, last, c.h.Ranges[i].To); err != nil {
		return err
	}
	if err := c.h.checkPrefix(op); err != nil {
		return err
	}
	c.last[i] = op.Seq
	return nil
}

var (
	zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
		// EncodeAll is safe for concurrent use; one encoder serves all.
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(streamChunkTarget*2))
		if err != nil {
			panic(err) // options are constant
		}
		return e
	})
	zstdDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(maxStreamChunk), zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			panic(err)
		}
		return d
	})
)

// opSpan locates a pending op's key, field and value in the writer's
// arena, which may move as it grows.
type opSpan struct{ key, field, value int }

// StreamWriter writes a change stream: the header when created, ops as
// they come (batched into checksummed chunks), the trailer on Close.
//
// A StreamWriter is used by one goroutine at a time.
type StreamWriter struct {
	w      io.Writer
	h      StreamHeader
	check  rangeChecker
	digest *xxhash.Digest // every byte written so far
	err    error          // sticky
	closed bool
	ops    int

	chunk   []byte // raw chunk: whole batches
	run     []Op   // pending run of one replica; slices filled at flush
	spans   []opSpan
	arena   []byte // the run's keys, fields and values
	runSize int    // upper bound of the run's encoded size
	out     []byte // compression scratch

	written  int64 // bytes written so far
	rawTotal int64 // raw bytes of the chunks written so far
	raw      bool  // tests: store every chunk raw
	version  byte  // the format version written

	// Transaction ends in the chunk: the op counts of the transactions
	// (or their tails) that end in it, encoded as the chunk's prefix.
	ends      []byte
	nEnds     int
	chunkOps  int // ops in the chunk, the pending run's included
	lastEndAt int // ops in the chunk up to the last end
	rawBuf    []byte
}

// Upper bounds of encoded sizes, for chunk planning.
const (
	batchHeaderBound = 16 + 3*binary.MaxVarintLen64
	batchOpBound     = 1 + 8*binary.MaxVarintLen64 // header, seq, hlc (2), 3 lengths, delta
)

// NewStreamWriter writes the stream header for h to w and returns a
// writer for the ops. h.Ranges is copied and sorted by replica.
func NewStreamWriter(w io.Writer, h StreamHeader) (*StreamWriter, error) {
	return newStreamWriter(w, h, streamVersion)
}

// newStreamWriter is NewStreamWriter writing the given format version
// (tests write version 1 with it).
func newStreamWriter(w io.Writer, h StreamHeader, version byte) (*StreamWriter, error) {
	h.Ranges = slices.Clone(h.Ranges)
	slices.SortFunc(h.Ranges, func(a, b Range) int { return a.Replica.Compare(b.Replica) })
	if h.Prefix != nil {
		h.Prefix = append([]byte{}, h.Prefix...)
	}
	if err := validateHeader(&h); err != nil {
		return nil, fmt.Errorf("oplog: stream header: %w", err)
	}
	sw := &StreamWriter{w: w, h: h, digest: xxhash.New(), version: version}
	sw.check = newRangeChecker(&sw.h)

	var hdr []byte
	flags := byte(0)
	if h.Prefix != nil {
		flags |= streamFlagPrefix
	}
	if h.Compress {
		flags |= streamFlagCompress
	}
	if h.LogOrder {
		flags |= streamFlagLogOrder
	}
	hdr = append(hdr, flags)
	hdr = append(hdr, h.Source[:]...)
	if h.Prefix != nil {
		hdr = appendBytes(hdr, h.Prefix)
	}
	hdr = binary.AppendUvarint(hdr, uint64(len(h.Ranges)))
	for _, r := range h.Ranges {
		hdr = append(hdr, r.Replica[:]...)
		hdr = binary.AppendUvarint(hdr, r.From)
		hdr = binary.AppendUvarint(hdr, r.To)
	}
	b := append([]byte(streamMagic), version)
	b = binary.AppendUvarint(b, uint64(len(hdr)))
	b = append(b, hdr...)
	b = binary.LittleEndian.AppendUint64(b, xxhash.Sum64(b))
	if err := sw.write(b); err != nil {
		return nil, err
	}
	return sw, nil
}

func (sw *StreamWriter) write(b []byte) error {
	sw.digest.Write(b)
	sw.written += int64(len(b))
	if _, err := sw.w.Write(b); err != nil {
		sw.err = fmt.Errorf("oplog: writing change stream: %w", err)
		return sw.err
	}
	return nil
}

// Add appends op. Ops of one replica come in ascending Seq within its
// Range, with keys matching the Prefix; consecutive ops of one replica are
// encoded as one batch. op is copied; the caller may reuse it. op belongs
// to the open transaction (see EndTransaction).
func (sw *StreamWriter) Add(op *Op) error {
	if sw.err != nil {
		return sw.err
	}
	if sw.closed {
		return errors.New("oplog: Add on a closed StreamWriter")
	}
	opSize := batchOpBound + len(op.Key) + len(op.Field) + len(op.Value)
	if 2*binary.MaxVarintLen64+batchHeaderBound+opSize > maxStreamChunk {
		return fmt.Errorf("oplog: stream add: op %s/%d of %d bytes is too large", op.Replica, op.Seq, opSize)
	}
	if err := sw.check.check(op, 0); err != nil {
		return fmt.Errorf("oplog: stream add: %w", err)
	}
	if len(sw.run) > 0 && sw.run[0].Replica != op.Replica {
		sw.flushRun()
	}
	if n := len(sw.run); n > 0 {
		// Most ops of a run take the short forms: size them as such.
		prev := &sw.run[n-1]
		if op.Seq == prev.Seq+1 {
			opSize -= 2 * binary.MaxVarintLen64
		}
		if op.HLC == prev.HLC+1 {
			opSize -= 2 * binary.MaxVarintLen64
		}
	}
	if len(sw.ends)+binary.MaxVarintLen64+len(sw.chunk)+batchHeaderBound+sw.runSize+opSize > streamChunkTarget && len(sw.chunk)+len(sw.run) > 0 {
		sw.flushRun()
		if err := sw.flushChunk(); err != nil {
			return err
		}
	}
	if len(sw.run) == 0 {
		sw.runSize = 0
	}
	sp := opSpan{key: len(sw.arena)}
	sw.arena = append(sw.arena, op.Key...)
	sp.field = len(sw.arena)
	sw.arena = append(sw.arena, op.Field...)
	sp.value = len(sw.arena)
	sw.arena = append(sw.arena, op.Value...)
	sw.run = append(sw.run, Op{Replica: op.Replica, Seq: op.Seq, HLC: op.HLC, Kind: op.Kind, Delta: op.Delta})
	sw.spans = append(sw.spans, sp)
	sw.runSize += opSize
	sw.ops++
	sw.chunkOps++
	return nil
}

// EndTransaction ends the open transaction: the ops added since the last
// end were committed together on their origin, and a reader applies them
// all or none. Without ops since the last end it does nothing; Close ends
// the last transaction.
func (sw *StreamWriter) EndTransaction() {
	if n := sw.chunkOps - sw.lastEndAt; n > 0 {
		sw.ends = binary.AppendUvarint(sw.ends, uint64(n-1))
		sw.nEnds++
		sw.lastEndAt = sw.chunkOps
	}
}

// flushRun encodes the pending run into the chunk.
func (sw *StreamWriter) flushRun() {
	if len(sw.run) == 0 {
		return
	}
	for i := range sw.run {
		sp := sw.spans[i]
		end := len(sw.arena)
		if i+1 < len(sw.spans) {
			end = sw.spans[i+1].key
		}
		op := &sw.run[i]
		op.Key = sw.arena[sp.key:sp.field]
		op.Field = sw.arena[sp.field:sp.value]
		op.Value = sw.arena[sp.value:end]
	}
	sw.chunk = AppendBatch(sw.chunk, sw.run[0].Replica, sw.run)
	clear(sw.run)
	sw.run, sw.spans, sw.arena, sw.runSize = sw.run[:0], sw.spans[:0], sw.arena[:0], 0
}

// flushChunk compresses and writes the chunk.
func (sw *StreamWriter) flushChunk() error {
	if len(sw.chunk) == 0 {
		return nil
	}
	// The transaction ends go first. (A transaction that goes on in the
	// next chunk ends there.)
	raw := sw.rawBuf[:0]
	if sw.version >= 2 {
		raw = binary.AppendUvarint(raw, uint64(sw.nEnds))
		raw = append(raw, sw.ends...)
	}
	raw = append(raw, sw.chunk...)
	sw.rawBuf = raw
	var stored []byte
	codec := byte(codecS2)
	if sw.h.Compress {
		codec = codecZstd
		stored = zstdEncoder().EncodeAll(raw, sw.out[:0])
	} else {
		stored = s2.Encode(sw.out[:cap(sw.out)], raw)
	}
	sw.rawTotal += int64(len(raw))
	frameOverhead := int64(2 + 2*binary.MaxVarintLen64 + 8)
	if len(stored) >= len(raw) || sw.raw ||
		sw.rawTotal > maxExpansion*(sw.written+int64(len(stored))+frameOverhead) {
		// Incompressible, or so compressible that the reader's bound on
		// expansion would refuse the stream.
		codec, stored = codecNone, raw
	} else {
		sw.out = stored[:0]
	}
	frame := make([]byte, 0, frameOverhead+int64(len(stored)))
	frame = append(frame, tagChunk, codec)
	frame = binary.AppendUvarint(frame, uint64(len(raw)))
	frame = binary.AppendUvarint(frame, uint64(len(stored)))
	frame = append(frame, stored...)
	frame = binary.LittleEndian.AppendUint64(frame, xxhash.Sum64(frame))
	sw.chunk, sw.ends = sw.chunk[:0], sw.ends[:0]
	sw.nEnds, sw.chunkOps, sw.lastEndAt = 0, 0, 0
	return sw.write(frame)
}

// Close writes the last chunk and the trailer (op count and a checksum of
// the whole stream) and returns the number of ops written. It does not
// close the underlying writer.
func (sw *StreamWriter) Close() (int, error) {
	if sw.err != nil {
		return 0, sw.err
	}
	if sw.closed {
		return 0, errors.New("oplog: StreamWriter closed twice")
	}
	sw.closed = true
	sw.EndTransaction()
	sw.flushRun()
	if err := sw.flushChunk(); err != nil {
		return 0, err
	}
	t := binary.AppendUvarint([]byte{tagTrailer}, uint64(sw.ops))
	sw.digest.Write(t)
	t = binary.LittleEndian.AppendUint64(t, sw.digest.Sum64())
	if _, err := sw.w.Write(t); err != nil {
		sw.err = fmt.Errorf("oplog: writing change stream: %w", err)
		return 0, sw.err
	}
	return sw.ops, nil
}

// Stream is a decoded change stream.
type Stream struct {
	Header StreamHeader
	Ops    []Op // in stream order; Key, Field and Value alias buffers of the stream
	// Ends are the indices in Ops of the ops that end a transaction (the
	// ops their origin committed together), ascending; the last op always
	// ends one. A version 1 stream has no boundaries: every op ends one.
	Ends []int
}

// ReadStream reads and validates a whole stream before returning anything:
// magic, version, every checksum, that every op belongs to a range of the
// header in ascending sequence and matches the prefix, the trailer's op
// count and checksum, and that nothing follows the trailer. Damage returns
// an error wrapping errs.ErrCorruption that names the byte offset; a newer
// version one wrapping errs.ErrNewerFormat; a failed read the reader's
// error. Memory is bounded by a multiple of the input size: chunks may not
// decompress to more than 1024 times the stream's size in all, nor to more
// than 16 MiB (and a little) each.
func ReadStream(r io.Reader) (*Stream, error) {
	data, err := readAll(r)
	if err != nil {
		return nil, fmt.Errorf("oplog: reading change stream: %w", err)
	}
	return decodeStream(data)
}

// readAll reads r to its end into one slice of the exact size. It reads
// into blocks that double in size and copies them once at the end, where
// growing one slice would copy everything at every doubling (and touch
// fresh memory each time).
func readAll(r io.Reader) ([]byte, error) {
	if l, ok := r.(interface{ Len() int }); ok {
		// bytes.Reader, bytes.Buffer: read once.
		var buf bytes.Buffer
		buf.Grow(l.Len() + bytes.MinRead)
		_, err := buf.ReadFrom(r)
		return buf.Bytes(), err
	}
	var blocks [][]byte
	total := 0
	size := 64 << 10
	for {
		b := make([]byte, size)
		n, err := io.ReadFull(r, b)
		if n > 0 {
			blocks = append(blocks, b[:n])
			total += n
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
		size = min(2*size, 16<<20)
	}
	if len(blocks) == 1 {
		return blocks[0], nil
	}
	data := make([]byte, 0, total)
	for _, b := range blocks {
		data = append(data, b...)
	}
	return data, nil
}

func decodeStream(data []byte) (*Stream, error) {
	v, err := checkFraming(data)
	if err != nil {
		return nil, err
	}
	d := &v.d
	s := &Stream{Header: v.Header}
	// The trailer's count is checked against the chunks' capacity, so it
	// bounds this allocation; a stream holding more ops than it says
	// grows the slice (within the chunks' bounded size) and is refused
	// below.
	s.Ops = make([]Op, 0, v.Count)
	check := newRangeChecker(&s.Header)
	for _, c := range v.chunks {
		if s.Ops, s.Ends, _, err = decodeChunk(d, c, s.Ops, s.Ends, nil, &check); err != nil {
			return nil, err
		}
	}
	if v.Count != len(s.Ops) {
		return nil, d.corrupt(len(data)-8, "trailer counts %d ops, the stream holds %d", v.Count, len(s.Ops))
	}
	if n := len(s.Ops); n > 0 && (len(s.Ends) == 0 || s.Ends[len(s.Ends)-1] != n-1) {
		return nil, d.corrupt(len(data)-8, "the stream ends inside a transaction")
	}
	return s, nil
}

// checkFraming is pass 1 of reading a stream: the magic, the version, the
// header, the framing of every chunk, every checksum and the trailer, so
// the op count is known (and trusted) before anything is decompressed or
// allocated. Count is the trailer's.
func checkFraming(data []byte) (*VerifiedStream, error) {
	v := &VerifiedStream{d: decoder{what: whatStream, b: data}}
	d := &v.d
	if len(data) < len(streamMagic)+1 {
		return nil, d.corrupt(0, "truncated: %d bytes", len(data))
	}
	if string(data[:len(streamMagic)]) != streamMagic {
		return nil, d.corrupt(0, "bad magic %q", data[:len(streamMagic)])
	}
	version := data[len(streamMagic)]
	switch {
	case version > streamVersion:
		return nil, errs.NewerFormatf(whatStream, uint32(version), streamVersion)
	case version == 0:
		return nil, d.corrupt(len(streamMagic), "format version 0")
	}
	d.off = len(streamMagic) + 1
	hdr, err := d.bytes("header")
	if err != nil {
		return nil, err
	}
	if len(data)-d.off < 8 {
		return nil, d.corrupt(d.off, "header checksum truncated")
	}
	if got, want := binary.LittleEndian.Uint64(data[d.off:]), xxhash.Sum64(data[:d.off]); got != want {
		return nil, d.corrupt(d.off, "header checksum mismatch: stored %#x, computed %#x", got, want)
	}
	if err := decodeStreamHeader(&v.Header, hdr); err != nil {
		return nil, err
	}
	d.off += 8
	budget := maxExpansion * int64(len(data)) // raw chunk bytes allowed
	for done := false; !done; {
		start := d.off
		if d.off >= len(data) {
			return nil, d.corrupt(start, "truncated: no trailer")
		}
		tag := data[d.off]
		d.off++
		switch tag {
		case tagChunk:
			c, err := readChunkFrame(d, start)
			if err != nil {
				return nil, err
			}
			if int64(c.raw) > budget {
				return nil, d.corrupt(start, "chunks decompress to more than %d times the stream's size", maxExpansion)
			}
			budget -= int64(c.raw)
			c.txns = version >= 2
			v.chunks = append(v.chunks, c)
		case tagTrailer:
			count, err := d.uvarint("op count")
			if err != nil {
				return nil, err
			}
			if len(data)-d.off < 8 {
				return nil, d.corrupt(d.off, "trailer checksum truncated")
			}
			if got, want := binary.LittleEndian.Uint64(data[d.off:]), xxhash.Sum64(data[:d.off]); got != want {
				return nil, d.corrupt(d.off, "stream checksum mismatch: stored %#x, computed %#x", got, want)
			}
			if d.off+8 != len(data) {
				return nil, d.corrupt(d.off+8, "%d bytes after the trailer", len(data)-d.off-8)
			}
			if count > uint64(maxExpansion*int64(len(data))-budget)/minBatchOpSize {
				return nil, d.corrupt(start, "trailer counts %d ops, more than the chunks can hold", count)
			}
			v.Count = int(count)
			done = true
		default:
			return nil, d.corrupt(start, "unknown section tag %d", tag)
		}
	}
	return v, nil
}

// VerifiedStream is a change stream read whole and checked exactly as
// ReadStream checks it, but kept as it came (compressed): its consumer
// decodes it again a chunk at a time (Chunk), so a large stream costs
// about its own size in memory rather than that of its decoded ops, and
// decoding can run ahead of whatever consumes the ops.
type VerifiedStream struct {
	Header StreamHeader
	Count  int       // the number of ops
	MaxHLC Timestamp // the highest timestamp of any op (0: no ops)
	// MaxHLCReplica and MaxHLCSeq name the first op in stream order
	// whose timestamp is MaxHLC.
	MaxHLCReplica ReplicaID
	MaxHLCSeq     uint64

	d      decoder // over the whole stream
	chunks []chunkRef
}

// VerifyStream reads r to its end and checks it as ReadStream does,
// decoding its chunks on all CPUs; it returns the same errors for the same
// input.
func VerifyStream(r io.Reader) (*VerifiedStream, error) {
	data, err := readAll(r)
	if err != nil {
		return nil, fmt.Errorf("oplog: reading change stream: %w", err)
	}
	v, err := checkFraming(data)
	if err != nil {
		return nil, err
	}
	if err := v.checkOps(); err != nil {
		return nil, err
	}
	return v, nil
}

// NumChunks returns the number of chunks in the stream.
func (v *VerifiedStream) NumChunks() int { return len(v.chunks) }

// Chunk decodes chunk i and appends its ops, in stream order, to ops. Key,
// Field and Value alias a buffer of their own, allocated for the chunk.
// It is safe to call concurrently.
func (v *VerifiedStream) Chunk(i int, ops []Op) ([]Op, error) {
	ops, _, _, err := v.ChunkIn(i, ops, nil, nil)
	return ops, err
}

// ChunkIn is Chunk that also appends to ends the indices in ops of the
// chunk's ops that end a transaction (see Stream.Ends; a transaction
// may span chunks), and decodes the ops' bytes into buf when it is large
// enough (a buffer ChunkIn returned before, say, once nothing uses its
// ops); it returns the buffer they alias.
func (v *VerifiedStream) ChunkIn(i int, ops []Op, ends []int, buf []byte) ([]Op, []int, []byte, error) {
	d := decoder{what: whatStream, b: v.d.b}
	return decodeChunk(&d, v.chunks[i], ops, ends, buf, nil)
}

// rangeOf checks that op could have come from a writer and returns the
// index of its replica's range.
func (h *StreamHeader) rangeOf(op *Op) (int, error) {
	if err := op.Validate(); err != nil {
		return 0, err
	}
	i, ok := slices.BinarySearchFunc(h.Ranges, op.Replica, func(r Range, id ReplicaID) int { return r.Replica.Compare(id) })
	if !ok {
		return 0, fmt.Errorf("op %s/%d: replica has no range in the header", op.Replica, op.Seq)
	}
	return i, nil
}

// checkPrefix checks that op's key has the stream's prefix, if any.
func (h *StreamHeader) checkPrefix(op *Op) error {
	if h.Prefix != nil && !bytes.HasPrefix(op.Key, h.Prefix) {
		return fmt.Errorf("op %s/%d: key %q lacks the prefix %q", op.Replica, op.Seq, op.Key, h.Prefix)
	}
	return nil
}

// checkSeq checks that op's sequence number follows last (the previous op
// of its replica, or its range's From) and does not pass its range's To.
func checkSeq(op *Op, last, to uint64) error {
	switch {
	case op.Seq <= last:
		return fmt.Errorf("op %s/%d: sequence number not above %d", op.Replica, op.Seq, last)
	case op.Seq > to:
		return fmt.Errorf("op %s/%d: sequence number above the range's end %d", op.Replica, op.Seq, to)
	}
	return nil
}

// chunkSpan is what one chunk holds of one range: its first and last
// sequence numbers, and where the first op is (its index in the chunk and
// the offset of its batch).
type chunkSpan struct {
	rng         int
	first, last uint64
	firstIdx    int
	firstOff    int
}

// chunkCheck is the checking of one chunk's ops on their own: each ops
// valid, in a range of the header, ascending within its replica and with
// the prefix. The spans say what must hold across chunks.
type chunkCheck struct {
	h      *StreamHeader
	spans  []chunkSpan
	maxHLC Timestamp
	maxOp  Op // replica and seq of the first op with maxHLC
	// endsTxn: the chunk's last op ends a transaction.
	endsTxn bool
	ops     int   // ops checked
	err     error // the first failure, at op index ops
}

func (c *chunkCheck) check(op *Op, off int) error {
	i, err := c.h.rangeOf(op)
	if err != nil {
		return err
	}
	// A chunk holds runs of a few replicas: the span is usually the last.
	j := len(c.spans) - 1
	for j >= 0 && c.spans[j].rng != i {
		j--
	}
	last := c.h.Ranges[i].From
	if j >= 0 && !c.h.LogOrder {
		last = c.spans[j].last
	}
	if err := checkSeq(op, last, c.h.Ranges[i].To); err != nil {
		return err
	}
	if err := c.h.checkPrefix(op); err != nil {
		return err
	}
	if j >= 0 {
		c.spans[j].last = op.Seq
	} else {
		c.spans = append(c.spans, chunkSpan{rng: i, first: op.Seq, last: op.Seq, firstIdx: c.ops, firstOff: off})
	}
	if op.HLC > c.maxHLC {
		c.maxHLC = op.HLC
		c.maxOp = Op{Replica: op.Replica, Seq: op.Seq}
	}
	c.ops++
	return nil
}

// checkOps is pass 2 of VerifyStream: every chunk decoded and its ops
// checked on their own, on all CPUs, then the sequence numbers of each
// replica checked across chunks and the op count against the trailer. The
// error reported is the one ReadStream would report: that of the first
// damaged chunk.
func (v *VerifiedStream) checkOps() error {
	checks := make([]chunkCheck, len(v.chunks))
	workers := min(runtime.GOMAXPROCS(0), len(v.chunks))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := decoder{what: whatStream, b: v.d.b}
			var ops []Op
			var ends []int
			var buf []byte
			for {
				i := int(next.Add(1) - 1)
				if i >= len(v.chunks) {
					return
				}
				c := &checks[i]
				c.h = &v.Header
				ops, ends, buf, c.err = decodeChunk(&d, v.chunks[i], ops[:0], ends[:0], buf, c)
				c.endsTxn = len(ends) > 0 && ends[len(ends)-1] == len(ops)-1
			}
		}()
	}
	wg.Wait()
	last := make([]uint64, len(v.Header.Ranges))
	for i, r := range v.Header.Ranges {
		last[i] = r.From
	}
	count := 0
	for i := range checks {
		c := &checks[i]
		// The first failure in stream order: an op out of sequence with
		// the chunks before (at the first op of a span), or what the
		// chunk found on its own (at op index c.ops).
		for _, sp := range c.spans {
			if c.err != nil && sp.firstIdx >= c.ops {
				break
			}
			if sp.first <= last[sp.rng] && !v.Header.LogOrder {
				err := checkSeq(&Op{Replica: v.Header.Ranges[sp.rng].Replica, Seq: sp.first}, last[sp.rng], v.Header.Ranges[sp.rng].To)
				return v.d.corrupt(v.chunks[i].start, "chunk offset %d: %v", sp.firstOff, err)
			}
			last[sp.rng] = sp.last
		}
		if c.err != nil {
			return c.err
		}
		count += c.ops
		if c.maxHLC > v.MaxHLC {
			v.MaxHLC, v.MaxHLCReplica, v.MaxHLCSeq = c.maxHLC, c.maxOp.Replica, c.maxOp.Seq
		}
	}
	if count != v.Count {
		return v.d.corrupt(len(v.d.b)-8, "trailer counts %d ops, the stream holds %d", v.Count, count)
	}
	if n := len(checks); n > 0 && !checks[n-1].endsTxn {
		return v.d.corrupt(len(v.d.b)-8, "the stream ends inside a transaction")
	}
	return nil
}

func decodeStreamHeader(h *StreamHeader, b []byte) error {
	// Offsets are reported relative to the stream: the header follows the
	// magic, the version and its length (at most a few bytes).
	base := len(streamMagic) + 1
	base += len(binary.AppendUvarint(nil, uint64(len(b))))
	d := decoder{what: whatStream, b: b}
	corrupt := func(off int, format string, args ...any) error {
		return errs.Corruptf(whatStream, int64(base+off), "header: "+format, args...)
	}
	if len(b) < 1+16 {
		return corrupt(0, "truncated")
	}
	flags := b[0]
	if flags&streamFlagReserved != 0 {
		return corrupt(0, "reserved flag bits in %#x", flags)
	}
	h.Compress = flags&streamFlagCompress != 0
	h.LogOrder = flags&streamFlagLogOrder != 0
	copy(h.Source[:], b[1:])
	d.off = 17
	var err error
	if flags&streamFlagPrefix != 0 {
		if h.Prefix, err = d.bytes("prefix"); err != nil {
			return corrupt(d.off, "%v", err)
		}
		if h.Prefix == nil {
			h.Prefix = []byte{}
		}
	}
	n, err := d.uvarint("range count")
	if err != nil {
		return corrupt(d.off, "%v", err)
	}
	if n > uint64(len(b)-d.off)/(16+2) {
		return corrupt(d.off, "%d ranges do not fit", n)
	}
	h.Ranges = make([]Range, n)
	for i := range h.Ranges {
		if len(b)-d.off < 16 {
			return corrupt(d.off, "range %d truncated", i)
		}
		copy(h.Ranges[i].Replica[:], b[d.off:])
		d.off += 16
		if h.Ranges[i].From, err = d.uvarint("range start"); err != nil {
			return corrupt(d.off, "%v", err)
		}
		if h.Ranges[i].To, err = d.uvarint("range end"); err != nil {
			return corrupt(d.off, "%v", err)
		}
	}
	if d.off != len(b) {
		return corrupt(d.off, "%d bytes after the ranges", len(b)-d.off)
	}
	if err := validateHeader(h); err != nil {
		return corrupt(0, "%v", err)
	}
	return nil
}

// chunkRef is a chunk whose framing and checksum were checked.
type chunkRef struct {
	start  int // offset of the tag
	codec  byte
	raw    uint64
	stored []byte
	txns   bool // the raw chunk starts with its transaction ends (version 2)
}

// readChunkFrame reads the frame of the chunk whose tag was at start (d
// stands after the tag) and checks its checksum.
func readChunkFrame(d *decoder, start int) (chunkRef, error) {
	c := chunkRef{start: start}
	if d.off >= len(d.b) {
		return c, d.corrupt(start, "chunk truncated")
	}
	c.codec = d.b[d.off]
	d.off++
	var err error
	if c.raw, err = d.uvarint("chunk size"); err != nil {
		return c, err
	}
	if c.stored, err = d.bytes("chunk"); err != nil {
		return c, err
	}
	if len(d.b)-d.off < 8 {
		return c, d.corrupt(d.off, "chunk checksum truncated")
	}
	if got, want := binary.LittleEndian.Uint64(d.b[d.off:]), xxhash.Sum64(d.b[start:d.off]); got != want {
		return c, d.corrupt(start, "chunk checksum mismatch: stored %#x, computed %#x", got, want)
	}
	d.off += 8
	if c.raw == 0 || c.raw > maxStreamChunk {
		return c, d.corrupt(start, "chunk of %d bytes", c.raw)
	}
	return c, nil
}

// opChecker checks each decoded op of a chunk; off is the offset in the
// chunk of the batch holding it.
type opChecker interface{ check(op *Op, off int) error }

// decodeChunk decompresses a checked chunk and appends its ops to ops,
// checking each with check (nil: none). The chunk is decompressed into buf
// when it is given (it returns it, grown if need be: the ops alias it),
// else into a buffer of its own.
func decodeChunk(d *decoder, c chunkRef, ops []Op, ends []int, buf []byte, check opChecker) ([]Op, []int, []byte, error) {
	n0 := len(ops)
	ops, buf, txnEnds, err := decodeChunkOps(d, c, ops, buf, check)
	if err != nil {
		return ops, ends, buf, err
	}
	if !c.txns {
		for i := n0; i < len(ops); i++ {
			ends = append(ends, i)
		}
		return ops, ends, buf, nil
	}
	if len(ops) == n0 {
		return ops, ends, buf, d.corrupt(c.start, "chunk without ops")
	}
	at := n0 - 1
	for p := 0; p < len(txnEnds); {
		n, k := uvarint(txnEnds[p:])
		if k <= 0 || n >= uint64(len(ops)-1-at) {
			return ops[:n0], ends, buf, d.corrupt(c.start, "transaction end %d lies past the chunk's %d ops", len(ends), len(ops)-n0)
		}
		p += k
		at += int(n) + 1
		ends = append(ends, at)
	}
	return ops, ends, buf, nil
}

// decodeChunkOps is decodeChunk but for the transaction ends, which it
// returns as encoded (nil for a version 1 chunk).
func decodeChunkOps(d *decoder, c chunkRef, ops []Op, buf []byte, check opChecker) ([]Op, []byte, []byte, error) {
	n0, start, raw, stored := len(ops), c.start, c.raw, c.stored
	var err error
	var payload []byte
	if buf == nil || uint64(cap(buf)) < raw {
		buf = make([]byte, raw)
	}
	switch c.codec {
	case codecNone:
		if raw != uint64(len(stored)) {
			return ops, buf, nil, d.corrupt(start, "raw chunk of %d bytes claims %d", len(stored), raw)
		}
		payload = stored
	case codecS2:
		if n, err := s2.DecodedLen(stored); err != nil || uint64(n) != raw {
			return ops, buf, nil, d.corrupt(start, "S2 chunk does not hold %d bytes (%v)", raw, err)
		}
		if payload, err = s2.Decode(buf[:raw], stored); err != nil {
			return ops, buf, nil, d.corrupt(start, "S2 chunk: %v", err)
		}
	case codecZstd:
		payload, err = zstdDecoder().DecodeAll(stored, buf[:0])
		if err != nil || uint64(len(payload)) != raw {
			return ops, buf, nil, d.corrupt(start, "zstd chunk does not hold %d bytes (%v)", raw, err)
		}
	default:
		return ops, buf, nil, d.corrupt(start, "unknown chunk codec %d", c.codec)
	}
	p := 0
	var txnEnds []byte
	if c.txns {
		// The transaction ends: a count, then each end as the number of
		// ops since the previous end (or the chunk's start), less one.
		count, k := uvarint(payload)
		if k <= 0 || count > uint64(len(payload)-k) {
			return ops, buf, nil, d.corrupt(start, "bad transaction end count")
		}
		p = k
		for range count {
			_, k := uvarint(payload[p:])
			if k <= 0 {
				return ops, buf, nil, d.corrupt(start, "chunk offset %d: bad transaction end", p)
			}
			p += k
		}
		txnEnds = payload[k:p]
	}
	for p < len(payload) {
		_, got, n, err := DecodeBatch(ops, payload[p:])
		if err != nil {
			return ops[:n0], buf, nil, d.corrupt(start, "chunk offset %d: %v", p, err)
		}
		if len(got) == len(ops) {
			return ops[:n0], buf, nil, d.corrupt(start, "chunk offset %d: empty batch", p)
		}
		if check != nil {
			for i := len(ops); i < len(got); i++ {
				if err := check.check(&got[i], p); err != nil {
					return ops[:n0], buf, nil, d.corrupt(start, "chunk offset %d: %v", p, err)
				}
			}
		}
		ops = got
		p += n
	}
	return ops, buf, txnEnds, nil
}

package lsm

// This file owns the block: the unit of reading, caching and compression in
// an sstable. Data, index, metaindex and properties blocks share one
// encoding (LevelDB's). Uncompressed contents:
//
//	+---------+---------+-----+---------+-----------+-----+---------------+-----------+
//	| entry 0 | entry 1 | ... | entry n | restart 0 | ... | restart r-1   | r         |
//	|         |         |     |         | uint32 LE |     | uint32 LE     | uint32 LE |
//	+---------+---------+-----+---------+-----------+-----+---------------+-----------+
//
//	entry:
//	+----------------+------------------+------------------+-----------+-------+
//	| shared uvarint | unshared uvarint | valueLen uvarint | key delta | value |
//	+----------------+------------------+------------------+-----------+-------+
//
// An entry's key is the first `shared` bytes of the previous key followed by
// the `unshared` bytes of key delta. Every restartInterval-th entry is a
// restart point: it has shared = 0 and its offset is in the restart array,
// so a seek binary-searches the restart keys and then scans at most one
// interval. Restart offsets are strictly increasing and the first is 0.
//
// On disk a block is followed by its trailer (compression type and
// xxhash64, see table.go). A compressed payload is uvarint(uncompressed
// length) followed by the s2 or zstd bytes.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

const (
	// maxCompressedBlockRawLen bounds the uncompressed size of a compressed
	// block; the writer stores larger blocks uncompressed, so a damaged
	// length can never make a reader allocate more than this.
	maxCompressedBlockRawLen = 64 << 20
	// maxBlockEntryLen bounds a key plus value so restart offsets fit in a
	// uint32.
	maxBlockEntryLen = 1 << 30
)

// decompressLimit is the largest uncompressed length a reader accepts for a
// compressed payload of n bytes: a damaged length may claim at most 1 MiB
// or 1024 times the bytes actually stored. The writer checks the same bound
// and stores a block uncompressed when its ratio exceeds it.
func decompressLimit(n int) int {
	l := n * 1024
	if l < 1<<20 {
		l = 1 << 20
	}
	if l > maxCompressedBlockRawLen {
		l = maxCompressedBlockRawLen
	}
	return l
}

// blockWriter builds the uncompressed contents of one block. Keys must be
// added in increasing order.
type blockWriter struct {
	restartInterval int // entries per restart point; <= 0 means 16
	buf             []byte
	restarts        []uint32
	counter         int // entries since the last restart point
	entries         int
	lastKey         []byte
}

func (w *blockWriter) add(key, value []byte) {
	interval := w.restartInterval
	if interval <= 0 {
		interval = 16
	}
	shared := 0
	if w.entries > 0 && w.counter < interval {
		shared = commonPrefixLen(w.lastKey, key)
	} else {
		w.restarts = append(w.restarts, uint32(len(w.buf)))
		w.counter = 0
	}
	w.buf = binary.AppendUvarint(w.buf, uint64(shared))
	w.buf = binary.AppendUvarint(w.buf, uint64(len(key)-shared))
	w.buf = binary.AppendUvarint(w.buf, uint64(len(value)))
	w.buf = append(w.buf, key[shared:]...)
	w.buf = append(w.buf, value...)
	w.lastKey = append(w.lastKey[:0], key...)
	w.counter++
	w.entries++
}

// estimatedSize is the size finish would return.
func (w *blockWriter) estimatedSize() int { return len(w.buf) + 4*len(w.restarts) + 4 }

// finish appends the restart array and returns the block contents, which
// stay valid until the next reset.
func (w *blockWriter) finish() []byte {
	for _, r := range w.restarts {
		w.buf = binary.LittleEndian.AppendUint32(w.buf, r)
	}
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(len(w.restarts)))
	return w.buf
}

func (w *blockWriter) reset() {
	w.buf = w.buf[:0]
	w.restarts = w.restarts[:0]
	w.counter = 0
	w.entries = 0
	w.lastKey = w.lastKey[:0]
}

// commonPrefixLen returns the length of the longest common prefix of a
// and b, comparing eight bytes at a time.
func commonPrefixLen(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		if binary.LittleEndian.Uint64(a[i:]) != binary.LittleEndian.Uint64(b[i:]) {
			break
		}
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

// block is a decoded block: uncompressed, checksum verified and its restart
// array located and validated. Blocks in the BlockCache are shared by
// readers and must never be modified.
type block struct {
	data        []byte // the whole uncompressed contents
	restarts    int    // offset of the restart array: entries end here
	numRestarts int
}

// parseBlock validates the restart array of uncompressed block contents.
// The entries themselves are checked as they are read.
func parseBlock(data []byte) (*block, error) {
	if len(data) < 4 {
		return nil, errors.New("block shorter than its restart count")
	}
	n := uint64(binary.LittleEndian.Uint32(data[len(data)-4:]))
	if n > uint64(len(data)-4)/4 {
		return nil, fmt.Errorf("restart count %d does not fit in %d bytes", n, len(data))
	}
	b := &block{data: data, restarts: len(data) - 4 - 4*int(n), numRestarts: int(n)}
	if n == 0 {
		if b.restarts != 0 {
			return nil, errors.New("entries without restart points")
		}
		return b, nil
	}
	prev := -1
	for i := 0; i < b.numRestarts; i++ {
		r := int(b.restartOffset(i))
		if (i == 0 && r != 0) || r <= prev || r >= b.restarts {
			return nil, fmt.Errorf("bad restart offset %d", r)
		}
		prev = r
	}
	return b, nil
}

func (b *block) restartOffset(i int) uint32 {
	return binary.LittleEndian.Uint32(b.data[b.restarts+4*i:])
}

// errBadEntry reports an entry that runs past its block or does not fit
// the previous key. The table wraps it with the file and block offset.
var errBadEntry = errors.New("malformed block entry")

// blockIter walks the entries of one block. Its key buffer is reused from
// block to block, so positioning does not allocate once it has grown.
type blockIter struct {
	b         *block
	minKeyLen int // TrailerLen in data and index blocks: a shorter key is corruption
	cur       int // offset of the current entry
	next      int // offset of the entry after the current one
	key       []byte
	val       []byte // aliases the block
	valid     bool
	err       error
}

func (it *blockIter) init(b *block, minKeyLen int) {
	it.b = b
	it.minKeyLen = minKeyLen
	it.cur, it.next = 0, 0
	it.key = it.key[:0]
	it.val = nil
	it.valid = false
	it.err = nil
}

// entryAt decodes the lengths of the entry at off (< b.restarts), decoded
// against a previous key of prevKeyLen bytes, and returns where its key
// delta starts; ok is false if the entry is malformed.
func (b *block) entryAt(off, prevKeyLen, minKeyLen int) (shared, unshared, vlen, p int, ok bool) {
	d := b.data[off:b.restarts]
	var s, u, v uint64
	var n int
	if len(d) >= 3 && d[0]|d[1]|d[2] < 0x80 {
		// Nearly every entry: three one-byte varints.
		s, u, v, n = uint64(d[0]), uint64(d[1]), uint64(d[2]), 3
	} else {
		var n1, n2, n3 int
		if s, n1 = binary.Uvarint(d); n1 <= 0 {
			return 0, 0, 0, 0, false
		}
		if u, n2 = binary.Uvarint(d[n1:]); n2 <= 0 {
			return 0, 0, 0, 0, false
		}
		if v, n3 = binary.Uvarint(d[n1+n2:]); n3 <= 0 {
			return 0, 0, 0, 0, false
		}
		n = n1 + n2 + n3
	}
	rest := uint64(len(d) - n)
	if u > rest || v > rest-u || s > uint64(prevKeyLen) || s+u < uint64(minKeyLen) {
		return 0, 0, 0, 0, false
	}
	return int(s), int(u), int(v), off + n, true
}

// decodeEntry decodes the entry at off (< b.restarts) against prevKey,
// whose storage it reuses for the returned key. These are plain functions
// of their arguments rather than blockIter methods so that Table.Get can
// keep its key buffer on the stack.
func (b *block) decodeEntry(off int, prevKey []byte, minKeyLen int) (key, val []byte, next int, ok bool) {
	shared, unshared, vlen, p, ok := b.entryAt(off, len(prevKey), minKeyLen)
	if !ok {
		return prevKey, nil, 0, false
	}
	key = append(prevKey[:shared], b.data[p:p+unshared]...)
	p += unshared
	return key, b.data[p : p+vlen : p+vlen], p + vlen, true
}

// restartKey returns the key stored whole at restart point i.
func (b *block) restartKey(i, minKeyLen int) ([]byte, bool) {
	// Restart entries have shared == 0: decode against an empty key.
	_, unshared, _, p, ok := b.entryAt(int(b.restartOffset(i)), 0, minKeyLen)
	if !ok {
		return nil, false
	}
	return b.data[p : p+unshared], true
}

// seek finds the first entry whose internal key is >= (ukey, trailer),
// decoding keys into keyBuf's storage; the entry starts at cur and the one
// after it at next. found is false past the last entry;
// ok is false if the block is malformed. The block must hold internal keys
// (minKeyLen >= TrailerLen).
func (b *block) seek(ukey []byte, trailer uint64, keyBuf []byte, minKeyLen int) (key, val []byte, cur, next int, found, ok bool) {
	// Find the first restart point whose key is >= the target; the answer
	// lies after the restart point before it.
	lo, hi := 0, b.numRestarts
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		k, ok := b.restartKey(mid, minKeyLen)
		if !ok {
			return keyBuf, nil, 0, 0, false, false
		}
		if compareIKey(k, ukey, trailer) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	off := 0
	if lo > 0 {
		off = int(b.restartOffset(lo - 1))
	}
	key = keyBuf[:0]
	for off < b.restarts {
		cur = off
		if key, val, off, ok = b.decodeEntry(off, key, minKeyLen); !ok {
			return key, nil, 0, 0, false, false
		}
		if compareIKey(key, ukey, trailer) >= 0 {
			return key, val, cur, off, true, true
		}
	}
	return key, nil, off, off, false, true
}

// decodeAt makes the entry at off current; the current key must be the
// one the entry was encoded against (or empty at a restart point).
func (it *blockIter) decodeAt(off int) bool {
	if off >= it.b.restarts {
		it.valid = false
		return false
	}
	var ok bool
	if it.key, it.val, it.next, ok = it.b.decodeEntry(off, it.key, it.minKeyLen); !ok {
		return it.fail()
	}
	it.cur = off
	it.valid = true
	return true
}

// decodeUntil decodes forward from restart point r to the entry that starts
// at off, making it current. Entries only encode their key against the one
// before, so a backward step re-decodes from the restart point before it.
func (it *blockIter) decodeUntil(r, off int) bool {
	it.key = it.key[:0]
	p := int(it.b.restartOffset(r))
	for {
		if !it.decodeAt(p) {
			if it.err == nil {
				return it.fail() // off is not an entry boundary
			}
			return false
		}
		if p >= off {
			if p != off {
				return it.fail()
			}
			return true
		}
		p = it.next
	}
}

// restartBefore returns the last restart point whose offset is < off, or
// -1 if there is none.
func (it *blockIter) restartBefore(off int) int {
	lo, hi := 0, it.b.numRestarts
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if int(it.b.restartOffset(mid)) < off {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo - 1
}

// Last moves to the last entry.
func (it *blockIter) Last() bool {
	if it.b.numRestarts == 0 {
		it.valid = false
		return false
	}
	r := it.b.numRestarts - 1
	it.key = it.key[:0]
	if !it.decodeAt(int(it.b.restartOffset(r))) {
		return false
	}
	for it.next < it.b.restarts {
		if !it.decodeAt(it.next) {
			return false
		}
	}
	return true
}

// Prev moves to the preceding entry, re-decoding from the restart point
// before it (at most restartInterval entries).
func (it *blockIter) Prev() bool {
	if !it.valid {
		return false
	}
	if it.cur == 0 {
		it.valid = false
		return false
	}
	r := it.restartBefore(it.cur)
	if r < 0 {
		return it.fail()
	}
	// Decode from restart r up to the entry whose next is it.cur.
	target := it.cur
	it.key = it.key[:0]
	p := int(it.b.restartOffset(r))
	for {
		if !it.decodeAt(p) {
			if it.err == nil {
				return it.fail()
			}
			return false
		}
		if it.next >= target {
			if it.next != target {
				return it.fail()
			}
			return true
		}
		p = it.next
	}
}

// seekLT moves to the last entry whose internal key is < (ukey, trailer).
func (it *blockIter) seekLT(ukey []byte, trailer uint64) bool {
	// Find the first restart point whose key is >= the target; the answer
	// lies in the interval before it.
	b := it.b
	lo, hi := 0, b.numRestarts
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		k, ok := b.restartKey(mid, it.minKeyLen)
		if !ok {
			return it.fail()
		}
		if compareIKey(k, ukey, trailer) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == 0 {
		it.valid = false
		return false
	}
	end := b.restarts
	if lo < b.numRestarts {
		end = int(b.restartOffset(lo))
	}
	// Scan the interval for the last entry < target, then decode up to it
	// again: the key buffer was overwritten by the entries after it.
	it.key = it.key[:0]
	p := int(b.restartOffset(lo - 1))
	cand := p
	for p < end {
		if !it.decodeAt(p) {
			if it.err == nil {
				return it.fail()
			}
			return false
		}
		if compareIKey(it.key, ukey, trailer) >= 0 {
			break
		}
		cand = p
		p = it.next
	}
	if it.valid && it.cur == cand {
		return true
	}
	return it.decodeUntil(lo-1, cand)
}

func (it *blockIter) fail() bool {
	it.valid = false
	it.err = errBadEntry
	return false
}

// First moves to the first entry.
func (it *blockIter) First() bool {
	it.key = it.key[:0]
	return it.decodeAt(0)
}

// Next moves to the following entry.
func (it *blockIter) Next() bool {
	if !it.valid {
		return false
	}
	return it.decodeAt(it.next)
}

// seekGE moves to the first entry whose internal key is >= (ukey,
// trailer).
func (it *blockIter) seekGE(ukey []byte, trailer uint64) bool {
	var found, ok bool
	it.key, it.val, it.cur, it.next, found, ok = it.b.seek(ukey, trailer, it.key, it.minKeyLen)
	if !ok {
		return it.fail()
	}
	it.valid = found
	return found
}

// compareIKey compares internal key k with the internal key (ukey,
// trailer) without building the latter: user key ascending, then trailer
// descending, as CompareInternal.
func compareIKey(k, ukey []byte, trailer uint64) int {
	n := len(k) - TrailerLen
	if c := bytes.Compare(k[:n], ukey); c != 0 {
		return c
	}
	t := binary.LittleEndian.Uint64(k[n:])
	switch {
	case t > trailer:
		return -1
	case t < trailer:
		return 1
	}
	return 0
}

// splitSeekKey turns a seek target into (user key, trailer). A key too
// short to be an internal key is taken as a bare user key, which seeks to
// its newest entry.
func splitSeekKey(ikey []byte) ([]byte, uint64) {
	if len(ikey) < TrailerLen {
		return ikey, MakeTrailer(MaxSeqNum, KindMax)
	}
	n := len(ikey) - TrailerLen
	return ikey[:n], binary.LittleEndian.Uint64(ikey[n:])
}

// blockChecksum is the xxhash64 stored in a block trailer; b is the payload
// followed by the compression byte.
func blockChecksum(b []byte) uint64 { return xxhash.Sum64(b) }

// splitBlock checks the trailer of an on-disk block (payload + trailer) and
// returns the payload and compression byte.
func splitBlock(raw []byte) ([]byte, byte, error) {
	if len(raw) < blockTrailerLen {
		return nil, 0, errors.New("block shorter than its trailer")
	}
	n := len(raw) - blockTrailerLen
	if binary.LittleEndian.Uint64(raw[n+1:]) != blockChecksum(raw[:n+1]) {
		return nil, 0, errors.New("block checksum mismatch")
	}
	return raw[:n], raw[n], nil
}

var (
	zstdDecoderOnce sync.Once
	zstdDecoder     *zstd.Decoder
	zstdDecoderErr  error

	// zstdEncoders recycles encoders between table writers: building one
	// costs far more than compressing a block.
	zstdEncoders = sync.Pool{New: func() any {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false),
			zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err != nil {
			panic(err) // only for invalid options
		}
		return e
	}}
)

// sharedZstdDecoder returns the process-wide decoder; DecodeAll is safe for
// concurrent use. It decodes no more than the capacity it is given.
func sharedZstdDecoder() (*zstd.Decoder, error) {
	zstdDecoderOnce.Do(func() {
		zstdDecoder, zstdDecoderErr = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(maxCompressedBlockRawLen),
			zstd.WithDecodeAllCapLimit(true),
			zstd.IgnoreChecksum(true))
	})
	return zstdDecoder, zstdDecoderErr
}

// decompress returns the uncompressed contents of a block payload. An
// uncompressed payload is returned as is (not copied).
func decompress(payload []byte, typ byte) ([]byte, error) {
	c := Compression(typ)
	switch c {
	case CompressionNone:
		return payload, nil
	case CompressionS2, CompressionZstd:
	default:
		return nil, fmt.Errorf("unknown compression type %d", typ)
	}
	rawLen, n := binary.Uvarint(payload)
	if n <= 0 || rawLen == 0 || rawLen > uint64(decompressLimit(len(payload))) {
		return nil, fmt.Errorf("implausible uncompressed length %d for %d bytes", rawLen, len(payload))
	}
	src := payload[n:]
	dst := make([]byte, rawLen)
	var out []byte
	if c == CompressionS2 {
		if l, err := s2.DecodedLen(src); err != nil || uint64(l) != rawLen {
			return nil, fmt.Errorf("s2: length mismatch (%v)", err)
		}
		var err error
		if out, err = s2.Decode(dst, src); err != nil {
			return nil, fmt.Errorf("s2: %w", err)
		}
	} else {
		d, err := sharedZstdDecoder()
		if err != nil {
			return nil, err
		}
		if out, err = d.DecodeAll(src, dst[:0]); err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
	}
	if uint64(len(out)) != rawLen {
		return nil, fmt.Errorf("uncompressed length %d, want %d", len(out), rawLen)
	}
	return out, nil
}

// compressor compresses blocks for one writer, reusing its buffers.
type compressor struct {
	buf  []byte
	zenc *zstd.Encoder
}

// compress returns the payload to store for raw and the compression used:
// c if it saves at least 1/8 (and respects decompressLimit), else none. The
// result is valid until the next call.
func (z *compressor) compress(c Compression, raw []byte) ([]byte, Compression) {
	if c == CompressionNone || len(raw) == 0 || len(raw) > maxCompressedBlockRawLen {
		return raw, CompressionNone
	}
	z.buf = binary.AppendUvarint(z.buf[:0], uint64(len(raw)))
	n := len(z.buf)
	switch c {
	case CompressionS2:
		need := n + s2.MaxEncodedLen(len(raw))
		if cap(z.buf) < need {
			z.buf = append(make([]byte, 0, need), z.buf...)
		}
		enc := s2.Encode(z.buf[n:need], raw)
		z.buf = z.buf[:n+len(enc)]
	case CompressionZstd:
		if z.zenc == nil {
			z.zenc = zstdEncoders.Get().(*zstd.Encoder)
		}
		z.buf = z.zenc.EncodeAll(raw, z.buf)
	default:
		return raw, CompressionNone
	}
	if len(z.buf) > len(raw)-len(raw)/8 || len(raw) > decompressLimit(len(z.buf)) {
		return raw, CompressionNone
	}
	return z.buf, c
}

// release returns pooled resources; the compressor stays usable.
func (z *compressor) release() {
	if z.zenc != nil {
		zstdEncoders.Put(z.zenc)
		z.zenc = nil
	}
}

// DecodeBlockForFuzz runs b through every block decoder: as an on-disk
// block (trailer check, decompression), as uncompressed contents, as s2
// and zstd payloads and as a filter; each decoded block is iterated in full
// and sought. It exists for the fuzz targets and returns the first error
// met.
func DecodeBlockForFuzz(b []byte) error {
	var first error
	note := func(err error) {
		if first == nil && err != nil {
			first = err
		}
	}
	if payload, typ, err := splitBlock(b); err == nil {
		contents, err := decompress(payload, typ)
		if err == nil {
			note(fuzzWalkBlock(contents))
		}
		note(err)
	} else {
		note(err)
	}
	note(fuzzWalkBlock(b))
	if f, err := decodeBloom(b); err == nil {
		for h := uint64(0); h < 64; h++ {
			f.mayContain(h * 0x9e3779b97f4a7c15)
		}
	} else {
		note(err)
	}
	for _, c := range []Compression{CompressionS2, CompressionZstd} {
		contents, err := decompress(b, byte(c))
		if err == nil {
			note(fuzzWalkBlock(contents))
		}
		note(err)
	}
	return first
}

func fuzzWalkBlock(contents []byte) error {
	b, err := parseBlock(contents)
	if err != nil {
		return err
	}
	var it blockIter
	for _, minKeyLen := range []int{0, TrailerLen} {
		it.init(b, minKeyLen)
		n := 0
		for ok := it.First(); ok; ok = it.Next() {
			n++
			if n > len(contents) {
				return errors.New("block iteration did not end")
			}
		}
		if it.err != nil {
			return it.err
		}
		it.init(b, minKeyLen)
		m := 0
		for ok := it.Last(); ok; ok = it.Prev() {
			m++
			if m > n {
				return errors.New("backward block iteration found more entries than forward")
			}
		}
		if it.err != nil {
			return it.err
		}
	}
	it.init(b, TrailerLen)
	for _, target := range [][]byte{nil, []byte("a"), []byte("m"), {0xff, 0xff}} {
		for _, tr := range []uint64{0, MakeTrailer(MaxSeqNum, KindMax)} {
			it.init(b, TrailerLen)
			if !it.seekGE(target, tr) && it.err != nil {
				return it.err
			}
			it.init(b, TrailerLen)
			if !it.seekLT(target, tr) && it.err != nil {
				return it.err
			}
		}
	}
	return nil
}

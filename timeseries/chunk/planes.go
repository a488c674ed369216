package chunk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync"

	"github.com/klauspost/compress/huff0"
	"github.com/klauspost/compress/zstd"
)

// Integer streams of the cold format, version 2 (ARCHITECTURE.md, "Time
// series: sample encodings"): c int64 values, known to the reader, as
//
//	byte           w, the bytes of the widest u/g, 0..8 (0: every u is 0),
//	               + 0x80 when the values are zigzag-coded: u = zigzag(x)
//	zigzag varint  min, the smallest value, u = x-min (not zigzag-coded only)
//	uvarint        g, the common divisor of every u (w > 0 only)
//	w planes       byte j of every u/g, low byte first, each as
//	               byte codec + data: planeRaw c bytes; planeConst 1 byte;
//	               planeHuff uvarint length + huff0 4X stream (table
//	               first); planeZstd uvarint length + one zstd frame
//
// in wrapping arithmetic: x = min + u·g modulo 2^64 (or unzigzag(u·g)), so any int64 values
// (deltas of wrapping timestamps, float bits) are exact. A plane of
// random bytes stays raw; a plane of few values (the high bytes of small
// deltas, the exponent byte of floats) is entropy-coded on its own, which
// a single compressor over interleaved bytes cannot do.
const (
	planeRaw   = 0
	planeConst = 1
	planeHuff  = 2
	planeZstd  = 3

	streamZigzag = 0x80 // flag of a zigzag-coded stream, beside its width

	// minCompressPlane: planes shorter than this are kept raw or const.
	minCompressPlane = 32
)

// appendInts appends the integer stream of v. s.plane is scratch.
func (s *coldScratch) appendInts(b []byte, v []int64) []byte {
	c := len(v)
	if c == 0 {
		return b
	}
	lo := v[0]
	for _, x := range v[1:] {
		lo = min(lo, x)
	}
	// Offsets from the minimum, or zigzag when a few large negative
	// values (a counter reset) would widen every offset: whichever gives
	// byte planes of less entropy.
	u := s.u(c)
	for i, x := range v {
		u[i] = uint64(x) - uint64(lo)
	}
	zz := false
	if lo < 0 {
		forCost := s.planeEntropy(u)
		z := s.u2(c)
		for i, x := range v {
			z[i] = zigzag(x)
		}
		if s.planeEntropy(z) < forCost {
			zz = true
			u, s.ubuf, s.ubuf2 = z, s.ubuf2, s.ubuf
		}
	}
	var g, hi uint64 // gcd and max
	for _, x := range u {
		hi = max(hi, x)
		if g != 1 && x != 0 {
			g = gcd(g, x)
		}
	}
	w := 0
	if hi != 0 {
		w = (bits.Len64(hi/g) + 7) / 8
	}
	if zz {
		b = append(b, streamZigzag|byte(w))
	} else {
		b = append(b, byte(w))
		b = binary.AppendUvarint(b, zigzag(lo))
	}
	if w == 0 {
		return b
	}
	b = binary.AppendUvarint(b, g)
	if g != 1 {
		for i := range u {
			u[i] /= g
		}
	}
	if cap(s.plane) < c {
		s.plane = make([]byte, c)
	}
	p := s.plane[:c]
	for j := 0; j < w; j++ {
		sh := uint(8 * j)
		for i, x := range u {
			p[i] = byte(x >> sh)
		}
		b = s.appendPlane(b, p)
	}
	return b
}

func (s *coldScratch) u2(c int) []uint64 {
	if cap(s.ubuf2) < c {
		s.ubuf2 = make([]uint64, c)
	}
	return s.ubuf2[:c]
}

// planeEntropy returns the Shannon entropy, in bits, of the byte planes
// of u: what an entropy coder of each plane would come near.
func (s *coldScratch) planeEntropy(u []uint64) float64 {
	var hi uint64
	for _, x := range u {
		hi |= x
	}
	w := (bits.Len64(hi) + 7) / 8
	h := &s.hist
	*h = [8][256]uint32{}
	// Every stride-th value is enough for an estimate.
	stride := 1 + len(u)/1024
	cnt := 0
	for i := 0; i < len(u); i += stride {
		x := u[i]
		for j := 0; j < w; j++ {
			h[j][byte(x>>(8*j))]++
		}
		cnt++
	}
	// Σ -k·log2(k/n) = n·log2(n) - Σ k·log2(k), from a table.
	var e float64
	for j := 0; j < w; j++ {
		e += xlog2x(uint32(cnt))
		for _, k := range h[j] {
			e -= xlog2x(k)
		}
	}
	return e
}

// xlog2xTable holds k·log2(k) for the counts planeEntropy sees (at most
// about 1,024 values are sampled).
var xlog2xTable = func() (t [2049]float64) {
	for k := 2; k < len(t); k++ {
		t[k] = float64(k) * math.Log2(float64(k))
	}
	return t
}()

func xlog2x(k uint32) float64 {
	if int(k) < len(xlog2xTable) {
		return xlog2xTable[k]
	}
	return float64(k) * math.Log2(float64(k))
}

func (s *coldScratch) u(c int) []uint64 {
	if cap(s.ubuf) < c {
		s.ubuf = make([]uint64, c)
	}
	return s.ubuf[:c]
}

func gcd(a, b uint64) uint64 {
	if a == 0 {
		return b
	}
	if b%a == 0 {
		return a
	}
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// appendPlane appends one byte plane with the codec that makes it
// shortest.
func (s *coldScratch) appendPlane(b []byte, p []byte) []byte {
	changes := 0 // bytes unlike the one before: few means runs
	for i := 1; i < len(p); i++ {
		if p[i] != p[i-1] {
			changes++
		}
	}
	if changes == 0 {
		return append(b, planeConst, p[0])
	}
	if len(p) < minCompressPlane {
		b = append(b, planeRaw)
		return append(b, p...)
	}
	best, bestCodec := p, byte(planeRaw)
	if len(p) <= huff0.BlockSizeMax {
		if s.huff == nil {
			s.huff = new(huff0.Scratch)
		}
		s.huff.Reuse = huff0.ReusePolicyNone
		out, _, err := huff0.Compress4X(p, s.huff)
		if err == nil && len(out)+binary.MaxVarintLen32 < len(best) {
			s.huffOut = append(s.huffOut[:0], out...)
			best, bestCodec = s.huffOut, planeHuff
		}
	}
	// zstd pays where bytes repeat in runs (long-zero planes, a clamped
	// gauge); it is tried only on planes with runs or of low entropy.
	if changes < len(p)/2 || bestCodec == planeHuff && len(best) < len(p)/4 {
		enc := planeEncoders.Get().(*zstd.Encoder)
		s.zout = enc.EncodeAll(p, s.zout[:0])
		planeEncoders.Put(enc)
		if len(s.zout) < len(best) {
			best, bestCodec = s.zout, planeZstd
		}
	}
	b = append(b, bestCodec)
	if bestCodec != planeRaw {
		b = binary.AppendUvarint(b, uint64(len(best)))
	}
	return append(b, best...)
}

var planeEncoders = sync.Pool{New: func() any {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false),
		zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithLowerEncoderMem(true))
	if err != nil {
		panic(err) // only for invalid options
	}
	return e
}}

var (
	errTruncated = errors.New("truncated")
	errVarint    = errors.New("bad varint")
)

// ints decodes an integer stream of c values into s.u (as uint64 bit
// patterns of the int64 values) and returns it.
func (d *v2Decoder) ints(c int) []uint64 {
	if d.err != nil || c == 0 {
		return nil
	}
	f := d.byte()
	zz := f&streamZigzag != 0
	w := int(f &^ streamZigzag)
	var lo uint64
	if !zz {
		lo = uint64(unzigzag(d.uvarint()))
	}
	if d.err != nil {
		return nil
	}
	if cap(d.s.u) < c {
		d.s.u = make([]uint64, c)
	}
	u := d.s.u[:c]
	if w == 0 {
		for i := range u {
			u[i] = lo // zigzag: lo is 0
		}
		return u
	}
	if w > 8 {
		d.fail("integer stream of %d-byte width", w)
		return nil
	}
	g := d.uvarint()
	if d.err == nil && g == 0 {
		d.fail("integer stream with divisor 0")
	}
	for j := 0; j < w && d.err == nil; j++ {
		p := d.plane(c)
		if d.err != nil {
			return nil
		}
		p = p[:len(u)]
		sh := uint(8 * j)
		if j == 0 {
			for i, x := range p {
				u[i] = uint64(x)
			}
		} else {
			for i, x := range p {
				u[i] |= uint64(x) << sh
			}
		}
	}
	if d.err != nil {
		return nil
	}
	switch {
	case zz:
		for i, x := range u {
			u[i] = uint64(unzigzag(x * g))
		}
	case g == 1:
		for i := range u {
			u[i] += lo
		}
	default:
		for i := range u {
			u[i] = u[i]*g + lo
		}
	}
	return u
}

// plane decodes one byte plane of c bytes; the result is valid until the
// next call.
func (d *v2Decoder) plane(c int) []byte {
	codec := d.byte()
	if d.err != nil {
		return nil
	}
	s := d.s
	if cap(s.plane) < c {
		s.plane = make([]byte, c)
	}
	p := s.plane[:c]
	switch codec {
	case planeRaw:
		if len(d.b)-d.off < c {
			d.fail("raw plane of %d bytes truncated", c)
			return nil
		}
		p = d.b[d.off : d.off+c]
		d.off += c
	case planeConst:
		x := d.byte()
		for i := range p {
			p[i] = x
		}
	case planeHuff, planeZstd:
		l := d.uvarint()
		if d.err != nil {
			return nil
		}
		if l > uint64(len(d.b)-d.off) {
			d.fail("compressed plane of %d bytes truncated", l)
			return nil
		}
		in := d.b[d.off : d.off+int(l)]
		d.off += int(l)
		var out []byte
		var err error
		if codec == planeHuff {
			if c > huff0.BlockSizeMax {
				d.fail("huffman plane of %d bytes", c)
				return nil
			}
			if s.huff == nil {
				s.huff = new(huff0.Scratch)
			}
			var h *huff0.Scratch
			h, in, err = huff0.ReadTable(in, s.huff)
			if err == nil {
				s.huff = h
				out, err = h.Decoder().Decompress4X(p[:0:c], in)
			}
		} else {
			var zd *zstd.Decoder
			if zd, err = zstdDecoder(); err == nil {
				out, err = zd.DecodeAll(in, p[:0:c])
			}
		}
		if err != nil || len(out) != c {
			d.fail("compressed plane: %d of %d bytes (%v)", len(out), c, err)
			return nil
		}
		p = out
	default:
		d.fail("unknown plane codec %d", codec)
		return nil
	}
	return p
}

// v2Decoder reads a version 2 cold block's body; the first error sticks.
type v2Decoder struct {
	b   []byte
	off int
	err error
	s   *decodeScratch
}

type decodeScratch struct {
	u     []uint64
	plane []byte
	runs  []excRun
	huff  *huff0.Scratch
}

func (d *v2Decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *v2Decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.err = errTruncated
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *v2Decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, k := binary.Uvarint(d.b[d.off:])
	if k <= 0 {
		d.err = errVarint
		return 0
	}
	d.off += k
	return x
}

package chunk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/huff0"
	"github.com/klauspost/compress/zstd"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/timeseries"
)

const (
	// ColdVersion is the version byte EncodeCold writes; DecodeCold
	// reads it and every version before it (1).
	ColdVersion = 2
	coldV1      = 1
	// MaxColdSamples is the most samples one cold block holds.
	MaxColdSamples = 1 << 20

	coldName = "cold block"

	codecNone = 0
	codecZstd = 1

	tsDelta = 0 // timestamps: uvarint deltas
	tsDod   = 1 // timestamps: zigzag varint deltas of deltas

	valRaw     = 0 // values: float64 bits XOR the previous, byte planes
	valDecimal = 1 // values: decimal mantissas with a common exponent

	mantRaw   = 0
	mantDelta = 1
	mantDod   = 2

	// maxExp bounds the common exponent: 10^22 is the largest power of ten
	// a float64 holds exactly.
	maxExp = 22
	// maxMantissa bounds a decimal mantissa: every integer up to 2^53 is
	// exact in a float64.
	maxMantissa = 1 << 53

	// maxBodyPerSample bounds the uncompressed body: a timestamp takes at
	// most 10 bytes, a value at most 10 (mantissa) or 8+10 (exception).
	maxBodyPerSample = 30
	maxBodyFixed     = 64
)

// ErrBlockTooLarge: more than MaxColdSamples samples for one cold block.
var ErrBlockTooLarge = errors.New("timeseries/chunk: too many samples for one cold block")

var pow10 = func() (p [maxExp + 1]float64) {
	p[0] = 1
	for i := 1; i <= maxExp; i++ {
		p[i] = p[i-1] * 10 // exact up to 10^22
	}
	return p
}()

var pow10i = func() (p [16]int64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

var (
	zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
		return zstd.NewReader(nil, zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(maxBodyPerSample*MaxColdSamples+maxBodyFixed),
			zstd.WithDecodeAllCapLimit(true), zstd.IgnoreChecksum(true))
	})
	scratchPool = sync.Pool{New: func() any { return new(coldScratch) }}
)

type coldScratch struct {
	exp     []int8  // per value: its decimal exponent, or noExp
	mant    []int64 // per value: its mantissa at exp
	ints    []int64 // the integers of the stream being written
	ubuf    []uint64
	ubuf2   []uint64
	hist    [8][256]uint32
	runs    []excRun
	plane   []byte
	huff    *huff0.Scratch
	huffOut []byte
	zout    []byte
}

const noExp = math.MinInt8

// EncodeCold appends a cold block of samples to dst. Samples must be
// sorted by T with unique T (else ErrOutOfOrder, and dst is returned
// unchanged); at most MaxColdSamples. Every float64 bit pattern round-trips.
func EncodeCold(dst []byte, samples []timeseries.Sample) ([]byte, error) {
	n := len(samples)
	if n > MaxColdSamples {
		return dst, fmt.Errorf("%w: %d samples, at most %d", ErrBlockTooLarge, n, MaxColdSamples)
	}
	for i := 1; i < n; i++ {
		if samples[i].T <= samples[i-1].T {
			return dst, fmt.Errorf("%w: sample %d at %d after %d", ErrOutOfOrder, i, samples[i].T, samples[i-1].T)
		}
	}
	s := scratchPool.Get().(*coldScratch)
	defer scratchPool.Put(s)
	start := len(dst)
	dst = append(dst, ColdVersion)
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = s.appendBody2(dst, samples)
	sum := uint32(xxhash.Sum64(dst[start:]))
	return binary.LittleEndian.AppendUint32(dst, sum), nil
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

func zigzag(x int64) uint64 { return uint64(x<<1) ^ uint64(x>>63) }

func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// decimalOf returns m and e with float64(m)·10^e (for e < 0: float64(m) /
// 10^-e) equal to v bit for bit, e as high as possible, or ok = false.
// -0, NaN and ±Inf have none.
func decimalOf(v float64) (m int64, e int, ok bool) {
	if v == 0 {
		if math.Signbit(v) {
			return 0, 0, false
		}
		return 0, 0, true
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, 0, false
	}
	a := math.Abs(v)
	if a >= maxMantissa {
		// Large: an integer mantissa times a positive power of ten.
		for e := 1; e <= maxExp; e++ {
			r := math.Round(v / pow10[e])
			if math.Abs(r) > maxMantissa {
				continue
			}
			if r*pow10[e] == v {
				return int64(r), e, true
			}
		}
		return 0, 0, false
	}
	// Exact at k digits implies exact at k+1 (the mantissa times ten):
	// try the short forms, then the longest allowed, then search between.
	try := func(k int) (int64, bool) {
		r := math.Round(v * pow10[k])
		return int64(r), math.Abs(r) <= maxMantissa && r/pow10[k] == v
	}
	for k := 0; k <= 3; k++ {
		if m, ok := try(k); ok {
			return m, -k, true
		}
	}
	// The largest k whose mantissa stays below 2^49, where the product's
	// rounding error is under 1/8 and the search's premise holds; longer
	// mantissas are left to the exceptions or the XOR fallback.
	hi := 3
	for hi < maxExp && a*pow10[hi+1] <= 1<<49 {
		hi++
	}
	m, ok = try(hi)
	if hi == 3 || !ok {
		return 0, 0, false
	}
	lo, e := 3, hi // not exact at lo, exact at e
	for e-lo > 1 {
		mid := (lo + e) / 2
		if mm, ok := try(mid); ok {
			m, e = mm, mid
		} else {
			lo = mid
		}
	}
	return m, -e, true
}

// decimalValue is the decoder's side of decimalOf.
func decimalValue(m int64, e int) float64 {
	if e >= 0 {
		return float64(m) * pow10[e]
	}
	return float64(m) / pow10[-e]
}

// chooseExponent picks the common exponent that minimises an estimate of
// the encoded size (varint deltas of mantissas, 9 bytes per exception).
func chooseExponent(exp []int8, mant []int64, hist *[2*maxExp + 1]int) (best, bestExc, bestCost int) {
	bestCost = math.MaxInt
	for ci, c := range hist {
		if c == 0 {
			continue
		}
		E := ci - maxExp
		cost, exc := 0, 0
		var prev int64
		for i, e := range exp {
			M, ok := scaleMantissa(mant[i], int(e), E)
			if !ok {
				exc++
				cost += 9
				continue
			}
			cost += uvarintLen(zigzag(M - prev))
			prev = M
		}
		if cost < bestCost {
			best, bestCost, bestExc = E, cost, exc
		}
	}
	if bestCost == math.MaxInt { // only zeros and exceptions
		bestExc, bestCost = 0, 0
		for _, e := range exp {
			if e == noExp {
				bestExc++
				bestCost += 9
			} else {
				bestCost++
			}
		}
	}
	return best, bestExc, bestCost
}

// scaleMantissa returns m·10^(e-E) if e is an exponent (not noExp), e >=
// E and the result stays within maxMantissa.
func scaleMantissa(m int64, e, E int) (int64, bool) {
	if e == noExp || e < E {
		return 0, m == 0 && e != noExp
	}
	d := e - E
	if m == 0 {
		return 0, true
	}
	if d >= len(pow10i) {
		return 0, false
	}
	lim := maxMantissa / pow10i[d]
	if m > lim || m < -lim {
		return 0, false
	}
	return m * pow10i[d], true
}

// DecodeCold appends the samples of cold block b to dst. A block that
// fails its checksum or does not decode returns an error wrapping
// errs.ErrCorruption (a version byte above ColdVersion:
// errs.ErrNewerFormat) and dst as it was.
func DecodeCold(b []byte, dst []timeseries.Sample) ([]timeseries.Sample, error) {
	if len(b) < 1+1+4 {
		return dst, errs.Corruptf(coldName, 0, "%d bytes, shorter than header and checksum", len(b))
	}
	payload := b[:len(b)-4]
	if got, want := uint32(xxhash.Sum64(payload)), binary.LittleEndian.Uint32(b[len(b)-4:]); got != want {
		return dst, errs.Corruptf(coldName, int64(len(payload)), "checksum mismatch: computed %#x, stored %#x", got, want)
	}
	switch {
	case payload[0] == 0:
		return dst, errs.Corruptf(coldName, 0, "format version 0")
	case payload[0] > ColdVersion:
		return dst, errs.NewerFormatf(coldName, uint32(payload[0]), ColdVersion)
	}
	if payload[0] != coldV1 {
		return decodeCold2(payload, dst)
	}
	off := 1
	n64, k := binary.Uvarint(payload[off:])
	if k <= 0 || n64 > MaxColdSamples || off+k >= len(payload) {
		return dst, errs.Corruptf(coldName, int64(off), "bad sample count or no codec byte")
	}
	off += k
	n := int(n64)
	codec := payload[off]
	off++
	var body []byte
	switch codec {
	case codecNone:
		body = payload[off:]
	case codecZstd:
		rawLen, k := binary.Uvarint(payload[off:])
		if k <= 0 || rawLen > uint64(maxBodyPerSample*n+maxBodyFixed) {
			return dst, errs.Corruptf(coldName, int64(off), "implausible body length for %d samples", n)
		}
		off += k
		d, err := zstdDecoder()
		if err != nil {
			return dst, err
		}
		body, err = d.DecodeAll(payload[off:], make([]byte, 0, rawLen))
		if err != nil || uint64(len(body)) != rawLen {
			return dst, errs.Corruptf(coldName, int64(off), "zstd body: %d of %d bytes (%v)", len(body), rawLen, err)
		}
	default:
		return dst, errs.Corruptf(coldName, int64(off-1), "unknown codec %d", codec)
	}
	// A sample takes at least one byte of timestamp and one of value.
	if n > len(body)/2+1 {
		return dst, errs.Corruptf(coldName, int64(off), "%d samples in a %d-byte body", n, len(body))
	}
	base := len(dst)
	dst = growSamples(dst, n)[:base+n]
	out := dst[base:]
	d := bodyDecoder{b: body}
	d.timestamps(out)
	d.values(out)
	if d.err == nil && d.off != len(body) {
		d.fail("%d bytes after the values", len(body)-d.off)
	}
	if d.err != nil {
		return dst[:base], errs.Corruptf(coldName, -1, "body offset %d: %v", d.off, d.err)
	}
	return dst, nil
}

// decodeCold2 decodes the checksummed payload of a version 2 block.
func decodeCold2(payload []byte, dst []timeseries.Sample) ([]timeseries.Sample, error) {
	n64, k := binary.Uvarint(payload[1:])
	if k <= 0 || n64 > MaxColdSamples {
		return dst, errs.Corruptf(coldName, 1, "bad sample count")
	}
	n := int(n64)
	body := payload[1+k:]
	// A sample takes at least T0, a value mode byte and a value.
	if n > 0 && len(body) < 3 || n == 0 && len(body) != 0 {
		return dst, errs.Corruptf(coldName, int64(1+k), "%d samples in a %d-byte body", n, len(body))
	}
	base := len(dst)
	dst = growSamples(dst, n)[:base+n]
	s := decodePool.Get().(*decodeScratch)
	d := v2Decoder{b: body, s: s}
	d.body(dst[base:])
	decodePool.Put(s)
	if d.err == nil && d.off != len(body) {
		d.fail("%d bytes after the values", len(body)-d.off)
	}
	if d.err != nil {
		return dst[:base], errs.Corruptf(coldName, int64(1+k+d.off), "body offset %d: %v", d.off, d.err)
	}
	return dst, nil
}

var decodePool = sync.Pool{New: func() any { return new(decodeScratch) }}

// bodyDecoder reads a version 1 cold block's uncompressed body; the first
// error sticks.
type bodyDecoder struct {
	b   []byte
	off int
	err error
}

func (d *bodyDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *bodyDecoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *bodyDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, k := binary.Uvarint(d.b[d.off:])
	if k <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += k
	return x
}

func (d *bodyDecoder) timestamps(out []timeseries.Sample) {
	mode := d.byte()
	if mode != tsDelta && mode != tsDod {
		d.fail("unknown timestamp mode %d", mode)
		return
	}
	if len(out) == 0 {
		return
	}
	t := unzigzag(d.uvarint())
	out[0].T = t
	var delta uint64
	for i := 1; i < len(out) && d.err == nil; i++ {
		u := d.uvarint()
		if mode == tsDelta {
			delta = u
		} else {
			delta += uint64(unzigzag(u))
		}
		nt := int64(uint64(t) + delta)
		if nt <= t {
			d.fail("sample %d: timestamp %d not above %d", i, nt, t)
			return
		}
		out[i].T, t = nt, nt
	}
}

func (d *bodyDecoder) values(out []timeseries.Sample) {
	switch mode := d.byte(); {
	case d.err != nil:
	case mode == valRaw:
		d.raw(out)
	case mode == valDecimal:
		d.decimal(out)
	default:
		d.fail("unknown value mode %d", mode)
	}
}

func (d *bodyDecoder) decimal(out []timeseries.Sample) {
	E := unzigzag(d.uvarint())
	mode := d.byte()
	exc := d.uvarint()
	if d.err != nil {
		return
	}
	if E < -maxExp || E > maxExp || mode > mantDod || exc > uint64(len(out)) {
		d.fail("bad decimal header: exponent %d, mode %d, %d exceptions", E, mode, exc)
		return
	}
	// Exception positions (gaps), their raw bits, then the mantissas of
	// the other values.
	isExc := make([]bool, len(out))
	pos := -1
	for i := uint64(0); i < exc && d.err == nil; i++ {
		gap := d.uvarint()
		if gap >= uint64(len(out)-pos-1) {
			d.fail("exception position out of range")
			return
		}
		pos += int(gap) + 1
		isExc[pos] = true
	}
	if d.err != nil {
		return
	}
	if uint64(len(d.b)-d.off) < 8*exc {
		d.fail("exception values truncated")
		return
	}
	for i := range out {
		if isExc[i] {
			out[i].V = math.Float64frombits(binary.LittleEndian.Uint64(d.b[d.off:]))
			d.off += 8
		}
	}
	var prev, prevDelta int64
	for i := range out {
		if isExc[i] {
			continue
		}
		u := unzigzag(d.uvarint())
		if d.err != nil {
			return
		}
		var M int64
		switch mode {
		case mantRaw:
			M = u
		case mantDelta:
			M = prev + u
		default:
			prevDelta += u
			M = prev + prevDelta
		}
		if M > maxMantissa || M < -maxMantissa {
			d.fail("sample %d: mantissa %d out of range", i, M)
			return
		}
		prevDelta = M - prev
		prev = M
		out[i].V = decimalValue(M, int(E))
	}
}

func (d *bodyDecoder) raw(out []timeseries.Sample) {
	if len(out) == 0 {
		return
	}
	var r bitReader
	r.reset(d.b[d.off:])
	prev, ok := r.read64(64)
	if !ok {
		d.fail("raw values truncated")
		return
	}
	out[0].V = math.Float64frombits(prev)
	leading, trailing := uint8(0xff), uint8(0)
	for i := 1; i < len(out); i++ {
		vb, why := xorRead(&r, prev, &leading, &trailing)
		if why != "" {
			d.fail("sample %d: %s", i, why)
			return
		}
		out[i].V, prev = math.Float64frombits(vb), vb
	}
	left, zero := r.rest()
	d.off = len(d.b) - left/8
	if !zero {
		d.fail("nonzero padding after the raw values")
	}
}

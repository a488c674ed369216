package chunk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/timeseries"
)

const (
	// HotVersion is the hot format's version byte.
	HotVersion = 1
	// MaxHotSamples is the most samples a hot chunk holds (its count is 16
	// bits).
	MaxHotSamples = math.MaxUint16

	hotHeaderLen = 3 // version, count (uint16 big-endian)
	hotName      = "hot chunk"
)

var (
	// ErrOutOfOrder: a sample's timestamp is not above the one before it.
	// Encoders take samples sorted by T with unique T.
	ErrOutOfOrder = errors.New("timeseries/chunk: sample timestamps not strictly ascending")
	// ErrChunkFull: a hot chunk already holds MaxHotSamples samples.
	ErrChunkFull = errors.New("timeseries/chunk: hot chunk full")
)

// Timestamp classes of the hot encoding: a delta of delta that fits in a
// class's width (two's complement) is written with its prefix.
var dodClasses = [...]struct {
	prefix, prefixLen, width uint
}{
	{0b10, 2, 14},
	{0b110, 3, 17},
	{0b1110, 4, 20},
}

// Appender builds a hot chunk one sample at a time. The zero value is not
// ready: use NewAppender or NewAppenderFrom.
type Appender struct {
	w        bitWriter
	n        int
	t        int64
	delta    uint64 // last timestamp delta, wrapping
	v        uint64 // last value's bits
	leading  uint8  // XOR window of the last value written with '11'; 0xff: none yet
	trailing uint8
}

// NewAppender returns an appender of an empty chunk.
func NewAppender() *Appender {
	a := &Appender{leading: 0xff}
	a.w.reset([]byte{HotVersion, 0, 0}, hotHeaderLen*8)
	return a
}

// NewAppenderFrom returns an appender that goes on from the hot chunk b
// (which it copies), or the error DecodeHot would return for b.
func NewAppenderFrom(b []byte) (*Appender, error) {
	var it Iterator
	it.Reset(b)
	for it.Next() {
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	a := &Appender{
		n: it.n, t: it.t, delta: it.delta, v: math.Float64bits(it.v),
		leading: it.leading, trailing: it.trailing,
	}
	a.w.reset(b, hotHeaderLen*8+it.used)
	return a, nil
}

// Len returns the number of samples appended.
func (a *Appender) Len() int { return a.n }

// Bytes returns the encoded chunk, complete at any moment. It is the
// appender's buffer: valid until the next Append; copy it to keep it.
func (a *Appender) Bytes() []byte { return a.w.bytes() }

// Append adds a sample. T must be above the last sample's T
// (ErrOutOfOrder); a chunk holds at most MaxHotSamples (ErrChunkFull). On
// error the chunk is unchanged.
func (a *Appender) Append(t int64, v float64) error {
	vb := math.Float64bits(v)
	switch {
	case a.n == 0:
		a.w.write(uint64(t), 64)
		a.w.write(vb, 64)
	case t <= a.t:
		return fmt.Errorf("%w: %d after %d", ErrOutOfOrder, t, a.t)
	case a.n >= MaxHotSamples:
		return ErrChunkFull
	default:
		delta := uint64(t) - uint64(a.t) // wrapping: exact modulo 2^64
		a.writeDod(int64(delta - a.delta))
		a.writeValue(vb)
		a.delta = delta
	}
	a.t, a.v = t, vb
	a.n++
	binary.BigEndian.PutUint16(a.w.buf[1:3], uint16(a.n))
	return nil
}

func (a *Appender) writeDod(dod int64) {
	if dod == 0 {
		a.w.bit(false)
		return
	}
	for _, c := range dodClasses {
		if lim := int64(1) << (c.width - 1); dod >= -lim && dod < lim {
			a.w.write(uint64(c.prefix), c.prefixLen)
			a.w.write(uint64(dod), c.width)
			return
		}
	}
	a.w.write(0b1111, 4)
	a.w.write(uint64(dod), 64)
}

func (a *Appender) writeValue(vb uint64) { xorWrite(&a.w, vb, a.v, &a.leading, &a.trailing) }

// xorWrite writes value bits vb after prev: '0' if equal, else '10' and
// the XOR's bits inside the last window (*leading, *trailing; leading 0xff:
// none yet) when it fits and is no longer than a new one, else '11', 5 bits of leading zeros (at most 31), 6 bits of
// significant bits (64 written as 0) and those bits, which become the
// window.
func xorWrite(w *bitWriter, vb, prev uint64, leading, trailing *uint8) {
	x := vb ^ prev
	if x == 0 {
		w.bit(false)
		return
	}
	l := uint8(min(bits.LeadingZeros64(x), 31))
	t := uint8(bits.TrailingZeros64(x))
	// Reuse the window unless a new one (11 bits of header) is shorter.
	if *leading != 0xff && l >= *leading && t >= *trailing && 64-*leading-*trailing <= 75-l-t {
		w.write(0b10, 2)
		w.write(x>>*trailing, uint(64-*leading-*trailing))
		return
	}
	*leading, *trailing = l, t
	sig := 64 - l - t
	w.write(0b11, 2)
	w.write(uint64(l), 5)
	w.write(uint64(sig&63), 6)
	w.write(x>>t, uint(sig))
}

// xorRead reads what xorWrite wrote and returns the value's bits, or a
// reason the bits do not decode.
func xorRead(r *bitReader, prev uint64, leading, trailing *uint8) (uint64, string) {
	on, ok := r.readBit()
	if !ok {
		return 0, "value truncated"
	}
	if !on {
		return prev, ""
	}
	second, ok := r.readBit()
	if !ok {
		return 0, "value truncated"
	}
	if second {
		hdr, ok := r.read(11)
		if !ok {
			return 0, "value truncated"
		}
		l, sig := uint8(hdr>>6), uint8(hdr&63)
		if sig == 0 {
			sig = 64
		}
		if int(l)+int(sig) > 64 {
			return 0, fmt.Sprintf("XOR window %d+%d bits", l, sig)
		}
		*leading, *trailing = l, 64-l-sig
	} else if *leading == 0xff {
		return 0, "XOR window reused before one was set"
	}
	x, ok := r.read64(uint(64 - *leading - *trailing))
	if !ok {
		return 0, "value truncated"
	}
	return prev ^ x<<*trailing, ""
}

// DecodeHot appends the samples of hot chunk b to dst. Damaged or
// truncated input returns an error wrapping errs.ErrCorruption (a version
// byte above HotVersion: errs.ErrNewerFormat) and dst as it was.
func DecodeHot(b []byte, dst []timeseries.Sample) ([]timeseries.Sample, error) {
	var it Iterator
	it.Reset(b)
	if it.err == nil {
		dst = growSamples(dst, it.count)
	}
	base := len(dst)
	for it.Next() {
		dst = append(dst, timeseries.Sample{T: it.t, V: it.v})
	}
	if err := it.Err(); err != nil {
		return dst[:base], err
	}
	return dst, nil
}

// HotLen returns the sample count in a hot chunk's header, checked only
// for plausibility against the chunk's length.
func HotLen(b []byte) (int, error) {
	var it Iterator
	it.Reset(b)
	return it.count, it.err
}

func growSamples(dst []timeseries.Sample, n int) []timeseries.Sample {
	if cap(dst)-len(dst) < n {
		dst = append(make([]timeseries.Sample, 0, len(dst)+n), dst...)
	}
	return dst
}

// Iterator reads a hot chunk sample by sample without materialising it.
//
//	var it chunk.Iterator
//	it.Reset(b)
//	for it.Next() { t, v := it.At(); ... }
//	if err := it.Err(); err != nil { ... }
type Iterator struct {
	r        bitReader
	count    int // samples in the header
	n        int // samples read
	used     int // bits of the stream read so far, at the end
	t        int64
	v        float64
	delta    uint64
	leading  uint8
	trailing uint8
	err      error
}

// NewIterator returns an iterator over hot chunk b.
func NewIterator(b []byte) *Iterator {
	it := new(Iterator)
	it.Reset(b)
	return it
}

// Reset makes the iterator read b from its first sample.
func (it *Iterator) Reset(b []byte) {
	*it = Iterator{leading: 0xff}
	switch {
	case len(b) < hotHeaderLen:
		it.err = errs.Corruptf(hotName, 0, "%d bytes, shorter than the %d-byte header", len(b), hotHeaderLen)
		return
	case b[0] == 0:
		it.err = errs.Corruptf(hotName, 0, "format version 0")
		return
	case b[0] > HotVersion:
		it.err = errs.NewerFormatf(hotName, uint32(b[0]), HotVersion)
		return
	}
	it.count = int(binary.BigEndian.Uint16(b[1:3]))
	// The first sample takes 128 bits, each other at least 2.
	streamBits := (len(b) - hotHeaderLen) * 8
	if it.count > 0 && (streamBits < 128 || it.count-1 > (streamBits-128)/2) {
		it.err = errs.Corruptf(hotName, 1, "%d samples cannot fit in %d bytes", it.count, len(b))
		it.count = 0
		return
	}
	it.r.reset(b[hotHeaderLen:])
	if it.count == 0 {
		it.finish()
	}
}

// Next advances to the next sample; false at the end or on error.
func (it *Iterator) Next() bool {
	if it.err != nil || it.n >= it.count {
		return false
	}
	if it.n == 0 {
		t, ok1 := it.r.read64(64)
		v, ok2 := it.r.read64(64)
		if !ok1 || !ok2 {
			return it.fail("first sample truncated")
		}
		it.t, it.v = int64(t), math.Float64frombits(v)
	} else if !it.readNext() {
		return false
	}
	it.n++
	if it.n == it.count {
		it.finish()
	}
	return true
}

func (it *Iterator) readNext() bool {
	ones, ok := it.r.unary(4)
	if !ok {
		return it.fail("timestamp truncated")
	}
	var dod uint64
	switch ones {
	case 0:
	case 4:
		if dod, ok = it.r.read64(64); !ok {
			return it.fail("timestamp truncated")
		}
	default:
		w := dodClasses[ones-1].width
		if dod, ok = it.r.read(w); !ok {
			return it.fail("timestamp truncated")
		}
		dod = uint64(int64(dod<<(64-w)) >> (64 - w)) // sign-extend
	}
	delta := it.delta + dod
	t := int64(uint64(it.t) + delta)
	if t <= it.t {
		return it.fail("timestamp %d not above %d", t, it.t)
	}

	vb, why := xorRead(&it.r, math.Float64bits(it.v), &it.leading, &it.trailing)
	if why != "" {
		return it.fail("%s", why)
	}
	it.t, it.delta, it.v = t, delta, math.Float64frombits(vb)
	return true
}

// finish checks that only the zero padding of the last byte is left.
func (it *Iterator) finish() {
	left, zero := it.r.rest()
	it.used = len(it.r.b)*8 - left
	if left >= 8 || !zero {
		it.err = errs.Corruptf(hotName, int64(hotHeaderLen+it.used/8), "%d bits after the last sample", left)
	}
}

func (it *Iterator) fail(format string, args ...any) bool {
	consumed := it.r.pos*8 - int(it.r.n)
	it.err = errs.Corruptf(hotName, int64(hotHeaderLen+consumed/8), "sample %d: %s", it.n, fmt.Sprintf(format, args...))
	return false
}

// At returns the current sample.
func (it *Iterator) At() (int64, float64) { return it.t, it.v }

// Err returns the error that stopped the iterator, nil at a clean end.
func (it *Iterator) Err() error { return it.err }

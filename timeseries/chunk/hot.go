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
	var d hotDecoder
	err := d.reset(b)
	var scratch [64]timeseries.Sample
	for err == nil && d.i < d.count {
		_, err = d.decode(scratch[:])
	}
	if err != nil {
		return nil, err
	}
	a := &Appender{n: d.count, t: d.t, delta: d.delta, v: d.v, leading: 0xff}
	if d.sig != 0 {
		a.leading, a.trailing = uint8(64-d.sig-d.trailing), uint8(d.trailing)
	}
	a.w.reset(b, hotHeaderLen*8+d.used)
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
	var d hotDecoder
	if err := d.reset(b); err != nil {
		return dst, err
	}
	base := len(dst)
	dst = growSamples(dst, d.count)[:base+d.count]
	if _, err := d.decode(dst[base:]); err != nil {
		return dst[:base], err
	}
	return dst, nil
}

// HotLen returns the sample count in a hot chunk's header, checked only
// for plausibility against the chunk's length.
func HotLen(b []byte) (int, error) {
	var d hotDecoder
	err := d.reset(b)
	return d.count, err
}

func growSamples(dst []timeseries.Sample, n int) []timeseries.Sample {
	if cap(dst)-len(dst) < n {
		dst = append(make([]timeseries.Sample, 0, len(dst)+n), dst...)
	}
	return dst
}

// hotDecoder decodes a hot chunk's samples in batches: decode keeps the
// bit reader and the sample state in locals for a whole batch, so its
// inner loop is straight-line code with no per-sample call (ARCHITECTURE.md
// "Time series: sample encodings").
type hotDecoder struct {
	b     []byte // the bit stream after the header
	pos   int    // next byte of b to load into buf
	buf   uint64 // the next n bits of the stream at the top (see refill)
	n     uint
	count int // samples in the header
	i     int // samples decoded
	used  int // bits of the stream holding samples, once all are decoded

	t        int64
	delta    uint64 // last timestamp delta, wrapping
	v        uint64 // last value's bits
	trailing uint   // XOR window: sig bits above trailing zero bits
	sig      uint   // 0: no window yet
}

// reset makes d decode chunk b from its first sample and checks the
// header: the version and a count the bytes can hold. An empty chunk is
// checked whole.
func (d *hotDecoder) reset(b []byte) error {
	*d = hotDecoder{}
	switch {
	case len(b) < hotHeaderLen:
		return errs.Corruptf(hotName, 0, "%d bytes, shorter than the %d-byte header", len(b), hotHeaderLen)
	case b[0] == 0:
		return errs.Corruptf(hotName, 0, "format version 0")
	case b[0] > HotVersion:
		return errs.NewerFormatf(hotName, uint32(b[0]), HotVersion)
	}
	count := int(binary.BigEndian.Uint16(b[1:3]))
	// The first sample takes 128 bits, each other at least 2.
	streamBits := (len(b) - hotHeaderLen) * 8
	if count > 0 && (streamBits < 128 || count-1 > (streamBits-128)/2) {
		return errs.Corruptf(hotName, 1, "%d samples cannot fit in %d bytes", count, len(b))
	}
	d.b, d.count = b[hotHeaderLen:], count
	if count == 0 {
		return d.finish()
	}
	return nil
}

// Widths of the delta-of-delta classes by the count of ones in their
// prefix (dodClasses).
var dodWidth = [4]uint{0, 14, 17, 20}

// decode decodes the next samples into out, as many as it holds or the
// chunk has left, and returns how many it wrote. The error (wrapping
// errs.ErrCorruption) stops decoding after the samples written; once the
// last sample is decoded it is finish's.
//
// Every read checks the bits it needs against n, refilling first when
// short: a refill while 8 bytes remain leaves at least 57 bits, enough for
// a timestamp (at most 4+20 bits outside the 64-bit class) and a value's
// control bits and header (13 bits), so those checks only fail near the
// end of the stream. A failure reports the byte the reference bit-by-bit
// reader would have stopped at: after the bits it read, which for a
// truncated prefix is the whole stream.
func (d *hotDecoder) decode(out []timeseries.Sample) (int, error) {
	out = out[:min(len(out), d.count-d.i)]
	if len(out) == 0 {
		return 0, nil
	}
	b, pos, buf, n := d.b, d.pos, d.buf, d.n
	t, delta, v := d.t, d.delta, d.v
	trailing, sig := d.trailing, d.sig
	k := 0
	var err error
	if d.i == 0 {
		// reset checked that the stream holds these 128 bits.
		t = int64(binary.BigEndian.Uint64(b[0:8]))
		v = binary.BigEndian.Uint64(b[8:16])
		pos = 16
		out[0] = timeseries.Sample{T: t, V: math.Float64frombits(v)}
		k = 1
	}
	for ; k < len(out); k++ {
		// Timestamp: '0', or a prefix of 1 to 4 ones naming the class.
		if n < 37 {
			pos, buf, n = refill(b, pos, buf, n)
		}
		if buf < 1<<63 {
			if n == 0 {
				err = d.corrupt(d.i+k, len(b)*8, "timestamp truncated")
				break
			}
			buf <<= 1
			n--
		} else {
			var dod uint64
			// Bits past the end of b are zero, so ones <= n at the end.
			if ones := uint(bits.LeadingZeros64(^buf)); ones < 4 {
				p, w := ones+1, dodWidth[ones&3]
				if n < p+w {
					at := len(b) * 8 // the prefix ran off the end
					if n >= p {
						at = pos*8 - int(n) + int(p)
					}
					err = d.corrupt(d.i+k, at, "timestamp truncated")
					break
				}
				dod = uint64(int64(buf<<p) >> (64 - w)) // sign-extended
				buf <<= p + w
				n -= p + w
			} else {
				buf <<= 4
				n -= 4
				if n < 32 {
					if pos, buf, n = refill(b, pos, buf, n); n < 32 {
						err = d.corrupt(d.i+k, pos*8-int(n), "timestamp truncated")
						break
					}
				}
				dod = buf >> 32 << 32
				buf <<= 32
				n -= 32
				if n < 32 {
					if pos, buf, n = refill(b, pos, buf, n); n < 32 {
						err = d.corrupt(d.i+k, pos*8-int(n), "timestamp truncated")
						break
					}
				}
				dod |= buf >> 32
				buf <<= 32
				n -= 32
			}
			delta += dod
		}
		nt := int64(uint64(t) + delta)
		if nt <= t {
			err = d.corrupt(d.i+k, pos*8-int(n), "timestamp %d not above %d", nt, t)
			break
		}
		t = nt

		// Value: '0' unchanged, '10' in the window, '11' a new window.
		if n < 13 {
			pos, buf, n = refill(b, pos, buf, n)
		}
		if buf < 1<<63 {
			if n == 0 {
				err = d.corrupt(d.i+k, len(b)*8, "value truncated")
				break
			}
			buf <<= 1
			n--
		} else {
			if n < 2 { // the second control bit is past the end
				err = d.corrupt(d.i+k, len(b)*8, "value truncated")
				break
			}
			if buf >= 3<<62 {
				if n < 13 {
					err = d.corrupt(d.i+k, pos*8-int(n)+2, "value truncated")
					break
				}
				l, s := uint(buf>>57)&31, uint(buf>>51)&63
				buf <<= 13
				n -= 13
				if s == 0 {
					s = 64
				}
				if l+s > 64 {
					err = d.corrupt(d.i+k, pos*8-int(n), "XOR window %d+%d bits", l, s)
					break
				}
				sig, trailing = s, 64-l-s
			} else {
				buf <<= 2
				n -= 2
				if sig == 0 {
					err = d.corrupt(d.i+k, pos*8-int(n), "XOR window reused before one was set")
					break
				}
			}
			var x uint64
			if sig <= 56 {
				if n < sig {
					if pos, buf, n = refill(b, pos, buf, n); n < sig {
						err = d.corrupt(d.i+k, pos*8-int(n), "value truncated")
						break
					}
				}
				x = buf >> ((64 - sig) & 63)
				buf <<= sig & 63
				n -= sig
			} else {
				// As two reads, so that a truncation stops where the
				// reference reader's would.
				hi := sig - 32
				if n < hi {
					if pos, buf, n = refill(b, pos, buf, n); n < hi {
						err = d.corrupt(d.i+k, pos*8-int(n), "value truncated")
						break
					}
				}
				x = buf >> ((64 - hi) & 63) << 32
				buf <<= hi & 63
				n -= hi
				if n < 32 {
					if pos, buf, n = refill(b, pos, buf, n); n < 32 {
						err = d.corrupt(d.i+k, pos*8-int(n), "value truncated")
						break
					}
				}
				x |= buf >> 32
				buf <<= 32
				n -= 32
			}
			v ^= x << (trailing & 63)
		}
		out[k] = timeseries.Sample{T: t, V: math.Float64frombits(v)}
	}
	d.pos, d.buf, d.n = pos, buf, n
	d.t, d.delta, d.v = t, delta, v
	d.trailing, d.sig = trailing, sig
	d.i += k
	if err == nil && d.i == d.count {
		err = d.finish()
	}
	return k, err
}

// finish checks that only the zero padding of the last byte is left.
func (d *hotDecoder) finish() error {
	zero := d.n == 0 || d.buf>>((64-d.n)&63) == 0
	for _, c := range d.b[d.pos:] {
		zero = zero && c == 0
	}
	left := int(d.n) + 8*(len(d.b)-d.pos)
	d.used = len(d.b)*8 - left
	if left >= 8 || !zero {
		return errs.Corruptf(hotName, int64(hotHeaderLen+d.used/8), "%d bits after the last sample", left)
	}
	return nil
}

// corrupt reports sample i as undecodable, at bit at of the stream.
func (d *hotDecoder) corrupt(i, at int, format string, args ...any) error {
	return errs.Corruptf(hotName, int64(hotHeaderLen+at/8), "sample %d: %s", i, fmt.Sprintf(format, args...))
}

// iterBatch is how many samples an Iterator decodes at a time.
const iterBatch = 16

// Iterator reads a hot chunk sample by sample without materialising it
// (it decodes a few samples ahead).
//
//	var it chunk.Iterator
//	it.Reset(b)
//	for it.Next() { t, v := it.At(); ... }
//	if err := it.Err(); err != nil { ... }
type Iterator struct {
	d       hotDecoder
	cur, m  int // smp[cur] is the current sample, smp[:m] the batch
	err     error
	pending error // after the batch: decoding stopped there
	smp     [iterBatch]timeseries.Sample
}

// NewIterator returns an iterator over hot chunk b.
func NewIterator(b []byte) *Iterator {
	it := new(Iterator)
	it.Reset(b)
	return it
}

// Reset makes the iterator read b from its first sample.
func (it *Iterator) Reset(b []byte) {
	it.err = it.d.reset(b)
	if it.err != nil {
		it.d.count = 0
	}
	it.cur, it.m, it.pending = 0, 0, nil
	it.smp[0] = timeseries.Sample{}
}

// Next advances to the next sample; false at the end or on error.
func (it *Iterator) Next() bool {
	if it.cur+1 < it.m {
		it.cur++
		return true
	}
	return it.fill()
}

// fill decodes the next batch.
func (it *Iterator) fill() bool {
	if it.err != nil {
		return false
	}
	if it.pending != nil {
		it.err = it.pending
		return false
	}
	k, err := it.d.decode(it.smp[:])
	it.pending = err
	if k == 0 {
		it.err = err
		return false
	}
	it.cur, it.m = 0, k
	return true
}

// At returns the current sample.
func (it *Iterator) At() (int64, float64) {
	s := &it.smp[it.cur&(iterBatch-1)]
	return s.T, s.V
}

// Err returns the error that stopped the iterator, nil at a clean end.
func (it *Iterator) Err() error { return it.err }

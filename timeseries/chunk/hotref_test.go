package chunk

// The hot decoder as it was before the word-at-a-time rewrite: a
// straightforward reader kept as the reference the differential tests
// compare the decoder in hot.go with (same samples, same errors).

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/timeseries"
)

// refBitReader reads bits, most significant first. It never reads past the
// end of its slice: a read that would is reported by ok = false.
type refBitReader struct {
	b   []byte
	pos int    // next byte of b to load into buf
	buf uint64 // the next n bits of the stream, at the top; lower bits are stream bits or zero
	n   uint   // valid bits in buf
}

func (r *refBitReader) reset(b []byte) { *r = refBitReader{b: b} }

// refill loads bytes until buf holds at least 57 bits or the input ends.
func (r *refBitReader) refill() {
	if r.pos+8 <= len(r.b) {
		r.buf |= binary.BigEndian.Uint64(r.b[r.pos:]) >> r.n
		adv := (63 - r.n) >> 3
		r.pos += int(adv)
		r.n += adv << 3
		return
	}
	for r.n <= 56 && r.pos < len(r.b) {
		r.buf |= uint64(r.b[r.pos]) << (56 - r.n)
		r.pos++
		r.n += 8
	}
}

// read returns the next k bits (1 <= k <= 56).
func (r *refBitReader) read(k uint) (uint64, bool) {
	if r.n < k {
		r.refill()
		if r.n < k {
			return 0, false
		}
	}
	v := r.buf >> (64 - k)
	r.buf <<= k
	r.n -= k
	return v, true
}

// read64 returns the next k bits, 1 <= k <= 64.
func (r *refBitReader) read64(k uint) (uint64, bool) {
	if k <= 56 {
		return r.read(k)
	}
	hi, ok := r.read(k - 32)
	if !ok {
		return 0, false
	}
	lo, ok := r.read(32)
	return hi<<32 | lo, ok
}

// readBit returns the next bit.
func (r *refBitReader) readBit() (bool, bool) {
	if r.n == 0 {
		r.refill()
		if r.n == 0 {
			return false, false
		}
	}
	on := r.buf&(1<<63) != 0
	r.buf <<= 1
	r.n--
	return on, true
}

// unary reads up to max one-bits ended by a zero bit (or by max ones) and
// returns how many ones it read.
func (r *refBitReader) unary(max int) (int, bool) {
	for i := 0; i < max; i++ {
		on, ok := r.readBit()
		if !ok {
			return 0, false
		}
		if !on {
			return i, true
		}
	}
	return max, true
}

// rest reports the bits left unread and whether they are all zero.
func (r *refBitReader) rest() (bits int, zero bool) {
	zero = r.buf>>(64-r.n) == 0 // top n bits; a shift by 64 is 0
	for _, c := range r.b[r.pos:] {
		zero = zero && c == 0
	}
	return int(r.n) + 8*(len(r.b)-r.pos), zero
}

// refXorRead reads what xorWrite wrote and returns the value's bits, or a
// reason the bits do not decode.
func refXorRead(r *refBitReader, prev uint64, leading, trailing *uint8) (uint64, string) {
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

// refDecodeHot appends the samples of hot chunk b to dst. Damaged or
// truncated input returns an error wrapping errs.ErrCorruption (a version
// byte above HotVersion: errs.ErrNewerFormat) and dst as it was.
func refDecodeHot(b []byte, dst []timeseries.Sample) ([]timeseries.Sample, error) {
	var it refIterator
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

// refIterator reads a hot chunk sample by sample without materialising it.
//
//	var it chunk.refIterator
//	it.Reset(b)
//	for it.Next() { t, v := it.At(); ... }
//	if err := it.Err(); err != nil { ... }
type refIterator struct {
	r        refBitReader
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

// Reset makes the iterator read b from its first sample.
func (it *refIterator) Reset(b []byte) {
	*it = refIterator{leading: 0xff}
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
func (it *refIterator) Next() bool {
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

func (it *refIterator) readNext() bool {
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

	vb, why := refXorRead(&it.r, math.Float64bits(it.v), &it.leading, &it.trailing)
	if why != "" {
		return it.fail("%s", why)
	}
	it.t, it.delta, it.v = t, delta, math.Float64frombits(vb)
	return true
}

// finish checks that only the zero padding of the last byte is left.
func (it *refIterator) finish() {
	left, zero := it.r.rest()
	it.used = len(it.r.b)*8 - left
	if left >= 8 || !zero {
		it.err = errs.Corruptf(hotName, int64(hotHeaderLen+it.used/8), "%d bits after the last sample", left)
	}
}

func (it *refIterator) fail(format string, args ...any) bool {
	consumed := it.r.pos*8 - int(it.r.n)
	it.err = errs.Corruptf(hotName, int64(hotHeaderLen+consumed/8), "sample %d: %s", it.n, fmt.Sprintf(format, args...))
	return false
}

// At returns the current sample.
func (it *refIterator) At() (int64, float64) { return it.t, it.v }

// Err returns the error that stopped the iterator, nil at a clean end.
func (it *refIterator) Err() error { return it.err }

package chunk

import "encoding/binary"

// bitWriter appends bits, most significant first. buf holds the bytes
// written and at least 8 zero bytes of slack after them, so that a write
// is one 64-bit load and store.
type bitWriter struct {
	buf   []byte
	nbits int // bits written, from the start of buf
}

// bytes returns the bytes written; the last one's unused low bits are zero.
func (w *bitWriter) bytes() []byte { return w.buf[:(w.nbits+7)/8] }

// reset makes w continue after b (which it copies), nbits bits into it.
func (w *bitWriter) reset(b []byte, nbits int) {
	w.buf = make([]byte, max(2*len(b), 64)+8)
	copy(w.buf, b)
	w.nbits = nbits
}

// write appends the low k bits of v (k <= 64), most significant first.
func (w *bitWriter) write(v uint64, k uint) {
	if k > 56 {
		w.write(v>>32, k-32)
		v, k = v&0xffffffff, 32
	}
	if k == 0 {
		return
	}
	i := w.nbits >> 3
	if i+8 > len(w.buf) {
		w.grow()
	}
	word := binary.BigEndian.Uint64(w.buf[i:])
	word |= v << (64 - k) >> (w.nbits & 7)
	binary.BigEndian.PutUint64(w.buf[i:], word)
	w.nbits += int(k)
}

// bit appends one bit.
func (w *bitWriter) bit(on bool) {
	if on {
		w.write(1, 1)
	} else {
		w.nbits++ // the slack is zero
		if w.nbits>>3+8 > len(w.buf) {
			w.grow()
		}
	}
}

func (w *bitWriter) grow() {
	nb := make([]byte, 2*len(w.buf)+8)
	copy(nb, w.buf)
	w.buf = nb
}

// bitReader reads bits, most significant first. It never reads past the
// end of its slice: a read that would is reported by ok = false.
type bitReader struct {
	b   []byte
	pos int    // next byte of b to load into buf
	buf uint64 // the next n bits of the stream, at the top; lower bits are stream bits or zero
	n   uint   // valid bits in buf
}

func (r *bitReader) reset(b []byte) { *r = bitReader{b: b} }

// refill loads bytes until buf holds at least 57 bits or the input ends.
func (r *bitReader) refill() {
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
func (r *bitReader) read(k uint) (uint64, bool) {
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
func (r *bitReader) read64(k uint) (uint64, bool) {
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
func (r *bitReader) readBit() (bool, bool) {
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

// rest reports the bits left unread and whether they are all zero.
func (r *bitReader) rest() (bits int, zero bool) {
	zero = r.buf>>(64-r.n) == 0 // top n bits; a shift by 64 is 0
	for _, c := range r.b[r.pos:] {
		zero = zero && c == 0
	}
	return int(r.n) + 8*(len(r.b)-r.pos), zero
}

// refill is the hot decoder's load (hotDecoder.decode): given the unread
// bits of b as buf (the next n of them at the top, n < 57) and pos (the
// next byte of b not yet counted in n), it loads whole bytes until
// n >= 57 or b ends, with one 64-bit big-endian load and no branch. The
// load is of the 8 bytes at pos, or of b's last 8 shifted so that the
// byte at pos comes first (b must hold at least 8 bytes). The bits it
// brings in below the n counted are stream bits, which the next load ORs
// in again unchanged; bits of buf past the end of b are always zero, so
// once b is all loaded the bits below the n valid ones are zero.
func refill(b []byte, pos int, buf uint64, n uint) (int, uint64, uint) {
	off := min(pos, len(b)-8)
	w := binary.BigEndian.Uint64(b[off:]) << (uint(pos-off) * 8) // 0 at the end
	adv := min(int(63-n)>>3, len(b)-pos)
	return pos + adv, buf | w>>(n&63), n + uint(adv)<<3
}

package chunk

import (
	"encoding/binary"
	"math"
	"math/bits"

	"github.com/plures/pluresdb/timeseries"
)

// Version 2 of the cold block (ARCHITECTURE.md, "Time series: sample
// encodings"; the package doc has the byte layout): no outer compressor;
// timestamps and values are integer streams (planes.go) whose byte planes
// are each kept raw, constant, Huffman- or zstd-coded.
const (
	// value modes, version 2 (0, version 1's XOR stream, is not used: the
	// float bits as integers were shorter on every kind measured)
	val2Decimal = 1 // decimal mantissas at a common exponent, exception runs apart
	val2Bits    = 2 // the float64 bits as integers

	maxOrder = 2 // raw, deltas, deltas of deltas
)

// excRun is a run of consecutive exceptions with the same bits.
type excRun struct {
	pos, n int
	bits   uint64
}

// appendBody2 appends the version 2 body of samples.
func (s *coldScratch) appendBody2(b []byte, samples []timeseries.Sample) []byte {
	n := len(samples)
	if n == 0 {
		return b
	}
	if cap(s.ints) < n {
		s.ints = make([]int64, n)
	}
	v := s.ints[:n]
	for i, smp := range samples {
		v[i] = smp.T
	}
	b = s.appendOrdered(b, v, 1)
	return s.appendValues2(b, samples)
}

// appendOrdered writes v (len >= 1) as order byte k (when minOrder < 2
// allows a choice), the first k values of the k-th differences' pyramid
// (v[0], then the first delta), zigzag varints, and the stream of the k-th
// differences. v is overwritten.
func (s *coldScratch) appendOrdered(b []byte, v []int64, minOrder int) []byte {
	if len(v) == 1 {
		return binary.AppendUvarint(b, zigzag(v[0]))
	}
	k := bestOrder(v, minOrder)
	b = append(b, byte(k))
	// Differences in place, from the end: after pass j, v[j:] holds the
	// j-th differences and v[j-1] the first (j-1)-th one.
	for j := 1; j <= k && j < len(v); j++ {
		for i := len(v) - 1; i >= j; i-- {
			v[i] = int64(uint64(v[i]) - uint64(v[i-1]))
		}
	}
	k = min(k, len(v))
	for i := 0; i < k; i++ {
		b = binary.AppendUvarint(b, zigzag(v[i]))
	}
	return s.appendInts(b, v[k:])
}

// bestOrder estimates, for orders minOrder..2, the bits of a stream of
// the order's differences (offsets from their minimum, or zigzag, as
// appendInts chooses), and returns the cheapest.
func bestOrder(v []int64, minOrder int) int {
	// Every stride-th difference is enough for an estimate.
	stride := 1 + len(v)/1024
	var lo [maxOrder + 1]int64
	for k := range lo {
		lo[k] = math.MaxInt64
	}
	for i := 0; i < len(v); i += stride {
		x := v[i]
		lo[0] = min(lo[0], x)
		if i >= 1 {
			d := int64(uint64(x) - uint64(v[i-1]))
			lo[1] = min(lo[1], d)
			if i >= 2 {
				lo[2] = min(lo[2], int64(uint64(d)-uint64(v[i-1])+uint64(v[i-2])))
			}
		}
	}
	var forBits, zzBits [maxOrder + 1]int
	for i := 0; i < len(v); i += stride {
		x := v[i]
		forBits[0] += bits.Len64(uint64(x) - uint64(lo[0]))
		zzBits[0] += bits.Len64(zigzag(x))
		if i >= 1 {
			d := int64(uint64(x) - uint64(v[i-1]))
			forBits[1] += bits.Len64(uint64(d) - uint64(lo[1]))
			zzBits[1] += bits.Len64(zigzag(d))
			if i >= 2 {
				dd := int64(uint64(d) - uint64(v[i-1]) + uint64(v[i-2]))
				forBits[2] += bits.Len64(uint64(dd) - uint64(lo[2]))
				zzBits[2] += bits.Len64(zigzag(dd))
			}
		}
	}
	cost := func(k int) int { return min(forBits[k], zzBits[k]) }
	best := minOrder
	for k := minOrder + 1; k <= maxOrder && k < len(v); k++ {
		if cost(k) < cost(best) {
			best = k
		}
	}
	return best
}

// appendValues2 writes the value section: decimal when most values are
// short decimals, else the float bits.
func (s *coldScratch) appendValues2(b []byte, samples []timeseries.Sample) []byte {
	n := len(samples)
	if cap(s.exp) < n {
		s.exp = make([]int8, n)
		s.mant = make([]int64, n)
	}
	exp, mant := s.exp[:n], s.mant[:n]
	var hist [2*maxExp + 1]int
	misses, finite := 0, 0
	decimal := true
	for i, smp := range samples {
		m, e, ok := decimalOf(smp.V)
		if !ok {
			exp[i] = noExp
			if !math.IsNaN(smp.V) && !math.IsInf(smp.V, 0) {
				finite++
				misses++
			}
		} else {
			finite++
			exp[i], mant[i] = int8(e), m
			if m != 0 {
				hist[e+maxExp]++
			}
		}
		// Full-precision floats cost the whole search: give up early.
		if misses > 32 && misses*2 > finite {
			decimal = false
			break
		}
	}
	if decimal {
		E, exceptions, _ := chooseExponent(exp, mant, &hist)
		if exceptions*2 <= n {
			return s.appendDecimal2(b, samples, E)
		}
	}
	b = append(b, val2Bits)
	v := s.ints[:n]
	for i, smp := range samples {
		v[i] = int64(math.Float64bits(smp.V))
	}
	return s.appendOrdered(b, v, 0)
}

// appendDecimal2 writes the decimal value section at exponent E: the
// exceptions (values whose mantissa at E does not give back their bits)
// as runs of equal bits, then the other values' mantissas, ordered.
func (s *coldScratch) appendDecimal2(b []byte, samples []timeseries.Sample, E int) []byte {
	exp, mant := s.exp[:len(samples)], s.mant[:len(samples)]
	runs := s.runs[:0]
	m := s.ints[:0]
	for i, smp := range samples {
		M, ok := scaleMantissa(mant[i], int(exp[i]), E)
		if ok && math.Float64bits(decimalValue(M, E)) != math.Float64bits(smp.V) {
			ok = false
		}
		if ok {
			m = append(m, M)
			continue
		}
		vb := math.Float64bits(smp.V)
		if l := len(runs) - 1; l >= 0 && runs[l].pos+runs[l].n == i && runs[l].bits == vb {
			runs[l].n++
		} else {
			runs = append(runs, excRun{pos: i, n: 1, bits: vb})
		}
	}
	s.runs = runs
	b = append(b, val2Decimal)
	b = binary.AppendUvarint(b, zigzag(int64(E)))
	b = binary.AppendUvarint(b, uint64(len(runs)))
	end := 0
	for _, r := range runs {
		b = binary.AppendUvarint(b, uint64(r.pos-end))
		b = binary.AppendUvarint(b, uint64(r.n-1))
		b = binary.LittleEndian.AppendUint64(b, r.bits)
		end = r.pos + r.n
	}
	if len(m) == 0 {
		return b
	}
	return s.appendOrdered(b, m, 0)
}

// decodeBody2 decodes a version 2 body into out.
func (d *v2Decoder) body(out []timeseries.Sample) {
	n := len(out)
	if n == 0 {
		return
	}
	t := d.ordered(n, 1)
	if d.err != nil {
		return
	}
	prev := int64(t[0])
	out[0].T = prev
	for i := 1; i < n; i++ {
		nt := int64(t[i])
		if nt <= prev {
			d.fail("sample %d: timestamp %d not above %d", i, nt, prev)
			return
		}
		out[i].T, prev = nt, nt
	}
	switch mode := d.byte(); {
	case d.err != nil:
	case mode == val2Bits:
		v := d.ordered(n, 0)
		if d.err != nil {
			return
		}
		for i, x := range v[:n] {
			out[i].V = math.Float64frombits(x)
		}
	case mode == val2Decimal:
		d.decimal(out)
	default:
		d.fail("unknown value mode %d", mode)
	}
}

// ordered reads what appendOrdered wrote for c >= 1 values and returns
// them (in the scratch), undoing the differences.
func (d *v2Decoder) ordered(c, minOrder int) []uint64 {
	if c == 1 {
		x := uint64(unzigzag(d.uvarint()))
		if d.err != nil {
			return nil
		}
		if cap(d.s.u) < 1 {
			d.s.u = make([]uint64, 1)
		}
		u := d.s.u[:1]
		u[0] = x
		return u
	}
	k := int(d.byte())
	if d.err == nil && (k < minOrder || k > maxOrder || k >= c) {
		d.fail("difference order %d", k)
	}
	if d.err != nil {
		return nil
	}
	var first [maxOrder]uint64
	for i := 0; i < k; i++ {
		first[i] = uint64(unzigzag(d.uvarint()))
	}
	if d.err != nil {
		return nil
	}
	// The stream holds c-k values; they are moved up by k and the
	// differences summed in place.
	if cap(d.s.u) < c {
		d.s.u = make([]uint64, c)
	}
	x := d.ints(c - k)
	if d.err != nil {
		return nil
	}
	u := d.s.u[:c]
	switch k {
	case 0:
		return u
	case 1:
		acc := first[0]
		for i := c - 1; i >= 1; i-- {
			u[i] = x[i-1]
		}
		u[0] = acc
		for i := 1; i < c; i++ {
			acc += u[i]
			u[i] = acc
		}
	default:
		for i := c - 1; i >= 2; i-- {
			u[i] = x[i-2]
		}
		acc, delta := first[0]+first[1], first[1]
		u[0], u[1] = first[0], acc
		for i := 2; i < c; i++ {
			delta += u[i]
			acc += delta
			u[i] = acc
		}
	}
	return u
}

func (d *v2Decoder) decimal(out []timeseries.Sample) {
	n := len(out)
	E := unzigzag(d.uvarint())
	nr := d.uvarint()
	if d.err != nil {
		return
	}
	if E < -maxExp || E > maxExp {
		d.fail("exponent %d", E)
		return
	}
	// A run takes at least 10 bytes.
	if nr > uint64(n) || nr > uint64(len(d.b)-d.off)/10 {
		d.fail("%d exception runs", nr)
		return
	}
	runs := d.s.runs[:0]
	end, exc := 0, 0
	for i := uint64(0); i < nr; i++ {
		gap, l := d.uvarint(), d.uvarint()
		if d.err != nil {
			return
		}
		if gap > uint64(n-end) || l >= uint64(n-end)-gap {
			d.fail("exception run out of range")
			return
		}
		if len(d.b)-d.off < 8 {
			d.fail("exception bits truncated")
			return
		}
		r := excRun{pos: end + int(gap), n: int(l) + 1, bits: binary.LittleEndian.Uint64(d.b[d.off:])}
		d.off += 8
		runs = append(runs, r)
		end = r.pos + r.n
		exc += r.n
	}
	d.s.runs = runs
	var m []uint64
	if exc < n {
		if m = d.ordered(n-exc, 0); d.err != nil {
			return
		}
	}
	p := pow10[0]
	if E >= 0 {
		p = pow10[E]
	} else {
		p = pow10[-E]
	}
	// Mantissas fill the gaps between runs.
	k := 0
	fill := func(seg []timeseries.Sample) bool {
		ms := m[k : k+len(seg)]
		k += len(seg)
		for _, x := range ms {
			if M := int64(x); M > maxMantissa || M < -maxMantissa {
				d.fail("mantissa %d out of range", M)
				return false
			}
		}
		if E >= 0 {
			for i, x := range ms {
				seg[i].V = float64(int64(x)) * p
			}
		} else {
			for i, x := range ms {
				seg[i].V = float64(int64(x)) / p
			}
		}
		return true
	}
	end = 0
	for _, r := range runs {
		if !fill(out[end:r.pos]) {
			return
		}
		v := math.Float64frombits(r.bits)
		for i := r.pos; i < r.pos+r.n; i++ {
			out[i].V = v
		}
		end = r.pos + r.n
	}
	fill(out[end:])
}

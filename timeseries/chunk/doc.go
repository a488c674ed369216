// Package chunk holds the sample encodings of the engine's native time
// series (ARCHITECTURE.md, "Time series: sample encodings"): a hot,
// appendable Gorilla-style chunk for recent samples and a cold block for
// large runs of samples, as the cold tier stores them. Both keep every
// float64 bit pattern exactly. Encoders take samples sorted by T with
// unique T; decoders never panic, allocate in proportion to their input
// (a cold block of version 2 up to its checksummed sample count, at most
// MaxColdSamples: a constant series is a few bytes), and return errors wrapping errs.ErrCorruption (errs.ErrNewerFormat for a
// newer version byte).
//
// Hot chunk (version 1), a bit stream, most significant bit first:
//
//	byte 0     version (1)
//	bytes 1-2  sample count, uint16 big-endian
//	sample 0   T: 64 bits, V: 64 bits
//	sample i   delta of delta of T (wrapping int64; the delta before
//	           sample 1 is 0): '0' zero; '10'+14 bits, '110'+17,
//	           '1110'+20 (two's complement); '1111'+64 bits
//	           V XOR the previous V: '0' equal; '10' + the bits inside the
//	           last window; '11' + 5 bits leading zeros (at most 31) +
//	           6 bits significant length (64 as 0) + those bits (the new
//	           window)
//	padding    zero bits to a byte boundary; nothing after
//
// A hot chunk has no checksum: its container (the LSM block) has one.
//
// Cold block (version 2, what EncodeCold writes):
//
//	byte       version (2)
//	uvarint    sample count n (at most MaxColdSamples)
//	body       nothing when n is 0, else:
//	  zigzag   T of sample 0 (varint)
//	  (n > 1)  byte order k (1 deltas, 2 deltas of deltas; wrapping),
//	           k-1 zigzag varints (the first delta, for k = 2), then the
//	           integer stream of the n-k differences of order k
//	  byte     value mode: 1 decimal, 2 float bits
//	  decimal: zigzag varint exponent E (-22..22); uvarint run count r;
//	           r × (uvarint gap since the previous run's end, uvarint
//	           length-1, 8 bytes float64 bits little-endian): runs of
//	           exceptions with equal bits; then the other values'
//	           mantissas M (|M| <= 2^53) as an ordered sequence (below),
//	           the value being float64(M)·10^E (E >= 0) or float64(M)/10^-E
//	  bits:    the float64 bits as an ordered sequence
//	4 bytes    low 32 bits of the xxhash64 of every byte before, little-endian
//
//	ordered sequence of c values: c = 1: one zigzag varint; else byte
//	order k (0..2, k < c), k zigzag varints (the first value, the first
//	delta), the integer stream of the c-k differences of order k
//
//	integer stream of c values (planes.go): byte w + 0x80 if zigzag;
//	[zigzag varint min, if not zigzag]; [uvarint divisor g >= 1, if
//	w > 0]; w byte planes of u/g, low byte first, each a codec byte (0
//	raw c bytes; 1 one byte repeated; 2 uvarint length + huff0 4X
//	stream; 3 uvarint length + zstd frame) and its data. x = min + u
//	(wrapping), or unzigzag(u), where u = g × the planes' value.
//
// Cold block (version 1, decoded only):
//
//	byte       version (1)
//	uvarint    sample count n (at most MaxColdSamples)
//	byte       codec: 0 none, 1 zstd
//	[uvarint]  the body's uncompressed length (zstd only)
//	body       raw or one zstd frame
//	4 bytes    low 32 bits of the xxhash64 of every byte before, little-endian
//
//	body:
//	byte       timestamp mode: 0 deltas, 1 deltas of deltas
//	zigzag     T of sample 0 (varint)
//	n-1 ×      uvarint delta, or zigzag varint delta of delta (wrapping;
//	           the delta before sample 1 is 0)
//	byte       value mode: 0 XOR, 1 decimal
//	XOR:       the hot chunk's value bit stream (V0 in 64 bits, then XOR
//	           codes), zero-padded to a byte
//	decimal:   zigzag varint exponent E (-22..22); byte mantissa mode
//	           (0 raw, 1 delta, 2 delta of delta); uvarint exception count x;
//	           x uvarint gaps between exception positions; x × 8 bytes of
//	           the exceptions' float64 bits, little-endian; then a zigzag
//	           varint for each other value's mantissa M (|M| <= 2^53), the
//	           value being float64(M)·10^E (E >= 0) or float64(M)/10^-E
//
// The encoder picks each choice by size: the difference order by an
// estimate of the stream's bits, offsets or zigzag by the byte planes'
// entropy, each plane's codec by trying them; decimal when most values
// are short decimals (checked bit for bit against the decoder's
// arithmetic, the rest being exceptions: -0, NaN, ±Inf, long fractions),
// float bits otherwise.
package chunk

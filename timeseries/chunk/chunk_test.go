package chunk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/timeseries"
)

// specials are float64 bit patterns every encoding must keep.
var specials = []uint64{
	0, 1 << 63, // +0, -0
	math.Float64bits(math.Inf(1)), math.Float64bits(math.Inf(-1)),
	0x7ff8000000000001, 0x7ff0000000000001, 0xfff8000000000000, 0xfff0000000dead00, // NaNs, quiet and signalling, payloads
	1, 0x000fffffffffffff, 0x800fffffffffffff, // subnormals
	math.Float64bits(math.MaxFloat64), math.Float64bits(-math.MaxFloat64),
	math.Float64bits(math.SmallestNonzeroFloat64), math.Float64bits(0.1), math.Float64bits(1e22), math.Float64bits(1e23),
	math.Float64bits(9007199254740993), math.Float64bits(1 << 60), math.Float64bits(-123456789.125),
}

// kinds generates sample series of several shapes, seeded.
func genSeries(r *rand.Rand, kind, n int) []timeseries.Sample {
	s := make([]timeseries.Sample, n)
	t := r.Int64N(1<<42) - 1<<41
	v := 0.0
	for i := range s {
		switch kind % 4 {
		case 0:
			t += 15000
		case 1:
			t += 1 + r.Int64N(100000)
		case 2:
			t += 15000 + r.Int64N(21) - 10
		default:
			t += 1 + r.Int64N(1<<40)
		}
		switch kind % 7 {
		case 0: // counter
			v += float64(r.IntN(100))
		case 1: // two-decimal gauge
			v = float64(r.IntN(10001)) / 100
		case 2: // full precision
			v = r.NormFloat64() * 1e3
		case 3: // constant
			v = 42
		case 4: // any bits
			v = math.Float64frombits(r.Uint64())
		case 5: // specials mixed into decimals
			if r.IntN(4) == 0 {
				v = math.Float64frombits(specials[r.IntN(len(specials))])
			} else {
				v = float64(r.IntN(1000)) / 10
			}
		default: // decimals of every length
			v, _ = strconv.ParseFloat(strconv.FormatFloat(r.Float64()*1e6, 'f', r.IntN(8), 64), 64)
		}
		s[i] = timeseries.Sample{T: t, V: v}
	}
	return s
}

func sameSamples(t *testing.T, what string, got, want []timeseries.Sample) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d samples, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i].T != want[i].T || math.Float64bits(got[i].V) != math.Float64bits(want[i].V) {
			t.Fatalf("%s: sample %d = {%d %#x}, want {%d %#x}", what, i,
				got[i].T, math.Float64bits(got[i].V), want[i].T, math.Float64bits(want[i].V))
		}
	}
}

func encodeHot(t testing.TB, s []timeseries.Sample) []byte {
	a := NewAppender()
	for _, x := range s {
		if err := a.Append(x.T, x.V); err != nil {
			t.Fatal(err)
		}
	}
	if a.Len() != len(s) {
		t.Fatalf("Len %d, want %d", a.Len(), len(s))
	}
	return bytes.Clone(a.Bytes())
}

func encodeCold(t testing.TB, s []timeseries.Sample) []byte {
	b, err := EncodeCold(nil, s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkBoth round-trips s through both encodings and the iterator.
func checkBoth(t *testing.T, what string, s []timeseries.Sample) {
	t.Helper()
	hot := encodeHot(t, s)
	got, err := DecodeHot(hot, nil)
	if err != nil {
		t.Fatalf("%s: DecodeHot: %v", what, err)
	}
	sameSamples(t, what+" hot", got, s)
	var it Iterator
	it.Reset(hot)
	var viaIt []timeseries.Sample
	for it.Next() {
		ts, v := it.At()
		viaIt = append(viaIt, timeseries.Sample{T: ts, V: v})
	}
	if it.Err() != nil {
		t.Fatalf("%s: iterator: %v", what, it.Err())
	}
	sameSamples(t, what+" iterator", viaIt, s)

	prefix := []timeseries.Sample{{T: 7, V: 7}}
	cold := encodeCold(t, s)
	got, err = DecodeCold(cold, prefix)
	if err != nil {
		t.Fatalf("%s: DecodeCold: %v", what, err)
	}
	sameSamples(t, what+" cold", got[1:], s)
	if got[0] != prefix[0] {
		t.Fatalf("%s: DecodeCold changed dst's samples", what)
	}
}

func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for kind := 0; kind < 28; kind++ {
		for _, n := range []int{0, 1, 2, 3, 119, 120, 121, 1000, 5760} {
			checkBoth(t, fmt.Sprintf("kind %d n %d", kind, n), genSeries(r, kind, n))
		}
	}
}

func TestRoundTripSpecials(t *testing.T) {
	var s []timeseries.Sample
	for i, b := range specials {
		s = append(s, timeseries.Sample{T: int64(i), V: math.Float64frombits(b)})
	}
	checkBoth(t, "specials", s)
	for i, b := range specials {
		checkBoth(t, fmt.Sprintf("single %#x", b), []timeseries.Sample{{T: -int64(i), V: math.Float64frombits(b)}})
		for _, c := range specials {
			checkBoth(t, "pair", []timeseries.Sample{{T: 1, V: math.Float64frombits(b)}, {T: 2, V: math.Float64frombits(c)}})
		}
	}
	// Every special between decimals, so each is an exception in a decimal block.
	s = s[:0]
	for i := 0; i < 400; i++ {
		v := float64(i%37) / 4
		if i%10 == 3 {
			v = math.Float64frombits(specials[(i/10)%len(specials)])
		}
		s = append(s, timeseries.Sample{T: int64(i) * 1000, V: v})
	}
	checkBoth(t, "specials among decimals", s)
}

func TestExtremeTimestamps(t *testing.T) {
	const mn, mx = math.MinInt64, math.MaxInt64
	cases := [][]int64{
		{mn, mx},
		{mn, mn + 1, mx - 1, mx},
		{mn, 0, mx},
		{mn, -1, 0, 1, mx},
		{-5, -4, -2},
		{mn, mn + 1, mn + 2, mn + 1<<62, mx - 1<<62, mx},
		{0, 1 << 62, 1<<62 + 1, mx},
		{mn, mx - 1, mx},
	}
	for _, ts := range cases {
		s := make([]timeseries.Sample, len(ts))
		for i, x := range ts {
			s[i] = timeseries.Sample{T: x, V: float64(i)}
		}
		checkBoth(t, fmt.Sprint(ts), s)
	}
}

func TestOutOfOrder(t *testing.T) {
	a := NewAppender()
	if err := a.Append(10, 1); err != nil {
		t.Fatal(err)
	}
	before := bytes.Clone(a.Bytes())
	for _, ts := range []int64{10, 9, math.MinInt64} {
		if err := a.Append(ts, 2); !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("Append(%d) after 10: %v, want ErrOutOfOrder", ts, err)
		}
	}
	if !bytes.Equal(a.Bytes(), before) || a.Len() != 1 {
		t.Fatal("a refused Append changed the chunk")
	}
	for _, s := range [][]timeseries.Sample{
		{{T: 1}, {T: 1}},
		{{T: 2}, {T: 1}},
		{{T: 1}, {T: 5}, {T: 3}},
		{{T: math.MaxInt64}, {T: math.MinInt64}},
	} {
		dst := []byte("keep")
		out, err := EncodeCold(dst, s)
		if !errors.Is(err, ErrOutOfOrder) || string(out) != "keep" {
			t.Fatalf("EncodeCold(%v) = %q, %v", s, out, err)
		}
	}
}

func TestHotFull(t *testing.T) {
	a := NewAppender()
	for i := 0; i < MaxHotSamples; i++ {
		if err := a.Append(int64(i), float64(i%3)); err != nil {
			t.Fatal(i, err)
		}
	}
	if err := a.Append(1<<40, 0); !errors.Is(err, ErrChunkFull) {
		t.Fatalf("append to a full chunk: %v", err)
	}
	got, err := DecodeHot(a.Bytes(), nil)
	if err != nil || len(got) != MaxHotSamples {
		t.Fatalf("full chunk: %d samples, %v", len(got), err)
	}
}

// An appender reopened from a chunk's bytes at any point writes the same
// bytes as one that never stopped.
func TestAppenderFrom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for kind := 0; kind < 14; kind++ {
		s := genSeries(r, kind, 300)
		want := encodeHot(t, s)
		for cut := 0; cut <= len(s); cut += 1 + r.IntN(40) {
			a, err := NewAppenderFrom(encodeHot(t, s[:cut]))
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range s[cut:] {
				if err := a.Append(x.T, x.V); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(a.Bytes(), want) {
				t.Fatalf("kind %d: reopened at %d, bytes differ", kind, cut)
			}
		}
	}
	if _, err := NewAppenderFrom([]byte{1, 0}); !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("NewAppenderFrom(short): %v", err)
	}
}

// Decimal blocks are chosen for decimal data, raw for full-precision noise,
// and short decimals found as strconv would print them.
func TestColdModes(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	mode := func(s []timeseries.Sample) byte {
		var sc coldScratch
		sc.ints = make([]int64, len(s))
		b := sc.appendValues2(nil, s)
		return b[0]
	}
	for kind, want := range map[int]byte{0: val2Decimal, 1: val2Decimal, 3: val2Decimal, 6: val2Decimal, 2: val2Bits, 4: val2Bits} {
		if got := mode(genSeries(r, kind, 1000)); got != want {
			t.Errorf("kind %d: value mode %d, want %d", kind, got, want)
		}
	}
	// decimalOf against strconv: a value printed with d significant digits
	// (d <= 14: mantissas below 2^49) has a decimal form, and decimalValue
	// gives back its bits.
	tries := 200000
	if testing.Short() {
		tries = 20000
	}
	for i := 0; i < tries; i++ {
		d := 1 + r.IntN(14)
		x := math.Float64frombits(r.Uint64())
		if math.IsNaN(x) || math.IsInf(x, 0) {
			continue
		}
		v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'e', d-1, 64), 64)
		m, e, ok := decimalOf(v)
		exp10 := math.Abs(math.Log10(math.Abs(v)))
		if !ok {
			if v != 0 && exp10 < 8 && !math.Signbit(v) {
				t.Fatalf("%v (%d digits): no decimal form", v, d)
			}
			continue
		}
		if math.Float64bits(decimalValue(m, e)) != math.Float64bits(v) {
			t.Fatalf("%v: decimal %d e%d decodes to %v", v, m, e, decimalValue(m, e))
		}
	}
}

// validEncodings returns hot and cold encodings of several series.
func validEncodings(t *testing.T) (hot, cold [][]byte) {
	r := rand.New(rand.NewPCG(7, 8))
	for kind := 0; kind < 14; kind++ {
		for _, n := range []int{1, 2, 17, 150} {
			s := genSeries(r, kind, n)
			hot = append(hot, encodeHot(t, s))
			cold = append(cold, encodeCold(t, s))
		}
	}
	return hot, cold
}

func isCorruption(err error) bool {
	return errors.Is(err, errs.ErrCorruption) || errors.Is(err, errs.ErrNewerFormat)
}

func TestTruncationsFail(t *testing.T) {
	hot, cold := validEncodings(t)
	for _, b := range hot {
		for l := 0; l < len(b); l++ {
			if _, err := DecodeHot(b[:l], nil); !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("hot chunk cut to %d of %d bytes: %v", l, len(b), err)
			}
		}
		if _, err := DecodeHot(append(bytes.Clone(b), 0), nil); !errors.Is(err, errs.ErrCorruption) {
			t.Fatalf("hot chunk with a trailing byte: %v", err)
		}
	}
	for _, b := range cold {
		for l := 0; l < len(b); l++ {
			if _, err := DecodeCold(b[:l], nil); !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("cold block cut to %d of %d bytes: %v", l, len(b), err)
			}
		}
	}
}

func TestBitFlips(t *testing.T) {
	hot, cold := validEncodings(t)
	for _, b := range cold {
		for i := 0; i < len(b)*8; i++ {
			c := bytes.Clone(b)
			c[i/8] ^= 1 << (i % 8)
			if _, err := DecodeCold(c, nil); !isCorruption(err) {
				t.Fatalf("cold block with bit %d flipped: %v", i, err)
			}
		}
	}
	// Hot chunks carry no checksum (the container has one): a flip must
	// give an error or a chunk of the header's count, never a panic.
	for _, b := range hot {
		for i := 0; i < len(b)*8; i++ {
			c := bytes.Clone(b)
			c[i/8] ^= 1 << (i % 8)
			got, err := DecodeHot(c, nil)
			if err != nil {
				if !isCorruption(err) || len(got) != 0 {
					t.Fatalf("hot chunk with bit %d flipped: %d samples, %v", i, len(got), err)
				}
				continue
			}
			if len(got) != int(binary.BigEndian.Uint16(c[1:3])) {
				t.Fatalf("hot chunk with bit %d flipped: %d samples, header says %d", i, len(got), binary.BigEndian.Uint16(c[1:3]))
			}
		}
	}
}

// A cold block's body with a valid checksum still must not decode into
// more than its bytes allow.
func TestColdImplausibleCounts(t *testing.T) {
	seal := func(b []byte) []byte {
		return binary.LittleEndian.AppendUint32(b, uint32(xxhash.Sum64(b)))
	}
	for _, b := range [][]byte{
		// version 1
		seal(binary.AppendUvarint([]byte{coldV1}, MaxColdSamples+1)),
		seal(append(binary.AppendUvarint([]byte{coldV1}, MaxColdSamples), codecNone, tsDod, 0)),
		seal(append(binary.AppendUvarint(append(binary.AppendUvarint([]byte{coldV1}, 1000), codecZstd), 1<<40), 0, 0, 0)),
		seal([]byte{coldV1, 0, 7}),
		seal([]byte{coldV1, 0, codecNone, 9}),
		seal([]byte{0, 0, codecNone, tsDelta, valRaw}),
		// version 2
		seal(binary.AppendUvarint([]byte{ColdVersion}, MaxColdSamples+1)),
		seal([]byte{ColdVersion, 0, 0}),                                                                      // bytes after an empty block
		seal([]byte{ColdVersion, 3, 2, 1}),                                                                   // too short
		seal([]byte{ColdVersion, 3, 2, 3, 0, 1, 0, 0}),                                                       // order 3
		seal([]byte{ColdVersion, 3, 2, 1, 9, 2, 0, 0}),                                                       // width 9
		seal([]byte{ColdVersion, 3, 2, 1, 1, 2, 0, 7, 0, 0}),                                                 // divisor 0
		seal([]byte{ColdVersion, 3, 2, 1, 1, 2, 1, 9, 0, 0, 0}),                                              // plane codec 9
		seal([]byte{ColdVersion, 3, 2, 1, 1, 2, 1, 0, 1, 2}),                                                 // raw plane truncated
		seal([]byte{ColdVersion, 3, 2, 1, 1, 2, 1, 2, 50, 1, 2}),                                             // huffman plane truncated
		seal([]byte{ColdVersion, 3, 2, 1, 1, 2, 1, 3, 2, 1, 2}),                                              // zstd plane garbage
		seal([]byte{ColdVersion, 2, 2, 1, 0, 0, 0}),                                                          // timestamps not ascending
		seal([]byte{ColdVersion, 2, 2, 1, 1, 0, 9, 0, 0}),                                                    // value mode 9
		seal([]byte{ColdVersion, 1, 2, 1, 60, 0}),                                                            // exponent 30
		seal([]byte{ColdVersion, 1, 2, 1, 0, 1, 0, 0, 1, 2, 3}),                                              // run truncated
		seal([]byte{ColdVersion, 1, 2, 1, 0, 1, 0, 5, 1, 2, 3, 4, 5, 6, 7, 8}),                               // run too long
		seal([]byte{ColdVersion, 1, 2, 1, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), // mantissa beyond 2^53
	} {
		if _, err := DecodeCold(b, nil); !errors.Is(err, errs.ErrCorruption) {
			t.Fatalf("DecodeCold(%x): %v", b, err)
		}
	}
	if _, err := DecodeCold(seal([]byte{ColdVersion + 1, 0, codecNone, tsDelta, valRaw}), nil); !errors.Is(err, errs.ErrNewerFormat) {
		t.Fatalf("newer cold version: %v", err)
	}
	if _, err := DecodeHot([]byte{HotVersion, 0xff, 0xff, 0, 0, 0}, nil); !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("hot count beyond its bytes: %v", err)
	}
	if _, err := DecodeHot([]byte{HotVersion + 1, 0, 0}, nil); !errors.Is(err, errs.ErrNewerFormat) {
		t.Fatalf("newer hot version: %v", err)
	}
	if s, err := DecodeHot([]byte{HotVersion, 0, 0}, nil); err != nil || len(s) != 0 {
		t.Fatalf("empty hot chunk: %v, %v", s, err)
	}
}

// TestColdV1Golden: blocks written by the version 1 encoder (XOR and
// decimal values, delta and delta-of-delta timestamps, raw and zstd
// bodies) still decode to the samples they were made from.
func TestColdV1Golden(t *testing.T) {
	data, err := os.ReadFile("testdata/cold-v1.golden")
	if err != nil {
		t.Fatal(err)
	}
	var seen [2][2]int // [codec][value mode]
	cases := 0
	for len(data) > 0 {
		l, k := binary.Uvarint(data)
		if k <= 0 || l > uint64(len(data)-k) {
			t.Fatalf("golden file: bad block length at case %d", cases)
		}
		block := data[k : k+int(l)]
		data = data[k+int(l):]
		n, k := binary.Uvarint(data)
		if k <= 0 || n*16 > uint64(len(data)-k) {
			t.Fatalf("golden file: bad sample count at case %d", cases)
		}
		want := make([]timeseries.Sample, n)
		for i := range want {
			p := data[k+16*i:]
			want[i] = timeseries.Sample{T: int64(binary.LittleEndian.Uint64(p)), V: math.Float64frombits(binary.LittleEndian.Uint64(p[8:]))}
		}
		data = data[k+16*int(n):]
		if block[0] != coldV1 {
			t.Fatalf("case %d: version %d", cases, block[0])
		}
		got, err := DecodeCold(block, nil)
		if err != nil {
			t.Fatalf("case %d: %v", cases, err)
		}
		sameSamples(t, fmt.Sprintf("golden case %d", cases), got, want)
		if n > 0 {
			_, k := binary.Uvarint(block[1:])
			codec := block[1+k]
			body := block[1+k+1 : len(block)-4]
			if codec == codecNone {
				d := bodyDecoder{b: body}
				d.timestamps(make([]timeseries.Sample, n))
				seen[codec][min(d.byte(), 1)]++
			} else {
				seen[codec][0]++
			}
		}
		// What version 1 held re-encodes to version 2 and back.
		again, err := DecodeCold(encodeCold(t, got), nil)
		if err != nil {
			t.Fatal(err)
		}
		sameSamples(t, fmt.Sprintf("golden case %d re-encoded", cases), again, want)
		cases++
	}
	if cases < 80 || seen[codecNone][valRaw] == 0 || seen[codecNone][valDecimal] == 0 || seen[codecZstd][0] == 0 {
		t.Fatalf("golden file covers too little: %d cases, %v", cases, seen)
	}
}

// Every plane codec and value mode of version 2 is written for some
// series, and each such block round-trips.
func TestColdV2Codecs(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	var planes [4]int
	var modes [3]int
	var s coldScratch
	for kind := 0; kind < 28; kind++ {
		for _, n := range []int{40, 3000} {
			ser := genSeries(r, kind, n)
			if kind%7 == 5 { // long runs of one NaN, and of zeros
				for i := range ser {
					if i/500%3 == 1 {
						ser[i].V = math.NaN()
					} else if i/700%4 == 2 {
						ser[i].V = 0
					}
				}
			}
			checkBoth(t, fmt.Sprintf("kind %d n %d", kind, n), ser)
			s.ints = make([]int64, n)
			b := s.appendValues2(nil, ser)
			modes[b[0]]++
		}
	}
	// Plane codecs seen through appendPlane on typical planes.
	for name, p := range map[string][]byte{
		"const": bytes.Repeat([]byte{7}, 100),
		"raw": func() []byte {
			b := make([]byte, 1000)
			for i := range b {
				b[i] = byte(r.Uint64())
			}
			return b
		}(),
		"huff": func() []byte {
			b := make([]byte, 1000)
			for i := range b {
				b[i] = byte(r.IntN(5))
			}
			return b
		}(),
		"zstd": func() []byte {
			b := make([]byte, 5000)
			for i := range b {
				b[i] = byte(i / 1000)
			}
			return b
		}(),
	} {
		out := s.appendPlane(nil, p)
		planes[out[0]]++
		d := v2Decoder{b: out, s: &decodeScratch{}}
		got := d.plane(len(p))
		if d.err != nil || !bytes.Equal(got, p) || d.off != len(out) {
			t.Fatalf("%s plane (codec %d): %v", name, out[0], d.err)
		}
	}
	for c, k := range planes {
		if k != 1 {
			t.Errorf("plane codec %d used %d times of 4", c, k)
		}
	}
	if modes[val2Decimal] == 0 || modes[val2Bits] == 0 {
		t.Errorf("value modes %v", modes)
	}
}

// Version 2 blocks are much smaller than version 1 was on the shapes
// monitoring data has: a constant series fits in a few dozen bytes.
func TestColdV2Small(t *testing.T) {
	s := make([]timeseries.Sample, 5760)
	for i := range s {
		s[i] = timeseries.Sample{T: 1_700_000_000_000 + int64(i)*15000, V: 3.5}
	}
	if b := encodeCold(t, s); len(b) > 28 {
		t.Fatalf("constant series of 5760 samples: %d bytes", len(b))
	}
}

func benchSeries() map[string][]timeseries.Sample {
	r := rand.New(rand.NewPCG(9, 10))
	return map[string][]timeseries.Sample{
		"counter":   genSeries(r, 0, 5760),
		"gauge2dec": genSeries(r, 8, 5760),
		"noisy":     genSeries(r, 2, 5760),
		"constant":  genSeries(r, 3, 5760),
	}
}

func BenchmarkHot(b *testing.B) {
	for name, s := range benchSeries() {
		chunks := make([][]byte, 0, len(s)/120)
		for i := 0; i < len(s); i += 120 {
			chunks = append(chunks, encodeHot(b, s[i:i+120]))
		}
		b.Run("encode/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for i := 0; i < len(s); i += 120 {
					a := NewAppender()
					for _, x := range s[i : i+120] {
						_ = a.Append(x.T, x.V)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(s)), "ns/sample")
		})
		b.Run("decode/"+name, func(b *testing.B) {
			var it Iterator
			for b.Loop() {
				for _, c := range chunks {
					it.Reset(c)
					for it.Next() {
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(s)), "ns/sample")
		})
	}
}

func BenchmarkCold(b *testing.B) {
	for name, s := range benchSeries() {
		enc := encodeCold(b, s)
		b.Run("encode/"+name, func(b *testing.B) {
			var buf []byte
			for b.Loop() {
				buf, _ = EncodeCold(buf[:0], s)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(s)), "ns/sample")
			b.ReportMetric(float64(len(enc))/float64(len(s)), "B/sample")
		})
		b.Run("decode/"+name, func(b *testing.B) {
			var dst []timeseries.Sample
			for b.Loop() {
				dst, _ = DecodeCold(enc, dst[:0])
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(s)), "ns/sample")
		})
	}
}

package chunk

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/plures/pluresdb/timeseries"
)

// hotResult is everything a hot decode gives back: the samples, the error
// text, and the state an Appender goes on from.
type hotResult struct {
	samples []timeseries.Sample
	err     string
	state   appenderState
}

type appenderState struct {
	n                 int
	t                 int64
	delta, v          uint64
	leading, trailing uint8
	used              int
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// refResult decodes b with the reference decoder (hotref_test.go).
func refResult(b []byte) hotResult {
	var it refIterator
	it.Reset(b)
	var s []timeseries.Sample
	for it.Next() {
		t, v := it.At()
		s = append(s, timeseries.Sample{T: t, V: v})
	}
	r := hotResult{samples: s, err: errText(it.Err())}
	if it.Err() == nil {
		r.state = appenderState{n: it.n, t: it.t, delta: it.delta, v: math.Float64bits(it.v),
			leading: it.leading, trailing: it.trailing, used: it.used}
	}
	return r
}

// checkAgainstRef decodes b with DecodeHot, the Iterator and
// NewAppenderFrom and compares each with the reference.
func checkAgainstRef(t testing.TB, what string, b []byte) {
	t.Helper()
	want := refResult(b)
	wantRef, refErr := refDecodeHot(b, nil)
	if errText(refErr) != want.err || !sameBits(wantRef, want.samples) && refErr == nil {
		t.Fatalf("%s: the reference's DecodeHot and iterator disagree", what)
	}

	prefix := []timeseries.Sample{{T: 1, V: 2}}
	got, err := DecodeHot(b, prefix)
	if errText(err) != want.err {
		t.Fatalf("%s: DecodeHot error %q, reference %q", what, errText(err), want.err)
	}
	if err != nil {
		if len(got) != 1 || got[0] != prefix[0] {
			t.Fatalf("%s: DecodeHot returned %d samples with its error", what, len(got))
		}
	} else if len(got) < 1 || got[0] != prefix[0] || !sameBits(got[1:], want.samples) {
		t.Fatalf("%s: DecodeHot samples differ from the reference", what)
	}

	// The iterator gives the samples before the error, as the reference.
	var it Iterator
	it.Reset(b)
	var viaIt []timeseries.Sample
	for it.Next() {
		ts, v := it.At()
		viaIt = append(viaIt, timeseries.Sample{T: ts, V: v})
		if it.Err() != nil {
			t.Fatalf("%s: Err %v while Next is true", what, it.Err())
		}
	}
	if errText(it.Err()) != want.err {
		t.Fatalf("%s: iterator error %q, reference %q", what, errText(it.Err()), want.err)
	}
	if !sameBits(viaIt, want.samples) {
		t.Fatalf("%s: iterator gave %d samples, reference %d (or they differ)", what, len(viaIt), len(want.samples))
	}
	if it.Next() || errText(it.Err()) != want.err {
		t.Fatalf("%s: iterator not stopped for good", what)
	}

	a, err := NewAppenderFrom(b)
	if errText(err) != want.err {
		t.Fatalf("%s: NewAppenderFrom error %q, reference %q", what, errText(err), want.err)
	}
	if err == nil {
		got := appenderState{n: a.n, t: a.t, delta: a.delta, v: a.v, leading: a.leading, trailing: a.trailing, used: a.w.nbits - hotHeaderLen*8}
		if got != want.state {
			t.Fatalf("%s: NewAppenderFrom state %+v, reference %+v", what, got, want.state)
		}
	}

	n, err := HotLen(b)
	var ri refIterator
	ri.Reset(b)
	if n != ri.count || errText(err) != errText(ri.err) {
		t.Fatalf("%s: HotLen %d, %v; reference %d, %v", what, n, err, ri.count, ri.err)
	}
}

func sameBits(a, b []timeseries.Sample) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].T != b[i].T || math.Float64bits(a[i].V) != math.Float64bits(b[i].V) {
			return false
		}
	}
	return true
}

// diffSeries generates a series that walks every branch of the hot
// encoding: deltas of delta of each class and at each class's bounds
// (and past them, up to wrapping 64-bit deltas), and values that repeat,
// reuse the XOR window, open a new one, and hit its edges (64 significant
// bits, 31+ leading zeros), with NaN payloads, ±Inf and -0.
func diffSeries(r *rand.Rand, n int) []timeseries.Sample {
	s := make([]timeseries.Sample, 0, n)
	t := int64(r.Uint64())
	if r.IntN(3) == 0 {
		t = math.MinInt64 + r.Int64N(1000)
	}
	delta := int64(1 + r.Int64N(100000))
	var v uint64
	for i := 0; i < n; i++ {
		if i > 0 {
			var dod int64
			switch r.IntN(9) {
			case 0, 1, 2:
			case 3:
				dod = r.Int64N(1<<14) - 1<<13
			case 4:
				dod = r.Int64N(1<<17) - 1<<16
			case 5:
				dod = r.Int64N(1<<20) - 1<<19
			case 6: // a class bound, or one past it
				lim := int64(1) << []uint{13, 16, 19}[r.IntN(3)]
				dod = []int64{lim - 1, lim, -lim, -lim - 1}[r.IntN(4)]
			case 7:
				dod = int64(r.Uint64() >> r.IntN(64))
			default:
				dod = -int64(r.Uint64() >> r.IntN(64))
			}
			d := delta + dod
			if d <= 0 {
				d = 1 + r.Int64N(1<<uint(r.IntN(62)))
			}
			if t > math.MaxInt64-d {
				break
			}
			delta, t = d, t+d
		}
		switch r.IntN(10) {
		case 0, 1: // unchanged
		case 2:
			v = specials[r.IntN(len(specials))]
		case 3:
			v = r.Uint64()
		case 4: // a NaN with a random payload
			v = 0x7ff0000000000000 | r.Uint64()&(1<<52-1) | 1 | r.Uint64()&(1<<63)
		case 5: // flip the bits at the very top or bottom
			v ^= 1<<63 | r.Uint64()&1
		case 6: // one bit
			v ^= 1 << r.IntN(64)
		default: // a decimal-ish gauge: XORs inside a window
			v = math.Float64bits(float64(r.IntN(10000)) / 100)
		}
		s = append(s, timeseries.Sample{T: t, V: math.Float64frombits(v)})
	}
	return s
}

// TestHotMatchesReference: random chunks, every truncation of them, a
// trailing byte, a count one off and bit flips all decode as the reference
// decoder does: the same samples and the same error text (which carries the
// byte offset).
func TestHotMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	rounds := 250
	if testing.Short() {
		rounds = 40
	}
	for round := 0; round < rounds; round++ {
		n := r.IntN(200)
		if round%10 == 0 {
			n = r.IntN(3)
		}
		s := diffSeries(r, n)
		b := encodeHot(t, s)
		got, err := DecodeHot(b, nil)
		if err != nil || !sameBits(got, s) {
			t.Fatalf("round %d: round trip of %d samples: %v", round, len(s), err)
		}
		checkAgainstRef(t, "whole", b)
		for l := 0; l < len(b); l++ {
			checkAgainstRef(t, "cut", b[:l])
		}
		checkAgainstRef(t, "trailing byte", append(bytes.Clone(b), 0))
		checkAgainstRef(t, "trailing bits", append(bytes.Clone(b), 0x80))
		if len(b) >= hotHeaderLen {
			for _, dc := range []int{-1, 1, 2} {
				c := bytes.Clone(b)
				binary.BigEndian.PutUint16(c[1:3], binary.BigEndian.Uint16(c[1:3])+uint16(dc))
				checkAgainstRef(t, "count off", c)
			}
		}
		for f := 0; f < 40 && len(b) > 0; f++ {
			c := bytes.Clone(b)
			i := hotHeaderLen + r.IntN(max(len(b)-hotHeaderLen, 1))
			if i >= len(c) {
				i = r.IntN(len(c))
			}
			c[i] ^= byte(1 << r.IntN(8))
			checkAgainstRef(t, "bit flip", c)
			checkAgainstRef(t, "bit flip, cut", c[:r.IntN(len(c)+1)])
		}
	}
}

// TestHotRandomStreams: random bits after a valid header (so most fail
// somewhere in the stream, on every path) decode as the reference does.
func TestHotRandomStreams(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for round := 0; round < 20000; round++ {
		l := 16 + r.IntN(80)
		b := make([]byte, hotHeaderLen+l)
		b[0] = HotVersion
		for i := hotHeaderLen; i < len(b); i++ {
			b[i] = byte(r.Uint32())
			switch r.IntN(4) { // runs of ones and zeros reach the rarer paths
			case 0:
				b[i] = 0xff
			case 1:
				b[i] = 0
			}
		}
		binary.BigEndian.PutUint16(b[1:3], uint16(1+r.IntN(4*l)))
		checkAgainstRef(t, "random stream", b)
	}
}

// FuzzHotReference: any input decodes as the reference decoder decodes it.
func FuzzHotReference(f *testing.F) {
	r := rand.New(rand.NewPCG(15, 16))
	for i := 0; i < 8; i++ {
		f.Add(encodeHot(f, diffSeries(r, i*20)))
	}
	f.Add([]byte{HotVersion, 0, 0})
	f.Add([]byte{HotVersion, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		checkAgainstRef(t, "fuzz input", b)
	})
}

// BenchmarkHotDecode: DecodeHot and the Iterator over chunks of 120
// samples, in ns per sample, beside the reference decoder (the one hot.go
// had before) for comparison.
func BenchmarkHotDecode(b *testing.B) {
	for name, s := range benchSeries() {
		chunks := make([][]byte, 0, len(s)/120)
		for i := 0; i < len(s); i += 120 {
			chunks = append(chunks, encodeHot(b, s[i:i+120]))
		}
		perSample := func(b *testing.B) {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(s)), "ns/sample")
		}
		b.Run("DecodeHot/"+name, func(b *testing.B) {
			var dst []timeseries.Sample
			for b.Loop() {
				for _, c := range chunks {
					var err error
					if dst, err = DecodeHot(c, dst[:0]); err != nil {
						b.Fatal(err)
					}
				}
			}
			perSample(b)
		})
		b.Run("Iterator/"+name, func(b *testing.B) {
			var it Iterator
			var dst []timeseries.Sample
			for b.Loop() {
				for _, c := range chunks {
					dst = dst[:0]
					for it.Reset(c); it.Next(); {
						t, v := it.At()
						dst = append(dst, timeseries.Sample{T: t, V: v})
					}
				}
			}
			perSample(b)
		})
		b.Run("reference/"+name, func(b *testing.B) {
			var dst []timeseries.Sample
			for b.Loop() {
				for _, c := range chunks {
					var err error
					if dst, err = refDecodeHot(c, dst[:0]); err != nil {
						b.Fatal(err)
					}
				}
			}
			perSample(b)
		})
	}
}

package fuzz

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/timeseries"
	"github.com/plures/pluresdb/timeseries/chunk"
)

// fuzzSamples derives a sorted series from seed: shapes like monitoring
// data (regular and irregular timestamps, counters, short decimals) and
// arbitrary bits, extreme timestamps included.
func fuzzSamples(seed uint64, n int) []timeseries.Sample {
	r := rand.New(rand.NewPCG(seed, seed>>32|1))
	s := make([]timeseries.Sample, 0, n)
	t := int64(r.Uint64())
	if r.IntN(4) == 0 {
		t = math.MinInt64 + r.Int64N(3)
	}
	tsKind, vKind := r.IntN(4), r.IntN(7)
	v := 0.0
	for i := 0; i < n; i++ {
		switch vKind {
		case 0:
			v += float64(r.IntN(50))
		case 1:
			v = float64(r.IntN(10000)) / 100
		case 2:
			v = math.Float64frombits(r.Uint64())
		case 3:
			if r.IntN(8) == 0 {
				v = math.NaN()
			} else {
				v = float64(r.IntN(4096)) * 4096
			}
		case 4: // runs of one NaN between a clamped one-decimal gauge
			switch {
			case i/50%4 == 1:
				v = math.NaN()
			default:
				v = math.Round(math.Max(0, v+r.NormFloat64()*10)*10) / 10
			}
		case 5: // memory-like: multiples of 4096 with odd noise
			v = float64(4096*(1000+r.IntN(33))) + float64(r.IntN(8)/7*r.IntN(4096))
		default:
			v = r.NormFloat64()
		}
		s = append(s, timeseries.Sample{T: t, V: v})
		var d int64
		switch tsKind {
		case 0:
			d = 15000
		case 1:
			d = 1 + r.Int64N(60000)
		case 2:
			d = 1 + r.Int64N(math.MaxInt64)
		default:
			d = 1 + r.Int64N(3)
		}
		if t > math.MaxInt64-d {
			break
		}
		t += d
	}
	return s
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

func checkDecodeErr(t *testing.T, what string, err error) {
	if !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
		t.Fatalf("%s: error %v wraps neither ErrCorruption nor ErrNewerFormat", what, err)
	}
}

// FuzzChunkHot: arbitrary bytes given to DecodeHot and the iterator never
// panic and agree; what decodes re-encodes to the same samples; and a
// series derived from the input round-trips bit for bit.
func FuzzChunkHot(f *testing.F) {
	for seed := uint64(0); seed < 8; seed++ {
		a := chunk.NewAppender()
		for _, s := range fuzzSamples(seed, 1+int(seed)*17) {
			_ = a.Append(s.T, s.V)
		}
		f.Add(a.Bytes(), seed, uint16(seed*10))
	}
	f.Add([]byte{chunk.HotVersion, 0, 0}, uint64(0), uint16(0))
	f.Add([]byte{chunk.HotVersion, 0xff, 0xff, 1, 2, 3}, uint64(1), uint16(1))

	f.Fuzz(func(t *testing.T, data []byte, seed uint64, n uint16) {
		got, err := chunk.DecodeHot(data, nil)
		var viaIt []timeseries.Sample
		it := chunk.NewIterator(data)
		for it.Next() {
			ts, v := it.At()
			viaIt = append(viaIt, timeseries.Sample{T: ts, V: v})
		}
		if (err == nil) != (it.Err() == nil) || err != nil && err.Error() != it.Err().Error() {
			t.Fatalf("DecodeHot: %v, iterator: %v", err, it.Err())
		}
		if n, herr := chunk.HotLen(data); herr == nil && err == nil && n != len(got) {
			t.Fatalf("HotLen %d, DecodeHot %d samples", n, len(got))
		}
		if err != nil {
			checkDecodeErr(t, "DecodeHot", err)
			if len(got) != 0 {
				t.Fatalf("DecodeHot returned %d samples with %v", len(got), err)
			}
		} else {
			if !sameBits(got, viaIt) {
				t.Fatal("DecodeHot and the iterator disagree")
			}
			a := chunk.NewAppender()
			for _, s := range got {
				if err := a.Append(s.T, s.V); err != nil {
					t.Fatalf("re-encoding a decoded chunk: %v", err)
				}
			}
			again, err := chunk.DecodeHot(a.Bytes(), nil)
			if err != nil || !sameBits(again, got) {
				t.Fatalf("re-encoded chunk: %v", err)
			}
			if _, err := chunk.NewAppenderFrom(data); err != nil {
				t.Fatalf("NewAppenderFrom a chunk that decodes: %v", err)
			}
		}

		want := fuzzSamples(seed, int(n%2000))
		a := chunk.NewAppender()
		for _, s := range want {
			if err := a.Append(s.T, s.V); err != nil {
				t.Fatal(err)
			}
		}
		back, err := chunk.DecodeHot(a.Bytes(), nil)
		if err != nil || !sameBits(back, want) {
			t.Fatalf("generated series of %d: round trip failed (%v)", len(want), err)
		}
	})
}

// FuzzChunkCold: arbitrary bytes given to DecodeCold, as they are and
// sealed with a valid checksum (so the body parser is reached), never
// panic; what decodes re-encodes to the same samples; and a series derived
// from the input round-trips bit for bit.
func FuzzChunkCold(f *testing.F) {
	for seed := uint64(0); seed < 24; seed++ {
		b, err := chunk.EncodeCold(nil, fuzzSamples(seed, 1+int(seed)*40))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, seed, uint16(seed*100))
		f.Add(b[:len(b)-4], seed, uint16(seed))
	}
	f.Add([]byte{}, uint64(0), uint16(0))
	// Blocks of the previous format (version 1), which must still decode.
	if golden, err := os.ReadFile("../timeseries/chunk/testdata/cold-v1.golden"); err == nil {
		for i := 0; i < 40 && len(golden) > 0; i++ {
			l, k := binary.Uvarint(golden)
			if k <= 0 || l > uint64(len(golden)-k) {
				break
			}
			f.Add(golden[k:k+int(l)], uint64(i), uint16(i))
			golden = golden[k+int(l):]
			n, k := binary.Uvarint(golden)
			if k <= 0 || n*16 > uint64(len(golden)-k) {
				break
			}
			golden = golden[k+16*int(n):]
		}
	}

	f.Fuzz(func(t *testing.T, data []byte, seed uint64, n uint16) {
		sealed := binary.LittleEndian.AppendUint32(data[:len(data):len(data)], uint32(xxhash.Sum64(data)))
		for _, in := range [][]byte{data, sealed} {
			got, err := chunk.DecodeCold(in, nil)
			if err != nil {
				checkDecodeErr(t, "DecodeCold", err)
				continue
			}
			enc, err := chunk.EncodeCold(nil, got)
			if err != nil {
				t.Fatalf("re-encoding a decoded block: %v", err)
			}
			again, err := chunk.DecodeCold(enc, nil)
			if err != nil || !sameBits(again, got) {
				t.Fatalf("re-encoded block: %v", err)
			}
		}

		want := fuzzSamples(seed, int(n%6000))
		enc, err := chunk.EncodeCold(nil, want)
		if err != nil {
			t.Fatal(err)
		}
		back, err := chunk.DecodeCold(enc, nil)
		if err != nil || !sameBits(back, want) {
			t.Fatalf("generated series of %d: round trip failed (%v)", len(want), err)
		}
	})
}

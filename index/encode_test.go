package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/plures/pluresdb/internal/errs"
)

// randValue returns a random Go value of kind k, biased to edge cases.
func randValue(r *rand.Rand, k Kind) any {
	switch k {
	case Bytes, String:
		alpha := []byte{0x00, 0x01, 'a', 'b', 0xFE, 0xFF}
		if k == String {
			alpha = []byte{0x00, 0x01, 'a', 'b', 0x7F}
		}
		b := make([]byte, r.IntN(5))
		for i := range b {
			b[i] = alpha[r.IntN(len(alpha))]
		}
		if k == String {
			if r.IntN(4) == 0 {
				return string(b) + "é€"
			}
			return string(b)
		}
		return b
	case Int64:
		switch r.IntN(4) {
		case 0:
			return []int64{math.MinInt64, math.MaxInt64, 0, -1, 1}[r.IntN(5)]
		case 1:
			return int64(r.IntN(7) - 3)
		}
		return int64(r.Uint64())
	case Float64:
		switch r.IntN(4) {
		case 0:
			return []float64{math.Inf(-1), math.Inf(1), 0, math.Copysign(0, -1), math.SmallestNonzeroFloat64,
				-math.SmallestNonzeroFloat64, math.MaxFloat64, -math.MaxFloat64, 1, -1}[r.IntN(10)]
		case 1:
			return float64(r.IntN(7) - 3)
		}
		f := math.Float64frombits(r.Uint64())
		if math.IsNaN(f) {
			return 0.5
		}
		return f
	}
	switch r.IntN(3) {
	case 0:
		return []time.Time{minTime, maxTime, time.Unix(0, 0)}[r.IntN(3)]
	}
	return time.Unix(0, int64(r.Uint64()))
}

// cmpValue is the reference order of Go values of kind k.
func cmpValue(k Kind, a, b any) int {
	switch k {
	case Bytes:
		return bytes.Compare(a.([]byte), b.([]byte))
	case String:
		return bytes.Compare([]byte(a.(string)), []byte(b.(string)))
	case Int64:
		x, y := a.(int64), b.(int64)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	case Float64:
		x, y := a.(float64), b.(float64)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	}
	return a.(time.Time).Compare(b.(time.Time))
}

// TestEncodingOrder: for random values of every kind, the order of
// encoded entry keys (value, then document number) is the order of the
// values, then the numbers; and every encoding decodes back.
func TestEncodingOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, k := range []Kind{Bytes, String, Int64, Float64, Time} {
		type item struct {
			v   any
			num uint32
			key []byte
		}
		var items []item
		for range 3000 {
			v := randValue(r, k)
			enc, err := EncodeValue(k, v)
			if err != nil {
				t.Fatalf("%v: encode %v: %v", k, v, err)
			}
			back, err := DecodeValue(k, enc)
			if err != nil {
				t.Fatalf("%v: decode %x: %v", k, enc, err)
			}
			if cmpValue(k, back, v) != 0 {
				t.Fatalf("%v: %v decoded as %v", k, v, back)
			}
			num := uint32(r.IntN(4)) * 0x01010101
			items = append(items, item{v, num, entryKey(nil, 7, enc, num)})
		}
		byKey := slices.Clone(items)
		slices.SortStableFunc(byKey, func(a, b item) int { return bytes.Compare(a.key, b.key) })
		byValue := slices.Clone(items)
		slices.SortStableFunc(byValue, func(a, b item) int {
			if c := cmpValue(k, a.v, b.v); c != 0 {
				return c
			}
			return int(int64(a.num) - int64(b.num))
		})
		for i := range byKey {
			a, b := byKey[i], byValue[i]
			if cmpValue(k, a.v, b.v) != 0 || a.num != b.num {
				t.Fatalf("%v: position %d: key order has (%v, %d), value order (%v, %d)", k, i, a.v, a.num, b.v, b.num)
			}
			kk, err := ParseKey(a.key)
			if err != nil || kk.Doc != a.num || kk.ID != 7 {
				t.Fatalf("%v: ParseKey(%x) = %+v, %v", k, a.key, kk, err)
			}
		}
	}
}

// TestEncodingPrefix: an escaped prefix is a key prefix of exactly the
// values starting with it.
func TestEncodingPrefix(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		v := randValue(r, Bytes).([]byte)
		p := randValue(r, Bytes).([]byte)
		if r.IntN(2) == 0 && len(v) > 0 {
			p = v[:r.IntN(len(v)+1)]
		}
		enc := appendTerminated(nil, v)
		if got, want := bytes.HasPrefix(enc, appendEscaped(nil, p)), bytes.HasPrefix(v, p); got != want {
			t.Fatalf("value %x prefix %x: encoded prefix match %v, value prefix %v", v, p, got, want)
		}
	}
}

func TestFloatEdges(t *testing.T) {
	a, _ := EncodeValue(Float64, 0.0)
	b, _ := EncodeValue(Float64, math.Copysign(0, -1))
	if !bytes.Equal(a, b) {
		t.Fatalf("-0 encodes as %x, +0 as %x", b, a)
	}
	if _, err := EncodeValue(Float64, math.NaN()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NaN: %v", err)
	}
	if _, err := ParseValue(Float64, []byte("NaN")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NaN text: %v", err)
	}
	nan := make([]byte, 8)
	copy(nan, a)
	for _, bad := range [][]byte{{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {0xff, 0xf8, 0, 0, 0, 0, 0, 1}, {0x00, 0x07, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}} {
		if _, err := DecodeValue(Float64, bad); !errors.Is(err, errs.ErrCorruption) {
			t.Fatalf("DecodeValue(%x) = %v, want corruption (-0 or NaN)", bad, err)
		}
	}
}

func TestParseValue(t *testing.T) {
	for _, c := range []struct {
		k   Kind
		raw string
		v   any // nil: refused
	}{
		{Int64, "42", int64(42)},
		{Int64, "-9223372036854775808", int64(math.MinInt64)},
		{Int64, "9223372036854775808", nil},
		{Int64, " 1", nil},
		{Int64, "1.0", nil},
		{Float64, "1.5", 1.5},
		{Float64, "-Inf", math.Inf(-1)},
		{Float64, "NaN", nil},
		{Float64, "x", nil},
		{Time, "2024-05-06T07:08:09.123456789Z", time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)},
		{Time, "2024-05-06T09:08:09+02:00", time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)},
		{Time, "3000-01-01T00:00:00Z", nil},
		{Time, "1700000000", nil},
		{String, "héllo", "héllo"},
		{String, "\xff", nil},
		{Bytes, "\xff\x00", []byte("\xff\x00")},
	} {
		enc, err := ParseValue(c.k, []byte(c.raw))
		if c.v == nil {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseValue(%v, %q) = %x, %v; want ErrInvalid", c.k, c.raw, enc, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseValue(%v, %q): %v", c.k, c.raw, err)
			continue
		}
		v, err := DecodeValue(c.k, enc)
		if err != nil || cmpValue(c.k, v, c.v) != 0 {
			t.Errorf("ParseValue(%v, %q) decodes to %v, %v; want %v", c.k, c.raw, v, err, c.v)
		}
	}
}

// TestDecodeDamage: every truncation and bit flip of encoded values and
// catalog values fails with ErrCorruption or decodes to something valid;
// a flipped catalog value always fails (checksum).
func TestDecodeDamage(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, k := range []Kind{Bytes, String, Int64, Float64, Time} {
		for range 200 {
			enc, _ := EncodeValue(k, randValue(r, k))
			for n := range len(enc) {
				if _, err := DecodeValue(k, enc[:n]); !errors.Is(err, errs.ErrCorruption) {
					t.Fatalf("%v: truncated %x: %v", k, enc[:n], err)
				}
			}
			b := slices.Clone(enc)
			b[r.IntN(len(b))] ^= 1 << r.IntN(8)
			if _, err := DecodeValue(k, b); err != nil && !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("%v: flipped %x: %v", k, b, err)
			}
		}
	}
	cat := appendCatalog(nil, Info{ID: 3, Kind: Time, Field: "when", Unique: true, Cursor: []byte("k9"), Done: 10, Estimate: 99})
	in, err := DecodeCatalog(cat)
	if err != nil || in.ID != 3 || in.Kind != Time || in.Field != "when" || !in.Unique || string(in.Cursor) != "k9" || in.Done != 10 || in.Estimate != 99 {
		t.Fatalf("catalog round trip: %+v, %v", in, err)
	}
	for i := range len(cat) * 8 {
		b := slices.Clone(cat)
		b[i/8] ^= 1 << (i % 8)
		if _, err := DecodeCatalog(b); !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
			t.Fatalf("catalog with bit %d flipped: %v", i, err)
		}
	}
	for n := range len(cat) {
		if _, err := DecodeCatalog(cat[:n]); !errors.Is(err, errs.ErrCorruption) {
			t.Fatalf("catalog truncated to %d: %v", n, err)
		}
	}
	// A catalog of the earlier key layout (version 1) is refused, even
	// with a right checksum.
	old := slices.Clone(cat[:len(cat)-8])
	old[0] = 1
	old = binary.LittleEndian.AppendUint64(old, xxhash.Sum64(old))
	if _, err := DecodeCatalog(old); !errors.Is(err, errs.ErrCorruption) || !strings.Contains(err.Error(), "format version 1") {
		t.Fatalf("catalog of version 1: %v", err)
	}
}

// TestForwardRoundTrip: forward values round-trip, and every truncation
// or reordering is refused.
func TestForwardRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 300 {
		f := Forward{Doc: r.Uint32()}
		id := uint32(0)
		for range r.IntN(4) {
			id += 1 + uint32(r.IntN(3))
			k := []Kind{Bytes, String, Int64, Float64, Time}[r.IntN(5)]
			enc, _ := EncodeValue(k, randValue(r, k))
			f.Values = append(f.Values, IndexValue{ID: id, Value: enc})
		}
		enc := AppendForward(nil, f)
		got, err := DecodeForward(enc)
		if err != nil || got.Doc != f.Doc || len(got.Values) != len(f.Values) {
			t.Fatalf("forward round trip of %+v: %+v, %v", f, got, err)
		}
		for i := range f.Values {
			if got.Values[i].ID != f.Values[i].ID || !bytes.Equal(got.Values[i].Value, f.Values[i].Value) {
				t.Fatalf("forward round trip of %+v: %+v", f, got)
			}
		}
		ends := map[int]bool{4: true} // where a shorter forward value ends
		at := 4
		for _, v := range f.Values {
			at += 6 + len(v.Value)
			ends[at] = true
		}
		for n := range len(enc) {
			if _, err := DecodeForward(enc[:n]); !ends[n] && !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("forward %x truncated to %d: %v", enc, n, err)
			}
		}
		if len(f.Values) >= 2 {
			f.Values[0], f.Values[1] = f.Values[1], f.Values[0]
			if _, err := DecodeForward(AppendForward(nil, f)); !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("forward with ids out of order: %v", err)
			}
		}
	}
}

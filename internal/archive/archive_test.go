package archive

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
)

// testStream returns an encoded change stream of n local operations of
// one replica (sequence numbers 1..n) and their positions.
func testStream(t testing.TB, n int) ([]byte, []Position) {
	r := oplog.ReplicaID{0xa1, 0x2c}
	ts := oplog.MakeTimestamp(1_750_000_000_000, 0)
	h := oplog.StreamHeader{Source: r, Compress: true, Ranges: []oplog.Range{{Replica: r, From: 0, To: uint64(n)}}}
	var buf bytes.Buffer
	sw, err := oplog.NewStreamWriter(&buf, h)
	if err != nil {
		t.Fatal(err)
	}
	pos := make([]Position, n)
	for i := range n {
		op := oplog.Op{Replica: r, Seq: uint64(i + 1), HLC: ts + oplog.Timestamp(i), Kind: oplog.KindPut,
			Key: []byte{'k', byte(i)}, Value: []byte("value")}
		if err := sw.Add(&op); err != nil {
			t.Fatal(err)
		}
		sw.EndTransaction()
		pos[i] = Position{Seq: uint64(i + 1)}
	}
	if _, err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), pos
}

func TestEncodeDecode(t *testing.T) {
	stream, pos := testStream(t, 20)
	classes := make([]Class, len(pos))
	data := Encode(stream, pos, classes)
	f, err := Decode("a.oparc", data)
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != Version || len(f.Stream.Ops) != 20 || !slices.Equal(f.Pos, pos) || f.Classes != nil {
		t.Fatalf("decoded version %d, %d ops, positions %v, classes %v", f.Version, len(f.Stream.Ops), f.Pos, f.Classes)
	}
	if !bytes.Equal(data[f.StreamOffset:f.StreamOffset+f.StreamLen], stream) {
		t.Fatal("stream offset and length do not locate the stream")
	}
	// Every flipped byte and every truncation is refused as corruption.
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x40
		if _, err := Decode("a.oparc", bad); !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	for n := range data {
		if _, err := Decode("a.oparc", data[:n]); !errors.Is(err, errs.ErrCorruption) {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	newer := bytes.Clone(data)
	newer[len(Magic)] = Version + 1
	if _, err := Decode("a.oparc", newer); !errors.Is(err, errs.ErrNewerFormat) {
		t.Fatalf("newer version: %v", err)
	}
	// Version 1: the bare stream, no positions.
	f, err = Decode("a.oparc", stream)
	if err != nil || f.Version != 1 || f.Pos != nil || len(f.Stream.Ops) != 20 {
		t.Fatalf("version 1: %v %+v", err, f)
	}
}

func TestPositionsRoundTrip(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	for range 200 {
		var pos []Position
		var classes []Class
		mixed := rng.IntN(2) == 0
		p := Position{Seq: rng.Uint64N(1 << 40)}
		for range rng.IntN(50) {
			switch rng.IntN(4) {
			case 0:
				p.Seq++
			case 1:
				p.Index++
			case 2:
				p = Position{Seq: p.Seq + rng.Uint64N(100), Index: uint32(rng.IntN(3))}
			default:
				p = Position{Seq: rng.Uint64N(1 << 40)}
			}
			pos = append(pos, p)
			c := Logged
			if mixed {
				c = Class(rng.IntN(int(NumClasses)))
			}
			classes = append(classes, c)
		}
		enc := AppendPositions(nil, pos, classes)
		got, gotClasses, err := DecodePositions(enc, len(pos), Version)
		if err != nil || !slices.Equal(got, pos) {
			t.Fatalf("seed %d: %v\n got %v\nwant %v", seed, err, got, pos)
		}
		for i := range pos {
			c := Logged
			if gotClasses != nil {
				c = gotClasses[i]
			}
			if c != classes[i] {
				t.Fatalf("seed %d: position %d: class %d, want %d", seed, i, c, classes[i])
			}
		}
		if _, _, err := DecodePositions(enc, len(pos), 2); mixed && slices.ContainsFunc(classes, func(c Class) bool { return c != Logged }) && err == nil {
			t.Fatalf("seed %d: a version 2 archive took classes", seed)
		}
		for cut := range enc {
			if _, _, err := DecodePositions(enc[:cut], len(pos), Version); err == nil && cut < len(enc) {
				t.Fatalf("seed %d: truncated to %d of %d decodes", seed, cut, len(enc))
			}
		}
	}
}

func FuzzArchivePositions(f *testing.F) {
	f.Add(AppendPositions(nil, []Position{{1, 0}, {2, 0}, {3, 0}, {9, 0}, {9, 1}}, make([]Class, 5)), 5)
	f.Add(AppendPositions(nil, []Position{{1, 0}, {1, 1}, {3, 0}}, []Class{Filtered, Repeat, Logged}), 3)
	f.Add([]byte{1, 3, 1, 2, 0}, 3)
	f.Fuzz(func(t *testing.T, b []byte, count int) {
		if count < 0 || count > 1<<16 {
			return
		}
		pos, classes, err := DecodePositions(b, count, Version)
		if err != nil {
			return
		}
		if classes == nil {
			classes = make([]Class, len(pos))
		}
		got, gotClasses, err := DecodePositions(AppendPositions(nil, pos, classes), count, Version)
		if gotClasses == nil {
			gotClasses = make([]Class, len(got))
		}
		if err != nil || !slices.Equal(got, pos) || !slices.Equal(gotClasses, classes) {
			t.Fatalf("re-encoding %v %v: %v %v, %v", pos, classes, got, gotClasses, err)
		}
	})
}

package oplog

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
)

// writeTxnStream writes ops with a transaction ending after each index in
// ends, in the given format version, and returns the stream.
func writeTxnStream(t *testing.T, h StreamHeader, ops []Op, ends []int, version byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	sw, err := newStreamWriter(&buf, h, version)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ops {
		if err := sw.Add(&ops[i]); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(ends, i) {
			sw.EndTransaction()
			sw.EndTransaction() // a second end in a row ends nothing
		}
	}
	if _, err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Transaction ends round trip, through both readers, also when a
// transaction spans chunks; Close ends the last one.
func TestStreamTransactions(t *testing.T) {
	rng := newRand(t)
	ops, ranges := streamOps(rng, 3000) // many chunks
	var ends []int
	for i := 0; i < len(ops)-1; i += 1 + rng.IntN(2000) {
		ends = append(ends, i)
	}
	want := append(slices.Clone(ends), len(ops)-1)
	for _, compress := range []bool{false, true} {
		h := StreamHeader{Source: repA, Ranges: ranges, Compress: compress}
		data := writeTxnStream(t, h, ops, ends, streamVersion)
		s, err := readStreamBoth(t, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(s.Ends, want) {
			t.Fatalf("compress=%v: ends %v, want %v", compress, s.Ends, want)
		}
		v, err := VerifyStream(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if v.NumChunks() < 2 {
			t.Fatalf("%d chunks: no transaction spans chunks", v.NumChunks())
		}
		var got []int
		var all []Op
		for i := range v.NumChunks() {
			if all, got, _, err = v.ChunkIn(i, all, got, nil); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("compress=%v: ChunkIn ends %v, want %v", compress, got, want)
		}
	}
}

// A version 1 stream (no transaction ends) is still read: every op ends a
// transaction of its own.
func TestStreamVersion1(t *testing.T) {
	rng := newRand(t)
	ops, ranges := streamOps(rng, 500)
	data := writeTxnStream(t, StreamHeader{Source: repA, Ranges: ranges}, ops, nil, 1)
	if data[len(streamMagic)] != 1 {
		t.Fatalf("version %d written", data[len(streamMagic)])
	}
	s, err := readStreamBoth(t, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("version 1 stream: %v", err)
	}
	if len(s.Ops) != len(ops) || len(s.Ends) != len(ops) || s.Ends[len(ops)-1] != len(ops)-1 {
		t.Fatalf("version 1: %d ops, %d ends", len(s.Ops), len(s.Ends))
	}
}

// Ends that a writer cannot have written are refused: past the chunk's
// ops, or none at the stream's end.
func TestStreamRefusesBadEnds(t *testing.T) {
	h := StreamHeader{Source: repA, Ranges: []Range{{Replica: repB, To: 9}}}
	op := func(seq uint64) Op { return Op{Replica: repB, Seq: seq, HLC: testTS, Kind: KindPut, Key: []byte("k")} }
	forge := func(ends []byte, nEnds int) []byte {
		var buf bytes.Buffer
		sw, err := NewStreamWriter(&buf, h)
		if err != nil {
			t.Fatal(err)
		}
		sw.chunk = AppendBatch(nil, repB, []Op{op(1), op(2)})
		sw.ops, sw.chunkOps, sw.lastEndAt = 2, 2, 2 // Close adds no end
		sw.ends, sw.nEnds = ends, nEnds
		if _, err := sw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	if _, err := readStreamBoth(t, bytes.NewReader(forge([]byte{1}, 1))); err != nil {
		t.Fatalf("good forged stream: %v", err)
	}
	for name, data := range map[string][]byte{
		"no end":           forge(nil, 0),
		"open at the end":  forge([]byte{0}, 1),
		"past the ops":     forge([]byte{2}, 1),
		"second past":      forge([]byte{1, 0}, 2),
		"count past bytes": forge([]byte{0}, 5),
		"huge end":         forge([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 1),
		"non-minimal end":  forge([]byte{0x81, 0x00}, 1),
	} {
		if _, err := readStreamBoth(t, bytes.NewReader(data)); !errors.Is(err, errs.ErrCorruption) {
			t.Errorf("%s: %v, want ErrCorruption", name, err)
		}
	}
}

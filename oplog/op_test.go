package oplog

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
)

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// randOp returns an op with only the parts its kind uses set, as a decoder
// returns them.
func randOp(rng *rand.Rand, replica ReplicaID) Op {
	op := Op{
		Replica: replica,
		Kind:    OpKind(1 + rng.IntN(int(maxKind))),
		Seq:     rng.Uint64() >> rng.IntN(64),
		HLC:     Timestamp(rng.Uint64() >> rng.IntN(64)),
		Key:     randBytes(rng, rng.IntN(20)),
	}
	if op.Kind.hasField() {
		op.Field = randBytes(rng, rng.IntN(8))
	}
	if op.Kind.hasValue() {
		op.Value = randBytes(rng, rng.IntN(300))
	}
	if op.Kind.hasDelta() {
		op.Delta = int64(rng.Uint64())
		if rng.IntN(3) == 0 {
			op.Delta = []int64{0, 1, -1, math.MinInt64, math.MaxInt64}[rng.IntN(5)]
		}
	}
	return op
}

func opsEqual(a, b Op) bool {
	return a.Replica == b.Replica && a.Seq == b.Seq && a.HLC == b.HLC && a.Kind == b.Kind &&
		bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Field, b.Field) && bytes.Equal(a.Value, b.Value) &&
		a.Delta == b.Delta && (a.Field == nil) == (b.Field == nil) && (a.Value == nil) == (b.Value == nil)
}

func TestOpRoundTrip(t *testing.T) {
	rng := newRand(t)
	for i := range 3000 {
		op := randOp(rng, NewReplicaID())
		if op.Field == nil && op.Kind.hasField() || op.Value == nil && op.Kind.hasValue() {
			t.Fatal("randOp left a used part nil")
		}
		enc := AppendOp([]byte{0xaa}, &op)[1:]
		got, n, err := DecodeOp(append(enc, 0xbb, 0xcc))
		if err != nil || n != len(enc) || !opsEqual(got, op) {
			t.Fatalf("case %d: DecodeOp(%x) = %+v, %d, %v; want %+v, %d", i, enc, got, n, err, op, len(enc))
		}
		for cut := range len(enc) {
			if _, _, err := DecodeOp(enc[:cut]); !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("case %d: truncated to %d: %v", i, cut, err)
			}
		}
	}
}

func TestOpUnusedPartsNotEncoded(t *testing.T) {
	op := Op{Kind: KindDelete, Seq: 1, Key: []byte("k"), Field: []byte("f"), Value: []byte("v"), Delta: 9}
	got, _, err := DecodeOp(AppendOp(nil, &op))
	if err != nil || got.Field != nil || got.Value != nil || got.Delta != 0 || string(got.Key) != "k" {
		t.Fatalf("delete op decoded as %+v, %v", got, err)
	}
}

func TestOpDecodeRefusesBadKind(t *testing.T) {
	for _, k := range []OpKind{0, maxKind + 1, 0xff} {
		enc := AppendOp(nil, &Op{Kind: k, Seq: 1, Key: []byte("k")})
		if _, _, err := DecodeOp(enc); !errors.Is(err, errs.ErrCorruption) {
			t.Errorf("kind %d: %v", k, err)
		}
	}
}

func TestOpValidate(t *testing.T) {
	good := Op{Kind: KindPut, Seq: 1, Key: []byte("k")}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Op{{Kind: 0, Seq: 1, Key: []byte("k")}, {Kind: KindPut, Key: []byte("k")}, {Kind: KindPut, Seq: 1}} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

// writerRun returns a realistic run of n ops from one replica: contiguous
// sequence numbers and timestamps from a Clock whose wall clock moves a
// millisecond every few ops, about 20-byte keys and 100-byte values.
func writerRun(rng *rand.Rand, replica ReplicaID, n int) []Op {
	c, w := newFakeClock(1_750_000_000_000, 0)
	ops := make([]Op, n)
	seq := 1 + rng.Uint64N(1_000_000)
	for i := range ops {
		if rng.IntN(4) == 0 {
			w.ms.Add(1 + rng.Int64N(3))
		}
		op := Op{Replica: replica, Seq: seq + uint64(i), HLC: c.Now(), Key: fmt.Appendf(nil, "user/%08d/profile", rng.IntN(1e6))}
		switch p := rng.IntN(100); {
		case p < 50:
			op.Kind, op.Value = KindPut, randBytes(rng, 80+rng.IntN(40))
		case p < 75:
			op.Kind, op.Field, op.Value = KindSetField, []byte("email"), randBytes(rng, 20+rng.IntN(20))
		case p < 85:
			op.Kind, op.Field, op.Delta = KindIncr, []byte("visits"), 1
		case p < 92:
			op.Kind, op.Field = KindDeleteField, []byte("email")
		default:
			op.Kind = KindDelete
		}
		ops[i] = op
	}
	return ops
}

// adversarialRun returns ops whose sequence numbers and timestamps jump
// around in every direction, including wrap-around.
func adversarialRun(rng *rand.Rand, replica ReplicaID, n int) []Op {
	ops := make([]Op, n)
	for i := range ops {
		ops[i] = randOp(rng, replica)
		if i > 0 && rng.IntN(3) == 0 {
			ops[i].Seq, ops[i].HLC = ops[i-1].Seq+1, ops[i-1].HLC+1
		}
		if rng.IntN(10) == 0 {
			ops[i].Seq, ops[i].HLC = []uint64{0, math.MaxUint64}[rng.IntN(2)], Timestamp([]uint64{0, math.MaxUint64}[rng.IntN(2)])
		}
	}
	return ops
}

func TestBatchRoundTrip(t *testing.T) {
	rng := newRand(t)
	var scratch []Op
	for i := range 600 {
		replica := NewReplicaID()
		var ops []Op
		switch n := rng.IntN(40); i % 3 {
		case 0:
			ops = writerRun(rng, replica, n)
		case 1:
			ops = adversarialRun(rng, replica, n)
		default:
			ops = writerRun(rng, replica, n)
			for j := range ops {
				if rng.IntN(5) == 0 { // gaps, as a prefix-filtered export has
					for k := j; k < len(ops); k++ {
						ops[k].Seq += 3
					}
				}
			}
		}
		enc := AppendBatch([]byte{0xaa}, replica, ops)[1:]
		gotReplica, got, n, err := DecodeBatch(scratch[:0], append(enc, 0xbb))
		if err != nil || n != len(enc) || gotReplica != replica || len(got) != len(ops) {
			t.Fatalf("case %d: DecodeBatch = %v, %d ops, %d bytes, %v; want %v, %d ops, %d bytes", i, gotReplica, len(got), n, err, replica, len(ops), len(enc))
		}
		for j := range ops {
			if !opsEqual(got[j], ops[j]) {
				t.Fatalf("case %d op %d: got %+v, want %+v", i, j, got[j], ops[j])
			}
		}
		if re := AppendBatch(nil, replica, got); !bytes.Equal(re, enc) {
			t.Fatalf("case %d: decoded batch re-encodes differently", i)
		}
		// Every cut of the header, then a sample: checking all is quadratic.
		for j := range min(len(enc), 64) {
			cut := j
			if j >= 32 {
				cut = rng.IntN(len(enc))
			}
			if _, _, _, err := DecodeBatch(nil, enc[:cut]); !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("case %d: truncated to %d of %d: %v", i, cut, len(enc), err)
			}
		}
		scratch = got
	}
}

func TestBatchDecodeGarbled(t *testing.T) {
	rng := newRand(t)
	replica := NewReplicaID()
	enc := AppendBatch(nil, replica, writerRun(rng, replica, 30))
	refused := 0
	for range 5000 {
		b := append([]byte(nil), enc...)
		for range 1 + rng.IntN(3) {
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		}
		gotReplica, ops, n, err := DecodeBatch(nil, b)
		if err != nil {
			if !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("garbled batch: error %v does not wrap ErrCorruption", err)
			}
			refused++
			continue
		}
		// Damage that still parses (it landed in a key or value) must
		// describe itself exactly: re-encoding gives the bytes read.
		if re := AppendBatch(nil, gotReplica, ops); !bytes.Equal(re, b[:n]) {
			t.Fatalf("garbled batch decoded to ops that re-encode differently")
		}
	}
	if refused == 0 {
		t.Fatal("no garbled batch was refused")
	}
}

func TestBatchDecodeRefusesNonCanonical(t *testing.T) {
	replica := ReplicaID{7}
	two := []Op{
		{Kind: KindDelete, Seq: 10, HLC: 100, Key: []byte("a")},
		{Kind: KindDelete, Seq: 11, HLC: 101, Key: []byte("b")},
	}
	good := AppendBatch(nil, replica, two)
	if _, _, _, err := DecodeBatch(nil, good); err != nil {
		t.Fatal(err)
	}
	hdr := func(kind OpKind, flags byte) byte { return byte(kind) | flags }
	base := append(replica[:], 2, 10, 100)
	cases := map[string][]byte{
		"first op long seq":   append(append([]byte(nil), base...), hdr(KindDelete, hdrHLCNext), 2, 1, 'a', hdr(KindDelete, hdrSeqNext|hdrHLCNext), 1, 'b'),
		"long seq delta 1":    append(append([]byte(nil), base...), hdr(KindDelete, hdrSeqNext|hdrHLCNext), 1, 'a', hdr(KindDelete, hdrHLCNext), 2, 1, 'b'),
		"long hlc delta 1":    append(append([]byte(nil), base...), hdr(KindDelete, hdrSeqNext|hdrHLCNext), 1, 'a', hdr(KindDelete, hdrSeqNext), 0, 101, 0x00, 1, 'b'),
		"reserved bit":        append(append([]byte(nil), base...), hdr(KindDelete, hdrSeqNext|hdrHLCNext|0x20), 1, 'a', hdr(KindDelete, hdrSeqNext|hdrHLCNext), 1, 'b'),
		"kind 0":              append(append([]byte(nil), base...), hdr(0, hdrSeqNext|hdrHLCNext), 1, 'a', hdr(KindDelete, hdrSeqNext|hdrHLCNext), 1, 'b'),
		"logical > 16 bits":   append(append([]byte(nil), base...), hdr(KindDelete, hdrSeqNext|hdrHLCNext), 1, 'a', hdr(KindDelete, hdrSeqNext), 0, 0x80, 0x80, 0x04, 1, 'b'),
		"physical below zero": append(append([]byte(nil), base...), hdr(KindDelete, hdrSeqNext|hdrHLCNext), 1, 'a', hdr(KindDelete, hdrSeqNext), 3, 0, 1, 'b'),
		"count past data":     append(append([]byte(nil), replica[:]...), 200, 10, 100, hdr(KindDelete, hdrSeqNext|hdrHLCNext), 1, 'a'),
		"key past data":       append(append([]byte(nil), base...), hdr(KindDelete, hdrSeqNext|hdrHLCNext), 9, 'a', hdr(KindDelete, hdrSeqNext|hdrHLCNext), 1, 'b'),
	}
	for name, b := range cases {
		if _, ops, _, err := DecodeBatch(nil, b); !errors.Is(err, errs.ErrCorruption) {
			t.Errorf("%s: got %d ops, %v; want ErrCorruption", name, len(ops), err)
		}
	}
	// An error leaves the caller's slice at its length.
	dst := make([]Op, 1, 8)
	if _, got, _, err := DecodeBatch(dst, cases["long hlc delta 1"]); err == nil || len(got) != 1 {
		t.Fatalf("after an error the slice has %d ops (%v), want 1", len(got), err)
	}
}

// TestBatchOverhead measures what a realistic writer's run costs per op
// beyond its key, field and value bytes.
func TestBatchOverhead(t *testing.T) {
	rng := newRand(t)
	replica := NewReplicaID()
	const n = 10000
	ops := writerRun(rng, replica, n)
	payload := 0
	for _, op := range ops {
		payload += len(op.Key) + len(op.Field) + len(op.Value)
	}
	enc := AppendBatch(nil, replica, ops)
	perOp := float64(len(enc)-payload) / n
	single := 0
	for i := range ops {
		single += len(AppendOp(nil, &ops[i]))
	}
	t.Logf("batch of %d ops: %d bytes, %d of key/field/value; %.2f bytes per op beyond them (standalone ops: %.2f)",
		n, len(enc), payload, perOp, float64(single-payload)/n)
	if perOp > 4 {
		t.Errorf("batch costs %.2f bytes per op beyond key, field and value; target is 4", perOp)
	}
}

func BenchmarkAppendBatch(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	replica := NewReplicaID()
	ops := writerRun(rng, replica, 1000)
	buf := AppendBatch(nil, replica, ops)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendBatch(buf[:0], replica, ops)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/op-record")
}

func BenchmarkDecodeBatch(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	replica := NewReplicaID()
	ops := writerRun(rng, replica, 1000)
	enc := AppendBatch(nil, replica, ops)
	dst := make([]Op, 0, len(ops))
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if _, dst, _, err = DecodeBatch(dst[:0], enc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/op-record")
}

func BenchmarkAppendOp(b *testing.B) {
	op := Op{Replica: NewReplicaID(), Seq: 123456, HLC: MakeTimestamp(1_750_000_000_000, 3), Kind: KindPut,
		Key: []byte("user/00001234/profile"), Value: make([]byte, 100)}
	buf := AppendOp(nil, &op)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendOp(buf[:0], &op)
	}
}

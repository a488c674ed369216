package oplog

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
)

var (
	repA = ReplicaID{0xa0, 15: 1}
	repB = ReplicaID{0xb0, 15: 2}
	repC = ReplicaID{0xc0, 15: 3}
)

const testTS = Timestamp(1_750_000_000_000 << 16)

func TestPutStateCompact(t *testing.T) {
	v := []byte(`{"name":"ada"}`)
	st := AppendPutState(nil, testTS, v)
	if len(st) != len(v)+10 {
		t.Fatalf("put state of a %d-byte value is %d bytes, want %d", len(v), len(st), len(v)+10)
	}
	got, exists, err := DocumentValue(st)
	if err != nil || !exists || !bytes.Equal(got, v) {
		t.Fatalf("DocumentValue = %q, %v, %v", got, exists, err)
	}
	doc, err := DecodeDocument(st)
	if err != nil || !doc.Exists || !bytes.Equal(doc.Value, v) || doc.Fields != nil || doc.Counters != nil {
		t.Fatalf("DecodeDocument = %+v, %v", doc, err)
	}
	// An empty value is a value, not a tombstone.
	got, exists, err = DocumentValue(AppendPutState(nil, testTS, nil))
	if err != nil || !exists || got == nil || len(got) != 0 {
		t.Fatalf("empty put: %q, %v, %v", got, exists, err)
	}
	del := AppendDeleteState(nil, testTS)
	got, exists, err = DocumentValue(del)
	if err != nil || exists || got != nil {
		t.Fatalf("tombstone: %q, %v, %v", got, exists, err)
	}
	if doc, err := DecodeDocument(del); err != nil || doc.Exists || doc.Value != nil {
		t.Fatalf("tombstone document %+v, %v", doc, err)
	}
}

// The local writers produce exactly what the merge rules produce for the
// same op on nothing, so either path stores the same bytes.
func TestLocalWritersMatchApplyOp(t *testing.T) {
	field, v := []byte("email"), []byte("a@x")
	m := &Merger{Self: repA}
	cases := []struct {
		name string
		op   Op
		enc  []byte
		oper bool
	}{
		{"put", Op{Kind: KindPut, Value: v}, AppendPutState(nil, testTS, v), false},
		{"delete", Op{Kind: KindDelete}, AppendDeleteState(nil, testTS), false},
		{"setfield", Op{Kind: KindSetField, Field: field, Value: v}, AppendFieldOperand(nil, testTS, field, v, false), true},
		{"deletefield", Op{Kind: KindDeleteField, Field: field}, AppendFieldOperand(nil, testTS, field, v, true), true},
		{"incr", Op{Kind: KindIncr, Field: field, Delta: -7}, AppendIncrOperand(nil, testTS, field, -7), true},
	}
	for _, c := range cases {
		op := c.op
		op.Replica, op.Seq, op.HLC, op.Key = repA, 1, testTS, []byte("k")
		want, changed, err := ApplyOp(nil, false, &op, repA)
		if err != nil || !changed {
			t.Fatalf("%s: ApplyOp: %v, %v", c.name, changed, err)
		}
		got := c.enc
		if c.oper {
			if got, err = m.Merge(op.Key, [][]byte{c.enc}, nil, false); err != nil {
				t.Fatalf("%s: Merge: %v", c.name, err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: writer gives %x, ApplyOp %x", c.name, got, want)
		}
		// LocalOp recovers the op from what was stored.
		back, err := LocalOp(op.Key, c.enc, c.oper)
		if err != nil {
			t.Fatalf("%s: LocalOp: %v", c.name, err)
		}
		back.Replica, back.Seq = op.Replica, op.Seq
		if c.op.Kind == KindDeleteField {
			op.Value = nil
		}
		if back.Kind != op.Kind || back.HLC != op.HLC || !bytes.Equal(back.Key, op.Key) ||
			!bytes.Equal(back.Field, op.Field) || !bytes.Equal(back.Value, op.Value) || back.Delta != op.Delta {
			t.Errorf("%s: LocalOp = %+v, want %+v", c.name, back, op)
		}
	}
}

func TestLocalOpRefusesExtendedState(t *testing.T) {
	op := Op{Replica: repB, Seq: 1, HLC: testTS, Kind: KindPut, Key: []byte("k"), Value: []byte("v")}
	st, _, err := ApplyOp(nil, false, &op, repA) // a remote whole register: extended
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LocalOp(op.Key, st, false); !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("LocalOp on a remote state: %v", err)
	}
	if _, err := LocalOp(op.Key, AppendPutState(nil, testTS, nil), true); err == nil {
		t.Fatalf("LocalOp took a state for an operand")
	}
}

// richState builds an extended state holding every part: a remote whole
// value, live and deleted fields of several replicas, and counters.
func richState(t testing.TB) []byte {
	t.Helper()
	ops := []Op{
		{Replica: repB, Seq: 1, HLC: testTS, Kind: KindPut, Value: []byte("whole")},
		{Replica: repA, Seq: 1, HLC: testTS + 1, Kind: KindSetField, Field: []byte("a"), Value: []byte("1")},
		{Replica: repC, Seq: 1, HLC: testTS + 2, Kind: KindSetField, Field: []byte("b"), Value: []byte("2")},
		{Replica: repB, Seq: 2, HLC: testTS + 3, Kind: KindDeleteField, Field: []byte("c")},
		{Replica: repC, Seq: 2, HLC: testTS + 4, Kind: KindIncr, Field: []byte("n"), Delta: 5},
		{Replica: repA, Seq: 2, HLC: testTS + 5, Kind: KindIncr, Field: []byte("n"), Delta: -2},
		{Replica: repB, Seq: 3, HLC: testTS + 6, Kind: KindIncr, Field: []byte("m"), Delta: math.MaxInt64},
	}
	var st []byte
	for i := range ops {
		ops[i].Key = []byte("k")
		var err error
		if st, _, err = ApplyOp(st, st != nil, &ops[i], repA); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func TestExtendedStateRoundTrip(t *testing.T) {
	st := richState(t)
	doc, err := DecodeDocument(st)
	if err != nil {
		t.Fatal(err)
	}
	want := Document{Exists: true, Value: []byte("whole"),
		Fields:   map[string][]byte{"a": []byte("1"), "b": []byte("2")},
		Counters: map[string]int64{"n": 3, "m": math.MaxInt64}}
	if !docsEqual(doc, want) {
		t.Fatalf("decoded %s, want %s", docString(doc), docString(want))
	}
	v, exists, err := DocumentValue(st)
	if err != nil || !exists || string(v) != "whole" {
		t.Fatalf("DocumentValue = %q, %v, %v", v, exists, err)
	}
	// The encoding is canonical: decode and encode give the same bytes.
	var ds docState
	if err := ds.decode(st, repA); err != nil {
		t.Fatal(err)
	}
	if re := ds.encode(nil); !bytes.Equal(re, st) {
		t.Fatalf("re-encoded %x, was %x", re, st)
	}
	// Three remote replicas cost 16 bytes each once.
	if len(ds.table) != 2 {
		t.Fatalf("table %v, want B and C", ds.table)
	}
}

// Every truncation of an extended state, and of a tombstone, is refused:
// the parts are counted and length-prefixed. (A compact Put and a
// SetField operand end in their value, whose length the LSM keeps.)
func TestStateDecodeRefusesTruncation(t *testing.T) {
	for _, st := range [][]byte{richState(t), AppendDeleteState(nil, testTS), AppendPutState(nil, testTS, []byte("v"))} {
		for n := range len(st) {
			if st[1]&stExtended == 0 && st[1]&stTomb == 0 && n >= compactHeader {
				continue // a shorter value
			}
			if _, err := DecodeDocument(st[:n]); !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("DecodeDocument of %d of %d bytes: %v", n, len(st), err)
			}
			if _, _, err := DocumentValue(st[:n]); err == nil && st[1]&stExtended == 0 {
				t.Fatalf("DocumentValue of %d of %d bytes: no error", n, len(st))
			}
		}
	}
	remote := func(kind OpKind) []byte {
		return AppendRemoteOperand(nil, &Op{Replica: ReplicaID{7}, Seq: 300, HLC: testTS, Kind: kind, Key: []byte("k"), Field: []byte("f"), Delta: -300})
	}
	for _, op := range [][]byte{AppendIncrOperand(nil, testTS, []byte("f"), 300), AppendFieldOperand(nil, testTS, []byte("f"), nil, true),
		remote(KindIncr), remote(KindDeleteField), remote(KindDelete)} {
		for n := range len(op) {
			if _, _, err := decodeOperand(op[:n]); !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("operand %d of %d bytes: %v", n, len(op), err)
			}
		}
	}
}

// A garbled state is refused or decodes to a state that re-encodes to the
// same bytes: the decoder accepts only canonical states, never panics.
func TestStateDecodeGarbled(t *testing.T) {
	rng := newRand(t)
	base := richState(t)
	accepted := 0
	for range 20000 {
		st := bytes.Clone(base)
		for range 1 + rng.IntN(3) {
			st[rng.IntN(len(st))] ^= byte(1 + rng.IntN(255))
		}
		var ds docState
		err := ds.decode(st, repA)
		if err != nil {
			if !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
				t.Fatalf("error %v is neither corruption nor newer format", err)
			}
			continue
		}
		accepted++
		if re := ds.encode(nil); !bytes.Equal(re, st) {
			t.Fatalf("accepted %x re-encodes as %x", st, re)
		}
	}
	t.Logf("%d of 20000 garbled states decoded (changed values and timestamps)", accepted)
}

func TestStateVersion(t *testing.T) {
	st := AppendPutState(nil, testTS, []byte("v"))
	st[0] = stateVersion + 1
	if _, _, err := DocumentValue(st); !errors.Is(err, errs.ErrNewerFormat) {
		t.Fatalf("newer state: %v", err)
	}
	if _, err := DecodeDocument(st); !errors.Is(err, errs.ErrNewerFormat) {
		t.Fatalf("newer state: %v", err)
	}
	st[0] = 0
	if _, _, err := DocumentValue(st); !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("version 0: %v", err)
	}
	op := AppendIncrOperand(nil, testTS, []byte("f"), 1)
	op[0] = stateVersion + 1
	if _, err := (&Merger{}).Merge([]byte("k"), [][]byte{op}, nil, false); !errors.Is(err, errs.ErrNewerFormat) {
		t.Fatalf("newer operand: %v", err)
	}
}

func TestStateRefusesNonCanonical(t *testing.T) {
	put := AppendPutState(nil, testTS, []byte("v"))
	bad := map[string][]byte{
		"reserved flag":      {stateVersion, stWhole | 0x80, 0, 0, 0, 0, 0, 0, 0, 0},
		"tomb without whole": {stateVersion, stTomb},
		"exists on compact":  {stateVersion, stExists},
		"bytes after empty":  {stateVersion, 0, 1},
		// A local whole value written in the extended form.
		"needless extended": append(append([]byte{stateVersion, stWhole | stExtended | stExists}, put[2:10]...), 0, 0, 1, 'v', 0, 0),
		// Extended, no fields, one counter, but the exists flag clear.
		"exists flag wrong": {stateVersion, stExtended, 0, 0, 1, 1, 'n', 1, 0, 2, 0},
	}
	for name, st := range bad {
		if _, err := DecodeDocument(st); !errors.Is(err, errs.ErrCorruption) {
			t.Errorf("%s: %v", name, err)
		}
	}
	good := []byte{stateVersion, stExtended | stExists, 0, 0, 1, 1, 'n', 1, 0, 2, 0}
	if doc, err := DecodeDocument(good); err != nil || !doc.Exists || doc.Counters["n"] != 1 {
		t.Fatalf("hand-made counter state: %+v, %v", doc, err)
	}
}

func docsEqual(a, b Document) bool {
	return a.Exists == b.Exists && bytes.Equal(a.Value, b.Value) && (a.Value == nil) == (b.Value == nil) &&
		maps.EqualFunc(a.Fields, b.Fields, bytes.Equal) && maps.Equal(a.Counters, b.Counters)
}

func docString(d Document) string {
	s := fmt.Sprintf("{exists=%v", d.Exists)
	if d.Value != nil {
		s += fmt.Sprintf(" value=%q", d.Value)
	}
	for _, k := range slices.Sorted(maps.Keys(d.Fields)) {
		s += fmt.Sprintf(" %s=%q", k, d.Fields[k])
	}
	for _, k := range slices.Sorted(maps.Keys(d.Counters)) {
		s += fmt.Sprintf(" %s#%d", k, d.Counters[k])
	}
	return s + "}"
}

func BenchmarkAppendPutState(b *testing.B) {
	v := bytes.Repeat([]byte("x"), 100)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = AppendPutState(buf[:0], testTS+Timestamp(i), v)
	}
}

func BenchmarkDocumentValue(b *testing.B) {
	for _, c := range []struct {
		name string
		st   []byte
	}{{"compact", AppendPutState(nil, testTS, bytes.Repeat([]byte("x"), 100))}, {"extended", richState(b)}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := DocumentValue(c.st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeDocument(b *testing.B) {
	st := richState(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeDocument(st); err != nil {
			b.Fatal(err)
		}
	}
}

// encode allocates once: size bounds what it writes.
func TestStateSizeBound(t *testing.T) {
	var ds docState
	if err := ds.decode(richState(t), repA); err != nil {
		t.Fatal(err)
	}
	ds.table = nil // as for a state built by ApplyOp from nothing
	buf := make([]byte, 0, ds.size())
	if out := ds.encode(buf); &out[0] != &buf[:1][0] {
		t.Fatalf("encode outgrew size(): %d > %d", len(out), cap(buf))
	}
}

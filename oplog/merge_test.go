package oplog

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

var testReplicas = []ReplicaID{repA, repB, repC}

// genOps returns, per replica, a run of ops on a few keys and fields with
// contiguous sequence numbers and strictly increasing timestamps. The
// replicas' clocks overlap, and sometimes tie, so ops are concurrent and
// the replica ID must break ties.
func genOps(rng *rand.Rand, keys, fields, perReplica int) [][]Op {
	runs := make([][]Op, len(testReplicas))
	for r, id := range testReplicas {
		ts := testTS
		n := uint64(1 + rng.IntN(perReplica))
		for seq := uint64(1); seq <= n; seq++ {
			ts += Timestamp(1 + rng.IntN(3)) // ticks on a shared scale: ties across replicas happen
			op := Op{Replica: id, Seq: seq, HLC: ts, Key: fmt.Appendf(nil, "k%d", rng.IntN(keys))}
			field := fmt.Appendf(nil, "f%d", rng.IntN(fields))
			switch p := rng.IntN(100); {
			case p < 20:
				op.Kind, op.Value = KindPut, fmt.Appendf(nil, "put %s/%d", id.String()[:2], seq)
				if rng.IntN(8) == 0 {
					op.Value = []byte{}
				}
			case p < 30:
				op.Kind = KindDelete
			case p < 60:
				op.Kind, op.Field, op.Value = KindSetField, field, fmt.Appendf(nil, "set %s/%d", id.String()[:2], seq)
			case p < 75:
				op.Kind, op.Field = KindDeleteField, field
			default:
				op.Kind, op.Field, op.Delta = KindIncr, field, rng.Int64N(21)-10
			}
			runs[r] = append(runs[r], op)
		}
	}
	return runs
}

// modelDocument computes a key's document from the set of ops straight
// from the rules' intent: the highest whole write; per field the highest
// field write if it is above the whole write; every increment once.
func modelDocument(ops []Op, key []byte) Document {
	var whole *Op
	fieldTop := map[string]*Op{}
	doc := Document{}
	above := func(a, b *Op) bool { return b == nil || orderAbove(a.HLC, a.Replica, b.HLC, b.Replica) }
	for i := range ops {
		op := &ops[i]
		if !bytes.Equal(op.Key, key) {
			continue
		}
		switch op.Kind {
		case KindPut, KindDelete:
			if above(op, whole) {
				whole = op
			}
		case KindSetField, KindDeleteField:
			if above(op, fieldTop[string(op.Field)]) {
				fieldTop[string(op.Field)] = op
			}
		case KindIncr:
			if doc.Counters == nil {
				doc.Counters = map[string]int64{}
			}
			doc.Counters[string(op.Field)] += op.Delta
		}
	}
	if whole != nil && whole.Kind == KindPut {
		doc.Value = whole.Value
	}
	for f, op := range fieldTop {
		if op.Kind == KindSetField && above(op, whole) {
			if doc.Fields == nil {
				doc.Fields = map[string][]byte{}
			}
			doc.Fields[f] = op.Value
		}
	}
	doc.Exists = doc.Value != nil || doc.Fields != nil || doc.Counters != nil
	return doc
}

// schedule returns a delivery order for a replica: every op once, each
// replica's ops in sequence order (as imports guarantee), randomly
// interleaved, with duplicates of already delivered remote ops.
func schedule(rng *rand.Rand, runs [][]Op, self ReplicaID) []*Op {
	next := make([]int, len(runs))
	var out []*Op
	var delivered []*Op
	for {
		var live []int
		for r := range runs {
			if next[r] < len(runs[r]) {
				live = append(live, r)
			}
		}
		if len(live) == 0 {
			return out
		}
		if len(delivered) > 0 && rng.IntN(4) == 0 {
			out = append(out, delivered[rng.IntN(len(delivered))])
		}
		r := live[rng.IntN(len(live))]
		op := &runs[r][next[r]]
		next[r]++
		out = append(out, op)
		if op.Replica != self {
			delivered = append(delivered, op)
		}
	}
}

// lsmModel is one key as the LSM holds it: a state and local operands
// above it (oldest first).
type lsmModel struct {
	base     []byte
	hasBase  bool
	operands [][]byte
}

// read is what a Get sees: the operands folded onto the state.
func (l *lsmModel) read(t *testing.T, m *Merger, key []byte) ([]byte, bool) {
	t.Helper()
	if len(l.operands) == 0 {
		return l.base, l.hasBase
	}
	st, err := m.Merge(key, l.operands, l.base, l.hasBase)
	if err != nil {
		t.Fatal(err)
	}
	return st, true
}

// replayLSM delivers ops to a replica the way the engine stores them:
// local field writes and increments as local operands, remote ops mostly
// as remote operands (the importer's way), local puts and deletes and the
// other remote ops read, merged with ApplyOp and written as a state;
// compactions fold random groups of the oldest operands onto the state.
func replayLSM(t *testing.T, rng *rand.Rand, order []*Op, self ReplicaID) map[string]*lsmModel {
	m := &Merger{Self: self}
	keys := map[string]*lsmModel{}
	for _, op := range order {
		l := keys[string(op.Key)]
		if l == nil {
			l = &lsmModel{}
			keys[string(op.Key)] = l
		}
		switch {
		case op.Replica == self && op.Kind == KindSetField || op.Replica == self && op.Kind == KindDeleteField:
			l.operands = append(l.operands, AppendFieldOperand(nil, op.HLC, op.Field, op.Value, op.Kind == KindDeleteField))
		case op.Replica == self && op.Kind == KindIncr:
			l.operands = append(l.operands, AppendIncrOperand(nil, op.HLC, op.Field, op.Delta))
		case op.Replica != self && rng.IntN(4) != 0:
			// An import writes remote operands blind; duplicates too,
			// which the merge must count once.
			l.operands = append(l.operands, AppendRemoteOperand(nil, op))
		default:
			st, has := l.read(t, m, op.Key)
			ns, changed, err := ApplyOp(st, has, op, self)
			if err != nil {
				t.Fatal(err)
			}
			if changed {
				l.base, l.hasBase, l.operands = ns, true, nil
			} else if !bytes.Equal(ns, st) {
				t.Fatalf("unchanged ApplyOp returned other bytes")
			}
		}
		if len(l.operands) > 0 && rng.IntN(3) == 0 {
			// A compaction folds the oldest operands onto the state, or
			// (with no state below) onto nothing at the bottom of the tree.
			k := 1 + rng.IntN(len(l.operands))
			st, err := m.Merge(op.Key, l.operands[:k], l.base, l.hasBase)
			if err != nil {
				t.Fatal(err)
			}
			l.base, l.hasBase, l.operands = st, true, l.operands[k:]
		}
	}
	return keys
}

// TestConvergence is the CRDT property: every replica, receiving the same
// ops in any order, with remote duplicates, through operands folded in
// any grouping or through ApplyOp alone, reads the same documents, and
// those are what the rules say.
func TestConvergence(t *testing.T) {
	rng := newRand(t)
	for iter := range 400 {
		runs := genOps(rng, 1+rng.IntN(3), 1+rng.IntN(3), 2+rng.IntN(25))
		var all []Op
		for _, r := range runs {
			all = append(all, r...)
		}
		var keyNames []string
		for i := range 3 {
			keyNames = append(keyNames, fmt.Sprintf("k%d", i))
		}
		for _, self := range testReplicas {
			m := &Merger{Self: self}
			lsm := replayLSM(t, rng, schedule(rng, runs, self), self)
			// ApplyOp alone, in two other orders: byte-identical states.
			var direct [2]map[string][]byte
			for d := range direct {
				direct[d] = map[string][]byte{}
				for _, op := range schedule(rng, runs, self) {
					st, has := direct[d][string(op.Key)]
					ns, _, err := ApplyOp(st, has, op, self)
					if err != nil {
						t.Fatal(err)
					}
					direct[d][string(op.Key)] = ns
				}
			}
			for _, k := range keyNames {
				want := modelDocument(all, []byte(k))
				if !bytes.Equal(direct[0][k], direct[1][k]) {
					t.Fatalf("iter %d self %s key %s: ApplyOp orders disagree:\n%x\n%x", iter, self.String()[:2], k, direct[0][k], direct[1][k])
				}
				check := func(how string, st []byte, has bool) {
					t.Helper()
					var doc Document
					if has {
						var err error
						if doc, err = DecodeDocument(st); err != nil {
							t.Fatalf("iter %d %s: %v", iter, how, err)
						}
						v, exists, err := DocumentValue(st)
						if err != nil || exists != doc.Exists || !bytes.Equal(v, doc.Value) {
							t.Fatalf("iter %d %s: DocumentValue %q %v %v, document %s", iter, how, v, exists, err, docString(doc))
						}
					}
					if !docsEqual(doc, want) {
						t.Fatalf("iter %d self %s key %s %s:\n got %s\nwant %s", iter, self.String()[:2], k, how, docString(doc), docString(want))
					}
				}
				st, has := direct[0][k]
				check("ApplyOp", st, has)
				if l := lsm[k]; l != nil {
					st, has = l.read(t, m, []byte(k))
					check("LSM", st, has)
				} else {
					check("LSM", nil, false)
				}
			}
		}
	}
}

// Merging operands in groups gives the same bytes as merging them at once.
func TestMergeGrouping(t *testing.T) {
	rng := newRand(t)
	m := &Merger{Self: repA}
	key := []byte("k")
	for range 500 {
		var operands [][]byte
		ts := testTS
		for range 1 + rng.IntN(12) {
			ts += Timestamp(1 + rng.IntN(2))
			f := fmt.Appendf(nil, "f%d", rng.IntN(3))
			switch rng.IntN(3) {
			case 0:
				operands = append(operands, AppendFieldOperand(nil, ts, f, fmt.Appendf(nil, "v%d", ts), rng.IntN(3) == 0))
			default:
				operands = append(operands, AppendIncrOperand(nil, ts, f, rng.Int64N(100)-50))
			}
		}
		var base []byte
		hasBase := rng.IntN(2) == 0
		if hasBase {
			base = richState(t)
		}
		all, err := m.Merge(key, operands, base, hasBase)
		if err != nil {
			t.Fatal(err)
		}
		st, has := base, hasBase
		for rest := operands; len(rest) > 0; {
			k := 1 + rng.IntN(len(rest))
			if st, err = m.Merge(key, rest[:k], st, has); err != nil {
				t.Fatal(err)
			}
			has, rest = true, rest[k:]
		}
		if !bytes.Equal(st, all) {
			t.Fatalf("grouped merge %x, at once %x", st, all)
		}
	}
}

func apply(t *testing.T, st []byte, self ReplicaID, ops ...Op) []byte {
	t.Helper()
	for i := range ops {
		if ops[i].Key == nil {
			ops[i].Key = []byte("k")
		}
		var err error
		if st, _, err = ApplyOp(st, st != nil, &ops[i], self); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func decode(t *testing.T, st []byte) Document {
	t.Helper()
	doc, err := DecodeDocument(st)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// Causality: of two writes, the one with the higher HLC wins whichever
// arrives first; on equal HLCs the higher replica ID does.
func TestHigherHLCWins(t *testing.T) {
	cases := []struct {
		name        string
		early, late Op
		want        Document
	}{
		{"put", Op{Replica: repC, Seq: 1, HLC: testTS, Kind: KindPut, Value: []byte("old")},
			Op{Replica: repA, Seq: 1, HLC: testTS + 1, Kind: KindPut, Value: []byte("new")},
			Document{Exists: true, Value: []byte("new")}},
		{"delete over put", Op{Replica: repA, Seq: 1, HLC: testTS, Kind: KindPut, Value: []byte("old")},
			Op{Replica: repB, Seq: 1, HLC: testTS + 1, Kind: KindDelete},
			Document{}},
		{"put revives", Op{Replica: repA, Seq: 1, HLC: testTS, Kind: KindDelete},
			Op{Replica: repB, Seq: 1, HLC: testTS + 1, Kind: KindPut, Value: []byte("new")},
			Document{Exists: true, Value: []byte("new")}},
		{"tie by replica", Op{Replica: repA, Seq: 1, HLC: testTS, Kind: KindPut, Value: []byte("a")},
			Op{Replica: repB, Seq: 1, HLC: testTS, Kind: KindPut, Value: []byte("b")},
			Document{Exists: true, Value: []byte("b")}},
		{"field after put", Op{Replica: repA, Seq: 1, HLC: testTS, Kind: KindPut, Value: []byte("w")},
			Op{Replica: repB, Seq: 1, HLC: testTS + 1, Kind: KindSetField, Field: []byte("f"), Value: []byte("x")},
			Document{Exists: true, Value: []byte("w"), Fields: map[string][]byte{"f": []byte("x")}}},
		{"put replaces field", Op{Replica: repA, Seq: 1, HLC: testTS, Kind: KindSetField, Field: []byte("f"), Value: []byte("x")},
			Op{Replica: repB, Seq: 1, HLC: testTS + 1, Kind: KindPut, Value: []byte("w")},
			Document{Exists: true, Value: []byte("w")}},
		{"field tombstone beats older set", Op{Replica: repA, Seq: 1, HLC: testTS, Kind: KindSetField, Field: []byte("f"), Value: []byte("x")},
			Op{Replica: repB, Seq: 1, HLC: testTS + 1, Kind: KindDeleteField, Field: []byte("f")},
			Document{}},
	}
	for _, c := range cases {
		for _, self := range testReplicas {
			a := apply(t, nil, self, c.early, c.late)
			b := apply(t, nil, self, c.late, c.early)
			if !bytes.Equal(a, b) {
				t.Errorf("%s (self %s): orders give %x and %x", c.name, self.String()[:2], a, b)
			}
			if got := decode(t, a); !docsEqual(got, c.want) {
				t.Errorf("%s: got %s, want %s", c.name, docString(got), docString(c.want))
			}
		}
	}
}

func TestApplyOpChanged(t *testing.T) {
	put := Op{Replica: repB, Seq: 1, HLC: testTS + 10, Kind: KindPut, Value: []byte("w"), Key: []byte("k")}
	st, changed, err := ApplyOp(nil, false, &put, repA)
	if err != nil || !changed {
		t.Fatal(changed, err)
	}
	for _, op := range []Op{
		put, // a duplicate
		{Replica: repC, Seq: 1, HLC: testTS + 9, Kind: KindPut, Value: []byte("old")},
		{Replica: repC, Seq: 2, HLC: testTS + 9, Kind: KindSetField, Field: []byte("f"), Value: []byte("old")},
		{Replica: repA, Seq: 1, HLC: testTS + 10, Kind: KindDelete}, // tie lost: repA < repB
	} {
		op.Key = []byte("k")
		ns, changed, err := ApplyOp(st, true, &op, repA)
		if err != nil || changed || &ns[0] != &st[0] {
			t.Errorf("dominated %v: changed %v, err %v", op.Kind, changed, err)
		}
	}
	if _, _, err := ApplyOp(nil, false, &Op{Kind: 9}, repA); err == nil {
		t.Error("ApplyOp took an unknown kind")
	}
}

func TestCounters(t *testing.T) {
	incr := func(r ReplicaID, seq uint64, d int64) Op {
		return Op{Replica: r, Seq: seq, HLC: testTS + Timestamp(seq), Kind: KindIncr, Field: []byte("n"), Delta: d}
	}
	st := apply(t, nil, repA, incr(repB, 1, 5), incr(repB, 2, 5), incr(repB, 1, 5), incr(repB, 2, 5), incr(repC, 1, -3))
	if got := decode(t, st).Counters["n"]; got != 7 {
		t.Fatalf("remote increments with duplicates: %d, want 7", got)
	}
	// Local increments carry no sequence number and always add.
	m := &Merger{Self: repA}
	op := AppendIncrOperand(nil, testTS, []byte("n"), 2)
	st, err := m.Merge([]byte("k"), [][]byte{op, op}, st, true)
	if err != nil {
		t.Fatal(err)
	}
	st = apply(t, st, repA, incr(repA, 1, 10), incr(repA, 1, 10))
	if got := decode(t, st).Counters["n"]; got != 7+4+20 {
		t.Fatalf("local increments: %d, want 31", got)
	}
	// A Delete leaves counters alone: the document still exists, empty.
	st = apply(t, st, repA, Op{Replica: repC, Seq: 2, HLC: testTS + 100, Kind: KindDelete})
	doc := decode(t, st)
	if !doc.Exists || doc.Value != nil || doc.Counters["n"] != 31 {
		t.Fatalf("after delete: %s", docString(doc))
	}
	if v, exists, err := DocumentValue(st); err != nil || !exists || len(v) != 0 {
		t.Fatalf("DocumentValue after delete: %q %v %v", v, exists, err)
	}
}

func TestCollectible(t *testing.T) {
	del := AppendDeleteState(nil, testTS)
	horizonAll := func(ReplicaID) Timestamp { return testTS + 100 }
	horizonNone := func(ReplicaID) Timestamp { return 0 }
	horizonBelow := func(ReplicaID) Timestamp { return testTS - 1 }
	withFieldTomb := apply(t, bytes.Clone(del), repA, Op{Replica: repB, Seq: 1, HLC: testTS + 5, Kind: KindDeleteField, Field: []byte("f")})
	horizonNotB := func(r ReplicaID) Timestamp {
		if r == repB {
			return testTS + 4
		}
		return testTS + 100
	}
	withCounter := apply(t, bytes.Clone(del), repA, Op{Replica: repB, Seq: 1, HLC: testTS + 5, Kind: KindIncr, Field: []byte("n")})
	withField := apply(t, bytes.Clone(del), repA, Op{Replica: repB, Seq: 1, HLC: testTS + 5, Kind: KindSetField, Field: []byte("f")})
	remoteDel := apply(t, nil, repA, Op{Replica: repC, Seq: 1, HLC: testTS, Kind: KindDelete})
	var askedC bool
	horizonC := func(r ReplicaID) Timestamp { askedC = r == repC; return testTS }
	cases := []struct {
		name    string
		st      []byte
		horizon func(ReplicaID) Timestamp
		want    bool
	}{
		{"seen tombstone", del, horizonAll, true},
		{"unknown horizon", del, horizonNone, false},
		{"tombstone above horizon", del, horizonBelow, false},
		{"put", AppendPutState(nil, testTS, nil), horizonAll, false},
		{"seen field tombstone", withFieldTomb, horizonAll, true},
		{"unseen field tombstone", withFieldTomb, horizonNotB, false},
		{"counter", withCounter, horizonAll, false},
		{"live field", withField, horizonAll, false},
		{"remote tombstone", remoteDel, horizonC, true},
	}
	for _, c := range cases {
		got, err := Collectible(c.st, repA, c.horizon)
		if err != nil || got != c.want {
			t.Errorf("%s: %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	if !askedC {
		t.Error("the horizon of a remote tombstone was not asked for its origin")
	}
}

func BenchmarkMerge3Operands(b *testing.B) {
	m := &Merger{Self: repA}
	base := AppendPutState(nil, testTS, bytes.Repeat([]byte("x"), 100))
	ops := [][]byte{
		AppendFieldOperand(nil, testTS+1, []byte("email"), []byte("ada@example.com"), false),
		AppendIncrOperand(nil, testTS+2, []byte("visits"), 1),
		AppendFieldOperand(nil, testTS+3, []byte("name"), []byte("Ada"), false),
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Merge([]byte("k"), ops, base, true); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApplyOp(b *testing.B) {
	for _, c := range []struct {
		name string
		op   Op
	}{
		{"put", Op{Replica: repB, Seq: 1, HLC: testTS + 100, Kind: KindPut, Key: []byte("k"), Value: bytes.Repeat([]byte("y"), 100)}},
		{"setfield", Op{Replica: repB, Seq: 1, HLC: testTS + 100, Kind: KindSetField, Key: []byte("k"), Field: []byte("email"), Value: []byte("b@x")}},
		{"dominated", Op{Replica: repB, Seq: 1, HLC: 1, Kind: KindPut, Key: []byte("k"), Value: []byte("old")}},
	} {
		b.Run(c.name, func(b *testing.B) {
			st := AppendPutState(nil, testTS, bytes.Repeat([]byte("x"), 100))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := ApplyOp(st, true, &c.op, repA); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

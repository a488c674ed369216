package oplog

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
)

// repD is a replica that writes nothing: a new replica joining.
var repD = ReplicaID{0xd0, 15: 4}

// joinView is what one replica holds of one key: a prefix of each
// replica's run (ops arrive in sequence order), applied in some order.
type joinView struct {
	self  ReplicaID
	upTo  map[ReplicaID]uint64 // per origin, the last seq held
	state []byte
	ops   []Op
}

// randomView builds the state of key k0 at self holding a random prefix
// of every run (its own run whole: a replica holds all its own ops).
func randomView(t *testing.T, rng *rand.Rand, runs [][]Op, self ReplicaID) joinView {
	t.Helper()
	v := joinView{self: self, upTo: map[ReplicaID]uint64{}}
	var held [][]Op
	for _, run := range runs {
		n := rng.IntN(len(run) + 1)
		if len(run) > 0 && run[0].Replica == self {
			n = len(run)
		}
		if n > 0 {
			v.upTo[run[0].Replica] = run[n-1].Seq
		}
		held = append(held, run[:n])
		v.ops = append(v.ops, run[:n]...)
	}
	for _, op := range schedule(rng, held, self) {
		if string(op.Key) != "k0" {
			continue
		}
		st, _, err := ApplyOp(v.state, v.state != nil, op, self)
		if err != nil {
			t.Fatal(err)
		}
		v.state = st
	}
	return v
}

// portable is the view's state as a snapshot carries it.
func (v *joinView) portable(t *testing.T) []byte {
	t.Helper()
	st := v.state
	if st == nil {
		st = []byte{stateVersion, 0}
	}
	p, err := AppendPortableState(nil, st, v.self, v.upTo[v.self])
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPortableState(p); err != nil {
		t.Fatalf("portable state does not check: %v", err)
	}
	return p
}

// unionOps is every op of either view (per origin, the longer prefix).
func unionOps(runs [][]Op, views ...joinView) []Op {
	var out []Op
	for _, run := range runs {
		if len(run) == 0 {
			continue
		}
		var upTo uint64
		for _, v := range views {
			upTo = max(upTo, v.upTo[run[0].Replica])
		}
		for _, op := range run {
			if op.Seq <= upTo {
				out = append(out, op)
			}
		}
	}
	return out
}

func portableDoc(t *testing.T, p []byte) Document {
	t.Helper()
	doc, err := DecodeDocument(p)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// The join of portable states is associative, commutative and idempotent
// (to the byte), and holds exactly the operations of its arguments.
func TestJoinPortableLaws(t *testing.T) {
	rng := newRand(t)
	for iter := range 500 {
		runs := genOps(rng, 1+rng.IntN(2), 1+rng.IntN(3), 2+rng.IntN(20))
		views := make([]joinView, 3)
		var ps [3][]byte
		for i := range views {
			views[i] = randomView(t, rng, runs, testReplicas[rng.IntN(len(testReplicas))])
			ps[i] = views[i].portable(t)
		}
		join := func(a, b []byte) []byte {
			t.Helper()
			j, err := JoinPortable(nil, a, b)
			if err != nil {
				t.Fatalf("iter %d: %v", iter, err)
			}
			return j
		}
		a, b, c := ps[0], ps[1], ps[2]
		if ab, ba := join(a, b), join(b, a); !bytes.Equal(ab, ba) {
			t.Fatalf("iter %d: not commutative:\n%x\n%x", iter, ab, ba)
		}
		if l, r := join(join(a, b), c), join(a, join(b, c)); !bytes.Equal(l, r) {
			t.Fatalf("iter %d: not associative:\n%x\n%x", iter, l, r)
		}
		if aa := join(a, a); !bytes.Equal(aa, a) {
			t.Fatalf("iter %d: not idempotent:\n%x\n%x", iter, aa, a)
		}
		if aab := join(a, join(a, b)); !bytes.Equal(aab, join(a, b)) {
			t.Fatalf("iter %d: joining a again changed a⊔b", iter)
		}
		want := modelDocument(unionOps(runs, views[0], views[1]), []byte("k0"))
		if got := portableDoc(t, join(a, b)); !docsEqual(got, want) {
			t.Fatalf("iter %d: join holds\n %s\nwant\n %s", iter, docString(got), docString(want))
		}
	}
}

// Joining a portable state into a replica's stored state gives the
// document of every op of both, as that replica stores it: joining again
// changes nothing, and the replica's own later ops and imports go on
// from there as if it had received the ops.
func TestJoinState(t *testing.T) {
	rng := newRand(t)
	for iter := range 500 {
		runs := genOps(rng, 1+rng.IntN(2), 1+rng.IntN(3), 2+rng.IntN(20))
		local := randomView(t, rng, runs, testReplicas[rng.IntN(len(testReplicas))])
		if rng.IntN(4) == 0 {
			local = randomView(t, rng, runs, repD)
		}
		src := randomView(t, rng, runs, testReplicas[rng.IntN(len(testReplicas))])
		if src.upTo[local.self] > local.upTo[local.self] {
			continue // the importer refuses a snapshot ahead of it
		}
		p := src.portable(t)
		got, changed, err := JoinState(local.state, local.state != nil, p, local.self)
		if err != nil {
			t.Fatalf("iter %d: %v", iter, err)
		}
		want := modelDocument(unionOps(runs, local, src), []byte("k0"))
		if doc := decode(t, got); !docsEqual(doc, want) {
			t.Fatalf("iter %d: joined\n %s\nwant\n %s", iter, docString(doc), docString(want))
		}
		if !changed && !bytes.Equal(got, local.state) {
			t.Fatalf("iter %d: unchanged but different bytes", iter)
		}
		again, changed, err := JoinState(got, true, p, local.self)
		if err != nil || changed || !bytes.Equal(again, got) {
			t.Fatalf("iter %d: joining twice changed the state (%v, %v)", iter, changed, err)
		}
		// The rest of every run, applied after the join, gives the
		// document of all ops (each counted once).
		st := got
		for _, run := range runs {
			for i := range run {
				op := &run[i]
				held := max(local.upTo[op.Replica], src.upTo[op.Replica])
				if op.Seq <= held || string(op.Key) != "k0" {
					continue
				}
				if st, _, err = ApplyOp(st, true, op, local.self); err != nil {
					t.Fatal(err)
				}
			}
		}
		all := modelDocument(unionOps(runs, joinView{upTo: map[ReplicaID]uint64{repA: 1 << 60, repB: 1 << 60, repC: 1 << 60}}), []byte("k0"))
		if doc := decode(t, st); !docsEqual(doc, all) {
			t.Fatalf("iter %d: after the rest of the runs\n %s\nwant\n %s", iter, docString(doc), docString(all))
		}
	}
}

// A stored state is not portable: origin 0 would be resolved to the
// importer. Every origin of a portable state is spelled out.
func TestPortableState(t *testing.T) {
	local := AppendPutState(nil, testTS, []byte("v"))
	if err := CheckPortableState(local); err == nil {
		t.Fatal("a local Put state passed as portable")
	}
	st := apply(t, nil, repA,
		Op{Replica: repA, Seq: 1, HLC: testTS, Kind: KindIncr, Field: []byte("c"), Delta: 5},
		Op{Replica: repB, Seq: 3, HLC: testTS + 1, Kind: KindIncr, Field: []byte("c"), Delta: 2},
		Op{Replica: repA, Seq: 4, HLC: testTS + 2, Kind: KindSetField, Field: []byte("f"), Value: []byte("x")},
	)
	p, err := AppendPortableState(nil, st, repA, 9)
	if err != nil {
		t.Fatal(err)
	}
	var ds docState
	if err := ds.decodePortable(p); err != nil {
		t.Fatal(err)
	}
	for _, e := range ds.counters {
		want := map[ReplicaID]uint64{repA: 9, repB: 3}[e.origin]
		if e.seq != want {
			t.Errorf("share of %s counted %d, want %d", e.origin, e.seq, want)
		}
	}
	if ds.fields[0].reg.origin != repA {
		t.Errorf("field origin %s, want repA", ds.fields[0].reg.origin)
	}
	// At repB the share of repA is remote: a later increment of repA at
	// seq 9 or below was counted, one above is not.
	got, _, err := JoinState(nil, false, p, repB)
	if err != nil {
		t.Fatal(err)
	}
	got = apply(t, got, repB,
		Op{Replica: repA, Seq: 9, HLC: testTS + 3, Kind: KindIncr, Field: []byte("c"), Delta: 100},
		Op{Replica: repA, Seq: 10, HLC: testTS + 4, Kind: KindIncr, Field: []byte("c"), Delta: 1000})
	if c := decode(t, got).Counters["c"]; c != 5+2+1000 {
		t.Errorf("counter at repB = %d, want %d", c, 5+2+1000)
	}
	if _, _, err := JoinState(nil, false, local, repB); !errors.Is(err, errs.ErrCorruption) {
		t.Errorf("join of a local state: %v", err)
	}
}

// PruneState drops the registers it is told to, and reports a state left
// empty.
func TestPruneState(t *testing.T) {
	st := apply(t, nil, repA,
		Op{Replica: repB, Seq: 1, HLC: testTS, Kind: KindPut, Value: []byte("v")},
		Op{Replica: repC, Seq: 1, HLC: testTS + 5, Kind: KindSetField, Field: []byte("f"), Value: []byte("x")},
	)
	byB := func(o ReplicaID, _ Timestamp) bool { return o == repB }
	got, changed, empty, err := PruneState(st, repA, byB)
	if err != nil || !changed || empty {
		t.Fatalf("prune: %v %v %v", changed, empty, err)
	}
	if doc := decode(t, got); doc.Value != nil || string(doc.Fields["f"]) != "x" {
		t.Fatalf("pruned: %s", docString(doc))
	}
	if _, changed, empty, _ = PruneState(got, repA, func(ReplicaID, Timestamp) bool { return true }); !changed || !empty {
		t.Fatalf("pruning everything: changed %v empty %v", changed, empty)
	}
	if same, changed, _, _ := PruneState(st, repA, func(ReplicaID, Timestamp) bool { return false }); changed || !bytes.Equal(same, st) {
		t.Fatal("pruning nothing changed the state")
	}
}

// TestJoinStateRefill: a refill takes the source's record of the
// importer's own counter share when it counted every increment the
// importer issued (the local share lost some with a damaged table), and
// keeps the local share otherwise.
func TestJoinStateRefill(t *testing.T) {
	incr := func(r ReplicaID, seq uint64) *Op {
		return &Op{Replica: r, Seq: seq, HLC: Timestamp(seq) << 16, Kind: KindIncr, Key: []byte("k"), Field: []byte("n"), Delta: 1}
	}
	var full, partial, src []byte
	var err error
	for seq := uint64(1); seq <= 10; seq++ {
		if full, _, err = ApplyOp(full, full != nil, incr(repA, seq), repA); err != nil {
			t.Fatal(err)
		}
		if seq > 5 {
			if partial, _, err = ApplyOp(partial, partial != nil, incr(repA, seq), repA); err != nil {
				t.Fatal(err)
			}
		}
		if src, _, err = ApplyOp(src, src != nil, incr(repA, seq), repB); err != nil {
			t.Fatal(err)
		}
	}
	p, err := AppendPortableState(nil, src, repB, 0)
	if err != nil {
		t.Fatal(err)
	}
	sum := func(state []byte) int64 {
		d := decode(t, state)
		return d.Counters["n"]
	}
	if got, _, err := JoinState(partial, true, p, repA); err != nil || sum(got) != 5 {
		t.Fatalf("JoinState keeps the local share: %d, %v", sum(got), err)
	}
	if got, _, err := JoinStateRefill(partial, true, p, repA, 10); err != nil || sum(got) != 10 {
		t.Fatalf("JoinStateRefill with a source that counted all: %d, %v", sum(got), err)
	}
	if got, _, err := JoinStateRefill(partial, true, p, repA, 11); err != nil || sum(got) != 5 {
		t.Fatalf("JoinStateRefill with a source that missed one: %d, %v", sum(got), err)
	}
	if got, changed, err := JoinStateRefill(full, true, p, repA, 10); err != nil || changed || sum(got) != 10 {
		t.Fatalf("JoinStateRefill of a whole state: %d, changed %v, %v", sum(got), changed, err)
	}
}

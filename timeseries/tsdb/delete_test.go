package tsdb

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries"
)

func replica(b byte) oplog.ReplicaID { var r oplog.ReplicaID; r[0] = b; return r }

// TestDeleteFold: the floor is the highest deletion, whatever the order
// the operands fold in; local and remote forms mean the same stamp.
func TestDeleteFold(t *testing.T) {
	self := replica(1)
	local := AppendLocalDelete(nil)
	oplog.StampLocal(local, 50)
	ops := [][]byte{AppendRemoteDelete(nil, 70, replica(2)), local, AppendRemoteDelete(nil, 70, replica(3)), AppendRemoteDelete(nil, 10, replica(9))}
	want := Stamp{HLC: 70, Origin: replica(3)}
	m := &Merger{Self: self}
	rng := rand.New(rand.NewPCG(1, 1))
	for range 20 {
		rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
		k := rng.IntN(len(ops))
		st, err := m.Merge(DeleteKey(nil, "s"), ops[:k+1], nil, false)
		if err != nil {
			t.Fatal(err)
		}
		st, err = m.Merge(DeleteKey(nil, "s"), ops[k+1:], st, true)
		if err != nil {
			t.Fatal(err)
		}
		got, remote, err := DecodeDelete(st, self)
		if err != nil || got != want || !remote {
			t.Fatalf("floor %v %v %v, want %v", got, remote, err, want)
		}
	}
	got, remote, err := DecodeDelete(local, self)
	if err != nil || got != (Stamp{HLC: 50, Origin: self}) || remote {
		t.Fatalf("local operand: %v %v %v", got, remote, err)
	}
	// Joining a snapshot's state: the higher floor.
	lower := appendDeleteState(nil, Stamp{HLC: 60, Origin: replica(2)})
	higher := appendDeleteState(nil, want)
	if v, changed, err := JoinDelete(higher, true, lower, self); err != nil || changed || string(v) != string(higher) {
		t.Fatalf("join of a lower floor: %x %v %v", v, changed, err)
	}
	if v, changed, err := JoinDelete(lower, true, higher, self); err != nil || !changed || string(v) != string(higher) {
		t.Fatalf("join of a higher floor: %x %v %v", v, changed, err)
	}
	if _, _, err := JoinDelete(nil, false, local, self); !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("an operand in a snapshot: %v", err)
	}
}

// TestDeleteDecodeDamage: every truncation and every flipped byte of a
// deletion is an error wrapping ErrCorruption or a valid deletion; never
// a panic.
func TestDeleteDecodeDamage(t *testing.T) {
	for _, v := range [][]byte{AppendRemoteDelete(nil, 7, replica(2)), appendDeleteState(nil, Stamp{HLC: 9}), AppendLocalDelete(nil)} {
		for n := range len(v) {
			if _, _, err := DecodeDelete(v[:n], replica(1)); !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("%x cut to %d bytes: %v", v, n, err)
			}
		}
		for i := range v {
			w := append([]byte(nil), v...)
			w[i] ^= 0xff
			if _, _, err := DecodeDelete(w, replica(1)); err != nil && !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("flipped byte %d: %v", i, err)
			}
		}
	}
}

// TestFilterChunk: a floor removes exactly the samples whose write sorts
// at or below it, from operands and states alike, and AllDeleted agrees.
func TestFilterChunk(t *testing.T) {
	self := replica(1)
	m := &Merger{Self: self, Cold: true}
	var ops [][]byte
	want := map[int64]float64{}
	floor := Stamp{HLC: 500, Origin: replica(5)}
	rng := rand.New(rand.NewPCG(2, 2))
	winner := map[int64]Stamp{}
	for i := range 40 {
		st := Stamp{HLC: oplog.Timestamp(rng.IntN(1000)), Origin: replica(byte(rng.IntN(9)))}
		var samples []timeseries.Sample
		for j := range 1 + rng.IntN(20) {
			samples = append(samples, timeseries.Sample{T: int64(rng.IntN(50)*1000 + j), V: float64(i)})
		}
		samples = sortUnique(samples)
		c, err := EncodeSamples(samples)
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, AppendRemoteOperand(nil, st.HLC, st.Origin, c))
		for _, s := range samples {
			if w, ok := winner[s.T]; !ok || st.Above(w) {
				winner[s.T] = st
				want[s.T] = s.V
			}
		}
	}
	for ts, st := range winner {
		if !st.Above(floor) {
			delete(want, ts)
		}
	}
	state, err := m.Merge(ChunkKey(nil, "s", 0), ops, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	v, err := FilterChunk(state, self, floor)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSamples(v, self)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d samples left, want %d", len(got), len(want))
	}
	for _, s := range got {
		if w, ok := want[s.T]; !ok || w != s.V {
			t.Fatalf("sample %v: want %v (%v)", s, w, ok)
		}
	}
	// The compaction's fold with the floor gives the same.
	mf := &Merger{Self: self, Cold: true, Floors: func(string) (Stamp, bool) { return floor, true }}
	folded, err := mf.Merge(ChunkKey(nil, "s", 0), ops, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	got2, err := DecodeSamples(folded, self)
	if err != nil || len(got2) != len(got) {
		t.Fatalf("fold with the floor: %d samples (%v), want %d", len(got2), err, len(got))
	}
	if all, err := AllDeleted(state, self, floor); err != nil || all != (len(want) == 0) {
		t.Fatalf("AllDeleted %v %v with %d left", all, err, len(want))
	}
	if all, err := AllDeleted(state, self, Stamp{HLC: 1 << 40}); err != nil || !all {
		t.Fatalf("AllDeleted under a floor above every write: %v %v", all, err)
	}
	if v, err := FilterChunk(state, self, Stamp{}); err != nil || &v[0] != &state[0] {
		t.Fatalf("a floor below every write copies or fails: %v", err)
	}
}

func sortUnique(s []timeseries.Sample) []timeseries.Sample {
	m := map[int64]timeseries.Sample{}
	for _, x := range s {
		m[x.T] = x
	}
	out := make([]timeseries.Sample, 0, len(m))
	for _, x := range m {
		out = append(out, x)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].T < out[j-1].T; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// TestDeletesLive: listing answers are kept until a record writes the
// series again, and never used for an older view.
func TestDeletesLive(t *testing.T) {
	d := NewDeletes()
	if d.Any() {
		t.Fatal("Any on an empty record")
	}
	calls := 0
	st := countingStore{n: &calls}
	live, err := d.Live(st, replica(1), "s", 10)
	if err != nil || !live || calls != 0 {
		t.Fatalf("a series never deleted: %v %v, %d reads", live, err, calls)
	}
	d.Set("s", Stamp{HLC: 5}, 10)
	if _, ok := d.Floor("s", 9); ok {
		t.Fatal("a floor a reader at 9 does not see was handed to a compaction")
	}
	if f, ok := d.Floor("s", 10); !ok || f.HLC != 5 {
		t.Fatalf("Floor: %v %v", f, ok)
	}
	for range 2 {
		if live, err := d.Live(st, replica(1), "s", 12); err != nil || live {
			t.Fatalf("Live: %v %v", live, err)
		}
	}
	if calls != 1 {
		t.Fatalf("%d reads for two answers at one view, want 1", calls)
	}
	d.Touch("s", 13)
	d.Live(st, replica(1), "s", 14)
	if calls != 2 {
		t.Fatalf("a write after the answer did not make it stale (%d reads)", calls)
	}
	d.Live(st, replica(1), "s", 11)
	if calls != 3 {
		t.Fatalf("an answer at 14 used for a view at 11 (%d reads)", calls)
	}
}

// countingStore is an empty Store counting its reads.
type countingStore struct{ n *int }

func (s countingStore) Scan(lo, hi []byte, fn func(key, value []byte) error) error {
	*s.n++
	return nil
}

func (s countingStore) Span(lo, hi []byte) ([]byte, []byte, bool, error) {
	*s.n++
	return nil, nil, false, nil
}

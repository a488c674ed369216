package lsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
)

// concatMerger folds operands as "base+op1+op2..." (oldest first), so a test
// can see the order and the base it was given.
type concatMerger struct{}

func (concatMerger) Merge(key []byte, operands [][]byte, base []byte, hasBase bool) ([]byte, error) {
	var b strings.Builder
	if hasBase {
		b.Write(base)
	} else {
		b.WriteString("<none>")
	}
	for _, op := range operands {
		if string(op) == "fail" {
			return nil, errors.New("merge refused")
		}
		b.WriteByte('+')
		b.Write(op)
	}
	return []byte(b.String()), nil
}

type userKV struct{ key, value string }

// modelUserView computes what a UserIter should yield from entries sorted by
// CompareInternal.
func modelUserView(es []memTestEntry, snap SeqNum, lower, upper []byte, merger Merger) []userKV {
	var out []userKV
	for i := 0; i < len(es); {
		j := i
		for j < len(es) && bytes.Equal(es[j].ukey, es[i].ukey) {
			j++
		}
		versions := es[i:j]
		ukey := es[i].ukey
		i = j
		if (lower != nil && bytes.Compare(ukey, lower) < 0) || (upper != nil && bytes.Compare(ukey, upper) >= 0) {
			continue
		}
		var visible []memTestEntry
		for _, v := range versions {
			if v.seq <= snap {
				visible = append(visible, v)
			}
		}
		if len(visible) == 0 || visible[0].kind == KindDelete {
			continue
		}
		if visible[0].kind == KindSet || merger == nil {
			out = append(out, userKV{string(ukey), string(visible[0].value)})
			continue
		}
		var ops [][]byte
		var base []byte
		hasBase := false
		for _, v := range visible {
			if v.kind == KindMerge {
				ops = append([][]byte{v.value}, ops...) // oldest first
				continue
			}
			if v.kind == KindSet {
				base, hasBase = v.value, true
			}
			break
		}
		merged, err := merger.Merge(ukey, ops, base, hasBase)
		if err != nil {
			panic(err)
		}
		out = append(out, userKV{string(ukey), string(merged)})
	}
	return out
}

func collectUser(t *testing.T, u *UserIter, ok bool, limit int) []userKV {
	t.Helper()
	var got []userKV
	for ; ok && len(got) < limit; ok = u.Next() {
		if !u.Valid() {
			t.Fatal("positioning returned true but Valid is false")
		}
		got = append(got, userKV{string(u.Key()), string(u.Value())})
	}
	if err := u.Err(); err != nil {
		t.Fatalf("Err: %v", err)
	}
	return got
}

func compareUser(t *testing.T, what string, got, want []userKV) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d keys, want %d\n got %v\nwant %v", what, len(got), len(want), got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: key %d is %q=%q, want %q=%q", what, i, got[i].key, got[i].value, want[i].key, want[i].value)
		}
	}
}

// userTestEntries: random keys with a few versions each, plus some keys with
// many versions (past the Next-then-seek threshold).
func userTestEntries(rng *rand.Rand) []memTestEntry {
	es := randomMemTestEntries(rng, 1500, 200)
	seq := SeqNum(len(es)*4 + 1)
	for k := range 5 {
		ukey := []byte(fmt.Sprintf("key%05d", rng.Intn(200)))
		for range 10 + rng.Intn(40) {
			kind := KindMerge
			if r := rng.Intn(10); r == 0 {
				kind = KindDelete
			} else if r < 4 {
				kind = KindSet
			}
			es = append(es, memTestEntry{ukey: ukey, seq: seq, kind: kind, value: []byte(fmt.Sprintf("hot%d-%d", k, seq))})
			seq++
		}
	}
	return es
}

func TestUserIterVsModel(t *testing.T) {
	rng := memTestRand(t)
	es := userTestEntries(rng)
	maxSeq := SeqNum(0)
	for _, e := range es {
		maxSeq = max(maxSeq, e.seq)
	}
	parts := splitRandomly(rng.Intn, es, 3)
	sortMemTestEntries(es)
	// Two memtables (whose Key buffer is reused on every move) and a slice.
	var mems []*Memtable
	for _, p := range parts[:2] {
		m := NewMemtable(1 << 20)
		for _, e := range p {
			if err := m.Add(e.seq, e.kind, e.ukey, e.value); err != nil {
				t.Fatal(err)
			}
		}
		mems = append(mems, m)
	}
	randKey := func() []byte {
		switch rng.Intn(4) {
		case 0:
			return nil
		case 1:
			return es[rng.Intn(len(es))].ukey
		}
		return []byte(fmt.Sprintf("key%05d%s", rng.Intn(201), strings.Repeat("\x00", rng.Intn(2))))
	}
	for iter := range 400 {
		snap := SeqNum(rng.Int63n(int64(maxSeq) + 2))
		if iter%10 == 0 {
			snap = MaxSeqNum
		}
		lower, upper := randKey(), randKey()
		var merger Merger
		if rng.Intn(3) > 0 {
			merger = concatMerger{}
		}
		what := fmt.Sprintf("snap %d [%q, %q) merger %v", snap, lower, upper, merger != nil)
		u := NewUserIter(NewMergingIter(mems[0].NewIter(), newMemTestSliceIter(parts[2]), mems[1].NewIter()),
			snap, lower, upper)
		u.Merger = merger
		want := modelUserView(es, snap, lower, upper, merger)
		compareUser(t, what+" First", collectUser(t, u, u.First(), 1<<30), want)
		for range 5 {
			seek := randKey()
			if seek == nil {
				seek = []byte{}
			}
			i := sort.Search(len(want), func(i int) bool { return want[i].key >= string(seek) })
			n := rng.Intn(10)
			compareUser(t, fmt.Sprintf("%s SeekGE(%q)", what, seek), collectUser(t, u, u.SeekGE(seek), n),
				want[i:min(len(want), i+n)])
		}
		// Backward from the end, then a random walk in both directions.
		var back []userKV
		for ok := u.Last(); ok; ok = u.Prev() {
			back = append(back, userKV{string(u.Key()), string(u.Value())})
		}
		if err := u.Err(); err != nil {
			t.Fatalf("%s Last..Prev: %v", what, err)
		}
		slices.Reverse(back)
		compareUser(t, what+" Last..Prev", back, want)
		walkUser(t, what, u, want, 200, rng.Intn, randKey)
		if err := u.Close(); err != nil {
			t.Fatal(err)
		}
		if u.Valid() || u.Next() || u.Prev() {
			t.Fatal("closed iterator is valid")
		}
	}
}

// walkUser drives u with a random mix of First, Last, SeekGE, SeekLT, Next
// and Prev and checks every step against want.
func walkUser(t *testing.T, what string, u *UserIter, want []userKV, steps int, intn func(int) int, seekKey func() []byte) {
	t.Helper()
	pos := -1
	var ops []string
	for range steps {
		var ok bool
		switch op := intn(10); {
		case op == 0:
			ops = append(ops, "First")
			ok, pos = u.First(), 0
		case op == 1:
			ops = append(ops, "Last")
			ok, pos = u.Last(), len(want)-1
		case op == 2 || op == 3:
			k := seekKey()
			if k == nil {
				k = []byte{}
			}
			i := sort.Search(len(want), func(i int) bool { return want[i].key >= string(k) })
			if op == 2 {
				ops = append(ops, fmt.Sprintf("SeekGE(%q)", k))
				ok, pos = u.SeekGE(k), i
			} else {
				ops = append(ops, fmt.Sprintf("SeekLT(%q)", k))
				ok, pos = u.SeekLT(k), i-1
			}
		case op < 7:
			ops = append(ops, "Next")
			ok = u.Next()
			if pos >= 0 {
				pos++
			}
		default:
			ops = append(ops, "Prev")
			ok = u.Prev()
			if pos >= 0 {
				pos--
			}
		}
		if pos >= len(want) {
			pos = -1
		}
		if len(ops) > 12 {
			ops = ops[1:]
		}
		if err := u.Err(); err != nil {
			t.Fatalf("%s after %v: %v", what, ops, err)
		}
		if ok != (pos >= 0) || u.Valid() != ok {
			t.Fatalf("%s after %v: ok %v Valid %v, want %v", what, ops, ok, u.Valid(), pos >= 0)
		}
		if pos >= 0 && (string(u.Key()) != want[pos].key || string(u.Value()) != want[pos].value) {
			t.Fatalf("%s after %v: at %q=%q, want %q=%q", what, ops, u.Key(), u.Value(), want[pos].key, want[pos].value)
		}
	}
}

func TestUserIterSkipsManyVersionsWithSeek(t *testing.T) {
	var es []memTestEntry
	for seq := SeqNum(1); seq <= 1000; seq++ {
		es = append(es, memTestEntry{ukey: []byte("hot"), seq: seq, kind: KindSet, value: []byte(fmt.Sprint(seq))})
	}
	es = append(es, memTestEntry{ukey: []byte("next"), seq: 5, kind: KindSet, value: []byte("n")})
	sortMemTestEntries(es)

	// Skipping older versions after the visible one.
	child := newMemTestSliceIter(es)
	u := NewUserIter(child, MaxSeqNum, nil, nil)
	if !u.First() || string(u.Key()) != "hot" || string(u.Value()) != "1000" {
		t.Fatalf("First at %q=%q", u.Key(), u.Value())
	}
	child.nexts, child.seeks = 0, 0
	if !u.Next() || string(u.Key()) != "next" {
		t.Fatalf("Next at %q", u.Key())
	}
	if child.nexts > userIterNextsBeforeSeek+2 || child.seeks != 1 {
		t.Fatalf("skipping 999 versions took %d Next and %d SeekGE", child.nexts, child.seeks)
	}

	// Skipping versions newer than the snapshot.
	child = newMemTestSliceIter(es)
	u = NewUserIter(child, 3, nil, nil)
	if !u.First() || string(u.Key()) != "hot" || string(u.Value()) != "3" {
		t.Fatalf("First at snapshot 3: %q=%q", u.Key(), u.Value())
	}
	if child.nexts > userIterNextsBeforeSeek+2 || child.seeks != 1 {
		t.Fatalf("skipping 997 newer versions took %d Next and %d SeekGE", child.nexts, child.seeks)
	}
	if u.Next() {
		t.Fatalf("next@5 is invisible at snapshot 3, got %q", u.Key())
	}
}

func TestUserIterMergeWithoutMerger(t *testing.T) {
	es := []memTestEntry{
		{ukey: []byte("a"), seq: 3, kind: KindMerge, value: []byte("op3")},
		{ukey: []byte("a"), seq: 2, kind: KindMerge, value: []byte("op2")},
		{ukey: []byte("a"), seq: 1, kind: KindSet, value: []byte("base")},
		{ukey: []byte("b"), seq: 4, kind: KindMerge, value: []byte("opb")},
		{ukey: []byte("b"), seq: 1, kind: KindDelete},
	}
	u := NewUserIter(newMemTestSliceIter(es), MaxSeqNum, nil, nil)
	compareUser(t, "nil merger", collectUser(t, u, u.First(), 100), []userKV{{"a", "op3"}, {"b", "opb"}})
	u = NewUserIter(newMemTestSliceIter(es), MaxSeqNum, nil, nil)
	u.Merger = concatMerger{}
	compareUser(t, "concat merger", collectUser(t, u, u.First(), 100),
		[]userKV{{"a", "base+op2+op3"}, {"b", "<none>+opb"}})
}

func TestUserIterErrors(t *testing.T) {
	es := []memTestEntry{
		{ukey: []byte("a"), seq: 1, kind: KindSet, value: []byte("1")},
		{ukey: []byte("b"), seq: 2, kind: KindMerge, value: []byte("fail")},
		{ukey: []byte("c"), seq: 3, kind: KindSet, value: []byte("3")},
	}
	// A failing Merger stops the iteration with its error.
	u := NewUserIter(newMemTestSliceIter(es), MaxSeqNum, nil, nil)
	u.Merger = concatMerger{}
	if !u.First() || string(u.Key()) != "a" {
		t.Fatal("First")
	}
	if u.Next() || u.Valid() || u.Err() == nil || !strings.Contains(u.Err().Error(), "merge refused") {
		t.Fatalf("merge failure: valid %v err %v", u.Valid(), u.Err())
	}

	// A child error stops the iteration and is returned by Err and Close.
	child := newMemTestSliceIter(es)
	child.failAfter = 2
	u = NewUserIter(child, MaxSeqNum, nil, nil)
	n := 0
	for ok := u.First(); ok; ok = u.Next() {
		n++
	}
	if n != 2 || u.Err() == nil || u.Close() == nil || child.closed != 1 {
		t.Fatalf("child failure: %d keys, Err %v, closed %d", n, u.Err(), child.closed)
	}

	// Backward, too.
	u = NewUserIter(newMemTestSliceIter(es), MaxSeqNum, nil, nil)
	u.Merger = concatMerger{}
	if !u.Last() || string(u.Key()) != "c" {
		t.Fatal("Last")
	}
	if u.Prev() || u.Valid() || u.Err() == nil || !strings.Contains(u.Err().Error(), "merge refused") {
		t.Fatalf("backward merge failure: valid %v err %v", u.Valid(), u.Err())
	}
	for failAfter := range 4 {
		child = newMemTestSliceIter(es)
		child.failAfter = failAfter
		u = NewUserIter(child, MaxSeqNum, nil, nil)
		for ok := u.Last(); ok; ok = u.Prev() {
		}
		if u.Err() == nil {
			t.Fatalf("backward child failure after %d moves: no error", failAfter)
		}
	}

	// A malformed internal key is corruption, not a panic.
	child = newMemTestSliceIter(es[:1])
	child.keys[0] = []byte("short")
	u = NewUserIter(child, MaxSeqNum, nil, nil)
	if u.First() || !errors.Is(u.Err(), errs.ErrCorruption) {
		t.Fatalf("malformed key: Err %v", u.Err())
	}
	if u.Last() || !errors.Is(u.Err(), errs.ErrCorruption) {
		t.Fatalf("malformed key backward: Err %v", u.Err())
	}
}

func TestUserIterBounds(t *testing.T) {
	var es []memTestEntry
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		es = append(es, memTestEntry{ukey: []byte(k), seq: 1, kind: KindSet, value: []byte(k)})
	}
	u := NewUserIter(newMemTestSliceIter(es), MaxSeqNum, []byte("b"), []byte("d"))
	compareUser(t, "[b,d)", collectUser(t, u, u.First(), 100), []userKV{{"b", "b"}, {"c", "c"}})
	compareUser(t, "SeekGE(a) clamps", collectUser(t, u, u.SeekGE([]byte("a")), 100), []userKV{{"b", "b"}, {"c", "c"}})
	if u.SeekGE([]byte("d")) {
		t.Fatalf("SeekGE(upper) found %q", u.Key())
	}
	u = NewUserIter(newMemTestSliceIter(es), MaxSeqNum, []byte("c"), []byte("c"))
	if u.First() {
		t.Fatal("empty range not empty")
	}
}

func TestUserIterNoAllocs(t *testing.T) {
	m := NewMemtable(8 << 20)
	for i := range 5000 {
		k := []byte(fmt.Sprintf("k%06d", i))
		for v := range 3 {
			kind := KindSet
			if v == 2 && i%2 == 0 {
				kind = KindMerge
			}
			if err := m.Add(SeqNum(i*3+v+1), kind, k, []byte("value")); err != nil {
				t.Fatal(err)
			}
		}
	}
	u := NewUserIter(m.NewIter(), MaxSeqNum, nil, nil)
	u.Merger = firstOperandMerger{}
	u.First()
	if a := testing.AllocsPerRun(5000, func() {
		if !u.Next() {
			u.First()
		}
	}); a != 0 {
		t.Fatalf("Next allocates %.2f times per call", a)
	}
	u.Last()
	if a := testing.AllocsPerRun(5000, func() {
		if !u.Prev() {
			u.Last()
		}
	}); a != 0 {
		t.Fatalf("Prev allocates %.2f times per call", a)
	}
}

// firstOperandMerger returns its newest operand without allocating.
type firstOperandMerger struct{}

func (firstOperandMerger) Merge(_ []byte, ops [][]byte, _ []byte, _ bool) ([]byte, error) {
	return ops[len(ops)-1], nil
}

func BenchmarkUserIterNext(b *testing.B) {
	m := NewMemtable(64 << 20)
	for i := range 200000 {
		k := []byte(fmt.Sprintf("k%08d", i))
		for v := range 3 {
			if err := m.Add(SeqNum(i*3+v+1), KindSet, k, []byte("value-value-value")); err != nil {
				b.Fatal(err)
			}
		}
	}
	u := NewUserIter(m.NewIter(), MaxSeqNum, nil, nil)
	u.First()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if !u.Next() {
			u.First()
		}
	}
}

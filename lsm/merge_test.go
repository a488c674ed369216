package lsm

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"testing"
)

// memTestSliceIter is an InternalIterator over sorted entries, for tests.
// It fails with err once it has been asked to move failAfter times
// (failAfter < 0: never), and counts its calls.
type memTestSliceIter struct {
	entries   []memTestEntry
	keys      [][]byte
	pos       int // len(entries): exhausted
	err       error
	failAfter int
	moves     int
	nexts     int
	seeks     int
	closed    int
}

func newMemTestSliceIter(es []memTestEntry) *memTestSliceIter {
	it := &memTestSliceIter{entries: es, pos: len(es), failAfter: -1}
	for _, e := range es {
		it.keys = append(it.keys, e.ikey())
	}
	return it
}

func (it *memTestSliceIter) move(pos int) bool {
	it.moves++
	if it.failAfter >= 0 && it.moves > it.failAfter {
		it.err = errors.New("injected child failure")
	}
	if it.err != nil {
		it.pos = len(it.entries)
		return false
	}
	if pos < 0 {
		pos = len(it.entries)
	}
	it.pos = pos
	return it.Valid()
}

func (it *memTestSliceIter) First() bool { return it.move(0) }

func (it *memTestSliceIter) SeekGE(ikey []byte) bool {
	it.seeks++
	return it.move(sort.Search(len(it.keys), func(i int) bool { return CompareInternal(it.keys[i], ikey) >= 0 }))
}

func (it *memTestSliceIter) Next() bool {
	it.nexts++
	if it.pos >= len(it.entries) {
		return false
	}
	return it.move(it.pos + 1)
}

func (it *memTestSliceIter) Last() bool { return it.move(len(it.entries) - 1) }

func (it *memTestSliceIter) SeekLT(ikey []byte) bool {
	it.seeks++
	return it.move(sort.Search(len(it.keys), func(i int) bool { return CompareInternal(it.keys[i], ikey) >= 0 }) - 1)
}

func (it *memTestSliceIter) Prev() bool {
	it.nexts++
	if !it.Valid() {
		return false
	}
	return it.move(it.pos - 1)
}

// Valid: pos is len(entries) when exhausted, -1 when exhausted backward.
func (it *memTestSliceIter) Valid() bool { return it.pos >= 0 && it.pos < len(it.entries) }
func (it *memTestSliceIter) Key() []byte { return it.keys[it.pos] }
func (it *memTestSliceIter) Value() []byte {
	return it.entries[it.pos].value
}
func (it *memTestSliceIter) Err() error { return it.err }
func (it *memTestSliceIter) Close() error {
	it.closed++
	return it.err
}

// splitRandomly deals entries to n sorted children.
func splitRandomly(rngIntn func(int) int, es []memTestEntry, n int) [][]memTestEntry {
	parts := make([][]memTestEntry, n)
	if n == 0 {
		return nil
	}
	for _, e := range es {
		i := rngIntn(n)
		parts[i] = append(parts[i], e)
	}
	for _, p := range parts {
		sortMemTestEntries(p)
	}
	return parts
}

func TestMergingIterRandom(t *testing.T) {
	rng := memTestRand(t)
	for _, nChildren := range []int{0, 1, 2, 3, 7, 20} {
		es := randomMemTestEntries(rng, 2000, 300)
		parts := splitRandomly(rng.Intn, es, nChildren)
		sortMemTestEntries(es)
		if nChildren == 0 {
			es = nil
		}
		var children []InternalIterator
		for i, p := range parts {
			if i%2 == 0 {
				children = append(children, newMemTestSliceIter(p))
				continue
			}
			// Mix in real memtables.
			m := NewMemtable(1 << 20)
			for _, e := range p {
				if err := m.Add(e.seq, e.kind, e.ukey, e.value); err != nil {
					t.Fatal(err)
				}
			}
			children = append(children, m.NewIter())
		}
		mi := NewMergingIter(children...)
		checkIterMatches(t, mi, mi.First(), es)
		for range 200 {
			var target []byte
			if len(es) > 0 && rng.Intn(2) == 0 {
				target = es[rng.Intn(len(es))].ikey()
			} else {
				target = MakeInternalKey([]byte(fmt.Sprintf("key%05d", rng.Intn(301))), SeqNum(rng.Intn(8002)), KindSet)
			}
			i := sort.Search(len(es), func(i int) bool { return CompareInternal(es[i].ikey(), target) >= 0 })
			checkIterPrefix(t, mi, mi.SeekGE(target), es[i:], 50)
		}
		keys, vals := memTestKV(es)
		checkRandomWalk(t, mi, keys, vals, 2000, rng.Intn, func() []byte {
			if len(es) > 0 && rng.Intn(2) == 0 {
				return es[rng.Intn(len(es))].ikey()
			}
			return MakeInternalKey([]byte(fmt.Sprintf("key%05d", rng.Intn(301))), SeqNum(rng.Intn(8002)), KindSet)
		})
		if err := mi.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMergingIterTiesByChildIndex(t *testing.T) {
	e := memTestEntry{ukey: []byte("k"), seq: 5, kind: KindSet}
	var children []InternalIterator
	for i := range 5 {
		e.value = []byte{byte('0' + i)}
		children = append(children, newMemTestSliceIter([]memTestEntry{e}))
	}
	mi := NewMergingIter(children...)
	var got []byte
	for ok := mi.First(); ok; ok = mi.Next() {
		got = append(got, mi.Value()...)
	}
	if string(got) != "01234" {
		t.Fatalf("equal keys came out in child order %q, want 01234", got)
	}
	got = got[:0]
	for ok := mi.Last(); ok; ok = mi.Prev() {
		got = append(got, mi.Value()...)
	}
	if string(got) != "43210" {
		t.Fatalf("backward, equal keys came out in child order %q, want 43210", got)
	}
	// Direction switches among the ties keep the (key, child) order.
	mi.First()
	mi.Next()
	mi.Next() // at child 2
	if !mi.Prev() || mi.Value()[0] != '1' || !mi.Next() || mi.Value()[0] != '2' || !mi.Next() || mi.Value()[0] != '3' {
		t.Fatalf("switching direction among ties lost the child order")
	}
}

func TestMergingIterErrors(t *testing.T) {
	rng := memTestRand(t)
	es := randomMemTestEntries(rng, 200, 50)
	parts := splitRandomly(rng.Intn, es, 3)
	for failAfter := 0; failAfter < 40; failAfter++ {
		children := []*memTestSliceIter{
			newMemTestSliceIter(parts[0]), newMemTestSliceIter(parts[1]), newMemTestSliceIter(parts[2]),
		}
		children[1].failAfter = failAfter
		mi := NewMergingIter(children[0], children[1], children[2])
		n := 0
		for ok := mi.First(); ok; ok = mi.Next() {
			n++
		}
		if mi.Valid() || mi.Key() != nil || mi.Value() != nil {
			t.Fatal("failed iterator is still valid")
		}
		if err := mi.Err(); err == nil || err.Error() != "injected child failure" {
			t.Fatalf("failAfter %d: Err = %v after %d entries", failAfter, err, n)
		}
		if mi.Next() {
			t.Fatal("Next after an error succeeded")
		}
		// The fake child stays failed, so repositioning reports it again.
		if mi.SeekGE(es[0].ikey()) || mi.Err() == nil {
			t.Fatal("SeekGE over a failed child succeeded")
		}
		if err := mi.Close(); err == nil {
			t.Fatal("Close lost the child error")
		}
		mi.Close()
		for i, c := range children {
			if c.closed != 1 {
				t.Fatalf("child %d closed %d times", i, c.closed)
			}
		}
	}
}

func TestMergingIterNoAllocs(t *testing.T) {
	rng := memTestRand(t)
	es := randomMemTestEntries(rng, 3000, 1000)
	var children []InternalIterator
	for _, p := range splitRandomly(rng.Intn, es, 4) {
		children = append(children, newMemTestSliceIter(p))
	}
	mi := NewMergingIter(children...)
	mi.First()
	if a := testing.AllocsPerRun(2000, func() {
		if !mi.Next() {
			mi.First()
		}
	}); a != 0 {
		t.Fatalf("Next allocates %.1f times per call", a)
	}
	key := es[17].ikey()
	if a := testing.AllocsPerRun(100, func() { mi.SeekGE(key) }); a != 0 {
		t.Fatalf("SeekGE allocates %.1f times per call", a)
	}
	if !bytes.Equal(mi.Key(), key) {
		t.Fatalf("SeekGE landed on %q", mi.Key())
	}
	mi.Last()
	if a := testing.AllocsPerRun(2000, func() {
		if !mi.Prev() {
			mi.Last()
		}
	}); a != 0 {
		t.Fatalf("Prev allocates %.1f times per call", a)
	}
	if a := testing.AllocsPerRun(100, func() { mi.SeekLT(key); mi.Next() }); a != 0 {
		t.Fatalf("SeekLT and a direction switch allocate %.1f times per call", a)
	}
}

func BenchmarkMergingIterNext(b *testing.B) {
	rng := memTestRand(b)
	es := randomMemTestEntries(rng, 100000, 50000)
	var children []InternalIterator
	for _, p := range splitRandomly(rng.Intn, es, 5) {
		m := NewMemtable(16 << 20)
		for _, e := range p {
			if err := m.Add(e.seq, e.kind, e.ukey, e.value); err != nil {
				b.Fatal(err)
			}
		}
		children = append(children, m.NewIter())
	}
	mi := NewMergingIter(children...)
	mi.First()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if !mi.Next() {
			mi.First()
		}
	}
}

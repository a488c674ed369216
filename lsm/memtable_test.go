package lsm

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
)

// memSeed seeds the randomized tests of the memtable, merging iterator and
// user iterator. (Its own name, so it cannot clash with other test files'
// flags in this package.)
var memSeed = flag.Int64("memseed", 1, "seed for the memtable/merge/useriter randomized tests")

func memTestRand(t testing.TB) *rand.Rand {
	t.Logf("seed %d (rerun with -memseed=%d)", *memSeed, *memSeed)
	return rand.New(rand.NewSource(*memSeed))
}

// memTestEntry is one internal entry of a reference model.
type memTestEntry struct {
	ukey  []byte
	seq   SeqNum
	kind  Kind
	value []byte
}

func (e memTestEntry) ikey() []byte { return MakeInternalKey(e.ukey, e.seq, e.kind) }

func sortMemTestEntries(es []memTestEntry) {
	sort.SliceStable(es, func(i, j int) bool {
		return CompareInternal(es[i].ikey(), es[j].ikey()) < 0
	})
}

// randomMemTestEntries returns n entries with unique seqs in [1, 4n] over a
// small key space, so user keys repeat.
func randomMemTestEntries(rng *rand.Rand, n, keySpace int) []memTestEntry {
	seqs := rng.Perm(4 * n)
	es := make([]memTestEntry, n)
	for i := range es {
		k := rng.Intn(keySpace)
		es[i] = memTestEntry{
			ukey:  []byte(fmt.Sprintf("key%05d", k)),
			seq:   SeqNum(seqs[i] + 1),
			kind:  Kind(rng.Intn(int(KindMax) + 1)),
			value: []byte(fmt.Sprintf("v%d-%d", k, rng.Intn(1000))),
		}
		if rng.Intn(20) == 0 {
			es[i].value = nil
		}
	}
	return es
}

// checkIterMatches walks it from its current position and compares with want.
func checkIterMatches(t *testing.T, it InternalIterator, valid bool, want []memTestEntry) {
	t.Helper()
	checkIterPrefix(t, it, valid, want, len(want))
}

// checkIterPrefix compares the next entries of it with want[:n]; if want
// has no more than n entries, it must be exhausted after them.
func checkIterPrefix(t *testing.T, it InternalIterator, valid bool, want []memTestEntry, n int) {
	t.Helper()
	truncated := n < len(want)
	if truncated {
		want = want[:n]
	}
	for i, e := range want {
		if !valid || !it.Valid() {
			t.Fatalf("entry %d: iterator exhausted, want %q/%d", i, e.ukey, e.seq)
		}
		if !bytes.Equal(it.Key(), e.ikey()) || !bytes.Equal(it.Value(), e.value) {
			ukey, seq, kind, _ := SplitInternalKey(it.Key())
			t.Fatalf("entry %d: got %q/%d/%v=%q, want %q/%d/%v=%q", i, ukey, seq, kind, it.Value(),
				e.ukey, e.seq, e.kind, e.value)
		}
		valid = it.Next()
	}
	if truncated {
		if !valid || !it.Valid() {
			t.Fatalf("iterator exhausted after %d entries", n)
		}
		return
	}
	if valid || it.Valid() {
		t.Fatalf("iterator has extra entry %q", it.Key())
	}
	if err := it.Err(); err != nil {
		t.Fatalf("Err: %v", err)
	}
}

func TestMemtableRandomVsReference(t *testing.T) {
	rng := memTestRand(t)
	for _, keySpace := range []int{10, 300, 100000} {
		es := randomMemTestEntries(rng, 3000, keySpace)
		m := NewMemtable(1 << 20)
		for _, e := range es {
			if err := m.Add(e.seq, e.kind, e.ukey, e.value); err != nil {
				t.Fatal(err)
			}
		}
		if m.Len() != len(es) || m.Empty() {
			t.Fatalf("Len %d, want %d", m.Len(), len(es))
		}
		sortMemTestEntries(es)

		it := m.NewIter()
		checkIterMatches(t, it, it.First(), es)

		// SeekGE at existing keys and at random points between them.
		for range 300 {
			var target []byte
			if rng.Intn(2) == 0 {
				target = es[rng.Intn(len(es))].ikey()
			} else {
				target = MakeInternalKey([]byte(fmt.Sprintf("key%05d", rng.Intn(keySpace+1))),
					SeqNum(rng.Intn(4*len(es)+2)), Kind(rng.Intn(3)))
			}
			i := sort.Search(len(es), func(i int) bool { return CompareInternal(es[i].ikey(), target) >= 0 })
			checkIterPrefix(t, it, it.SeekGE(target), es[i:], 50)
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}

		// Get at random snapshots against the reference.
		for range 1000 {
			uk := []byte(fmt.Sprintf("key%05d", rng.Intn(keySpace+1)))
			snap := SeqNum(rng.Intn(4*len(es) + 2))
			var want *memTestEntry
			// es is sorted newest first within a user key.
			for k := sort.Search(len(es), func(k int) bool { return bytes.Compare(es[k].ukey, uk) >= 0 }); k < len(es) && bytes.Equal(es[k].ukey, uk); k++ {
				if es[k].seq <= snap {
					want = &es[k]
					break
				}
			}
			v, kind, seq, found := m.Get(uk, snap)
			switch {
			case want == nil && found:
				t.Fatalf("Get(%q, %d): found seq %d, want none", uk, snap, seq)
			case want != nil && !found:
				t.Fatalf("Get(%q, %d): not found, want seq %d", uk, snap, want.seq)
			case want != nil && (seq != want.seq || kind != want.kind || !bytes.Equal(v, want.value)):
				t.Fatalf("Get(%q, %d) = %q/%v/%d, want %q/%v/%d", uk, snap, v, kind, seq, want.value, want.kind, want.seq)
			}
		}
	}
}

func TestMemtableVersionsAndSnapshots(t *testing.T) {
	m := NewMemtable(64 << 10)
	mustAdd := func(seq SeqNum, kind Kind, k, v string) {
		t.Helper()
		if err := m.Add(seq, kind, []byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	// Inserted out of order on purpose.
	mustAdd(20, KindSet, "b", "b20")
	mustAdd(10, KindSet, "b", "b10")
	mustAdd(30, KindDelete, "b", "")
	mustAdd(15, KindMerge, "b", "b15")
	mustAdd(5, KindSet, "a", "a5")
	mustAdd(40, KindSet, "c", "c40")
	mustAdd(10, KindSet, "", "empty-key")

	tests := []struct {
		key   string
		snap  SeqNum
		found bool
		seq   SeqNum
		kind  Kind
		value string
	}{
		{"b", 9, false, 0, 0, ""},
		{"b", 10, true, 10, KindSet, "b10"},
		{"b", 14, true, 10, KindSet, "b10"},
		{"b", 15, true, 15, KindMerge, "b15"},
		{"b", 29, true, 20, KindSet, "b20"},
		{"b", 30, true, 30, KindDelete, ""},
		{"b", MaxSeqNum, true, 30, KindDelete, ""},
		{"b", MaxSeqNum + 100, true, 30, KindDelete, ""}, // clamped
		{"a", 4, false, 0, 0, ""},
		{"a", 5, true, 5, KindSet, "a5"},
		{"a\x00", 100, false, 0, 0, ""},
		{"c", 39, false, 0, 0, ""},
		{"c", 40, true, 40, KindSet, "c40"},
		{"d", 100, false, 0, 0, ""},
		{"", 10, true, 10, KindSet, "empty-key"},
	}
	for _, tc := range tests {
		v, kind, seq, found := m.Get([]byte(tc.key), tc.snap)
		if found != tc.found || seq != tc.seq || kind != tc.kind || string(v) != tc.value {
			t.Errorf("Get(%q, %d) = %q/%v/%d/%v, want %q/%v/%d/%v", tc.key, tc.snap, v, kind, seq, found,
				tc.value, tc.kind, tc.seq, tc.found)
		}
	}

	var got []string
	it := m.NewIter()
	for ok := it.First(); ok; ok = it.Next() {
		ukey, seq, kind, _ := SplitInternalKey(it.Key())
		got = append(got, fmt.Sprintf("%s/%d/%v=%s", ukey, seq, kind, it.Value()))
	}
	want := []string{"/10/SET=empty-key", "a/5/SET=a5", "b/30/DEL=", "b/20/SET=b20", "b/15/MERGE=b15",
		"b/10/SET=b10", "c/40/SET=c40"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("iteration:\n got %v\nwant %v", got, want)
	}
	if it.Next() || it.Valid() || it.Key() != nil || it.Value() != nil {
		t.Fatal("exhausted iterator moved or returned a key")
	}
	// Seeking to (b, 25, KindMax) lands on b's newest entry at or below 25.
	if !it.SeekGE(MakeInternalKey([]byte("b"), 25, KindMax)) || string(it.Value()) != "b20" {
		t.Fatalf("SeekGE(b@25) at %q", it.Value())
	}
	// A bare user key (shorter than a trailer) lands on the key's newest entry.
	if !it.SeekGE([]byte("b")) || string(it.Key()) != string(MakeInternalKey([]byte("b"), 30, KindDelete)) {
		t.Fatalf("SeekGE(bare b) at %q", it.Key())
	}
	if it.SeekGE(MakeInternalKey([]byte("c"), 1, KindDelete)) {
		t.Fatalf("SeekGE past the end found %q", it.Key())
	}
}

func TestMemtableDuplicateInternalKey(t *testing.T) {
	m := NewMemtable(4096)
	for _, v := range []string{"first", "second"} {
		if err := m.Add(7, KindSet, []byte("k"), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if v, _, _, _ := m.Get([]byte("k"), 7); string(v) != "second" {
		t.Fatalf("Get = %q, want the later Add to shadow", v)
	}
	if m.Len() != 2 {
		t.Fatalf("Len = %d", m.Len())
	}
}

func TestMemtableInvalidAdd(t *testing.T) {
	m := NewMemtable(4096)
	if err := m.Add(MaxSeqNum+1, KindSet, []byte("k"), nil); err == nil {
		t.Fatal("seq beyond MaxSeqNum accepted")
	}
	if err := m.Add(1, KindMax+1, []byte("k"), nil); err == nil {
		t.Fatal("unknown kind accepted")
	}
	if !m.Empty() || m.Len() != 0 {
		t.Fatal("rejected entries were added")
	}
}

func TestMemtableFull(t *testing.T) {
	rng := memTestRand(t)
	for _, size := range []int{-1, 0, 100, 1000, 4096, 100000} {
		m := NewMemtable(size)
		capacity := m.Capacity()
		if m.Room() != capacity {
			t.Fatalf("size %d: empty Room %d != Capacity %d", size, m.Room(), capacity)
		}
		total := m.Size() + m.Room()
		var added []memTestEntry
		for seq := SeqNum(1); ; seq++ {
			k := make([]byte, rng.Intn(40))
			v := make([]byte, rng.Intn(200))
			rng.Read(k)
			rng.Read(v)
			room, used, n := m.Room(), m.Size(), m.Len()
			err := m.Add(seq, KindSet, k, v)
			if room >= len(k)+len(v)+MemtableEntryOverhead && err != nil {
				t.Fatalf("size %d: Add failed with Room %d >= %d: %v", size, room, len(k)+len(v)+MemtableEntryOverhead, err)
			}
			if m.Size()+m.Room() != total {
				t.Fatalf("size %d: Size %d + Room %d != %d", size, m.Size(), m.Room(), total)
			}
			if err != nil {
				if !errors.Is(err, ErrMemtableFull) {
					t.Fatalf("size %d: Add: %v, want ErrMemtableFull", size, err)
				}
				if m.Room() != room || m.Size() != used || m.Len() != n {
					t.Fatalf("size %d: failed Add changed the memtable", size)
				}
				// Something small may still fit; stop once even an empty entry does not.
				if m.Add(seq, KindSet, nil, nil) != nil {
					break
				}
				added = append(added, memTestEntry{seq: seq, kind: KindSet})
				continue
			}
			if spent := room - m.Room(); spent > len(k)+len(v)+MemtableEntryOverhead || spent < len(k)+len(v) {
				t.Fatalf("size %d: entry of %d bytes took %d arena bytes", size, len(k)+len(v), spent)
			}
			added = append(added, memTestEntry{ukey: k, seq: seq, kind: KindSet, value: v})
		}
		if m.Room() >= MemtableEntryOverhead {
			t.Fatalf("size %d: full with Room %d", size, m.Room())
		}
		// Everything added is intact.
		sortMemTestEntries(added)
		it := m.NewIter()
		checkIterMatches(t, it, it.First(), added)
	}
	// An entry larger than the whole arena never fits.
	m := NewMemtable(1 << 12)
	if err := m.Add(1, KindSet, make([]byte, 1<<12), nil); !errors.Is(err, ErrMemtableFull) {
		t.Fatalf("oversized Add: %v", err)
	}
	if err := m.Add(1, KindSet, nil, make([]byte, m.Capacity()-MemtableEntryOverhead)); err != nil {
		t.Fatalf("entry of Capacity-overhead bytes: %v", err)
	}
}

// TestMemtableConcurrentReaders runs readers against a writer (meant for
// -race): every iteration a reader makes must be strictly sorted, must
// include every entry published before it started, and every Get of a
// published key must find it.
func TestMemtableConcurrentReaders(t *testing.T) {
	rng := memTestRand(t)
	const n = 10000
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("%08x", rng.Uint32()))
	}
	m := NewMemtable(4 << 20)
	var published atomic.Int64 // entries 0..published-1 are in m
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rrng := rand.New(rand.NewSource(*memSeed + int64(r)))
			it := m.NewIter()
			defer it.Close()
			for {
				before := published.Load()
				count := 0
				var prev []byte
				for ok := it.First(); ok; ok = it.Next() {
					if prev != nil && CompareInternal(prev, it.Key()) >= 0 {
						errc <- fmt.Errorf("unsorted: %q then %q", prev, it.Key())
						return
					}
					ukey, seq, _, _ := SplitInternalKey(it.Key())
					if !bytes.Equal(it.Value(), ukey) || seq == 0 || seq > n {
						errc <- fmt.Errorf("entry %q/%d has value %q", ukey, seq, it.Value())
						return
					}
					prev = append(prev[:0], it.Key()...)
					count++
				}
				if int64(count) < before {
					errc <- fmt.Errorf("iteration saw %d entries, %d were published before it", count, before)
					return
				}
				for range 100 {
					p := published.Load()
					if p == 0 {
						break
					}
					i := rrng.Int63n(p)
					v, _, _, found := m.Get(keys[i], MaxSeqNum)
					if !found || !bytes.Equal(v, keys[i]) {
						errc <- fmt.Errorf("Get(%q) of a published key: %q, %v", keys[i], v, found)
						return
					}
				}
				if before == n {
					return
				}
			}
		}()
	}
	for i, k := range keys {
		if err := m.Add(SeqNum(i+1), KindSet, k, k); err != nil {
			t.Fatal(err)
		}
		published.Store(int64(i + 1))
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

// TestMemtableConcurrentGet hammers Get while the writer inserts: a seek
// that races with an insert just before its target must still land on the
// target (a seek that re-reads the last link it followed does not).
func TestMemtableConcurrentGet(t *testing.T) {
	rng := memTestRand(t)
	const n = 4000
	for round := range 10 {
		keys := make([][]byte, n)
		for i := range keys {
			keys[i] = []byte(fmt.Sprintf("%08x", rng.Uint32()))
		}
		m := NewMemtable(1 << 20)
		var published atomic.Int64
		var wg sync.WaitGroup
		var misses atomic.Int64
		for r := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rrng := rand.New(rand.NewSource(*memSeed + int64(r)))
				for {
					p := published.Load()
					if p == n {
						return
					}
					if p == 0 {
						continue
					}
					i := rrng.Int63n(p)
					if v, _, _, found := m.Get(keys[i], MaxSeqNum); !found || !bytes.Equal(v, keys[i]) {
						misses.Add(1)
					}
				}
			}()
		}
		for i, k := range keys {
			if err := m.Add(SeqNum(i+1), KindSet, k, k); err != nil {
				t.Fatal(err)
			}
			published.Store(int64(i + 1))
		}
		wg.Wait()
		if misses.Load() != 0 {
			t.Fatalf("round %d: %d Gets of published keys missed", round, misses.Load())
		}
	}
}

func TestMemtableNoAllocs(t *testing.T) {
	m := NewMemtable(8 << 20)
	key := make([]byte, 16)
	val := make([]byte, 100)
	seq := SeqNum(1)
	if a := testing.AllocsPerRun(1000, func() {
		key[0], key[1], key[2] = byte(seq), byte(seq>>8), byte(seq>>16)
		if err := m.Add(seq, KindSet, key, val); err != nil {
			t.Fatal(err)
		}
		seq++
	}); a != 0 {
		t.Errorf("Add allocates %.1f times per call", a)
	}
	if a := testing.AllocsPerRun(1000, func() {
		if _, _, _, found := m.Get(key, MaxSeqNum); !found {
			t.Fatal("not found")
		}
	}); a != 0 {
		t.Errorf("Get allocates %.1f times per call", a)
	}
	it := m.NewIter()
	it.First()
	if a := testing.AllocsPerRun(1000, func() {
		if !it.Next() {
			it.First()
		}
		_ = it.Key()
	}); a != 0 {
		t.Errorf("iterator Next allocates %.1f times per call", a)
	}
}

// checkRandomWalk drives it with a random mix of First, Last, SeekGE,
// SeekLT, Next and Prev, switching direction at random, and checks every
// step against keys and vals, the sorted entries it should hold. seekKey
// draws seek targets; intn draws random numbers.
func checkRandomWalk(t *testing.T, it InternalIterator, keys, vals [][]byte, steps int, intn func(int) int, seekKey func() []byte) {
	t.Helper()
	pos := -1 // the model position; -1: not at an entry
	var ops []string
	for step := range steps {
		var ok bool
		op := intn(10)
		if step == 0 {
			op = intn(2) // start from a known position
		}
		switch {
		case op == 0:
			ops = append(ops, "First")
			ok, pos = it.First(), 0
		case op == 1:
			ops = append(ops, "Last")
			ok, pos = it.Last(), len(keys)-1
		case op == 2 || op == 3:
			k := seekKey()
			i := sort.Search(len(keys), func(i int) bool { return CompareInternal(keys[i], k) >= 0 })
			if op == 2 {
				ops = append(ops, fmt.Sprintf("SeekGE(%q)", k))
				ok, pos = it.SeekGE(k), i
			} else {
				ops = append(ops, fmt.Sprintf("SeekLT(%q)", k))
				ok, pos = it.SeekLT(k), i-1
			}
		case op < 7:
			ops = append(ops, "Next")
			ok = it.Next()
			if pos >= 0 && pos < len(keys) {
				pos++
			}
		default:
			ops = append(ops, "Prev")
			ok = it.Prev()
			if pos >= 0 && pos < len(keys) {
				pos--
			}
		}
		if pos < 0 || pos >= len(keys) {
			pos = -1
		}
		if len(ops) > 12 {
			ops = ops[1:]
		}
		if want := pos >= 0; ok != want || it.Valid() != want {
			t.Fatalf("after %v: ok %v Valid %v, want %v (err %v)", ops, ok, it.Valid(), want, it.Err())
		}
		if pos < 0 {
			if err := it.Err(); err != nil {
				t.Fatalf("after %v: Err %v", ops, err)
			}
			continue
		}
		if !bytes.Equal(it.Key(), keys[pos]) || !bytes.Equal(it.Value(), vals[pos]) {
			t.Fatalf("after %v: at %q=%q, want %q=%q (entry %d)", ops, it.Key(), it.Value(), keys[pos], vals[pos], pos)
		}
	}
}

// memTestKV returns the internal keys and values of es.
func memTestKV(es []memTestEntry) (keys, vals [][]byte) {
	for _, e := range es {
		keys = append(keys, e.ikey())
		vals = append(vals, e.value)
	}
	return keys, vals
}

func TestMemtableRandomWalk(t *testing.T) {
	rng := memTestRand(t)
	for _, keySpace := range []int{10, 300, 100000} {
		for _, n := range []int{0, 1, 2, 3000} {
			es := randomMemTestEntries(rng, n, keySpace)
			m := NewMemtable(1 << 20)
			for _, e := range es {
				if err := m.Add(e.seq, e.kind, e.ukey, e.value); err != nil {
					t.Fatal(err)
				}
			}
			sortMemTestEntries(es)
			keys, vals := memTestKV(es)
			seekKey := func() []byte {
				if len(keys) > 0 && rng.Intn(2) == 0 {
					return keys[rng.Intn(len(keys))]
				}
				return MakeInternalKey([]byte(fmt.Sprintf("key%05d", rng.Intn(keySpace+1))),
					SeqNum(rng.Intn(4*n+2)), Kind(rng.Intn(3)))
			}
			checkRandomWalk(t, m.NewIter(), keys, vals, 3000, rng.Intn, seekKey)
		}
	}
}

// TestMemtableDuplicatePrev: Prev steps over an equal internal key one
// entry at a time, as Next does.
func TestMemtableDuplicatePrev(t *testing.T) {
	m := NewMemtable(64 << 10)
	for _, v := range []string{"a", "b", "c"} {
		if err := m.Add(7, KindSet, []byte("k"), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	it := m.NewIter()
	var got string
	for ok := it.Last(); ok; ok = it.Prev() {
		got += string(it.Value())
	}
	var fwd string
	for ok := it.First(); ok; ok = it.Next() {
		fwd += string(it.Value())
	}
	if fwd != "cba" || got != "abc" {
		t.Fatalf("forward %q backward %q, want cba and abc", fwd, got)
	}
}

// An Inserter builds, byte for byte, the arena that Add one at a time
// builds: same towers, same links, same offsets. Random keys with many
// duplicates and repeated internal keys, in groups cut at random, and
// (every other round) mostly ascending keys, which Add places from its
// splice rather than by a search.
func TestInserterMatchesAdd(t *testing.T) {
	rng := memTestRand(t)
	for iter := range 20 {
		a, g := NewMemtable(1<<20), NewMemtable(1<<20)
		in := g.NewInserter()
		nkeys := 1 + rng.Intn(2000)
		next := 0
		for i := range 3000 {
			k := fmt.Appendf(nil, "k%05d", rng.Intn(nkeys))
			if iter%2 == 1 && rng.Intn(4) != 0 {
				// Runs of ascending keys, which Add places from its
				// splice: the arena must not tell.
				next += rng.Intn(3)
				k = fmt.Appendf(nil, "k%05d", next)
			}
			seq := SeqNum(1 + i)
			if rng.Intn(20) == 0 {
				seq = SeqNum(1 + rng.Intn(i+1)) // an internal key seen before
			}
			v := bytes.Repeat([]byte{byte(i)}, rng.Intn(40))
			if err := a.Add(seq, KindSet, k, v); err != nil {
				t.Fatal(err)
			}
			if err := in.Add(seq, KindSet, k, v); err != nil {
				t.Fatal(err)
			}
			if rng.Intn(10) == 0 {
				if err := in.Flush(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := in.Flush(); err != nil {
			t.Fatal(err)
		}
		if a.Len() != g.Len() || a.Size() != g.Size() || !bytes.Equal(a.list.buf, g.list.buf) || a.list.height.Load() != g.list.height.Load() {
			t.Fatalf("iter %d: the arenas differ (len %d vs %d, size %d vs %d)", iter, a.Len(), g.Len(), a.Size(), g.Size())
		}
	}
}

// A group that does not fit inserts nothing, and the memtable stays usable.
func TestInserterFull(t *testing.T) {
	m := NewMemtable(4096)
	in := m.NewInserter()
	v := make([]byte, 600)
	var err error
	added := 0
	for i := 0; err == nil; i++ {
		err = in.Add(SeqNum(i+1), KindSet, fmt.Appendf(nil, "k%03d", i), v)
		if err == nil && (i+1)%groupSize == 0 {
			added = i + 1
		}
	}
	if !errors.Is(err, ErrMemtableFull) {
		t.Fatalf("err %v, want ErrMemtableFull", err)
	}
	if m.Len() != added {
		t.Fatalf("%d entries after a refused group, want %d", m.Len(), added)
	}
	if err := m.Add(SeqNum(1000), KindSet, []byte("small"), nil); err != nil {
		t.Fatalf("Add after a refused group: %v", err)
	}
}

// Recycle hands the arena over once the owner and every open iterator
// have let go, and a memtable built in the recycled (dirty) arena reads
// exactly like one built in a fresh arena.
func TestMemtableRecycle(t *testing.T) {
	rng := memTestRand(t)
	const size = 1 << 20
	var got []uint64
	give := func(a []uint64) { got = a }

	m := NewMemtable(size)
	m.Recycle(give)
	if got == nil {
		t.Fatal("an unused memtable's arena was not handed over")
	}

	fill := func(m *Memtable, seed int) {
		for i := range 4000 {
			k := fmt.Appendf(nil, "k%06d", (i*7919+seed)%5000)
			if err := m.Add(SeqNum(i+1), KindSet, k, bytes.Repeat([]byte{byte(i)}, rng.Intn(30))); err != nil {
				return
			}
		}
	}
	m = NewMemtableIn(size, got)
	fill(m, 1) // dirty the arena
	it := m.NewIter()
	it2 := m.NewIter()
	got = nil
	m.Recycle(give)
	it.Close()
	if got != nil {
		t.Fatal("the arena was handed over while an iterator was open")
	}
	it.Close() // a second Close lets go of nothing more
	if got != nil {
		t.Fatal("a second Close of one iterator handed the arena over")
	}
	it2.Close()
	if got == nil {
		t.Fatal("the arena was not handed over after the last iterator closed")
	}

	// The same entries into the dirty arena and into a fresh one.
	r1, r2 := NewMemtableIn(size, got), NewMemtable(size)
	state := rng.Int63()
	for _, m := range []*Memtable{r1, r2} {
		r := rand.New(rand.NewSource(state))
		for i := range 6000 {
			k := fmt.Appendf(nil, "key%05d", r.Intn(3000))
			if err := m.Add(SeqNum(i+1), KindSet, k, bytes.Repeat([]byte{byte(i)}, r.Intn(40))); err != nil {
				break
			}
		}
	}
	a, b := r1.NewIter(), r2.NewIter()
	n := 0
	for ok1, ok2 := a.First(), b.First(); ok1 || ok2; ok1, ok2 = a.Next(), b.Next() {
		if ok1 != ok2 || !bytes.Equal(a.Key(), b.Key()) || !bytes.Equal(a.Value(), b.Value()) {
			t.Fatalf("entry %d differs between the recycled and the fresh arena", n)
		}
		n++
	}
	if n == 0 || r1.Len() != r2.Len() || r1.Size() != r2.Size() {
		t.Fatalf("%d entries; len %d/%d, size %d/%d", n, r1.Len(), r2.Len(), r1.Size(), r2.Size())
	}
	a.Close()
	b.Close()
}

package lsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
)

// testEntry is one internal entry of the read-path tests.
type testEntry struct {
	ukey  string
	seq   SeqNum
	kind  Kind
	value string
}

func (e testEntry) ikey() []byte { return MakeInternalKey([]byte(e.ukey), e.seq, e.kind) }

func sortEntries(es []testEntry) {
	slices.SortFunc(es, func(a, b testEntry) int { return CompareInternal(a.ikey(), b.ikey()) })
}

// writeTestTable writes entries (any order) as table num in dir and returns
// its metadata.
func writeTestTable(t testing.TB, fs vfs.FS, dir string, num layout.FileNum, entries []testEntry) *FileMeta {
	t.Helper()
	entries = slices.Clone(entries)
	sortEntries(entries)
	f, err := fs.Create(layout.Path(dir, layout.TypeTable, num))
	if err != nil {
		t.Fatal(err)
	}
	w := NewTableWriter(f, TableWriterOptions{BlockSize: 256})
	for _, e := range entries {
		if err := w.Add(e.ikey(), []byte(e.value)); err != nil {
			t.Fatal(err)
		}
	}
	props, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return &FileMeta{
		Num: num, Size: props.FileSize,
		Smallest: props.Smallest, Largest: props.Largest,
		SmallestSeq: props.SmallestSeq, LargestSeq: props.LargestSeq,
		NumEntries: props.NumEntries, NumDeletions: props.NumDeletions,
	}
}

// readTree is a Version over real tables plus every entry it holds.
type readTree struct {
	fs      vfs.FS
	v       *Version
	entries []testEntry // all entries, sorted
	levels  [NumLevels][]testEntry
}

// buildReadTree writes a random tree: an old bottom level, middle levels of
// non-overlapping tables, and overlapping L0 tables with the newest data.
// Deeper levels hold older sequence numbers, as compaction guarantees.
func buildReadTree(t testing.TB, rng *rand.Rand, keys int) *readTree {
	t.Helper()
	tr := &readTree{fs: vfs.NewMem(), v: &Version{}}
	if err := tr.fs.MkdirAll("db"); err != nil {
		t.Fatal(err)
	}
	num := layout.FileNum(10)
	seq := SeqNum(1)
	ukey := func(i int) string { return fmt.Sprintf("key%05d", i) }
	entry := func(k string) testEntry {
		seq++
		e := testEntry{ukey: k, seq: seq, kind: KindSet, value: fmt.Sprintf("%s@%d", k, seq)}
		switch rng.IntN(8) {
		case 0:
			e.kind, e.value = KindDelete, ""
		case 1:
			e.kind = KindMerge
		}
		return e
	}
	// Levels 6, 3, 1: each a run of tables over disjoint key ranges, a
	// random subset of the keys, possibly several versions per key.
	for _, level := range []int{6, 3, 1} {
		var run []testEntry
		for i := range keys {
			if rng.IntN(3) == 0 {
				continue
			}
			for range 1 + rng.IntN(2) {
				run = append(run, entry(ukey(i)))
			}
		}
		sortEntries(run)
		for len(run) > 0 {
			n := min(len(run), 1+rng.IntN(60))
			// Never split one user key across two tables of a level.
			for n < len(run) && run[n].ukey == run[n-1].ukey {
				n++
			}
			num++
			tr.v.Levels[level] = append(tr.v.Levels[level], writeTestTable(t, tr.fs, "db", num, run[:n]))
			tr.levels[level] = append(tr.levels[level], run[:n]...)
			run = run[n:]
		}
	}
	// L0: overlapping tables, each newer than the last; newest first.
	for range 4 {
		var tab []testEntry
		lo := rng.IntN(keys)
		for i := lo; i < min(keys, lo+keys/3); i++ {
			if rng.IntN(4) == 0 {
				tab = append(tab, entry(ukey(i)))
			}
		}
		if len(tab) == 0 {
			continue
		}
		num++
		tr.v.Levels[0] = append([]*FileMeta{writeTestTable(t, tr.fs, "db", num, tab)}, tr.v.Levels[0]...)
		tr.levels[0] = append(tr.levels[0], tab...)
	}
	for _, l := range tr.levels {
		tr.entries = append(tr.entries, l...)
	}
	sortEntries(tr.entries)
	return tr
}

// want returns the newest entry for ukey at snap.
func (tr *readTree) want(ukey string, snap SeqNum) (testEntry, bool) {
	for _, e := range tr.entries { // sorted newest first within a key
		if e.ukey == ukey && e.seq <= snap {
			return e, true
		}
	}
	return testEntry{}, false
}

func TestVersionGet(t *testing.T) {
	rng := newVersionRand(t)
	tr := buildReadTree(t, rng, 300)
	tc := NewTableCache(tr.fs, "db", NewBlockCache(1<<20), 8)
	defer tc.Close()
	maxSeq := tr.entries[0].seq
	for _, e := range tr.entries {
		maxSeq = max(maxSeq, e.seq)
	}
	for range 5000 {
		ukey := fmt.Sprintf("key%05d", rng.IntN(310))
		if rng.IntN(10) == 0 {
			ukey += "x" // between keys
		}
		snap := MaxSeqNum
		if rng.IntN(2) == 0 {
			snap = SeqNum(rng.Uint64N(uint64(maxSeq) + 2))
		}
		value, kind, seq, found, err := tr.v.Get(tc, []byte(ukey), snap)
		if err != nil {
			t.Fatal(err)
		}
		w, ok := tr.want(ukey, snap)
		if found != ok {
			t.Fatalf("Get(%s, %d): found %v, want %v", ukey, snap, found, ok)
		}
		if found && (kind != w.kind || seq != w.seq || string(value) != w.value) {
			t.Fatalf("Get(%s, %d) = %s %d %q, want %s %d %q", ukey, snap, kind, seq, value, w.kind, w.seq, w.value)
		}
	}
}

// TestVersionGetSkipsTables checks that Get opens no table whose key range
// or sequence range rules it out.
func TestVersionGetSkipsTables(t *testing.T) {
	mem := vfs.NewMem()
	mem.MkdirAll("db")
	v := &Version{}
	v.Levels[0] = []*FileMeta{writeTestTable(t, mem, "db", 3, []testEntry{{"m", 20, KindSet, "new"}})}
	v.Levels[1] = []*FileMeta{
		writeTestTable(t, mem, "db", 1, []testEntry{{"a", 1, KindSet, "a1"}, {"c", 2, KindSet, "c2"}}),
		writeTestTable(t, mem, "db", 2, []testEntry{{"m", 3, KindSet, "old"}, {"p", 4, KindSet, "p4"}}),
	}
	var opened []string
	fs := vfs.WithFaults(mem, func(op vfs.Op, path string) error {
		if op == vfs.OpOpen {
			opened = append(opened, path)
		}
		return nil
	})
	tc := NewTableCache(fs, "db", nil, 0)
	defer tc.Close()
	get := func(k string, snap SeqNum) string {
		opened = nil
		value, _, _, found, err := v.Get(tc, []byte(k), snap)
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			return "<none>"
		}
		return string(value)
	}
	if got := get("b", MaxSeqNum); got != "<none>" || !reflect.DeepEqual(opened, []string{"db/000001.sst"}) {
		t.Fatalf("Get(b) = %s, opened %v", got, opened)
	}
	if got := get("z", MaxSeqNum); got != "<none>" || len(opened) != 0 {
		t.Fatalf("Get(z) = %s, opened %v", got, opened)
	}
	if got := get("m", MaxSeqNum); got != "new" || !reflect.DeepEqual(opened, []string{"db/000003.sst"}) {
		t.Fatalf("Get(m) = %s, opened %v", got, opened)
	}
	// At snapshot 10 every entry of the L0 table (seqs 20..20) is too new:
	// it is not opened.
	tc.Evict(3)
	if got := get("m", 10); got != "old" || !reflect.DeepEqual(opened, []string{"db/000002.sst"}) {
		t.Fatalf("Get(m@10) = %s, opened %v", got, opened)
	}
}

func TestVersionNewIters(t *testing.T) {
	rng := newVersionRand(t)
	tr := buildReadTree(t, rng, 200)
	tc := NewTableCache(tr.fs, "db", NewBlockCache(1<<20), 4)
	defer tc.Close()
	tr.v.Ref() // as if held by a VersionSet
	iters, err := tr.v.NewIters(tc)
	if err != nil {
		t.Fatal(err)
	}
	nonEmpty := 0
	for level := 1; level < NumLevels; level++ {
		if len(tr.v.Levels[level]) > 0 {
			nonEmpty++
		}
	}
	if want := len(tr.v.Levels[0]) + nonEmpty; len(iters) != want {
		t.Fatalf("%d iterators, want %d", len(iters), want)
	}
	tr.v.Unref() // the iterators hold their own references
	var got []testEntry
	for _, it := range iters {
		for ok := it.First(); ok; ok = it.Next() {
			ukey, seq, kind, _ := SplitInternalKey(it.Key())
			got = append(got, testEntry{string(ukey), seq, kind, string(it.Value())})
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if tr.v.refs.Load() != 0 {
		t.Fatalf("version refs %d after closing every iterator", tr.v.refs.Load())
	}
	sortEntries(got)
	if !reflect.DeepEqual(got, tr.entries) {
		t.Fatalf("iterators yield %d entries, want %d", len(got), len(tr.entries))
	}
	// The L0 iterators come newest first.
	for i := 1; i < len(tr.v.Levels[0]); i++ {
		if tr.v.Levels[0][i-1].LargestSeq < tr.v.Levels[0][i].LargestSeq {
			t.Fatal("L0 not newest first")
		}
	}
}

func TestVersionOverlaps(t *testing.T) {
	v := &Version{}
	v.Levels[0] = []*FileMeta{
		meta(1, "a", "c", 30, 40), meta(2, "b", "f", 20, 29), meta(3, "e", "h", 10, 19), meta(4, "x", "z", 1, 9),
	}
	v.Levels[1] = []*FileMeta{meta(5, "a", "b", 1, 1), meta(6, "d", "f", 1, 1), meta(7, "h", "k", 1, 1), meta(8, "m", "p", 1, 1)}
	nums := func(fs []*FileMeta) []layout.FileNum {
		var out []layout.FileNum
		for _, f := range fs {
			out = append(out, f.Num)
		}
		return out
	}
	b := func(s string) []byte {
		if s == "" {
			return nil
		}
		return []byte(s)
	}
	cases := []struct {
		level  int
		lo, hi string
		want   []layout.FileNum
	}{
		{1, "c", "c", nil},
		{1, "b", "d", []layout.FileNum{5, 6}},
		{1, "f", "h", []layout.FileNum{6, 7}},
		{1, "g", "g", nil},
		{1, "", "e", []layout.FileNum{5, 6}},
		{1, "k", "", []layout.FileNum{7, 8}},
		{1, "", "", []layout.FileNum{5, 6, 7, 8}},
		{1, "q", "", nil},
		{2, "", "", nil},
		// L0 grows the range: a..c meets 1, which meets 2 (b..f), which
		// meets 3 (e..h).
		{0, "a", "a", []layout.FileNum{1, 2, 3}},
		{0, "g", "g", []layout.FileNum{1, 2, 3}},
		{0, "y", "", []layout.FileNum{4}},
		{0, "i", "w", nil},
	}
	for _, c := range cases {
		if got := nums(v.Overlaps(c.level, b(c.lo), b(c.hi))); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Overlaps(L%d, %q, %q) = %v, want %v", c.level, c.lo, c.hi, got, c.want)
		}
	}
	if v.NumFiles(1) != 4 || v.LevelSize(1) != 500+600+700+800 {
		t.Fatalf("NumFiles/LevelSize: %d %d", v.NumFiles(1), v.LevelSize(1))
	}
}

func BenchmarkVersionGet(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	tr := buildReadTree(b, rng, 2000)
	tc := NewTableCache(tr.fs, "db", NewBlockCache(64<<20), 0)
	defer tc.Close()
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key%05d", rng.IntN(2000)))
	}
	var sink []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		v, _, _, _, err := tr.v.Get(tc, keys[i&1023], MaxSeqNum)
		if err != nil {
			b.Fatal(err)
		}
		sink = v
	}
	_ = bytes.Clone(sink)
}

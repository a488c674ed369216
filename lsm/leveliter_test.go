package lsm

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
)

func collect(t *testing.T, it InternalIterator, ok bool) []testEntry {
	t.Helper()
	var out []testEntry
	for ; ok; ok = it.Next() {
		if !it.Valid() {
			t.Fatal("positioned iterator not Valid")
		}
		ukey, seq, kind, _ := SplitInternalKey(it.Key())
		out = append(out, testEntry{string(ukey), seq, kind, string(it.Value())})
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLevelIter(t *testing.T) {
	rng := newVersionRand(t)
	tr := buildReadTree(t, rng, 400)
	fs := newCountingFS(tr.fs)
	tc := NewTableCache(fs, "db", NewBlockCache(1<<20), 2)
	defer tc.Close()
	for _, level := range []int{1, 3, 6} {
		files := tr.v.Levels[level]
		want := slices.Clone(tr.levels[level])
		sortEntries(want)
		if len(files) < 3 {
			t.Fatalf("level %d has only %d tables", level, len(files))
		}
		it := NewLevelIter(tc, files)
		if got := collect(t, it, it.First()); !slices.Equal(got, want) {
			t.Fatalf("L%d: First..Next gives %d entries, want %d", level, len(got), len(want))
		}
		// A finished scan holds no table.
		if n := fs.openNow(); n > 2 {
			t.Fatalf("%d tables open after a scan with room for 2", n)
		}
		for range 300 {
			var target []byte
			switch rng.IntN(4) {
			case 0: // an existing entry
				target = want[rng.IntN(len(want))].ikey()
			case 1: // an existing key at a random snapshot
				e := want[rng.IntN(len(want))]
				target = MakeInternalKey([]byte(e.ukey), SeqNum(rng.Uint64N(uint64(e.seq)+5)), KindMax)
			case 2: // between keys, or past the end
				target = MakeInternalKey([]byte(fmt.Sprintf("key%05dx", rng.IntN(420))), MaxSeqNum, KindMax)
			default: // before everything
				target = MakeInternalKey([]byte("a"), MaxSeqNum, KindMax)
			}
			i, _ := slices.BinarySearchFunc(want, target, func(e testEntry, k []byte) int { return CompareInternal(e.ikey(), k) })
			ok := it.SeekGE(target)
			if ok != (i < len(want)) {
				t.Fatalf("SeekGE(%q) = %v, want %v", target, ok, i < len(want))
			}
			if !ok {
				continue
			}
			if !bytes.Equal(it.Key(), want[i].ikey()) {
				t.Fatalf("SeekGE(%q) at %q, want %q", target, it.Key(), want[i].ikey())
			}
			// A few Nexts, crossing tables.
			for j := i + 1; j < min(len(want), i+40); j++ {
				if !it.Next() || !bytes.Equal(it.Key(), want[j].ikey()) {
					t.Fatalf("Next after SeekGE(%q): entry %d wrong", target, j-i)
				}
			}
		}
		var keys, vals [][]byte
		for _, e := range want {
			keys, vals = append(keys, e.ikey()), append(vals, []byte(e.value))
		}
		checkRandomWalk(t, it, keys, vals, 2000, rng.IntN, func() []byte {
			switch rng.IntN(4) {
			case 0:
				return want[rng.IntN(len(want))].ikey()
			case 1:
				e := want[rng.IntN(len(want))]
				return MakeInternalKey([]byte(e.ukey), SeqNum(rng.Uint64N(uint64(e.seq)+5)), KindMax)
			case 2:
				return MakeInternalKey([]byte(fmt.Sprintf("key%05dx", rng.IntN(420))), MaxSeqNum, KindMax)
			}
			return MakeInternalKey([]byte("a"), MaxSeqNum, KindMax)
		})
		if n := fs.openNow(); n > 2 {
			t.Fatalf("%d tables open after a random walk with room for 2", n)
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := fs.openNow(); n > 2 {
		t.Fatalf("%d tables open after Close, max 2", n)
	}
	empty := NewLevelIter(tc, nil)
	if empty.First() || empty.SeekGE(MakeInternalKey([]byte("a"), 1, KindSet)) || empty.Last() ||
		empty.SeekLT(MakeInternalKey([]byte("a"), 1, KindSet)) || empty.Valid() || empty.Close() != nil {
		t.Fatal("empty level iterator not empty")
	}
}

// TestLevelIterOpenError: a table that cannot be opened stops the walk with
// the error.
func TestLevelIterOpenError(t *testing.T) {
	mem := vfs.NewMem()
	mem.MkdirAll("db")
	a := writeTestTable(t, mem, "db", 1, []testEntry{{"a", 1, KindSet, "va"}})
	b := writeTestTable(t, mem, "db", 2, []testEntry{{"b", 1, KindSet, "vb"}})
	c := writeTestTable(t, mem, "db", 3, []testEntry{{"c", 1, KindSet, "vc"}})
	// Damage table 2's footer.
	f, _ := mem.OpenReadWrite(layout.Path("db", layout.TypeTable, 2))
	size, _ := f.Size()
	f.Truncate(size - 3)
	f.Close()
	tc := NewTableCache(mem, "db", nil, 0)
	defer tc.Close()
	it := NewLevelIter(tc, []*FileMeta{a, b, c})
	if !it.First() || string(it.Value()) != "va" {
		t.Fatal("First did not reach table 1")
	}
	if it.Next() || it.Valid() {
		t.Fatal("Next moved past a damaged table")
	}
	if !errors.Is(it.Err(), errs.ErrCorruption) {
		t.Fatalf("Err = %v, want ErrCorruption", it.Err())
	}
	if !it.SeekGE(MakeInternalKey([]byte("c"), MaxSeqNum, KindMax)) || string(it.Value()) != "vc" {
		t.Fatal("SeekGE past the damaged table failed")
	}
	if err := it.Close(); err != nil {
		t.Fatalf("Close after a good SeekGE: %v", err)
	}
}

func BenchmarkLevelIterNext(b *testing.B) {
	mem := vfs.NewMem()
	mem.MkdirAll("db")
	var files []*FileMeta
	for n := range 8 {
		var es []testEntry
		for i := range 500 {
			es = append(es, testEntry{fmt.Sprintf("k%02d-%04d", n, i), 1, KindSet, "value-value-value"})
		}
		files = append(files, writeTestTable(b, mem, "db", layout.FileNum(n+1), es))
	}
	tc := NewTableCache(mem, "db", NewBlockCache(64<<20), 0)
	defer tc.Close()
	it := NewLevelIter(tc, files)
	defer it.Close()
	it.First()
	b.ReportAllocs()
	for b.Loop() {
		if !it.Next() {
			it.First()
		}
	}
}

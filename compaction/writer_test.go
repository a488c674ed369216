package compaction

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
)

// sliceIter is an lsm.InternalIterator over sorted entries.
type sliceIter struct {
	keys, vals [][]byte
	i          int
}

func (s *sliceIter) First() bool { s.i = 0; return s.Valid() }
func (s *sliceIter) SeekGE(k []byte) bool {
	s.i, _ = slices.BinarySearchFunc(s.keys, k, lsm.CompareInternal)
	return s.Valid()
}
func (s *sliceIter) Next() bool { s.i++; return s.Valid() }
func (s *sliceIter) Last() bool { s.i = len(s.keys) - 1; return s.Valid() }
func (s *sliceIter) SeekLT(k []byte) bool {
	i, _ := slices.BinarySearchFunc(s.keys, k, lsm.CompareInternal)
	s.i = i - 1
	return s.Valid()
}
func (s *sliceIter) Prev() bool {
	if !s.Valid() {
		return false
	}
	s.i--
	return s.Valid()
}
func (s *sliceIter) Valid() bool   { return s.i >= 0 && s.i < len(s.keys) }
func (s *sliceIter) Key() []byte   { return s.keys[s.i] }
func (s *sliceIter) Value() []byte { return s.vals[s.i] }
func (s *sliceIter) Err() error    { return nil }
func (s *sliceIter) Close() error  { return nil }

type entry struct {
	key  string
	seq  lsm.SeqNum
	kind lsm.Kind
	val  string
}

func iterOf(es []entry) *sliceIter {
	it := &sliceIter{}
	for _, e := range es {
		it.keys = append(it.keys, lsm.MakeInternalKey([]byte(e.key), e.seq, e.kind))
		it.vals = append(it.vals, []byte(e.val))
	}
	// Sort into internal-key order, as a merged input would be.
	idx := make([]int, len(it.keys))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return lsm.CompareInternal(it.keys[a], it.keys[b]) })
	sorted := &sliceIter{}
	for _, i := range idx {
		sorted.keys = append(sorted.keys, it.keys[i])
		sorted.vals = append(sorted.vals, it.vals[i])
	}
	return sorted
}

func testEnv(fs vfs.FS, target uint64) Env {
	var next layout.FileNum = 10
	return Env{
		FS: fs, Dir: "/db",
		NewFileNum:     func() layout.FileNum { next++; return next },
		TableOpts:      lsm.TableWriterOptions{Compression: lsm.CompressionS2},
		TargetFileSize: target,
	}
}

// readAll returns every entry of the written tables, in order.
func readAll(t *testing.T, fs vfs.FS, metas []*lsm.FileMeta) []entry {
	t.Helper()
	var out []entry
	for _, m := range metas {
		f, err := fs.Open(layout.Path("/db", layout.TypeTable, m.Num))
		if err != nil {
			t.Fatal(err)
		}
		tb, err := lsm.OpenTable(f, "t", m.Num, nil)
		if err != nil {
			t.Fatal(err)
		}
		it := tb.NewIter()
		for ok := it.First(); ok; ok = it.Next() {
			uk, seq, kind, _ := lsm.SplitInternalKey(it.Key())
			out = append(out, entry{string(uk), seq, kind, string(it.Value())})
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}
		tb.Close()
	}
	return out
}

func TestWriteDropRules(t *testing.T) {
	S, D, M := lsm.KindSet, lsm.KindDelete, lsm.KindMerge
	in := []entry{
		{"a", 9, S, "a9"}, {"a", 7, S, "a7"}, {"a", 3, S, "a3"},
		{"b", 8, D, ""}, {"b", 2, S, "b2"},
		{"c", 6, M, "c6"}, {"c", 5, M, "c5"}, {"c", 4, S, "c4"}, {"c", 1, S, "c1"},
		{"d", 2, D, ""},
	}
	cases := []struct {
		name       string
		snaps      []lsm.SeqNum
		bottommost bool
		want       []entry
	}{
		{"no snapshots, not bottom", nil, false, []entry{
			{"a", 9, S, "a9"}, {"b", 8, D, ""}, {"c", 6, M, "c6"}, {"c", 5, M, "c5"}, {"c", 4, S, "c4"}, {"d", 2, D, ""},
		}},
		{"no snapshots, bottom: tombstones go", nil, true, []entry{
			{"a", 9, S, "a9"}, {"c", 6, M, "c6"}, {"c", 5, M, "c5"}, {"c", 4, S, "c4"},
		}},
		{"snapshot at 7 keeps a7 and b2", []lsm.SeqNum{7}, true, []entry{
			{"a", 9, S, "a9"}, {"a", 7, S, "a7"}, {"b", 8, D, ""}, {"b", 2, S, "b2"},
			{"c", 6, M, "c6"}, {"c", 5, M, "c5"}, {"c", 4, S, "c4"},
		}},
		{"snapshots at 3 and 5", []lsm.SeqNum{5, 3}, false, []entry{
			{"a", 9, S, "a9"}, {"a", 3, S, "a3"}, {"b", 8, D, ""}, {"b", 2, S, "b2"},
			{"c", 6, M, "c6"}, {"c", 5, M, "c5"}, {"c", 4, S, "c4"}, {"c", 1, S, "c1"}, {"d", 2, D, ""},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := vfs.NewMem()
			fs.MkdirAll("/db")
			metas, st, err := Write(testEnv(fs, 0), iterOf(in), WriteSpec{Snapshots: c.snaps, Bottommost: c.bottommost})
			if err != nil {
				t.Fatal(err)
			}
			got := readAll(t, fs, metas)
			if !slices.Equal(got, c.want) {
				t.Fatalf("got  %v\nwant %v", got, c.want)
			}
			if st.EntriesIn != uint64(len(in)) || st.EntriesOut != uint64(len(c.want)) || st.Dropped != st.EntriesIn-st.EntriesOut {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestWriteSplitsOnUserKeys(t *testing.T) {
	fs := vfs.NewMem()
	fs.MkdirAll("/db")
	var in []entry
	val := string(bytes.Repeat([]byte{'v'}, 200))
	for i := range 2000 {
		k := fmt.Sprintf("key%05d", i)
		// Several live versions per key, held by snapshots.
		for s := range 3 {
			in = append(in, entry{k, lsm.SeqNum(10000 - 3*i - s), lsm.KindSet, val})
		}
	}
	snaps := []lsm.SeqNum{1, 2, 3}
	for i := 0; i < 10000; i++ {
		snaps = append(snaps, lsm.SeqNum(i))
	}
	metas, _, err := Write(testEnv(fs, 16<<10), iterOf(in), WriteSpec{Snapshots: snaps})
	if err != nil {
		t.Fatal(err)
	}
	if len(metas) < 5 {
		t.Fatalf("%d tables for ~1 MiB at a 16 KiB target", len(metas))
	}
	for i := 1; i < len(metas); i++ {
		prev, cur := lsm.UserKey(metas[i-1].Largest), lsm.UserKey(metas[i].Smallest)
		if bytes.Compare(prev, cur) >= 0 {
			t.Fatalf("tables %d and %d share or overlap user keys: %q, %q", i-1, i, prev, cur)
		}
	}
	if got := readAll(t, fs, metas); len(got) != len(in) {
		t.Fatalf("read back %d entries, wrote %d", len(got), len(in))
	}
	// Every output is durable: a crash keeps them all.
	crashed := fs.CrashClone()
	for _, m := range metas {
		if _, err := crashed.Stat(layout.Path("/db", layout.TypeTable, m.Num)); err != nil {
			t.Fatalf("table %s lost in a crash: %v", m.Num, err)
		}
	}
}

func TestWriteFailureRemovesOutputs(t *testing.T) {
	mem := vfs.NewMem()
	mem.MkdirAll("/db")
	fs := vfs.WithFaults(mem, vfs.FailOn([]vfs.Op{vfs.OpSync}, ".sst", vfs.ErrInjected))
	var in []entry
	for i := range 100 {
		in = append(in, entry{fmt.Sprintf("k%03d", i), lsm.SeqNum(i + 1), lsm.KindSet, "v"})
	}
	if _, _, err := Write(testEnv(fs, 0), iterOf(in), WriteSpec{}); err == nil {
		t.Fatal("write with failing sync succeeded")
	}
	names, _ := mem.List("/db")
	if len(names) != 0 {
		t.Fatalf("left files behind: %v", names)
	}
}

// concatMerger joins operands onto the base with '+'.
type concatMerger struct{}

func (concatMerger) Merge(key []byte, ops [][]byte, base []byte, hasBase bool) ([]byte, error) {
	out := "nil"
	if hasBase {
		out = string(base)
	}
	for _, op := range ops {
		out += "+" + string(op)
	}
	return []byte(out), nil
}

func TestWriteFoldsMerges(t *testing.T) {
	S, D, M := lsm.KindSet, lsm.KindDelete, lsm.KindMerge
	in := []entry{
		{"a", 9, M, "3"}, {"a", 8, M, "2"}, {"a", 7, S, "1"}, {"a", 2, S, "old"},
		{"b", 9, M, "x"}, {"b", 5, D, ""}, {"b", 1, S, "gone"},
		{"c", 9, M, "y"}, {"c", 4, M, "z"},
		{"d", 9, M, "p"}, {"d", 3, S, "q"},
	}
	cases := []struct {
		name       string
		snaps      []lsm.SeqNum
		bottommost bool
		horizon    lsm.SeqNum
		want       []entry
	}{
		{"fold onto bases", nil, false, 0, []entry{
			{"a", 9, S, "1+2+3"}, {"b", 9, S, "nil+x"}, {"c", 9, M, "y"}, {"c", 4, M, "z"}, {"d", 9, S, "q+p"},
		}},
		{"bottom folds onto nothing", nil, true, 0, []entry{
			{"a", 9, S, "1+2+3"}, {"b", 9, S, "nil+x"}, {"c", 9, S, "nil+z+y"}, {"d", 9, S, "q+p"},
		}},
		{"a snapshot between operand and base keeps both", []lsm.SeqNum{5}, true, 0, []entry{
			// b's tombstone is in the lowest stripe at the bottom: it goes,
			// and the snapshot at 5 still reads b as absent.
			{"a", 9, S, "1+2+3"}, {"a", 2, S, "old"}, {"b", 9, M, "x"},
			{"c", 9, M, "y"}, {"c", 4, S, "nil+z"}, {"d", 9, M, "p"}, {"d", 3, S, "q"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := vfs.NewMem()
			fs.MkdirAll("/db")
			metas, _, err := Write(testEnv(fs, 0), iterOf(in), WriteSpec{
				Snapshots: c.snaps, Bottommost: c.bottommost, GCHorizon: c.horizon, Merger: concatMerger{},
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, fs, metas); !slices.Equal(got, c.want) {
				t.Fatalf("got  %v\nwant %v", got, c.want)
			}
		})
	}
}

func TestWriteGCHorizonKeepsTombstones(t *testing.T) {
	in := []entry{{"a", 9, lsm.KindDelete, ""}, {"a", 3, lsm.KindSet, "v"}, {"b", 2, lsm.KindDelete, ""}}
	fs := vfs.NewMem()
	fs.MkdirAll("/db")
	metas, _, err := Write(testEnv(fs, 0), iterOf(in), WriteSpec{Bottommost: true, GCHorizon: 5})
	if err != nil {
		t.Fatal(err)
	}
	want := []entry{{"a", 9, lsm.KindDelete, ""}}
	if got := readAll(t, fs, metas); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

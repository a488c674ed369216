package lsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
)

var sstSeed = flag.Uint64("sstseed", 1, "seed for the sstable randomized tests")

func sstRand(t testing.TB) *rand.Rand {
	t.Helper()
	t.Logf("seed %d (rerun with -sstseed=%d)", *sstSeed, *sstSeed)
	return rand.New(rand.NewPCG(*sstSeed, 0x5eed))
}

type sstEntry struct {
	ikey, value []byte
}

// sstGenEntries returns n sorted, distinct entries: user keys with shared
// prefixes and varied lengths, 1-3 versions each, some tombstones and merges.
func sstGenEntries(rng *rand.Rand, n int) []sstEntry {
	seen := map[string]bool{}
	var es []sstEntry
	seq := SeqNum(1)
	for len(es) < n {
		var uk []byte
		switch rng.IntN(3) {
		case 0:
			uk = fmt.Appendf(nil, "key%08d", rng.IntN(1<<20))
		case 1:
			uk = fmt.Appendf(nil, "user/%d/doc/%d", rng.IntN(50), rng.IntN(1000))
		default:
			uk = make([]byte, 1+rng.IntN(24))
			for i := range uk {
				uk[i] = byte(rng.IntN(256))
			}
		}
		if seen[string(uk)] {
			continue
		}
		seen[string(uk)] = true
		versions := 1 + rng.IntN(3)
		for v := 0; v < versions && len(es) < n; v++ {
			seq += SeqNum(1 + rng.IntN(5))
			kind := KindSet
			switch rng.IntN(8) {
			case 0:
				kind = KindDelete
			case 1:
				kind = KindMerge
			}
			var val []byte
			if kind != KindDelete {
				val = make([]byte, rng.IntN(200))
				// Half-compressible values so codecs have work to do.
				for i := range val {
					if i%2 == 0 {
						val[i] = byte(rng.IntN(256))
					} else {
						val[i] = 'x'
					}
				}
			}
			es = append(es, sstEntry{MakeInternalKey(uk, seq, kind), val})
		}
	}
	sort.Slice(es, func(i, j int) bool { return CompareInternal(es[i].ikey, es[j].ikey) < 0 })
	return es
}

func sstWrite(t testing.TB, fs vfs.FS, name string, es []sstEntry, opts TableWriterOptions) TableProps {
	t.Helper()
	f, err := fs.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	w := NewTableWriter(f, opts)
	for _, e := range es {
		if err := w.Add(e.ikey, e.value); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	props, err := w.Finish()
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return props
}

func sstOpen(t testing.TB, fs vfs.FS, name string, num layout.FileNum, cache *BlockCache) *Table {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := OpenTable(f, name, num, cache)
	if err != nil {
		t.Fatalf("OpenTable: %v", err)
	}
	return tbl
}

// sstModelGet is the reference for Table.Get: es is sorted, so the answer
// is the first entry at or after (ukey, snap, KindMax), if it is for ukey.
func sstModelGet(es []sstEntry, ukey []byte, snap SeqNum) (sstEntry, bool) {
	target := MakeInternalKey(ukey, min(snap, MaxSeqNum), KindMax)
	i := sort.Search(len(es), func(i int) bool { return CompareInternal(es[i].ikey, target) >= 0 })
	if i == len(es) || !bytes.Equal(UserKey(es[i].ikey), ukey) {
		return sstEntry{}, false
	}
	return es[i], true
}

func sstCheckIter(t *testing.T, it InternalIterator, ok bool, want []sstEntry) {
	t.Helper()
	for i, e := range want {
		if !ok || !it.Valid() {
			t.Fatalf("iterator ended at entry %d of %d (err %v)", i, len(want), it.Err())
		}
		if !bytes.Equal(it.Key(), e.ikey) || !bytes.Equal(it.Value(), e.value) {
			t.Fatalf("entry %d: got %x=%x want %x=%x", i, it.Key(), it.Value(), e.ikey, e.value)
		}
		ok = it.Next()
	}
	if ok || it.Valid() {
		t.Fatalf("iterator has more than %d entries: %x", len(want), it.Key())
	}
	if it.Err() != nil {
		t.Fatal(it.Err())
	}
}

func TestTableRoundTrip(t *testing.T) {
	rng := sstRand(t)
	fs := vfs.NewMem()
	cache := NewBlockCache(8 << 20)
	num := layout.FileNum(0)
	for _, comp := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
		for _, n := range []int{0, 1, 2, 17, 300, 3000} {
			for _, opts := range []TableWriterOptions{
				{},
				{BlockSize: 64, RestartInterval: 1},
				{BlockSize: 1024, RestartInterval: 3, BloomBitsPerKey: -1},
			} {
				opts.Compression = comp
				num++
				name := fmt.Sprintf("t-%s-%d-%d-%d.sst", comp, n, opts.BlockSize, num)
				t.Run(name, func(t *testing.T) {
					es := sstGenEntries(rng, n)
					wp := sstWrite(t, fs, name, es, opts)
					c := cache
					if num%2 == 0 {
						c = nil // also read without a cache
					}
					tbl := sstOpen(t, fs, name, num, c)
					defer tbl.Close()
					sstCheckTable(t, rng, tbl, es, wp)
				})
			}
		}
	}
}

func sstCheckTable(t *testing.T, rng *rand.Rand, tbl *Table, es []sstEntry, wp TableProps) {
	t.Helper()
	p := tbl.Props()
	if p.NumEntries != uint64(len(es)) || p.DataBlocks != wp.DataBlocks || p.FileSize != wp.FileSize ||
		!bytes.Equal(p.Smallest, wp.Smallest) || !bytes.Equal(p.Largest, wp.Largest) ||
		p.NumDeletions != wp.NumDeletions || p.NumMerges != wp.NumMerges || p.RawKeySize != wp.RawKeySize ||
		p.RawValueSize != wp.RawValueSize || p.SmallestSeq != wp.SmallestSeq || p.LargestSeq != wp.LargestSeq ||
		p.Compression != wp.Compression || p.CreationTime != wp.CreationTime || p.FilterBitsPerKey != wp.FilterBitsPerKey {
		t.Fatalf("props read %+v, written %+v", p, wp)
	}
	if len(es) > 0 {
		if !bytes.Equal(p.Smallest, es[0].ikey) || !bytes.Equal(p.Largest, es[len(es)-1].ikey) {
			t.Fatalf("bounds %x..%x want %x..%x", p.Smallest, p.Largest, es[0].ikey, es[len(es)-1].ikey)
		}
		var dels, merges uint64
		for _, e := range es {
			switch Kind(Trailer(e.ikey) & 0xff) {
			case KindDelete:
				dels++
			case KindMerge:
				merges++
			}
		}
		if p.NumDeletions != dels || p.NumMerges != merges {
			t.Fatalf("deletions/merges %d/%d want %d/%d", p.NumDeletions, p.NumMerges, dels, merges)
		}
	}

	it := tbl.NewIter()
	sstCheckIter(t, it, it.First(), es)

	// SeekGE on every key, and between keys: the same user key at a newer
	// and an older seq, and a user key just past it.
	for i, e := range es {
		uk, seq, _, _ := SplitInternalKey(e.ikey)
		checkSeek := func(target []byte) {
			j := sort.Search(len(es), func(j int) bool { return CompareInternal(es[j].ikey, target) >= 0 })
			ok := it.SeekGE(target)
			if j == len(es) {
				if ok || it.Err() != nil {
					t.Fatalf("SeekGE(%x) past the end: ok %v err %v", target, ok, it.Err())
				}
				return
			}
			if !ok || !bytes.Equal(it.Key(), es[j].ikey) {
				t.Fatalf("SeekGE(%x) = %x (ok %v, err %v), want %x", target, it.Key(), ok, it.Err(), es[j].ikey)
			}
		}
		checkSeek(e.ikey)
		checkSeek(MakeInternalKey(uk, seq+1, KindSet))
		if seq > 0 {
			checkSeek(MakeInternalKey(uk, seq-1, KindMax))
		}
		checkSeek(MakeInternalKey(append(append([]byte(nil), uk...), 0), MaxSeqNum, KindMax))
		if rng.IntN(64) == 0 { // the whole tail from a seek, sampled: it is quadratic
			sstCheckIter(t, it, it.SeekGE(e.ikey), es[i:])
		}
	}

	// Backward, and random mixes of both directions.
	n := 0
	for ok := it.Last(); ok; ok = it.Prev() {
		n++
		if j := len(es) - n; j < 0 || !bytes.Equal(it.Key(), es[j].ikey) || !bytes.Equal(it.Value(), es[j].value) {
			t.Fatalf("Last..Prev: entry %d is %x", n, it.Key())
		}
	}
	if n != len(es) || it.Err() != nil {
		t.Fatalf("Last..Prev gave %d of %d entries, err %v", n, len(es), it.Err())
	}
	var keys, vals [][]byte
	for _, e := range es {
		keys, vals = append(keys, e.ikey), append(vals, e.value)
	}
	checkRandomWalk(t, it, keys, vals, 2000, rng.IntN, func() []byte {
		if len(es) == 0 || rng.IntN(4) == 0 {
			return MakeInternalKey(fmt.Appendf(nil, "key%08d", rng.IntN(1<<20)), MaxSeqNum, KindMax)
		}
		uk, seq, _, _ := SplitInternalKey(es[rng.IntN(len(es))].ikey)
		switch rng.IntN(4) {
		case 0:
			return MakeInternalKey(uk, seq, KindSet)
		case 1:
			return MakeInternalKey(uk, seq+1, KindSet)
		case 2:
			return MakeInternalKey(append(append([]byte(nil), uk...), 0), MaxSeqNum, KindMax)
		}
		return MakeInternalKey(uk, 0, KindDelete)
	})
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}

	// Get at several snapshots for every user key, plus absent keys.
	for _, e := range es {
		uk, seq, _, _ := SplitInternalKey(e.ikey)
		if !tbl.MayContain(uk) {
			t.Fatalf("MayContain(%q) = false for a present key", uk)
		}
		for _, snap := range []SeqNum{MaxSeqNum, seq, seq - 1, seq + 1, 0} {
			val, kind, gotSeq, found, err := tbl.Get(uk, snap)
			if err != nil {
				t.Fatal(err)
			}
			want, wantFound := sstModelGet(es, uk, snap)
			if found != wantFound {
				t.Fatalf("Get(%q, %d) found %v want %v", uk, snap, found, wantFound)
			}
			if !found {
				continue
			}
			_, wseq, wkind, _ := SplitInternalKey(want.ikey)
			if gotSeq != wseq || kind != wkind || !bytes.Equal(val, want.value) {
				t.Fatalf("Get(%q, %d) = #%d %v %x, want #%d %v %x", uk, snap, gotSeq, kind, val, wseq, wkind, want.value)
			}
		}
		for _, absent := range [][]byte{append(append([]byte(nil), uk...), 0), uk[:len(uk)/2]} {
			if _, ok := sstModelGet(es, absent, MaxSeqNum); ok {
				continue
			}
			if _, _, _, found, err := tbl.Get(absent, MaxSeqNum); found || err != nil {
				t.Fatalf("Get(absent %q) found %v err %v", absent, found, err)
			}
		}
	}
}

func TestTableGetSnapshots(t *testing.T) {
	fs := vfs.NewMem()
	es := []sstEntry{
		{MakeInternalKey([]byte("a"), 9, KindSet), []byte("a9")},
		{MakeInternalKey([]byte("b"), 30, KindDelete), nil},
		{MakeInternalKey([]byte("b"), 20, KindMerge), []byte("b20")},
		{MakeInternalKey([]byte("b"), 10, KindSet), []byte("b10")},
		{MakeInternalKey([]byte("c"), 5, KindSet), []byte("c5")},
	}
	sstWrite(t, fs, "g.sst", es, TableWriterOptions{BlockSize: 1, Compression: CompressionS2})
	tbl := sstOpen(t, fs, "g.sst", 1, NewBlockCache(1<<20))
	defer tbl.Close()
	if got := tbl.Props().DataBlocks; got != 5 {
		t.Fatalf("BlockSize 1 gave %d data blocks, want one per entry", got)
	}
	tests := []struct {
		key   string
		snap  SeqNum
		found bool
		seq   SeqNum
		kind  Kind
		value string
	}{
		{"a", 100, true, 9, KindSet, "a9"},
		{"a", 9, true, 9, KindSet, "a9"},
		{"a", 8, false, 0, 0, ""},
		{"b", MaxSeqNum, true, 30, KindDelete, ""},
		{"b", 29, true, 20, KindMerge, "b20"},
		{"b", 20, true, 20, KindMerge, "b20"},
		{"b", 19, true, 10, KindSet, "b10"},
		{"b", 9, false, 0, 0, ""},
		{"c", 1<<63 - 1, true, 5, KindSet, "c5"}, // beyond MaxSeqNum: clamped
		{"bb", MaxSeqNum, false, 0, 0, ""},
		{"d", MaxSeqNum, false, 0, 0, ""},
		{"", MaxSeqNum, false, 0, 0, ""},
	}
	for _, tc := range tests {
		val, kind, seq, found, err := tbl.Get([]byte(tc.key), tc.snap)
		if err != nil || found != tc.found || seq != tc.seq || kind != tc.kind || string(val) != tc.value {
			t.Errorf("Get(%q, %d) = %q %v #%d found %v err %v; want %q %v #%d found %v",
				tc.key, tc.snap, val, kind, seq, found, err, tc.value, tc.kind, tc.seq, tc.found)
		}
	}
}

func TestTableEmpty(t *testing.T) {
	fs := vfs.NewMem()
	wp := sstWrite(t, fs, "e.sst", nil, TableWriterOptions{Compression: CompressionZstd})
	tbl := sstOpen(t, fs, "e.sst", 1, nil)
	defer tbl.Close()
	p := tbl.Props()
	if p.NumEntries != 0 || p.DataBlocks != 0 || p.Smallest != nil || p.Largest != nil || p.FileSize != wp.FileSize {
		t.Fatalf("empty table props %+v", p)
	}
	it := tbl.NewIter()
	if it.First() || it.SeekGE(MakeInternalKey(nil, 1, KindSet)) || it.Err() != nil {
		t.Fatal("empty table iterator has an entry")
	}
	if _, _, _, found, err := tbl.Get([]byte("x"), MaxSeqNum); found || err != nil {
		t.Fatalf("Get on empty table: found %v err %v", found, err)
	}
}

func TestTableWriterRejects(t *testing.T) {
	fs := vfs.NewMem()
	f, _ := fs.Create("r.sst")
	w := NewTableWriter(f, TableWriterOptions{})
	if err := w.Add(MakeInternalKey([]byte("b"), 5, KindSet), nil); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		ikey []byte
	}{
		{"duplicate", MakeInternalKey([]byte("b"), 5, KindSet)},
		{"older user key", MakeInternalKey([]byte("a"), 9, KindSet)},
		{"newer seq after older", MakeInternalKey([]byte("b"), 6, KindSet)},
		{"short", []byte("short")},
		{"bad kind", AppendInternalKey(nil, []byte("c"), 1, Kind(7))},
	}
	for _, tc := range bad {
		if err := w.Add(tc.ikey, nil); err == nil {
			t.Errorf("Add(%s) accepted", tc.name)
		}
	}
	if err := w.Add(MakeInternalKey([]byte("b"), 4, KindSet), nil); err != nil {
		t.Fatalf("valid Add after rejected ones: %v", err)
	}
	if _, err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(MakeInternalKey([]byte("c"), 1, KindSet), nil); err == nil {
		t.Error("Add after Finish accepted")
	}
	if _, err := w.Finish(); err == nil {
		t.Error("second Finish accepted")
	}
}

// sstImage returns the bytes of a small table with several blocks of every
// kind.
func sstImage(t *testing.T, comp Compression) ([]byte, []sstEntry) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	es := sstGenEntries(rng, 40)
	fs := vfs.NewMem()
	sstWrite(t, fs, "img.sst", es, TableWriterOptions{BlockSize: 512, Compression: comp})
	return sstReadFile(t, fs, "img.sst"), es
}

func sstReadFile(t *testing.T, fs vfs.FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, _ := f.Size()
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func sstWriteFile(t *testing.T, fs vfs.FS, name string, b []byte) vfs.File {
	t.Helper()
	f, err := fs.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	return f
}

// sstReadEverything iterates the whole table and gets every key, checking
// that whatever it returns is right; it returns the first error.
func sstReadEverything(t *testing.T, tbl *Table, es []sstEntry) error {
	t.Helper()
	it := tbl.NewIter()
	i := 0
	for ok := it.First(); ok; ok = it.Next() {
		if i >= len(es) || !bytes.Equal(it.Key(), es[i].ikey) || !bytes.Equal(it.Value(), es[i].value) {
			t.Fatalf("iterator returned wrong data at entry %d: %x", i, it.Key())
		}
		i++
	}
	if i != len(es) {
		if err := it.Close(); err != nil {
			return err
		}
		t.Fatalf("iterator stopped after %d of %d entries without an error", i, len(es))
	}
	for ok := it.Last(); ok; ok = it.Prev() {
		i--
		if i < 0 || !bytes.Equal(it.Key(), es[i].ikey) || !bytes.Equal(it.Value(), es[i].value) {
			t.Fatalf("backward iterator returned wrong data at entry %d: %x", i, it.Key())
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	if i != 0 {
		t.Fatalf("backward iterator stopped %d entries before the start without an error", i)
	}
	for _, e := range es {
		uk, _, _, _ := SplitInternalKey(e.ikey)
		val, kind, seq, found, err := tbl.Get(uk, MaxSeqNum)
		if err != nil {
			return err
		}
		want, _ := sstModelGet(es, uk, MaxSeqNum)
		_, wseq, wkind, _ := SplitInternalKey(want.ikey)
		if !found || seq != wseq || kind != wkind || !bytes.Equal(val, want.value) {
			t.Fatalf("Get(%q) returned wrong data: found %v #%d %v", uk, found, seq, kind)
		}
	}
	return nil
}

func sstCheckCorruptionErr(t *testing.T, err error, name string, what string) {
	t.Helper()
	var ce *errs.CorruptionError
	if !errors.Is(err, errs.ErrCorruption) || !errors.As(err, &ce) || ce.File != name {
		t.Fatalf("%s: error %v does not wrap ErrCorruption naming %s", what, err, name)
	}
}

func TestTableCorruptionEveryByte(t *testing.T) {
	for _, comp := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
		img, es := sstImage(t, comp)
		fs := vfs.NewMem()
		for i := range img {
			bad := append([]byte(nil), img...)
			bad[i] ^= 1 << (i % 8)
			f := sstWriteFile(t, fs, "bad.sst", bad)
			what := fmt.Sprintf("%s: flip at %d of %d", comp, i, len(img))
			tbl, err := OpenTable(f, "bad.sst", layout.FileNum(i+1), NewBlockCache(1<<20))
			if err != nil {
				sstCheckCorruptionErr(t, err, "bad.sst", what)
				continue
			}
			err = sstReadEverything(t, tbl, es)
			if err == nil {
				t.Fatalf("%s: damage not detected", what)
			}
			sstCheckCorruptionErr(t, err, "bad.sst", what)
			var ce *errs.CorruptionError
			errors.As(err, &ce)
			if ce.Offset < tableHeaderLen || ce.Offset > int64(i) {
				t.Fatalf("%s: error names offset %d, not the damaged block", what, ce.Offset)
			}
			tbl.Close()
		}
	}
}

func TestTableTruncated(t *testing.T) {
	img, _ := sstImage(t, CompressionS2)
	fs := vfs.NewMem()
	for n := 0; n < len(img); n++ {
		f := sstWriteFile(t, fs, "trunc.sst", img[:n])
		_, err := OpenTable(f, "trunc.sst", 1, nil)
		if err == nil {
			t.Fatalf("table truncated to %d of %d bytes opened", n, len(img))
		}
		sstCheckCorruptionErr(t, err, "trunc.sst", fmt.Sprintf("truncated to %d", n))
	}
}

func TestTableNewerFormat(t *testing.T) {
	img, _ := sstImage(t, CompressionNone)
	binary.LittleEndian.PutUint32(img[8:], tableFormatVersion+1)
	binary.LittleEndian.PutUint32(img[12:], uint32(xxhash.Sum64(img[:12])))
	fs := vfs.NewMem()
	f := sstWriteFile(t, fs, "new.sst", img)
	_, err := OpenTable(f, "new.sst", 1, nil)
	if !errors.Is(err, errs.ErrNewerFormat) {
		t.Fatalf("newer format: got %v, want ErrNewerFormat", err)
	}
}

func TestTableLargeValues(t *testing.T) {
	fs := vfs.NewMem()
	rng := sstRand(t)
	random := make([]byte, 100<<10)
	for i := range random {
		random[i] = byte(rng.IntN(256))
	}
	es := []sstEntry{
		{MakeInternalKey([]byte("a"), 1, KindSet), []byte("small")},
		{MakeInternalKey([]byte("b"), 1, KindSet), random},              // incompressible, > block size
		{MakeInternalKey([]byte("c"), 1, KindSet), make([]byte, 3<<20)}, // compresses beyond the ratio bound
		{MakeInternalKey([]byte("d"), 1, KindSet), bytes.Repeat([]byte("abcdefgh"), 8<<10)},
	}
	for _, comp := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
		name := "large-" + comp.String()
		sstWrite(t, fs, name, es, TableWriterOptions{Compression: comp})
		tbl := sstOpen(t, fs, name, 1, nil)
		it := tbl.NewIter()
		sstCheckIter(t, it, it.First(), es)
		if err := sstReadEverything(t, tbl, es); err != nil {
			t.Fatal(err)
		}
		tbl.Close()
	}
}

func TestTableApproximateOffset(t *testing.T) {
	rng := sstRand(t)
	fs := vfs.NewMem()
	es := sstGenEntries(rng, 2000)
	wp := sstWrite(t, fs, "a.sst", es, TableWriterOptions{})
	tbl := sstOpen(t, fs, "a.sst", 1, nil)
	defer tbl.Close()
	prev := uint64(0)
	for _, e := range es {
		off := tbl.ApproximateOffset(e.ikey)
		if off < prev || off >= wp.FileSize {
			t.Fatalf("ApproximateOffset(%x) = %d after %d (file %d)", e.ikey, off, prev, wp.FileSize)
		}
		prev = off
	}
	if prev == 0 {
		t.Fatal("offsets never advanced")
	}
	past := MakeInternalKey([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0, KindDelete)
	if got := tbl.ApproximateOffset(past); got != wp.FileSize {
		t.Fatalf("ApproximateOffset past the end = %d, want file size %d", got, wp.FileSize)
	}
}

func TestTableSeparators(t *testing.T) {
	rng := sstRand(t)
	randKey := func() []byte {
		k := make([]byte, rng.IntN(6))
		for i := range k {
			k[i] = []byte{0, 1, 'a', 'b', 'c', 0xfe, 0xff}[rng.IntN(7)]
		}
		return MakeInternalKey(k, SeqNum(rng.IntN(4)), Kind(rng.IntN(3)))
	}
	for i := 0; i < 20000; i++ {
		a, b := randKey(), randKey()
		switch c := CompareInternal(a, b); {
		case c == 0:
			continue
		case c > 0:
			a, b = b, a
		}
		sep := appendSeparator(nil, a, b)
		if CompareInternal(a, sep) > 0 || CompareInternal(sep, b) >= 0 {
			t.Fatalf("separator(%x, %x) = %x is not in [a, b)", a, b, sep)
		}
		if len(sep) > len(a) {
			t.Fatalf("separator(%x, %x) = %x is longer than a", a, b, sep)
		}
		if succ := appendSuccessor(nil, a); CompareInternal(a, succ) > 0 {
			t.Fatalf("successor(%x) = %x < a", a, succ)
		}
	}
	a := MakeInternalKey([]byte("apple"), 5, KindSet)
	b := MakeInternalKey([]byte("azure"), 5, KindSet)
	if sep := appendSeparator(nil, a, b); string(UserKey(sep)) != "b" && string(UserKey(sep)) != "aq" {
		// "apple" vs "azure": common prefix "a", 'p'+1 < 'z' gives "aq".
		t.Fatalf("separator(apple, azure) = %q", UserKey(sep))
	}
}

func TestTableConcurrentReads(t *testing.T) {
	rng := sstRand(t)
	fs := vfs.NewMem()
	es := sstGenEntries(rng, 3000)
	sstWrite(t, fs, "c.sst", es, TableWriterOptions{Compression: CompressionS2})
	// A small cache so readers race on misses, inserts and evictions.
	tbl := sstOpen(t, fs, "c.sst", 1, NewBlockCache(64<<10))
	defer tbl.Close()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := 0; i < 500; i++ {
				e := es[r.IntN(len(es))]
				uk, _, _, _ := SplitInternalKey(e.ikey)
				want, _ := sstModelGet(es, uk, MaxSeqNum)
				val, _, _, found, err := tbl.Get(uk, MaxSeqNum)
				if err != nil || !found || !bytes.Equal(val, want.value) {
					t.Errorf("concurrent Get(%q): found %v err %v", uk, found, err)
					return
				}
			}
			it := tbl.NewIter()
			n := 0
			for ok := it.First(); ok; ok = it.Next() {
				n++
			}
			if n != len(es) || it.Close() != nil {
				t.Errorf("concurrent iteration saw %d of %d entries", n, len(es))
			}
		}(g)
	}
	wg.Wait()
}

func TestTableHotPathsDoNotAllocate(t *testing.T) {
	if raceEnabledSST {
		t.Skip("allocation counts differ under the race detector")
	}
	rng := sstRand(t)
	fs := vfs.NewMem()
	es := sstGenEntries(rng, 2000)
	sstWrite(t, fs, "h.sst", es, TableWriterOptions{Compression: CompressionS2})
	tbl := sstOpen(t, fs, "h.sst", 1, NewBlockCache(8<<20))
	defer tbl.Close()
	uk := UserKey(es[len(es)/2].ikey)
	tbl.Get(uk, MaxSeqNum) // warm the cache
	if n := testing.AllocsPerRun(200, func() {
		if _, _, _, found, _ := tbl.Get(uk, MaxSeqNum); !found {
			t.Fatal("not found")
		}
	}); n != 0 {
		t.Errorf("Table.Get hit allocates %.1f times", n)
	}
	it := tbl.NewIter()
	for ok := it.First(); ok; ok = it.Next() { // warm cache and key buffer
	}
	it.First()
	if n := testing.AllocsPerRun(1000, func() {
		if !it.Next() {
			it.First()
		}
	}); n != 0 {
		t.Errorf("table iterator Next allocates %.2f times", n)
	}
}

// sstBenchTable writes n entries with 16-byte keys and 100-byte values.
func sstBenchTable(b *testing.B, n int, comp Compression) (*Table, [][]byte) {
	fs := vfs.NewMem()
	f, _ := fs.Create("bench.sst")
	w := NewTableWriter(f, TableWriterOptions{Compression: comp})
	ukeys := make([][]byte, n)
	val := bytes.Repeat([]byte("v"), 100)
	for i := range ukeys {
		ukeys[i] = fmt.Appendf(nil, "key%013d", i)
		if err := w.Add(MakeInternalKey(ukeys[i], SeqNum(i+1), KindSet), val); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := w.Finish(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	f, _ = fs.Open("bench.sst")
	tbl, err := OpenTable(f, "bench.sst", 1, NewBlockCache(256<<20))
	if err != nil {
		b.Fatal(err)
	}
	return tbl, ukeys
}

func BenchmarkTableGet(b *testing.B) {
	tbl, ukeys := sstBenchTable(b, 100_000, CompressionS2)
	defer tbl.Close()
	for _, k := range ukeys { // every block into the cache: measure hits
		tbl.Get(k, MaxSeqNum)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	order := make([]int, 1<<16)
	for i := range order {
		order[i] = rng.IntN(len(ukeys))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, _, found, err := tbl.Get(ukeys[order[i&(len(order)-1)]], MaxSeqNum); !found || err != nil {
			b.Fatal("miss")
		}
	}
}

func BenchmarkTableGetParallel(b *testing.B) {
	tbl, ukeys := sstBenchTable(b, 100_000, CompressionS2)
	defer tbl.Close()
	for _, k := range ukeys {
		tbl.Get(k, MaxSeqNum)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
		for pb.Next() {
			if _, _, _, found, _ := tbl.Get(ukeys[rng.IntN(len(ukeys))], MaxSeqNum); !found {
				b.Error("miss")
				return
			}
		}
	})
}

func BenchmarkTableGetAbsent(b *testing.B) {
	tbl, _ := sstBenchTable(b, 100_000, CompressionS2)
	defer tbl.Close()
	keys := make([][]byte, 1<<12)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "nokey%011d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tbl.Get(keys[i&(len(keys)-1)], MaxSeqNum)
	}
}

func BenchmarkTableIterNext(b *testing.B) {
	tbl, _ := sstBenchTable(b, 100_000, CompressionS2)
	defer tbl.Close()
	it := tbl.NewIter()
	for ok := it.First(); ok; ok = it.Next() { // warm the cache
	}
	it.First()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !it.Next() {
			it.First()
		}
	}
}

func BenchmarkTableWriterAdd(b *testing.B) {
	for _, comp := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
		b.Run(comp.String(), func(b *testing.B) {
			const perTable = 100_000
			keys := make([][]byte, perTable)
			for i := range keys {
				keys[i] = MakeInternalKey(fmt.Appendf(nil, "key%013d", i), SeqNum(i+1), KindSet)
			}
			val := bytes.Repeat([]byte("value-"), 16)
			fs := vfs.NewMem()
			b.ReportAllocs()
			b.SetBytes(int64(len(keys[0]) + len(val)))
			b.ResetTimer()
			var w *TableWriter
			for i := 0; i < b.N; i++ {
				if i%perTable == 0 {
					if w != nil {
						w.Finish()
					}
					f, _ := fs.Create("w.sst")
					w = NewTableWriter(f, TableWriterOptions{Compression: comp})
				}
				if err := w.Add(keys[i%perTable], val); err != nil {
					b.Fatal(err)
				}
			}
			w.Finish()
		})
	}
}

// raceEnabledSST is set by table_race_test.go under -race.
var raceEnabledSST bool

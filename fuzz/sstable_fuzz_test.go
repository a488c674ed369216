package fuzz

import (
	"errors"
	"fmt"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
)

// sstSeedTable returns the bytes of a small valid table.
func sstSeedTable(tb testing.TB, n int, opts lsm.TableWriterOptions) []byte {
	tb.Helper()
	fs := vfs.NewMem()
	f, err := fs.Create("seed.sst")
	if err != nil {
		tb.Fatal(err)
	}
	w := lsm.NewTableWriter(f, opts)
	for i := 0; i < n; i++ {
		kind := lsm.KindSet
		if i%5 == 4 {
			kind = lsm.KindDelete
		}
		k := lsm.MakeInternalKey(fmt.Appendf(nil, "key%04d", i/2), lsm.SeqNum(100-i%2), kind)
		if err := w.Add(k, fmt.Appendf(nil, "value-%d-value-%d", i, i)); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := w.Finish(); err != nil {
		tb.Fatal(err)
	}
	size, _ := f.Size()
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil {
		tb.Fatal(err)
	}
	return b
}

func FuzzBlockDecode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 3, 1, 'a', 'b', 'c', 'v', 0, 0, 0, 0, 1, 0, 0, 0})
	// Whole tables contain every kind of block; the fuzzer's mutations
	// slice them up.
	f.Add(sstSeedTable(f, 20, lsm.TableWriterOptions{BlockSize: 128}))
	f.Add(sstSeedTable(f, 20, lsm.TableWriterOptions{BlockSize: 128, Compression: lsm.CompressionS2}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = lsm.DecodeBlockForFuzz(b) // must not panic or hang
	})
}

func FuzzTableOpen(f *testing.F) {
	for _, c := range []lsm.Compression{lsm.CompressionNone, lsm.CompressionS2, lsm.CompressionZstd} {
		f.Add(sstSeedTable(f, 30, lsm.TableWriterOptions{BlockSize: 200, Compression: c}))
	}
	f.Add(sstSeedTable(f, 0, lsm.TableWriterOptions{}))
	f.Add(sstSeedTable(f, 3, lsm.TableWriterOptions{BloomBitsPerKey: -1, RestartInterval: 1}))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := vfs.NewMem()
		file, err := fs.Create("fuzz.sst")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := file.Write(data); err != nil {
			t.Fatal(err)
		}
		tbl, err := lsm.OpenTable(file, "fuzz.sst", 1, lsm.NewBlockCache(1<<20))
		if err != nil {
			if !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
				t.Fatalf("OpenTable error %v wraps neither ErrCorruption nor ErrNewerFormat", err)
			}
			return
		}
		defer tbl.Close()
		checkErr := func(what string, err error) {
			if err != nil && !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("%s: error %v does not wrap ErrCorruption", what, err)
			}
		}
		it := tbl.NewIter()
		var keys [][]byte
		for ok := it.First(); ok; ok = it.Next() {
			if len(keys) > len(data) {
				t.Fatal("iteration returned more entries than the file has bytes")
			}
			keys = append(keys, append([]byte(nil), it.Key()...))
		}
		checkErr("iterate", it.Close())
		for _, k := range keys {
			ukey, _, _, ok := lsm.SplitInternalKey(k)
			if !ok {
				t.Fatalf("iterator returned key %x shorter than a trailer", k)
			}
			_, _, _, _, err := tbl.Get(ukey, lsm.MaxSeqNum)
			checkErr("get", err)
			it := tbl.NewIter()
			it.SeekGE(k)
			checkErr("seek", it.Close())
			tbl.ApproximateOffset(k)
		}
		for _, ukey := range []string{"", "key0001", "zzz"} {
			_, _, _, _, err := tbl.Get([]byte(ukey), lsm.MaxSeqNum)
			checkErr("get", err)
			tbl.MayContain([]byte(ukey))
		}
	})
}

package fuzz

import (
	"bytes"
	"errors"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
)

// FuzzTableCheck runs lsm.CheckTable, the verifier's whole-table check,
// on arbitrary bytes: it never panics or fails with an I/O error on bytes
// in memory, every issue wraps ErrCorruption or ErrNewerFormat, and bytes
// that OpenTable reads and iterates whole without error are reported
// clean with the same entry count.
func FuzzTableCheck(f *testing.F) {
	for _, c := range []lsm.Compression{lsm.CompressionNone, lsm.CompressionS2, lsm.CompressionZstd} {
		f.Add(sstSeedTable(f, 30, lsm.TableWriterOptions{BlockSize: 200, Compression: c}))
	}
	f.Add(sstSeedTable(f, 0, lsm.TableWriterOptions{}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		tc, err := lsm.CheckTable(bytes.NewReader(b), int64(len(b)), "fuzz.sst", nil)
		if err != nil {
			t.Fatalf("I/O error on bytes in memory: %v", err)
		}
		for _, is := range tc.Issues {
			if !errors.Is(is.Err, errs.ErrCorruption) && !errors.Is(is.Err, errs.ErrNewerFormat) {
				t.Fatalf("issue %v wraps neither ErrCorruption nor ErrNewerFormat", is.Err)
			}
		}
		fs := vfs.NewMem()
		w, _ := fs.Create("t.sst")
		w.Write(b)
		w.Close()
		file, _ := fs.Open("t.sst")
		defer file.Close()
		tbl, err := lsm.OpenTable(file, "t.sst", 1, nil)
		if err != nil {
			return
		}
		it := tbl.NewIter()
		n := uint64(0)
		for ok := it.First(); ok; ok = it.Next() {
			n++
		}
		if it.Close() != nil {
			return
		}
		if len(tc.Issues) == 0 && n != tc.Entries {
			t.Fatalf("CheckTable counted %d entries, the table iterates %d", tc.Entries, n)
		}
	})
}

package lsm

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/vfs"
)

// checkTestTable writes a table of n entries (compression c) in memory
// and returns its bytes and properties.
func checkTestTable(t *testing.T, n int, c Compression) ([]byte, TableProps) {
	t.Helper()
	fs := vfs.NewMem()
	f, err := fs.Create("t.sst")
	if err != nil {
		t.Fatal(err)
	}
	w := NewTableWriter(f, TableWriterOptions{BlockSize: 256, Compression: c})
	for i := range n {
		kind := Kind(i % 3)
		if err := w.Add(MakeInternalKey(fmt.Appendf(nil, "key%05d", i), SeqNum(100+i), kind), bytes.Repeat([]byte{'v'}, i%40)); err != nil {
			t.Fatal(err)
		}
	}
	props, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	size, _ := f.Size()
	data := make([]byte, size)
	if _, err := f.ReadAt(data, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return data, props
}

func TestCheckTableClean(t *testing.T) {
	for _, c := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
		data, props := checkTestTable(t, 500, c)
		var read int64
		tc, err := CheckTable(bytes.NewReader(data), int64(len(data)), "t.sst", func(n int64) { read += n })
		if err != nil {
			t.Fatal(err)
		}
		if len(tc.Issues) != 0 {
			t.Fatalf("%s: issues in a clean table: %v", c, tc.Issues[0].Err)
		}
		if !tc.PropsOK || tc.Entries != 500 || tc.BlocksChecked != tc.DataBlocks || tc.DataBlocks < 10 ||
			!bytes.Equal(tc.Smallest, props.Smallest) || !bytes.Equal(tc.Largest, props.Largest) ||
			tc.SmallestSeq != 100 || tc.LargestSeq != 599 {
			t.Fatalf("%s: %+v", c, tc)
		}
		if read < int64(len(data))-int64(tableFooterLen) || read > 2*int64(len(data)) {
			t.Fatalf("%s: progress counted %d bytes of %d", c, read, len(data))
		}
	}
}

// TestCheckTableDamage flips every third byte of a table in turn (every
// seventh with -short): each flip is
// reported (none is silent), as corruption naming the file, and a flip in
// a data block names that block's key range and leaves the other blocks
// checked.
func TestCheckTableDamage(t *testing.T) {
	data, _ := checkTestTable(t, 300, CompressionS2)
	step := 3
	if testing.Short() {
		step = 7
	}
	for i := 0; i < len(data); i += step {
		bad := bytes.Clone(data)
		bad[i] ^= 0x10
		tc, err := CheckTable(bytes.NewReader(bad), int64(len(bad)), "t.sst", nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(tc.Issues) == 0 {
			t.Fatalf("byte %d flipped: no issue", i)
		}
		for _, is := range tc.Issues {
			if !errors.Is(is.Err, errs.ErrCorruption) && !errors.Is(is.Err, errs.ErrNewerFormat) {
				t.Fatalf("byte %d flipped: %v", i, is.Err)
			}
		}
		if is := tc.Issues[0]; is.Upper != nil {
			// A data block: only it is lost.
			if tc.BlocksChecked != tc.DataBlocks-1 || is.Kind != TableChecksum {
				t.Fatalf("byte %d flipped: %d of %d blocks checked, kind %d", i, tc.BlocksChecked, tc.DataBlocks, is.Kind)
			}
			if is.Offset > int64(i) || (is.Lower != nil && CompareInternal(is.Lower, is.Upper) >= 0) {
				t.Fatalf("byte %d flipped: issue at %d, range %q..%q", i, is.Offset, is.Lower, is.Upper)
			}
		}
	}
	for _, n := range []int{0, 20, len(data) / 2, len(data) - 1} {
		tc, err := CheckTable(bytes.NewReader(data[:n]), int64(n), "t.sst", nil)
		if err != nil || len(tc.Issues) == 0 {
			t.Fatalf("truncated to %d: %v, %d issues", n, err, len(tc.Issues))
		}
	}
}

// TestCheckTableCollect: the entries under a prefix come back, in order,
// with their values, from the same pass; a damaged block's do not.
func TestCheckTableCollect(t *testing.T) {
	data, _ := checkTestTable(t, 500, CompressionS2)
	tc, err := CheckTableCollect(bytes.NewReader(data), int64(len(data)), "t.sst", nil, []byte("key001"))
	if err != nil || len(tc.Issues) != 0 {
		t.Fatalf("%v %v", err, tc.Issues)
	}
	if len(tc.Collected) != 100 {
		t.Fatalf("collected %d entries, want 100", len(tc.Collected))
	}
	for j, e := range tc.Collected {
		i := 100 + j
		if want := MakeInternalKey(fmt.Appendf(nil, "key%05d", i), SeqNum(100+i), Kind(i%3)); !bytes.Equal(e.Key, want) ||
			!bytes.Equal(e.Value, bytes.Repeat([]byte{'v'}, i%40)) {
			t.Fatalf("entry %d: %q = %q", j, e.Key, e.Value)
		}
	}
	if tc, _ := CheckTable(bytes.NewReader(data), int64(len(data)), "t.sst", nil); tc.Collected != nil {
		t.Fatal("CheckTable collected entries")
	}
}

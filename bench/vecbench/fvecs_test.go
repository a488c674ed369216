package main

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFvecsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	v := Vectors{Dim: 3, Data: []float32{1, -2, 3.5, 0, float32(math.Inf(1)), -0.25, 7, 8, 9}}
	p := filepath.Join(dir, "v.fvecs")
	if err := writeFvecs(p, v); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Size() != 3*(4+3*4) {
		t.Fatalf("file is %d bytes, want %d", st.Size(), 3*(4+3*4))
	}
	got, err := readFvecs(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Dim != 3 || got.Len() != 3 || !slices.Equal(got.Data, v.Data) {
		t.Fatalf("read %+v, wrote %+v", got, v)
	}
	if !slices.Equal(got.At(1), []float32{0, float32(math.Inf(1)), -0.25}) {
		t.Fatalf("At(1) = %v", got.At(1))
	}
	// A limit reads a prefix.
	got, err = readFvecs(p, 2)
	if err != nil || got.Len() != 2 || !slices.Equal(got.Data, v.Data[:6]) {
		t.Fatalf("limit 2: %+v, %v", got, err)
	}
	// readVectors picks the format by extension.
	if got, err = readVectors(p, 0); err != nil || got.Len() != 3 {
		t.Fatalf("readVectors: %+v, %v", got, err)
	}
	if _, err := readVectors(filepath.Join(dir, "v.txt"), 0); err == nil {
		t.Fatal("readVectors accepted an unknown extension")
	}
}

func TestIvecsRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "gt.ivecs")
	v := IntVectors{Dim: 2, Data: []int32{0, 1, math.MaxInt32, -5, 42, 7}}
	if err := writeIvecs(p, v); err != nil {
		t.Fatal(err)
	}
	got, err := readIvecs(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Dim != 2 || got.Len() != 3 || !slices.Equal(got.Data, v.Data) {
		t.Fatalf("read %+v, wrote %+v", got, v)
	}
	if !slices.Equal(got.At(2), []int32{42, 7}) {
		t.Fatalf("At(2) = %v", got.At(2))
	}
}

func TestBvecsRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "b.bvecs")
	var b []byte
	for _, rec := range [][]byte{{0, 1, 255}, {9, 8, 7}} {
		b = binary.LittleEndian.AppendUint32(b, 3)
		b = append(b, rec...)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readVectors(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Dim != 3 || !slices.Equal(got.Data, []float32{0, 1, 255, 9, 8, 7}) {
		t.Fatalf("read %+v", got)
	}
}

// fvecsBytes encodes records of the given dims (components 1, 2, ...).
func fvecsBytes(dims ...int) []byte {
	var b []byte
	for _, d := range dims {
		b = binary.LittleEndian.AppendUint32(b, uint32(d))
		for j := range d {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(j+1)))
		}
	}
	return b
}

func TestFvecsBadInput(t *testing.T) {
	good := fvecsBytes(4, 4, 4)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty file"},
		{"short dim", []byte{4, 0}, "truncated dimension"},
		{"zero dim", fvecsBytes(0), "out of range"},
		{"negative dim", binary.LittleEndian.AppendUint32(nil, uint32(0xffffffff)), "out of range"},
		{"huge dim", binary.LittleEndian.AppendUint32(nil, 1<<30), "out of range"},
		{"truncated last record", good[:len(good)-3], "not a multiple"},
		{"truncated after dim", good[:len(good)-16], "not a multiple"},
		{"header only", good[:4], "not a multiple"},
		// Same total size as three records of 4, but the dims disagree.
		{"inconsistent dims", fvecsBytes(4, 2, 6), "has dimension 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "x.fvecs")
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := readFvecs(p, 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("err = %v, want one naming the file and saying %q", err, tc.want)
			}
			if _, err := readIvecs(p, 0); err == nil {
				t.Fatal("readIvecs accepted it")
			}
		})
	}
}

// A file that shrinks under the reader (size from stat, fewer bytes
// delivered) is an error naming the offset, not a panic.
func TestDecodeShortReader(t *testing.T) {
	good := fvecsBytes(2, 2)
	n := 0
	err := decodeRecords(bytes.NewReader(good[:len(good)-1]), "mem", int64(len(good)), 4, 0,
		func(dim, count int) {}, func([]byte) { n++ })
	if err == nil || !strings.Contains(err.Error(), "offset 16: truncated record") {
		t.Fatalf("err = %v", err)
	}
	if n != 1 {
		t.Fatalf("emitted %d records before the truncated one, want 1", n)
	}
}

func TestWriteRejectsBadDim(t *testing.T) {
	if err := writeFvecs(filepath.Join(t.TempDir(), "x.fvecs"), Vectors{}); err == nil {
		t.Fatal("wrote a zero-dimension file")
	}
}

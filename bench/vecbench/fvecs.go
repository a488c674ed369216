package main

// The TEXMEX vector file formats (http://corpus-texmex.irisa.fr/), used by
// SIFT1M, GIST1M, Deep1B and most ANN benchmarks. A file is a sequence of
// records, nothing else (no header, no checksum); per record, all
// little-endian:
//
//	+-----------+------------------------------------+
//	| dim int32 | dim components                     |
//	+-----------+------------------------------------+
//	  .fvecs: float32 components, .ivecs: int32, .bvecs: uint8
//
// Every record of a file has the same dim. A reader checks that (and that
// the file ends on a record boundary) and returns an error naming the file
// and offset otherwise; it never allocates more than the file's size.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// maxFileDim bounds the dim field, so a garbage file is an error rather
// than a huge allocation. The widest public sets (GIST) have 960.
const maxFileDim = 1 << 16

// Vectors is a set of equal-length float32 vectors stored flat.
type Vectors struct {
	Dim  int
	Data []float32 // Len()*Dim components, vector i at [i*Dim, (i+1)*Dim)
}

// Len returns the number of vectors.
func (v Vectors) Len() int {
	if v.Dim == 0 {
		return 0
	}
	return len(v.Data) / v.Dim
}

// At returns vector i (a view, not a copy).
func (v Vectors) At(i int) []float32 { return v.Data[i*v.Dim : (i+1)*v.Dim : (i+1)*v.Dim] }

// IntVectors is a set of equal-length int32 vectors stored flat; ground
// truth files hold one row of neighbour IDs per query.
type IntVectors struct {
	Dim  int
	Data []int32
}

// Len returns the number of rows.
func (v IntVectors) Len() int {
	if v.Dim == 0 {
		return 0
	}
	return len(v.Data) / v.Dim
}

// At returns row i (a view, not a copy).
func (v IntVectors) At(i int) []int32 { return v.Data[i*v.Dim : (i+1)*v.Dim : (i+1)*v.Dim] }

// readVectors reads a .fvecs or .bvecs file (chosen by extension; .bvecs
// components are converted to float32). limit > 0 reads only the first
// limit vectors.
func readVectors(path string, limit int) (Vectors, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".fvecs":
		return readFvecs(path, limit)
	case ".bvecs":
		return readBvecs(path, limit)
	}
	return Vectors{}, fmt.Errorf("%s: unknown vector file extension (want .fvecs or .bvecs)", path)
}

// readFvecs reads a .fvecs file; limit > 0 reads only the first limit vectors.
func readFvecs(path string, limit int) (Vectors, error) {
	var out Vectors
	err := readRecords(path, 4, limit, func(dim, count int) {
		out.Dim = dim
		out.Data = make([]float32, 0, dim*count)
	}, func(rec []byte) {
		for i := 0; i < len(rec); i += 4 {
			out.Data = append(out.Data, math.Float32frombits(binary.LittleEndian.Uint32(rec[i:])))
		}
	})
	return out, err
}

// readBvecs reads a .bvecs file as float32 vectors; limit > 0 reads only
// the first limit vectors.
func readBvecs(path string, limit int) (Vectors, error) {
	var out Vectors
	err := readRecords(path, 1, limit, func(dim, count int) {
		out.Dim = dim
		out.Data = make([]float32, 0, dim*count)
	}, func(rec []byte) {
		for _, b := range rec {
			out.Data = append(out.Data, float32(b))
		}
	})
	return out, err
}

// readIvecs reads a .ivecs file; limit > 0 reads only the first limit rows.
func readIvecs(path string, limit int) (IntVectors, error) {
	var out IntVectors
	err := readRecords(path, 4, limit, func(dim, count int) {
		out.Dim = dim
		out.Data = make([]int32, 0, dim*count)
	}, func(rec []byte) {
		for i := 0; i < len(rec); i += 4 {
			out.Data = append(out.Data, int32(binary.LittleEndian.Uint32(rec[i:])))
		}
	})
	return out, err
}

// readRecords opens path and decodes it with decodeRecords.
func readRecords(path string, elem, limit int, start func(dim, count int), emit func(rec []byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return decodeRecords(bufio.NewReaderSize(f, 1<<20), path, st.Size(), elem, limit, start, emit)
}

// decodeRecords reads TEXMEX records of elem-byte components from r, which
// holds size bytes. It checks the first dim, that size is a whole number of
// records (so a truncated file fails before anything is allocated), and
// that every record repeats the dim; then it calls start once with the dim
// and the number of records it will emit, and emit with each record's
// component bytes (valid only during the call).
func decodeRecords(r io.Reader, name string, size int64, elem, limit int, start func(dim, count int), emit func(rec []byte)) error {
	if size == 0 {
		return fmt.Errorf("%s: empty file", name)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("%s: offset 0: truncated dimension field (file is %d bytes)", name, size)
	}
	dim := int(int32(binary.LittleEndian.Uint32(hdr[:])))
	if dim <= 0 || dim > maxFileDim {
		return fmt.Errorf("%s: offset 0: dimension %d out of range 1..%d (not a %d-byte-component TEXMEX file?)", name, dim, maxFileDim, elem)
	}
	recSize := int64(4 + dim*elem)
	if size%recSize != 0 {
		return fmt.Errorf("%s: size %d is not a multiple of the record size %d (dim %d): truncated at offset %d or inconsistent dimensions",
			name, size, recSize, dim, size/recSize*recSize)
	}
	count := int(size / recSize)
	if limit > 0 && limit < count {
		count = limit
	}
	start(dim, count)
	rec := make([]byte, recSize-4)
	for i := range count {
		off := int64(i) * recSize
		if i > 0 {
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				return readErr(name, off, err)
			}
			if d := int(int32(binary.LittleEndian.Uint32(hdr[:]))); d != dim {
				return fmt.Errorf("%s: offset %d: record %d has dimension %d, the first has %d", name, off, i, d, dim)
			}
		}
		if _, err := io.ReadFull(r, rec); err != nil {
			return readErr(name, off+4, err)
		}
		emit(rec)
	}
	return nil
}

func readErr(name string, off int64, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s: offset %d: truncated record", name, off)
	}
	return fmt.Errorf("%s: offset %d: %w", name, off, err)
}

// writeFvecs writes v as a .fvecs file.
func writeFvecs(path string, v Vectors) error {
	return writeRecords(path, v.Dim, v.Len(), func(buf []byte, i int) {
		for j, x := range v.At(i) {
			binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(x))
		}
	})
}

// writeIvecs writes v as a .ivecs file.
func writeIvecs(path string, v IntVectors) error {
	return writeRecords(path, v.Dim, v.Len(), func(buf []byte, i int) {
		for j, x := range v.At(i) {
			binary.LittleEndian.PutUint32(buf[4*j:], uint32(x))
		}
	})
}

// writeRecords writes count records of dim 4-byte components, filled by
// fill, to path.
func writeRecords(path string, dim, count int, fill func(buf []byte, i int)) error {
	if dim <= 0 || dim > maxFileDim {
		return fmt.Errorf("%s: dimension %d out of range 1..%d", path, dim, maxFileDim)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rec := make([]byte, 4+4*dim)
	binary.LittleEndian.PutUint32(rec, uint32(dim))
	for i := range count {
		fill(rec[4:], i)
		if _, err := w.Write(rec); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

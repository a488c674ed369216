package fuzz

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/record"
)

// FuzzRecordReader feeds arbitrary bytes to the record reader: it must end
// with io.EOF or a corruption error naming the file, never panic or hang.
func FuzzRecordReader(f *testing.F) {
	var fr record.Framer
	var stream []byte
	for _, n := range []int{0, 1, 100, record.BlockSize - record.HeaderSize, 2*record.BlockSize + 3} {
		stream = fr.Append(stream, bytes.Repeat([]byte{byte(n)}, n))
		f.Add(bytes.Clone(stream))
	}
	f.Add([]byte{})
	f.Add(make([]byte, record.HeaderSize))
	f.Add(stream[:len(stream)-5])

	f.Fuzz(func(t *testing.T, data []byte) {
		r := record.NewReader(bytes.NewReader(data), "fuzz.log", 16)
		total := 0
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				var ce *errs.CorruptionError
				if !errors.As(err, &ce) || ce.File != "fuzz.log" || ce.Offset < 16 || ce.Offset > 16+int64(len(data)) {
					t.Fatalf("bad error %v", err)
				}
				// The same bytes behind a 16-byte header, as a file.
				file := append(make([]byte, 16), data...)
				terr := record.CheckTail(bytes.NewReader(file), "fuzz.log", 16, r.End(), int64(len(file)))
				if terr != nil && (!errors.As(terr, &ce) || ce.Offset < r.End() || ce.Offset >= int64(len(file))) {
					t.Fatalf("CheckTail: %v", terr)
				}
				off, ok, err := record.NextRecordStart(bytes.NewReader(file), 16, r.Offset()+1, int64(len(file)))
				if err != nil || (ok && (off <= r.Offset() || off+record.HeaderSize > int64(len(file)))) {
					t.Fatalf("NextRecordStart = %d, %v, %v", off, ok, err)
				}
				if ok {
					// A reader resynchronised there reads from that chunk on.
					rr := record.NewReaderAt(bytes.NewReader(file), "fuzz.log", 16, off, int64(len(file)))
					_, err := rr.Next()
					switch {
					case err == nil && rr.Offset() != off:
						t.Fatalf("reader resynchronised at %d returned a record at %d", off, rr.Offset())
					case err != nil && !errors.Is(err, errs.ErrCorruption):
						t.Fatalf("record at resync offset %d: %v", off, err)
					case err != nil && rr.Offset() < off:
						t.Fatalf("reader resynchronised at %d reports damage at %d", off, rr.Offset())
					}
				}
				break
			}
			total += len(rec)
			if total > len(data) {
				t.Fatalf("records hold %d bytes from a %d-byte stream", total, len(data))
			}
			if r.End() > 16+int64(len(data)) || r.Offset() >= r.End() {
				t.Fatalf("offsets %d..%d outside the stream", r.Offset(), r.End())
			}
		}
	})
}

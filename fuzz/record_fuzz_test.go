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
				if _, err := record.ValidChunkAfter(bytes.NewReader(data), 0, r.Offset()-16+1, int64(len(data))); err != nil {
					t.Fatalf("ValidChunkAfter: %v", err)
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

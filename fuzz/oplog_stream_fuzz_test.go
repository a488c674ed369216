package fuzz

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
)

func oplogSeedStream(f *testing.F, compress bool, prefix []byte) []byte {
	ops := oplogSeedOps()
	var buf bytes.Buffer
	h := oplog.StreamHeader{Source: ops[0].Replica, Prefix: prefix, Compress: compress,
		Ranges: []oplog.Range{{Replica: ops[0].Replica, To: 10}}}
	sw, err := oplog.NewStreamWriter(&buf, h)
	if err != nil {
		f.Fatal(err)
	}
	for i := range ops {
		if err := sw.Add(&ops[i]); err != nil {
			f.Fatal(err)
		}
	}
	if _, err := sw.Close(); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzChangeStream reads arbitrary bytes as a change stream: an error
// wraps ErrCorruption or ErrNewerFormat; an accepted stream's ops keep
// the header's promises and write back into a stream that reads the same.
func FuzzChangeStream(f *testing.F) {
	for _, s := range [][]byte{
		oplogSeedStream(f, false, nil),
		oplogSeedStream(f, true, nil),
		oplogSeedStream(f, false, []byte("user/")),
	} {
		f.Add(s)
		f.Add(s[:len(s)-3])
	}
	f.Add([]byte("PLRSCHNG\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := oplog.ReadStream(bytes.NewReader(data))
		// VerifyStream (what ImportChanges reads with) accepts and refuses
		// exactly what ReadStream does, with the same error, and its
		// chunks hold the same ops.
		v, verr := oplog.VerifyStream(bytes.NewReader(data))
		if (err == nil) != (verr == nil) || err != nil && err.Error() != verr.Error() {
			t.Fatalf("ReadStream: %v; VerifyStream: %v", err, verr)
		}
		if err == nil {
			var ops []oplog.Op
			for i := range v.NumChunks() {
				if ops, err = v.Chunk(i, ops); err != nil {
					t.Fatalf("chunk %d of a verified stream: %v", i, err)
				}
			}
			if len(ops) != len(s.Ops) || v.Count != len(ops) {
				t.Fatalf("VerifyStream: %d ops (count %d), ReadStream %d", len(ops), v.Count, len(s.Ops))
			}
			var maxHLC oplog.Timestamp
			for i := range ops {
				maxHLC = max(maxHLC, s.Ops[i].HLC)
				if !bytes.Equal(oplog.AppendOp(nil, &ops[i]), oplog.AppendOp(nil, &s.Ops[i])) {
					t.Fatalf("op %d differs between VerifyStream and ReadStream", i)
				}
			}
			if maxHLC != v.MaxHLC {
				t.Fatalf("MaxHLC %v, want %v", v.MaxHLC, maxHLC)
			}
		}
		if err != nil {
			if !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
				t.Fatalf("error %v is neither corruption nor newer format", err)
			}
			return
		}
		var buf bytes.Buffer
		sw, err := oplog.NewStreamWriter(&buf, s.Header)
		if err != nil {
			t.Fatalf("accepted header %+v refused by the writer: %v", s.Header, err)
		}
		ends := s.Ends
		for i := range s.Ops {
			if err := sw.Add(&s.Ops[i]); err != nil {
				t.Fatalf("accepted op %d refused by the writer: %v", i, err)
			}
			if len(ends) > 0 && ends[0] == i {
				ends = ends[1:]
				sw.EndTransaction()
			}
		}
		if n, err := sw.Close(); err != nil || n != len(s.Ops) {
			t.Fatalf("Close = %d, %v", n, err)
		}
		s2, err := oplog.ReadStream(&buf)
		if err != nil || len(s2.Ops) != len(s.Ops) {
			t.Fatalf("rewritten stream: %v", err)
		}
		if !slices.Equal(s.Ends, s2.Ends) {
			t.Fatalf("transaction ends changed on rewrite: %v, then %v", s.Ends, s2.Ends)
		}
		for i := range s.Ops {
			a, b := oplog.AppendOp(nil, &s.Ops[i]), oplog.AppendOp(nil, &s2.Ops[i])
			if !bytes.Equal(a, b) {
				t.Fatalf("op %d changed on rewrite", i)
			}
		}
	})
}

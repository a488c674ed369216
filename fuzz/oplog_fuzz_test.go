package fuzz

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
)

func oplogSeedOps() []oplog.Op {
	r := oplog.ReplicaID{0x5e, 0xed}
	ts := oplog.MakeTimestamp(1_750_000_000_000, 0)
	return []oplog.Op{
		{Replica: r, Seq: 1, HLC: ts, Kind: oplog.KindPut, Key: []byte("user/1"), Value: []byte(`{"name":"ada"}`)},
		{Replica: r, Seq: 2, HLC: ts + 1, Kind: oplog.KindSetField, Key: []byte("user/1"), Field: []byte("email"), Value: []byte("a@x")},
		{Replica: r, Seq: 3, HLC: ts + 1<<16, Kind: oplog.KindIncr, Key: []byte("user/1"), Field: []byte("visits"), Delta: -3},
		{Replica: r, Seq: 7, HLC: ts + 5<<16 + 2, Kind: oplog.KindDeleteField, Key: []byte("user/1"), Field: []byte("email")},
		{Replica: r, Seq: 8, HLC: ts + 5<<16 + 3, Kind: oplog.KindDelete, Key: []byte("user/2")},
	}
}

func checkOplogErr(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("error %v does not wrap ErrCorruption", err)
	}
}

// FuzzOpDecode decodes arbitrary bytes as a standalone op: an error wraps
// ErrCorruption; a decoded op lies inside the input and re-encodes to
// exactly the bytes it was read from (the encoding is canonical).
func FuzzOpDecode(f *testing.F) {
	for _, op := range oplogSeedOps() {
		enc := oplog.AppendOp(nil, &op)
		f.Add(enc)
		f.Add(enc[:len(enc)-1])
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		op, n, err := oplog.DecodeOp(data)
		if err != nil {
			checkOplogErr(t, err)
			return
		}
		if n <= 0 || n > len(data) {
			t.Fatalf("decoded %d bytes of %d", n, len(data))
		}
		if re := oplog.AppendOp(nil, &op); !bytes.Equal(re, data[:n]) {
			t.Fatalf("op %+v re-encodes as %x, read from %x", op, re, data[:n])
		}
	})
}

// FuzzOpBatchDecode decodes arbitrary bytes as a batch of one replica's
// ops, with the same properties as FuzzOpDecode.
func FuzzOpBatchDecode(f *testing.F) {
	ops := oplogSeedOps()
	enc := oplog.AppendBatch(nil, ops[0].Replica, ops)
	f.Add(enc)
	f.Add(enc[:len(enc)-2])
	f.Add(oplog.AppendBatch(nil, ops[0].Replica, nil))
	f.Add(oplog.AppendBatch(nil, ops[0].Replica, ops[3:]))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		replica, got, n, err := oplog.DecodeBatch(nil, data)
		if err != nil {
			checkOplogErr(t, err)
			return
		}
		if n <= 0 || n > len(data) || 2*len(got) > n {
			t.Fatalf("decoded %d ops from %d bytes of %d", len(got), n, len(data))
		}
		for i := range got {
			if got[i].Replica != replica || !got[i].Kind.Valid() {
				t.Fatalf("op %d: %+v", i, got[i])
			}
		}
		if re := oplog.AppendBatch(nil, replica, got); !bytes.Equal(re, data[:n]) {
			t.Fatalf("batch re-encodes as %x, read from %x", re, data[:n])
		}
	})
}

// FuzzVersionVectorDecode decodes arbitrary bytes as a version vector: an
// error wraps ErrCorruption; a decoded vector re-encodes to exactly the
// bytes it was read from.
func FuzzVersionVectorDecode(f *testing.F) {
	vv := oplog.VersionVector{{1}: 7, {2, 3}: 1 << 40, {0xff}: 1}
	f.Add(vv.Append(nil))
	f.Add(oplog.VersionVector{}.Append(nil))
	f.Add(vv.Append(nil)[:20])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, n, err := oplog.DecodeVersionVector(data)
		if err != nil {
			checkOplogErr(t, err)
			return
		}
		if n <= 0 || n > len(data) || 17*len(v) > n {
			t.Fatalf("decoded %d entries from %d bytes of %d", len(v), n, len(data))
		}
		if re := v.Append(nil); !bytes.Equal(re, data[:n]) {
			t.Fatalf("vector %v re-encodes as %x, read from %x", v, re, data[:n])
		}
		if !v.Merge(v).Equal(v) || v.Compare(v.Clone()) != oplog.Equal {
			t.Fatalf("vector %v is not equal to itself", v)
		}
	})
}

// FuzzReplicaFile reads arbitrary bytes as a REPLICA file: an error wraps
// ErrCorruption or ErrNewerFormat; an accepted file holds a non-zero ID and
// is exactly the file WriteReplicaFile writes for that ID.
func FuzzReplicaFile(f *testing.F) {
	good := replicaFile(f, oplog.ReplicaID{0xab, 0xcd, 15: 1})
	f.Add(good)
	f.Add(good[:20])
	f.Add(append(append([]byte(nil), good...), 0))
	newer := append([]byte(nil), good...)
	newer[8] = 2
	f.Add(newer)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := vfs.NewMem()
		w, err := fs.Create("REPLICA")
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
		id, err := oplog.ReadReplicaFile(fs, "REPLICA")
		if err != nil {
			if !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
				t.Fatalf("error %v is neither corruption nor newer format", err)
			}
			return
		}
		if id.IsZero() {
			t.Fatal("accepted the zero replica ID")
		}
		if want := replicaFile(t, id); !bytes.Equal(want, data) {
			t.Fatalf("accepted %x, but the file for %v is %x", data, id, want)
		}
	})
}

// FuzzRejoinFile reads arbitrary bytes as a REJOINING marker, with
// FuzzReplicaFile's rules; a REPLICA file is never taken for one.
func FuzzRejoinFile(f *testing.F) {
	good := rejoinFile(f, oplog.ReplicaID{0xab, 0xcd, 15: 1})
	f.Add(good)
	f.Add(good[:20])
	f.Add(append(append([]byte(nil), good...), 0))
	f.Add(replicaFile(f, oplog.ReplicaID{0xab, 0xcd, 15: 1}))
	newer := append([]byte(nil), good...)
	newer[8] = 2
	f.Add(newer)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := oplog.DecodeRejoinFile("REJOINING", data)
		if err != nil {
			if !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
				t.Fatalf("error %v is neither corruption nor newer format", err)
			}
			return
		}
		if id.IsZero() {
			t.Fatal("accepted the zero replica ID")
		}
		if want := rejoinFile(t, id); !bytes.Equal(want, data) {
			t.Fatalf("accepted %x, but the marker for %v is %x", data, id, want)
		}
	})
}

func rejoinFile(tb testing.TB, id oplog.ReplicaID) []byte {
	tb.Helper()
	return idFile(tb, id, "REJOINING", oplog.WriteRejoinFile)
}

func replicaFile(tb testing.TB, id oplog.ReplicaID) []byte {
	tb.Helper()
	return idFile(tb, id, "REPLICA", oplog.WriteReplicaFile)
}

func idFile(tb testing.TB, id oplog.ReplicaID, name string, write func(vfs.FS, string, oplog.ReplicaID) error) []byte {
	tb.Helper()
	fs := vfs.NewMem()
	if err := write(fs, name, id); err != nil {
		tb.Fatal(err)
	}
	r, err := fs.Open(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

package fuzz

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
)

func oplogSeedSnapshot(f *testing.F, codec oplog.SnapshotCodec) []byte {
	a, b := oplog.ReplicaID{0xa0, 15: 1}, oplog.ReplicaID{0xb0, 15: 2}
	const ts = oplog.Timestamp(1_750_000_000_000 << 16)
	var buf bytes.Buffer
	sw, err := oplog.NewSnapshotWriter(&buf, oplog.SnapshotHeader{Source: a, VV: oplog.VersionVector{a: 9, b: 4}, Horizon: ts, Clock: ts + 9}, codec)
	if err != nil {
		f.Fatal(err)
	}
	st := oplog.AppendPutState(nil, ts+1, []byte("value"))
	op := oplog.Op{Replica: b, Seq: 4, HLC: ts + 2, Kind: oplog.KindSetField, Key: []byte("k2"), Field: []byte("f"), Value: []byte("x")}
	st2, _, err := oplog.ApplyOp(st, true, &op, a)
	if err != nil {
		f.Fatal(err)
	}
	for i, s := range [][]byte{st, st2} {
		p, err := oplog.AppendPortableState(nil, s, a, 9)
		if err != nil {
			f.Fatal(err)
		}
		if err := sw.Add(1, []byte{'k', byte('1' + i)}, p); err != nil {
			f.Fatal(err)
		}
	}
	if _, err := sw.Close(); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzSnapshot reads arbitrary bytes as a state snapshot: an error wraps
// ErrCorruption or ErrNewerFormat; an accepted snapshot's entries are
// ascending portable states and write back into a snapshot that reads the
// same.
func FuzzSnapshot(f *testing.F) {
	for _, codec := range []oplog.SnapshotCodec{oplog.SnapshotS2, oplog.SnapshotZstd, oplog.SnapshotRaw} {
		s := oplogSeedSnapshot(f, codec)
		f.Add(s)
		f.Add(s[:len(s)-3])
	}
	f.Add([]byte("PLRSSNAP\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		type entry struct {
			ns         byte
			key, state []byte
		}
		var entries []entry
		sr, err := oplog.NewSnapshotReader(bytes.NewReader(data))
		if err == nil {
			for {
				ns, k, s, nerr := sr.Next()
				if errors.Is(nerr, io.EOF) {
					break
				}
				if nerr != nil {
					err = nerr
					break
				}
				if oplog.CheckPortableState(s) != nil {
					t.Fatalf("entry %q: state does not check", k)
				}
				entries = append(entries, entry{ns, bytes.Clone(k), bytes.Clone(s)})
			}
		}
		if err != nil {
			if !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
				t.Fatalf("error does not wrap ErrCorruption or ErrNewerFormat: %v", err)
			}
			return
		}
		h := sr.Header()
		var buf bytes.Buffer
		sw, err := oplog.NewSnapshotWriter(&buf, h, oplog.SnapshotS2)
		if err != nil {
			t.Fatalf("rewriting an accepted header: %v", err)
		}
		for _, e := range entries {
			if err := sw.Add(e.ns, e.key, e.state); err != nil {
				t.Fatalf("rewriting an accepted entry: %v", err)
			}
		}
		if _, err := sw.Close(); err != nil {
			t.Fatal(err)
		}
		sr2, err := oplog.NewSnapshotReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			ns, k, s, err := sr2.Next()
			if errors.Is(err, io.EOF) {
				if i != len(entries) {
					t.Fatalf("rewritten snapshot holds %d entries, want %d", i, len(entries))
				}
				break
			}
			if err != nil {
				t.Fatalf("rewritten snapshot: %v", err)
			}
			if i >= len(entries) || ns != entries[i].ns || !bytes.Equal(k, entries[i].key) || !bytes.Equal(s, entries[i].state) {
				t.Fatalf("rewritten entry %d differs", i)
			}
		}
	})
}

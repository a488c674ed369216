package fuzz

import (
	"bytes"
	"errors"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
)

// oplogSeedStates returns valid states: compact puts and tombstones, and
// extended states with remote registers, fields and counters.
func oplogSeedStates(f *testing.F) [][]byte {
	self := oplog.ReplicaID{0x5e, 0x1f}
	ts := oplog.MakeTimestamp(1_750_000_000_000, 0)
	states := [][]byte{
		oplog.AppendPutState(nil, ts, []byte(`{"name":"ada"}`)),
		oplog.AppendDeleteState(nil, ts),
	}
	var st []byte
	for _, op := range oplogSeedOps() {
		var err error
		if st, _, err = oplog.ApplyOp(st, st != nil, &op, self); err != nil {
			f.Fatal(err)
		}
		states = append(states, st)
	}
	return states
}

func checkStateErr(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
		t.Fatalf("error %v is neither corruption nor newer format", err)
	}
}

// FuzzDocumentState feeds arbitrary bytes to every state decoder and to
// the merge: errors wrap ErrCorruption (or ErrNewerFormat), nothing
// panics, a decodable state reads the same through DocumentValue and
// DecodeDocument and re-encodes (through a Merge with no operands) to the
// same bytes, and applying an op to it gives a decodable state.
func FuzzDocumentState(f *testing.F) {
	for _, st := range oplogSeedStates(f) {
		f.Add(st)
		f.Add(st[:len(st)-1])
	}
	ts := oplog.MakeTimestamp(1_750_000_000_000, 0)
	f.Add(oplog.AppendFieldOperand(nil, ts, []byte("f"), []byte("v"), false))
	f.Add(oplog.AppendIncrOperand(nil, ts, []byte("n"), -5))
	for k := oplog.KindPut; k <= oplog.KindIncr; k++ {
		f.Add(oplog.AppendRemoteOperand(nil, &oplog.Op{Replica: oplog.ReplicaID{9}, Seq: 12, HLC: ts, Kind: k, Key: []byte("k"), Field: []byte("f"), Value: []byte("v"), Delta: 3}))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		key := []byte("k")
		// As an operand, onto nothing and onto a state.
		m := &oplog.Merger{}
		if st, err := m.Merge(key, [][]byte{data}, nil, false); err != nil {
			checkStateErr(t, err)
		} else if _, err := oplog.DecodeDocument(st); err != nil {
			t.Fatalf("merge of operand %x gives an unreadable state %x: %v", data, st, err)
		}
		if _, err := oplog.LocalOp(key, data, true); err != nil {
			checkStateErr(t, err)
		}
		if _, err := oplog.LocalOp(key, data, false); err != nil {
			checkStateErr(t, err)
		}
		v, exists, verr := oplog.DocumentValue(data)
		if verr != nil {
			checkStateErr(t, verr)
		}
		doc, err := oplog.DecodeDocument(data)
		if err != nil {
			checkStateErr(t, err)
			return
		}
		if verr != nil || exists != doc.Exists || !bytes.Equal(v, doc.Value) {
			t.Fatalf("DocumentValue %q %v %v, DecodeDocument %+v", v, exists, verr, doc)
		}
		re, err := m.Merge(key, nil, data, true)
		if err != nil || !bytes.Equal(re, data) {
			t.Fatalf("state %x re-encodes as %x (%v)", data, re, err)
		}
		if _, err := oplog.Collectible(data, oplog.ReplicaID{}, func(oplog.ReplicaID) oplog.Timestamp { return ts }); err != nil {
			t.Fatalf("Collectible on a decodable state: %v", err)
		}
		for _, op := range oplogSeedOps() {
			st, _, err := oplog.ApplyOp(data, true, &op, oplog.ReplicaID{})
			if err != nil {
				t.Fatalf("ApplyOp on a decodable state: %v", err)
			}
			if _, err := oplog.DecodeDocument(st); err != nil {
				t.Fatalf("ApplyOp gave an unreadable state %x: %v", st, err)
			}
		}
	})
}

package fuzz

import (
	"errors"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries"
	"github.com/plures/pluresdb/timeseries/tsdb"
)

// FuzzSeriesChunk feeds arbitrary bytes to the series chunk decoders (a
// stored chunk value, a snapshot entry's check, a merge of operands):
// each returns a result or an error wrapping ErrCorruption (or
// ErrNewerFormat), never panics; a value that decodes merges again into
// the same samples.
func FuzzSeriesChunk(f *testing.F) {
	self := oplog.ReplicaID{9}
	c, _ := tsdb.EncodeSamples([]timeseries.Sample{{T: 1000, V: 1}, {T: 2000, V: 2.5}})
	op := tsdb.AppendLocalOperand(nil, c)
	state, _ := (&tsdb.Merger{Self: self}).Merge(nil, [][]byte{op}, nil, false)
	cold, _ := (&tsdb.Merger{Self: self, Cold: true}).Merge(nil, [][]byte{op}, nil, false)
	f.Add(op)
	f.Add(state)
	f.Add(cold)
	f.Add(tsdb.AppendRemoteOperand(nil, 5, oplog.ReplicaID{3}, c))
	key := tsdb.ChunkKey(nil, "cpu", 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		ok := func(err error) {
			if err != nil && !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) &&
				!errors.Is(err, timeseries.ErrInvalidSeries) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
		}
		ch, err := tsdb.DecodeChunk(data, self)
		ok(err)
		ok(tsdb.CheckStored(key, data))
		if _, _, err := tsdb.StateSummary(data); err != nil {
			ok(err)
		}
		m := &tsdb.Merger{Self: self}
		merged, err := m.Merge(key, [][]byte{data}, nil, false)
		ok(err)
		if _, err := m.Merge(key, [][]byte{op}, data, true); err != nil {
			ok(err)
		}
		if err == nil && ch != nil {
			again, err := tsdb.DecodeChunk(merged, self)
			if err != nil {
				t.Fatalf("a merged state does not decode: %v", err)
			}
			if len(again.Samples) != len(ch.Samples) && tsdb.IsOperand(data) {
				t.Fatalf("merging an operand alone kept %d of %d samples", len(again.Samples), len(ch.Samples))
			}
		}
	})
}

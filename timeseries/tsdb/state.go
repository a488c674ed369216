package tsdb

import (
	"encoding/binary"
	"math"
	"slices"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries"
	"github.com/plures/pluresdb/timeseries/chunk"
)

// Stamp says which write of a timestamp wins: the one with the higher
// HLC, then the higher origin replica ID (the engine's last-writer-wins
// order, so every replica keeps the same sample).
type Stamp struct {
	HLC    oplog.Timestamp
	Origin oplog.ReplicaID
}

// Above reports whether s wins over o.
func (s Stamp) Above(o Stamp) bool {
	if s.HLC != o.HLC {
		return s.HLC > o.HLC
	}
	return s.Origin.Compare(o.Origin) > 0
}

// Value kinds, the first byte of a stored value. Part of the format.
const (
	kindOperand = 0x01 // one operation's samples (a merge operand)
	kindState   = 0x02 // a chunk's folded samples
)

const (
	flagRemote = 0x01 // an operand's origin follows its timestamp
	// OperandHLCOffset is where a local operand holds its timestamp,
	// 8 bytes little-endian, written at commit (oplog.StampLocal writes
	// there).
	OperandHLCOffset = 2
	encHot           = 0
	encCold          = 1
	encRaw           = 2
	// coldFrom is the number of samples from which a compacted chunk is
	// encoded cold.
	coldFrom = 64
)

// Operand layout:
//
//	0x01 | flags | HLC u64 LE | [origin 16, if flags&flagRemote] | hot chunk
//
// A local operand has no origin: the engine's replica (Merger.Self) wrote
// it.

// CheckSamples is timeseries.CheckSamples.
func CheckSamples(samples []timeseries.Sample) error { return timeseries.CheckSamples(samples) }

// EncodeSamples returns the hot chunk of samples (CheckSamples first):
// the value of a samples operation in the op log.
func EncodeSamples(samples []timeseries.Sample) ([]byte, error) {
	if err := CheckSamples(samples); err != nil {
		return nil, err
	}
	a := chunk.NewAppender()
	for _, s := range samples {
		if err := a.Append(s.T, s.V); err != nil {
			return nil, err
		}
	}
	return slices.Clone(a.Bytes()), nil
}

// AppendLocalOperand appends a local operand holding the hot chunk c (an
// operation's value, EncodeSamples) to dst, its timestamp left 0 for the
// engine to stamp at OperandHLCOffset.
func AppendLocalOperand(dst, c []byte) []byte {
	dst = append(dst, kindOperand, 0)
	dst = binary.LittleEndian.AppendUint64(dst, 0)
	return append(dst, c...)
}

// AppendRemoteOperand appends the operand of another replica's samples
// operation (its timestamp, origin and value c) to dst.
func AppendRemoteOperand(dst []byte, hlc oplog.Timestamp, origin oplog.ReplicaID, c []byte) []byte {
	dst = append(dst, kindOperand, flagRemote)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(hlc))
	dst = append(dst, origin[:]...)
	return append(dst, c...)
}

// Operand is a decoded operand.
type Operand struct {
	HLC    oplog.Timestamp
	Remote bool
	Origin oplog.ReplicaID // when Remote
	Chunk  []byte          // the hot chunk; aliases the value
}

// IsOperand reports whether a stored value of a chunk key is an operand
// (else a folded state).
func IsOperand(v []byte) bool { return len(v) > 0 && v[0] == kindOperand }

// DecodeOperand parses an operand. Errors wrap ErrCorruption.
func DecodeOperand(v []byte) (Operand, error) {
	var o Operand
	if len(v) < 2+8 || v[0] != kindOperand {
		return o, errs.Corruptf("series operand", 0, "not an operand (%d bytes)", len(v))
	}
	if v[1]&^flagRemote != 0 {
		return o, errs.Corruptf("series operand", 1, "unknown flags %#x", v[1])
	}
	o.HLC = oplog.Timestamp(binary.LittleEndian.Uint64(v[2:10]))
	rest := v[10:]
	if v[1]&flagRemote != 0 {
		if len(rest) < 16 {
			return o, errs.Corruptf("series operand", 10, "origin truncated")
		}
		o.Remote = true
		copy(o.Origin[:], rest[:16])
		rest = rest[16:]
	}
	o.Chunk = rest
	return o, nil
}

// Summary is a chunk's rollup: what Aggregate needs of a chunk that lies
// wholly inside one window, so long ranges are answered without decoding
// samples. Min and Max ignore NaN unless every value is NaN; Sum
// propagates NaN (see timeseries.Agg).
type Summary struct {
	Count           int
	Min, Max        float64
	Sum, SumC       float64 // Neumaier-compensated: the sum is Sum+SumC
	Drops           float64 // the sum of the values before each drop (a counter reset)
	FirstT, LastT   int64
	FirstV, LastV   float64
	hasMinMaxNonNaN bool
}

// Summarize returns the summary of samples (ascending T, at least one).
func Summarize(samples []timeseries.Sample) Summary {
	var s Summary
	for i, x := range samples {
		s.add(x, i == 0, samples)
	}
	return s
}

func (s *Summary) add(x timeseries.Sample, first bool, all []timeseries.Sample) {
	if first {
		*s = Summary{Count: 1, Min: x.V, Max: x.V, FirstT: x.T, FirstV: x.V, LastT: x.T, LastV: x.V}
		s.hasMinMaxNonNaN = !math.IsNaN(x.V)
		s.Sum = x.V
		return
	}
	s.Count++
	switch {
	case math.IsNaN(x.V):
	case !s.hasMinMaxNonNaN:
		s.Min, s.Max, s.hasMinMaxNonNaN = x.V, x.V, true
	default:
		s.Min, s.Max = math.Min(s.Min, x.V), math.Max(s.Max, x.V)
	}
	s.Sum, s.SumC = neumaier(s.Sum, s.SumC, x.V)
	if x.V < s.LastV {
		s.Drops += s.LastV // a reset: the counter restarted from zero
	}
	s.LastT, s.LastV = x.T, x.V
}

// neumaier adds x to the compensated sum (sum, c).
func neumaier(sum, c, x float64) (float64, float64) {
	t := sum + x
	if math.Abs(sum) >= math.Abs(x) {
		c += (sum - t) + x
	} else {
		c += (x - t) + sum
	}
	return t, c
}

// Merge combines s with o, whose samples all come after s's.
func (s *Summary) Merge(o *Summary) {
	if s.Count == 0 {
		*s = *o
		return
	}
	if o.Count == 0 {
		return
	}
	switch {
	case !o.hasMinMaxNonNaN:
	case !s.hasMinMaxNonNaN:
		s.Min, s.Max, s.hasMinMaxNonNaN = o.Min, o.Max, true
	default:
		s.Min, s.Max = math.Min(s.Min, o.Min), math.Max(s.Max, o.Max)
	}
	s.Sum, s.SumC = neumaier(s.Sum, s.SumC, o.Sum)
	s.SumC += o.SumC
	if o.FirstV < s.LastV {
		s.Drops += s.LastV
	}
	s.Drops += o.Drops
	s.Count += o.Count
	s.LastT, s.LastV = o.LastT, o.LastV
}

// Rollup returns s as a timeseries.Rollup, for an Aggregator.
func (s *Summary) Rollup() timeseries.Rollup {
	r := timeseries.Rollup{Count: s.Count, Min: s.Min, Max: s.Max, Sum: s.Sum, SumC: s.SumC,
		Drops: s.Drops, FirstT: s.FirstT, LastT: s.LastT, FirstV: s.FirstV, LastV: s.LastV}
	if !s.hasMinMaxNonNaN {
		r.Min, r.Max = math.NaN(), math.NaN()
	}
	return r
}

// Increase is the counter increase over the samples: last - first, plus
// the value before each drop (Prometheus's increase, without
// extrapolation).
func (s *Summary) Increase() float64 { return s.LastV - s.FirstV + s.Drops }

func appendF64(b []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

func (s *Summary) append(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(s.Count))
	flags := byte(0)
	if s.hasMinMaxNonNaN {
		flags = 1
	}
	b = append(b, flags)
	for _, f := range []float64{s.Min, s.Max, s.Sum, s.SumC, s.Drops, s.FirstV, s.LastV} {
		b = appendF64(b, f)
	}
	b = binary.AppendVarint(b, s.FirstT)
	return binary.AppendVarint(b, s.LastT)
}

package oplog

import (
	"encoding/binary"
	"fmt"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/timeseries"
	"github.com/plures/pluresdb/timeseries/chunk"
)

// OpKind says what an operation does. The values are part of the format.
type OpKind uint8

const (
	KindPut         OpKind = 1 // write the whole document (Value)
	KindDelete      OpKind = 2 // tombstone the key
	KindSetField    OpKind = 3 // set one field of the document
	KindDeleteField OpKind = 4 // remove one field
	KindIncr        OpKind = 5 // add Delta to this replica's share of a counter field
	// KindSamples appends samples to a time series: Key is the series'
	// canonical name (timeseries.Labels.String), Value a hot chunk
	// (timeseries/chunk) of samples of one bucket. For a repeated
	// timestamp the sample of the higher (HLC, replica) wins.
	KindSamples OpKind = 6
	// KindDeleteSeries deletes a time series: Key is its canonical name.
	// Every sample written under a lower (HLC, replica) is deleted.
	KindDeleteSeries OpKind = 7
	maxKind                 = KindDeleteSeries
)

func (k OpKind) String() string {
	switch k {
	case KindPut:
		return "put"
	case KindDelete:
		return "delete"
	case KindSetField:
		return "setfield"
	case KindDeleteField:
		return "deletefield"
	case KindIncr:
		return "incr"
	case KindSamples:
		return "samples"
	case KindDeleteSeries:
		return "deleteseries"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Valid reports whether k is a known kind.
func (k OpKind) Valid() bool { return k >= KindPut && k <= maxKind }

// hasField, hasValue and hasDelta say which parts of an Op a kind uses;
// only those are encoded.
func (k OpKind) hasField() bool { return k == KindSetField || k == KindDeleteField || k == KindIncr }
func (k OpKind) hasValue() bool { return k == KindPut || k == KindSetField || k == KindSamples }

// Document reports whether k changes a document (all kinds but the time
// series'):
// the kinds as-of reads and document states fold.
func (k OpKind) Document() bool { return k >= KindPut && k <= KindIncr }
func (k OpKind) hasDelta() bool { return k == KindIncr }

// Op is one CRDT operation: the unit the op log records and replicas
// exchange. (Replica, Seq) names it uniquely; (HLC, Replica) orders it
// against every other op for last-writer-wins.
//
// Field is used by SetField, DeleteField and Incr; Value by Put and
// SetField; Delta by Incr. Parts a kind does not use are not encoded and
// decode as nil or zero.
type Op struct {
	Replica ReplicaID
	Seq     uint64
	HLC     Timestamp
	Kind    OpKind
	Key     []byte
	Field   []byte
	Value   []byte
	Delta   int64
}

// Validate reports an op that could not have come from a writer: an
// unknown kind, sequence number 0, or an empty key.
func (op *Op) Validate() error {
	switch {
	case !op.Kind.Valid():
		return fmt.Errorf("oplog: unknown op kind %d", op.Kind)
	case op.Seq == 0:
		return fmt.Errorf("oplog: op with sequence number 0")
	case len(op.Key) == 0:
		return fmt.Errorf("oplog: op with an empty key")
	case op.Kind == KindSamples:
		return validateSamples(op)
	case op.Kind == KindDeleteSeries:
		name, err := timeseries.Canonical(string(op.Key))
		if err != nil {
			return fmt.Errorf("oplog: series deletion: %w", err)
		}
		if name != string(op.Key) {
			return fmt.Errorf("oplog: series deletion: series %q is not in canonical form", op.Key)
		}
	}
	return nil
}

// validateSamples checks a samples op: a canonical series name, and a
// hot chunk of samples that timeseries.CheckSamples accepts.
func validateSamples(op *Op) error {
	name, err := timeseries.Canonical(string(op.Key))
	if err != nil {
		return fmt.Errorf("oplog: samples op: %w", err)
	}
	if name != string(op.Key) {
		return fmt.Errorf("oplog: samples op: series %q is not in canonical form", op.Key)
	}
	samples, err := chunk.DecodeHot(op.Value, nil)
	if err != nil {
		return fmt.Errorf("oplog: samples op of series %s: %w", op.Key, err)
	}
	if err := timeseries.CheckSamples(samples); err != nil {
		return fmt.Errorf("oplog: samples op of series %s: %w", op.Key, err)
	}
	return nil
}

func appendBytes(dst, p []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(p)))
	return append(dst, p...)
}

// appendBody appends the kind-dependent tail of an op: key, then field,
// value and delta as the kind uses them.
func appendBody(dst []byte, op *Op) []byte {
	dst = appendBytes(dst, op.Key)
	if op.Kind.hasField() {
		dst = appendBytes(dst, op.Field)
	}
	if op.Kind.hasValue() {
		dst = appendBytes(dst, op.Value)
	}
	if op.Kind.hasDelta() {
		dst = binary.AppendVarint(dst, op.Delta)
	}
	return dst
}

// AppendOp appends the standalone encoding of op (see the package doc) to
// dst and returns the extended slice. An op of unknown kind is encoded with
// its key only, and DecodeOp refuses it.
func AppendOp(dst []byte, op *Op) []byte {
	dst = append(dst, byte(op.Kind))
	dst = append(dst, op.Replica[:]...)
	dst = binary.AppendUvarint(dst, op.Seq)
	dst = binary.AppendUvarint(dst, uint64(op.HLC))
	return appendBody(dst, op)
}

// decoder reads the parts of an encoded op from b, reporting errors
// against what at offsets relative to the start of b.
type decoder struct {
	what string
	b    []byte
	off  int
}

func (d *decoder) corrupt(off int, format string, args ...any) error {
	return errs.Corruptf(d.what, int64(off), format, args...)
}

func (d *decoder) uvarint(name string) (uint64, error) {
	x, n := uvarint(d.b[d.off:])
	if n <= 0 {
		return 0, d.corrupt(d.off, "bad %s", name)
	}
	d.off += n
	return x, nil
}

func (d *decoder) varint(name string) (int64, error) {
	x, n := varint(d.b[d.off:])
	if n <= 0 {
		return 0, d.corrupt(d.off, "bad %s", name)
	}
	d.off += n
	return x, nil
}

// bytes returns a length-prefixed byte string; it aliases d.b, so a length
// read off the input never causes an allocation.
func (d *decoder) bytes(name string) ([]byte, error) {
	start := d.off
	l, n := uvarint(d.b[d.off:])
	if n <= 0 {
		return nil, d.corrupt(start, "bad %s length", name)
	}
	d.off += n
	if l > uint64(len(d.b)-d.off) {
		return nil, d.corrupt(start, "%s of %d bytes overruns the %d bytes left", name, l, len(d.b)-d.off)
	}
	p := d.b[d.off : d.off+int(l) : d.off+int(l)]
	d.off += int(l)
	return p, nil
}

func (d *decoder) body(op *Op) error {
	var err error
	if op.Key, err = d.bytes("key"); err != nil {
		return err
	}
	if op.Kind.hasField() {
		if op.Field, err = d.bytes("field"); err != nil {
			return err
		}
	}
	if op.Kind.hasValue() {
		if op.Value, err = d.bytes("value"); err != nil {
			return err
		}
	}
	if op.Kind.hasDelta() {
		if op.Delta, err = d.varint("delta"); err != nil {
			return err
		}
	}
	return nil
}

// DecodeOp decodes an op AppendOp wrote at the start of b and returns it
// with the number of bytes it took. Key, Field and Value alias b. Errors
// wrap errs.ErrCorruption; their offsets are relative to b.
func DecodeOp(b []byte) (Op, int, error) {
	var op Op
	d := decoder{what: "op", b: b}
	if len(b) < 1+len(op.Replica) {
		return Op{}, 0, d.corrupt(0, "op of %d bytes is truncated", len(b))
	}
	op.Kind = OpKind(b[0])
	if !op.Kind.Valid() {
		return Op{}, 0, d.corrupt(0, "unknown op kind %d", b[0])
	}
	copy(op.Replica[:], b[1:])
	d.off = 1 + len(op.Replica)
	var err error
	if op.Seq, err = d.uvarint("sequence number"); err != nil {
		return Op{}, 0, err
	}
	hlc, err := d.uvarint("timestamp")
	if err != nil {
		return Op{}, 0, err
	}
	op.HLC = Timestamp(hlc)
	if err := d.body(&op); err != nil {
		return Op{}, 0, err
	}
	return op, d.off, nil
}

// Batch op header bits. Part of the format.
const (
	hdrKindMask = 0x07
	hdrSeqNext  = 0x08 // seq is the previous op's + 1; no seq bytes follow
	hdrHLCNext  = 0x10 // HLC is the previous op's + 1; no HLC bytes follow
	hdrReserved = 0xe0
)

// AppendBatch appends a run of ops of one replica to dst (see the package
// doc). The replica is written once and each op's own Replica is ignored;
// sequence numbers and timestamps are stored as differences from the
// previous op, so an op of a typical run costs a header byte and the
// length prefixes beyond its key, field and value.
func AppendBatch(dst []byte, replica ReplicaID, ops []Op) []byte {
	dst = append(dst, replica[:]...)
	dst = binary.AppendUvarint(dst, uint64(len(ops)))
	if len(ops) == 0 {
		return dst
	}
	dst = binary.AppendUvarint(dst, ops[0].Seq)
	dst = binary.AppendUvarint(dst, uint64(ops[0].HLC))
	// Start one before the first op so it always takes the short form.
	prevSeq, prevHLC := ops[0].Seq-1, ops[0].HLC-1
	for i := range ops {
		op := &ops[i]
		hdr := byte(op.Kind) & hdrKindMask
		if op.Seq == prevSeq+1 {
			hdr |= hdrSeqNext
		}
		if op.HLC == prevHLC+1 {
			hdr |= hdrHLCNext
		}
		dst = append(dst, hdr)
		if hdr&hdrSeqNext == 0 {
			dst = binary.AppendVarint(dst, int64(op.Seq-prevSeq))
		}
		if hdr&hdrHLCNext == 0 {
			dst = binary.AppendVarint(dst, int64(op.HLC.Physical()-prevHLC.Physical()))
			dst = binary.AppendUvarint(dst, uint64(op.HLC.Logical()))
		}
		dst = appendBody(dst, op)
		prevSeq, prevHLC = op.Seq, op.HLC
	}
	return dst
}

// minBatchOpSize is the smallest encoded batch op: a header and an empty
// key. It bounds the op count read off the input before allocating.
const minBatchOpSize = 2

// DecodeBatch decodes a batch AppendBatch wrote at the start of b. It
// appends the ops to dst (which may be nil; pass a reused slice to avoid
// allocating) and returns the replica, the extended slice and the number of
// bytes taken. Key, Field and Value alias b. On error dst is returned
// with its original length. It accepts only the encoding
// AppendBatch produces, so decoded ops re-encode to the same bytes. Errors
// wrap errs.ErrCorruption; their offsets are relative to b.
func DecodeBatch(dst []Op, b []byte) (ReplicaID, []Op, int, error) {
	var replica ReplicaID
	n0 := len(dst)
	d := decoder{what: "op batch", b: b}
	if len(b) < len(replica) {
		return replica, dst[:n0], 0, d.corrupt(0, "batch of %d bytes is truncated", len(b))
	}
	copy(replica[:], b)
	d.off = len(replica)
	count, err := d.uvarint("op count")
	if err != nil {
		return replica, dst[:n0], 0, err
	}
	if count == 0 {
		return replica, dst, d.off, nil
	}
	seq0, err := d.uvarint("first sequence number")
	if err != nil {
		return replica, dst[:n0], 0, err
	}
	hlc0, err := d.uvarint("first timestamp")
	if err != nil {
		return replica, dst[:n0], 0, err
	}
	if count > uint64(len(b)-d.off)/minBatchOpSize {
		return replica, dst[:n0], 0, d.corrupt(len(replica), "%d ops do not fit in %d bytes", count, len(b)-d.off)
	}
	dst = growOps(dst, int(count))
	prevSeq, prevHLC := seq0-1, Timestamp(hlc0)-1
	for i := range int(count) {
		start := d.off
		if d.off >= len(b) {
			return replica, dst[:n0], 0, d.corrupt(start, "op %d of %d truncated", i, count)
		}
		hdr := b[d.off]
		d.off++
		op := Op{Replica: replica, Kind: OpKind(hdr & hdrKindMask)}
		if !op.Kind.Valid() || hdr&hdrReserved != 0 {
			return replica, dst[:n0], 0, d.corrupt(start, "op %d: bad header byte %#x", i, hdr)
		}
		if i == 0 && hdr&(hdrSeqNext|hdrHLCNext) != hdrSeqNext|hdrHLCNext {
			return replica, dst[:n0], 0, d.corrupt(start, "op 0 does not start at the batch's first sequence number and timestamp")
		}
		if hdr&hdrSeqNext != 0 {
			op.Seq = prevSeq + 1
		} else {
			delta, err := d.varint("sequence number delta")
			if err != nil {
				return replica, dst[:n0], 0, err
			}
			if delta == 1 {
				return replica, dst[:n0], 0, d.corrupt(start, "op %d: sequence delta 1 written long", i)
			}
			op.Seq = prevSeq + uint64(delta)
		}
		if hdr&hdrHLCNext != 0 {
			op.HLC = prevHLC + 1
		} else {
			tsOff := d.off
			delta, err := d.varint("timestamp delta")
			if err != nil {
				return replica, dst[:n0], 0, err
			}
			logical, err := d.uvarint("logical time")
			if err != nil {
				return replica, dst[:n0], 0, err
			}
			prevPhys := prevHLC.Physical()
			if delta < -int64(prevPhys) || delta > int64(MaxPhysical-prevPhys) || logical > logicalMask {
				return replica, dst[:n0], 0, d.corrupt(tsOff, "op %d: timestamp out of range", i)
			}
			op.HLC = MakeTimestamp(uint64(int64(prevPhys)+delta), uint16(logical))
			if op.HLC == prevHLC+1 {
				return replica, dst[:n0], 0, d.corrupt(tsOff, "op %d: timestamp delta 1 written long", i)
			}
		}
		if err := d.body(&op); err != nil {
			return replica, dst[:n0], 0, err
		}
		dst = append(dst, op)
		prevSeq, prevHLC = op.Seq, op.HLC
	}
	return replica, dst, d.off, nil
}

// growOps makes room for n more ops in s without reallocating on append.
func growOps(s []Op, n int) []Op {
	if cap(s)-len(s) >= n {
		return s
	}
	g := make([]Op, len(s), len(s)+n)
	copy(g, s)
	return g
}

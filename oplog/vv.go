package oplog

import (
	"encoding/binary"
	"slices"
	"strconv"
	"strings"

	"github.com/plures/pluresdb/internal/errs"
)

// VersionVector says, per replica, the highest sequence number up to which
// all of that replica's operations are held: {r: 7} means every op of r
// numbered 7 or less. A replica's sequence numbers rise but need not be
// consecutive (the engine numbers a replica's operations with its log
// sequence numbers, which other records use too). A missing entry and an
// entry of 0 both mean "none". Sequence numbers start at 1.
//
// A VersionVector is a plain map: it is not safe for concurrent mutation.
// Merge and Min return new vectors and never modify their operands.
type VersionVector map[ReplicaID]uint64

// Ordering is the causal relation between two version vectors.
type Ordering int

const (
	Equal      Ordering = iota // same entries
	Before                     // every entry <=, at least one <
	After                      // every entry >=, at least one >
	Concurrent                 // some entry <, some entry >
)

func (o Ordering) String() string {
	switch o {
	case Equal:
		return "equal"
	case Before:
		return "before"
	case After:
		return "after"
	case Concurrent:
		return "concurrent"
	}
	return "Ordering(?)"
}

// Covers reports whether op seq of replica is among those v holds.
func (v VersionVector) Covers(replica ReplicaID, seq uint64) bool { return seq <= v[replica] }

// Advance records that op seq of replica is held, for replicas that number
// their ops consecutively: seq must be the next one (v[replica]+1) to
// advance it. It
// reports whether v covers seq afterwards, so a duplicate returns true and a
// gap (a missing earlier op) returns false and leaves v unchanged.
// v must not be nil.
func (v VersionVector) Advance(replica ReplicaID, seq uint64) bool {
	cur := v[replica]
	if seq <= cur {
		return true
	}
	if seq != cur+1 {
		return false
	}
	v[replica] = seq
	return true
}

// Clone returns a copy of v without zero entries.
func (v VersionVector) Clone() VersionVector {
	c := make(VersionVector, len(v))
	for r, s := range v {
		if s != 0 {
			c[r] = s
		}
	}
	return c
}

// Merge returns the pointwise maximum of v and o: what a replica holds
// after receiving everything both hold.
func (v VersionVector) Merge(o VersionVector) VersionVector {
	m := v.Clone()
	for r, s := range o {
		if s > m[r] {
			m[r] = s
		}
	}
	return m
}

// Min returns the pointwise minimum of v and o. The minimum of the vectors
// every peer has acknowledged is the causal GC horizon: history below it
// is held everywhere.
func (v VersionVector) Min(o VersionVector) VersionVector {
	m := make(VersionVector)
	for r, s := range v {
		if t := min(s, o[r]); t != 0 {
			m[r] = t
		}
	}
	return m
}

// MinOf returns the pointwise minimum of vs; with no vectors it returns an
// empty vector.
func MinOf(vs ...VersionVector) VersionVector {
	if len(vs) == 0 {
		return VersionVector{}
	}
	m := vs[0].Clone()
	for _, o := range vs[1:] {
		m = m.Min(o)
	}
	return m
}

// Compare returns how v relates causally to o.
func (v VersionVector) Compare(o VersionVector) Ordering {
	less, greater := false, false
	for r, s := range v {
		if t := o[r]; s < t {
			less = true
		} else if s > t {
			greater = true
		}
	}
	for r, t := range o {
		if _, ok := v[r]; !ok && t > 0 {
			less = true
		}
	}
	switch {
	case less && greater:
		return Concurrent
	case less:
		return Before
	case greater:
		return After
	}
	return Equal
}

// Equal reports whether v and o hold the same entries (zero entries and
// missing ones are the same).
func (v VersionVector) Equal(o VersionVector) bool { return v.Compare(o) == Equal }

// sortedReplicas returns the replicas of v's non-zero entries in ascending
// order.
func (v VersionVector) sortedReplicas() []ReplicaID {
	rs := make([]ReplicaID, 0, len(v))
	for r, s := range v {
		if s != 0 {
			rs = append(rs, r)
		}
	}
	slices.SortFunc(rs, ReplicaID.Compare)
	return rs
}

func (v VersionVector) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, r := range v.sortedReplicas() {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(r.String()[:8])
		b.WriteByte(':')
		b.WriteString(strconv.FormatUint(v[r], 10))
	}
	b.WriteByte('}')
	return b.String()
}

// vvEntrySize is the smallest encoded entry: a replica and a one-byte seq.
const vvEntrySize = 16 + 1

// Append appends the encoding of v to dst (see the package doc): entries
// sorted by replica, zero entries left out, so equal vectors encode to
// equal bytes.
func (v VersionVector) Append(dst []byte) []byte {
	rs := v.sortedReplicas()
	dst = binary.AppendUvarint(dst, uint64(len(rs)))
	for _, r := range rs {
		dst = append(dst, r[:]...)
		dst = binary.AppendUvarint(dst, v[r])
	}
	return dst
}

// DecodeVersionVector decodes a vector Append wrote at the start of b and
// returns it with the number of bytes it took. It accepts only the
// canonical encoding (ascending replicas, no zero entries), so a decoded
// vector re-encodes to the same bytes. Errors wrap errs.ErrCorruption;
// their offsets are relative to b.
func DecodeVersionVector(b []byte) (VersionVector, int, error) {
	const what = "version vector"
	count, off := uvarint(b)
	if off <= 0 {
		return nil, 0, errs.Corruptf(what, 0, "bad entry count")
	}
	// Bound the count by the bytes present before allocating for it.
	if count > uint64(len(b)-off)/vvEntrySize {
		return nil, 0, errs.Corruptf(what, 0, "%d entries do not fit in %d bytes", count, len(b)-off)
	}
	v := make(VersionVector, count)
	var prev ReplicaID
	for i := range count {
		start := off
		if len(b)-off < 16 {
			return nil, 0, errs.Corruptf(what, int64(start), "entry %d truncated", i)
		}
		var r ReplicaID
		copy(r[:], b[off:off+16])
		off += 16
		if i > 0 && r.Compare(prev) <= 0 {
			return nil, 0, errs.Corruptf(what, int64(start), "entry %d: replicas not in ascending order", i)
		}
		seq, n := uvarint(b[off:])
		if n <= 0 {
			return nil, 0, errs.Corruptf(what, int64(off), "entry %d: bad sequence number", i)
		}
		if seq == 0 {
			return nil, 0, errs.Corruptf(what, int64(off), "entry %d: zero sequence number", i)
		}
		off += n
		v[r] = seq
		prev = r
	}
	return v, off, nil
}

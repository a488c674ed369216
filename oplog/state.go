package oplog

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/plures/pluresdb/internal/errs"
)

// Document states and local merge operands: the two kinds of value the
// documents namespace of the LSM holds (see "Document state" in the
// package doc for the byte pictures).

// stateVersion is the format version of states and operands, their first
// byte. Part of the format.
const stateVersion = 1

// State flag bits. Part of the format.
const (
	stWhole    = 0x01 // whole register present: its 8-byte timestamp follows
	stTomb     = 0x02 // the whole register is a tombstone (only with stWhole)
	stExtended = 0x04 // replica table, whole origin, fields and counters follow
	stExists   = 0x08 // the document exists (only with stExtended)
	stReserved = 0xf0
)

// compactHeader is the size of a compact state's header: version, flags
// and the whole register's timestamp. A local Put costs this beyond its
// value.
const compactHeader = 1 + 1 + 8

const (
	whatState   = "document state"
	whatOperand = "merge operand"
)

// AppendPutState appends the state a local Put writes: a whole value of
// this replica at ts, 10 bytes beyond the value. It never reads the stored
// state: a local timestamp is above everything this replica has seen, so
// the Put replaces whatever is stored (see Merger for what that means for
// counters).
func AppendPutState(dst []byte, ts Timestamp, value []byte) []byte {
	dst = append(dst, stateVersion, stWhole)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(ts))
	return append(dst, value...)
}

// AppendDeleteState appends the state a local Delete writes: a tombstone
// of this replica at ts.
func AppendDeleteState(dst []byte, ts Timestamp) []byte {
	dst = append(dst, stateVersion, stWhole|stTomb)
	return binary.LittleEndian.AppendUint64(dst, uint64(ts))
}

// AppendFieldOperand appends the merge operand of a local SetField (or of
// a DeleteField when deleted; value is then ignored).
func AppendFieldOperand(dst []byte, ts Timestamp, field, value []byte, deleted bool) []byte {
	kind := KindSetField
	if deleted {
		kind = KindDeleteField
	}
	dst = append(dst, stateVersion, byte(kind))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(ts))
	dst = appendBytes(dst, field)
	if !deleted {
		dst = append(dst, value...)
	}
	return dst
}

// AppendIncrOperand appends the merge operand of a local Incr.
func AppendIncrOperand(dst []byte, ts Timestamp, field []byte, delta int64) []byte {
	dst = append(dst, stateVersion, byte(KindIncr))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(ts))
	dst = appendBytes(dst, field)
	return binary.AppendVarint(dst, delta)
}

// checkVersion reports a missing, zero or newer version byte.
func checkVersion(what string, b []byte) error {
	if len(b) == 0 {
		return errs.Corruptf(what, 0, "empty")
	}
	switch v := b[0]; {
	case v > stateVersion:
		return errs.NewerFormatf(what, uint32(v), stateVersion)
	case v == 0:
		return errs.Corruptf(what, 0, "format version 0")
	}
	return nil
}

// stateHeader checks a state's version and flags and returns the flags.
func stateHeader(state []byte) (byte, error) {
	if err := checkVersion(whatState, state); err != nil {
		return 0, err
	}
	if len(state) < 2 {
		return 0, errs.Corruptf(whatState, 1, "truncated before its flags")
	}
	f := state[1]
	switch {
	case f&stReserved != 0:
		return 0, errs.Corruptf(whatState, 1, "reserved flag bits set in %#x", f)
	case f&stTomb != 0 && f&stWhole == 0:
		return 0, errs.Corruptf(whatState, 1, "tombstone flag without a whole register")
	case f&stExists != 0 && f&stExtended == 0:
		return 0, errs.Corruptf(whatState, 1, "exists flag on a compact state")
	}
	if f&stWhole != 0 && len(state) < compactHeader {
		return 0, errs.Corruptf(whatState, 2, "timestamp truncated")
	}
	return f, nil
}

// DocumentValue returns the user-visible value of a state (aliasing state,
// no allocation) and whether the document exists. A document that exists
// only through fields or counters has an empty value. It reads the header
// and the whole value only; DecodeDocument checks the rest. Errors wrap
// errs.ErrCorruption (errs.ErrNewerFormat for a newer version).
func DocumentValue(state []byte) (value []byte, exists bool, err error) {
	f, err := stateHeader(state)
	if err != nil {
		return nil, false, err
	}
	if f&stExtended == 0 {
		switch {
		case f&stWhole == 0:
			if len(state) != 2 {
				return nil, false, errs.Corruptf(whatState, 2, "%d bytes after an empty state", len(state)-2)
			}
			return nil, false, nil
		case f&stTomb != 0:
			if len(state) != compactHeader {
				return nil, false, errs.Corruptf(whatState, compactHeader, "%d bytes after a tombstone", len(state)-compactHeader)
			}
			return nil, false, nil
		}
		return state[compactHeader:], true, nil
	}
	d := decoder{what: whatState, b: state, off: 2}
	if f&stWhole != 0 {
		d.off = compactHeader
	}
	n, err := d.uvarint("replica table size")
	if err != nil {
		return nil, false, err
	}
	if n > uint64(len(state)-d.off)/16 {
		return nil, false, d.corrupt(d.off, "replica table of %d entries overruns the state", n)
	}
	d.off += int(n) * 16
	if f&stWhole != 0 {
		if _, err := d.uvarint("whole origin"); err != nil {
			return nil, false, err
		}
		if f&stTomb == 0 {
			if value, err = d.bytes("value"); err != nil {
				return nil, false, err
			}
		}
	}
	return value, f&stExists != 0, nil
}

// Document is a decoded state: what a reader of the whole document sees.
type Document struct {
	Exists   bool
	Value    []byte            // whole value (nil if none); aliases the state
	Fields   map[string][]byte // live fields; values alias the state; nil if none
	Counters map[string]int64  // counter totals over all replicas (wrapping); nil if none
}

// DecodeDocument decodes a whole state, checking every part of it. Errors
// wrap errs.ErrCorruption (errs.ErrNewerFormat for a newer version).
func DecodeDocument(state []byte) (Document, error) {
	var ds docState
	// Origins do not matter to what a reader sees, so any self will do.
	if err := ds.decode(state, ReplicaID{}); err != nil {
		return Document{}, err
	}
	return ds.document(), nil
}

// LocalOp turns a stored local entry back into the operation that wrote it
// (to export local ops from the WAL): operand says the value is a merge
// operand (KindMerge) rather than a state. A state must be one
// AppendPutState or AppendDeleteState wrote. It fills Kind, HLC, Key
// (aliasing key), Field, Value and Delta (aliasing value); the caller sets
// Replica and Seq. Errors wrap errs.ErrCorruption (errs.ErrNewerFormat for
// a newer version).
func LocalOp(key, value []byte, operand bool) (Op, error) {
	if operand {
		op, remote, err := decodeOperand(value)
		if err == nil && remote {
			return Op{}, errs.Corruptf(whatOperand, 1, "remote operand where a local one belongs")
		}
		op.Key = key
		return op, err
	}
	f, err := stateHeader(value)
	if err != nil {
		return Op{}, err
	}
	if f&(stExtended|stWhole) != stWhole {
		return Op{}, errs.Corruptf(whatState, 1, "flags %#x: not a local put or delete", f)
	}
	op := Op{Key: key, HLC: Timestamp(binary.LittleEndian.Uint64(value[2:])), Kind: KindPut}
	if f&stTomb != 0 {
		if len(value) != compactHeader {
			return Op{}, errs.Corruptf(whatState, compactHeader, "%d bytes after a tombstone", len(value)-compactHeader)
		}
		op.Kind = KindDelete
		return op, nil
	}
	op.Value = value[compactHeader:]
	return op, nil
}

// AppendRemoteOperand appends the merge operand an imported operation
// writes: the operation itself with its origin, so the importer need not
// read the stored state first. Every rule of merge.go is a join for
// remote operations (last-writer-wins registers, and counter shares that
// keep the highest sequence number counted), so operands folded in any
// grouping, onto any state, give the document ApplyOp would have given.
func AppendRemoteOperand(dst []byte, op *Op) []byte {
	dst = append(dst, stateVersion, byte(op.Kind)|operandRemote)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(op.HLC))
	dst = append(dst, op.Replica[:]...)
	switch op.Kind {
	case KindPut:
		dst = append(dst, op.Value...)
	case KindSetField:
		dst = appendBytes(dst, op.Field)
		dst = append(dst, op.Value...)
	case KindDeleteField:
		dst = appendBytes(dst, op.Field)
	case KindIncr:
		dst = appendBytes(dst, op.Field)
		dst = binary.AppendUvarint(dst, op.Seq)
		dst = binary.AppendVarint(dst, op.Delta)
	}
	return dst
}

// operandRemote marks a remote operand in its kind byte. Part of the
// format.
const operandRemote = 0x80

// decodeOperand decodes a merge operand into an op without Key (nor
// Replica and Seq for a local operand) and reports whether it is remote
// (AppendRemoteOperand).
func decodeOperand(b []byte) (op Op, remote bool, err error) {
	if err := checkVersion(whatOperand, b); err != nil {
		return Op{}, false, err
	}
	d := decoder{what: whatOperand, b: b}
	if len(b) < compactHeader {
		return Op{}, false, d.corrupt(0, "operand of %d bytes is truncated", len(b))
	}
	remote = b[1]&operandRemote != 0
	op = Op{Kind: OpKind(b[1] &^ operandRemote), HLC: Timestamp(binary.LittleEndian.Uint64(b[2:]))}
	d.off = compactHeader
	if remote {
		if !op.Kind.Valid() {
			return Op{}, false, d.corrupt(1, "remote operand kind %d", op.Kind)
		}
		if len(b) < compactHeader+16 {
			return Op{}, false, d.corrupt(compactHeader, "remote operand of %d bytes is truncated", len(b))
		}
		copy(op.Replica[:], b[compactHeader:])
		d.off += 16
		if op.Kind == KindPut {
			op.Value = b[d.off:len(b):len(b)]
			return op, true, nil
		}
		if op.Kind == KindDelete {
			if d.off != len(b) {
				return Op{}, false, d.corrupt(d.off, "%d bytes after the operand", len(b)-d.off)
			}
			return op, true, nil
		}
	} else if op.Kind != KindSetField && op.Kind != KindDeleteField && op.Kind != KindIncr {
		return Op{}, false, d.corrupt(1, "operand kind %d", b[1])
	}
	if op.Field, err = d.bytes("field"); err != nil {
		return Op{}, false, err
	}
	switch op.Kind {
	case KindSetField:
		op.Value = b[d.off:len(b):len(b)]
		d.off = len(b)
	case KindIncr:
		if remote {
			if op.Seq, err = d.uvarint("seq"); err != nil {
				return Op{}, false, err
			}
		}
		if op.Delta, err = d.varint("delta"); err != nil {
			return Op{}, false, err
		}
	}
	if d.off != len(b) {
		return Op{}, false, d.corrupt(d.off, "%d bytes after the operand", len(b)-d.off)
	}
	return op, remote, nil
}

// register is a last-writer-wins register: a value or a tombstone, ordered
// by (ts, origin).
type register struct {
	ts     Timestamp
	origin ReplicaID // resolved: a local register holds self
	tomb   bool
	value  []byte
}

// orderAbove reports whether (ts, origin) orders above (ts2, origin2): the
// total order of last-writer-wins.
func orderAbove(ts Timestamp, origin ReplicaID, ts2 Timestamp, origin2 ReplicaID) bool {
	if ts != ts2 {
		return ts > ts2
	}
	return origin.Compare(origin2) > 0
}

type fieldReg struct {
	name []byte
	reg  register
}

// counterEntry is one replica's share of one counter field: the sum of its
// increments and, for a remote replica, the highest sequence number
// counted (0 for this replica's share, which needs none).
type counterEntry struct {
	name   []byte
	origin ReplicaID
	sum    int64
	seq    uint64
}

// docState is a decoded state. fields are sorted by name; counters by name,
// then origin with self first (the encoding's order, where self is origin
// code 0). Byte slices alias the decoded state and applied ops.
type docState struct {
	self     ReplicaID
	hasWhole bool
	whole    register
	fields   []fieldReg
	counters []counterEntry
	table    []ReplicaID // decode and encode scratch: remote origins, ascending
}

func (ds *docState) reset(self ReplicaID) {
	ds.self, ds.hasWhole, ds.whole = self, false, register{}
	clear(ds.fields) // drop references to old buffers
	clear(ds.counters)
	ds.fields, ds.counters, ds.table = ds.fields[:0], ds.counters[:0], ds.table[:0]
}

// compareOrigin orders origins as the encoding does: self first, then by
// ID.
func (ds *docState) compareOrigin(a, b ReplicaID) int {
	switch {
	case a == b:
		return 0
	case a == ds.self:
		return -1
	case b == ds.self:
		return 1
	}
	return a.Compare(b)
}

func (ds *docState) compareCounter(e *counterEntry, name []byte, origin ReplicaID) int {
	if c := compareBytes(e.name, name); c != 0 {
		return c
	}
	return ds.compareOrigin(e.origin, origin)
}

func compareBytes(a, b []byte) int { return slices.Compare(a, b) }

// exists reports whether the document exists: a live whole value, a live
// field or any counter entry.
func (ds *docState) exists() bool {
	if ds.hasWhole && !ds.whole.tomb || len(ds.counters) > 0 {
		return true
	}
	for i := range ds.fields {
		if !ds.fields[i].reg.tomb {
			return true
		}
	}
	return false
}

func (ds *docState) document() Document {
	doc := Document{Exists: ds.exists()}
	if ds.hasWhole && !ds.whole.tomb {
		doc.Value = ds.whole.value
	}
	for i := range ds.fields {
		if f := &ds.fields[i]; !f.reg.tomb {
			if doc.Fields == nil {
				doc.Fields = make(map[string][]byte)
			}
			doc.Fields[string(f.name)] = f.reg.value
		}
	}
	for i := range ds.counters {
		if doc.Counters == nil {
			doc.Counters = make(map[string]int64)
		}
		doc.Counters[string(ds.counters[i].name)] += ds.counters[i].sum
	}
	return doc
}

// decode parses state into ds, resolving local origins to self. It
// accepts only the canonical encoding encode writes, so a state re-encodes
// to the same bytes.
func (ds *docState) decode(state []byte, self ReplicaID) error {
	ds.reset(self)
	f, err := stateHeader(state)
	if err != nil {
		return err
	}
	if f&stWhole != 0 {
		ds.hasWhole = true
		ds.whole = register{ts: Timestamp(binary.LittleEndian.Uint64(state[2:])), origin: self, tomb: f&stTomb != 0}
	}
	if f&stExtended == 0 {
		_, _, err := DocumentValue(state) // checks the length
		if err == nil && ds.hasWhole && !ds.whole.tomb {
			ds.whole.value = state[compactHeader:]
		}
		return err
	}
	d := decoder{what: whatState, b: state, off: 2}
	if ds.hasWhole {
		d.off = compactHeader
	}
	// Replica table.
	tableOff := d.off
	n, err := d.uvarint("replica table size")
	if err != nil {
		return err
	}
	if n > uint64(len(state)-d.off)/16 {
		return d.corrupt(tableOff, "replica table of %d entries overruns the state", n)
	}
	for i := range int(n) {
		var id ReplicaID
		copy(id[:], state[d.off:])
		if id.IsZero() || (i > 0 && id.Compare(ds.table[i-1]) <= 0) {
			return d.corrupt(d.off, "replica table entry %d is zero or out of order", i)
		}
		ds.table = append(ds.table, id)
		d.off += 16
	}
	origin := func(code uint64) (ReplicaID, bool) {
		if code == 0 {
			return self, true
		}
		if code > uint64(len(ds.table)) {
			return ReplicaID{}, false
		}
		return ds.table[code-1], true
	}
	if ds.hasWhole {
		off := d.off
		code, err := d.uvarint("whole origin")
		if err != nil {
			return err
		}
		var ok bool
		if ds.whole.origin, ok = origin(code); !ok {
			return d.corrupt(off, "whole origin %d outside the replica table", code)
		}
		if !ds.whole.tomb {
			if ds.whole.value, err = d.bytes("value"); err != nil {
				return err
			}
		}
	}
	// Fields.
	nf, err := d.uvarint("field count")
	if err != nil {
		return err
	}
	// A field takes at least a name length, a tag and a timestamp.
	if nf > uint64(len(state)-d.off)/10 {
		return d.corrupt(d.off, "%d fields do not fit in the state", nf)
	}
	for i := range int(nf) {
		start := d.off
		var fr fieldReg
		if fr.name, err = d.bytes("field name"); err != nil {
			return err
		}
		if i > 0 && compareBytes(fr.name, ds.fields[i-1].name) <= 0 {
			return d.corrupt(start, "field %d out of order", i)
		}
		tagOff := d.off
		tag, err := d.uvarint("field tag")
		if err != nil {
			return err
		}
		var ok bool
		if fr.reg.origin, ok = origin(tag >> 1); !ok {
			return d.corrupt(tagOff, "field origin %d outside the replica table", tag>>1)
		}
		fr.reg.tomb = tag&1 != 0
		if len(state)-d.off < 8 {
			return d.corrupt(d.off, "field timestamp truncated")
		}
		fr.reg.ts = Timestamp(binary.LittleEndian.Uint64(state[d.off:]))
		d.off += 8
		if !fr.reg.tomb {
			if fr.reg.value, err = d.bytes("field value"); err != nil {
				return err
			}
		}
		ds.fields = append(ds.fields, fr)
	}
	// Counters.
	nc, err := d.uvarint("counter count")
	if err != nil {
		return err
	}
	// A counter takes at least a name length, an entry count and an entry
	// of three bytes.
	if nc > uint64(len(state)-d.off)/5 {
		return d.corrupt(d.off, "%d counters do not fit in the state", nc)
	}
	for i := range int(nc) {
		start := d.off
		name, err := d.bytes("counter name")
		if err != nil {
			return err
		}
		if i > 0 && compareBytes(name, ds.counters[len(ds.counters)-1].name) <= 0 {
			return d.corrupt(start, "counter %d out of order", i)
		}
		ne, err := d.uvarint("counter entry count")
		if err != nil {
			return err
		}
		if ne == 0 || ne > uint64(len(state)-d.off)/3 {
			return d.corrupt(start, "counter %d: %d entries", i, ne)
		}
		prevCode := uint64(0)
		for j := range int(ne) {
			e := counterEntry{name: name}
			off := d.off
			code, err := d.uvarint("counter origin")
			if err != nil {
				return err
			}
			var ok bool
			if e.origin, ok = origin(code); !ok || (j > 0 && code <= prevCode) {
				return d.corrupt(off, "counter %d entry %d: origin %d out of order or outside the replica table", i, j, code)
			}
			prevCode = code
			if e.sum, err = d.varint("counter sum"); err != nil {
				return err
			}
			if e.seq, err = d.uvarint("counter sequence number"); err != nil {
				return err
			}
			ds.counters = append(ds.counters, e)
		}
	}
	if d.off != len(state) {
		return d.corrupt(d.off, "%d bytes after the state", len(state)-d.off)
	}
	if !ds.extended() {
		return d.corrupt(1, "extended flag on a state with only a local whole register")
	}
	if n := len(ds.table); n > 0 {
		if ds.buildTable(); len(ds.table) != n {
			return d.corrupt(tableOff, "replica table holds %d replicas, %d referenced", n, len(ds.table))
		}
	}
	if ds.exists() != (f&stExists != 0) {
		return d.corrupt(1, "exists flag does not match the contents")
	}
	return nil
}

// extended reports whether ds needs the extended form.
func (ds *docState) extended() bool {
	return len(ds.fields) > 0 || len(ds.counters) > 0 || ds.hasWhole && ds.whole.origin != ds.self
}

// buildTable collects the remote origins ds references, ascending.
func (ds *docState) buildTable() {
	ds.table = ds.table[:0]
	add := func(id ReplicaID) {
		if id != ds.self {
			ds.table = append(ds.table, id)
		}
	}
	if ds.hasWhole {
		add(ds.whole.origin)
	}
	for i := range ds.fields {
		add(ds.fields[i].reg.origin)
	}
	for i := range ds.counters {
		add(ds.counters[i].origin)
	}
	slices.SortFunc(ds.table, ReplicaID.Compare)
	ds.table = slices.Compact(ds.table)
}

// code returns the origin code of id: 0 for self, else 1 + its index in
// the table.
func (ds *docState) code(id ReplicaID) uint64 {
	if id == ds.self {
		return 0
	}
	i, _ := slices.BinarySearchFunc(ds.table, id, ReplicaID.Compare)
	return uint64(i) + 1
}

// size returns an upper bound of the encoded size, to allocate once.
func (ds *docState) size() int {
	ds.buildTable()
	const v = binary.MaxVarintLen64
	// Table size, whole origin, value length, field and counter counts.
	n := compactHeader + 5*v + 16*len(ds.table)
	if ds.hasWhole {
		n += len(ds.whole.value)
	}
	for i := range ds.fields {
		n += 3*v + 8 + len(ds.fields[i].name) + len(ds.fields[i].reg.value)
	}
	for i := range ds.counters {
		n += 5*v + len(ds.counters[i].name) // name and entry count at most once per entry
	}
	return n
}

// encode appends the canonical encoding of ds to dst.
func (ds *docState) encode(dst []byte) []byte {
	if !ds.extended() {
		switch {
		case !ds.hasWhole:
			return append(dst, stateVersion, 0)
		case ds.whole.tomb:
			return AppendDeleteState(dst, ds.whole.ts)
		}
		return AppendPutState(dst, ds.whole.ts, ds.whole.value)
	}
	ds.buildTable()
	f := byte(stExtended)
	if ds.exists() {
		f |= stExists
	}
	if ds.hasWhole {
		f |= stWhole
		if ds.whole.tomb {
			f |= stTomb
		}
	}
	dst = append(dst, stateVersion, f)
	if ds.hasWhole {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(ds.whole.ts))
	}
	dst = binary.AppendUvarint(dst, uint64(len(ds.table)))
	for _, id := range ds.table {
		dst = append(dst, id[:]...)
	}
	if ds.hasWhole {
		dst = binary.AppendUvarint(dst, ds.code(ds.whole.origin))
		if !ds.whole.tomb {
			dst = appendBytes(dst, ds.whole.value)
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(ds.fields)))
	for i := range ds.fields {
		fr := &ds.fields[i]
		dst = appendBytes(dst, fr.name)
		tag := ds.code(fr.reg.origin) << 1
		if fr.reg.tomb {
			tag |= 1
		}
		dst = binary.AppendUvarint(dst, tag)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(fr.reg.ts))
		if !fr.reg.tomb {
			dst = appendBytes(dst, fr.reg.value)
		}
	}
	// Counters: entries of one name are adjacent; count the names first.
	names := 0
	for i := range ds.counters {
		if i == 0 || compareBytes(ds.counters[i].name, ds.counters[i-1].name) != 0 {
			names++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(names))
	for i := 0; i < len(ds.counters); {
		j := i + 1
		for j < len(ds.counters) && compareBytes(ds.counters[j].name, ds.counters[i].name) == 0 {
			j++
		}
		dst = appendBytes(dst, ds.counters[i].name)
		dst = binary.AppendUvarint(dst, uint64(j-i))
		for _, e := range ds.counters[i:j] {
			dst = binary.AppendUvarint(dst, ds.code(e.origin))
			dst = binary.AppendVarint(dst, e.sum)
			dst = binary.AppendUvarint(dst, e.seq)
		}
		i = j
	}
	return dst
}

// String describes ds for test failures.
func (ds *docState) String() string {
	return fmt.Sprintf("whole=%v %+v fields=%+v counters=%+v", ds.hasWhole, ds.whole, ds.fields, ds.counters)
}

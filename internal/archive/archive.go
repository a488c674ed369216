// Package archive owns the file format of the cold archive: NNNNNN.oparc,
// the archived history of op-log segment NNNNNN.log. The root package
// decides what goes into an archive and when (archive.go there); this
// package encodes a file's bytes and decodes and verifies them, so that
// readers that do not open a database (verify, the tools) read archives
// with the same code.
//
// Format version 3:
//
//	magic "PLRSOARC" | version u8 (3) | uvarint n | change stream (n bytes) |
//	positions | xxhash64 (LE) of every byte before it
//
//	positions: uvarint runs | runs × (uvarint length | step u8 |
//	           varint seq delta | uvarint index)
//
// The change stream is oplog's format (zstd chunks, one transaction per
// log record). The positions are the log positions of the stream's
// operations, in stream order, as runs: a run's first position is the
// previous run's last with its Seq moved by the (zigzag) delta and its
// Index given; each next one adds 1 to Seq (step bit 0 clear: local
// writes, Index kept) or to Index (bit 0 set: the operations of one
// import record). Bits 1–2 of the step are the run's Class (0: logged, 1:
// a selective import's, 2: a repeat), which says who reads the
// operations, as in the log (see "Selective imports" in ARCHITECTURE.md).
// A segment of local writes is one run.
//
// The stream holds every operation of the segment, whatever its class, in
// log order, so positions rise strictly. That is a sync stream's order
// unless the segment holds a selective import: then the stream has the
// log-order flag, and its header's ranges span every operation of each
// replica.
//
// Version 2 is version 3 without classes (every operation is logged).
// Version 1 files are the bare change stream (they start with its magic):
// they are read as before, but hold no positions.
package archive

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
)

// Format constants; part of the on-disk format.
const (
	Magic   = "PLRSOARC"
	Version = 3
	// streamMagic opens a version 1 archive, a bare change stream.
	streamMagic = "PLRSCHNG"
	trailerLen  = 8 // xxhash64
)

// Position is the log position of an archived operation: the sequence
// number of the log record that held it and its index in that record (the
// root package's Position).
type Position struct {
	Seq   uint64
	Index uint32
}

// Less orders positions.
func (p Position) Less(q Position) bool {
	return p.Seq < q.Seq || p.Seq == q.Seq && p.Index < q.Index
}

// Class says which copy of an operation the log held (the root package's
// opClass; the values are part of the format).
type Class uint8

const (
	Logged   Class = iota // a local write or a full import's operation
	Filtered              // a selective import's operation
	Repeat                // a full import's copy of an operation a selective import logged
	NumClasses
)

// Position run steps.
const (
	stepSeq   = 0
	stepIndex = 1
)

// File is a decoded and verified archive.
type File struct {
	// Version is the file's format version (1 to Version).
	Version int
	Stream  *oplog.Stream
	// Pos are the log positions of the stream's operations, in stream
	// order; nil for a version 1 archive, which has none.
	Pos []Position
	// Classes are those of the operations; nil: all Logged.
	Classes []Class
	// StreamOffset and StreamLen locate the change stream in the file;
	// the positions section follows it.
	StreamOffset, StreamLen int64
}

// Class returns the class of the stream's operation i.
func (f *File) Class(i int) Class {
	if f.Classes == nil {
		return Logged
	}
	return f.Classes[i]
}

// Encode returns the bytes of an archive file holding the encoded change
// stream and the positions and classes of its operations (one each per
// operation, in stream order).
func Encode(stream []byte, pos []Position, classes []Class) []byte {
	buf := make([]byte, 0, len(Magic)+1+binary.MaxVarintLen64+len(stream)+4*len(pos)/16+64+trailerLen)
	buf = append(buf, Magic...)
	buf = append(buf, Version)
	buf = binary.AppendUvarint(buf, uint64(len(stream)))
	buf = append(buf, stream...)
	buf = AppendPositions(buf, pos, classes)
	return binary.LittleEndian.AppendUint64(buf, xxhash.Sum64(buf))
}

// Decode verifies and decodes the bytes of an archive file; name is used
// in errors. Damage gives an error wrapping errs.ErrCorruption that names
// the file and offset, a newer format errs.ErrNewerFormat. It never
// panics. The stream's byte slices alias data.
func Decode(name string, data []byte) (*File, error) {
	if bytes.HasPrefix(data, []byte(streamMagic)) {
		st, err := oplog.ReadStream(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("archive %s: %w", name, err)
		}
		return &File{Version: 1, Stream: st, StreamLen: int64(len(data))}, nil
	}
	hdr := len(Magic) + 1
	version := byte(0)
	if len(data) > len(Magic) {
		version = data[len(Magic)]
	}
	switch {
	case len(data) < hdr+trailerLen || string(data[:len(Magic)]) != Magic:
		return nil, errs.Corruptf(name, 0, "not an op-log archive")
	case version > Version:
		return nil, errs.NewerFormatf(name, uint32(version), Version)
	case version < 2:
		return nil, errs.Corruptf(name, int64(len(Magic)), "archive version %d", version)
	}
	body := data[:len(data)-trailerLen]
	if got, want := binary.LittleEndian.Uint64(data[len(body):]), xxhash.Sum64(body); got != want {
		return nil, errs.Corruptf(name, int64(len(body)), "checksum mismatch: stored %#x, computed %#x", got, want)
	}
	n, k := binary.Uvarint(body[hdr:])
	if k <= 0 || n > uint64(len(body)-hdr-k) {
		return nil, errs.Corruptf(name, int64(hdr), "bad stream length")
	}
	start := hdr + k
	st, err := oplog.ReadStream(bytes.NewReader(body[start : start+int(n)]))
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", name, err)
	}
	pos, classes, err := DecodePositions(body[start+int(n):], len(st.Ops), version)
	if err != nil {
		return nil, errs.Corruptf(name, int64(start)+int64(n), "%v", err)
	}
	if st.Header.LogOrder && classes == nil {
		return nil, errs.Corruptf(name, int64(start), "a stream in log order without selective imports")
	}
	return &File{Version: int(version), Stream: st, Pos: pos, Classes: classes,
		StreamOffset: int64(start), StreamLen: int64(n)}, nil
}

// AppendPositions encodes pos, and the classes of their operations, as
// runs (see the format above).
func AppendPositions(dst []byte, pos []Position, classes []Class) []byte {
	type run struct {
		start Position
		n     uint64
		step  byte
		class Class
	}
	var runs []run
	for i, p := range pos {
		if n := len(runs); n > 0 && runs[n-1].class == classes[i] {
			r := &runs[n-1]
			last := r.start
			if r.step == stepSeq {
				last.Seq += r.n - 1
			} else {
				last.Index += uint32(r.n - 1)
			}
			switch {
			case (r.n == 1 || r.step == stepSeq) && p == Position{last.Seq + 1, last.Index}:
				r.step = stepSeq
				r.n++
				continue
			case (r.n == 1 || r.step == stepIndex) && p == Position{last.Seq, last.Index + 1}:
				r.step = stepIndex
				r.n++
				continue
			}
		}
		runs = append(runs, run{start: p, n: 1, class: classes[i]})
	}
	dst = binary.AppendUvarint(dst, uint64(len(runs)))
	var prev uint64
	for _, r := range runs {
		dst = binary.AppendUvarint(dst, r.n)
		dst = append(dst, r.step|byte(r.class)<<1)
		dst = binary.AppendVarint(dst, int64(r.start.Seq-prev))
		dst = binary.AppendUvarint(dst, uint64(r.start.Index))
		prev = r.start.Seq
		if r.step == stepSeq {
			prev += r.n - 1
		}
	}
	return dst
}

// DecodePositions decodes count positions and the classes of their
// operations (nil: all logged) from a positions section of the given
// archive version; it never panics.
func DecodePositions(b []byte, count int, version byte) ([]Position, []Class, error) {
	next := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, errors.New("positions truncated")
		}
		b = b[n:]
		return v, nil
	}
	runs, err := next()
	if err != nil {
		return nil, nil, err
	}
	if runs > uint64(count) || runs > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%d position runs for %d operations", runs, count)
	}
	out := make([]Position, 0, count)
	var classes []Class
	maxStep := byte(stepIndex)
	if version >= 3 {
		maxStep = stepIndex | byte(NumClasses-1)<<1
	}
	var prev uint64
	for range runs {
		n, err := next()
		if err != nil {
			return nil, nil, err
		}
		if len(b) == 0 {
			return nil, nil, errors.New("positions truncated")
		}
		step := b[0]
		b = b[1:]
		d, k := binary.Varint(b)
		if k <= 0 {
			return nil, nil, errors.New("positions truncated")
		}
		b = b[k:]
		idx, err := next()
		if err != nil {
			return nil, nil, err
		}
		class := Class(step >> 1)
		step &= 1
		switch {
		case n == 0 || n > uint64(count-len(out)):
			return nil, nil, fmt.Errorf("position run of %d with %d operations left", n, count-len(out))
		case step|byte(class)<<1 > maxStep:
			return nil, nil, fmt.Errorf("unknown position step %d", step|byte(class)<<1)
		case idx > 1<<32-1 || step == stepIndex && idx+n-1 > 1<<32-1:
			return nil, nil, fmt.Errorf("position index %d out of range", idx)
		}
		if class != Logged && classes == nil {
			classes = make([]Class, len(out), count)
		}
		p := Position{Seq: prev + uint64(d), Index: uint32(idx)}
		for i := uint64(0); i < n; i++ {
			out = append(out, p)
			if classes != nil {
				classes = append(classes, class)
			}
			if step == stepSeq {
				p.Seq++
			} else {
				p.Index++
			}
		}
		prev = out[len(out)-1].Seq
	}
	if len(out) != count || len(b) != 0 {
		return nil, nil, fmt.Errorf("positions for %d of %d operations, %d bytes left", len(out), count, len(b))
	}
	return out, classes, nil
}

package pluresdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/wal"
)

// The cold archive. A sealed, flushed log segment older than
// Options.HotHistory is rewritten as a change stream (oplog's format, zstd
// chunks) holding only its operations, in log order, each record's a
// transaction of the stream (so an export from the archive keeps them
// whole), in a file NNNNNN.oparc named after the segment; then the
// segment is removed. The projections are not kept
// (tables hold the state); each operation's log position is, so the change
// feed resumes anywhere in archived history. ExportChanges and GetAsOf
// read archives as they read segments.
//
// Format version 3:
//
//	magic "PLRSOARC" | version u8 (3) | uvarint n | change stream (n bytes) |
//	positions | xxhash64 (LE) of every byte before it
//
//	positions: uvarint runs | runs × (uvarint length | step u8 |
//	           varint seq delta | uvarint index)
//
// The positions are those of the stream's operations, in stream order, as
// runs: a run's first position is the previous run's last with its Seq
// moved by the (zigzag) delta and its Index given; each next one adds 1 to
// Seq (step bit 0 clear: local writes, Index kept) or to Index (bit 0
// set: the operations of one import record). Bits 1–2 of the step are the
// run's opClass (0: logged, 1: a selective import's, 2: a repeat), which
// says who reads the operations, as in the log. A segment of local writes
// is one run.
//
// The stream holds every operation of the segment, whatever its class. It
// is in log order, which is a sync stream's order unless the segment holds
// a selective import: then the stream has the log-order flag, and its
// header's ranges span every operation of each replica. Exports read the
// logged operations and repeats, which are in order.
//
// Version 2 is version 3 without classes (every operation is logged).
// Version 1 files are the bare change stream (they start with its magic):
// they are read as before, but hold no positions, so the change feed
// cannot resume inside them (ErrHistoryUnavailable).

// archiveSegment moves segment s to the cold archive.
func (db *DB) archiveSegment(s *segIndex) error {
	var ops []oplog.Op
	var pos []Position
	var classes []opClass
	var ends []int // the number of ops up to the end of each record
	sr, err := wal.OpenSegment(db.fs, db.dir, s.num)
	if err != nil {
		return err
	}
	for {
		rec, err := sr.Next()
		if err != nil {
			sr.Close()
			if isEOF(err) {
				break
			}
			return err
		}
		err = decodeRecord(rec, db.ol.self, func(p Position, op *oplog.Op, class opClass) error {
			c := *op
			c.Key, c.Field, c.Value = bytes.Clone(op.Key), bytes.Clone(op.Field), bytes.Clone(op.Value)
			ops = append(ops, c)
			pos = append(pos, p)
			classes = append(classes, class)
			return nil
		})
		if err != nil {
			sr.Close()
			return err
		}
		ends = append(ends, len(ops))
	}

	// The ranges span every operation (the segment index's leave out
	// the selective imports').
	h := oplog.StreamHeader{Source: db.ol.self, Compress: true}
	spans := map[oplog.ReplicaID]*oplog.Range{}
	for i := range ops {
		op := &ops[i]
		if classes[i] == opFiltered {
			h.LogOrder = true
		}
		if rg := spans[op.Replica]; rg != nil {
			rg.From, rg.To = min(rg.From, op.Seq-1), max(rg.To, op.Seq)
		} else {
			spans[op.Replica] = &oplog.Range{Replica: op.Replica, From: op.Seq - 1, To: op.Seq}
		}
	}
	for _, rg := range spans {
		h.Ranges = append(h.Ranges, *rg)
	}
	sort.Slice(h.Ranges, func(i, j int) bool { return h.Ranges[i].Replica.Compare(h.Ranges[j].Replica) < 0 })
	var buf bytes.Buffer
	buf.WriteString(archiveMagic)
	buf.WriteByte(archiveVersion)
	var stream bytes.Buffer
	sw, err := oplog.NewStreamWriter(&stream, h)
	if err != nil {
		return err
	}
	for i := range ops {
		if err := sw.Add(&ops[i]); err != nil {
			return fmt.Errorf("pluresdb: archiving segment %s: %w", s.num, err)
		}
		for len(ends) > 0 && ends[0] == i+1 {
			ends = ends[1:]
			sw.EndTransaction()
		}
	}
	if _, err := sw.Close(); err != nil {
		return err
	}
	buf.Write(binary.AppendUvarint(nil, uint64(stream.Len())))
	buf.Write(stream.Bytes())
	buf.Write(appendPositions(nil, pos, classes))
	buf.Write(binary.LittleEndian.AppendUint64(nil, xxhash.Sum64(buf.Bytes())))
	path := layout.Path(db.dir, layout.TypeArchive, s.num)
	tmp := layout.Path(db.dir, layout.TypeTemp, db.vs.NewFileNum())
	if err := vfs.WriteFileAtomic(db.fs, tmp, path, buf.Bytes()); err != nil {
		return fmt.Errorf("pluresdb: writing archive %s: %w", path, err)
	}
	arch := *s
	arch.archived = true
	b := db.NewBatch()
	b.add(lsm.KindSet, nsMeta, segIndexKey(s.num), arch.encode())
	db.ol.mu.Lock()
	mark, raise := db.ol.clockMarkFor(s)
	db.ol.mu.Unlock()
	if raise {
		// An archive that goes missing must not take the clock back.
		addClockMark(b, mark)
	}
	if err := b.Commit(&WriteOptions{Sync: true}); err != nil {
		return err
	}
	db.ol.mu.Lock()
	db.ol.clockMark = max(db.ol.clockMark, mark)
	s.archived = true
	db.ol.mu.Unlock()
	if s.keys == nil {
		hashes := make([]uint32, len(ops))
		for i := range ops {
			hashes[i] = keyHash(ops[i].Key)
		}
		db.setKeyFilter(uint64(s.num), keyFilterOf(hashes))
	}
	db.m.opArchivedBytes.Add(uint64(buf.Len()))
	db.m.opArchivedOps.Add(uint64(len(ops)))
	logPath := layout.Path(db.dir, layout.TypeLog, s.num)
	if err := db.fs.Remove(logPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		db.log.Error().Err(err).Str("file", logPath).Msg("removing archived log segment")
	}
	return nil
}

// Archive format constants.
const (
	archiveMagic   = "PLRSOARC"
	archiveVersion = 3
	streamMagic    = "PLRSCHNG" // a version 1 archive is a bare change stream
)

// Position run steps.
const (
	stepSeq   = 0
	stepIndex = 1
)

// appendPositions encodes pos, and the classes of their operations, as
// runs (see the format above).
func appendPositions(dst []byte, pos []Position, classes []opClass) []byte {
	type run struct {
		start Position
		n     uint64
		step  byte
		class opClass
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

// decodePositions decodes count positions and the classes of their
// operations (nil: all logged) from a positions section of the given
// archive version; it never panics.
func decodePositions(b []byte, count int, version byte) ([]Position, []opClass, error) {
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
	var classes []opClass
	maxStep := byte(stepIndex)
	if version >= 3 {
		maxStep = stepIndex | byte(numOpClasses-1)<<1
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
		class := opClass(step >> 1)
		step &= 1
		switch {
		case n == 0 || n > uint64(count-len(out)):
			return nil, nil, fmt.Errorf("position run of %d with %d operations left", n, count-len(out))
		case step|byte(class)<<1 > maxStep:
			return nil, nil, fmt.Errorf("unknown position step %d", step|byte(class)<<1)
		case idx > 1<<32-1 || step == stepIndex && idx+n-1 > 1<<32-1:
			return nil, nil, fmt.Errorf("position index %d out of range", idx)
		}
		if class != opLogged && classes == nil {
			classes = make([]opClass, len(out), count)
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

// archived is a verified archive, decoded.
type archived struct {
	stream *oplog.Stream
	// pos are the log positions of the stream's operations, in stream
	// order; nil for a version 1 archive, which has none.
	pos []Position
	// classes are those of the operations; nil: all opLogged.
	classes []opClass
}

// class returns the class of the stream's operation i.
func (a *archived) class(i int) opClass {
	if a.classes == nil {
		return opLogged
	}
	return a.classes[i]
}

// readArchive reads and verifies the archive of segment num.
func (db *DB) readArchive(num layout.FileNum) (*archived, error) {
	path := layout.Path(db.dir, layout.TypeArchive, num)
	f, err := db.fs.Open(path)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("pluresdb: reading archive %s: %w", path, err)
	}
	if bytes.HasPrefix(data, []byte(streamMagic)) {
		st, err := oplog.ReadStream(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("pluresdb: archive %s: %w", path, err)
		}
		return &archived{stream: st}, nil
	}
	hdr := len(archiveMagic) + 1
	version := byte(0)
	if len(data) > len(archiveMagic) {
		version = data[len(archiveMagic)]
	}
	switch {
	case len(data) < hdr+8 || string(data[:len(archiveMagic)]) != archiveMagic:
		return nil, errs.Corruptf(path, 0, "not an op-log archive")
	case version > archiveVersion:
		return nil, errs.NewerFormatf(path, uint32(version), archiveVersion)
	case version < 2:
		return nil, errs.Corruptf(path, int64(len(archiveMagic)), "archive version %d", version)
	}
	body := data[:len(data)-8]
	if got, want := binary.LittleEndian.Uint64(data[len(body):]), xxhash.Sum64(body); got != want {
		return nil, errs.Corruptf(path, int64(len(body)), "checksum mismatch: stored %#x, computed %#x", got, want)
	}
	n, k := binary.Uvarint(body[hdr:])
	if k <= 0 || n > uint64(len(body)-hdr-k) {
		return nil, errs.Corruptf(path, int64(hdr), "bad stream length")
	}
	start := hdr + k
	st, err := oplog.ReadStream(bytes.NewReader(body[start : start+int(n)]))
	if err != nil {
		return nil, fmt.Errorf("pluresdb: archive %s: %w", path, err)
	}
	pos, classes, err := decodePositions(body[start+int(n):], len(st.Ops), version)
	if err != nil {
		return nil, errs.Corruptf(path, int64(start)+int64(n), "%v", err)
	}
	if st.Header.LogOrder && classes == nil {
		return nil, errs.Corruptf(path, int64(start), "a stream in log order without selective imports")
	}
	return &archived{stream: st, pos: pos, classes: classes}, nil
}

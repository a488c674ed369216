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
// Format version 2:
//
//	magic "PLRSOARC" | version u8 (2) | uvarint n | change stream (n bytes) |
//	positions | xxhash64 (LE) of every byte before it
//
//	positions: uvarint runs | runs × (uvarint length | step u8 |
//	           varint seq delta | uvarint index)
//
// The positions are those of the stream's operations, in stream order, as
// runs: a run's first position is the previous run's last with its Seq
// moved by the (zigzag) delta and its Index given; each next one adds 1 to
// Seq (step 0: local writes, Index kept) or to Index (step 1: the
// operations of one import record). A segment of local writes is one run.
//
// Version 1 files are the bare change stream (they start with its magic):
// they are read as before, but hold no positions, so the change feed
// cannot resume inside them (ErrHistoryUnavailable).

// archiveSegment moves segment s to the cold archive.
func (db *DB) archiveSegment(s *segIndex) error {
	var ops []oplog.Op
	var pos []Position
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
		err = decodeRecord(rec, db.ol.self, func(p Position, op *oplog.Op) error {
			c := *op
			c.Key, c.Field, c.Value = bytes.Clone(op.Key), bytes.Clone(op.Field), bytes.Clone(op.Value)
			ops = append(ops, c)
			pos = append(pos, p)
			return nil
		})
		if err != nil {
			sr.Close()
			return err
		}
		ends = append(ends, len(ops))
	}

	h := oplog.StreamHeader{Source: db.ol.self, Compress: true}
	for r, rg := range s.ranges {
		h.Ranges = append(h.Ranges, oplog.Range{Replica: r, From: rg.min - 1, To: rg.max})
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
	buf.Write(appendPositions(nil, pos))
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
	archiveVersion = 2
	streamMagic    = "PLRSCHNG" // a version 1 archive is a bare change stream
)

// Position run steps.
const (
	stepSeq   = 0
	stepIndex = 1
)

// appendPositions encodes pos as runs (see the format above).
func appendPositions(dst []byte, pos []Position) []byte {
	type run struct {
		start Position
		n     uint64
		step  byte
	}
	var runs []run
	for _, p := range pos {
		if n := len(runs); n > 0 {
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
		runs = append(runs, run{start: p, n: 1})
	}
	dst = binary.AppendUvarint(dst, uint64(len(runs)))
	var prev uint64
	for _, r := range runs {
		dst = binary.AppendUvarint(dst, r.n)
		dst = append(dst, r.step)
		dst = binary.AppendVarint(dst, int64(r.start.Seq-prev))
		dst = binary.AppendUvarint(dst, uint64(r.start.Index))
		prev = r.start.Seq
		if r.step == stepSeq {
			prev += r.n - 1
		}
	}
	return dst
}

// decodePositions decodes count positions; it never panics.
func decodePositions(b []byte, count int) ([]Position, error) {
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
		return nil, err
	}
	if runs > uint64(count) || runs > uint64(len(b)) {
		return nil, fmt.Errorf("%d position runs for %d operations", runs, count)
	}
	out := make([]Position, 0, count)
	var prev uint64
	for range runs {
		n, err := next()
		if err != nil {
			return nil, err
		}
		if len(b) == 0 {
			return nil, errors.New("positions truncated")
		}
		step := b[0]
		b = b[1:]
		d, k := binary.Varint(b)
		if k <= 0 {
			return nil, errors.New("positions truncated")
		}
		b = b[k:]
		idx, err := next()
		if err != nil {
			return nil, err
		}
		switch {
		case n == 0 || n > uint64(count-len(out)):
			return nil, fmt.Errorf("position run of %d with %d operations left", n, count-len(out))
		case step > stepIndex:
			return nil, fmt.Errorf("unknown position step %d", step)
		case idx > 1<<32-1 || step == stepIndex && idx+n-1 > 1<<32-1:
			return nil, fmt.Errorf("position index %d out of range", idx)
		}
		p := Position{Seq: prev + uint64(d), Index: uint32(idx)}
		for i := uint64(0); i < n; i++ {
			out = append(out, p)
			if step == stepSeq {
				p.Seq++
			} else {
				p.Index++
			}
		}
		prev = out[len(out)-1].Seq
	}
	if len(out) != count || len(b) != 0 {
		return nil, fmt.Errorf("positions for %d of %d operations, %d bytes left", len(out), count, len(b))
	}
	return out, nil
}

// readArchive reads and verifies the archive of segment num. pos are the
// log positions of its operations, in stream order; nil for a version 1
// archive, which has none.
func (db *DB) readArchive(num layout.FileNum) (*oplog.Stream, []Position, error) {
	path := layout.Path(db.dir, layout.TypeArchive, num)
	f, err := db.fs.Open(path)
	if err != nil {
		return nil, nil, err
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("pluresdb: reading archive %s: %w", path, err)
	}
	if bytes.HasPrefix(data, []byte(streamMagic)) {
		st, err := oplog.ReadStream(bytes.NewReader(data))
		if err != nil {
			return nil, nil, fmt.Errorf("pluresdb: archive %s: %w", path, err)
		}
		return st, nil, nil
	}
	hdr := len(archiveMagic) + 1
	switch {
	case len(data) < hdr+8 || string(data[:len(archiveMagic)]) != archiveMagic:
		return nil, nil, errs.Corruptf(path, 0, "not an op-log archive")
	case data[len(archiveMagic)] > archiveVersion:
		return nil, nil, errs.NewerFormatf(path, uint32(data[len(archiveMagic)]), archiveVersion)
	case data[len(archiveMagic)] < 2:
		return nil, nil, errs.Corruptf(path, int64(len(archiveMagic)), "archive version %d", data[len(archiveMagic)])
	}
	body := data[:len(data)-8]
	if got, want := binary.LittleEndian.Uint64(data[len(body):]), xxhash.Sum64(body); got != want {
		return nil, nil, errs.Corruptf(path, int64(len(body)), "checksum mismatch: stored %#x, computed %#x", got, want)
	}
	n, k := binary.Uvarint(body[hdr:])
	if k <= 0 || n > uint64(len(body)-hdr-k) {
		return nil, nil, errs.Corruptf(path, int64(hdr), "bad stream length")
	}
	start := hdr + k
	st, err := oplog.ReadStream(bytes.NewReader(body[start : start+int(n)]))
	if err != nil {
		return nil, nil, fmt.Errorf("pluresdb: archive %s: %w", path, err)
	}
	pos, err := decodePositions(body[start+int(n):], len(st.Ops))
	if err != nil {
		return nil, nil, errs.Corruptf(path, int64(start)+int64(n), "%v", err)
	}
	return st, pos, nil
}

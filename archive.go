package pluresdb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/plures/pluresdb/internal/archive"
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
// The file format (version 3 keeps each operation's log position and
// class) is internal/archive's.

// archiveSegment moves segment s to the cold archive.
func (db *DB) archiveSegment(s *segIndex) error {
	var ops []oplog.Op
	var pos []archive.Position
	var classes []archive.Class
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
			pos = append(pos, archive.Position(p))
			classes = append(classes, archive.Class(class))
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
		if opClass(classes[i]) == opFiltered {
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
	data := archive.Encode(stream.Bytes(), pos, classes)
	path := layout.Path(db.dir, layout.TypeArchive, s.num)
	tmp := layout.Path(db.dir, layout.TypeTemp, db.vs.NewFileNum())
	if err := vfs.WriteFileAtomic(db.fs, tmp, path, data); err != nil {
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
	db.m.opArchivedBytes.Add(uint64(len(data)))
	db.m.opArchivedOps.Add(uint64(len(ops)))
	logPath := layout.Path(db.dir, layout.TypeLog, s.num)
	if err := db.fs.Remove(logPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		db.log.Error().Err(err).Str("file", logPath).Msg("removing archived log segment")
	}
	return nil
}

// The archive stores opClass values as archive.Class: they must agree
// (a difference overflows one of these constants).
const (
	_ = uint8(opLogged-opClass(archive.Logged)) + uint8(opClass(archive.Logged)-opLogged)
	_ = uint8(opFiltered-opClass(archive.Filtered)) + uint8(opClass(archive.Filtered)-opFiltered)
	_ = uint8(opRepeat-opClass(archive.Repeat)) + uint8(opClass(archive.Repeat)-opRepeat)
	_ = uint8(numOpClasses-opClass(archive.NumClasses)) + uint8(opClass(archive.NumClasses)-numOpClasses)
)

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
	a, err := archive.Decode(path, data)
	if err != nil {
		return nil, err
	}
	out := &archived{stream: a.Stream}
	if a.Pos != nil {
		out.pos = make([]Position, len(a.Pos))
		for i, p := range a.Pos {
			out.pos[i] = Position(p)
		}
	}
	if a.Classes != nil {
		out.classes = make([]opClass, len(a.Classes))
		for i, c := range a.Classes {
			out.classes[i] = opClass(c)
		}
	}
	return out, nil
}

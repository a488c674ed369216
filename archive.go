package pluresdb

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"

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
// whole), in a file NNNNNN.oparc named after the segment; then the segment is removed. The projections and the records'
// log positions are not kept: tables hold the state, and the change feed
// resumes only within hot history. ExportChanges and GetAsOf read archives
// as they read segments.

// archiveSegment moves segment s to the cold archive.
func (db *DB) archiveSegment(s *segIndex) error {
	var ops []oplog.Op
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
		err = decodeRecord(rec, db.ol.self, func(_ Position, op *oplog.Op) error {
			c := *op
			c.Key, c.Field, c.Value = bytes.Clone(op.Key), bytes.Clone(op.Field), bytes.Clone(op.Value)
			ops = append(ops, c)
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
	sw, err := oplog.NewStreamWriter(&buf, h)
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
	path := layout.Path(db.dir, layout.TypeArchive, s.num)
	tmp := layout.Path(db.dir, layout.TypeTemp, db.vs.NewFileNum())
	if err := vfs.WriteFileAtomic(db.fs, tmp, path, buf.Bytes()); err != nil {
		return fmt.Errorf("pluresdb: writing archive %s: %w", path, err)
	}
	arch := *s
	arch.archived = true
	b := db.NewBatch()
	b.add(lsm.KindSet, nsMeta, segIndexKey(s.num), arch.encode())
	if err := b.Commit(&WriteOptions{Sync: true}); err != nil {
		return err
	}
	db.ol.mu.Lock()
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

// readArchive reads and verifies the archive of segment num.
func (db *DB) readArchive(num layout.FileNum) (*oplog.Stream, error) {
	path := layout.Path(db.dir, layout.TypeArchive, num)
	f, err := db.fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := oplog.ReadStream(f)
	if err != nil {
		return nil, fmt.Errorf("pluresdb: archive %s: %w", path, err)
	}
	return st, nil
}

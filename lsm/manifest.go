package lsm

// This file owns the MANIFEST and CURRENT files: the encoding of a
// VersionEdit and the reading and writing of manifest files.
//
// A MANIFEST-<num> file is a 16-byte header followed by an internal/record
// stream (see that package for the 32 KiB block and chunk framing). Each
// record is one encoded VersionEdit. The first record of every manifest is a
// snapshot: the whole version plus the counters, so a manifest can be read
// without any older one.
//
//	header (16 bytes):
//	+-------------------------+-------------------+--------------------+
//	| magic "PLURMAN\x00" (8) | version u32 LE (4)| checksum u32 LE (4)|
//	+-------------------------+-------------------+--------------------+
//	checksum = low 32 bits of xxhash64(magic + version)
//
//	VersionEdit record: a sequence of tagged fields, in any order
//	+-------------+-----------+-------------+-----------+---
//	| tag uvarint | value     | tag uvarint | value     | ...
//	+-------------+-----------+-------------+-----------+---
//
//	tag 1 LogNum        uvarint
//	tag 2 NextFileNum   uvarint
//	tag 3 LastSeq       uvarint
//	tag 4 NewFile       level, num, size uvarint; smallest, largest bytes;
//	                    smallestSeq, largestSeq, numEntries, numDeletions uvarint
//	tag 5 DeletedFile   level, num uvarint
//	tag 6 NewColdFile   as NewFile, for a table of the cold tier (version 2)
//	tag 7 CleanClose    segment, size uvarint: the database was closed
//	                    cleanly, its last WAL segment synced at that size
//	                    (version 3). Any later edit clears it.
//	bytes = uvarint length + that many bytes
//
// Tags and their layouts are part of the format: never renumber them. A new
// field gets a new tag and a format version bump, since a reader rejects tags
// it does not know (it cannot tell how long their values are).
//
// CURRENT holds the base name of the live manifest followed by "\n". It is
// replaced atomically: the new contents go to a temporary file, which is
// synced, renamed over CURRENT, and the directory is synced.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/record"
	"github.com/plures/pluresdb/internal/vfs"
)

// NumLevels is the number of levels of the LSM tree (L0..L6).
const NumLevels = 7

const (
	manifestMagic = "PLURMAN\x00"
	// manifestVersion is the format version written and the newest read.
	// Version 2 added tag 6 (cold-tier tables), version 3 tag 7 (clean
	// close); older manifests are read as they are and rewritten in the
	// current version on open.
	manifestVersion    = 3
	manifestHeaderSize = 16

	// Field tags of an encoded VersionEdit; part of the format.
	tagLogNum      = 1
	tagNextFileNum = 2
	tagLastSeq     = 3
	tagNewFile     = 4
	tagDeletedFile = 5
	tagNewColdFile = 6
	tagCleanClose  = 7

	// maxCurrentSize bounds what is read from CURRENT: it holds one short
	// file name.
	maxCurrentSize = 256
)

// FileMeta describes one sstable of a Version. It is immutable once it is
// part of an edit: several Versions share the same *FileMeta.
type FileMeta struct {
	Num                      layout.FileNum
	Size                     uint64
	Smallest, Largest        []byte // internal keys, inclusive
	SmallestSeq, LargestSeq  SeqNum
	NumEntries, NumDeletions uint64
	// Cold: the table belongs to the cold tier and lives in the cold
	// directory (VersionSetOptions.ColdDir; the main directory if unset).
	Cold bool
}

// NewFile adds a table at a level.
type NewFile struct {
	Level int
	Meta  *FileMeta
}

// DeletedFile removes a table from a level.
type DeletedFile struct {
	Level int
	Num   layout.FileNum
}

// VersionEdit is the difference between two Versions, and the unit recorded
// in the MANIFEST. The Has* flags say which scalar fields are set.
type VersionEdit struct {
	// LogNum: WAL segments numbered below LogNum hold only data that is
	// already in tables.
	LogNum    layout.FileNum
	HasLogNum bool

	NextFileNum    layout.FileNum
	HasNextFileNum bool

	LastSeq    SeqNum
	HasLastSeq bool

	NewFiles     []NewFile
	DeletedFiles []DeletedFile

	// CleanClose, if set, records a clean shutdown: written by Close after
	// the final sync of the WAL. It holds while it is the last edit of the
	// manifest; any later edit clears it.
	CleanClose *CleanClose
}

// CleanClose says that the database was closed cleanly and what its WAL
// looked like then: after it, any damage in the log is corruption, never a
// torn write.
type CleanClose struct {
	LogNum  layout.FileNum // the last WAL segment
	LogSize int64          // its size, header included, all of it synced
}

// Encode appends the encoding of e to dst.
func (e *VersionEdit) Encode(dst []byte) []byte {
	if e.HasLogNum {
		dst = binary.AppendUvarint(dst, tagLogNum)
		dst = binary.AppendUvarint(dst, uint64(e.LogNum))
	}
	if e.HasNextFileNum {
		dst = binary.AppendUvarint(dst, tagNextFileNum)
		dst = binary.AppendUvarint(dst, uint64(e.NextFileNum))
	}
	if e.HasLastSeq {
		dst = binary.AppendUvarint(dst, tagLastSeq)
		dst = binary.AppendUvarint(dst, uint64(e.LastSeq))
	}
	if c := e.CleanClose; c != nil {
		dst = binary.AppendUvarint(dst, tagCleanClose)
		dst = binary.AppendUvarint(dst, uint64(c.LogNum))
		dst = binary.AppendUvarint(dst, uint64(c.LogSize))
	}
	for _, d := range e.DeletedFiles {
		dst = binary.AppendUvarint(dst, tagDeletedFile)
		dst = binary.AppendUvarint(dst, uint64(d.Level))
		dst = binary.AppendUvarint(dst, uint64(d.Num))
	}
	for _, nf := range e.NewFiles {
		m := nf.Meta
		if m.Cold {
			dst = binary.AppendUvarint(dst, tagNewColdFile)
		} else {
			dst = binary.AppendUvarint(dst, tagNewFile)
		}
		dst = binary.AppendUvarint(dst, uint64(nf.Level))
		dst = binary.AppendUvarint(dst, uint64(m.Num))
		dst = binary.AppendUvarint(dst, m.Size)
		dst = binary.AppendUvarint(dst, uint64(len(m.Smallest)))
		dst = append(dst, m.Smallest...)
		dst = binary.AppendUvarint(dst, uint64(len(m.Largest)))
		dst = append(dst, m.Largest...)
		dst = binary.AppendUvarint(dst, uint64(m.SmallestSeq))
		dst = binary.AppendUvarint(dst, uint64(m.LargestSeq))
		dst = binary.AppendUvarint(dst, m.NumEntries)
		dst = binary.AppendUvarint(dst, m.NumDeletions)
	}
	return dst
}

// editDecoder reads the fields of one encoded edit; the first error sticks.
type editDecoder struct {
	b      []byte
	pos    int
	file   string
	offset int64
	err    error
}

func (d *editDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = errs.Corruptf(d.file, d.offset, "version edit: %s (at byte %d of the record)",
			fmt.Sprintf(format, args...), d.pos)
	}
}

func (d *editDecoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.pos:])
	if n <= 0 {
		d.fail("bad or truncated varint for %s", what)
		return 0
	}
	d.pos += n
	return v
}

// bytes returns a length-prefixed byte string. The result aliases d.b.
func (d *editDecoder) bytes(what string) []byte {
	n := d.uvarint(what + " length")
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.pos) {
		d.fail("%s length %d overruns the record", what, n)
		return nil
	}
	s := d.b[d.pos : d.pos+int(n)]
	d.pos += int(n)
	return s
}

func (d *editDecoder) level() int {
	l := d.uvarint("level")
	if d.err == nil && l >= NumLevels {
		d.fail("level %d out of range", l)
	}
	return int(l)
}

func (d *editDecoder) seq(what string) SeqNum {
	s := d.uvarint(what)
	if d.err == nil && s > uint64(MaxSeqNum) {
		d.fail("%s %d exceeds the largest sequence number", what, s)
	}
	return SeqNum(s)
}

// DecodeVersionEdit decodes an edit encoded by Encode. file and offset name
// the record in errors, which wrap errs.ErrCorruption. The result does not
// alias b.
func DecodeVersionEdit(b []byte, file string, offset int64) (*VersionEdit, error) {
	d := &editDecoder{b: b, file: file, offset: offset}
	e := &VersionEdit{}
	for d.err == nil && d.pos < len(b) {
		switch tag := d.uvarint("tag"); tag {
		case tagLogNum:
			if e.HasLogNum {
				d.fail("LogNum given twice")
			}
			e.LogNum, e.HasLogNum = layout.FileNum(d.uvarint("LogNum")), true
		case tagNextFileNum:
			if e.HasNextFileNum {
				d.fail("NextFileNum given twice")
			}
			e.NextFileNum, e.HasNextFileNum = layout.FileNum(d.uvarint("NextFileNum")), true
		case tagLastSeq:
			if e.HasLastSeq {
				d.fail("LastSeq given twice")
			}
			e.LastSeq, e.HasLastSeq = d.seq("LastSeq"), true
		case tagCleanClose:
			if e.CleanClose != nil {
				d.fail("CleanClose given twice")
			}
			num := layout.FileNum(d.uvarint("clean close segment"))
			size := d.uvarint("clean close size")
			if d.err == nil && size > math.MaxInt64 {
				d.fail("clean close size %d out of range", size)
			}
			if d.err == nil {
				e.CleanClose = &CleanClose{LogNum: num, LogSize: int64(size)}
			}
		case tagDeletedFile:
			lvl := d.level()
			num := layout.FileNum(d.uvarint("file number"))
			if d.err == nil {
				e.DeletedFiles = append(e.DeletedFiles, DeletedFile{Level: lvl, Num: num})
			}
		case tagNewFile, tagNewColdFile:
			nf := d.newFile()
			if d.err == nil {
				nf.Meta.Cold = tag == tagNewColdFile
				e.NewFiles = append(e.NewFiles, nf)
			}
		default:
			if d.err == nil {
				d.fail("unknown tag %d", tag)
			}
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return e, nil
}

func (d *editDecoder) newFile() NewFile {
	lvl := d.level()
	m := &FileMeta{}
	m.Num = layout.FileNum(d.uvarint("file number"))
	m.Size = d.uvarint("file size")
	smallest := d.bytes("smallest key")
	largest := d.bytes("largest key")
	m.SmallestSeq = d.seq("smallest seq")
	m.LargestSeq = d.seq("largest seq")
	m.NumEntries = d.uvarint("entry count")
	m.NumDeletions = d.uvarint("deletion count")
	if d.err != nil {
		return NewFile{}
	}
	if err := checkFileMeta(m.Num, smallest, largest, m.SmallestSeq, m.LargestSeq); err != nil {
		d.fail("%v", err)
		return NewFile{}
	}
	// One allocation for both keys; the record buffer is reused by the reader.
	keys := make([]byte, len(smallest)+len(largest))
	copy(keys, smallest)
	copy(keys[len(smallest):], largest)
	m.Smallest = keys[:len(smallest):len(smallest)]
	m.Largest = keys[len(smallest):]
	return NewFile{Level: lvl, Meta: m}
}

// checkFileMeta checks what every table's metadata must satisfy, whether it
// comes from disk or from a caller.
func checkFileMeta(num layout.FileNum, smallest, largest []byte, smallestSeq, largestSeq SeqNum) error {
	switch {
	case num == 0:
		return errors.New("file number 0")
	case len(smallest) < TrailerLen || len(largest) < TrailerLen:
		return fmt.Errorf("table %s: bounds are not internal keys", num)
	case CompareInternal(smallest, largest) > 0:
		return fmt.Errorf("table %s: smallest key above largest", num)
	case smallestSeq > largestSeq:
		return fmt.Errorf("table %s: smallest seq %d above largest %d", num, smallestSeq, largestSeq)
	case largestSeq > MaxSeqNum:
		return fmt.Errorf("table %s: seq %d out of range", num, largestSeq)
	}
	return nil
}

// manifestHeader returns the 16-byte header of a manifest.
func manifestHeader() []byte {
	h := make([]byte, manifestHeaderSize)
	copy(h, manifestMagic)
	binary.LittleEndian.PutUint32(h[8:12], manifestVersion)
	binary.LittleEndian.PutUint32(h[12:16], uint32(xxhash.Sum64(h[:12])))
	return h
}

// checkManifestHeader validates a manifest's header bytes.
func checkManifestHeader(h []byte, file string) error {
	if len(h) < manifestHeaderSize {
		return errs.Corruptf(file, 0, "manifest header truncated (%d bytes)", len(h))
	}
	if string(h[:8]) != manifestMagic {
		return errs.Corruptf(file, 0, "bad manifest magic %q", h[:8])
	}
	if binary.LittleEndian.Uint32(h[12:16]) != uint32(xxhash.Sum64(h[:12])) {
		return errs.Corruptf(file, 0, "manifest header checksum mismatch")
	}
	switch v := binary.LittleEndian.Uint32(h[8:12]); {
	case v > manifestVersion:
		return errs.NewerFormatf(file, v, manifestVersion)
	case v == 0:
		return errs.Corruptf(file, 8, "manifest format version 0")
	}
	return nil
}

// manifestWriter appends edits to a manifest file. It is used under
// VersionSet.mu.
type manifestWriter struct {
	f      vfs.File
	num    layout.FileNum
	name   string
	framer record.Framer
	size   int64 // bytes in the file
	buf    []byte
	framed []byte
}

// createManifest creates MANIFEST-num holding the header and snapshot, and
// syncs it. The directory entry is made durable by the setCurrent that
// follows.
func createManifest(fs vfs.FS, dir string, num layout.FileNum, snapshot *VersionEdit) (*manifestWriter, error) {
	name := layout.Path(dir, layout.TypeManifest, num)
	f, err := fs.Create(name)
	if err != nil {
		return nil, err
	}
	m := &manifestWriter{f: f, num: num, name: name}
	if _, err := f.Write(manifestHeader()); err != nil {
		f.Close()
		return nil, fmt.Errorf("lsm: write %s: %w", name, err)
	}
	m.size = manifestHeaderSize
	if err := m.append(snapshot); err != nil {
		f.Close()
		return nil, err
	}
	return m, nil
}

// append writes one edit as a record and fsyncs it.
func (m *manifestWriter) append(e *VersionEdit) error {
	m.buf = e.Encode(m.buf[:0])
	m.framed = m.framer.Append(m.framed[:0], m.buf)
	n, err := m.f.Write(m.framed)
	m.size += int64(n)
	if err != nil {
		return fmt.Errorf("lsm: write %s: %w", m.name, err)
	}
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("lsm: sync %s: %w", m.name, err)
	}
	return nil
}

func (m *manifestWriter) close() error { return m.f.Close() }

// setCurrent points CURRENT at MANIFEST-num atomically and durably. The
// temporary file is named after the manifest's number.
func setCurrent(fs vfs.FS, dir string, num layout.FileNum) error {
	err := vfs.WriteFileAtomic(fs, layout.Path(dir, layout.TypeTemp, num), layout.Path(dir, layout.TypeCurrent, 0),
		[]byte(layout.Name(layout.TypeManifest, num)+"\n"))
	if err != nil {
		return fmt.Errorf("lsm: set CURRENT to manifest %s: %w", num, err)
	}
	return nil
}

// readCurrent returns the number of the manifest CURRENT names.
func readCurrent(fs vfs.FS, dir string) (layout.FileNum, error) {
	name := layout.Path(dir, layout.TypeCurrent, 0)
	f, err := fs.Open(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, errs.Corruptf(name, -1, "CURRENT is missing: %v", err)
		}
		return 0, fmt.Errorf("lsm: open %s: %w", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCurrentSize+1))
	if err != nil {
		return 0, fmt.Errorf("lsm: read %s: %w", name, err)
	}
	s, ok := strings.CutSuffix(string(b), "\n")
	if !ok || len(b) > maxCurrentSize {
		return 0, errs.Corruptf(name, 0, "CURRENT does not hold one manifest name: %q", truncateForError(b))
	}
	t, num, ok := layout.Parse(s)
	if !ok || t != layout.TypeManifest || s != layout.Name(layout.TypeManifest, num) {
		return 0, errs.Corruptf(name, 0, "CURRENT names %q, not a manifest", truncateForError([]byte(s)))
	}
	return num, nil
}

func truncateForError(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// replayedManifest is the state a manifest describes.
type replayedManifest struct {
	builder        *versionBuilder
	logNum         layout.FileNum
	nextFileNum    layout.FileNum
	hasNextFileNum bool
	lastSeq        SeqNum
	cleanClose     *CleanClose // set by the last edit, if it records one
	torn           bool        // a torn final record was ignored
}

// replayManifest reads MANIFEST-num and applies its edits in order.
//
// Damage after the last whole record is a torn tail, ignored, when it is
// what a crash leaves (record.CheckTail: a record cut short, zeros) and no
// record follows it: the write of that edit was cut short and never
// acknowledged (edits are acknowledged only after their fsync, one at a
// time). A whole record with a bad checksum,
// damage with valid data after it, or any damage after an edit recording
// a clean close (nothing is appended after it) is corruption.
func replayManifest(fs vfs.FS, dir string, num layout.FileNum) (*replayedManifest, error) {
	name := layout.Path(dir, layout.TypeManifest, num)
	f, err := fs.Open(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errs.Corruptf(name, -1, "manifest named by CURRENT is missing: %v", err)
		}
		return nil, fmt.Errorf("lsm: open %s: %w", name, err)
	}
	defer f.Close()
	hdr := make([]byte, manifestHeaderSize)
	n, err := io.ReadFull(f, hdr)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fmt.Errorf("lsm: read %s: %w", name, err)
	}
	if err := checkManifestHeader(hdr[:n], name); err != nil {
		return nil, err
	}

	st := &replayedManifest{builder: newVersionBuilder(nil)}
	r := record.NewReader(f, name, manifestHeaderSize)
	edits := 0
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if !errors.Is(err, errs.ErrCorruption) {
				return nil, fmt.Errorf("lsm: read %s: %w", name, err)
			}
			if st.cleanClose != nil {
				return nil, fmt.Errorf("%w (after the edit recording a clean close)", err)
			}
			size, ferr := f.Size()
			if ferr != nil {
				return nil, fmt.Errorf("lsm: read %s: %w", name, ferr)
			}
			// One edit is written at a time and synced before the next, so
			// a crash can cut only the last: a record after the damage
			// means acknowledged edits would be lost.
			if _, follows, ferr := record.NextRecordStart(f, manifestHeaderSize, r.Offset()+1, size); ferr != nil {
				return nil, fmt.Errorf("lsm: read %s: %w", name, ferr)
			} else if follows {
				return nil, err
			}
			if terr := record.CheckTail(f, name, manifestHeaderSize, r.End(), size); terr != nil {
				if errors.Is(terr, errs.ErrCorruption) {
					return nil, terr
				}
				return nil, fmt.Errorf("lsm: read %s: %w", name, terr)
			}
			st.torn = true
			break
		}
		off := r.Offset()
		e, err := DecodeVersionEdit(rec, name, off)
		if err != nil {
			return nil, err
		}
		if err := st.builder.apply(e); err != nil {
			return nil, errs.Corruptf(name, off, "%v", err)
		}
		if e.HasLogNum {
			st.logNum = e.LogNum
		}
		if e.HasNextFileNum {
			st.nextFileNum, st.hasNextFileNum = e.NextFileNum, true
		}
		if e.HasLastSeq {
			st.lastSeq = e.LastSeq
		}
		st.cleanClose = e.CleanClose
		edits++
	}
	if edits == 0 {
		return nil, errs.Corruptf(name, manifestHeaderSize, "manifest holds no complete edit")
	}
	if !st.hasNextFileNum {
		return nil, errs.Corruptf(name, manifestHeaderSize, "manifest never records the next file number")
	}
	return st, nil
}

// snapshotEdit returns an edit that recreates v and the given counters from
// nothing: the first record of every manifest.
func snapshotEdit(v *Version, logNum, nextFileNum layout.FileNum, lastSeq SeqNum, clean *CleanClose) *VersionEdit {
	e := &VersionEdit{
		CleanClose: clean,
		LogNum:     logNum, HasLogNum: true,
		NextFileNum: nextFileNum, HasNextFileNum: true,
		LastSeq: lastSeq, HasLastSeq: true,
	}
	if v != nil {
		for level := range v.Levels {
			for _, m := range v.Levels[level] {
				e.NewFiles = append(e.NewFiles, NewFile{Level: level, Meta: m})
			}
		}
	}
	return e
}

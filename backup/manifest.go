package backup

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
)

// ManifestName is the name of a backup's manifest in its directory.
const ManifestName = "BACKUP"

// The manifest format; part of it.
const (
	manifestMagic   = "PLRSBKUP"
	manifestVersion = 2
	// maxManifestSize bounds what is read: a manifest names every file
	// of a database once.
	maxManifestSize = 64 << 20
	// maxNameLen bounds a file name.
	maxNameLen = 255
)

// flagFollow marks a follower's manifest.
const flagFollow = 1

// ID names one backup.
type ID [16]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IsZero says whether id is the zero ID (no backup: a full backup's parent).
func (id ID) IsZero() bool { return id == ID{} }

// Manifest describes one backup: what it holds and, for an incremental
// one, the backup it builds on.
type Manifest struct {
	ID ID
	// Parent is the backup an incremental backup builds on; zero for a
	// full backup.
	Parent ID
	// ParentPath is where the parent was, relative to this backup's
	// directory when it could be made so.
	ParentPath string
	// Replica is the ID of the database backed up; a restore as the same
	// replica keeps it.
	Replica oplog.ReplicaID
	// Time is the wall-clock time of the checkpoint's cut.
	Time time.Time
	// LastSeq is the last sequence number the backup holds.
	LastSeq uint64
	// VersionVector is what the database held of every replica.
	VersionVector oplog.VersionVector
	// Files lists the restored database's files, sorted by name.
	Files []File
	// Follow marks a follower (see Follow): an incremental backup that
	// holds the log segments its database sealed after its parent was
	// taken. Its VersionVector is its parent's (what it holds beyond that
	// is in the log it carries), its LastSeq the last sequence number of
	// the log it holds, and Time that of the last segment shipped.
	Follow bool
	// Shipped is, for a follower, the last log segment it holds sealed
	// (0: none yet).
	Shipped layout.FileNum
}

// File is one file of the database a backup restores.
type File struct {
	Name string
	Size int64  // the whole file's size
	Sum  uint64 // xxhash64 of the whole file
	// Base is how many leading bytes the parent backup holds (its file
	// of this name, Base bytes long): 0 for a file stored whole here,
	// Size for a file stored wholly in the chain, between for a log
	// segment that has grown since the parent.
	Base int64
	// StoredSum is the xxhash64 of the Size-Base bytes stored here, in
	// a file of this name in the backup's directory (0 when none are).
	StoredSum uint64
}

// Stored is the number of bytes this backup stores of f.
func (f *File) Stored() int64 { return f.Size - f.Base }

// Full says whether the backup stands alone.
func (m *Manifest) Full() bool { return m.Parent.IsZero() }

// StoredBytes is the number of bytes the backup itself stores.
func (m *Manifest) StoredBytes() int64 {
	var n int64
	for i := range m.Files {
		n += m.Files[i].Stored()
	}
	return n
}

// File returns the entry of name, or nil.
func (m *Manifest) File(name string) *File {
	for i := range m.Files {
		if m.Files[i].Name == name {
			return &m.Files[i]
		}
	}
	return nil
}

// Encode returns the manifest's bytes:
//
//	magic "PLRSBKUP" | version u8 (1) | uvarint n | body (n bytes) |
//	xxhash64 (LE) of every byte before it
//
//	body: id 16 | parent 16 (zero: a full backup) | bytes parentPath |
//	      replica 16 | varint time (Unix ns) | uvarint lastSeq |
//	      bytes versionVector (oplog's encoding) | uvarint files |
//	      files × (bytes name | uvarint size | sum u64 LE |
//	               uvarint base | storedSum u64 LE) |
//	      uvarint flags (bit 0: a follower) | uvarint shipped
//	bytes = uvarint length | that many bytes
//
// Version 1 manifests end the body after the files (not a follower).
//
// Files are sorted by name, each named once.
func (m *Manifest) Encode() []byte {
	var body []byte
	body = append(body, m.ID[:]...)
	body = append(body, m.Parent[:]...)
	body = appendBytes(body, []byte(m.ParentPath))
	body = append(body, m.Replica[:]...)
	body = binary.AppendVarint(body, m.Time.UnixNano())
	body = binary.AppendUvarint(body, m.LastSeq)
	body = appendBytes(body, m.VersionVector.Append(nil))
	body = binary.AppendUvarint(body, uint64(len(m.Files)))
	for _, f := range m.Files {
		body = appendBytes(body, []byte(f.Name))
		body = binary.AppendUvarint(body, uint64(f.Size))
		body = binary.LittleEndian.AppendUint64(body, f.Sum)
		body = binary.AppendUvarint(body, uint64(f.Base))
		body = binary.LittleEndian.AppendUint64(body, f.StoredSum)
	}
	var flags uint64
	if m.Follow {
		flags |= flagFollow
	}
	body = binary.AppendUvarint(body, flags)
	body = binary.AppendUvarint(body, uint64(m.Shipped))
	b := append([]byte(manifestMagic), manifestVersion)
	b = binary.AppendUvarint(b, uint64(len(body)))
	b = append(b, body...)
	return binary.LittleEndian.AppendUint64(b, xxhash.Sum64(b))
}

func appendBytes(dst, b []byte) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(b))), b...)
}

// DecodeManifest parses a manifest; file names it in errors, which wrap
// ErrCorruption (or ErrNewerFormat for a newer version). It never panics.
func DecodeManifest(b []byte, file string) (*Manifest, error) {
	if len(b) < len(manifestMagic)+1+8 || string(b[:len(manifestMagic)]) != manifestMagic {
		return nil, errs.Corruptf(file, 0, "not a backup manifest (bad magic)")
	}
	v := b[len(manifestMagic)]
	if v > manifestVersion {
		return nil, errs.NewerFormatf(file, uint32(v), manifestVersion)
	} else if v == 0 {
		return nil, errs.Corruptf(file, int64(len(manifestMagic)), "version 0")
	}
	end := len(b) - 8
	if got, want := xxhash.Sum64(b[:end]), binary.LittleEndian.Uint64(b[end:]); got != want {
		return nil, errs.Corruptf(file, int64(end), "checksum mismatch: computed %#x, stored %#x", got, want)
	}
	d := decoder{b: b[:end], off: len(manifestMagic) + 1, file: file}
	n := d.uvarint("body length")
	if d.err == nil && n != uint64(len(d.b)-d.off) {
		d.fail("body of %d bytes, %d follow", n, len(d.b)-d.off)
	}
	m := &Manifest{}
	copy(m.ID[:], d.fixed(16, "id"))
	copy(m.Parent[:], d.fixed(16, "parent"))
	m.ParentPath = string(d.bytes("parent path", 4096))
	copy(m.Replica[:], d.fixed(16, "replica"))
	m.Time = time.Unix(0, d.varint("time"))
	m.LastSeq = d.uvarint("last sequence")
	if vvb := d.bytes("version vector", len(d.b)); d.err == nil {
		vv, k, err := oplog.DecodeVersionVector(vvb)
		if err != nil || k != len(vvb) {
			d.fail("version vector: %v", err)
		}
		m.VersionVector = vv
	}
	count := d.uvarint("file count")
	if d.err == nil && count > uint64(len(d.b)-d.off)/20 {
		d.fail("%d files in %d bytes", count, len(d.b)-d.off)
	}
	for i := uint64(0); d.err == nil && i < count; i++ {
		f := File{Name: string(d.bytes("file name", maxNameLen))}
		f.Size = d.size("file size")
		f.Sum = d.u64("file checksum")
		f.Base = d.size("file base")
		f.StoredSum = d.u64("stored checksum")
		if d.err != nil {
			break
		}
		if err := checkFileName(f.Name); err != nil {
			d.fail("file %d: %v", i, err)
		} else if f.Base > f.Size {
			d.fail("file %s: base %d past its size %d", f.Name, f.Base, f.Size)
		} else if len(m.Files) > 0 && m.Files[len(m.Files)-1].Name >= f.Name {
			d.fail("file %s: names not sorted and unique", f.Name)
		} else if m.Parent.IsZero() && f.Base != 0 {
			d.fail("file %s: a full backup refers to a parent", f.Name)
		}
		m.Files = append(m.Files, f)
	}
	if v >= 2 {
		flags := d.uvarint("flags")
		if d.err == nil && flags&^flagFollow != 0 {
			d.fail("unknown flags %#x", flags)
		}
		m.Follow = flags&flagFollow != 0
		m.Shipped = layout.FileNum(d.uvarint("shipped segment"))
		if d.err == nil && m.Follow && m.Parent.IsZero() {
			d.fail("a follower without a parent")
		}
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d bytes after the last field", len(d.b)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}
	return m, nil
}

// checkFileName accepts the names of a database's files that a backup
// holds: engine files, never LOCK, never a path.
func checkFileName(name string) error {
	t, _, ok := layout.Parse(name)
	switch {
	case !ok || name != filepath.Base(name) || name == "." || name == "..":
		return fmt.Errorf("%q is not a database file name", name)
	case t == layout.TypeLock || t == layout.TypeTemp:
		return fmt.Errorf("%q is not a file a backup holds", name)
	}
	return nil
}

type decoder struct {
	b    []byte
	off  int
	file string
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = errs.Corruptf(d.file, int64(d.off), format, args...)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("%s: bad uvarint", what)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("%s: bad varint", what)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) size(what string) int64 {
	v := d.uvarint(what)
	if v > math.MaxInt64 {
		d.fail("%s: %d too large", what, v)
		return 0
	}
	return int64(v)
}

func (d *decoder) fixed(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b)-d.off < n {
		d.fail("%s: truncated", what)
		return nil
	}
	b := d.b[d.off : d.off+n]
	d.off += n
	return b
}

func (d *decoder) u64(what string) uint64 {
	b := d.fixed(8, what)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

func (d *decoder) bytes(what string, limit int) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(limit) {
		d.fail("%s: %d bytes, limit %d", what, n, limit)
		return nil
	}
	return d.fixed(int(n), what)
}

// ReadManifest reads the manifest of the backup in dir. A directory
// without one gives an error wrapping ErrNotBackup.
func ReadManifest(fs vfs.FS, dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestName)
	f, err := fs.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s has no %s file", ErrNotBackup, dir, ManifestName)
		}
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("backup: reading %s: %w", path, err)
	}
	if len(b) > maxManifestSize {
		return nil, errs.Corruptf(path, maxManifestSize, "manifest larger than %d bytes", maxManifestSize)
	}
	return DecodeManifest(b, path)
}

// writeManifest writes m into dir durably.
func writeManifest(fs vfs.FS, dir string, m *Manifest) error {
	return vfs.WriteFileAtomic(fs, filepath.Join(dir, ManifestName+".tmp"), filepath.Join(dir, ManifestName), m.Encode())
}

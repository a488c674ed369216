package oplog

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/vfs"
)

// ReplicaID names one replica (one database directory). It is random, so
// two replicas never need to coordinate to pick distinct IDs. The zero
// ReplicaID means "no replica" and is never written to a REPLICA file.
type ReplicaID [16]byte

// NewReplicaID returns a fresh random ID from crypto/rand.
func NewReplicaID() ReplicaID {
	var id ReplicaID
	for id.IsZero() {
		// crypto/rand.Read never fails (Go 1.24+): it crashes the program
		// rather than return predictable bytes.
		rand.Read(id[:])
	}
	return id
}

// IsZero reports whether id is the zero ID.
func (id ReplicaID) IsZero() bool { return id == ReplicaID{} }

// Compare orders IDs by their bytes; it breaks HLC ties between replicas.
func (id ReplicaID) Compare(o ReplicaID) int { return bytes.Compare(id[:], o[:]) }

// String returns the 32 lower-case hex digits of id.
func (id ReplicaID) String() string { return hex.EncodeToString(id[:]) }

// ParseReplicaID parses the 32 hex digits String returns.
func ParseReplicaID(s string) (ReplicaID, error) {
	var id ReplicaID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("oplog: replica ID %q: want %d hex digits", s, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("oplog: replica ID %q: %w", s, err)
	}
	return id, nil
}

// MarshalText returns String's hex digits, so IDs read well in JSON.
func (id ReplicaID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses what MarshalText returns.
func (id *ReplicaID) UnmarshalText(b []byte) error {
	p, err := ParseReplicaID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// REPLICA file format. All numbers are part of the format. The
// REJOINING file (WriteRejoinFile) has the same layout under its own
// magic.
const (
	replicaMagic       = "PLRSRPLC"
	rejoinMagic        = "PLRSRJIN"
	replicaVersion     = 1
	rejoinVersion      = 1
	replicaFileSize    = 8 + 4 + 16 + 8
	replicaChecksumOff = replicaFileSize - 8
)

// idFile is the format of one of the small files that hold a replica ID:
// magic | version u32 LE | ID (16 bytes) | xxhash64 LE of what precedes.
type idFile struct {
	magic   string
	version uint32
	what    string // in errors
}

var (
	replicaFile = idFile{replicaMagic, replicaVersion, "replica file"}
	rejoinFile  = idFile{rejoinMagic, rejoinVersion, "rejoining marker"}
)

func (f idFile) encode(id ReplicaID) []byte {
	buf := make([]byte, 0, replicaFileSize)
	buf = append(buf, f.magic...)
	buf = binary.LittleEndian.AppendUint32(buf, f.version)
	buf = append(buf, id[:]...)
	return binary.LittleEndian.AppendUint64(buf, xxhash.Sum64(buf))
}

// write writes id to path durably and atomically: a temporary file
// beside it is written and synced, renamed over path, and the directory
// is synced, so a crash leaves either the old file or the new one.
func (f idFile) write(fs vfs.FS, path string, id ReplicaID) error {
	if id.IsZero() {
		return fmt.Errorf("oplog: refusing to write the zero replica ID to a %s", f.what)
	}
	if err := vfs.WriteFileAtomic(fs, path+".tmp", path, f.encode(id)); err != nil {
		return fmt.Errorf("oplog: write %s: %w", path, err)
	}
	return nil
}

func (f idFile) read(fs vfs.FS, path string) (ReplicaID, error) {
	file, err := fs.Open(path)
	if err != nil {
		return ReplicaID{}, fmt.Errorf("oplog: open %s: %w", path, err)
	}
	defer file.Close()
	// Read one byte more than the format needs to notice trailing garbage
	// without trusting the file's size.
	b, err := io.ReadAll(io.LimitReader(file, replicaFileSize+1))
	if err != nil {
		return ReplicaID{}, fmt.Errorf("oplog: read %s: %w", path, err)
	}
	return f.decode(path, b)
}

func (f idFile) decode(name string, b []byte) (ReplicaID, error) {
	var id ReplicaID
	if len(b) < 12 {
		return id, errs.Corruptf(name, 0, "%s is %d bytes, want %d", f.what, len(b), replicaFileSize)
	}
	if string(b[:8]) != f.magic {
		return id, errs.Corruptf(name, 0, "bad magic %q", b[:8])
	}
	// A newer version may have another layout, so it is reported before
	// the length and checksum are judged.
	switch v := binary.LittleEndian.Uint32(b[8:12]); {
	case v > f.version:
		return id, errs.NewerFormatf(name, v, f.version)
	case v == 0:
		return id, errs.Corruptf(name, 8, "format version 0")
	}
	if len(b) != replicaFileSize {
		return id, errs.Corruptf(name, 0, "%s is %d bytes, want %d", f.what, len(b), replicaFileSize)
	}
	if got, want := binary.LittleEndian.Uint64(b[replicaChecksumOff:]), xxhash.Sum64(b[:replicaChecksumOff]); got != want {
		return id, errs.Corruptf(name, replicaChecksumOff, "checksum mismatch: stored %#x, computed %#x", got, want)
	}
	copy(id[:], b[12:28])
	if id.IsZero() {
		return id, errs.Corruptf(name, 12, "zero replica ID")
	}
	return id, nil
}

// WriteReplicaFile writes id to path durably and atomically: a temporary
// file beside it is written and synced, renamed over path, and the
// directory is synced, so a crash leaves either the old file or the new one.
func WriteReplicaFile(fs vfs.FS, path string, id ReplicaID) error {
	return replicaFile.write(fs, path, id)
}

// ReadReplicaFile reads the ID stored at path. A missing file gives an
// error matching os.ErrNotExist (the caller then makes a new ID); damaged
// contents give an error wrapping errs.ErrCorruption, and a newer format
// version one wrapping errs.ErrNewerFormat.
func ReadReplicaFile(fs vfs.FS, path string) (ReplicaID, error) {
	return replicaFile.read(fs, path)
}

// DecodeReplicaFile decodes the contents b of the REPLICA file named name
// (used in errors).
func DecodeReplicaFile(name string, b []byte) (ReplicaID, error) {
	return replicaFile.decode(name, b)
}

// WriteRejoinFile writes the REJOINING marker of replica id to path,
// durably and atomically as WriteReplicaFile does. Its presence says that
// the database in the directory is replica id restored in place from an
// older copy: its peers may hold operations of it that it lacks, and it
// takes no local writes until it has them back (see "Checkpoints and
// backups" in ARCHITECTURE.md). The format is REPLICA's under the magic
// "PLRSRJIN", version 1.
func WriteRejoinFile(fs vfs.FS, path string, id ReplicaID) error {
	return rejoinFile.write(fs, path, id)
}

// ReadRejoinFile reads the replica ID of the REJOINING marker at path,
// with ReadReplicaFile's errors.
func ReadRejoinFile(fs vfs.FS, path string) (ReplicaID, error) {
	return rejoinFile.read(fs, path)
}

// DecodeRejoinFile decodes the contents b of the REJOINING marker named
// name (used in errors).
func DecodeRejoinFile(name string, b []byte) (ReplicaID, error) {
	return rejoinFile.decode(name, b)
}

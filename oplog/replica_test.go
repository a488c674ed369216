package oplog

import (
	"errors"
	"os"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/vfs"
)

func TestReplicaIDStringParse(t *testing.T) {
	a, b := NewReplicaID(), NewReplicaID()
	if a == b || a.IsZero() {
		t.Fatalf("NewReplicaID gave %v and %v", a, b)
	}
	s := a.String()
	if len(s) != 32 {
		t.Fatalf("String() = %q, want 32 hex digits", s)
	}
	got, err := ParseReplicaID(s)
	if err != nil || got != a {
		t.Fatalf("ParseReplicaID(%q) = %v, %v; want %v", s, got, err, a)
	}
	var viaText ReplicaID
	if txt, _ := a.MarshalText(); viaText.UnmarshalText(txt) != nil || viaText != a {
		t.Fatalf("text round trip of %v gave %v", a, viaText)
	}
	for _, bad := range []string{"", "abc", s[:31], s + "0", "zz" + s[2:]} {
		if _, err := ParseReplicaID(bad); err == nil {
			t.Errorf("ParseReplicaID(%q) succeeded", bad)
		}
	}
}

func TestReplicaFileRoundTripAndDurable(t *testing.T) {
	fs := vfs.NewMem()
	if err := fs.MkdirAll("db"); err != nil {
		t.Fatal(err)
	}
	if err := fs.SyncDir("db"); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadReplicaFile(fs, "db/REPLICA"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: got %v, want os.ErrNotExist", err)
	}
	id := NewReplicaID()
	if err := WriteReplicaFile(fs, "db/REPLICA", id); err != nil {
		t.Fatal(err)
	}
	// What a power cut right after the write returns must hold the ID.
	crashed := fs.CrashClone()
	for _, f := range []vfs.FS{fs, crashed} {
		got, err := ReadReplicaFile(f, "db/REPLICA")
		if err != nil || got != id {
			t.Fatalf("ReadReplicaFile = %v, %v; want %v", got, err, id)
		}
	}
	names, err := crashed.List("db")
	if err != nil || len(names) != 1 || names[0] != "REPLICA" {
		t.Fatalf("directory after crash holds %v (%v), want only REPLICA", names, err)
	}
	// Replacing keeps one file with the new ID.
	id2 := NewReplicaID()
	if err := WriteReplicaFile(fs, "db/REPLICA", id2); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadReplicaFile(fs.CrashClone(), "db/REPLICA"); err != nil || got != id2 {
		t.Fatalf("after rewrite: %v, %v; want %v", got, err, id2)
	}
	if err := WriteReplicaFile(fs, "db/REPLICA", ReplicaID{}); err == nil {
		t.Fatal("writing the zero ID succeeded")
	}
}

func TestReplicaFileWriteFailureLeavesOld(t *testing.T) {
	fs := vfs.NewMem()
	fs.MkdirAll("db")
	id := NewReplicaID()
	if err := WriteReplicaFile(fs, "db/REPLICA", id); err != nil {
		t.Fatal(err)
	}
	// A failed rename must not clobber the stored ID nor leave the temp file.
	if err := WriteReplicaFile(renameFails{fs}, "db/REPLICA", NewReplicaID()); err == nil {
		t.Fatal("write with failing rename succeeded")
	}
	if got, err := ReadReplicaFile(fs, "db/REPLICA"); err != nil || got != id {
		t.Fatalf("after failed write: %v, %v; want %v", got, err, id)
	}
	if names, _ := fs.List("db"); len(names) != 1 {
		t.Fatalf("directory holds %v, want only REPLICA", names)
	}
}

type renameFails struct{ vfs.FS }

func (renameFails) Rename(string, string) error { return errors.New("injected rename failure") }

func replicaFileBytes(t *testing.T, id ReplicaID) []byte {
	t.Helper()
	fs := vfs.NewMem()
	if err := WriteReplicaFile(fs, "REPLICA", id); err != nil {
		t.Fatal(err)
	}
	f, err := fs.Open("REPLICA")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, replicaFileSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReplicaFileDamage(t *testing.T) {
	good := replicaFileBytes(t, NewReplicaID())
	for n := range len(good) {
		if _, err := DecodeReplicaFile("REPLICA", good[:n]); !errors.Is(err, errs.ErrCorruption) {
			t.Errorf("truncated to %d bytes: got %v, want ErrCorruption", n, err)
		}
	}
	if _, err := DecodeReplicaFile("REPLICA", append(good[:len(good):len(good)], 0)); !errors.Is(err, errs.ErrCorruption) {
		t.Errorf("trailing byte: got %v, want ErrCorruption", err)
	}
	for i := range len(good) {
		for _, bit := range []byte{0x01, 0x80} {
			b := append([]byte(nil), good...)
			b[i] ^= bit
			_, err := DecodeReplicaFile("REPLICA", b)
			if err == nil {
				t.Fatalf("flip of bit %#x at byte %d went unnoticed", bit, i)
			}
			// Only a larger version number may read as a newer format.
			if !errors.Is(err, errs.ErrCorruption) && !(i >= 8 && i < 12 && errors.Is(err, errs.ErrNewerFormat)) {
				t.Errorf("flip at byte %d: got %v", i, err)
			}
		}
	}
	newer := append([]byte(nil), good...)
	newer[8] = 2
	if _, err := DecodeReplicaFile("REPLICA", newer); !errors.Is(err, errs.ErrNewerFormat) {
		t.Errorf("version 2: got %v, want ErrNewerFormat", err)
	}
	var ce *errs.CorruptionError
	bad := append([]byte(nil), good...)
	bad[20] ^= 1
	if _, err := DecodeReplicaFile("db/REPLICA", bad); !errors.As(err, &ce) || ce.File != "db/REPLICA" || ce.Offset != replicaChecksumOff {
		t.Errorf("checksum error %v does not name the file and checksum offset", err)
	}
}

package pluresdb

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func TestOpenRejectsNonDatabases(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain.txt")
	if err := os.WriteFile(file, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file, nil); !errors.Is(err, ErrNotDatabase) {
		t.Fatalf("open a regular file: %v, want ErrNotDatabase", err)
	}
	if got, _ := os.ReadFile(file); string(got) != "hello" {
		t.Fatalf("the file was changed: %q", got)
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrNotDatabase) {
		t.Fatalf("open a directory of other files: %v, want ErrNotDatabase", err)
	}
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Put([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	// The first handle is unaffected.
	if v, err := db.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("get after failed second open: %q, %v", v, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir, nil)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	defer db.Close()
	if v, err := db.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("get after reopen: %q, %v", v, err)
	}
}

func TestOpenNewerFormat(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Put([]byte("k"), []byte("v"))
	db.Close()
	cur, err := os.ReadFile(filepath.Join(dir, "CURRENT"))
	if err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(dir, strings.TrimSpace(string(cur)))
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	orig := append([]byte(nil), b...)
	// Header: magic (8), version (4), checksum (4) of the first 12 bytes.
	binary.LittleEndian.PutUint32(b[8:12], 99)
	binary.LittleEndian.PutUint32(b[12:16], uint32(xxhash.Sum64(b[:12])))
	if err := os.WriteFile(manifest, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, nil); !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("open newer format: %v, want ErrNewerFormat", err)
	}
	// Nothing was lost: restoring the header opens the data again.
	if err := os.WriteFile(manifest, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := db.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("get: %q, %v", v, err)
	}
}

func TestLimitsAndClosed(t *testing.T) {
	db, err := Open(t.TempDir(), &Options{MemtableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, MaxKeySize+1)
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"empty key", db.Put(nil, []byte("v")), ErrInvalidKey},
		{"key too large", db.Put(big, []byte("v")), ErrKeyTooLarge},
		{"value too large", db.Put([]byte("k"), make([]byte, MaxValueSize+1)), ErrValueTooLarge},
		{"batch too large", func() error {
			b := db.NewBatch()
			for i := range 20 {
				b.Put([]byte{byte(i)}, make([]byte, 64<<10))
			}
			return b.Commit(nil)
		}(), ErrValueTooLarge},
		{"delete empty key", db.Delete(nil), ErrInvalidKey},
	}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
		}
	}
	if _, err := db.Get(big); !errors.Is(err, ErrKeyTooLarge) {
		t.Errorf("get huge key: %v", err)
	}
	if err := db.Put([]byte("ok"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Put([]byte("k"), []byte("v")); !errors.Is(err, ErrClosed) {
		t.Errorf("put after close: %v", err)
	}
	if _, err := db.Get([]byte("k")); !errors.Is(err, ErrClosed) {
		t.Errorf("get after close: %v", err)
	}
	if it := db.NewIter(nil, nil); it.First() || !errors.Is(it.Err(), ErrClosed) || it.Key() != nil || it.Value() != nil {
		t.Errorf("iter after close: %v", it.Err())
	}
	if err := db.Flush(); !errors.Is(err, ErrClosed) {
		t.Errorf("flush after close: %v", err)
	}
	if err := db.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second close: %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	bad := []Options{
		{MemtableSize: 10},
		{BlockSize: 1},
		{L0CompactionThreshold: 8, L0StopWritesThreshold: 4},
		{MaxOpenFiles: -1},
	}
	for _, o := range bad {
		if _, err := Open(t.TempDir(), &o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: %v, want ErrInvalidOptions", o, err)
		}
	}
	var zero Options
	if err := zero.Validate(); err != nil {
		t.Errorf("zero options: %v", err)
	}
}

// TestIteratorOutlivesClose: an iterator closed after its database keeps
// working until then and releases cleanly; nothing panics.
func TestIteratorOutlivesClose(t *testing.T) {
	db, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		db.Put([]byte{byte(i)}, []byte("v"))
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	it := db.NewIter(nil, nil)
	snap := db.NewSnapshot()
	if !it.First() {
		t.Fatal("empty iterator")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	n := 1
	for it.Next() {
		n++
	}
	if err := it.Close(); err != nil || n != 100 {
		t.Fatalf("iterator after Close: %d keys, %v", n, err)
	}
	if _, err := snap.Get([]byte{1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("snapshot read after Close: %v", err)
	}
	snap.Close()
}

package pluresdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyDir copies a database kept under testdata, so the test never
// changes it.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestUpgradeFormatV1 opens a database written by the first format (MANIFEST
// version 1, one table, writes still in the log) and checks every key, that
// the manifest is rewritten in the current version, and that the upgraded
// database reopens.
func TestUpgradeFormatV1(t *testing.T) {
	dir := copyDir(t, "testdata/format-v1")
	check := func(db *DB) {
		t.Helper()
		for i := range 2100 {
			k := fmt.Appendf(nil, "key%05d", i)
			v, err := db.Get(k)
			deleted := (i < 2000 && i%10 == 0) || i == 1
			switch {
			case deleted && !errors.Is(err, ErrNotFound):
				t.Fatalf("%s: deleted, got %q, %v", k, v, err)
			case !deleted && (err != nil || string(v) != fmt.Sprintf("value-%d", i)):
				t.Fatalf("%s: got %q, %v", k, v, err)
			}
		}
	}
	db, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("open v1 database: %v", err)
	}
	check(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	cur, err := os.ReadFile(filepath.Join(dir, "CURRENT"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := os.ReadFile(filepath.Join(dir, strings.TrimSpace(string(cur))))
	if err != nil {
		t.Fatal(err)
	}
	if v := binary.LittleEndian.Uint32(m[8:12]); v != 3 {
		t.Fatalf("manifest version after upgrade = %d, want 3 (the current one)", v)
	}
	db, err = Open(dir, nil)
	if err != nil {
		t.Fatalf("reopen upgraded database: %v", err)
	}
	check(db)
	db.Close()
}

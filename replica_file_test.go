package pluresdb

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/plures/pluresdb/internal/layout"
)

// listNames returns the sorted names in dir.
func listNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// A database whose REPLICA file is missing is refused, and nothing of its
// history is touched: no new ID, no log segment removed. Restoring the
// file opens it as it was.
func TestMissingReplicaFileRefused(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, &Options{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	id := db.ReplicaID()
	for i := range 100 {
		if err := db.Put([]byte{byte(i)}, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Put([]byte("last"), []byte("in the log")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	replica := layout.Path(dir, layout.TypeReplica, 0)
	saved, err := os.ReadFile(replica)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(replica); err != nil {
		t.Fatal(err)
	}
	before := listNames(t, dir)

	for range 2 {
		if _, err := Open(dir, &Options{Retention: -1}); !errors.Is(err, ErrCorruption) {
			t.Fatalf("open without REPLICA: %v, want ErrCorruption", err)
		}
	}
	if after := listNames(t, dir); !slices.Equal(before, after) {
		t.Fatalf("a refused open changed the directory:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := os.Stat(replica); !os.IsNotExist(err) {
		t.Fatalf("a refused open made a REPLICA file: %v", err)
	}

	if err := os.WriteFile(replica, saved, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir, &Options{Retention: -1})
	if err != nil {
		t.Fatalf("open with the file restored: %v", err)
	}
	defer db.Close()
	if db.ReplicaID() != id {
		t.Fatalf("replica ID changed: %s, was %s", db.ReplicaID(), id)
	}
	if v, err := db.Get([]byte("last")); err != nil || string(v) != "in the log" {
		t.Fatalf("last write: %q, %v", v, err)
	}
}

// A crash while a database is first created, after its REPLICA file and
// before CURRENT, leaves a directory that opens as a new database with
// that ID.
func TestCreateCrashAfterReplicaFile(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := db.ReplicaID()
	db.Close()
	for _, name := range listNames(t, dir) {
		if name != filepath.Base(layout.Path(dir, layout.TypeReplica, 0)) && name != "LOCK" {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	db, err = Open(dir, nil)
	if err != nil {
		t.Fatalf("open a directory holding only REPLICA: %v", err)
	}
	defer db.Close()
	if db.ReplicaID() != id {
		t.Fatalf("replica ID %s, want the file's %s", db.ReplicaID(), id)
	}
	if err := db.Put([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
}

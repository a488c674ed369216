package pluresdb

import (
	"errors"
	"testing"

	"github.com/plures/pluresdb/lsm"
)

// A document that does not decode stops a scan, and the scan says so: Err
// and Close return the error, and the iterator cannot be stepped past it.
func TestIterReportsUndecodableDocument(t *testing.T) {
	db, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, k := range []string{"a", "b", "d"} {
		if err := db.Put([]byte(k), []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	// A stored state that is not a document: what a damaged value that
	// still passed its block checksum would look like.
	b := db.NewBatch()
	b.add(lsm.KindSet, nsDocuments, []byte("c"), []byte{0xff, 0xfe, 0xfd})
	if err := b.Commit(nil); err != nil {
		t.Fatal(err)
	}

	it := db.NewIter(nil, nil)
	var seen []string
	for ok := it.First(); ok; ok = it.Next() {
		seen = append(seen, string(it.Key()))
	}
	if len(seen) != 2 || seen[0] != "a" || seen[1] != "b" {
		t.Fatalf("scan saw %q, want a, b and then the error", seen)
	}
	if it.Next() || it.First() || it.Valid() {
		t.Fatal("the iterator moved on after the error")
	}
	if err := it.Err(); !errors.Is(err, ErrCorruption) {
		t.Fatalf("Err = %v, want ErrCorruption", err)
	}
	if err := it.Close(); !errors.Is(err, ErrCorruption) {
		t.Fatalf("Close = %v, want ErrCorruption", err)
	}
	if err := it.Err(); !errors.Is(err, ErrCorruption) {
		t.Fatalf("Err after Close = %v, want ErrCorruption", err)
	}

	// A clean scan closes with nil.
	it = db.NewIter([]byte("d"), nil)
	if !it.First() || string(it.Value()) != "vd" {
		t.Fatal("scan from d")
	}
	if it.Next() {
		t.Fatal("more than d")
	}
	if err := it.Close(); err != nil {
		t.Fatalf("Close of a clean scan: %v", err)
	}
}

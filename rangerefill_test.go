package pluresdb

import (
	"bytes"
	"errors"
	"testing"

	"github.com/plures/pluresdb/internal/vfs"
)

// TestSnapshotRange: a range import joins the source's states of its
// keys only, tombstones included, and moves no version vector, history
// floor or snapshot clock when the importer holds every operation they
// hold; a snapshot with a key outside the range is refused before
// anything is applied.
func TestSnapshotRange(t *testing.T) {
	fs := vfs.NewMem()
	a := openReplica(t, fs, "/a")
	defer a.Close()
	b := openReplica(t, fs, "/b")
	defer b.Close()
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		must(t, a.Put([]byte(k), []byte("v"+k)))
	}
	must(t, a.Delete([]byte("c")))
	syncPair(t, a, b)
	// b writes e anew: a lacks that.
	must(t, b.Put([]byte("e"), []byte("new")))
	vv := b.VersionVector()

	var snap bytes.Buffer
	info, err := a.ExportSnapshotRange(&snap, []byte("\x01b"), []byte("\x01d"))
	must(t, err)
	if info.Documents != 3 { // b, c (a tombstone), d
		t.Fatalf("%d documents in the range", info.Documents)
	}
	// Outside the range imported: refused whole.
	if _, err := b.ImportSnapshotRange(bytes.NewReader(snap.Bytes()), []byte("\x01c"), []byte("\x01d")); !errors.Is(err, ErrCorruption) {
		t.Fatalf("a snapshot wider than the range: %v", err)
	}
	imp, err := b.ImportSnapshotRange(bytes.NewReader(snap.Bytes()), []byte("\x01b"), []byte("\x01d"))
	must(t, err)
	if imp.Changed != 0 || len(imp.Lacking) != 1 { // b holds them all; a lacks b's write
		t.Fatalf("import %+v", imp)
	}
	if !b.VersionVector().Equal(vv) || b.ol.snapClock != 0 || len(b.ol.floor) != 0 {
		t.Fatalf("metadata moved: vv %v (was %v), snapshot clock %d, floor %v", b.VersionVector(), vv, b.ol.snapClock, b.ol.floor)
	}
	if v, err := b.Get([]byte("e")); err != nil || string(v) != "new" {
		t.Fatalf("e outside the range: %q %v", v, err)
	}

	// A replica lacking a's operations gets the states of the range, not
	// a's version vector; its snapshot clock rises, since its log lacks
	// the states' operations (as-of reads must not fold without them).
	fresh := openReplica(t, fs, "/fresh")
	defer fresh.Close()
	imp, err = fresh.ImportSnapshotRange(bytes.NewReader(snap.Bytes()), []byte("\x01b"), []byte("\x01d"))
	must(t, err)
	if imp.Changed != 3 || len(fresh.VersionVector()) != 0 || fresh.ol.snapClock == 0 {
		t.Fatalf("import %+v, vv %v, snapshot clock %d", imp, fresh.VersionVector(), fresh.ol.snapClock)
	}
	if v, err := fresh.Get([]byte("d")); err != nil || string(v) != "vd" {
		t.Fatalf("d: %q %v", v, err)
	}
	if _, err := fresh.Get([]byte("c")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted c: %v", err)
	}
	if _, err := fresh.Get([]byte("e")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("e, outside the range: %v", err)
	}

	// The history rebuilds the same states: imported into a fresh
	// replica that lacks them, c stays deleted.
	var hist bytes.Buffer
	h, err := a.ExportHistoryRange(&hist, []byte("\x01b"), []byte("\x01d"))
	must(t, err)
	if h.Documents != 3 || !h.Complete || len(h.Unavailable) != 0 {
		t.Fatalf("history %+v", h)
	}
	c := openReplica(t, fs, "/c")
	defer c.Close()
	syncPair(t, a, c) // c claims a's operations, and holds its states
	must(t, c.Put([]byte("b"), []byte("later")))
	imp, err = c.ImportSnapshotRange(&hist, []byte("\x01b"), []byte("\x01d"))
	must(t, err)
	if imp.Changed != 0 {
		t.Fatalf("the history's states changed %d keys that hold them already", imp.Changed)
	}
	if v, _ := c.Get([]byte("b")); string(v) != "later" {
		t.Fatalf("b: %q, the later write lost to an older state", v)
	}
	if _, err := c.Get([]byte("c")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted c: %v", err)
	}
}

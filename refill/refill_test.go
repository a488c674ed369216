package refill

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/backup"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/repair"
)

const nKeys = 6000

func key(i int) []byte { return fmt.Appendf(nil, "key%06d", i) }

var value = bytes.Repeat([]byte{'v'}, 100)

// The keys of the database fixture builds, by what happened to them:
//   - even i: written before the history was dropped; i%20 == 0 deleted
//     then too;
//   - odd i: written after, their history retained;
//   - i%10 == 2: deleted after (a Delete in the retained history);
//   - i%10 == 4: a field set after (the history names the key, but
//     holds no whole write of it).
func historyWhole(i int) bool { return i%2 == 1 || i%10 == 2 }
func fieldOnly(i int) bool    { return i%10 == 4 }

type built struct {
	db, peer, backup string
}

var (
	fixtureOnce sync.Once
	fixtureVal  built
	fixtureErr  error
	fixtureDir  string
)

// fixture builds, once: a closed database whose bottom level holds many
// tables, each holding keys whose history was dropped and keys whose
// history is retained; a peer that imported every operation of it; a
// backup of it taken before any damage.
func fixture(t *testing.T) built {
	t.Helper()
	fixtureOnce.Do(func() {
		fixtureDir, fixtureErr = os.MkdirTemp("", "refill-test-")
		if fixtureErr == nil {
			fixtureVal, fixtureErr = build(fixtureDir)
		}
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return fixtureVal
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

func build(root string) (b built, err error) {
	b = built{db: filepath.Join(root, "db"), peer: filepath.Join(root, "peer"), backup: filepath.Join(root, "backup")}
	must := func(e error) {
		if e != nil && err == nil {
			err = e
		}
	}
	peer, err := pluresdb.Open(b.peer, &pluresdb.Options{NoSync: true})
	if err != nil {
		return b, err
	}
	defer func() { must(peer.Close()) }()
	sync := func(db *pluresdb.DB) error {
		var buf bytes.Buffer
		if _, err := db.ExportChanges(&buf, peer.VersionVector()); err != nil {
			return err
		}
		_, err := peer.ImportChanges(&buf)
		return err
	}

	// Before: no history kept.
	opts := &pluresdb.Options{MemtableSize: 1 << 20, NoSync: true, TargetFileSize: 16 << 10, Retention: -1}
	db, err := pluresdb.Open(b.db, opts)
	if err != nil {
		return b, err
	}
	for i := 0; i < nKeys; i += 2 {
		must(db.Put(key(i), value))
	}
	for i := 0; i < nKeys; i += 20 {
		must(db.Delete(key(i)))
	}
	must(sync(db))
	must(db.Flush())
	for deadline := time.Now().Add(10 * time.Second); db.Metrics().OpLog.SegmentsDropped == 0; {
		if time.Now().After(deadline) {
			must(errors.New("retention dropped no history"))
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	must(db.Close())
	if err != nil {
		return b, err
	}

	// After: history kept.
	opts.Retention = 0
	db, err = pluresdb.Open(b.db, opts)
	if err != nil {
		return b, err
	}
	for i := 1; i < nKeys; i += 2 {
		must(db.Put(key(i), value))
	}
	for i := 2; i < nKeys; i += 10 {
		must(db.Delete(key(i)))
	}
	for i := 4; i < nKeys; i += 10 {
		must(db.SetField(key(i), []byte("f"), []byte("x")))
	}
	must(sync(db))
	must(db.Compact(nil, nil))
	if err == nil {
		_, err = backup.Create(db, b.backup, nil)
	}
	must(db.Close())
	return b, err
}

// copyDir copies a database into a new directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "db")
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// damage flips a bit in the middle of a bottom-level table holding
// documents only, in the middle of the key space, and returns its path.
func damage(t *testing.T, dir string) string {
	t.Helper()
	ms, err := lsm.ReadManifestState(vfs.Default, dir)
	if err != nil {
		t.Fatal(err)
	}
	var tables []*lsm.FileMeta
	for _, files := range ms.Version.Levels {
		for _, m := range files {
			if lsm.UserKey(m.Smallest)[0] == 0x01 && lsm.UserKey(m.Largest)[0] == 0x01 {
				tables = append(tables, m)
			}
		}
	}
	if len(tables) < 3 {
		t.Fatalf("%d tables of documents", len(tables))
	}
	p := layout.Path(dir, layout.TypeTable, tables[len(tables)/2].Num)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x04
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// repaired damages a copy of the fixture's database and repairs it; it
// returns the directory and the one lost range.
func repaired(t *testing.T) (string, repair.Loss) {
	t.Helper()
	dir := copyDir(t, fixture(t).db)
	p := damage(t, dir)
	res, err := repair.Dir(t.Context(), nil, dir, repair.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ranges := Ranges(res.Lost)
	if len(ranges) != 1 || ranges[0].File != p {
		t.Fatalf("lost %+v, recovered %+v", res.Lost, res.Recovered)
	}
	return dir, ranges[0]
}

// inRange says whether document key i lies in the lost range.
func inRange(l repair.Loss, i int) bool {
	sk := append([]byte{0x01}, key(i)...)
	return bytes.Compare(l.Keys.Smallest, sk) <= 0 && bytes.Compare(sk, l.Keys.Largest) <= 0
}

// scan reads every document of a closed database: key to its document.
func scan(t *testing.T, dir string) map[string]string {
	t.Helper()
	db, err := pluresdb.Open(dir, &pluresdb.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := map[string]string{}
	it := db.NewIter(nil, nil)
	for ok := it.First(); ok; ok = it.Next() {
		d, err := db.GetFields(it.Key())
		if err != nil {
			t.Fatalf("%q: %v", it.Key(), err)
		}
		out[string(it.Key())] = fmt.Sprintf("%q %q %v", d.Value, d.Fields, d.Counters)
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// expect counts the keys of the lost range by what the history can do.
func expect(l repair.Loss) (fromHistory, unrebuilt, inside int) {
	for i := range nKeys {
		if !inRange(l, i) {
			continue
		}
		inside++
		switch {
		case historyWhole(i):
			fromHistory++
		case fieldOnly(i):
			unrebuilt++
		}
	}
	return
}

// TestFromHistory: without a source, the keys of the lost range whose
// last whole write the history retains come back, the deleted ones
// deleted; a key with only a field write retained is reported lost by
// name, and the keys with no history at all as an unknown remainder.
func TestFromHistory(t *testing.T) {
	dir, l := repaired(t)
	wantHist, wantUnrebuilt, inside := expect(l)
	if wantHist == 0 || wantUnrebuilt == 0 || inside == wantHist+wantUnrebuilt {
		t.Fatalf("the damaged table does not mix keys: %d inside, %d with history, %d field only", inside, wantHist, wantUnrebuilt)
	}
	res, err := Dir(t.Context(), dir, []repair.Loss{l}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d keys in the lost range: %d rebuilt from history, %d named but not rebuilt", inside, wantHist, wantUnrebuilt)
	if len(res.Ranges) != 1 || res.Complete {
		t.Fatalf("result %+v", res)
	}
	rg := res.Ranges[0]
	if rg.FromHistory != wantHist || len(rg.Unrebuilt) != wantUnrebuilt || rg.FromSource != 0 || rg.Complete {
		t.Fatalf("from history %d (want %d), unrebuilt %d (want %d), complete %v", rg.FromHistory, wantHist,
			len(rg.Unrebuilt), wantUnrebuilt, rg.Complete)
	}
	if !strings.Contains(strings.Join(rg.Remaining, "\n"), "not known") {
		t.Fatalf("remaining: %q", rg.Remaining)
	}
	for _, k := range rg.Unrebuilt {
		var i int
		if _, err := fmt.Sscanf(string(k[1:]), "key%06d", &i); err != nil || k[0] != 0x01 || !fieldOnly(i) {
			t.Fatalf("unrebuilt key %q", k)
		}
	}

	db, err := pluresdb.Open(dir, &pluresdb.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range nKeys {
		v, err := db.Get(key(i))
		deleted := i%20 == 0 || i%10 == 2
		switch {
		case deleted && !errors.Is(err, pluresdb.ErrNotFound):
			t.Fatalf("deleted key %d reads %q, %v", i, v, err)
		case deleted:
		case !inRange(l, i) || i%2 == 1:
			if err != nil || !bytes.Equal(v, value) {
				t.Fatalf("key %d: %v (in range %v)", i, err, inRange(l, i))
			}
		case fieldOnly(i):
			// Lost, but for the field the history holds.
		case !errors.Is(err, pluresdb.ErrNotFound):
			t.Fatalf("key %d, whose history was dropped, reads %q, %v", i, v, err)
		}
	}
}

// TestFromPeer: with a peer holding every operation, the repaired
// database scans equal to the peer.
func TestFromPeer(t *testing.T) {
	f := fixture(t)
	dir, l := repaired(t)
	wantHist, _, _ := expect(l)
	peer := copyDir(t, f.peer)
	res, err := Dir(t.Context(), dir, []repair.Loss{l}, Options{Sources: []SourceSpec{{Kind: Peer, Path: peer}}})
	if err != nil {
		t.Fatal(err)
	}
	rg := res.Ranges[0]
	if !res.Complete || !rg.Complete || len(rg.Unrebuilt) != 0 || rg.FromHistory != wantHist || rg.FromSource == 0 || len(rg.Remaining) != 0 {
		t.Fatalf("result %+v", res)
	}
	if s := res.Sources[0]; s.Error != "" || s.Sync != "" || s.Imported != 0 {
		t.Fatalf("source %+v", s)
	}
	got, want := scan(t, dir), scan(t, peer)
	t.Logf("%d documents, %d changed by the peer", len(want), rg.FromSource)
	if !maps.Equal(got, want) {
		t.Fatalf("scan differs from the peer's: %d keys, %d at the peer", len(got), len(want))
	}
}

// TestFromBackup: the same from a backup taken before the damage; the
// temporary restore is removed.
func TestFromBackup(t *testing.T) {
	f := fixture(t)
	dir, l := repaired(t)
	res, err := Dir(t.Context(), dir, []repair.Loss{l}, Options{Sources: []SourceSpec{{Kind: Backup, Path: f.backup}}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || res.Sources[0].Error != "" {
		t.Fatalf("result %+v", res)
	}
	if got, want := scan(t, dir), scan(t, f.peer); !maps.Equal(got, want) {
		t.Fatalf("scan differs from before the damage: %d keys, %d before", len(got), len(want))
	}
	left, err := filepath.Glob(filepath.Join(filepath.Dir(dir), ".db.refill*"))
	if err != nil || len(left) != 0 {
		t.Fatalf("temporary files left: %q %v", left, err)
	}
}

// TestSourceLacksRange: a source that never held the range gives
// nothing of it: the loss is reported as without a source, with what the
// source lacked; its own operations are synced in.
func TestSourceLacksRange(t *testing.T) {
	dir, l := repaired(t)
	wantHist, wantUnrebuilt, _ := expect(l)
	other := filepath.Join(t.TempDir(), "other")
	o, err := pluresdb.Open(other, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := o.Put(fmt.Appendf(nil, "other%d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := Dir(t.Context(), dir, []repair.Loss{l}, Options{Sources: []SourceSpec{{Kind: Peer, Path: other}}})
	if err != nil {
		t.Fatal(err)
	}
	rg := res.Ranges[0]
	if res.Complete || rg.Complete || rg.SourceKeys != 0 || rg.FromSource != 0 || rg.FromHistory != wantHist || len(rg.Unrebuilt) != wantUnrebuilt {
		t.Fatalf("result %+v", res)
	}
	if !strings.Contains(strings.Join(rg.Remaining, "\n"), "lacks replica") {
		t.Fatalf("remaining: %q", rg.Remaining)
	}
	if s := res.Sources[0]; s.Imported != 10 || s.Sync != "" {
		t.Fatalf("source %+v", s)
	}
	if _, ok := scan(t, dir)["other3"]; !ok {
		t.Fatal("the source's own keys were not synced")
	}
}

// TestRefillTwice: a second refill from the same source changes nothing.
func TestRefillTwice(t *testing.T) {
	f := fixture(t)
	dir, l := repaired(t)
	src := []SourceSpec{{Kind: Peer, Path: f.peer}}
	if _, err := Dir(t.Context(), dir, []repair.Loss{l}, Options{Sources: src}); err != nil {
		t.Fatal(err)
	}
	res, err := Dir(t.Context(), dir, []repair.Loss{l}, Options{Sources: src})
	if err != nil {
		t.Fatal(err)
	}
	if rg := res.Ranges[0]; rg.FromHistory != 0 || rg.FromSource != 0 || !rg.Complete {
		t.Fatalf("second refill: %+v", rg)
	}
}

// TestNotRun: a database that does not open (here: open elsewhere) is
// reported, not refilled.
func TestNotRun(t *testing.T) {
	dir, l := repaired(t)
	db, err := pluresdb.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := Dir(t.Context(), dir, []repair.Loss{l}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.NotRun == "" || res.Complete || res.Ranges[0].Complete || len(res.Ranges[0].Remaining) == 0 {
		t.Fatalf("result %+v", res)
	}
}

package pluresdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/layout"
)

// writeTables opens a database in dir and writes n keys in tables of
// per keys each (one flush per table), then closes it.
func writeTables(t *testing.T, dir string, opts *Options, n, per int) {
	t.Helper()
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := db.Put(fmt.Appendf(nil, "k%05d", i), fmt.Appendf(nil, "value-%05d-%s", i, strings.Repeat("x", 200))); err != nil {
			t.Fatal(err)
		}
		if (i+1)%per == 0 {
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func tableFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range names {
		if ty, _, ok := layout.Parse(e.Name()); ok && ty == layout.TypeTable {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// TestOpenQuarantinesUnreferencedTable checks that a table no version lists
// and the manifest never deleted (here: a copy under a fresh number, as a
// forgotten table would be) is moved to quarantine/, not deleted, and is
// reported by Health.
func TestOpenQuarantinesUnreferencedTable(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{NoSync: true, DisableAutoCompaction: true}
	writeTables(t, dir, opts, 100, 50)
	tables := tableFiles(t, dir)
	if len(tables) == 0 {
		t.Fatal("no tables written")
	}
	data, err := os.ReadFile(tables[0])
	if err != nil {
		t.Fatal(err)
	}
	stray := layout.Path(dir, layout.TypeTable, 999999)
	if err := os.WriteFile(stray, data, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stray table still in place: %v", err)
	}
	moved := filepath.Join(dir, quarantineDir, filepath.Base(stray))
	got, err := os.ReadFile(moved)
	if err != nil {
		t.Fatalf("stray table not quarantined: %v", err)
	}
	if string(got) != string(data) {
		t.Fatal("quarantined table differs from the original")
	}
	if h := db.Health(); len(h.Quarantined) != 1 || h.Quarantined[0] != moved {
		t.Fatalf("Health().Quarantined = %v, want [%s]", h.Quarantined, moved)
	}
}

// TestOpenRemovesTableTheManifestDeleted checks that a table the manifest
// recorded as deleted (compacted away, its removal lost in a crash) is
// still deleted at open: it is provably obsolete.
func TestOpenRemovesTableTheManifestDeleted(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{NoSync: true, DisableAutoCompaction: true}
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // two overlapping tables: compaction rewrites both
		for i := range 50 {
			if err := db.Put(fmt.Appendf(nil, "k%05d", i), []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	old := tableFiles(t, dir)
	saved := map[string][]byte{}
	for _, p := range old {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		saved[p] = b
	}
	if err := db.Compact(nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	var restored []string
	for p, b := range saved {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			restored = append(restored, p)
		}
	}
	if len(restored) == 0 {
		t.Fatal("compaction removed no table")
	}
	db, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, p := range restored {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s, deleted by a manifest edit, still there: %v", p, err)
		}
	}
	if h := db.Health(); len(h.Quarantined) != 0 {
		t.Errorf("quarantined %v, want nothing", h.Quarantined)
	}
}

// TestOpenRefusesMissingOrShortTable checks that a table the version lists
// that is gone or of another size refuses the open with ErrCorruption
// naming the file, and that the manifest is left as it was.
func TestOpenRefusesMissingOrShortTable(t *testing.T) {
	for _, damage := range []string{"missing", "truncated"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			opts := &Options{NoSync: true, DisableAutoCompaction: true}
			writeTables(t, dir, opts, 100, 50)
			victim := tableFiles(t, dir)[0]
			if damage == "missing" {
				os.Remove(victim)
			} else if err := os.Truncate(victim, 100); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(filepath.Join(dir, "CURRENT"))
			db, err := Open(dir, opts)
			if err == nil {
				db.Close()
				t.Fatal("open succeeded")
			}
			if !errors.Is(err, ErrCorruption) || !strings.Contains(err.Error(), filepath.Base(victim)) {
				t.Fatalf("err = %v, want ErrCorruption naming %s", err, victim)
			}
			after, _ := os.ReadFile(filepath.Join(dir, "CURRENT"))
			if string(before) != string(after) {
				t.Fatalf("CURRENT changed from %q to %q", before, after)
			}
		})
	}
}

// TestCompactionLeavesDamagedTableAlone checks that a compaction that hits
// a damaged block marks the table, is not retried in a loop, keeps the
// database writable, and that Health and Metrics report it.
func TestCompactionLeavesDamagedTableAlone(t *testing.T) {
	dir := t.TempDir()
	writeTables(t, dir, &Options{NoSync: true, DisableAutoCompaction: true}, 400, 100)
	tables := tableFiles(t, dir)
	victim := tables[len(tables)/2]
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/4] ^= 0x10 // inside a data block of documents
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := Open(dir, &Options{NoSync: true, L0CompactionThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(10 * time.Second)
	for db.Metrics().CompactionsDamaged == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(2500 * time.Millisecond) // the old code retried every second
	m := db.Metrics()
	if m.CompactionsDamaged != 1 {
		t.Fatalf("CompactionsDamaged = %d, want 1", m.CompactionsDamaged)
	}
	h := db.Health()
	if !h.Writable || len(h.Damaged) != 1 || h.Damaged[0].Path != victim || !errors.Is(h.Damaged[0].Err, ErrCorruption) {
		t.Fatalf("Health = %+v, want writable naming %s", h, victim)
	}
	if m.DamagedTables != 1 {
		t.Fatalf("DamagedTables = %d", m.DamagedTables)
	}
	if err := db.Put([]byte("after"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenSurvivesBitFlipInTable flips one random bit in one random table
// of a closed database, for several seeds: Open must succeed, every Get
// returns the right value or ErrCorruption, and when a read hit the
// damage Health names the file.
func TestOpenSurvivesBitFlipInTable(t *testing.T) {
	const n, per = 400, 100
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			dir := t.TempDir()
			opts := &Options{NoSync: true, DisableAutoCompaction: true}
			writeTables(t, dir, opts, n, per)
			tables := tableFiles(t, dir)
			victim := tables[rng.IntN(len(tables))]
			b, err := os.ReadFile(victim)
			if err != nil {
				t.Fatal(err)
			}
			off := rng.IntN(len(b))
			b[off] ^= 1 << rng.IntN(8)
			if err := os.WriteFile(victim, b, 0o644); err != nil {
				t.Fatal(err)
			}
			db, err := Open(dir, opts)
			if err != nil {
				t.Fatalf("seed %d: flip at %d of %s: Open: %v", seed, off, victim, err)
			}
			defer db.Close()
			hit := false
			for i := range n {
				got, err := db.Get(fmt.Appendf(nil, "k%05d", i))
				if errors.Is(err, ErrCorruption) {
					hit = true
					continue
				}
				want := fmt.Sprintf("value-%05d-%s", i, strings.Repeat("x", 200))
				if err != nil || string(got) != want {
					t.Fatalf("seed %d: flip at %d of %s: Get k%05d = %q, %v", seed, off, victim, i, got, err)
				}
			}
			h := db.Health()
			if hit && (len(h.Damaged) == 0 || h.Damaged[0].Path != victim) {
				t.Fatalf("seed %d: a read hit damage, Health = %+v", seed, h)
			}
			if err := db.Put([]byte("after"), []byte("v")); err != nil {
				t.Fatalf("seed %d: Put: %v", seed, err)
			}
		})
	}
}

// TestOpLogMetadataDamage damages the block of a table that holds the op
// log's metadata: Open succeeds, documents read and write, and sync
// refuses with ErrCorruption naming the table.
func TestOpLogMetadataDamage(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{NoSync: true, DisableAutoCompaction: true}
	writeTables(t, dir, opts, 400, 100)
	// Metadata sorts first: the first data block of the newest table
	// (flushed at close, or the last flush) holds the segment indexes.
	var damaged []string
	for _, p := range tableFiles(t, dir) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[20] ^= 0x04
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		damaged = append(damaged, filepath.Base(p))
	}
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer db.Close()
	h := db.Health()
	if h.OpLog == "" {
		t.Fatalf("Health = %+v, want the op log reported", h)
	}
	var buf bytes.Buffer
	_, err = db.ExportChanges(&buf, nil)
	if !errors.Is(err, ErrCorruption) || !slices.ContainsFunc(damaged, func(n string) bool { return strings.Contains(err.Error(), n) }) {
		t.Fatalf("ExportChanges: %v, want ErrCorruption naming one of the damaged tables %v", err, damaged)
	}
	if err := db.AcknowledgePeer(db.ReplicaID(), nil); !errors.Is(err, ErrCorruption) {
		t.Fatalf("AcknowledgePeer: %v", err)
	}
	// History readers too: without the floor they could not tell a gap.
	if _, err := db.GetAsOf([]byte("k0001"), db.Now()); !errors.Is(err, ErrCorruption) {
		t.Fatalf("GetAsOf: %v, want ErrCorruption", err)
	}
	if _, err := db.Subscribe(context.Background(), Position{}); !errors.Is(err, ErrCorruption) {
		t.Fatalf("Subscribe: %v, want ErrCorruption", err)
	}
	if err := db.Put([]byte("new"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Get([]byte("new")); err != nil || string(got) != "v" {
		t.Fatalf("Get = %q, %v", got, err)
	}
}

package repair_test

import (
	"context"
	"crypto/sha256"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/repair"
	"github.com/plures/pluresdb/verify"
)

// contents returns the hashes of every file under dir.
func contents(t *testing.T, dir string) map[[32]byte]string {
	t.Helper()
	out := map[[32]byte]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "LOCK" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out[sha256.Sum256(data)] = path
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRepairRandomDamage damages random files of a database in random
// ways and repairs it: repair never panics and never deletes (every file
// as it was before the repair is still somewhere under the directory),
// and when it reports nothing refused and nothing left, the database
// checks clean and opens.
func TestRepairRandomDamage(t *testing.T) {
	src := filepath.Join(t.TempDir(), "db")
	buildDB(t, src, options(), 21)
	seeds := 24
	if testing.Short() {
		seeds = 8
	}
	for seed := range seeds {
		dir := filepath.Join(t.TempDir(), "db")
		if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(seed), 99))
		names, _ := os.ReadDir(dir)
		var damaged []string
		for range 1 + rng.IntN(3) {
			e := names[rng.IntN(len(names))]
			if e.IsDir() || e.Name() == "LOCK" {
				continue
			}
			p := filepath.Join(dir, e.Name())
			data, err := os.ReadFile(p)
			if err != nil {
				continue // removed already
			}
			switch rng.IntN(3) {
			case 0:
				os.Remove(p)
			case 1:
				if len(data) > 0 {
					data[rng.IntN(len(data))] ^= byte(1 << rng.IntN(8))
				}
				os.WriteFile(p, data, 0o644)
			case 2:
				os.WriteFile(p, data[:rng.IntN(len(data)+1)], 0o644)
			}
			damaged = append(damaged, e.Name())
		}
		before := contents(t, dir)
		res, err := repair.Dir(context.Background(), nil, dir, repair.Options{})
		after := contents(t, dir)
		for h, path := range before {
			if _, ok := after[h]; !ok {
				t.Fatalf("seed %d (damaged %v): %s is gone after the repair", seed, damaged, path)
			}
		}
		if err != nil {
			t.Logf("seed %d (damaged %v): repair: %v", seed, damaged, err)
			continue
		}
		if len(res.Refused) > 0 || len(res.Unrepaired) > 0 {
			t.Logf("seed %d (damaged %v): refused %d, left %d", seed, damaged, len(res.Refused), len(res.Unrepaired))
			continue
		}
		rep, err := verify.Dir(context.Background(), nil, dir, verify.Options{})
		if err != nil || !rep.Clean {
			t.Fatalf("seed %d (damaged %v): repaired with nothing refused or left, the check says %v %+v", seed, damaged, err, rep.Findings)
		}
		db, err := pluresdb.Open(dir, options())
		if err != nil {
			t.Fatalf("seed %d (damaged %v): open after the repair: %v", seed, damaged, err)
		}
		db.Close()
		t.Logf("seed %d (damaged %v): repaired, %d actions, lost %d", seed, damaged, len(res.Actions), len(res.Lost))
	}
}

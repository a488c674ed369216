package pluresdb

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/plures/pluresdb/internal/vfs"
)

func dirSize(t *testing.T, dirs ...string) int64 {
	t.Helper()
	var n int64
	for _, dir := range dirs {
		err := filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				n += info.Size()
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// benchValue is 50 random bytes followed by the same 50 again: it
// compresses to about half, like the benchmark's values.
func benchValue(rng *rand.Rand) []byte {
	v := make([]byte, 100)
	for i := range 50 {
		v[i] = byte(rng.Uint32())
	}
	copy(v[50:], v[:50])
	return v
}

// TestSpaceComesBack checks that deleted and overwritten data stops taking
// space once compacted: after deleting half of 400k keys the directory is
// at most 55% of its full size, and after overwriting the rest three
// times, at most 60%.
func TestSpaceComesBack(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 400k keys")
	}
	dir, cold := t.TempDir(), t.TempDir()
	db, err := Open(dir, &Options{NoSync: true, Retention: -1, ColdDir: cold})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 400_000
	key := func(i int) []byte { return fmt.Appendf(nil, "%016d", i) }
	b := db.NewBatch()
	write := func(i int, del bool) {
		if del {
			b.Delete(key(i))
		} else {
			b.Put(key(i), benchValue(rng))
		}
		if b.Len() == 1000 {
			if err := b.Commit(nil); err != nil {
				t.Fatal(err)
			}
			b.Reset()
		}
	}
	commit := func() {
		if err := b.Commit(nil); err != nil {
			t.Fatal(err)
		}
		b.Reset()
		if err := db.Compact(nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range rng.Perm(n) {
		write(i, false)
	}
	commit()
	full := dirSize(t, dir, cold)
	for i := 0; i < n; i += 2 {
		write(i, true)
	}
	commit()
	half := dirSize(t, dir, cold)
	t.Logf("full %d bytes, after deleting half %d (%.1f%%)", full, half, 100*float64(half)/float64(full))
	if float64(half) > 0.55*float64(full) {
		t.Errorf("after deleting half: %d bytes, more than 55%% of %d", half, full)
	}
	for range 3 {
		for i := 1; i < n; i += 2 {
			write(i, false)
		}
	}
	commit()
	over := dirSize(t, dir, cold)
	t.Logf("after overwriting the rest three times: %d (%.1f%%)", over, 100*float64(over)/float64(full))
	if float64(over) > 0.60*float64(full) {
		t.Errorf("after overwrites: %d bytes, more than 60%% of %d", over, full)
	}
	if v, err := db.Get(key(0)); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted key 0: %q, %v", v, err)
	}
	if _, err := db.Get(key(1)); err != nil {
		t.Errorf("key 1: %v", err)
	}
	// 30 MB of data: its base level is the bottom one, which stays hot.
	m := db.Metrics()
	if m.Levels[6].Files == 0 || m.Levels[6].Cold {
		t.Errorf("after Compact the data should sit in the bottom level, the base, hot: %+v", m.Levels)
	}
}

// TestIteratorDuringCompactions reads a consistent view while writers and
// background compactions rewrite everything under it.
func TestIteratorDuringCompactions(t *testing.T) {
	seed := testSeed(t)
	opts := &Options{
		FS: vfs.NewMem(), NoSync: true, MemtableSize: 1 << 20, LBaseMaxBytes: 256 << 10,
		TargetFileSize: 32 << 10, L0CompactionThreshold: 2,
	}
	db, err := Open("/db", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const n = 20_000
	key := func(i int) []byte { return fmt.Appendf(nil, "k%06d", i) }
	for i := range n {
		db.Put(key(i), fmt.Appendf(nil, "v1-%d", i))
	}
	snap := db.NewSnapshot()
	defer snap.Close()
	it := db.NewIter(nil, nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 3))
		for round := range 3 {
			for _, i := range rng.Perm(n) {
				if i%7 == 0 {
					db.Delete(key(i))
				} else {
					db.Put(key(i), fmt.Appendf(nil, "v%d-%d", round+2, i))
				}
			}
		}
	}()
	count := 0
	for ok := it.First(); ok; ok = it.Next() {
		if want := fmt.Sprintf("k%06d", count); string(it.Key()) != want {
			t.Fatalf("iterator at %d: key %q, want %q", count, it.Key(), want)
		}
		if want := fmt.Sprintf("v1-%d", count); string(it.Value()) != want {
			t.Fatalf("iterator at %d: value %q, want %q", count, it.Value(), want)
		}
		count++
	}
	if err := it.Close(); err != nil || count != n {
		t.Fatalf("iterator saw %d of %d keys, %v", count, n, err)
	}
	wg.Wait()
	if err := db.WaitForCompactions(); err != nil {
		t.Fatal(err)
	}
	if db.Metrics().Compactions == 0 {
		t.Fatal("no compaction ran during the test")
	}
	for _, i := range []int{0, 1, 7, n - 1} {
		v, err := snap.Get(key(i))
		if err != nil || string(v) != fmt.Sprintf("v1-%d", i) {
			t.Fatalf("snapshot read of %d after compactions: %q, %v", i, v, err)
		}
	}
}

// Tables move to the cold tier, in its own directory, once the tree has
// levels below its base (the crash test's tiered options: tiny targets),
// and the base level itself stays hot.
func TestColdTierBelowBase(t *testing.T) {
	fs := vfs.NewMem()
	db, err := Open("/db", crashOptions(fs, true))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 30000 {
		must(t, db.Put(fmt.Appendf(nil, "key%05d", rng.IntN(20000)), fmt.Appendf(nil, "%0100d", i)))
	}
	must(t, db.Flush())
	must(t, db.WaitForCompactions())
	m := db.Metrics()
	base := -1
	for l := 1; l < len(m.Levels); l++ {
		if m.Levels[l].Files > 0 {
			base = l
			break
		}
	}
	cold := 0
	for _, ti := range db.Tables() {
		if ti.Cold {
			cold++
			if ti.Level <= base {
				t.Errorf("table %d at L%d is cold, the base is L%d", ti.Num, ti.Level, base)
			}
		}
	}
	if cold == 0 {
		t.Fatalf("no cold table: %+v", m.Levels)
	}
	names, err := fs.List("/cold")
	if err != nil || len(names) == 0 {
		t.Fatalf("cold directory: %v, %v", names, err)
	}
}

// An iterator open on a memtable keeps it whole through its flush: the
// arena goes to a new memtable only after the iterator is closed, however
// many memtables are written and flushed meanwhile.
func TestIteratorKeepsFlushedMemtable(t *testing.T) {
	db, err := Open("/db", &Options{FS: vfs.NewMem(), NoSync: true, MemtableSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key := func(i int) []byte { return fmt.Appendf(nil, "k%05d", i) }
	const n = 1000
	for i := range n {
		must(t, db.Put(key(i), fmt.Appendf(nil, "first-%d", i)))
	}
	it := db.NewIter(nil, nil)
	if !it.First() {
		t.Fatal("empty")
	}
	for round := range 8 {
		for i := range 12000 {
			must(t, db.Put(key(i), fmt.Appendf(nil, "round%d-%d-%s", round, i, bytes.Repeat([]byte{'x'}, 40))))
		}
		must(t, db.Flush())
	}
	count := 0
	for ok := true; ok; ok = it.Next() {
		if want := fmt.Sprintf("first-%d", count); string(it.Key()) != string(key(count)) || string(it.Value()) != want {
			t.Fatalf("iterator at %d: %q = %q, want %q", count, it.Key(), it.Value(), want)
		}
		count++
	}
	must(t, it.Close())
	if count != n {
		t.Fatalf("iterator saw %d of %d keys", count, n)
	}
	// The flushed memtables' arenas serve new ones.
	for i := range 12000 {
		must(t, db.Put(key(i), []byte("last")))
	}
	must(t, db.Flush())
	if v, err := db.Get(key(5)); err != nil || string(v) != "last" {
		t.Fatalf("after the arenas went round: %q, %v", v, err)
	}
}

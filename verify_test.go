package pluresdb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/verify"
)

// TestVerifyWhileWriting checks a database again and again while writers,
// flushes, compactions and archiving go on: no finding is damage.
func TestVerifyWhileWriting(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, &Options{MemtableSize: 1 << 20, NoSync: true, HotHistory: -1})
	must(t, err)
	defer db.Close()
	val := make([]byte, 200)
	var stop atomic.Bool
	var puts atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				if err := db.Put(fmt.Appendf(nil, "w%d/%07d", w, i%20000), val); err != nil {
					t.Error(err)
					return
				}
				puts.Add(1)
				if i%5000 == 4999 {
					if err := db.Flush(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	want := int64(150_000)
	if testing.Short() {
		want = 60_000
	}
	checked, runs := 0, 0
	for ; runs < 3 || puts.Load() < want; runs++ {
		var last int64
		rep, err := db.Verify(context.Background(), func(done, total int64) { last = done })
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
		for _, f := range rep.Findings {
			if f.Kind.Damage() {
				t.Errorf("false finding while writing: %+v", f)
			}
		}
		if rep.FilesByType["log"] == 0 || rep.FilesByType["manifest"] != 1 || last == 0 {
			t.Errorf("checked %v, progress %d", rep.FilesByType, last)
		}
		checked += rep.Files
	}
	stop.Store(true)
	wg.Wait()
	must(t, db.Flush())
	rep, err := db.Verify(context.Background(), nil)
	must(t, err)
	if !rep.Clean || rep.FilesByType["table"] == 0 {
		t.Fatalf("after the writes: clean %v, %v: %+v", rep.Clean, rep.FilesByType, rep.Findings)
	}
	t.Logf("%d checks of %d files in all while writing %d records", runs, checked, puts.Load())
}

// TestVerifyDamagedTable flips a byte of a table under an open database:
// Verify names the table.
func TestVerifyDamagedTable(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, &Options{MemtableSize: 1 << 20, NoSync: true})
	must(t, err)
	defer db.Close()
	for i := range 5000 {
		must(t, db.Put(fmt.Appendf(nil, "k%06d", i), make([]byte, 100)))
	}
	must(t, db.Flush())
	names, err := os.ReadDir(dir)
	must(t, err)
	var table string
	for _, e := range names {
		if strings.HasSuffix(e.Name(), ".sst") {
			table = filepath.Join(dir, e.Name())
		}
	}
	if table == "" {
		t.Fatal("no table")
	}
	data, err := os.ReadFile(table)
	must(t, err)
	data[len(data)/2] ^= 1
	must(t, os.WriteFile(table, data, 0o644))

	rep, err := db.Verify(context.Background(), nil)
	must(t, err)
	if rep.Clean || rep.Counts[verify.Checksum] != 1 {
		t.Fatalf("clean %v, counts %v", rep.Clean, rep.Counts)
	}
	f := rep.Findings[0]
	if f.File != table || f.Kind != verify.Checksum || f.Keys == nil || f.Offset <= 0 || f.Offset > int64(len(data)/2) {
		t.Fatalf("finding %+v, want a checksum at a data block of %s", f, table)
	}
	db.Close()
	if _, err := db.Verify(context.Background(), nil); err != errs.ErrClosed {
		t.Fatalf("Verify after Close: %v", err)
	}
}

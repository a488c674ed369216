package pluresdb

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
)

// txnStream is a stream of n batches committed on their origin, each
// putting one value under the keys t<i>/0..t<i>/width-1 (a few batches
// are larger), and the number of keys of batch i.
func txnStream(t *testing.T, n int, rng *rand.Rand) ([]byte, []int) {
	t.Helper()
	src := openReplica(t, vfs.NewMem(), "/src")
	defer src.Close()
	widths := make([]int, n)
	for i := range n {
		w := 2 + rng.IntN(12)
		if rng.IntN(100) == 0 {
			w = 400 // several chunks of the stream
		}
		widths[i] = w
		b := src.NewBatch()
		val := txnValue(i)
		for j := range w {
			must(t, b.Put(txnKey(i, j), val))
		}
		must(t, b.Commit(nil))
	}
	var buf bytes.Buffer
	if _, err := src.ExportChanges(&buf, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), widths
}

func txnKey(i, j int) []byte { return fmt.Appendf(nil, "t%05d/%03d", i, j) }

func txnValue(i int) []byte {
	return append(fmt.Appendf(nil, "%05d:", i), bytes.Repeat([]byte{'v'}, 120)...)
}

// checkTxns fails unless every batch of the stream is wholly in db or
// wholly absent; it returns how many are in.
func checkTxns(t *testing.T, db *DB, widths []int, what string) int {
	t.Helper()
	whole := 0
	for i, w := range widths {
		present := 0
		for j := range w {
			v, err := db.Get(txnKey(i, j))
			switch {
			case err == nil && bytes.Equal(v, txnValue(i)):
				present++
			case err == nil:
				t.Fatalf("%s: %s = %q", what, txnKey(i, j), v)
			case !isNotFound(err):
				t.Fatalf("%s: %s: %v", what, txnKey(i, j), err)
			}
		}
		if present != 0 && present != w {
			t.Fatalf("%s: batch %d has %d of its %d keys", what, i, present, w)
		}
		if present == w {
			whole++
		}
	}
	return whole
}

func isNotFound(err error) bool { return err != nil && errors.Is(err, ErrNotFound) }

// The stream carries the origin's batches: one stream transaction per
// committed batch, however the chunks cut them.
func TestExportCarriesBatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 1))
	stream, widths := txnStream(t, 300, rng)
	s, err := oplog.ReadStream(bytes.NewReader(stream))
	must(t, err)
	if len(s.Ends) != len(widths) {
		t.Fatalf("%d transactions in the stream, %d batches committed", len(s.Ends), len(widths))
	}
	at := -1
	for i, w := range widths {
		at += w
		if s.Ends[i] != at {
			t.Fatalf("transaction %d ends at op %d, want %d", i, s.Ends[i], at)
		}
	}
}

// A crash at any point of a bulk import leaves each of the origin's
// batches wholly applied or wholly absent, and importing again completes
// it.
func TestImportCrashKeepsBatchesWhole(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 2))
	stream, widths := txnStream(t, 3000, rng)
	opts := func(fs vfs.FS) *Options { return &Options{FS: fs, MemtableSize: 1 << 20} }

	counter := vfs.FailAfter(1<<62, vfs.ErrInjected)
	clean, err := Open("/b", opts(vfs.WithFaults(vfs.NewMem(), counter.Inject)))
	must(t, err)
	_, err = clean.ImportChanges(bytes.NewReader(stream))
	must(t, err)
	if clean.Metrics().IngestedTables < 2 {
		t.Fatalf("the import ingested %d tables: not a bulk import", clean.Metrics().IngestedTables)
	}
	must(t, clean.Close())
	total := counter.Count()

	runs := 30
	if testing.Short() {
		runs = 10
	}
	partial := 0
	for run := range runs {
		mem := vfs.NewMem()
		cd := vfs.FailAfter(rng.Int64N(total)+1, vfs.ErrInjected)
		if b, err := Open("/b", opts(vfs.WithFaults(mem, cd.Inject))); err == nil {
			b.ImportChanges(bytes.NewReader(stream))
			b.Close()
		}
		b, err := Open("/b", opts(mem.CrashClone()))
		if err != nil {
			t.Fatalf("run %d: reopen after crash: %v", run, err)
		}
		if n := checkTxns(t, b, widths, fmt.Sprintf("run %d, after the crash", run)); n > 0 && n < len(widths) {
			partial++
		}
		if _, err := b.ImportChanges(bytes.NewReader(stream)); err != nil {
			t.Fatalf("run %d: import after crash: %v", run, err)
		}
		if n := checkTxns(t, b, widths, fmt.Sprintf("run %d, imported again", run)); n != len(widths) {
			t.Fatalf("run %d: %d of %d batches after importing again", run, n, len(widths))
		}
		must(t, b.Close())
	}
	t.Logf("%d of %d crashes left part of the import", partial, runs)
}

// Readers during a bulk import see each of the origin's batches whole or
// not at all.
func TestReadsDuringImportSeeBatchesWhole(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 3))
	stream, widths := txnStream(t, 3000, rng)
	b, err := Open("/b", &Options{FS: vfs.NewMem(), NoSync: true, MemtableSize: 1 << 20, L0CompactionThreshold: 2, L0StopWritesThreshold: 2})
	must(t, err)
	defer b.Close()
	var done atomic.Bool
	errc := make(chan error, 1)
	go func() {
		_, err := b.ImportChanges(bytes.NewReader(stream))
		done.Store(true)
		errc <- err
	}()
	reads := 0
	for !done.Load() || reads == 0 {
		i := rng.IntN(len(widths))
		snap := b.NewSnapshot()
		first, err1 := snap.Get(txnKey(i, 0))
		last, err2 := snap.Get(txnKey(i, widths[i]-1))
		snap.Close()
		if (err1 == nil) != (err2 == nil) || !bytes.Equal(first, last) {
			t.Fatalf("batch %d half visible during the import: %q (%v), %q (%v)", i, first, err1, last, err2)
		}
		reads++
	}
	must(t, <-errc)
	t.Logf("%d reads during the import", reads)
	checkTxns(t, b, widths, "after the import")
}

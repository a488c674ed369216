package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/plures/pluresdb"
)

// demo writes, reads, scans, deletes, snapshots, flushes, compacts and
// reopens a database, checking each step and saying what happened.
func demo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	keys := fs.Int("keys", 200_000, "number of keys to write")
	dir := fs.String("dir", "", "database directory (default: a new temporary directory, removed at the end)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "plures-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*dir = filepath.Join(tmp, "db")
	}
	n := *keys
	key := func(i int) []byte { return fmt.Appendf(nil, "user:%08d", i) }
	val := func(i, gen int) []byte {
		return fmt.Appendf(nil, "{\"id\":%d,\"gen\":%d,\"pad\":\"%040d\"}", i, gen, i)
	}

	step := func(what string, start time.Time, count int) {
		el := time.Since(start)
		rate := ""
		if count > 0 {
			rate = fmt.Sprintf(" (%.0f ops/s)", float64(count)/el.Seconds())
		}
		fmt.Printf("  %-58s %8.1f ms%s\n", what, float64(el.Microseconds())/1000, rate)
	}

	fmt.Printf("PluresDB demo in %s\n", *dir)
	db, err := pluresdb.Open(*dir, &pluresdb.Options{MemtableSize: 8 << 20})
	if err != nil {
		return err
	}

	t := time.Now()
	b := db.NewBatch()
	for i := range n {
		if err := b.Put(key(i), val(i, 1)); err != nil {
			return err
		}
		if b.Len() == 1000 || i == n-1 {
			if err := b.Commit(&pluresdb.WriteOptions{NoSync: true}); err != nil {
				return err
			}
			b.Reset()
		}
	}
	step(fmt.Sprintf("wrote %d keys in batches of 1000", n), t, n)

	t = time.Now()
	for i := range 1000 {
		if err := db.Put(key(i), val(i, 2)); err != nil {
			return err
		}
	}
	step("overwrote 1000 keys, each commit fsynced", t, 1000)

	snap := db.NewSnapshot()
	t = time.Now()
	b.Reset()
	for i := 0; i <= min(20_000, n-1); i += 2 {
		if err := b.Delete(key(i)); err != nil {
			return err
		}
	}
	if err := b.Commit(nil); err != nil {
		return err
	}
	step("deleted the even keys up to 20000 in one synced batch", t, 0)

	t = time.Now()
	if err := db.Flush(); err != nil {
		return err
	}
	step("flushed the memtable to a table", t, 0)

	rng := rand.New(rand.NewPCG(1, 2))
	t = time.Now()
	reads := 100_000
	for range reads {
		i := rng.IntN(n)
		v, err := db.Get(key(i))
		switch {
		case i%2 == 0 && i <= 20_000:
			if !errors.Is(err, pluresdb.ErrNotFound) {
				return fmt.Errorf("key %d was deleted, Get returned %q, %v", i, v, err)
			}
		case err != nil:
			return fmt.Errorf("get key %d: %w", i, err)
		}
	}
	step(fmt.Sprintf("%d random reads, each checked", reads), t, reads)

	if v, err := snap.Get(key(0)); err != nil || string(v) != string(val(0, 2)) {
		return fmt.Errorf("snapshot read of key 0: %q, %v", v, err)
	}
	fmt.Println("  the snapshot still sees key 0, deleted after it was taken")
	snap.Close()

	t = time.Now()
	it := db.NewIter(key(50_000), key(60_000))
	count := 0
	for ok := it.First(); ok; ok = it.Next() {
		count++
	}
	if err := it.Close(); err != nil {
		return err
	}
	if want := min(max(n-50_000, 0), 10_000); count != want {
		return fmt.Errorf("range scan saw %d keys, want %d", count, want)
	}
	step(fmt.Sprintf("scanned [user:00050000, user:00060000): %d keys", count), t, count)

	t = time.Now()
	if err := db.Compact(nil, nil); err != nil {
		return err
	}
	step("compacted everything into one level", t, 0)
	printLevels(db)

	t = time.Now()
	if err := db.Close(); err != nil {
		return err
	}
	db, err = pluresdb.Open(*dir, nil)
	if err != nil {
		return err
	}
	step("closed and reopened", t, 0)
	if v, err := db.Get(key(1)); err != nil || string(v) != string(val(1, 2)) {
		return fmt.Errorf("after reopen, key 1 = %q, %v", v, err)
	}
	if _, err := db.Get(key(2)); !errors.Is(err, pluresdb.ErrNotFound) {
		return fmt.Errorf("after reopen, deleted key 2 is back: %v", err)
	}
	fmt.Println("  after reopen: overwrites and deletes are all there")
	if err := replicas(db, filepath.Join(filepath.Dir(*dir), filepath.Base(*dir)+"-replica")); err != nil {
		return err
	}
	if err := db.Close(); err != nil {
		return err
	}
	fmt.Println("ok")
	return nil
}

// replicas makes a second replica beside a, has both write concurrently
// (whole documents, fields, counters, a delete), exchanges change streams
// both ways and checks that they converge, with a change feed on b.
func replicas(a *pluresdb.DB, dirB string) error {
	fmt.Println("two replicas")
	defer os.RemoveAll(dirB)
	b, err := pluresdb.Open(dirB, nil)
	if err != nil {
		return err
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	feed, err := b.Subscribe(ctx, pluresdb.Position{})
	if err != nil {
		return err
	}
	defer feed.Close()

	doc := []byte("doc:shared")
	for _, w := range []func() error{
		func() error { return a.Put(doc, []byte("written by a")) },
		func() error { return a.SetField(doc, []byte("title"), []byte("from a")) },
		func() error { return a.Incr(doc, []byte("views"), 3) },
		func() error { return b.Incr(doc, []byte("views"), 4) },
		func() error { return b.SetField(doc, []byte("owner"), []byte("from b")) },
		func() error { return b.Put([]byte("doc:b-only"), []byte("b")) },
		func() error { return a.Delete([]byte("user:00000001")) },
	} {
		if err := w(); err != nil {
			return err
		}
	}
	exchange := func(src, dst *pluresdb.DB, name string) error {
		t := time.Now()
		var buf bytes.Buffer
		if _, err := src.ExportChanges(&buf, dst.VersionVector()); err != nil {
			return err
		}
		size := buf.Len()
		n, err := dst.ImportChanges(&buf)
		if err != nil {
			return err
		}
		fmt.Printf("  %-58s %8.1f ms (%d bytes)\n", fmt.Sprintf("%s: applied %d operations", name, n),
			float64(time.Since(t).Microseconds())/1000, size)
		return nil
	}
	if err := exchange(a, b, "a → b"); err != nil {
		return err
	}
	if err := exchange(b, a, "b → a"); err != nil {
		return err
	}
	if err := exchange(a, b, "a → b again (nothing new)"); err != nil {
		return err
	}
	da, errA := a.GetFields(doc)
	db, errB := b.GetFields(doc)
	if errA != nil || errB != nil {
		return fmt.Errorf("shared document: %v, %v", errA, errB)
	}
	if da.Counters["views"] != 7 || db.Counters["views"] != 7 || string(da.Fields["owner"]) != "from b" ||
		string(db.Fields["title"]) != "from a" {
		return fmt.Errorf("shared document did not converge: a %+v, b %+v", da, db)
	}
	fmt.Printf("  both hold %s = %q, fields title=%q owner=%q, views=%d\n", doc, da.Value,
		da.Fields["title"], da.Fields["owner"], da.Counters["views"])
	ha, hb := sha256.New(), sha256.New()
	for _, p := range []struct {
		db *pluresdb.DB
		h  hash.Hash
	}{{a, ha}, {b, hb}} {
		it := p.db.NewIter(nil, nil)
		for ok := it.First(); ok; ok = it.Next() {
			p.h.Write(it.Key())
			p.h.Write(it.Value())
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	if !bytes.Equal(ha.Sum(nil), hb.Sum(nil)) {
		return errors.New("a full scan of the two replicas differs")
	}
	fmt.Printf("  full scans of both replicas hash to %x\n", ha.Sum(nil)[:8])
	// b's feed saw its own writes and then everything imported.
	seen := 0
	for seen < 4 {
		if _, err := feed.Next(); err != nil {
			return err
		}
		seen++
	}
	fmt.Printf("  b's change feed delivered its writes and the imported ones in commit order (position %d)\n", feed.Position().Seq)
	return nil
}

func printLevels(db *pluresdb.DB) { printLevelsTo(os.Stdout, db) }

func printLevelsTo(w io.Writer, db *pluresdb.DB) {
	m := db.Metrics()
	for l, lm := range m.Levels {
		if lm.Files > 0 {
			fmt.Fprintf(w, "    L%d: %d tables, %.1f MiB\n", l, lm.Files, float64(lm.Bytes)/(1<<20))
		}
	}
	fmt.Fprintf(w, "    write amplification so far %.2f, cache hits %d, misses %d\n",
		m.WriteAmplification, m.CacheHits, m.CacheMisses)
}

// stats runs `plures stats [-json] DIR`.
func stats(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON: the metrics and the health")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("usage: plures stats [-json] DIR")
	}
	// Read-only: an inspection tool writes nothing, and creates no
	// database where there is none.
	db, err := pluresdb.Open(fs.Arg(0), &pluresdb.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	if *asJSON {
		h := db.Health()
		damaged := make([]string, 0, len(h.Damaged))
		for _, d := range h.Damaged {
			damaged = append(damaged, d.Path+": "+d.Err.Error())
		}
		b, err := json.Marshal(struct {
			Dir         string           `json:"dir"`
			Replica     string           `json:"replica"`
			Metrics     pluresdb.Metrics `json:"metrics"`
			Damaged     []string         `json:"damaged,omitempty"`
			Quarantined []string         `json:"quarantined,omitempty"`
			OpLog       string           `json:"oplog_damage,omitempty"`
		}{fs.Arg(0), db.ReplicaID().String(), db.Metrics(), damaged, h.Quarantined, h.OpLog})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	fmt.Fprintln(stdout, fs.Arg(0))
	fmt.Fprintf(stdout, "  replica %s\n", db.ReplicaID())
	printLevelsTo(stdout, db)
	return nil
}

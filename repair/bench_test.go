package repair_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/repair"
)

// BenchmarkRebuildManifest repairs a database of 200,000 documents of
// 200 bytes (flushed and compacted into several levels) whose CURRENT is
// gone: the check, the table checks, the key scan that places the
// tables, and the new MANIFEST. It reports the bytes of the database
// (tables and the retained log) per second.
func BenchmarkRebuildManifest(b *testing.B) {
	src := filepath.Join(b.TempDir(), "db")
	db, err := pluresdb.Open(src, &pluresdb.Options{NoSync: true, MemtableSize: 4 << 20})
	if err != nil {
		b.Fatal(err)
	}
	val := bytes.Repeat([]byte("v"), 200)
	for i := range 200000 {
		if err := db.Put(fmt.Appendf(nil, "key%08d", (i*7919)%200000), val); err != nil {
			b.Fatal(err)
		}
		if i == 120000 {
			if err := db.Compact(nil, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	var size int64
	tables, _ := filepath.Glob(filepath.Join(src, "*.sst"))
	all, _ := filepath.Glob(filepath.Join(src, "*"))
	for _, p := range all {
		if fi, err := os.Stat(p); err == nil {
			size += fi.Size()
		}
	}
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), fmt.Sprint(i))
		if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
			b.Fatal(err)
		}
		os.Remove(filepath.Join(dir, "CURRENT"))
		b.StartTimer()
		res, err := repair.Dir(context.Background(), nil, dir, repair.Options{})
		if err != nil || res.Manifest == "" || len(res.Lost) > 0 {
			b.Fatalf("repair: %v %+v", err, res)
		}
	}
	b.ReportMetric(float64(len(tables)), "tables")
}

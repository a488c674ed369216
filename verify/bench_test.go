package verify_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/verify"
)

// BenchmarkDir measures how fast a database is checked, in MB/s of files
// read. The database is written once per run: PLURES_BENCH_MB (default
// 300) megabytes of 1 KiB values, half random and half zeros (so the
// hot tier's S2 has work to do), and the retained log segments hold as
// much again. The files are
// fresh in the page cache: the figure is the checker's speed, not the
// disk's. PLURES_BENCH_DIR keeps the database in (and reuses it from) a
// directory.
//
//	go test -run XXX -bench Dir -benchtime 5x ./verify
func BenchmarkDir(b *testing.B) {
	mb := 300
	if s := os.Getenv("PLURES_BENCH_MB"); s != "" {
		mb, _ = strconv.Atoi(s)
	}
	dir := os.Getenv("PLURES_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	if _, err := os.Stat(dir + "/CURRENT"); err != nil {
		db, err := pluresdb.Open(dir, &pluresdb.Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		val := make([]byte, 1024)
		for range mb << 10 {
			for j := 0; j < len(val)/2; j += 8 {
				v := rng.Uint64()
				for k := range 8 {
					val[j+k] = byte(v >> (8 * k))
				}
			}
			if err := db.Put(fmt.Appendf(nil, "key%09d", rng.IntN(mb<<10)), val); err != nil {
				b.Fatal(err)
			}
		}
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
	}
	var bytes int64
	b.ResetTimer()
	for b.Loop() {
		rep, err := verify.Dir(context.Background(), nil, dir, verify.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if !rep.Clean {
			b.Fatalf("damage: %+v", rep.Findings[0])
		}
		bytes = rep.Bytes
	}
	b.SetBytes(bytes)
	b.ReportMetric(float64(bytes)/1e6, "MB/check")
}

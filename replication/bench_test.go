package replication_test

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/plures/pluresdb"
)

// BenchmarkThreeReplicas measures replication end to end on one machine:
// three replicas each commit b.N batches of 100 operations (a 100-byte
// value each), concurrently; the time runs from the first commit until
// every replica holds every operation. It reports operations/s counted
// once per operation written (each is imported by two replicas), and the
// convergence latency of single writes (commit on one replica to
// visibility on another), p50 and p99.
//
//	go test -run '^$' -bench ThreeReplicas -benchtime 200x .
func BenchmarkThreeReplicas(b *testing.B) {
	c := newCluster(b)
	cfg := testConfig()
	cfg.PublishInterval = 50 * time.Millisecond // the default
	reps := []*replica{c.add("a", cfg), c.add("b", cfg), c.add("c", cfg)}
	value := make([]byte, 100)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, r := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range b.N {
				batch := r.db.NewBatch()
				for j := range 100 {
					if err := batch.Put(fmt.Appendf(nil, "k/%s/%d/%d", r.name, i, j), value); err != nil {
						b.Error(err)
						return
					}
				}
				if err := batch.Commit(nil); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	written := time.Since(start)
	for {
		vv := reps[0].db.VersionVector()
		done := len(vv) == 3
		for _, r := range reps[1:] {
			done = done && r.db.VersionVector().Equal(vv)
		}
		if done {
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	ops := float64(3 * 100 * b.N)
	b.ReportMetric(ops/elapsed.Seconds(), "ops/s")
	b.ReportMetric(ops/written.Seconds(), "written-ops/s")

	// Latency: a write on a, polled for on b.
	var lat []time.Duration
	for i := range 200 {
		key := fmt.Appendf(nil, "lat/%d", i)
		t0 := time.Now()
		if err := reps[0].db.Put(key, value); err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := reps[1].db.Get(key); err == nil {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkThreeReplicasByHand moves the same workload as
// BenchmarkThreeReplicas between three databases by hand, without NATS:
// a loop exports from each replica what each other lacks (ExportChanges
// with the other's version vector) and imports it, until all hold every
// operation.
func BenchmarkThreeReplicasByHand(b *testing.B) {
	var dbs []*pluresdb.DB
	for range 3 {
		db, err := pluresdb.Open(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		dbs = append(dbs, db)
	}
	value := make([]byte, 100)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for n, db := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range b.N {
				batch := db.NewBatch()
				for j := range 100 {
					if err := batch.Put(fmt.Appendf(nil, "k/%d/%d/%d", n, i, j), value); err != nil {
						b.Error(err)
						return
					}
				}
				if err := batch.Commit(nil); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()
	var buf bytes.Buffer
	for {
		select {
		case <-writing:
			writing = nil
		default:
		}
		for _, src := range dbs {
			for _, dst := range dbs {
				if src == dst {
					continue
				}
				buf.Reset()
				if _, err := src.ExportChanges(&buf, dst.VersionVector()); err != nil {
					b.Fatal(err)
				}
				if _, err := dst.ImportChanges(&buf); err != nil {
					b.Fatal(err)
				}
			}
		}
		if writing != nil {
			continue
		}
		vv := dbs[0].VersionVector()
		if len(vv) == 3 && dbs[1].VersionVector().Equal(vv) && dbs[2].VersionVector().Equal(vv) {
			break
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(3*100*b.N)/elapsed.Seconds(), "ops/s")
}

//go:build unix

package hnsw

import (
	"cmp"
	"flag"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	speedN       = flag.Int("hnsw.speed", 0, "run TestSpeed on this many clustered 128-dimensional vectors (0: skip)")
	speedWorkers = flag.Int("hnsw.workers", 2, "TestSpeed: goroutines for the parallel build (0: skip it)")
	speedCache   = flag.String("hnsw.cache", "", "TestSpeed: load the serial build from this file if it exists, else save it there")
)

// TestSpeed is the measurement behind the numbers in doc.go: build rate
// (one goroutine, then several) and queries per second at the first ef
// whose recall@10 reaches 0.95, on clustered data. Off by default:
//
//	go test ./hnsw -run TestSpeed -hnsw.speed 100000 -v
func TestSpeed(t *testing.T) {
	if *speedN == 0 {
		t.Skip("set -hnsw.speed N to measure")
	}
	const dim, nq, k = 128, 500, 10
	n := *speedN
	r := rand.New(rand.NewPCG(3, 3))
	points, queries := split(blobData(r, n+nq, dim, 64, 16), nq)
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = keyOf(i)
	}

	var x *Index
	if b, err := os.ReadFile(*speedCache); err == nil {
		if x, err = Unmarshal(b); err != nil {
			t.Fatal(err)
		}
	} else {
		x, _ = New(Config{Dim: dim})
		runtime.LockOSThread()
		start, cpu := time.Now(), threadCPU()
		for i, v := range points {
			if err := x.Add(keys[i], v); err != nil {
				t.Fatal(err)
			}
		}
		el, elCPU := time.Since(start), threadCPU()-cpu
		runtime.UnlockOSThread()
		t.Logf("build 1 goroutine: %d vectors in %v, %.0f vectors/s (%.0f per CPU second)", n, el.Round(time.Millisecond),
			float64(n)/el.Seconds(), float64(n)/elCPU.Seconds())
		if *speedCache != "" {
			b, _ := x.MarshalBinary()
			os.WriteFile(*speedCache, b, 0o644)
		}
	}

	truth := exactTruth(points, queries, k)
	report := func(x *Index, label string) {
		found := false
		for _, ef := range []int{10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384} {
			rec, qps, cpuQPS, p99 := measureSearch(t, x, queries, truth, k, ef)
			t.Logf("%s ef %3d: recall@10 %.4f, %6.0f QPS (1 goroutine; %6.0f per CPU second), p99 %v", label, ef, rec, qps, cpuQPS, p99)
			if rec >= 0.95 {
				found = true
				break
			}
		}
		if !found {
			t.Logf("%s: recall 0.95 not reached", label)
		}
	}
	report(x, "serial build")

	if w := *speedWorkers; w > 0 {
		y, _ := New(Config{Dim: dim})
		start := time.Now()
		parallelAdd(t, y, keys, points, w)
		el := time.Since(start)
		t.Logf("build %d goroutines (GOMAXPROCS %d): %.0f vectors/s", w, runtime.GOMAXPROCS(0), float64(n)/el.Seconds())
		report(y, "parallel build")
	}
}

// parallelAdd adds points from w goroutines, each taking every w-th point.
func parallelAdd(t testing.TB, x *Index, keys [][]byte, points [][]float32, w int) {
	var wg sync.WaitGroup
	for g := 0; g < w; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; i < len(points); i += w {
				if err := x.Add(keys[i], points[i]); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

// exactTruth returns, per query, the indexes of the k nearest points (L2).
func exactTruth(points, queries [][]float32, k int) [][]int {
	out := make([][]int, len(queries))
	var wg sync.WaitGroup
	w := runtime.GOMAXPROCS(0)
	for g := 0; g < w; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			all := make([]item, len(points))
			for qi := g; qi < len(queries); qi += w {
				for i, p := range points {
					all[i] = item{l2Go(queries[qi], p), uint32(i)}
				}
				slices.SortFunc(all, func(a, b item) int { return cmp.Compare(a.dist, b.dist) })
				for _, it := range all[:k] {
					out[qi] = append(out[qi], int(it.id))
				}
			}
		}(g)
	}
	wg.Wait()
	return out
}

// threadCPU returns the CPU time of the calling thread: on a shared
// machine, rates per CPU second vary much less than per wall second.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD, Linux
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measureSearch returns mean recall@k, single-goroutine QPS (per wall and
// per CPU second) and p99 latency.
func measureSearch(t testing.TB, x *Index, queries [][]float32, truth [][]int, k, ef int) (float64, float64, float64, time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := threadCPU()
	opts := &SearchOptions{Ef: ef}
	lat := make([]time.Duration, 0, 4*len(queries))
	sum := 0.0
	start := time.Now()
	for pass := 0; pass == 0 || time.Since(start) < 500*time.Millisecond; pass++ {
		for qi, q := range queries {
			t0 := time.Now()
			hits, err := x.Search(q, k, opts)
			lat = append(lat, time.Since(t0))
			if err != nil {
				t.Fatal(err)
			}
			if pass == 0 {
				got := 0
				for _, h := range hits {
					for _, i := range truth[qi] {
						if string(h.Key) == string(keyOf(i)) {
							got++
						}
					}
				}
				sum += float64(got) / float64(k)
			}
		}
	}
	el, elCPU := time.Since(start), threadCPU()-cpu
	slices.Sort(lat)
	return sum / float64(len(queries)), float64(len(lat)) / el.Seconds(), float64(len(lat)) / elCPU.Seconds(), lat[len(lat)*99/100]
}

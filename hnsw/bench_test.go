package hnsw

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

const benchDim = 128

// BenchmarkAdd inserts into one growing index with default M and
// EfConstruction.
func BenchmarkAdd(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	pool := blobData(r, min(b.N, 20000), benchDim, 32, 16)
	keys := make([][]byte, b.N)
	for i := range keys {
		keys[i] = keyOf(i)
	}
	x, err := New(Config{Dim: benchDim})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := x.Add(keys[i], pool[i%len(pool)]); err != nil {
			b.Fatal(err)
		}
	}
}

type benchIndex struct {
	once    sync.Once
	x       *Index
	data    map[int][]float32
	queries [][]float32
}

var benchIndexes = map[string]*benchIndex{"blobs": {}, "uniform": {}}

// BenchmarkSearch runs k=10 searches on 10k vectors of 128 dimensions,
// clustered and uniform (the hard case), and reports recall@10 against
// brute force beside the time.
func BenchmarkSearch(b *testing.B) {
	for _, name := range []string{"blobs", "uniform"} {
		bi := benchIndexes[name]
		bi.once.Do(func() {
			r := rand.New(rand.NewPCG(2, 2))
			var all [][]float32
			if name == "blobs" {
				all = blobData(r, 10000+200, benchDim, 32, 16)
			} else {
				all = uniformData(r, 10000+200, benchDim)
			}
			points, queries := split(all, 200)
			bi.x, bi.data = build(b, Config{Dim: benchDim}, points)
			bi.queries = queries
		})
		for _, ef := range []int{16, 64, 100, 200} {
			benchSearch(b, name, bi, ef)
		}
	}
}

func benchSearch(b *testing.B, name string, bi *benchIndex, ef int) {
	b.Run(fmt.Sprintf("%s/ef=%d", name, ef), func(b *testing.B) {
		opts := &SearchOptions{Ef: ef}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := bi.x.Search(bi.queries[i%len(bi.queries)], 10, opts); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(meanRecall(b, bi.x, bi.data, bi.queries, 10, ef, nil, nil), "recall@10")
	})
}

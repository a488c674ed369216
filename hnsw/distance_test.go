package hnsw

import (
	"fmt"
	"math"
	"testing"
)

// TestKernelsAgree compares the selected kernels (assembly on amd64 with
// AVX2+FMA) with the pure-Go ones on every length 0..300, at unaligned
// starts, within 1e-4 relative.
func TestKernelsAgree(t *testing.T) {
	r := testRand(t)
	t.Logf("SIMD kernels: %v", useSIMD)
	near := func(got, want float32) bool {
		return math.Abs(float64(got-want)) <= 1e-4*math.Max(1, math.Abs(float64(want)))
	}
	buf := make([]float32, 300+8)
	buf2 := make([]float32, 300+8)
	for n := 0; n <= 300; n++ {
		for off := 0; off < 4; off++ {
			for i := range buf {
				buf[i] = r.Float32()*4 - 2
				buf2[i] = r.Float32()*4 - 2
			}
			a, b := buf[off:off+n], buf2[(off*3)%5:(off*3)%5+n]
			if got, want := l2(a, b), l2Go(a, b); !near(got, want) {
				t.Fatalf("n %d off %d: l2 %v, pure Go %v", n, off, got, want)
			}
			if got, want := dot(a, b), dotGo(a, b); !near(got, want) {
				t.Fatalf("n %d off %d: dot %v, pure Go %v", n, off, got, want)
			}
		}
	}
	// A b longer than a: only len(a) elements count.
	a := []float32{1, 2, 3}
	b := []float32{1, 2, 3, 100, 100}
	if l2(a, b) != 0 || dot(a, b) != 14 {
		t.Fatalf("long b: l2 %v dot %v", l2(a, b), dot(a, b))
	}
}

// BenchmarkKernels compares the selected kernels with the pure-Go ones.
func BenchmarkKernels(b *testing.B) {
	r := testRand(b)
	for _, dim := range []int{128, 768} {
		x := uniformData(r, 2, dim)
		for _, k := range []struct {
			name string
			fn   func(a, b []float32) float32
		}{{"l2", l2}, {"l2Go", l2Go}, {"dot", dot}, {"dotGo", dotGo}} {
			b.Run(fmt.Sprintf("%s/dim=%d", k.name, dim), func(b *testing.B) {
				b.SetBytes(int64(8 * dim))
				var s float32
				for i := 0; i < b.N; i++ {
					s += k.fn(x[0], x[1])
				}
				sink = s
			})
		}
	}
}

var sink float32

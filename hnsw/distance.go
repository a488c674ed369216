package hnsw

import "math"

// Distance kernels. l2 and dot are the AVX2+FMA assembly of
// distance_amd64.s when the CPU has it (chosen once, at init, so a call
// costs one indirect jump and no feature test), else the pure-Go kernels
// below, unrolled by 4 so the compiler keeps four independent accumulators
// in registers. Every kernel expects len(b) >= len(a) (the index only ever
// passes vectors of its own Dim).
var (
	l2  = l2Go
	dot = dotGo
	// useSIMD reports that l2 and dot are the assembly kernels.
	useSIMD = false
)

// dotGo returns the inner product of a and b.
func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// l2Go returns the squared Euclidean distance between a and b.
func l2Go(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		d0 := a[i] - b[i]
		d1 := a[i+1] - b[i+1]
		d2 := a[i+2] - b[i+2]
		d3 := a[i+3] - b[i+3]
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(a); i++ {
		d := a[i] - b[i]
		s0 += d * d
	}
	return (s0 + s1) + (s2 + s3)
}

// distance is the index's metric on two prepared vectors (normalized for
// Cosine): smaller is nearer for every metric.
func (m Metric) distance(a, b []float32) float32 {
	switch m {
	case Cosine:
		return 1 - dot(a, b)
	case Dot:
		return -dot(a, b)
	default:
		return l2(a, b)
	}
}

// normalize scales v to unit length in place; it reports false for a zero
// vector, which has no direction.
func normalize(v []float32) bool {
	n := math.Sqrt(float64(dot(v, v)))
	if n == 0 || math.IsInf(n, 0) {
		return false
	}
	inv := float32(1 / n)
	for i := range v {
		v[i] *= inv
	}
	return true
}

// finite reports whether v holds no NaN or infinity.
func finite(v []float32) bool {
	for _, f := range v {
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return false
		}
	}
	return true
}

//go:build amd64

package hnsw

// AVX2+FMA kernels in distance_amd64.s. They take min(len(a), len(b))
// elements, so a short b cannot make them read out of bounds.

//go:noescape
func l2AVX2(a, b []float32) float32

//go:noescape
func dotAVX2(a, b []float32) float32

func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)
func xgetbv() (eax, edx uint32)

// hasAVX2FMA reports whether the CPU has AVX2 and FMA and the OS saves the
// YMM registers across context switches (OSXSAVE, then XCR0 bits 1 and 2).
func hasAVX2FMA() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const fma, osxsave, avx = 1 << 12, 1 << 27, 1 << 28
	if ecx1&(fma|osxsave|avx) != fma|osxsave|avx {
		return false
	}
	if xcr0, _ := xgetbv(); xcr0&6 != 6 {
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	const avx2 = 1 << 5
	return ebx7&avx2 != 0
}

func init() {
	if hasAVX2FMA() {
		useSIMD = true
		l2, dot = l2AVX2, dotAVX2
	}
}

package lsm

import (
	"fmt"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func TestBloomFalsePositiveRate(t *testing.T) {
	const n = 100_000
	hashes := make([]uint64, n)
	for i := range hashes {
		hashes[i] = xxhash.Sum64(fmt.Appendf(nil, "present-%d", i))
	}
	f, err := decodeBloom(buildBloom(hashes, 10))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(f.lines) * 8 / n; got < 10 || got > 11 {
		t.Fatalf("filter has %d bits per key, want 10", got)
	}
	for i, h := range hashes {
		if !f.mayContain(h) {
			t.Fatalf("false negative for key %d", i)
		}
	}
	fp := 0
	for i := 0; i < n; i++ {
		if f.mayContain(xxhash.Sum64(fmt.Appendf(nil, "absent-%d", i))) {
			fp++
		}
	}
	rate := float64(fp) / n
	t.Logf("false-positive rate at 10 bits/key: %.3f%%", rate*100)
	if rate < 0.005 || rate > 0.02 {
		t.Fatalf("false-positive rate %.3f%% outside [0.5%%, 2%%]", rate*100)
	}
}

func TestBloomDensities(t *testing.T) {
	// Tighter filters must have fewer false positives; every density keeps
	// zero false negatives, including tiny filters.
	prev := 1.0
	for _, bits := range []int{4, 8, 12, 16, 20} {
		for _, n := range []int{0, 1, 3, 5000} {
			hashes := make([]uint64, n)
			for i := range hashes {
				hashes[i] = xxhash.Sum64(fmt.Appendf(nil, "k%d", i))
			}
			f, err := decodeBloom(buildBloom(hashes, bits))
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hashes {
				if !f.mayContain(h) {
					t.Fatalf("bits %d n %d: false negative", bits, n)
				}
			}
			if n != 5000 {
				continue
			}
			fp := 0
			for i := 0; i < 20000; i++ {
				if f.mayContain(xxhash.Sum64(fmt.Appendf(nil, "x%d", i))) {
					fp++
				}
			}
			rate := float64(fp) / 20000
			if rate >= prev {
				t.Fatalf("bits %d: rate %.4f not below %.4f", bits, rate, prev)
			}
			prev = rate
		}
	}
}

func TestBloomDecodeRejects(t *testing.T) {
	good := buildBloom([]uint64{1, 2, 3}, 10)
	bad := map[string][]byte{
		"empty":      nil,
		"short":      good[:4],
		"truncated":  good[1:],
		"zero probe": append(append([]byte(nil), good[:len(good)-5]...), 0, 1, 0, 0, 0),
		"many lines": append(append([]byte(nil), good[:len(good)-5]...), 6, 2, 0, 0, 0),
		"zero lines": append(append([]byte(nil), good[:len(good)-5]...), 6, 0, 0, 0, 0),
	}
	for name, b := range bad {
		if _, err := decodeBloom(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func BenchmarkBloomMayContain(b *testing.B) {
	hashes := make([]uint64, 100_000)
	for i := range hashes {
		hashes[i] = xxhash.Sum64(fmt.Appendf(nil, "k%d", i))
	}
	f, _ := decodeBloom(buildBloom(hashes, 10))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.mayContain(uint64(i) * 0x9e3779b97f4a7c15)
	}
}

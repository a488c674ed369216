package lsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// A sorted run orders its entries as CompareInternal does, whatever the
// keys share: long common prefixes, keys that are prefixes of others, one
// key at several sequence numbers, keys alike in the eight bytes the sort
// compares first.
func TestRunSortsAsInternalKeys(t *testing.T) {
	t.Logf("seed %d (rerun with -memseed=%d)", *memSeed, *memSeed)
	rng := rand.New(rand.NewPCG(uint64(*memSeed), 11))
	schemes := map[string]func(i int) []byte{
		"digits": func(i int) []byte { return fmt.Appendf(nil, "\x01%016d", rng.IntN(5000)) },
		"random": func(i int) []byte { return fmt.Appendf(nil, "%x", rng.Uint64()>>rng.IntN(64)) },
		"prefix": func(i int) []byte { return bytes.Repeat([]byte{'a'}, 1+rng.IntN(20)) },
		"shared": func(i int) []byte { return fmt.Appendf(nil, "tenant/users/0000000%02d/%d", rng.IntN(3), rng.IntN(300)) },
		"binary": func(i int) []byte {
			b := make([]byte, rng.IntN(12)+1)
			for j := range b {
				b[j] = byte(rng.IntN(3))
			}
			return b
		},
		"one key": func(i int) []byte { return []byte("k") },
	}
	for name, key := range schemes {
		t.Run(name, func(t *testing.T) {
			var r Run
			for round := range 3 { // Reset keeps memory, and must not keep entries
				r.Reset()
				type entry struct{ ikey, value []byte }
				var want []entry
				n := 1 + rng.IntN(3000)
				for i := range n {
					k := key(i)
					seq := SeqNum(round*10000 + i + 1)
					kind := []Kind{KindSet, KindMerge, KindDelete}[rng.IntN(3)]
					v := fmt.Appendf(nil, "v%d", i)
					r.Add(seq, kind, k, v)
					want = append(want, entry{MakeInternalKey(k, seq, kind), v})
				}
				r.Sort()
				slices.SortFunc(want, func(a, b entry) int { return CompareInternal(a.ikey, b.ikey) })
				if r.Len() != n {
					t.Fatalf("Len %d, want %d", r.Len(), n)
				}
				it := r.NewIter()
				i := 0
				for ok := it.First(); ok; ok = it.Next() {
					if !bytes.Equal(it.Key(), want[i].ikey) || !bytes.Equal(it.Value(), want[i].value) {
						t.Fatalf("entry %d: %q=%q, want %q=%q", i, it.Key(), it.Value(), want[i].ikey, want[i].value)
					}
					i++
				}
				if i != n || it.Err() != nil {
					t.Fatalf("iterated %d of %d entries (%v)", i, n, it.Err())
				}
				// Backward, and seeks.
				for ok := it.Last(); ok; ok = it.Prev() {
					i--
					if !bytes.Equal(it.Key(), want[i].ikey) {
						t.Fatalf("backward entry %d: %q, want %q", i, it.Key(), want[i].ikey)
					}
				}
				if i != 0 {
					t.Fatalf("backward stopped at %d", i)
				}
				for range 50 {
					j := rng.IntN(n)
					if !it.SeekGE(want[j].ikey) || !bytes.Equal(it.Key(), want[j].ikey) {
						t.Fatalf("SeekGE(%q) missed", want[j].ikey)
					}
					ok := it.SeekLT(want[j].ikey)
					if ok != (j > 0) || (ok && !bytes.Equal(it.Key(), want[j-1].ikey)) {
						t.Fatalf("SeekLT(%q) wrong", want[j].ikey)
					}
				}
			}
		})
	}
}

func TestRadixSortStable(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(*memSeed), 12))
	keys := make([]radixKey, 10000)
	for i := range keys {
		keys[i] = radixKey{prefix: rng.Uint64() & 0x00ff00ff_000000ff, idx: uint32(i)}
	}
	got := radixSort(slices.Clone(keys), make([]radixKey, len(keys)))
	slices.SortStableFunc(keys, func(a, b radixKey) int {
		switch {
		case a.prefix < b.prefix:
			return -1
		case a.prefix > b.prefix:
			return 1
		}
		return 0
	})
	if !slices.Equal(got, keys) {
		t.Fatal("radix sort differs from a stable sort")
	}
}

// BenchmarkRunSort adds 100,000 entries of 17-byte keys to a run and
// sorts them, as an import builds a table; ns/entry covers both.
func BenchmarkRunSort(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 100_000
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "\x01%016d", rng.IntN(1_000_000))
	}
	val := make([]byte, 100)
	var r Run
	b.ReportAllocs()
	for b.Loop() {
		r.Reset()
		for i, k := range keys {
			r.Add(SeqNum(i+1), KindMerge, k, val)
		}
		r.Sort()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/entry")
}

package fuzz

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/plures/pluresdb/hnsw"
	"github.com/plures/pluresdb/internal/errs"
)

// FuzzHNSWUnmarshal feeds arbitrary bytes to hnsw.Unmarshal: it must return
// a corruption or newer-format error, never panic, and an index it accepts
// must survive searches, inserts, deletes and a re-encoding that decodes
// back to the same bytes.
func FuzzHNSWUnmarshal(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, metric := range []hnsw.Metric{hnsw.L2, hnsw.Cosine, hnsw.Dot} {
		for _, n := range []int{0, 1, 3, 40} {
			x, err := hnsw.New(hnsw.Config{Dim: 3, Metric: metric, M: 3, EfConstruction: 8})
			if err != nil {
				f.Fatal(err)
			}
			for i := 0; i < n; i++ {
				if err := x.Add(fmt.Appendf(nil, "k%d", i), []float32{r.Float32() + 0.1, r.Float32(), r.Float32()}); err != nil {
					f.Fatal(err)
				}
			}
			if n > 2 {
				if err := x.Delete([]byte("k1")); err != nil {
					f.Fatal(err)
				}
			}
			b, err := x.MarshalBinary()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte{})
	f.Add([]byte("PLRHNSW\x00"))

	f.Fuzz(func(t *testing.T, data []byte) {
		x, err := hnsw.Unmarshal(data)
		if err != nil {
			if !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
				t.Fatalf("error matches neither ErrCorruption nor ErrNewerFormat: %v", err)
			}
			return
		}
		dim := x.Config().Dim
		q := make([]float32, dim)
		for i := range q {
			q[i] = float32(i%3) + 0.5
		}
		hits, err := x.Search(q, 5, nil)
		if err != nil {
			t.Fatalf("Search on a loaded index: %v", err)
		}
		if len(hits) > x.Len() {
			t.Fatalf("%d hits from %d live vectors", len(hits), x.Len())
		}
		for _, h := range hits {
			if _, ok := x.ID(h.Key); !ok {
				t.Fatalf("hit %q is not a live key", h.Key)
			}
		}
		b1, err := x.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if binary.LittleEndian.Uint32(data[8:]) == 1 {
			// An older version is re-encoded in the current one, which
			// must itself round-trip.
			y, err := hnsw.Unmarshal(b1)
			if err != nil {
				t.Fatalf("re-encoding of a version 1 input does not decode: %v", err)
			}
			if b2, _ := y.MarshalBinary(); string(b2) != string(b1) {
				t.Fatalf("re-encoding of a version 1 input does not round-trip")
			}
		} else if string(b1) != string(data) {
			t.Fatalf("re-encoding differs from the accepted input")
		}
		if err := x.Add([]byte("fuzz-new"), q); err != nil {
			t.Fatalf("Add on a loaded index: %v", err)
		}
		if len(hits) > 0 {
			if err := x.Delete(hits[0].Key); err != nil {
				t.Fatalf("Delete of a hit: %v", err)
			}
		}
		if _, err := x.Search(q, 5, nil); err != nil {
			t.Fatalf("Search after Add: %v", err)
		}
	})
}

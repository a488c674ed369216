package index

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestOverlay: random sets, deletes, gets and scans over a base store
// agree with a plain map, before and after the first scan sorts the
// writes, and Writes applied to the base give the same store.
func TestOverlay(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 3))
		base := newMem()
		want := map[string]string{}
		for range 50 {
			k := fmt.Sprintf("k%02d", r.IntN(60))
			base.Set([]byte(k), []byte("b"+k))
			want[k] = "b" + k
		}
		o := NewOverlay(base)
		for step := range 400 {
			k := fmt.Sprintf("k%02d", r.IntN(60))
			switch r.IntN(5) {
			case 0:
				o.Delete([]byte(k))
				delete(want, k)
			case 1, 2:
				v := fmt.Sprintf("v%d", step)
				o.Set([]byte(k), []byte(v))
				want[k] = v
			case 3:
				v, ok, _ := o.Get([]byte(k))
				if w, wok := want[k]; ok != wok || string(v) != w {
					t.Fatalf("seed %d step %d: get %s = %q %v, want %q %v", seed, step, k, v, ok, w, wok)
				}
			default:
				if r.IntN(4) != 0 && step < 200 {
					continue // most scans late: writes before the first one
				}
				lo := fmt.Sprintf("k%02d", r.IntN(60))
				var hi []byte
				if r.IntN(3) > 0 {
					hi = fmt.Appendf(nil, "k%02d", r.IntN(60))
				}
				var got, exp []string
				err := o.Scan([]byte(lo), hi, func(k, v []byte) error {
					got = append(got, string(k)+"="+string(v))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range want {
					if k >= lo && (hi == nil || k < string(hi)) {
						exp = append(exp, k+"="+v)
					}
				}
				slices.Sort(exp)
				if !slices.Equal(got, exp) {
					t.Fatalf("seed %d step %d: scan [%s, %s): %v, want %v", seed, step, lo, hi, got, exp)
				}
			}
		}
		var last []byte
		_ = o.Writes(func(k, _ []byte, _ bool) error {
			if last != nil && bytes.Compare(last, k) >= 0 {
				t.Fatalf("seed %d: writes out of order: %s after %s", seed, k, last)
			}
			last = bytes.Clone(k)
			return nil
		})
		base.commit(o)
		n := 0
		_ = base.Scan(nil, nil, func(k, v []byte) error {
			n++
			if want[string(k)] != string(v) {
				t.Fatalf("seed %d: committed %s=%s, want %q", seed, k, v, want[string(k)])
			}
			return nil
		})
		if n != len(want) {
			t.Fatalf("seed %d: %d keys committed, want %d", seed, n, len(want))
		}
	}
}

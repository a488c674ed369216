package oplog

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
)

// randVV draws a vector over a small pool of replicas, so vectors share
// entries often, with some zero entries to test that they equal absence.
func randVV(rng *rand.Rand, pool []ReplicaID) VersionVector {
	v := VersionVector{}
	for _, r := range pool {
		switch rng.IntN(4) {
		case 0: // absent
		case 1:
			v[r] = 0
		default:
			v[r] = rng.Uint64N(6)
		}
	}
	return v
}

func replicaPool(rng *rand.Rand, n int) []ReplicaID {
	pool := make([]ReplicaID, n)
	for i := range pool {
		for j := range pool[i] {
			pool[i][j] = byte(rng.Uint32())
		}
	}
	return pool
}

// leq reports whether a <= b pointwise, by definition.
func leq(a, b VersionVector) bool {
	for r, s := range a {
		if s > b[r] {
			return false
		}
	}
	return true
}

func TestVersionVectorAlgebra(t *testing.T) {
	rng := newRand(t)
	pool := replicaPool(rng, 4)
	for i := range 3000 {
		a, b, c := randVV(rng, pool), randVV(rng, pool), randVV(rng, pool)
		fail := func(what string) { t.Fatalf("case %d: %s\na=%v\nb=%v\nc=%v", i, what, a, b, c) }
		if !a.Merge(b).Equal(b.Merge(a)) {
			fail("merge not commutative")
		}
		if !a.Merge(b).Merge(c).Equal(a.Merge(b.Merge(c))) {
			fail("merge not associative")
		}
		if !a.Merge(a).Equal(a) {
			fail("merge not idempotent")
		}
		if !a.Min(b).Equal(b.Min(a)) || !a.Min(b).Min(c).Equal(a.Min(b.Min(c))) || !a.Min(a).Equal(a) {
			fail("min not commutative, associative and idempotent")
		}
		if !MinOf(a, b, c).Equal(a.Min(b).Min(c)) {
			fail("MinOf differs from folded Min")
		}
		// Absorption: the lattice laws tie Merge and Min together.
		if !a.Merge(a.Min(b)).Equal(a) || !a.Min(a.Merge(b)).Equal(a) {
			fail("absorption")
		}
		m, n := a.Merge(b), a.Min(b)
		if !leq(a, m) || !leq(b, m) || !leq(n, a) || !leq(n, b) {
			fail("merge is not an upper bound or min not a lower bound")
		}
		for r := range m {
			if m[r] != max(a[r], b[r]) || n[r] != min(a[r], b[r]) {
				fail("not pointwise")
			}
		}
		// Compare agrees with the pointwise order and is antisymmetric.
		var want Ordering
		switch ab, ba := leq(a, b), leq(b, a); {
		case ab && ba:
			want = Equal
		case ab:
			want = Before
		case ba:
			want = After
		default:
			want = Concurrent
		}
		if got := a.Compare(b); got != want {
			fail("Compare = " + got.String() + ", want " + want.String())
		}
		if inv := map[Ordering]Ordering{Equal: Equal, Before: After, After: Before, Concurrent: Concurrent}; b.Compare(a) != inv[want] {
			fail("Compare not antisymmetric")
		}
		if a.Merge(b).Compare(a) == Before || a.Min(b).Compare(a) == After {
			fail("merge below or min above an operand")
		}
		// Covers follows the entries.
		for _, r := range pool {
			if !a.Covers(r, a[r]) || a.Covers(r, a[r]+1) {
				fail("Covers disagrees with the entry")
			}
		}
		// Merge and Min leave their operands alone.
		before := a.Append(nil)
		a.Merge(b)
		a.Min(c)
		if !bytes.Equal(before, a.Append(nil)) {
			fail("operand modified")
		}
	}
}

func TestVersionVectorAdvance(t *testing.T) {
	r := NewReplicaID()
	v := VersionVector{}
	if v.Covers(r, 1) || !v.Covers(r, 0) {
		t.Fatal("empty vector covers op 1 or misses op 0")
	}
	if v.Advance(r, 2) || v[r] != 0 {
		t.Fatal("advance over a gap accepted")
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if !v.Advance(r, seq) || v[r] != seq {
			t.Fatalf("advance to %d: vector %v", seq, v)
		}
	}
	if !v.Advance(r, 2) || v[r] != 3 {
		t.Fatal("a duplicate is not reported as covered, or moved the vector back")
	}
	if !v.Covers(r, 3) || v.Covers(r, 4) {
		t.Fatal("Covers after Advance")
	}
}

func TestVersionVectorEncoding(t *testing.T) {
	rng := newRand(t)
	pool := replicaPool(rng, 6)
	for i := range 2000 {
		v := randVV(rng, pool)
		if i%7 == 0 {
			for _, r := range pool[:2] {
				v[r] = rng.Uint64() // large values
			}
		}
		enc := v.Append([]byte("prefix"))[len("prefix"):]
		got, n, err := DecodeVersionVector(append(enc, "trailing"...))
		if err != nil || n != len(enc) || !got.Equal(v) {
			t.Fatalf("case %d: decode(%x) = %v, %d, %v; want %v, %d", i, enc, got, n, err, v, len(enc))
		}
		// Determinism: equal vectors (however built) encode alike.
		if !bytes.Equal(v.Clone().Append(nil), enc) {
			t.Fatalf("case %d: clone encodes differently", i)
		}
		for cut := range len(enc) {
			if _, _, err := DecodeVersionVector(enc[:cut]); !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("case %d: truncated to %d: %v", i, cut, err)
			}
		}
	}
	if b := (VersionVector{}).Append(nil); len(b) != 1 || b[0] != 0 {
		t.Fatalf("empty vector encodes as %x", b)
	}
}

func TestVersionVectorDecodeRefusesNonCanonical(t *testing.T) {
	lo, hi := ReplicaID{1}, ReplicaID{2}
	entry := func(r ReplicaID, seq ...byte) []byte { return append(r[:], seq...) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := map[string][]byte{
		"unsorted":        cat([]byte{2}, entry(hi, 1), entry(lo, 1)),
		"duplicate":       cat([]byte{2}, entry(lo, 1), entry(lo, 2)),
		"zero seq":        cat([]byte{1}, entry(lo, 0)),
		"overlong seq":    cat([]byte{1}, entry(lo, 0x81, 0x00)),
		"overlong count":  cat([]byte{0x81, 0x00}, entry(lo, 1)),
		"huge count":      {0xff, 0xff, 0xff, 0xff, 0x0f},
		"count past data": cat([]byte{2}, entry(lo, 1)),
		"empty":           {},
		"bad varint":      cat([]byte{1}, entry(lo, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)),
	}
	for name, b := range cases {
		if v, _, err := DecodeVersionVector(b); !errors.Is(err, errs.ErrCorruption) {
			t.Errorf("%s: got %v, %v; want ErrCorruption", name, v, err)
		}
	}
}

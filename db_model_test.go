package pluresdb

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/vfs"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomized tests (0: time-based)")

func testSeed(t *testing.T) uint64 {
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -seed %d)", s, s)
	return s
}

// model is the reference the engine is checked against: a map, plus the
// snapshots taken of it.
type model map[string]string

func (m model) clone() model {
	c := make(model, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (m model) rangeKeys(lower, upper []byte) []string {
	var ks []string
	for k := range m {
		if lower != nil && k < string(lower) {
			continue
		}
		if upper != nil && k >= string(upper) {
			continue
		}
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

type modelSnap struct {
	s *Snapshot
	m model
}

// TestModel runs random operations on the engine and on a map and compares
// every read: puts, deletes, batches, bounded iterators and seeks,
// snapshots, flushes, compactions and reopens.
func TestModel(t *testing.T) {
	for _, onDisk := range []bool{false, true} {
		t.Run(fmt.Sprintf("disk=%v", onDisk), func(t *testing.T) {
			seed := testSeed(t)
			rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
			opts := &Options{MemtableSize: 1 << 20, L0CompactionThreshold: 3, TargetFileSize: 256 << 10, NoSync: true}
			dir := t.TempDir()
			if !onDisk {
				opts.FS = vfs.NewMem()
				dir = "/db"
			}
			db, err := Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { db.Close() }()
			m := model{}
			var snaps []modelSnap
			key := func() []byte { return fmt.Appendf(nil, "k%05d", rng.IntN(3000)) }
			val := func() []byte {
				v := make([]byte, rng.IntN(300))
				for i := range v {
					v[i] = byte('a' + rng.IntN(26))
				}
				return v
			}
			ops := 20000
			if testing.Short() {
				ops = 4000
			}
			for op := range ops {
				switch r := rng.IntN(1000); {
				case r < 450:
					k, v := key(), val()
					if err := db.Put(k, v); err != nil {
						t.Fatalf("op %d put: %v", op, err)
					}
					m[string(k)] = string(v)
				case r < 550:
					k := key()
					if err := db.Delete(k); err != nil {
						t.Fatalf("op %d delete: %v", op, err)
					}
					delete(m, string(k))
				case r < 600:
					b := db.NewBatch()
					pending := model{}
					deleted := map[string]bool{}
					for range rng.IntN(20) + 1 {
						k := key()
						if rng.IntN(4) == 0 {
							b.Delete(k)
							delete(pending, string(k))
							deleted[string(k)] = true
						} else {
							v := val()
							b.Put(k, v)
							pending[string(k)] = string(v)
							delete(deleted, string(k))
						}
					}
					if err := b.Commit(nil); err != nil {
						t.Fatalf("op %d batch: %v", op, err)
					}
					for k := range deleted {
						delete(m, k)
					}
					for k, v := range pending {
						m[k] = v
					}
				case r < 850:
					k := key()
					got, err := db.Get(k)
					want, ok := m[string(k)]
					checkGet(t, op, k, got, err, want, ok)
				case r < 900:
					checkIter(t, rng, op, db.NewIter, m, key)
				case r < 920:
					if len(snaps) < 4 {
						snaps = append(snaps, modelSnap{db.NewSnapshot(), m.clone()})
					} else {
						i := rng.IntN(len(snaps))
						snaps[i].s.Close()
						snaps = slices.Delete(snaps, i, i+1)
					}
				case r < 960:
					if len(snaps) > 0 {
						sn := snaps[rng.IntN(len(snaps))]
						k := key()
						got, err := sn.s.Get(k)
						want, ok := sn.m[string(k)]
						checkGet(t, op, k, got, err, want, ok)
						checkIter(t, rng, op, sn.s.NewIter, sn.m, key)
					}
				case r < 975:
					if err := db.Flush(); err != nil {
						t.Fatalf("op %d flush: %v", op, err)
					}
				case r < 985:
					lo, hi := key(), key()
					if bytes.Compare(lo, hi) > 0 {
						lo, hi = hi, lo
					}
					if err := db.Compact(lo, hi); err != nil {
						t.Fatalf("op %d compact: %v", op, err)
					}
				default:
					for _, sn := range snaps {
						sn.s.Close()
					}
					snaps = nil
					if err := db.Close(); err != nil {
						t.Fatalf("op %d close: %v", op, err)
					}
					if db, err = Open(dir, opts); err != nil {
						t.Fatalf("op %d reopen: %v", op, err)
					}
				}
			}
			// A final full comparison.
			it := db.NewIter(nil, nil)
			want := m.rangeKeys(nil, nil)
			i := 0
			for ok := it.First(); ok; ok = it.Next() {
				if i >= len(want) || string(it.Key()) != want[i] || string(it.Value()) != m[want[i]] {
					t.Fatalf("full scan: at %d got %q", i, it.Key())
				}
				i++
			}
			if err := it.Close(); err != nil || i != len(want) {
				t.Fatalf("full scan: %d of %d keys, %v", i, len(want), err)
			}
			for _, sn := range snaps {
				sn.s.Close()
			}
		})
	}
}

func checkGet(t *testing.T, op int, k, got []byte, err error, want string, ok bool) {
	t.Helper()
	switch {
	case ok && err != nil:
		t.Fatalf("op %d get %q: %v, want %q", op, k, err, want)
	case ok && string(got) != want:
		t.Fatalf("op %d get %q = %q, want %q", op, k, got, want)
	case !ok && !errors.Is(err, ErrNotFound):
		t.Fatalf("op %d get %q = %q, %v; want ErrNotFound", op, k, got, err)
	}
}

func checkIter(t *testing.T, rng *rand.Rand, op int, newIter func(lo, hi []byte) *Iter, m model, key func() []byte) {
	t.Helper()
	var lo, hi []byte
	if rng.IntN(3) > 0 {
		lo = key()
	}
	if rng.IntN(3) > 0 {
		hi = key()
	}
	it := newIter(lo, hi)
	defer it.Close()
	want := m.rangeKeys(lo, hi)
	switch rng.IntN(3) {
	case 0:
		walkIter(t, rng, op, it, lo, hi, m, want, key)
		return
	case 1:
		checkIterBackward(t, rng, op, it, lo, hi, m, want, key)
		return
	}
	var ok bool
	start := 0
	if rng.IntN(2) == 0 {
		ok = it.First()
	} else {
		sk := key()
		ok = it.SeekGE(sk)
		start, _ = slices.BinarySearch(want, string(sk))
	}
	i := start
	for ; ok; ok = it.Next() {
		if i >= len(want) {
			t.Fatalf("op %d iter [%q,%q): extra key %q", op, lo, hi, it.Key())
		}
		if string(it.Key()) != want[i] || string(it.Value()) != m[want[i]] {
			t.Fatalf("op %d iter [%q,%q): at %d got %q=%q, want %q=%q", op, lo, hi, i, it.Key(), it.Value(), want[i], m[want[i]])
		}
		i++
		if i-start > 200 && rng.IntN(2) == 0 {
			return // a partial scan is enough most of the time
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("op %d iter: %v", op, err)
	}
	if i != len(want) {
		t.Fatalf("op %d iter [%q,%q): stopped at %d of %d keys", op, lo, hi, i, len(want))
	}
}

// checkIterBackward walks the range from Last or SeekLT down with Prev.
func checkIterBackward(t *testing.T, rng *rand.Rand, op int, it *Iter, lo, hi []byte, m model, want []string, key func() []byte) {
	t.Helper()
	var ok bool
	i := len(want) - 1
	if rng.IntN(2) == 0 {
		ok = it.Last()
	} else {
		sk := key()
		ok = it.SeekLT(sk)
		j, _ := slices.BinarySearch(want, string(sk))
		i = j - 1
	}
	start := i
	for ; ok; ok = it.Prev() {
		if i < 0 {
			t.Fatalf("op %d backward iter [%q,%q): extra key %q", op, lo, hi, it.Key())
		}
		if string(it.Key()) != want[i] || string(it.Value()) != m[want[i]] {
			t.Fatalf("op %d backward iter [%q,%q): at %d got %q=%q, want %q=%q", op, lo, hi, i, it.Key(), it.Value(), want[i], m[want[i]])
		}
		i--
		if start-i > 200 && rng.IntN(2) == 0 {
			return
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("op %d backward iter: %v", op, err)
	}
	if i != -1 {
		t.Fatalf("op %d backward iter [%q,%q): stopped at %d of %d keys", op, lo, hi, i, len(want))
	}
}

// walkIter drives it with a random mix of First, Last, SeekGE, SeekLT, Next
// and Prev, switching direction at random, against want.
func walkIter(t *testing.T, rng *rand.Rand, op int, it *Iter, lo, hi []byte, m model, want []string, key func() []byte) {
	t.Helper()
	pos := -1
	var ops []string
	for range 100 {
		var ok bool
		switch r := rng.IntN(10); {
		case r == 0:
			ops = append(ops, "First")
			ok, pos = it.First(), 0
		case r == 1:
			ops = append(ops, "Last")
			ok, pos = it.Last(), len(want)-1
		case r == 2 || r == 3:
			sk := key()
			i, _ := slices.BinarySearch(want, string(sk))
			if r == 2 {
				ops = append(ops, fmt.Sprintf("SeekGE(%q)", sk))
				ok, pos = it.SeekGE(sk), i
			} else {
				ops = append(ops, fmt.Sprintf("SeekLT(%q)", sk))
				ok, pos = it.SeekLT(sk), i-1
			}
		case r < 7:
			ops = append(ops, "Next")
			ok = it.Next()
			if pos >= 0 {
				pos++
			}
		default:
			ops = append(ops, "Prev")
			ok = it.Prev()
			if pos >= 0 {
				pos--
			}
		}
		if pos >= len(want) {
			pos = -1
		}
		if len(ops) > 10 {
			ops = ops[1:]
		}
		if err := it.Err(); err != nil {
			t.Fatalf("op %d walk [%q,%q) after %v: %v", op, lo, hi, ops, err)
		}
		if ok != (pos >= 0) || it.Valid() != ok {
			t.Fatalf("op %d walk [%q,%q) after %v: ok %v Valid %v, want %v", op, lo, hi, ops, ok, it.Valid(), pos >= 0)
		}
		if pos >= 0 && (string(it.Key()) != want[pos] || string(it.Value()) != m[want[pos]]) {
			t.Fatalf("op %d walk [%q,%q) after %v: at %q=%q, want %q=%q", op, lo, hi, ops, it.Key(), it.Value(), want[pos], m[want[pos]])
		}
	}
}

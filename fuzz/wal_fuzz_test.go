package fuzz

import (
	"errors"
	"io"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/wal"
)

// validSegment returns the bytes of a segment holding recs.
func validSegment(tb testing.TB, recs ...[]byte) []byte {
	fs := vfs.NewMem()
	w, err := wal.Create(wal.Options{FS: fs, Dir: "/"}, 1)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range recs {
		w.Append(r, false)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	f, _ := fs.Open(layout.Path("/", layout.TypeLog, 1))
	defer f.Close()
	b, _ := io.ReadAll(f)
	return b
}

// FuzzWALSegment replays arbitrary bytes as the only (so last) segment, and
// as a middle one, with and without Salvage: no panic, and every error is
// a corruption or newer-format error. A replay that succeeded leaves a
// segment that replays cleanly again.
func FuzzWALSegment(f *testing.F) {
	f.Add(validSegment(f))
	f.Add(validSegment(f, []byte("a"), []byte("bc")))
	f.Add(validSegment(f, make([]byte, 40000), []byte("tail")))
	f.Add([]byte("PLURWAL\x00"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, salvage := range []bool{false, true} {
			for _, middle := range []bool{false, true} {
				fs := vfs.NewMem()
				seg, err := fs.Create(layout.Path("/", layout.TypeLog, 1))
				if err != nil {
					t.Fatal(err)
				}
				seg.Write(data)
				seg.Close()
				nums := []layout.FileNum{1}
				if middle {
					good, _ := fs.Create(layout.Path("/", layout.TypeLog, 2))
					good.Write(validSegment(t, []byte("after")))
					good.Close()
					nums = append(nums, 2)
				}
				opts := wal.RecoverOptions{FS: fs, Dir: "/", Salvage: salvage}
				n := 0
				_, err = wal.Replay(opts, nums, func(layout.FileNum, []byte) error { n++; return nil })
				if err != nil {
					if !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
						t.Fatalf("salvage=%v middle=%v: unexpected error %v", salvage, middle, err)
					}
					if salvage && errors.Is(err, errs.ErrCorruption) {
						t.Fatalf("salvage returned corruption: %v", err)
					}
					continue
				}
				// Recovery repaired whatever it accepted.
				m := 0
				res, err := wal.Replay(wal.RecoverOptions{FS: fs, Dir: "/"}, nums, func(layout.FileNum, []byte) error { m++; return nil })
				if err != nil || m != n || res.TornTail || len(res.Dropped) != 0 {
					t.Fatalf("salvage=%v middle=%v: second replay %d/%d records, %+v, %v", salvage, middle, m, n, res, err)
				}
			}
		}
	})
}

package fuzz

import (
	"errors"
	"testing"

	"github.com/plures/pluresdb/internal/archive"
	"github.com/plures/pluresdb/internal/errs"
)

// FuzzArchiveFile decodes arbitrary bytes as an op-log archive file: an
// error wraps ErrCorruption or ErrNewerFormat; an accepted file has one
// position per operation (or none, version 1), rising strictly, and
// encodes back into a file that decodes to the same positions.
func FuzzArchiveFile(f *testing.F) {
	stream := oplogSeedStream(f, true, nil)
	ops := oplogSeedOps()
	pos := make([]archive.Position, len(ops))
	for i, op := range ops {
		pos[i] = archive.Position{Seq: op.Seq}
	}
	good := archive.Encode(stream, pos, make([]archive.Class, len(pos)))
	f.Add(good)
	f.Add(good[:len(good)-9])
	f.Add(stream)
	f.Add(archive.Encode(stream, pos, []archive.Class{archive.Logged, archive.Filtered, archive.Repeat, archive.Logged, archive.Logged}))
	f.Add([]byte(archive.Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := archive.Decode("fuzz.oparc", data)
		if err != nil {
			if !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
				t.Fatalf("error %v wraps neither ErrCorruption nor ErrNewerFormat", err)
			}
			return
		}
		if a.Version == 1 {
			if a.Pos != nil {
				t.Fatal("a version 1 archive with positions")
			}
			return
		}
		if len(a.Pos) != len(a.Stream.Ops) || a.Classes != nil && len(a.Classes) != len(a.Pos) {
			t.Fatalf("%d positions, %d classes for %d operations", len(a.Pos), len(a.Classes), len(a.Stream.Ops))
		}
		classes := a.Classes
		if classes == nil {
			classes = make([]archive.Class, len(a.Pos))
		}
		again, err := archive.Decode("again.oparc", archive.Encode(data[a.StreamOffset:a.StreamOffset+a.StreamLen], a.Pos, classes))
		if err != nil || len(again.Pos) != len(a.Pos) {
			t.Fatalf("re-encoded archive: %v", err)
		}
		for i := range a.Pos {
			if again.Pos[i] != a.Pos[i] || again.Class(i) != a.Class(i) {
				t.Fatalf("position %d: %v/%d, want %v/%d", i, again.Pos[i], again.Class(i), a.Pos[i], a.Class(i))
			}
		}
	})
}

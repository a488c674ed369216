package fuzz

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
)

func fuzzMeta(num layout.FileNum, lo, hi string, seq lsm.SeqNum) *lsm.FileMeta {
	return &lsm.FileMeta{
		Num: num, Size: 1000,
		Smallest:    lsm.MakeInternalKey([]byte(lo), seq, lsm.KindSet),
		Largest:     lsm.MakeInternalKey([]byte(hi), seq, lsm.KindSet),
		SmallestSeq: seq, LargestSeq: seq, NumEntries: 2,
	}
}

// seedEdits are the edits of the seed manifests.
func seedEdits() []*lsm.VersionEdit {
	return []*lsm.VersionEdit{
		{NewFiles: []lsm.NewFile{{Level: 0, Meta: fuzzMeta(5, "a", "k", 3)}}, LastSeq: 3, HasLastSeq: true},
		{NewFiles: []lsm.NewFile{{Level: 0, Meta: fuzzMeta(6, "c", "z", 7)}}, LogNum: 4, HasLogNum: true},
		{
			DeletedFiles: []lsm.DeletedFile{{Level: 0, Num: 5}, {Level: 0, Num: 6}},
			NewFiles:     []lsm.NewFile{{Level: 1, Meta: fuzzMeta(7, "a", "f", 7)}, {Level: 1, Meta: fuzzMeta(8, "g", "z", 7)}},
		},
		{DeletedFiles: []lsm.DeletedFile{{Level: 1, Num: 8}}, NewFiles: []lsm.NewFile{{Level: 2, Meta: fuzzMeta(8, "g", "z", 7)}}},
	}
}

// seedManifest returns the bytes of a manifest written by the engine after
// the first n seed edits.
func seedManifest(tb testing.TB, n int) []byte {
	fs := vfs.NewMem()
	vs, err := lsm.CreateVersionSet(lsm.VersionSetOptions{FS: fs, Dir: "db"})
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range seedEdits()[:n] {
		if err := vs.LogAndApply(e); err != nil {
			tb.Fatal(err)
		}
	}
	name := layout.Path("db", layout.TypeManifest, vs.ManifestNum())
	vs.Close()
	f, err := fs.Open(name)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzVersionEdit decodes arbitrary bytes as a version edit: an error wraps
// ErrCorruption; a decoded edit survives an encode/decode round trip.
func FuzzVersionEdit(f *testing.F) {
	for _, e := range seedEdits() {
		f.Add(e.Encode(nil))
	}
	f.Add((&lsm.VersionEdit{LogNum: 1, HasLogNum: true, NextFileNum: 9, HasNextFileNum: true, LastSeq: 1 << 40, HasLastSeq: true}).Encode(nil))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := lsm.DecodeVersionEdit(data, "MANIFEST-000009", 16)
		if err != nil {
			var ce *errs.CorruptionError
			if !errors.As(err, &ce) || ce.File != "MANIFEST-000009" || ce.Offset != 16 {
				t.Fatalf("error %v is not a corruption error naming the record", err)
			}
			return
		}
		enc := e.Encode(nil)
		e2, err := lsm.DecodeVersionEdit(enc, "re-encoded", 0)
		if err != nil {
			t.Fatalf("re-encoded edit does not decode: %v", err)
		}
		if !bytes.Equal(e2.Encode(nil), enc) || !reflect.DeepEqual(len(e2.NewFiles), len(e.NewFiles)) {
			t.Fatal("encode/decode round trip is not stable")
		}
	})
}

// FuzzManifest loads arbitrary bytes as the manifest CURRENT names: no
// panic or hang; an error wraps ErrCorruption or ErrNewerFormat; a set that
// loads is well formed and loads again to the same version (the load wrote
// a fresh manifest).
func FuzzManifest(f *testing.F) {
	for n := range len(seedEdits()) + 1 {
		m := seedManifest(f, n)
		f.Add(m)
		f.Add(m[:len(m)-3])
	}
	f.Add([]byte("PLURMAN\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := vfs.NewMem()
		fs.MkdirAll("db")
		for name, b := range map[string][]byte{"db/MANIFEST-000001": data, "db/CURRENT": []byte("MANIFEST-000001\n")} {
			w, err := fs.Create(name)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(b)
			w.Close()
		}
		opts := lsm.VersionSetOptions{FS: fs, Dir: "db"}
		vs, err := lsm.LoadVersionSet(opts)
		if err != nil {
			if !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
				t.Fatalf("error %v is neither corruption nor newer format", err)
			}
			return
		}
		v := vs.Current()
		first := describe(v)
		for level := 1; level < lsm.NumLevels; level++ {
			files := v.Levels[level]
			for i := 1; i < len(files); i++ {
				if bytes.Compare(lsm.UserKey(files[i-1].Largest), lsm.UserKey(files[i].Smallest)) >= 0 {
					t.Fatalf("L%d tables overlap after load", level)
				}
			}
		}
		v.Unref()
		if err := vs.LogAndApply(&lsm.VersionEdit{}); err != nil {
			t.Fatalf("LogAndApply after load: %v", err)
		}
		vs.Close()
		vs, err = lsm.LoadVersionSet(opts)
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
		v = vs.Current()
		if again := describe(v); again != first {
			t.Fatalf("reload changed the version:\n%s\n%s", first, again)
		}
		v.Unref()
		vs.Close()
	})
}

func describe(v *lsm.Version) string {
	var b bytes.Buffer
	for level, files := range v.Levels {
		for _, f := range files {
			b.WriteString(layout.Name(layout.TypeTable, f.Num))
			b.WriteByte(byte('0' + level))
			b.Write(f.Smallest)
			b.Write(f.Largest)
		}
	}
	return b.String()
}

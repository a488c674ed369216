package lsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
)

// versionSeed seeds the randomized tests of manifest, version set, table
// cache and level iterator.
var versionSeed = flag.Uint64("versionseed", 1, "seed for the manifest/version randomized tests")

func newVersionRand(t testing.TB) *rand.Rand {
	t.Logf("seed %d (rerun with -versionseed=%d)", *versionSeed, *versionSeed)
	return rand.New(rand.NewPCG(*versionSeed, 0x9e3779b97f4a7c15))
}

// meta returns table metadata spanning user keys [lo, hi] and seqs
// [seqLo, seqHi].
func meta(num layout.FileNum, lo, hi string, seqLo, seqHi SeqNum) *FileMeta {
	return &FileMeta{
		Num:          num,
		Size:         uint64(num) * 100,
		Smallest:     MakeInternalKey([]byte(lo), seqHi, KindSet),
		Largest:      MakeInternalKey([]byte(hi), seqLo, KindSet),
		SmallestSeq:  seqLo,
		LargestSeq:   seqHi,
		NumEntries:   uint64(num) * 3,
		NumDeletions: uint64(num),
	}
}

func fullEdit() *VersionEdit {
	return &VersionEdit{
		LogNum: 7, HasLogNum: true,
		NextFileNum: 1 << 40, HasNextFileNum: true,
		LastSeq: MaxSeqNum, HasLastSeq: true,
		NewFiles: []NewFile{
			{Level: 0, Meta: meta(9, "a", "m", 3, 9)},
			{Level: NumLevels - 1, Meta: meta(1<<33, "", "\xff\xff", 0, MaxSeqNum)},
			{Level: NumLevels - 2, Meta: func() *FileMeta { m := meta(12, "n", "p", 1, 2); m.Cold = true; return m }()},
		},
		DeletedFiles: []DeletedFile{{Level: 3, Num: 4}, {Level: 0, Num: 1 << 50}},
	}
}

func TestVersionEditRoundTrip(t *testing.T) {
	rng := newVersionRand(t)
	edits := []*VersionEdit{{}, fullEdit()}
	for range 200 {
		e := &VersionEdit{}
		if rng.IntN(2) == 0 {
			e.LogNum, e.HasLogNum = layout.FileNum(rng.Uint64()), true
		}
		if rng.IntN(2) == 0 {
			e.NextFileNum, e.HasNextFileNum = layout.FileNum(rng.Uint64()), true
		}
		if rng.IntN(2) == 0 {
			e.LastSeq, e.HasLastSeq = SeqNum(rng.Uint64N(uint64(MaxSeqNum)+1)), true
		}
		for range rng.IntN(5) {
			e.DeletedFiles = append(e.DeletedFiles, DeletedFile{Level: rng.IntN(NumLevels), Num: layout.FileNum(rng.Uint64())})
		}
		for range rng.IntN(5) {
			lo := randKey(rng)
			hi := lo + randKey(rng)
			s1, s2 := SeqNum(rng.Uint64N(1000)), SeqNum(rng.Uint64N(1000))
			m := meta(layout.FileNum(rng.Uint64N(1<<40)+1), lo, hi, min(s1, s2), max(s1, s2))
			e.NewFiles = append(e.NewFiles, NewFile{Level: rng.IntN(NumLevels), Meta: m})
		}
		edits = append(edits, e)
	}
	for i, e := range edits {
		enc := e.Encode(nil)
		got, err := DecodeVersionEdit(enc, "MANIFEST-000001", 16)
		if err != nil {
			t.Fatalf("edit %d: %v", i, err)
		}
		normalizeEdit(e)
		normalizeEdit(got)
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("edit %d: round trip\n got %+v\nwant %+v", i, got, e)
		}
		// The decoded edit must not alias the input.
		for j := range enc {
			enc[j] = 0xee
		}
		for _, nf := range got.NewFiles {
			if bytes.Contains(nf.Meta.Smallest, []byte{0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee}) {
				t.Fatalf("edit %d: decoded key aliases the record buffer", i)
			}
		}
	}
}

func randKey(rng *rand.Rand) string {
	b := make([]byte, rng.IntN(12))
	for i := range b {
		b[i] = byte('a' + rng.IntN(26))
	}
	return string(b)
}

// normalizeEdit makes nil and empty slices compare equal and drops slice
// capacities, so DeepEqual compares contents.
func normalizeEdit(e *VersionEdit) {
	if len(e.NewFiles) == 0 {
		e.NewFiles = nil
	}
	if len(e.DeletedFiles) == 0 {
		e.DeletedFiles = nil
	}
	for _, nf := range e.NewFiles {
		nf.Meta.Smallest = bytes.Clone(nf.Meta.Smallest)
		nf.Meta.Largest = bytes.Clone(nf.Meta.Largest)
	}
}

func TestDecodeVersionEditTruncated(t *testing.T) {
	enc := fullEdit().Encode(nil)
	for n := range len(enc) {
		e, err := DecodeVersionEdit(enc[:n], "M", 100)
		if err != nil {
			if !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("prefix %d: error %v does not wrap ErrCorruption", n, err)
			}
			var ce *errs.CorruptionError
			if !errors.As(err, &ce) || ce.File != "M" || ce.Offset != 100 {
				t.Fatalf("prefix %d: error %v does not name file and offset", n, err)
			}
			continue
		}
		// A prefix that ends between two fields is a smaller valid edit;
		// the encoding is canonical, so it re-encodes to the same bytes.
		if re := e.Encode(nil); !bytes.Equal(re, enc[:n]) {
			t.Fatalf("prefix %d decoded to an edit that encodes differently", n)
		}
	}
}

func TestDecodeVersionEditGarbled(t *testing.T) {
	uv := func(vs ...uint64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.AppendUvarint(b, v)
		}
		return b
	}
	ik := MakeInternalKey([]byte("k"), 1, KindSet)
	newFile := func(level uint64, smallest, largest []byte, s1, s2 uint64) []byte {
		b := uv(tagNewFile, level, 5, 100, uint64(len(smallest)))
		b = append(b, smallest...)
		b = append(b, uv(uint64(len(largest)))...)
		b = append(b, largest...)
		return append(b, uv(s1, s2, 1, 0)...)
	}
	cases := map[string][]byte{
		"unknown tag":        uv(99, 1),
		"tag zero":           uv(0),
		"varint overflow":    bytes.Repeat([]byte{0xff}, 11),
		"level out of range": uv(tagDeletedFile, NumLevels, 3),
		"huge key length":    append(uv(tagNewFile, 0, 5, 100), uv(1<<62)...),
		"key overruns":       append(uv(tagNewFile, 0, 5, 100, 50), 'a', 'b'),
		"short key":          newFile(0, []byte("abc"), ik, 1, 1),
		"smallest > largest": newFile(0, MakeInternalKey([]byte("z"), 1, KindSet), ik, 1, 1),
		"seqs reversed":      newFile(0, ik, ik, 5, 1),
		"seq too large":      newFile(0, ik, ik, 1, uint64(MaxSeqNum)+1),
		"file number zero":   append(uv(tagNewFile, 0, 0, 1, uint64(len(ik))), append(append(ik, uv(uint64(len(ik)))...), append(ik, uv(1, 1, 1, 0)...)...)...),
		"LogNum twice":       uv(tagLogNum, 1, tagLogNum, 2),
		"LastSeq too large":  uv(tagLastSeq, uint64(MaxSeqNum)+1),
	}
	for name, b := range cases {
		if _, err := DecodeVersionEdit(b, "MANIFEST-000003", 42); !errors.Is(err, errs.ErrCorruption) {
			t.Errorf("%s: got %v, want ErrCorruption", name, err)
		} else if !strings.Contains(err.Error(), "MANIFEST-000003") {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
	}
	// Control: the well-formed version of the helper decodes.
	if _, err := DecodeVersionEdit(newFile(0, ik, ik, 1, 1), "M", 0); err != nil {
		t.Fatalf("well-formed new file: %v", err)
	}

	// Random damage: never a panic; an error is always ErrCorruption.
	rng := newVersionRand(t)
	enc := fullEdit().Encode(nil)
	for range 5000 {
		b := bytes.Clone(enc)
		for range 1 + rng.IntN(4) {
			b[rng.IntN(len(b))] = byte(rng.Uint32())
		}
		if _, err := DecodeVersionEdit(b, "M", 0); err != nil && !errors.Is(err, errs.ErrCorruption) {
			t.Fatalf("error %v does not wrap ErrCorruption", err)
		}
	}
}

func TestManifestHeader(t *testing.T) {
	h := manifestHeader()
	if err := checkManifestHeader(h, "M"); err != nil {
		t.Fatalf("valid header: %v", err)
	}
	withVersion := func(v uint32) []byte {
		b := bytes.Clone(h)
		binary.LittleEndian.PutUint32(b[8:12], v)
		binary.LittleEndian.PutUint32(b[12:16], uint32(xxhash.Sum64(b[:12])))
		return b
	}
	if err := checkManifestHeader(withVersion(manifestVersion+1), "M"); !errors.Is(err, errs.ErrNewerFormat) {
		t.Fatalf("version %d: got %v, want ErrNewerFormat", manifestVersion+1, err)
	}
	for v := uint32(1); v <= manifestVersion; v++ {
		if err := checkManifestHeader(withVersion(v), "M"); err != nil {
			t.Fatalf("version %d: %v", v, err)
		}
	}
	if err := checkManifestHeader(withVersion(0), "M"); !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("version 0: got %v, want ErrCorruption", err)
	}
	for i := range h {
		b := bytes.Clone(h)
		b[i] ^= 0x10
		if err := checkManifestHeader(b, "M"); !errors.Is(err, errs.ErrCorruption) {
			t.Fatalf("flipped header byte %d: got %v, want ErrCorruption", i, err)
		}
	}
	if err := checkManifestHeader(h[:15], "M"); !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("short header: got %v", err)
	}
}

// manifestImage is a manifest built by a sequence of edits, with the
// state after each edit and where each record starts.
type manifestImage struct {
	bytes   []byte
	starts  []int64       // file offset of each record after the snapshot
	states  []versionDump // state after the snapshot and after each edit
	lastSeq []SeqNum
}

// versionDump is a comparable picture of a version: per level, the table
// numbers in order.
type versionDump [NumLevels][]layout.FileNum

func dump(v *Version) versionDump {
	var d versionDump
	for level := range v.Levels {
		for _, f := range v.Levels[level] {
			d[level] = append(d[level], f.Num)
		}
	}
	return d
}

func (d versionDump) String() string {
	var sb strings.Builder
	for level, nums := range d {
		if len(nums) > 0 {
			fmt.Fprintf(&sb, "L%d%v ", level, nums)
		}
	}
	return sb.String()
}

// buildManifestImage applies a fixed series of edits to a new set on a
// MemFS and returns the resulting manifest.
func buildManifestImage(t *testing.T) manifestImage {
	t.Helper()
	fs := vfs.NewMem()
	vs, err := CreateVersionSet(VersionSetOptions{FS: fs, Dir: "db"})
	if err != nil {
		t.Fatal(err)
	}
	img := manifestImage{}
	record := func() {
		v := vs.Current()
		img.states = append(img.states, dump(v))
		img.lastSeq = append(img.lastSeq, vs.LastSeq())
		v.Unref()
	}
	record()
	edits := []*VersionEdit{
		{NewFiles: []NewFile{{Level: 0, Meta: meta(vs.NewFileNum(), "a", "f", 1, 10)}}},
		{NewFiles: []NewFile{{Level: 0, Meta: meta(vs.NewFileNum(), "c", "k", 11, 20)}}, LastSeq: 20, HasLastSeq: true},
		{
			DeletedFiles: []DeletedFile{{Level: 0, Num: 2}, {Level: 0, Num: 3}},
			NewFiles: []NewFile{
				{Level: 1, Meta: meta(vs.NewFileNum(), "a", "d", 1, 20)},
				{Level: 1, Meta: meta(vs.NewFileNum(), "e", "k", 1, 20)},
			},
		},
		{LogNum: 9, HasLogNum: true, NewFiles: []NewFile{{Level: 0, Meta: meta(vs.NewFileNum(), "b", "z", 21, 30)}}, LastSeq: 30, HasLastSeq: true},
	}
	for _, e := range edits {
		img.starts = append(img.starts, vs.manifest.size)
		if err := vs.LogAndApply(e); err != nil {
			t.Fatal(err)
		}
		record()
	}
	name := layout.Path("db", layout.TypeManifest, vs.ManifestNum())
	if err := vs.Close(); err != nil {
		t.Fatal(err)
	}
	img.bytes = readAll(t, fs, name)
	return img
}

func readAll(t *testing.T, fs vfs.FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// fsWithManifest returns a MemFS holding CURRENT → MANIFEST-000001 with the
// given contents.
func fsWithManifest(t testing.TB, manifest []byte) *vfs.MemFS {
	t.Helper()
	fs := vfs.NewMem()
	if err := fs.MkdirAll("db"); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		f, err := fs.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write("db/MANIFEST-000001", manifest)
	write("db/CURRENT", []byte("MANIFEST-000001\n"))
	return fs
}

func loadDump(t *testing.T, manifest []byte) (versionDump, *VersionSet, error) {
	t.Helper()
	vs, err := LoadVersionSet(VersionSetOptions{FS: fsWithManifest(t, manifest), Dir: "db"})
	if err != nil {
		return versionDump{}, nil, err
	}
	v := vs.Current()
	defer v.Unref()
	return dump(v), vs, nil
}

func TestManifestTornLastRecord(t *testing.T) {
	img := buildManifestImage(t)
	last := img.starts[len(img.starts)-1]
	want := img.states[len(img.states)-2]
	for cut := last; cut < int64(len(img.bytes)); cut++ {
		got, vs, err := loadDump(t, img.bytes[:cut])
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if got.String() != want.String() {
			t.Fatalf("cut at %d: got %v, want %v", cut, got, want)
		}
		if vs.LastSeq() != img.lastSeq[len(img.lastSeq)-2] {
			t.Fatalf("cut at %d: LastSeq %d", cut, vs.LastSeq())
		}
		vs.Close()
	}
	// The whole file loads the final state.
	got, _, err := loadDump(t, img.bytes)
	if err != nil || got.String() != img.states[len(img.states)-1].String() {
		t.Fatalf("whole manifest: %v %v", got, err)
	}
}

// TestManifestDamage flips each byte of the manifest: damage to the header
// or to any record is corruption naming the file, the last record
// included (a whole record with a bad checksum is never a torn write).
// The one exception is the documented ambiguity: a flip that makes the last
// chunk's length run past the end of the file, or leaves its last byte
// zero, reads as a write cut short and loads the state before it.
func TestManifestDamage(t *testing.T) {
	img := buildManifestImage(t)
	last := img.starts[len(img.starts)-1]
	ambiguous := func(i int) bool {
		return int64(i) >= last && (int64(i) == last+8 || int64(i) == last+9 || img.bytes[len(img.bytes)-1] == 0)
	}
	for i := range img.bytes {
		b := bytes.Clone(img.bytes)
		b[i] ^= 0x41
		got, vs, err := loadDump(t, b)
		if err == nil && ambiguous(i) {
			if want := img.states[len(img.states)-2]; got.String() != want.String() {
				t.Fatalf("byte %d: got %v, want %v", i, got, want)
			}
			vs.Close()
			continue
		}
		var ce *errs.CorruptionError
		if !errors.As(err, &ce) {
			t.Fatalf("byte %d: got %v (state %v), want a corruption error", i, err, got)
		}
		if !strings.Contains(ce.File, "MANIFEST-000001") || ce.Offset > int64(i) {
			t.Fatalf("byte %d: error %v names the wrong place", i, err)
		}
	}
}

// A whole last record with a bad checksum makes the load fail and changes
// nothing: no new manifest, CURRENT as it was, the tables the damaged edit
// added still named nowhere else and untouched.
func TestManifestWholeLastRecordDamaged(t *testing.T) {
	img := buildManifestImage(t)
	last := img.starts[len(img.starts)-1]
	b := bytes.Clone(img.bytes)
	b[last+11] ^= 0x01 // first payload byte of the last edit
	fs := fsWithManifest(t, b)
	before, _ := fs.List("db")
	_, err := LoadVersionSet(VersionSetOptions{FS: fs, Dir: "db"})
	var ce *errs.CorruptionError
	if !errors.As(err, &ce) || !strings.HasSuffix(ce.File, "MANIFEST-000001") || ce.Offset != last {
		t.Fatalf("got %v, want corruption in MANIFEST-000001 at %d", err, last)
	}
	after, _ := fs.List("db")
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("a failed load changed the directory: %v, then %v", before, after)
	}
	if got := readAll(t, fs, "db/MANIFEST-000001"); !bytes.Equal(got, b) {
		t.Fatal("the damaged manifest was changed")
	}
}

// The clean-close record survives a load (the snapshot carries it) and the
// first edit after it clears it.
func TestManifestCleanClose(t *testing.T) {
	fs := vfs.NewMem()
	vs, err := CreateVersionSet(VersionSetOptions{FS: fs, Dir: "db"})
	if err != nil {
		t.Fatal(err)
	}
	if vs.CleanClose() != nil {
		t.Fatal("a new set says it was closed cleanly")
	}
	want := CleanClose{LogNum: 7, LogSize: 12345}
	if err := vs.LogAndApply(&VersionEdit{CleanClose: &want}); err != nil {
		t.Fatal(err)
	}
	vs.Close()
	for range 2 { // loaded twice: the first load's snapshot keeps it
		vs, err = LoadVersionSet(VersionSetOptions{FS: fs.CrashClone(), Dir: "db"})
		if err != nil {
			t.Fatal(err)
		}
		if c := vs.CleanClose(); c == nil || *c != want {
			t.Fatalf("after load: %+v, want %+v", c, want)
		}
		fs = fs.CrashClone()
		vs, err = LoadVersionSet(VersionSetOptions{FS: fs, Dir: "db"})
		if err != nil {
			t.Fatal(err)
		}
		vs.Close()
	}
	vs, err = LoadVersionSet(VersionSetOptions{FS: fs, Dir: "db"})
	if err != nil {
		t.Fatal(err)
	}
	if err := vs.LogAndApply(&VersionEdit{}); err != nil {
		t.Fatal(err)
	}
	if vs.CleanClose() != nil {
		t.Fatal("an edit did not clear the clean close")
	}
	vs.Close()
	vs, err = LoadVersionSet(VersionSetOptions{FS: fs, Dir: "db"})
	if err != nil {
		t.Fatal(err)
	}
	if vs.CleanClose() != nil {
		t.Fatal("cleared clean close came back after a load")
	}
	vs.Close()
}

func TestManifestNewerFormat(t *testing.T) {
	img := buildManifestImage(t)
	b := bytes.Clone(img.bytes)
	binary.LittleEndian.PutUint32(b[8:12], manifestVersion+1)
	binary.LittleEndian.PutUint32(b[12:16], uint32(xxhash.Sum64(b[:12])))
	if _, _, err := loadDump(t, b); !errors.Is(err, errs.ErrNewerFormat) {
		t.Fatalf("got %v, want ErrNewerFormat", err)
	}
}

func TestManifestEmptyOrHeaderOnly(t *testing.T) {
	for _, b := range [][]byte{nil, manifestHeader()[:10], manifestHeader()} {
		if _, _, err := loadDump(t, b); !errors.Is(err, errs.ErrCorruption) {
			t.Fatalf("%d-byte manifest: got %v, want ErrCorruption", len(b), err)
		}
	}
}

func TestCurrentDamage(t *testing.T) {
	img := buildManifestImage(t)
	for _, cur := range []string{"", "MANIFEST-000001", "MANIFEST-000002\n", "../MANIFEST-000001\n", "000001.sst\n", strings.Repeat("x", 1000) + "\n"} {
		fs := fsWithManifest(t, img.bytes)
		f, _ := fs.Create("db/CURRENT")
		f.Write([]byte(cur))
		f.Close()
		_, err := LoadVersionSet(VersionSetOptions{FS: fs, Dir: "db"})
		var ce *errs.CorruptionError
		if !errors.As(err, &ce) {
			t.Fatalf("CURRENT %q: got %v, want a corruption error", cur, err)
		}
		if !strings.Contains(ce.File, "CURRENT") && !strings.Contains(ce.File, "MANIFEST-000002") {
			t.Fatalf("CURRENT %q: error %v names the wrong file", cur, err)
		}
	}
	fs := vfs.NewMem()
	fs.MkdirAll("db")
	_, err := LoadVersionSet(VersionSetOptions{FS: fs, Dir: "db"})
	if !errors.Is(err, errs.ErrCorruption) || !strings.Contains(err.Error(), "CURRENT") {
		t.Fatalf("missing CURRENT: got %v", err)
	}
}

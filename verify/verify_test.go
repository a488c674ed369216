package verify_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/hnsw"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/verify"
)

// buildDB writes a small database with tables on several levels, log
// segments, archives, a vector checkpoint and an import, and closes it.
// With archive set, sealed segments go to the cold archive at once.
func buildDB(t testing.TB, dir string, archive bool) {
	t.Helper()
	opts := &pluresdb.Options{MemtableSize: 1 << 20, NoSync: true}
	if archive {
		opts.HotHistory = -1
	}
	db, err := pluresdb.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	val := bytes.Repeat([]byte("v"), 100)
	for round := range 4 {
		for i := range 3000 {
			if err := db.Put(fmt.Appendf(nil, "key%06d", (i*7919+round)%5000), val); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Compact(nil, nil); err != nil {
		t.Fatal(err)
	}
	vi, err := db.VectorIndex("v", hnsw.Config{Dim: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if err := vi.Add(fmt.Appendf(nil, "vec%d", i), []float32{float32(i), 1, 2, 3}); err != nil {
			t.Fatal(err)
		}
	}
	// A peer's writes, imported.
	peerDir := filepath.Join(t.TempDir(), "peer")
	peer, err := pluresdb.Open(peerDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := peer.Put(fmt.Appendf(nil, "peer%03d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	var stream bytes.Buffer
	if _, err := peer.ExportChanges(&stream, nil); err != nil {
		t.Fatal(err)
	}
	peer.Close()
	if _, err := db.ImportChanges(&stream); err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if err := db.Put(fmt.Appendf(nil, "tail%04d", i), val); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCleanDatabase(t *testing.T) {
	for _, archive := range []bool{false, true} {
		t.Run(fmt.Sprintf("archive=%v", archive), func(t *testing.T) { testCleanDatabase(t, archive) })
	}
}

func testCleanDatabase(t *testing.T, archive bool) {
	dir := t.TempDir()
	buildDB(t, dir, archive)
	var last, total int64
	rep, err := verify.Dir(context.Background(), nil, dir, verify.Options{Progress: func(d, tot int64) { last, total = d, tot }})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Findings {
		t.Logf("%s %s @%d: %s", f.Kind, f.File, f.Offset, f.Message)
	}
	t.Logf("files %v, %d bytes in %v", rep.FilesByType, rep.Bytes, rep.Duration)
	if !rep.Clean {
		t.Fatalf("damage in a clean database: %v", rep.Counts)
	}
	if rep.FilesByType["table"] == 0 || rep.FilesByType["log"] == 0 || rep.FilesByType["manifest"] != 1 || rep.FilesByType["replica"] != 1 {
		t.Fatalf("checked %v", rep.FilesByType)
	}
	if last != total || total == 0 {
		t.Fatalf("progress ended at %d of %d", last, total)
	}
}

// files returns the paths of dir's files of type typ, ascending.
func files(t testing.TB, dir string, typ layout.FileType) []string {
	t.Helper()
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range names {
		if tp, _, ok := layout.Parse(e.Name()); ok && tp == typ {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	if len(out) == 0 {
		t.Fatalf("no file of type %d in %s", typ, dir)
	}
	return out
}

func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(data))
	}
	data[off] ^= 0x20
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestDamage damages a copy of a clean database in one way at a time and
// checks that the report names the damage: its kind and its file, and
// the ranges a repair needs.
func TestDamage(t *testing.T) {
	clean := t.TempDir()
	buildDB(t, clean, false)
	archived := t.TempDir()
	buildDB(t, archived, true)
	cases := []struct {
		name    string
		src     string
		damage  func(t *testing.T, dir string) string // returns the damaged file
		kinds   []verify.Kind
		check   func(t *testing.T, f verify.Finding)
		damaged bool
	}{
		{name: "table byte", src: clean, kinds: []verify.Kind{verify.Checksum}, damaged: true,
			damage: func(t *testing.T, dir string) string {
				p := files(t, dir, layout.TypeTable)[0]
				flipByte(t, p, fileSize(t, p)/3)
				return p
			},
			check: func(t *testing.T, f verify.Finding) {
				if f.Keys == nil || f.Keys.Largest == nil || len(f.Seqs) != 1 || f.Offset <= 0 {
					t.Fatalf("a damaged data block without its ranges: %+v", f)
				}
			}},
		{name: "table footer", src: clean, kinds: []verify.Kind{verify.Checksum}, damaged: true,
			damage: func(t *testing.T, dir string) string {
				p := files(t, dir, layout.TypeTable)[0]
				flipByte(t, p, -20)
				return p
			}},
		{name: "log byte", src: clean, kinds: []verify.Kind{verify.Checksum, verify.Corrupt}, damaged: true,
			damage: func(t *testing.T, dir string) string {
				p := files(t, dir, layout.TypeLog)[1]
				flipByte(t, p, fileSize(t, p)/2)
				return p
			},
			check: func(t *testing.T, f verify.Finding) {
				if len(f.Seqs) != 1 || f.Seqs[0].From == 0 || f.Seqs[0].To < f.Seqs[0].From {
					t.Fatalf("a damaged log record without the lost sequence numbers: %+v", f)
				}
			}},
		{name: "log segment removed", src: clean, kinds: []verify.Kind{verify.SeqGap}, damaged: true,
			damage: func(t *testing.T, dir string) string {
				logs := files(t, dir, layout.TypeLog)
				if err := os.Remove(logs[1]); err != nil {
					t.Fatal(err)
				}
				return logs[2]
			},
			check: func(t *testing.T, f verify.Finding) {
				if len(f.Seqs) != 1 || f.Seqs[0].From == 0 || f.Seqs[0].To < f.Seqs[0].From {
					t.Fatalf("a sequence gap without its range: %+v", f)
				}
			}},
		{name: "manifest byte", src: clean, kinds: []verify.Kind{verify.Checksum, verify.Corrupt}, damaged: true,
			damage: func(t *testing.T, dir string) string {
				p := files(t, dir, layout.TypeManifest)[0]
				flipByte(t, p, 30)
				return p
			}},
		{name: "table removed", src: clean, kinds: []verify.Kind{verify.Missing}, damaged: true,
			damage: func(t *testing.T, dir string) string {
				p := files(t, dir, layout.TypeTable)[0]
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				return p
			},
			check: func(t *testing.T, f verify.Finding) {
				if f.Keys == nil || len(f.Seqs) != 1 {
					t.Fatalf("a missing table without its ranges: %+v", f)
				}
			}},
		{name: "table truncated", src: clean, kinds: []verify.Kind{verify.Truncated}, damaged: true,
			damage: func(t *testing.T, dir string) string {
				p := files(t, dir, layout.TypeTable)[0]
				if err := os.Truncate(p, fileSize(t, p)-100); err != nil {
					t.Fatal(err)
				}
				return p
			}},
		{name: "unknown file", src: clean, kinds: []verify.Kind{verify.Extra}, damaged: true,
			damage: func(t *testing.T, dir string) string {
				p := filepath.Join(dir, "notes.txt")
				if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			}},
		{name: "replica removed", src: clean, kinds: []verify.Kind{verify.Missing}, damaged: true,
			damage: func(t *testing.T, dir string) string {
				p := filepath.Join(dir, "REPLICA")
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				return p
			}},
		{name: "archive byte", src: archived, kinds: []verify.Kind{verify.Checksum}, damaged: true,
			damage: func(t *testing.T, dir string) string {
				p := files(t, dir, layout.TypeArchive)[1]
				flipByte(t, p, fileSize(t, p)/2)
				return p
			},
			check: func(t *testing.T, f verify.Finding) {
				if len(f.Seqs) != 1 || f.Seqs[0].From == 0 || f.Seqs[0].To < f.Seqs[0].From {
					t.Fatalf("a damaged archive without the sequence numbers its neighbours bound: %+v", f)
				}
			}},
		{name: "vector byte", src: clean, kinds: []verify.Kind{verify.Checksum, verify.Corrupt}, damaged: true,
			damage: func(t *testing.T, dir string) string {
				p := files(t, dir, layout.TypeVectorGraph)[0]
				flipByte(t, p, fileSize(t, p)/2)
				return p
			}},
		{name: "rejoining marker byte", src: clean, kinds: []verify.Kind{verify.Checksum, verify.Corrupt}, damaged: true,
			damage: func(t *testing.T, dir string) string {
				p := writeRejoin(t, dir, replicaOf(t, dir))
				flipByte(t, p, 20)
				return p
			}},
		{name: "rejoining marker of another replica", src: clean, kinds: []verify.Kind{verify.Corrupt}, damaged: true,
			damage: func(t *testing.T, dir string) string {
				return writeRejoin(t, dir, oplog.NewReplicaID())
			}},
		{name: "quarantine", src: clean, kinds: []verify.Kind{verify.Quarantined},
			damage: func(t *testing.T, dir string) string {
				q := filepath.Join(dir, "quarantine")
				p := filepath.Join(q, "000001.sst")
				if err := os.MkdirAll(q, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("junk"), 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(tc.src)); err != nil {
				t.Fatal(err)
			}
			path := tc.damage(t, dir)
			rep, err := verify.Dir(context.Background(), nil, dir, verify.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range rep.Findings {
				t.Logf("%s %s @%d: %s keys=%+v seqs=%+v", f.Kind, filepath.Base(f.File), f.Offset, f.Message, f.Keys, f.Seqs)
			}
			if rep.Clean == tc.damaged {
				t.Fatalf("clean %v, want %v: %+v", rep.Clean, !tc.damaged, rep.Findings)
			}
			var found *verify.Finding
			for i, f := range rep.Findings {
				if f.File == path && slices.Contains(tc.kinds, f.Kind) {
					found = &rep.Findings[i]
					break
				}
			}
			if found == nil {
				t.Fatalf("no %v finding for %s in %+v", tc.kinds, path, rep.Findings)
			}
			if tc.check != nil {
				tc.check(t, *found)
			}
			// Nothing else is damage but what follows from this one.
			for _, f := range rep.Findings {
				if f.Kind.Damage() && f.File != path && !strings.HasSuffix(tc.name, "removed") {
					t.Errorf("unrelated finding: %+v", f)
				}
			}
		})
	}
}

func replicaOf(t *testing.T, dir string) oplog.ReplicaID {
	t.Helper()
	id, err := oplog.ReadReplicaFile(vfs.Default, filepath.Join(dir, "REPLICA"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func writeRejoin(t *testing.T, dir string, id oplog.ReplicaID) string {
	t.Helper()
	p := layout.Path(dir, layout.TypeRejoin, 0)
	if err := oplog.WriteRejoinFile(vfs.Default, p, id); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRejoiningMarker: a valid REJOINING marker is no damage, and no
// unknown file: the report says the replica is rejoining.
func TestRejoiningMarker(t *testing.T) {
	dir := t.TempDir()
	buildDB(t, dir, false)
	writeRejoin(t, dir, replicaOf(t, dir))
	rep, err := verify.Dir(context.Background(), nil, dir, verify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean || !rep.Rejoining || rep.FilesByType["rejoin"] != 1 {
		t.Fatalf("a valid marker: clean %v, rejoining %v, files %v, findings %+v", rep.Clean, rep.Rejoining, rep.FilesByType, rep.Findings)
	}
	for _, f := range rep.Findings {
		if filepath.Base(f.File) == "REJOINING" {
			t.Fatalf("a valid marker reported: %+v", f)
		}
	}
}

// TestTornTail: after a crash, the newest segment's torn tail is a
// warning; after a clean close, the same bytes are damage.
func TestTornTail(t *testing.T) {
	fs := vfs.NewMem()
	db, err := pluresdb.Open("/db", &pluresdb.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := db.Put(fmt.Appendf(nil, "k%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	crashed := fs.CrashClone()
	db.Close()
	for _, tc := range []struct {
		fs   vfs.FS
		kind verify.Kind
	}{{crashed, verify.Warning}, {fs, verify.Corrupt}} {
		names, _ := tc.fs.List("/db")
		var last string
		for _, n := range names {
			if strings.HasSuffix(n, ".log") {
				last = "/db/" + n
			}
		}
		f, err := tc.fs.OpenReadWrite(last)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(f); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		f.Sync()
		f.Close()
		rep, err := verify.Dir(context.Background(), tc.fs, "/db", verify.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var kinds []verify.Kind
		for _, f := range rep.Findings {
			if f.File == last {
				kinds = append(kinds, f.Kind)
			}
		}
		if !slices.Contains(kinds, tc.kind) || rep.Clean != (tc.kind == verify.Warning) {
			t.Fatalf("torn tail: kinds %v, clean %v, want %s: %+v", kinds, rep.Clean, tc.kind, rep.Findings)
		}
	}
}

func TestCouldNotRun(t *testing.T) {
	if _, err := verify.Dir(context.Background(), nil, filepath.Join(t.TempDir(), "nope"), verify.Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing directory: %v", err)
	}
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "x.txt"), []byte("x"), 0o644)
	if _, err := verify.Dir(context.Background(), nil, empty, verify.Options{}); !errors.Is(err, errs.ErrNotDatabase) {
		t.Fatalf("not a database: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	buildDB(t, dir, false)
	if _, err := verify.Dir(ctx, nil, dir, verify.Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// TestMetaMismatch: a table whose MANIFEST entry disagrees with its
// properties is reported, with the entry's ranges.
func TestMetaMismatch(t *testing.T) {
	fs := vfs.NewMem()
	vs, err := lsm.CreateVersionSet(lsm.VersionSetOptions{FS: fs, Dir: "/db"})
	if err != nil {
		t.Fatal(err)
	}
	num := vs.NewFileNum()
	path := layout.Path("/db", layout.TypeTable, num)
	f, err := fs.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := lsm.NewTableWriter(f, lsm.TableWriterOptions{})
	for i := range 100 {
		if err := w.Add(lsm.MakeInternalKey(fmt.Appendf(nil, "\x01k%03d", i), lsm.SeqNum(i+1), lsm.KindSet), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	props, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	f.Sync()
	f.Close()
	meta := &lsm.FileMeta{Num: num, Size: props.FileSize, Smallest: props.Smallest, Largest: props.Largest,
		SmallestSeq: props.SmallestSeq, LargestSeq: props.LargestSeq + 5, NumEntries: props.NumEntries}
	if err := vs.LogAndApply(&lsm.VersionEdit{NewFiles: []lsm.NewFile{{Level: 1, Meta: meta}}}); err != nil {
		t.Fatal(err)
	}
	vs.Close()
	rep, err := verify.Dir(context.Background(), fs, "/db", verify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got *verify.Finding
	for i, f := range rep.Findings {
		if f.Kind == verify.MetaMismatch && f.File == path {
			got = &rep.Findings[i]
		}
	}
	if got == nil || !strings.Contains(got.Message, "sequence numbers 1..100, the MANIFEST 1..105") || got.Keys == nil || len(got.Seqs) != 1 {
		t.Fatalf("no meta mismatch for %s: %+v", path, rep.Findings)
	}
}

// TestFirstFormat: a database of the first format, which has no REPLICA
// yet, is clean (a warning says the next open makes one).
func TestFirstFormat(t *testing.T) {
	rep, err := verify.Dir(context.Background(), nil, "../testdata/format-v1", verify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean || rep.Counts[verify.Warning] != 1 || rep.FilesByType["table"] != 1 || rep.FilesByType["log"] != 1 {
		t.Fatalf("clean %v, %v, %v: %+v", rep.Clean, rep.Counts, rep.FilesByType, rep.Findings)
	}
}

// TestMissingHistoryFile: a deleted archive, or a deleted oldest log
// segment, is found through the op log's own index of its history files
// (nothing else lists them): a missing finding naming the file and its
// log sequence numbers.
func TestMissingHistoryFile(t *testing.T) {
	for name, typ := range map[string]layout.FileType{"archive": layout.TypeArchive, "log": layout.TypeLog} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "db")
			buildDB(t, dir, typ == layout.TypeArchive)
			victims := files(t, dir, typ)
			if len(victims) < 2 {
				t.Fatalf("%d files of the type", len(victims))
			}
			victim := victims[0] // the oldest: nothing before it to miss it
			if err := os.Remove(victim); err != nil {
				t.Fatal(err)
			}
			rep, err := verify.Dir(context.Background(), vfs.Default, dir, verify.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var found *verify.Finding
			for i, f := range rep.Findings {
				if f.Kind == verify.Missing && f.File == victim {
					found = &rep.Findings[i]
				}
			}
			if found == nil || len(found.Seqs) != 1 || found.Seqs[0].From == 0 {
				t.Fatalf("deleted %s: findings %+v", victim, rep.Findings)
			}
		})
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/verify"
)

// buildDB writes a closed database with tables and several log segments.
func buildDB(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "db")
	db, err := pluresdb.Open(dir, &pluresdb.Options{MemtableSize: 1 << 20, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20000 {
		if err := db.Put(fmt.Appendf(nil, "key%06d", i*7919%20000), bytes.Repeat([]byte{'v'}, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fileOf returns the path of the n-th file of type typ in dir.
func fileOf(t *testing.T, dir string, typ layout.FileType, n int) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if tp, _, ok := layout.Parse(e.Name()); ok && tp == typ {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	if len(out) <= n {
		t.Fatalf("%d files of type %d in %s", len(out), typ, dir)
	}
	return out[n]
}

func flipBit(t *testing.T, path string, off int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[off] ^= 0x04
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func size(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestFsck(t *testing.T) {
	clean := buildDB(t)
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string) string // returns the damaged file
		kinds  []verify.Kind
	}{
		{"table bit", func(t *testing.T, dir string) string {
			p := fileOf(t, dir, layout.TypeTable, 0)
			flipBit(t, p, size(t, p)/2)
			return p
		}, []verify.Kind{verify.Checksum}},
		{"log bit", func(t *testing.T, dir string) string {
			p := fileOf(t, dir, layout.TypeLog, 0)
			flipBit(t, p, size(t, p)/2)
			return p
		}, []verify.Kind{verify.Checksum, verify.Corrupt}},
		{"manifest bit", func(t *testing.T, dir string) string {
			p := fileOf(t, dir, layout.TypeManifest, 0)
			flipBit(t, p, size(t, p)-3)
			return p
		}, []verify.Kind{verify.Checksum, verify.Corrupt}},
		{"table deleted", func(t *testing.T, dir string) string {
			p := fileOf(t, dir, layout.TypeTable, 0)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			return p
		}, []verify.Kind{verify.Missing}},
		{"table truncated", func(t *testing.T, dir string) string {
			p := fileOf(t, dir, layout.TypeTable, 0)
			if err := os.Truncate(p, size(t, p)/2); err != nil {
				t.Fatal(err)
			}
			return p
		}, []verify.Kind{verify.Truncated}},
		{"unknown file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "backup.tar")
			if err := os.WriteFile(p, []byte("not ours"), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, []verify.Kind{verify.Extra}},
		{"replica missing", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "REPLICA")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			return p
		}, []verify.Kind{verify.Missing}},
	}

	var stdout, stderr bytes.Buffer
	if code := run([]string{clean}, &stdout, &stderr); code != exitClean {
		t.Fatalf("clean database: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "result   clean") {
		t.Fatalf("clean database report:\n%s", stdout.String())
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "db")
			if err := os.CopyFS(dir, os.DirFS(clean)); err != nil {
				t.Fatal(err)
			}
			path := tc.damage(t, dir)
			var stdout, stderr bytes.Buffer
			if code := run([]string{"--json", dir}, &stdout, &stderr); code != exitDamage {
				t.Fatalf("exit %d, want %d\n%s", code, exitDamage, stderr.String())
			}
			var rep verify.Report
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("JSON report: %v\n%s", err, stdout.String())
			}
			if rep.Clean || rep.Damage == 0 || len(rep.Findings) == 0 {
				t.Fatalf("report %+v", rep)
			}
			found := false
			for _, f := range rep.Findings {
				found = found || f.File == path && slices.Contains(tc.kinds, f.Kind)
			}
			if !found {
				t.Fatalf("no %v finding for %s: %+v", tc.kinds, path, rep.Findings)
			}
			// The human report names the file too, under the result.
			stdout.Reset()
			if code := run([]string{dir}, &stdout, &stderr); code != exitDamage {
				t.Fatalf("exit %d without --json", code)
			}
			out := stdout.String()
			if !strings.Contains(out, "DAMAGED") || !strings.Contains(out, "\n"+filepath.Base(path)+"\n") {
				t.Fatalf("human report does not name %s:\n%s", filepath.Base(path), out)
			}
		})
	}
}

func TestFsckCannotRun(t *testing.T) {
	for _, args := range [][]string{
		{filepath.Join(t.TempDir(), "missing")},
		{t.TempDir()}, // empty: not a database
		{},
		{"a", "b"},
		{"--no-such-flag", "x"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != exitNotRun {
			t.Fatalf("%q: exit %d, want %d", args, code, exitNotRun)
		}
		if stderr.Len() == 0 {
			t.Fatalf("%q: nothing said on stderr", args)
		}
	}
}

func TestFsckQuiet(t *testing.T) {
	dir := buildDB(t)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--quiet", dir}, &stdout, &stderr); code != exitClean || stdout.Len() != 0 || stderr.Len() != 0 {
		t.Fatalf("quiet on a clean database: exit %d, %q %q", code, stdout.String(), stderr.String())
	}
}

func TestProgressBar(t *testing.T) {
	var out bytes.Buffer
	b := &progressBar{w: &out, start: time.Now().Add(-time.Second)}
	b.update(50<<20, 100<<20)
	b.update(60<<20, 100<<20) // within 100 ms: not drawn
	b.update(100<<20, 100<<20)
	s := out.String()
	if strings.Count(s, "\r[") != 2 || !strings.Contains(s, " 50% 50.0 MiB of 100.0 MiB") || !strings.Contains(s, "100% 100.0 MiB") {
		t.Fatalf("bar drawn as %q", s)
	}
	b.clear()
	if !strings.HasSuffix(out.String(), "\r") {
		t.Fatal("bar not cleared")
	}
}

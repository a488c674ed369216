package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/plures/pluresdb"
)

// dirDigest hashes every file under dir, names included.
func dirDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	var names []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	for _, p := range names {
		fmt.Fprintf(h, "%s\n", p)
		if b, err := os.ReadFile(p); err == nil {
			h.Write(b)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// buildHistoryDB writes a small database with fields, counters, deletes
// and a peer's writes, closed cleanly.
func buildHistoryDB(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "db")
	db, err := pluresdb.Open(dir, &pluresdb.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	peer, err := pluresdb.Open(filepath.Join(t.TempDir(), "peer"), &pluresdb.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// The peer writes first: its whole value orders below the local
	// field write, which stays.
	must(peer.Put([]byte("user:03"), []byte("from the peer")))
	for i := range 20 {
		must(db.Put(fmt.Appendf(nil, "user:%02d", i), fmt.Appendf(nil, "name%d", i)))
	}
	must(db.Put([]byte("order:1"), []byte("o")))
	must(db.SetField([]byte("user:03"), []byte("email"), []byte("a@b")))
	must(db.Incr([]byte("user:03"), []byte("logins"), 7))
	must(db.Delete([]byte("user:05")))
	var buf bytes.Buffer
	if _, err := peer.ExportChanges(&buf, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ImportChanges(&buf); err != nil {
		t.Fatal(err)
	}
	must(db.Flush())
	must(db.Put([]byte("user:99"), []byte("in the log only")))
	must(db.Close())
	return dir
}

func run(t *testing.T, cmd func([]string, io.Writer) error, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := cmd(args, &out); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out.String()
}

// jsonLines decodes every line of out as a JSON object.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		objs = append(objs, m)
	}
	return objs
}

// TestInspectCommands runs every inspection command, as text and as
// JSON, on a database, and checks what they say and that the directory
// is unchanged to the byte.
func TestInspectCommands(t *testing.T) {
	dir := buildHistoryDB(t)
	before := dirDigest(t, dir)

	if out := run(t, getCommand, dir, "user:03"); !strings.Contains(out, "email=a@b") || !strings.Contains(out, "logins:7") {
		t.Fatalf("get: %q", out)
	}
	if objs := jsonLines(t, run(t, getCommand, "-json", dir, "user:99")); len(objs) != 1 ||
		objs[0]["value"].(map[string]any)["text"] != "in the log only" {
		t.Fatalf("get -json: %v", objs)
	}
	var out bytes.Buffer
	if err := getCommand([]string{dir, "user:05"}, &out); !errors.Is(err, pluresdb.ErrNotFound) {
		t.Fatalf("get of a deleted key: %v", err)
	}

	if n := len(jsonLines(t, run(t, scanCommand, "-json", "-prefix", "user:", dir))); n != 20 {
		t.Fatalf("scan -prefix user: %d documents, want 20", n)
	}
	if n := strings.Count(run(t, scanCommand, "-limit", "3", dir), "\n"); n != 3 {
		t.Fatalf("scan -limit 3: %d lines", n)
	}

	hist := jsonLines(t, run(t, historyCommand, "-json", dir, "user:03"))
	var kinds []string
	for _, h := range hist {
		kinds = append(kinds, h["kind"].(string))
	}
	if got := strings.Join(kinds, ","); got != "put,setfield,incr,put" {
		t.Fatalf("history of user:03: %s", got)
	}

	feed := jsonLines(t, run(t, feedCommand, "-json", dir))
	if len(feed) != 26 { // 20 puts, order:1, field, incr, delete, the peer's put, user:99
		t.Fatalf("feed: %d changes, want 26", len(feed))
	}
	from := fmt.Sprintf("%v/%v", feed[9]["seq"], feed[9]["index"])
	if rest := jsonLines(t, run(t, feedCommand, "-json", "-from", from, dir)); len(rest) != 16 {
		t.Fatalf("feed -from %s: %d changes, want 16", from, len(rest))
	}

	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	records := 0
	for _, l := range logs {
		records += len(jsonLines(t, run(t, dumpWALCommand, "-json", l)))
		run(t, dumpWALCommand, l)
	}
	if records == 0 {
		t.Fatal("dump-wal: no records")
	}
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no tables")
	}
	entries := 0
	for _, s := range ssts {
		objs := jsonLines(t, run(t, dumpSSTCommand, "-json", s))
		if _, ok := objs[0]["props"]; !ok {
			t.Fatalf("dump-sst: first line %v", objs[0])
		}
		entries += len(objs) - 1
		run(t, dumpSSTCommand, s)
	}
	if entries == 0 {
		t.Fatal("dump-sst: no entries")
	}

	if objs := jsonLines(t, run(t, stats, "-json", dir)); len(objs) != 1 || objs[0]["replica"] == "" {
		t.Fatalf("stats -json: %v", objs)
	}
	if objs := jsonLines(t, run(t, lsmCommand, "-json", dir)); len(objs) != len(ssts) {
		t.Fatalf("lsm -json: %d tables, want %d", len(objs), len(ssts))
	}

	if after := dirDigest(t, dir); after != before {
		t.Fatal("an inspection command changed the database directory")
	}
}

// TestDumpRefusesDamage: dump-wal and dump-sst stop at a damaged byte
// with an error wrapping ErrCorruption, not a wrong listing.
func TestDumpRefusesDamage(t *testing.T) {
	dir := buildHistoryDB(t)
	for _, pat := range []string{"*.log", "*.sst"} {
		files, _ := filepath.Glob(filepath.Join(dir, pat))
		var victim string
		for _, f := range files {
			if fi, _ := os.Stat(f); fi.Size() > 200 {
				victim = f
			}
		}
		if victim == "" {
			t.Fatalf("no %s file to damage", pat)
		}
		b, err := os.ReadFile(victim)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x10
		if err := os.WriteFile(victim, b, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := dumpWALCommand
		if pat == "*.sst" {
			cmd = dumpSSTCommand
		}
		var out bytes.Buffer
		if err := cmd([]string{victim}, &out); !errors.Is(err, pluresdb.ErrCorruption) {
			t.Fatalf("%s of a damaged %s: %v", pat, victim, err)
		}
	}
}

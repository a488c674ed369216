package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/refill"
	"github.com/plures/pluresdb/repair"
)

// copyDB copies the database at src into a new directory.
func copyDB(t *testing.T, src string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "db")
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// readAll opens the database and reads every key buildDB wrote; it
// returns the keys that read wrong.
func readAll(t *testing.T, dir string) []string {
	t.Helper()
	db, err := pluresdb.Open(dir, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer db.Close()
	want := bytes.Repeat([]byte{'v'}, 100)
	var bad []string
	for i := range 20000 {
		k := fmt.Appendf(nil, "key%06d", i)
		if v, err := db.Get(k); err != nil || !bytes.Equal(v, want) {
			bad = append(bad, string(k))
		}
	}
	return bad
}

// inLost reports whether the stored key of document k lies in a range
// the repair reported lost.
func inLost(res *repair.Result, k string) bool {
	sk := append([]byte{0x01}, k...) // the documents' namespace
	for _, l := range res.Lost {
		if l.Keys == nil || bytes.Compare(l.Keys.Smallest, sk) <= 0 && bytes.Compare(sk, l.Keys.Largest) <= 0 {
			return true
		}
	}
	return false
}

func TestFsckRepair(t *testing.T) {
	clean := buildDB(t)
	cases := []struct {
		name     string
		damage   func(t *testing.T, dir string)
		code     int    // of the repair
		contains string // in its report
	}{
		{"MANIFEST deleted", func(t *testing.T, dir string) {
			os.Remove(fileOf(t, dir, layout.TypeManifest, 0))
		}, exitClean, "wrote MANIFEST-"},
		{"last MANIFEST record corrupt", func(t *testing.T, dir string) {
			p := fileOf(t, dir, layout.TypeManifest, 0)
			flipBit(t, p, size(t, p)-3)
		}, exitClean, "moved MANIFEST-"},
		{"CURRENT deleted", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "CURRENT"))
		}, exitClean, "wrote CURRENT"},
		{"newest table bit", func(t *testing.T, dir string) {
			tables, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
			p := tables[len(tables)-1]
			flipBit(t, p, size(t, p)/2)
		}, exitClean, "recovered"},
		{"metadata table bit", func(t *testing.T, dir string) {
			p := fileOf(t, dir, layout.TypeTable, 0)
			flipBit(t, p, size(t, p)/2)
		}, exitDamage, "REFUSED"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyDB(t, clean)
			c.damage(t, dir)
			var out, errOut bytes.Buffer
			if code := run([]string{dir}, &out, &errOut); code != exitDamage {
				t.Fatalf("check of the damaged database: exit %d\n%s", code, out.String())
			}
			out.Reset()
			code := run([]string{"--repair", dir}, &out, &errOut)
			if c.code >= 0 && code != c.code {
				t.Fatalf("repair: exit %d, want %d\n%s%s", code, c.code, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), c.contains) {
				t.Fatalf("repair report lacks %q:\n%s", c.contains, out.String())
			}
			if c.code == exitDamage {
				return // refused: the check still finds the damage
			}
			out.Reset()
			if code := run([]string{dir}, &out, &errOut); code != exitClean {
				t.Fatalf("check after the repair: exit %d\n%s", code, out.String())
			}
			// What a JSON repair of the repaired database says: nothing to do.
			out.Reset()
			if code := run([]string{"--repair", "--json", dir}, &out, &errOut); code != exitClean {
				t.Fatalf("second repair: exit %d\n%s", code, out.String())
			}
			var second struct {
				Repair repair.Result `json:"repair"`
			}
			if err := json.Unmarshal(out.Bytes(), &second); err != nil {
				t.Fatal(err)
			}
			if len(second.Repair.Actions) != 0 {
				t.Fatalf("second repair acted: %+v", second.Repair.Actions)
			}
			bad := readAll(t, dir)
			if len(bad) == 0 {
				return
			}
			// Only keys in a range the repair reported lost may be missing.
			res, err := repair.Dir(t.Context(), nil, copyDBDamaged(t, clean, c.damage), repair.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range bad {
				if !inLost(res, k) {
					t.Fatalf("key %s reads wrong and was not reported lost", k)
				}
			}
			t.Logf("%d keys lost, all in the reported ranges", len(bad))
		})
	}
}

// copyDBDamaged is a new copy of src with damage done to it.
func copyDBDamaged(t *testing.T, src string, damage func(*testing.T, string)) string {
	dir := copyDB(t, src)
	damage(t, dir)
	return dir
}

// buildCompacted writes a closed, fully compacted database whose bottom
// level holds several tables, and returns it with a table holding
// documents only.
func buildCompacted(t *testing.T) (dir, dataTable string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "db")
	db, err := pluresdb.Open(dir, &pluresdb.Options{MemtableSize: 1 << 20, NoSync: true, TargetFileSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20000 {
		if err := db.Put(fmt.Appendf(nil, "key%06d", i), bytes.Repeat([]byte{'v'}, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Compact(nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ms, err := lsm.ReadManifestState(vfs.Default, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, files := range ms.Version.Levels {
		for _, m := range files {
			if lsm.UserKey(m.Smallest)[0] == 0x01 && dataTable == "" {
				dataTable = layout.Path(dir, layout.TypeTable, m.Num)
			}
		}
	}
	if dataTable == "" {
		t.Fatal("no table holds documents only")
	}
	return dir, dataTable
}

// TestFsckRepairJSONLost: a dropped table's range is lost to the repair,
// and the whole op history is retained: the refill rebuilds every key of
// it, and the repair exits clean.
func TestFsckRepairJSONLost(t *testing.T) {
	dir, p := buildCompacted(t)
	flipBit(t, p, size(t, p)/2)
	var out, errOut bytes.Buffer
	code := run([]string{"--repair", "--json", dir}, &out, &errOut)
	var rep struct {
		Repair repair.Result `json:"repair"`
		Refill refill.Result `json:"refill"`
		Check  struct {
			Clean bool `json:"clean"`
		} `json:"check"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !rep.Check.Clean {
		t.Fatalf("not clean after the repair:\n%s", out.String())
	}
	if len(rep.Repair.Lost) != 1 {
		t.Fatalf("lost %+v, recovered %+v", rep.Repair.Lost, rep.Repair.Recovered)
	}
	l := rep.Repair.Lost[0]
	if l.File != p || l.Keys == nil || len(l.Seqs) != 1 || rep.Repair.Recover == "" {
		t.Fatalf("lost %+v, recover %q", l, rep.Repair.Recover)
	}
	if len(rep.Repair.NotDone) != 0 {
		t.Fatalf("not done: %q", rep.Repair.NotDone)
	}
	// Every key of the range is back from the op history.
	inside := 0
	for i := range 20000 {
		if inLost(&repair.Result{Lost: rep.Repair.Lost}, fmt.Sprintf("key%06d", i)) {
			inside++
		}
	}
	if len(rep.Refill.Ranges) != 1 || !rep.Refill.Complete || code != exitClean {
		t.Fatalf("exit %d, refill %+v\n%s", code, rep.Refill, errOut.String())
	}
	if rg := rep.Refill.Ranges[0]; rg.FromHistory != inside || inside == 0 || !rg.Complete {
		t.Fatalf("%d keys from the history, %d in the range: %+v", rg.FromHistory, inside, rg)
	}
	if bad := readAll(t, dir); len(bad) != 0 {
		t.Fatalf("%d keys read wrong after the refill, the first %s", len(bad), bad[0])
	}
}

func TestFsckRepairReplica(t *testing.T) {
	dir := copyDB(t, buildDB(t))
	os.Remove(filepath.Join(dir, "REPLICA"))
	var out, errOut bytes.Buffer
	if code := run([]string{"--repair", dir}, &out, &errOut); code != exitDamage {
		t.Fatalf("repair without a source for the ID: exit %d\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "REFUSED") || !strings.Contains(out.String(), "peer or a backup") {
		t.Fatalf("report:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "REPLICA")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a REPLICA was made: %v", err)
	}
}

func TestFsckRepairOpenDatabase(t *testing.T) {
	dir := copyDB(t, buildDB(t))
	db, err := pluresdb.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out, errOut bytes.Buffer
	if code := run([]string{"--repair", dir}, &out, &errOut); code != exitNotRun {
		t.Fatalf("repair of an open database: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(errOut.String(), "is open") {
		t.Fatalf("stderr: %s", errOut.String())
	}
}

func TestFsckRepairReplicaFromArchive(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	opts := &pluresdb.Options{MemtableSize: 1 << 20, NoSync: true, HotHistory: -1}
	db, err := pluresdb.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20000 {
		if err := db.Put(fmt.Appendf(nil, "key%06d", i), bytes.Repeat([]byte{'v'}, 100)); err != nil {
			t.Fatal(err)
		}
	}
	id := db.ReplicaID()
	// Sealed segments are archived in the background: wait for one.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := db.Compact(nil, nil); err != nil {
			t.Fatal(err)
		}
		if m, _ := filepath.Glob(filepath.Join(dir, "*.oparc")); len(m) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no archive written")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "REPLICA"))
	var out, errOut bytes.Buffer
	if code := run([]string{"--repair", dir}, &out, &errOut); code != exitClean {
		t.Fatalf("repair: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "wrote REPLICA: replica ID "+id.String()) {
		t.Fatalf("report:\n%s", out.String())
	}
	if bad := readAll(t, dir); len(bad) != 0 {
		t.Fatalf("%d keys read wrong, the first %s", len(bad), bad[0])
	}
	db, err = pluresdb.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.ReplicaID() != id {
		t.Fatalf("opens as replica %s, want %s", db.ReplicaID(), id)
	}
}

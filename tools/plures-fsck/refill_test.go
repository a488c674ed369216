package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/backup"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/refill"
)

// buildWithPeer writes a closed, compacted database whose older half
// lost its op history, a peer holding every operation of it, and a
// backup of it; it returns them with a table of documents from the
// middle of the key space.
func buildWithPeer(t *testing.T) (dir, peerDir, backupDir, table string) {
	t.Helper()
	root := t.TempDir()
	dir, peerDir, backupDir = filepath.Join(root, "db"), filepath.Join(root, "peer"), filepath.Join(root, "backup")
	peer, err := pluresdb.Open(peerDir, &pluresdb.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	sync := func(db *pluresdb.DB) {
		var buf bytes.Buffer
		if _, err := db.ExportChanges(&buf, peer.VersionVector()); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.ImportChanges(&buf); err != nil {
			t.Fatal(err)
		}
	}
	opts := &pluresdb.Options{MemtableSize: 1 << 20, NoSync: true, TargetFileSize: 16 << 10, Retention: -1}
	for phase := range 2 {
		db, err := pluresdb.Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		for i := phase; i < 6000; i += 2 {
			if err := db.Put(fmt.Appendf(nil, "key%06d", i), bytes.Repeat([]byte{'v'}, 100)); err != nil {
				t.Fatal(err)
			}
		}
		sync(db)
		if phase == 0 {
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); db.Metrics().OpLog.SegmentsDropped == 0; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("retention dropped no history")
				}
			}
			opts.Retention = 0
		} else {
			if err := db.Compact(nil, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := backup.Create(db, backupDir, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := lsm.ReadManifestState(vfs.Default, dir)
	if err != nil {
		t.Fatal(err)
	}
	var docs []*lsm.FileMeta
	for _, files := range ms.Version.Levels {
		for _, m := range files {
			if lsm.UserKey(m.Smallest)[0] == 0x01 && lsm.UserKey(m.Largest)[0] == 0x01 {
				docs = append(docs, m)
			}
		}
	}
	if len(docs) < 3 {
		t.Fatalf("%d tables of documents", len(docs))
	}
	return dir, peerDir, backupDir, layout.Path(dir, layout.TypeTable, docs[len(docs)/2].Num)
}

func TestFsckRefill(t *testing.T) {
	clean, peer, bak, table := buildWithPeer(t)
	rel, err := filepath.Rel(clean, table)
	if err != nil {
		t.Fatal(err)
	}
	damaged := func(t *testing.T) string {
		dir := copyDB(t, clean)
		p := filepath.Join(dir, rel)
		flipBit(t, p, size(t, p)/2)
		return dir
	}

	t.Run("no source", func(t *testing.T) {
		dir := damaged(t)
		var out, errOut bytes.Buffer
		if code := run([]string{"--repair", dir}, &out, &errOut); code != exitDamage {
			t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
		}
		for _, want := range []string{"STILL LOST", "keys from the op history", "not known"} {
			if !strings.Contains(out.String(), want) {
				t.Fatalf("report lacks %q:\n%s", want, out.String())
			}
		}
		if bad := readSome(t, dir, 6000); len(bad) == 0 {
			t.Fatal("every key reads right, though half the range had no history and no source was given")
		}
	})
	for _, src := range [][]string{{"--from-peer", peer}, {"--from-backup", bak}} {
		t.Run(src[0], func(t *testing.T) {
			dir := damaged(t)
			var out, errOut bytes.Buffer
			code := run(append(append([]string{"--repair", "--json"}, src...), dir), &out, &errOut)
			var rep struct {
				Refill refill.Result `json:"refill"`
				Check  struct {
					Clean bool `json:"clean"`
				} `json:"check"`
			}
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			if code != exitClean || !rep.Check.Clean || !rep.Refill.Complete || len(rep.Refill.Sources) != 1 {
				t.Fatalf("exit %d\n%s%s", code, out.String(), errOut.String())
			}
			if rg := rep.Refill.Ranges[0]; rg.FromHistory == 0 || rg.FromSource == 0 {
				t.Fatalf("range %+v", rg)
			}
			if bad := readSome(t, dir, 6000); len(bad) != 0 {
				t.Fatalf("%d keys read wrong, the first %s", len(bad), bad[0])
			}
		})
	}
	t.Run("source without --repair", func(t *testing.T) {
		var out, errOut bytes.Buffer
		if code := run([]string{"--from-peer", peer, clean}, &out, &errOut); code != exitNotRun {
			t.Fatalf("exit %d", code)
		}
	})
}

// readSome reads keys 0..n-1 and returns those that read wrong.
func readSome(t *testing.T, dir string, n int) []string {
	t.Helper()
	db, err := pluresdb.Open(dir, &pluresdb.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var bad []string
	for i := range n {
		k := fmt.Appendf(nil, "key%06d", i)
		if v, err := db.Get(k); err != nil || !bytes.Equal(v, bytes.Repeat([]byte{'v'}, 100)) {
			bad = append(bad, string(k))
		}
	}
	return bad
}

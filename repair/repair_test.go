package repair_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/repair"
	"github.com/plures/pluresdb/verify"
)

// Namespace bytes of the stored keys (keyspace.go in the root package):
// a document's value and fields, and its counters.
const (
	nsDocuments = 0x01
	nsCounters  = 0x05
)

// model is what a database should hold: every document as GetFields
// reads it, "" for none.
type model map[string]string

// docString renders a document for comparison.
func docString(d pluresdb.Document) string {
	var b strings.Builder
	fmt.Fprintf(&b, "exists=%v value=%q", d.Exists, d.Value)
	for _, k := range slices.Sorted(maps.Keys(d.Fields)) {
		fmt.Fprintf(&b, " f[%s]=%q", k, d.Fields[k])
	}
	for _, k := range slices.Sorted(maps.Keys(d.Counters)) {
		fmt.Fprintf(&b, " c[%s]=%d", k, d.Counters[k])
	}
	return b.String()
}

// read returns what db holds for every key of m.
func read(t *testing.T, db *pluresdb.DB, keys []string) (model, map[string]error) {
	t.Helper()
	got, errs := model{}, map[string]error{}
	for _, k := range keys {
		d, err := db.GetFields([]byte(k))
		switch {
		case errors.Is(err, pluresdb.ErrNotFound):
			got[k] = ""
		case err != nil:
			errs[k] = err
		default:
			got[k] = docString(d)
		}
	}
	return got, errs
}

// buildDB writes a database with tables on several levels (a full
// compaction folds field writes and counters into values), L0 tables
// above them, and writes left in the log, and returns the model of it
// read back before it is closed. seed picks the workload.
func buildDB(t *testing.T, dir string, opts *pluresdb.Options, seed uint64) model {
	t.Helper()
	db, err := pluresdb.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	const nkeys = 3000
	key := func(i int) []byte { return fmt.Appendf(nil, "key%05d", i) }
	val := bytes.Repeat([]byte("v"), 200)
	round := func(n int) {
		for range n {
			i := rng.IntN(nkeys)
			var err error
			switch rng.IntN(10) {
			case 0:
				err = db.Delete(key(i))
			case 1:
				err = db.SetField(key(i), []byte("f"), fmt.Appendf(nil, "field%d", rng.IntN(100)))
			case 2:
				err = db.Incr(key(i), []byte("n"), int64(rng.IntN(5)+1))
			default:
				err = db.Put(key(i), append(fmt.Appendf(nil, "%d-", rng.IntN(1000)), val...))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	round(8000)
	if err := db.Compact(nil, nil); err != nil {
		t.Fatal(err)
	}
	round(6000)
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	round(3000)
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); opts.HotHistory < 0; {
		// Sealed segments are archived in the background: wait for one.
		if m, _ := filepath.Glob(filepath.Join(dir, "*.oparc")); len(m) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no archive written")
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	round(500) // left in the log
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = string(key(i))
	}
	m, errs := read(t, db, keys)
	if len(errs) > 0 {
		t.Fatalf("reading the model: %v", errs)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return m
}

// options of the test databases: small memtables, so there are several
// tables; the log is retained.
func options() *pluresdb.Options {
	return &pluresdb.Options{MemtableSize: 1 << 20, NoSync: true}
}

// files returns the paths of the files of type typ in dir, ascending.
func files(t *testing.T, dir string, typ layout.FileType) []string {
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
	return out
}

// lostKey reports whether a stored key of document k lies in a lost
// range.
func lostKey(res *repair.Result, k string) bool {
	for _, l := range res.Lost {
		if l.Keys == nil {
			return true
		}
		for _, ns := range []byte{nsDocuments, nsCounters} {
			sk := append([]byte{ns}, k...)
			if (l.Keys.Smallest == nil || bytes.Compare(l.Keys.Smallest, sk) <= 0) &&
				(l.Keys.Largest == nil || bytes.Compare(sk, l.Keys.Largest) <= 0) {
				return true
			}
		}
	}
	return false
}

// checkRepaired checks a repaired database: the check finds no damage,
// it opens, and every key not reported lost reads as the model says.
// It returns how many keys differ from the model (all reported lost).
func checkRepaired(t *testing.T, dir string, res *repair.Result, want model) int {
	t.Helper()
	rep, err := verify.Dir(context.Background(), nil, dir, verify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Clean {
		t.Fatalf("after the repair the check finds damage: %+v", rep.Findings)
	}
	db, err := pluresdb.Open(dir, &pluresdb.Options{MemtableSize: 1 << 20})
	if err != nil {
		t.Fatalf("open after the repair: %v", err)
	}
	defer db.Close()
	keys := slices.Sorted(maps.Keys(want))
	got, errs := read(t, db, keys)
	differ := 0
	for _, k := range keys {
		if err := errs[k]; err != nil {
			if !lostKey(res, k) {
				t.Errorf("key %s: %v, and the repair did not report it lost", k, err)
			}
			differ++
			continue
		}
		if got[k] != want[k] {
			if !lostKey(res, k) {
				t.Errorf("key %s = %s, want %s, and the repair did not report it lost", k, got[k], want[k])
			}
			differ++
		}
	}
	// The iterator agrees with the point reads.
	it := db.NewIter(nil, nil)
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		t.Fatalf("iterating: %v", err)
	}
	live := 0
	for _, k := range keys {
		if strings.HasPrefix(got[k], "exists=true") {
			live++
		}
	}
	if differ == 0 && n != live {
		t.Errorf("the iterator sees %d keys, point reads %d", n, live)
	}
	return differ
}

func runRepair(t *testing.T, dir string) *repair.Result {
	t.Helper()
	res, err := repair.Dir(context.Background(), nil, dir, repair.Options{})
	if err != nil {
		t.Fatalf("repair: %v", err)
	}
	return res
}

// quarantined returns the names in dir/quarantine.
func quarantined(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "quarantine"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestRepairManifest(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"delete MANIFEST", func(t *testing.T, dir string) {
			for _, p := range files(t, dir, layout.TypeManifest) {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"corrupt the last MANIFEST record", func(t *testing.T, dir string) {
			m := files(t, dir, layout.TypeManifest)
			p := m[len(m)-1]
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)-3] ^= 0x10
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"delete CURRENT", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "CURRENT")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "db")
			want := buildDB(t, dir, options(), uint64(i))
			tablesBefore := len(files(t, dir, layout.TypeTable))
			c.damage(t, dir)
			if _, err := pluresdb.Open(dir, options()); err == nil {
				t.Fatal("the damaged database opens")
			}
			res := runRepair(t, dir)
			if len(res.Refused) > 0 || len(res.Lost) > 0 {
				t.Fatalf("refused %q, lost %+v", res.Refused, res.Lost)
			}
			if res.Manifest == "" {
				t.Fatal("no MANIFEST written")
			}
			if n := len(files(t, dir, layout.TypeTable)); n != tablesBefore {
				t.Fatalf("%d tables after the repair, %d before", n, tablesBefore)
			}
			// Nothing deleted: every replaced file is in quarantine/.
			for _, a := range res.Actions {
				if a.Kind == repair.Quarantined {
					if _, err := os.Stat(a.To); err != nil {
						t.Fatalf("quarantined %s: %v", a.File, err)
					}
				}
			}
			if differ := checkRepaired(t, dir, res, want); differ != 0 {
				t.Fatalf("%d keys differ with nothing lost", differ)
			}
		})
	}
}

// TestRepairTwice repairs a database twice: the second repair finds
// nothing to do, and the names in quarantine/ stay unique.
func TestRepairTwice(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	want := buildDB(t, dir, options(), 3)
	os.Remove(filepath.Join(dir, "CURRENT"))
	res := runRepair(t, dir)
	checkRepaired(t, dir, res, want)
	q1 := quarantined(t, dir)
	res2 := runRepair(t, dir)
	if len(res2.Actions) != 0 || res2.Manifest != "" {
		t.Fatalf("a second repair acts: %+v", res2.Actions)
	}
	// Damage it again: the new quarantine names do not collide.
	os.Remove(filepath.Join(dir, "CURRENT"))
	res3 := runRepair(t, dir)
	q3 := quarantined(t, dir)
	if len(q3) <= len(q1) {
		t.Fatalf("quarantine holds %v after %v", q3, q1)
	}
	checkRepaired(t, dir, res3, want)
}

// victim picks a table of the database in dir: "meta", the table that
// holds the op log's metadata and older data; "data", an older table
// holding documents only; "newest", the newest table.
func victim(t *testing.T, dir, which string) string {
	t.Helper()
	ms, err := lsm.ReadManifestState(vfs.Default, dir)
	if err != nil {
		t.Fatal(err)
	}
	var all []*lsm.FileMeta
	for _, files := range ms.Version.Levels {
		all = append(all, files...)
	}
	slices.SortFunc(all, func(a, b *lsm.FileMeta) int { return int(a.LargestSeq) - int(b.LargestSeq) })
	var pick *lsm.FileMeta
	switch which {
	case "newest":
		pick = all[len(all)-1]
	case "meta":
		for _, m := range all {
			if lsm.UserKey(m.Smallest)[0] == 0 && m != all[len(all)-1] {
				pick = m
				break
			}
		}
	case "data":
		for _, m := range all[:len(all)-1] {
			if lsm.UserKey(m.Smallest)[0] != 0 {
				pick = m
				break
			}
		}
	}
	if pick == nil {
		for _, m := range all {
			t.Logf("%s %d %q..%q seq %d..%d", m.Num, m.Size, lsm.UserKey(m.Smallest), lsm.UserKey(m.Largest), m.SmallestSeq, m.LargestSeq)
		}
		t.Fatalf("no %s table among %d", which, len(all))
	}
	return layout.Path(dir, layout.TypeTable, pick.Num)
}

func flipTableBit(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/3] ^= 0x04 // inside a data block
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRepairDamagedTable(t *testing.T) {
	for _, which := range []string{"data", "newest"} {
		for _, lostManifest := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/manifest-lost=%v", which, lostManifest), func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "db")
				opts := options()
				opts.TargetFileSize = 16 << 10 // several tables per level
				want := buildDB(t, dir, opts, 11)
				v := victim(t, dir, which)
				flipTableBit(t, v)
				if lostManifest {
					os.Remove(filepath.Join(dir, "CURRENT"))
				}
				res := runRepair(t, dir)
				if len(res.Refused) > 0 {
					t.Fatalf("refused: %q", res.Refused)
				}
				moved := false
				for _, a := range res.Actions {
					if a.Kind == repair.Quarantined && a.File == v {
						moved = true
					}
				}
				if !moved {
					t.Fatalf("the damaged table was not quarantined: %+v", res.Actions)
				}
				if len(res.Lost)+len(res.Recovered) != 1 {
					t.Fatalf("lost %+v, recovered %+v: want the table in one of them", res.Lost, res.Recovered)
				}
				if which == "newest" && len(res.Recovered) != 1 {
					t.Fatalf("the newest table is not recovered from the log: %+v", res.Lost)
				}
				differ := checkRepaired(t, dir, res, want)
				t.Logf("lost %d ranges, recovered %d; %d keys differ from the model", len(res.Lost), len(res.Recovered), differ)
				if len(res.Recovered) == 1 && differ != 0 {
					t.Fatalf("the table was recovered from the log, yet %d keys differ", differ)
				}
			})
		}
	}
}

// TestRepairKeepsMetaTable damages the table holding the op log's
// metadata: repair does not drop it (the next open would lose the
// replica's sequence floor and re-encode every document) and says so.
func TestRepairKeepsMetaTable(t *testing.T) {
	for _, lostManifest := range []bool{false, true} {
		t.Run(fmt.Sprintf("manifest-lost=%v", lostManifest), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "db")
			opts := options()
			opts.TargetFileSize = 16 << 10
			want := buildDB(t, dir, opts, 12)
			v := victim(t, dir, "meta")
			flipTableBit(t, v)
			if lostManifest {
				os.Remove(filepath.Join(dir, "CURRENT"))
			}
			res := runRepair(t, dir)
			if len(res.Refused) != 1 || !strings.Contains(res.Refused[0], "op log's metadata") {
				t.Fatalf("refused %q", res.Refused)
			}
			if _, err := os.Stat(v); err != nil {
				t.Fatalf("the table holding the metadata was moved: %v", err)
			}
			if lostManifest {
				if res.Manifest != "" || len(res.Actions) != 0 {
					t.Fatalf("the tables were changed: %+v", res.Actions)
				}
				return
			}
			// It opens as before the repair: every key reads right or
			// fails with ErrCorruption, none silently wrong.
			db, err := pluresdb.Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			got, errs := read(t, db, slices.Sorted(maps.Keys(want)))
			failed := 0
			for k, w := range want {
				if err := errs[k]; err != nil {
					if !errors.Is(err, pluresdb.ErrCorruption) {
						t.Fatalf("key %s: %v", k, err)
					}
					failed++
				} else if got[k] != w {
					t.Fatalf("key %s = %s, want %s", k, got[k], w)
				}
			}
			t.Logf("%d of %d keys fail with ErrCorruption (the damaged block may hold metadata only)", failed, len(want))
		})
	}
}

func TestRepairReplica(t *testing.T) {
	t.Run("from an archive", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "db")
		opts := options()
		opts.HotHistory = -1 // sealed segments go to the archive at once
		want := buildDB(t, dir, opts, 5)
		if len(files(t, dir, layout.TypeArchive)) == 0 {
			t.Fatal("no archive written")
		}
		db, err := pluresdb.Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		id := db.ReplicaID()
		db.Close()
		if err := os.Remove(filepath.Join(dir, "REPLICA")); err != nil {
			t.Fatal(err)
		}
		res := runRepair(t, dir)
		if len(res.Refused) > 0 {
			t.Fatalf("refused: %q", res.Refused)
		}
		if res.Replica != id.String() {
			t.Fatalf("restored replica %s, want %s", res.Replica, id)
		}
		checkRepaired(t, dir, res, want)
		db, err = pluresdb.Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if db.ReplicaID() != id {
			t.Fatalf("the database opens as %s, want %s", db.ReplicaID(), id)
		}
	})
	t.Run("without an archive", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "db")
		buildDB(t, dir, options(), 6)
		if err := os.Remove(filepath.Join(dir, "REPLICA")); err != nil {
			t.Fatal(err)
		}
		res := runRepair(t, dir)
		if len(res.Refused) != 1 || !strings.Contains(res.Refused[0], "peer or a backup") {
			t.Fatalf("refused %q, want one refusal asking for a peer or a backup", res.Refused)
		}
		if _, err := os.Stat(filepath.Join(dir, "REPLICA")); !os.IsNotExist(err) {
			t.Fatalf("a REPLICA was made: %v", err)
		}
		if _, err := pluresdb.Open(dir, options()); !errors.Is(err, errs.ErrCorruption) {
			t.Fatalf("open without REPLICA: %v", err)
		}
	})
}

func TestRepairRefusesOpenDatabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	db, err := pluresdb.Open(dir, options())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Put([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	_, err = repair.Dir(context.Background(), nil, dir, repair.Options{})
	if !errors.Is(err, repair.ErrLocked) {
		t.Fatalf("repair of an open database: %v, want ErrLocked", err)
	}
}

func TestRepairNotADatabase(t *testing.T) {
	dir := t.TempDir()
	if _, err := repair.Dir(context.Background(), nil, dir, repair.Options{}); !errors.Is(err, errs.ErrNotDatabase) {
		t.Fatalf("repair of an empty directory: %v", err)
	}
	if _, err := repair.Dir(context.Background(), vfs.NewMem(), "/nope", repair.Options{}); err == nil {
		t.Fatal("repair of a missing directory succeeds")
	}
}

// TestReplayOfFoldedOperandsReadsWrong shows why the rebuilt MANIFEST
// never makes the next open replay log records the tables already hold:
// a compaction folds merge operands into a value at the newest operand's
// sequence number; the operand replayed into a new L0 table is read
// first, and the value beneath it, now folded at the operand's own
// sequence number, is not seen. The repair of the same directory (which
// replays nothing the tables hold) reads right.
func TestReplayOfFoldedOperandsReadsWrong(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	db, err := pluresdb.Open(dir, options())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Put([]byte("k"), []byte("base")); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(nil, nil); err != nil {
		t.Fatal(err)
	}
	segs := files(t, dir, layout.TypeLog)
	_, opSeg, _ := layout.Parse(filepath.Base(segs[len(segs)-1])) // the live segment
	if err := db.SetField([]byte("k"), []byte("f"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(nil, nil); err != nil {
		t.Fatal(err)
	}
	d, err := db.GetFields([]byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	want := docString(d)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	backup := t.TempDir()
	if err := os.CopyFS(backup, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}

	// A MANIFEST that replays the segment of the field write over the
	// table that holds it folded.
	ms, err := lsm.ReadManifestState(vfs.Default, dir)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "CURRENT"))
	num := ms.NextFileNum + 10
	if err := lsm.WriteManifest(vfs.Default, dir, num, ms.Version, opSeg, num+1, ms.LastSeq); err != nil {
		t.Fatal(err)
	}
	db, err = pluresdb.Open(dir, options())
	if err != nil {
		t.Fatal(err)
	}
	d, err = db.GetFields([]byte("k"))
	db.Close()
	got := "error: " + fmt.Sprint(err)
	if err == nil {
		got = docString(d)
	}
	if got == want {
		t.Fatalf("the replay of a folded operand reads right (%s): the repair could replay more of the log", got)
	}
	t.Logf("replaying what the tables hold: %s, want %s", got, want)

	// The repair of the copy, its MANIFEST lost, reads right.
	os.Remove(filepath.Join(backup, "CURRENT"))
	res := runRepair(t, backup)
	if differ := checkRepaired(t, backup, res, model{"k": want}); differ != 0 {
		t.Fatalf("%d keys differ after the repair", differ)
	}
}

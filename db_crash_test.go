package pluresdb

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/wal"
)

// history records, per key, what a crash may legitimately leave: the value
// of the last write acknowledged as durable, or that of any write attempted
// after it. "" stands for "absent".
type history map[string][]string

func (h history) durable(k, v string) { h[k] = []string{v} }
func (h history) attempt(k, v string) {
	if _, ok := h[k]; !ok {
		h[k] = []string{""} // never written: absent
	}
	h[k] = append(h[k], v)
}

func (h history) check(t *testing.T, db *DB, context string) {
	t.Helper()
	for k, allowed := range h {
		got, err := db.Get([]byte(k))
		var gs string
		switch {
		case errors.Is(err, ErrNotFound):
			gs = ""
		case err != nil:
			t.Fatalf("%s: get %q: %v", context, k, err)
		default:
			gs = string(got)
			if gs == "" {
				gs = "<empty value>"
			}
		}
		ok := false
		for _, a := range allowed {
			if a == gs {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("%s: key %q = %q after crash, allowed %q", context, k, gs, allowed)
		}
	}
}

// TestCrashRandomPoints runs a workload of synced and unsynced writes,
// deletes, flushes and compactions on a filesystem that "dies" at a random
// operation (every later write fails), then simulates a power cut (unsynced
// data and directory entries dropped) and reopens: the database must open,
// every write acknowledged as durable must be there, and nothing that was
// never written may appear.
func TestCrashRandomPoints(t *testing.T) {
	for _, tiered := range []bool{false, true} {
		t.Run(fmt.Sprintf("tiered=%v", tiered), func(t *testing.T) {
			seed := testSeed(t)
			rng := rand.New(rand.NewPCG(seed, 7))
			runs := 200
			if testing.Short() {
				runs = 40
			}
			// Count the operations of a fault-free run, to place faults
			// within it.
			total := crashWorkload(t, vfs.NewMem(), nil, seed, tiered, vfs.DropUnsynced)
			t.Logf("a fault-free run makes %d filesystem operations", total)
			for run := range runs {
				mem := vfs.NewMem()
				n := rng.Int64N(total) + 1
				cd := vfs.FailAfter(n, vfs.ErrInjected)
				// Each crash mode in turn: unsynced writes dropped, a
				// prefix of them kept, or a random subset (torn, out of
				// order).
				crashWorkload(t, mem, cd, seed+uint64(run), tiered, vfs.CrashModes[run%len(vfs.CrashModes)])
				// crashWorkload checked the recovered state.
			}
		})
	}
}

// crashOptions are the options of the crash workload: with tiered, level
// targets are tiny so compactions reach the cold tier, in its own
// directory, within a few hundred writes.
func crashOptions(fs vfs.FS, tiered bool) *Options {
	o := &Options{FS: fs, MemtableSize: 1 << 20, L0CompactionThreshold: 3, TargetFileSize: 128 << 10}
	if tiered {
		o.ColdDir = "/cold"
		o.LBaseMaxBytes = 64 << 10
		o.TargetFileSize = 16 << 10
		o.L0CompactionThreshold = 2
	}
	return o
}

// crashWorkload runs the workload on mem (through a fault injector if cd is
// not nil), crashes, reopens and checks. It returns the number of
// filesystem operations made.
func crashWorkload(t *testing.T, mem *vfs.MemFS, cd *vfs.Countdown, seed uint64, tiered bool, mode vfs.CrashMode) int64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 11))
	counter := vfs.FailAfter(1<<62, vfs.ErrInjected)
	inj := counter.Inject
	if cd != nil {
		inj = cd.Inject
	}
	fs := vfs.WithFaults(mem, inj)
	opts := crashOptions(fs, tiered)
	h := history{}
	db, err := Open("/db", opts)
	if err == nil {
		for i := 0; i < 1500; i++ {
			k := fmt.Sprintf("key%04d", rng.IntN(400))
			v := fmt.Sprintf("v%d-%d", i, rng.Uint32())
			switch r := rng.IntN(100); {
			case r < 60:
				h.attempt(k, v)
				if err := db.Put([]byte(k), []byte(v)); err == nil {
					h.durable(k, v)
				}
			case r < 85:
				// Unsynced batch: may or may not survive.
				full := v + strings.Repeat("y", rng.IntN(3000))
				h.attempt(k, full)
				b := db.NewBatch()
				b.Put([]byte(k), []byte(full))
				_ = b.Commit(&WriteOptions{NoSync: true})
			case r < 95:
				h.attempt(k, "")
				if err := db.Delete([]byte(k)); err == nil {
					h.durable(k, "")
				}
			case r < 98:
				_ = db.Flush()
			default:
				_ = db.Compact(nil, nil)
			}
			if cd != nil && cd.Fired() && rng.IntN(50) == 0 {
				break
			}
		}
		_ = db.Close()
	}
	crashed := mem.CrashCloneWith(rand.New(rand.NewPCG(seed, 13)), mode)
	// No background compactions while the files are checked against the
	// live tables.
	reopen := crashOptions(crashed, tiered)
	reopen.DisableAutoCompaction = true
	db2, err := Open("/db", reopen)
	if err != nil {
		t.Fatalf("seed %d %v: reopen after crash (fault at op %v): %v", seed, mode, faultAt(cd), err)
	}
	h.check(t, db2, fmt.Sprintf("seed %d %v fault at op %v", seed, mode, faultAt(cd)))
	checkNoLeakedTables(t, crashed, db2, tiered)
	// The recovered database takes writes and survives another clean cycle.
	if err := db2.Put([]byte("after"), []byte("crash")); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
	if err := db2.Close(); err != nil {
		t.Fatalf("close after recovery: %v", err)
	}
	db3, err := Open("/db", crashOptions(crashed, tiered))
	if err != nil {
		t.Fatalf("second reopen: %v", err)
	}
	h.check(t, db3, "second reopen")
	db3.Close()
	return counter.Count()
}

// checkNoLeakedTables checks that the table files on disk are exactly the
// live tables: none missing, none left over from an interrupted flush or
// compaction.
func checkNoLeakedTables(t *testing.T, fs vfs.FS, db *DB, tiered bool) {
	t.Helper()
	live := map[uint64]bool{}
	for _, ti := range db.Tables() {
		live[ti.Num] = true
	}
	dirs := []string{"/db"}
	if tiered {
		dirs = append(dirs, "/cold")
	}
	found := map[uint64]bool{}
	for _, dir := range dirs {
		names, err := fs.List(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			var n uint64
			if _, err := fmt.Sscanf(name, "%d.sst", &n); err == nil && strings.HasSuffix(name, ".sst") {
				if !live[n] {
					t.Fatalf("%s/%s is not a live table", dir, name)
				}
				found[n] = true
			}
		}
	}
	for n := range live {
		if !found[n] {
			t.Fatalf("live table %06d has no file", n)
		}
	}
}

func faultAt(cd *vfs.Countdown) any {
	if cd == nil {
		return "none"
	}
	return cd.Count()
}

// TestKillProcess runs a writer in a child process, kills it with SIGKILL
// while it writes, and checks that every write the child reported as
// acknowledged is in the database.
func TestKillProcess(t *testing.T) {
	if os.Getenv("PLURESDB_KILL_CHILD") != "" {
		killChild()
		return
	}
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	for round := range 3 {
		acked := map[string]string{}
		runAndKill(t, "TestKillProcess", "PLURESDB_KILL_CHILD", dir, round, time.Duration(200+round*150)*time.Millisecond,
			func(line string) bool {
				k, v, _ := strings.Cut(line, "=")
				acked[k] = v
				return len(acked) > 50
			})
		db, err := Open(dir, nil)
		if err != nil {
			t.Fatalf("round %d: open after SIGKILL: %v", round, err)
		}
		for k, v := range acked {
			got, err := db.Get([]byte(k))
			if err != nil || string(got) != v {
				t.Fatalf("round %d: acknowledged %q=%q, after kill got %q, %v", round, k, v, got, err)
			}
		}
		t.Logf("round %d: %d acknowledged writes survived SIGKILL", round, len(acked))
		db.Close()
	}
}

// runAndKill runs test in a child process, with env set to dir and
// PLURESDB_KILL_ROUND to round, hands every line it prints to line, and
// kills it with SIGKILL once after has passed and line has said it may.
// Lines printed before the kill are handed over too.
func runAndKill(t *testing.T, test, env, dir string, round int, after time.Duration, line func(string) (enough bool)) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v=false")
	cmd.Env = append(os.Environ(), env+"="+dir, fmt.Sprintf("PLURESDB_KILL_ROUND=%d", round))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(after)
	for sc.Scan() {
		if line(sc.Text()) && time.Now().After(deadline) {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		line(sc.Text())
	}
	_ = cmd.Wait()
}

// killChild writes synced keys forever, printing each after it is
// acknowledged, with several writers so group commit is exercised.
func killChild() {
	dir := os.Getenv("PLURESDB_KILL_CHILD")
	round, _ := strconv.Atoi(os.Getenv("PLURESDB_KILL_ROUND"))
	db, err := Open(dir, &Options{MemtableSize: 1 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(1)
	}
	lines := make(chan string, 1024)
	for w := range 4 {
		go func() {
			for i := 0; ; i++ {
				k := fmt.Sprintf("r%d-w%d-%07d", round, w, i)
				v := strings.Repeat(strconv.Itoa(i%10), 100+i%200)
				if err := db.Put([]byte(k), []byte(v)); err != nil {
					fmt.Fprintln(os.Stderr, "child put:", err)
					os.Exit(1)
				}
				lines <- k + "=" + v
			}
		}()
	}
	w := bufio.NewWriter(os.Stdout)
	for l := range lines {
		w.WriteString(l + "\n")
		if len(lines) == 0 {
			w.Flush()
		}
	}
}

// TestKillDuringBulkImport kills a process that applies bulk imports
// (each one ingested as L0 tables) one after another, with SIGKILL at
// some point of one of them: every import acknowledged before the kill is
// whole after the reopen, and the one cut short is completed by importing
// its stream again.
func TestKillDuringBulkImport(t *testing.T) {
	if os.Getenv("PLURESDB_INGEST_CHILD") != "" {
		ingestChild()
		return
	}
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	for round := range 3 {
		var acked []int
		runAndKill(t, "TestKillDuringBulkImport", "PLURESDB_INGEST_CHILD", dir, round, time.Duration(300+round*200)*time.Millisecond,
			func(line string) bool {
				n, err := strconv.Atoi(line)
				if err != nil {
					t.Errorf("child said %q", line)
				}
				acked = append(acked, n)
				return true
			})
		db, err := Open(dir, &Options{MemtableSize: 1 << 20})
		if err != nil {
			t.Fatalf("round %d: open after SIGKILL: %v", round, err)
		}
		for _, n := range acked {
			for i := range ingestChildKeys {
				k := ingestChildKey(round, n, i)
				if v, err := db.Get(k); err != nil || len(v) != 200 {
					t.Fatalf("round %d: import %d acknowledged, key %q after the kill: %q, %v", round, n, k, v, err)
				}
			}
		}
		// The import in flight, applied again, is whole.
		next := len(acked)
		stream, err := ingestChildStream(round, next)
		must(t, err)
		if _, err := db.ImportChanges(bytes.NewReader(stream)); err != nil {
			t.Fatalf("round %d: import %d again: %v", round, next, err)
		}
		if db.Metrics().IngestedTables == 0 {
			t.Fatalf("round %d: the import did not ingest", round)
		}
		for i := range ingestChildKeys {
			if v, err := db.Get(ingestChildKey(round, next, i)); err != nil || len(v) != 200 {
				t.Fatalf("round %d: import %d applied again, key %d: %q, %v", round, next, i, v, err)
			}
		}
		t.Logf("round %d: %d acknowledged bulk imports survived SIGKILL, %d ingested tables", round, len(acked), db.Metrics().IngestedTables)
		must(t, db.Close())
	}
}

const ingestChildKeys = 3000

func ingestChildKey(round, n, i int) []byte { return fmt.Appendf(nil, "r%d-i%03d-k%04d", round, n, i) }

// ingestChildStream is the change stream of import n of a round: a new
// replica's puts of its keys.
func ingestChildStream(round, n int) ([]byte, error) {
	src, err := Open("/src", &Options{FS: vfs.NewMem(), NoSync: true})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	for i := range ingestChildKeys {
		if err := src.Put(ingestChildKey(round, n, i), bytes.Repeat([]byte{byte(i)}, 200)); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	if _, err := src.ExportChanges(&buf, nil); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ingestChild applies bulk imports forever, printing the number of each
// once ImportChanges acknowledged it (synced).
func ingestChild() {
	dir := os.Getenv("PLURESDB_INGEST_CHILD")
	round, _ := strconv.Atoi(os.Getenv("PLURESDB_KILL_ROUND"))
	db, err := Open(dir, &Options{MemtableSize: 1 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(1)
	}
	for n := 0; ; n++ {
		stream, err := ingestChildStream(round, n)
		if err == nil {
			_, err = db.ImportChanges(bytes.NewReader(stream))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "child import:", err)
			os.Exit(1)
		}
		fmt.Println(n)
	}
}

// newestSegment returns the path of the highest-numbered log segment.
func newestSegment(t *testing.T, fs vfs.FS, dir string) string {
	t.Helper()
	segs, err := wal.List(fs, dir)
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments: %v %v", segs, err)
	}
	return layout.Path(dir, layout.TypeLog, segs[len(segs)-1])
}

// TestCleanCloseRefusesLogDamage: after a clean close, a flipped bit in the
// last record of the newest segment, or a segment cut short, is
// corruption naming the segment and offset, never a torn tail; the refused
// Open changes nothing, so the undamaged log opens afterwards.
func TestCleanCloseRefusesLogDamage(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, nil)
	must(t, err)
	for i := range 50 {
		must(t, db.Put(fmt.Appendf(nil, "k%03d", i), []byte(strings.Repeat("v", 100))))
	}
	must(t, db.Close())
	seg := newestSegment(t, vfs.Default, dir)
	orig, err := os.ReadFile(seg)
	must(t, err)

	for _, tc := range []struct {
		name   string
		damage []byte
		offset int64
	}{
		{"bit flip in the last record", func() []byte { b := bytes.Clone(orig); b[len(b)-20] ^= 0x04; return b }(), -1},
		{"cut short", orig[:len(orig)-30], int64(len(orig) - 30)},
	} {
		must(t, os.WriteFile(seg, tc.damage, 0o644))
		_, err := Open(dir, nil)
		var ce *errs.CorruptionError
		if !errors.As(err, &ce) || !errors.Is(err, ErrCorruption) || ce.File != seg || ce.Offset <= 0 || ce.Offset > int64(len(orig)) ||
			(tc.offset >= 0 && ce.Offset != tc.offset) {
			t.Fatalf("%s: Open = %v, want corruption in %s", tc.name, err, seg)
		}
		if got, _ := os.ReadFile(seg); !bytes.Equal(got, tc.damage) {
			t.Fatalf("%s: the refused Open changed the segment", tc.name)
		}
	}
	must(t, os.WriteFile(seg, orig, 0o644))
	db, err = Open(dir, nil)
	if err != nil {
		t.Fatalf("undamaged log after refused opens: %v", err)
	}
	for i := range 50 {
		if _, err := db.Get(fmt.Appendf(nil, "k%03d", i)); err != nil {
			t.Fatalf("k%03d: %v", i, err)
		}
	}
	must(t, db.Close())
}

// crashedLog opens a database on a MemFS, writes synced keys, then
// unsynced ones that reach the file but are never synced, and returns the
// synced keys, what a crash keeps (synced bytes only) and the segment's
// bytes as written.
func crashedLog(t *testing.T) (crashed *vfs.MemFS, seg string, written []byte, synced, firstWrite int64) {
	t.Helper()
	mem := vfs.NewMem()
	db, err := Open("/db", &Options{FS: mem})
	must(t, err)
	for i := range 20 {
		must(t, db.Put(fmt.Appendf(nil, "k%03d", i), []byte(strings.Repeat("s", 200))))
	}
	for i := range 3 {
		b := db.NewBatch()
		b.Put(fmt.Appendf(nil, "u%03d", i), []byte(strings.Repeat("u", 300)))
		must(t, b.Commit(&WriteOptions{NoSync: true}))
		db.commitMu.Lock()
		end, err := db.wal.WriteBuffered()
		db.commitMu.Unlock()
		must(t, err)
		if i == 0 {
			firstWrite = end
		}
	}
	seg = newestSegment(t, mem, "/db")
	crashed = mem.CrashClone()
	written = readMem(t, mem, seg)
	synced = int64(len(readMem(t, crashed, seg)))
	db.Close()
	return crashed, seg, written, synced, firstWrite
}

func readMem(t *testing.T, fs vfs.FS, path string) []byte {
	t.Helper()
	f, err := fs.Open(path)
	must(t, err)
	defer f.Close()
	b, err := io.ReadAll(f)
	must(t, err)
	return b
}

func writeMem(t *testing.T, fs vfs.FS, path string, b []byte) {
	t.Helper()
	f, err := fs.Create(path)
	must(t, err)
	_, err = f.Write(b)
	must(t, err)
	must(t, f.Sync())
	must(t, f.Close())
}

// TestCrashLogTail: after a crash, a torn last record and a zero hole
// followed by valid (never synced) records are torn tails: Open truncates
// them and every synced write is there. A bit flip in a whole record is
// corruption.
func TestCrashLogTail(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(written []byte, synced, firstWrite int64) []byte
		corrupt bool
	}{
		{"torn last record", func(w []byte, s, f int64) []byte { return w[:len(w)-150] }, false},
		{"zero hole then valid records", func(w []byte, s, f int64) []byte {
			// The first unsynced write lost, the later ones kept.
			b := bytes.Clone(w)
			clear(b[s:f])
			return b
		}, false},
		{"bit flip in the last whole record", func(w []byte, s, f int64) []byte {
			b := bytes.Clone(w)
			b[len(b)-40] ^= 0x02
			return b
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crashed, seg, written, synced, firstWrite := crashedLog(t)
			if firstWrite <= synced {
				t.Fatalf("the first unsynced write ends at %d, synced up to %d", firstWrite, synced)
			}
			damaged := tc.damage(written, synced, firstWrite)
			writeMem(t, crashed, seg, damaged)
			db, err := Open("/db", &Options{FS: crashed})
			if tc.corrupt {
				var ce *errs.CorruptionError
				if !errors.As(err, &ce) || ce.File != seg || ce.Offset < synced {
					t.Fatalf("Open = %v, want corruption in %s after offset %d", err, seg, synced)
				}
				if !bytes.Equal(readMem(t, crashed, seg), damaged) {
					t.Fatal("the refused Open changed the segment")
				}
				return
			}
			if err != nil {
				t.Fatalf("Open after a crash: %v", err)
			}
			defer db.Close()
			for i := range 20 {
				if _, err := db.Get(fmt.Appendf(nil, "k%03d", i)); err != nil {
					t.Fatalf("synced k%03d: %v", i, err)
				}
			}
			if len(db.LostRanges()) != 0 {
				t.Fatalf("a torn tail reported as lost: %+v", db.LostRanges())
			}
		})
	}
}

// TestSalvageKeepsRecordsAfterDamage: Salvage copies the damaged segment
// to quarantine/, keeps every record after the damage, and reports the
// sequence numbers lost.
func TestSalvageKeepsRecordsAfterDamage(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, nil)
	must(t, err)
	for i := range 100 {
		must(t, db.Put(fmt.Appendf(nil, "k%03d", i), fmt.Appendf(nil, "value-%03d-%s", i, strings.Repeat("x", 50))))
	}
	must(t, db.Close())
	seg := newestSegment(t, vfs.Default, dir)
	orig, err := os.ReadFile(seg)
	must(t, err)
	at := bytes.Index(orig, []byte("value-050-"))
	if at < 0 {
		t.Fatal("record of k050 not found in the segment")
	}
	damaged := bytes.Clone(orig)
	damaged[at+3] ^= 0x20
	must(t, os.WriteFile(seg, damaged, 0o644))

	if _, err := Open(dir, nil); !errors.Is(err, ErrCorruption) {
		t.Fatalf("Open without Salvage: %v", err)
	}
	db, err = Open(dir, &Options{Salvage: true})
	if err != nil {
		t.Fatalf("Open with Salvage: %v", err)
	}
	defer db.Close()
	for i := range 100 {
		_, err := db.Get(fmt.Appendf(nil, "k%03d", i))
		if i == 50 {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("k050, in the damaged record: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("k%03d: %v", i, err)
		}
	}
	lost := db.LostRanges()
	if len(lost) != 1 || lost[0].First == 0 || lost[0].First != lost[0].Last || lost[0].Segment != seg {
		t.Fatalf("LostRanges = %+v, want one range of one sequence number", lost)
	}
	if h := db.Health(); len(h.Lost) != 1 || h.Lost[0].First != lost[0].First {
		t.Fatalf("Health().Lost = %+v, want the lost range", h.Lost)
	}
	q := filepath.Join(dir, "quarantine", filepath.Base(seg))
	if lost[0].Quarantined != q {
		t.Fatalf("quarantined as %q, want %q", lost[0].Quarantined, q)
	}
	if got, err := os.ReadFile(q); err != nil || !bytes.Equal(got, damaged) {
		t.Fatalf("quarantined copy: %v", err)
	}
	// The history no longer holds the dropped operation: an export or a
	// feed reading past it would hand out less than it claims.
	if _, err := db.ExportChanges(io.Discard, nil); !errors.Is(err, ErrHistoryUnavailable) {
		t.Fatalf("export from before the loss: %v, want ErrHistoryUnavailable", err)
	}
	if _, err := db.Subscribe(context.Background(), Position{}); !errors.Is(err, ErrHistoryUnavailable) {
		t.Fatalf("feed from before the loss: %v, want ErrHistoryUnavailable", err)
	}
	after := oplog.VersionVector{db.ReplicaID(): lost[0].Last}
	var buf bytes.Buffer
	if n, err := db.ExportChanges(&buf, after); err != nil || n != 49 {
		t.Fatalf("export from after the loss: %d operations, %v; want the 49 puts after k050", n, err)
	}
	// And after a reopen (the floors are durable).
	must(t, db.Put([]byte("after"), []byte("x")))
	must(t, db.Close())
	db, err = Open(dir, nil)
	must(t, err)
	if _, err := db.ExportChanges(io.Discard, nil); !errors.Is(err, ErrHistoryUnavailable) {
		t.Fatalf("export from before the loss, reopened: %v, want ErrHistoryUnavailable", err)
	}
}

// TestManifestCutShortRefused: a MANIFEST cut short at a record boundary
// reads like one a crash tore; when the log resumes past what its tables
// hold, Open refuses instead of leaving the newer tables out, and repair
// rebuilds the MANIFEST from the tables, every key back.
func TestManifestCutShortRefused(t *testing.T) {
	mem := vfs.NewMem()
	opts := &Options{FS: mem, MemtableSize: 1 << 20, HotHistory: -1}
	db, err := Open("/db", opts)
	must(t, err)
	// The first MANIFEST edit's size: cut there later.
	manifest := filepath.Join("/db", "MANIFEST-000001")
	early := int64(len(readMem(t, mem, manifest)))
	for round := range 4 {
		for i := range 300 {
			must(t, db.Put(fmt.Appendf(nil, "k%d-%03d", round, i), bytes.Repeat([]byte("v"), 100)))
		}
		must(t, db.Flush())
	}
	must(t, db.Put([]byte("last"), []byte("x")))
	// The flushed segments leave the log (archived): the log resumes
	// past the first MANIFEST edit.
	deadline := time.Now().Add(10 * time.Second)
	for db.Metrics().OpLog.ArchivedSegments < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	must(t, db.Close())
	b := readMem(t, mem, manifest)
	if int64(len(b)) <= early {
		t.Skip("the MANIFEST did not grow")
	}
	writeMem(t, mem, manifest, b[:early])
	db, err = Open("/db", opts)
	if err == nil {
		// Only if the log still holds everything: then every key reads.
		defer db.Close()
		for round := range 4 {
			for i := range 300 {
				if _, err := db.Get(fmt.Appendf(nil, "k%d-%03d", round, i)); err != nil {
					t.Fatalf("opened with the MANIFEST cut short, k%d-%03d: %v", round, i, err)
				}
			}
		}
		return
	}
	if !errors.Is(err, ErrCorruption) {
		t.Fatalf("open with the MANIFEST cut short: %v, want ErrCorruption", err)
	}
}

package lsm

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
)

// versionModel is the expected content of a version: table number →
// (level, meta). Every table covers one "slot" of the key space, so levels
// 1+ stay non-overlapping when the model puts at most one table per slot
// there.
type versionModel struct {
	level map[layout.FileNum]int
	meta  map[layout.FileNum]*FileMeta
	slot  map[layout.FileNum]int
}

func newVersionModel() *versionModel {
	return &versionModel{level: map[layout.FileNum]int{}, meta: map[layout.FileNum]*FileMeta{}, slot: map[layout.FileNum]int{}}
}

func (m *versionModel) slotFree(level, slot int) bool {
	if level == 0 {
		return true
	}
	for num, l := range m.level {
		if l == level && m.slot[num] == slot {
			return false
		}
	}
	return true
}

// dump lists each level as Version orders it: L0 by LargestSeq descending,
// others by key. Tables get LargestSeq = 10*num, so L0 is num descending.
func (m *versionModel) dump() versionDump {
	var d versionDump
	for num, l := range m.level {
		d[l] = append(d[l], num)
	}
	for l := range d {
		if l == 0 {
			slices.SortFunc(d[l], func(a, b layout.FileNum) int { return int(b) - int(a) })
		} else {
			slices.SortFunc(d[l], func(a, b layout.FileNum) int { return m.slot[a] - m.slot[b] })
		}
	}
	return d
}

func slotMeta(num layout.FileNum, slot int) *FileMeta {
	return meta(num, fmt.Sprintf("s%03d-a", slot), fmt.Sprintf("s%03d-z", slot), SeqNum(num)*10-5, SeqNum(num)*10)
}

// randomEdit returns an edit against m and applies it to m: adds, deletes
// and moves between levels.
func randomEdit(rng *rand.Rand, m *versionModel, newNum func() layout.FileNum) *VersionEdit {
	e := &VersionEdit{}
	nums := make([]layout.FileNum, 0, len(m.level))
	for num := range m.level {
		nums = append(nums, num)
	}
	slices.Sort(nums)
	for range 1 + rng.IntN(3) {
		switch op := rng.IntN(10); {
		case op < 5 || len(nums) == 0: // add
			level, slot := rng.IntN(NumLevels), rng.IntN(40)
			if !m.slotFree(level, slot) {
				continue
			}
			num := newNum()
			fm := slotMeta(num, slot)
			e.NewFiles = append(e.NewFiles, NewFile{Level: level, Meta: fm})
			m.level[num], m.meta[num], m.slot[num] = level, fm, slot
		case op < 8: // delete
			i := rng.IntN(len(nums))
			num := nums[i]
			nums = slices.Delete(nums, i, i+1)
			e.DeletedFiles = append(e.DeletedFiles, DeletedFile{Level: m.level[num], Num: num})
			delete(m.level, num)
			delete(m.meta, num)
			delete(m.slot, num)
		default: // move one level down, keeping the same number
			i := rng.IntN(len(nums))
			num := nums[i]
			from := m.level[num]
			if from == NumLevels-1 {
				continue
			}
			delete(m.level, num)
			if !m.slotFree(from+1, m.slot[num]) {
				m.level[num] = from
				continue
			}
			nums = slices.Delete(nums, i, i+1)
			m.level[num] = from + 1
			e.DeletedFiles = append(e.DeletedFiles, DeletedFile{Level: from, Num: num})
			e.NewFiles = append(e.NewFiles, NewFile{Level: from + 1, Meta: m.meta[num]})
		}
	}
	return e
}

func checkVersion(t *testing.T, what string, vs *VersionSet, m *versionModel) {
	t.Helper()
	v := vs.Current()
	defer v.Unref()
	if got, want := dump(v), m.dump(); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: version %v, want %v", what, got, want)
	}
	for level := range v.Levels {
		for _, f := range v.Levels[level] {
			if !reflect.DeepEqual(f, m.meta[f.Num]) {
				t.Fatalf("%s: table %s meta %+v, want %+v", what, f.Num, f, m.meta[f.Num])
			}
		}
	}
	live := vs.LiveFiles()
	for num := range m.level {
		if _, ok := live[num]; !ok {
			t.Fatalf("%s: table %s missing from LiveFiles", what, num)
		}
	}
}

func TestVersionSetApplyAndReload(t *testing.T) {
	for _, maxManifest := range []int64{0, 400} {
		t.Run(fmt.Sprintf("maxManifest=%d", maxManifest), func(t *testing.T) {
			rng := newVersionRand(t)
			fs := vfs.NewMem()
			opts := VersionSetOptions{FS: fs, Dir: "db", MaxManifestSize: maxManifest}
			vs, err := CreateVersionSet(opts)
			if err != nil {
				t.Fatal(err)
			}
			if vs.ManifestNum() != 1 {
				t.Fatalf("ManifestNum %d, want 1", vs.ManifestNum())
			}
			if n := vs.NewFileNum(); n != 2 {
				t.Fatalf("first NewFileNum %d, want 2", n)
			}
			m := newVersionModel()
			manifests := map[layout.FileNum]bool{}
			for i := range 200 {
				e := randomEdit(rng, m, vs.NewFileNum)
				if rng.IntN(4) == 0 {
					e.LastSeq, e.HasLastSeq = SeqNum(i*100), true
				}
				if err := vs.LogAndApply(e); err != nil {
					t.Fatalf("edit %d: %v", i, err)
				}
				manifests[vs.ManifestNum()] = true
				checkVersion(t, fmt.Sprintf("edit %d", i), vs, m)
				if rng.IntN(20) == 0 {
					next, last := vs.NewFileNum(), vs.LastSeq()
					if err := vs.LogAndApply(&VersionEdit{}); err != nil { // records the counters
						t.Fatal(err)
					}
					if err := vs.Close(); err != nil {
						t.Fatal(err)
					}
					if vs, err = LoadVersionSet(opts); err != nil {
						t.Fatalf("reload after edit %d: %v", i, err)
					}
					checkVersion(t, fmt.Sprintf("reload after edit %d", i), vs, m)
					if n := vs.NewFileNum(); n <= next {
						t.Fatalf("NewFileNum %d after reload, want > %d", n, next)
					}
					// Load keeps LastSeq at or above every table's LargestSeq
					// (these test tables' seqs are arbitrary).
					for _, fm := range m.meta {
						last = max(last, fm.LargestSeq)
					}
					if vs.LastSeq() != last {
						t.Fatalf("LastSeq %d after reload, want %d", vs.LastSeq(), last)
					}
				}
			}
			if maxManifest > 0 && len(manifests) < 5 {
				t.Fatalf("only %d manifests: no rotation", len(manifests))
			}
			// Exactly one manifest remains, the one CURRENT names.
			names, err := fs.List("db")
			if err != nil {
				t.Fatal(err)
			}
			var found []string
			for _, n := range names {
				if strings.HasPrefix(n, "MANIFEST-") || strings.HasSuffix(n, ".tmp") {
					found = append(found, n)
				}
			}
			if want := []string{layout.Name(layout.TypeManifest, vs.ManifestNum())}; !reflect.DeepEqual(found, want) {
				t.Fatalf("manifest files %v, want %v", found, want)
			}
			vs.Close()
		})
	}
}

// TestVersionSetCrashAfterEachEdit: after every acknowledged LogAndApply, a
// power cut leaves a directory that loads with that edit.
func TestVersionSetCrashAfterEachEdit(t *testing.T) {
	for _, maxManifest := range []int64{0, 300} {
		t.Run(fmt.Sprintf("maxManifest=%d", maxManifest), func(t *testing.T) {
			rng := newVersionRand(t)
			fs := vfs.NewMem()
			vs, err := CreateVersionSet(VersionSetOptions{FS: fs, Dir: "db", MaxManifestSize: maxManifest})
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, m *versionModel, lastSeq SeqNum) {
				t.Helper()
				clone, err := LoadVersionSet(VersionSetOptions{FS: fs.CrashClone(), Dir: "db"})
				if err != nil {
					t.Fatalf("%s: crash clone: %v", what, err)
				}
				checkVersion(t, what, clone, m)
				if clone.LastSeq() != lastSeq {
					t.Fatalf("%s: LastSeq %d, want %d", what, clone.LastSeq(), lastSeq)
				}
				clone.Close()
			}
			m := newVersionModel()
			check("create", m, 0)
			for i := range 60 {
				e := randomEdit(rng, m, vs.NewFileNum)
				// Above every table's LargestSeq, which also bounds LastSeq.
				e.LastSeq, e.HasLastSeq = SeqNum(100000+i), true
				if err := vs.LogAndApply(e); err != nil {
					t.Fatal(err)
				}
				check(fmt.Sprintf("edit %d", i), m, SeqNum(100000+i))
			}
			vs.Close()
		})
	}
}

// TestVersionSetCrashAnywhere kills the "process" at every filesystem
// operation of a workload (create, edits, reload, more edits), then loads
// what a power cut leaves: every acknowledged edit is there, and the edit in
// flight is either wholly there or absent.
func TestVersionSetCrashAnywhere(t *testing.T) {
	rng := newVersionRand(t)
	// Fixed edits, generated once against a model, with the state after each.
	m := newVersionModel()
	next := layout.FileNum(100)
	newNum := func() layout.FileNum { next++; return next }
	var edits []*VersionEdit
	states := []versionDump{m.dump()}
	for range 8 {
		edits = append(edits, randomEdit(rng, m, newNum))
		states = append(states, m.dump())
	}

	run := func(fs vfs.FS) (acked int, created bool) {
		opts := VersionSetOptions{FS: fs, Dir: "db", MaxManifestSize: 250}
		vs, err := CreateVersionSet(opts)
		if err != nil {
			return 0, false
		}
		for i, e := range edits {
			if i == len(edits)/2 {
				if vs.Close() != nil {
					return acked, true
				}
				if vs, err = LoadVersionSet(opts); err != nil {
					return acked, true
				}
			}
			if vs.LogAndApply(cloneEdit(e)) != nil {
				vs.Close()
				return acked, true
			}
			acked++
		}
		vs.Close()
		return acked, true
	}

	probe := vfs.FailAfter(math.MaxInt64, vfs.ErrInjected)
	if acked, _ := run(vfs.WithFaults(vfs.NewMem(), probe.Inject)); acked != len(edits) {
		t.Fatalf("fault-free run acknowledged %d edits", acked)
	}
	total := probe.Count()
	for n := range 2 * total {
		mem := vfs.NewMem()
		// Each crash point twice: a failed write writes nothing, or half.
		wrap := vfs.WithFaults
		if n >= total {
			wrap = vfs.WithTornWrites
		}
		acked, created := run(wrap(mem, vfs.FailAfter(n%total, vfs.ErrInjected).Inject))
		vs, err := LoadVersionSet(VersionSetOptions{FS: mem.CrashClone(), Dir: "db"})
		if err != nil {
			if !created && errors.Is(err, errs.ErrCorruption) {
				continue // the database was never created
			}
			t.Fatalf("crash at op %d/%d (%d edits acked): %v", n, total, acked, err)
		}
		v := vs.Current()
		got := dump(v)
		v.Unref()
		vs.Close()
		ok := reflect.DeepEqual(got, states[acked])
		if acked < len(edits) && reflect.DeepEqual(got, states[acked+1]) {
			ok = true
		}
		if !ok {
			t.Fatalf("crash at op %d/%d: %d edits acked, loaded %v; want %v or the next state", n, total, acked, got, states[acked])
		}
	}
	t.Logf("%d crash points", total)
}

func cloneEdit(e *VersionEdit) *VersionEdit {
	c := *e
	c.NewFiles = slices.Clone(e.NewFiles)
	c.DeletedFiles = slices.Clone(e.DeletedFiles)
	return &c
}

func TestVersionSetObsolete(t *testing.T) {
	var mu sync.Mutex
	var obsolete []layout.FileNum
	fs := vfs.NewMem()
	vs, err := CreateVersionSet(VersionSetOptions{FS: fs, Dir: "db", OnObsolete: func(n layout.FileNum) {
		mu.Lock()
		obsolete = append(obsolete, n)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := func() []layout.FileNum {
		mu.Lock()
		defer mu.Unlock()
		r := slices.Clone(obsolete)
		obsolete = nil
		slices.Sort(r)
		return r
	}
	apply := func(e *VersionEdit) {
		t.Helper()
		if err := vs.LogAndApply(e); err != nil {
			t.Fatal(err)
		}
	}
	apply(&VersionEdit{NewFiles: []NewFile{
		{Level: 0, Meta: meta(10, "a", "c", 1, 5)},
		{Level: 0, Meta: meta(11, "b", "d", 6, 9)},
		{Level: 2, Meta: meta(12, "x", "y", 1, 1)},
	}})
	held := vs.Current() // a reader holds the version with 10, 11, 12

	// Compact 10 and 11 into 13 at L1; move 12 from L2 to L3 (same number).
	apply(&VersionEdit{
		DeletedFiles: []DeletedFile{{Level: 0, Num: 10}, {Level: 0, Num: 11}, {Level: 2, Num: 12}},
		NewFiles:     []NewFile{{Level: 1, Meta: meta(13, "a", "d", 1, 9)}, {Level: 3, Meta: meta(12, "x", "y", 1, 1)}},
	})
	if o := got(); len(o) != 0 {
		t.Fatalf("obsolete %v while an old version is held", o)
	}
	if live := vs.LiveFiles(); len(live) != 4 {
		t.Fatalf("LiveFiles %v, want 10..13", live)
	}
	held.Unref()
	if o := got(); !reflect.DeepEqual(o, []layout.FileNum{10, 11}) {
		t.Fatalf("obsolete %v after release, want [10 11]", o)
	}
	if live := vs.LiveFiles(); !reflect.DeepEqual(live, map[layout.FileNum]struct{}{12: {}, 13: {}}) {
		t.Fatalf("LiveFiles %v, want 12, 13", live)
	}

	// With no reader, deletion reports at once; twice-held versions need
	// both releases.
	a, b := vs.Current(), vs.Current()
	apply(&VersionEdit{DeletedFiles: []DeletedFile{{Level: 1, Num: 13}}})
	a.Unref()
	if o := got(); len(o) != 0 {
		t.Fatalf("obsolete %v with one holder left", o)
	}
	b.Unref()
	if o := got(); !reflect.DeepEqual(o, []layout.FileNum{13}) {
		t.Fatalf("obsolete %v, want [13]", o)
	}
	apply(&VersionEdit{DeletedFiles: []DeletedFile{{Level: 3, Num: 12}}})
	if o := got(); !reflect.DeepEqual(o, []layout.FileNum{12}) {
		t.Fatalf("obsolete %v, want [12]", o)
	}
	// Close does not release the current version.
	apply(&VersionEdit{NewFiles: []NewFile{{Level: 0, Meta: meta(20, "a", "b", 1, 1)}}})
	if err := vs.Close(); err != nil {
		t.Fatal(err)
	}
	if o := got(); len(o) != 0 {
		t.Fatalf("Close reported %v obsolete", o)
	}
	if err := vs.LogAndApply(&VersionEdit{}); !errors.Is(err, errs.ErrClosed) {
		t.Fatalf("LogAndApply after Close: %v", err)
	}
}

func TestVersionSetRejectsBadEdits(t *testing.T) {
	fs := vfs.NewMem()
	vs, err := CreateVersionSet(VersionSetOptions{FS: fs, Dir: "db"})
	if err != nil {
		t.Fatal(err)
	}
	defer vs.Close()
	if err := vs.LogAndApply(&VersionEdit{LogNum: 5, HasLogNum: true, NewFiles: []NewFile{
		{Level: 1, Meta: meta(10, "c", "f", 1, 5)},
		{Level: 0, Meta: meta(11, "a", "z", 6, 9)},
	}}); err != nil {
		t.Fatal(err)
	}
	bad := map[string]*VersionEdit{
		"delete absent":      {DeletedFiles: []DeletedFile{{Level: 0, Num: 99}}},
		"delete wrong level": {DeletedFiles: []DeletedFile{{Level: 2, Num: 10}}},
		"delete twice":       {DeletedFiles: []DeletedFile{{Level: 0, Num: 11}, {Level: 0, Num: 11}}},
		"add twice":          {NewFiles: []NewFile{{Level: 3, Meta: meta(11, "a", "b", 1, 1)}}},
		"L1 overlap":         {NewFiles: []NewFile{{Level: 1, Meta: meta(12, "a", "c", 1, 1)}}},
		"L1 overlap inside":  {NewFiles: []NewFile{{Level: 1, Meta: meta(12, "d", "e", 1, 1)}}},
		"level out of range": {NewFiles: []NewFile{{Level: NumLevels, Meta: meta(12, "a", "b", 1, 1)}}},
		"nil meta":           {NewFiles: []NewFile{{Level: 0}}},
		"bad keys":           {NewFiles: []NewFile{{Level: 0, Meta: &FileMeta{Num: 12, Smallest: []byte("x"), Largest: []byte("y")}}}},
		"LogNum backwards":   {LogNum: 4, HasLogNum: true},
	}
	for name, e := range bad {
		if err := vs.LogAndApply(e); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Nothing changed, and the set still works.
	v := vs.Current()
	if d := dump(v).String(); d != "L0[000011] L1[000010] " {
		t.Fatalf("version after rejected edits: %s", d)
	}
	v.Unref()
	if err := vs.LogAndApply(&VersionEdit{NewFiles: []NewFile{{Level: 1, Meta: meta(12, "g", "h", 1, 1)}}}); err != nil {
		t.Fatal(err)
	}
}

func TestVersionSetWriteErrorIsSticky(t *testing.T) {
	var fail atomic.Bool
	mem := vfs.NewMem()
	fs := vfs.WithFaults(mem, func(op vfs.Op, path string) error {
		if fail.Load() && op == vfs.OpSync && strings.Contains(path, "MANIFEST") {
			return vfs.ErrInjected
		}
		return nil
	})
	vs, err := CreateVersionSet(VersionSetOptions{FS: fs, Dir: "db"})
	if err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	err = vs.LogAndApply(&VersionEdit{NewFiles: []NewFile{{Level: 0, Meta: meta(5, "a", "b", 1, 1)}}})
	if !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("got %v, want the injected sync error", err)
	}
	v := vs.Current()
	if v.NumFiles(0) != 0 {
		t.Fatal("version installed despite the failed sync")
	}
	v.Unref()
	fail.Store(false)
	if err := vs.LogAndApply(&VersionEdit{}); !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("after a failed sync: got %v, want the sticky error", err)
	}
	vs.Close()
}

func TestVersionSetCreateOverExisting(t *testing.T) {
	fs := vfs.NewMem()
	vs, err := CreateVersionSet(VersionSetOptions{FS: fs, Dir: "db"})
	if err != nil {
		t.Fatal(err)
	}
	vs.Close()
	if _, err := CreateVersionSet(VersionSetOptions{FS: fs, Dir: "db"}); err == nil {
		t.Fatal("CreateVersionSet over an existing database succeeded")
	}
}

func TestVersionSetFileNums(t *testing.T) {
	fs := vfs.NewMem()
	opts := VersionSetOptions{FS: fs, Dir: "db"}
	vs, err := CreateVersionSet(opts)
	if err != nil {
		t.Fatal(err)
	}
	vs.MarkFileNumUsed(40)
	vs.MarkFileNumUsed(7) // lower: no effect
	if n := vs.NewFileNum(); n != 41 {
		t.Fatalf("NewFileNum after MarkFileNumUsed(40) = %d, want 41", n)
	}
	// A table number above the counter moves it.
	if err := vs.LogAndApply(&VersionEdit{NewFiles: []NewFile{{Level: 0, Meta: meta(90, "a", "b", 1, 1)}}}); err != nil {
		t.Fatal(err)
	}
	vs.SetLastSeq(50)
	vs.SetLastSeq(20) // never back
	if vs.LastSeq() != 50 {
		t.Fatalf("LastSeq %d, want 50", vs.LastSeq())
	}
	if err := vs.LogAndApply(&VersionEdit{}); err != nil {
		t.Fatal(err)
	}
	vs.Close()
	// A WAL segment numbered after the last edit: numbers continue above it.
	f, err := fs.Create("db/000500.log")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	vs, err = LoadVersionSet(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer vs.Close()
	if vs.ManifestNum() <= 500 {
		t.Fatalf("new manifest number %d reuses a file's", vs.ManifestNum())
	}
	if n := vs.NewFileNum(); n <= vs.ManifestNum() {
		t.Fatalf("NewFileNum %d, not above the manifest %d", n, vs.ManifestNum())
	}
	if vs.LastSeq() != 50 {
		t.Fatalf("LastSeq after reload %d, want 50", vs.LastSeq())
	}
}

// TestVersionSetConcurrent runs edits and readers at once (for -race).
func TestVersionSetConcurrent(t *testing.T) {
	var obsolete atomic.Int64
	vs, err := CreateVersionSet(VersionSetOptions{FS: vfs.NewMem(), Dir: "db", MaxManifestSize: 4096,
		OnObsolete: func(layout.FileNum) { obsolete.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				v := vs.Current()
				for _, f := range v.Levels[0] {
					if f.Num == 0 {
						t.Error("bad table")
					}
				}
				v.Unref()
				_ = vs.LiveFiles()
			}
		})
	}
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Go(func() {
			for i := range 50 {
				num := vs.NewFileNum()
				key := fmt.Sprintf("w%d-%03d", w, i)
				if err := vs.LogAndApply(&VersionEdit{NewFiles: []NewFile{{Level: 0, Meta: meta(num, key, key, 1, 1)}}}); err != nil {
					t.Error(err)
					return
				}
				if err := vs.LogAndApply(&VersionEdit{DeletedFiles: []DeletedFile{{Level: 0, Num: num}}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	if n := obsolete.Load(); n != 200 {
		t.Fatalf("%d tables reported obsolete, want 200", n)
	}
	vs.Close()
}

func TestWriteManifest(t *testing.T) {
	fs := vfs.NewMem()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(fs.MkdirAll("/copy"))
	v := &Version{}
	v.Levels[1] = []*FileMeta{{Num: 7, Size: 100, Smallest: MakeInternalKey([]byte("a"), 1, KindSet),
		Largest: MakeInternalKey([]byte("b"), 2, KindSet), SmallestSeq: 1, LargestSeq: 2, Cold: true}}
	if err := WriteManifest(fs, "/copy", 9, v, 8, 9, 2); err == nil {
		t.Fatal("next file number not above the manifest's accepted")
	}
	must(WriteManifest(fs, "/copy", 9, v, 8, 10, 5))
	ms, err := ReadManifestState(fs, "/copy")
	must(err)
	if ms.ManifestNum != 9 || ms.NextFileNum != 10 || len(ms.Version.Levels[1]) != 1 || !ms.Version.Levels[1][0].Cold {
		t.Fatalf("manifest state %+v", ms)
	}
	// It survives a crash: everything was synced.
	ms, err = ReadManifestState(fs.CrashClone(), "/copy")
	must(err)
	if ms.Version.Levels[1][0].Num != 7 {
		t.Fatalf("after a crash: %+v", ms)
	}
	if err := WriteManifest(fs, "/copy", 11, v, 8, 12, 5); err == nil {
		t.Fatal("a second manifest over CURRENT accepted")
	}
}

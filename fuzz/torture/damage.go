package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/verify"
)

// Part 2: damage to a closed database.
//
// A database is written on the in-memory filesystem with small memtables
// and levels, so it has tables on several levels, log segments and cold
// archives of sealed segments, and closed. Each fault then damages a
// fresh copy of it: a flipped bit, a truncation or a deletion of one
// file. The checker must report damage; the engine must then either
// refuse to open (ErrCorruption, ErrNotDatabase), with Options{} and with
// Options{ReadOnly: true}, or read every key right or fail the read with
// ErrCorruption. A wrong value or a wrong "not found" is a failure.

const (
	damageDir  = "/db"
	peerDir    = "/peer"
	damageKeys = 1500
)

// DamageFigures are the results of the damage test.
type DamageFigures struct {
	Files       int            `json:"files"`
	FilesByType map[string]int `json:"files_by_type"`
	Keys        int            `json:"keys"`
	Injected    int            `json:"faults_injected"`
	ByFault     map[string]int `json:"faults_by_kind"`
	Detected    int            `json:"detected_by_fsck"`
	// Harmless faults change nothing the engine reads (HarmlessWhy says
	// what they were); the checker has nothing to find.
	Harmless    int            `json:"undetectable_by_design"`
	HarmlessWhy map[string]int `json:"undetectable_by_design_kinds"`
	Undetected  int            `json:"undetected"`
	WrongReads  int            `json:"wrong_reads"`
	RightReads  int            `json:"right_reads"`
	// ReadsRefused are reads that failed with ErrCorruption.
	ReadsRefused int `json:"reads_refused"`
	// ExportsRefused: ExportChanges failed with ErrCorruption or
	// ErrHistoryUnavailable; ExportsShort: it returned fewer operations
	// than the database holds, without an error.
	ExportsRefused    int            `json:"exports_refused"`
	ExportsShort      int            `json:"exports_short"`
	OpensRefused      int            `json:"opens_refused"`
	OpenRefusedBy     map[string]int `json:"opens_refused_by_kind"`
	ReadOnlyRefused   int            `json:"read_only_opens_refused"`
	ReadOnlyRefusedBy map[string]int `json:"read_only_opens_refused_by_kind"`
	// Repair: each detected fault repaired on a fresh copy.
	Repair   RepairFigures `json:"repair"`
	Failures []string      `json:"failures,omitempty"`
}

// damageBase is the closed database every fault starts from.
type damageBase struct {
	files map[string][]byte // path -> contents
	dirs  []string
	// peer is a replica that imported every operation of the database
	// (the refills' source), kept apart from the faults.
	peer     map[string][]byte
	peerDirs []string
	model    model
	ops      int // operations ExportChanges returns from the undamaged database
	// history are the log segments and archives, oldest first (file
	// numbers rise with age).
	history []string
}

// buildDamageBase writes the database and reads it back from the
// filesystem.
func buildDamageBase(seed uint64) (*damageBase, error) {
	mem := vfs.NewMem()
	opts := &pluresdb.Options{FS: mem, MemtableSize: 1 << 20, L0CompactionThreshold: 2,
		TargetFileSize: 32 << 10, LBaseMaxBytes: 128 << 10, HotHistory: -1,
		// Compactions run when asked only, so that a seed gives the same
		// files every time (a fault is named by its number).
		DisableAutoCompaction: true}
	db, err := pluresdb.Open(damageDir, opts)
	if err != nil {
		return nil, err
	}
	m := model{}
	w := newWorkload(seed, 2, damageKeys, 4, 600, "d")
	write := func(n int) error {
		for range n {
			b := w.next()
			if err := b.commit(db); err != nil {
				return err
			}
			m.apply(b)
		}
		return nil
	}
	// Tables on several levels: the first writes compacted to the
	// bottom, then a key range of later ones compacted, then flushed
	// tables left in L0.
	for i := range 8 {
		if err := write(600); err != nil {
			return nil, err
		}
		if err := db.Flush(); err != nil {
			return nil, err
		}
		switch i {
		case 3:
			err = db.Compact(nil, nil)
		case 5:
			err = db.Compact([]byte(keyName(0)), []byte(keyName(damageKeys/2)))
		}
		if err != nil {
			return nil, err
		}
	}
	// Flushes start retention, which archives the flushed segments
	// (HotHistory < 0); wait until it has archived them all.
	deadline, archived := time.Now().Add(10*time.Second), -1
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		n := db.Metrics().OpLog.ArchivedSegments
		if n > 0 && n == archived {
			break
		}
		archived = n
	}
	// The last writes stay in the log only.
	if err := write(200); err != nil {
		return nil, err
	}
	// The peer holds every operation.
	peer, err := pluresdb.Open(peerDir, &pluresdb.Options{FS: mem})
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := db.ExportChanges(pw, nil)
		pw.CloseWithError(err)
	}()
	_, err = peer.ImportChanges(pr)
	pr.CloseWithError(err)
	if err := errors.Join(err, peer.Close()); err != nil {
		return nil, fmt.Errorf("the peer: %w", err)
	}
	if err := db.Close(); err != nil {
		return nil, err
	}
	base := &damageBase{files: map[string][]byte{}, peer: map[string][]byte{}, model: m}
	if err := readTree(mem, damageDir, base.files, &base.dirs); err != nil {
		return nil, err
	}
	if err := readTree(mem, peerDir, base.peer, &base.peerDirs); err != nil {
		return nil, err
	}
	for p := range base.files {
		if t := fileType(p); t == "archive" || t == "log" {
			base.history = append(base.history, p)
		}
	}
	// Names are zero-padded numbers: sorting them sorts the numbers.
	slices.SortFunc(base.history, func(a, b string) int { return strings.Compare(path.Base(a), path.Base(b)) })
	return base, nil
}

// readTree reads every file under dir into files, and the directories
// into dirs.
func readTree(fs vfs.FS, dir string, files map[string][]byte, dirs *[]string) error {
	*dirs = append(*dirs, dir)
	names, err := fs.List(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		p := path.Join(dir, name)
		fi, err := fs.Stat(p)
		if err != nil {
			return err
		}
		if fi.IsDir() {
			if err := readTree(fs, p, files, dirs); err != nil {
				return err
			}
			continue
		}
		f, err := fs.Open(p)
		if err != nil {
			return err
		}
		data, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return err
		}
		files[p] = data
	}
	return nil
}

// copyTo writes the database (and with peer, the peer) to a new
// filesystem.
func (b *damageBase) copyTo(peer ...bool) (*vfs.MemFS, error) {
	mem := vfs.NewMem()
	dirs, files := b.dirs, b.files
	if len(peer) > 0 && peer[0] {
		dirs = append(slices.Clone(dirs), b.peerDirs...)
		files = maps.Clone(files)
		maps.Copy(files, b.peer)
	}
	for _, d := range dirs {
		if err := mem.MkdirAll(d); err != nil {
			return nil, err
		}
	}
	for p, data := range files {
		f, err := mem.Create(p)
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(data); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
	}
	for _, d := range dirs {
		if err := mem.SyncDir(d); err != nil {
			return nil, err
		}
	}
	return mem, nil
}

// fileType names the type of a database file, as the checker's report
// does.
func fileType(p string) string {
	t, _, ok := layout.Parse(path.Base(p))
	if !ok {
		return "other"
	}
	switch t {
	case layout.TypeLog:
		return "log"
	case layout.TypeTable:
		return "table"
	case layout.TypeManifest:
		return "manifest"
	case layout.TypeCurrent:
		return "current"
	case layout.TypeLock:
		return "lock"
	case layout.TypeReplica:
		return "replica"
	case layout.TypeArchive:
		return "archive"
	case layout.TypeVectorGraph:
		return "vector"
	}
	return "other"
}

// fault is one injected fault.
type fault struct {
	kind string // "flip", "truncate", "delete"
	file string
	off  int64 // flip: the byte; truncate: the new size
	bit  uint
}

func (f fault) String() string {
	switch f.kind {
	case "flip":
		return fmt.Sprintf("flip bit %d of byte %d of %s", f.bit, f.off, f.file)
	case "truncate":
		return fmt.Sprintf("truncate %s to %d bytes", f.file, f.off)
	}
	return "delete " + f.file
}

// pickFault chooses a fault. Empty files (LOCK) can only be deleted.
func (b *damageBase) pickFault(rng *rand.Rand) fault {
	names := slices.Sorted(func(yield func(string) bool) {
		for p := range b.files {
			if !yield(p) {
				return
			}
		}
	})
	p := names[rng.IntN(len(names))]
	size := int64(len(b.files[p]))
	r := rng.IntN(4)
	switch {
	case size == 0 || r == 3:
		return fault{kind: "delete", file: p}
	case r == 2:
		return fault{kind: "truncate", file: p, off: rng.Int64N(size)}
	}
	return fault{kind: "flip", file: p, off: rng.Int64N(size), bit: uint(rng.IntN(8))}
}

// inject applies f to the copy on mem.
func (b *damageBase) inject(mem *vfs.MemFS, f fault) error {
	if f.kind == "delete" {
		return mem.Remove(f.file)
	}
	data := slices.Clone(b.files[f.file])
	if f.kind == "flip" {
		data[f.off] ^= 1 << f.bit
	} else {
		data = data[:f.off]
	}
	file, err := mem.Create(f.file)
	if err != nil {
		return err
	}
	if _, err := file.Write(data); err != nil {
		return err
	}
	if err := file.Sync(); err != nil {
		return err
	}
	return file.Close()
}

// harmless says why f changes nothing the engine reads, or "" if it may.
// The LOCK file is empty and only locked: deleting it loses nothing (the
// next open creates it again). A log segment that holds no record (its
// 16-byte header only: the segment a clean close leaves newest) holds
// nothing to lose: without it the directory is one a crash before the
// segment was created leaves.
func (b *damageBase) harmless(f fault) string {
	switch t := fileType(f.file); {
	case t == "lock":
		return "delete LOCK"
	case t == "log" && f.kind == "delete" && len(b.files[f.file]) <= segmentHeaderSize:
		return "delete an empty log segment"
	}
	return ""
}

// segmentHeaderSize is the size of a log segment's header (package wal).
const segmentHeaderSize = 16

// errKind names the sentinel an error wraps.
func errKind(err error) string {
	switch {
	case errors.Is(err, pluresdb.ErrCorruption):
		return "ErrCorruption"
	case errors.Is(err, pluresdb.ErrNotDatabase):
		return "ErrNotDatabase"
	case errors.Is(err, pluresdb.ErrNewerFormat):
		return "ErrNewerFormat"
	case errors.Is(err, pluresdb.ErrReadOnly):
		return "ErrReadOnly"
	}
	return "other"
}

// RunDamage runs faults from..from+n-1 of the damage test with seed.
func RunDamage(seed uint64, from, n int) DamageFigures {
	fig := DamageFigures{FilesByType: map[string]int{}, ByFault: map[string]int{}, HarmlessWhy: map[string]int{},
		OpenRefusedBy: map[string]int{}, ReadOnlyRefusedBy: map[string]int{}}
	base, err := buildDamageBase(seed)
	if err != nil {
		fig.Failures = append(fig.Failures, fmt.Sprintf("damage (seed %d): writing the database: %v", seed, err))
		return fig
	}
	fig.Files, fig.Keys = len(base.files), damageKeys
	for p := range base.files {
		fig.FilesByType[fileType(p)]++
	}
	if fig.FilesByType["archive"] == 0 {
		fig.Failures = append(fig.Failures, fmt.Sprintf("damage (seed %d): the database has no archive", seed))
	}
	// The undamaged database must check clean and read right, or the
	// figures below mean nothing.
	if problems := base.check(seed, -1, nil, &DamageFigures{OpenRefusedBy: map[string]int{}, ReadOnlyRefusedBy: map[string]int{}, HarmlessWhy: map[string]int{}}); len(problems) > 0 {
		fig.Failures = append(fig.Failures, problems...)
		return fig
	}
	for i := from; i < from+n; i++ {
		rng := rand.New(rand.NewPCG(seed, 3000+uint64(i)))
		f := base.pickFault(rng)
		fig.Injected++
		fig.ByFault[f.kind+" "+fileType(f.file)]++
		fig.Failures = append(fig.Failures, base.check(seed, i, &f, &fig)...)
	}
	return fig
}

// check injects f (none if nil) into a fresh copy, runs the checker and
// reads every key, adding to fig. It returns the failures.
func (b *damageBase) check(seed uint64, i int, f *fault, fig *DamageFigures) (fails []string) {
	what := "the undamaged database"
	if f != nil {
		what = f.String()
	}
	failf := func(format string, a ...any) {
		fails = append(fails, fmt.Sprintf("damage %d (seed %d, %s; run again: -faults 1 -fault-from %d -seed %d -kills 0 -diskfull 0): %s",
			i, seed, what, i, seed, fmt.Sprintf(format, a...)))
	}
	mem, err := b.copyTo()
	if err != nil {
		failf("copy: %v", err)
		return fails
	}
	if f != nil {
		if err := b.inject(mem, *f); err != nil {
			failf("inject: %v", err)
			return fails
		}
	}
	rep, err := verify.Dir(context.Background(), mem, damageDir, verify.Options{Parallelism: 1})
	var found []string
	switch {
	case err != nil && f != nil && errors.Is(err, pluresdb.ErrNotDatabase):
		// The checker refuses a directory that no longer holds a
		// database: that is a detection too.
		found = append(found, "not a database")
	case err != nil:
		failf("fsck could not run: %v", err)
		return fails
	default:
		for _, fd := range rep.Findings {
			if fd.Kind.Damage() {
				found = append(found, fmt.Sprintf("%s %s@%d", fd.Kind, path.Base(fd.File), fd.Offset))
			}
		}
	}
	why := ""
	if f != nil {
		why = b.harmless(*f)
	}
	switch {
	case f == nil && len(found) > 0:
		failf("fsck reports damage: %v", found)
	case f == nil:
	case len(found) > 0:
		fig.Detected++
	case why != "":
		fig.Harmless++
		fig.HarmlessWhy[why]++
	default:
		fig.Undetected++
		failf("fsck reports no damage")
	}
	if len(found) > 0 && why != "" {
		failf("fsck reports damage %v for a harmless fault", found)
	}

	// A refused open must say why: damage, or not a database. Every
	// format checks its version before its checksum (a newer version may
	// lay its checksum out elsewhere), so a flipped bit in a version
	// field reads as a newer format: a refusal too, nothing read wrong.
	refusal := func(kind string) bool {
		return kind == "ErrCorruption" || kind == "ErrNotDatabase" || (kind == "ErrNewerFormat" && f.kind == "flip")
	}
	// Whatever the engine makes of the damage, repair must cope with it
	// (and never hide a loss).
	if f != nil && len(found) > 0 {
		defer b.refillCheck(*f, &fig.Repair, failf)
		defer b.repairCheck(*f, &fig.Repair, failf)
	}
	db, err := pluresdb.Open(damageDir, &pluresdb.Options{FS: mem})
	if err != nil {
		kind := errKind(err)
		fig.OpensRefused++
		fig.OpenRefusedBy[kind]++
		if f == nil || !refusal(kind) {
			failf("open refused: %v", err)
			return fails
		}
		db, err = pluresdb.Open(damageDir, &pluresdb.Options{FS: mem, ReadOnly: true})
		if err != nil {
			kind := errKind(err)
			fig.ReadOnlyRefused++
			fig.ReadOnlyRefusedBy[kind]++
			if !refusal(kind) {
				failf("read-only open refused: %v", err)
			}
			return fails
		}
	}
	var wrong []string
	for k := range damageKeys {
		key := keyName(k)
		got, err := readDoc(db, key)
		switch {
		case err != nil && errors.Is(err, pluresdb.ErrCorruption) && f != nil:
			fig.ReadsRefused++
		case err != nil || got.String() != b.model[key].String():
			fig.WrongReads++
			wrong = append(wrong, wrongRead(key, got, b.model[key], err))
		default:
			fig.RightReads++
		}
	}
	if len(wrong) > 0 {
		failf("wrong reads (fsck found %v): %s", found, firstFew(wrong))
	}
	// The history: every operation, or an error saying why not.
	ops, err := db.ExportChanges(io.Discard, nil)
	switch {
	case f == nil && err != nil:
		failf("export changes: %v", err)
	case f == nil:
		b.ops = ops
	case err != nil:
		if !errors.Is(err, pluresdb.ErrCorruption) && !errors.Is(err, pluresdb.ErrHistoryUnavailable) {
			failf("export changes: %v", err)
		}
		fig.ExportsRefused++
	case ops != b.ops:
		fig.ExportsShort++
		failf("export changes returns %d operations and no error, the database holds %d (fsck found %v)", ops, b.ops, found)
	}
	if err := db.Close(); err != nil && !errors.Is(err, pluresdb.ErrCorruption) {
		failf("close: %v", err)
	}
	return fails
}

package lsm

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
)

// defaultMaxManifestSize is the manifest size past which LogAndApply starts
// a new manifest holding a snapshot of the current version.
const defaultMaxManifestSize = 64 << 20

// VersionSetOptions configures a VersionSet.
type VersionSetOptions struct {
	FS  vfs.FS
	Dir string
	// MaxManifestSize: once the manifest is this large, the next edit starts
	// a new manifest with a snapshot of the version, so replay stays short.
	// 0: 64 MiB.
	MaxManifestSize int64
	// OnObsolete, if set, is called with the number of each table that has
	// left every live Version, from the goroutine whose Unref (or
	// LogAndApply) released it; calls may run concurrently. The table is no
	// longer referenced by the durable manifest, so the DB may delete the
	// file and drop it from its caches. It must not call LogAndApply.
	OnObsolete func(num layout.FileNum)
	// ReadOnly: LoadVersionSet reads the manifest and writes nothing (no
	// new manifest, no CURRENT), and LogAndApply refuses every edit with
	// an error wrapping errs.ErrReadOnly.
	ReadOnly bool
}

// VersionSet owns the MANIFEST and the current Version, and hands out file
// numbers.
//
// Concurrency: every method is safe for concurrent use. mu serializes edits
// (LogAndApply, Close) and guards the manifest writer; curMu guards the
// current pointer, so Current never waits for a manifest fsync; liveMu
// guards the per-table reference counts. The counters are atomic.
type VersionSet struct {
	fs          vfs.FS
	dir         string
	maxManifest int64
	onObsolete  func(layout.FileNum)

	mu       sync.Mutex
	manifest *manifestWriter
	err      error // sticky: a failed manifest write leaves the set unwritable
	closed   bool
	readOnly bool // see VersionSetOptions.ReadOnly
	// cleanClose is the clean-close record of the last edit on record.
	cleanClose *CleanClose

	curMu   sync.RWMutex
	current *Version

	nextFileNum atomic.Uint64
	lastSeq     atomic.Uint64
	logNum      atomic.Uint64
	manifestNum atomic.Uint64

	liveMu sync.Mutex
	live   map[layout.FileNum]int // table → number of live Versions holding it
}

func newVersionSet(o VersionSetOptions) (*VersionSet, error) {
	if o.FS == nil {
		return nil, errors.New("lsm: VersionSetOptions.FS is nil")
	}
	vs := &VersionSet{
		fs:          o.FS,
		dir:         o.Dir,
		maxManifest: o.MaxManifestSize,
		onObsolete:  o.OnObsolete,
		live:        make(map[layout.FileNum]int),
	}
	if vs.maxManifest <= 0 {
		vs.maxManifest = defaultMaxManifestSize
	}
	return vs, nil
}

// CreateVersionSet creates the manifest of a new, empty database:
// MANIFEST-000001 holding a snapshot edit, and CURRENT naming it, both
// durable. File numbers then start at 2. It fails if CURRENT exists.
func CreateVersionSet(o VersionSetOptions) (*VersionSet, error) {
	vs, err := newVersionSet(o)
	if err != nil {
		return nil, err
	}
	if err := vs.fs.MkdirAll(vs.dir); err != nil {
		return nil, err
	}
	current := layout.Path(vs.dir, layout.TypeCurrent, 0)
	if _, err := vs.fs.Stat(current); err == nil {
		return nil, fmt.Errorf("lsm: %s exists: not creating a database over another", current)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	const num = layout.FileNum(1)
	vs.nextFileNum.Store(uint64(num) + 1)
	v := &Version{}
	m, err := createManifest(vs.fs, vs.dir, num, snapshotEdit(v, 0, layout.FileNum(vs.nextFileNum.Load()), 0, nil))
	if err != nil {
		return nil, err
	}
	if err := setCurrent(vs.fs, vs.dir, num); err != nil {
		m.close()
		return nil, err
	}
	vs.manifest = m
	vs.manifestNum.Store(uint64(num))
	vs.install(v)
	return vs, nil
}

// LoadVersionSet opens the version set of an existing database: it reads
// CURRENT, replays the manifest it names, and then starts a new manifest
// holding a snapshot (and points CURRENT at it), so appends never follow a
// torn tail. The old manifest is removed. File numbers continue above the
// manifest's record and above every numbered file in the directory.
//
// A final record cut short by a crash is ignored: its edit was never
// acknowledged. A whole record with a bad checksum, damage followed by
// valid data, or a missing CURRENT or manifest, gives an error wrapping
// errs.ErrCorruption naming the file and offset, and nothing is changed; a manifest from a newer format
// gives one wrapping errs.ErrNewerFormat.
func LoadVersionSet(o VersionSetOptions) (*VersionSet, error) {
	vs, err := newVersionSet(o)
	if err != nil {
		return nil, err
	}
	oldNum, err := readCurrent(vs.fs, vs.dir)
	if err != nil {
		return nil, err
	}
	st, err := replayManifest(vs.fs, vs.dir, oldNum)
	if err != nil {
		return nil, err
	}
	oldName := layout.Path(vs.dir, layout.TypeManifest, oldNum)
	v, err := st.builder.build()
	if err != nil {
		return nil, errs.Corruptf(oldName, -1, "%v", err)
	}

	// The counters must stay ahead of everything on record, whatever the
	// manifest says.
	next := max(st.nextFileNum, oldNum+1)
	lastSeq := st.lastSeq
	for level := range v.Levels {
		for _, f := range v.Levels[level] {
			next = max(next, f.Num+1)
			lastSeq = max(lastSeq, f.LargestSeq)
		}
	}
	vs.nextFileNum.Store(uint64(next))
	vs.lastSeq.Store(uint64(lastSeq))
	vs.logNum.Store(uint64(st.logNum))
	// Numbers handed out after the last edit are not on record; the files
	// that used them are in the directory. Skip past them before numbering
	// the new manifest, so a number still names one file.
	names, err := vs.fs.List(vs.dir)
	if err != nil {
		return nil, fmt.Errorf("lsm: list %s: %w", vs.dir, err)
	}
	for _, name := range names {
		if _, n, ok := layout.Parse(name); ok {
			vs.MarkFileNumUsed(n)
		}
	}

	if o.ReadOnly {
		vs.readOnly = true
		vs.manifestNum.Store(uint64(oldNum))
		vs.cleanClose = st.cleanClose
		vs.install(v)
		return vs, nil
	}

	// The snapshot carries a clean-close record forward: until the caller
	// logs an edit of its own (after its WAL recovery), the database is
	// still as it was closed, and a failed open must not forget that.
	num := vs.NewFileNum()
	m, err := createManifest(vs.fs, vs.dir, num, snapshotEdit(v, st.logNum, layout.FileNum(vs.nextFileNum.Load()), lastSeq, st.cleanClose))
	if err != nil {
		vs.fs.Remove(layout.Path(vs.dir, layout.TypeManifest, num))
		return nil, err
	}
	if err := setCurrent(vs.fs, vs.dir, num); err != nil {
		m.close()
		return nil, err
	}
	// Best effort: a leftover old manifest is harmless (CURRENT does not
	// name it) and the DB's cleanup of unknown files removes it.
	vs.fs.Remove(oldName)
	vs.manifest = m
	vs.manifestNum.Store(uint64(num))
	vs.cleanClose = st.cleanClose
	vs.install(v)
	return vs, nil
}

// WriteManifest writes the manifest of a copy of a database (a
// checkpoint) into dir: MANIFEST-num holding one snapshot edit of v and
// the counters, as LoadVersionSet starts every manifest, and CURRENT
// naming it, all synced. The copy's tables are v's, in dir; WAL segments
// from logNum on are replayed when it opens. nextFileNum must be above num
// and every file of the copy. It fails if dir holds a CURRENT.
func WriteManifest(fs vfs.FS, dir string, num layout.FileNum, v *Version, logNum, nextFileNum layout.FileNum, lastSeq SeqNum) error {
	if nextFileNum <= num {
		return fmt.Errorf("lsm: next file number %s not above the manifest's %s", nextFileNum, num)
	}
	current := layout.Path(dir, layout.TypeCurrent, 0)
	if _, err := fs.Stat(current); err == nil {
		return fmt.Errorf("lsm: %s exists: not writing a manifest over another", current)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	m, err := createManifest(fs, dir, num, snapshotEdit(v, logNum, nextFileNum, lastSeq, nil))
	if err != nil {
		return err
	}
	if err := m.close(); err != nil {
		return err
	}
	return setCurrent(fs, dir, num)
}

// CleanClose returns what the manifest records of a clean close, or nil
// if the database was not closed cleanly (it crashed, or was never
// closed) or an edit has been logged since the load.
func (vs *VersionSet) CleanClose() *CleanClose {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	return vs.cleanClose
}

// install makes v current, holding one reference on it for the set, and
// returns the previous current version, whose reference the caller drops
// (after releasing mu, since that may call OnObsolete).
func (vs *VersionSet) install(v *Version) *Version {
	v.vs = vs
	v.refs.Store(1)
	vs.liveMu.Lock()
	for level := range v.Levels {
		for _, f := range v.Levels[level] {
			vs.live[f.Num]++
		}
	}
	vs.liveMu.Unlock()
	vs.curMu.Lock()
	old := vs.current
	vs.current = v
	vs.curMu.Unlock()
	return old
}

// releaseVersion drops v's hold on its tables; called by the last Unref.
func (vs *VersionSet) releaseVersion(v *Version) {
	var obsolete []layout.FileNum
	vs.liveMu.Lock()
	for level := range v.Levels {
		for _, f := range v.Levels[level] {
			n := vs.live[f.Num] - 1
			if n > 0 {
				vs.live[f.Num] = n
				continue
			}
			if n < 0 {
				vs.liveMu.Unlock()
				panic(fmt.Sprintf("lsm: table %s released more often than held", f.Num))
			}
			delete(vs.live, f.Num)
			obsolete = append(obsolete, f.Num)
		}
	}
	vs.liveMu.Unlock()
	if vs.onObsolete != nil {
		for _, num := range obsolete {
			vs.onObsolete(num)
		}
	}
}

// Current returns the current version with a reference the caller must
// drop with Unref.
func (vs *VersionSet) Current() *Version {
	vs.curMu.RLock()
	v := vs.current
	v.Ref()
	vs.curMu.RUnlock()
	return v
}

// LogAndApply records e in the manifest (fsynced) and then installs the
// version it produces. Edits are serialized. Unless e sets them, NextFileNum
// and LastSeq are filled in from the set's counters (e is modified); a
// LastSeq or NextFileNum that e gives only ever moves the counters forward.
//
// An edit that breaks an invariant (deleting a table the level does not
// hold, adding one twice, overlapping tables at L1+, LogNum going back) is
// rejected with nothing written. A failed manifest write or sync leaves the
// version uninstalled and the set broken: this and every later call return
// the error, since what reached the disk is unknown.
// ErrEditMaybeLogged wraps a LogAndApply failure that came from writing
// or syncing the manifest: the edit may be in it, and the next open may
// read it. The tables it adds must not be removed.
var ErrEditMaybeLogged = errors.New("lsm: the manifest edit may have been recorded")

func (vs *VersionSet) LogAndApply(e *VersionEdit) error {
	vs.mu.Lock()
	old, err := vs.logAndApplyLocked(e)
	vs.mu.Unlock()
	if old != nil {
		old.Unref()
	}
	return err
}

func (vs *VersionSet) logAndApplyLocked(e *VersionEdit) (*Version, error) {
	switch {
	case vs.closed:
		return nil, errs.ErrClosed
	case vs.readOnly:
		return nil, fmt.Errorf("%w: opened read-only, the manifest takes no edit", errs.ErrReadOnly)
	case vs.err != nil:
		return nil, fmt.Errorf("lsm: manifest unwritable after an earlier error: %w", vs.err)
	case e.HasLogNum && uint64(e.LogNum) < vs.logNum.Load():
		return nil, fmt.Errorf("lsm: edit moves LogNum back from %d to %d", vs.logNum.Load(), e.LogNum)
	}
	b := newVersionBuilder(vs.current)
	if err := b.apply(e); err != nil {
		return nil, err
	}
	v, err := b.build()
	if err != nil {
		return nil, err
	}

	if e.HasNextFileNum && e.NextFileNum > 0 {
		vs.MarkFileNumUsed(e.NextFileNum - 1)
	}
	for _, nf := range e.NewFiles {
		vs.MarkFileNumUsed(nf.Meta.Num)
	}
	if e.HasLastSeq {
		vs.SetLastSeq(e.LastSeq)
	}
	logNum := layout.FileNum(vs.logNum.Load())
	if e.HasLogNum {
		logNum = e.LogNum
	}

	e.NextFileNum, e.HasNextFileNum = layout.FileNum(vs.nextFileNum.Load()), true
	e.LastSeq, e.HasLastSeq = vs.LastSeq(), true
	if vs.manifest.size >= vs.maxManifest {
		err = vs.rotateLocked(v, logNum, e.CleanClose)
	} else {
		err = vs.manifest.append(e)
	}
	if err != nil {
		// The record may be in the file (a failed sync says nothing of
		// what the file holds): the caller must keep what it names.
		err = fmt.Errorf("%w: %w", ErrEditMaybeLogged, err)
		vs.err = err
		return nil, err
	}
	vs.cleanClose = e.CleanClose
	vs.logNum.Store(uint64(logNum))
	return vs.install(v), nil
}

// rotateLocked starts a new manifest holding a snapshot of v (the version
// after the edit being applied, so the edit itself need not be written),
// points CURRENT at it and removes the old manifest.
func (vs *VersionSet) rotateLocked(v *Version, logNum layout.FileNum, clean *CleanClose) error {
	num := vs.NewFileNum()
	snap := snapshotEdit(v, logNum, layout.FileNum(vs.nextFileNum.Load()), vs.LastSeq(), clean)
	m, err := createManifest(vs.fs, vs.dir, num, snap)
	if err != nil {
		vs.fs.Remove(layout.Path(vs.dir, layout.TypeManifest, num))
		return err
	}
	if err := setCurrent(vs.fs, vs.dir, num); err != nil {
		m.close()
		return err
	}
	old := vs.manifest
	vs.manifest = m
	vs.manifestNum.Store(uint64(num))
	old.close()
	// Best effort, as in LoadVersionSet.
	vs.fs.Remove(old.name)
	return nil
}

// NewFileNum allocates a file number. It becomes durable with the next
// LogAndApply.
func (vs *VersionSet) NewFileNum() layout.FileNum {
	return layout.FileNum(vs.nextFileNum.Add(1) - 1)
}

// MarkFileNumUsed makes sure NewFileNum never returns n or below (for files
// found in the directory at open, such as WAL segments).
func (vs *VersionSet) MarkFileNumUsed(n layout.FileNum) {
	for {
		cur := vs.nextFileNum.Load()
		if cur > uint64(n) || vs.nextFileNum.CompareAndSwap(cur, uint64(n)+1) {
			return
		}
	}
}

// LogNum returns the number of the oldest WAL segment that may hold data not
// yet in tables.
func (vs *VersionSet) LogNum() layout.FileNum { return layout.FileNum(vs.logNum.Load()) }

// LastSeq returns the last sequence number recorded or set.
func (vs *VersionSet) LastSeq() SeqNum { return SeqNum(vs.lastSeq.Load()) }

// SetLastSeq raises the last sequence number (it never moves back); the
// next LogAndApply records it.
func (vs *VersionSet) SetLastSeq(s SeqNum) {
	for {
		cur := vs.lastSeq.Load()
		if cur >= uint64(s) || vs.lastSeq.CompareAndSwap(cur, uint64(s)) {
			return
		}
	}
}

// ManifestNum returns the number of the live manifest.
func (vs *VersionSet) ManifestNum() layout.FileNum { return layout.FileNum(vs.manifestNum.Load()) }

// LiveFiles returns the tables referenced by any live Version: the files
// that must not be deleted.
func (vs *VersionSet) LiveFiles() map[layout.FileNum]struct{} {
	vs.liveMu.Lock()
	defer vs.liveMu.Unlock()
	out := make(map[layout.FileNum]struct{}, len(vs.live))
	for num := range vs.live {
		out[num] = struct{}{}
	}
	return out
}

// Close closes the manifest; later LogAndApply calls return ErrClosed. The
// current version stays readable and is not released, so Close never
// reports tables obsolete.
func (vs *VersionSet) Close() error {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if vs.closed {
		return nil
	}
	vs.closed = true
	if vs.manifest == nil {
		return nil // read-only
	}
	return vs.manifest.close()
}

package pluresdb

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
)

// Checkpoints (ARCHITECTURE.md, "Checkpoints and backups"). A checkpoint
// is a copy of the database, taken while writes go on, that opens with
// Open and holds exactly the writes logged before one instant (the cut):
// every write acknowledged before Checkpoint was called, possibly some
// made while it ran, never part of a batch.
//
// The cut is taken under commitMu (so between two records of the log)
// with retention and the open vector indexes' checkpoints held off:
//
//   - the current version, pinned (Ref) so compactions cannot delete
//     its tables, and the first log segment its tables do not cover
//     (the oldest unflushed memtable's);
//   - the retained history: sealed segments and archives (ol.segs);
//   - the live segment's written size (WAL.WriteBuffered);
//   - the vector graph files present.
//
// Then the log is synced through the cut (a copy never holds an operation
// that a crash of the database could still lose and reuse the sequence
// number of), and the files are hard-linked (tables, archives, flushed
// segments, graphs: files the engine never changes once written) or
// copied (the segments replay reads, the live one up to the cut's size,
// REPLICA) into a temporary directory beside the destination (with a
// REJOINING marker when the database is rejoining). A fresh
// MANIFEST describes the pinned version alone, with every table in the
// main directory (cold ones too). Every file and the directory are
// synced, and the directory is renamed to its name: a checkpoint that
// fails part way leaves no directory under that name.

// CheckpointOptions tune a checkpoint. A nil *CheckpointOptions means the
// defaults.
type CheckpointOptions struct {
	// NoLink copies every file. By default a file the engine never changes
	// once written is hard-linked where the filesystem allows it (the same
	// device), which makes a checkpoint of a large database take moments
	// and no space; the copy then shares those files' storage with the
	// database.
	NoLink bool
	// Progress, if set, is called after each file is in place with the
	// bytes done so far and the total.
	Progress func(done, total int64)
}

// CheckpointInfo describes a checkpoint just written.
type CheckpointInfo struct {
	Dir     string
	Replica oplog.ReplicaID
	// VersionVector is the database's version vector at the cut: what
	// the checkpoint holds of every replica.
	VersionVector oplog.VersionVector
	// LastSeq is the last sequence number the checkpoint holds.
	LastSeq uint64
	// Time is the wall-clock time of the cut.
	Time time.Time
	// Files lists the checkpoint's files, sorted by name.
	Files []CheckpointFile
	// LinkedBytes and CopiedBytes say how the files got there.
	LinkedBytes, CopiedBytes int64
}

// CheckpointFile is one file of a checkpoint.
type CheckpointFile struct {
	Name   string
	Size   int64
	Linked bool // a hard link to the database's file, not a copy
}

// Checkpoint writes a consistent copy of the database into dir, which
// must not exist or be empty, while writes go on. The copy opens with
// Open, as the same replica (same ID): never run it beside the database
// it was taken from as a second writer of that replica. See CheckpointWith.
func (db *DB) Checkpoint(dir string) error {
	_, err := db.CheckpointWith(dir, nil)
	return err
}

// Dir returns the database's directory.
func (db *DB) Dir() string { return db.dir }

// ckFile is a file of a checkpoint to be put in place.
type ckFile struct {
	src   string // path in the database
	name  string // base name in the checkpoint
	size  int64  // bytes to take: the whole file, or the live segment's cut
	whole bool   // size is the file's size: a shorter or longer file is damage
	link  bool   // may be hard-linked
}

// CheckpointWith is Checkpoint with options, and says what it wrote.
func (db *DB) CheckpointWith(dir string, opts *CheckpointOptions) (*CheckpointInfo, error) {
	if opts == nil {
		opts = &CheckpointOptions{}
	}
	if db.closed.Load() {
		return nil, errs.ErrClosed
	}
	dir = filepath.Clean(dir)
	if abs, err := filepath.Abs(dir); err == nil {
		if self, err := filepath.Abs(db.dir); err == nil && abs == self {
			return nil, fmt.Errorf("pluresdb: checkpoint into the database's own directory %s", dir)
		}
	}
	if err := vfs.CheckEmptyDir(db.fs, dir); err != nil {
		return nil, err
	}
	var suffix [6]byte
	rand.Read(suffix[:])
	tmp := filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".checkpoint-"+hex.EncodeToString(suffix[:]))
	if err := db.fs.MkdirAll(tmp); err != nil {
		return nil, fmt.Errorf("pluresdb: checkpoint: creating %s: %w", tmp, err)
	}
	info, err := db.checkpointInto(tmp, opts)
	if err == nil {
		// An empty directory of that name goes first: a rename does not
		// replace a directory everywhere.
		err = removeEmptyDir(db.fs, dir)
	}
	if err == nil {
		err = db.fs.Rename(tmp, dir)
		if err == nil {
			err = db.fs.SyncDir(filepath.Dir(dir))
			if err != nil {
				err = fmt.Errorf("pluresdb: checkpoint: syncing %s: %w", filepath.Dir(dir), err)
			}
		} else {
			err = fmt.Errorf("pluresdb: checkpoint: renaming %s to %s: %w", tmp, dir, err)
		}
	}
	if err != nil {
		if rerr := vfs.RemoveAll(db.fs, tmp); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			db.log.Error().Err(rerr).Str("dir", tmp).Msg("checkpoint failed; removing its temporary directory failed too")
		}
		return nil, err
	}
	info.Dir = dir
	return info, nil
}

// removeEmptyDir removes dir if it is an empty directory.
func removeEmptyDir(fs vfs.FS, dir string) error {
	if err := vfs.CheckEmptyDir(fs, dir); err != nil {
		return err
	}
	if err := fs.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// checkpointInto takes the cut and writes the checkpoint into tmp.
func (db *DB) checkpointInto(tmp string, opts *CheckpointOptions) (*CheckpointInfo, error) {
	// Vector checkpoints remove the graph file the previous record names
	// once a new record is committed: held off, every graph file the
	// cut's records name stays until it is linked. Retention (archiving,
	// dropping history) likewise waits, so the segments and archives of
	// the cut stay as they are.
	for _, vi := range db.vectors.list() {
		vi.ckMu.Lock()
		defer vi.ckMu.Unlock()
	}
	db.retentionMu.Lock()
	defer db.retentionMu.Unlock()

	db.commitMu.Lock()
	if db.closed.Load() {
		db.commitMu.Unlock()
		return nil, errs.ErrClosed
	}
	liveSize, err := db.liveLogSize()
	if err != nil {
		db.commitMu.Unlock()
		return nil, fmt.Errorf("pluresdb: checkpoint: writing the log: %w", err)
	}
	cut := db.lastSeq
	info := &CheckpointInfo{Replica: db.ol.self, VersionVector: db.versionVectorLocked(), LastSeq: uint64(cut), Time: time.Now()}
	liveNum := db.ol.cur.num
	db.stateMu.RLock()
	v := db.version
	v.Ref()
	logNum := db.mem.logNum
	if len(db.imms) > 0 {
		logNum = db.imms[0].logNum
	}
	db.stateMu.RUnlock()
	defer v.Unref()
	db.ol.mu.Lock()
	segs := db.ol.snapshotSegs()
	db.ol.mu.Unlock()
	names, err := db.fs.List(db.dir)
	rejoining := db.rejoining.Load()
	db.commitMu.Unlock()
	if err != nil {
		return nil, err
	}
	// What a crash of the database could lose never leaves it.
	if err := db.syncThrough(cut); err != nil {
		return nil, err
	}

	var files []ckFile
	maxNum := max(logNum, liveNum)
	for level := range v.Levels {
		for _, f := range v.Levels[level] {
			dir := lsm.TableDir(db.dir, db.opts.ColdDir, f.Cold)
			files = append(files, ckFile{src: layout.Path(dir, layout.TypeTable, f.Num), name: layout.Name(layout.TypeTable, f.Num),
				size: int64(f.Size), whole: true, link: true})
			maxNum = max(maxNum, f.Num)
		}
	}
	for _, s := range segs {
		t := layout.TypeLog
		if s.archived {
			t = layout.TypeArchive
		}
		src := layout.Path(db.dir, t, s.num)
		fi, err := db.fs.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("pluresdb: checkpoint: retained history: %w", err)
		}
		// Segments replay reads are copied: Open may truncate a torn
		// tail of those, and must never touch the database's file.
		files = append(files, ckFile{src: src, name: layout.Name(t, s.num), size: fi.Size(), whole: true,
			link: t == layout.TypeArchive || s.num < logNum})
		maxNum = max(maxNum, s.num)
	}
	files = append(files, ckFile{src: layout.Path(db.dir, layout.TypeLog, liveNum), name: layout.Name(layout.TypeLog, liveNum), size: liveSize})
	for _, name := range names {
		if t, n, ok := layout.Parse(name); ok && t == layout.TypeVectorGraph {
			fi, err := db.fs.Stat(filepath.Join(db.dir, name))
			if err != nil {
				return nil, fmt.Errorf("pluresdb: checkpoint: vector graph: %w", err)
			}
			files = append(files, ckFile{src: filepath.Join(db.dir, name), name: name, size: fi.Size(), whole: true, link: true})
			maxNum = max(maxNum, n)
		}
	}
	replica := layout.Path(db.dir, layout.TypeReplica, 0)
	fi, err := db.fs.Stat(replica)
	if err != nil {
		return nil, fmt.Errorf("pluresdb: checkpoint: %w", err)
	}
	files = append(files, ckFile{src: replica, name: layout.Name(layout.TypeReplica, 0), size: fi.Size(), whole: true})

	var total, done int64
	for _, f := range files {
		total += f.size
	}
	for _, f := range files {
		linked, err := placeFile(db.fs, f, filepath.Join(tmp, f.name), f.link && !opts.NoLink)
		if err != nil {
			return nil, fmt.Errorf("pluresdb: checkpoint: %w", err)
		}
		info.Files = append(info.Files, CheckpointFile{Name: f.name, Size: f.size, Linked: linked})
		if linked {
			info.LinkedBytes += f.size
		} else {
			info.CopiedBytes += f.size
		}
		done += f.size
		if opts.Progress != nil {
			opts.Progress(done, total)
		}
	}

	manifest := maxNum + 1
	if err := lsm.WriteManifest(db.fs, tmp, manifest, v, logNum, manifest+1, cut); err != nil {
		return nil, fmt.Errorf("pluresdb: checkpoint: %w", err)
	}
	kinds := []layout.FileType{layout.TypeManifest, layout.TypeCurrent}
	if rejoining {
		// A copy of a rejoining replica lacks what it does: it rejoins
		// too (rejoin.go).
		if err := oplog.WriteRejoinFile(db.fs, layout.Path(tmp, layout.TypeRejoin, 0), db.ol.self); err != nil {
			return nil, fmt.Errorf("pluresdb: checkpoint: %w", err)
		}
		kinds = append(kinds, layout.TypeRejoin)
	}
	for _, t := range kinds {
		p := layout.Path(tmp, t, manifest)
		fi, err := db.fs.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("pluresdb: checkpoint: %w", err)
		}
		info.Files = append(info.Files, CheckpointFile{Name: filepath.Base(p), Size: fi.Size()})
	}
	sort.Slice(info.Files, func(i, j int) bool { return info.Files[i].Name < info.Files[j].Name })
	if err := db.fs.SyncDir(tmp); err != nil {
		return nil, fmt.Errorf("pluresdb: checkpoint: syncing %s: %w", tmp, err)
	}
	return info, nil
}

// placeFile puts f at dst, synced: a hard link if link is set and the
// filesystem makes one, else a copy of its first f.size bytes. It says
// whether it linked.
func placeFile(fs vfs.FS, f ckFile, dst string, link bool) (bool, error) {
	if link {
		if err := vfs.Link(fs, f.src, dst); err == nil {
			fi, err := fs.Stat(dst)
			if err != nil {
				return true, err
			}
			if fi.Size() != f.size {
				return true, errs.Corruptf(f.src, fi.Size(), "%d bytes, the database records %d", fi.Size(), f.size)
			}
			// Synced already when written; a sync of a clean file is
			// cheap and makes the copy's durability not depend on it.
			return true, syncFile(fs, dst)
		}
		// No links here (another device, a filesystem without them):
		// copy.
	}
	return false, copyFilePrefix(fs, f.src, dst, f.size, f.whole)
}

func syncFile(fs vfs.FS, name string) error {
	fh, err := fs.Open(name)
	if err != nil {
		return err
	}
	err = fh.Sync()
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}

// copyFilePrefix copies the first size bytes of src to a new file dst and
// syncs it. whole: src must be exactly size bytes long.
func copyFilePrefix(fs vfs.FS, src, dst string, size int64, whole bool) error {
	in, err := fs.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	have, err := in.Size()
	if err != nil {
		return err
	}
	if have < size || (whole && have != size) {
		return errs.Corruptf(src, have, "%d bytes, the database records %d", have, size)
	}
	out, err := fs.Create(dst)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, io.NewSectionReader(in, 0, size))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	return nil
}

// list returns the open vector indexes, sorted by name (the order in
// which a checkpoint takes their ckMu).
func (vs *vectorSet) list() []*VectorIndex {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	out := make([]*VectorIndex, 0, len(vs.indexes))
	for _, vi := range vs.indexes {
		out = append(out, vi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

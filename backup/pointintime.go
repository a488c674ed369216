package backup

import (
	"fmt"
	"io"
	"math"
	"path/filepath"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
)

// restoreAt rebuilds, as a new replica in targetDir, the state the
// backed-up database had at opts.At: every operation it held with a
// timestamp at or before that time (whole log records, see
// pluresdb.DB.VersionVectorAt), from the newest backup of the chain whose
// state is wholly at or before it, plus the log the chain's newest backup
// carries up to the time. See ARCHITECTURE.md, "Checkpoints and backups".
func restoreAt(backupDir, targetDir string, opts *Options) (_ *Manifest, err error) {
	fs := opts.fs()
	targetDir = filepath.Clean(targetDir)
	if err := checkEmptyTarget(fs, targetDir); err != nil {
		return nil, err
	}
	c, err := loadChain(fs, backupDir)
	if err != nil {
		return nil, err
	}
	top := c.top().Manifest
	at := opts.At
	if at.After(top.Time) {
		return nil, fmt.Errorf("%w: %s is after the backup (taken at %s): it holds nothing later; restore without a time for its newest state",
			ErrRefused, at.Format(time.RFC3339Nano), top.Time.Format(time.RFC3339Nano))
	}
	// The last timestamp of at's millisecond: the clock's physical part
	// counts milliseconds.
	ts := oplog.MakeTimestamp(uint64(at.UnixMilli()), math.MaxUint16)
	if at.UnixMilli() <= 0 {
		return nil, fmt.Errorf("%w: %s is before any operation", ErrRefused, at.Format(time.RFC3339Nano))
	}

	var temps []string
	temp := func(what string) string {
		d := tempBeside(targetDir, what)
		temps = append(temps, d)
		return d
	}
	fresh := temp("restore-new")
	ok := false
	defer func() {
		for _, dir := range temps {
			if dir == fresh && ok {
				continue
			}
			removeTemp(fs, dir, &err)
		}
	}()

	// The log: the newest backup restored as itself.
	src, _, err := openRestored(fs, c.top().Dir, temp("restore-source"), opts)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	vv, err := src.VersionVectorAt(ts)
	if err != nil {
		return nil, fmt.Errorf("backup: restoring to %s: %w", at.Format(time.RFC3339Nano), err)
	}

	dst, err := pluresdb.Open(fresh, &pluresdb.Options{FS: fs})
	if err != nil {
		return nil, fmt.Errorf("backup: creating the new replica: %w", err)
	}
	defer func() {
		if dst != nil {
			dst.Close()
		}
	}()
	// The base: the newest backup of the chain whose state the point in
	// time includes, as a snapshot; else nothing, and the log from the
	// start.
	since := oplog.VersionVector{}
	for i, b := range c.backups {
		m := b.Manifest
		if m.Follow || !covers(vv, m.VersionVector) {
			continue
		}
		base := src
		if i > 0 {
			if base, _, err = openRestored(fs, b.Dir, temp("restore-base"), &Options{FS: fs}); err != nil {
				return nil, err
			}
			defer base.Close()
		}
		info, err := pipe(base.ExportSnapshot, dst.ImportSnapshot)
		if err != nil {
			return nil, fmt.Errorf("backup: restoring the state of backup %s: %w", b.Dir, err)
		}
		since = info.VersionVector
		break
	}
	if _, err := pipe(func(w io.Writer) (int, error) { return src.ExportChangesUpTo(w, since, vv) }, dst.ImportChanges); err != nil {
		return nil, fmt.Errorf("backup: replaying the log to %s: %w", at.Format(time.RFC3339Nano), err)
	}
	err = dst.Close()
	dst = nil
	if err != nil {
		return nil, err
	}
	if err := publishDir(fs, fresh, targetDir); err != nil {
		return nil, err
	}
	ok = true
	return top, nil
}

// covers says whether vv holds every operation o names.
func covers(vv, o oplog.VersionVector) bool {
	for r, s := range o {
		if s > vv[r] {
			return false
		}
	}
	return true
}

// openRestored restores the backup in backupDir as itself into dir (a
// copy that is read, never written: not left rejoining) and opens it
// read-only.
func openRestored(fs vfs.FS, backupDir, dir string, opts *Options) (*pluresdb.DB, *Manifest, error) {
	o := Options{FS: fs, SameReplica: true}
	if opts != nil {
		o.Progress = opts.Progress
	}
	m, err := restoreFiles(backupDir, dir, &o, false)
	if err != nil {
		return nil, nil, err
	}
	db, err := pluresdb.Open(dir, &pluresdb.Options{FS: fs, ReadOnly: true})
	if err != nil {
		return nil, nil, fmt.Errorf("backup: opening the restored copy of %s: %w", backupDir, err)
	}
	return db, m, nil
}

// pipe streams what export writes into imp, and returns imp's result;
// a failed import stops the export.
func pipe[T any](export func(io.Writer) (T, error), imp func(io.Reader) (T, error)) (T, error) {
	pr, pw := io.Pipe()
	go func() {
		_, err := export(pw)
		pw.CloseWithError(err)
	}()
	v, err := imp(pr)
	pr.CloseWithError(err)
	return v, err
}

// Package backup makes, lists, verifies and restores backups of a PluresDB
// database (ARCHITECTURE.md, "Checkpoints and backups").
//
// A backup is a directory holding a manifest (BACKUP) and files. A full
// backup holds every file of a checkpoint of the database (DB.Checkpoint:
// a consistent cut taken while writes go on). An incremental backup
// builds on another (its parent, named by ID and path): it holds only the
// files the chain lacks, compared by name, size and xxhash64, and of a log
// segment that has grown since the parent only the bytes written since.
// The manifest lists every file of the database the backup restores,
// with its size and checksum, and for each how many leading bytes come
// from the parent; see Manifest.Encode for its bytes.
//
// Restore rebuilds the database from the chain, checking every file's
// checksum as it writes it, into a new directory that appears only when
// complete: by default as a new replica (a state snapshot of the
// backed-up database), with Options.SameReplica as the backed-up replica
// itself, left rejoining until it has its later operations back from its
// peers (see Restore), and with Options.At as the state it had at a time
// (a new replica). A copy restored as the same replica must not run
// beside the database it was taken from, or two writers would hand out
// the same sequence numbers as one replica. Follow keeps a follower: an
// incremental backup that ships each log segment the database seals, so
// a restore is at most the live segment behind.
//
// The backup package imports the root package; the root never imports it.
package backup

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

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
)

var (
	// ErrNotBackup: the directory holds no backup manifest.
	ErrNotBackup = errors.New("backup: not a backup")
	// ErrRefused: the operation would overwrite data or break a rule
	// (a non-empty target, an incremental backup of another replica).
	// Nothing was written.
	ErrRefused = errors.New("backup: refused")
)

// Options tune Create, List, Verify and Restore. A nil *Options means
// the defaults.
type Options struct {
	// FS is the filesystem of the backups, and of the database's
	// directory for Create (the one the DB was opened with). nil: the
	// operating system's.
	FS vfs.FS
	// Since makes Create incremental: the directory of the backup it
	// builds on (full or incremental, of the same replica).
	Since string
	// SameReplica makes Restore rebuild the backed-up replica itself, its
	// replica ID and op history included: to replace a lost node, never
	// to run beside the source. Without it the restored database is a new
	// replica (see Restore).
	SameReplica bool
	// At makes Restore rebuild the state as of that time (a point-in-time
	// restore, see Restore); zero: the newest state the backup holds.
	At time.Time
	// Progress, if set, is called as files are processed with the bytes
	// done so far and the total.
	Progress func(done, total int64)
}

func (o *Options) fs() vfs.FS {
	if o == nil || o.FS == nil {
		return vfs.Default
	}
	return o.FS
}

func (o *Options) progress(done, total int64) {
	if o != nil && o.Progress != nil {
		o.Progress(done, total)
	}
}

// Backup is a backup found on disk: its directory and manifest.
type Backup struct {
	Dir      string
	Manifest *Manifest
}

// Create backs up db into dest, which must not exist or be empty: a full
// backup, or with opts.Since an incremental one. It returns the new
// backup's manifest. While it runs a checkpoint of db is kept in a
// directory inside the database's (backup-staging-ID), hard-linked where
// the filesystem allows, and removed at the end. The backup's files are
// copies, never links to the database's. dest appears only when the
// backup is complete.
func Create(db *pluresdb.DB, dest string, opts *Options) (_ *Manifest, err error) {
	fs := opts.fs()
	dest = filepath.Clean(dest)
	if err := checkEmptyTarget(fs, dest); err != nil {
		return nil, err
	}
	var parent *chain
	if opts != nil && opts.Since != "" {
		var err error
		if parent, err = loadChain(fs, opts.Since); err != nil {
			return nil, err
		}
		if r := parent.top().Manifest.Replica; r != db.ReplicaID() {
			return nil, fmt.Errorf("%w: %s is a backup of replica %s, the database is replica %s", ErrRefused, opts.Since, r, db.ReplicaID())
		}
	}
	m := &Manifest{ID: newID()}
	staging := filepath.Join(db.Dir(), "backup-staging-"+m.ID.String())
	info, err := db.CheckpointWith(staging, nil)
	if err != nil {
		return nil, fmt.Errorf("backup: checkpoint: %w", err)
	}
	defer removeTemp(fs, staging, &err)
	m.Replica, m.Time, m.LastSeq, m.VersionVector = info.Replica, info.Time, info.LastSeq, info.VersionVector
	if parent != nil {
		top := parent.top()
		m.Parent = top.Manifest.ID
		m.ParentPath = top.Dir
		if rel, err := relPath(dest, top.Dir); err == nil {
			m.ParentPath = rel
		}
	}

	tmp := tempBeside(dest, "backup")
	if err := fs.MkdirAll(tmp); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			removeTemp(fs, tmp, &err)
		}
	}()
	var total, done int64
	for _, f := range info.Files {
		total += f.Size
	}
	for _, cf := range info.Files {
		f, err := storeFile(fs, filepath.Join(staging, cf.Name), tmp, cf.Name, parent)
		if err != nil {
			return nil, err
		}
		m.Files = append(m.Files, f)
		done += cf.Size
		opts.progress(done, total)
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Name < m.Files[j].Name })
	if err := writeManifest(fs, tmp, m); err != nil {
		return nil, err
	}
	if err := publishDir(fs, tmp, dest); err != nil {
		return nil, err
	}
	ok = true
	return m, nil
}

// storeFile decides what the backup in dir stores of the checkpoint's
// file src (name) and stores it: nothing if the chain holds the same
// file, the bytes past the chain's copy if that is a prefix of it (a log
// segment that grew), else the whole file.
func storeFile(fs vfs.FS, src, dir, name string, parent *chain) (File, error) {
	f := File{Name: name}
	var prev *File
	if parent != nil {
		prev = parent.top().Manifest.File(name)
	}
	in, err := fs.Open(src)
	if err != nil {
		return f, err
	}
	defer in.Close()
	if f.Size, err = in.Size(); err != nil {
		return f, err
	}
	if prev != nil && prev.Size <= f.Size {
		// One pass: the checksum of the first prev.Size bytes, then of
		// the whole file.
		h := xxhash.New()
		if _, err := io.Copy(h, io.NewSectionReader(in, 0, prev.Size)); err != nil {
			return f, fmt.Errorf("backup: reading %s: %w", src, err)
		}
		prefix := h.Sum64()
		if _, err := io.Copy(h, io.NewSectionReader(in, prev.Size, f.Size-prev.Size)); err != nil {
			return f, fmt.Errorf("backup: reading %s: %w", src, err)
		}
		f.Sum = h.Sum64()
		if prefix == prev.Sum {
			f.Base = prev.Size
			if f.Base == f.Size {
				return f, nil
			}
			f.StoredSum, _, err = copyRange(fs, in, f.Base, f.Size-f.Base, filepath.Join(dir, name))
			return f, err
		}
	}
	var sum uint64
	f.StoredSum, sum, err = copyRange(fs, in, 0, f.Size, filepath.Join(dir, name))
	f.Sum = sum
	return f, err
}

// copyRange copies n bytes of in from off to a new synced file dst and
// returns their xxhash64 (twice: the caller names one the stored sum and
// one the whole file's when they are the same bytes).
func copyRange(fs vfs.FS, in vfs.File, off, n int64, dst string) (uint64, uint64, error) {
	out, err := fs.Create(dst)
	if err != nil {
		return 0, 0, err
	}
	h := xxhash.New()
	_, err = io.Copy(io.MultiWriter(out, h), io.NewSectionReader(in, off, n))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, 0, fmt.Errorf("backup: writing %s: %w", dst, err)
	}
	return h.Sum64(), h.Sum64(), nil
}

// chain is a backup and its ancestors, newest first.
type chain struct {
	backups []Backup
}

func (c *chain) top() Backup { return c.backups[0] }

// maxChain bounds a chain's length (and a loop in a damaged one).
const maxChain = 10000

// loadChain reads the backup in dir and every backup it builds on. A
// parent is looked for at its recorded path, then among the siblings of
// the backup's directory. A missing or mismatched parent is an error
// wrapping ErrCorruption.
func loadChain(fs vfs.FS, dir string) (*chain, error) {
	dir = filepath.Clean(dir)
	m, err := ReadManifest(fs, dir)
	if err != nil {
		return nil, err
	}
	c := &chain{backups: []Backup{{Dir: dir, Manifest: m}}}
	seen := map[ID]bool{m.ID: true}
	for !m.Full() {
		if len(c.backups) >= maxChain {
			return nil, errs.Corruptf(filepath.Join(dir, ManifestName), -1, "backup chain longer than %d", maxChain)
		}
		pdir, pm, err := findParent(fs, dir, m)
		if err != nil {
			return nil, err
		}
		if seen[pm.ID] {
			return nil, errs.Corruptf(filepath.Join(pdir, ManifestName), -1, "backup chain loops back to %s", pm.ID)
		}
		if pm.Replica != m.Replica {
			return nil, errs.Corruptf(filepath.Join(pdir, ManifestName), -1, "parent is a backup of replica %s, its child of %s", pm.Replica, m.Replica)
		}
		seen[pm.ID] = true
		c.backups = append(c.backups, Backup{Dir: pdir, Manifest: pm})
		dir, m = pdir, pm
	}
	return c, nil
}

func findParent(fs vfs.FS, dir string, m *Manifest) (string, *Manifest, error) {
	var candidates []string
	if m.ParentPath != "" {
		p := m.ParentPath
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		candidates = append(candidates, filepath.Clean(p))
	}
	parentDir := filepath.Dir(dir)
	if names, err := fs.List(parentDir); err == nil {
		for _, n := range names {
			candidates = append(candidates, filepath.Join(parentDir, n))
		}
	}
	for _, p := range candidates {
		if p == dir {
			continue
		}
		pm, err := ReadManifest(fs, p)
		if err == nil && pm.ID == m.Parent {
			return p, pm, nil
		}
	}
	return "", nil, errs.Corruptf(filepath.Join(dir, ManifestName), -1,
		"backup chain incomplete: parent backup %s not found (recorded at %q, nor beside %s)", m.Parent, m.ParentPath, dir)
}

// piece is a run of bytes of a restored file, stored in a backup.
type piece struct {
	path string
	n    int64
}

// pieces lists where the bytes of file name of backup i of the chain
// are, in order.
func (c *chain) pieces(i int, name string) ([]piece, *File, error) {
	b := c.backups[i]
	f := b.Manifest.File(name)
	if f == nil {
		return nil, nil, fmt.Errorf("no file %s in backup %s", name, b.Dir)
	}
	var out []piece
	if f.Base > 0 {
		if i+1 >= len(c.backups) {
			return nil, nil, errs.Corruptf(filepath.Join(b.Dir, ManifestName), -1, "file %s refers to a parent, and the backup has none", name)
		}
		prev, pf, err := c.pieces(i+1, name)
		if err != nil {
			return nil, nil, errs.Corruptf(filepath.Join(b.Dir, ManifestName), -1, "file %s: %d bytes from the parent: %v", name, f.Base, err)
		}
		if pf.Size != f.Base {
			return nil, nil, errs.Corruptf(filepath.Join(b.Dir, ManifestName), -1,
				"file %s takes %d bytes from the parent, which has %d", name, f.Base, pf.Size)
		}
		out = prev
	}
	if f.Stored() > 0 {
		out = append(out, piece{path: filepath.Join(b.Dir, name), n: f.Stored()})
	}
	return out, f, nil
}

// writeResolved writes the bytes of pieces to w (nil: only read them) and
// returns their xxhash64. A piece file of the wrong size is corruption.
func writeResolved(fs vfs.FS, pieces []piece, w io.Writer) (uint64, error) {
	h := xxhash.New()
	dst := io.Writer(h)
	if w != nil {
		dst = io.MultiWriter(w, h)
	}
	for _, p := range pieces {
		if err := copyPiece(fs, p, dst); err != nil {
			return 0, err
		}
	}
	return h.Sum64(), nil
}

func copyPiece(fs vfs.FS, p piece, w io.Writer) error {
	in, err := fs.Open(p.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errs.Corruptf(p.path, -1, "missing from the backup")
		}
		return err
	}
	defer in.Close()
	size, err := in.Size()
	if err != nil {
		return err
	}
	if size != p.n {
		return errs.Corruptf(p.path, size, "%d bytes, the manifest records %d", size, p.n)
	}
	if _, err := io.Copy(w, io.NewSectionReader(in, 0, p.n)); err != nil {
		return fmt.Errorf("backup: reading %s: %w", p.path, err)
	}
	return nil
}

// List returns the backups in dir: dir itself if it is one, and every
// directory in it that is, oldest first. A directory whose manifest
// cannot be read is listed with Err set.
func List(dir string, opts *Options) ([]Listed, error) {
	fs := opts.fs()
	var out []Listed
	try := func(d string) {
		m, err := ReadManifest(fs, d)
		if errors.Is(err, ErrNotBackup) {
			return
		}
		out = append(out, Listed{Backup: Backup{Dir: d, Manifest: m}, Err: err})
	}
	try(dir)
	names, err := fs.List(dir)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if fi, err := fs.Stat(p); err == nil && fi.IsDir() {
			try(p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Manifest, out[j].Manifest
		if a == nil || b == nil {
			return a != nil
		}
		return a.Time.Before(b.Time)
	})
	return out, nil
}

// Listed is a backup found by List; Err says why its manifest could not
// be read (then Manifest is nil).
type Listed struct {
	Backup
	Err error
}

// Report is what Verify found.
type Report struct {
	// Chain is the backup verified and the backups it builds on, newest
	// first.
	Chain []Backup
	// Files and Bytes count the files and bytes of the database the
	// backup restores, all read and checked.
	Files int
	Bytes int64
	// Problems lists every problem found, each wrapping ErrCorruption
	// and naming the file.
	Problems []error
}

// Verify reads the backup in dir and every backup it builds on, checks
// every stored file against its size and checksum and every file of the
// database it restores against the whole file's checksum, and reports
// every problem (not only the first). The error is nil if there is none,
// else all of them joined (errors.Is(err, ErrCorruption) holds). Verify
// writes nothing.
func Verify(dir string, opts *Options) (*Report, error) {
	fs := opts.fs()
	c, err := loadChain(fs, dir)
	if err != nil {
		return nil, err
	}
	r := &Report{Chain: c.backups}
	var total, done int64
	for _, f := range c.top().Manifest.Files {
		total += f.Size
	}
	for _, b := range c.backups {
		for _, f := range b.Manifest.Files {
			if f.Stored() == 0 {
				continue
			}
			p := piece{path: filepath.Join(b.Dir, f.Name), n: f.Stored()}
			sum, err := writeResolved(fs, []piece{p}, nil)
			if err != nil {
				r.Problems = append(r.Problems, err)
				continue
			}
			if sum != f.StoredSum {
				r.Problems = append(r.Problems, errs.Corruptf(p.path, -1, "checksum %#x, the manifest records %#x", sum, f.StoredSum))
			}
		}
	}
	if len(r.Problems) > 0 {
		// The whole-file checks would repeat what the stored files
		// already showed.
		return r, errors.Join(r.Problems...)
	}
	top := c.top()
	for _, f := range top.Manifest.Files {
		pieces, _, err := c.pieces(0, f.Name)
		if err == nil {
			var sum uint64
			if sum, err = writeResolved(fs, pieces, nil); err == nil && sum != f.Sum {
				err = errs.Corruptf(filepath.Join(top.Dir, f.Name), -1, "restored file's checksum %#x, the manifest records %#x", sum, f.Sum)
			}
		}
		if err != nil {
			r.Problems = append(r.Problems, err)
		}
		r.Files++
		r.Bytes += f.Size
		done += f.Size
		opts.progress(done, total)
	}
	return r, errors.Join(r.Problems...)
}

// Restore rebuilds the database backed up in backupDir (and the backups
// it builds on) into targetDir, which must not exist or be empty. Every
// file is checked against its checksum as it is written; a mismatch
// stops the restore with an error wrapping ErrCorruption that names the
// file, and targetDir is not created. It returns the backup's manifest.
//
// By default the restored database is a new replica: a new replica ID,
// holding the backed-up state (documents and counters, as a state
// snapshot of the restored copy, see pluresdb.DB.ImportSnapshot) and
// claiming the source's operations up to the backup's version vector, but
// none of its op history; it may run beside the source and sync with it.
// Vector indexes are rebuilt by the application (snapshots do not carry
// them). With opts.SameReplica the backed-up replica itself is restored,
// files as they were: its replica ID and history included, to replace a
// lost node, never to run beside the source.
//
// A replica restored in place has lost whatever it wrote after the
// backup, and its peers may hold those operations: the restored database
// is left rejoining (a REJOINING marker, oplog.WriteRejoinFile, written
// before the directory appears). It opens, reads and imports, but refuses
// local writes with pluresdb.ErrRejoining until its own operations are
// imported back from every peer that may hold them (pluresdb.DB's
// ImportChanges of each peer's ExportChanges since its VersionVector)
// and pluresdb.DB.FinishRejoin is called.
func Restore(backupDir, targetDir string, opts *Options) (_ *Manifest, err error) {
	if opts != nil && !opts.At.IsZero() {
		if opts.SameReplica {
			return nil, fmt.Errorf("%w: a point-in-time restore makes a new replica; the same replica cannot go back in time "+
				"(its peers hold its later operations)", ErrRefused)
		}
		return restoreAt(backupDir, targetDir, opts)
	}
	if opts == nil || !opts.SameReplica {
		return restoreNewReplica(backupDir, targetDir, opts)
	}
	return restoreFiles(backupDir, targetDir, opts, true)
}

// restoreFiles restores the backup's files as they were into targetDir,
// marked rejoining if asked.
func restoreFiles(backupDir, targetDir string, opts *Options, rejoin bool) (_ *Manifest, err error) {
	fs := opts.fs()
	targetDir = filepath.Clean(targetDir)
	if err := checkEmptyTarget(fs, targetDir); err != nil {
		return nil, err
	}
	c, err := loadChain(fs, backupDir)
	if err != nil {
		return nil, err
	}
	top := c.top()
	tmp := tempBeside(targetDir, "restore")
	if err := fs.MkdirAll(tmp); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			removeTemp(fs, tmp, &err)
		}
	}()
	var total, done int64
	for _, f := range top.Manifest.Files {
		total += f.Size
	}
	for _, f := range top.Manifest.Files {
		pieces, _, err := c.pieces(0, f.Name)
		if err != nil {
			return nil, err
		}
		if err := restoreFile(fs, pieces, filepath.Join(tmp, f.Name), &f, top.Dir); err != nil {
			return nil, err
		}
		done += f.Size
		opts.progress(done, total)
	}
	if rejoin {
		if err := oplog.WriteRejoinFile(fs, layout.Path(tmp, layout.TypeRejoin, 0), top.Manifest.Replica); err != nil {
			return nil, err
		}
	}
	if err := fs.SyncDir(tmp); err != nil {
		return nil, err
	}
	if err := publishDir(fs, tmp, targetDir); err != nil {
		return nil, err
	}
	ok = true
	return top.Manifest, nil
}

func restoreFile(fs vfs.FS, pieces []piece, dst string, f *File, dir string) error {
	out, err := fs.Create(dst)
	if err != nil {
		return err
	}
	sum, err := writeResolved(fs, pieces, out)
	if err == nil && sum != f.Sum {
		err = errs.Corruptf(filepath.Join(dir, f.Name), -1, "restored file's checksum %#x, the manifest records %#x", sum, f.Sum)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// checkEmptyTarget refuses a target that exists and is not an empty
// directory.
func checkEmptyTarget(fs vfs.FS, dir string) error {
	if err := vfs.CheckEmptyDir(fs, dir); err != nil {
		if errors.Is(err, vfs.ErrNotEmpty) {
			return fmt.Errorf("%w: %w", ErrRefused, err)
		}
		return err
	}
	return nil
}

// publishDir syncs tmp's files' directory and renames it to dir (an empty
// directory of that name goes first), then syncs dir's parent.
func publishDir(fs vfs.FS, tmp, dir string) error {
	if err := fs.SyncDir(tmp); err != nil {
		return err
	}
	if err := checkEmptyTarget(fs, dir); err != nil {
		return err
	}
	if err := fs.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := fs.Rename(tmp, dir); err != nil {
		return fmt.Errorf("backup: renaming %s to %s: %w", tmp, dir, err)
	}
	return fs.SyncDir(filepath.Dir(dir))
}

// tempBeside names a temporary directory beside dir.
func tempBeside(dir, what string) string {
	var b [6]byte
	rand.Read(b[:])
	return filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+"."+what+"-"+hex.EncodeToString(b[:]))
}

func newID() ID {
	var id ID
	rand.Read(id[:])
	return id
}

// relPath returns target relative to from, when both can be made
// absolute.
func relPath(from, target string) (string, error) {
	a, err := filepath.Abs(from)
	if err != nil {
		return "", err
	}
	b, err := filepath.Abs(target)
	if err != nil {
		return "", err
	}
	return filepath.Rel(a, b)
}

// restoreNewReplica restores the backup as itself into a temporary
// directory beside targetDir, opens that read-only, and streams a state
// snapshot of it into a new database, which becomes targetDir.
//
// The temporary directories are removed; one that cannot be is named in
// the error (joined to the restore's own, if any), never left silently.
func restoreNewReplica(backupDir, targetDir string, opts *Options) (_ *Manifest, err error) {
	fs := opts.fs()
	targetDir = filepath.Clean(targetDir)
	if err := checkEmptyTarget(fs, targetDir); err != nil {
		return nil, err
	}
	same := tempBeside(targetDir, "restore-source")
	fresh := tempBeside(targetDir, "restore-new")
	ok := false
	defer func() {
		cleanup := []string{same}
		if !ok {
			cleanup = append(cleanup, fresh)
		}
		for _, dir := range cleanup {
			removeTemp(fs, dir, &err)
		}
	}()
	src, m, err := openRestored(fs, backupDir, same, opts)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	dst, err := pluresdb.Open(fresh, &pluresdb.Options{FS: fs})
	if err != nil {
		return nil, fmt.Errorf("backup: creating the new replica: %w", err)
	}
	_, err = pipe(src.ExportSnapshot, dst.ImportSnapshot)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("backup: restoring as a new replica: %w", err)
	}
	if err := publishDir(fs, fresh, targetDir); err != nil {
		return nil, err
	}
	ok = true
	return m, nil
}

// removeTemp removes the temporary directory dir, joining a failure to
// *err: a directory left behind is named, never silent.
func removeTemp(fs vfs.FS, dir string, err *error) {
	if rerr := vfs.RemoveAll(fs, dir); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		*err = errors.Join(*err, fmt.Errorf("backup: removing the temporary directory %s: %w", dir, rerr))
	}
}

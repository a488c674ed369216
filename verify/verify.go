package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
)

// Options configure a check. The zero value checks a closed database
// directory with every CPU.
type Options struct {
	// ColdDir is the directory of the cold tier's tables, if the database
	// keeps them apart (the engine's Options.ColdDir); "": dir.
	ColdDir string
	// Progress, if set, is called with the bytes checked so far and the
	// bytes to check in all, from one goroutine at a time, about every
	// MiB and once at the end.
	Progress func(done, total int64)
	// Parallelism is how many files are checked at once; 0: GOMAXPROCS.
	Parallelism int
	// Files, if set, is the set of files to check, fixed by a running
	// database (DB.Verify): its tables and log segments are checked
	// instead of those the MANIFEST and the directory list, and files
	// not in the set (being written) are left alone.
	Files *FileSet
}

// FileSet is a fixed set of files of a running database.
type FileSet struct {
	// Levels are the tables of a pinned version, by level, with their
	// MANIFEST entries.
	Levels [lsm.NumLevels][]*lsm.FileMeta
	// Segments is the op-log history, ascending: sealed segments and
	// archives, and last the live segment with the size written so far.
	Segments []Segment
	// Vectors are the vector checkpoint files.
	Vectors []layout.FileNum
}

// Segment is an op-log segment of a FileSet.
type Segment struct {
	Num      layout.FileNum
	Archived bool  // the segment is in the cold archive (NNNNNN.oparc)
	Limit    int64 // bytes of the log file to read; < 0: all of it
}

// ioBuffer is the size of the sequential reads of log segments.
const ioBuffer = 1 << 20

// Dir checks the database in dir and returns what it found. The error is
// for a check that could not run: no such directory, not a database, a
// directory that cannot be listed, ctx cancelled. Damage, including a
// file that cannot be read, is in the Report.
//
// Without Options.Files the database must not be open in another process
// while it runs (it takes no lock): files that change under it give false
// findings. DB.Verify checks a running database.
func Dir(ctx context.Context, fsys vfs.FS, dir string, opts Options) (*Report, error) {
	if fsys == nil {
		fsys = vfs.Default
	}
	start := time.Now()
	fi, err := fsys.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("verify: %s: %w (not a directory)", dir, errs.ErrNotDatabase)
	}
	names, err := fsys.List(dir)
	if err != nil {
		return nil, fmt.Errorf("verify: listing %s: %w", dir, err)
	}
	c := &checker{ctx: ctx, fs: fsys, dir: dir, coldDir: opts.ColdDir, opts: opts,
		rep: &Report{Dir: dir, ColdDir: opts.ColdDir, Started: start, Counts: map[Kind]int{}, FilesByType: map[string]int{}}}
	if err := c.classify(names); err != nil {
		return nil, err
	}
	if err := c.run(); err != nil {
		return nil, err
	}
	c.finish(start)
	return c.rep, nil
}

// checker holds the state of one check.
type checker struct {
	ctx          context.Context
	fs           vfs.FS
	dir, coldDir string
	opts         Options
	rep          *Report

	// What the directory holds, by type.
	logs, tables, coldTables, archives, vectors, manifests []layout.FileNum
	temps, unknown, subdirs                                []string
	hasCurrent, hasReplica, hasRejoin                      bool

	ms       *lsm.ManifestState // nil: the MANIFEST could not be read
	self     oplog.ReplicaID
	haveSelf bool

	total    int64
	done     atomic.Int64
	progMu   sync.Mutex
	reported int64
}

// classify sorts the directory's entries by type, and refuses a
// directory that holds no database.
func (c *checker) classify(names []string) error {
	for _, name := range names {
		t, n, ok := layout.Parse(name)
		switch {
		case !ok:
			if fi, err := c.fs.Stat(filepath.Join(c.dir, name)); err == nil && fi.IsDir() {
				c.subdirs = append(c.subdirs, name)
			} else {
				c.unknown = append(c.unknown, name)
			}
		case t == layout.TypeLog:
			c.logs = append(c.logs, n)
		case t == layout.TypeTable:
			c.tables = append(c.tables, n)
		case t == layout.TypeArchive:
			c.archives = append(c.archives, n)
		case t == layout.TypeVectorGraph:
			c.vectors = append(c.vectors, n)
		case t == layout.TypeManifest:
			c.manifests = append(c.manifests, n)
		case t == layout.TypeTemp:
			c.temps = append(c.temps, name)
		case t == layout.TypeCurrent:
			c.hasCurrent = true
		case t == layout.TypeReplica:
			c.hasReplica = true
		case t == layout.TypeRejoin:
			c.hasRejoin = true
		}
	}
	for _, s := range [][]layout.FileNum{c.logs, c.tables, c.archives, c.vectors, c.manifests} {
		slices.Sort(s)
	}
	if !c.hasCurrent && len(c.manifests) == 0 && len(c.tables) == 0 && len(c.logs) == 0 && !c.hasReplica {
		return fmt.Errorf("verify: %s: %w (no CURRENT, MANIFEST, table or log segment)", c.dir, errs.ErrNotDatabase)
	}
	if c.coldDir != "" && c.coldDir != c.dir {
		names, err := c.fs.List(c.coldDir)
		if err != nil {
			return fmt.Errorf("verify: listing the cold directory %s: %w", c.coldDir, err)
		}
		for _, name := range names {
			if t, n, ok := layout.Parse(name); ok && t == layout.TypeTable {
				c.coldTables = append(c.coldTables, n)
			}
		}
	}
	return nil
}

// job is the check of one file, run by a worker.
type job struct {
	size int64
	run  func() error // an error stops the whole check (ctx cancelled)
}

// run checks everything.
func (c *checker) run() error {
	c.checkReplica()
	c.checkRejoin()
	c.checkManifest()

	var levels [lsm.NumLevels][]*lsm.FileMeta
	var segs []Segment
	var vectors []layout.FileNum
	if fsx := c.opts.Files; fsx != nil {
		levels, segs, vectors = fsx.Levels, fsx.Segments, fsx.Vectors
	} else {
		if c.ms != nil {
			levels = c.ms.Version.Levels
		}
		segs = c.dirSegments()
		vectors = c.vectors
	}

	var jobs []job
	tables := make([][]*tableResult, lsm.NumLevels)
	for level, files := range levels {
		tables[level] = make([]*tableResult, len(files))
		for i, m := range files {
			res := &tableResult{meta: m, level: level, path: layout.Path(lsm.TableDir(c.dir, c.coldDir, m.Cold), layout.TypeTable, m.Num)}
			tables[level][i] = res
			if size, ok := c.statTable(res); ok {
				jobs = append(jobs, job{size: size, run: func() error { return c.checkTable(res, size) }})
			}
		}
	}
	history := make([]*historyResult, len(segs))
	newest := layout.FileNum(0)
	if n := len(c.logs); n > 0 {
		newest = c.logs[n-1]
	}
	for i, s := range segs {
		h := &historyResult{seg: s}
		history[i] = h
		size, ok := c.statHistory(h)
		if !ok {
			continue
		}
		if h.seg.Archived {
			jobs = append(jobs, job{size: size, run: func() error { return c.checkArchive(h, size) }})
		} else {
			torn := c.opts.Files == nil && s.Num == newest && (c.ms == nil || c.ms.CleanClose == nil)
			jobs = append(jobs, job{size: size, run: func() error { return c.checkSegment(h, size, torn) }})
		}
	}
	if c.opts.Files == nil && c.ms == nil {
		// No MANIFEST to check them against: each table alone.
		var alone []*tableResult
		for _, set := range []struct {
			dir  string
			nums []layout.FileNum
		}{{c.dir, c.tables}, {c.coldDir, c.coldTables}} {
			for _, n := range set.nums {
				res := &tableResult{level: -1, path: layout.Path(set.dir, layout.TypeTable, n)}
				alone = append(alone, res)
				if size, ok := c.statTable(res); ok {
					jobs = append(jobs, job{size: size, run: func() error { return c.checkTable(res, size) }})
				}
			}
		}
		tables = append(tables, alone)
	}
	vecFindings := make([][]Finding, len(vectors))
	for i, n := range vectors {
		path := layout.Path(c.dir, layout.TypeVectorGraph, n)
		fi, err := c.fs.Stat(path)
		if err != nil {
			c.notFound(path, err, "vector")
			continue
		}
		jobs = append(jobs, job{size: fi.Size(), run: func() error {
			vecFindings[i] = c.checkVector(path)
			return nil
		}})
	}
	for _, j := range jobs {
		c.total += j.size
	}
	if err := c.runJobs(jobs); err != nil {
		return err
	}

	for _, f := range vecFindings {
		c.rep.Findings = append(c.rep.Findings, f...)
	}
	c.checkLevels(tables)
	c.checkHistory(history)
	if c.opts.Files == nil {
		c.checkDirectory(levels)
		c.checkSegIndexes(tables, history)
		c.checkLiveSegment()
	}
	return nil
}

// runJobs runs the jobs on the workers, largest first.
func (c *checker) runJobs(jobs []job) error {
	slices.SortStableFunc(jobs, func(a, b job) int { return int(min(max(b.size-a.size, -1), 1)) })
	workers := c.opts.Parallelism
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(workers, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(jobs) {
					return
				}
				err := c.ctx.Err()
				if err == nil {
					err = jobs[i].run()
				}
				if err != nil {
					once.Do(func() { first = err })
					next.Store(int64(len(jobs)))
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("verify: %w", first)
	}
	c.progress(0)
	return nil
}

// progress adds n checked bytes and calls Options.Progress about every
// MiB (n == 0: now).
func (c *checker) progress(n int64) {
	done := c.done.Add(n)
	if c.opts.Progress == nil {
		return
	}
	c.progMu.Lock()
	defer c.progMu.Unlock()
	if n == 0 || done-c.reported >= 1<<20 {
		c.reported = done
		c.opts.Progress(min(done, c.total), c.total)
	}
}

// fileProgress counts the progress of the check of one file of size
// bytes: never more than its size, and all of it at the end.
type fileProgress struct {
	c          *checker
	size, done int64
}

func (p *fileProgress) add(n int64) {
	n = min(n, p.size-p.done)
	p.done += n
	p.c.progress(n)
}

// finish counts what was not read (skipped after damage) as done.
func (p *fileProgress) finish() { p.add(p.size - p.done) }

// counted counts the bytes read through it as progress.
type counted struct {
	r io.Reader
	p *fileProgress
}

func (cr *counted) Read(b []byte) (int, error) {
	n, err := cr.r.Read(b)
	cr.p.add(int64(n))
	return n, err
}

// readFile reads the whole file at path with large reads; ok is false
// after a finding says why not.
func (c *checker) readFile(path string, what string) ([]byte, []Finding) {
	f, err := c.fs.Open(path)
	if err != nil {
		if c.removed(path, err) {
			return nil, []Finding{}
		}
		return nil, []Finding{c.openFailed(path, err)}
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, []Finding{{Kind: Unreadable, File: path, Offset: -1, Message: err.Error()}}
	}
	c.count(what, size)
	p := &fileProgress{c: c, size: size}
	defer p.finish()
	data := make([]byte, size)
	for off := int64(0); off < size; {
		n, err := f.ReadAt(data[off:min(size, off+ioBuffer)], off)
		off += int64(n)
		p.add(int64(n))
		if err != nil && off < size {
			if errors.Is(err, io.EOF) {
				return nil, []Finding{{Kind: Truncated, File: path, Offset: off, Message: fmt.Sprintf("file ends at %d of %d bytes while being read", off, size)}}
			}
			return nil, []Finding{{Kind: Unreadable, File: path, Offset: off, Message: err.Error()}}
		}
	}
	return data, nil
}

// count notes a file of type what, of size bytes, checked.
func (c *checker) count(what string, size int64) {
	c.progMu.Lock()
	c.rep.Files++
	c.rep.FilesByType[what]++
	c.rep.Bytes += size
	c.progMu.Unlock()
}

// openFailed is the finding for a file that could not be opened.
func (c *checker) openFailed(path string, err error) Finding {
	if errors.Is(err, fs.ErrNotExist) {
		return Finding{Kind: Missing, File: path, Offset: -1, Message: "file is gone"}
	}
	return Finding{Kind: Unreadable, File: path, Offset: -1, Message: err.Error()}
}

// removed reports whether err says that the running database removed
// the file of its fixed set at path, and if so lists it as skipped.
func (c *checker) removed(path string, err error) bool {
	if c.opts.Files == nil || !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	c.progMu.Lock()
	c.rep.Skipped = append(c.rep.Skipped, path)
	c.progMu.Unlock()
	return true
}

// notFound records a file of a fixed set that a running database removed
// (skipped), or, otherwise, what a failed Stat means.
func (c *checker) notFound(path string, err error, what string) {
	if c.removed(path, err) {
		return
	}
	f := c.openFailed(path, err)
	f.Message = fmt.Sprintf("%s: %s", what, f.Message)
	c.rep.add(f)
}

// findingOf turns an error a decoder returned into a finding; file is
// used when the error names none.
func findingOf(err error, file string) Finding {
	f := Finding{Kind: Unreadable, File: file, Offset: -1, Message: err.Error()}
	var ce *errs.CorruptionError
	switch {
	case errors.As(err, &ce):
		f.Kind, f.Offset, f.Message = Corrupt, ce.Offset, ce.Reason
		if ce.File != "" {
			f.File = ce.File
		}
		if strings.Contains(ce.Reason, "checksum") {
			f.Kind = Checksum
		}
		if wrapped := err.Error(); !strings.HasSuffix(wrapped, ce.Reason) {
			// Context added around the corruption (a decoder's own).
			f.Message = wrapped
		}
	case errors.Is(err, errs.ErrNewerFormat):
		f.Kind = NewerFormat
	case errors.Is(err, errs.ErrCorruption):
		f.Kind = Corrupt
	}
	return f
}

// finish sorts the findings and fills in the totals.
func (c *checker) finish(start time.Time) {
	r := c.rep
	slices.SortStableFunc(r.Findings, func(a, b Finding) int {
		if x := strings.Compare(a.File, b.File); x != 0 {
			return x
		}
		return int(min(max(a.Offset-b.Offset, -1), 1))
	})
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	for _, f := range r.Findings {
		r.Counts[f.Kind]++
		if f.Kind.Damage() {
			r.Damage++
		}
	}
	r.Clean = r.Damage == 0
	r.Duration = time.Since(start)
}

// userKey strips the trailer of an internal key (a key too short to have
// one is returned as is).
func userKey(ikey []byte) []byte {
	if len(ikey) < lsm.TrailerLen {
		return ikey
	}
	return ikey[:len(ikey)-lsm.TrailerLen]
}

// tableKeys is the key range of a whole table.
func tableKeys(m *lsm.FileMeta) *KeyRange {
	return &KeyRange{Smallest: bytes.Clone(userKey(m.Smallest)), Largest: bytes.Clone(userKey(m.Largest))}
}

// tableSeqs is the log sequence number range of a whole table.
func tableSeqs(m *lsm.FileMeta) []SeqRange {
	return []SeqRange{{From: uint64(m.SmallestSeq), To: uint64(m.LargestSeq)}}
}

// dirSegments lists the op-log history of the directory: log segments,
// and archives of segments whose log is gone, ascending.
func (c *checker) dirSegments() []Segment {
	var out []Segment
	logs := map[layout.FileNum]bool{}
	for _, n := range c.logs {
		logs[n] = true
		out = append(out, Segment{Num: n, Limit: -1})
	}
	for _, n := range c.archives {
		// An archive beside its log: a crash between writing the one and
		// removing the other. Both are checked; the log is the sequence.
		out = append(out, Segment{Num: n, Archived: true, Limit: -1})
	}
	slices.SortStableFunc(out, func(a, b Segment) int {
		if a.Num != b.Num {
			return int(min(max(int64(a.Num)-int64(b.Num), -1), 1))
		}
		if !a.Archived {
			return -1
		}
		return 1
	})
	return out
}

// checkRejoin checks the REJOINING marker, if there is one: it must
// decode and name the replica REPLICA names. Its presence is no damage
// (Report.Rejoining).
func (c *checker) checkRejoin() {
	if !c.hasRejoin {
		return
	}
	path := layout.Path(c.dir, layout.TypeRejoin, 0)
	data, fs := c.readFile(path, "rejoin")
	if fs != nil {
		c.rep.Findings = append(c.rep.Findings, fs...)
		return
	}
	id, err := oplog.DecodeRejoinFile(path, data)
	if err != nil {
		c.rep.add(findingOf(err, path))
		return
	}
	if c.haveSelf && id != c.self {
		c.rep.add(Finding{Kind: Corrupt, File: path, Offset: 12,
			Message: fmt.Sprintf("rejoining marker of replica %s in the database of replica %s: the database does not open", id, c.self)})
		return
	}
	c.rep.Rejoining = true
}

// checkReplica checks REPLICA.
func (c *checker) checkReplica() {
	path := layout.Path(c.dir, layout.TypeReplica, 0)
	if !c.hasReplica {
		if format, err := lsm.ManifestFormat(c.fs, c.dir); err == nil && format == 1 {
			c.rep.add(Finding{Kind: Warning, File: path, Offset: -1,
				Message: "no REPLICA in a first-format database: the next open upgrades it and makes a replica ID"})
			return
		}
		c.rep.add(Finding{Kind: Missing, File: path, Offset: -1,
			Message: "REPLICA is missing: the database does not open until it is restored (its replica ID names every local operation)"})
		return
	}
	data, fs := c.readFile(path, "replica")
	if fs != nil {
		c.rep.Findings = append(c.rep.Findings, fs...)
		return
	}
	id, err := oplog.DecodeReplicaFile(path, data)
	if err != nil {
		c.rep.add(findingOf(err, path))
		return
	}
	c.self, c.haveSelf = id, true
	c.rep.Replica = id.String()
}

// Package refill brings back the key ranges a repair lost (see "Repair"
// in ARCHITECTURE.md): after repair.Dir has dropped a damaged table, it
// opens the repaired database and fills each lost key range again with
// the state of its keys, first from the database's own retained op
// history, then from each source given, a peer database directory or a
// backup, and syncs the database with each source. plures-fsck --repair
// calls it.
//
// It imports the root package (the repair package does not): every state
// goes through the root's snapshot join, limited to a key range
// (DB.ExportHistoryRange, DB.ExportSnapshotRange, DB.ImportSnapshotRange),
// so a refilled key holds the join of what this replica still had and
// what the history or the source held, tombstones included.
package refill

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/backup"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/repair"
	"github.com/plures/pluresdb/verify"
)

// Namespaces of stored keys (the first byte; see "Keys" in
// ARCHITECTURE.md).
const (
	nsMeta      = 0x00
	nsDocuments = 0x01
	nsPostings  = 0x02
	nsVectors   = 0x03
	nsSeries    = 0x04
	nsCounters  = 0x05
)

// keepHistory is the Retention and HotHistory the refill opens the
// database with: nothing of its history is archived or dropped while the
// refill runs, whatever the application's settings are.
const keepHistory = 100 * 365 * 24 * time.Hour

// SourceKind says what a source is.
type SourceKind string

const (
	// Peer is a closed database directory of another replica (or a copy
	// of this one), opened read-only.
	Peer SourceKind = "peer"
	// Backup is a backup directory (package backup), restored as the
	// same replica into a temporary directory beside the database, opened
	// read-only, and removed after.
	Backup SourceKind = "backup"
)

// SourceSpec names a source.
type SourceSpec struct {
	Kind SourceKind `json:"kind"`
	Path string     `json:"path"`
}

// Options configure a refill.
type Options struct {
	// FS is the filesystem of the database and the sources; nil: the
	// operating system's.
	FS vfs.FS
	// ColdDir is the database's Options.ColdDir ("": none).
	ColdDir string
	// Sources are used in order: for every lost range, each source's
	// state of its keys is joined in; then the database imports the
	// source's operations it lacks.
	Sources []SourceSpec
}

// Source says what one source gave.
type Source struct {
	SourceSpec
	// Replica is the source's replica ID.
	Replica string `json:"replica,omitempty"`
	// Imported counts the operations the full sync imported.
	Imported int `json:"imported"`
	// Sync says why the full sync did not complete ("" if it did).
	Sync string `json:"sync,omitempty"`
	// Error says why the source could not be used at all (it could not
	// be restored or opened, or a range import was refused).
	Error string `json:"error,omitempty"`
}

// Range says what came back of one lost key range.
type Range struct {
	// File is the quarantined table that held the range.
	File string `json:"file"`
	// Keys is the range of stored keys (namespace byte first).
	Keys verify.KeyRange `json:"keys"`
	// FromHistory counts the keys whose state the retained op history
	// rebuilt (and that changed: a key that still read right is not
	// counted).
	FromHistory int `json:"from_history"`
	// FromSource counts the keys whose state the sources changed, and
	// SourceKeys the keys of the range the sources held.
	FromSource int `json:"from_source"`
	SourceKeys int `json:"source_keys"`
	// Unrebuilt are the stored keys the retained history names but cannot
	// rebuild (see pluresdb.HistoryRange.Unavailable) that no source
	// held: known to be lost.
	Unrebuilt [][]byte `json:"unrebuilt,omitempty"`
	// Complete: every key of the range is back as this replica held it.
	Complete bool `json:"complete"`
	// Remaining says what may still be lost when not Complete.
	Remaining []string `json:"remaining,omitempty"`
}

// Result says what the refill did.
type Result struct {
	Ranges  []Range  `json:"ranges"`
	Sources []Source `json:"sources,omitempty"`
	// NotRun says why the refill did not run ("" if it did): the repaired
	// database does not open.
	NotRun string `json:"not_run,omitempty"`
	// Complete: every lost range is back whole, and every source synced.
	Complete bool `json:"complete"`
}

// Ranges returns the lost key ranges of a repair: the losses with a key
// range (quarantined tables). A damaged log record's loss has none: its
// operations come back by a sync only.
func Ranges(lost []repair.Loss) []repair.Loss {
	var out []repair.Loss
	for _, l := range lost {
		if l.Keys != nil {
			out = append(out, l)
		}
	}
	return out
}

// Dir refills the lost ranges of the closed, repaired database in dir.
// The error is for a refill that stopped part way (an I/O error, ctx
// cancelled) or a temporary directory or file that could not be removed
// (named); the Result is returned with it, holding what was done.
func Dir(ctx context.Context, dir string, lost []repair.Loss, opts Options) (*Result, error) {
	res := &Result{Ranges: []Range{}}
	ranges := Ranges(lost)
	for _, l := range ranges {
		res.Ranges = append(res.Ranges, Range{File: l.File, Keys: *l.Keys})
	}
	if len(ranges) == 0 && len(opts.Sources) == 0 {
		res.Complete = true
		return res, nil
	}
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	db, err := pluresdb.Open(dir, &pluresdb.Options{FS: fs, ColdDir: opts.ColdDir, Retention: keepHistory, HotHistory: keepHistory})
	if err != nil {
		res.NotRun = fmt.Sprintf("the repaired database does not open: %v", err)
		for i := range res.Ranges {
			res.Ranges[i].Remaining = []string{"not refilled: " + res.NotRun}
		}
		return res, nil
	}
	r := &refiller{ctx: ctx, fs: fs, dir: dir, db: db, res: res, unrebuilt: make([]map[string]bool, len(ranges)),
		covered: make([]bool, len(ranges)), histComplete: make([]bool, len(ranges)), lacking: make([][]string, len(ranges))}
	err = r.run(opts)
	err = errors.Join(err, db.Close())
	r.conclude()
	return res, err
}

// refiller holds one refill's state.
type refiller struct {
	ctx context.Context
	fs  vfs.FS
	dir string
	db  *pluresdb.DB
	res *Result

	// Per range: the keys the history could not rebuild and no source
	// held yet; whether a source held every operation this replica
	// holds; whether the history was complete.
	unrebuilt    []map[string]bool
	covered      []bool
	histComplete []bool
	// lacking says, per range, which operations each source lacked.
	lacking [][]string
}

func (r *refiller) run(opts Options) error {
	for i := range r.res.Ranges {
		if err := r.fromHistory(i); err != nil {
			return err
		}
	}
	for _, spec := range opts.Sources {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		src := Source{SourceSpec: spec}
		err := r.fromSource(&src)
		r.res.Sources = append(r.res.Sources, src)
		if err != nil {
			return err
		}
	}
	return nil
}

// bounds returns the stored-key bounds of range i.
func (r *refiller) bounds(i int) (lo, hi []byte) {
	k := r.res.Ranges[i].Keys
	return k.Smallest, k.Largest
}

// fromHistory rebuilds the keys of range i the retained history holds.
func (r *refiller) fromHistory(i int) error {
	lo, hi := r.bounds(i)
	pr, pw := io.Pipe()
	done := make(chan pluresdb.HistoryRange, 1)
	go func() {
		h, err := r.db.ExportHistoryRange(pw, lo, hi)
		pw.CloseWithError(err)
		done <- h
	}()
	imp, err := r.db.ImportSnapshotRange(pr, lo, hi)
	pr.CloseWithError(err) // stops the export if the import failed
	h := <-done
	if err != nil {
		return fmt.Errorf("refill: rebuilding %s from the op history: %w", describe(lo, hi), err)
	}
	rg := &r.res.Ranges[i]
	rg.FromHistory = imp.Changed
	r.histComplete[i] = h.Complete
	r.unrebuilt[i] = map[string]bool{}
	for _, k := range h.Unavailable {
		r.unrebuilt[i][string(k)] = true
	}
	return nil
}

// fromSource opens a source, joins its state of every lost range, then
// imports its operations this replica lacks. What the source could not
// give is in src; the error is for what stops the refill.
func (r *refiller) fromSource(src *Source) (err error) {
	path := src.Path
	if src.Kind == Backup {
		// Restore makes the directory; it must not exist or be empty.
		tmp := r.tempName("refill-backup")
		defer func() {
			if rerr := vfs.RemoveAll(r.fs, tmp); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("refill: removing the temporary directory %s (backup %s restored): %w", tmp, src.Path, rerr))
			}
		}()
		if _, err := backup.Restore(src.Path, tmp, &backup.Options{FS: r.fs, SameReplica: true}); err != nil {
			src.Error = fmt.Sprintf("restoring the backup: %v", err)
			return nil
		}
		path = tmp
	}
	sdb, err := pluresdb.Open(path, &pluresdb.Options{FS: r.fs, ReadOnly: true})
	if err != nil {
		src.Error = fmt.Sprintf("opening it read-only: %v", err)
		return nil
	}
	defer func() { err = errors.Join(err, sdb.Close()) }()
	src.Replica = sdb.ReplicaID().String()

	// The sync first: afterwards this replica holds every operation the
	// source holds (unless the sync stopped short), so the range states
	// joined next hold no operation its log lacks, and the range import
	// moves no metadata (see pluresdb's finishRange). The operations the
	// sync brings on lost keys are joined again with the source's states:
	// a join changes nothing it already holds.
	src.Imported, src.Sync = r.sync(sdb)
	for i := range r.res.Ranges {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		refused, err := r.rangeFrom(i, sdb)
		if err != nil {
			return err
		}
		if refused != nil {
			src.Error = fmt.Sprintf("joining %s: %v", describe(r.bounds(i)), refused)
			return nil
		}
	}
	return nil
}

// rangeFrom joins the source's state of range i. A refusal by the
// import (a source that must not be joined) is returned as refused; err
// is for what stops the refill.
func (r *refiller) rangeFrom(i int, sdb *pluresdb.DB) (refused, err error) {
	lo, hi := r.bounds(i)
	// The snapshot goes through a temporary file beside the database: its
	// keys are read once to learn which lost keys the source holds, then
	// it is imported.
	name := r.tempName("refill") + ".snap"
	f, err := r.fs.Create(name)
	if err != nil {
		return nil, fmt.Errorf("refill: a temporary file: %w", err)
	}
	defer func() {
		f.Close()
		if rerr := r.fs.Remove(name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("refill: removing the temporary file %s: %w", name, rerr))
		}
	}()
	if _, err := sdb.ExportSnapshotRange(f, lo, hi); err != nil {
		return nil, fmt.Errorf("refill: reading %s from the source: %w", describe(lo, hi), err)
	}
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	var held []string
	sr, err := oplog.NewSnapshotReader(io.NewSectionReader(f, 0, size))
	if err != nil {
		return nil, fmt.Errorf("refill: reading back %s: %w", name, err)
	}
	for {
		ns, key, _, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("refill: reading back %s: %w", name, err)
		}
		held = append(held, string(append([]byte{ns}, key...)))
	}
	imp, err := r.db.ImportSnapshotRange(io.NewSectionReader(f, 0, size), lo, hi)
	switch {
	case errors.Is(err, pluresdb.ErrRewound) || errors.Is(err, pluresdb.ErrStaleReplica) || errors.Is(err, oplog.ErrClockDrift):
		return err, nil
	case err != nil:
		return nil, fmt.Errorf("refill: joining %s from the source: %w", describe(lo, hi), err)
	}
	rg := &r.res.Ranges[i]
	rg.FromSource += imp.Changed
	rg.SourceKeys = max(rg.SourceKeys, len(held))
	for _, k := range held {
		delete(r.unrebuilt[i], k)
	}
	if len(imp.Lacking) == 0 {
		// The source held every operation this replica holds: a key of
		// the range it lacks has no state (its tombstone was collected).
		r.covered[i] = true
		clear(r.unrebuilt[i])
	} else {
		for rep, s := range imp.Lacking {
			r.lacking[i] = append(r.lacking[i], fmt.Sprintf("source %s lacks replica %s's operations %d..%d, which this replica holds: "+
				"the keys they wrote in this range lack them unless the history rebuilt those keys",
				imp.Source, rep, imp.VersionVector[rep]+1, s))
		}
	}
	return nil, nil
}

// tempName names a temporary file or directory beside the database.
func (r *refiller) tempName(what string) string {
	var b [6]byte
	rand.Read(b[:])
	return filepath.Join(filepath.Dir(filepath.Clean(r.dir)), "."+filepath.Base(r.dir)+"."+what+"-"+hex.EncodeToString(b[:]))
}

// sync imports the source's operations this replica lacks; it returns
// how many it imported, and why it stopped short ("" if it did not).
func (r *refiller) sync(sdb *pluresdb.DB) (int, string) {
	pr, pw := io.Pipe()
	go func() {
		_, err := sdb.ExportChanges(pw, r.db.VersionVector())
		pw.CloseWithError(err)
	}()
	n, err := r.db.ImportChanges(pr)
	pr.CloseWithError(err)
	switch {
	case err == nil:
		return n, ""
	case errors.Is(err, pluresdb.ErrRewound):
		return n, fmt.Sprintf("not synced: the source holds operations of this replica that this replica lacks (a "+
			"copy of it, taken after the operations the damage lost): importing them would make this replica reuse their "+
			"sequence numbers, and its states of the lost ranges are refused for the same reason (ErrSnapshotAhead); "+
			"such a replica rejoins as a new one (%v)", err)
	case errors.Is(err, pluresdb.ErrCausalGap), errors.Is(err, pluresdb.ErrHistoryUnavailable):
		return n, fmt.Sprintf("not synced: the source no longer has the operations this replica lacks in its history, or "+
			"they do not follow this replica's; sync with a replica that has them, or import a snapshot (%v)", err)
	default:
		return n, fmt.Sprintf("not synced: %v", err)
	}
}

// conclude decides, per range, what is back and what remains lost.
func (r *refiller) conclude() {
	res := r.res
	res.Complete = res.NotRun == ""
	for i := range res.Ranges {
		rg := &res.Ranges[i]
		if r.unrebuilt == nil || r.unrebuilt[i] == nil {
			rg.Remaining = append(rg.Remaining, "not refilled")
			res.Complete = false
			continue
		}
		for k := range r.unrebuilt[i] {
			rg.Unrebuilt = append(rg.Unrebuilt, []byte(k))
		}
		slices.SortFunc(rg.Unrebuilt, bytes.Compare)
		if n := len(rg.Unrebuilt); n > 0 {
			rg.Remaining = append(rg.Remaining, fmt.Sprintf("%d keys the retained history names but cannot rebuild "+
				"(no whole-document write retained, or a counter once history was dropped), and no source held", n))
		}
		if !r.covered[i] {
			rg.Remaining = append(rg.Remaining, r.lacking[i]...)
		}
		if !r.covered[i] && !r.histComplete[i] {
			rg.Remaining = append(rg.Remaining, "keys whose every operation left the retained history, unless a source "+
				"that held every operation of this replica gave them: their number is not known")
		}
		if ns := others(rg.Keys); len(ns) > 0 {
			rg.Remaining = append(rg.Remaining, "not refilled: "+strings.Join(ns, ", "))
		}
		rg.Remaining = compact(rg.Remaining)
		rg.Complete = len(rg.Unrebuilt) == 0 && (r.covered[i] || r.histComplete[i]) && len(others(rg.Keys)) == 0
		res.Complete = res.Complete && rg.Complete
	}
	for _, s := range res.Sources {
		if s.Error != "" || s.Sync != "" {
			res.Complete = false
		}
	}
}

// others names the namespaces of range k that a refill does not fill.
func others(k verify.KeyRange) []string {
	first, last := byte(nsMeta), byte(0xff)
	if len(k.Smallest) > 0 {
		first = k.Smallest[0]
	}
	if len(k.Largest) > 0 {
		last = k.Largest[0]
	}
	var out []string
	for ns := int(first); ns <= int(last) && ns <= nsCounters; ns++ {
		switch ns {
		case nsMeta:
			out = append(out, "the op log's metadata (this replica's own: repair keeps or refuses it, a peer never supplies it)")
		case nsPostings:
			out = append(out, "index postings (a projection of the documents)")
		case nsVectors:
			out = append(out, "vector indexes (the application rebuilds them)")
		case nsSeries:
			out = append(out, "time series")
		}
	}
	if last > nsCounters {
		out = append(out, fmt.Sprintf("keys of namespaces above %#x", nsCounters))
	}
	return out
}

// compact drops repeated lines, keeping the order.
func compact(lines []string) []string {
	var out []string
	for _, l := range lines {
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

// describe names a range of stored keys.
func describe(lo, hi []byte) string {
	b := func(k []byte) string {
		if k == nil {
			return "(open)"
		}
		return fmt.Sprintf("%q", k)
	}
	return "stored keys " + b(lo) + " .. " + b(hi)
}

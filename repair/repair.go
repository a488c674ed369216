package repair

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/verify"
	"github.com/plures/pluresdb/wal"
)

// ErrLocked is returned when the database is open (its LOCK is held):
// repair runs on a closed database only.
var ErrLocked = errs.ErrLocked

// Options configure a repair. The zero value repairs a database whose
// tables are all in its directory.
type Options struct {
	// ColdDir is the directory of the cold tier's tables, if the database
	// keeps them apart (the engine's Options.ColdDir); "": dir.
	ColdDir string
}

// ActionKind says what an Action did. The values appear in the JSON
// report.
type ActionKind string

const (
	// Quarantined: a file moved into quarantine/ (never deleted).
	Quarantined ActionKind = "quarantined"
	// Wrote: a file written (a new MANIFEST, CURRENT, REPLICA).
	Wrote ActionKind = "wrote"
)

// Action is one change repair made to the directory.
type Action struct {
	Kind ActionKind `json:"kind"`
	File string     `json:"file"`
	// To is where a quarantined file went.
	To  string `json:"to,omitempty"`
	Why string `json:"why"`
}

// Loss is data the repaired database does not hold.
type Loss struct {
	// File is the damaged file (before it was quarantined).
	File string `json:"file"`
	// Keys is the range of stored keys (namespace byte first) the lost
	// entries lie in; nil: not known or none.
	Keys *verify.KeyRange `json:"keys,omitempty"`
	// Seqs are the sequence numbers of the lost operations.
	Seqs []verify.SeqRange `json:"seqs,omitempty"`
	Why  string            `json:"why"`
}

// Recovered is a quarantined table whose entries the log holds: the next
// open replays them.
type Recovered struct {
	File string            `json:"file"`
	Keys *verify.KeyRange  `json:"keys,omitempty"`
	Seqs []verify.SeqRange `json:"seqs,omitempty"`
	// FromLog is the first log segment the next open replays.
	FromLog string `json:"from_log"`
}

// Result says what a repair did and what it could not do.
type Result struct {
	Dir     string `json:"dir"`
	Replica string `json:"replica,omitempty"`
	// Before is the check that decided the repair.
	Before *verify.Report `json:"-"`
	// Actions are the changes made, in order.
	Actions []Action `json:"actions"`
	// Manifest is the MANIFEST repair wrote ("" if it kept the old one),
	// and LogNum the first log segment the next open replays.
	Manifest string `json:"manifest,omitempty"`
	LogNum   string `json:"log_num,omitempty"`
	// Recovered are damaged tables whose entries the log holds.
	Recovered []Recovered `json:"recovered,omitempty"`
	// Lost is what the repaired database does not hold.
	Lost []Loss `json:"lost,omitempty"`
	// Refused lists what repair would not do, and why (each a sentence):
	// the database is still damaged there.
	Refused []string `json:"refused,omitempty"`
	// Unrepaired are damage findings repair does not act on (left as they
	// were, reported again by the next check).
	Unrepaired []verify.Finding `json:"unrepaired,omitempty"`
	// NotDone lists the repairs this version does not do.
	NotDone []string `json:"not_done"`
	// Recover says how to get the lost data back.
	Recover string `json:"recover,omitempty"`
}

// notDone are the repairs this version leaves to the operator: none.
// Refilling lost key ranges from the op history, a peer or a backup is
// package refill's (plures-fsck --repair --from-peer/--from-backup),
// which imports the root package as this one must not.
var notDone = []string{}

// recoverHint says how lost data comes back.
const recoverHint = "lost operations come back from a peer that has them (its ExportChanges since this replica's " +
	"version vector, imported here with ImportChanges) or from a backup (plures-backup restore into a new " +
	"directory, then sync the two); lost key ranges of a table hold the state of those keys as this replica had it: " +
	"plures-fsck --repair rebuilds what the retained op history holds of them, and with --from-peer DIR or " +
	"--from-backup DIR joins a source's state of them and syncs with it"

// Dir repairs the closed database in dir. The error is for a repair that
// could not run: no such directory, not a database, the database is open
// (ErrLocked), ctx cancelled, an I/O error. What repair would not do is in
// Result.Refused, what is lost in Result.Lost.
func Dir(ctx context.Context, fsys vfs.FS, dir string, opts Options) (*Result, error) {
	if fsys == nil {
		fsys = vfs.Default
	}
	fi, err := fsys.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("repair: %s: %w (not a directory)", dir, errs.ErrNotDatabase)
	}
	lock, err := fsys.Lock(layout.Path(dir, layout.TypeLock, 0))
	if err != nil {
		return nil, fmt.Errorf("repair: %s is open (its LOCK is held); close it first: %w", dir, err)
	}
	defer lock.Close()

	before, err := verify.Dir(ctx, fsys, dir, verify.Options{ColdDir: opts.ColdDir})
	if err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	r := &repairer{ctx: ctx, fs: fsys, dir: dir, coldDir: opts.ColdDir, before: before,
		res: &Result{Dir: dir, Before: before, Replica: before.Replica, Actions: []Action{}, NotDone: notDone}}
	if err := r.run(); err != nil {
		return nil, err
	}
	if len(r.res.Lost) > 0 {
		r.res.Recover = recoverHint
	}
	return r.res, nil
}

// repairer holds the state of one repair.
type repairer struct {
	ctx          context.Context
	fs           vfs.FS
	dir, coldDir string
	before       *verify.Report
	res          *Result

	// handled are the files whose findings the repair acts on.
	handled map[string]bool
}

// run repairs the manifest and tables, then the REPLICA, and lists the
// damage it left.
func (r *repairer) run() error {
	r.handled = map[string]bool{}
	if err := r.repairTables(); err != nil {
		return err
	}
	if err := r.repairReplica(); err != nil {
		return err
	}
	r.listLogLosses()
	for _, f := range r.before.Findings {
		if f.Kind.Damage() && !r.handled[f.File] {
			r.res.Unrepaired = append(r.res.Unrepaired, f)
		}
	}
	return nil
}

// quarantine moves path into quarantine/ of its directory, under a name
// no file there has (a suffix .1, .2, ... keeps both), and makes the
// move durable.
func (r *repairer) quarantine(path, why string) (string, error) {
	qdir := filepath.Join(filepath.Dir(path), wal.QuarantineDir)
	dst, err := vfs.MoveAside(r.fs, path, qdir)
	if err != nil {
		if dst != "" {
			return "", fmt.Errorf("repair: moved %s to %s, but the move may not be durable: %w", path, dst, err)
		}
		return "", fmt.Errorf("repair: moving %s to quarantine: %w", path, err)
	}
	r.res.Actions = append(r.res.Actions, Action{Kind: Quarantined, File: path, To: dst, Why: why})
	return dst, nil
}

// wrote records a file written.
func (r *repairer) wrote(path, why string) {
	r.res.Actions = append(r.res.Actions, Action{Kind: Wrote, File: path, Why: why})
}

// listLogLosses reports the sequence ranges of damaged log records and
// archives, which repair leaves as they are.
func (r *repairer) listLogLosses() {
	for _, f := range r.before.Findings {
		if !f.Kind.Damage() || len(f.Seqs) == 0 || r.handled[f.File] {
			continue
		}
		t, _, ok := layout.Parse(filepath.Base(f.File))
		if !ok || (t != layout.TypeLog && t != layout.TypeArchive) {
			continue
		}
		r.res.Lost = append(r.res.Lost, Loss{File: f.File, Keys: f.Keys, Seqs: slices.Clone(f.Seqs),
			Why: fmt.Sprintf("%s in the op log (%s); repair does not rewrite the log: the next open refuses until the operations come back or Options.Salvage drops them", f.Kind, f.Message)})
	}
}

// tableSeqs is the sequence range of a whole table.
func tableSeqs(m *lsm.FileMeta) []verify.SeqRange {
	return []verify.SeqRange{{From: uint64(m.SmallestSeq), To: uint64(m.LargestSeq)}}
}

// tableKeys is the user-key range of a whole table.
func tableKeys(m *lsm.FileMeta) *verify.KeyRange {
	return &verify.KeyRange{Smallest: slices.Clone(lsm.UserKey(m.Smallest)), Largest: slices.Clone(lsm.UserKey(m.Largest))}
}

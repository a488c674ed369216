// Command plures-backup makes, lists, verifies and restores backups of a
// PluresDB database (see package backup).
//
//	plures-backup create --db DIR [--since PREV] DEST   full, or incremental on PREV
//	plures-backup list DIR                              the backups in DIR
//	plures-backup verify DIR                            every checksum of a backup and its chain
//	plures-backup restore [--same-replica [--peer PEER]...] BACKUP DIR
//	                                                    a new replica (or the same one, rejoining) in DIR
//	plures-backup restore --at TIME BACKUP DIR          the state at TIME, as a new replica
//	plures-backup follow --db DIR BASE DEST             ship each sealed log segment into DEST
//	plures-backup rejoin-finish DIR                     end the rejoining of a replica restored in place
//
// Every command takes --json. Exit codes: 0 done (verify: no damage), 1
// damage found or the operation refused, 2 a usage or I/O error.
//
// create opens the database itself, read-only, and a database directory
// is locked while a process has it open: the tool cannot back up a
// database that another process holds open. A running application backs
// itself up in process with backup.Create.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/backup"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/tools/internal/human"
)

const usageText = `usage:
  plures-backup create --db DIR [--since PREV] [--json] DEST
        back up the database in DIR into the new directory DEST: a full
        backup, or with --since an incremental one holding only what the
        backup PREV (and the backups it builds on) lacks
  plures-backup list [--json] DIR
        list the backups in DIR (and DIR itself if it is one)
  plures-backup verify [--json] DIR
        read every file of the backup in DIR and of the backups it builds
        on, and check every checksum; reports every problem found
  plures-backup restore [--same-replica [--peer PEER]... | --at TIME] [--json] BACKUP DIR
        rebuild the database backed up in BACKUP into the new directory DIR;
        with --at (RFC 3339, e.g. 2026-12-02T15:04:05.123Z) the state it
        had at that time
  plures-backup follow --db DIR [--once] [--interval 1s] [--json] BASE DEST
        keep DEST, an incremental backup on the backup BASE of the database
        in DIR, holding every log segment the database seals after BASE,
        each shipped as it seals (so DEST is at most the live segment
        behind); runs until interrupted, or with --once ships what is
        sealed and exits; resumes a DEST it made before
  plures-backup rejoin-finish [--json] DIR
        end the rejoining of the database in DIR, restored with
        --same-replica, once its operations are back from every peer

create opens the database itself, read-only. A database directory is locked while a
process has it open, so the tool cannot back up a database that another
process holds open: a running application backs itself up in process with
the Go API (package backup, backup.Create), which needs no lock.

restore makes a new replica by default: a new replica ID, the backed-up
documents and counters (carried as a state snapshot), and the source's
operations claimed up to the backup, but none of its op history; it may
run beside the original and sync with it. Vector indexes are not carried:
the application rebuilds them. --same-replica restores the backed-up
replica itself, replica ID and history included, to replace a lost or
damaged original: such a copy must never run beside the original (both
would write as one replica). It has lost whatever the original wrote
after the backup, and its peers may hold those operations: it is left
rejoining. It opens, reads and imports, but refuses local writes
(ErrRejoining) until its operations are back from every peer that may
hold them and the rejoin is finished; writing earlier would reuse
sequence numbers its peers hold for other operations, and the replicas
would diverge silently.

With --peer PEER (repeatable; each a closed peer database, opened
read-only), restore imports from each peer what it holds that the
restored database lacks (its own later operations and the others'),
reports how many came back from each, and then finishes the rejoin: give
every peer that may hold operations of this replica. Without --peer the
database stays rejoining: import from the peers in the application
(ImportChanges of each peer's ExportChanges since VersionVector()), then
run "plures-backup rejoin-finish DIR" (or call DB.FinishRejoin).
Finishing before every such peer was imported from risks exactly what the
state prevents.

restore --at rebuilds the state as of a time, as a new replica: every
operation the database held with a timestamp at or before it (whole log
records), from the newest backup of BACKUP's chain that precedes the time
and the log BACKUP carries (a follower's included) after that. A time after
BACKUP, or one older than the history it retains, is refused and says so.

follow reads only sealed log segments, which the database never changes,
and takes no lock: it runs beside the open database, in another process.
A segment that leaves the database before it is shipped (retention
archives sealed segments after about an hour) stops it with an error;
take a new backup and follow that.

Exit codes: 0 done (verify: no damage), 1 damage found or operation
refused (a non-empty target, a locked database), 2 usage or I/O error.
`

// Exit codes.
const (
	exitOK      = 0
	exitDamage  = 1 // damage found, or the operation refused
	exitFailure = 2 // usage or I/O error
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is a mistake on the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// run executes the command line args and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitFailure
	}
	var cmd func([]string, *env) error
	switch args[0] {
	case "create":
		cmd = create
	case "list":
		cmd = list
	case "verify":
		cmd = verify
	case "restore":
		cmd = restore
	case "follow":
		cmd = follow
	case "rejoin-finish":
		cmd = rejoinFinish
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(stderr, "plures-backup: unknown command %q\n%s", args[0], usageText)
		return exitFailure
	}
	e := &env{stdout: stdout, stderr: stderr}
	err := cmd(args[1:], e)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "plures-backup %s: %v\n\n%s", args[0], err, usageText)
	} else if !errors.Is(err, errReported) {
		fmt.Fprintf(stderr, "plures-backup %s: %v\n", args[0], err)
	}
	if e.json && !errors.Is(err, errReported) {
		e.emit(map[string]any{"error": err.Error(), "exit": code})
	}
	return code
}

// errReported: the command printed its own report of the failure.
var errReported = errors.New("reported")

// exitCode maps an error to the exit code.
func exitCode(err error) int {
	var ue usageError
	switch {
	case errors.As(err, &ue):
		return exitFailure
	case errors.Is(err, pluresdb.ErrCorruption), errors.Is(err, backup.ErrRefused), errors.Is(err, backup.ErrNotBackup),
		errors.Is(err, pluresdb.ErrLocked), errors.Is(err, pluresdb.ErrNewerFormat), errors.Is(err, errDamage),
		errors.Is(err, backup.ErrFollowGap), errors.Is(err, pluresdb.ErrHistoryUnavailable),
		errors.Is(err, pluresdb.ErrRewound), errors.Is(err, pluresdb.ErrCausalGap), errors.Is(err, pluresdb.ErrRejoining):
		return exitDamage
	}
	return exitFailure
}

// errDamage: verify found damage (reported already).
var errDamage = errors.New("damage found")

// env is what a command writes to.
type env struct {
	stdout, stderr io.Writer
	json           bool
}

func (e *env) emit(v any) {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// progress returns a progress callback drawing a bar on stderr when it
// is a terminal (nil otherwise), and a function that ends the bar.
func (e *env) progress(what string) (func(done, total int64), func()) {
	f, ok := e.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, func() {}
	}
	var bar *progressbar.ProgressBar
	return func(done, total int64) {
			if bar == nil {
				bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(f), progressbar.OptionShowBytes(true),
					progressbar.OptionSetDescription(what), progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionClearOnFinish())
			}
			bar.Set64(done)
		}, func() {
			if bar != nil {
				bar.Finish()
			}
		}
}

// parse parses flags and positional arguments in any order, and checks
// the number of positional ones.
func parse(fs *flag.FlagSet, args []string, positional ...string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) != len(positional) {
		return nil, usageError{fmt.Sprintf("want %d arguments (%v), got %d", len(positional), positional, len(pos))}
	}
	return pos, nil
}

// manifestJSON is a backup as --json prints it.
type manifestJSON struct {
	ID            string            `json:"id"`
	Dir           string            `json:"dir,omitempty"`
	Full          bool              `json:"full"`
	Parent        string            `json:"parent,omitempty"`
	ParentPath    string            `json:"parent_path,omitempty"`
	Replica       string            `json:"replica"`
	Time          time.Time         `json:"time"`
	LastSeq       uint64            `json:"last_seq"`
	VersionVector map[string]uint64 `json:"version_vector"`
	Files         int               `json:"files"`
	Bytes         int64             `json:"bytes"`
	StoredBytes   int64             `json:"stored_bytes"`
	Follow        bool              `json:"follow,omitempty"`
	Shipped       string            `json:"shipped,omitempty"`
	Error         string            `json:"error,omitempty"`
}

func toJSON(dir string, m *backup.Manifest) manifestJSON {
	j := manifestJSON{ID: m.ID.String(), Dir: dir, Full: m.Full(), ParentPath: m.ParentPath, Replica: m.Replica.String(),
		Time: m.Time.UTC(), LastSeq: m.LastSeq, VersionVector: map[string]uint64{}, Files: len(m.Files), StoredBytes: m.StoredBytes()}
	if !m.Full() {
		j.Parent = m.Parent.String()
	}
	if m.Follow {
		j.Follow = true
		if m.Shipped != 0 {
			j.Shipped = fmt.Sprintf("%06d.log", uint64(m.Shipped))
		}
	}
	for r, s := range m.VersionVector {
		j.VersionVector[r.String()] = s
	}
	for _, f := range m.Files {
		j.Bytes += f.Size
	}
	return j
}

func describe(w io.Writer, j manifestJSON) {
	kind := "full"
	if !j.Full {
		kind = "incremental on " + j.Parent
	}
	if j.Follow {
		kind = "follower of " + j.Parent
		if j.Shipped != "" {
			kind += ", shipped through " + j.Shipped
		}
	}
	fmt.Fprintf(w, "%s  %s  %s\n  replica %s, last seq %d, %d files, %s (%s stored here)\n",
		j.Dir, j.Time.Format(time.RFC3339), kind, j.Replica, j.LastSeq, j.Files, bytesOf(j.Bytes), bytesOf(j.StoredBytes))
	fmt.Fprintf(w, "  id %s\n", j.ID)
}

// mustExist returns an I/O error for a path that does not exist.
func mustExist(path string) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	return nil
}

func create(args []string, e *env) error {
	fs := flag.NewFlagSet("create", flag.ContinueOnError)
	dbDir := fs.String("db", "", "the database directory (required)")
	since := fs.String("since", "", "make an incremental backup on this backup")
	fs.BoolVar(&e.json, "json", false, "print the result as JSON")
	pos, err := parse(fs, args, "DEST")
	if err != nil {
		return err
	}
	if *dbDir == "" {
		return usageError{"--db DIR is required"}
	}
	if err := mustExist(filepath.Join(*dbDir, "CURRENT")); err != nil {
		return fmt.Errorf("%s is not a database: %w", *dbDir, err)
	}
	// Read-only: the engine writes nothing to the database it backs up
	// (the backup stages its checkpoint beside the files, then removes it).
	db, err := pluresdb.Open(*dbDir, &pluresdb.Options{ReadOnly: true})
	if err != nil {
		if errors.Is(err, pluresdb.ErrLocked) {
			return fmt.Errorf("%w: another process has the database open; back it up from that process with backup.Create", err)
		}
		return err
	}
	prog, done := e.progress("backing up")
	m, err := backup.Create(db, pos[0], &backup.Options{Since: *since, Progress: prog})
	done()
	if cerr := db.Close(); err == nil && cerr != nil {
		return fmt.Errorf("closing the database: %w", cerr)
	}
	if err != nil {
		return err
	}
	j := toJSON(pos[0], m)
	if e.json {
		e.emit(j)
	} else {
		describe(e.stdout, j)
	}
	return nil
}

func list(args []string, e *env) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	fs.BoolVar(&e.json, "json", false, "print the result as JSON")
	pos, err := parse(fs, args, "DIR")
	if err != nil {
		return err
	}
	if err := mustExist(pos[0]); err != nil {
		return err
	}
	found, err := backup.List(pos[0], nil)
	if err != nil {
		return err
	}
	out := []manifestJSON{}
	damaged := false
	for _, l := range found {
		if l.Err != nil {
			damaged = true
			out = append(out, manifestJSON{Dir: l.Dir, Error: l.Err.Error()})
			continue
		}
		out = append(out, toJSON(l.Dir, l.Manifest))
	}
	if e.json {
		e.emit(out)
	} else {
		if len(out) == 0 {
			fmt.Fprintf(e.stdout, "no backups in %s\n", pos[0])
		}
		for _, j := range out {
			if j.Error != "" {
				fmt.Fprintf(e.stdout, "%s  DAMAGED: %s\n", j.Dir, j.Error)
				continue
			}
			describe(e.stdout, j)
		}
	}
	if damaged {
		return fmt.Errorf("%w: a backup manifest could not be read: %w", errReported, errDamage)
	}
	return nil
}

func verify(args []string, e *env) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.BoolVar(&e.json, "json", false, "print the result as JSON")
	pos, err := parse(fs, args, "DIR")
	if err != nil {
		return err
	}
	if err := mustExist(pos[0]); err != nil {
		return err
	}
	prog, done := e.progress("verifying")
	rep, err := backup.Verify(pos[0], &backup.Options{Progress: prog})
	done()
	if rep == nil {
		return err
	}
	problems := []string{}
	for _, p := range rep.Problems {
		problems = append(problems, p.Error())
	}
	sort.Strings(problems)
	if e.json {
		var chain []manifestJSON
		for _, b := range rep.Chain {
			chain = append(chain, toJSON(b.Dir, b.Manifest))
		}
		e.emit(map[string]any{"ok": len(problems) == 0, "chain": chain, "files": rep.Files, "bytes": rep.Bytes, "problems": problems})
	} else {
		for _, b := range rep.Chain {
			describe(e.stdout, toJSON(b.Dir, b.Manifest))
		}
		for _, p := range problems {
			fmt.Fprintf(e.stdout, "DAMAGE: %s\n", p)
		}
		if len(problems) == 0 {
			fmt.Fprintf(e.stdout, "ok: %d files, %s, every checksum matches\n", rep.Files, bytesOf(rep.Bytes))
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %d problems: %w", errReported, len(problems), err)
	}
	return nil
}

// dirList is a repeatable flag.
type dirList []string

func (d *dirList) String() string { return fmt.Sprint(*d) }

func (d *dirList) Set(v string) error {
	*d = append(*d, v)
	return nil
}

func restore(args []string, e *env) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	same := fs.Bool("same-replica", false, "restore the backed-up replica itself (its ID and history), to replace it; see the help")
	at := fs.String("at", "", "restore the state at this time (RFC 3339), as a new replica")
	var peers dirList
	fs.Var(&peers, "peer", "with --same-replica: a closed peer database to take the replica's operations back from (repeatable)")
	fs.BoolVar(&e.json, "json", false, "print the result as JSON")
	pos, err := parse(fs, args, "BACKUP", "DIR")
	if err != nil {
		return err
	}
	if len(peers) > 0 && !*same {
		return usageError{"--peer needs --same-replica (a new replica has no operations of its own to take back)"}
	}
	if err := mustExist(pos[0]); err != nil {
		return err
	}
	for _, p := range peers {
		if err := mustExist(filepath.Join(p, "CURRENT")); err != nil {
			return fmt.Errorf("peer %s is not a database: %w", p, err)
		}
	}
	opts := &backup.Options{SameReplica: *same}
	if *at != "" {
		t, err := time.Parse(time.RFC3339Nano, *at)
		if err != nil {
			return usageError{fmt.Sprintf("--at: %v (want RFC 3339, e.g. 2026-12-02T15:04:05Z)", err)}
		}
		if *same {
			return usageError{"--at restores a new replica; it does not go with --same-replica"}
		}
		opts.At = t
	}
	prog, done := e.progress("restoring")
	opts.Progress = prog
	m, err := backup.Restore(pos[0], pos[1], opts)
	done()
	if err != nil {
		return err
	}
	j := toJSON(pos[0], m)
	replica := j.Replica
	if !*same {
		db, err := pluresdb.Open(pos[1], &pluresdb.Options{ReadOnly: true})
		if err != nil {
			return err
		}
		replica = db.ReplicaID().String()
		db.Close()
	}
	var back []peerJSON
	rejoining := *same
	var rerr error
	if *same && len(peers) > 0 {
		back, rerr = rejoinFrom(pos[1], peers)
		rejoining = rerr != nil
	}
	if e.json {
		out := map[string]any{"restored": pos[1], "backup": j, "replica": replica, "same_replica": *same, "rejoining": rejoining}
		if !opts.At.IsZero() {
			out["at"] = opts.At.UTC()
		}
		if *same {
			out["peers"] = append([]peerJSON{}, back...)
		}
		if rerr != nil {
			out["error"] = rerr.Error()
			out["exit"] = exitCode(rerr)
		}
		e.emit(out)
	} else {
		how := "as the new replica " + replica
		if *same {
			how = "as the same replica " + replica
		}
		if !opts.At.IsZero() {
			how += ", as of " + opts.At.UTC().Format(time.RFC3339Nano)
		}
		fmt.Fprintf(e.stdout, "restored %s (replica %s, last seq %d, %d files, %s) into %s, %s\n",
			pos[0], j.Replica, j.LastSeq, j.Files, bytesOf(j.Bytes), pos[1], how)
		for _, p := range back {
			fmt.Fprintf(e.stdout, "  from peer %s: %d of its own operations back (now up to seq %d), %d of other replicas\n",
				p.Dir, p.Own, p.OwnTo, p.Others)
		}
		switch {
		case rerr != nil:
			fmt.Fprintf(e.stdout, "the database is still rejoining (local writes fail with ErrRejoining): fix the error below, import from the remaining peers, then run: plures-backup rejoin-finish %s\n", pos[1])
		case rejoining:
			fmt.Fprintf(e.stdout, "the database is rejoining: local writes fail with ErrRejoining until it has its later operations back.\n"+
				"Import from every peer that may hold operations of this replica (in the application: ImportChanges of each peer's\n"+
				"ExportChanges since VersionVector(); or restore again with --peer), then run: plures-backup rejoin-finish %s\n", pos[1])
		case *same:
			fmt.Fprintf(e.stdout, "rejoin finished: the database takes writes\n")
		}
	}
	if rerr != nil {
		if e.json {
			return fmt.Errorf("%w: %w", errReported, rerr)
		}
		return rerr
	}
	return nil
}

// peerJSON is what came back from one peer.
type peerJSON struct {
	Dir string `json:"dir"`
	// Own and Others count the operations imported: the restored
	// replica's own, and other replicas'. OwnTo is the replica's own
	// last sequence number after the import.
	Own    int    `json:"own_ops"`
	Others int    `json:"other_ops"`
	OwnTo  uint64 `json:"own_to"`
}

// rejoinFrom opens the restored database in dir, imports from each peer
// (opened read-only) what it lacks, and finishes the rejoin. On an error
// the database stays rejoining; what came back so far is returned.
func rejoinFrom(dir string, peers []string) (back []peerJSON, err error) {
	db, err := pluresdb.Open(dir, nil)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	self := db.ReplicaID()
	for _, p := range peers {
		got, err := importFrom(db, p)
		if err != nil {
			return back, fmt.Errorf("peer %s: %w", p, err)
		}
		got.OwnTo = db.VersionVector()[self]
		back = append(back, got)
	}
	return back, db.FinishRejoin()
}

// importFrom imports into db what the peer database in dir holds that db
// lacks, counting db's own operations apart.
func importFrom(db *pluresdb.DB, dir string) (peerJSON, error) {
	res := peerJSON{Dir: dir}
	peer, err := pluresdb.Open(dir, &pluresdb.Options{ReadOnly: true})
	if err != nil {
		if errors.Is(err, pluresdb.ErrLocked) {
			return res, fmt.Errorf("%w: another process has the peer open; close it, or import from it in that process", err)
		}
		return res, err
	}
	defer peer.Close()
	if peer.ReplicaID() == db.ReplicaID() {
		return res, fmt.Errorf("%w: %s is the same replica (%s), not a peer", backup.ErrRefused, dir, db.ReplicaID())
	}
	var buf bytes.Buffer
	if _, err := peer.ExportChanges(&buf, db.VersionVector()); err != nil {
		return res, err
	}
	// The stream holds only what db lacks: count it by replica.
	vs, err := oplog.VerifyStream(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return res, err
	}
	var ops []oplog.Op
	var chunk []byte
	for i := range vs.NumChunks() {
		if ops, _, chunk, err = vs.ChunkIn(i, ops[:0], nil, chunk); err != nil {
			return res, err
		}
		for k := range ops {
			if ops[k].Replica == db.ReplicaID() {
				res.Own++
			} else {
				res.Others++
			}
		}
	}
	if _, err := db.ImportChanges(bytes.NewReader(buf.Bytes())); err != nil {
		return res, err
	}
	return res, nil
}

func rejoinFinish(args []string, e *env) error {
	fs := flag.NewFlagSet("rejoin-finish", flag.ContinueOnError)
	fs.BoolVar(&e.json, "json", false, "print the result as JSON")
	pos, err := parse(fs, args, "DIR")
	if err != nil {
		return err
	}
	if err := mustExist(filepath.Join(pos[0], "CURRENT")); err != nil {
		return fmt.Errorf("%s is not a database: %w", pos[0], err)
	}
	db, err := pluresdb.Open(pos[0], nil)
	if err != nil {
		return err
	}
	was := db.Rejoining()
	err = db.FinishRejoin()
	if cerr := db.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if e.json {
		e.emit(map[string]any{"dir": pos[0], "was_rejoining": was, "rejoining": false})
	} else if was {
		fmt.Fprintf(e.stdout, "rejoin finished: %s takes writes\n", pos[0])
	} else {
		fmt.Fprintf(e.stdout, "%s was not rejoining: nothing to do\n", pos[0])
	}
	return nil
}

func follow(args []string, e *env) error {
	fs := flag.NewFlagSet("follow", flag.ContinueOnError)
	dbDir := fs.String("db", "", "the database directory (required; read, never locked)")
	once := fs.Bool("once", false, "ship the segments sealed now and exit")
	interval := fs.Duration("interval", time.Second, "how often to look for sealed segments")
	fs.BoolVar(&e.json, "json", false, "print each shipment as a JSON line")
	pos, err := parse(fs, args, "BASE", "DEST")
	if err != nil {
		return err
	}
	if *dbDir == "" {
		return usageError{"--db DIR is required"}
	}
	if err := mustExist(pos[0]); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	shipped := func(s backup.Shipment) {
		if e.json {
			enc := json.NewEncoder(e.stdout)
			enc.Encode(map[string]any{"segment": s.Segment, "bytes": s.Bytes, "last_seq": s.LastSeq, "time": s.Time.UTC()})
			return
		}
		fmt.Fprintf(e.stdout, "shipped %s (%s), through seq %d, state as of %s\n",
			s.Segment, bytesOf(s.Bytes), s.LastSeq, s.Time.UTC().Format(time.RFC3339Nano))
	}
	m, err := backup.Follow(ctx, *dbDir, pos[0], pos[1], &backup.FollowOptions{Interval: *interval, Once: *once, Shipped: shipped})
	if err != nil {
		return err
	}
	if !e.json {
		describe(e.stdout, toJSON(pos[1], m))
	}
	return nil
}

// bytesOf formats a byte count for the report.
func bytesOf(n int64) string { return human.Bytes(uint64(max(n, 0))) }

// Command plures-fsck checks a PluresDB database directory: every
// checksum of every file and the invariants between them (see "Checking
// a database" in ARCHITECTURE.md). Without --repair it only reads: it
// opens no database, takes no lock and writes nothing. Run it on a closed
// database; a running one checks itself with DB.Verify.
//
// With --repair it takes the database's LOCK (and refuses, exit 2, if the
// database is open), repairs what it can (see "Repair" in
// ARCHITECTURE.md: damaged files to quarantine/, never deleted; a broken
// MANIFEST rebuilt from the tables; a missing REPLICA restored from the
// archives), then refills the key ranges of the tables it dropped (package
// refill: the keys the retained op history rebuilds, then, with
// --from-peer and --from-backup, each source's state of them and a sync
// with it), checks again, and reports what it did, what came back and
// what is lost.
//
//	plures-fsck [--repair [--from-peer DIR]... [--from-backup DIR]...] [--json] [--quiet] [--cold-dir DIR] DIR
//
// --from-peer (a closed database directory of a peer, opened read-only)
// and --from-backup (a backup directory, restored into a temporary
// directory beside DIR and removed after) may each be given several
// times; sources are used in the order given.
//
// Exit status: 0 clean (warnings allowed; after --repair: clean, nothing
// refused, and nothing lost, or every lost key range refilled whole and
// every source synced), 1 damage found (after --repair: damage left,
// data lost and not all of it refilled, a source that could not be used
// or synced, or a repair refused), 2 the check or repair could not run
// (bad arguments, no database, the database is open, an I/O error that
// stopped it, a temporary directory that could not be removed).
package main

import (
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
	"strings"
	"time"

	"github.com/plures/pluresdb/refill"
	"github.com/plures/pluresdb/repair"
	"github.com/plures/pluresdb/tools/internal/human"
	"github.com/plures/pluresdb/verify"
)

// Exit codes.
const (
	exitClean   = 0
	exitDamage  = 1
	exitNotRun  = 2
	programName = "plures-fsck"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := runContext(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the command with its arguments (without the program name); it
// returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet(programName, flag.ContinueOnError)
	flags.SetOutput(stderr)
	asJSON := flags.Bool("json", false, "print the report as JSON")
	quiet := flags.Bool("quiet", false, "print only damage, no summary and no progress")
	doRepair := flags.Bool("repair", false, "repair the closed database: quarantine damaged files, rebuild a broken MANIFEST, restore REPLICA; then check again")
	coldDir := flags.String("cold-dir", "", "the directory of the cold tier's tables, if the database keeps them apart (Options.ColdDir)")
	var sources []refill.SourceSpec
	flags.Var(sourceFlag{&sources, refill.Peer}, "from-peer",
		"with --repair: refill lost key ranges from this peer's closed database directory (opened read-only), then sync with it; repeatable")
	flags.Var(sourceFlag{&sources, refill.Backup}, "from-backup",
		"with --repair: refill lost key ranges from this backup (restored into a temporary directory beside DIR), then sync with it; repeatable")
	flags.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [--repair [--from-peer DIR]... [--from-backup DIR]...] [--json] [--quiet] [--cold-dir DIR] DIR\n\n", programName)
		fmt.Fprintf(stderr, "Checks every file of a PluresDB database without writing anything;\n")
		fmt.Fprintf(stderr, "with --repair, repairs a closed one (nothing deleted: damaged files go to quarantine/),\n")
		fmt.Fprintf(stderr, "rebuilds the lost key ranges the retained op history holds, and joins the rest from\n")
		fmt.Fprintf(stderr, "each --from-peer and --from-backup source, then syncs with it.\n")
		fmt.Fprintf(stderr, "Exit status: 0 clean (after --repair: nothing lost, or everything refilled), 1 damage found\n")
		fmt.Fprintf(stderr, "or data lost, 2 could not run.\n\n")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitClean
		}
		return exitNotRun
	}
	if flags.NArg() != 1 {
		flags.Usage()
		return exitNotRun
	}
	dir := flags.Arg(0)
	if len(sources) > 0 && !*doRepair {
		fmt.Fprintf(stderr, "%s: --from-peer and --from-backup need --repair\n", programName)
		return exitNotRun
	}

	var res *repair.Result
	var fill *refill.Result
	if *doRepair {
		var err error
		res, err = repair.Dir(ctx, nil, dir, repair.Options{ColdDir: *coldDir})
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", programName, err)
			return exitNotRun
		}
		if len(refill.Ranges(res.Lost)) > 0 || len(sources) > 0 {
			fill, err = refill.Dir(ctx, dir, res.Lost, refill.Options{ColdDir: *coldDir, Sources: sources})
			if err != nil {
				if fill != nil {
					printRefill(stderr, res, fill)
				}
				fmt.Fprintf(stderr, "%s: %v\n", programName, err)
				return exitNotRun
			}
		}
	}

	opts := verify.Options{ColdDir: *coldDir}
	var bar *progressBar
	if !*quiet && human.IsTerminal(stderr) {
		bar = &progressBar{w: stderr, start: time.Now()}
		opts.Progress = bar.update
	}
	rep, err := verify.Dir(ctx, nil, dir, opts)
	if bar != nil {
		bar.clear()
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", programName, err)
		return exitNotRun
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		var v any = rep
		if res != nil {
			v = struct {
				Repair *repair.Result `json:"repair"`
				Refill *refill.Result `json:"refill,omitempty"`
				Check  *verify.Report `json:"check"`
			}{res, fill, rep}
		}
		if err := enc.Encode(v); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", programName, err)
			return exitNotRun
		}
	} else {
		if res != nil {
			printRepair(stdout, res)
			if fill != nil {
				printRefill(stdout, res, fill)
			}
			if !*quiet {
				fmt.Fprintf(stdout, "\nafter the repair:\n")
			}
		}
		printReport(stdout, rep, *quiet)
	}
	if !rep.Clean || res != nil && (len(res.Refused) > 0 || lostLeft(res, fill)) {
		return exitDamage
	}
	return exitClean
}

// lostLeft says whether a repair leaves something lost: a loss the
// refill cannot bring back (a damaged log record's operations), a lost
// key range not refilled whole, or a source not used or synced.
func lostLeft(res *repair.Result, fill *refill.Result) bool {
	if len(res.Lost) > len(refill.Ranges(res.Lost)) {
		return true
	}
	if fill == nil {
		return len(res.Lost) > 0
	}
	return !fill.Complete
}

// sourceFlag collects --from-peer and --from-backup, in order.
type sourceFlag struct {
	list *[]refill.SourceSpec
	kind refill.SourceKind
}

func (f sourceFlag) String() string { return "" }

func (f sourceFlag) Set(v string) error {
	if v == "" {
		return errors.New("an empty directory")
	}
	*f.list = append(*f.list, refill.SourceSpec{Kind: f.kind, Path: v})
	return nil
}

// printRefill writes what came back of the lost key ranges.
func printRefill(w io.Writer, res *repair.Result, fill *refill.Result) {
	rel := &verify.Report{Dir: res.Dir}
	if fill.NotRun != "" {
		fmt.Fprintf(w, "REFILL NOT RUN: %s\n", fill.NotRun)
	}
	for _, s := range fill.Sources {
		fmt.Fprintf(w, "source   %s %s", s.Kind, s.Path)
		if s.Replica != "" {
			fmt.Fprintf(w, " (replica %s)", s.Replica)
		}
		fmt.Fprintln(w)
		switch {
		case s.Error != "":
			fmt.Fprintf(w, "  NOT USED: %s\n", s.Error)
		case s.Sync != "":
			fmt.Fprintf(w, "  synced %d operations, then %s\n", s.Imported, s.Sync)
		default:
			fmt.Fprintf(w, "  synced: %d operations imported\n", s.Imported)
		}
	}
	for _, rg := range fill.Ranges {
		state := "refilled whole"
		if !rg.Complete {
			state = "STILL LOST in part"
		}
		fmt.Fprintf(w, "refill   %s: %s: %d keys from the op history, %d from sources (which held %d keys of it)\n",
			relative(rel, rg.File), state, rg.FromHistory, rg.FromSource, rg.SourceKeys)
		fmt.Fprintf(w, "    keys %s .. %s\n", bound(rg.Keys.Smallest), bound(rg.Keys.Largest))
		for _, r := range rg.Remaining {
			fmt.Fprintf(w, "    remaining: %s\n", r)
		}
		for i, k := range rg.Unrebuilt {
			if i == 10 {
				fmt.Fprintf(w, "    ... and %d more lost keys\n", len(rg.Unrebuilt)-i)
				break
			}
			fmt.Fprintf(w, "    lost key %q\n", k)
		}
	}
}

// printReport writes the human report: a summary, then the findings
// grouped by file.
func printReport(w io.Writer, rep *verify.Report, quiet bool) {
	if !quiet {
		fmt.Fprintf(w, "database %s\n", rep.Dir)
		if rep.Replica != "" {
			fmt.Fprintf(w, "replica  %s\n", rep.Replica)
		}
		if rep.Rejoining {
			fmt.Fprintf(w, "rejoining: restored in place; no local writes until its operations are imported from its peers and the rejoin is finished (plures-backup rejoin-finish)\n")
		}
		if rep.Manifest != "" {
			fmt.Fprintf(w, "manifest %s\n", relative(rep, rep.Manifest))
		}
		var types []string
		for t, n := range rep.FilesByType {
			types = append(types, fmt.Sprintf("%d %s", n, t))
		}
		sort.Strings(types)
		mbps := 0.0
		if s := rep.Duration.Seconds(); s > 0 {
			mbps = float64(rep.Bytes) / 1e6 / s
		}
		fmt.Fprintf(w, "checked  %d files (%s), %s in %v (%.0f MB/s)\n", rep.Files, strings.Join(types, ", "),
			bytesOf(rep.Bytes), rep.Duration.Round(time.Millisecond), mbps)
		var kinds []string
		for k, n := range rep.Counts {
			kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
		}
		sort.Strings(kinds)
		switch {
		case rep.Clean && len(rep.Findings) == 0:
			fmt.Fprintf(w, "result   clean\n")
		case rep.Clean:
			fmt.Fprintf(w, "result   clean (%s)\n", strings.Join(kinds, ", "))
		default:
			fmt.Fprintf(w, "result   DAMAGED: %d problems (%s)\n", rep.Damage, strings.Join(kinds, ", "))
		}
	}
	var file string
	for _, f := range rep.Findings {
		if quiet && !f.Kind.Damage() {
			continue
		}
		if f.File != file {
			if !quiet || file != "" {
				fmt.Fprintln(w)
			}
			file = f.File
			fmt.Fprintf(w, "%s\n", relative(rep, file))
		}
		where := ""
		if f.Offset >= 0 {
			where = fmt.Sprintf(" at offset %d", f.Offset)
		}
		fmt.Fprintf(w, "  %s%s: %s\n", f.Kind, where, f.Message)
		if f.Keys != nil {
			fmt.Fprintf(w, "    keys %s .. %s\n", bound(f.Keys.Smallest), bound(f.Keys.Largest))
		}
		for _, s := range f.Seqs {
			printSeqs(w, s)
		}
	}
}

// printRepair writes what a repair did, what it recovered, what is lost
// and what it would not do.
func printRepair(w io.Writer, res *repair.Result) {
	rel := &verify.Report{Dir: res.Dir}
	fmt.Fprintf(w, "repair   %s\n", res.Dir)
	if len(res.Actions) == 0 {
		fmt.Fprintf(w, "  nothing changed\n")
	}
	for _, a := range res.Actions {
		switch a.Kind {
		case repair.Quarantined:
			fmt.Fprintf(w, "  moved %s to %s: %s\n", relative(rel, a.File), relative(rel, a.To), a.Why)
		default:
			fmt.Fprintf(w, "  wrote %s: %s\n", relative(rel, a.File), a.Why)
		}
	}
	for _, rc := range res.Recovered {
		fmt.Fprintf(w, "recovered %s: the next open replays its entries from the log (from %s)\n", relative(rel, rc.File), rc.FromLog)
		printRanges(w, rc.Keys, rc.Seqs)
	}
	for _, l := range res.Lost {
		fmt.Fprintf(w, "LOST     %s: %s\n", relative(rel, l.File), l.Why)
		printRanges(w, l.Keys, l.Seqs)
	}
	for _, r := range res.Refused {
		fmt.Fprintf(w, "REFUSED  %s\n", r)
	}
	for _, f := range res.Unrepaired {
		fmt.Fprintf(w, "left     %s: %s: %s\n", relative(rel, f.File), f.Kind, f.Message)
	}
	if res.Recover != "" {
		fmt.Fprintf(w, "to get the lost data back: %s\n", res.Recover)
	}
	for _, n := range res.NotDone {
		fmt.Fprintf(w, "not done: %s\n", n)
	}
}

// printRanges writes a key range and sequence ranges.
func printRanges(w io.Writer, keys *verify.KeyRange, seqs []verify.SeqRange) {
	if keys != nil {
		fmt.Fprintf(w, "    keys %s .. %s\n", bound(keys.Smallest), bound(keys.Largest))
	}
	for _, s := range seqs {
		printSeqs(w, s)
	}
}

// printSeqs writes a sequence range.
func printSeqs(w io.Writer, s verify.SeqRange) {
	who := "log sequence numbers"
	if s.Replica != "" {
		who = "replica " + s.Replica + " sequence numbers"
	}
	from, to := "?", "?"
	if s.From != 0 {
		from = fmt.Sprint(s.From)
	}
	if s.To != 0 {
		to = fmt.Sprint(s.To)
	}
	fmt.Fprintf(w, "    %s %s .. %s\n", who, from, to)
}

// relative names a file by its path under the database directory.
func relative(rep *verify.Report, path string) string {
	if rel, err := filepath.Rel(rep.Dir, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}

// bound prints a key bound; nil is open.
func bound(k []byte) string {
	if k == nil {
		return "(open)"
	}
	return fmt.Sprintf("%q", k)
}

// progressBar draws one line on a terminal, redrawn at most ten times a
// second.
type progressBar struct {
	w     io.Writer
	start time.Time
	drawn time.Time
}

const barWidth = 30

func (b *progressBar) update(done, total int64) {
	now := time.Now()
	if now.Sub(b.drawn) < 100*time.Millisecond && done < total {
		return
	}
	b.drawn = now
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * barWidth)
	mbps := 0.0
	if s := now.Sub(b.start).Seconds(); s > 0 {
		mbps = float64(done) / 1e6 / s
	}
	fmt.Fprintf(b.w, "\r[%s%s] %3.0f%% %s of %s, %.0f MB/s ", strings.Repeat("#", n), strings.Repeat(" ", barWidth-n),
		frac*100, bytesOf(done), bytesOf(total), mbps)
}

// clear erases the bar's line.
func (b *progressBar) clear() {
	if !b.drawn.IsZero() {
		fmt.Fprintf(b.w, "\r%s\r", strings.Repeat(" ", barWidth+60))
	}
}

// bytesOf formats a byte count for the report.
func bytesOf(n int64) string { return human.Bytes(uint64(max(n, 0))) }

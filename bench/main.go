// Command bench runs db_bench-style workloads on PluresDB and the engines a
// user would pick instead (Pebble, Badger, goleveldb, bbolt), one engine
// after the other in one process, and prints one comparison table.
//
//	cd bench && go run . -keys 1000000 -markdown
//	cd bench && go run . -workloads fillrandom-sustained -sustained-keys 10000000
//
// The workloads and their measurements are in workloads.go, the engine
// adapters and their settings in engines.go. It is a separate module so the
// engine module never depends on the engines it is compared with.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// machine describes where the numbers were taken.
type machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	RAMBytes  int64  `json:"ram_bytes"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Date      string `json:"date"`
}

// report is what -json writes.
type report struct {
	Machine   machine           `json:"machine"`
	Keys      int               `json:"keys"`
	SyncOps   int               `json:"sync_ops"`
	CacheSize int64             `json:"cache_bytes"`
	Seed      uint64            `json:"seed"`
	Notes     map[string]string `json:"notes"`
	Results   []result          `json:"results"`

	// SustainedKeys is -sustained-keys when fillrandom-sustained ran, else 0.
	SustainedKeys int `json:"sustained_keys,omitempty"`

	// OpLog is what the op-log workloads measured, when one ran.
	OpLog opLogSection `json:"oplog,omitempty"`

	// TSCompress is what the tscompress workload measured, when it ran.
	TSCompress opLogSection `json:"tscompress,omitempty"`

	// Series is what the series workload measured, when it ran.
	Series opLogSection `json:"series,omitempty"`

	// Index is what the index workload measured, when it ran.
	Index opLogSection `json:"index,omitempty"`
}

// opLogBench is the op-log benchmark (oplog.go). That file fills it in and
// adds its workloads to knownWorkloads from its init, behind the nopluresdb
// tag like the PluresDB adapter, so the harness builds without the engine.
// Its workloads run once, on PluresDB alone, after the engines.
var opLogBench struct {
	workloads []string
	run       func(rc runConfig) (opLogSection, error)
}

// tsBench is the tscompress workload (tscompress.go), behind the
// nopluresdb tag like the op-log workloads: it runs only when named, after
// the engines, and needs no database.
var tsBench struct {
	name string
	run  func(rc runConfig) (opLogSection, error)
}

// seriesBench is the series workload (series.go): the engine's time
// series beside Prometheus's TSDB. Like tscompress it runs only when named,
// after the engines, on databases of its own.
var seriesBench struct {
	name string
	run  func(rc runConfig) (opLogSection, error)
}

// indexBench is the index workload (indexes.go): secondary indexes
// against a full scan and bbolt with a hand-made index. Like series it runs
// only when named, after the engines, on databases of its own.
var indexBench struct {
	name string
	run  func(rc runConfig) (opLogSection, error)
}

// opLogSection holds the op-log workloads' results and prints their tables.
type opLogSection interface {
	print(w io.Writer, markdown bool)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so the flags and the table can be tested.
// It returns 0 when every engine ran cleanly, 1 when one failed, 2 on bad
// flags or when nothing could run.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keys := fs.Int("keys", 1_000_000, "keys per database")
	enginesFlag := fs.String("engines", strings.Join(defaultEngineOrder, ","), "comma-separated engines to run, in order (compiled in: "+knownEngines()+")")
	workloadsFlag := fs.String("workloads", strings.Join(append(slices.Clone(allWorkloads), opLogBench.workloads...), ","), "comma-separated workloads to run (known: "+strings.Join(knownWorkloads, ",")+")")
	dirFlag := fs.String("dir", "", "directory for the databases (default: a temporary directory, removed afterwards)")
	cache := fs.Int64("cache", defaultCacheSize(), "block cache bytes for pluresdb and pebble-samecache (default: pluresdb.DefaultCacheSize())")
	syncOps := fs.Int("sync-ops", 0, "puts in fillsync (default: keys/20)")
	sustainedKeys := fs.Int("sustained-keys", defaultSustainedKeys, "puts in "+workloadSustained+" (run only when named in -workloads; on "+strings.Join(sustainedDefaultEngines, ",")+" unless -engines is given)")
	seed := fs.Uint64("seed", 1, "PRNG seed for key orders and values")
	seriesCount := fs.Int("series-count", 1000, "series in the series workload")
	seriesCalls := fs.Int("series-calls", 100, "ingest calls in the series workload (100 samples per series each)")
	seriesReps := fs.Int("series-reps", 11, "repetitions of each query in the series workload")
	seriesNoProm := fs.Bool("series-no-prom", false, "leave Prometheus out of the series workload")
	indexDocs := fs.Int("index-docs", 1_000_000, "documents in the index workload")
	indexReps := fs.Int("index-reps", 11, "runs of each query in the index workload (scans: at most 5)")
	indexProfile := fs.String("index-cpuprofile", "", "write a CPU profile of the index workload's two-index load to this file")
	markdown := fs.Bool("markdown", false, "print the table as Markdown")
	jsonFile := fs.String("json", "", "also write the results as JSON to this file")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *keys <= 0 || *cache <= 0 || *syncOps < 0 || *sustainedKeys <= 0 || *seriesCount <= 0 || *seriesCalls <= 0 || *seriesReps <= 0 || *indexDocs <= 0 || *indexReps <= 0 {
		fmt.Fprintln(stderr, "bench: -keys, -cache, -sustained-keys -series-* and -index-docs/-index-reps must be positive, -sync-ops not negative")
		return 2
	}
	if *syncOps == 0 {
		*syncOps = max(*keys/20, 1)
	}
	workloads, err := parseWorkloads(*workloadsFlag)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	runTS := tsBench.run != nil && workloads[tsBench.name]
	delete(workloads, tsBench.name)
	doSeries := seriesBench.run != nil && workloads[seriesBench.name]
	delete(workloads, seriesBench.name)
	doIndex := indexBench.run != nil && workloads[indexBench.name]
	delete(workloads, indexBench.name)
	opLogWorkloads := map[string]bool{}
	for _, w := range opLogBench.workloads {
		if workloads[w] {
			opLogWorkloads[w] = true
			delete(workloads, w)
		}
	}
	// fillrandom-sustained runs on sustainedDefaultEngines unless -engines
	// names the engines; alone, it picks the engines too.
	var sustainedEngines []string
	if !flagSet(fs, "engines") && workloads[workloadSustained] {
		sustainedEngines = sustainedDefaultEngines
		if len(workloads) == 1 {
			*enginesFlag = strings.Join(sustainedDefaultEngines, ",")
		}
	}
	engines, err := parseEngines(*enginesFlag, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	// By default the op-log workloads run only with PluresDB among the
	// engines.
	if !flagSet(fs, "workloads") && !slices.ContainsFunc(engines, func(s engineSpec) bool { return s.name == "pluresdb" }) {
		clear(opLogWorkloads)
	}

	root := *dirFlag
	if root == "" {
		root, err = os.MkdirTemp("", "pluresdb-bench-")
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 2
		}
		defer os.RemoveAll(root)
	}

	logf := func(format string, args ...any) {
		if !*quiet {
			fmt.Fprintf(stderr, format+"\n", args...)
		}
	}
	rep := report{
		Machine:   describeMachine(),
		Keys:      *keys,
		SyncOps:   *syncOps,
		CacheSize: *cache,
		Seed:      *seed,
		Notes:     map[string]string{},
	}
	if workloads[workloadSustained] {
		rep.SustainedKeys = *sustainedKeys
	}
	status := 0
	for _, spec := range engines {
		if len(workloads) == 0 {
			break // only op-log workloads asked for
		}
		rep.Notes[spec.name] = spec.notes
		rc := runConfig{
			keys:      *keys,
			syncOps:   *syncOps,
			cache:     *cache,
			seed:      *seed,
			dir:       filepath.Join(root, spec.name),
			workloads: workloads,
			logf:      logf,

			sustainedKeys:    *sustainedKeys,
			sustainedEngines: sustainedEngines,
		}
		rs, err := runEngine(spec, rc)
		rep.Results = append(rep.Results, rs...)
		if err != nil {
			fmt.Fprintf(stderr, "bench: %s: %v\n", spec.name, err)
			status = 1
		}
		if *dirFlag == "" {
			// Free the disk before the next engine; with -dir the
			// databases stay for inspection.
			os.RemoveAll(rc.dir)
		}
		// Give the next engine a clean heap.
		runtime.GC()
		debug.FreeOSMemory()
	}
	setRatios(rep.Results)
	if len(opLogWorkloads) > 0 {
		sec, err := opLogBench.run(runConfig{
			keys:      *keys,
			cache:     *cache,
			seed:      *seed,
			dir:       filepath.Join(root, "oplog"),
			workloads: opLogWorkloads,
			logf:      logf,
		})
		rep.OpLog = sec
		if err != nil {
			fmt.Fprintln(stderr, "bench: op log:", err)
			status = 1
		}
	}

	if runTS {
		sec, err := tsBench.run(runConfig{seed: *seed, logf: logf})
		rep.TSCompress = sec
		if err != nil {
			fmt.Fprintln(stderr, "bench: tscompress:", err)
			status = 1
		}
	}

	if doSeries {
		sec, err := seriesBench.run(runConfig{
			seed: *seed, logf: logf, dir: filepath.Join(root, "series"),
			seriesCount: *seriesCount, seriesCalls: *seriesCalls, seriesReps: *seriesReps, seriesNoProm: *seriesNoProm,
		})
		rep.Series = sec
		if err != nil {
			fmt.Fprintln(stderr, "bench: series:", err)
			status = 1
		}
		if *dirFlag == "" {
			os.RemoveAll(filepath.Join(root, "series"))
		}
	}

	if doIndex {
		sec, err := indexBench.run(runConfig{
			seed: *seed, logf: logf, dir: filepath.Join(root, "index"), cache: *cache,
			indexDocs: *indexDocs, indexReps: *indexReps, indexProfile: *indexProfile,
		})
		rep.Index = sec
		if err != nil {
			fmt.Fprintln(stderr, "bench: index:", err)
			status = 1
		}
		if *dirFlag == "" {
			os.RemoveAll(filepath.Join(root, "index"))
		}
	}

	switch {
	case len(workloads) == 0 && *markdown:
		fmt.Fprintf(stdout, "Machine: %s.\n", rep.Machine)
	case len(workloads) == 0:
		fmt.Fprintln(stdout, "machine:", rep.Machine)
	case *markdown:
		printMarkdown(stdout, rep, engines)
	default:
		printText(stdout, rep, engines)
	}
	if rep.OpLog != nil {
		rep.OpLog.print(stdout, *markdown)
	}
	if rep.TSCompress != nil {
		rep.TSCompress.print(stdout, *markdown)
	}
	if rep.Series != nil {
		rep.Series.print(stdout, *markdown)
	}
	if rep.Index != nil {
		rep.Index.print(stdout, *markdown)
	}
	if *jsonFile != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonFile, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
	}
	return status
}

// parseEngines resolves the -engines list. Engines in the default list that
// are not compiled in are skipped with a warning; a name that is not known
// at all is an error.
func parseEngines(list string, stderr io.Writer) ([]engineSpec, error) {
	var out []engineSpec
	seen := map[string]bool{}
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		spec, ok := engineSpecs[name]
		if !ok {
			if slices.Contains(defaultEngineOrder, name) {
				fmt.Fprintf(stderr, "bench: engine %q not compiled in (built with -tags nopluresdb?), skipped\n", name)
				continue
			}
			return nil, fmt.Errorf("unknown engine %q (compiled in: %s)", name, knownEngines())
		}
		out = append(out, spec)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no engine to run")
	}
	return out, nil
}

func parseWorkloads(list string) (map[string]bool, error) {
	out := map[string]bool{}
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(knownWorkloads, name) {
			return nil, fmt.Errorf("unknown workload %q (known: %s)", name, strings.Join(knownWorkloads, ","))
		}
		out[name] = true
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no workload to run")
	}
	return out, nil
}

// flagSet reports whether the command line set flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// setRatios fills RatioToPebble from the "pebble" rows.
func setRatios(rs []result) {
	base := map[string]float64{}
	for _, r := range rs {
		if r.Engine == "pebble" && r.Err == "" {
			base[r.Workload] = r.OpsPerSec
		}
	}
	for i := range rs {
		if b := base[rs[i].Workload]; b > 0 && rs[i].Err == "" {
			rs[i].RatioToPebble = rs[i].OpsPerSec / b
		}
	}
}

// ---- the table ----

var tableHeader = []string{"workload", "engine", "ops/s", "vs pebble", "disk MiB", "write amp", "settle s"}

// rows returns the table cells, grouped by workload in run order and by
// engine in -engines order.
func rows(rep report, engines []engineSpec) [][]string {
	var out [][]string
	for _, w := range knownWorkloads {
		for _, spec := range engines {
			for _, r := range rep.Results {
				if r.Workload != w || r.Engine != spec.name {
					continue
				}
				out = append(out, cells(r))
			}
		}
	}
	return out
}

func cells(r result) []string {
	if r.Err != "" {
		return []string{r.Workload, r.Engine, "error", "", "", "", ""}
	}
	ratio, amp, settle := "", "", ""
	if r.RatioToPebble > 0 {
		ratio = fmt.Sprintf("%.2fx", r.RatioToPebble)
	}
	if r.LogicalBytes > 0 {
		amp = "n/a"
		if r.WriteAmp > 0 {
			amp = fmt.Sprintf("%.2f", r.WriteAmp)
		}
		settle = fmt.Sprintf("%.2f", r.SettleSeconds)
	}
	return []string{
		r.Workload,
		r.Engine,
		groupThousands(int64(r.OpsPerSec + 0.5)),
		ratio,
		fmt.Sprintf("%.1f", float64(r.DiskBytes)/(1<<20)),
		amp,
		settle,
	}
}

func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (m machine) String() string {
	return fmt.Sprintf("%s, %d cores, %.1f GiB RAM, %s, %s, %s",
		m.CPU, m.Cores, float64(m.RAMBytes)/(1<<30), m.GoVersion, m.OS, m.Date)
}

func summary(rep report) string {
	var parts []string
	onlySustained := rep.SustainedKeys > 0
	for _, r := range rep.Results {
		onlySustained = onlySustained && r.Workload == workloadSustained
	}
	if !onlySustained {
		parts = append(parts, fmt.Sprintf("%s keys of 16+100 bytes (values compress to about half), fillsync %s puts from %d goroutines",
			groupThousands(int64(rep.Keys)), groupThousands(int64(rep.SyncOps)), syncWriters))
	}
	if rep.SustainedKeys > 0 {
		parts = append(parts, fmt.Sprintf("%s %s keys of 16+100 bytes", workloadSustained, groupThousands(int64(rep.SustainedKeys))))
	}
	parts = append(parts, fmt.Sprintf("-cache %d MiB, seed %d", rep.CacheSize>>20, rep.Seed))
	return strings.Join(parts, ", ")
}

var commonNotes = []string{
	"ops/s counts the timed puts or reads only; \"settle s\" is the flush and compaction wait that followed, not in ops/s.",
	"vs pebble = ops/s ÷ the pebble (defaults) row's ops/s for the same workload.",
	"disk = allocated size of the database directory after settle and close (readrandom/readseq: after the reads).",
	"write amp = growth of write_bytes in /proc/self/io over the workload, settle and close ÷ keys × 116 bytes.",
	"readrandom/readseq run on the fillrandom database (after overwrite, when run) once it settled and was reopened; readrandom is one goroutine, uniform keys, every value checked.",
	"WAL on for every engine but bbolt (it has none); fills do not sync; fillsync syncs every put.",
}

func printText(w io.Writer, rep report, engines []engineSpec) {
	fmt.Fprintln(w, "machine:", rep.Machine)
	fmt.Fprintln(w, "run:    ", summary(rep))
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	line := func(cs []string) {
		// Left-align the two name columns by padding them ourselves.
		fmt.Fprintf(tw, "%-10s\t%-16s\t%s\t\n", cs[0], cs[1], strings.Join(cs[2:], "\t"))
	}
	line(tableHeader)
	prev := ""
	for _, cs := range rows(rep, engines) {
		if prev != "" && cs[0] != prev {
			fmt.Fprintln(tw, "\t\t\t\t\t\t\t")
		}
		prev = cs[0]
		line(cs)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "notes:")
	for _, n := range commonNotes {
		fmt.Fprintln(w, "  -", n)
	}
	for _, spec := range engines {
		fmt.Fprintf(w, "  - %s: %s\n", spec.name, spec.notes)
	}
	for _, r := range rep.Results {
		if r.Err != "" {
			fmt.Fprintf(w, "  - error %s %s: %s\n", r.Engine, r.Workload, r.Err)
		}
		if r.Warning != "" {
			fmt.Fprintf(w, "  - warning %s %s: %s\n", r.Engine, r.Workload, r.Warning)
		}
	}
	printSustained(w, rep, engines, false)
}

func printMarkdown(w io.Writer, rep report, engines []engineSpec) {
	fmt.Fprintf(w, "Machine: %s.  \nRun: %s.\n\n", rep.Machine, summary(rep))
	fmt.Fprintf(w, "| %s |\n", strings.Join(tableHeader, " | "))
	fmt.Fprintln(w, "|:--|:--|--:|--:|--:|--:|--:|")
	for _, cs := range rows(rep, engines) {
		fmt.Fprintf(w, "| %s |\n", strings.Join(cs, " | "))
	}
	fmt.Fprintln(w)
	for _, n := range commonNotes {
		fmt.Fprintln(w, "-", n)
	}
	for _, spec := range engines {
		fmt.Fprintf(w, "- **%s**: %s\n", spec.name, spec.notes)
	}
	for _, r := range rep.Results {
		if r.Err != "" {
			fmt.Fprintf(w, "- error %s %s: %s\n", r.Engine, r.Workload, r.Err)
		}
		if r.Warning != "" {
			fmt.Fprintf(w, "- warning %s %s: %s\n", r.Engine, r.Workload, r.Warning)
		}
	}
	printSustained(w, rep, engines, true)
}

// ---- the machine line ----

func describeMachine() machine {
	m := machine{
		CPU:       "unknown CPU",
		Cores:     runtime.NumCPU(),
		GoVersion: runtime.Version(),
		OS:        runtime.GOOS + "/" + runtime.GOARCH,
		Date:      time.Now().UTC().Format("2006-01-02 15:04 UTC"),
	}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.CPU = v
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		// "32768000 kB"
		if n, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64); err == nil {
			m.RAMBytes = n << 10
		}
	}
	return m
}

// procField returns the value of the first "name : value" line in a /proc
// file, or "" if there is none.
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Command vecbench measures PluresDB's HNSW vector index beside hnswlib and
// faiss on the same data in the same run: build rate, memory, and at each
// search ef the recall@k, queries per second and latency percentiles.
//
//	cd bench && go run ./vecbench                                  # 100k clustered, dim 128
//	cd bench && go run ./vecbench -n 1000000 -markdown
//	cd bench && go run ./vecbench -data ~/sift -nq 10000          # TEXMEX files
//
// Data comes from TEXMEX files (fvecs.go) or from the seeded generator
// (synth.go), which caches base, queries and exact ground truth on disk.
// Ours is measured in-process (one goroutine building, one goroutine
// searching one query at a time); the anchors run in anchor.py under
// Debian's /usr/bin/python3 on the same files, also single-threaded.
package main

import (
	"bufio"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/hnsw"
)

//go:embed anchor.py
var anchorScript []byte

// installHint is what to do when the anchors cannot run.
const installHint = "apt-get install -y python3-hnswlib python3-faiss (then run with -python /usr/bin/python3), or -anchors=false to run ours alone"

// warmupQueries are searched, untimed, before each ef's timed loop.
const warmupQueries = 100

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// config is the parsed command line.
type config struct {
	synth   synthSpec
	dataDir string
	files   [3]string // base, query, ground truth names in dataDir
	cache   string

	engine     string
	m, efc     int
	efs        []int
	k          int
	runs       int // timed passes per ef; the fastest counts
	threads    int
	target     float64
	anchors    bool
	anchorList string
	python     string
	markdown   bool
	jsonFile   string
	quiet      bool
}

// searchResult is one engine at one ef.
type searchResult struct {
	Ef       int     `json:"ef"`
	Recall   float64 `json:"recall"`
	QPS      float64 `json:"qps"`
	QPSBatch float64 `json:"qps_batch,omitempty"` // anchors: all queries in one call
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
}

// engineResult is one build of one engine and, for single-threaded builds,
// its searches.
type engineResult struct {
	Engine      string         `json:"engine"`
	Version     string         `json:"version,omitempty"`
	Threads     int            `json:"threads"`
	BuildS      float64        `json:"build_s"`
	BuildRate   float64        `json:"build_rate"`
	MemoryBytes int64          `json:"memory_bytes"`
	Searches    []searchResult `json:"searches"`
	Error       string         `json:"error,omitempty"`
}

// firstAt is where an engine first reached the target recall.
type firstAt struct {
	Engine string       `json:"engine"`
	Found  bool         `json:"found"`
	At     searchResult `json:"at"` // the first ef at the target, or the best recall
}

// summary holds the ratios the targets are stated in.
type summaryResult struct {
	Target         float64   `json:"target_recall"`
	First          []firstAt `json:"first"`
	QPSRatio       float64   `json:"qps_ratio_to_hnswlib,omitempty"`       // ours ÷ hnswlib, each at its first ef
	QPSBatchRatio  float64   `json:"qps_ratio_to_hnswlib_batch,omitempty"` // ours ÷ hnswlib's one-call QPS
	BuildRatio     float64   `json:"build_ratio_to_hnswlib,omitempty"`     // single-threaded build rates
	OursP99us      float64   `json:"ours_p99_us,omitempty"`
	ParallelRatios []float64 `json:"parallel_build_ratios,omitempty"` // ours ÷ hnswlib at -threads
}

type report struct {
	Machine string         `json:"machine"`
	Data    string         `json:"data"`
	N       int            `json:"n"`
	Dim     int            `json:"dim"`
	NQ      int            `json:"nq"`
	Metric  string         `json:"metric"`
	M       int            `json:"M"`
	EfC     int            `json:"ef_construction"`
	K       int            `json:"k"`
	Results []engineResult `json:"results"`
	Summary summaryResult  `json:"summary"`
	Notes   []string       `json:"notes"`
}

// run is main without the exit, so it can be tested. It returns 0 on
// success, 1 when a measurement failed, 2 on bad flags or data.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "vecbench:", err)
		}
		return 2
	}
	logf := func(format string, a ...any) {
		if !cfg.quiet {
			fmt.Fprintf(stderr, format+"\n", a...)
		}
	}

	ds, desc, err := loadData(cfg, logf)
	if err != nil {
		fmt.Fprintln(stderr, "vecbench:", err)
		return 2
	}
	if ds.Truth.Dim < cfg.k {
		fmt.Fprintf(stderr, "vecbench: ground truth has %d neighbours per query, -k is %d\n", ds.Truth.Dim, cfg.k)
		return 2
	}
	rep := report{
		Machine: describeMachine(),
		Data:    desc,
		N:       ds.Base.Len(),
		Dim:     ds.Base.Dim,
		NQ:      ds.Queries.Len(),
		Metric:  cfg.synth.Metric,
		M:       cfg.m,
		EfC:     cfg.efc,
		K:       cfg.k,
		Notes:   notes(cfg),
	}

	status := 0
	ours, err := measureOurs(cfg, ds, logf)
	rep.Results = append(rep.Results, ours...)
	if err != nil {
		fmt.Fprintln(stderr, "vecbench:", err)
		status = 1
	}
	runtime.GC()
	debug.FreeOSMemory()

	if cfg.anchors {
		anc, err := runAnchors(cfg, ds, logf)
		rep.Results = append(rep.Results, anc...)
		if err != nil {
			fmt.Fprintf(stderr, "vecbench: anchors: %v\nvecbench: to run them: %s\n", err, installHint)
		}
		for _, r := range anc {
			if r.Error != "" {
				fmt.Fprintf(stderr, "vecbench: %s: %s\n", r.Engine, r.Error)
				if strings.Contains(r.Error, "not installed") {
					fmt.Fprintf(stderr, "vecbench: to install: %s\n", installHint)
				}
			}
		}
	}
	rep.Summary = summarize(rep.Results, cfg.target)

	if cfg.markdown {
		printMarkdown(stdout, rep)
	} else {
		printText(stdout, rep)
	}
	if cfg.jsonFile != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(cfg.jsonFile, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "vecbench:", err)
			return 1
		}
	}
	return status
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("vecbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.dataDir, "data", "", "directory of TEXMEX files to use instead of a synthetic set")
	fs.StringVar(&c.files[0], "base", "", "base vectors in -data (.fvecs or .bvecs; default: base.fvecs or the one *base.[fb]vecs)")
	fs.StringVar(&c.files[1], "query", "", "queries in -data (default: query.fvecs or the one *query.[fb]vecs)")
	fs.StringVar(&c.files[2], "gt", "", "ground truth in -data (.ivecs; default: groundtruth.ivecs or the one *groundtruth.ivecs)")
	fs.IntVar(&c.synth.N, "n", 100_000, "synthetic: base vectors")
	fs.IntVar(&c.synth.Dim, "dim", 128, "synthetic: dimensions")
	fs.IntVar(&c.synth.NQ, "nq", 1000, "queries (with -data: the first nq of the file; 0: all)")
	fs.StringVar(&c.synth.Kind, "kind", kindClustered, "synthetic: uniform or clustered")
	fs.StringVar(&c.synth.Metric, "metric", metricL2, "l2 (squared Euclidean), cosine or dot")
	fs.Uint64Var(&c.synth.Seed, "seed", 1, "synthetic: generator seed")
	fs.StringVar(&c.cache, "cache", defaultCacheDir(), "where synthetic sets are cached")
	fs.StringVar(&c.engine, "engine", "hnsw", "ours: hnsw (the hnsw package in-process) or db (the root package's VectorIndex)")
	fs.IntVar(&c.m, "M", 16, "links per node (layer 0 keeps 2*M), for every engine")
	fs.IntVar(&c.efc, "efc", 200, "ef at construction, for every engine")
	efs := fs.String("efs", "10,20,40,80,120,200", "comma-separated search ef values")
	fs.IntVar(&c.k, "k", 10, "neighbours per query; recall@k")
	fs.IntVar(&c.runs, "runs", 3, "timed passes over the queries per ef, for every engine; the fastest counts")
	fs.IntVar(&c.threads, "threads", 0, "also build with this many threads (ours: AddBatch, or concurrent Add; anchors: their thread pools), build rate only; 0 or 1: no")
	fs.Float64Var(&c.target, "target", 0.95, "recall@k the summary compares engines at")
	fs.BoolVar(&c.anchors, "anchors", true, "also run hnswlib and faiss through "+defaultPython)
	fs.StringVar(&c.anchorList, "anchor-engines", "hnswlib,faiss", "anchors to run")
	fs.StringVar(&c.python, "python", defaultPython, "Python with the hnswlib and faiss modules (Debian's, where apt puts them)")
	fs.BoolVar(&c.markdown, "markdown", false, "print the table as Markdown")
	fs.StringVar(&c.jsonFile, "json", "", "also write the results as JSON to this file")
	fs.BoolVar(&c.quiet, "q", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if c.efs, err = parseEfs(*efs); err != nil {
		return c, err
	}
	switch {
	case c.k <= 0 || c.k > gtDepth:
		return c, fmt.Errorf("-k %d out of range 1..%d", c.k, gtDepth)
	case c.m < 2 || c.efc < 1:
		return c, fmt.Errorf("-M must be at least 2 and -efc at least 1")
	case c.runs < 1:
		return c, fmt.Errorf("-runs must be at least 1")
	case c.threads < 0:
		return c, fmt.Errorf("-threads must not be negative")
	case c.synth.NQ < 0:
		return c, fmt.Errorf("-nq must not be negative")
	case c.engine != "hnsw" && c.engine != "db":
		return c, fmt.Errorf("unknown -engine %q (hnsw or db)", c.engine)
	}
	if c.dataDir != "" {
		for _, name := range []string{"n", "dim", "kind", "seed"} {
			if flagSet(fs, name) {
				return c, fmt.Errorf("-%s applies to synthetic sets, not -data (a base prefix would need new ground truth)", name)
			}
		}
		return c, checkMetric(c.synth.Metric)
	}
	if c.synth.NQ == 0 {
		return c, fmt.Errorf("-nq must be positive for a synthetic set")
	}
	return c, c.synth.validate()
}

func parseEfs(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		ef, err := strconv.Atoi(f)
		if err != nil || ef <= 0 {
			return nil, fmt.Errorf("-efs: %q is not a positive integer", f)
		}
		out = append(out, ef)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-efs is empty")
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// flagSet reports whether the command line set flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "pluresdb-vecbench")
	}
	return filepath.Join(os.TempDir(), "pluresdb-vecbench")
}

// loadData returns the data set and a one-line description of it.
func loadData(c config, logf func(string, ...any)) (*dataset, string, error) {
	if c.dataDir == "" {
		ds, err := synthDataset(c.synth, c.cache, logf)
		if err != nil {
			return nil, "", err
		}
		return ds, fmt.Sprintf("synthetic %s, seed %d", c.synth.Kind, c.synth.Seed), nil
	}
	var paths [3]string
	patterns := [3][]string{
		{"base.fvecs", "*base.fvecs", "*base.bvecs"},
		{"query.fvecs", "*query.fvecs", "*query.bvecs"},
		{"groundtruth.ivecs", "*groundtruth.ivecs"},
	}
	for i := range paths {
		p, err := findFile(c.dataDir, c.files[i], patterns[i])
		if err != nil {
			return nil, "", err
		}
		paths[i] = p
	}
	ds := &dataset{BasePath: paths[0], QueryPath: paths[1], TruthPath: paths[2]}
	logf("vecbench: reading %s", c.dataDir)
	if err := ds.load(c.synth.NQ); err != nil {
		return nil, "", err
	}
	return ds, fmt.Sprintf("%s (%s, %s, %s)", c.dataDir, filepath.Base(paths[0]), filepath.Base(paths[1]), filepath.Base(paths[2])), nil
}

// findFile resolves one TEXMEX file in dir: the name given, else the
// first pattern that names an existing file, else the only match of a glob.
func findFile(dir, name string, patterns []string) (string, error) {
	if name != "" {
		return filepath.Join(dir, name), nil
	}
	if p := filepath.Join(dir, patterns[0]); fileExists(p) {
		return p, nil
	}
	for _, pat := range patterns[1:] {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		if len(m) == 1 {
			return m[0], nil
		}
		if len(m) > 1 {
			return "", fmt.Errorf("%s: several files match %s; name one with -base, -query or -gt", dir, pat)
		}
	}
	return "", fmt.Errorf("%s: no %s; name it with -base, -query or -gt", dir, strings.Join(patterns, " or "))
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// ---- ours ----

// vecIndex is what the harness needs of our index: *hnsw.Index has it, and
// so will the root package's *pluresdb.VectorIndex.
type vecIndex interface {
	Add(key []byte, vec []float32) error
	Search(q []float32, k int, opts *hnsw.SearchOptions) ([]hnsw.Hit, error)
}

// openIndex returns an empty index of the -engine kind and a function that
// releases it.
func openIndex(engine string, cfg hnsw.Config) (vecIndex, func() error, error) {
	switch engine {
	case "hnsw":
		x, err := hnsw.New(cfg)
		if err != nil {
			return nil, nil, err
		}
		release := func() error { return nil }
		// Newer indexes run background work that Close waits for.
		if c, ok := any(x).(io.Closer); ok {
			release = c.Close
		}
		return x, release, nil
	case "db":
		// Through the engine: every Add is committed to the LSM (without
		// fsync, as a bulk load would) before it reaches the graph.
		dir, err := os.MkdirTemp("", "vecbench-db-")
		if err != nil {
			return nil, nil, err
		}
		db, err := pluresdb.Open(dir, &pluresdb.Options{NoSync: true})
		if err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
		vi, err := db.VectorIndex("vecbench", cfg)
		if err != nil {
			db.Close()
			os.RemoveAll(dir)
			return nil, nil, err
		}
		release := func() error {
			err := db.Close()
			os.RemoveAll(dir)
			return err
		}
		return vi, release, nil
	}
	return nil, nil, fmt.Errorf("unknown -engine %q", engine)
}

func engineName(engine string) string { return "pluresdb-" + engine }

func hnswMetric(m string) hnsw.Metric {
	switch m {
	case metricCosine:
		return hnsw.Cosine
	case metricDot:
		return hnsw.Dot
	}
	return hnsw.L2
}

// keyOf is the index key of base vector id; idOf inverts it.
func keyOf(id int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(id)) }

func idOf(key []byte) int32 {
	if len(key) != 4 {
		return -1
	}
	return int32(binary.BigEndian.Uint32(key))
}

// measureOurs builds our index on one goroutine and searches it at each
// ef, then, with -threads > 1, builds it again on that many goroutines.
func measureOurs(c config, ds *dataset, logf func(string, ...any)) ([]engineResult, error) {
	hcfg := hnsw.Config{Dim: ds.Base.Dim, Metric: hnswMetric(c.synth.Metric), M: c.m, EfConstruction: c.efc}
	name := engineName(c.engine)
	keys := make([][]byte, ds.Base.Len())
	for i := range keys {
		keys[i] = keyOf(i)
	}
	builds := []int{1}
	if c.threads > 1 {
		builds = append(builds, c.threads)
	}
	var out []engineResult
	for _, threads := range builds {
		logf("vecbench: %s: building %d vectors on %d goroutine(s)", name, len(keys), threads)
		var efs []int
		if threads == 1 {
			efs = c.efs
		}
		res, err := measureBuild(c.engine, hcfg, ds, keys, threads, efs, c.k, c.runs, logf)
		res.Engine = name
		if err != nil {
			res.Error = err.Error()
			return append(out, res), fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, res)
	}
	return out, nil
}

// measureBuild builds one index and searches it at each of efs; the index
// is released before it returns, so the next build starts on a clean heap.
func measureBuild(engine string, cfg hnsw.Config, ds *dataset, keys [][]byte, threads int, efs []int, k, runs int, logf func(string, ...any)) (engineResult, error) {
	x, release, res, err := buildOurs(engine, cfg, ds.Base, keys, threads)
	if err != nil {
		return res, err
	}
	logf("vecbench: built in %.1f s (%.0f vectors/s)", res.BuildS, res.BuildRate)
	for _, ef := range efs {
		sr, err := measureSearch(x, ds, k, ef, runs)
		if err != nil {
			release()
			return res, err
		}
		logf("vecbench: ef %d recall %.4f qps %.0f", ef, sr.Recall, sr.QPS)
		res.Searches = append(res.Searches, sr)
	}
	return res, release()
}

// buildOurs adds every base vector with threads goroutines and reports the
// build time, rate and the heap the index holds.
func buildOurs(engine string, cfg hnsw.Config, base Vectors, keys [][]byte, threads int) (vecIndex, func() error, engineResult, error) {
	res := engineResult{Threads: threads}
	// Two cycles: a released index can stay reachable through its
	// sync.Pool, which the runtime's pool list keeps until the second GC.
	runtime.GC()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	x, release, err := openIndex(engine, cfg)
	if err != nil {
		return nil, nil, res, err
	}
	start := time.Now()
	switch b, ok := x.(batchAdder); {
	case threads <= 1:
		for i, key := range keys {
			if err = x.Add(key, base.At(i)); err != nil {
				break
			}
		}
	case ok:
		vecs := make([][]float32, len(keys))
		for i := range vecs {
			vecs[i] = base.At(i)
		}
		err = b.AddBatch(keys, vecs, threads)
	default:
		err = addConcurrently(x, base, keys, threads)
	}
	elapsed := time.Since(start)
	if err != nil {
		release()
		return nil, nil, res, err
	}
	res.BuildS = elapsed.Seconds()
	res.BuildRate = float64(len(keys)) / elapsed.Seconds()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	res.MemoryBytes = max(int64(after.HeapInuse)-int64(before.HeapInuse), 0)
	return x, release, res, nil
}

// batchAdder is the parallel bulk insert of indexes that have one.
type batchAdder interface {
	AddBatch(keys [][]byte, vecs [][]float32, workers int) error
}

// addConcurrently adds every base vector from threads goroutines.
func addConcurrently(x vecIndex, base Vectors, keys [][]byte, threads int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var err error
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) {
					return
				}
				if e := x.Add(keys[i], base.At(i)); e != nil {
					once.Do(func() { err = e })
					next.Store(int64(len(keys)))
					return
				}
			}
		}()
	}
	wg.Wait()
	return err
}

// measureSearch searches every query at ef, one at a time on this
// goroutine, after warmupQueries untimed ones; it times runs passes and
// keeps the fastest, so a neighbour's burst on a shared machine or a GC
// cycle does not decide the number.
func measureSearch(x vecIndex, ds *dataset, k, ef, runs int) (searchResult, error) {
	opts := &hnsw.SearchOptions{Ef: ef}
	nq := ds.Queries.Len()
	for i := range min(nq, warmupQueries) {
		if _, err := x.Search(ds.Queries.At(i), k, opts); err != nil {
			return searchResult{}, err
		}
	}
	best := searchResult{Ef: ef}
	lat := make([]time.Duration, nq)
	found := make([]int32, nq*k)
	for range max(runs, 1) {
		start := time.Now()
		for i := range nq {
			t := time.Now()
			hits, err := x.Search(ds.Queries.At(i), k, opts)
			lat[i] = time.Since(t)
			if err != nil {
				return searchResult{}, err
			}
			row := found[i*k : (i+1)*k]
			for j := range row {
				row[j] = -1
				if j < len(hits) {
					row[j] = idOf(hits[j].Key)
				}
			}
		}
		if qps := float64(nq) / time.Since(start).Seconds(); qps > best.QPS {
			best.QPS = qps
			best.P50us = percentile(lat, 0.50)
			best.P99us = percentile(lat, 0.99)
		}
	}
	// Searches are deterministic; the last pass's results stand for all.
	best.Recall = recallAt(found, ds.Truth, k)
	return best, nil
}

// recallAt is the mean over queries of |found ∩ truth| / k, where found
// holds k IDs per query (-1 for none) and truth's rows are nearest first.
func recallAt(found []int32, truth IntVectors, k int) float64 {
	nq := len(found) / k
	if nq == 0 {
		return 0
	}
	hit := 0
	for i := range nq {
		want := truth.At(i)[:k]
		for _, id := range found[i*k : (i+1)*k] {
			if id >= 0 && slices.Contains(want, id) {
				hit++
			}
		}
	}
	return float64(hit) / float64(nq*k)
}

// percentile returns the p-quantile of lat in microseconds, interpolated
// between closest ranks as numpy.percentile does, so ours and the anchors
// agree. It sorts lat.
func percentile(lat []time.Duration, p float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	pos := p * float64(len(lat)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(lat)-1)
	v := float64(lat[lo]) + (pos-float64(lo))*float64(lat[hi]-lat[lo])
	return v / float64(time.Microsecond)
}

// ---- the anchors ----

// runAnchors runs anchor.py for each anchor engine: a one-thread build
// with the searches, then with -threads > 1 a build-only run on that many
// threads. Each build is its own process, so its memory is its own. An
// error means the anchors could not run at all; an anchor that failed
// alone (say, a module is missing) has its Error set.
func runAnchors(c config, ds *dataset, logf func(string, ...any)) ([]engineResult, error) {
	if _, err := exec.LookPath(c.python); err != nil {
		return nil, fmt.Errorf("no %s: %w", c.python, err)
	}
	dir, err := os.MkdirTemp("", "vecbench-anchor-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "anchor.py")
	if err := os.WriteFile(script, anchorScript, 0o644); err != nil {
		return nil, err
	}
	efs := make([]string, len(c.efs))
	for i, ef := range c.efs {
		efs[i] = strconv.Itoa(ef)
	}
	var out []engineResult
	for engine := range strings.SplitSeq(c.anchorList, ",") {
		engine = strings.TrimSpace(engine)
		if engine == "" {
			continue
		}
		builds := []int{1}
		if c.threads > 1 {
			builds = append(builds, c.threads)
		}
		for _, threads := range builds {
			args := []string{"-u", script, "--engine", engine,
				"--base", ds.BasePath, "--query", ds.QueryPath, "--truth", ds.TruthPath,
				"--nq", strconv.Itoa(ds.Queries.Len()), "--metric", c.synth.Metric,
				"--M", strconv.Itoa(c.m), "--efc", strconv.Itoa(c.efc), "--k", strconv.Itoa(c.k),
				"--threads", strconv.Itoa(threads), "--runs", strconv.Itoa(c.runs), "--efs", ""}
			if threads == 1 {
				args[len(args)-1] = strings.Join(efs, ",")
			}
			logf("vecbench: %s: %s on %d thread(s)", engine, c.python, threads)
			r, err := runAnchor(c.python, args, threads, logf)
			if err != nil {
				return out, err
			}
			if r.Engine == "" {
				r.Engine = engine
			}
			r.Threads = threads
			out = append(out, r)
			if r.Error != "" {
				break
			}
		}
	}
	return out, nil
}

// runAnchor runs one anchor.py process and decodes its JSON.
func runAnchor(python string, args []string, threads int, logf func(string, ...any)) (engineResult, error) {
	var r engineResult
	cmd := exec.Command(python, args...)
	// OpenMP (faiss) and BLAS (numpy) pools get the build's thread count.
	cmd.Env = append(os.Environ(), fmt.Sprintf("OMP_NUM_THREADS=%d", threads), "OPENBLAS_NUM_THREADS=1")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return r, err
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		return r, err
	}
	var tail []string // the last stderr lines, for the error
	s := bufio.NewScanner(pipe)
	for s.Scan() {
		logf("%s", s.Text())
		tail = append(tail, s.Text())
		if len(tail) > 5 {
			tail = tail[1:]
		}
	}
	if err := cmd.Wait(); err != nil {
		return r, fmt.Errorf("%s: %w: %s", python, err, strings.Join(tail, " | "))
	}
	if err := json.Unmarshal([]byte(stdout.String()), &r); err != nil {
		return r, fmt.Errorf("anchor output %q: %w", stdout.String(), err)
	}
	return r, nil
}

// ---- summary and table ----

// summarize finds, per engine's single-threaded run, the first ef reaching
// target recall, and the ratios of ours to hnswlib there.
func summarize(rs []engineResult, target float64) summaryResult {
	sum := summaryResult{Target: target}
	ours, lib := -1, -1 // indexes into sum.First
	var oursBuild, libBuild float64
	parOurs, parLib := map[int]float64{}, map[int]float64{}
	for _, r := range rs {
		if r.Error != "" {
			continue
		}
		isOurs := strings.HasPrefix(r.Engine, "pluresdb")
		if r.Threads > 1 {
			switch {
			case isOurs:
				parOurs[r.Threads] = r.BuildRate
			case r.Engine == "hnswlib":
				parLib[r.Threads] = r.BuildRate
			}
			continue
		}
		f := firstAt{Engine: r.Engine}
		for _, s := range r.Searches {
			if s.Recall >= target {
				f.Found, f.At = true, s
				break
			}
			if s.Recall > f.At.Recall || f.At.Ef == 0 {
				f.At = s
			}
		}
		switch {
		case isOurs:
			ours, oursBuild = len(sum.First), r.BuildRate
		case r.Engine == "hnswlib":
			lib, libBuild = len(sum.First), r.BuildRate
		}
		sum.First = append(sum.First, f)
	}
	if ours >= 0 && sum.First[ours].Found {
		o := sum.First[ours].At
		sum.OursP99us = o.P99us
		if lib >= 0 && sum.First[lib].Found {
			l := sum.First[lib].At
			sum.QPSRatio = o.QPS / l.QPS
			if l.QPSBatch > 0 {
				sum.QPSBatchRatio = o.QPS / l.QPSBatch
			}
		}
	}
	if oursBuild > 0 && libBuild > 0 {
		sum.BuildRatio = oursBuild / libBuild
	}
	for t, r := range parOurs {
		if l := parLib[t]; l > 0 {
			sum.ParallelRatios = append(sum.ParallelRatios, r/l)
		}
	}
	return sum
}

func notes(c config) []string {
	return []string{
		fmt.Sprintf("Every engine: M %d, ef construction %d, the same files; ours runs in-process, hnswlib and faiss through %s.", c.m, c.efc, c.python),
		"build vec/s: vectors added per second on one thread (threads > 1: that many; ours through AddBatch with that many workers, or Add from that many goroutines). mem: heap in use after the build minus before (ours), resident set growth during the build (anchors).",
		fmt.Sprintf("recall@%d: mean over queries of |returned ∩ exact top %d| / %d. QPS and latency: one query at a time on one thread, after %d untimed warm-up queries, the fastest of %d passes; anchors' latency includes the Python call (a few µs).", c.k, c.k, c.k, warmupQueries, c.runs),
		"batch QPS (anchors): all queries in one knn_query/search call on one thread, i.e. without the per-call Python overhead.",
	}
}

var tableHeader = func(k int) []string {
	return []string{"engine", "threads", "build s", "build vec/s", "mem MiB", "ef", fmt.Sprintf("recall@%d", k), "QPS", "p50 µs", "p99 µs", "batch QPS"}
}

// rows returns the table cells: per build, a first row with the build and
// the first ef, then one row per further ef.
func rows(rep report) [][]string {
	var out [][]string
	for _, r := range rep.Results {
		name := r.Engine
		if r.Version != "" {
			name += " " + r.Version
		}
		if r.Error != "" {
			out = append(out, []string{name, strconv.Itoa(r.Threads), "error", "", "", "", "", "", "", "", ""})
			continue
		}
		build := []string{name, strconv.Itoa(r.Threads), fmt.Sprintf("%.1f", r.BuildS),
			groupThousands(r.BuildRate), fmt.Sprintf("%.0f", float64(r.MemoryBytes)/(1<<20))}
		if len(r.Searches) == 0 {
			out = append(out, append(build, "", "", "", "", "", ""))
		}
		for i, s := range r.Searches {
			row := build
			if i > 0 {
				row = []string{"", "", "", "", ""}
			}
			batch := ""
			if s.QPSBatch > 0 {
				batch = groupThousands(s.QPSBatch)
			}
			out = append(out, append(slices.Clone(row), strconv.Itoa(s.Ef), fmt.Sprintf("%.4f", s.Recall),
				groupThousands(s.QPS), fmt.Sprintf("%.0f", s.P50us), fmt.Sprintf("%.0f", s.P99us), batch))
		}
	}
	return out
}

// summaryLines says, in words, how the run compares with the targets.
func summaryLines(rep report) []string {
	s := rep.Summary
	var out []string
	var firsts []string
	for _, f := range s.First {
		if f.Found {
			firsts = append(firsts, fmt.Sprintf("%s at ef %d (recall %.4f, %s QPS, p99 %.0f µs)",
				f.Engine, f.At.Ef, f.At.Recall, groupThousands(f.At.QPS), f.At.P99us))
		} else {
			firsts = append(firsts, fmt.Sprintf("%s never (best %.4f at ef %d)", f.Engine, f.At.Recall, f.At.Ef))
		}
	}
	out = append(out, fmt.Sprintf("first ef reaching recall@%d >= %.2f: %s.", rep.K, s.Target, strings.Join(firsts, "; ")))
	if s.QPSRatio > 0 {
		line := fmt.Sprintf("QPS ours/hnswlib, each at that ef: %.2fx (target >= 1)", s.QPSRatio)
		if s.QPSBatchRatio > 0 {
			line += fmt.Sprintf("; against hnswlib's batch QPS: %.2fx", s.QPSBatchRatio)
		}
		out = append(out, line+".")
	}
	if s.BuildRatio > 0 {
		out = append(out, fmt.Sprintf("build rate ours/hnswlib, one thread: %.2fx (target >= 1).", s.BuildRatio))
	}
	for _, r := range s.ParallelRatios {
		out = append(out, fmt.Sprintf("build rate ours/hnswlib, parallel: %.2fx.", r))
	}
	if s.OursP99us > 0 {
		out = append(out, fmt.Sprintf("ours p99 at that ef: %.3f ms over %s vectors (target: < 2 ms at 1M).", s.OursP99us/1000, groupThousands(float64(rep.N))))
	}
	return out
}

func runLine(rep report) string {
	return fmt.Sprintf("%s; %s base vectors, dim %d, %s queries, metric %s, M %d, efc %d",
		rep.Data, groupThousands(float64(rep.N)), rep.Dim, groupThousands(float64(rep.NQ)), rep.Metric, rep.M, rep.EfC)
}

func printText(w io.Writer, rep report) {
	fmt.Fprintln(w, "machine:", rep.Machine)
	fmt.Fprintln(w, "run:    ", runLine(rep))
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	line := func(cs []string) { fmt.Fprintf(tw, "%-22s\t%s\t\n", cs[0], strings.Join(cs[1:], "\t")) }
	line(tableHeader(rep.K))
	for _, cs := range rows(rep) {
		line(cs)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, l := range summaryLines(rep) {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "notes:")
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "  -", n)
	}
}

func printMarkdown(w io.Writer, rep report) {
	fmt.Fprintf(w, "Machine: %s.  \nRun: %s.\n\n", rep.Machine, runLine(rep))
	h := tableHeader(rep.K)
	fmt.Fprintf(w, "| %s |\n", strings.Join(h, " | "))
	fmt.Fprintf(w, "|:--|%s\n", strings.Repeat("--:|", len(h)-1))
	for _, cs := range rows(rep) {
		fmt.Fprintf(w, "| %s |\n", strings.Join(cs, " | "))
	}
	fmt.Fprintln(w)
	for _, l := range summaryLines(rep) {
		fmt.Fprintln(w, "-", l)
	}
	fmt.Fprintln(w)
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "-", n)
	}
}

func groupThousands(f float64) string {
	s := strconv.FormatInt(int64(f+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// describeMachine says where the numbers were taken.
func describeMachine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	m := fmt.Sprintf("%s, %d cores, %s, %s/%s, %s", cpu, runtime.NumCPU(), runtime.Version(),
		runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	// Other work on the machine moves every number; say how much there was.
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			m += ", load " + f[0] + " at start"
		}
	}
	return m
}

const defaultPython = "/usr/bin/python3"

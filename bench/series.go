//go:build !nopluresdb

package main

// This file holds the series workload: the engine's native time series
// (ARCHITECTURE.md, "Time series") measured end to end, beside
// Prometheus's TSDB where the comparison is fair. It runs only when named:
//
//	go run . -workloads series
//
// 1. Ingest: -series-count series (default 1,000) × 100 samples per call,
//    a call being one Batch of an AppendSamples per series committed at
//    once, -series-calls calls (default 100: 10M samples), 15 s between
//    samples; durable (a fsync per call) and NoSync, on one core
//    (GOMAXPROCS=1) and on every core. Prometheus: one Appender per call,
//    Commit, its WAL on.
// 2. Storage: after the durable one-core ingest settled (Flush, Compact,
//    WaitForCompactions) and closed, the directory's bytes per sample, by
//    kind of file (tables, op log, archives); Prometheus's after its
//    Compact (blocks, WAL, head chunks).
// 3. Queries, on that database reopened, repeated -series-reps times
//    (median and range): Aggregate over a UTC day of a 1 s series (86,400
//    samples) at a 1 minute step and as one window, QuerySamples and
//    IterateSamples of that day, AggregateSeries over every ingested
//    series for an hour at 15 s grouped by a label of 10 values; each
//    first while the day is unflushed operands, then compacted. Every
//    answer is checked against the generated data (timeseries.Aggregate
//    and GroupBy over the raw samples) before it is timed.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	promtsdb "github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/timeseries"
)

const (
	workloadSeries = "series"

	defaultSeriesCount = 1000
	defaultSeriesCalls = 100
	defaultSeriesReps  = 11
	seriesPerCall      = 100
	seriesGroups       = 10 // values of the dc label
	seriesDayMillis    = 86_400_000
	seriesHourMillis   = 3_600_000
)

// seriesKinds are tscompress's kinds that fit a regular 15 s scrape
// (sparse has irregular timestamps).
var seriesKinds = []int{0, 1, 2, 3, 5, 6} // indexes into tsKinds

func init() {
	knownWorkloads = append(knownWorkloads, workloadSeries)
	seriesBench.name = workloadSeries
	seriesBench.run = func(rc runConfig) (opLogSection, error) {
		rep, err := runSeries(rc)
		if rep == nil {
			return nil, err
		}
		return rep, err
	}
}

// seriesData is the ingest data set: names[i]'s samples are data[i].
type seriesData struct {
	names []string
	ls    []labels.Labels // the same series for Prometheus
	data  [][]timeseries.Sample
	// total is the number of samples.
	total int
}

// chunkKeys is the number of chunk keys the data set makes: one per
// series and UTC day it has samples in.
func (d *seriesData) chunkKeys() int {
	n := 0
	for _, s := range d.data {
		last := int64(math.MinInt64)
		for _, x := range s {
			if b := timeseries.BucketOf(x.T); b != last {
				n, last = n+1, b
			}
		}
	}
	return n
}

func genSeriesData(seed uint64, count, calls int) *seriesData {
	d := &seriesData{}
	n := calls * seriesPerCall
	for i := range count {
		k := seriesKinds[i%len(seriesKinds)]
		// genTSSeries picks the kind from its index: the (i/len)-th
		// series of kind k.
		gi := (i/len(seriesKinds))*len(tsKinds) + k
		s := genTSSeries(seed, gi, n)
		metric := "bench_" + strings.ReplaceAll(tsKinds[k], "-", "_")
		host := fmt.Sprintf("host-%04d", i)
		dc := fmt.Sprintf("dc%d", i%seriesGroups)
		d.names = append(d.names, fmt.Sprintf(`%s{dc=%q,host=%q,job="bench"}`, metric, dc, host))
		d.ls = append(d.ls, labels.FromStrings("__name__", metric, "dc", dc, "host", host, "job", "bench"))
		d.data = append(d.data, s)
		d.total += len(s)
	}
	return d
}

// ---- results ----

type seriesIngest struct {
	Engine     string  `json:"engine"`
	Mode       string  `json:"mode"` // sync, nosync
	Procs      int     `json:"gomaxprocs"`
	Samples    int64   `json:"samples"`
	Seconds    float64 `json:"seconds"`
	PerSec     float64 `json:"samples_per_sec"`
	CallMedian float64 `json:"call_median_ms"`
	CallMax    float64 `json:"call_max_ms"`
	Settle     float64 `json:"settle_seconds"`
}

type seriesStorage struct {
	Engine string `json:"engine"`
	What   string `json:"what"`
	Bytes  int64  `json:"bytes"`
}

type seriesQuery struct {
	Engine  string  `json:"engine"`
	Phase   string  `json:"phase"` // unflushed, compacted
	Name    string  `json:"name"`
	Samples int     `json:"samples"` // samples the query covers
	Reps    int     `json:"reps"`
	Median  float64 `json:"median_ns"`
	Min     float64 `json:"min_ns"`
	Max     float64 `json:"max_ns"`
	Target  string  `json:"target,omitempty"`
}

type seriesReport struct {
	Series  int             `json:"series"`
	PerCall int             `json:"samples_per_call"`
	Calls   int             `json:"calls"`
	Samples int64           `json:"samples"`
	Seed    uint64          `json:"seed"`
	Ingest  []seriesIngest  `json:"ingest"`
	Storage []seriesStorage `json:"storage"`
	Queries []seriesQuery   `json:"queries"`
	Notes   []string        `json:"notes"`
}

func runSeries(rc runConfig) (*seriesReport, error) {
	count, calls, reps := rc.seriesCount, rc.seriesCalls, rc.seriesReps
	if count <= 0 || calls <= 0 || reps <= 0 {
		return nil, fmt.Errorf("series: -series-count, -series-calls and -series-reps must be positive")
	}
	rc.logf("series: generating %d series × %d samples, seed %d", count, calls*seriesPerCall, rc.seed)
	d := genSeriesData(rc.seed, count, calls)
	rep := &seriesReport{Series: count, PerCall: seriesPerCall, Calls: calls, Samples: int64(d.total), Seed: rc.seed}
	procs := runtime.GOMAXPROCS(0)
	procList := []int{1}
	if procs > 1 {
		procList = append(procList, procs)
	}
	// Ours: the durable one-core run first; its database is kept for the
	// storage and query phases.
	keep := filepath.Join(rc.dir, "pluresdb-sync-1")
	for _, noSync := range []bool{false, true} {
		for _, p := range procList {
			mode := "sync"
			if noSync {
				mode = "nosync"
			}
			dir := filepath.Join(rc.dir, fmt.Sprintf("pluresdb-%s-%d", mode, p))
			res, err := ingestOurs(dir, d, calls, noSync, p)
			if err != nil {
				return rep, fmt.Errorf("ingest %s GOMAXPROCS=%d: %w", mode, p, err)
			}
			rc.logf("series: pluresdb %s GOMAXPROCS=%d: %.0f samples/s (settle %.2f s)", mode, p, res.PerSec, res.Settle)
			rep.Ingest = append(rep.Ingest, res)
			if dir != keep {
				os.RemoveAll(dir)
			}
		}
	}
	st, err := storageOurs(keep, d)
	rep.Storage = append(rep.Storage, st...)
	if err != nil {
		return rep, fmt.Errorf("storage: %w", err)
	}
	if err := queriesOurs(rc, keep, d, rep); err != nil {
		return rep, fmt.Errorf("queries: %w", err)
	}
	if !rc.seriesNoProm {
		if err := runProm(rc, d, procList, rep); err != nil {
			return rep, fmt.Errorf("prometheus: %w", err)
		}
	}
	return rep, nil
}

// ---- ingest ----

func ingestOurs(dir string, d *seriesData, calls int, noSync bool, procs int) (seriesIngest, error) {
	res := seriesIngest{Engine: "pluresdb", Mode: "sync", Procs: procs, Samples: int64(d.total)}
	if noSync {
		res.Mode = "nosync"
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
	writeBack()
	runtime.GC()
	db, err := pluresdb.Open(dir, &pluresdb.Options{NoSync: noSync})
	if err != nil {
		return res, err
	}
	callTimes := make([]float64, 0, calls)
	start := time.Now()
	for c := range calls {
		t0 := time.Now()
		b := db.NewBatch()
		for i, name := range d.names {
			if err := b.AppendSamples(name, d.data[i][c*seriesPerCall:(c+1)*seriesPerCall]...); err != nil {
				db.Close()
				return res, err
			}
		}
		if err := b.Commit(nil); err != nil {
			db.Close()
			return res, err
		}
		callTimes = append(callTimes, float64(time.Since(t0).Nanoseconds()))
	}
	res.Seconds = time.Since(start).Seconds()
	res.PerSec = float64(d.total) / res.Seconds
	med, _, hi := medianRange(callTimes)
	res.CallMedian, res.CallMax = med/1e6, hi/1e6
	t0 := time.Now()
	if err := db.Flush(); err != nil {
		db.Close()
		return res, err
	}
	if err := db.WaitForCompactions(); err != nil {
		db.Close()
		return res, err
	}
	res.Settle = time.Since(t0).Seconds()
	return res, db.Close()
}

// ---- storage ----

// storageOurs compacts the database in dir and measures what it stores:
// the LSM tables (db.Tables), then the directory by kind of file once
// closed.
func storageOurs(dir string, d *seriesData) ([]seriesStorage, error) {
	db, err := pluresdb.Open(dir, nil)
	if err != nil {
		return nil, err
	}
	if err := db.Compact(nil, nil); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.WaitForCompactions(); err != nil {
		db.Close()
		return nil, err
	}
	var tables int64
	var entries uint64
	levels := map[int]int{}
	for _, t := range db.Tables() {
		tables += int64(t.Size)
		entries += t.Entries
		levels[t.Level]++
	}
	if err := db.Close(); err != nil {
		return nil, err
	}
	out := []seriesStorage{{Engine: "pluresdb", What: "LSM tables (db.Tables)", Bytes: tables}}
	byKind, total, err := filesByKind(dir, func(rel string) string {
		switch ext := filepath.Ext(rel); ext {
		case ".log":
			return "op log segments (*.log)"
		case ".oparc":
			return "op log archives (*.oparc)"
		case "":
			return "other (" + filepath.Base(rel) + ")"
		default:
			return "*" + ext
		}
	})
	if err != nil {
		return out, err
	}
	out = append(out, seriesStorage{Engine: "pluresdb", What: "directory total", Bytes: total})
	out = append(out, byKind...)
	var lv []string
	for l := range 8 {
		if levels[l] > 0 {
			lv = append(lv, fmt.Sprintf("L%d:%d", l, levels[l]))
		}
	}
	out = append(out, seriesStorage{Engine: "pluresdb", What: "tables by level " + strings.Join(lv, " "), Bytes: -1})
	// A chunk key whose operands no compaction rewrote is stored as its
	// operands (hot, one per call), folded by every read.
	out = append(out, seriesStorage{Engine: "pluresdb", Bytes: -1,
		What: fmt.Sprintf("table entries %s for %s series and day keys + %s series keys (the rest: unfolded operands, engine metadata)",
			groupThousands(int64(entries)), groupThousands(int64(d.chunkKeys())), groupThousands(int64(len(d.names))))})
	return out, nil
}

// filesByKind sums the allocated size of the files under dir by the kind
// kindOf gives their path relative to dir, largest first.
func filesByKind(dir string, kindOf func(rel string) string) ([]seriesStorage, int64, error) {
	sizes := map[string]int64{}
	var total int64
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		n := allocatedSize(info)
		sizes[kindOf(rel)] += n
		total += n
		return nil
	})
	var out []seriesStorage
	for k, n := range sizes {
		out = append(out, seriesStorage{What: k, Bytes: n})
	}
	slices.SortFunc(out, func(a, b seriesStorage) int {
		if a.Bytes != b.Bytes {
			return int(b.Bytes - a.Bytes)
		}
		return strings.Compare(a.What, b.What)
	})
	for i := range out {
		out[i].Engine = "pluresdb"
		out[i].What = "  " + out[i].What
	}
	return out, total, err
}

// ---- queries ----

// seriesQueryDay is the UTC day the 1 s series fill: the day after the
// ingest's first.
func seriesQueryDay() int64 { return timeseries.BucketOf(tsStartTime) + seriesDayMillis }

// genSecondSeries returns a UTC day of samples at 1 s: a gauge with two
// decimals or a counter.
func genSecondSeries(seed uint64, counter bool) []timeseries.Sample {
	k := 1 // cpu-2dec
	if counter {
		k = 0
	}
	s := genTSSeries(seed^0x5eed, 1000*len(tsKinds)+k, seriesDayMillis/1000)
	day := seriesQueryDay()
	for i := range s {
		s[i].T = day + int64(i)*1000
	}
	return s
}

type seriesCase struct {
	name    string
	samples int
	target  string
	run     func() (any, error)
	want    func() (any, error) // the same answer from the raw samples
	check   func(got, want any) error
}

func queriesOurs(rc runConfig, dir string, d *seriesData, rep *seriesReport) error {
	db, err := pluresdb.Open(dir, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	gauge := genSecondSeries(rc.seed, false)
	counter := genSecondSeries(rc.seed, true)
	const gaugeName, counterName = `bench_1s_gauge{job="q"}`, `bench_1s_counter{job="q"}`
	for _, x := range []struct {
		name string
		s    []timeseries.Sample
	}{{gaugeName, gauge}, {counterName, counter}} {
		// An hour per call, as a scraper flushing hourly would.
		for i := 0; i < len(x.s); i += 3600 {
			if err := db.AppendSamples(x.name, x.s[i:min(i+3600, len(x.s))]...); err != nil {
				return err
			}
		}
	}
	day := seriesQueryDay()
	dayEnd := day + seriesDayMillis
	// The hour of AggregateSeries: in the middle of the ingest.
	span := int64(rc.seriesCalls*seriesPerCall) * tsInterval
	h0 := tsStartTime + span/2
	h0 -= h0 % tsInterval
	h1 := min(h0+seriesHourMillis, tsStartTime+span)
	if h1-h0 < seriesHourMillis {
		h0 = tsStartTime
		h1 = min(h0+seriesHourMillis, tsStartTime+span)
	}
	cases := ourCases(db, d, gaugeName, counterName, gauge, counter, day, dayEnd, h0, h1)
	for _, phase := range []string{"unflushed", "compacted"} {
		if phase == "compacted" {
			if err := db.Compact(nil, nil); err != nil {
				return err
			}
			if err := db.WaitForCompactions(); err != nil {
				return err
			}
		}
		for _, c := range cases {
			q, err := timeCase(c, rc.seriesReps)
			if err != nil {
				return fmt.Errorf("%s (%s): %w", c.name, phase, err)
			}
			q.Engine, q.Phase = "pluresdb", phase
			rep.Queries = append(rep.Queries, q)
			rc.logf("series: %s %s: median %.3f ms", phase, c.name, q.Median/1e6)
		}
	}
	return nil
}

// timeCase checks a case's answer, then times reps runs.
func timeCase(c seriesCase, reps int) (seriesQuery, error) {
	q := seriesQuery{Name: c.name, Samples: c.samples, Reps: reps, Target: c.target}
	got, err := c.run()
	if err != nil {
		return q, err
	}
	want, err := c.want()
	if err != nil {
		return q, fmt.Errorf("reference: %w", err)
	}
	if err := c.check(got, want); err != nil {
		return q, err
	}
	times := make([]float64, reps)
	for i := range times {
		t0 := time.Now()
		if _, err := c.run(); err != nil {
			return q, err
		}
		times[i] = float64(time.Since(t0).Nanoseconds())
	}
	q.Median, q.Min, q.Max = medianRange(times)
	return q, nil
}

func ourCases(db *pluresdb.DB, d *seriesData, gaugeName, counterName string, gauge, counter []timeseries.Sample, day, dayEnd, h0, h1 int64) []seriesCase {
	var cases []seriesCase
	fns := []struct {
		fn      timeseries.Agg
		counter bool
	}{
		{timeseries.Sum, false}, {timeseries.Max, false}, {timeseries.Avg, false},
		{timeseries.Count, false}, {timeseries.Quantile(0.99), false}, {timeseries.Rate, true},
	}
	for _, step := range []int64{60_000, 0} {
		for _, f := range fns {
			name, raw := gaugeName, gauge
			if f.counter {
				name, raw = counterName, counter
			}
			stepName := "step 1m"
			if step == 0 {
				stepName = "one window (the day)"
			}
			fn := f.fn
			cases = append(cases, seriesCase{
				name:    fmt.Sprintf("Aggregate %s, day at 1 s, %s", fn, stepName),
				samples: len(raw),
				target:  "< 1 ms",
				run:     func() (any, error) { return db.Aggregate(name, day, dayEnd, step, fn) },
				want:    func() (any, error) { return timeseries.Aggregate(raw, day, dayEnd, step, fn) },
				check:   checkSamples(fn == timeseries.Sum || fn == timeseries.Avg || fn == timeseries.Rate),
			})
		}
	}
	cases = append(cases, seriesCase{
		name:    "QuerySamples, day at 1 s",
		samples: len(gauge),
		run:     func() (any, error) { return db.QuerySamples(gaugeName, day, dayEnd) },
		want:    func() (any, error) { return gauge, nil },
		check:   checkSamples(false),
	}, seriesCase{
		name:    "IterateSamples (sum), day at 1 s",
		samples: len(gauge),
		run: func() (any, error) {
			var sum float64
			n := 0
			err := db.IterateSamples(gaugeName, day, dayEnd, func(s []timeseries.Sample) error {
				for _, x := range s {
					sum += x.V
				}
				n += len(s)
				return nil
			})
			return n, err
		},
		want:  func() (any, error) { return len(gauge), nil },
		check: func(got, want any) error { return checkEqual(got, want) },
	})
	hourSamples := 0
	for _, s := range d.data {
		for _, x := range s {
			if x.T >= h0 && x.T < h1 {
				hourSamples++
			}
		}
	}
	const sel = `{job="bench"}`
	cases = append(cases, seriesCase{
		name:    fmt.Sprintf("AggregateSeries %d series × %s at 15 s, avg, sum by dc", len(d.names), time.Duration(h1-h0)*time.Millisecond),
		samples: hourSamples,
		target:  "< 50 ms",
		run: func() (any, error) {
			return db.AggregateSeries(sel, h0, h1, tsInterval, timeseries.Avg, []string{"dc"}, timeseries.Sum)
		},
		want:  func() (any, error) { return groupRaw(d, h0, h1) },
		check: checkGroups,
	})
	return cases
}

// groupRaw answers the AggregateSeries case from the generated samples.
func groupRaw(d *seriesData, h0, h1 int64) ([]timeseries.SeriesResult, error) {
	var rs []timeseries.SeriesResult
	for i, name := range d.names {
		ls, err := timeseries.ParseSeries(name)
		if err != nil {
			return nil, err
		}
		s, err := timeseries.Aggregate(d.data[i], h0, h1, tsInterval, timeseries.Avg)
		if err != nil {
			return nil, err
		}
		rs = append(rs, timeseries.SeriesResult{Labels: ls, Samples: s})
	}
	return timeseries.GroupBy(rs, []string{"dc"}, timeseries.Sum)
}

func checkEqual(got, want any) error {
	if got != want {
		return fmt.Errorf("got %v, want %v", got, want)
	}
	return nil
}

// checkSamples compares sample lists: bit for bit, or (loose: sums,
// whose order of addition may differ) to a relative 1e-9.
func checkSamples(loose bool) func(got, want any) error {
	return func(g, w any) error {
		return sameSamples(g.([]timeseries.Sample), w.([]timeseries.Sample), loose)
	}
}

func sameSamples(got, want []timeseries.Sample, loose bool) error {
	if len(got) != len(want) {
		return fmt.Errorf("%w: %d samples, want %d", errSeriesMismatch, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.T != w.T {
			return fmt.Errorf("%w: sample %d at %d, want %d", errSeriesMismatch, i, g.T, w.T)
		}
		if math.Float64bits(g.V) == math.Float64bits(w.V) {
			continue
		}
		if loose && (math.IsNaN(g.V) && math.IsNaN(w.V) || math.Abs(g.V-w.V) <= 1e-9*math.Max(math.Abs(g.V), math.Abs(w.V))) {
			continue
		}
		return fmt.Errorf("%w: sample %d at %d: %v, want %v", errSeriesMismatch, i, g.T, g.V, w.V)
	}
	return nil
}

func checkGroups(g, w any) error {
	got, want := g.([]timeseries.SeriesResult), w.([]timeseries.SeriesResult)
	if len(got) != len(want) {
		return fmt.Errorf("%w: %d groups, want %d", errSeriesMismatch, len(got), len(want))
	}
	for i := range got {
		if got[i].Labels.String() != want[i].Labels.String() {
			return fmt.Errorf("%w: group %d is %s, want %s", errSeriesMismatch, i, got[i].Labels, want[i].Labels)
		}
		if err := sameSamples(got[i].Samples, want[i].Samples, true); err != nil {
			return fmt.Errorf("group %s: %w", got[i].Labels, err)
		}
	}
	return nil
}

var errSeriesMismatch = errors.New("answer differs from the generated data")

// medianRange returns the median, minimum and maximum of xs (sorted in
// place).
func medianRange(xs []float64) (med, lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	sort.Float64s(xs)
	n := len(xs)
	med = xs[n/2]
	if n%2 == 0 {
		med = (xs[n/2-1] + xs[n/2]) / 2
	}
	return med, xs[0], xs[n-1]
}

// ---- Prometheus ----

// runProm ingests the same data into Prometheus's TSDB (head appends, WAL
// on, default options), compacts its head into blocks, measures its
// directory and runs the AggregateSeries case through its querier.
func runProm(rc runConfig, d *seriesData, procList []int, rep *seriesReport) error {
	var keep string
	for _, p := range procList {
		dir := filepath.Join(rc.dir, fmt.Sprintf("prometheus-%d", p))
		res, db, err := ingestProm(dir, d, rc.seriesCalls, p)
		if err != nil {
			return err
		}
		rc.logf("series: prometheus GOMAXPROCS=%d: %.0f samples/s", p, res.PerSec)
		rep.Ingest = append(rep.Ingest, res)
		if keep != "" {
			if err := db.Close(); err != nil {
				return err
			}
			os.RemoveAll(dir)
			continue
		}
		keep = dir
		if err := db.Compact(context.Background()); err != nil {
			db.Close()
			return err
		}
		if err := promQueries(rc, db, d, rep); err != nil {
			db.Close()
			return err
		}
		if err := db.Close(); err != nil {
			return err
		}
		byKind, total, err := filesByKind(dir, func(rel string) string {
			top := strings.Split(rel, string(filepath.Separator))[0]
			switch {
			case top == "wal":
				return "WAL (wal/)"
			case top == "chunks_head":
				return "head chunks (chunks_head/)"
			case strings.HasPrefix(top, "01") && top != rel:
				return "blocks"
			}
			return "other"
		})
		if err != nil {
			return err
		}
		rep.Storage = append(rep.Storage, seriesStorage{Engine: "prometheus", What: "directory total", Bytes: total})
		for _, s := range byKind {
			s.Engine = "prometheus"
			rep.Storage = append(rep.Storage, s)
		}
	}
	return nil
}

func openProm(dir string) (*promtsdb.DB, error) {
	return promtsdb.Open(dir, slog.New(slog.DiscardHandler), nil, promtsdb.DefaultOptions(), nil)
}

func ingestProm(dir string, d *seriesData, calls, procs int) (seriesIngest, *promtsdb.DB, error) {
	res := seriesIngest{Engine: "prometheus", Mode: "wal, no fsync", Procs: procs, Samples: int64(d.total)}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
	writeBack()
	runtime.GC()
	db, err := openProm(dir)
	if err != nil {
		return res, nil, err
	}
	refs := make([]storage.SeriesRef, len(d.names))
	callTimes := make([]float64, 0, calls)
	ctx := context.Background()
	start := time.Now()
	for c := range calls {
		t0 := time.Now()
		app := db.Appender(ctx)
		for i := range d.names {
			for _, x := range d.data[i][c*seriesPerCall : (c+1)*seriesPerCall] {
				ref, err := app.Append(refs[i], d.ls[i], x.T, x.V)
				if err != nil {
					app.Rollback()
					db.Close()
					return res, nil, fmt.Errorf("append %s at %d: %w", d.names[i], x.T, err)
				}
				refs[i] = ref
			}
		}
		if err := app.Commit(); err != nil {
			db.Close()
			return res, nil, err
		}
		callTimes = append(callTimes, float64(time.Since(t0).Nanoseconds()))
	}
	res.Seconds = time.Since(start).Seconds()
	res.PerSec = float64(d.total) / res.Seconds
	med, _, hi := medianRange(callTimes)
	res.CallMedian, res.CallMax = med/1e6, hi/1e6
	return res, db, nil
}

// promQueries runs the AggregateSeries case on Prometheus: its querier
// selects and decodes the hour, the same timeseries.Aggregate and GroupBy
// as the engine's aggregate it.
func promQueries(rc runConfig, db *promtsdb.DB, d *seriesData, rep *seriesReport) error {
	span := int64(rc.seriesCalls*seriesPerCall) * tsInterval
	h0 := tsStartTime + span/2
	h0 -= h0 % tsInterval
	h1 := min(h0+seriesHourMillis, tsStartTime+span)
	if h1-h0 < seriesHourMillis {
		h0 = tsStartTime
		h1 = min(h0+seriesHourMillis, tsStartTime+span)
	}
	var hourSamples int
	run := func() (any, error) {
		q, err := db.Querier(h0, h1-1) // maxt is inclusive
		if err != nil {
			return nil, err
		}
		defer q.Close()
		set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "job", "bench"))
		var rs []timeseries.SeriesResult
		var it chunkenc.Iterator
		var buf []timeseries.Sample
		n := 0
		for set.Next() {
			s := set.At()
			it = s.Iterator(it)
			buf = buf[:0]
			for it.Next() == chunkenc.ValFloat {
				t, v := it.At()
				buf = append(buf, timeseries.Sample{T: t, V: v})
			}
			if err := it.Err(); err != nil {
				return nil, err
			}
			n += len(buf)
			w, err := timeseries.Aggregate(buf, h0, h1, tsInterval, timeseries.Avg)
			if err != nil {
				return nil, err
			}
			var ls timeseries.Labels
			s.Labels().Range(func(l labels.Label) {
				ls = append(ls, timeseries.Label{Name: l.Name, Value: l.Value})
			})
			rs = append(rs, timeseries.SeriesResult{Labels: ls, Samples: w})
		}
		if err := set.Err(); err != nil {
			return nil, err
		}
		hourSamples = n
		return timeseries.GroupBy(rs, []string{"dc"}, timeseries.Sum)
	}
	c := seriesCase{
		name:   fmt.Sprintf("AggregateSeries %d series × %s at 15 s, avg, sum by dc", len(d.names), time.Duration(h1-h0)*time.Millisecond),
		target: "< 50 ms",
		run:    run,
		want:   func() (any, error) { return groupRaw(d, h0, h1) },
		check:  checkGroups,
	}
	q, err := timeCase(c, rc.seriesReps)
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	q.Engine, q.Phase, q.Samples = "prometheus", "compacted", hourSamples
	rep.Queries = append(rep.Queries, q)
	rc.logf("series: prometheus %s: median %.3f ms", c.name, q.Median/1e6)
	return nil
}

// ---- printing ----

func (rep *seriesReport) print(w io.Writer, markdown bool) {
	title := fmt.Sprintf("series: %s series × %d samples per call × %d calls = %s samples at 15 s, seed %d",
		groupThousands(int64(rep.Series)), rep.PerCall, rep.Calls, groupThousands(rep.Samples), rep.Seed)
	ingestHead := []string{"engine", "commit", "GOMAXPROCS", "samples/s", "call median ms", "call max ms", "settle s"}
	var ingest [][]string
	for _, r := range rep.Ingest {
		settle := fmt.Sprintf("%.2f", r.Settle)
		if r.Engine != "pluresdb" {
			settle = ""
		}
		ingest = append(ingest, []string{r.Engine, r.Mode, fmt.Sprint(r.Procs), groupThousands(int64(r.PerSec + 0.5)),
			fmt.Sprintf("%.1f", r.CallMedian), fmt.Sprintf("%.1f", r.CallMax), settle})
	}
	storageHead := []string{"engine", "what", "MiB", "bytes/sample"}
	var stor [][]string
	for _, s := range rep.Storage {
		if s.Bytes < 0 {
			stor = append(stor, []string{s.Engine, s.What, "", ""})
			continue
		}
		stor = append(stor, []string{s.Engine, s.What, fmt.Sprintf("%.1f", float64(s.Bytes)/(1<<20)),
			fmt.Sprintf("%.3f", float64(s.Bytes)/float64(rep.Samples))})
	}
	queryHead := []string{"engine", "data", "query", "samples", "median ms", "min–max ms", "ns/sample", "target"}
	var queries [][]string
	for _, q := range rep.Queries {
		per := ""
		if q.Samples > 0 {
			per = fmt.Sprintf("%.1f", q.Median/float64(q.Samples))
		}
		queries = append(queries, []string{q.Engine, q.Phase, q.Name, groupThousands(int64(q.Samples)),
			fmt.Sprintf("%.3f", q.Median/1e6), fmt.Sprintf("%.3f–%.3f", q.Min/1e6, q.Max/1e6), per, q.Target})
	}
	notes := []string{
		"a call: one Batch holding an AppendSamples of 100 samples for each series, committed (sync: one fsync per call); prometheus: one Appender, an Append per sample (series refs cached, as its scraper does), Commit; its WAL is written but not fsynced per commit (it syncs when a segment is full), so compare it with nosync.",
		"settle: Flush + WaitForCompactions after the timed calls, not in samples/s.",
		"storage: pluresdb after settle, reopen, Compact(nil, nil) + WaitForCompactions and close. Compact's range is the documents namespace only, so the series tables are as the background compactions left them (no public call compacts them). The op log keeps every operation for Options.Retention (7 days) for sync and history, so the directory holds the samples twice: once in the tables, once in the log (hot chunks of 100 samples). prometheus after its Compact (head cut into blocks; the newest part stays in the head and WAL).",
		"queries: the 1 s series are written in 24 calls of an hour each into the ingest database; unflushed: their 24 operands are in the memtable and every read folds them (over 65,535 samples the fold encodes cold, then decodes); compacted: after Compact + WaitForCompactions; here the table they were flushed to overlapped the ingest's tables, so a compaction rewrote it and the day is one cold state (the one-window rows show it: a rollup read). A table that overlaps nothing below is moved down as it is, operands and all, and is folded by every read until something rewrites it. Every answer is checked against the generated data first; times are over -series-reps runs.",
		"one window (the day): [day, day+24h) holds the day's chunk wholly, so Aggregate answers from the chunk's rollup without decoding, for every function but the quantile.",
		"prometheus AggregateSeries: its querier selects job=\"bench\" and decodes the hour, then the same timeseries.Aggregate and GroupBy as the engine's aggregate it (no PromQL engine).",
	}
	if markdown {
		fmt.Fprintf(w, "\n%s.\n\n", title)
		mdTable(w, ingestHead, ingest)
		fmt.Fprintln(w)
		mdTable(w, storageHead, stor)
		fmt.Fprintln(w)
		mdTable(w, queryHead, queries)
		fmt.Fprintln(w)
		for _, n := range append(notes, rep.Notes...) {
			fmt.Fprintln(w, "-", n)
		}
		return
	}
	fmt.Fprintf(w, "\n%s\n\n", title)
	textTable(w, ingestHead, ingest)
	fmt.Fprintln(w)
	textTable(w, storageHead, stor)
	fmt.Fprintln(w)
	textTable(w, queryHead, queries)
	fmt.Fprintln(w, "\nnotes:")
	for _, n := range append(notes, rep.Notes...) {
		fmt.Fprintln(w, "  -", n)
	}
}

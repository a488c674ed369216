package main

// This file holds fillrandom-sustained: a long random-order fill that shows
// whether an engine keeps its write rate once flushes and compactions can no
// longer keep up with the memtable, which the short fills do not reach.
//
// One goroutine puts -sustained-keys keys (default 10,000,000, about 1.1 GB
// logical) in random order, no sync, into an empty database, as fast as the
// engine takes them. Every put is timed (one monotonic clock read per put,
// tens of nanoseconds against a put's microsecond; BenchmarkTimedPut), and
// each is counted in the one-second interval in which it completed:
//
//	second:   0      1      2      3      4
//	puts:   |312k  |305k  |  0   | 41k  |298k  |.. last partial second dropped
//	                        ^ a put that blocked for 1.6 s: the interval
//	                          shows 0 and the put counts as over 100 ms and
//	                          over 1 s
//
// From those come the series (ops/s per whole second), its minimum and
// median, the longest single put and the number of puts over 100 ms and over
// 1 s, which need no help from the engine. Beside them goes the engine's own
// stall count and time, where it keeps one (the stallReporter adapters).
// Write and space amplification are taken after settle and close, like the
// other write workloads.

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

const (
	workloadSustained = "fillrandom-sustained"
	// defaultSustainedKeys is the -sustained-keys default: about 1.1 GB of
	// keys and values, several times any engine's memtables and caches.
	defaultSustainedKeys = 10_000_000
	// slowPut and stuckPut are the latency thresholds counted per put.
	slowPut  = 100 * time.Millisecond
	stuckPut = time.Second
	// progressEvery is how often a long run logs a progress line.
	progressEvery = 10
)

// extraWorkloads can be asked for with -workloads but are not in its
// default: they take long.
var extraWorkloads = []string{workloadSustained}

// knownWorkloads is every workload, in run order.
var knownWorkloads = append(slices.Clone(allWorkloads), extraWorkloads...)

// sustainedDefaultEngines are the engines fillrandom-sustained runs on
// unless -engines names others.
var sustainedDefaultEngines = []string{"pluresdb", "pebble"}

// stallReporter is implemented by the adapters whose engine counts the
// times it made a writer wait for a flush or compaction.
type stallReporter interface {
	// writeStalls returns the number of stalls and their total duration
	// since the engine was opened.
	writeStalls() (int64, time.Duration)
}

// sustainedStats is the fillrandom-sustained part of a result.
type sustainedStats struct {
	// IntervalOpsPerSec holds the puts completed in each whole second of
	// the run, in order; the last, partial second is left out.
	IntervalOpsPerSec []int64 `json:"interval_ops_per_sec"`
	// MinIntervalOpsPerSec and P50IntervalOpsPerSec are over
	// IntervalOpsPerSec; 0 when the run was shorter than a second.
	MinIntervalOpsPerSec int64 `json:"min_interval_ops_per_sec"`
	P50IntervalOpsPerSec int64 `json:"p50_interval_ops_per_sec"`
	// MaxPutSeconds is the longest single put.
	MaxPutSeconds float64 `json:"max_put_seconds"`
	PutsOver100ms int64   `json:"puts_over_100ms"`
	PutsOver1s    int64   `json:"puts_over_1s"`
	// EngineStalls and EngineStallSeconds are what the engine itself
	// reports at the end of the puts (before settle); -1 where it reports
	// nothing.
	EngineStalls       int64   `json:"engine_stalls"`
	EngineStallSeconds float64 `json:"engine_stall_seconds"`
	// SpaceAmp is the directory's size after settle and close over the
	// live logical bytes, keys × 116, uncompressed. Values compress to
	// about half, so a compact store comes out near 0.55, not 1.
	SpaceAmp float64 `json:"space_amp"`
}

// putRecorder accumulates per-put timings. It is used by one goroutine and
// allocates only when a new second starts.
type putRecorder struct {
	perSecond []int64
	maxPut    time.Duration
	slow      int64 // puts over slowPut
	stuck     int64 // puts over stuckPut
}

// record counts one put that completed at done (since the start of the run)
// after taking took.
func (r *putRecorder) record(done, took time.Duration) {
	i := int(done / time.Second)
	for len(r.perSecond) <= i {
		r.perSecond = append(r.perSecond, 0)
	}
	r.perSecond[i]++
	r.maxPut = max(r.maxPut, took)
	if took > slowPut {
		r.slow++
		if took > stuckPut {
			r.stuck++
		}
	}
}

// stats returns the statistics of a run that lasted total. Seconds in which
// no put completed count as 0; the last, partial second is dropped, since
// its count is not a rate.
func (r *putRecorder) stats(total time.Duration) sustainedStats {
	series := make([]int64, int(total/time.Second))
	copy(series, r.perSecond)
	st := sustainedStats{
		IntervalOpsPerSec:  series,
		MaxPutSeconds:      r.maxPut.Seconds(),
		PutsOver100ms:      r.slow,
		PutsOver1s:         r.stuck,
		EngineStalls:       -1,
		EngineStallSeconds: -1,
	}
	if len(series) > 0 {
		sorted := slices.Clone(series)
		slices.Sort(sorted)
		st.MinIntervalOpsPerSec = sorted[0]
		st.P50IntervalOpsPerSec = sorted[(len(sorted)-1)/2]
	}
	return st
}

// sustainedFill puts key order[j] for every j, timing each put, and returns
// the statistics the engine does not provide (stalls come from the
// engine's own counters when it has them). progress, if not nil, is called
// every progressEvery seconds with the seconds elapsed and the puts done.
func sustainedFill(e engine, order []uint32, seed uint64, progress func(sec int, puts int64)) (sustainedStats, error) {
	var rec putRecorder
	var k [keySize]byte
	var v [valueSize]byte
	nextReport := progressEvery
	// One monotonic clock read per put (time.Since reads no wall clock):
	// a put is timed from the end of the one before, so its time includes
	// making its key and value, a fraction of a microsecond.
	start := time.Now()
	var prev time.Duration
	var err error
	for j, i := range order {
		makeKey(k[:], int(i))
		makeValue(v[:], seed, int(i), 0)
		perr := e.put(k[:], v[:])
		done := time.Since(start)
		if perr != nil {
			err = fmt.Errorf("put key %d: %w", i, perr)
			break
		}
		rec.record(done, done-prev)
		prev = done
		if progress != nil && done >= time.Duration(nextReport)*time.Second {
			progress(nextReport, int64(j+1))
			nextReport += progressEvery
		}
	}
	st := rec.stats(time.Since(start))
	if sr, ok := e.(stallReporter); ok {
		n, d := sr.writeStalls()
		st.EngineStalls, st.EngineStallSeconds = n, d.Seconds()
	}
	return st, err
}

// runSustained runs fillrandom-sustained on one engine in a fresh database
// "sustained".
func runSustained(spec engineSpec, rc runConfig) (result, error) {
	n := rc.sustainedKeys
	order := permutation(n, rc.seed, streamSustained)
	var st sustainedStats
	progress := func(sec int, puts int64) {
		rc.logf("%-16s %-10s %4ds: %s puts", spec.name, workloadSustained, sec, groupThousands(puts))
	}
	r, err := writePhase(spec, rc, workloadSustained, "sustained", engineConfig{cache: rc.cache}, true, func(e engine) error {
		var err error
		st, err = sustainedFill(e, order, rc.seed, progress)
		return err
	})
	r.Workload, r.Ops, r.LogicalBytes = workloadSustained, int64(n), int64(n)*(keySize+valueSize)
	if r.DiskBytes > 0 {
		st.SpaceAmp = float64(r.DiskBytes) / float64(r.LogicalBytes)
	}
	r.Sustained = &st
	return finish(withErr(r, err)), err
}

// ---- printing ----

// sustainedHeader is the header of the fillrandom-sustained table.
var sustainedHeader = []string{"engine", "ops/s", "min 1s", "p50 1s", "stalls", "stall s", "max put s", ">100ms", ">1s", "space amp"}

var sustainedNotes = []string{
	"min 1s / p50 1s: the slowest and the median of the puts completed per whole second (the last, partial second left out).",
	"stalls / stall s: the engine's own count and time of writes made to wait for a flush or compaction, at the end of the puts; n/a where it keeps none " +
		"(pluresdb Metrics().Stalls/StallTime; pebble WriteStallBegin/End events, time while any writer was stalled; goleveldb Stats WriteDelayCount/Duration, which include its 1 ms L0 slowdowns).",
	"max put s, >100ms, >1s: the longest single put and the puts that took over 100 ms and over 1 s, timed by the harness from the end of one put to the end of the next.",
	"space amp = disk after settle and close ÷ (keys × 116 bytes, the live logical bytes, uncompressed); values compress to about half, so ~0.55 is compact.",
	"per-second rows: puts completed in each second, in thousands; the bar has one mark per second (· for none) scaled to the run's best second.",
}

func sustainedRows(rep report, engines []engineSpec) []result {
	var out []result
	for _, spec := range engines {
		for _, r := range rep.Results {
			if r.Workload == workloadSustained && r.Engine == spec.name && r.Sustained != nil && r.Err == "" {
				out = append(out, r)
			}
		}
	}
	return out
}

func sustainedCells(r result) []string {
	st := r.Sustained
	stalls, stallSec := "n/a", "n/a"
	if st.EngineStalls >= 0 {
		stalls = groupThousands(st.EngineStalls)
		stallSec = fmt.Sprintf("%.3f", st.EngineStallSeconds)
	}
	rate := func(n int64) string {
		if len(st.IntervalOpsPerSec) == 0 {
			return "n/a"
		}
		return groupThousands(n)
	}
	return []string{
		r.Engine,
		groupThousands(int64(r.OpsPerSec + 0.5)),
		rate(st.MinIntervalOpsPerSec),
		rate(st.P50IntervalOpsPerSec),
		stalls,
		stallSec,
		fmt.Sprintf("%.3f", st.MaxPutSeconds),
		groupThousands(st.PutsOver100ms),
		groupThousands(st.PutsOver1s),
		fmt.Sprintf("%.2f", st.SpaceAmp),
	}
}

// printSustained writes the fillrandom-sustained section: a table of the
// stall figures and each engine's per-second series. It writes nothing if
// the workload did not run.
func printSustained(w io.Writer, rep report, engines []engineSpec, markdown bool) {
	rs := sustainedRows(rep, engines)
	if len(rs) == 0 {
		return
	}
	title := fmt.Sprintf("%s: %s keys in random order, one goroutine, no sync, into an empty database", workloadSustained, groupThousands(int64(rep.SustainedKeys)))
	if markdown {
		fmt.Fprintf(w, "\n%s.\n\n", title)
		fmt.Fprintf(w, "| %s |\n", strings.Join(sustainedHeader, " | "))
		fmt.Fprintf(w, "|:--%s|\n", strings.Repeat("|--:", len(sustainedHeader)-1))
		for _, r := range rs {
			fmt.Fprintf(w, "| %s |\n", strings.Join(sustainedCells(r), " | "))
		}
		fmt.Fprintln(w)
		for _, n := range sustainedNotes {
			fmt.Fprintln(w, "-", n)
		}
		fmt.Fprintln(w, "\n```")
		for _, r := range rs {
			writeSeries(w, r.Engine, r.Sustained.IntervalOpsPerSec)
		}
		fmt.Fprintln(w, "```")
		return
	}
	fmt.Fprintf(w, "\n%s:\n\n", title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-16s\t%s\t\n", sustainedHeader[0], strings.Join(sustainedHeader[1:], "\t"))
	for _, r := range rs {
		cs := sustainedCells(r)
		fmt.Fprintf(tw, "%-16s\t%s\t\n", cs[0], strings.Join(cs[1:], "\t"))
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rs {
		writeSeries(w, r.Engine, r.Sustained.IntervalOpsPerSec)
	}
	fmt.Fprintln(w, "\nnotes:")
	for _, n := range sustainedNotes {
		fmt.Fprintln(w, "  -", n)
	}
}

// seriesPerLine is how many seconds one line of numbers holds.
const seriesPerLine = 20

// sparkMax is the widest bar; longer runs fold several seconds into one
// mark, showing the slowest of them so a stall stays visible.
const sparkMax = 100

// writeSeries writes an engine's per-second series as a bar and as rows of
// numbers in thousands, each row led by the second it starts at:
//
//	pluresdb  ▇▇▆·▂▇
//	     0s  312 305 298 0 41 298
func writeSeries(w io.Writer, engine string, series []int64) {
	if len(series) == 0 {
		fmt.Fprintf(w, "%s: shorter than one second, no per-second series\n", engine)
		return
	}
	fmt.Fprintf(w, "%s: k puts per second%s\n", engine, sparkNote(len(series)))
	fmt.Fprintf(w, "  %s\n", sparkline(series))
	for off := 0; off < len(series); off += seriesPerLine {
		var b strings.Builder
		fmt.Fprintf(&b, "  %5ds ", off)
		for _, n := range series[off:min(off+seriesPerLine, len(series))] {
			fmt.Fprintf(&b, " %d", (n+500)/1000)
		}
		fmt.Fprintln(w, b.String())
	}
}

func sparkNote(n int) string {
	if per := sparkFold(n); per > 1 {
		return fmt.Sprintf(" (bar: one mark per %d s, the slowest of them)", per)
	}
	return ""
}

// sparkFold is how many seconds one mark of the bar covers.
func sparkFold(n int) int { return (n + sparkMax - 1) / sparkMax }

var sparkMarks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws series as one mark per sparkFold seconds (the minimum of
// them), scaled to the series' maximum; a mark for zero puts is "·".
func sparkline(series []int64) string {
	per := sparkFold(len(series))
	var folded []int64
	for off := 0; off < len(series); off += per {
		folded = append(folded, slices.Min(series[off:min(off+per, len(series))]))
	}
	top := slices.Max(folded)
	var b strings.Builder
	for _, n := range folded {
		if n <= 0 || top <= 0 {
			b.WriteRune('·')
			continue
		}
		i := int(n * int64(len(sparkMarks)) / (top + 1))
		b.WriteRune(sparkMarks[i])
	}
	return b.String()
}

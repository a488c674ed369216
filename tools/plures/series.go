package main

// series.go: `plures series list|samples|aggregate`, the time series of a
// database (ARCHITECTURE.md, "Time series: from the command line"), over
// a read-only open. Everything the command line says is checked before
// the database is opened: a bad selector, series name, time, duration or
// function is a usage error (exit status 2); a selector or series that
// matches nothing prints nothing.

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/timeseries"
)

// seriesHelp is the part of the usage on series.
const seriesHelp = `
Series (plures series):
  SELECTOR  cpu, cpu{host=~"a.*",core!="3"}, {job="node"}: every series with
            those labels (a label matched against "" also takes the series
            without it: cpu{core=""} is cpu without a core); list's
            default {__name__=~".*"} is every series
  SERIES    one series: its metric name and labels, cpu{host="a",core="3"}
  T         RFC 3339 (2026-01-02T15:04:05.123Z) or milliseconds since the
            epoch; [-from, -to) holds from, not to; default: every sample
  DUR       a Go duration, whole milliseconds: 15s, 5m, 1h30m, 24h
  FN        min, max, sum, count, avg, first, last, rate (per second,
            counter resets handled), quantile(Q) with Q in [0, 1]
  Samples print as "TIME  VALUE": TIME in RFC 3339 with milliseconds, UTC
  (milliseconds since the epoch outside the years 0 to 9999), VALUE as it
  reads back exactly (NaN, +Inf, -Inf spelled out). A selector or series
  that matches nothing prints nothing: an empty result, exit status 0.
  aggregate: one window per -step (none: one window over the range),
  starting at -from, or without it at the earliest sample rounded down to
  a multiple of -step (windows aligned to the epoch); a window without a
  value prints nothing. A selector that matches one series, without -by
  or -across, prints that series' windows; otherwise the series are
  grouped by the labels in -by (none: one group) and, per window, their
  values combined by -across (default FN, but sum for count; first and
  last need -across), as "GROUP  TIME  VALUE".
  -json: list {"series","labels"}; samples {"t","time","value"} (t in
  milliseconds, time omitted where the text prints milliseconds);
  aggregate adds "series" (one series) or "group" (the group's labels).
  Values are JSON strings as the text prints them, so NaN and Inf pass.
`

// allSeries is the selector of every series: a matcher that matches ""
// also takes the series without the label, so even a series without a
// metric name.
const allSeries = `{__name__=~".*"}`

// seriesCacheSize is the block cache of a series command's open: a walk
// reads each block once, so a large cache would only grow with the range
// read (the default is a sixteenth of the memory).
const seriesCacheSize = 8 << 20

// openSeries opens dir read-only for a series command.
func openSeries(dir string) (*pluresdb.DB, error) {
	return pluresdb.Open(dir, &pluresdb.Options{ReadOnly: true, CacheSize: seriesCacheSize})
}

// seriesCommand runs `plures series SUBCOMMAND ...`.
func seriesCommand(args []string, stdout io.Writer) error {
	if len(args) < 1 {
		return usageErrorf("usage: plures series list|samples|aggregate ... (plures help)")
	}
	bw := bufio.NewWriter(stdout)
	var err error
	switch args[0] {
	case "list":
		err = seriesList(args[1:], bw)
	case "samples":
		err = seriesSamples(args[1:], bw)
	case "aggregate":
		err = seriesAggregate(args[1:], bw)
	case "-h", "--help", "help":
		return flag.ErrHelp
	default:
		return usageErrorf("unknown series command %q (list, samples, aggregate)", args[0])
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return err
}

// seriesFlags returns a flag set for a series command; parse errors are
// returned, not printed.
func seriesFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("series "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// labelsJSON is a series' labels as a JSON object, the metric name under
// __name__.
func labelsJSON(ls timeseries.Labels) map[string]string {
	m := make(map[string]string, len(ls))
	for _, l := range ls {
		m[l.Name] = l.Value
	}
	return m
}

// seriesList runs `plures series list [-json] DIR [SELECTOR]`.
func seriesList(args []string, w io.Writer) error {
	fs := seriesFlags("list")
	asJSON := fs.Bool("json", false, "print JSON lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return usageErrorf("usage: plures series list [-json] DIR [SELECTOR]")
	}
	selector := allSeries
	if fs.NArg() == 2 {
		selector = fs.Arg(1)
	}
	if _, err := timeseries.ParseSelector(selector); err != nil {
		return &usageError{err}
	}
	db, err := openSeries(fs.Arg(0))
	if err != nil {
		return err
	}
	defer db.Close()
	names, err := db.SelectSeries(selector)
	if err != nil {
		return err
	}
	p := &printer{w: w, json: *asJSON}
	for _, name := range names {
		ls, err := timeseries.ParseSeries(name)
		if err != nil { // the engine keeps canonical names only
			return fmt.Errorf("%w: the series index holds %q: %w", pluresdb.ErrCorruption, name, err)
		}
		p.print(struct {
			Series string            `json:"series"`
			Labels map[string]string `json:"labels"`
		}{name, labelsJSON(ls)}, name)
	}
	return p.err
}

// sampleJSON is a sample as samples and aggregate print it.
type sampleJSON struct {
	Series string `json:"series,omitempty"`
	Group  any    `json:"group,omitempty"` // the group's labels, {} for one group of all
	T      int64  `json:"t"`
	Time   string `json:"time,omitempty"`
	Value  string `json:"value"`
}

// sampleOut returns a sample's JSON and text ("TIME  VALUE").
func sampleOut(s timeseries.Sample) (sampleJSON, string) {
	tm, ok := formatTime(s.T)
	j := sampleJSON{T: s.T, Value: formatValue(s.V)}
	if ok {
		j.Time = tm
	}
	return j, tm + "  " + j.Value
}

// formatTime returns t (milliseconds since the epoch) in RFC 3339 with
// milliseconds, UTC, and true; outside the years 0 to 9999, which RFC
// 3339 cannot write, the milliseconds, which parseTime reads back, and
// false.
func formatTime(t int64) (string, bool) {
	b, ok := appendTime(nil, t)
	return string(b), ok
}

// appendTime appends formatTime's text.
func appendTime(dst []byte, t int64) ([]byte, bool) {
	tm := time.UnixMilli(t).UTC()
	if y := tm.Year(); y < 0 || y > 9999 {
		return strconv.AppendInt(dst, t, 10), false
	}
	return tm.AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00"), true
}

// formatValue writes v so that it parses back to the same float64 (NaN,
// +Inf and -Inf spelled out, -0 kept).
func formatValue(v float64) string {
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// parseTime reads a -from or -to: milliseconds since the epoch, or RFC
// 3339 to the millisecond; within [timeseries.MinTime, MaxTime].
func parseTime(name, s string) (int64, error) {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil && errors.Is(err, strconv.ErrRange) {
		return 0, usageErrorf("-%s %s: outside [%d, %d] milliseconds", name, s, int64(timeseries.MinTime), int64(timeseries.MaxTime))
	}
	if err != nil {
		tm, perr := time.Parse(time.RFC3339Nano, s)
		if perr != nil {
			return 0, usageErrorf("-%s %q: want RFC 3339 (2026-01-02T15:04:05.123Z) or milliseconds since the epoch", name, s)
		}
		if tm.Nanosecond()%int(time.Millisecond) != 0 {
			return 0, usageErrorf("-%s %q: finer than a millisecond", name, s)
		}
		ms = tm.UnixMilli()
	}
	if ms < timeseries.MinTime || ms > timeseries.MaxTime {
		return 0, usageErrorf("-%s %s: outside [%d, %d] milliseconds", name, s, int64(timeseries.MinTime), int64(timeseries.MaxTime))
	}
	return ms, nil
}

// timeRange reads -from and -to ("": unbounded) into [from, to); to
// past MaxTime takes a sample at MaxTime too.
func timeRange(fromS, toS string) (from, to int64, err error) {
	from, to = timeseries.MinTime, timeseries.MaxTime+1
	if fromS != "" {
		if from, err = parseTime("from", fromS); err != nil {
			return 0, 0, err
		}
	}
	if toS != "" {
		if to, err = parseTime("to", toS); err != nil {
			return 0, 0, err
		}
	}
	if from > to {
		return 0, 0, usageErrorf("-from %s is after -to %s", fromS, toS)
	}
	return from, to, nil
}

// seriesSamples runs `plures series samples [-json] [-from T] [-to T] DIR
// SERIES`, streaming a chunk at a time.
func seriesSamples(args []string, w io.Writer) error {
	fs := seriesFlags("samples")
	asJSON := fs.Bool("json", false, "print JSON lines")
	fromS := fs.String("from", "", "the first `time` (RFC 3339 or milliseconds; default: the first sample)")
	toS := fs.String("to", "", "the `time` to stop before (default: past the last sample)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageErrorf("usage: plures series samples [-json] [-from T] [-to T] DIR SERIES")
	}
	from, to, err := timeRange(*fromS, *toS)
	if err != nil {
		return err
	}
	series := fs.Arg(1)
	if _, err := timeseries.Canonical(series); err != nil {
		return &usageError{err}
	}
	db, err := openSeries(fs.Arg(0))
	if err != nil {
		return err
	}
	defer db.Close()
	// Lines are appended to buf, written every 64 KiB: no allocation per
	// sample.
	var buf []byte
	err = db.IterateSamples(series, from, to, func(ss []timeseries.Sample) error {
		for _, s := range ss {
			buf = appendSample(buf, s, *asJSON)
			if len(buf) >= 64<<10 {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	_, err = w.Write(buf)
	return err
}

// appendSample appends a sample's line as samples prints it: the text of
// sampleOut, or its JSON as json.Marshal writes it (no field needs
// escaping: t is a number, time and value ASCII letters, digits and
// punctuation).
func appendSample(dst []byte, s timeseries.Sample, asJSON bool) []byte {
	if !asJSON {
		dst, _ = appendTime(dst, s.T)
		dst = append(dst, "  "...)
		dst = strconv.AppendFloat(dst, s.V, 'g', -1, 64)
		return append(dst, '\n')
	}
	dst = append(dst, `{"t":`...)
	dst = strconv.AppendInt(dst, s.T, 10)
	n := len(dst)
	dst = append(dst, `,"time":"`...)
	dst, ok := appendTime(dst, s.T)
	if ok {
		dst = append(dst, '"')
	} else { // no time field: t says it
		dst = dst[:n]
	}
	dst = append(dst, `,"value":"`...)
	dst = strconv.AppendFloat(dst, s.V, 'g', -1, 64)
	return append(dst, "\"}\n"...)
}

// parseAgg reads a function: min, max, sum, count, avg, first, last,
// rate or quantile(Q), Q in [0, 1].
func parseAgg(name, s string) (timeseries.Agg, error) {
	switch f := strings.ToLower(strings.TrimSpace(s)); f {
	case "min":
		return timeseries.Min, nil
	case "max":
		return timeseries.Max, nil
	case "sum":
		return timeseries.Sum, nil
	case "count":
		return timeseries.Count, nil
	case "avg":
		return timeseries.Avg, nil
	case "first":
		return timeseries.First, nil
	case "last":
		return timeseries.Last, nil
	case "rate":
		return timeseries.Rate, nil
	default:
		if arg, ok := strings.CutPrefix(f, "quantile("); ok {
			if arg, ok := strings.CutSuffix(arg, ")"); ok {
				q, err := strconv.ParseFloat(strings.TrimSpace(arg), 64)
				if err == nil && q >= 0 && q <= 1 { // NaN fails both
					return timeseries.Quantile(q), nil
				}
				return 0, usageErrorf("-%s %q: the quantile must be a number in [0, 1]", name, s)
			}
		}
	}
	return 0, usageErrorf("-%s %q: want min, max, sum, count, avg, first, last, rate or quantile(Q)", name, s)
}

// parseStep reads -step: a Go duration of whole milliseconds, 0 (one
// window) or more.
func parseStep(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, usageErrorf("-step %q: want a duration such as 15s, 5m, 1h30m, 24h", s)
	}
	if d < 0 {
		return 0, usageErrorf("-step %q: negative", s)
	}
	if d%time.Millisecond != 0 {
		return 0, usageErrorf("-step %q: not a whole number of milliseconds", s)
	}
	return d.Milliseconds(), nil // at most 2^63 ns: well below MaxTime ms
}

// parseBy reads -by: label names separated by commas ("": one group).
func parseBy(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var by []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		// A matcher checks the name as a label name, __name__ included.
		if _, err := timeseries.NewMatcher(timeseries.MatchEqual, name, ""); err != nil || name == "" {
			return nil, usageErrorf("-by %q: %q is not a label name", s, name)
		}
		by = append(by, name)
	}
	return by, nil
}

// alignDown returns the largest multiple of step at or below t (t when
// step is 0). t >= MinTime and step <= MaxTime: no overflow.
func alignDown(t, step int64) int64 {
	if step <= 0 {
		return t
	}
	r := t % step
	if r < 0 {
		r += step
	}
	return t - r
}

// errFirstFound stops a walk at the first chunk.
var errFirstFound = errors.New("first sample found")

// earliest returns the time of the earliest sample of the series names,
// false if they have none: the first chunk of each.
func earliest(db *pluresdb.DB, names []string, to int64) (int64, bool, error) {
	var first int64
	found := false
	for _, name := range names {
		err := db.IterateSamples(name, timeseries.MinTime, to, func(ss []timeseries.Sample) error {
			if len(ss) == 0 {
				return nil
			}
			if !found || ss[0].T < first {
				first, found = ss[0].T, true
			}
			return errFirstFound
		})
		if err != nil && !errors.Is(err, errFirstFound) {
			return 0, false, err
		}
	}
	return first, found, nil
}

// seriesAggregate runs `plures series aggregate [-json] -fn FN [-step
// DUR] [-from T] [-to T] [-by L1,L2] [-across FN] DIR SELECTOR`.
func seriesAggregate(args []string, w io.Writer) error {
	fs := seriesFlags("aggregate")
	asJSON := fs.Bool("json", false, "print JSON lines")
	fnS := fs.String("fn", "", "the `function` over time: min, max, sum, count, avg, first, last, rate, quantile(Q)")
	stepS := fs.String("step", "", "the window `duration` (default: one window)")
	fromS := fs.String("from", "", "the first window's start `time` (default: the first sample, aligned to the step)")
	toS := fs.String("to", "", "the `time` to stop before (default: past the last sample)")
	byS := fs.String("by", "", "group the series by these `labels`, separated by commas")
	acrossS := fs.String("across", "", "the `function` across the series of a group (default: -fn; sum for count)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageErrorf("usage: plures series aggregate [-json] -fn FN [-step DUR] [-from T] [-to T] [-by L1,L2] [-across FN] DIR SELECTOR")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["fn"] {
		return usageErrorf("series aggregate: -fn is required")
	}
	fn, err := parseAgg("fn", *fnS)
	if err != nil {
		return err
	}
	step, err := parseStep(*stepS)
	if err != nil {
		return err
	}
	from, to, err := timeRange(*fromS, *toS)
	if err != nil {
		return err
	}
	by, err := parseBy(*byS)
	if err != nil {
		return err
	}
	across := fn
	if fn == timeseries.Count {
		across = timeseries.Sum // the samples of the group's windows, not its series
	}
	if set["across"] {
		if across, err = parseAgg("across", *acrossS); err != nil {
			return err
		}
	}
	selector := fs.Arg(1)
	if _, err := timeseries.ParseSelector(selector); err != nil {
		return &usageError{err}
	}
	if set["across"] && (across == timeseries.First || across == timeseries.Last) {
		return usageErrorf("-across %s: first and last have no meaning across series", *acrossS)
	}

	db, err := openSeries(fs.Arg(0))
	if err != nil {
		return err
	}
	defer db.Close()
	names, err := db.SelectSeries(selector)
	if err != nil {
		return err
	}
	grouped := set["by"] || set["across"] || len(names) > 1
	if grouped && (across == timeseries.First || across == timeseries.Last) {
		return usageErrorf("-fn %s over %d series: give -across to combine them", fn, len(names))
	}
	if !set["from"] {
		first, ok, err := earliest(db, names, to)
		if err != nil {
			return err
		}
		if !ok {
			return nil // no samples: an empty result
		}
		from = alignDown(first, step)
	}
	p := &printer{w: w, json: *asJSON}
	if !grouped {
		if len(names) == 0 {
			return nil
		}
		samples, err := db.Aggregate(names[0], from, to, step, fn)
		if err != nil {
			return err
		}
		for _, s := range samples {
			j, text := sampleOut(s)
			j.Series = names[0]
			p.print(j, text)
		}
		return p.err
	}
	groups, err := db.AggregateSeries(selector, from, to, step, fn, by, across)
	if err != nil {
		return err
	}
	for _, g := range groups {
		name := g.Labels.String()
		for _, s := range g.Samples {
			j, text := sampleOut(s)
			j.Group = labelsJSON(g.Labels)
			p.print(j, name+"  "+text)
		}
	}
	return p.err
}

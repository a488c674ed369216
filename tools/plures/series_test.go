package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/timeseries"
)

// tsBase is the first sample's time: 2026-01-02T00:00:00Z.
var tsBase = time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC).UnixMilli()

const (
	seriesA    = `http_requests_total{code="200",host="a"}`
	seriesB    = `http_requests_total{code="200",host="b"}`
	seriesTemp = `temp{room="kitchen"}`
	seriesJob  = `{job="node"}`
)

// tempSamples are a gauge's samples, special values included.
var tempSamples = []timeseries.Sample{
	{T: tsBase, V: 21.5},
	{T: tsBase + 1_000, V: math.NaN()},
	{T: tsBase + 2_000, V: math.Inf(1)},
	{T: tsBase + 3_000, V: math.Copysign(0, -1)},
	{T: tsBase + 4_000, V: math.Inf(-1)},
	{T: tsBase + 5_123, V: 0.1},
	{T: tsBase + 6_000, V: -3e-300},
}

// buildSeriesDB writes a database with two counters (one with a reset)
// spanning two days, a gauge with NaN and infinities, and a series with
// labels but no metric name; part flushed to a table, part in the log
// only; closed cleanly.
func buildSeriesDB(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "db")
	db, err := pluresdb.Open(dir, &pluresdb.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Counters every 15 s from 22:00 the day before the base to 02:00
	// after it: two chunks. a resets at the base; b climbs by 2.
	var a, b []timeseries.Sample
	ca := 0.0
	for i := range 4 * 60 * 4 {
		ts := tsBase - 2*3600_000 + int64(i)*15_000
		if ts == tsBase {
			ca = 0
		}
		ca += float64(i % 7)
		a = append(a, timeseries.Sample{T: ts, V: ca})
		b = append(b, timeseries.Sample{T: ts, V: float64(2 * i)})
	}
	must(db.AppendSamples(seriesA, a[:500]...))
	must(db.AppendSamples(seriesB, b...))
	must(db.AppendSamples(seriesTemp, tempSamples...))
	must(db.Flush())
	must(db.AppendSamples(seriesA, a[500:]...)) // in the log only
	must(db.AppendSamples(seriesJob, timeseries.Sample{T: tsBase, V: 1}, timeseries.Sample{T: tsBase + 60_000, V: 0}))
	must(db.Close())
	return dir
}

// withDB runs fn on dir opened read-only, for the expected answers, and
// closes it: an open database is locked, to the commands too.
func withDB(t *testing.T, dir string, fn func(db *pluresdb.DB) error) {
	t.Helper()
	db, err := pluresdb.Open(dir, &pluresdb.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	err = fn(db)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// textOf formats samples as the commands print them, each line after
// prefix.
func textOf(prefix string, ss []timeseries.Sample) string {
	var b strings.Builder
	for _, s := range ss {
		tm, _ := formatTime(s.T)
		fmt.Fprintf(&b, "%s%s  %s\n", prefix, tm, strconv.FormatFloat(s.V, 'g', -1, 64))
	}
	return b.String()
}

func rfc(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func TestSeriesList(t *testing.T) {
	dir := buildSeriesDB(t)
	before := dirDigest(t, dir)

	want := seriesA + "\n" + seriesB + "\n" + seriesTemp + "\n" + seriesJob + "\n"
	if got := run(t, seriesCommand, "list", dir); got != want {
		t.Fatalf("list:\n%s\nwant:\n%s", got, want)
	}
	if got := run(t, seriesCommand, "list", dir, `http_requests_total{host=~"b|c"}`); got != seriesB+"\n" {
		t.Fatalf("list host=~b|c: %q", got)
	}
	if got := run(t, seriesCommand, "list", dir, `{job!=""}`); got != seriesJob+"\n" {
		t.Fatalf("list job!=\"\": %q", got)
	}
	if got := run(t, seriesCommand, "list", dir, `nosuch`); got != "" {
		t.Fatalf("list of a selector matching nothing: %q", got)
	}

	objs := jsonLines(t, run(t, seriesCommand, "list", "-json", dir))
	wantJSON := []string{
		`map[labels:map[__name__:http_requests_total code:200 host:a] series:` + seriesA + `]`,
		`map[labels:map[__name__:http_requests_total code:200 host:b] series:` + seriesB + `]`,
		`map[labels:map[__name__:temp room:kitchen] series:` + seriesTemp + `]`,
		`map[labels:map[job:node] series:` + seriesJob + `]`,
	}
	if len(objs) != len(wantJSON) {
		t.Fatalf("list -json: %d objects, want %d", len(objs), len(wantJSON))
	}
	for i, o := range objs {
		if got := fmt.Sprint(o); got != wantJSON[i] {
			t.Fatalf("list -json line %d: %s, want %s", i, got, wantJSON[i])
		}
	}
	if after := dirDigest(t, dir); after != before {
		t.Fatal("series list changed the database directory")
	}
}

func TestSeriesSamples(t *testing.T) {
	dir := buildSeriesDB(t)
	before := dirDigest(t, dir)

	// The gauge, by hand: every special value spelled out.
	want := rfc(tsBase) + "  21.5\n" +
		rfc(tsBase+1000) + "  NaN\n" +
		rfc(tsBase+2000) + "  +Inf\n" +
		rfc(tsBase+3000) + "  -0\n" +
		rfc(tsBase+4000) + "  -Inf\n" +
		rfc(tsBase+5123) + "  0.1\n" +
		rfc(tsBase+6000) + "  -3e-300\n"
	if got := run(t, seriesCommand, "samples", dir, seriesTemp); got != want {
		t.Fatalf("samples:\n%s\nwant:\n%s", got, want)
	}
	if !strings.HasPrefix(want, "2026-01-02T00:00:00.000Z  21.5\n") {
		t.Fatalf("time format: %q", want)
	}
	// Labels in any order name the same series; [from, to) in both
	// spellings of a time.
	got := run(t, seriesCommand, "samples", "-from", "2026-01-02T00:00:02Z", "-to", strconv.FormatInt(tsBase+5123, 10),
		dir, `temp{ room = "kitchen" }`)
	if want := rfc(tsBase+2000) + "  +Inf\n" + rfc(tsBase+3000) + "  -0\n" + rfc(tsBase+4000) + "  -Inf\n"; got != want {
		t.Fatalf("samples -from -to:\n%s\nwant:\n%s", got, want)
	}
	if got := run(t, seriesCommand, "samples", "-from", "2026-01-02T01:00:00+01:00", "-to", "2026-01-02T00:00:01.001Z", dir, seriesTemp); got != rfc(tsBase)+"  21.5\n"+rfc(tsBase+1000)+"  NaN\n" {
		t.Fatalf("samples with an offset and milliseconds: %q", got)
	}

	// JSON: values as strings that parse back to the same bits (NaN to a
	// NaN).
	objs := jsonLines(t, run(t, seriesCommand, "samples", "-json", dir, seriesTemp))
	if len(objs) != len(tempSamples) {
		t.Fatalf("samples -json: %d lines", len(objs))
	}
	for i, o := range objs {
		s := tempSamples[i]
		if o["t"] != float64(s.T) || o["time"] != rfc(s.T) || len(o) != 3 {
			t.Fatalf("samples -json line %d: %v", i, o)
		}
		v, err := strconv.ParseFloat(o["value"].(string), 64)
		if err != nil || math.Float64bits(v) != math.Float64bits(s.V) && !(math.IsNaN(v) && math.IsNaN(s.V)) {
			t.Fatalf("samples -json line %d: value %v, want %v", i, o["value"], s.V)
		}
	}

	// The counters across two chunks, one of them partly in the log
	// only: what QuerySamples returns, in order.
	for _, name := range []string{seriesA, seriesB} {
		var all []timeseries.Sample
		withDB(t, dir, func(db *pluresdb.DB) (err error) {
			all, err = db.QuerySamples(name, timeseries.MinTime, timeseries.MaxTime+1)
			return err
		})
		if len(all) != 960 {
			t.Fatalf("%s: %d samples stored", name, len(all))
		}
		if got := run(t, seriesCommand, "samples", dir, name); got != textOf("", all) {
			t.Fatalf("samples %s differ from QuerySamples", name)
		}
		if n := len(jsonLines(t, run(t, seriesCommand, "samples", "-json", dir, name))); n != len(all) {
			t.Fatalf("samples -json %s: %d lines", name, n)
		}
	}

	// No such series: nothing.
	if got := run(t, seriesCommand, "samples", dir, `temp{room="cellar"}`); got != "" {
		t.Fatalf("samples of a missing series: %q", got)
	}
	if after := dirDigest(t, dir); after != before {
		t.Fatal("series samples changed the database directory")
	}
}

func TestSeriesAggregate(t *testing.T) {
	dir := buildSeriesDB(t)
	before := dirDigest(t, dir)
	const maxTo = timeseries.MaxTime + 1
	first := tsBase - 2*3600_000 // the counters' first sample

	// By hand: the gauge in one window, stamped with its first sample.
	for fn, want := range map[string]string{
		"max":           "+Inf", // NaN ignored
		"min":           "-Inf",
		"count":         "7",
		"sum":           "NaN",
		"first":         "21.5",
		"last":          "-3e-300",
		"quantile(0.5)": "-0", // NaN, -Inf, -3e-300, -0, 0.1, 21.5, +Inf
		"quantile(0)":   "NaN",
	} {
		if got := run(t, seriesCommand, "aggregate", "-fn", fn, dir, seriesTemp); got != rfc(tsBase)+"  "+want+"\n" {
			t.Fatalf("aggregate -fn %s: %q, want %s", fn, got, want)
		}
	}

	// Against db.Aggregate: windows aligned to the epoch without -from,
	// at -from with it.
	cases := []struct {
		args     []string
		series   string
		from, to int64
		step     int64
		fn       timeseries.Agg
	}{
		{[]string{"-fn", "rate", "-step", "1h"}, seriesA, first, maxTo, 3600_000, timeseries.Rate},
		{[]string{"-fn", "quantile(0.99)", "-step", "7m"}, seriesA, first - first%(7*60_000), maxTo, 7 * 60_000, timeseries.Quantile(0.99)},
		{[]string{"-fn", "avg", "-step", "25m", "-from", rfc(first + 60_000), "-to", rfc(tsBase + 3600_000)}, seriesB, first + 60_000, tsBase + 3600_000, 25 * 60_000, timeseries.Avg},
		{[]string{"-fn", "sum"}, seriesB, first, maxTo, 0, timeseries.Sum},
		{[]string{"-fn", "last", "-step", "24h"}, seriesA, first - first%(24*3600_000), maxTo, 24 * 3600_000, timeseries.Last},
	}
	for _, c := range cases {
		var want []timeseries.Sample
		withDB(t, dir, func(db *pluresdb.DB) (err error) {
			want, err = db.Aggregate(c.series, c.from, c.to, c.step, c.fn)
			return err
		})
		if len(want) == 0 {
			t.Fatalf("%v: no windows to compare", c.args)
		}
		args := append(append([]string{"aggregate"}, c.args...), dir, c.series)
		if got := run(t, seriesCommand, args...); got != textOf("", want) {
			t.Fatalf("%v:\n%s\nwant:\n%s", c.args, got, textOf("", want))
		}
		args = append(append([]string{"aggregate", "-json"}, c.args...), dir, c.series)
		objs := jsonLines(t, run(t, seriesCommand, args...))
		if len(objs) != len(want) {
			t.Fatalf("%v -json: %d lines, want %d", c.args, len(objs), len(want))
		}
		for i, o := range objs {
			if o["series"] != c.series || o["t"] != float64(want[i].T) || o["value"] != formatValue(want[i].V) || o["group"] != nil {
				t.Fatalf("%v -json line %d: %v, want %v", c.args, i, o, want[i])
			}
		}
	}
	// The rate's windows by hand: b climbs 2 per 15 s.
	if got := run(t, seriesCommand, "aggregate", "-fn", "rate", "-step", "1h", "-from", rfc(tsBase), "-to", rfc(tsBase+2*3600_000), dir, seriesB); got != rfc(tsBase)+"  0.13333333333333333\n"+rfc(tsBase+3600_000)+"  0.13333333333333333\n" {
		t.Fatalf("rate of b: %q", got)
	}

	// Groups: against db.AggregateSeries.
	groupCases := []struct {
		args     []string
		selector string
		step     int64
		fn       timeseries.Agg
		by       []string
		across   timeseries.Agg
	}{
		{[]string{"-fn", "rate", "-step", "1h", "-by", "host"}, "http_requests_total", 3600_000, timeseries.Rate, []string{"host"}, timeseries.Rate},
		{[]string{"-fn", "max", "-step", "1h"}, "http_requests_total", 3600_000, timeseries.Max, nil, timeseries.Max},
		{[]string{"-fn", "count", "-step", "6h", "-by", "code,__name__"}, `{__name__=~".+"}`, 6 * 3600_000, timeseries.Count, []string{"code", "__name__"}, timeseries.Sum},
		{[]string{"-fn", "last", "-across", "quantile(0.5)", "-step", "2h"}, `http_requests_total{host="a"}`, 2 * 3600_000, timeseries.Last, nil, timeseries.Quantile(0.5)},
	}
	for _, c := range groupCases {
		from := first - first%c.step
		var want []timeseries.SeriesResult
		withDB(t, dir, func(db *pluresdb.DB) (err error) {
			want, err = db.AggregateSeries(c.selector, from, maxTo, c.step, c.fn, c.by, c.across)
			return err
		})
		var text strings.Builder
		n := 0
		for _, g := range want {
			text.WriteString(textOf(g.Labels.String()+"  ", g.Samples))
			n += len(g.Samples)
		}
		if n == 0 {
			t.Fatalf("%v: no windows to compare", c.args)
		}
		args := append(append([]string{"aggregate"}, c.args...), dir, c.selector)
		if got := run(t, seriesCommand, args...); got != text.String() {
			t.Fatalf("%v:\n%s\nwant:\n%s", c.args, got, text.String())
		}
		args = append(append([]string{"aggregate", "-json"}, c.args...), dir, c.selector)
		objs := jsonLines(t, run(t, seriesCommand, args...))
		if len(objs) != n {
			t.Fatalf("%v -json: %d lines, want %d", c.args, len(objs), n)
		}
		i := 0
		for _, g := range want {
			for _, s := range g.Samples {
				o := objs[i]
				if fmt.Sprint(o["group"]) != fmt.Sprint(labelsJSON(g.Labels)) || o["t"] != float64(s.T) || o["value"] != formatValue(s.V) || o["series"] != nil {
					t.Fatalf("%v -json line %d: %v", c.args, i, o)
				}
				i++
			}
		}
	}
	// By hand: the two counters' max per day, one group: a's sum of i%7
	// for i < 480 (b reaches 958).
	got := run(t, seriesCommand, "aggregate", "-fn", "max", "-step", "24h", "-to", rfc(tsBase), dir, "http_requests_total")
	if want := "{}  " + rfc(tsBase-24*3600_000) + "  1434\n"; got != want {
		t.Fatalf("max of both before the base: %q, want %q", got, want)
	}

	// Nothing matched, nothing in range: nothing printed.
	for _, args := range [][]string{
		{"aggregate", "-fn", "sum", dir, "nosuch"},
		{"aggregate", "-fn", "sum", "-by", "host", dir, "nosuch"},
		{"aggregate", "-fn", "sum", "-to", "2000-01-01T00:00:00Z", dir, seriesA},
		{"aggregate", "-fn", "sum", "-from", "2030-01-01T00:00:00Z", dir, "http_requests_total"},
		{"aggregate", "-fn", "rate", "-from", rfc(tsBase + 30_000), dir, seriesJob}, // one sample: no rate
	} {
		if got := run(t, seriesCommand, args...); got != "" {
			t.Fatalf("%v: %q", args, got)
		}
	}
	if after := dirDigest(t, dir); after != before {
		t.Fatal("series aggregate changed the database directory")
	}
}

// TestSeriesExitCodes runs the command line as main does: bad input is
// a usage error (2, the message on stderr, nothing on stdout), an empty
// result exit 0, a directory without a database 1.
func TestSeriesExitCodes(t *testing.T) {
	dir := buildSeriesDB(t)
	noDB := t.TempDir()
	cases := []struct {
		args []string
		code int
		msg  string // in stderr
		out  bool   // stdout holds something
	}{
		{[]string{"series", "list", dir, `cpu{host=`}, 2, "invalid series", false},
		{[]string{"series", "list", dir, `{}`}, 2, "empty selector", false},
		{[]string{"series", "list", dir, `{a=~"("}`}, 2, "invalid series", false},
		{[]string{"series", "list"}, 2, "usage: plures series list", false},
		{[]string{"series", "list", "-x", dir}, 2, "flag provided but not defined", false},
		{[]string{"series", "samples", dir, `temp{room=~"k.*"}`}, 2, "invalid series", false},
		{[]string{"series", "samples", dir, `temp{`}, 2, "invalid series", false},
		{[]string{"series", "samples", "-from", "yesterday", dir, seriesTemp}, 2, "-from \"yesterday\"", false},
		{[]string{"series", "samples", "-to", "2026-01-02T00:00:00.0001Z", dir, seriesTemp}, 2, "finer than a millisecond", false},
		{[]string{"series", "samples", "-to", "99999999999999999999", dir, seriesTemp}, 2, "outside", false},
		{[]string{"series", "samples", "-from", "4611686018427387905", dir, seriesTemp}, 2, "outside", false},
		{[]string{"series", "samples", "-from", "2026-01-03T00:00:00Z", "-to", "2026-01-02T00:00:00Z", dir, seriesTemp}, 2, "after -to", false},
		{[]string{"series", "samples", dir}, 2, "usage: plures series samples", false},
		{[]string{"series", "aggregate", dir, seriesTemp}, 2, "-fn is required", false},
		{[]string{"series", "aggregate", "-fn", "median", dir, seriesTemp}, 2, "-fn \"median\"", false},
		{[]string{"series", "aggregate", "-fn", "quantile(2)", dir, seriesTemp}, 2, "[0, 1]", false},
		{[]string{"series", "aggregate", "-fn", "quantile(NaN)", dir, seriesTemp}, 2, "[0, 1]", false},
		{[]string{"series", "aggregate", "-fn", "quantile(0.5", dir, seriesTemp}, 2, "want min", false},
		{[]string{"series", "aggregate", "-fn", "sum", "-step", "5x", dir, seriesTemp}, 2, "-step \"5x\"", false},
		{[]string{"series", "aggregate", "-fn", "sum", "-step", "-5m", dir, seriesTemp}, 2, "negative", false},
		{[]string{"series", "aggregate", "-fn", "sum", "-step", "1500us", dir, seriesTemp}, 2, "milliseconds", false},
		{[]string{"series", "aggregate", "-fn", "sum", "-by", "host,", dir, seriesTemp}, 2, "-by", false},
		{[]string{"series", "aggregate", "-fn", "sum", "-by", "9x", dir, seriesTemp}, 2, "-by", false},
		{[]string{"series", "aggregate", "-fn", "sum", "-across", "first", dir, seriesTemp}, 2, "across series", false},
		{[]string{"series", "aggregate", "-fn", "first", dir, "http_requests_total"}, 2, "give -across", false},
		{[]string{"series", "aggregate", "-fn", "sum", dir, `cpu{`}, 2, "invalid series", false},
		{[]string{"series", "frobnicate", dir}, 2, "unknown series command", false},
		{[]string{"series"}, 2, "usage: plures series", false},
		{[]string{"get", dir}, 2, "usage: plures get", false},

		{[]string{"series", "samples", dir, `temp{room="cellar"}`}, 0, "", false},
		{[]string{"series", "list", dir, `cpu`}, 0, "", false},
		{[]string{"series", "aggregate", "-fn", "first", dir, seriesA}, 0, "", true},
		{[]string{"series", "aggregate", "-fn", "first", "-by", "host", "-across", "max", dir, "http_requests_total"}, 0, "", true},
		{[]string{"series", "-h"}, 0, "plures series samples", false},

		{[]string{"series", "list", noDB}, 1, "", false},
		{[]string{"series", "samples", filepath.Join(noDB, "missing"), seriesTemp}, 1, "", false},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := runMain(c.args, &stdout, &stderr)
		if code != c.code {
			t.Fatalf("%q: exit %d, want %d (stderr %q)", c.args, code, c.code, stderr.String())
		}
		if !strings.Contains(stderr.String(), c.msg) {
			t.Fatalf("%q: stderr %q, want %q", c.args, stderr.String(), c.msg)
		}
		if (stdout.Len() > 0) != c.out {
			t.Fatalf("%q: stdout %q", c.args, stdout.String())
		}
	}
	if entries, err := os.ReadDir(noDB); err != nil || len(entries) != 0 {
		t.Fatalf("a refused open left %v (%v) in a directory without a database", entries, err)
	}
}

// TestSeriesExtremeTimes: samples at MinTime and MaxTime are listed by
// default (to past MaxTime), printed as milliseconds where RFC 3339
// cannot write them, and those milliseconds read back as -from and -to.
func TestSeriesExtremeTimes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	db, err := pluresdb.Open(dir, &pluresdb.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	samples := []timeseries.Sample{
		{T: timeseries.MinTime, V: -1},
		{T: -1, V: 0.5},
		{T: 0, V: 1e300},
		{T: 253402300799999, V: 2}, // 9999-12-31T23:59:59.999Z
		{T: 253402300800000, V: 3}, // the year 10000
		{T: timeseries.MaxTime, V: math.MaxFloat64},
	}
	if err := db.AppendSamples("edge", samples...); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	want := "-4611686018427387904  -1\n" +
		"1969-12-31T23:59:59.999Z  0.5\n" +
		"1970-01-01T00:00:00.000Z  1e+300\n" +
		"9999-12-31T23:59:59.999Z  2\n" +
		"253402300800000  3\n" +
		"4611686018427387904  1.7976931348623157e+308\n"
	if got := run(t, seriesCommand, "samples", dir, "edge"); got != want {
		t.Fatalf("samples:\n%s\nwant:\n%s", got, want)
	}
	if got := run(t, seriesCommand, "samples", "-from", "253402300800000", "-to", "4611686018427387904", dir, "edge"); got != "253402300800000  3\n" {
		t.Fatalf("samples -from -to in milliseconds: %q", got)
	}
	objs := jsonLines(t, run(t, seriesCommand, "samples", "-json", dir, "edge"))
	if _, ok := objs[0]["time"]; ok || objs[0]["t"] != float64(timeseries.MinTime) {
		t.Fatalf("samples -json of MinTime: %v", objs[0])
	}
	if got := run(t, seriesCommand, "aggregate", "-fn", "count", dir, "edge"); got != "-4611686018427387904  6\n" {
		t.Fatalf("aggregate count: %q", got)
	}
	if got := run(t, seriesCommand, "aggregate", "-fn", "count", "-step", "24h", "-from", "0", "-to", "86400000", dir, "edge"); got != "1970-01-01T00:00:00.000Z  1\n" {
		t.Fatalf("aggregate count of the first day: %q", got)
	}
}

// TestAppendSample: the samples command's lines are those of sampleOut,
// its JSON that of json.Marshal.
func TestAppendSample(t *testing.T) {
	for _, s := range []timeseries.Sample{
		{T: tsBase, V: 1.5}, {T: 0, V: math.NaN()}, {T: -1, V: math.Inf(-1)}, {T: 1, V: math.Inf(1)},
		{T: timeseries.MinTime, V: math.Copysign(0, -1)}, {T: timeseries.MaxTime, V: 5e-324},
		{T: 253402300800000, V: -math.MaxFloat64},
	} {
		j, text := sampleOut(s)
		if got := string(appendSample([]byte("x"), s, false)); got != "x"+text+"\n" {
			t.Fatalf("%v: text %q, want %q", s, got, text)
		}
		b, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(appendSample(nil, s, true)); got != string(b)+"\n" {
			t.Fatalf("%v: JSON %q, want %q", s, got, b)
		}
	}
}

package main

// Tests for fillrandom-sustained: the smoke test on every compiled-in engine
// at 20,000 keys, the command line's engine defaults for it, and the
// per-second and latency accounting on made-up timings.

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const testSustainedKeys = 20_000

func TestSustainedEveryEngine(t *testing.T) {
	seed := *testSeed
	t.Logf("seed %d", seed)
	_, ioOK := processWriteBytes()
	for _, name := range defaultEngineOrder {
		spec, ok := engineSpecs[name]
		if !ok {
			t.Logf("%s not compiled in", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			rc := runConfig{
				keys:          testKeys,
				cache:         8 << 20,
				seed:          seed,
				dir:           t.TempDir(),
				workloads:     map[string]bool{workloadSustained: true},
				logf:          t.Logf,
				sustainedKeys: testSustainedKeys,
			}
			rs, err := runEngine(spec, rc)
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if len(rs) != 1 {
				t.Fatalf("got %d results, want 1: %+v", len(rs), rs)
			}
			r := rs[0]
			if r.Workload != workloadSustained || r.Engine != name || r.Err != "" || r.Sustained == nil {
				t.Fatalf("result %+v", r)
			}
			st := r.Sustained
			if r.Ops != testSustainedKeys || r.LogicalBytes != testSustainedKeys*(keySize+valueSize) {
				t.Errorf("ops %d, logical bytes %d", r.Ops, r.LogicalBytes)
			}
			if r.OpsPerSec <= 0 || r.DiskBytes <= 0 {
				t.Errorf("ops/s %f, disk %d", r.OpsPerSec, r.DiskBytes)
			}
			if ioOK && r.WriteAmp <= 0 {
				t.Errorf("write amp %f with /proc/self/io available", r.WriteAmp)
			}
			if want := float64(r.DiskBytes) / float64(r.LogicalBytes); st.SpaceAmp != want {
				t.Errorf("space amp %f, want %f", st.SpaceAmp, want)
			}
			if st.MaxPutSeconds <= 0 || st.MaxPutSeconds > r.Seconds {
				t.Errorf("max put %fs in a %fs run", st.MaxPutSeconds, r.Seconds)
			}
			if want := int(r.Seconds); len(st.IntervalOpsPerSec) != want {
				t.Errorf("%d intervals in a %fs run", len(st.IntervalOpsPerSec), r.Seconds)
			}
			var sum int64
			for _, n := range st.IntervalOpsPerSec {
				sum += n
			}
			if sum > r.Ops {
				t.Errorf("intervals hold %d puts of %d", sum, r.Ops)
			}
			reports := false
			switch name {
			case "pluresdb", "pebble", "pebble-samecache", "goleveldb":
				reports = true
			}
			if reports != (st.EngineStalls >= 0) || (st.EngineStalls < 0) != (st.EngineStallSeconds < 0) {
				t.Errorf("engine stalls %d, %fs; engine reports stalls: %v", st.EngineStalls, st.EngineStallSeconds, reports)
			}
		})
	}
}

// TestRunSustainedEngines checks the command line: alone, the workload runs
// on the default pair; beside other workloads it still runs only there; and
// -engines overrides both.
func TestRunSustainedEngines(t *testing.T) {
	var want []string
	for _, name := range sustainedDefaultEngines {
		if _, ok := engineSpecs[name]; ok {
			want = append(want, name)
		}
	}
	engineNames := func(rs []result, workload string) []string {
		var out []string
		for _, r := range rs {
			if r.Workload == workload {
				out = append(out, r.Engine)
			}
		}
		return out
	}
	runJSON := func(t *testing.T, args ...string) (report, string) {
		t.Helper()
		dir := t.TempDir()
		jsonFile := filepath.Join(dir, "out.json")
		var stdout, stderr bytes.Buffer
		args = append(args, "-dir", filepath.Join(dir, "db"), "-json", jsonFile, "-q")
		if code := run(args, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		b, err := os.ReadFile(jsonFile)
		if err != nil {
			t.Fatal(err)
		}
		var rep report
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		return rep, stdout.String()
	}

	t.Run("alone", func(t *testing.T) {
		rep, out := runJSON(t, "-workloads", workloadSustained, "-sustained-keys", "2000", "-markdown")
		if got := engineNames(rep.Results, workloadSustained); !slices.Equal(got, want) {
			t.Errorf("ran on %v, want %v", got, want)
		}
		if len(rep.Results) != len(want) || rep.SustainedKeys != 2000 {
			t.Errorf("report: %d results, sustained keys %d", len(rep.Results), rep.SustainedKeys)
		}
		for _, r := range rep.Results {
			if r.Sustained == nil || r.Ops != 2000 {
				t.Errorf("result %+v", r)
			}
		}
		for _, s := range []string{"| fillrandom-sustained | pebble |", "| engine | ops/s | min 1s |", "fillrandom-sustained 2,000 keys", "space amp ="} {
			if !strings.Contains(out, s) {
				t.Errorf("output lacks %q:\n%s", s, out)
			}
		}
		if strings.Contains(out, "puts from 16 goroutines") {
			t.Errorf("summary mentions workloads that did not run:\n%s", out)
		}
	})
	t.Run("mixed", func(t *testing.T) {
		rep, out := runJSON(t, "-workloads", "fillseq,"+workloadSustained, "-keys", "200", "-sustained-keys", "1000")
		if got := engineNames(rep.Results, workloadSustained); !slices.Equal(got, want) {
			t.Errorf("sustained ran on %v, want %v", got, want)
		}
		if got := engineNames(rep.Results, "fillseq"); len(got) != len(engineSpecs) {
			t.Errorf("fillseq ran on %v, want every engine", got)
		}
		if !strings.Contains(out, "fillrandom-sustained: 1,000 keys") {
			t.Errorf("no sustained section:\n%s", out)
		}
	})
	t.Run("engines", func(t *testing.T) {
		rep, _ := runJSON(t, "-workloads", workloadSustained, "-sustained-keys", "1000", "-engines", "bbolt,pebble")
		if got := engineNames(rep.Results, workloadSustained); !slices.Equal(got, []string{"bbolt", "pebble"}) {
			t.Errorf("ran on %v, want [bbolt pebble]", got)
		}
	})
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-workloads", workloadSustained, "-sustained-keys", "0"}, &stdout, &stderr); code != 2 {
		t.Errorf("-sustained-keys 0: exit %d, want 2", code)
	}
}

func TestPutRecorder(t *testing.T) {
	ms := time.Millisecond
	var r putRecorder
	// Second 0: three fast puts. Seconds 1 and 2: nothing, a put blocked
	// from 0.9 s to 3.2 s. Second 3: that put and one more. Second 4: one
	// put, and the run ends at 4.5 s.
	r.record(100*ms, ms)
	r.record(200*ms, 150*ms)
	r.record(900*ms, ms)
	r.record(3200*ms, 2300*ms)
	r.record(3300*ms, ms)
	r.record(4100*ms, ms)
	st := r.stats(4500 * ms)
	if want := []int64{3, 0, 0, 2}; !slices.Equal(st.IntervalOpsPerSec, want) {
		t.Errorf("series %v, want %v (the partial fifth second dropped)", st.IntervalOpsPerSec, want)
	}
	if st.MinIntervalOpsPerSec != 0 || st.P50IntervalOpsPerSec != 0 {
		t.Errorf("min %d, p50 %d; want 0, 0", st.MinIntervalOpsPerSec, st.P50IntervalOpsPerSec)
	}
	if st.MaxPutSeconds != 2.3 || st.PutsOver100ms != 2 || st.PutsOver1s != 1 {
		t.Errorf("max put %f, over 100ms %d, over 1s %d; want 2.3, 2, 1", st.MaxPutSeconds, st.PutsOver100ms, st.PutsOver1s)
	}
	if st.EngineStalls != -1 || st.EngineStallSeconds != -1 {
		t.Errorf("engine stalls %d, %f before the engine was asked", st.EngineStalls, st.EngineStallSeconds)
	}

	// A run that ends with seconds in which nothing completed keeps them.
	var idle putRecorder
	idle.record(10*ms, ms)
	if got := idle.stats(3 * time.Second).IntervalOpsPerSec; !slices.Equal(got, []int64{1, 0, 0}) {
		t.Errorf("idle tail: %v", got)
	}
	if got := (&putRecorder{}).stats(500 * ms); len(got.IntervalOpsPerSec) != 0 || got.MinIntervalOpsPerSec != 0 {
		t.Errorf("sub-second run: %+v", got)
	}

	// The median of an odd and an even number of seconds.
	for _, tc := range []struct {
		perSecond []int64
		min, p50  int64
	}{
		{[]int64{5, 1, 9}, 1, 5},
		{[]int64{4, 8, 2, 6}, 2, 4},
	} {
		r := putRecorder{perSecond: tc.perSecond}
		st := r.stats(time.Duration(len(tc.perSecond)) * time.Second)
		if st.MinIntervalOpsPerSec != tc.min || st.P50IntervalOpsPerSec != tc.p50 {
			t.Errorf("%v: min %d, p50 %d; want %d, %d", tc.perSecond, st.MinIntervalOpsPerSec, st.P50IntervalOpsPerSec, tc.min, tc.p50)
		}
	}
}

// stallingEngine blocks one put and reports made-up engine stalls.
type stallingEngine struct {
	engine
	puts, blockAt int
	block         time.Duration
	failAt        int
}

func (e *stallingEngine) put(k, v []byte) error {
	e.puts++
	if e.puts == e.failAt {
		return errors.New("disk full")
	}
	if e.puts == e.blockAt {
		time.Sleep(e.block)
	}
	return nil
}

func (e *stallingEngine) writeStalls() (int64, time.Duration) { return 7, 1500 * time.Millisecond }

func TestSustainedFillTimesEveryPut(t *testing.T) {
	order := permutation(1000, 1, streamSustained)
	e := &stallingEngine{blockAt: 500, block: 120 * time.Millisecond}
	st, err := sustainedFill(e, order, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.puts != 1000 {
		t.Errorf("%d puts, want 1000", e.puts)
	}
	if st.PutsOver100ms != 1 || st.PutsOver1s != 0 || st.MaxPutSeconds < 0.12 {
		t.Errorf("over 100ms %d, over 1s %d, max put %f; want 1, 0, >= 0.12", st.PutsOver100ms, st.PutsOver1s, st.MaxPutSeconds)
	}
	if st.EngineStalls != 7 || st.EngineStallSeconds != 1.5 {
		t.Errorf("engine stalls %d, %f; want the engine's 7, 1.5", st.EngineStalls, st.EngineStallSeconds)
	}

	e = &stallingEngine{failAt: 10}
	if _, err := sustainedFill(e, order, 1, nil); err == nil || !strings.Contains(err.Error(), "disk full") || e.puts != 10 {
		t.Errorf("failing put: %v after %d puts; want the error after 10", err, e.puts)
	}
}

func TestStallClock(t *testing.T) {
	var c stallClock
	c.end() // an end without a begin is ignored
	c.begin()
	c.begin() // a second writer stalls while the first still waits
	time.Sleep(20 * time.Millisecond)
	c.end()
	if n, d := c.read(); n != 2 || d < 20*time.Millisecond {
		t.Errorf("mid-stall: %d stalls, %v; want 2, >= 20ms", n, d)
	}
	c.end()
	n, d := c.read()
	time.Sleep(5 * time.Millisecond)
	if n2, d2 := c.read(); n != 2 || n2 != n || d2 != d {
		t.Errorf("after the stall: %d, %v then %d, %v; want 2 and no growth", n, d, n2, d2)
	}
}

func TestSeriesOutput(t *testing.T) {
	series := []int64{312_000, 305_400, 0, 41_000, 298_000}
	if got, want := sparkline(series), "██·▂█"; got != want {
		t.Errorf("sparkline %q, want %q", got, want)
	}
	var b bytes.Buffer
	writeSeries(&b, "pluresdb", series)
	want := "pluresdb: k puts per second\n  ██·▂█\n      0s  312 305 0 41 298\n"
	if b.String() != want {
		t.Errorf("writeSeries:\n%s\nwant:\n%s", b.String(), want)
	}

	// A long run folds seconds into marks, keeping the slowest, and wraps
	// the numbers.
	long := make([]int64, 250)
	for i := range long {
		long[i] = 100_000
	}
	long[201] = 0
	bar := sparkline(long)
	if n := len([]rune(bar)); n != 84 {
		t.Errorf("bar of %d marks for 250 s, want 84 (3 s each)", n)
	}
	if []rune(bar)[67] != '·' {
		t.Errorf("the stalled second is not visible in %q", bar)
	}
	b.Reset()
	writeSeries(&b, "x", long)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2+13 || !strings.Contains(lines[0], "one mark per 3 s") || !strings.HasPrefix(strings.TrimSpace(lines[14]), "240s") {
		t.Errorf("long series output:\n%s", b.String())
	}
}

// BenchmarkTimedPut is the harness's cost per put in fillrandom-sustained
// (a clock read and the bookkeeping), which the measured rate includes.
func BenchmarkTimedPut(b *testing.B) {
	var r putRecorder
	start := time.Now()
	b.ReportAllocs()
	var prev time.Duration
	for b.Loop() {
		done := time.Since(start)
		r.record(done, done-prev)
		prev = done
	}
}

package main

// Smoke tests for CI: every workload on every compiled-in engine at a tiny
// size, checking the harness's own correctness checks pass and the numbers
// it reports are sane.

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var testSeed = flag.Uint64("seed", 1, "PRNG seed for the smoke tests")

const testKeys = 2000

func TestEveryEngineEveryWorkload(t *testing.T) {
	seed := *testSeed
	t.Logf("seed %d", seed)
	all := map[string]bool{}
	for _, w := range allWorkloads {
		all[w] = true
	}
	for _, name := range defaultEngineOrder {
		spec, ok := engineSpecs[name]
		if !ok {
			t.Logf("%s not compiled in", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			rc := runConfig{
				keys:      testKeys,
				syncOps:   200,
				cache:     8 << 20,
				seed:      seed,
				dir:       t.TempDir(),
				workloads: all,
				logf:      t.Logf,
			}
			rs, err := runEngine(spec, rc)
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if len(rs) != len(allWorkloads) {
				t.Fatalf("got %d results, want %d", len(rs), len(allWorkloads))
			}
			_, ioOK := processWriteBytes()
			for i, r := range rs {
				if r.Workload != allWorkloads[i] || r.Engine != name || r.Err != "" {
					t.Errorf("result %d: %+v", i, r)
				}
				wantOps := int64(testKeys)
				if r.Workload == "fillsync" {
					wantOps = 200
				}
				// readseq's Ops is the number of keys the scan saw.
				if r.Ops != wantOps {
					t.Errorf("%s: ops %d, want %d", r.Workload, r.Ops, wantOps)
				}
				if r.OpsPerSec <= 0 || r.DiskBytes <= 0 {
					t.Errorf("%s: ops/s %f, disk %d", r.Workload, r.OpsPerSec, r.DiskBytes)
				}
				isWrite := strings.HasPrefix(r.Workload, "fill") || r.Workload == "overwrite"
				if isWrite != (r.LogicalBytes == r.Ops*(keySize+valueSize)) {
					t.Errorf("%s: logical bytes %d for %d ops", r.Workload, r.LogicalBytes, r.Ops)
				}
				if ioOK && isWrite && r.WriteBytes < 0 {
					t.Errorf("%s: write bytes not measured", r.Workload)
				}
			}
		})
	}
}

// TestReadChecksCatchWrongData makes sure the reads would notice an engine
// that lost or changed data, so the smoke test above means something.
func TestReadChecksCatchWrongData(t *testing.T) {
	spec := engineSpecs["pebble"]
	dir := t.TempDir()
	e, err := spec.open(dir, engineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	const n = 100
	if err := fill(e, nil, n, 1, 0); err != nil {
		t.Fatal(err)
	}
	if err := readRandom(e, n, n, 1, 0); err != nil {
		t.Fatalf("intact db: %v", err)
	}
	if err := readRandom(e, n, n, 1, 1); err == nil {
		t.Fatal("reading generation 1 values from a generation 0 db succeeded")
	}
	if err := readRandom(e, n, n+50, 1, 0); err == nil {
		t.Fatal("reading absent keys succeeded")
	}
	if got, err := readSeq(e); err != nil || got != n {
		t.Fatalf("readSeq = %d, %v; want %d", got, err, n)
	}
}

func TestKeysAndValues(t *testing.T) {
	var a, b [keySize]byte
	makeKey(a[:], 9)
	makeKey(b[:], 10)
	if string(a[:]) != "0000000000000009" || bytes.Compare(a[:], b[:]) >= 0 {
		t.Fatalf("keys %q %q: want 16 digits in index order", a, b)
	}
	var v1, v2, v3 [valueSize]byte
	makeValue(v1[:], 7, 42, 0)
	makeValue(v2[:], 7, 42, 0)
	if v1 != v2 {
		t.Fatal("makeValue is not deterministic")
	}
	if !bytes.Equal(v1[:valueSize/2], v1[valueSize/2:]) {
		t.Fatal("second half does not repeat the first")
	}
	for _, other := range []struct {
		seed uint64
		i    int
		gen  uint64
	}{{7, 43, 0}, {7, 44, 0}, {7, 42, 1}, {8, 42, 0}} {
		makeValue(v3[:], other.seed, other.i, other.gen)
		if bytes.Contains(v1[:], v3[:8]) {
			t.Errorf("value of %+v shares bytes with the value of (7, 42, 0)", other)
		}
	}
}

func TestRunWritesTableAndJSON(t *testing.T) {
	dir := t.TempDir()
	jsonFile := filepath.Join(dir, "out.json")
	var stdout, stderr bytes.Buffer
	code := run([]string{"-keys", "300", "-engines", "pebble,bbolt", "-workloads", "fillseq,readrandom",
		"-dir", filepath.Join(dir, "db"), "-markdown", "-json", jsonFile, "-q"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"| workload | engine |", "| fillseq | pebble |", "| readrandom | bbolt |", "1.00x", "Machine:"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 4 || rep.Keys != 300 || rep.Machine.Cores <= 0 {
		t.Fatalf("report: %+v", rep)
	}
	for _, r := range rep.Results {
		if r.Engine == "pebble" && r.RatioToPebble != 1 {
			t.Errorf("pebble's ratio to itself is %f", r.RatioToPebble)
		}
	}

	if code := run([]string{"-engines", "nosuch"}, &stdout, &stderr); code != 2 {
		t.Errorf("unknown engine: exit %d, want 2", code)
	}
	if code := run([]string{"-workloads", "nosuch"}, &stdout, &stderr); code != 2 {
		t.Errorf("unknown workload: exit %d, want 2", code)
	}
}

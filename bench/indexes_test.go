//go:build !nopluresdb

package main

import (
	"bytes"
	"strings"
	"testing"
)

// The index workload at a small size: every load runs, every query's
// answer on every run matches the generated data (runIndexBench fails
// otherwise), the figures are sane and the tables print.
func TestIndexSmoke(t *testing.T) {
	rc := runConfig{seed: *testSeed, logf: t.Logf, dir: t.TempDir(), indexDocs: 20_000, indexReps: 3}
	rep, err := runIndexBench(rc)
	if err != nil {
		t.Fatal(err)
	}
	loads := map[string]int{}
	for _, l := range rep.Loads {
		loads[l.Engine]++
		if l.Docs != rc.indexDocs || l.PerSec <= 0 || l.Ratio <= 0 || l.DiskBytes <= 0 {
			t.Errorf("load %+v", l)
		}
	}
	if loads["pluresdb"] != 3 || loads["bbolt"] != 2 {
		t.Errorf("loads by engine: %v", loads)
	}
	if rep.BuildSeconds <= 0 {
		t.Errorf("build %.3f s", rep.BuildSeconds)
	}
	if len(rep.Queries) != 6 {
		t.Fatalf("%d queries, want 6", len(rep.Queries))
	}
	for _, q := range rep.Queries {
		// 20 documents per age on average: a 0.1% query selects a few.
		if q.Results <= 0 || q.Min <= 0 || q.Min > q.Median || q.Median > q.Max ||
			q.ScanMin <= 0 || q.ScanMedian > q.ScanMax || q.BoltMin <= 0 || q.BoltMedian > q.BoltMax {
			t.Errorf("query %+v", q)
		}
	}
	for _, md := range []bool{false, true} {
		var buf bytes.Buffer
		rep.print(&buf, md)
		for _, want := range []string{"Eq + docs (Find)", "age, city", "hand-made"} {
			if !strings.Contains(buf.String(), want) {
				t.Fatalf("markdown %v: output lacks %q:\n%s", md, want, buf.String())
			}
		}
	}
}

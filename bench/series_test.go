//go:build !nopluresdb

package main

import (
	"bytes"
	"strings"
	"testing"
)

// The series workload at a small size: every ingest runs, every query's
// answer matches the generated data (runSeries fails otherwise), the
// storage figures add up and the tables print.
func TestSeriesSmoke(t *testing.T) {
	rc := runConfig{
		seed: *testSeed, logf: t.Logf, dir: t.TempDir(),
		seriesCount: 2 * seriesGroups, seriesCalls: 6, seriesReps: 2,
	}
	rep, err := runSeries(rc)
	if err != nil {
		t.Fatal(err)
	}
	wantSamples := int64(rc.seriesCount * rc.seriesCalls * seriesPerCall)
	if rep.Samples != wantSamples {
		t.Fatalf("%d samples, want %d", rep.Samples, wantSamples)
	}
	engines := map[string]int{}
	for _, r := range rep.Ingest {
		engines[r.Engine]++
		if r.Samples != wantSamples || r.PerSec <= 0 || r.CallMedian <= 0 {
			t.Errorf("ingest %+v", r)
		}
	}
	if engines["pluresdb"] < 2 || engines["prometheus"] < 1 {
		t.Errorf("ingest runs by engine: %v", engines)
	}
	var tables, total int64
	for _, s := range rep.Storage {
		if s.Engine != "pluresdb" {
			continue
		}
		switch s.What {
		case "LSM tables (db.Tables)":
			tables = s.Bytes
		case "directory total":
			total = s.Bytes
		}
	}
	if tables <= 0 || total < tables {
		t.Errorf("tables %d bytes, directory %d", tables, total)
	}
	phases := map[string]int{}
	for _, q := range rep.Queries {
		phases[q.Engine+" "+q.Phase]++
		if q.Reps != rc.seriesReps || q.Min <= 0 || q.Min > q.Median || q.Median > q.Max {
			t.Errorf("query %+v", q)
		}
	}
	if phases["pluresdb unflushed"] != phases["pluresdb compacted"] || phases["pluresdb compacted"] < 10 || phases["prometheus compacted"] != 1 {
		t.Errorf("queries by phase: %v", phases)
	}
	var buf bytes.Buffer
	rep.print(&buf, true)
	for _, want := range []string{"| pluresdb | sync | 1 |", "| pluresdb | directory total |", "AggregateSeries"} {
		if !strings.Contains(buf.String(), want) {
			t.Fatalf("markdown lacks %q:\n%s", want, buf.String())
		}
	}
}

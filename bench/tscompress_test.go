//go:build !nopluresdb

package main

import (
	"bytes"
	"strings"
	"testing"
)

// The tscompress workload at a small size: every codec runs, ours and
// Prometheus's come back bit for bit (runTSCompressSize fails otherwise),
// and the tables print.
func TestTSCompressSmoke(t *testing.T) {
	rep, err := runTSCompressSize(runConfig{seed: *testSeed, logf: t.Logf}, 2*len(tsKinds), 300)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != len(tsCodecs) {
		t.Fatalf("%d results, want %d", len(rep.Results), len(tsCodecs))
	}
	for _, r := range rep.Results {
		for k := range tsKinds {
			if r.Samples[k] != 600 || r.Bytes[k] <= 0 {
				t.Fatalf("%s %s: %d bytes for %d samples", r.Codec, tsKinds[k], r.Bytes[k], r.Samples[k])
			}
		}
	}
	var buf bytes.Buffer
	rep.print(&buf, true)
	if !strings.Contains(buf.String(), "| overall |") || !strings.Contains(buf.String(), "ours cold") {
		t.Fatalf("markdown table:\n%s", buf.String())
	}
}

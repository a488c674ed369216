//go:build !nopluresdb

package main

// Tests for the op-log workloads: both at a tiny size with their numbers
// checked for sense, the apply check against wrong data, the command line
// (tables, JSON, the default workload list) and the structured keys.

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/plures/pluresdb"
)

const testOpLogKeys = 3000

func TestOpLogWorkloads(t *testing.T) {
	seed := *testSeed
	t.Logf("seed %d", seed)
	rc := runConfig{
		keys:      testOpLogKeys,
		cache:     8 << 20,
		seed:      seed,
		dir:       t.TempDir(),
		workloads: map[string]bool{workloadSyncApply: true, workloadOpLogBytes: true},
		logf:      t.Logf,
	}
	sec, err := runOpLog(rc)
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	res := sec.(*opLogResults)
	if res.Keys != testOpLogKeys || res.Err != "" || res.Seconds[workloadSyncApply] <= 0 || res.Seconds[workloadOpLogBytes] <= 0 {
		t.Errorf("results: %+v", res)
	}

	phases := []string{"fill A (local puts)", "export A to a file", "Gets on A (local puts)",
		"apply into empty B", "Gets on B right after", "apply into C holding N/2 keys", "Gets on C right after"}
	if len(res.Apply) != len(phases) {
		t.Fatalf("%d apply rows, want %d: %+v", len(res.Apply), len(phases), res.Apply)
	}
	for i, r := range res.Apply {
		if r.Phase != phases[i] || r.Ops != testOpLogKeys || r.OpsPerSec <= 0 || r.MBPerSec <= 0 || r.Bytes <= 0 {
			t.Errorf("row %d: %+v", i, r)
		}
		isApply := strings.HasPrefix(r.Phase, "apply")
		if isApply != (r.RatioToTarget > 0) || isApply && math.Abs(r.RatioToTarget-r.OpsPerSec/applyTarget) > 1e-9 {
			t.Errorf("%s: ratio to target %f at %f ops/s", r.Phase, r.RatioToTarget, r.OpsPerSec)
		}
		if isApply && (r.Checked != min(testOpLogKeys, sampleGets) || r.SettleSeconds <= 0) {
			t.Errorf("%s: %d keys checked, settled in %fs", r.Phase, r.Checked, r.SettleSeconds)
		}
		if strings.HasPrefix(r.Phase, "Gets") && (r.Bytes != testOpLogKeys*(keySize+valueSize) || r.RatioToTarget != 0) {
			t.Errorf("row %d: %+v", i, r)
		}
		if isApply && r.Bytes != res.Apply[1].Bytes {
			t.Errorf("%s read %d bytes, the export wrote %d", r.Phase, r.Bytes, res.Apply[1].Bytes)
		}
	}
	if fill, export := res.Apply[0], res.Apply[1]; fill.Bytes != testOpLogKeys*(keySize+valueSize) || export.Bytes >= fill.Bytes {
		t.Errorf("fill moved %d bytes, the stream is %d: want keys × 116 and less", fill.Bytes, export.Bytes)
	}

	if want := 6 * len(keySchemes); len(res.Bytes) != want {
		t.Fatalf("%d bytes rows, want %d", len(res.Bytes), want)
	}
	for i, r := range res.Bytes {
		ks := keySchemes[i/6]
		kv := float64(len(ks.key(nil, 0)) + valueSize)
		naive := strings.HasSuffix(r.Measure, "naive") || strings.HasPrefix(r.Measure, "hot")
		switch {
		case r.Keys != ks.name || r.Ops != testOpLogKeys:
			t.Errorf("row %d: %+v", i, r)
		case r.BeyondKV != r.BytesPerOp-r.KVBytesPerOp:
			t.Errorf("%s %s: beyond %f != %f - %f", r.Keys, r.Measure, r.BeyondKV, r.BytesPerOp, r.KVBytesPerOp)
		case naive && r.KVBytesPerOp != kv:
			t.Errorf("%s %s: key+value %f B/op, want %f", r.Keys, r.Measure, r.KVBytesPerOp, kv)
		case !naive && (r.KVBytesPerOp <= kv/3 || r.KVBytesPerOp >= kv):
			// Values are half repeated: compressed, k+v take about half.
			t.Errorf("%s %s: compressed key+value %f B/op of %f", r.Keys, r.Measure, r.KVBytesPerOp, kv)
		case strings.HasPrefix(r.Measure, "hot") && (r.BeyondKV <= 0 || r.BeyondKV > 64):
			t.Errorf("%s %s: %f B/op beyond key and value", r.Keys, r.Measure, r.BeyondKV)
		case !naive && (r.BeyondKV < -4 || r.BeyondKV > 16):
			// The stream headers, spread over 3000 ops, are in here.
			t.Errorf("%s %s: %f B/op beyond compressed key and value", r.Keys, r.Measure, r.BeyondKV)
		case strings.HasSuffix(r.Measure, "naive") && r.BytesPerOp >= kv:
			t.Errorf("%s %s: compressed form takes %f B/op of %f", r.Keys, r.Measure, r.BytesPerOp, kv)
		}
		if (r.Target > 0) != strings.HasPrefix(r.Measure, "archive − zstd") {
			t.Errorf("%s %s: target %f", r.Keys, r.Measure, r.Target)
		}
	}
	// The .log files hold the appended batches plus their framing.
	for i := 0; i < len(res.Bytes); i += 6 {
		if wal, files := res.Bytes[i], res.Bytes[i+1]; files.BytesPerOp < wal.BytesPerOp {
			t.Errorf("%s: .log files %f B/op below the appended %f", wal.Keys, files.BytesPerOp, wal.BytesPerOp)
		}
	}
	if _, err := os.Stat(filepath.Join(rc.dir, workloadSyncApply)); !os.IsNotExist(err) {
		t.Errorf("sync-apply's databases were not removed: %v", err)
	}
}

// TestCheckAppliedCatchesWrongData makes sure the apply check would notice
// a replica that lost, changed or overwrote data.
func TestCheckAppliedCatchesWrongData(t *testing.T) {
	const n, seed = 200, 7
	dir := t.TempDir()
	open := func(name string) *pluresdb.DB {
		db, err := openOpLogDB(filepath.Join(dir, name), 8<<20, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	all := permutation(n, seed, streamFillRandom)
	var evens, odds []uint32
	for _, i := range all {
		if i%2 == 0 {
			evens = append(evens, i)
		} else {
			odds = append(odds, i)
		}
	}
	put := func(db *pluresdb.DB, order []uint32, gen uint64) {
		if _, err := putAll(db, order, digitKey, seed, gen); err != nil {
			t.Fatal(err)
		}
	}
	src := open("src")
	put(src, all, 0)
	newer := open("newer") // what C should hold: its own even keys, A's odd ones
	put(newer, evens, 1)
	put(newer, odds, 0)
	half := open("half")
	put(half, odds, 0)
	other := open("other")
	put(other, all, 1)
	ownEven := func(i int) (uint64, bool) { return 1, i%2 == 0 }

	for _, c := range []struct {
		name string
		db   *pluresdb.DB
		own  func(int) (uint64, bool)
		ok   bool
	}{
		{"same", src, nil, true},
		{"own evens kept", newer, ownEven, true},
		{"own evens lost", src, ownEven, false},
		{"own evens unexpected", newer, nil, false},
		{"half missing", half, nil, false},
		{"other values", other, nil, false},
	} {
		checked, err := checkApplied(c.db, src, n, seed, c.own)
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v", c.name, err)
		}
		if c.ok && checked != n {
			t.Errorf("%s: %d keys checked, want %d", c.name, checked, n)
		}
	}
}

func TestOpLogCommandLine(t *testing.T) {
	dir := t.TempDir()
	jsonFile := filepath.Join(dir, "out.json")
	var stdout, stderr bytes.Buffer
	code := run([]string{"-keys", "500", "-workloads", "sync-apply,oplog-bytes", "-dir", filepath.Join(dir, "db"),
		"-markdown", "-json", jsonFile, "-q"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"Machine:", "op log (PluresDB only): 500 keys", "| phase | ops |", "| apply into empty B | 500 |",
		"| keys | measure |", "| 16-digit (16+100 B) | archive − zstd(k|v alone) |", "<= 4:", "- sync-apply:", "- oplog-bytes:"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "| workload | engine |") {
		t.Errorf("engine table printed with only op-log workloads:\n%s", out)
	}
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Results []result      `json:"results"`
		OpLog   *opLogResults `json:"oplog"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 0 || rep.OpLog == nil || rep.OpLog.Keys != 500 || len(rep.OpLog.Apply) != 7 || len(rep.OpLog.Bytes) != 12 {
		t.Fatalf("report: %s", b)
	}

	// Plain text, one workload: only its table and notes.
	stdout.Reset()
	if code := run([]string{"-keys", "300", "-workloads", "oplog-bytes", "-q"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out = stdout.String()
	for _, want := range []string{"machine:", "oplog-bytes: op log bytes per operation", "structured (31+100 B)", "hot: .log files"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "sync-apply") {
		t.Errorf("sync-apply in the output of oplog-bytes alone:\n%s", out)
	}
}

// TestOpLogDefault checks the op-log workloads are known, in the default
// list, and left out by default when pluresdb is not among the engines.
func TestOpLogDefault(t *testing.T) {
	for _, w := range []string{workloadSyncApply, workloadOpLogBytes} {
		if !slices.Contains(knownWorkloads, w) {
			t.Errorf("%s not in knownWorkloads %v", w, knownWorkloads)
		}
	}
	dir := t.TempDir()
	jsonFile := filepath.Join(dir, "out.json")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-keys", "200", "-engines", "bbolt", "-json", jsonFile, "-q"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Results []result        `json:"results"`
		OpLog   json.RawMessage `json:"oplog"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != len(allWorkloads) || rep.OpLog != nil {
		t.Errorf("default workloads on bbolt: %d results, op log %s", len(rep.Results), rep.OpLog)
	}
	if strings.Contains(stdout.String(), "op log") {
		t.Errorf("op-log section printed for bbolt:\n%s", stdout.String())
	}
}

func TestStructuredKey(t *testing.T) {
	seen := map[string]bool{}
	for i := range 20_000 {
		k := string(structuredKey(nil, i))
		if len(k) != 31 || seen[k] {
			t.Fatalf("key %d: %q (len %d, repeated %v)", i, k, len(k), seen[k])
		}
		seen[k] = true
	}
	if k := string(structuredKey([]byte("x"), 1234*16+7)); k != "xtenant-07/users/0001234/profile" {
		t.Errorf("key = %q", k)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plures/pluresdb/hnsw"
)

// A whole run on a tiny set, ours only: the table, the summary and the
// JSON come out and the recall is what a working index gives.
func TestRunOursOnly(t *testing.T) {
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "out.json")
	var stdout, stderr bytes.Buffer
	args := []string{"-n", "1000", "-dim", "16", "-nq", "50", "-efs", "10,40,80", "-threads", "2", "-efc", "100", "-runs", "2",
		"-cache", dir, "-anchors=false", "-json", jsonPath, "-q"}
	if rc := run(args, &stdout, &stderr); rc != 0 {
		t.Fatalf("rc %d, stderr:\n%s", rc, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"pluresdb-hnsw", "recall@10", "first ef reaching recall@10 >= 0.95", "p99 at that ef"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2 || rep.Results[1].Threads != 2 || len(rep.Results[0].Searches) != 3 {
		t.Fatalf("results: %+v", rep.Results)
	}
	last := rep.Results[0].Searches[2]
	if last.Ef != 80 || last.Recall < 0.9 || last.QPS <= 0 || last.P99us < last.P50us {
		t.Fatalf("ef 80: %+v", last)
	}
	if rep.Results[0].BuildRate <= 0 || rep.Results[1].BuildRate <= 0 {
		t.Fatalf("build rates: %+v", rep.Results)
	}

	// Markdown prints the same rows.
	stdout.Reset()
	args = append(args[:len(args)-3], "-markdown", "-q")
	if rc := run(args, &stdout, &stderr); rc != 0 {
		t.Fatalf("rc %d, stderr:\n%s", rc, stderr.String())
	}
	if !strings.Contains(stdout.String(), "| pluresdb-hnsw | 1 |") {
		t.Fatalf("markdown:\n%s", stdout.String())
	}
}

// With -data, the files written by the generator read back as TEXMEX.
func TestRunData(t *testing.T) {
	dir := t.TempDir()
	ds, err := synthDataset(synthSpec{N: 500, Dim: 8, NQ: 20, Kind: kindUniform, Metric: metricL2, Seed: 2}, dir, func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args := []string{"-data", filepath.Dir(ds.BasePath), "-nq", "10", "-efs", "100", "-anchors=false", "-q"}
	if rc := run(args, &stdout, &stderr); rc != 0 {
		t.Fatalf("rc %d, stderr:\n%s", rc, stderr.String())
	}
	if !strings.Contains(stdout.String(), "500 base vectors, dim 8, 10 queries") {
		t.Fatalf("output:\n%s", stdout.String())
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-efs", "10,x"},
		{"-efs", ""},
		{"-k", "0"},
		{"-k", "101"},
		{"-kind", "gaussian"},
		{"-metric", "hamming"},
		{"-engine", "faiss"},
		{"-data", "/nonexistent", "-n", "10"},
		{"stray"},
	} {
		var stdout, stderr bytes.Buffer
		if rc := run(args, &stdout, &stderr); rc != 2 {
			t.Errorf("%q: rc %d, want 2", args, rc)
		}
	}
	// -engine db runs the index through the database.
	var stdout, stderr bytes.Buffer
	args := []string{"-engine", "db", "-n", "100", "-dim", "4", "-nq", "5", "-cache", t.TempDir(), "-anchors=false", "-q"}
	if rc := run(args, &stdout, &stderr); rc != 0 || !strings.Contains(stdout.String(), "pluresdb-db") {
		t.Errorf("-engine db: rc %d, stdout %q, stderr %q", rc, stdout.String(), stderr.String())
	}
}

func TestSummarize(t *testing.T) {
	rs := []engineResult{
		{Engine: "pluresdb-hnsw", Threads: 1, BuildRate: 1000, Searches: []searchResult{
			{Ef: 10, Recall: 0.90, QPS: 9000}, {Ef: 20, Recall: 0.96, QPS: 6000, P99us: 300}, {Ef: 40, Recall: 0.99, QPS: 4000}}},
		{Engine: "pluresdb-hnsw", Threads: 2, BuildRate: 1800},
		{Engine: "hnswlib", Threads: 1, BuildRate: 2000, Searches: []searchResult{
			{Ef: 10, Recall: 0.94, QPS: 10000, QPSBatch: 12000}, {Ef: 20, Recall: 0.97, QPS: 5000, QPSBatch: 7500}}},
		{Engine: "hnswlib", Threads: 2, BuildRate: 3600},
		{Engine: "faiss", Threads: 1, Searches: []searchResult{{Ef: 10, Recall: 0.5}, {Ef: 20, Recall: 0.8}}},
		{Engine: "broken", Error: "boom"},
	}
	s := summarize(rs, 0.95)
	if len(s.First) != 3 {
		t.Fatalf("first: %+v", s.First)
	}
	if f := s.First[0]; !f.Found || f.At.Ef != 20 {
		t.Errorf("ours first at %+v", f)
	}
	if f := s.First[2]; f.Found || f.At.Ef != 20 || f.At.Recall != 0.8 {
		t.Errorf("faiss never reaches it; best should be ef 20: %+v", f)
	}
	if s.QPSRatio != 6000.0/5000 || s.QPSBatchRatio != 6000.0/7500 {
		t.Errorf("qps ratios %v %v", s.QPSRatio, s.QPSBatchRatio)
	}
	if s.BuildRatio != 0.5 || len(s.ParallelRatios) != 1 || s.ParallelRatios[0] != 0.5 {
		t.Errorf("build ratios %v %v", s.BuildRatio, s.ParallelRatios)
	}
	if s.OursP99us != 300 {
		t.Errorf("p99 %v", s.OursP99us)
	}
}

func TestKeyRoundTrip(t *testing.T) {
	for _, id := range []int{0, 1, 255, 1 << 20, 1<<31 - 1} {
		if got := idOf(keyOf(id)); got != int32(id) {
			t.Errorf("idOf(keyOf(%d)) = %d", id, got)
		}
	}
	if idOf([]byte("abc")) != -1 {
		t.Error("a foreign key decoded")
	}
}

// pythonWith returns a Python that can (or, want false, cannot) import
// the modules, or skips the test.
func pythonWith(t *testing.T, want bool, candidates ...string) string {
	t.Helper()
	for _, py := range candidates {
		p, err := exec.LookPath(py)
		if err != nil {
			continue
		}
		has := exec.Command(p, "-c", "import numpy, hnswlib, faiss").Run() == nil
		if has == want {
			return p
		}
	}
	t.Skipf("no Python with modules=%v among %v", want, candidates)
	return ""
}

// The anchors run on the same files and their rows reach the table.
func TestRunAnchors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Python")
	}
	py := pythonWith(t, true, defaultPython)
	var stdout, stderr bytes.Buffer
	jsonPath := filepath.Join(t.TempDir(), "out.json")
	args := []string{"-n", "1000", "-dim", "8", "-nq", "20", "-efs", "10,50", "-runs", "1",
		"-cache", t.TempDir(), "-python", py, "-json", jsonPath, "-q"}
	if rc := run(args, &stdout, &stderr); rc != 0 {
		t.Fatalf("rc %d, stderr:\n%s", rc, stderr.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 3 {
		t.Fatalf("results: %+v", rep.Results)
	}
	for _, r := range rep.Results {
		if r.Error != "" || len(r.Searches) != 2 || r.Searches[1].Recall < 0.9 || r.Searches[1].QPSBatch <= 0 && r.Engine != "pluresdb-hnsw" {
			t.Errorf("%s: %+v", r.Engine, r)
		}
	}
	if rep.Summary.QPSRatio <= 0 || rep.Summary.BuildRatio <= 0 {
		t.Errorf("summary: %+v", rep.Summary)
	}
}

// Without the modules, ours still runs and the install command is printed.
func TestRunAnchorsMissing(t *testing.T) {
	py := pythonWith(t, false, "python3", "python")
	var stdout, stderr bytes.Buffer
	args := []string{"-n", "300", "-dim", "4", "-nq", "5", "-efs", "10", "-runs", "1",
		"-cache", t.TempDir(), "-python", py, "-q"}
	if rc := run(args, &stdout, &stderr); rc != 0 {
		t.Fatalf("rc %d, stderr:\n%s", rc, stderr.String())
	}
	if !strings.Contains(stderr.String(), "apt-get install -y python3-hnswlib python3-faiss") {
		t.Errorf("no install hint in stderr:\n%s", stderr.String())
	}
	if !strings.Contains(stdout.String(), "pluresdb-hnsw") {
		t.Errorf("ours did not run:\n%s", stdout.String())
	}
}

// An index without AddBatch is built from goroutines calling Add.
func TestAddConcurrently(t *testing.T) {
	ds, err := synthDataset(synthSpec{N: 400, Dim: 8, NQ: 10, Kind: kindClustered, Metric: metricL2, Seed: 4}, t.TempDir(), func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	x, err := hnsw.New(hnsw.Config{Dim: 8})
	if err != nil {
		t.Fatal(err)
	}
	keys := make([][]byte, ds.Base.Len())
	for i := range keys {
		keys[i] = keyOf(i)
	}
	plain := struct{ vecIndex }{x} // hides AddBatch
	if err := addConcurrently(plain, ds.Base, keys, 3); err != nil {
		t.Fatal(err)
	}
	if x.Len() != 400 {
		t.Fatalf("Len %d after adding 400", x.Len())
	}
	if sr, err := measureSearch(plain, ds, 10, 100, 1); err != nil || sr.Recall < 0.95 {
		t.Fatalf("search: %+v, %v", sr, err)
	}
	// An error stops the workers and is returned.
	if err := addConcurrently(plain, Vectors{Dim: 3, Data: make([]float32, 3*len(keys))}, keys, 2); err == nil {
		t.Fatal("wrong-dimension vectors accepted")
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/replication"
)

func TestRunEmbeddedJSON(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-db", dir, "-embedded", "-listen", "127.0.0.1:0",
		"-store", t.TempDir(), "-put", "k=v", "-for", "500ms", "-status-every", "0", "-json"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var st replication.Status
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		t.Fatalf("%v: %q", err, stdout.String())
	}
	// The put was published before the end.
	if st.Local == 0 || st.Published != st.Local || st.Metrics.OperationsOut != 1 {
		t.Fatalf("status %+v", st)
	}
	db, err := pluresdb.Open(dir, &pluresdb.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, err := db.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("k = %q, %v", v, err)
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-db", "x", "extra"},
		{"-db", "x", "-put", "novalue"},
		{"-bogus"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-db", t.TempDir(), "-nats", "nats://127.0.0.1:1", "-for", "1ms"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "plures-sync:") {
		t.Errorf("unreachable server: exit %d, %s", code, stderr.String())
	}
}

package replication_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/replication"
)

// TestMain runs a replica in a child process when asked (see
// TestReplicaKilled): it replicates a directory until SIGTERM.
func TestMain(m *testing.M) {
	if dir := os.Getenv("PLURES_REPL_CHILD_DIR"); dir != "" {
		os.Exit(child(dir, os.Getenv("PLURES_REPL_CHILD_URL")))
	}
	os.Exit(m.Run())
}

func child(dir, url string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	db, err := pluresdb.Open(dir, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rep, err := replication.Start(db, nc, testConfig())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-ctx.Done()
	err = rep.Stop()
	nc.Close()
	if err := errorsJoin(err, db.Close()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// A replica's process is killed (SIGKILL) again and again while its
// peers write, mid-import most of the time; restarted each time, it ends
// up with every operation once: the counter equals the sum of the
// increments.
func TestReplicaKilled(t *testing.T) {
	c := newCluster(t)
	a, d := c.add("a", testConfig()), c.add("c", testConfig())
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	startChild := func() *exec.Cmd {
		cmd := exec.Command(exe, "-test.run", "^$")
		cmd.Env = append(os.Environ(), "PLURES_REPL_CHILD_DIR="+dir, "PLURES_REPL_CHILD_URL="+c.srv.URL())
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			c.writeAll(20, a, d)
		}
	}()
	for i := range 4 {
		cmd := startChild()
		time.Sleep(time.Duration(300+100*i) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
	}
	close(done)
	wg.Wait()
	cmd := startChild()
	time.Sleep(500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	// It imported while it ran: the replicas' operations are there.
	db, err := pluresdb.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	vv := db.VersionVector()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if vv[a.db.ReplicaID()] == 0 || vv[d.db.ReplicaID()] == 0 {
		t.Fatalf("the child replica imported nothing: %v", vv)
	}
	// The killed replica joins the in-process ones, on its directory.
	b := &replica{name: "b", dir: dir, cfg: testConfig(), proxy: newProxy(t, c.addr)}
	b.open(t)
	c.reps = append(c.reps, b)
	c.writeAll(8, b) // so that every version vector names b
	c.converge(20 * time.Second)
}

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/plures/pluresdb"
)

// Part 1: a writer process killed with SIGKILL.
//
// The child (this binary, re-executed with childEnv set) opens the
// database with default options (every commit synced), commits the
// batches of its round's workload one after another and prints each
// batch's number once Commit has returned, before it starts the next; it
// flushes every flushEvery batches, so kills also land in flushes and
// compactions. The parent kills it at a random moment, reads what it
// printed, rebuilds the same batches from the same seed and checks the
// reopened database: every key holds its state after the last
// acknowledged batch, except that the batch in flight (the one after)
// may have been applied, whole: all of its keys or none.

const (
	childEnv      = "PLURES_TORTURE_CHILD" // the database directory
	childSeedEnv  = "PLURES_TORTURE_SEED"
	childRoundEnv = "PLURES_TORTURE_ROUND"
	killKeys      = 200
	flushEvery    = 16
)

// killWorkload is the workload of one round of the kill test.
func killWorkload(seed uint64, round int) *workload {
	return newWorkload(seed, 1000+uint64(round), killKeys, 8, 300, fmt.Sprintf("r%d", round))
}

// KillConfig configures the kill test.
type KillConfig struct {
	Kills    int
	Seed     uint64
	Dir      string        // the database directory; it should not exist yet
	MaxDelay time.Duration // kills come uniformly within this much of the start
	// Command returns the command that runs the child; its environment
	// gets childEnv and the others appended.
	Command func() *exec.Cmd
}

// KillFigures are the results of the kill test.
type KillFigures struct {
	Kills          int      `json:"kills"`
	KilledInOpen   int      `json:"killed_before_open_returned"`
	AckedBatches   int      `json:"acknowledged_batches"`
	AckedWrites    int      `json:"acknowledged_writes"`
	InFlightSeen   int      `json:"in_flight_batches_found_applied"`
	Lost           int      `json:"lost"`
	HalfApplied    int      `json:"half_applied_batches"`
	ReopenFailures int      `json:"reopen_failures"`
	Failures       []string `json:"failures,omitempty"`
}

// RunKill runs the kill test.
func RunKill(cfg KillConfig) KillFigures {
	var fig KillFigures
	m := model{}
	fail := func(format string, a ...any) {
		fig.Failures = append(fig.Failures, fmt.Sprintf(format, a...))
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	for round := range cfg.Kills {
		delay := time.Duration(rng.Int64N(int64(cfg.MaxDelay) + 1))
		opened, acked, stderr, err := killOnce(cfg, round, delay)
		if err != nil {
			fail("kill round %d: %v (child stderr: %s)", round, err, stderr)
			return fig
		}
		fig.Kills++
		if !opened {
			fig.KilledInOpen++
		}
		w := killWorkload(cfg.Seed, round)
		for range acked {
			b := w.next()
			m.apply(b)
			fig.AckedBatches++
			fig.AckedWrites += len(b)
		}
		inFlight := w.next()
		db, err := pluresdb.Open(cfg.Dir, nil)
		if err != nil {
			fig.ReopenFailures++
			fail("kill round %d (seed %d): reopen after SIGKILL at %v: %v", round, cfg.Seed, delay, err)
			return fig
		}
		applied, half, lost := checkAfterKill(db, m, inFlight)
		fig.Lost += len(lost)
		if half != "" {
			fig.HalfApplied++
			lost = append(lost, half)
		}
		if err := db.Close(); err != nil {
			lost = append(lost, fmt.Sprintf("close: %v", err))
		}
		for _, p := range lost {
			fail("kill round %d (seed %d, kill at %v, %d batches acknowledged): %s", round, cfg.Seed, delay, acked, p)
		}
		if len(lost) > 0 {
			return fig
		}
		if applied {
			fig.InFlightSeen++
			m.apply(inFlight)
		}
	}
	return fig
}

// checkAfterKill checks every key of db against m, allowing the keys of
// inFlight to be all in their state after it instead. It reports whether
// the batch in flight was found applied, whether it was found half
// applied (a description; "" if not) and the keys found wrong.
func checkAfterKill(db *pluresdb.DB, m model, inFlight batch) (applied bool, half string, problems []string) {
	after := m.after(inFlight)
	var before, with int
	for i := range killKeys {
		k := keyName(i)
		got, err := readDoc(db, k)
		if err != nil {
			problems = append(problems, fmt.Sprintf("read %s: %v", k, err))
			continue
		}
		want := m[k].String()
		a, inBatch := after[k]
		switch g := got.String(); {
		case g == want && (!inBatch || a.String() == want):
			// Either way.
		case g == want:
			before++
		case inBatch && g == a.String():
			with++
		case inBatch:
			problems = append(problems, fmt.Sprintf("%s = %s, want %s (acknowledged) or %s (in flight)", k, g, want, a))
		default:
			problems = append(problems, fmt.Sprintf("%s = %s, want %s (acknowledged)", k, g, want))
		}
	}
	if before > 0 && with > 0 {
		half = fmt.Sprintf("batch in flight half applied: %d keys before it, %d after it: %v", before, with, inFlight.keys())
	}
	return with > 0, half, problems
}

// killOnce runs a child for round, kills it after delay and returns
// whether it had opened the database and how many batches it
// acknowledged.
func killOnce(cfg KillConfig, round int, delay time.Duration) (opened bool, acked int, stderr string, err error) {
	cmd := cfg.Command()
	cmd.Env = append(os.Environ(), childEnv+"="+cfg.Dir,
		childSeedEnv+"="+strconv.FormatUint(cfg.Seed, 10), childRoundEnv+"="+strconv.Itoa(round))
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return false, 0, "", err
	}
	if err := cmd.Start(); err != nil {
		return false, 0, "", err
	}
	timer := time.AfterFunc(delay, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if line == "open" {
			opened = true
			continue
		}
		n, perr := strconv.Atoi(line)
		if perr != nil || n != acked {
			timer.Stop()
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return opened, acked, errBuf.String(), fmt.Errorf("child printed %q, want batch %d", line, acked)
		}
		acked++
	}
	werr := cmd.Wait()
	timer.Stop()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return opened, acked, errBuf.String(), fmt.Errorf("child ended on its own: %v", werr)
	}
	return opened, acked, errBuf.String(), nil
}

// childMain is the writer the kill test kills. It never returns on its
// own: it writes until it is killed.
func childMain() {
	dir := os.Getenv(childEnv)
	seed, _ := strconv.ParseUint(os.Getenv(childSeedEnv), 10, 64)
	round, _ := strconv.Atoi(os.Getenv(childRoundEnv))
	db, err := pluresdb.Open(dir, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	ack := func(s string) {
		if _, err := os.Stdout.WriteString(s + "\n"); err != nil {
			os.Exit(3)
		}
	}
	ack("open")
	w := killWorkload(seed, round)
	for i := 0; ; i++ {
		if err := w.next().commit(db); err != nil {
			fmt.Fprintf(os.Stderr, "child batch %d: %v\n", i, err)
			os.Exit(2)
		}
		ack(strconv.Itoa(i))
		if i%flushEvery == flushEvery-1 {
			if err := db.Flush(); err != nil {
				fmt.Fprintf(os.Stderr, "child flush after batch %d: %v\n", i, err)
				os.Exit(2)
			}
		}
	}
}

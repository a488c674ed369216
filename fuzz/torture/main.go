// Command torture attacks a PluresDB database three ways and checks that
// nothing acknowledged is lost and nothing damaged is read as good:
//
//   - kill: a writer process with default options (every commit synced)
//     is killed with SIGKILL at random moments, hundreds of times; after
//     each kill the database must reopen and hold every acknowledged
//     batch, and the batch in flight whole or not at all;
//   - damage: copies of a closed database (tables on several levels, log
//     segments, archives) get one fault each (a flipped bit, a truncated
//     file, a deleted file); the checker (package verify) must report
//     damage, and the engine must read every key right or refuse with
//     ErrCorruption (or refuse to open); then each damaged copy is
//     repaired (package repair) and must open and read every key right,
//     or report the key's range lost;
//   - diskfull: the filesystem starts failing writes with ENOSPC at a
//     random operation; every write succeeds or fails with a clear error,
//     and after a reopen with room again every acknowledged write is
//     there and writes go on.
//
// It prints its figures (-json for JSON) and exits with status 1 if any
// check failed, printing how to run the failing case again.
//
//	go run ./fuzz/torture -kills 300 -faults 500 -diskfull 200
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"time"
)

func main() {
	if os.Getenv(childEnv) != "" {
		childMain()
		return
	}
	kills := flag.Int("kills", 20, "SIGKILLs of a synced writer")
	maxDelay := flag.Duration("kill-delay", 250*time.Millisecond, "kills come at a uniformly random time within this much of the child's start")
	faults := flag.Int("faults", 50, "faults injected into copies of a closed database")
	from := flag.Int("fault-from", 0, "number of the first fault (to run one fault again: -faults 1 -fault-from N)")
	diskfull := flag.Int("diskfull", 20, "runs with the disk filling at a random operation")
	diskfullFrom := flag.Int("diskfull-from", 0, "number of the first disk-full run (to run one again: -diskfull 1 -diskfull-from N)")
	seed := flag.Uint64("seed", 0, "seed (0: from the clock)")
	asJSON := flag.Bool("json", false, "print the figures as JSON")
	flag.Parse()
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "torture:", err)
		os.Exit(2)
	}
	tmp, err := os.MkdirTemp("", "plures-torture-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "torture:", err)
		os.Exit(2)
	}
	defer os.RemoveAll(tmp)
	cfg := Config{
		Seed: *seed,
		Kills: KillConfig{Kills: *kills, MaxDelay: *maxDelay, Dir: tmp + "/kill",
			Command: func() *exec.Cmd { return exec.Command(self) }},
		Faults:       *faults,
		FaultFrom:    *from,
		DiskFull:     *diskfull,
		DiskFullFrom: *diskfullFrom,
	}
	if !*asJSON {
		fmt.Printf("seed %d\n", *seed)
	}
	fig := Run(cfg)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(fig)
	} else {
		fig.Print(os.Stdout)
	}
	if len(fig.Failures()) > 0 {
		os.Exit(1)
	}
}

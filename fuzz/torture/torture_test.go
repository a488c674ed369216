package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("torture.seed", 0, "seed of TestTorture (0: from the clock)")

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		childMain()
		return
	}
	os.Exit(m.Run())
}

// TestTorture runs a short version of the three parts: a few dozen kills,
// faults and full disks.
func TestTorture(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-torture.seed %d to run again)", seed, seed)
	cfg := Config{
		Seed: seed,
		Kills: KillConfig{Kills: 25, MaxDelay: 250 * time.Millisecond, Dir: t.TempDir() + "/db",
			Command: func() *exec.Cmd { return exec.Command(os.Args[0]) }},
		Faults:   60,
		DiskFull: 25,
	}
	if testing.Short() {
		cfg.Kills.Kills, cfg.Faults, cfg.DiskFull = 10, 30, 10
	}
	fig := Run(cfg)
	var out bytes.Buffer
	fig.Print(&out)
	t.Log(out.String())
	for _, f := range fig.Failures() {
		t.Error(f)
	}
	// The figures must show that each part did its work.
	switch {
	case fig.Kill.Kills != cfg.Kills.Kills || fig.Kill.AckedBatches == 0:
		t.Errorf("kill: %+v", fig.Kill)
	case fig.Damage.Injected != cfg.Faults || fig.Damage.Detected == 0 || fig.Damage.FilesByType["archive"] == 0 || fig.Damage.RightReads == 0:
		t.Errorf("damage: %+v", fig.Damage)
	case fig.Damage.Repair.Runs != fig.Damage.Detected || fig.Damage.Repair.Opened == 0 || fig.Damage.Repair.KeysRight == 0:
		t.Errorf("repair: %+v", fig.Damage.Repair)
	case fig.DiskFull.Injections != cfg.DiskFull || fig.DiskFull.FailedCommits == 0 || fig.DiskFull.AckedBatches == 0:
		t.Errorf("diskfull: %+v", fig.DiskFull)
	}
}

// TestDeletedArchiveDetected: a deleted archive (once undetected) is
// found by fsck, and the history export refuses rather than come up
// short.
func TestDeletedArchiveDetected(t *testing.T) {
	base, err := buildDamageBase(1)
	if err != nil {
		t.Fatal(err)
	}
	for p := range base.files {
		if fileType(p) != "archive" {
			continue
		}
		f := fault{kind: "delete", file: p}
		fig := DamageFigures{OpenRefusedBy: map[string]int{}, ReadOnlyRefusedBy: map[string]int{}, HarmlessWhy: map[string]int{}}
		if _, fails := base.check(1, -1, nil, &fig), base.check(1, 0, &f, &fig); len(fails) > 0 {
			t.Fatalf("%s: failures %q", f, fails)
		}
		if fig.Detected != 1 || fig.ExportsShort != 0 || fig.ExportsRefused != 1 {
			t.Fatalf("%s: detected %d, exports short %d, refused %d; want 1, 0, 1", f, fig.Detected, fig.ExportsShort, fig.ExportsRefused)
		}
		return
	}
	t.Fatal("no archive")
}

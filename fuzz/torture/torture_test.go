package main

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		childMain()
		return
	}
	os.Exit(m.Run())
}

func TestDamage(t *testing.T) {
	fig := RunDamage(uint64(time.Now().UnixNano()), 0, 60)
	t.Logf("%+v", fig)
	for _, f := range fig.Failures {
		t.Error(f)
	}
}

var _ = exec.Command

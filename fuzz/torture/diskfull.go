package main

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/internal/vfs"
)

// Part 3: a full disk.
//
// The workload runs on the in-memory filesystem behind a fault injector:
// from a random operation on, every write and create fails with ENOSPC
// (in half the runs a failed write first writes half its buffer, as a
// write cut short does; in half of them syncs fail too). Every commit
// must succeed or fail with an error wrapping ENOSPC or ErrReadOnly;
// reads go on; after Close and a reopen with room again, every
// acknowledged batch is there (a failed commit may or may not be), and
// writes go on.

const (
	diskFullKeys    = 300
	diskFullBatches = 1200
	// afterFailure is how many more commits are tried after the first
	// failed one.
	afterFailure = 5
)

// DiskFullFigures are the results of the disk-full test.
type DiskFullFigures struct {
	Injections int `json:"injections"`
	// NoFailedCommit: runs where the full disk failed no commit (it hit
	// background work, and the workload ended before writes stalled).
	NoFailedCommit int            `json:"runs_without_failed_commit"`
	AckedBatches   int            `json:"acknowledged_batches"`
	AckedWrites    int            `json:"acknowledged_writes"`
	FailedCommits  int            `json:"failed_commits"`
	CommitErrors   map[string]int `json:"commit_errors_by_kind"`
	// OtherErrors are failed Close calls, by kind.
	OtherErrors     int            `json:"close_errors"`
	OtherErrorKinds map[string]int `json:"close_errors_by_kind"`
	Lost            int            `json:"acknowledged_writes_lost"`
	ReopenFailures  int            `json:"reopen_failures"`
	ResumeFailures  int            `json:"writes_refused_after_reopen"`
	Failures        []string       `json:"failures,omitempty"`
}

// setModel holds, per key, every state the key may be in: a commit that
// failed may or may not have been applied.
type setModel map[string][]doc

func (m setModel) states(k string) []doc {
	if s, ok := m[k]; ok {
		return s
	}
	return []doc{{}}
}

// apply applies b; if maybe, b may not have been applied, so each key
// keeps its states before b too.
func (m setModel) apply(b batch, maybe bool) {
	byKey := map[string][]op{}
	for _, o := range b {
		byKey[o.key] = append(byKey[o.key], o)
	}
	for k, ops := range byKey {
		var next []doc
		if maybe {
			next = slices.Clone(m.states(k))
		}
		for _, d := range m.states(k) {
			for _, o := range ops {
				d = d.apply(o)
			}
			next = append(next, d)
		}
		m[k] = dedupe(next)
	}
}

func dedupe(ds []doc) []doc {
	var out []doc
	seen := map[string]bool{}
	for _, d := range ds {
		if s := d.String(); !seen[s] {
			seen[s] = true
			out = append(out, d)
		}
	}
	return out
}

// check reads every key and returns those in a state m does not allow.
func (m setModel) check(db *pluresdb.DB) []string {
	var bad []string
	for i := range diskFullKeys {
		k := keyName(i)
		got, err := readDoc(db, k)
		if err != nil {
			bad = append(bad, fmt.Sprintf("read %s: %v", k, err))
			continue
		}
		ok := false
		for _, d := range m.states(k) {
			ok = ok || d.String() == got.String()
		}
		if !ok {
			bad = append(bad, fmt.Sprintf("%s = %s, want one of %v", k, got, m.states(k)))
		}
	}
	return bad
}

// diskFullOptions are the options of the workload: small memtables and
// levels, so flushes, compactions and archiving run during it.
func diskFullOptions(fs vfs.FS) *pluresdb.Options {
	return &pluresdb.Options{FS: fs, MemtableSize: 1 << 20, L0CompactionThreshold: 2,
		TargetFileSize: 64 << 10, LBaseMaxBytes: 256 << 10, HotHistory: -1}
}

// diskFullKind names what a failed write's error says, or "" if it says
// neither ENOSPC nor ErrReadOnly.
func diskFullKind(err error) string {
	nospc := errors.Is(err, syscall.ENOSPC)
	ro := errors.Is(err, pluresdb.ErrReadOnly)
	switch {
	case ro && nospc:
		return "ErrReadOnly(ENOSPC)"
	case ro:
		return "ErrReadOnly"
	case nospc:
		return "ENOSPC"
	}
	return ""
}

// RunDiskFull runs injections from..from+n-1 of the disk-full test.
func RunDiskFull(seed uint64, from, n int) DiskFullFigures {
	fig := DiskFullFigures{CommitErrors: map[string]int{}, OtherErrorKinds: map[string]int{}}
	// A run with no fault counts the filesystem operations, to place the
	// faults among them.
	var probe DiskFullFigures
	probe.CommitErrors, probe.OtherErrorKinds = map[string]int{}, map[string]int{}
	total := diskFullRun(seed, -1, math.MaxInt64, &probe)
	if len(probe.Failures) > 0 || probe.FailedCommits > 0 {
		fig.Failures = append(probe.Failures, fmt.Sprintf("diskfull (seed %d): the run without faults failed %d commits", seed, probe.FailedCommits))
		return fig
	}
	for i := from; i < from+n; i++ {
		rng := rand.New(rand.NewPCG(seed, 5000+uint64(i)))
		fig.Injections++
		diskFullRun(seed, i, rng.Int64N(total), &fig)
	}
	return fig
}

// diskFullRun runs the workload of run i with the disk full from
// operation at on, and returns how many filesystem operations the run
// made before Close.
func diskFullRun(seed uint64, i int, at int64, fig *DiskFullFigures) int64 {
	rng := rand.New(rand.NewPCG(seed, 6000+uint64(i+1)))
	torn, syncs := rng.IntN(2) == 0, rng.IntN(2) == 0
	failf := func(format string, a ...any) {
		fig.Failures = append(fig.Failures, fmt.Sprintf("diskfull %d (seed %d, full from operation %d, torn writes %v, failing syncs %v; run again: -diskfull 1 -diskfull-from %d -seed %d -kills 0 -faults 0): %s",
			i, seed, at, torn, syncs, i, seed, fmt.Sprintf(format, a...)))
	}
	var count atomic.Int64
	var full atomic.Bool
	inject := func(op vfs.Op, _ string) error {
		if count.Add(1)-1 >= at {
			full.Store(true)
		}
		if full.Load() && (op == vfs.OpWrite || op == vfs.OpCreate || (syncs && op == vfs.OpSync)) {
			return syscall.ENOSPC
		}
		return nil
	}
	mem := vfs.NewMem()
	fs := vfs.WithFaults(mem, inject)
	if torn {
		fs = vfs.WithTornWrites(mem, inject)
	}
	m := setModel{}
	w := newWorkload(seed, 7000+uint64(i+1), diskFullKeys, 6, 1200, fmt.Sprintf("f%d", i))
	db, err := pluresdb.Open("/db", diskFullOptions(fs))
	if err != nil {
		// The disk filled while the database was created.
		if diskFullKind(err) == "" {
			failf("open on a full disk: %v, want an error wrapping ENOSPC", err)
		}
		fig.OtherErrors++
		fig.OtherErrorKinds["open "+diskFullKind(err)]++
	} else {
		failed := 0
		for range diskFullBatches {
			b := w.next()
			start := time.Now()
			err := b.commit(db)
			if d := time.Since(start); d > 20*time.Second {
				failf("a commit took %v", d)
			}
			if err == nil {
				m.apply(b, false)
				fig.AckedBatches++
				fig.AckedWrites += len(b)
				if failed > 0 {
					failed++
				}
			} else {
				kind := diskFullKind(err)
				if kind == "" {
					failf("commit failed with %v, want an error wrapping ENOSPC or ErrReadOnly", err)
					kind = "other"
				}
				fig.FailedCommits++
				fig.CommitErrors[kind]++
				m.apply(b, true)
				failed++
			}
			if failed > afterFailure {
				break
			}
		}
		if failed == 0 {
			fig.NoFailedCommit++
		}
		// Reads go on.
		if bad := m.check(db); len(bad) > 0 {
			fig.Lost += len(bad)
			failf("before close, on the full disk: %d keys wrong: %s", len(bad), first(bad))
		}
		if err := db.Close(); err != nil {
			kind := diskFullKind(err)
			if kind == "" {
				failf("close: %v, want an error wrapping ENOSPC or ErrReadOnly", err)
				kind = "other"
			}
			fig.OtherErrors++
			fig.OtherErrorKinds["close "+kind]++
		}
	}
	ops := count.Load()
	// Room again.
	db, err = pluresdb.Open("/db", diskFullOptions(mem))
	if err != nil {
		fig.ReopenFailures++
		failf("reopen with room again: %v", err)
		return ops
	}
	defer db.Close()
	if bad := m.check(db); len(bad) > 0 {
		fig.Lost += len(bad)
		failf("after reopen: %d keys wrong: %s", len(bad), first(bad))
		return ops
	}
	// Writes go on: the remaining states are settled by writes that
	// must succeed.
	for range 50 {
		b := w.next()
		if err := b.commit(db); err != nil {
			fig.ResumeFailures++
			failf("write after reopen: %v", err)
			return ops
		}
		m.apply(b, false)
	}
	if bad := m.check(db); len(bad) > 0 {
		fig.Lost += len(bad)
		failf("after writes that followed the reopen: %d keys wrong: %s", len(bad), first(bad))
	}
	return ops
}

func first(s []string) string {
	if len(s) > 3 {
		return fmt.Sprintf("%v and %d more", s[:3], len(s)-3)
	}
	return fmt.Sprint(s)
}

package pluresdb

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plures/pluresdb/compaction"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
)

// Background compaction: the picker chooses, scheduleCompactions starts up
// to MaxConcurrentCompactions at once (the picker never hands out two that
// share a table or a key range of a level), and each runs in its own
// goroutine, installs its result through the version set and schedules
// what may have become due.

func (db *DB) newPicker() *compaction.Picker {
	return compaction.NewPicker(compaction.Options{
		MoveAcrossTiers:       db.opts.ColdDir == "",
		L0CompactionThreshold: db.opts.L0CompactionThreshold,
		L0StopWritesThreshold: db.opts.L0StopWritesThreshold,
		LBaseMaxBytes:         db.opts.LBaseMaxBytes,
		LevelMultiplier:       db.opts.LevelMultiplier,
		TargetFileSize:        db.opts.TargetFileSize,
		ColdLevels:            db.opts.ColdLevels,
		TombstoneDensity:      db.opts.TombstoneDensity,
		Damaged: func(num layout.FileNum) bool {
			return db.tc != nil && db.tc.IsDamaged(num)
		},
	})
}

// currentVersion returns the current version, ref'd for the caller.
func (db *DB) currentVersion() *lsm.Version {
	db.stateMu.RLock()
	v := db.version
	v.Ref()
	db.stateMu.RUnlock()
	return v
}

// kickCompactions is scheduleCompactions for callers without bgMu.
func (db *DB) kickCompactions() {
	db.bgMu.Lock()
	db.scheduleCompactions()
	db.bgMu.Unlock()
}

// scheduleCompactions starts background compactions while slots are free
// and the picker finds work. Called with bgMu held.
func (db *DB) scheduleCompactions() {
	if db.closing {
		return
	}
	for db.manualWait == 0 && !db.opts.DisableAutoCompaction &&
		len(db.running) < db.opts.MaxConcurrentCompactions {
		v := db.currentVersion()
		c := db.picker.Pick(v, db.running)
		if c == nil {
			v.Unref()
			break
		}
		db.running = append(db.running, c)
		db.wg.Add(1)
		go db.runBackground(v, c)
	}
	db.updateWriteThrottle()
}

func (db *DB) runBackground(v *lsm.Version, c *compaction.Compaction) {
	defer db.wg.Done()
	err := db.runCompaction(v, c)
	v.Unref()
	db.bgMu.Lock()
	defer db.bgMu.Unlock()
	db.running = slices.DeleteFunc(db.running, func(r *compaction.Compaction) bool { return r == c })
	db.bgCond.Broadcast()
	if err != nil && db.noteDamagedInputs(c, err) {
		// The picker now leaves the damaged tables alone: go on with
		// other work rather than retry this in a loop.
		db.m.compactionsDamaged.Add(1)
		db.log.Error().Err(err).Str("reason", c.Reason).Msg("compaction hit a damaged table; leaving it alone")
		db.scheduleCompactions()
		return
	}
	if err != nil {
		db.bgErr = err
		db.log.Error().Err(err).Str("reason", c.Reason).Msg("compaction failed; retrying in a second")
		time.AfterFunc(time.Second, db.kickCompactions)
		return
	}
	db.bgErr = nil
	db.scheduleCompactions()
}

// noteDamagedInputs marks as damaged the inputs of c that err, from
// running c, says are damaged, and reports whether err is such damage.
// Corruption that names no input (a bad value found while merging) marks
// every input: they cannot be compacted together. A reopen, or a manual
// Compact, tries them again.
func (db *DB) noteDamagedInputs(c *compaction.Compaction, err error) bool {
	if !errors.Is(err, errs.ErrCorruption) {
		return false
	}
	var ce *errs.CorruptionError
	named := errors.As(err, &ce)
	marked := false
	for _, files := range c.Inputs {
		for _, f := range files {
			if db.tc.IsDamaged(f.Num) {
				marked = true
				continue
			}
			if named {
				if t, n, ok := layout.Parse(filepath.Base(ce.File)); ok && t == layout.TypeTable && n == f.Num {
					db.tc.MarkDamaged(f.Num, ce.File, err)
					marked = true
				}
			}
		}
	}
	if !marked {
		for _, files := range c.Inputs {
			for _, f := range files {
				path := layout.Path(lsm.TableDir(db.dir, db.opts.ColdDir, f.Cold), layout.TypeTable, f.Num)
				db.tc.MarkDamaged(f.Num, path, err)
			}
		}
	}
	return true
}

// runCompaction executes c, picked on v, and installs the result.
func (db *DB) runCompaction(v *lsm.Version, c *compaction.Compaction) error {
	start := time.Now()
	var inBytes [lsm.NumLevels]uint64
	for i, files := range c.Inputs {
		level := c.Level
		if i == 1 {
			level = c.OutputLevel
		}
		for _, f := range files {
			inBytes[level] += f.Size
		}
	}
	env := db.tableEnv(c.OutputCold, c.TargetFileSize)
	spec := compaction.WriteSpec{
		Snapshots:  db.snapshotSeqs(),
		Bottommost: c.Bottommost,
		Merger:     db.ol.compactMerger,
	}
	if c.Bottommost {
		var tomb func(ukey, value []byte, seq lsm.SeqNum) bool
		if db.ol.damage == nil {
			// Without the op log's metadata the peers' acknowledgements
			// are unknown: no tombstone is provably seen by all.
			tomb = db.tombstoneCollector()
		}
		series := db.seriesCollector(time.Now())
		deleted := db.deletedChunkCollector()
		if tomb != nil || series != nil || deleted != nil {
			spec.Collect = func(ukey, value []byte, seq lsm.SeqNum) bool {
				if deleted != nil && deleted(ukey, value) {
					return true
				}
				if series != nil && series(ukey) {
					return db.newestIs(ukey, seq)
				}
				return tomb != nil && tomb(ukey, value, seq)
			}
		}
	}
	ve, st, err := compaction.Run(env, db.tc, c, spec)
	if err != nil {
		return fmt.Errorf("pluresdb: %s compaction L%d→L%d: %w", c.Reason, c.Level, c.OutputLevel, err)
	}
	if err := db.logAndInstall(ve, nil); err != nil {
		if !c.TrivialMove && uninstalled(err) {
			for _, f := range ve.NewFiles {
				db.removeTableFile(f.Meta.Num, f.Meta.Cold)
			}
		}
		return fmt.Errorf("pluresdb: recording compaction: %w", err)
	}

	db.m.compactions.Add(1)
	db.m.addCompaction(c.Reason)
	if !c.TrivialMove {
		db.m.compactBytes.Add(st.BytesWritten)
		db.m.levelWritten[c.OutputLevel].Add(st.BytesWritten)
		for level, n := range inBytes {
			db.m.levelRead[level].Add(n)
		}
	}
	db.log.Debug().Str("reason", c.Reason).Int("from", c.Level).Int("to", c.OutputLevel).
		Int("in", len(c.Inputs[0])+len(c.Inputs[1])).Int("out", len(ve.NewFiles)).
		Uint64("bytes", st.BytesWritten).Bool("move", c.TrivialMove).Dur("took", time.Since(start)).
		Msg("compacted")
	return nil
}

// Compact flushes the memtable and compacts every table overlapping
// the documents [lower, upper) (nil: unbounded) down to the bottom level,
// dropping overwritten values and deletions no snapshot needs, folding
// merge operands. With both bounds nil it compacts the whole database:
// documents, time series, indexes and metadata. Background compactions
// pause while it runs.
func (db *DB) Compact(lower, upper []byte) error {
	if lower == nil && upper == nil {
		return db.compactRange([]byte{0}, []byte{0xff})
	}
	var lo, hi []byte
	if lower != nil {
		lo = append([]byte{nsDocuments}, lower...)
	} else {
		lo = []byte{nsDocuments}
	}
	if upper != nil {
		hi = append([]byte{nsDocuments}, upper...)
	} else {
		hi = []byte{nsDocuments + 1}
	}
	return db.compactRange(lo, hi)
}

// compactRange is Compact over the stored keys [lo, hi) (namespace byte
// first).
func (db *DB) compactRange(lo, hi []byte) error {
	if err := db.Flush(); err != nil {
		return err
	}
	return db.paused(func() error {
		for {
			v := db.currentVersion()
			c := db.picker.PickManual(v, lo, hi, nil)
			if c == nil {
				v.Unref()
				return nil
			}
			err := db.runCompaction(v, c)
			v.Unref()
			if err != nil {
				return err
			}
		}
	})
}

// paused runs fn with background compactions paused: none runs, none
// starts, until fn returns.
func (db *DB) paused(fn func() error) error {
	db.bgMu.Lock()
	db.manualWait++
	for len(db.running) > 0 && !db.closing {
		db.bgCond.Wait()
	}
	closing := db.closing
	db.bgMu.Unlock()
	defer func() {
		db.bgMu.Lock()
		db.manualWait--
		db.scheduleCompactions()
		db.bgCond.Broadcast()
		db.bgMu.Unlock()
	}()
	if closing {
		return errs.ErrClosed
	}
	return fn()
}

// WaitForCompactions blocks until no flush or compaction is running or
// due, or one fails.
func (db *DB) WaitForCompactions() error {
	db.bgMu.Lock()
	defer db.bgMu.Unlock()
	for {
		if db.closing {
			return errs.ErrClosed
		}
		if db.bgErr != nil {
			return db.bgErr
		}
		if db.oldestImm() == nil && len(db.running) == 0 {
			if db.opts.DisableAutoCompaction {
				return nil
			}
			v := db.currentVersion()
			due := db.picker.Pick(v, nil) != nil
			v.Unref()
			if !due {
				return nil
			}
			db.scheduleCompactions()
		}
		db.bgCond.Wait()
	}
}

// Write throttling: as L0 deepens past L0SlowdownWritesThreshold, or the
// bytes compactions owe pass the soft limit, commits are paced to
// SlowdownWriteRate bytes a second, so compaction catches up before
// writes have to stop altogether (at L0StopWritesThreshold).

// updateWriteThrottle recomputes whether writes are paced. Called with
// bgMu held after the tree changes.
func (db *DB) updateWriteThrottle() {
	v := db.currentVersion()
	defer v.Unref()
	slow := v.NumFiles(0) >= db.opts.L0SlowdownWritesThreshold ||
		db.compactionDebt(v) >= db.opts.SoftPendingCompactionBytes
	db.throttle.slow.Store(slow)
}

// compactionDebt estimates the bytes compaction must rewrite to bring
// every level under its target.
func (db *DB) compactionDebt(v *lsm.Version) int64 {
	_, targets := db.picker.Levels(v)
	var debt int64
	for level := 1; level < lsm.NumLevels; level++ {
		if size := int64(v.LevelSize(level)); targets[level] > 0 && size > targets[level] {
			// Bytes over the target move down, rewriting about
			// LevelMultiplier times their size below.
			debt += (size - targets[level]) * int64(db.opts.LevelMultiplier)
		}
	}
	if l0 := v.NumFiles(0); l0 >= db.opts.L0CompactionThreshold {
		debt += int64(v.LevelSize(0))
	}
	return debt
}

// writeThrottle paces commits while compaction is behind.
type writeThrottle struct {
	slow atomic.Bool
	mu   sync.Mutex
	owed time.Duration // pacing delay accumulated but not yet slept
}

// pace delays a commit of n bytes if writes are throttled.
func (db *DB) pace(n int) {
	if !db.throttle.slow.Load() {
		return
	}
	t := &db.throttle
	t.mu.Lock()
	t.owed += time.Duration(float64(n) / float64(db.opts.SlowdownWriteRate) * float64(time.Second))
	if t.owed < time.Millisecond {
		t.mu.Unlock()
		return
	}
	d := t.owed
	t.owed = 0
	t.mu.Unlock()
	time.Sleep(d)
	db.m.slowdowns.Add(1)
	db.m.slowdownNanos.Add(uint64(d))
}

// removeTableFile deletes a table's file from its tier's directory.
func (db *DB) removeTableFile(num layout.FileNum, cold bool) {
	path := layout.Path(lsm.TableDir(db.dir, db.opts.ColdDir, cold), layout.TypeTable, num)
	_ = db.fs.Remove(path)
}

package compaction

import (
	"bytes"
	"fmt"

	"github.com/plures/pluresdb/lsm"
)

// Compaction is one merge of input tables into OutputLevel.
type Compaction struct {
	// Inputs[0] are tables of Level, Inputs[1] the overlapping tables of
	// OutputLevel.
	Inputs      [2][]*lsm.FileMeta
	Level       int
	OutputLevel int
	// Bottommost: no level below OutputLevel holds data in the inputs' range.
	Bottommost bool
	// Reason names the trigger, for logs and metrics.
	Reason string
}

// PickL0 returns an L0 → L1 compaction once L0 holds at least threshold
// tables, or nil. Every L0 table is taken (L0 tables overlap, and an older
// one must never be left above a newer one), with the L1 tables they
// overlap.
func PickL0(v *lsm.Version, threshold int) *Compaction {
	if threshold <= 0 || len(v.Levels[0]) < threshold {
		return nil
	}
	lo, hi := keySpan(v.Levels[0])
	return pick(v, lo, hi, "l0-count")
}

// PickRange returns a compaction that merges every L0 table and the L1
// tables overlapping the user-key range [lower, upper] (nil: unbounded),
// widened to cover the L0 tables, into L1; nil when there is nothing to
// merge.
func PickRange(v *lsm.Version, lower, upper []byte) *Compaction {
	lo, hi := lower, upper
	if len(v.Levels[0]) > 0 {
		s, l := keySpan(v.Levels[0])
		if lo != nil && bytes.Compare(s, lo) < 0 {
			lo = s
		}
		if hi != nil && bytes.Compare(l, hi) > 0 {
			hi = l
		}
	}
	c := pick(v, lo, hi, "manual")
	if len(c.Inputs[0]) == 0 && len(c.Inputs[1]) == 0 {
		return nil
	}
	return c
}

func pick(v *lsm.Version, lo, hi []byte, reason string) *Compaction {
	c := &Compaction{Level: 0, OutputLevel: 1, Reason: reason, Bottommost: true}
	c.Inputs[0] = append(c.Inputs[0], v.Levels[0]...)
	c.Inputs[1] = v.Overlaps(1, lo, hi)
	for level := 2; level < lsm.NumLevels; level++ {
		if len(v.Levels[level]) > 0 {
			c.Bottommost = false
		}
	}
	return c
}

// keySpan returns the smallest and largest user keys of files.
func keySpan(files []*lsm.FileMeta) (smallest, largest []byte) {
	for i, f := range files {
		s, l := lsm.UserKey(f.Smallest), lsm.UserKey(f.Largest)
		if i == 0 || bytes.Compare(s, smallest) < 0 {
			smallest = s
		}
		if i == 0 || bytes.Compare(l, largest) > 0 {
			largest = l
		}
	}
	return smallest, largest
}

// Run merges the compaction's inputs into new tables of OutputLevel and
// returns the version edit that installs them. The caller applies the
// edit; until then the outputs are unreferenced files.
func Run(env Env, tc *lsm.TableCache, c *Compaction, snapshots []lsm.SeqNum) (*lsm.VersionEdit, Stats, error) {
	var iters []lsm.InternalIterator
	closeAll := func() {
		for _, it := range iters {
			_ = it.Close()
		}
	}
	// Newest first: L0 inputs arrive sorted newest first.
	for _, f := range c.Inputs[0] {
		t, err := tc.Acquire(f)
		if err != nil {
			closeAll()
			return nil, Stats{}, fmt.Errorf("compaction: opening input %s: %w", f.Num, err)
		}
		iters = append(iters, &releasingIter{InternalIterator: t.NewIter(), release: func() { tc.Release(t) }})
	}
	if len(c.Inputs[1]) > 0 {
		iters = append(iters, lsm.NewLevelIter(tc, c.Inputs[1]))
	}
	merged := lsm.NewMergingIter(iters...)
	metas, st, err := Write(env, merged, WriteSpec{Snapshots: snapshots, Bottommost: c.Bottommost})
	if cerr := merged.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, st, err
	}
	ve := &lsm.VersionEdit{}
	for level, files := range c.Inputs {
		l := c.Level
		if level == 1 {
			l = c.OutputLevel
		}
		for _, f := range files {
			ve.DeletedFiles = append(ve.DeletedFiles, lsm.DeletedFile{Level: l, Num: f.Num})
		}
	}
	for _, m := range metas {
		ve.NewFiles = append(ve.NewFiles, lsm.NewFile{Level: c.OutputLevel, Meta: m})
	}
	return ve, st, nil
}

// releasingIter returns its table to the cache when closed.
type releasingIter struct {
	lsm.InternalIterator
	release func()
}

func (r *releasingIter) Close() error {
	err := r.InternalIterator.Close()
	r.release()
	return err
}

package compaction

// The leveled compaction picker and the runner.
//
// Shape of the tree (dynamic level sizes, as RocksDB's
// level_compaction_dynamic_level_bytes):
//
//	L0     flushed tables, overlapping; compacted by count
//	 ...   empty levels above the base level
//	Lbase  where L0 compacts into; target in [LBaseMaxBytes/M, LBaseMaxBytes)
//	 ...   each level M times the one above
//	L6     the bottom; its target is its actual size
//
// The bottom ColdLevels levels below the base level form the cold tier:
// their tables live in the cold directory with the cold codec, so a table
// that crosses the tier boundary is rewritten, never moved. The base level
// is never cold, even when it is one of the bottom levels (a database too
// small to have levels below its base): what L0 compacts into is fresh
// data, rewritten often, and compressing it with the slow codec would
// cost every write.
//
// Invariants every pick keeps:
//   - For any user key, data at a smaller level number is newer. An L0 → base
//     compaction therefore takes every L0 table overlapping its range,
//     transitively; a skip-level compaction (manual) passes only levels
//     holding nothing in its range.
//   - Tables of levels >= 1 never share a user key: input sets are widened
//     until their edge user keys appear in no neighbouring table.
//   - Running compactions never share a table, never both move L0 into the
//     base level, and never touch the same key range of a level >= 1
//     (Compaction.Overlaps), so they can run concurrently and their edits
//     apply in any order.

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
)

// Options configure a Picker. A zero field takes its default.
type Options struct {
	// Damaged, if set, reports the tables found damaged: automatic picks
	// (Pick) leave every compaction that would read one alone, so a bad
	// block is not retried in a loop. PickManual ignores it.
	Damaged func(num layout.FileNum) bool
	// MoveAcrossTiers lets a table move into (or out of) the cold tier by
	// a version edit alone, keeping its encoding until its next rewrite.
	// Right when both tiers share a directory; with a separate cold
	// directory a tier change must rewrite the table there.
	MoveAcrossTiers bool
	// L0CompactionThreshold: the L0 score is the L0 table count divided by
	// this. Default 4.
	L0CompactionThreshold int
	// L0StopWritesThreshold is the L0 count at which the engine stops
	// writes; the picker only reports it. Default 12.
	L0StopWritesThreshold int
	// LBaseMaxBytes bounds the target of the base level. Default 64 MiB.
	LBaseMaxBytes int64
	// LevelMultiplier is the size ratio between adjacent levels. Default 10.
	LevelMultiplier int
	// TargetFileSize is the output table size at the base level; it doubles
	// per level below, up to max(128 MiB, TargetFileSize). Default 4 MiB:
	// small tables let the min-overlap choice find cheap compactions.
	TargetFileSize int64
	// ColdLevels is how many bottom levels form the cold tier (at most
	// NumLevels-1: L0 is always hot, and so is the base level). Default 2;
	// negative: no cold tier.
	ColdLevels int
	// TombstoneDensity: a table of level >= 1 with at least
	// TombstoneMinDeletions deletions making up at least this share of its
	// entries is compacted even without size pressure. Default 0.5;
	// negative disables.
	TombstoneDensity float64
	// TombstoneMinDeletions: see TombstoneDensity. Default 1000.
	TombstoneMinDeletions uint64
}

const (
	// maxTargetFileSize caps the per-level doubling of TargetFileSize.
	maxTargetFileSize = 128 << 20
	// grandparentOverlapFactor: one output (or a trivial move) may overlap
	// at most this many target file sizes of the level below its own, so
	// a later compaction of it stays bounded.
	grandparentOverlapFactor = 10
	// fruitlessRetry is how long a bottom-level rewrite that dropped
	// nothing (a snapshot or the GC horizon kept the tombstones) is not
	// retried.
	fruitlessRetry = time.Minute
)

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.L0CompactionThreshold <= 0 {
		o.L0CompactionThreshold = 4
	}
	if o.L0StopWritesThreshold <= 0 {
		o.L0StopWritesThreshold = max(12, o.L0CompactionThreshold)
	}
	if o.LBaseMaxBytes <= 0 {
		o.LBaseMaxBytes = 64 << 20
	}
	if o.LevelMultiplier < 2 {
		o.LevelMultiplier = 10
	}
	if o.TargetFileSize <= 0 {
		o.TargetFileSize = 4 << 20
	}
	switch {
	case o.ColdLevels == 0:
		o.ColdLevels = 2
	case o.ColdLevels < 0:
		o.ColdLevels = 0
	case o.ColdLevels > lsm.NumLevels-1:
		o.ColdLevels = lsm.NumLevels - 1
	}
	if o.TombstoneDensity == 0 {
		o.TombstoneDensity = 0.5
	}
	if o.TombstoneMinDeletions == 0 {
		o.TombstoneMinDeletions = 1000
	}
}

// Compaction is one merge (or move) of input tables into OutputLevel.
// Once picked it is read-only, and may be shared by goroutines.
type Compaction struct {
	Level, OutputLevel int
	// Inputs[0] are tables of Level (L0: newest first), Inputs[1] the
	// overlapping tables of OutputLevel (empty when OutputLevel == Level).
	Inputs [2][]*lsm.FileMeta
	// Grandparents are the tables of OutputLevel+1 overlapping the
	// compaction's range; Run ends an output before it overlaps more than
	// grandparentOverlapFactor × TargetFileSize of them.
	Grandparents []*lsm.FileMeta
	// Bottommost: no level below OutputLevel holds data in Range().
	Bottommost bool
	// TrivialMove: the single input table moves to OutputLevel by a
	// version edit, without a rewrite.
	TrivialMove bool
	// OutputCold: OutputLevel is in the cold tier; the caller writes the
	// outputs with the cold Env.
	OutputCold bool
	// TargetFileSize splits outputs (0: never split, for L0 outputs).
	TargetFileSize int64
	// Reason names the trigger: "l0", "size", "intra-l0", "tombstones",
	// "manual", or "move" for any trivial move.
	Reason string
	// Score is what made the level eligible (level score, or tombstone
	// density).
	Score float64
}

func (c *Compaction) String() string {
	var nums [2][]layout.FileNum
	for i, files := range c.Inputs {
		for _, f := range files {
			nums[i] = append(nums[i], f.Num)
		}
	}
	return fmt.Sprintf("%s L%d%v→L%d%v move=%t bottom=%t cold=%t", c.Reason, c.Level, nums[0],
		c.OutputLevel, nums[1], c.TrivialMove, c.Bottommost, c.OutputCold)
}

// Range returns the user-key span of all inputs (nil, nil if none).
func (c *Compaction) Range() (smallest, largest []byte) {
	s0, l0 := span(c.Inputs[0])
	s1, l1 := span(c.Inputs[1])
	switch {
	case s0 == nil:
		return s1, l1
	case s1 == nil:
		return s0, l0
	}
	if bytes.Compare(s1, s0) < 0 {
		s0 = s1
	}
	if bytes.Compare(l1, l0) > 0 {
		l0 = l1
	}
	return s0, l0
}

// Overlaps reports whether c and o cannot run together: they share a
// table, both compact L0 into a lower level, or both touch a level >= 1
// (any level from Level to OutputLevel, which a skip-level compaction
// passes through) in key ranges that meet. L0 tables overlap by nature, so
// at L0 only shared tables conflict.
func (c *Compaction) Overlaps(o *Compaction) bool {
	for _, a := range c.Inputs {
		for _, f := range a {
			for _, b := range o.Inputs {
				for _, g := range b {
					if f.Num == g.Num {
						return true
					}
				}
			}
		}
	}
	if c.Level == 0 && c.OutputLevel > 0 && o.Level == 0 && o.OutputLevel > 0 {
		return true
	}
	// c touches levels max(Level, 1)..OutputLevel (none when intra-L0).
	if max(c.Level, o.Level, 1) > min(c.OutputLevel, o.OutputLevel) {
		return false
	}
	cs, cl := c.Range()
	os, ol := o.Range()
	return cs != nil && os != nil && bytes.Compare(cs, ol) <= 0 && bytes.Compare(os, cl) <= 0
}

func (c *Compaction) conflicts(running []*Compaction) bool {
	for _, r := range running {
		if c.Overlaps(r) {
			return true
		}
	}
	return false
}

// Picker chooses compactions. Its methods are safe for concurrent use; the
// caller serializes Pick with starting what it returns, so that running
// is accurate.
type Picker struct {
	opts Options
	now  func() time.Time
	bulk atomic.Bool // see SetBulkLoad

	mu sync.Mutex
	// fruitless remembers bottom-level rewrites by the input's content:
	// an output table with the same bounds and counts but a new number
	// means the rewrite dropped nothing, and retrying it would only spin.
	fruitless map[tableSig]fruitlessRewrite
}

type tableSig struct {
	smallest, largest  string
	entries, deletions uint64
}

type fruitlessRewrite struct {
	input layout.FileNum
	at    time.Time
}

func sigOf(f *lsm.FileMeta) tableSig {
	return tableSig{string(f.Smallest), string(f.Largest), f.NumEntries, f.NumDeletions}
}

// NewPicker returns a Picker for opts (defaults filled in).
func NewPicker(opts Options) *Picker {
	opts.EnsureDefaults()
	return &Picker{opts: opts, now: time.Now, fruitless: make(map[tableSig]fruitlessRewrite)}
}

// Options returns the options in use, defaults filled in.
func (p *Picker) Options() Options { return p.opts }

// Levels computes the dynamic level layout: the bottom level's target is
// the largest level size (its own, once the tree is settled), each level
// above is 1/LevelMultiplier of the one below, and the base level is the
// highest whose target is still >= LBaseMaxBytes/LevelMultiplier, but never
// below the first non-empty level (L0 must not compact past data). Levels
// above the base have target 0; so has L0, which is counted in tables.
func (p *Picker) Levels(v *lsm.Version) (baseLevel int, targets [lsm.NumLevels]int64) {
	const bottom = lsm.NumLevels - 1
	var maxSize int64
	first := -1
	for level := 1; level < lsm.NumLevels; level++ {
		size := int64(v.LevelSize(level))
		if size > 0 && first < 0 {
			first = level
		}
		maxSize = max(maxSize, size)
	}
	if maxSize == 0 {
		return bottom, targets
	}
	mult := int64(p.opts.LevelMultiplier)
	targets[bottom] = maxSize
	for level := bottom - 1; level >= 1; level-- {
		targets[level] = targets[level+1] / mult
	}
	baseLevel = bottom
	for level := bottom - 1; level >= 1 && targets[level] >= p.opts.LBaseMaxBytes/mult; level-- {
		baseLevel = level
	}
	baseLevel = min(baseLevel, first)
	for level := 1; level < baseLevel; level++ {
		targets[level] = 0
	}
	return baseLevel, targets
}

// pickState is what one pick works from.
type pickState struct {
	v       *lsm.Version
	running []*Compaction
	base    int
	targets [lsm.NumLevels]int64
	inUse   map[layout.FileNum]bool
}

func (p *Picker) newState(v *lsm.Version, running []*Compaction) *pickState {
	st := &pickState{v: v, running: running, inUse: make(map[layout.FileNum]bool)}
	st.base, st.targets = p.Levels(v)
	for _, r := range running {
		for _, files := range r.Inputs {
			for _, f := range files {
				st.inUse[f.Num] = true
			}
		}
	}
	if p.opts.Damaged != nil {
		// A damaged table is never free.
		for _, files := range v.Levels {
			for _, f := range files {
				if p.opts.Damaged(f.Num) {
					st.inUse[f.Num] = true
				}
			}
		}
	}
	return st
}

// blocked reports whether c cannot run now: it conflicts with a running
// compaction or reads a table in use or damaged.
func (st *pickState) blocked(c *Compaction) bool {
	return c.conflicts(st.running) || st.anyInUse(c.Inputs[0]) || st.anyInUse(c.Inputs[1])
}

func (st *pickState) anyInUse(files []*lsm.FileMeta) bool {
	for _, f := range files {
		if st.inUse[f.Num] {
			return true
		}
	}
	return false
}

// SetBulkLoad says whether a bulk load is adding tables to L0 (an import
// ingesting its operands). While it does, L0's compaction threshold rises
// to two below L0StopWritesThreshold (the engine lets L0 grow past that
// during the load): L0 then drains into the base level in fewer, larger
// compactions, each of which rewrites the overlapping part of the base
// level once for more incoming data, and a load of up to about that many
// tables does not share the CPUs with them.
func (p *Picker) SetBulkLoad(on bool) { p.bulk.Store(on) }

// l0Threshold is the L0 table count at which L0 scores 1.
func (p *Picker) l0Threshold() int {
	if p.bulk.Load() {
		return max(p.opts.L0CompactionThreshold, p.opts.L0StopWritesThreshold-2)
	}
	return p.opts.L0CompactionThreshold
}

// Scores returns each level's compaction score: L0's is its table count
// (a running intra-L0 compaction counting as the one table it will
// leave, tables leaving L0 not at all) over L0CompactionThreshold (see
// SetBulkLoad); a
// deeper level's is its bytes, less those being compacted out of it, over
// its target. The bottom level has nowhere to go and scores 0.
func (p *Picker) Scores(v *lsm.Version, running []*Compaction) [lsm.NumLevels]float64 {
	return p.scores(p.newState(v, running))
}

func (p *Picker) scores(st *pickState) [lsm.NumLevels]float64 {
	var scores [lsm.NumLevels]float64
	l0 := 0
	for _, f := range st.v.Levels[0] {
		if !st.inUse[f.Num] {
			l0++
		}
	}
	var leaving [lsm.NumLevels]uint64
	for _, r := range st.running {
		if r.Level == 0 && r.OutputLevel == 0 {
			l0++
		}
		if r.Level != r.OutputLevel {
			for _, f := range r.Inputs[0] {
				leaving[r.Level] += f.Size
			}
		}
	}
	scores[0] = float64(l0) / float64(p.l0Threshold())
	for level := 1; level < lsm.NumLevels-1; level++ {
		size := st.v.LevelSize(level)
		if size <= leaving[level] {
			continue
		}
		scores[level] = float64(size-leaving[level]) / float64(max(st.targets[level], 1))
	}
	return scores
}

// Pick returns the most urgent compaction with score >= 1 that can run
// beside running, else a tombstone-density compaction, else nil.
func (p *Picker) Pick(v *lsm.Version, running []*Compaction) *Compaction {
	st := p.newState(v, running)
	scores := p.scores(st)
	levels := make([]int, 0, lsm.NumLevels)
	for level, s := range scores {
		if s >= 1 {
			levels = append(levels, level)
		}
	}
	slices.SortStableFunc(levels, func(a, b int) int { return cmp.Compare(scores[b], scores[a]) })
	for _, level := range levels {
		var c *Compaction
		if level == 0 {
			if c = p.pickL0(st); c == nil {
				c = p.pickIntraL0(st)
			}
		} else {
			c = p.pickSize(st, level)
		}
		if c != nil {
			c.Score = scores[level]
			return c
		}
	}
	return p.pickTombstones(st)
}

// pickL0 returns an L0 → base compaction seeded by the oldest free L0
// table whose transitive overlap set is free and whose range is free in
// the base level.
func (p *Picker) pickL0(st *pickState) *Compaction {
	l0 := st.v.Levels[0]
	tried := make(map[layout.FileNum]bool)
	for i := len(l0) - 1; i >= 0; i-- {
		f := l0[i]
		if st.inUse[f.Num] || tried[f.Num] {
			continue
		}
		in0 := st.v.Overlaps(0, lsm.UserKey(f.Smallest), lsm.UserKey(f.Largest))
		for _, g := range in0 {
			tried[g.Num] = true
		}
		if st.anyInUse(in0) {
			continue
		}
		c := p.newCompaction(st, 0, st.base, in0, "l0")
		if !st.blocked(c) {
			return c
		}
	}
	return nil
}

// pickIntraL0 merges the oldest run of free L0 tables, adjacent in age,
// into one L0 table when L0 is deep but cannot drain into the base level.
func (p *Picker) pickIntraL0(st *pickState) *Compaction {
	l0 := st.v.Levels[0]
	free := 0
	for _, f := range l0 {
		if !st.inUse[f.Num] {
			free++
		}
	}
	if free < p.l0Threshold()+2 {
		return nil
	}
	// l0 is newest first: walk from the end for the oldest run.
	for end := len(l0); end > 0; {
		if st.inUse[l0[end-1].Num] {
			end--
			continue
		}
		start := end - 1
		for start > 0 && !st.inUse[l0[start-1].Num] {
			start--
		}
		if end-start >= 2 {
			c := p.newCompaction(st, 0, 0, l0[start:end:end], "intra-l0")
			if !st.blocked(c) {
				return c
			}
		}
		end = start
	}
	return nil
}

// pickSize returns a level → level+1 compaction of the free table with
// the least bytes overlapping in level+1 per byte moved: the cheapest in
// write amplification.
func (p *Picker) pickSize(st *pickState, level int) *Compaction {
	if level < st.base || level >= lsm.NumLevels-1 {
		return nil
	}
	files, next := st.v.Levels[level], st.v.Levels[level+1]
	var (
		best      *Compaction
		bestRatio float64
	)
	for k, f := range files {
		if st.inUse[f.Num] {
			continue
		}
		i, j := wholeKeys(files, k, k+1)
		in0 := files[i:j:j]
		if st.anyInUse(in0) {
			continue
		}
		s, l := span(in0)
		a, b := overlapping(next, s, l)
		if st.anyInUse(next[a:b]) {
			continue
		}
		ratio := float64(totalSize(next[a:b])) / float64(max(totalSize(in0), 1))
		if best != nil && ratio >= bestRatio {
			continue
		}
		c := p.newCompaction(st, level, level+1, in0, "size")
		if st.blocked(c) {
			continue
		}
		best, bestRatio = c, ratio
	}
	return best
}

// pickTombstones returns a compaction of the densest free table whose
// deletions pass TombstoneDensity: down one level, or, at the bottom, a
// rewrite in place that drops them.
func (p *Picker) pickTombstones(st *pickState) *Compaction {
	if p.opts.TombstoneDensity < 0 {
		return nil
	}
	type candidate struct {
		level, index int
		density      float64
	}
	var cands []candidate
	for level := 1; level < lsm.NumLevels; level++ {
		for k, f := range st.v.Levels[level] {
			if f.NumDeletions < p.opts.TombstoneMinDeletions || f.NumEntries == 0 || st.inUse[f.Num] {
				continue
			}
			if d := float64(f.NumDeletions) / float64(f.NumEntries); d >= p.opts.TombstoneDensity {
				cands = append(cands, candidate{level, k, d})
			}
		}
	}
	if len(cands) == 0 {
		return nil
	}
	slices.SortStableFunc(cands, func(a, b candidate) int { return cmp.Compare(b.density, a.density) })
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pruneFruitlessLocked(st.v)
	for _, cd := range cands {
		files := st.v.Levels[cd.level]
		var c *Compaction
		if cd.level == lsm.NumLevels-1 {
			if p.fruitlessLocked(files[cd.index]) {
				continue
			}
			c = p.newCompaction(st, cd.level, cd.level, files[cd.index:cd.index+1:cd.index+1], "tombstones")
		} else {
			i, j := wholeKeys(files, cd.index, cd.index+1)
			c = p.newCompaction(st, cd.level, cd.level+1, files[i:j:j], "tombstones")
		}
		if st.blocked(c) {
			continue
		}
		if c.Level == c.OutputLevel {
			p.noteRewriteLocked(c.Inputs[0][0])
		}
		c.Score = cd.density
		return c
	}
	return nil
}

// PickManual returns the next step of compacting [lower, upper] (user keys
// inclusive, nil: unbounded) down to the bottom level, or nil. Each step
// takes every table of the topmost level holding data in the range into
// the next level that holds data in the step's range (or the bottom, the
// levels between being empty there); once everything is at the bottom,
// tables there holding deletions are rewritten in place, one per step.
// nil with no running compactions means done; with some, a step conflicts
// with them: wait for one to finish and ask again. Steps only move data
// down, and a bottom rewrite that drops nothing is not repeated, so a
// caller looping until nil terminates.
func (p *Picker) PickManual(v *lsm.Version, lower, upper []byte, running []*Compaction) *Compaction {
	st := p.newState(v, running)
	const bottom = lsm.NumLevels - 1
	for level := 0; level < bottom; level++ {
		var in0 []*lsm.FileMeta
		if level == 0 {
			in0 = v.Overlaps(0, lower, upper)
		} else {
			i, j := overlapping(v.Levels[level], lower, upper)
			in0 = v.Levels[level][i:j:j]
		}
		if len(in0) == 0 {
			continue
		}
		s, l := span(in0)
		out := bottom
		for k := level + 1; k < bottom; k++ {
			if i, j := overlapping(v.Levels[k], s, l); i < j {
				out = k
				break
			}
		}
		c := p.newCompaction(st, level, out, in0, "manual")
		if c.conflicts(running) {
			return nil
		}
		return c
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pruneFruitlessLocked(v)
	files := v.Levels[bottom]
	i, j := overlapping(files, lower, upper)
	for k := i; k < j; k++ {
		f := files[k]
		if f.NumDeletions == 0 || p.fruitlessLocked(f) {
			continue
		}
		c := p.newCompaction(st, bottom, bottom, files[k:k+1:k+1], "manual")
		if c.conflicts(running) {
			return nil
		}
		p.noteRewriteLocked(f)
		return c
	}
	return nil
}

// PickRewrite returns a compaction that rewrites f, a table of v's
// bottom level, in place (a retention pass has the compaction's collector
// drop what expired), or nil when f is no longer there or a running
// compaction holds it.
func (p *Picker) PickRewrite(v *lsm.Version, f *lsm.FileMeta, running []*Compaction) *Compaction {
	const bottom = lsm.NumLevels - 1
	if !slices.Contains(v.Levels[bottom], f) {
		return nil
	}
	st := p.newState(v, running)
	c := p.newCompaction(st, bottom, bottom, []*lsm.FileMeta{f}, "retention")
	if c.conflicts(running) {
		return nil
	}
	return c
}

// noteRewriteLocked remembers that f is being rewritten in place.
func (p *Picker) noteRewriteLocked(f *lsm.FileMeta) {
	p.fruitless[sigOf(f)] = fruitlessRewrite{input: f.Num, at: p.now()}
}

// fruitlessLocked reports whether f is the unchanged output of a recent
// in-place rewrite.
func (p *Picker) fruitlessLocked(f *lsm.FileMeta) bool {
	r, ok := p.fruitless[sigOf(f)]
	return ok && r.input != f.Num && p.now().Sub(r.at) < fruitlessRetry
}

// pruneFruitlessLocked forgets rewrites that are stale or whose tables are
// gone from the bottom level, so the memory stays bounded.
func (p *Picker) pruneFruitlessLocked(v *lsm.Version) {
	if len(p.fruitless) == 0 {
		return
	}
	live := make(map[tableSig]bool)
	for _, f := range v.Levels[lsm.NumLevels-1] {
		if f.NumDeletions > 0 {
			live[sigOf(f)] = true
		}
	}
	now := p.now()
	for sig, r := range p.fruitless {
		if !live[sig] || now.Sub(r.at) >= fruitlessRetry {
			delete(p.fruitless, sig)
		}
	}
}

// newCompaction builds the compaction of in0 (tables of level) into
// outLevel, adding the overlapping tables of outLevel (widened to whole
// user keys) and deriving the rest.
func (p *Picker) newCompaction(st *pickState, level, outLevel int, in0 []*lsm.FileMeta, reason string) *Compaction {
	const bottom = lsm.NumLevels - 1
	c := &Compaction{Level: level, OutputLevel: outLevel, Reason: reason}
	c.Inputs[0] = in0
	if outLevel != level {
		s, l := span(in0)
		files := st.v.Levels[outLevel]
		i, j := overlapping(files, s, l)
		c.Inputs[1] = files[i:j:j]
	}
	s, l := c.Range()
	if outLevel > 0 && outLevel < bottom {
		files := st.v.Levels[outLevel+1]
		i, j := overlapping(files, s, l)
		c.Grandparents = files[i:j:j]
	}
	if outLevel > 0 {
		c.Bottommost = true
		for below := outLevel + 1; below < lsm.NumLevels; below++ {
			if i, j := overlapping(st.v.Levels[below], s, l); i < j {
				c.Bottommost = false
				break
			}
		}
	}
	c.OutputCold = p.cold(outLevel, st.base)
	c.TargetFileSize = p.targetFileSize(outLevel, st.base)
	// A manual compaction into the bottom level rewrites even a lone
	// table: merge operands are folded there and collectors run, which a
	// move would skip.
	if len(in0) == 1 && len(c.Inputs[1]) == 0 && level != outLevel && !(reason == "manual" && c.Bottommost) &&
		(p.cold(level, st.base) == c.OutputCold || p.opts.MoveAcrossTiers) &&
		totalSize(c.Grandparents) <= uint64(grandparentOverlapFactor*c.TargetFileSize) {
		c.TrivialMove = true
		c.Reason = "move"
	}
	return c
}

// cold reports whether level is in the cold tier when base is the base
// level.
func (p *Picker) cold(level, base int) bool {
	return p.opts.ColdLevels > 0 && level >= lsm.NumLevels-p.opts.ColdLevels && level > base
}

// targetFileSize is the output table size at level: TargetFileSize at the
// base level, doubling per level below, capped. L0 outputs are never split.
func (p *Picker) targetFileSize(level, base int) int64 {
	if level == 0 {
		return 0
	}
	t := p.opts.TargetFileSize
	limit := max(t, maxTargetFileSize)
	for l := base; l < level && t < limit; l++ {
		t *= 2
	}
	return min(t, limit)
}

// span returns the smallest and largest user keys of files (nil if none).
func span(files []*lsm.FileMeta) (smallest, largest []byte) {
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

func totalSize(files []*lsm.FileMeta) uint64 {
	var n uint64
	for _, f := range files {
		n += f.Size
	}
	return n
}

// overlapping returns the bounds i, j of the tables of a sorted level
// (>= 1) meeting [lower, upper] (nil: unbounded), widened to whole user
// keys.
func overlapping(files []*lsm.FileMeta, lower, upper []byte) (i, j int) {
	i, j = 0, len(files)
	if lower != nil {
		i, _ = slices.BinarySearchFunc(files, lower, func(f *lsm.FileMeta, k []byte) int {
			if bytes.Compare(lsm.UserKey(f.Largest), k) < 0 {
				return -1
			}
			return 1
		})
	}
	if upper != nil {
		j, _ = slices.BinarySearchFunc(files, upper, func(f *lsm.FileMeta, k []byte) int {
			if bytes.Compare(lsm.UserKey(f.Smallest), k) <= 0 {
				return -1
			}
			return 1
		})
	}
	if i >= j {
		return i, i
	}
	return wholeKeys(files, i, j)
}

// wholeKeys widens files[i:j] of a sorted level while a neighbour table
// shares an edge user key, so no user key is split between inputs and
// non-inputs. (Write never splits a user key, but a level must not be
// corrupted by a table that does.)
func wholeKeys(files []*lsm.FileMeta, i, j int) (int, int) {
	for i > 0 && bytes.Equal(lsm.UserKey(files[i-1].Largest), lsm.UserKey(files[i].Smallest)) {
		i--
	}
	for j < len(files) && bytes.Equal(lsm.UserKey(files[j-1].Largest), lsm.UserKey(files[j].Smallest)) {
		j++
	}
	return i, j
}

// Run executes c and returns the version edit that installs its result;
// the caller applies it. A trivial move only produces the edit (the
// version set counts references by table number, so the moved table is
// never reported obsolete). Otherwise the inputs are merged into Write,
// with env.TargetFileSize set from c, outputs split at grandparent
// boundaries, and spec.Bottommost taken from c. env must be the output
// tier's (env.Cold == c.OutputCold). Until the edit is applied the
// outputs are unreferenced files.
func Run(env Env, tc *lsm.TableCache, c *Compaction, spec WriteSpec) (*lsm.VersionEdit, Stats, error) {
	if c.TrivialMove {
		if len(c.Inputs[0]) != 1 || len(c.Inputs[1]) != 0 || c.Level == c.OutputLevel {
			return nil, Stats{}, fmt.Errorf("compaction: trivial move %v does not move one table", c)
		}
		f := c.Inputs[0][0]
		if f.Cold != c.OutputCold {
			// A move across tiers relabels the table; the FileMeta is
			// shared with live versions, so it is copied, not changed.
			moved := *f
			moved.Cold = c.OutputCold
			f = &moved
		}
		return &lsm.VersionEdit{
			DeletedFiles: []lsm.DeletedFile{{Level: c.Level, Num: f.Num}},
			NewFiles:     []lsm.NewFile{{Level: c.OutputLevel, Meta: f}},
		}, Stats{}, nil
	}
	if env.Cold != c.OutputCold {
		return nil, Stats{}, fmt.Errorf("compaction: %v given an environment of the other tier", c)
	}
	if len(c.Inputs[0]) == 0 {
		return nil, Stats{}, errors.New("compaction: no input tables")
	}

	var iters []lsm.InternalIterator
	if c.Level == 0 {
		for _, f := range c.Inputs[0] {
			t, err := tc.Acquire(f)
			if err != nil {
				for _, it := range iters {
					_ = it.Close()
				}
				return nil, Stats{}, fmt.Errorf("compaction: opening input %s: %w", f.Num, err)
			}
			iters = append(iters, &releasingIter{InternalIterator: t.NewIter(), release: func() { tc.Release(t) }})
		}
	} else {
		iters = append(iters, lsm.NewLevelIter(tc, c.Inputs[0]))
	}
	if len(c.Inputs[1]) > 0 {
		iters = append(iters, lsm.NewLevelIter(tc, c.Inputs[1]))
	}
	merged := lsm.NewMergingIter(iters...)

	env.TargetFileSize = uint64(max(c.TargetFileSize, 0))
	if len(c.Grandparents) > 0 && c.TargetFileSize > 0 {
		sp := &gpSplitter{gps: c.Grandparents, limit: grandparentOverlapFactor * uint64(c.TargetFileSize)}
		newFileNum := env.NewFileNum
		env.NewFileNum = func() layout.FileNum { sp.overlap = 0; return newFileNum() }
		env.ShouldSplit = sp.shouldSplit
	}
	spec.Bottommost = c.Bottommost
	metas, st, err := Write(env, merged, spec)
	if cerr := merged.Close(); err == nil && cerr != nil {
		err = cerr
		for _, m := range metas {
			_ = env.FS.Remove(layout.Path(env.Dir, layout.TypeTable, m.Num))
		}
	}
	if err != nil {
		return nil, st, err
	}
	ve := &lsm.VersionEdit{}
	for i, files := range c.Inputs {
		level := c.Level
		if i == 1 {
			level = c.OutputLevel
		}
		for _, f := range files {
			ve.DeletedFiles = append(ve.DeletedFiles, lsm.DeletedFile{Level: level, Num: f.Num})
		}
	}
	for _, m := range metas {
		ve.NewFiles = append(ve.NewFiles, lsm.NewFile{Level: c.OutputLevel, Meta: m})
	}
	return ve, st, nil
}

// gpSplitter ends an output once the grandparent tables it has passed
// entirely add up to more than limit bytes. The count restarts when an
// output opens (Run hooks Env.NewFileNum for that).
type gpSplitter struct {
	gps     []*lsm.FileMeta
	next    int    // first grandparent not yet passed
	overlap uint64 // bytes of grandparents passed by the open output
	limit   uint64
}

func (s *gpSplitter) shouldSplit(ukey []byte) bool {
	for s.next < len(s.gps) && bytes.Compare(lsm.UserKey(s.gps[s.next].Largest), ukey) < 0 {
		s.overlap += s.gps[s.next].Size
		s.next++
	}
	if s.overlap > s.limit {
		s.overlap = 0
		return true
	}
	return false
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

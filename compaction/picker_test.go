package compaction

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
)

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

// tm makes table metadata spanning user keys [smallest, largest] with
// sequence numbers [seq, seq+9].
func tm(num int, smallest, largest string, size uint64, seq lsm.SeqNum) *lsm.FileMeta {
	return &lsm.FileMeta{
		Num:         layout.FileNum(num),
		Size:        size,
		Smallest:    lsm.MakeInternalKey([]byte(smallest), seq+9, lsm.KindSet),
		Largest:     lsm.MakeInternalKey([]byte(largest), seq, lsm.KindSet),
		SmallestSeq: seq,
		LargestSeq:  seq + 9,
		NumEntries:  100,
	}
}

// ver builds a Version from per-level tables, ordering them as a
// VersionSet would (L0 newest first, deeper levels by key) and failing
// the test if a level >= 1 overlaps.
func ver(t *testing.T, levels map[int][]*lsm.FileMeta) *lsm.Version {
	t.Helper()
	v := &lsm.Version{}
	for level, files := range levels {
		files = slices.Clone(files)
		if level == 0 {
			slices.SortFunc(files, func(a, b *lsm.FileMeta) int { return -int(a.LargestSeq) + int(b.LargestSeq) })
		} else {
			slices.SortFunc(files, func(a, b *lsm.FileMeta) int { return lsm.CompareInternal(a.Smallest, b.Smallest) })
			for i := 1; i < len(files); i++ {
				if bytes.Compare(lsm.UserKey(files[i-1].Largest), lsm.UserKey(files[i].Smallest)) >= 0 {
					t.Fatalf("L%d: tables %s and %s overlap", level, files[i-1].Num, files[i].Num)
				}
			}
		}
		v.Levels[level] = files
	}
	return v
}

// apply returns v with e applied, checking what a VersionSet checks.
func apply(t *testing.T, v *lsm.Version, e *lsm.VersionEdit) *lsm.Version {
	t.Helper()
	levels := make(map[int][]*lsm.FileMeta)
	for level, files := range v.Levels {
		levels[level] = slices.Clone(files)
	}
	for _, d := range e.DeletedFiles {
		n := len(levels[d.Level])
		levels[d.Level] = slices.DeleteFunc(levels[d.Level], func(f *lsm.FileMeta) bool { return f.Num == d.Num })
		if len(levels[d.Level]) != n-1 {
			t.Fatalf("edit deletes %s from L%d, which does not hold it", d.Num, d.Level)
		}
	}
	for _, nf := range e.NewFiles {
		levels[nf.Level] = append(levels[nf.Level], nf.Meta)
	}
	return ver(t, levels)
}

func nums(files []*lsm.FileMeta) []int {
	var out []int
	for _, f := range files {
		out = append(out, int(f.Num))
	}
	slices.Sort(out)
	return out
}

func TestLevels(t *testing.T) {
	cases := []struct {
		name    string
		sizes   map[int]uint64 // level → bytes, in one table
		base    int
		targets [lsm.NumLevels]int64
	}{
		{"empty tree", nil, 6, [lsm.NumLevels]int64{}},
		{"only L0", map[int]uint64{0: 50 * mib}, 6, [lsm.NumLevels]int64{}},
		{"small L6 stays the base", map[int]uint64{6: 30 * mib}, 6, [lsm.NumLevels]int64{6: 30 * mib}},
		{"L6 of 100 MiB makes L5 the base", map[int]uint64{6: 100 * mib}, 5,
			[lsm.NumLevels]int64{5: 10 * mib, 6: 100 * mib}},
		{"big L6, small L5", map[int]uint64{6: 10 * gib, 5: 1 * mib}, 3,
			[lsm.NumLevels]int64{3: 10 * gib / 1000, 4: 10 * gib / 100, 5: 10 * gib / 10, 6: 10 * gib}},
		{"data above the computed base pulls the base up", map[int]uint64{6: 10 * gib, 2: 1 * mib}, 2,
			[lsm.NumLevels]int64{2: 10 * gib / 10000, 3: 10 * gib / 1000, 4: 10 * gib / 100, 5: 10 * gib / 10, 6: 10 * gib}},
		{"a huge tree reaches L1", map[int]uint64{6: 10000 * gib}, 1,
			[lsm.NumLevels]int64{1: 10000 * gib / 100000, 2: 10000 * gib / 10000, 3: 10000 * gib / 1000,
				4: 10000 * gib / 100, 5: 10000 * gib / 10, 6: 10000 * gib}},
		{"an oversized level sets the bottom target", map[int]uint64{6: 10 * mib, 4: 1 * gib}, 4,
			[lsm.NumLevels]int64{4: gib / 100, 5: gib / 10, 6: gib}},
	}
	p := NewPicker(Options{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			levels := map[int][]*lsm.FileMeta{}
			for level, size := range c.sizes {
				levels[level] = []*lsm.FileMeta{tm(level+1, "a", "z", size, 1)}
			}
			base, targets := p.Levels(ver(t, levels))
			if base != c.base || targets != c.targets {
				t.Fatalf("base %d targets %v, want %d %v", base, targets, c.base, c.targets)
			}
		})
	}
}

func TestScores(t *testing.T) {
	p := NewPicker(Options{})
	l0 := []*lsm.FileMeta{tm(1, "a", "c", mib, 10), tm(2, "a", "c", mib, 20), tm(3, "a", "c", mib, 30),
		tm(4, "a", "c", mib, 40), tm(5, "a", "c", mib, 50), tm(6, "a", "c", mib, 60)}
	l5 := []*lsm.FileMeta{tm(7, "a", "f", 15*mib, 1), tm(8, "g", "m", 5*mib, 1)}
	v := ver(t, map[int][]*lsm.FileMeta{0: l0, 5: l5, 6: {tm(9, "a", "z", 100*mib, 0)}})
	s := p.Scores(v, nil)
	if s[0] != 1.5 || s[5] != 2 || s[6] != 0 {
		t.Fatalf("scores %v, want L0 1.5 (6/4), L5 2 (20/10 MiB), L6 0", s)
	}
	running := []*Compaction{
		{Level: 0, OutputLevel: 5, Inputs: [2][]*lsm.FileMeta{l0[:2]}},
		{Level: 0, OutputLevel: 0, Inputs: [2][]*lsm.FileMeta{l0[2:4]}},
		{Level: 5, OutputLevel: 6, Inputs: [2][]*lsm.FileMeta{l5[:1]}},
	}
	s = p.Scores(v, running)
	// L0: two free tables plus the one the intra-L0 compaction leaves.
	if s[0] != 0.75 || s[5] != 0.5 {
		t.Fatalf("scores with running compactions %v, want L0 0.75, L5 0.5", s)
	}
}

// During a bulk load L0 compacts only when two tables short of stopping
// writes; after it, at its usual threshold again.
func TestBulkLoadRaisesL0Threshold(t *testing.T) {
	p := NewPicker(Options{}) // thresholds 4 and 12
	var l0 []*lsm.FileMeta
	for i := range 9 {
		l0 = append(l0, tm(i+1, "a", "z", mib, lsm.SeqNum(10*(i+1))))
	}
	v := ver(t, map[int][]*lsm.FileMeta{0: l0, 6: {tm(20, "a", "z", 100*mib, 1)}})
	p.SetBulkLoad(true)
	if s := p.Scores(v, nil); s[0] != 0.9 {
		t.Fatalf("L0 score %v during a bulk load, want 0.9 (9/10)", s[0])
	}
	if c := p.Pick(v, nil); c != nil {
		t.Fatalf("picked %v during a bulk load with 9 L0 tables", c)
	}
	v10 := ver(t, map[int][]*lsm.FileMeta{0: append(slices.Clone(l0), tm(10, "a", "z", mib, 100)), 6: {tm(20, "a", "z", 100*mib, 1)}})
	if c := p.Pick(v10, nil); c == nil || c.Reason != "l0" || len(c.Inputs[0]) != 10 {
		t.Fatalf("picked %v with 10 L0 tables during a bulk load, want all of L0", c)
	}
	p.SetBulkLoad(false)
	if c := p.Pick(v, nil); c == nil || c.Reason != "l0" || c.Score != 9.0/4 {
		t.Fatalf("picked %v after the bulk load, want l0 at score 2.25", c)
	}
}

func TestPickL0TakesTransitiveOverlap(t *testing.T) {
	p := NewPicker(Options{})
	l0 := []*lsm.FileMeta{
		tm(1, "a", "c", mib, 10), // oldest: the seed
		tm(2, "c", "e", mib, 20),
		tm(3, "e", "g", mib, 30), // meets the seed only through 2
		tm(4, "x", "z", mib, 40), // disjoint
	}
	v := ver(t, map[int][]*lsm.FileMeta{
		0: l0,
		5: {tm(10, "a", "b", mib, 5), tm(11, "f", "h", mib, 5), tm(12, "i", "k", mib, 5)},
		6: {tm(20, "a", "z", 100*mib, 1)},
	})
	c := p.Pick(v, nil)
	if c == nil || c.Reason != "l0" || c.Level != 0 || c.OutputLevel != 5 {
		t.Fatalf("picked %v, want l0 compaction into the base level L5", c)
	}
	if got := nums(c.Inputs[0]); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("L0 inputs %v, want [1 2 3]", got)
	}
	if got := nums(c.Inputs[1]); !slices.Equal(got, []int{10, 11}) {
		t.Fatalf("base inputs %v, want [10 11]", got)
	}
	if c.Score != 1 || c.Bottommost || c.OutputCold || c.TrivialMove {
		t.Fatalf("score %v bottommost %t cold %t move %t", c.Score, c.Bottommost, c.OutputCold, c.TrivialMove)
	}
	// The set is in use: the disjoint table alone is not enough for another
	// L0 → base compaction to run beside it.
	if c2 := p.Pick(v, []*Compaction{c}); c2 != nil {
		t.Fatalf("picked %v beside a running L0 compaction", c2)
	}
}

func TestPickIntraL0WhenBaseBusy(t *testing.T) {
	p := NewPicker(Options{ColdLevels: -1})
	var l0 []*lsm.FileMeta
	for i := range 8 {
		l0 = append(l0, tm(i+1, "a", "z", mib, lsm.SeqNum(100+10*i)))
	}
	v := ver(t, map[int][]*lsm.FileMeta{0: l0, 6: {tm(20, "a", "z", 10*mib, 1)}})

	// L0 → L6 (the base) is running on the two oldest tables.
	running := []*Compaction{p.newCompaction(p.newState(v, nil), 0, 6, l0[:2], "l0")}
	c := p.Pick(v, running)
	if c == nil || c.Reason != "intra-l0" || c.Level != 0 || c.OutputLevel != 0 {
		t.Fatalf("picked %v, want intra-l0", c)
	}
	if got := nums(c.Inputs[0]); !slices.Equal(got, []int{3, 4, 5, 6, 7, 8}) {
		t.Fatalf("inputs %v, want the six free tables", got)
	}
	if c.TargetFileSize != 0 || c.Bottommost || c.TrivialMove || len(c.Grandparents) != 0 {
		t.Fatalf("intra-L0 compaction %+v", c)
	}

	// Base busy with a base-level compaction instead; the oldest free run is
	// below a table in use.
	running = []*Compaction{{Level: 0, OutputLevel: 0, Inputs: [2][]*lsm.FileMeta{l0[6:7]}},
		{Level: 6, OutputLevel: 6, Inputs: [2][]*lsm.FileMeta{v.Levels[6]}}}
	c = p.Pick(v, running)
	if c == nil || c.Reason != "intra-l0" {
		t.Fatalf("picked %v, want intra-l0", c)
	}
	if got := nums(c.Inputs[0]); !slices.Equal(got, []int{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("inputs %v, want the oldest contiguous run [1..6]", got)
	}

	// Only threshold+1 free tables: no intra-L0.
	running = []*Compaction{running[1], {Level: 0, OutputLevel: 0, Inputs: [2][]*lsm.FileMeta{l0[5:8]}}}
	if c := p.Pick(v, running); c != nil {
		t.Fatalf("picked %v with only 5 free L0 tables", c)
	}
}

// sizeShape is a tree whose L5 is over its target: L6 of 100 MiB gives L5 a
// 10 MiB target.
func sizeShape(t *testing.T) *lsm.Version {
	return ver(t, map[int][]*lsm.FileMeta{
		5: {tm(1, "a", "c", 6*mib, 50), tm(2, "d", "f", 6*mib, 50), tm(3, "g", "i", 6*mib, 50)},
		6: {
			tm(10, "a", "b", 40*mib, 1), tm(11, "c", "c", 30*mib, 1), // 70 MiB under table 1
			tm(12, "e", "e", 2*mib, 1),                              // 2 MiB under table 2
			tm(13, "g", "h", 20*mib, 1), tm(14, "x", "z", 8*mib, 1), // 20 MiB under table 3
		},
	})
}

func TestPickSizeMinOverlap(t *testing.T) {
	p := NewPicker(Options{})
	v := sizeShape(t)
	c := p.Pick(v, nil)
	if c == nil || c.Reason != "size" || c.Level != 5 || c.OutputLevel != 6 {
		t.Fatalf("picked %v, want a size compaction L5 → L6", c)
	}
	if got, got1 := nums(c.Inputs[0]), nums(c.Inputs[1]); !slices.Equal(got, []int{2}) || !slices.Equal(got1, []int{12}) {
		t.Fatalf("inputs %v %v, want [2] [12] (least overlap)", got, got1)
	}
	if c.Score != 1.8 || !c.Bottommost {
		t.Fatalf("score %v bottommost %t", c.Score, c.Bottommost)
	}
	// With that one running, the next cheapest that does not conflict.
	c2 := p.Pick(v, []*Compaction{c})
	if c2 == nil || !slices.Equal(nums(c2.Inputs[0]), []int{3}) || !slices.Equal(nums(c2.Inputs[1]), []int{13}) {
		t.Fatalf("second pick %v, want table 3 onto 13", c2)
	}
	// A running compaction over L6 keys [g, h] rules table 3 out: table 1
	// is the one left.
	c3 := p.Pick(v, []*Compaction{c, {Level: 6, OutputLevel: 6, Inputs: [2][]*lsm.FileMeta{v.Levels[6][3:4]}}})
	if c3 == nil || !slices.Equal(nums(c3.Inputs[0]), []int{1}) {
		t.Fatalf("third pick %v, want table 1 (table 3 meets a running compaction in L6)", c3)
	}
}

func TestOverlaps(t *testing.T) {
	a, b, c := tm(1, "a", "c", mib, 1), tm(2, "d", "f", mib, 1), tm(3, "b", "e", mib, 1)
	mk := func(level, out int, in0, in1 []*lsm.FileMeta) *Compaction {
		return &Compaction{Level: level, OutputLevel: out, Inputs: [2][]*lsm.FileMeta{in0, in1}}
	}
	one := func(f *lsm.FileMeta) []*lsm.FileMeta { return []*lsm.FileMeta{f} }
	cases := []struct {
		name string
		x, y *Compaction
		want bool
	}{
		{"shared table", mk(0, 0, one(a), nil), mk(0, 0, []*lsm.FileMeta{b, a}, nil), true},
		{"two L0 → base", mk(0, 3, one(a), nil), mk(0, 3, one(b), nil), true},
		{"intra-L0 beside L0 → base", mk(0, 0, one(a), nil), mk(0, 3, one(c), nil), false},
		{"same level pair, disjoint keys", mk(2, 3, one(a), nil), mk(2, 3, one(b), nil), false},
		{"same level pair, shared keys", mk(2, 3, one(a), nil), mk(2, 3, nil, one(c)), true},
		{"adjacent pairs, shared keys", mk(2, 3, one(a), nil), mk(3, 4, one(c), nil), true},
		{"adjacent pairs, disjoint keys", mk(2, 3, one(a), nil), mk(3, 4, one(b), nil), false},
		{"distant pairs, shared keys", mk(1, 2, one(a), nil), mk(4, 5, one(c), nil), false},
		{"skip-level passes through a busy level", mk(0, 6, one(a), nil), mk(3, 4, one(c), nil), true},
		{"L0 → base meets base → below", mk(0, 3, one(a), nil), mk(3, 4, one(c), nil), true},
		{"in-place rewrite and a compaction into it", mk(6, 6, one(a), nil), mk(5, 6, one(c), nil), true},
	}
	for _, tc := range cases {
		if got := tc.x.Overlaps(tc.y); got != tc.want {
			t.Errorf("%s: Overlaps = %t, want %t", tc.name, got, tc.want)
		}
		if got := tc.y.Overlaps(tc.x); got != tc.want {
			t.Errorf("%s (reversed): Overlaps = %t, want %t", tc.name, got, tc.want)
		}
	}
}

func TestTrivialMoveAndColdTier(t *testing.T) {
	// L5 is over its target (L6 100 MiB); its only table overlaps nothing
	// in L6. L5 is the base level, hot even though it is one of the two
	// bottom levels, so the table is rewritten into the cold L6.
	levels := map[int][]*lsm.FileMeta{
		5: {tm(1, "m", "n", 12*mib, 50)},
		6: {tm(10, "a", "b", 50*mib, 1), tm(11, "x", "z", 50*mib, 1)},
	}
	c := NewPicker(Options{}).Pick(ver(t, levels), nil)
	if c == nil || c.TrivialMove || c.Reason != "size" || !c.OutputCold || c.Level != 5 || c.OutputLevel != 6 {
		t.Fatalf("picked %v, want a rewrite L5 → cold L6", c)
	}
	// Without a cold tier it moves.
	c = NewPicker(Options{ColdLevels: -1}).Pick(ver(t, levels), nil)
	if c == nil || !c.TrivialMove || c.Reason != "move" || c.OutputCold || c.Level != 5 || c.OutputLevel != 6 {
		t.Fatalf("picked %v, want a move L5 → L6", c)
	}

	// Three cold levels with the base at L4: L4 stays hot (the base level
	// never is cold), its table is rewritten into the cold L5.
	levels = map[int][]*lsm.FileMeta{
		4: {tm(1, "m", "n", 2*mib, 50)},
		5: {tm(2, "a", "b", 5*mib, 40)},
		6: {tm(10, "a", "z", 70*mib, 1)},
	}
	v := ver(t, levels)
	if base, _ := NewPicker(Options{}).Levels(v); base != 4 {
		t.Fatalf("base %d, want 4", base)
	}
	c = NewPicker(Options{ColdLevels: 3}).Pick(v, nil)
	if c == nil || c.TrivialMove || !c.OutputCold || c.OutputLevel != 5 {
		t.Fatalf("picked %v, want a rewrite of the hot base L4 into the cold L5", c)
	}
	// Cold to cold moves: with the base at L3, L4's table moves into L5.
	levels = map[int][]*lsm.FileMeta{
		3: {tm(3, "c", "d", 1*mib, 60)},
		4: {tm(1, "m", "n", 30*mib, 50)},
		5: {tm(2, "a", "b", 5*mib, 40)},
		6: {tm(10, "a", "b", 350*mib, 1), tm(11, "x", "z", 350*mib, 1)},
	}
	v3 := ver(t, levels)
	if base, _ := NewPicker(Options{}).Levels(v3); base != 3 {
		t.Fatalf("base %d, want 3", base)
	}
	c = NewPicker(Options{ColdLevels: 3}).Pick(v3, nil)
	if c == nil || !c.TrivialMove || !c.OutputCold || c.Level != 4 || c.OutputLevel != 5 {
		t.Fatalf("picked %v, want a cold move L4 → L5", c)
	}
	// Default tiers: L4 is hot, L5 cold, so the table is rewritten.
	c = NewPicker(Options{}).Pick(v, nil)
	if c == nil || c.TrivialMove || c.Reason != "size" || !c.OutputCold {
		t.Fatalf("picked %v, want a rewrite into the cold tier", c)
	}
	// No cold tier: a move again, unless the grandparents are too many.
	c = NewPicker(Options{ColdLevels: -1}).Pick(v, nil)
	if c == nil || !c.TrivialMove || c.OutputCold {
		t.Fatalf("picked %v, want a hot move", c)
	}
	c = NewPicker(Options{ColdLevels: -1, TargetFileSize: mib}).Pick(v, nil)
	if c == nil || c.TrivialMove || len(c.Grandparents) != 1 {
		t.Fatalf("picked %v, want a rewrite: 70 MiB of grandparents > 10 × 2 MiB", c)
	}
	if c.TargetFileSize != 2*mib {
		t.Fatalf("L5 target file size %d, want 2 MiB (base L4 × 2)", c.TargetFileSize)
	}
}

func TestBottommost(t *testing.T) {
	p := NewPicker(Options{})
	v := ver(t, map[int][]*lsm.FileMeta{
		3: {tm(1, "a", "c", mib, 50), tm(2, "p", "r", mib, 50)},
		5: {tm(5, "b", "b", mib, 20)},
		6: {tm(9, "x", "z", 10*gib, 1)},
	})
	st := p.newState(v, nil)
	cases := []struct {
		level, out int
		in         *lsm.FileMeta
		want       bool
	}{
		{3, 4, v.Levels[3][0], false}, // L5 holds "b"
		{3, 4, v.Levels[3][1], true},
		{5, 6, v.Levels[5][0], true},
		{6, 6, v.Levels[6][0], true},
		{0, 0, tm(20, "m", "n", mib, 90), false},
	}
	for _, c := range cases {
		got := p.newCompaction(st, c.level, c.out, []*lsm.FileMeta{c.in}, "test")
		if got.Bottommost != c.want {
			t.Errorf("%v: bottommost %t, want %t", got, got.Bottommost, c.want)
		}
	}
}

func dense(f *lsm.FileMeta, entries, deletions uint64) *lsm.FileMeta {
	f.NumEntries, f.NumDeletions = entries, deletions
	return f
}

func TestPickTombstones(t *testing.T) {
	p := NewPicker(Options{})
	clock := time.Unix(1000, 0)
	p.now = func() time.Time { return clock }

	bottom := dense(tm(5, "a", "f", 5*mib, 1), 3000, 2000)
	v := ver(t, map[int][]*lsm.FileMeta{
		5: {dense(tm(1, "a", "c", mib, 50), 3000, 1600)},
		6: {bottom, dense(tm(6, "g", "k", 200*mib, 1), 3000, 999)},
	})
	c := p.Pick(v, nil)
	if c == nil || c.Reason != "tombstones" || c.Level != 6 || c.OutputLevel != 6 || !c.Bottommost ||
		!slices.Equal(nums(c.Inputs[0]), []int{5}) {
		t.Fatalf("picked %v, want an in-place rewrite of table 5 (the densest)", c)
	}
	// With that running, the L5 table goes down a level, meeting table 5.
	c2 := p.Pick(v, []*Compaction{c})
	if c2 != nil {
		t.Fatalf("picked %v, which conflicts with the running rewrite", c2)
	}

	// The rewrite of table 5 dropped nothing (a snapshot held the
	// tombstones): its output, same content under a new number, is not
	// rewritten again until fruitlessRetry passes.
	same := *bottom
	same.Num = 50
	v3 := ver(t, map[int][]*lsm.FileMeta{6: {&same, v.Levels[6][1]}})
	if c := p.Pick(v3, nil); c != nil {
		t.Fatalf("picked %v: a fruitless rewrite again", c)
	}
	clock = clock.Add(2 * fruitlessRetry)
	if c := p.Pick(v3, nil); c == nil || c.Inputs[0][0].Num != 50 {
		t.Fatalf("picked %v after the retry interval, want table 50", c)
	}

	v2 := ver(t, map[int][]*lsm.FileMeta{
		5: {dense(tm(1, "a", "c", mib, 50), 3000, 1600)},
		6: {tm(7, "a", "f", 4*mib, 1), v.Levels[6][1]},
	})
	c2 = p.Pick(v2, nil)
	if c2 == nil || c2.Reason != "tombstones" || c2.Level != 5 || c2.OutputLevel != 6 ||
		!slices.Equal(nums(c2.Inputs[1]), []int{7}) {
		t.Fatalf("picked %v, want table 1 into L6 with table 7", c2)
	}

	if c := NewPicker(Options{TombstoneDensity: -1}).Pick(v, nil); c != nil {
		t.Fatalf("picked %v with tombstone compactions disabled", c)
	}
	if c := NewPicker(Options{TombstoneDensity: 0.9}).Pick(v, nil); c != nil {
		t.Fatalf("picked %v with no table at density 0.9", c)
	}
}

// simulate runs c on metadata only: outputs are one table per input range
// at OutputLevel, tombstones gone at the bottom.
func simulate(t *testing.T, v *lsm.Version, c *Compaction, next *int) *lsm.Version {
	t.Helper()
	if c.TrivialMove {
		ve, _, err := Run(Env{}, nil, c, WriteSpec{})
		if err != nil {
			t.Fatal(err)
		}
		return apply(t, v, ve)
	}
	ve := &lsm.VersionEdit{}
	var size, entries, dels uint64
	var smallestSeq, largestSeq lsm.SeqNum = lsm.MaxSeqNum, 0
	for i, files := range c.Inputs {
		level := c.Level
		if i == 1 {
			level = c.OutputLevel
		}
		for _, f := range files {
			ve.DeletedFiles = append(ve.DeletedFiles, lsm.DeletedFile{Level: level, Num: f.Num})
			size += f.Size
			entries += f.NumEntries
			dels += f.NumDeletions
			smallestSeq, largestSeq = min(smallestSeq, f.SmallestSeq), max(largestSeq, f.LargestSeq)
		}
	}
	if c.Bottommost {
		entries -= dels
		dels = 0
	}
	s, l := c.Range()
	*next++
	m := &lsm.FileMeta{Num: layout.FileNum(*next), Size: size, NumEntries: entries, NumDeletions: dels,
		Smallest: lsm.MakeInternalKey(s, largestSeq, lsm.KindSet), Largest: lsm.MakeInternalKey(l, smallestSeq, lsm.KindSet),
		SmallestSeq: smallestSeq, LargestSeq: largestSeq}
	ve.NewFiles = append(ve.NewFiles, lsm.NewFile{Level: c.OutputLevel, Meta: m})
	return apply(t, v, ve)
}

func TestPickManualWalksToTheBottom(t *testing.T) {
	p := NewPicker(Options{})
	v := ver(t, map[int][]*lsm.FileMeta{
		0: {tm(1, "c", "e", mib, 100), tm(2, "d", "k", mib, 110), tm(3, "x", "y", mib, 120)},
		3: {tm(10, "a", "b", mib, 60), tm(11, "f", "g", mib, 60), tm(12, "s", "t", mib, 60)},
		4: {tm(20, "h", "j", 10*mib, 40)},
		6: {dense(tm(30, "a", "m", 100*gib, 1), 5000, 10), tm(31, "n", "z", 100*gib, 1),
			dense(tm(32, "zz1", "zz2", mib, 1), 10, 5)},
	})
	next := 100
	var steps []string
	for range 20 {
		c := p.PickManual(v, []byte("d"), []byte("h"), nil)
		if c == nil {
			break
		}
		if c.OutputLevel < c.Level || (c.OutputLevel == c.Level && c.Level != lsm.NumLevels-1) {
			t.Fatalf("step %v goes up", c)
		}
		steps = append(steps, fmt.Sprintf("L%d→L%d %v", c.Level, c.OutputLevel, nums(c.Inputs[0])))
		v = simulate(t, v, c, &next)
	}
	want := []string{
		"L0→L3 [1 2]", // transitive: 1 meets 2
		"L3→L4 [101]", // the output met table 11; L4 holds "h"-"j"
		"L4→L6 [102]", // L5 holds nothing there: straight to the bottom
	}
	if !slices.Equal(steps, want) {
		t.Fatalf("steps\n%q\nwant\n%q", steps, want)
	}
	for level := range lsm.NumLevels - 1 {
		for _, f := range v.Levels[level] {
			if s, l := lsm.UserKey(f.Smallest), lsm.UserKey(f.Largest); string(s) <= "h" && string(l) >= "d" {
				t.Fatalf("table %s [%s, %s] left at L%d", f.Num, s, l, level)
			}
		}
	}
	// Unbounded: everything ends in L6, the table holding deletions is
	// rewritten once, and the walk terminates.
	rewrites := 0
	for range 20 {
		c := p.PickManual(v, nil, nil, nil)
		if c == nil {
			break
		}
		if c.Level == c.OutputLevel {
			rewrites++
			if got := nums(c.Inputs[0]); !slices.Equal(got, []int{32}) {
				t.Fatalf("bottom rewrite of %v, want [32]", got)
			}
		}
		v = simulate(t, v, c, &next)
	}
	if rewrites != 1 {
		t.Fatalf("%d bottom rewrites, want 1", rewrites)
	}
	for level := range lsm.NumLevels - 1 {
		if len(v.Levels[level]) > 0 {
			t.Fatalf("L%d still holds %v after an unbounded manual compaction", level, nums(v.Levels[level]))
		}
	}
	if c := p.PickManual(v, nil, nil, nil); c != nil {
		t.Fatalf("manual compaction does not end: %v", c)
	}
	// A step that conflicts with a running compaction waits.
	v = ver(t, map[int][]*lsm.FileMeta{3: {tm(1, "a", "c", mib, 10)}, 6: {tm(2, "a", "z", 100*gib, 1)}})
	running := []*Compaction{{Level: 6, OutputLevel: 6, Inputs: [2][]*lsm.FileMeta{v.Levels[6]}}}
	if c := p.PickManual(v, nil, nil, running); c != nil {
		t.Fatalf("picked %v beside a conflicting compaction", c)
	}
}

func TestPickManualFruitlessRewriteTerminates(t *testing.T) {
	p := NewPicker(Options{})
	v := ver(t, map[int][]*lsm.FileMeta{6: {dense(tm(1, "a", "z", mib, 1), 10, 5)}})
	c := p.PickManual(v, nil, nil, nil)
	if c == nil || c.Level != 6 || c.OutputLevel != 6 {
		t.Fatalf("picked %v, want a bottom rewrite", c)
	}
	// The output kept every tombstone (a snapshot needs them).
	out := *v.Levels[6][0]
	out.Num = 2
	v = ver(t, map[int][]*lsm.FileMeta{6: {&out}})
	if c := p.PickManual(v, nil, nil, nil); c != nil {
		t.Fatalf("rewrote a table that kept its tombstones again: %v", c)
	}
}

// tableEnvFor is a test Env writing tables to /db of fs.
func tableEnvFor(fs vfs.FS, next *layout.FileNum) Env {
	return Env{
		FS: fs, Dir: "/db",
		NewFileNum: func() layout.FileNum { *next++; return *next },
		TableOpts:  lsm.TableWriterOptions{Compression: lsm.CompressionS2},
	}
}

type kv struct {
	key  string
	seq  lsm.SeqNum
	kind lsm.Kind
	val  string
}

// writeTable writes one table of entries (given in internal-key order).
func writeTable(t *testing.T, fs vfs.FS, num layout.FileNum, entries []kv) *lsm.FileMeta {
	t.Helper()
	f, err := fs.Create(layout.Path("/db", layout.TypeTable, num))
	if err != nil {
		t.Fatal(err)
	}
	w := lsm.NewTableWriter(f, lsm.TableWriterOptions{Compression: lsm.CompressionS2})
	for _, e := range entries {
		if err := w.Add(lsm.MakeInternalKey([]byte(e.key), e.seq, e.kind), []byte(e.val)); err != nil {
			t.Fatal(err)
		}
	}
	props, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return &lsm.FileMeta{Num: num, Size: props.FileSize, Smallest: props.Smallest, Largest: props.Largest,
		SmallestSeq: props.SmallestSeq, LargestSeq: props.LargestSeq,
		NumEntries: props.NumEntries, NumDeletions: props.NumDeletions}
}

func readTables(t *testing.T, tc *lsm.TableCache, files []*lsm.FileMeta) []kv {
	t.Helper()
	it := lsm.NewLevelIter(tc, files)
	var out []kv
	for ok := it.First(); ok; ok = it.Next() {
		uk, seq, kind, _ := lsm.SplitInternalKey(it.Key())
		out = append(out, kv{string(uk), seq, kind, string(it.Value())})
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRunEndToEnd(t *testing.T) {
	fs := vfs.NewMem()
	if err := fs.MkdirAll("/db"); err != nil {
		t.Fatal(err)
	}
	S, D := lsm.KindSet, lsm.KindDelete
	old := writeTable(t, fs, 1, []kv{{"a", 1, S, "a1"}, {"b", 2, S, "b2"}, {"c", 3, S, "c3"}})
	mid := writeTable(t, fs, 2, []kv{{"b", 12, D, ""}, {"d", 11, S, "d11"}})
	newest := writeTable(t, fs, 3, []kv{{"a", 21, S, "a21"}, {"c", 22, S, "c22"}})
	base := writeTable(t, fs, 4, []kv{{"c", 0, S, "c0"}, {"e", 0, S, "e0"}})
	v := ver(t, map[int][]*lsm.FileMeta{0: {old, mid, newest}, 6: {base}})

	p := NewPicker(Options{L0CompactionThreshold: 3})
	c := p.Pick(v, nil)
	if c == nil || c.Reason != "l0" || c.OutputLevel != 6 || !c.Bottommost || c.OutputCold {
		t.Fatalf("picked %v, want l0 into L6 (the base of a small tree, hot)", c)
	}
	c.OutputCold = true // as a compaction below the base would be
	tc := lsm.NewTableCache(fs, "/db", nil, 0)
	defer tc.Close()
	next := layout.FileNum(100)
	env := tableEnvFor(fs, &next)
	if _, _, err := Run(env, tc, c, WriteSpec{}); err == nil {
		t.Fatal("Run accepted a hot environment for a cold output")
	}
	env.Cold = true
	ve, st, err := Run(env, tc, c, WriteSpec{})
	if err != nil {
		t.Fatal(err)
	}
	v = apply(t, v, ve)
	if len(v.Levels[0]) != 0 || len(ve.DeletedFiles) != 4 {
		t.Fatalf("edit %+v", ve)
	}
	for _, nf := range ve.NewFiles {
		if nf.Level != 6 || !nf.Meta.Cold {
			t.Fatalf("output at L%d cold=%t", nf.Level, nf.Meta.Cold)
		}
	}
	want := []kv{{"a", 21, S, "a21"}, {"c", 22, S, "c22"}, {"d", 11, S, "d11"}, {"e", 0, S, "e0"}}
	if got := readTables(t, tc, v.Levels[6]); !slices.Equal(got, want) {
		t.Fatalf("merged\n%v\nwant\n%v", got, want)
	}
	if st.EntriesIn != 9 || st.EntriesOut != 4 {
		t.Fatalf("stats %+v", st)
	}

	// A move produces the edit only, with the same table.
	f := v.Levels[6][0]
	mv := &Compaction{Level: 6, OutputLevel: 5, TrivialMove: true, OutputCold: f.Cold, Inputs: [2][]*lsm.FileMeta{{f}}}
	ve, _, err = Run(Env{}, tc, mv, WriteSpec{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ve.DeletedFiles) != 1 || ve.DeletedFiles[0] != (lsm.DeletedFile{Level: 6, Num: f.Num}) ||
		len(ve.NewFiles) != 1 || ve.NewFiles[0].Level != 5 || ve.NewFiles[0].Meta != f {
		t.Fatalf("move edit %+v", ve)
	}
	// A move across tiers relabels a copy of the metadata.
	across := *mv
	across.OutputCold = !f.Cold
	ve, _, err = Run(Env{}, tc, &across, WriteSpec{})
	if err != nil {
		t.Fatal(err)
	}
	if m := ve.NewFiles[0].Meta; m == f || m.Cold == f.Cold || m.Num != f.Num || m.Size != f.Size {
		t.Fatalf("move across tiers: %+v from %+v", m, f)
	}
	mv.Inputs[1] = []*lsm.FileMeta{base}
	if _, _, err := Run(Env{}, tc, mv, WriteSpec{}); err == nil {
		t.Fatal("a move with inputs in the output level succeeded")
	}
}

func TestRunSplitsAtGrandparents(t *testing.T) {
	fs := vfs.NewMem()
	if err := fs.MkdirAll("/db"); err != nil {
		t.Fatal(err)
	}
	var entries []kv
	for i := range 1000 {
		entries = append(entries, kv{fmt.Sprintf("k%04d", i), lsm.SeqNum(i + 1), lsm.KindSet, "v"})
	}
	in := writeTable(t, fs, 1, entries)
	// 30 grandparents of 100 KiB, each ~33 keys wide; metadata only.
	var gps []*lsm.FileMeta
	for g := range 30 {
		gps = append(gps, tm(1000+g, fmt.Sprintf("k%04d", g*34), fmt.Sprintf("k%04d", g*34+33), 100*kib, 1))
	}
	c := &Compaction{Level: 1, OutputLevel: 2, Inputs: [2][]*lsm.FileMeta{{in}}, Grandparents: gps,
		TargetFileSize: 64 * kib, Reason: "size"}
	tc := lsm.NewTableCache(fs, "/db", nil, 0)
	defer tc.Close()
	next := layout.FileNum(100)
	ve, _, err := Run(tableEnvFor(fs, &next), tc, c, WriteSpec{})
	if err != nil {
		t.Fatal(err)
	}
	// 640 KiB of grandparents per output: a split after passing 7.
	if n := len(ve.NewFiles); n < 4 || n > 6 {
		t.Fatalf("%d outputs, want 4-6 (30 grandparents, 7 passed per output)", n)
	}
	var outs []*lsm.FileMeta
	for _, nf := range ve.NewFiles {
		outs = append(outs, nf.Meta)
		s, l := lsm.UserKey(nf.Meta.Smallest), lsm.UserKey(nf.Meta.Largest)
		var overlap uint64
		for _, g := range gps {
			if bytes.Compare(lsm.UserKey(g.Smallest), l) <= 0 && bytes.Compare(lsm.UserKey(g.Largest), s) >= 0 {
				overlap += g.Size
			}
		}
		if overlap > 10*64*kib+2*100*kib {
			t.Fatalf("output %s [%s, %s] overlaps %d bytes of grandparents", nf.Meta.Num, s, l, overlap)
		}
	}
	if got := readTables(t, tc, outs); len(got) != 1000 {
		t.Fatalf("read back %d entries, want 1000", len(got))
	}
}

func BenchmarkPick(b *testing.B) {
	// A settled 10 GiB tree: 4 MiB tables from the base down.
	levels := map[int][]*lsm.FileMeta{}
	num := 0
	for level, size := range map[int]uint64{3: 12 * mib, 4: 120 * mib, 5: 1 * gib, 6: 10 * gib} {
		n := int(size / (4 * mib))
		for i := range n {
			num++
			levels[level] = append(levels[level], tm(num, fmt.Sprintf("%08d", i*1000000/n), fmt.Sprintf("%08d", (i+1)*1000000/n-1), 4*mib, 1))
		}
	}
	for i := range 5 {
		num++
		levels[0] = append(levels[0], tm(num, "00000000", "00999999", 4*mib, lsm.SeqNum(100+10*i)))
	}
	v := &lsm.Version{}
	for level, files := range levels {
		v.Levels[level] = files
	}
	slices.SortFunc(v.Levels[0], func(a, b *lsm.FileMeta) int { return int(b.LargestSeq) - int(a.LargestSeq) })
	p := NewPicker(Options{})
	b.ReportAllocs()
	for b.Loop() {
		if p.Pick(v, nil) == nil {
			b.Fatal("nothing picked")
		}
	}
}

var pickerSeed = flag.Int64("picker-seed", 1, "seed of TestPickRunRandomized (0: time-based)")

// TestPickRunRandomized flushes random writes into L0 and lets the picker
// run concurrent batches of compactions (all picked from one version, run,
// then applied in turn) and finally a manual compaction, checking every
// key against a model after each round.
func TestPickRunRandomized(t *testing.T) {
	seed := *pickerSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))

	fs := vfs.NewMem()
	if err := fs.MkdirAll("/db"); err != nil {
		t.Fatal(err)
	}
	tc := lsm.NewTableCache(fs, "/db", nil, 0)
	defer tc.Close()
	next := layout.FileNum(1000)
	p := NewPicker(Options{L0CompactionThreshold: 2, LBaseMaxBytes: 4 * kib, LevelMultiplier: 3,
		TargetFileSize: 2 * kib, TombstoneMinDeletions: 20, ColdLevels: 3})
	v := &lsm.Version{}
	model := map[string]string{} // absent: deleted or never written
	seq := lsm.SeqNum(0)
	reasons := map[string]int{}
	concurrent := 0 // most compactions picked together

	check := func(round int) {
		t.Helper()
		for i := range 400 {
			k := fmt.Sprintf("key%04d", i)
			val, kind, _, found, err := v.Get(tc, []byte(k), lsm.MaxSeqNum)
			if err != nil {
				t.Fatal(err)
			}
			want, ok := model[k]
			if got := found && kind == lsm.KindSet; got != ok || (ok && string(val) != want) {
				t.Fatalf("round %d: %s = %q (found %t kind %v), want %q (present %t)", round, k, val, found, kind, want, ok)
			}
		}
	}
	run := func(c *Compaction) *lsm.VersionEdit {
		t.Helper()
		env := tableEnvFor(fs, &next)
		env.Cold = c.OutputCold
		ve, _, err := Run(env, tc, c, WriteSpec{})
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		reasons[c.Reason]++
		return ve
	}

	for round := range 60 {
		// Flush a memtable's worth of random writes, sorted.
		batch := map[string]kv{}
		for range 20 + rng.IntN(80) {
			seq++
			k := fmt.Sprintf("key%04d", rng.IntN(400))
			if rng.IntN(3) == 0 {
				batch[k] = kv{k, seq, lsm.KindDelete, ""}
				delete(model, k)
			} else {
				noise := make([]byte, rng.IntN(60))
				for i := range noise {
					noise[i] = 'a' + byte(rng.IntN(26))
				}
				val := fmt.Sprintf("v%d-%s", seq, noise)
				batch[k] = kv{k, seq, lsm.KindSet, val}
				model[k] = val
			}
		}
		var entries []kv
		for _, e := range batch {
			entries = append(entries, e)
		}
		slices.SortFunc(entries, func(a, b kv) int { return strings.Compare(a.key, b.key) })
		next++
		f := writeTable(t, fs, next, entries)
		v = apply(t, v, &lsm.VersionEdit{NewFiles: []lsm.NewFile{{Level: 0, Meta: f}}})

		for range 20 {
			var batchC []*Compaction
			for len(batchC) < 3 {
				c := p.Pick(v, batchC)
				if c == nil {
					break
				}
				batchC = append(batchC, c)
			}
			if len(batchC) == 0 {
				break
			}
			concurrent = max(concurrent, len(batchC))
			var edits []*lsm.VersionEdit
			for _, c := range batchC {
				edits = append(edits, run(c))
			}
			for _, e := range edits {
				v = apply(t, v, e)
			}
		}
		check(round)
	}
	for range 100 {
		c := p.PickManual(v, nil, nil, nil)
		if c == nil {
			break
		}
		v = apply(t, v, run(c))
	}
	check(-1)
	for level := range lsm.NumLevels - 1 {
		if len(v.Levels[level]) > 0 {
			t.Fatalf("L%d holds %v after a full manual compaction", level, nums(v.Levels[level]))
		}
	}
	if c := p.PickManual(v, nil, nil, nil); c != nil {
		t.Fatalf("manual compaction does not end: %v", c)
	}
	t.Logf("compactions by reason: %v; up to %d at once", reasons, concurrent)
	if concurrent < 2 {
		t.Errorf("never picked two compactions to run together")
	}
}

// TestPickSkipsDamaged checks that no automatic pick reads a damaged
// table, whether it would be an input of the level or of the level below,
// and that PickManual still tries it.
func TestPickSkipsDamaged(t *testing.T) {
	damaged := map[layout.FileNum]bool{}
	p := NewPicker(Options{Damaged: func(n layout.FileNum) bool { return damaged[n] }})
	v := ver(t, map[int][]*lsm.FileMeta{
		0: {
			tm(1, "a", "c", mib, 10),
			tm(2, "c", "e", mib, 20),
			tm(3, "e", "g", mib, 30),
			tm(4, "x", "z", mib, 40),
		},
		5: {tm(10, "a", "b", mib, 5), tm(11, "f", "h", mib, 5), tm(12, "i", "k", mib, 5)},
		6: {tm(20, "a", "z", 100*mib, 1)},
	})
	reads := func(c *Compaction, num int) bool {
		return slices.Contains(nums(c.Inputs[0]), num) || slices.Contains(nums(c.Inputs[1]), num)
	}
	for _, bad := range []int{2, 11} {
		clear(damaged)
		damaged[layout.FileNum(bad)] = true
		if c := p.Pick(v, nil); c != nil && reads(c, bad) {
			t.Fatalf("damaged %d: picked %v, which reads it", bad, c)
		}
		if c := p.PickManual(v, nil, nil, nil); c == nil || !reads(c, 1) {
			t.Fatalf("damaged %d: manual pick %v skipped the damaged range", bad, c)
		}
	}
}

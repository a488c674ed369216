package oplog

import (
	"errors"
	"flag"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// oplogSeed seeds the randomized tests of this package.
var oplogSeed = flag.Uint64("oplogseed", 1, "seed for the oplog randomized tests")

func newRand(t testing.TB) *rand.Rand {
	t.Logf("seed %d (rerun with -oplogseed=%d)", *oplogSeed, *oplogSeed)
	return rand.New(rand.NewPCG(*oplogSeed, 0x6f706c6f67))
}

// fakeWall is an injectable wall clock, in milliseconds.
type fakeWall struct{ ms atomic.Int64 }

func (w *fakeWall) now() time.Time { return time.UnixMilli(w.ms.Load()) }

func newFakeClock(ms int64, drift time.Duration) (*Clock, *fakeWall) {
	w := &fakeWall{}
	w.ms.Store(ms)
	return NewClock(&ClockOptions{Wall: w.now, MaxDrift: drift}), w
}

func TestTimestampParts(t *testing.T) {
	ts := MakeTimestamp(1_700_000_000_123, 42)
	if ts.Physical() != 1_700_000_000_123 || ts.Logical() != 42 {
		t.Fatalf("parts of %v: %d, %d", ts, ts.Physical(), ts.Logical())
	}
	if got := ts.Time(); got.UnixMilli() != 1_700_000_000_123 {
		t.Fatalf("Time() = %v", got)
	}
	if MakeTimestamp(5, 0xffff)+1 != MakeTimestamp(6, 0) {
		t.Fatal("logical overflow does not carry into the physical part")
	}
	if s := MakeTimestamp(0, 3).String(); s != "1970-01-01T00:00:00.000Z+3" {
		t.Fatalf("String() = %q", s)
	}
}

func TestClockFollowsWall(t *testing.T) {
	c, w := newFakeClock(1000, 0)
	if got := c.Now(); got != MakeTimestamp(1000, 0) {
		t.Fatalf("first Now = %v", got)
	}
	if got := c.Now(); got != MakeTimestamp(1000, 1) {
		t.Fatalf("second Now in the same ms = %v", got)
	}
	w.ms.Store(1005)
	if got := c.Now(); got != MakeTimestamp(1005, 0) {
		t.Fatalf("Now after the wall moved = %v", got)
	}
}

func TestClockMonotonicWhenWallGoesBack(t *testing.T) {
	rng := newRand(t)
	c, w := newFakeClock(1_000_000, 0)
	prev := c.Now()
	for i := range 20000 {
		// Mostly small steps both ways, sometimes a big jump back.
		step := rng.Int64N(5) - 2
		if rng.IntN(500) == 0 {
			step = -rng.Int64N(100_000)
		}
		w.ms.Add(step)
		ts := c.Now()
		if ts <= prev {
			t.Fatalf("step %d: Now %v not after %v", i, ts, prev)
		}
		// The clock is never behind the wall.
		if int64(ts.Physical()) < w.ms.Load() {
			t.Fatalf("step %d: Now %v behind the wall %d", i, ts, w.ms.Load())
		}
		prev = ts
	}
}

func TestClockLogicalOverflowBumpsPhysical(t *testing.T) {
	c, _ := newFakeClock(500, 0)
	var ts Timestamp
	for range 1 << 16 {
		ts = c.Now()
	}
	if ts != MakeTimestamp(500, 0xffff) {
		t.Fatalf("after 65536 calls in one ms: %v", ts)
	}
	if ts = c.Now(); ts != MakeTimestamp(501, 0) {
		t.Fatalf("after the logical counter filled: %v", ts)
	}
}

func TestClockConcurrentNow(t *testing.T) {
	c, w := newFakeClock(10_000, 0)
	const goroutines, each = 8, 2000
	out := make([][]Timestamp, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if i%100 == 0 {
					w.ms.Add(int64(g%3) - 1) // wall wobbles both ways
				}
				out[g] = append(out[g], c.Now())
			}
		}()
	}
	wg.Wait()
	seen := make(map[Timestamp]bool, goroutines*each)
	for g, tss := range out {
		for i, ts := range tss {
			if i > 0 && ts <= tss[i-1] {
				t.Fatalf("goroutine %d: %v after %v", g, ts, tss[i-1])
			}
			if seen[ts] {
				t.Fatalf("timestamp %v returned twice", ts)
			}
			seen[ts] = true
		}
	}
}

func TestClockObserve(t *testing.T) {
	c, _ := newFakeClock(1_000_000, 10*time.Second)
	remote := MakeTimestamp(1_000_000+9_000, 7)
	if err := c.Observe(remote); err != nil {
		t.Fatal(err)
	}
	if ts := c.Now(); ts <= remote {
		t.Fatalf("Now %v not after observed %v", ts, remote)
	}
	// An older timestamp changes nothing.
	before := c.Last()
	if err := c.Observe(MakeTimestamp(5, 0)); err != nil || c.Last() != before {
		t.Fatalf("observing an old timestamp: %v, last %v -> %v", err, before, c.Last())
	}
	// Exactly at the limit is accepted; beyond it refused, clock unchanged.
	if err := c.Observe(MakeTimestamp(1_000_000+10_000, 0)); err != nil {
		t.Fatalf("timestamp at the drift limit: %v", err)
	}
	last := c.Last()
	far := MakeTimestamp(1_000_000+10_001, 0)
	err := c.Observe(far)
	if !errors.Is(err, ErrClockDrift) {
		t.Fatalf("observing %v: %v, want ErrClockDrift", far, err)
	}
	if c.Last() != last {
		t.Fatalf("refused timestamp moved the clock to %v", c.Last())
	}
	// Restore takes the replica's own history regardless of drift.
	c.Restore(far)
	if ts := c.Now(); ts <= far {
		t.Fatalf("Now %v not after restored %v", ts, far)
	}
}

func TestClockDefaultDrift(t *testing.T) {
	c, _ := newFakeClock(1_000_000, 0)
	if err := c.Observe(MakeTimestamp(1_000_000+59_000, 0)); err != nil {
		t.Fatalf("59 s ahead with the default drift: %v", err)
	}
	if err := c.Observe(MakeTimestamp(1_000_000+61_000, 0)); !errors.Is(err, ErrClockDrift) {
		t.Fatalf("61 s ahead with the default drift: %v", err)
	}
	if NewClock(nil).Now().Physical() == 0 {
		t.Fatal("default clock reads the epoch")
	}
}

func BenchmarkClockNow(b *testing.B) {
	c := NewClock(nil)
	b.ReportAllocs()
	for b.Loop() {
		c.Now()
	}
}

func TestClockNowN(t *testing.T) {
	wall := time.UnixMilli(1_700_000_000_000)
	c := NewClock(&ClockOptions{Wall: func() time.Time { return wall }})
	a := c.Now()
	first := c.NowN(5)
	if first <= a {
		t.Fatalf("NowN %v not after Now %v", first, a)
	}
	if b := c.Now(); b != first+5 {
		t.Fatalf("Now after NowN(5) from %v = %v, want %v", first, b, first+5)
	}
	wall = wall.Add(time.Second)
	if f := c.NowN(1); f != MakeTimestamp(uint64(wall.UnixMilli()), 0) {
		t.Fatalf("NowN after the wall clock moved = %v", f)
	}
}

func TestStampLocal(t *testing.T) {
	ts := MakeTimestamp(1_700_000_000_000, 7)
	for i, v := range [][]byte{
		AppendPutState(nil, 0, []byte("v")),
		AppendDeleteState(nil, 0),
		AppendFieldOperand(nil, 0, []byte("f"), []byte("x"), false),
		AppendFieldOperand(nil, 0, []byte("f"), nil, true),
		AppendIncrOperand(nil, 0, []byte("n"), 3),
	} {
		StampLocal(v, ts)
		op, err := LocalOp([]byte("k"), v, i >= 2)
		if err != nil {
			t.Fatal(err)
		}
		if op.HLC != ts {
			t.Fatalf("stamped %v, read back %v", ts, op.HLC)
		}
	}
}

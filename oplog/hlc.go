package oplog

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Timestamp is a hybrid logical clock reading: milliseconds since the Unix
// epoch in the high 48 bits and a logical counter in the low 16. Ordering
// Timestamps as integers orders them as the clock does, and adding one to a
// Timestamp whose logical part is full carries into the milliseconds.
type Timestamp uint64

const (
	logicalBits = 16
	logicalMask = 1<<logicalBits - 1
	// MaxPhysical is the largest millisecond count a Timestamp holds
	// (about the year 10889).
	MaxPhysical = 1<<48 - 1
)

// MakeTimestamp returns the Timestamp for physical milliseconds and a
// logical counter. physical is truncated to 48 bits.
func MakeTimestamp(physical uint64, logical uint16) Timestamp {
	return Timestamp((physical&MaxPhysical)<<logicalBits | uint64(logical))
}

// Physical returns the milliseconds since the Unix epoch.
func (t Timestamp) Physical() uint64 { return uint64(t) >> logicalBits }

// Logical returns the logical counter.
func (t Timestamp) Logical() uint16 { return uint16(t & logicalMask) }

// Time returns the physical part as a time.Time.
func (t Timestamp) Time() time.Time { return time.UnixMilli(int64(t.Physical())).UTC() }

func (t Timestamp) String() string {
	return fmt.Sprintf("%s+%d", t.Time().Format("2006-01-02T15:04:05.000Z"), t.Logical())
}

// ErrClockDrift: a received timestamp is further ahead of the local wall
// clock than Clock allows. Accepting it would drag every later local
// timestamp into the future with it.
var ErrClockDrift = errors.New("oplog: timestamp too far ahead of the wall clock")

// DefaultMaxDrift is how far ahead of the wall clock a received timestamp
// may be unless ClockOptions says otherwise.
const DefaultMaxDrift = time.Minute

// ClockOptions configure a Clock. The zero value gives the defaults.
type ClockOptions struct {
	// Wall returns the wall-clock time. Default time.Now; tests inject
	// their own.
	Wall func() time.Time
	// MaxDrift bounds how far ahead of Wall a timestamp passed to Observe
	// may be. Default (0 or negative) DefaultMaxDrift.
	MaxDrift time.Duration
}

// Clock is a hybrid logical clock. Now returns strictly increasing
// Timestamps that follow the wall clock when it moves forward and keep
// counting logically when it stands still or moves back; Observe moves the
// clock past timestamps received from other replicas, so a local write
// always sorts after everything this replica has seen.
//
// A Clock is safe for concurrent use; one mutex guards the last reading.
type Clock struct {
	wall     func() time.Time
	maxDrift time.Duration

	mu   sync.Mutex
	last Timestamp // the largest Timestamp returned by Now or observed
}

// NewClock returns a Clock; nil opts means defaults.
func NewClock(opts *ClockOptions) *Clock {
	c := &Clock{wall: time.Now, maxDrift: DefaultMaxDrift}
	if opts != nil {
		if opts.Wall != nil {
			c.wall = opts.Wall
		}
		if opts.MaxDrift > 0 {
			c.maxDrift = opts.MaxDrift
		}
	}
	return c
}

// wallMillis returns the wall clock in milliseconds, clamped to what a
// Timestamp can hold.
func (c *Clock) wallMillis() uint64 {
	ms := c.wall().UnixMilli()
	switch {
	case ms < 0:
		return 0
	case ms > MaxPhysical:
		return MaxPhysical
	}
	return uint64(ms)
}

// Now returns a Timestamp greater than every Timestamp the clock has
// returned or observed.
func (c *Clock) Now() Timestamp {
	pt := c.wallMillis()
	c.mu.Lock()
	defer c.mu.Unlock()
	if ts := MakeTimestamp(pt, 0); ts > c.last {
		c.last = ts
	} else {
		// The wall clock stood still or went back: count logically. A
		// full logical counter carries into the milliseconds, which then
		// run ahead of the wall clock until it catches up.
		c.last++
	}
	return c.last
}

// NowN reserves n consecutive Timestamps (n >= 1) greater than every
// Timestamp the clock has returned or observed and returns the first: the
// i-th of them is first+i. One reading of the wall clock stamps a whole
// batch.
func (c *Clock) NowN(n int) Timestamp {
	pt := c.wallMillis()
	c.mu.Lock()
	defer c.mu.Unlock()
	first := c.last + 1
	if ts := MakeTimestamp(pt, 0); ts > c.last {
		first = ts
	}
	c.last = first + Timestamp(n-1)
	return first
}

// Observe advances the clock past ts, a timestamp received from another
// replica. A ts more than MaxDrift ahead of the wall clock is refused with
// an error wrapping ErrClockDrift, and the clock is left unchanged.
func (c *Clock) Observe(ts Timestamp) error {
	pt := c.wallMillis()
	limit := pt + uint64(c.maxDrift.Milliseconds())
	if ts.Physical() > limit {
		return fmt.Errorf("%w: received %s is %v ahead of the local wall clock %s (limit %v)",
			ErrClockDrift, ts, time.Duration(ts.Physical()-pt)*time.Millisecond,
			MakeTimestamp(pt, 0).Time().Format(time.RFC3339Nano), c.maxDrift)
	}
	c.Restore(ts)
	return nil
}

// Restore advances the clock to at least ts without the drift check. It is
// for this replica's own timestamps read back from its log on open: they
// were issued by this clock, so a wall clock that has since moved back must
// not make them unusable.
func (c *Clock) Restore(ts Timestamp) {
	c.mu.Lock()
	if ts > c.last {
		c.last = ts
	}
	c.mu.Unlock()
}

// Last returns the largest Timestamp the clock has issued or observed.
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Wall returns the wall-clock time the Clock reads.
func (c *Clock) Wall() time.Time { return c.wall() }

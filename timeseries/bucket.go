package timeseries

import (
	"fmt"
	"math"
)

// BucketMillis is the time one stored chunk of a series covers:
// [start, start+BucketMillis), start a multiple of it. A day: 5,760
// samples at a 15 s interval, the block the cold encoding compresses
// well. Part of the format: a samples operation holds the samples of one
// bucket.
const BucketMillis = 24 * 60 * 60 * 1000

// The timestamps a stored sample may have: far beyond any clock, and far
// enough from the int64 limits that no bucket or range arithmetic
// overflows. Part of the format.
const (
	MinTime = -(1 << 62)
	MaxTime = 1 << 62
)

// BucketOf returns the start of the bucket holding t.
func BucketOf(t int64) int64 {
	b := t - t%BucketMillis
	if t%BucketMillis < 0 {
		b -= BucketMillis
	}
	return b
}

// CheckSamples checks the samples of one operation: at least one, at
// most 65,535, sorted by T, each T once, within [MinTime, MaxTime], all
// in one bucket. Errors wrap ErrInvalidSeries.
func CheckSamples(samples []Sample) error {
	if len(samples) == 0 {
		return fmt.Errorf("%w: no samples", ErrInvalidSeries)
	}
	if len(samples) > math.MaxUint16 {
		return fmt.Errorf("%w: %d samples in one operation, at most %d", ErrInvalidSeries, len(samples), math.MaxUint16)
	}
	b := BucketOf(samples[0].T)
	for i, s := range samples {
		if s.T < MinTime || s.T > MaxTime {
			return fmt.Errorf("%w: timestamp %d outside [%d, %d]", ErrInvalidSeries, s.T, int64(MinTime), int64(MaxTime))
		}
		if i > 0 && s.T <= samples[i-1].T {
			return fmt.Errorf("%w: samples not in ascending order of T at %d", ErrInvalidSeries, i)
		}
		if BucketOf(s.T) != b {
			return fmt.Errorf("%w: samples of two buckets in one operation", ErrInvalidSeries)
		}
	}
	return nil
}

package tsdb

import (
	"strings"
	"time"

	"github.com/plures/pluresdb/timeseries"
)

// Retention is how long series keep their samples, by their timestamp
// against the wall clock: Default for every series, For by canonical-name
// prefix (the longest matching prefix wins). A Keep of 0 keeps samples
// for ever. The engine drops whole chunks (days) retention let go.
type Retention struct {
	Default time.Duration
	For     []PrefixRetention
}

// PrefixRetention is the retention of the series whose canonical name
// starts with Prefix.
type PrefixRetention struct {
	Prefix string
	Keep   time.Duration
}

// Keep returns the retention of a series (0: for ever).
func (r Retention) Keep(name string) time.Duration {
	keep, best := r.Default, -1
	for _, p := range r.For {
		if len(p.Prefix) > best && strings.HasPrefix(name, p.Prefix) {
			keep, best = p.Keep, len(p.Prefix)
		}
	}
	return keep
}

// Horizon returns the first bucket every series keeps at now: those
// before it expired for the series of the shortest retention. false when
// nothing expires.
func (r Retention) Horizon(now time.Time) (int64, bool) {
	shortest := r.Default
	for _, p := range r.For {
		if p.Keep > 0 && (shortest <= 0 || p.Keep < shortest) {
			shortest = p.Keep
		}
	}
	if shortest <= 0 {
		return 0, false
	}
	return KeptFrom(now, shortest), true
}

// HorizonAll returns the first bucket some series keeps at now: every
// series has let the buckets before it go. false when a series keeps its
// samples for ever.
func (r Retention) HorizonAll(now time.Time) (int64, bool) {
	longest := r.Default
	if longest <= 0 {
		return 0, false
	}
	for _, p := range r.For {
		if p.Keep <= 0 {
			return 0, false
		}
		longest = max(longest, p.Keep)
	}
	return KeptFrom(now, longest), true
}

// Expired says whether the chunk key (within the series namespace) holds
// a day retention no longer keeps at now. A key that does not parse is
// never expired: nothing is dropped that cannot be read.
func (r Retention) Expired(key []byte, now time.Time) bool {
	if len(key) == 0 || key[0] != prefixChunk {
		return false
	}
	name, bucket, err := ParseChunkKey(key)
	if err != nil {
		return false
	}
	keep := r.Keep(name)
	return keep > 0 && bucket < KeptFrom(now, keep)
}

// KeptFrom is the first bucket a retention of keep keeps at now: the
// buckets before it end at or before now - keep (the bucket holding that
// instant is kept).
func KeptFrom(now time.Time, keep time.Duration) int64 {
	cut := now.Add(-keep).UnixMilli()
	return timeseries.BucketOf(max(cut, timeseries.MinTime+timeseries.BucketMillis))
}

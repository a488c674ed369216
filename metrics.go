package pluresdb

import (
	"sync/atomic"
	"time"

	"github.com/plures/pluresdb/lsm"
)

type metrics struct {
	commits, walBytes         atomic.Uint64
	flushes, flushBytes       atomic.Uint64
	compactions, compactBytes atomic.Uint64
	stalls, stallNanos        atomic.Uint64
}

// LevelMetrics describes one level of the tree.
type LevelMetrics struct {
	Files int
	Bytes uint64
}

// Metrics is a snapshot of the engine's counters since Open.
type Metrics struct {
	Levels [lsm.NumLevels]LevelMetrics

	Commits            uint64 // batches committed
	WALBytes           uint64 // bytes of batches appended to the log
	Flushes            uint64
	FlushBytes         uint64 // bytes of tables written by flushes
	Compactions        uint64
	CompactionBytes    uint64 // bytes of tables written by compactions
	Stalls             uint64 // times a writer waited for a flush or compaction
	StallTime          time.Duration
	CacheHits          uint64
	CacheMisses        uint64
	CacheBytes         int64
	MemtableBytes      int // bytes used in the mutable memtable
	ImmutableMemtables int

	// WriteAmplification is (log + flush + compaction bytes) / log bytes.
	WriteAmplification float64
}

// Metrics returns the engine's counters.
func (db *DB) Metrics() Metrics {
	m := Metrics{
		Commits:         db.m.commits.Load(),
		WALBytes:        db.m.walBytes.Load(),
		Flushes:         db.m.flushes.Load(),
		FlushBytes:      db.m.flushBytes.Load(),
		Compactions:     db.m.compactions.Load(),
		CompactionBytes: db.m.compactBytes.Load(),
		Stalls:          db.m.stalls.Load(),
		StallTime:       time.Duration(db.m.stallNanos.Load()),
	}
	cs := db.cache.Stats()
	m.CacheHits, m.CacheMisses, m.CacheBytes = cs.Hits, cs.Misses, cs.Bytes
	db.stateMu.RLock()
	if db.version != nil {
		for l := range m.Levels {
			m.Levels[l] = LevelMetrics{Files: db.version.NumFiles(l), Bytes: db.version.LevelSize(l)}
		}
	}
	if db.mem != nil {
		m.MemtableBytes = db.mem.m.Size()
	}
	m.ImmutableMemtables = len(db.imms)
	db.stateMu.RUnlock()
	if m.WALBytes > 0 {
		m.WriteAmplification = float64(m.WALBytes+m.FlushBytes+m.CompactionBytes) / float64(m.WALBytes)
	}
	return m
}

// Health says whether the engine accepts writes.
type Health struct {
	Writable bool
	// Reason explains why not, or names a background failure being
	// retried.
	Reason string
}

// Health reports the engine's state.
func (db *DB) Health() Health {
	if db.closed.Load() {
		return Health{Reason: "closed"}
	}
	if p := db.broken.Load(); p != nil {
		return Health{Reason: "log write failed: " + (*p).Error()}
	}
	db.bgMu.Lock()
	defer db.bgMu.Unlock()
	if db.bgErr != nil {
		return Health{Writable: true, Reason: "background work failing, retrying: " + db.bgErr.Error()}
	}
	return Health{Writable: true}
}

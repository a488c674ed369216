package pluresdb

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plures/pluresdb/lsm"
)

type metrics struct {
	levelRead, levelWritten        [lsm.NumLevels]atomic.Uint64
	slowdowns, slowdownNanos       atomic.Uint64
	reasonMu                       sync.Mutex
	byReason                       map[string]uint64
	commits, walBytes              atomic.Uint64
	indexBuildFailures             atomic.Uint64
	opSegmentsDropped              atomic.Uint64
	opArchivedBytes, opArchivedOps atomic.Uint64
	flushes, flushBytes            atomic.Uint64
	ingests                        atomic.Uint64
	staleImports                   atomic.Uint64
	compactions, compactBytes      atomic.Uint64
	stalls, stallNanos             atomic.Uint64
	compactionsDamaged             atomic.Uint64
}

func (m *metrics) addCompaction(reason string) {
	m.reasonMu.Lock()
	defer m.reasonMu.Unlock()
	if m.byReason == nil {
		m.byReason = map[string]uint64{}
	}
	m.byReason[reason]++
}

// LevelMetrics describes one level of the tree.
type LevelMetrics struct {
	Files int
	Bytes uint64
	// Target is the level's size target (0 above the base level).
	Target int64
	// Score is how far over its target the level is (>= 1: due for
	// compaction); for L0 the file count over L0CompactionThreshold.
	Score float64
	// BytesRead is what compactions read from the level; BytesWritten
	// what flushes (L0) and compactions wrote into it.
	BytesRead, BytesWritten uint64
	// WriteAmplification is BytesWritten over the bytes that came into
	// the level from above (for L0, over the log bytes).
	WriteAmplification float64
	Cold               bool // the level is in the cold tier (never the base level)
}

// Metrics is a snapshot of the engine's counters since Open.
type Metrics struct {
	Levels [lsm.NumLevels]LevelMetrics

	Commits    uint64 // batches committed
	WALBytes   uint64 // bytes of batches appended to the log
	Flushes    uint64
	FlushBytes uint64 // bytes of tables written by flushes and imports
	// IngestedTables counts the L0 tables bulk imports wrote directly
	// (see ImportChanges).
	IngestedTables  uint64
	Compactions     uint64
	CompactionBytes uint64 // bytes of tables written by compactions
	Stalls          uint64 // times a writer waited for a flush or compaction
	StallTime       time.Duration
	Slowdowns       uint64        // times a commit was paced because compaction was behind
	SlowdownTime    time.Duration // time commits spent paced
	// CompactionsByReason counts compactions by what triggered them:
	// "l0", "size", "intra-l0", "tombstones", "manual", "move".
	CompactionsByReason map[string]uint64
	// CompactionDebt estimates the bytes compaction must rewrite to bring
	// every level under its target.
	CompactionDebt int64
	// CacheHitRate is CacheHits over all block lookups.
	CacheHitRate       float64
	CacheHits          uint64
	CacheMisses        uint64
	CacheBytes         int64
	MemtableBytes      int // bytes used in the mutable memtable
	ImmutableMemtables int

	// WriteAmplification is (log + flush + compaction bytes) / log bytes.
	WriteAmplification float64
	// SpaceAmplification is the bytes of all tables over the bytes of the
	// bottom non-empty level, which holds (about) one copy of the data.
	SpaceAmplification float64

	OpLog OpLogMetrics

	// DamagedTables is the number of tables found damaged since Open
	// (Health names them).
	DamagedTables int
	// CompactionsDamaged counts compactions that stopped at a damaged
	// table; the tables are then left alone (see Health).
	CompactionsDamaged uint64

	// IndexBuilds is the progress of the secondary indexes still being
	// built over existing documents, by name; IndexBuildFailures counts
	// builds stopped by an error since open (the log says which).
	IndexBuilds        map[string]IndexBuild
	IndexBuildFailures uint64
}

// IndexBuild is the progress of an index build: documents visited of
// about Estimate.
type IndexBuild struct {
	Done, Estimate uint64
}

// OpLogMetrics describes the op history.
type OpLogMetrics struct {
	HotSegments      int    // log segments kept as written (the live one included)
	HotBytes         int64  // their size
	ArchivedSegments int    // segments in the cold archive
	ArchivedBytes    uint64 // bytes written to the archive since open
	ArchivedOps      uint64 // operations written to the archive since open
	SegmentsDropped  uint64 // segments dropped by retention since open
	// StaleImports counts change streams refused since open because they
	// held an operation at or below the tombstone collection horizon
	// (ErrStaleReplica).
	StaleImports uint64
	// Rejoining: the replica was restored in place and has not finished
	// rejoining (see DB.FinishRejoin); local writes fail with
	// ErrRejoining.
	Rejoining bool
}

// Metrics returns the engine's counters.
func (db *DB) Metrics() Metrics {
	m := Metrics{
		Commits:         db.m.commits.Load(),
		WALBytes:        db.m.walBytes.Load(),
		Flushes:         db.m.flushes.Load(),
		FlushBytes:      db.m.flushBytes.Load(),
		IngestedTables:  db.m.ingests.Load(),
		Compactions:     db.m.compactions.Load(),
		CompactionBytes: db.m.compactBytes.Load(),
		Stalls:          db.m.stalls.Load(),
		StallTime:       time.Duration(db.m.stallNanos.Load()),
	}
	m.OpLog = db.opLogMetrics()
	m.DamagedTables = len(db.tc.Damaged())
	m.CompactionsDamaged = db.m.compactionsDamaged.Load()
	m.IndexBuildFailures = db.m.indexBuildFailures.Load()
	if infos, err := db.Indexes(); err == nil {
		for _, in := range infos {
			if !in.Ready {
				if m.IndexBuilds == nil {
					m.IndexBuilds = map[string]IndexBuild{}
				}
				m.IndexBuilds[in.Name] = IndexBuild{Done: in.Done, Estimate: in.Estimate}
			}
		}
	}
	cs := db.cache.Stats()
	m.CacheHits, m.CacheMisses, m.CacheBytes = cs.Hits, cs.Misses, cs.Bytes
	m.Slowdowns = db.m.slowdowns.Load()
	m.SlowdownTime = time.Duration(db.m.slowdownNanos.Load())
	if lookups := cs.Hits + cs.Misses; lookups > 0 {
		m.CacheHitRate = float64(cs.Hits) / float64(lookups)
	}
	db.m.reasonMu.Lock()
	m.CompactionsByReason = maps.Clone(db.m.byReason)
	db.m.reasonMu.Unlock()
	if db.version != nil && db.picker != nil {
		v := db.currentVersion()
		base, targets := db.picker.Levels(v)
		scores := db.picker.Scores(v, nil)
		var total, bottom uint64
		in := m.WALBytes
		for l := range m.Levels {
			lm := LevelMetrics{
				Files:        v.NumFiles(l),
				Bytes:        v.LevelSize(l),
				Target:       targets[l],
				Score:        scores[l],
				BytesRead:    db.m.levelRead[l].Load(),
				BytesWritten: db.m.levelWritten[l].Load(),
				Cold:         l >= lsm.NumLevels-db.opts.ColdLevels && l > base,
			}
			if in > 0 {
				lm.WriteAmplification = float64(lm.BytesWritten) / float64(in)
			}
			in = db.m.levelRead[l].Load() // what leaves l enters l+1
			total += lm.Bytes
			if lm.Bytes > 0 {
				bottom = lm.Bytes
			}
			m.Levels[l] = lm
		}
		if bottom > 0 {
			m.SpaceAmplification = float64(total) / float64(bottom)
		}
		m.CompactionDebt = db.compactionDebt(v)
		v.Unref()
	}
	db.stateMu.RLock()
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

// Health says whether the engine accepts writes, and what damage it has
// found and works around.
type Health struct {
	Writable bool
	// Reason explains why not, or names a background failure being
	// retried.
	Reason string
	// Damaged lists the tables found damaged since Open: reads that touch
	// their bad blocks return ErrCorruption, and compaction leaves them
	// alone (a reopen or a manual Compact tries them again).
	Damaged []DamagedFile
	// Quarantined lists the files Open moved to a quarantine folder
	// because it could not prove them obsolete; nothing reads them.
	Quarantined []string
	// OpLog, when not empty, says why the op log's metadata is unreadable:
	// sync (ExportChanges, ImportChanges, AcknowledgePeer, ...) refuses
	// until the database is repaired; documents read and write as usual.
	OpLog string
	// Lost lists what a salvaging Open (Options.Salvage) dropped from the
	// log: the sequence numbers lost and where the damaged segment's copy
	// was kept (see LostRanges).
	Lost []LostRange
	// Rejoining: the replica was restored in place and has not finished
	// rejoining (see DB.FinishRejoin). Writable is false and Reason says
	// what to do; reads and imports work.
	Rejoining bool
}

// DamagedFile is a file found damaged.
type DamagedFile struct {
	Path string
	Err  error // wraps ErrCorruption, with the offset when known
}

// Health reports the engine's state.
func (db *DB) Health() Health {
	if db.closed.Load() {
		return Health{Reason: "closed"}
	}
	h := Health{Writable: true, Quarantined: slices.Clone(db.quarantined), Lost: db.LostRanges()}
	for _, d := range db.tc.Damaged() {
		h.Damaged = append(h.Damaged, DamagedFile{Path: d.Path, Err: d.Err})
	}
	if db.ol.damage != nil {
		h.OpLog = db.ol.damage.Error()
	}
	if p := db.broken.Load(); p != nil {
		h.Writable = false
		h.Reason = "log write failed: " + (*p).Error()
		return h
	}
	h.Rejoining = db.rejoining.Load()
	if db.opts.ReadOnly {
		h.Writable = false
		h.Reason = "opened read-only (Options.ReadOnly)"
		return h
	}
	if h.Rejoining {
		h.Writable = false
		h.Reason = "rejoining after an in-place restore: import this replica's operations from every peer " +
			"(ImportChanges), then call FinishRejoin (plures-backup rejoin-finish DIR); local writes fail with ErrRejoining until then"
		return h
	}
	db.bgMu.Lock()
	defer db.bgMu.Unlock()
	if db.bgErr != nil {
		h.Reason = "background work failing, retrying: " + db.bgErr.Error()
	}
	return h
}

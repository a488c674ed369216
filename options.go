package pluresdb

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/plures/pluresdb/index"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
)

// Limits on what one write may carry.
const (
	// MaxKeySize is the longest key accepted, in bytes.
	MaxKeySize = 32 << 10
	// MaxValueSize is the longest value accepted, in bytes.
	MaxValueSize = 16 << 20
)

// Compression selects the block codec of the tables a database writes.
type Compression = lsm.Compression

// Codecs for Options.Compression.
const (
	CompressionS2   = lsm.CompressionS2
	CompressionZstd = lsm.CompressionZstd
	CompressionNone = lsm.CompressionNone
)

// Options configures a database. The zero value (and a nil *Options) gives
// the defaults noted on each field.
type Options struct {
	// NoSync makes commits return before their log record is fsynced: a
	// crash can lose the last writes (never corrupt the database). For bulk
	// loads. Default false: every commit is durable when it returns.
	NoSync bool

	// Retention is how long operation history is kept beyond what sync and
	// recovery need: sealed log segments serve ExportChanges, Subscribe and
	// GetAsOf, first as they are, then (after HotHistory) from the zstd
	// cold archive, until they are older than Retention. History a peer
	// registered with AcknowledgePeer lacks is kept regardless. 0 means 7
	// days; negative keeps none. Tombstones older than Retention (and seen
	// by every acknowledged peer) are dropped by compaction; from then on
	// ImportChanges refuses operations it lacks that are as old
	// (ErrStaleReplica): a replica away for longer must re-bootstrap from a
	// snapshot. With a negative Retention and no acknowledged peer that is
	// any operation older than the last compaction into the bottom level.
	Retention time.Duration

	// HotHistory is how long sealed log segments stay as written before
	// they are compacted into the cold archive (about a fifth of the size,
	// slower to read; the change feed resumes inside it too). 0 means one
	// hour; negative archives a segment as soon as its data is flushed.
	HotHistory time.Duration

	// SeriesRetention is how long time series samples are kept, by their
	// timestamp against the wall clock: a day's chunks (timeseries.
	// BucketMillis) older than that are dropped by a compaction of that
	// day's keys, which hold nothing else. 0 keeps them for ever.
	// Retention is a replica's own policy: it is not replicated, and
	// samples older than it that arrive later are dropped again.
	SeriesRetention time.Duration
	// SeriesRetentionFor overrides SeriesRetention for the series whose
	// canonical name starts with a prefix (the longest matching prefix
	// wins; Keep 0: for ever). Days that hold series of several
	// retentions are rewritten when the shortest expires.
	SeriesRetentionFor []SeriesRetention

	// IndexExtractors gives, by index name, the extractor of each
	// secondary index created with one (IndexSpec.Extract): extractors are
	// code, not stored. An index whose extractor is missing at open makes
	// document writes fail with an error wrapping index.ErrNotReady
	// rather than let the index fall behind.
	IndexExtractors map[string]index.Extractor

	// MaxClockDrift bounds how far ahead of the local wall clock the
	// timestamp of an imported operation may be: ImportChanges refuses a
	// stream holding one further ahead with an error wrapping
	// oplog.ErrClockDrift that names the replica, the operation's sequence
	// number and timestamp, and the local clock. Accepting such an
	// operation would drag every later local timestamp into the future
	// with it. 0 means one minute; negative means no limit (for replicas
	// whose clocks are known to be off and trusted anyway). A positive
	// value under a millisecond, the clock's resolution, is invalid.
	MaxClockDrift time.Duration

	// CacheSize is the block cache capacity in bytes. 0 means
	// DefaultCacheSize(): a sixteenth of the machine's memory, between
	// 32 MiB and 1 GiB. Negative disables the cache.
	CacheSize int64

	// MemtableSize is the size of one memtable in bytes; a full memtable is
	// flushed to a table in the background. Larger memtables mean fewer,
	// larger L0 tables and less write amplification, at the cost of memory
	// (up to MaxImmutableMemtables+1 of them) and a longer replay after a
	// crash. A memtable that fits the CPU's last-level cache inserts
	// faster: each insert walks a few dozen skiplist nodes. Default
	// 16 MiB. The largest batch is half of it.
	MemtableSize int

	// MaxImmutableMemtables is how many full memtables may wait for their
	// flush before writes stall. Default 2.
	MaxImmutableMemtables int

	// L0CompactionThreshold is the number of L0 tables that triggers a
	// compaction into L1. Default 4.
	L0CompactionThreshold int

	// L0StopWritesThreshold is the number of L0 tables at which writes
	// stall until a compaction catches up. Default 12.
	L0StopWritesThreshold int

	// BlockSize is the uncompressed size of a table's data blocks. Smaller
	// blocks make point reads cheaper, larger ones compress and scan
	// better. Default 4 KiB.
	BlockSize int

	// BlockRestartInterval is how many keys share prefix compression
	// before a full key is stored (a restart point). Point reads binary
	// search the restart points and scan at most this many entries, so
	// small intervals read faster; large ones store keys more compactly.
	// Default 4.
	BlockRestartInterval int

	// BloomBitsPerKey sizes the bloom filter of each table (about 1% false
	// positives at 10). Default 10; negative disables filters.
	BloomBitsPerKey int

	// Compression is the codec for table blocks. Default CompressionS2.
	// Set CompressionNone explicitly with NoCompression.
	Compression Compression
	// NoCompression stores table blocks uncompressed.
	NoCompression bool

	// TargetFileSize is the size of the tables compaction writes into the
	// base level; each level below doubles it, up to 8 times. Default
	// 8 MiB.
	TargetFileSize int64

	// LBaseMaxBytes is the target size of the level L0 compacts into.
	// Level targets grow by LevelMultiplier downwards and are derived from
	// the size of the bottom level (dynamic level sizes), so the tree keeps
	// about 1/LevelMultiplier of its bytes in the levels above the bottom.
	// Default 64 MiB.
	LBaseMaxBytes int64
	// LevelMultiplier is the size ratio between adjacent levels. Default 10.
	LevelMultiplier int

	// MaxConcurrentCompactions bounds the compactions that run at once
	// (on disjoint key ranges). Default: the number of CPUs, at most 4.
	MaxConcurrentCompactions int

	// L0SlowdownWritesThreshold is the number of L0 tables at which
	// commits start being paced to SlowdownWriteRate. Default 8.
	L0SlowdownWritesThreshold int
	// SoftPendingCompactionBytes paces commits when the bytes compaction
	// owes (an estimate) pass it. Default 16 GiB.
	SoftPendingCompactionBytes int64
	// SlowdownWriteRate is the pace, in bytes a second, of throttled
	// commits. Default 16 MiB/s.
	SlowdownWriteRate int64

	// TombstoneDensity: a table whose deletions are at least this share of
	// its entries (and at least 1000) is compacted even without size
	// pressure, so deleted space comes back. Default 0.5; negative
	// disables.
	TombstoneDensity float64

	// ColdLevels is how many of the bottom levels form the cold tier:
	// tables there are written with ColdCompression and ColdBlockSize, in
	// ColdDir. The base level (where L0 compacts into) is never cold, so
	// a database too small to have levels below its base has no cold
	// tables yet. Default 2; negative: no cold tier.
	ColdLevels int
	// ColdDir is where cold-tier tables live, for example on a second,
	// cheaper disk. Default: the database directory. It must stay the same
	// across opens.
	ColdDir string
	// ColdCompression is the codec of cold-tier tables. Default zstd.
	ColdCompression Compression
	// ColdBlockSize is the block size of cold-tier tables. Default 16 KiB.
	ColdBlockSize int

	// MaxOpenFiles bounds the tables kept open. Default 1000.
	MaxOpenFiles int

	// DisableAutoCompaction stops background compactions; Compact still
	// works. For tests and bulk loads.
	DisableAutoCompaction bool

	// Salvage opens a database whose log has damaged records: the damaged
	// segment is first copied into the directory's quarantine/
	// subdirectory, then rewritten with every valid record (those after
	// the damage included), and replay goes on. What was lost is logged at
	// error level and listed by DB.LostRanges, with the sequence numbers
	// it held. Default false: Open refuses with ErrCorruption naming the
	// segment and offset.
	Salvage bool

	// ReadOnly opens an existing database for reading only, for tools and
	// inspection: Open writes no byte (no MANIFEST rewrite, no new log
	// segment, no truncation of a torn log tail, no file moved or
	// removed; the LOCK file is locked if it exists, never created).
	// What the log holds beyond the tables is replayed into memory.
	// Every write (Put, Batch.Commit, ImportChanges, Flush, Compact, ...)
	// fails with an error wrapping ErrReadOnly. A database that needs an
	// upgrade of its format, or is not a database, is refused. Salvage
	// cannot be combined with it.
	ReadOnly bool

	// Logger receives the engine's events (flushes, compactions, errors).
	// nil: silent.
	Logger *zerolog.Logger

	// Clock returns the wall-clock time the hybrid logical clock follows.
	// nil: time.Now. For tests that need a replica whose clock runs ahead
	// of or behind the others'.
	Clock func() time.Time

	// FS is the filesystem the database uses. nil: the operating system.
	// Tests pass an in-memory or fault-injecting one.
	FS vfs.FS
}

// WriteOptions changes how one commit is made durable.
type WriteOptions struct {
	// NoSync returns before the commit's log record is fsynced, whatever
	// Options.NoSync says.
	NoSync bool
	// Sync waits for the fsync even when Options.NoSync is set.
	Sync bool
}

// DefaultCacheSize is the block cache size used when Options.CacheSize is
// 0: a sixteenth of physical memory, at least 32 MiB and at most 1 GiB.
func DefaultCacheSize() int64 {
	const lo, hi = 32 << 20, 1 << 30
	mem := physicalMemory()
	if mem <= 0 {
		return 256 << 20
	}
	return min(max(mem/16, lo), hi)
}

func physicalMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// SeriesRetention is the retention of the series whose canonical name
// starts with Prefix (see Options.SeriesRetentionFor).
type SeriesRetention struct {
	Prefix string
	Keep   time.Duration
}

// Validate reports the first field that is out of range, wrapping
// ErrInvalidOptions.
func (o *Options) Validate() error {
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("%w: %s = %v, want %s", errs.ErrInvalidOptions, field, v, want)
	}
	for _, r := range o.SeriesRetentionFor {
		if r.Keep < 0 {
			return bad("SeriesRetentionFor["+r.Prefix+"].Keep", r.Keep, ">= 0 (0 keeps samples for ever)")
		}
	}
	switch {
	case o.ReadOnly && o.Salvage:
		return bad("Salvage", o.Salvage, "false with ReadOnly (Salvage rewrites damaged log segments)")
	case o.SeriesRetention < 0:
		return bad("SeriesRetention", o.SeriesRetention, ">= 0 (0 keeps samples for ever)")
	case o.MemtableSize != 0 && (o.MemtableSize < 1<<20 || o.MemtableSize > 1<<30):
		return bad("MemtableSize", o.MemtableSize, "0 or between 1 MiB and 1 GiB")
	case o.MaxImmutableMemtables < 0:
		return bad("MaxImmutableMemtables", o.MaxImmutableMemtables, ">= 0")
	case o.L0CompactionThreshold < 0:
		return bad("L0CompactionThreshold", o.L0CompactionThreshold, ">= 0")
	case o.L0StopWritesThreshold < 0:
		return bad("L0StopWritesThreshold", o.L0StopWritesThreshold, ">= 0")
	case o.L0StopWritesThreshold != 0 && o.L0StopWritesThreshold < o.L0CompactionThreshold:
		return bad("L0StopWritesThreshold", o.L0StopWritesThreshold, ">= L0CompactionThreshold")
	case o.BlockSize != 0 && (o.BlockSize < 256 || o.BlockSize > 1<<20):
		return bad("BlockSize", o.BlockSize, "0 or between 256 B and 1 MiB")
	case o.BlockRestartInterval < 0 || o.BlockRestartInterval > 1024:
		return bad("BlockRestartInterval", o.BlockRestartInterval, "between 0 and 1024")
	case o.BloomBitsPerKey > 64:
		return bad("BloomBitsPerKey", o.BloomBitsPerKey, "<= 64")
	case o.Compression > CompressionZstd:
		return bad("Compression", o.Compression, "S2, Zstd or None")
	case o.TargetFileSize < 0:
		return bad("TargetFileSize", o.TargetFileSize, ">= 0")
	case o.LBaseMaxBytes < 0:
		return bad("LBaseMaxBytes", o.LBaseMaxBytes, ">= 0")
	case o.LevelMultiplier < 0 || o.LevelMultiplier == 1:
		return bad("LevelMultiplier", o.LevelMultiplier, "0 or >= 2")
	case o.MaxConcurrentCompactions < 0:
		return bad("MaxConcurrentCompactions", o.MaxConcurrentCompactions, ">= 0")
	case o.L0SlowdownWritesThreshold < 0:
		return bad("L0SlowdownWritesThreshold", o.L0SlowdownWritesThreshold, ">= 0")
	case o.SoftPendingCompactionBytes < 0 || o.SlowdownWriteRate < 0:
		return bad("SoftPendingCompactionBytes/SlowdownWriteRate", o.SlowdownWriteRate, ">= 0")
	case o.ColdLevels >= lsm.NumLevels-1:
		return bad("ColdLevels", o.ColdLevels, fmt.Sprintf("< %d", lsm.NumLevels-1))
	case o.ColdCompression > CompressionZstd:
		return bad("ColdCompression", o.ColdCompression, "S2, Zstd or None")
	case o.ColdBlockSize != 0 && (o.ColdBlockSize < 256 || o.ColdBlockSize > 1<<20):
		return bad("ColdBlockSize", o.ColdBlockSize, "0 or between 256 B and 1 MiB")
	case o.MaxOpenFiles < 0:
		return bad("MaxOpenFiles", o.MaxOpenFiles, ">= 0")
	case o.MaxClockDrift > 0 && o.MaxClockDrift < time.Millisecond:
		return bad("MaxClockDrift", o.MaxClockDrift, "0, negative, or at least 1ms")
	}
	return nil
}

// withDefaults returns a copy of o with every zero field set to its default.
func (o *Options) withDefaults() Options {
	var c Options
	if o != nil {
		c = *o
	}
	if c.Retention == 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.HotHistory == 0 {
		c.HotHistory = time.Hour
	}
	if c.MaxClockDrift == 0 {
		c.MaxClockDrift = oplog.DefaultMaxDrift
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize()
	}
	if c.MemtableSize == 0 {
		c.MemtableSize = 16 << 20
	}
	if c.MaxImmutableMemtables == 0 {
		c.MaxImmutableMemtables = 2
	}
	if c.L0CompactionThreshold == 0 {
		c.L0CompactionThreshold = 4
	}
	if c.L0StopWritesThreshold == 0 {
		c.L0StopWritesThreshold = max(12, c.L0CompactionThreshold)
	}
	if c.BlockSize == 0 {
		c.BlockSize = 4 << 10
	}
	if c.BlockRestartInterval == 0 {
		c.BlockRestartInterval = 4
	}
	if c.BloomBitsPerKey == 0 {
		c.BloomBitsPerKey = 10
	}
	if c.Compression == CompressionNone && !c.NoCompression {
		c.Compression = CompressionS2
	}
	if c.NoCompression {
		c.Compression = CompressionNone
	}
	if c.TargetFileSize == 0 {
		c.TargetFileSize = 8 << 20
	}
	if c.LBaseMaxBytes == 0 {
		c.LBaseMaxBytes = 64 << 20
	}
	if c.LevelMultiplier == 0 {
		c.LevelMultiplier = 10
	}
	if c.MaxConcurrentCompactions == 0 {
		c.MaxConcurrentCompactions = min(max(runtime.NumCPU(), 1), 4)
	}
	if c.L0SlowdownWritesThreshold == 0 {
		c.L0SlowdownWritesThreshold = 8
	}
	if c.L0StopWritesThreshold < c.L0SlowdownWritesThreshold {
		c.L0SlowdownWritesThreshold = c.L0StopWritesThreshold
	}
	if c.SoftPendingCompactionBytes == 0 {
		c.SoftPendingCompactionBytes = 16 << 30
	}
	if c.SlowdownWriteRate == 0 {
		c.SlowdownWriteRate = 16 << 20
	}
	if c.TombstoneDensity == 0 {
		c.TombstoneDensity = 0.5
	}
	switch {
	case c.ColdLevels == 0:
		c.ColdLevels = 2
	case c.ColdLevels < 0:
		c.ColdLevels = 0
	}
	if c.ColdCompression == CompressionNone {
		c.ColdCompression = CompressionZstd
	}
	if c.ColdBlockSize == 0 {
		c.ColdBlockSize = 16 << 10
	}
	if c.MaxOpenFiles == 0 {
		c.MaxOpenFiles = 1000
	}
	if c.Logger == nil {
		nop := zerolog.Nop()
		c.Logger = &nop
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	return c
}

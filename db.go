package pluresdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/plures/pluresdb/compaction"
	"github.com/plures/pluresdb/index"
	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries/tsdb"
	"github.com/plures/pluresdb/wal"
)

// DB is an open database. All methods are safe for concurrent use.
//
// Locks, in the order they are taken:
//   - commitMu serializes writers: sequence numbers, the WAL buffer, memtable
//     inserts and memtable rotation all happen under it, so the WAL, the
//     sequence order and the memtable order agree.
//   - bgMu guards background bookkeeping (running compactions, the last
//     background error) and its condition variable, which wakes stalled
//     writers, Flush and Compact callers, and the flusher.
//   - installMu orders MANIFEST edits with their installation
//     (logAndInstall).
//   - stateMu guards the read state (mem, imms, version). Readers hold it
//     shared for the length of a point read or while building an iterator;
//     flushes and compactions hold it exclusively to swap state.
//
// (bgMu and installMu are never held together.)
type DB struct {
	dir  string
	opts Options
	fs   vfs.FS
	log  zerolog.Logger
	lock io.Closer

	vs    *lsm.VersionSet
	tc    *lsm.TableCache
	cache *lsm.BlockCache

	// series indexes the time series (series.go); seriesErr: the series
	// table could not be read at open.
	series    *tsdb.Index
	seriesErr error
	// seriesDel records deleted series (series.go); seriesDelErr: their
	// floors could not be read at open, so every read looks its floor
	// up.
	seriesDel    *tsdb.Deletes
	seriesDelErr error
	// indexes are the secondary indexes (indexes.go), replaced whole by
	// CreateIndex and DropIndex under commitMu; indexErr: the catalog
	// could not be read at open, and document writes fail.
	indexes  atomic.Pointer[index.Set]
	indexErr error
	// ixScratch is index upkeep's reusable memory (indexes.go), guarded
	// by commitMu.
	ixScratch indexScratch
	// seriesRetMu serializes retention passes over series;
	// seriesRetDone is the horizon the last one reached.
	seriesRetMu   sync.Mutex
	seriesRetDone int64

	commitMu sync.Mutex
	wal      *wal.Writer   // guarded by commitMu
	lastSeq  lsm.SeqNum    // last sequence number assigned; guarded by commitMu
	visible  atomic.Uint64 // sequence numbers <= visible are readable
	closed   atomic.Bool   // set under commitMu
	broken   atomic.Pointer[error]
	// rejoining: the REJOINING marker is there (rejoin.go); local writes
	// are refused. Set at open, cleared by FinishRejoin under commitMu.
	rejoining atomic.Bool

	// durable is the last sequence number whose log record is fsynced:
	// raised by every sync of the log (commits, Sync, rotation, Close).
	// Only what is durable leaves the process (ExportChanges, the change
	// feed): a crash can lose what lies above it, and the sequence numbers
	// of lost records are handed out again after the restart.
	durable atomic.Uint64

	installMu sync.Mutex // orders MANIFEST edits with their installation

	// spareArena is the arena of a flushed memtable, for the next one.
	arenaMu    sync.Mutex
	spareArena []uint64

	stateMu sync.RWMutex
	mem     *memtable    // the mutable memtable
	imms    []*memtable  // full memtables waiting for their flush, oldest first
	version *lsm.Version // the current version, ref'd by the DB

	bgMu       sync.Mutex
	bgCond     *sync.Cond
	bgErr      error // last background failure; cleared by the next success
	closing    bool
	manualWait int                      // Compact callers waiting; no new background compactions start
	running    []*compaction.Compaction // compactions in progress
	picker     *compaction.Picker

	throttle writeThrottle

	snapMu sync.Mutex
	snaps  map[*Snapshot]struct{}

	vectors vectorSet // open vector indexes (vector.go)
	ol      opLog     // the op log (oplog.go)
	// pendingMeta are metadata writes the next commit makes first; guarded
	// by commitMu.
	pendingMeta []metaKV
	retentionC  chan struct{} // wakes the retention goroutine
	retentionMu sync.Mutex    // one retention pass at a time

	wg sync.WaitGroup
	m  metrics
	// releasing is set while Close drops the DB's own references: tables
	// that become unreferenced then are not obsolete, only closed.
	releasing atomic.Bool
	// closeClean is set by Close: closeResources then records the clean
	// shutdown in the MANIFEST once the log is synced.
	closeClean bool
	// lost lists what a salvaging recovery could not replay (lost.go); set
	// during Open, read-only afterwards.
	lost []LostRange
	// quarantined lists the files open moved aside; set at open only.
	quarantined []string
	// roLiveSize is, in a read-only open, the readable size of the last
	// log segment (see liveLogSize).
	roLiveSize int64
}

// errMemInsert marks a memtable failure during replay, apart from damage
// in the record.
var errMemInsert = errors.New("pluresdb: replay: memtable insert")

// memtable is an lsm.Memtable with the WAL segment that holds its writes.
type memtable struct {
	m       *lsm.Memtable
	logNum  layout.FileNum
	maxSeq  lsm.SeqNum // largest sequence number inserted; guarded by commitMu until immutable
	flushed bool       // guarded by bgMu
}

// Open opens the database in dir, creating it if needed. A nil opts means
// the defaults.
func Open(dir string, opts *Options) (*DB, error) {
	if opts != nil {
		if err := opts.Validate(); err != nil {
			return nil, err
		}
	}
	o := opts.withDefaults()
	db := &DB{dir: filepath.Clean(dir), opts: o, fs: o.FS, log: *o.Logger, snaps: map[*Snapshot]struct{}{}}
	db.bgCond = sync.NewCond(&db.bgMu)
	db.ol.subs.init()
	if err := db.open(); err != nil {
		db.closeResources()
		return nil, err
	}
	// What replay found is in synced tables (or, read-only, was durable
	// in the log).
	db.durable.Store(db.visible.Load())
	if db.opts.ReadOnly {
		// No flushes, compactions, retention or upgrade: nothing writes.
		if _, ok, err := db.getMeta(metaDocFmt); err == nil && !ok {
			db.closeResources()
			return nil, fmt.Errorf("%w: %s needs a format upgrade: open it once without ReadOnly", errs.ErrReadOnly, dir)
		}
		return db, nil
	}
	db.wg.Add(1)
	go db.flushLoop()
	db.bgMu.Lock()
	db.scheduleCompactions()
	db.bgMu.Unlock()
	if db.ol.damage != nil {
		// Retention would drop history by a floor and peers it cannot
		// read, and the upgrade cannot tell whether it already ran.
		return db, nil
	}
	db.startRetention()
	if err := db.upgradeDocuments(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func (db *DB) open() error {
	fs, dir := db.fs, db.dir
	ro := db.opts.ReadOnly
	if fi, err := fs.Stat(dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("%w: %s is a file", errs.ErrNotDatabase, dir)
	} else if err != nil && ro {
		return fmt.Errorf("%w: %s: %w", errs.ErrNotDatabase, dir, err)
	}
	if !ro {
		if err := fs.MkdirAll(dir); err != nil {
			return fmt.Errorf("pluresdb: creating %s: %w", dir, err)
		}
	}
	// A read-only open locks the LOCK file only if it exists: creating it
	// would be a write. (Writers always create it, so none runs without.)
	lockPath := layout.Path(dir, layout.TypeLock, 0)
	if _, err := fs.Stat(lockPath); !ro || err == nil {
		lock, err := fs.Lock(lockPath)
		if err != nil {
			return fmt.Errorf("pluresdb: opening %s: %w", dir, err)
		}
		db.lock = lock
	}

	names, err := fs.List(dir)
	if err != nil {
		return err
	}
	var hasCurrent, hasEngineFiles, hasReplica, hasRejoin bool
	var foreign, manifests []string
	creationLeft := true // the engine files are what an interrupted creation leaves
	replicaTmp := filepath.Base(layout.Path(dir, layout.TypeReplica, 0)) + ".tmp"
	for _, name := range names {
		t, _, ok := layout.Parse(name)
		switch {
		case name == replicaTmp:
		case !ok:
			foreign = append(foreign, name)
		case t == layout.TypeCurrent:
			hasCurrent = true
		case t == layout.TypeReplica:
			hasReplica = true
		case t == layout.TypeRejoin:
			hasRejoin = true
		case t == layout.TypeManifest:
			hasEngineFiles = true
			manifests = append(manifests, name)
			if _, n, _ := layout.Parse(name); n != 1 {
				creationLeft = false
			}
		case t == layout.TypeLog, t == layout.TypeTable:
			creationLeft = false
			hasEngineFiles = true
		}
	}
	vsOpts := lsm.VersionSetOptions{FS: fs, Dir: dir, OnObsolete: db.removeTable, ReadOnly: ro}
	var ms *lsm.ManifestState
	switch {
	case ro && !hasCurrent:
		return fmt.Errorf("%w: %s has no CURRENT file (a read-only open creates nothing)", errs.ErrNotDatabase, dir)
	case hasCurrent:
		// Check the tables before anything is written: a missing or
		// truncated table refuses the open and changes no file.
		if ms, err = lsm.ReadManifestState(fs, dir); err != nil {
			return err
		}
		if err := ms.CheckTables(fs, dir, db.opts.ColdDir); err != nil {
			return err
		}
		// The replica's identity is settled before the MANIFEST is
		// rewritten in the current format: that rewrite erases the only
		// sign of a first-format database.
		format, err := lsm.ManifestFormat(fs, dir)
		if err != nil {
			return err
		}
		if ro && format == 1 {
			return fmt.Errorf("%w: %s is of the first format and needs an upgrade: open it once without ReadOnly", errs.ErrReadOnly, dir)
		}
		if err := db.openReplica(format == 1, hasReplica); err != nil {
			return err
		}
		if err := db.openRejoin(hasRejoin); err != nil {
			return err
		}
		db.vs, err = lsm.LoadVersionSet(vsOpts)
		if err != nil {
			return err
		}
	case hasRejoin:
		// A restore publishes the whole directory at once.
		return errs.Corruptf(layout.Path(dir, layout.TypeRejoin, 0), -1, "a rejoining marker in a directory without CURRENT")
	case hasEngineFiles && !(creationLeft && len(foreign) == 0):
		return errs.Corruptf(filepath.Join(dir, "CURRENT"), -1, "missing, but the directory holds tables or logs")
	case hasEngineFiles && ro:
		return fmt.Errorf("%w: %s holds only what an interrupted creation leaves (%s, no CURRENT)", errs.ErrNotDatabase, dir, manifests[0])
	case hasEngineFiles:
		// A creation cut short (a full disk, a crash) before CURRENT: the
		// first MANIFEST alone, with no table or log segment, holds an
		// empty version. It is moved aside, never deleted, and the
		// creation starts again (keeping the REPLICA, if written).
		for _, name := range manifests {
			dst, err := vfs.MoveAside(fs, filepath.Join(dir, name), filepath.Join(dir, quarantineDir))
			if err != nil {
				return fmt.Errorf("pluresdb: %s: moving aside %s, left by an interrupted creation: %w", dir, name, err)
			}
			db.quarantined = append(db.quarantined, dst)
			db.log.Warn().Str("file", name).Str("to", dst).Msg("creation was interrupted before CURRENT: its first MANIFEST moved to quarantine; creating again")
		}
		if err := db.openReplica(false, hasReplica); err != nil {
			return err
		}
		db.vs, err = lsm.CreateVersionSet(vsOpts)
		if err != nil {
			return err
		}
	case len(foreign) > 0:
		return fmt.Errorf("%w: %s holds files the engine did not write (%s)", errs.ErrNotDatabase, dir, foreign[0])
	default:
		// A new database: its REPLICA first, so a crash before CURRENT
		// exists leaves a directory that is still new (a REPLICA alone),
		// and one after leaves a database with its identity.
		if err := db.openReplica(false, hasReplica); err != nil {
			return err
		}
		db.vs, err = lsm.CreateVersionSet(vsOpts)
		if err != nil {
			return err
		}
	}

	// Every numbered file in the directory (segments, archives, graph
	// checkpoints, temp files a crash left) keeps its number: the MANIFEST's
	// counter may lag behind files made after its last edit.
	for _, name := range names {
		if _, n, ok := layout.Parse(name); ok && n > 0 {
			db.vs.MarkFileNumUsed(n)
		}
	}
	db.picker = db.newPicker()
	if db.opts.ColdDir != "" && !ro {
		if err := db.checkColdDir(); err != nil {
			return err
		}
	}
	cacheSize := db.opts.CacheSize
	if cacheSize < 0 {
		cacheSize = 0
	}
	db.cache = lsm.NewBlockCache(cacheSize)
	db.tc = lsm.NewTableCache(fs, dir, db.cache, db.opts.MaxOpenFiles)
	db.tc.SetColdDir(db.opts.ColdDir)
	db.version = db.vs.Current()

	if err := db.replay(); err != nil {
		return err
	}
	if err := db.openOpLog(); err != nil {
		return err
	}
	if ro {
		// The live segment holds operations too (see replayedReadOnly).
		db.ol.clock.Restore(db.ol.cur.maxHLC)
		db.ol.localSeq = max(db.ol.localSeq, db.ol.cur.ranges[db.ol.self].max)
	}
	if db.ol.damage == nil {
		if _, _, err := db.getMeta(metaDocFmt); errors.Is(err, errs.ErrCorruption) {
			db.ol.damage = err
		} else if err != nil {
			return err
		}
	}
	// A series table that cannot be read leaves the database open:
	// SelectSeries says so (seriesErr).
	if err := db.loadSeries(); err != nil {
		if !errors.Is(err, errs.ErrCorruption) {
			return err
		}
		db.seriesErr = err
		db.log.Error().Err(err).Msg("series table unreadable: series selection fails until the database is repaired")
	}
	db.loadIndexes()
	if ro {
		return nil
	}
	db.removeObsoleteFiles(ms)
	db.removeUnreferencedVectorGraphs()
	return nil
}

// replay rebuilds the writes that the WAL holds and no table does, flushes
// them to L0, and starts a new WAL segment.
func (db *DB) replay() error {
	segs, err := wal.List(db.fs, db.dir)
	if err != nil {
		return err
	}
	var live []layout.FileNum
	for _, s := range segs {
		db.vs.MarkFileNumUsed(s)
		if s >= db.vs.LogNum() {
			live = append(live, s)
		}
	}
	lastSeq := db.vs.LastSeq()
	manifestSeq := lastSeq
	var mem *lsm.Memtable // made at the first record: most opens have none
	var flushed []*lsm.FileMeta
	flushMem := func() error {
		if mem == nil || mem.Empty() {
			return nil
		}
		metas, _, err := compaction.Write(db.tableEnv(false, 0), mem.NewIter(), compaction.WriteSpec{})
		if err != nil {
			return err
		}
		flushed = append(flushed, metas...)
		mem = lsm.NewMemtable(db.opts.MemtableSize)
		return nil
	}
	var idx *segIndex
	// After a clean close the log cannot have a torn tail: Replay refuses
	// any damage (unless salvaging).
	var clean *wal.CleanClose
	if c := db.vs.CleanClose(); c != nil {
		clean = &wal.CleanClose{Segment: c.LogNum, Size: c.LogSize}
	}
	// Sequence numbers run on from record to record, so the ones a
	// salvaged damage lost lie between the last record before it and the
	// first after it.
	prevLast := lastSeq
	// firstSeq is the first sequence number the replayed log holds (0:
	// none): it must follow the MANIFEST's last, or records that are in
	// neither lie between.
	var firstSeq lsm.SeqNum
	var pending []wal.Damage
	onDamage := func(d wal.Damage) { pending = append(pending, d) }
	lostBefore := func(next lsm.SeqNum) {
		for _, d := range pending {
			lr := LostRange{Segment: layout.Path(db.dir, layout.TypeLog, d.Segment), Offset: d.Offset, Bytes: d.Bytes,
				Quarantined: d.Quarantined, First: uint64(prevLast) + 1, Last: uint64(next) - 1, Err: d.Err}
			if next == 0 {
				lr.Last = 0 // nothing after the damage: the end is unknown
			}
			db.lost = append(db.lost, lr)
			db.log.Error().Str("segment", lr.Segment).Int64("offset", d.Offset).Int64("bytes", d.Bytes).
				Uint64("first_seq", lr.First).Uint64("last_seq", lr.Last).Str("quarantined", d.Quarantined).
				AnErr("damage", d.Err).Msg("salvage: dropped damaged log records; the sequence numbers between first_seq and last_seq (0: unknown) are lost")
		}
		pending = pending[:0]
	}
	ro := db.opts.ReadOnly
	if ro {
		// What the log holds beyond the tables stays in memory: a full
		// memtable is kept as a sealed one instead of being flushed.
		flushMem = func() error {
			if mem == nil || mem.Empty() {
				return nil
			}
			db.imms = append(db.imms, &memtable{m: mem, maxSeq: lastSeq})
			mem = lsm.NewMemtable(db.opts.MemtableSize)
			return nil
		}
	}
	res, err := wal.Replay(wal.RecoverOptions{FS: db.fs, Dir: db.dir, Salvage: db.opts.Salvage, Clean: clean, OnDamage: onDamage, ReadOnly: ro}, live,
		func(seg layout.FileNum, rec []byte) error {
			r, err := batchrepr.NewReader(rec)
			if err != nil {
				return errs.Corruptf(layout.Path(db.dir, layout.TypeLog, seg), -1, "%v", err)
			}
			if len(pending) > 0 {
				lostBefore(r.Seq)
			}
			if firstSeq == 0 && r.Count > 0 {
				firstSeq = r.Seq
				if from, ok := batchrepr.SeqJump(rec); ok {
					firstSeq = from // a rejoin's jump declares where it starts
				}
			}
			if r.Count > 0 {
				prevLast = max(prevLast, r.Seq+lsm.SeqNum(r.Count)-1)
			}
			if !db.ol.legacy {
				if idx == nil || idx.num != seg {
					idx = newSegIndex(seg)
					db.ol.segs = append(db.ol.segs, idx)
				}
				if err := indexRecord(idx, rec, db.ol.self); err != nil {
					return errs.Corruptf(layout.Path(db.dir, layout.TypeLog, seg), -1, "%v", err)
				}
			}
			// An import record's operands, when it refers to them.
			var operands [][]byte
			extra := 0
			// A bulk import's record whose table this MANIFEST never
			// recorded (its sequence numbers are past the MANIFEST's: a
			// restored backup's log outlives its tables) has its
			// operands rebuilt from its operations, like any import's.
			orphan := false
			if first, ok, _ := r.Next(); ok && first.Kind == batchrepr.KindLogData && (!isIngested(first.Key) || r.Seq > manifestSeq) {
				orphan = isIngested(first.Key)
				if operands, err = importOperands(first.Value); err != nil {
					return errs.Corruptf(layout.Path(db.dir, layout.TypeLog, seg), -1, "%v", err)
				}
				for _, o := range operands {
					extra += len(o)
				}
			}
			if mem == nil {
				mem = lsm.NewMemtable(db.opts.MemtableSize)
			}
			if len(rec)+extra+int(r.Count)*lsm.MemtableEntryOverhead > mem.Room() {
				if err := flushMem(); err != nil {
					return err
				}
			}
			err = recordEntries(rec, operands, orphan, func(seq lsm.SeqNum, kind lsm.Kind, key, value []byte) error {
				if err := mem.Add(seq, kind, key, value); err != nil {
					return fmt.Errorf("%w: %w", errMemInsert, err)
				}
				return nil
			})
			if errors.Is(err, errMemInsert) {
				return err
			}
			if err != nil {
				return errs.Corruptf(layout.Path(db.dir, layout.TypeLog, seg), -1, "%v", err)
			}
			lastSeq = max(lastSeq, r.Seq+lsm.SeqNum(r.Count)-1)
			return nil
		})
	if err != nil {
		return err
	}
	lostBefore(0)
	if firstSeq > manifestSeq+1 {
		// The log resumes past what the tables hold: a MANIFEST cut short
		// at a record boundary reads like one a crash tore, and would
		// leave out tables whose data nothing else holds.
		path := layout.Path(db.dir, layout.TypeManifest, db.vs.ManifestNum())
		if !db.opts.Salvage {
			return errs.Corruptf(path, -1, "the tables it lists end at sequence number %d and the log resumes at %d: "+
				"the records between are in neither (the MANIFEST cut short?); plures-fsck --repair rebuilds it from the tables",
				manifestSeq, firstSeq)
		}
		lr := LostRange{Segment: path, First: uint64(manifestSeq) + 1, Last: uint64(firstSeq) - 1,
			Err: errs.Corruptf(path, -1, "the log resumes at %d, the tables end at %d", firstSeq, manifestSeq)}
		db.lost = append(db.lost, lr)
		db.log.Error().Str("manifest", path).Uint64("first_seq", lr.First).Uint64("last_seq", lr.Last).
			Msg("salvage: sequence numbers neither the tables nor the log hold")
	}
	if res.TornTail {
		db.log.Warn().Int64("truncated_at", res.TruncatedAt).Bool("read_only", ro).Msg("recovered from a torn log tail")
	}
	if ro {
		return db.replayedReadOnly(mem, live, res, lastSeq)
	}
	// What was replayed becomes durable elsewhere (tables, the version
	// vector, exports): the log that holds it must be durable first. A
	// killed process leaves its last writes in the page cache, not on
	// disk; a power cut after this open must not take them from the
	// history while the tables keep them.
	for _, s := range live {
		if err := syncSegment(db.fs, layout.Path(db.dir, layout.TypeLog, s)); err != nil {
			return err
		}
	}
	if err := flushMem(); err != nil {
		return err
	}

	newLog := db.vs.NewFileNum()
	ve := &lsm.VersionEdit{LogNum: newLog, HasLogNum: true}
	for _, m := range flushed {
		ve.NewFiles = append(ve.NewFiles, lsm.NewFile{Level: 0, Meta: m})
	}
	db.vs.SetLastSeq(lastSeq)
	if err := db.logAndInstall(ve, nil); err != nil {
		return err
	}
	w, err := wal.Create(db.walOptions(), newLog)
	if err != nil {
		return err
	}
	db.wal = w
	db.ol.cur = newSegIndex(newLog)
	db.mem = &memtable{m: lsm.NewMemtable(db.opts.MemtableSize), logNum: newLog}
	db.lastSeq = lastSeq
	db.visible.Store(uint64(lastSeq))
	return nil
}

func (db *DB) walOptions() wal.Options {
	return wal.Options{FS: db.fs, Dir: db.dir, SegmentSize: 1 << 62, NoSync: db.opts.NoSync}
}

// tableEnv is where and how tables of a tier are written.
func (db *DB) tableEnv(cold bool, targetFileSize int64) compaction.Env {
	env := compaction.Env{
		FS:         db.fs,
		Dir:        db.dir,
		NewFileNum: db.vs.NewFileNum,
		TableOpts: lsm.TableWriterOptions{
			BlockSize:       db.opts.BlockSize,
			RestartInterval: db.opts.BlockRestartInterval,
			BloomBitsPerKey: db.opts.BloomBitsPerKey,
			Compression:     db.opts.Compression,
		},
		TargetFileSize: uint64(max(targetFileSize, 0)),
	}
	if cold {
		env.Cold = true
		env.Dir = lsm.TableDir(db.dir, db.opts.ColdDir, true)
		env.TableOpts.BlockSize = db.opts.ColdBlockSize
		env.TableOpts.RestartInterval = db.opts.BlockRestartInterval
		env.TableOpts.Compression = db.opts.ColdCompression
	}
	return env
}

// logAndInstall records ve in the MANIFEST and makes the resulting version
// the DB's, running also (if not nil) under stateMu in the same step, so
// readers never see the new version without it (a flush drops its
// memtable there). installMu keeps recording and installing in one order:
// two edits installed in the opposite order to the one they were recorded
// in would leave the DB reading a version that lacks the later one.
func (db *DB) logAndInstall(ve *lsm.VersionEdit, also func()) error {
	db.installMu.Lock()
	defer db.installMu.Unlock()
	if err := db.vs.LogAndApply(ve); err != nil {
		return err
	}
	v := db.vs.Current()
	db.stateMu.Lock()
	old := db.version
	db.version = v
	if also != nil {
		also()
	}
	db.stateMu.Unlock()
	if old != nil {
		old.Unref()
	}
	return nil
}

// uninstalled says whether a failed install (logAndInstall's error) left
// its tables out of the MANIFEST for sure: after a failed manifest write
// or sync (lsm.ErrEditMaybeLogged) the edit may be read at the next open,
// and the tables it names must be kept.
func uninstalled(err error) bool { return !errors.Is(err, lsm.ErrEditMaybeLogged) }

// removeTableFiles deletes tables written but never installed.
func (db *DB) removeTableFiles(metas []*lsm.FileMeta) {
	for _, m := range metas {
		_ = db.fs.Remove(layout.Path(db.dir, layout.TypeTable, m.Num))
	}
}

// removeTable deletes a table no live version references.
func (db *DB) removeTable(num layout.FileNum) {
	if db.releasing.Load() || db.opts.ReadOnly {
		return
	}
	db.tc.Evict(num)
	db.tc.ForgetDamaged(num)
	db.cache.EvictFile(num)
	// The tier of an obsolete table is not at hand; it is in one of the
	// two directories.
	for _, dir := range db.tableDirs() {
		path := layout.Path(dir, layout.TypeTable, num)
		err := db.fs.Remove(path)
		if err == nil {
			return
		}
		if !errors.Is(err, os.ErrNotExist) {
			db.log.Error().Err(err).Str("file", path).Msg("removing obsolete table")
		}
	}
}

// tableDirs lists the directories that hold tables.
func (db *DB) tableDirs() []string {
	if db.opts.ColdDir == "" {
		return []string{db.dir}
	}
	return []string{db.dir, db.opts.ColdDir}
}

// checkColdDir creates the cold directory if needed and makes sure no
// file numbers found there are handed out again.
func (db *DB) checkColdDir() error {
	if err := db.fs.MkdirAll(db.opts.ColdDir); err != nil {
		return fmt.Errorf("pluresdb: creating cold directory %s: %w", db.opts.ColdDir, err)
	}
	names, err := db.fs.List(db.opts.ColdDir)
	if err != nil {
		return err
	}
	for _, name := range names {
		if _, n, ok := layout.Parse(name); ok {
			db.vs.MarkFileNumUsed(n)
		}
	}
	return nil
}

// removeObsoleteFiles deals with what a crash may have left behind, in
// the main and the cold directory. It deletes only what the manifest ms
// (as read at open; nil for a new database) proves obsolete: tables an
// edit deleted, and manifests older than the one CURRENT named. Other
// tables no version references, temp files and newer manifests may hold
// data (a forgotten table of a damaged manifest, say): they are moved to
// the directory's quarantine folder and reported by Health. Log segments,
// archives and files the engine does not recognise are left alone.
func (db *DB) removeObsoleteFiles(ms *lsm.ManifestState) {
	liveTables := db.vs.LiveFiles()
	replicaTmp := filepath.Base(layout.Path(db.dir, layout.TypeReplica, 0)) + ".tmp"
	for _, dir := range db.tableDirs() {
		names, err := db.fs.List(dir)
		if err != nil {
			db.log.Error().Err(err).Str("dir", dir).Msg("listing for obsolete files")
			continue
		}
		for _, name := range names {
			if name == replicaTmp && dir == db.dir {
				db.quarantine(dir, name, "replica ID temp file")
				continue
			}
			t, n, ok := layout.Parse(name)
			if !ok {
				continue
			}
			switch t {
			case layout.TypeTable:
				if _, live := liveTables[n]; live {
					continue
				}
				if ms != nil {
					if _, deleted := ms.Deleted[n]; deleted {
						db.removeFile(filepath.Join(dir, name))
						continue
					}
				}
				db.quarantine(dir, name, "table no version references")
			case layout.TypeTemp:
				db.quarantine(dir, name, "temp file")
			case layout.TypeManifest:
				switch {
				case dir != db.dir || n == db.vs.ManifestNum():
				case ms != nil && n < ms.ManifestNum:
					db.removeFile(filepath.Join(dir, name))
				default:
					db.quarantine(dir, name, "manifest CURRENT does not name")
				}
			}
		}
	}
}

// Put sets key to value.
func (db *DB) Put(key, value []byte) error {
	b := batchPool.Get().(*Batch)
	b.db = db
	b.Reset()
	err := b.Put(key, value)
	if err == nil {
		err = b.Commit(nil)
	}
	batchPool.Put(b)
	return err
}

// Delete removes key. Deleting an absent key is not an error.
func (db *DB) Delete(key []byte) error {
	b := batchPool.Get().(*Batch)
	b.db = db
	b.Reset()
	err := b.Delete(key)
	if err == nil {
		err = b.Commit(nil)
	}
	batchPool.Put(b)
	return err
}

var batchPool = sync.Pool{New: func() any { return &Batch{} }}

// commit writes b to the WAL and the memtable and makes it visible.
func (db *DB) commit(b *Batch, opts *WriteOptions) error {
	sync := db.syncWanted(opts)
	if b.memSize > db.opts.MemtableSize/2 {
		return fmt.Errorf("%w: batch needs %d bytes, limit is half the memtable (%d)",
			errs.ErrValueTooLarge, b.memSize, db.opts.MemtableSize/2)
	}
	db.pace(len(b.data))
	db.commitMu.Lock()
	if err := db.indexLocalBatch(b); err != nil {
		db.commitMu.Unlock()
		return err
	}
	last, err := db.appendLocked(b)
	if err == nil {
		db.noteSeriesBatch(b, last)
	}
	db.commitMu.Unlock()
	if err != nil {
		return err
	}
	if err := db.indexSeries(b.series); err != nil {
		return err
	}
	return db.publish(last, sync)
}

func (db *DB) syncWanted(opts *WriteOptions) bool {
	sync := !db.opts.NoSync
	if opts != nil {
		if opts.NoSync {
			sync = false
		}
		if opts.Sync {
			sync = true
		}
	}
	return sync
}

// appendLocked gives b its sequence numbers and timestamps, appends it to
// the WAL and inserts it into the memtable, and returns its last sequence
// number. It does not sync or publish. Called with commitMu held.
func (db *DB) appendLocked(b *Batch) (lsm.SeqNum, error) {
	rec, seq, last, err := db.logLocked(b)
	if err != nil {
		return 0, err
	}
	db.insertLocked(db.mem, rec, seq, last, nil)
	return last, nil
}

// logLocked is the first half of appendLocked: room in the memtable (a
// rotation if need be), sequence numbers, timestamps and the WAL append.
// It advances db.lastSeq; the record's entries are not in the memtable
// until insertLocked puts them there, which must happen before anything
// else is inserted or the memtable rotates. Called with commitMu held.
func (db *DB) logLocked(b *Batch) (rec []byte, seq, last lsm.SeqNum, err error) {
	if err := db.writable(); err != nil {
		return nil, 0, 0, err
	}
	if len(b.stamps) > 0 {
		// Local operations: not while rejoining (rejoin.go).
		if err := db.refuseLocalWrite(); err != nil {
			return nil, 0, 0, err
		}
	}
	if db.mem.m.Room() < b.memSize+db.pendingMetaSize() {
		if err := db.rotateMemtable(); err != nil {
			return nil, 0, 0, err
		}
	}
	if len(db.pendingMeta) > 0 {
		if err := db.appendPendingMeta(); err != nil {
			return nil, 0, 0, err
		}
	}
	seq = db.lastSeq + 1
	last = seq + lsm.SeqNum(b.count) - 1
	var ts oplog.Timestamp
	if n := len(b.stamps); n > 0 {
		// Local operations: timestamps in sequence order, so a local
		// write sorts after everything this replica has written or seen.
		ts = db.ol.clock.NowN(n)
		for i, off := range b.stamps {
			oplog.StampLocal(b.data[off:], ts+oplog.Timestamp(i))
		}
	}
	rec = batchrepr.SetHeader(b.data, seq, b.count)
	if err := db.wal.Append(rec, false); err != nil {
		db.setBroken(err)
		return nil, 0, 0, fmt.Errorf("%w: %w", errs.ErrReadOnly, err)
	}
	// Only a record in the log counts: the version vector and the
	// segment index never name an operation the log lacks.
	if n := len(b.stamps); n > 0 {
		db.ol.cur.noteOps(db.ol.self, uint64(seq), uint64(last), ts, ts+oplog.Timestamp(n-1))
		db.ol.localSeq = uint64(last)
	}
	db.ol.cur.noteRecord(seq, last)
	db.lastSeq = last
	db.m.commits.Add(1)
	db.m.walBytes.Add(uint64(len(rec)))
	return rec, seq, last, nil
}

// insertLocked is the second half of appendLocked: it inserts the entries
// of rec, logged by logLocked as seq..last, into mem and hands rec to the
// change feed. Called with commitMu held, by one goroutine at a time (an
// import runs it beside the logging of its next batch).
func (db *DB) insertLocked(mem *memtable, rec []byte, seq, last lsm.SeqNum, operands [][]byte) {
	r, err := batchrepr.NewReader(rec)
	if err != nil {
		panic("pluresdb: own batch encoding is invalid: " + err.Error())
	}
	if r.Count == 1 {
		e, _, _ := r.Next()
		if e.Kind != batchrepr.KindLogData {
			err = mem.m.Add(seq, e.Kind, e.Key, e.Value)
		}
	} else {
		in := mem.m.NewInserter()
		err = recordEntries(rec, operands, false, in.Add)
		if err == nil {
			err = in.Flush()
		}
	}
	if err != nil {
		// Room was checked before logging; running out here is a bug.
		panic("pluresdb: memtable insert of a logged record: " + err.Error())
	}
	mem.maxSeq = last
	db.ol.subs.notify(rec, last)
}

// recordEntries calls add for every entry of rec that goes into the
// memtable, with its sequence number: all but the op log's entry.
//
// An import record (its first entry is the op log's) may refer to the
// remote operand of each of its operations instead of holding it: a
// KindMerge entry with an empty value (no operand is empty) stands for
// the operand of the record's next operation, so the log does not hold
// every imported key and value twice. operands are those operands, in
// order, or nil to have them rebuilt from the record's operations
// (replay). The values passed to add alias rec and operands.
//
// A bulk import's record (its op log entry's key is ingestedLogKey) was
// logged after its operands were written to an L0 table: its KindMerge
// entries are skipped, unless orphan says the table is not in the tree
// (see replay).
func recordEntries(rec []byte, operands [][]byte, orphan bool, add func(seq lsm.SeqNum, kind lsm.Kind, key, value []byte) error) error {
	r, err := batchrepr.NewReader(rec)
	if err != nil {
		return err
	}
	next := 0
	ingested := false
	for i := lsm.SeqNum(0); ; i++ {
		e, ok, err := r.Next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if e.Kind == batchrepr.KindLogData {
			if i == 0 && isIngested(e.Key) && !orphan {
				ingested = true
			} else if i == 0 && operands == nil {
				if operands, err = importOperands(e.Value); err != nil {
					return err
				}
			}
			continue
		}
		if ingested && e.Kind == lsm.KindMerge {
			continue
		}
		v := e.Value
		if e.Kind == lsm.KindMerge && len(v) == 0 {
			if next >= len(operands) {
				return fmt.Errorf("record entry %d refers to operation %d of %d", i, next, len(operands))
			}
			v = operands[next]
			next++
		}
		if err := add(r.Seq+i, e.Kind, e.Key, v); err != nil {
			return err
		}
	}
	return nil
}

// isIngested says whether key, an import record's op log entry's, marks
// the record as ingested (see importer.ingestBatch).
func isIngested(key []byte) bool {
	return isLogKey(key, ingestedLogKey)
}

// importOperands rebuilds the remote operands of an import record's
// operations, its op log entry p.
func importOperands(p []byte) ([][]byte, error) {
	var ops []oplog.Op
	for len(p) > 0 {
		var n int
		var err error
		if _, ops, n, err = oplog.DecodeBatch(ops, p); err != nil {
			return nil, err
		}
		p = p[n:]
	}
	size := 0
	for i := range ops {
		size += remoteOperandSize(&ops[i])
	}
	buf := make([]byte, 0, size)
	operands := make([][]byte, len(ops))
	for i := range ops {
		start := len(buf)
		buf = remoteOperand(buf, &ops[i])
		operands[i] = buf[start:len(buf):len(buf)]
	}
	return operands, nil
}

// remoteOperandSize bounds the size of op's remote operand.
func remoteOperandSize(op *oplog.Op) int {
	return 2 + 8 + 16 + 2*binary.MaxVarintLen64 + len(op.Field) + len(op.Value)
}

// publish syncs the WAL if asked and makes everything up to last readable.
func (db *DB) publish(last lsm.SeqNum, sync bool) error {
	if sync {
		if err := db.syncThrough(last); err != nil {
			return err
		}
	}
	// Batches are in the memtable in sequence order, so raising visible to
	// last exposes exactly the batches committed so far.
	for {
		cur := db.visible.Load()
		if cur >= uint64(last) || db.visible.CompareAndSwap(cur, uint64(last)) {
			break
		}
	}
	db.ol.subs.published()
	return nil
}

// syncThrough makes the log durable up to seq, a sequence number already
// logged, and raises db.durable to it. The WAL's group commit shares the
// fsync with every concurrent caller.
func (db *DB) syncThrough(seq lsm.SeqNum) error {
	if lsm.SeqNum(db.durable.Load()) >= seq {
		return nil
	}
	if db.closed.Load() {
		return errs.ErrClosed
	}
	if err := db.wal.Sync(); err != nil {
		db.setBroken(err)
		return fmt.Errorf("%w: %w", errs.ErrReadOnly, err)
	}
	db.raiseDurable(seq)
	return nil
}

// raiseDurable records that the log is fsynced up to seq.
func (db *DB) raiseDurable(seq lsm.SeqNum) {
	for {
		cur := db.durable.Load()
		if cur >= uint64(seq) || db.durable.CompareAndSwap(cur, uint64(seq)) {
			return
		}
	}
}

// writable returns nil if writes are accepted. Called with commitMu held.
func (db *DB) writable() error {
	if db.closed.Load() {
		return errs.ErrClosed
	}
	if db.opts.ReadOnly {
		return errReadOnlyOpen
	}
	if p := db.broken.Load(); p != nil {
		return fmt.Errorf("%w: %w", errs.ErrReadOnly, *p)
	}
	return nil
}

func (db *DB) setBroken(err error) {
	db.broken.CompareAndSwap(nil, &err)
	db.log.Error().Err(err).Msg("write to the log failed; the database is read-only until reopened")
}

// rotateMemtable seals the mutable memtable and its WAL segment and starts
// new ones, stalling while too many memtables wait for their flush or L0
// is too deep. Called with commitMu held.
func (db *DB) rotateMemtable() error {
	if err := db.stallLocked(func(nImm, nL0 int) bool {
		return nImm < db.opts.MaxImmutableMemtables && db.l0Room(nL0)
	}); err != nil {
		return err
	}
	next := db.vs.NewFileNum()
	if err := db.wal.Rotate(next); err != nil {
		db.setBroken(err)
		return fmt.Errorf("%w: %w", errs.ErrReadOnly, err)
	}
	db.raiseDurable(db.lastSeq) // Rotate fsynced the sealed segment
	db.sealSegment(next)
	db.stateMu.Lock()
	db.imms = append(db.imms, db.mem)
	db.mem = &memtable{m: lsm.NewMemtableIn(db.opts.MemtableSize, db.takeArena()), logNum: next, maxSeq: db.lastSeq}
	db.stateMu.Unlock()
	db.bgMu.Lock()
	db.bgCond.Broadcast()
	db.bgMu.Unlock()
	return nil
}

// l0Room says whether L0 takes another table. Without background
// compaction nothing would ever lower L0: writers do not wait for it.
func (db *DB) l0Room(nL0 int) bool {
	return nL0 < db.opts.L0StopWritesThreshold || db.opts.DisableAutoCompaction
}

// waitForBulkL0Room stalls until L0 takes another table of a bulk
// import: L0 may grow to twice L0StopWritesThreshold while it ingests,
// since it compacts only from two short of that threshold (see
// compaction.Picker.SetBulkLoad). Called with commitMu held.
func (db *DB) waitForBulkL0Room() error {
	return db.stallLocked(func(_, nL0 int) bool {
		return nL0 < 2*db.opts.L0StopWritesThreshold || db.opts.DisableAutoCompaction
	})
}

// drainMemtablesLocked moves every write but metadata out of the
// memtables into L0: it seals the memtable if it holds any, and waits
// until the sealed memtables that do are flushed. Called with commitMu
// held.
func (db *DB) drainMemtablesLocked() error {
	if holdsData(db.mem.m) {
		if err := db.rotateMemtable(); err != nil {
			return err
		}
	}
	return db.stallLocked(func(int, int) bool {
		db.stateMu.RLock()
		defer db.stateMu.RUnlock()
		for _, imm := range db.imms {
			if holdsData(imm.m) {
				return false
			}
		}
		return true
	})
}

// holdsData says whether m holds an entry outside the metadata namespace
// (which sorts first).
func holdsData(m *lsm.Memtable) bool {
	it := m.NewIter()
	defer it.Close()
	return it.Last() && it.Key()[0] != nsMeta
}

// stallLocked waits until ok holds of the number of sealed memtables and
// of L0 tables, counting a write stall if it had to wait. Called with
// commitMu held.
func (db *DB) stallLocked(ok func(nImm, nL0 int) bool) error {
	start := time.Now()
	stalled := false
	db.bgMu.Lock()
	for {
		db.stateMu.RLock()
		nImm := len(db.imms)
		nL0 := db.version.NumFiles(0)
		db.stateMu.RUnlock()
		if db.closing {
			db.bgMu.Unlock()
			return errs.ErrClosed
		}
		if ok(nImm, nL0) {
			break
		}
		if db.bgErr != nil {
			// The flush or compaction this writer waits for is failing
			// (a full disk, say) and being retried: say so rather than
			// hang. Nothing is lost; writes go on once it succeeds.
			err := db.bgErr
			db.bgMu.Unlock()
			return fmt.Errorf("pluresdb: write stalled, background work failing: %w", err)
		}
		if !stalled {
			stalled = true
			db.m.stalls.Add(1)
			db.log.Info().Int("immutable", nImm).Int("l0", nL0).Msg("write stall")
		}
		db.bgCond.Wait()
	}
	db.bgMu.Unlock()
	if stalled {
		db.m.stallNanos.Add(uint64(time.Since(start)))
	}
	return nil
}

// Flush writes the memtable to a table and waits until it is on disk.
func (db *DB) Flush() error {
	db.commitMu.Lock()
	if db.closed.Load() {
		db.commitMu.Unlock()
		return errs.ErrClosed
	}
	if db.opts.ReadOnly {
		db.commitMu.Unlock()
		return errReadOnlyOpen
	}
	var target *memtable
	if !db.mem.m.Empty() {
		if err := db.rotateMemtable(); err != nil {
			db.commitMu.Unlock()
			return err
		}
	}
	db.stateMu.RLock()
	if n := len(db.imms); n > 0 {
		target = db.imms[n-1]
	}
	db.stateMu.RUnlock()
	db.commitMu.Unlock()
	if target == nil {
		return nil
	}
	db.bgMu.Lock()
	defer db.bgMu.Unlock()
	for !target.flushed {
		if db.closing {
			return errs.ErrClosed
		}
		if db.bgErr != nil {
			return db.bgErr
		}
		db.bgCond.Wait()
	}
	return nil
}

// flushLoop writes full memtables to L0, oldest first.
func (db *DB) flushLoop() {
	defer db.wg.Done()
	for {
		db.bgMu.Lock()
		for !db.closing && db.oldestImm() == nil {
			db.bgCond.Wait()
		}
		if db.closing {
			db.bgMu.Unlock()
			return
		}
		db.bgMu.Unlock()

		imm := db.oldestImm()
		err := db.flushMemtable(imm)
		db.bgMu.Lock()
		if err != nil {
			db.bgErr = err
			db.log.Error().Err(err).Msg("flush failed; retrying")
		} else {
			db.bgErr = nil
			imm.flushed = true
			db.scheduleCompactions()
		}
		db.bgCond.Broadcast()
		db.bgMu.Unlock()
		if err != nil {
			db.sleep(time.Second)
		}
	}
}

// sleep waits d or until Close begins.
func (db *DB) sleep(d time.Duration) {
	// The deadline is taken before the timer starts: the timer's
	// broadcast must find the deadline passed, or this would wait on.
	deadline := time.Now().Add(d)
	t := time.AfterFunc(d, func() {
		db.bgMu.Lock()
		db.bgCond.Broadcast()
		db.bgMu.Unlock()
	})
	defer t.Stop()
	db.bgMu.Lock()
	for !db.closing && time.Now().Before(deadline) {
		db.bgCond.Wait()
	}
	db.bgMu.Unlock()
}

// takeArena returns the spare arena, if any, for a new memtable.
func (db *DB) takeArena() []uint64 {
	db.arenaMu.Lock()
	defer db.arenaMu.Unlock()
	a := db.spareArena
	db.spareArena = nil
	return a
}

// putArena keeps the arena of a flushed memtable for the next one (one at
// most: the rest go to the collector).
func (db *DB) putArena(a []uint64) {
	db.arenaMu.Lock()
	defer db.arenaMu.Unlock()
	if db.spareArena == nil {
		db.spareArena = a
	}
}

func (db *DB) oldestImm() *memtable {
	db.stateMu.RLock()
	defer db.stateMu.RUnlock()
	if len(db.imms) == 0 {
		return nil
	}
	return db.imms[0]
}

func (db *DB) flushMemtable(imm *memtable) error {
	start := time.Now()
	metas, st, err := compaction.Write(db.tableEnv(false, 0), imm.m.NewIter(),
		compaction.WriteSpec{Snapshots: db.snapshotSeqs()})
	if err != nil {
		return fmt.Errorf("pluresdb: flushing memtable: %w", err)
	}
	db.stateMu.RLock()
	nextLog := db.mem.logNum
	if len(db.imms) > 1 {
		nextLog = db.imms[1].logNum
	}
	db.stateMu.RUnlock()
	ve := &lsm.VersionEdit{LogNum: nextLog, HasLogNum: true}
	for _, m := range metas {
		ve.NewFiles = append(ve.NewFiles, lsm.NewFile{Level: 0, Meta: m})
	}
	db.vs.SetLastSeq(imm.maxSeq)
	if err := db.logAndInstall(ve, func() { db.imms = db.imms[1:] }); err != nil {
		if uninstalled(err) {
			db.removeTableFiles(metas)
		}
		return fmt.Errorf("pluresdb: recording flush: %w", err)
	}
	// No new reader can reach imm now; its arena goes to the next
	// memtable once the iterators still open on it are closed.
	imm.m.Recycle(db.putArena)

	// The flushed segment is no longer needed for recovery: it is op
	// history now, kept until retention drops it.
	db.retentionKick()
	db.m.flushes.Add(1)
	db.m.flushBytes.Add(st.BytesWritten)
	db.m.levelWritten[0].Add(st.BytesWritten)
	db.log.Debug().Int("tables", len(metas)).Uint64("bytes", st.BytesWritten).
		Dur("took", time.Since(start)).Msg("flushed memtable")
	return nil
}

// Close stops background work, syncs the log and releases the directory.
// Writes not yet flushed to tables are replayed from the log at the next
// Open. Iterators and snapshots must be closed first; Close does not wait
// for them.
func (db *DB) Close() error {
	if db.closed.Load() {
		return errs.ErrClosed
	}
	if err := db.vectors.close(db); err != nil {
		db.log.Error().Err(err).Msg("closing vector indexes")
	}
	// Wake writers stalled on a flush first: they hold commitMu.
	db.bgMu.Lock()
	db.closing = true
	db.bgCond.Broadcast()
	db.bgMu.Unlock()
	db.commitMu.Lock()
	if db.closed.Swap(true) {
		db.commitMu.Unlock()
		return errs.ErrClosed
	}
	db.commitMu.Unlock()
	db.ol.subs.close()
	db.wg.Wait()
	db.closeClean = true
	return db.closeResources()
}

func (db *DB) closeResources() error {
	var firstErr error
	keep := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	db.releasing.Store(true)
	if db.wal != nil {
		werr := db.wal.Close()
		if werr == nil {
			db.raiseDurable(db.lastSeq)
		}
		keep(werr)
		// A clean shutdown, on record: the log is synced up to here, so at
		// the next Open any damage in it is corruption, not a torn write.
		if werr == nil && db.closeClean && db.broken.Load() == nil && db.vs != nil {
			keep(db.vs.LogAndApply(&lsm.VersionEdit{CleanClose: &lsm.CleanClose{LogNum: db.wal.Num(), LogSize: db.wal.Size()}}))
		}
	}
	if db.version != nil {
		db.version.Unref()
		db.version = nil
	}
	if db.vs != nil {
		keep(db.vs.Close())
	}
	if db.tc != nil {
		keep(db.tc.Close())
	}
	if db.lock != nil {
		keep(db.lock.Close())
	}
	return firstErr
}

// syncSegment fsyncs the log segment at path.
func syncSegment(fs vfs.FS, path string) error {
	f, err := fs.Open(path)
	if err != nil {
		return fmt.Errorf("pluresdb: syncing %s: %w", path, err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pluresdb: syncing %s: %w", path, err)
	}
	return nil
}

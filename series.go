package pluresdb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries"
	"github.com/plures/pluresdb/timeseries/chunk"
	"github.com/plures/pluresdb/timeseries/tsdb"
)

// Time series (ARCHITECTURE.md, "Time series: storage"). The root wires
// package timeseries/tsdb in: samples operations are written and imported
// as merge operands of chunk keys in the series namespace, folded by
// tsdb.Merger, and read through tsdb's queries on a Store over a
// snapshot. The series index (names and label postings) lives in memory,
// rebuilt at open from the series table.

// AppendSamples appends samples to a series: a metric name and labels,
// cpu{host="a",core="3"} (timeseries.ParseSeries; any order of labels
// names the same series). It is one operation in the log per series and
// day the samples fall in (their samples encoded as a chunk, not one
// record per sample), durable when it returns unless Options.NoSync, and
// replicated like every write. Samples may come in any order and repeat
// timestamps: for a repeated timestamp the later write wins (within one
// call the later sample; across writes and replicas the higher (HLC,
// replica)). Values round-trip bit for bit, NaN and ±Inf included.
// Timestamps are milliseconds since the Unix epoch, within
// [timeseries.MinTime, timeseries.MaxTime]. A bad name or timestamp is an
// error wrapping timeseries.ErrInvalidSeries.
func (db *DB) AppendSamples(series string, samples ...timeseries.Sample) error {
	b := db.NewBatch()
	if err := b.AppendSamples(series, samples...); err != nil {
		return err
	}
	return b.Commit(nil)
}

// AppendSamples adds an append of samples to series to the batch (see
// DB.AppendSamples).
func (b *Batch) AppendSamples(series string, samples ...timeseries.Sample) error {
	canonical, err := timeseries.Canonical(series)
	if err != nil {
		return b.fail(err)
	}
	if len(samples) == 0 {
		return nil
	}
	sorted := slices.Clone(samples)
	slices.SortStableFunc(sorted, func(x, y timeseries.Sample) int {
		switch {
		case x.T < y.T:
			return -1
		case x.T > y.T:
			return 1
		}
		return 0
	})
	// A repeated timestamp: the later sample of the call wins.
	out := sorted[:0]
	for _, s := range sorted {
		if n := len(out); n > 0 && out[n-1].T == s.T {
			out[n-1] = s
			continue
		}
		out = append(out, s)
	}
	sorted = out
	for _, s := range sorted {
		if s.T < timeseries.MinTime || s.T > timeseries.MaxTime {
			return b.fail(fmt.Errorf("%w: timestamp %d outside [%d, %d]", timeseries.ErrInvalidSeries, s.T, int64(timeseries.MinTime), int64(timeseries.MaxTime)))
		}
	}
	// The series-table entry first: a local batch ends with an operation,
	// whose sequence number is the replica's last (its version vector
	// entry).
	b.seriesWrites = append(b.seriesWrites, canonical)
	if !b.db.series.Has(canonical) && !slices.Contains(b.series, canonical) {
		b.add(lsm.KindSet, nsSeries, tsdb.SeriesKey(nil, canonical), seriesEntry)
		b.series = append(b.series, canonical)
	}
	var key []byte
	for i := 0; i < len(sorted); {
		bucket := timeseries.BucketOf(sorted[i].T)
		j := i + 1
		for j < len(sorted) && timeseries.BucketOf(sorted[j].T) == bucket && j-i < 0xffff {
			j++
		}
		c, err := tsdb.EncodeSamples(sorted[i:j])
		if err != nil {
			return b.fail(err)
		}
		key = tsdb.ChunkKey(key[:0], canonical, bucket)
		if len(key) > MaxKeySize {
			return b.fail(fmt.Errorf("%w: series name of %d bytes", errs.ErrKeyTooLarge, len(canonical)))
		}
		b.buf = tsdb.AppendLocalOperand(b.buf[:0], c)
		b.addLocal(lsm.KindMerge, nsSeries, key, b.buf)
		i = j
	}
	return nil
}

// seriesEntry is the value of a series-table key.
var seriesEntry = []byte{1}

// localSamplesOp rebuilds a local samples operation from its log entry:
// key is the chunk key (without the namespace), value the operand.
func localSamplesOp(key, value []byte) (oplog.Op, error) {
	if name, ok := tsdb.DeleteOfKey(key); ok {
		st, remote, err := tsdb.DecodeDelete(value, oplog.ReplicaID{})
		if err != nil {
			return oplog.Op{}, err
		}
		if remote {
			return oplog.Op{}, errs.Corruptf("series deletion", 1, "a remote operand in a local entry")
		}
		return oplog.Op{Kind: oplog.KindDeleteSeries, Key: []byte(name), HLC: st.HLC}, nil
	}
	name, _, err := tsdb.ParseChunkKey(key)
	if err != nil {
		return oplog.Op{}, err
	}
	o, err := tsdb.DecodeOperand(value)
	if err != nil {
		return oplog.Op{}, err
	}
	if o.Remote {
		return oplog.Op{}, errs.Corruptf("series operand", 1, "a remote operand in a local entry")
	}
	return oplog.Op{Kind: oplog.KindSamples, Key: []byte(name), Value: o.Chunk, HLC: o.HLC}, nil
}

// importKey returns the namespace and key of an imported operation's
// projection: the document (or its counters), or the series chunk of the
// samples' day. key is appended to dst.
func importKey(dst []byte, op *oplog.Op) (byte, []byte) {
	switch op.Kind {
	case oplog.KindIncr:
		return nsCounters, append(dst, op.Key...)
	case oplog.KindDeleteSeries:
		return nsSeries, tsdb.DeleteKey(dst, string(op.Key))
	case oplog.KindSamples:
		// Validated when the stream was read (oplog.Op.Validate): a
		// chunk of one bucket.
		var it chunk.Iterator
		it.Reset(op.Value)
		it.Next()
		t, _ := it.At()
		return nsSeries, tsdb.ChunkKey(dst, string(op.Key), timeseries.BucketOf(t))
	}
	return nsDocuments, append(dst, op.Key...)
}

// remoteOperand appends the merge operand of an imported operation.
func remoteOperand(dst []byte, op *oplog.Op) []byte {
	switch op.Kind {
	case oplog.KindSamples:
		return tsdb.AppendRemoteOperand(dst, op.HLC, op.Replica, op.Value)
	case oplog.KindDeleteSeries:
		return tsdb.AppendRemoteDelete(dst, op.HLC, op.Replica)
	}
	return oplog.AppendRemoteOperand(dst, op)
}

// engineMerger folds merge operands: the series namespace's by
// tsdb.Merger, every other's by the op log's document merge.
type engineMerger struct {
	doc    *oplog.Merger
	series *tsdb.Merger
}

func (m *engineMerger) Merge(key []byte, operands [][]byte, base []byte, hasBase bool) ([]byte, error) {
	return m.MergeAppend(nil, key, operands, base, hasBase)
}

func (m *engineMerger) MergeAppend(dst, key []byte, operands [][]byte, base []byte, hasBase bool) ([]byte, error) {
	if len(key) > 0 && key[0] == nsSeries {
		return m.series.MergeAppend(dst, key[1:], operands, base, hasBase)
	}
	return m.doc.MergeAppend(dst, key, operands, base, hasBase)
}

// seriesStore reads the series namespace at one snapshot for tsdb's
// queries.
type seriesStore struct {
	db  *DB
	seq lsm.SeqNum
}

func (s seriesStore) Scan(lo, hi []byte, fn func(key, value []byte) error) error {
	it := s.db.newIter(nsSeries, lo, hi, s.seq)
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}

func (s seriesStore) Span(lo, hi []byte) (first, last []byte, ok bool, err error) {
	it := s.db.newIter(nsSeries, lo, hi, s.seq)
	if it.ui != nil {
		// Keys only: no operand folded.
		it.ui.Merger = nil
	}
	if it.First() {
		first, ok = slices.Clone(it.Key()), true
		if it.Last() {
			last = slices.Clone(it.Key())
		}
	}
	return first, last, ok && last != nil, it.Close()
}

// rawSeriesStore returns a Store over the database as it is now, deleted
// samples included.
func (db *DB) rawSeriesStore() seriesStore {
	return seriesStore{db: db, seq: lsm.SeqNum(db.visible.Load())}
}

// seriesStore returns a Store over the database as it is now, without
// the samples of deleted series (tsdb.WithDeletes), and its sequence
// number.
func (db *DB) seriesStore() tsdb.Store {
	st, _, _ := db.seriesStoreAt()
	return st
}

// seriesStoreAt is seriesStore with the sequence number it reads at, and
// whether it filters deleted samples (none was ever deleted: not).
func (db *DB) seriesStoreAt() (st tsdb.Store, at uint64, filtered bool) {
	// The sequence number first: a deletion visible at it is recorded
	// in seriesDel already (noteSeriesBatch, noteSeriesOps).
	raw := db.rawSeriesStore()
	if db.seriesDelErr == nil && !db.seriesDel.Any() {
		return raw, uint64(raw.seq), false
	}
	may := db.seriesDel.Has
	if db.seriesDelErr != nil {
		may = func(string) bool { return true }
	}
	return tsdb.WithDeletes(raw, db.ol.self, may), uint64(raw.seq), true
}

// QuerySamples returns the samples of series in [from, to), ascending T.
func (db *DB) QuerySamples(series string, from, to int64) ([]timeseries.Sample, error) {
	canonical, err := db.seriesName(series)
	if err != nil {
		return nil, err
	}
	return tsdb.Query(db.seriesStore(), db.ol.self, canonical, from, to)
}

// IterateSamples calls fn with the samples of series in [from, to),
// ascending, a chunk (at most a day) at a time, for ranges too large to
// hold at once. The slice is valid during the call only; an error from fn
// stops the walk and is returned.
func (db *DB) IterateSamples(series string, from, to int64, fn func([]timeseries.Sample) error) error {
	canonical, err := db.seriesName(series)
	if err != nil {
		return err
	}
	return tsdb.Iterate(db.seriesStore(), db.ol.self, canonical, from, to, fn)
}

// Aggregate returns one sample per non-empty window [from+i*step,
// from+(i+1)*step) of series within [from, to), stamped with the window
// start (step <= 0: one window); see timeseries.Agg for the functions.
// Chunks lying wholly inside a window are answered from their rollups
// (tsdb.Summary), so long ranges at coarse steps decode few samples.
func (db *DB) Aggregate(series string, from, to, step int64, fn timeseries.Agg) ([]timeseries.Sample, error) {
	canonical, err := db.seriesName(series)
	if err != nil {
		return nil, err
	}
	return tsdb.Aggregate(db.seriesStore(), db.ol.self, canonical, from, to, step, fn)
}

// SelectSeries returns the canonical names of the series a selector
// matches (cpu{host=~"a.*"}, {job="node"}: timeseries.ParseSelector),
// sorted, from the label postings without reading any series.
func (db *DB) SelectSeries(selector string) ([]string, error) {
	if db.closed.Load() {
		return nil, errs.ErrClosed
	}
	ms, err := timeseries.ParseSelector(selector)
	if err != nil {
		return nil, err
	}
	if db.seriesErr != nil {
		return nil, fmt.Errorf("pluresdb: the series table is damaged: %w", db.seriesErr)
	}
	names := db.series.Select(ms...)
	st, at, filtered := db.seriesStoreAt()
	if !filtered {
		return names, nil
	}
	// Deleted series are listed again once written again.
	out := names[:0]
	for _, name := range names {
		live, err := db.seriesDel.Live(st, db.ol.self, name, at)
		if err != nil {
			return nil, err
		}
		if live {
			out = append(out, name)
		}
	}
	return out, nil
}

// AggregateSeries aggregates every series a selector matches over time
// (fn by step, as Aggregate), then across series grouped by the labels
// in by (timeseries.GroupBy with across; by empty: one group). It
// returns one result per group, sorted by its labels.
func (db *DB) AggregateSeries(selector string, from, to, step int64, fn timeseries.Agg, by []string, across timeseries.Agg) ([]timeseries.SeriesResult, error) {
	names, err := db.SelectSeries(selector)
	if err != nil {
		return nil, err
	}
	// The series one per worker, all at one snapshot, which they all ask
	// which days hold chunks: read once.
	st := tsdb.SpanOnce(db.seriesStore())
	results := make([]timeseries.SeriesResult, len(names))
	errs := make([]error, runtime.GOMAXPROCS(0))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(names) {
					return
				}
				samples, err := tsdb.Aggregate(st, db.ol.self, names[i], from, to, step, fn)
				if err != nil {
					errs[w] = err
					next.Store(int64(len(names))) // the others stop too
					return
				}
				ls, _ := db.series.Labels(names[i])
				results[i] = timeseries.SeriesResult{Labels: ls, Samples: samples}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return timeseries.GroupBy(results, by, across)
}

// seriesName checks a series name and returns its canonical form.
func (db *DB) seriesName(series string) (string, error) {
	if db.closed.Load() {
		return "", errs.ErrClosed
	}
	return timeseries.Canonical(series)
}

// indexSeries adds the series a logged record put in the series table to
// the index.
func (db *DB) indexSeries(names []string) error {
	for _, s := range names {
		if err := db.series.Add(s); err != nil {
			return err
		}
	}
	return nil
}

// loadSeries rebuilds the series index from the series table, and the
// record of deleted series, at open.
func (db *DB) loadSeries() error {
	db.series = tsdb.NewIndex()
	db.seriesDel = tsdb.NewDeletes()
	if err := db.seriesDel.Load(db.rawSeriesStore(), db.ol.self); err != nil {
		db.seriesDelErr = fmt.Errorf("%w: %w", errs.ErrCorruption, err)
		db.log.Error().Err(err).Msg("series deletions unreadable: every series read looks its deletion up")
	}
	if err := db.series.Load(db.rawSeriesStore()); err != nil {
		return fmt.Errorf("%w: %w", errs.ErrCorruption, err)
	}
	return nil
}

// checkSnapshotState checks a snapshot entry's state: a time series
// entry as package tsdb stores it, a document or counter state portable.
func checkSnapshotState(ns byte, key, state []byte) error {
	if ns == nsSeries {
		return tsdb.CheckStored(key, state)
	}
	return oplog.CheckPortableState(state)
}

// joinSeries joins a snapshot's series entry into the local one: a chunk
// keeps for each timestamp the sample of the higher stamp; a series-table
// key is written if the replica lacks it.
func (im *snapshotImport) joinSeries(key, local []byte, hasLocal bool, p []byte) ([]byte, bool, error) {
	if name, ok := tsdb.DeleteOfKey(key); ok {
		state, changed, err := tsdb.JoinDelete(local, hasLocal, p, im.db.ol.self)
		if err == nil && changed {
			floor, _, _ := tsdb.DecodeDelete(state, im.db.ol.self)
			im.floors = append(im.floors, snapshotFloor{name: name, floor: floor})
		}
		return state, changed, err
	}
	if name, ok := tsdb.SeriesOfKey(key); ok {
		if hasLocal {
			return local, false, nil
		}
		im.series = append(im.series, name)
		return slices.Clone(p), true, nil
	}
	return tsdb.JoinState(local, hasLocal, p, im.db.ol.self)
}

// seriesRetention is the retention policy of Options.
func (db *DB) seriesRetention() tsdb.Retention {
	r := tsdb.Retention{Default: db.opts.SeriesRetention}
	for _, p := range db.opts.SeriesRetentionFor {
		r.For = append(r.For, tsdb.PrefixRetention{Prefix: p.Prefix, Keep: p.Keep})
	}
	return r
}

// applySeriesRetention drops the chunks retention no longer keeps, once
// a day expired since the last pass (ARCHITECTURE.md, "Time series:
// storage"). Chunk keys lead with time, so the expired days are one key
// range, [the first day, the horizon):
//  1. it is compacted down to the bottom level (operands folded);
//  2. tables lying wholly in the days every series has let go are
//     dropped whole, read by nothing;
//  3. the other bottom tables of the range are rewritten once each, and
//     the compaction's collector (seriesCollector) drops the expired
//     chunks: only there do series of longer retention share a table
//     with expired ones.
func (db *DB) applySeriesRetention(now time.Time) error {
	policy := db.seriesRetention()
	horizon, ok := policy.Horizon(now)
	if !ok || db.closed.Load() || db.opts.ReadOnly {
		return nil
	}
	db.seriesRetMu.Lock()
	defer db.seriesRetMu.Unlock()
	if horizon <= db.seriesRetDone {
		return nil
	}
	first := timeseries.BucketOf(timeseries.MinTime + timeseries.BucketMillis)
	lo := append([]byte{nsSeries}, tsdb.BucketPrefix(nil, first)...)
	hi := append([]byte{nsSeries}, tsdb.BucketPrefix(nil, horizon)...)
	if _, _, any, err := db.rawSeriesStore().Span(lo[1:], hi[1:]); err != nil || !any {
		if err == nil {
			db.seriesRetDone = horizon
		}
		return err
	}
	if err := db.compactRange(lo, hi); err != nil {
		return err
	}
	err := db.paused(func() error {
		if all, ok := policy.HorizonAll(now); ok {
			allHi := append([]byte{nsSeries}, tsdb.BucketPrefix(nil, min(all, horizon))...)
			if err := db.dropTablesIn(lo, allHi); err != nil {
				return err
			}
		}
		return db.rewriteBottomIn(lo, hi)
	})
	if err != nil {
		return err
	}
	db.seriesRetDone = horizon
	return nil
}

// dropTablesIn removes from the tree every table whose keys all lie in
// [lo, hi), at any level, without reading it. Called with compactions
// paused.
func (db *DB) dropTablesIn(lo, hi []byte) error {
	v := db.currentVersion()
	defer v.Unref()
	ve := &lsm.VersionEdit{}
	var n int
	var bytes uint64
	for level, files := range v.Levels {
		for _, f := range files {
			if string(lsm.UserKey(f.Smallest)) >= string(lo) && string(lsm.UserKey(f.Largest)) < string(hi) {
				ve.DeletedFiles = append(ve.DeletedFiles, lsm.DeletedFile{Level: level, Num: f.Num})
				n++
				bytes += f.Size
			}
		}
	}
	if n == 0 {
		return nil
	}
	if err := db.logAndInstall(ve, nil); err != nil {
		return err
	}
	db.log.Info().Int("tables", n).Uint64("bytes", bytes).Msg("time series retention dropped whole tables")
	return nil
}

// rewriteBottomIn rewrites each bottom-level table overlapping [lo, hi)
// once. Called with compactions paused.
func (db *DB) rewriteBottomIn(lo, hi []byte) error {
	v := db.currentVersion()
	var files []*lsm.FileMeta
	for _, f := range v.Levels[lsm.NumLevels-1] {
		if string(lsm.UserKey(f.Largest)) >= string(lo) && string(lsm.UserKey(f.Smallest)) < string(hi) {
			files = append(files, f)
		}
	}
	v.Unref()
	for _, f := range files {
		v := db.currentVersion()
		c := db.picker.PickRewrite(v, f, nil)
		var err error
		if c != nil {
			err = db.runCompaction(v, c)
		}
		v.Unref()
		if err != nil {
			return err
		}
	}
	return nil
}

// seriesCollector says whether a compaction into the bottom level drops
// a chunk: one whose day retention no longer keeps. nil when no series
// expire.
func (db *DB) seriesCollector(now time.Time) func(ukey []byte) bool {
	policy := db.seriesRetention()
	if _, ok := policy.Horizon(now); !ok {
		return nil
	}
	return func(ukey []byte) bool {
		return len(ukey) > 1 && ukey[0] == nsSeries && policy.Expired(ukey[1:], now)
	}
}

// DeleteSeries deletes a series: every sample written before it, here
// and, once replicated, on every replica (ARCHITECTURE.md, "Time series:
// storage"). It is one operation in the log, durable when it returns
// unless Options.NoSync. A sample is deleted when the write that put it
// there sorts before the deletion by (HLC, replica), as a document's
// tombstone hides earlier writes: concurrent writes elsewhere that sort
// after it survive, and so do later writes, which make the series appear
// again in SelectSeries. Reads stop returning the deleted samples at
// once; their space comes back when compactions rewrite the chunks
// (Compact, retention passes). Deleting a series never written is not an
// error (the deletion still replicates). A bad name is an error wrapping
// timeseries.ErrInvalidSeries.
func (db *DB) DeleteSeries(series string) error {
	b := db.NewBatch()
	if err := b.DeleteSeries(series); err != nil {
		return err
	}
	return b.Commit(nil)
}

// DeleteSeries adds the deletion of a series to the batch (see
// DB.DeleteSeries).
func (b *Batch) DeleteSeries(series string) error {
	canonical, err := timeseries.Canonical(series)
	if err != nil {
		return b.fail(err)
	}
	key := tsdb.DeleteKey(nil, canonical)
	if len(key) > MaxKeySize {
		return b.fail(fmt.Errorf("%w: series name of %d bytes", errs.ErrKeyTooLarge, len(canonical)))
	}
	b.buf = tsdb.AppendLocalDelete(b.buf[:0])
	b.addLocal(lsm.KindMerge, nsSeries, key, b.buf)
	b.seriesDeletes = append(b.seriesDeletes, seriesDelete{name: canonical, off: b.stamps[len(b.stamps)-1]})
	return nil
}

// snapshotFloor is a deletion floor a snapshot import raised.
type snapshotFloor struct {
	name  string
	floor tsdb.Stamp
}

// seriesDelete is a deletion in a batch: its series and where its
// operand (stamped at commit) lies in the batch's data.
type seriesDelete struct {
	name string
	off  int32
}

// noteSeriesBatch records a committed local batch's series writes and
// deletions in seriesDel, before the batch becomes visible. Called with
// commitMu held, so the records follow the commit order.
func (db *DB) noteSeriesBatch(b *Batch, last lsm.SeqNum) {
	for _, d := range b.seriesDeletes {
		hlc := oplog.Timestamp(binary.LittleEndian.Uint64(b.data[int(d.off)+tsdb.OperandHLCOffset:]))
		db.seriesDel.Set(d.name, tsdb.Stamp{HLC: hlc, Origin: db.ol.self}, uint64(last))
	}
	if !db.seriesDel.Any() {
		return
	}
	for _, name := range b.seriesWrites {
		db.seriesDel.Touch(name, uint64(last))
	}
}

// noteSeriesOps is noteSeriesBatch for imported operations.
func (db *DB) noteSeriesOps(ops []oplog.Op, last lsm.SeqNum) {
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case oplog.KindDeleteSeries:
			db.seriesDel.Set(string(op.Key), tsdb.Stamp{HLC: op.HLC, Origin: op.Replica}, uint64(last))
		case oplog.KindSamples:
			if db.seriesDel.Any() {
				db.seriesDel.Touch(string(op.Key), uint64(last))
			}
		}
	}
}

// seriesFloor is the compaction merger's view of deletions: a series'
// floor once every reader sees it (a snapshot older than the deletion
// still reads the samples it deleted).
func (db *DB) seriesFloor(canonical string) (tsdb.Stamp, bool) {
	if db.seriesDel == nil || !db.seriesDel.Has(canonical) {
		return tsdb.Stamp{}, false
	}
	readable := slices.Min(db.snapshotSeqs())
	return db.seriesDel.Floor(canonical, uint64(readable))
}

// deletedChunkCollector says whether a compaction into the bottom level
// drops a chunk: one of a deleted series holding no sample above its
// floor, once every reader sees the deletion. An operand newer than it
// (outside the compaction) folds onto nothing safely: the chunk held
// nothing a read returns. nil when no series was deleted.
func (db *DB) deletedChunkCollector() func(ukey, value []byte) bool {
	if db.seriesDel == nil || !db.seriesDel.Any() {
		return nil
	}
	return func(ukey, value []byte) bool {
		if len(ukey) < 2 || ukey[0] != nsSeries {
			return false
		}
		name, _, err := tsdb.ParseChunkKey(ukey[1:])
		if err != nil {
			return false
		}
		floor, ok := db.seriesFloor(name)
		if !ok {
			return false
		}
		all, err := tsdb.AllDeleted(value, db.ol.self, floor)
		return err == nil && all
	}
}

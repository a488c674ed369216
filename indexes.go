package pluresdb

import (
	"errors"
	"fmt"
	"slices"
	"time"
	"unsafe"

	"github.com/plures/pluresdb/hnsw"
	"github.com/plures/pluresdb/index"
	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
)

// Secondary indexes (ARCHITECTURE.md, "Secondary indexes"). Package index
// computes what an index holds; the root wires it in: every batch that
// changes documents (a local commit, an import, a snapshot join) runs,
// under the commit lock, each changed document's state after the batch
// through index.Set.Update, and the index writes go into the same record,
// so an index never disagrees with the documents, across crashes too.
// Index keys are a replica's own projection: never exported, never in a
// snapshot.

// indexStore reads the index namespace at one sequence number.
type indexStore struct {
	db  *DB
	seq lsm.SeqNum
	key []byte
}

func (s *indexStore) Get(key []byte) ([]byte, bool, error) {
	s.key = append(append(s.key[:0], nsIndex), key...)
	v, _, err := s.db.getRaw(s.key, s.seq)
	if errors.Is(err, errs.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return v, true, nil
}

func (s *indexStore) Scan(lo, hi []byte, fn func(key, value []byte) error) error {
	it := s.db.newIter(nsIndex, lo, hi, s.seq)
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}

// loadIndexes reads the index catalog at open and resumes the builds a
// close or a crash interrupted. A catalog that does not decode leaves the
// database open for reads; document writes then fail (indexErr), since
// they could not keep the indexes in step.
func (db *DB) loadIndexes() {
	set, err := index.Load(&indexStore{db: db, seq: lsm.SeqNum(db.visible.Load())}, db.opts.IndexExtractors)
	if err != nil {
		db.indexErr = fmt.Errorf("%w: the index catalog: %w (plures-fsck --repair rebuilds it)", errs.ErrCorruption, err)
		db.log.Error().Err(err).Msg("index catalog unreadable: document writes fail until the database is repaired")
		return
	}
	db.indexes.Store(set)
	if db.opts.ReadOnly {
		return
	}
	for _, name := range set.Names() {
		in, err := set.Info(&indexStore{db: db, seq: lsm.SeqNum(db.visible.Load())}, name)
		if err == nil && !in.Ready {
			db.startIndexBuild(name)
		}
	}
}

// hasIndexes reports whether document writes have indexes to keep in
// step (or an unreadable catalog).
func (db *DB) hasIndexes() bool {
	set, err := db.activeIndexes()
	return set != nil || err != nil
}

// activeIndexes returns the indexes document writes must keep in step,
// nil when there are none, or the error that stops document writes.
func (db *DB) activeIndexes() (*index.Set, error) {
	if db.indexErr != nil {
		return nil, db.indexErr
	}
	set := db.indexes.Load()
	if set == nil || len(set.Names()) == 0 {
		return nil, nil
	}
	return set, nil
}

// docChange collects, for one document of a batch, its entries in order.
type docChange struct {
	key     []byte
	entries []batchrepr.Entry
}

// indexScratch is the memory index upkeep reuses from batch to batch
// (under commitMu): the overlay, the grouping of a batch's entries by
// document, the index entries' encoding.
type indexScratch struct {
	ov     *index.Overlay
	at     map[string]int32
	all    []batchrepr.Entry
	sorted []batchrepr.Entry
	owner  []int32
	counts []int
	out    []docChange
	pre    []byte
}

// overlay returns the reused overlay over the index namespace as of the
// last committed batch. Called with commitMu held.
func (db *DB) overlay() *index.Overlay {
	st := &indexStore{db: db, seq: db.lastSeq}
	if db.ixScratch.ov == nil {
		db.ixScratch.ov = index.NewOverlay(st)
	} else {
		db.ixScratch.ov.Reset(st)
	}
	return db.ixScratch.ov
}

// docChanges groups a batch's document entries by key, in the order each
// key first appears. The result aliases data and sc, until the next call.
func (sc *indexScratch) docChanges(data []byte, count uint32) ([]docChange, error) {
	r, err := batchrepr.NewReader(batchrepr.SetHeader(data, 1, count))
	if err != nil {
		return nil, err
	}
	if sc.at == nil || len(sc.out) > 1<<16 {
		sc.at = map[string]int32{}
	}
	clear(sc.at)
	all, owner, counts, out := sc.all[:0], sc.owner[:0], sc.counts[:0], sc.out[:0]
	// The map's keys alias data, which no one changes while it lives.
	for {
		e, ok, err := r.Next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if len(e.Key) == 0 || e.Key[0] != nsDocuments {
			continue
		}
		k := e.Key[1:]
		i, seen := sc.at[string(k)]
		if !seen {
			i = int32(len(out))
			sc.at[unsafe.String(unsafe.SliceData(k), len(k))] = i
			out = append(out, docChange{key: k})
			counts = append(counts, 0)
		}
		all = append(all, e)
		owner = append(owner, i)
		counts[i]++
	}
	clear(sc.at) // no key outlives data
	// Counting sort: every document's entries together, in batch order.
	sorted := slices.Grow(sc.sorted[:0], len(all))[:len(all)]
	off := 0
	for i := range out {
		n := counts[i]
		out[i].entries = sorted[off : off : off+n]
		off += n
	}
	for j, e := range all {
		out[owner[j]].entries = append(out[owner[j]].entries, e)
	}
	sc.all, sc.owner, sc.counts, sc.out, sc.sorted = all, owner, counts, out, sorted
	return out, nil
}

// docAfter folds a document's entries of a batch onto its state as of seq
// and decodes the result.
func (db *DB) docAfter(key []byte, entries []batchrepr.Entry, seq lsm.SeqNum) (oplog.Document, error) {
	ukey := append([]byte{nsDocuments}, key...)
	base, _, err := db.getRaw(ukey, seq)
	hasBase := err == nil
	if err != nil && !errors.Is(err, errs.ErrNotFound) {
		return oplog.Document{}, err
	}
	var ops [][]byte
	for _, e := range entries {
		switch e.Kind {
		case lsm.KindMerge:
			ops = append(ops, e.Value)
		case lsm.KindDelete:
			base, hasBase, ops = nil, false, ops[:0]
		default:
			base, hasBase, ops = e.Value, true, ops[:0]
		}
	}
	state := base
	if len(ops) > 0 {
		if state, err = db.ol.merger.Merge(ukey, ops, base, hasBase); err != nil {
			return oplog.Document{}, fmt.Errorf("%w: document %q: %v", errs.ErrCorruption, key, err)
		}
	} else if !hasBase {
		return oplog.Document{}, nil
	}
	doc, err := oplog.DecodeDocument(state)
	if err != nil {
		return oplog.Document{}, fmt.Errorf("%w: document %q: %v", errs.ErrCorruption, key, err)
	}
	return doc, nil
}

// indexLocalBatch keeps the indexes in step with a local batch: it folds
// each changed document and puts the index writes at the front of the
// batch (a local record ends with an operation, whose sequence number is
// the replica's last). A write that would break a unique index fails
// here, before anything is logged. Called with commitMu held.
func (db *DB) indexLocalBatch(b *Batch) error {
	set, err := db.activeIndexes()
	if set == nil || err != nil {
		return err
	}
	// The operations' timestamps: provisional ones, above everything
	// stored, so the fold is the one the commit makes (logLocked stamps
	// them again, higher still: a local write wins either way).
	if n := len(b.stamps); n > 0 {
		ts := db.ol.clock.NowN(n)
		for i, off := range b.stamps {
			oplog.StampLocal(b.data[off:], ts+oplog.Timestamp(i))
		}
	}
	changes, err := db.ixScratch.docChanges(b.data, b.count)
	if err != nil {
		return fmt.Errorf("pluresdb: own batch encoding: %w", err)
	}
	ov := db.overlay()
	var ch index.Change
	for _, c := range changes {
		fold := func() (oplog.Document, error) { return db.docAfter(c.key, c.entries, db.lastSeq) }
		if localChange(&ch, c.entries) {
			err = set.UpdateChange(ov, c.key, &ch, fold)
		} else {
			var doc oplog.Document
			if doc, err = fold(); err == nil {
				err = set.Update(ov, c.key, doc, false)
			}
		}
		if err != nil {
			return err
		}
	}
	if ov.Len() == 0 {
		return nil
	}
	pre := db.ixScratch.pre[:0]
	var n uint32
	mem := 0
	err = ov.Writes(func(key, value []byte, deleted bool) error {
		kind := lsm.KindSet
		if deleted {
			kind = lsm.KindDelete
		}
		pre = batchrepr.AppendEntry(pre, kind, nsIndex, key, value)
		n++
		mem += len(key) + 1 + len(value) + lsm.MemtableEntryOverhead
		return nil
	})
	if err != nil {
		return err
	}
	data := make([]byte, 0, len(b.data)+len(pre))
	data = append(data, b.data[:batchrepr.HeaderLen]...)
	data = append(data, pre...)
	data = append(data, b.data[batchrepr.HeaderLen:]...)
	b.data = data
	if cap(pre) <= 4<<20 {
		db.ixScratch.pre = pre[:0]
	}
	for i := range b.stamps {
		b.stamps[i] += int32(len(pre))
	}
	for i := range b.seriesDeletes {
		b.seriesDeletes[i].off += int32(len(pre))
	}
	b.count += n
	b.memSize += mem
	return nil
}

// localChange describes a document's entries of a local batch as an
// index.Change, reusing ch: a local write orders above everything stored,
// so its own operations say what the document's fields and value become.
// It reports false for an entry it does not know as a local operation
// (the caller then folds the document onto its stored state).
func localChange(ch *index.Change, entries []batchrepr.Entry) bool {
	*ch = index.Change{Fields: ch.Fields[:0]}
	for _, e := range entries {
		switch e.Kind {
		case lsm.KindDelete:
			*ch = index.Change{Whole: true, Fields: ch.Fields[:0]}
		case lsm.KindSet:
			op, err := oplog.LocalOp(nil, e.Value, false)
			if err != nil {
				return false
			}
			*ch = index.Change{Whole: true, Put: op.Kind == oplog.KindPut, Value: op.Value, Fields: ch.Fields[:0]}
		case lsm.KindMerge:
			op, err := oplog.LocalOp(nil, e.Value, true)
			if err != nil || (op.Kind != oplog.KindSetField && op.Kind != oplog.KindDeleteField) {
				return false
			}
			ch.Fields = append(ch.Fields, index.FieldWrite{Name: op.Field, Value: op.Value, Deleted: op.Kind == oplog.KindDeleteField})
		default:
			return false
		}
	}
	return true
}

// indexImport keeps the indexes in step with an import batch: ops are its
// operations, operands their operands. The index writes go to b (after
// the operands). Called with commitMu held, every earlier batch inserted.
func (db *DB) indexImport(b *Batch, ops []oplog.Op, operands [][]byte) error {
	set, err := db.activeIndexes()
	if set == nil || err != nil {
		return err
	}
	var changes []docChange
	at := map[string]int{}
	for i := range ops {
		if ops[i].Kind == oplog.KindIncr || ops[i].Kind == oplog.KindSamples || ops[i].Kind == oplog.KindDeleteSeries {
			continue
		}
		k := string(ops[i].Key)
		j, seen := at[k]
		if !seen {
			j = len(changes)
			at[k] = j
			changes = append(changes, docChange{key: ops[i].Key})
		}
		changes[j].entries = append(changes[j].entries, batchrepr.Entry{Kind: lsm.KindMerge, Value: operands[i]})
	}
	return db.indexChanges(set, b, changes, true)
}

// indexChanges runs changes through the indexes and adds the writes to
// b. Called with commitMu held.
func (db *DB) indexChanges(set *index.Set, b *Batch, changes []docChange, remote bool) error {
	if len(changes) == 0 {
		return nil
	}
	ov := index.NewOverlay(&indexStore{db: db, seq: db.lastSeq})
	for _, c := range changes {
		doc, err := db.docAfter(c.key, c.entries, db.lastSeq)
		if err != nil {
			return err
		}
		if err := set.Update(ov, c.key, doc, remote); err != nil {
			return err
		}
	}
	return addIndexWrites(b, ov)
}

// addIndexWrites adds an overlay's writes to b.
func addIndexWrites(b *Batch, ov *index.Overlay) error {
	return ov.Writes(func(key, value []byte, deleted bool) error {
		if deleted {
			b.add(lsm.KindDelete, nsIndex, key, nil)
		} else {
			b.add(lsm.KindSet, nsIndex, key, value)
		}
		return nil
	})
}

// commitIndexWrites commits an overlay's writes as a batch of their own
// (no operation). Called with commitMu held; the caller publishes.
func (db *DB) commitIndexWrites(ov *index.Overlay) (lsm.SeqNum, error) {
	if ov.Len() == 0 {
		return 0, nil
	}
	b := &Batch{db: db}
	b.Reset()
	if err := addIndexWrites(b, ov); err != nil {
		return 0, err
	}
	if b.memSize > db.opts.MemtableSize/2 {
		return 0, fmt.Errorf("%w: index writes of %d bytes in one batch", errs.ErrValueTooLarge, b.memSize)
	}
	return db.appendLocked(b)
}

// IndexSpec defines a secondary index (index.Spec): over one document
// field, as SetField writes it, or over the whole value through an
// extractor.
type IndexSpec = index.Spec

// IndexInfo describes an index and its build (index.Info).
type IndexInfo = index.Info

// CreateIndex creates a secondary index and builds it over the existing
// documents in the background (resumed after a restart; progress in
// Indexes and Metrics). Until it is built, queries that use it fail with
// an error wrapping index.ErrNotReady, never partial results; writes keep
// it in step from the start. A name in use is an error wrapping
// index.ErrInvalid. An index with an extractor needs it registered in
// Options.IndexExtractors at every open, or document writes fail.
func (db *DB) CreateIndex(spec IndexSpec) error {
	err := db.replaceIndexes(func(set *index.Set, ov *index.Overlay) (*index.Set, error) {
		return set.Create(ov, spec, db.documentEstimate())
	})
	if err != nil {
		return err
	}
	db.startIndexBuild(spec.Name)
	return nil
}

// DropIndex deletes a secondary index: its catalog entry and every key it
// holds. A name not in use is an error wrapping index.ErrInvalid.
func (db *DB) DropIndex(name string) error {
	return db.replaceIndexes(func(set *index.Set, ov *index.Overlay) (*index.Set, error) {
		return set.Drop(ov, name)
	})
}

// replaceIndexes changes the set of indexes: change writes through an
// overlay under the commit lock, the writes are committed as a batch of
// their own, and the Set it returns is adopted once they are logged.
func (db *DB) replaceIndexes(change func(set *index.Set, ov *index.Overlay) (*index.Set, error)) error {
	if db.closed.Load() {
		return errs.ErrClosed
	}
	if db.opts.ReadOnly {
		return errs.ErrReadOnly
	}
	db.commitMu.Lock()
	if db.indexErr != nil {
		db.commitMu.Unlock()
		return db.indexErr
	}
	ov := index.NewOverlay(&indexStore{db: db, seq: db.lastSeq})
	next, err := change(db.indexes.Load(), ov)
	var last lsm.SeqNum
	if err == nil {
		last, err = db.commitIndexWrites(ov)
	}
	if err == nil {
		db.indexes.Store(next)
	}
	db.commitMu.Unlock()
	if err != nil || last == 0 {
		return err
	}
	return db.publish(last, !db.opts.NoSync)
}

// Indexes describes every secondary index, by name.
func (db *DB) Indexes() ([]IndexInfo, error) {
	if db.closed.Load() {
		return nil, errs.ErrClosed
	}
	if db.indexErr != nil {
		return nil, db.indexErr
	}
	set := db.indexes.Load()
	st := &indexStore{db: db, seq: lsm.SeqNum(db.visible.Load())}
	var out []IndexInfo
	for _, name := range set.Names() {
		in, err := set.Info(st, name)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// documentEstimate is about how many documents the database holds (the
// table entries of the documents namespace): a build's progress total.
func (db *DB) documentEstimate() uint64 {
	v := db.currentVersion()
	defer v.Unref()
	var n uint64
	for _, files := range v.Levels {
		for _, f := range files {
			if len(f.Smallest) > 0 && len(f.Largest) > 0 && lsm.UserKey(f.Smallest)[0] <= nsDocuments && lsm.UserKey(f.Largest)[0] >= nsDocuments {
				n += f.NumEntries
			}
		}
	}
	return n
}

// indexBuildStep is how many documents a build indexes per batch: small
// enough that writers wait little for the commit lock between steps.
const indexBuildStep = 512

// startIndexBuild builds an index in the background, a step per batch
// under the commit lock, until it is ready, the database closes, or the
// build fails (an existing document breaks a unique index: the index is
// dropped and the error logged and kept for Indexes).
func (db *DB) startIndexBuild(name string) {
	db.wg.Add(1)
	go func() {
		defer db.wg.Done()
		for !db.closed.Load() {
			ready, err := db.indexBuildStep(name)
			if err != nil {
				if db.closed.Load() || errors.Is(err, errs.ErrClosed) {
					return
				}
				db.log.Error().Err(err).Str("index", name).Msg("index build failed")
				db.m.indexBuildFailures.Add(1)
				if errors.Is(err, index.ErrUniqueViolation) {
					if derr := db.DropIndex(name); derr != nil {
						db.log.Error().Err(derr).Str("index", name).Msg("dropping the index whose build failed")
					}
					return
				}
				time.Sleep(time.Second)
				continue
			}
			if ready {
				return
			}
		}
	}()
}

// indexBuildStep runs one step of an index's build and commits it.
func (db *DB) indexBuildStep(name string) (ready bool, err error) {
	db.commitMu.Lock()
	if db.closed.Load() {
		db.commitMu.Unlock()
		return false, errs.ErrClosed
	}
	set := db.indexes.Load()
	if !slices.Contains(set.Names(), name) {
		db.commitMu.Unlock()
		return true, nil // dropped
	}
	seq := db.lastSeq
	ov := index.NewOverlay(&indexStore{db: db, seq: seq})
	in, err := set.BuildStep(ov, name, db.docsAt(seq), indexBuildStep)
	var last lsm.SeqNum
	if err == nil {
		last, err = db.commitIndexWrites(ov)
	}
	db.commitMu.Unlock()
	if err != nil {
		return false, err
	}
	if last != 0 {
		if err := db.publish(last, false); err != nil {
			return false, err
		}
	}
	return in.Ready, nil
}

// docsAt lists the documents as of seq for index builds and checks.
func (db *DB) docsAt(seq lsm.SeqNum) index.Docs {
	return func(after []byte, fn func(key []byte, doc oplog.Document) error) error {
		lo := []byte{nsDocuments}
		if after != nil {
			lo = append(append(lo, after...), 0)
		}
		ui, v, err := db.newUserIter(lo, []byte{nsDocuments + 1}, seq)
		if err != nil {
			return err
		}
		defer v.Unref()
		for ok := ui.First(); ok; ok = ui.Next() {
			doc, err := oplog.DecodeDocument(ui.Value())
			if err != nil {
				ui.Close()
				return fmt.Errorf("%w: document %q: %v", errs.ErrCorruption, ui.Key()[1:], err)
			}
			if !doc.Exists {
				continue
			}
			if err := fn(ui.Key()[1:], doc); err != nil {
				ui.Close()
				return err
			}
		}
		return errors.Join(ui.Err(), ui.Close())
	}
}

// Query selects documents through secondary indexes (index.Eq, Range,
// Prefix, And, Or, AndNot).
type Query = index.Query

// FindOptions shape a Find (index.FindOptions): key or index order, a
// limit, and the cursor of the previous page.
type FindOptions = index.FindOptions

// Found is a page of Find: the documents' keys and states, in the order
// asked for, and the cursor of the next page (nil: the last).
type Found struct {
	Keys []([]byte)
	Docs []Document
	Next []byte
}

// Find returns the documents a query selects, read from the indexes
// without scanning the documents, at one consistent view. A query on an
// index still building fails with an error wrapping index.ErrNotReady.
func (db *DB) Find(q Query, opts FindOptions) (Found, error) {
	if db.closed.Load() {
		return Found{}, errs.ErrClosed
	}
	if db.indexErr != nil {
		return Found{}, db.indexErr
	}
	seq := lsm.SeqNum(db.visible.Load())
	page, err := index.Find(&indexStore{db: db, seq: seq}, q, opts)
	if err != nil {
		return Found{}, err
	}
	f := Found{Keys: page.Keys, Next: page.Next, Docs: make([]Document, len(page.Keys))}
	for i, k := range page.Keys {
		d, err := db.getDocument(k, seq)
		if err != nil {
			return Found{}, fmt.Errorf("%w: index entry of document %q: %w", errs.ErrCorruption, k, err)
		}
		f.Docs[i] = d
	}
	return f, nil
}

// Count returns how many documents a query selects, without reading them.
func (db *DB) Count(q Query) (uint64, error) {
	if db.closed.Load() {
		return 0, errs.ErrClosed
	}
	if db.indexErr != nil {
		return 0, db.indexErr
	}
	return index.Count(&indexStore{db: db, seq: lsm.SeqNum(db.visible.Load())}, q)
}

// Explain says how a query would run: which indexes and key ranges it
// reads.
func (db *DB) Explain(q Query) (index.Plan, error) {
	if db.closed.Load() {
		return index.Plan{}, errs.ErrClosed
	}
	if db.indexErr != nil {
		return index.Plan{}, db.indexErr
	}
	return index.Explain(&indexStore{db: db, seq: lsm.SeqNum(db.visible.Load())}, q)
}

// CheckIndexes compares every index with the documents (for plures-fsck
// and tests): entries, forward keys and document numbers both ways.
func (db *DB) CheckIndexes() (index.Report, error) {
	if db.closed.Load() {
		return index.Report{}, errs.ErrClosed
	}
	if db.indexErr != nil {
		return index.Report{}, db.indexErr
	}
	seq := lsm.SeqNum(db.visible.Load())
	return db.indexes.Load().Check(&indexStore{db: db, seq: seq}, db.docsAt(seq))
}

// FindKeys returns the keys a query selects, as a set for vector search
// filtered by the indexes (hnsw.SearchOptions.Keys): evaluated once, at
// one view. A search filtered by it returns only those keys' vectors,
// whatever the graph's internal IDs do meanwhile (deletes, replaces,
// rebuilds).
func (db *DB) FindKeys(q Query) (*hnsw.Keys, error) {
	if db.closed.Load() {
		return nil, errs.ErrClosed
	}
	if db.indexErr != nil {
		return nil, db.indexErr
	}
	page, err := index.Find(&indexStore{db: db, seq: lsm.SeqNum(db.visible.Load())}, q, FindOptions{})
	if err != nil {
		return nil, err
	}
	return hnsw.NewKeys(page.Keys), nil
}

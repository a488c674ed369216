package compaction

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
)

// Env is what writing tables needs from the engine.
type Env struct {
	FS         vfs.FS
	Dir        string // where the outputs go
	NewFileNum func() layout.FileNum
	TableOpts  lsm.TableWriterOptions
	// Cold marks the outputs as cold-tier tables (FileMeta.Cold).
	Cold bool
	// TargetFileSize splits outputs; 0 means never split.
	TargetFileSize uint64
	// ShouldSplit, if set, is called with each new user key, in order,
	// while an output is open; true closes the output before that key
	// (used to bound an output's overlap with the level below the next).
	ShouldSplit func(ukey []byte) bool
}

// WriteSpec describes one run of the Writer.
type WriteSpec struct {
	// Snapshots are the sequence numbers of live snapshots, any order.
	Snapshots []lsm.SeqNum
	// Bottommost says no older data for these keys exists below the
	// output, so tombstones visible to every snapshot can go.
	Bottommost bool
	// GCHorizon, if not 0, keeps tombstones newer than it even at the
	// bottom: peers that have not yet seen a deletion must still receive
	// it. 0 means no horizon.
	GCHorizon lsm.SeqNum
	// Collect, if set, is asked about every full value that reaches the
	// bottom (Bottommost, oldest snapshot stripe), with its sequence
	// number: true drops the value and everything older of its key, as for
	// a tombstone. The op log uses it for CRDT tombstones every peer has
	// seen. Entries of the key newer than seq may lie outside the
	// compaction (memtables, higher levels): a merge operand there would
	// fold onto nothing once the value is gone, so the collector must say
	// false when one exists.
	Collect func(ukey, value []byte, seq lsm.SeqNum) bool
	// Merger folds merge operands into the value beneath them. With a
	// Merger, the operands of a key within one snapshot stripe that sit on
	// a full value (or on a tombstone, or at the bottom of the tree) become
	// one full value. Without one, operands are kept as they are.
	Merger lsm.Merger
}

// Stats counts what a run did.
type Stats struct {
	EntriesIn, EntriesOut, Dropped uint64
	BytesWritten                   uint64
}

// stripe returns the index of the snapshot stripe holding seq: the number
// of snapshots strictly below seq. snaps must be sorted ascending.
func stripe(snaps []lsm.SeqNum, seq lsm.SeqNum) int {
	i, _ := slices.BinarySearch(snaps, seq)
	return i
}

// Write drains it into new tables and returns their metadata, in key
// order. Every returned file is synced and its directory entry made
// durable. On error, files it created are removed.
func Write(env Env, it lsm.InternalIterator, spec WriteSpec) (metas []*lsm.FileMeta, st Stats, err error) {
	w := &writer{env: env, spec: spec}
	w.snaps = slices.Clone(spec.Snapshots)
	slices.Sort(w.snaps)
	defer func() {
		if err != nil {
			if w.out != nil {
				w.out.abort()
			}
			for _, m := range w.metas {
				_ = env.FS.Remove(layout.Path(env.Dir, layout.TypeTable, m.Num))
			}
			w.metas = nil
		}
	}()
	for ok := it.First(); ok; ok = it.Next() {
		if err := w.add(it.Key(), it.Value()); err != nil {
			return nil, w.st, err
		}
	}
	if err := it.Err(); err != nil {
		return nil, w.st, err
	}
	if err := w.flushOperands(true); err != nil {
		return nil, w.st, err
	}
	if w.out != nil {
		if err := w.closeOutput(); err != nil {
			return nil, w.st, err
		}
	}
	if len(w.metas) > 0 {
		if err := env.FS.SyncDir(env.Dir); err != nil {
			return nil, w.st, err
		}
	}
	return w.metas, w.st, nil
}

// writer is the state of one Write.
type writer struct {
	env   Env
	spec  WriteSpec
	snaps []lsm.SeqNum
	st    Stats
	out   *output
	metas []*lsm.FileMeta

	// The user key being processed and its state.
	curKey    []byte
	hasKey    bool
	curStripe int  // stripe of the last entry seen for curKey
	fullInStr bool // a Set or Delete was already seen in curStripe

	// Merge operands of curKey in curStripe, newest first, waiting for
	// what lies beneath them (only with a Merger): their internal keys
	// and values, copied back to back into opBuf (the input's bytes are
	// valid only until its next step), at opEnds.
	opBuf  []byte
	opEnds []opEnd
	// opScratch, keyScratch and foldBuf are reused by fold.
	opScratch  [][]byte
	keyScratch []byte
	foldBuf    []byte

	lastOut []byte // user key of the last entry written
	hasOut  bool
}

func (w *writer) add(ikey, value []byte) error {
	ukey, seq, kind, ok := lsm.SplitInternalKey(ikey)
	if !ok {
		return fmt.Errorf("compaction: malformed internal key of %d bytes", len(ikey))
	}
	w.st.EntriesIn++
	if !w.hasKey || !bytes.Equal(ukey, w.curKey) {
		// Operands of the previous key found nothing beneath them.
		if err := w.flushOperands(true); err != nil {
			return err
		}
		w.curKey = append(w.curKey[:0], ukey...)
		w.hasKey, w.curStripe, w.fullInStr = true, -1, false
	}
	if s := stripe(w.snaps, seq); s != w.curStripe {
		// Older entries of this key follow in lower stripes: operands of
		// the stripe above cannot fold without a base.
		if err := w.flushOperands(false); err != nil {
			return err
		}
		w.curStripe, w.fullInStr = s, false
	}
	if w.fullInStr {
		// Shadowed by a newer full entry that every reader of this stripe
		// sees instead.
		w.st.Dropped++
		return nil
	}
	switch kind {
	case lsm.KindMerge:
		if w.spec.Merger != nil {
			w.opBuf = append(w.opBuf, ikey...)
			k := len(w.opBuf)
			w.opBuf = append(w.opBuf, value...)
			w.opEnds = append(w.opEnds, opEnd{key: k, value: len(w.opBuf)})
			return nil
		}
	case lsm.KindSet:
		w.fullInStr = true
		if len(w.opEnds) > 0 {
			return w.fold(value, true, true)
		}
		if w.spec.Collect != nil && w.spec.Bottommost && w.curStripe == 0 && w.spec.Collect(ukey, value, seq) {
			w.st.Dropped++
			return nil
		}
	case lsm.KindDelete:
		w.fullInStr = true
		if len(w.opEnds) > 0 {
			return w.fold(nil, false, true)
		}
		if w.spec.Bottommost && w.curStripe == 0 && (w.spec.GCHorizon == 0 || seq <= w.spec.GCHorizon) {
			// Every reader sees this tombstone or something newer, every
			// peer has seen it, and nothing older lies below: the
			// tombstone and every older version (all in stripe 0) go.
			w.st.Dropped++
			return nil
		}
	}
	return w.emit(ikey, value)
}

// fold merges the waiting operands onto base (a Set's value, or nothing
// for a tombstone) and writes the result as a full value at the newest
// operand's sequence number. consumed says a base entry (a Set or a
// tombstone) is replaced by the result too.
func (w *writer) fold(base []byte, hasBase, consumed bool) error {
	ops := w.opScratch[:0]
	for i := len(w.opEnds) - 1; i >= 0; i-- { // oldest first
		_, v := w.operand(i)
		ops = append(ops, v)
	}
	w.opScratch = ops
	var v []byte
	var err error
	if am, ok := w.spec.Merger.(AppendMerger); ok {
		v, err = am.MergeAppend(w.foldBuf[:0], w.curKey, ops, base, hasBase)
		w.foldBuf = v
	} else {
		v, err = w.spec.Merger.Merge(w.curKey, ops, base, hasBase)
	}
	if err != nil {
		return fmt.Errorf("compaction: merging key %q: %w", w.curKey, err)
	}
	newest, _ := w.operand(0)
	_, seq, _, _ := lsm.SplitInternalKey(newest)
	w.st.Dropped += uint64(len(w.opEnds)) - 1 // operands in, one value out
	if consumed {
		w.st.Dropped++
	}
	w.opBuf, w.opEnds = w.opBuf[:0], w.opEnds[:0]
	// The folded value is a full value at the bottom like any other: the
	// collector may drop it (what lies below it was folded in).
	if w.spec.Collect != nil && w.spec.Bottommost && w.curStripe == 0 && w.spec.Collect(w.curKey, v, seq) {
		w.st.Dropped++
		return nil
	}
	w.keyScratch = lsm.AppendInternalKey(w.keyScratch[:0], w.curKey, seq, lsm.KindSet)
	return w.emit(w.keyScratch, v)
}

// AppendMerger is a Merger that can append its result to a buffer the
// caller reuses (a compaction writes each result out at once).
type AppendMerger interface {
	MergeAppend(dst, key []byte, operands [][]byte, base []byte, hasBase bool) ([]byte, error)
}

// opEnd is where a waiting operand's internal key and value end in opBuf.
type opEnd struct{ key, value int }

// operand returns the internal key and value of waiting operand i
// (newest first).
func (w *writer) operand(i int) (ikey, value []byte) {
	start := 0
	if i > 0 {
		start = w.opEnds[i-1].value
	}
	e := w.opEnds[i]
	return w.opBuf[start:e.key:e.key], w.opBuf[e.key:e.value:e.value]
}

// flushOperands writes the waiting operands. keyEnd says no older entry of
// the key follows: at the bottom of the tree they fold onto nothing.
func (w *writer) flushOperands(keyEnd bool) error {
	if len(w.opEnds) == 0 {
		return nil
	}
	if keyEnd && w.spec.Bottommost {
		return w.fold(nil, false, false)
	}
	for i := range w.opEnds {
		k, v := w.operand(i)
		if err := w.emit(k, v); err != nil {
			return err
		}
	}
	w.opBuf, w.opEnds = w.opBuf[:0], w.opEnds[:0]
	return nil
}

// emit appends one entry to the current output, starting a new output
// first when the current one is full. Outputs split only between user
// keys, so one key's versions never straddle two tables of a level.
func (w *writer) emit(ikey, value []byte) error {
	ukey := lsm.UserKey(ikey)
	if w.out != nil && (!w.hasOut || !bytes.Equal(ukey, w.lastOut)) {
		full := w.env.TargetFileSize > 0 && w.out.w.EstimatedSize() >= w.env.TargetFileSize
		if full || (w.env.ShouldSplit != nil && w.env.ShouldSplit(ukey)) {
			if err := w.closeOutput(); err != nil {
				return err
			}
		}
	}
	if w.out == nil {
		out, err := newOutput(w.env)
		if err != nil {
			return err
		}
		w.out = out
	}
	if err := w.out.w.Add(ikey, value); err != nil {
		return err
	}
	w.lastOut = append(w.lastOut[:0], ukey...)
	w.hasOut = true
	w.st.EntriesOut++
	return nil
}

func (w *writer) closeOutput() error {
	m, err := w.out.finish()
	w.out = nil
	if err != nil {
		return err
	}
	w.st.BytesWritten += m.Size
	w.metas = append(w.metas, m)
	return nil
}

type output struct {
	env  Env
	num  layout.FileNum
	path string
	f    vfs.File
	w    *lsm.TableWriter
}

func newOutput(env Env) (*output, error) {
	num := env.NewFileNum()
	path := layout.Path(env.Dir, layout.TypeTable, num)
	f, err := env.FS.Create(path)
	if err != nil {
		return nil, err
	}
	return &output{env: env, num: num, path: path, f: f, w: lsm.NewTableWriter(f, env.TableOpts)}, nil
}

func (o *output) finish() (*lsm.FileMeta, error) {
	props, err := o.w.Finish()
	if err == nil {
		err = o.f.Sync()
	}
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = o.env.FS.Remove(o.path)
		return nil, fmt.Errorf("compaction: writing %s: %w", o.path, err)
	}
	return &lsm.FileMeta{
		Num:          o.num,
		Size:         props.FileSize,
		Smallest:     props.Smallest,
		Largest:      props.Largest,
		SmallestSeq:  props.SmallestSeq,
		LargestSeq:   props.LargestSeq,
		NumEntries:   props.NumEntries,
		NumDeletions: props.NumDeletions,
		Cold:         o.env.Cold,
	}, nil
}

func (o *output) abort() {
	_ = o.f.Close()
	_ = o.env.FS.Remove(o.path)
}

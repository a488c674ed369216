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
	Dir        string
	NewFileNum func() layout.FileNum
	TableOpts  lsm.TableWriterOptions
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
	snaps := slices.Clone(spec.Snapshots)
	slices.Sort(snaps)

	var (
		out     *output
		prevKey []byte
		hasPrev bool
		// State of the current user key:
		curStripe = -1    // stripe of the last entry seen for it
		fullInStr = false // a Set or Delete was already kept in curStripe
	)
	defer func() {
		if err != nil {
			if out != nil {
				out.abort()
			}
			for _, m := range metas {
				_ = env.FS.Remove(layout.Path(env.Dir, layout.TypeTable, m.Num))
			}
			metas = nil
		}
	}()

	for ok := it.First(); ok; ok = it.Next() {
		ikey := it.Key()
		ukey, seq, kind, valid := lsm.SplitInternalKey(ikey)
		if !valid {
			return metas, st, fmt.Errorf("compaction: malformed internal key of %d bytes", len(ikey))
		}
		st.EntriesIn++
		newKey := !hasPrev || !bytes.Equal(ukey, prevKey)
		if newKey {
			prevKey = append(prevKey[:0], ukey...)
			hasPrev = true
			curStripe = -1
			fullInStr = false
		}
		s := stripe(snaps, seq)
		if s == curStripe && fullInStr {
			// Shadowed by a newer full entry that every reader of this
			// stripe sees instead.
			st.Dropped++
			continue
		}
		if s != curStripe {
			curStripe, fullInStr = s, false
		}
		if kind != lsm.KindMerge {
			fullInStr = true
		}
		if kind == lsm.KindDelete && spec.Bottommost && s == 0 {
			// Every reader sees this tombstone or something newer, and
			// nothing older lies below: the tombstone and every older
			// version (all in stripe 0) can go.
			st.Dropped++
			continue
		}

		// Split only between user keys, so one key's versions never
		// straddle two tables of a level.
		if out != nil && newKey && ((env.TargetFileSize > 0 && out.w.EstimatedSize() >= env.TargetFileSize) ||
			(env.ShouldSplit != nil && env.ShouldSplit(ukey))) {
			m, err := out.finish()
			if err != nil {
				return metas, st, err
			}
			st.BytesWritten += m.Size
			metas = append(metas, m)
			out = nil
		}
		if out == nil {
			if out, err = newOutput(env); err != nil {
				return metas, st, err
			}
		}
		if err := out.w.Add(ikey, it.Value()); err != nil {
			return metas, st, err
		}
		st.EntriesOut++
	}
	if err := it.Err(); err != nil {
		return metas, st, err
	}
	if out != nil {
		m, err := out.finish()
		if err != nil {
			return metas, st, err
		}
		st.BytesWritten += m.Size
		metas = append(metas, m)
		out = nil
	}
	if len(metas) > 0 {
		if err := env.FS.SyncDir(env.Dir); err != nil {
			return metas, st, err
		}
	}
	return metas, st, nil
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
	}, nil
}

func (o *output) abort() {
	_ = o.f.Close()
	_ = o.env.FS.Remove(o.path)
}

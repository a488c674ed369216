package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/wal"
)

// ErrFollowGap: the database's log lacks operations between what a
// follower holds and the next sealed segment: a segment left the
// database (archived or dropped by retention, or lost) before the
// follower shipped it. The follower holds everything up to its LastSeq
// and ships nothing more; take a new backup and follow that.
var ErrFollowGap = errors.New("backup: the log has moved on past what the follower holds")

// FollowOptions tune Follow. A nil *FollowOptions means the defaults.
type FollowOptions struct {
	// FS is the filesystem of the database and the backups; nil: the
	// operating system's.
	FS vfs.FS
	// Interval is how often the database's log is looked at; 0: one
	// second.
	Interval time.Duration
	// Once ships the segments sealed now and returns.
	Once bool
	// Shipped, if set, is called after each segment is shipped.
	Shipped func(Shipment)
}

// Shipment is one log segment a follower shipped.
type Shipment struct {
	Segment string // the database's file name
	Bytes   int64  // bytes stored in the follower (past what its parent holds)
	LastSeq uint64 // the follower's last sequence number after it
	Time    time.Time
}

// Follow keeps dest, an incremental backup on top of the backup in base,
// holding every log segment the database in dbDir seals after base was
// taken, each shipped (copied, synced, and recorded in dest's manifest)
// once sealed: dest is at most the live segment behind the database. It
// reads only sealed segments, which the database never changes, so it
// runs beside the open database, in its process or another, and takes no
// lock. dest restores (Restore, with or without SameReplica, and to a
// point in time) like any backup: its database opens from base's tables
// and replays the log dest holds. A dest that is already a follower of
// base resumes where it stopped.
//
// Follow returns when ctx is done (nil error), after one pass with
// opts.Once, or on a failure. A segment that leaves the database before
// it is shipped (retention archives sealed segments after about an hour,
// sooner with negative Retention) stops it with ErrFollowGap: dest keeps
// what it holds, and a new backup has to be taken and followed.
func Follow(ctx context.Context, dbDir, base, dest string, opts *FollowOptions) (*Manifest, error) {
	if opts == nil {
		opts = &FollowOptions{}
	}
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	interval := opts.Interval
	if interval <= 0 {
		interval = time.Second
	}
	f, err := newFollower(fs, dbDir, base, dest)
	if err != nil {
		return nil, err
	}
	for {
		if err := f.ship(opts.Shipped); err != nil {
			return f.m, err
		}
		if opts.Once {
			return f.m, nil
		}
		select {
		case <-ctx.Done():
			return f.m, nil
		case <-time.After(interval):
		}
	}
}

// follower is the state of one Follow.
type follower struct {
	fs          vfs.FS
	dbDir, dest string
	chain       *chain // dest (once it exists) and the chain of base
	m           *Manifest
	// first is the segment the base holds the first part of (it was live
	// at the cut): the first to ship.
	first layout.FileNum
}

func newFollower(fs vfs.FS, dbDir, base, dest string) (*follower, error) {
	dest = filepath.Clean(dest)
	parent, err := loadChain(fs, base)
	if err != nil {
		return nil, err
	}
	bm := parent.top().Manifest
	if bm.Follow {
		return nil, fmt.Errorf("%w: %s is a follower; follow the backup it builds on, or a new one", ErrRefused, base)
	}
	replica, err := oplog.ReadReplicaFile(fs, layout.Path(dbDir, layout.TypeReplica, 0))
	if err != nil {
		return nil, fmt.Errorf("backup: follow: reading the database's replica ID: %w", err)
	}
	if replica != bm.Replica {
		return nil, fmt.Errorf("%w: %s is a backup of replica %s, %s holds replica %s", ErrRefused, base, bm.Replica, dbDir, replica)
	}
	f := &follower{fs: fs, dbDir: dbDir, dest: dest}
	for _, file := range bm.Files {
		if t, n, ok := layout.Parse(file.Name); ok && t == layout.TypeLog {
			f.first = max(f.first, n)
		}
	}
	if f.first == 0 {
		return nil, errs.Corruptf(filepath.Join(base, ManifestName), -1, "the backup holds no log segment")
	}

	m, err := ReadManifest(fs, dest)
	switch {
	case err == nil:
		if !m.Follow || m.Parent != bm.ID {
			return nil, fmt.Errorf("%w: %s is a backup, not a follower of %s", ErrRefused, dest, base)
		}
	case errors.Is(err, ErrNotBackup):
		if err := checkEmptyTarget(fs, dest); err != nil {
			return nil, err
		}
		m = &Manifest{ID: newID(), Parent: bm.ID, ParentPath: base, Replica: bm.Replica, Time: bm.Time,
			LastSeq: bm.LastSeq, VersionVector: bm.VersionVector.Clone(), Follow: true}
		if rel, err := relPath(dest, base); err == nil {
			m.ParentPath = rel
		}
		for _, file := range bm.Files {
			m.Files = append(m.Files, File{Name: file.Name, Size: file.Size, Sum: file.Sum, Base: file.Size})
		}
		tmp := tempBeside(dest, "follow")
		if err := fs.MkdirAll(tmp); err != nil {
			return nil, err
		}
		if err := writeManifest(fs, tmp, m); err != nil {
			return nil, errors.Join(err, removeDir(fs, tmp))
		}
		if err := publishDir(fs, tmp, dest); err != nil {
			return nil, errors.Join(err, removeDir(fs, tmp))
		}
	default:
		return nil, err
	}
	f.m = m
	f.chain = &chain{backups: append([]Backup{{Dir: dest, Manifest: m}}, parent.backups...)}
	return f, nil
}

func removeDir(fs vfs.FS, dir string) error {
	var err error
	removeTemp(fs, dir, &err)
	return err
}

// ship ships every segment sealed since the last pass, oldest first.
func (f *follower) ship(shipped func(Shipment)) error {
	nums, err := wal.List(f.fs, f.dbDir)
	if err != nil {
		return fmt.Errorf("backup: follow: listing %s: %w", f.dbDir, err)
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	if len(nums) == 0 {
		return nil
	}
	live := nums[len(nums)-1]
	for _, num := range nums {
		if num >= live || num < f.first || num <= f.m.Shipped {
			continue
		}
		s, err := f.shipSegment(num)
		if err != nil {
			return err
		}
		if shipped != nil {
			shipped(s)
		}
	}
	if f.m.Shipped < f.first && f.first < live && !slices.Contains(nums, f.first) {
		return fmt.Errorf("%w: segment %s, live when %s was taken, left the database before it was shipped",
			ErrFollowGap, layout.Name(layout.TypeLog, f.first), f.chain.backups[1].Dir)
	}
	return f.checkLive(live)
}

// checkLive reads the first record of the live segment: one that starts
// past what the follower holds means the operations between left the
// database unshipped, and the follower says so now rather than when the
// segment seals. A segment with no whole record yet says nothing.
func (f *follower) checkLive(live layout.FileNum) error {
	if live < f.first {
		return nil
	}
	sr, err := wal.OpenSegment(f.fs, f.dbDir, live)
	if err != nil {
		return nil // being created, or sealed and gone: the next pass sees it
	}
	defer sr.Close()
	rec, err := sr.Next()
	if err != nil {
		return nil
	}
	r, err := batchrepr.NewReader(rec)
	if err != nil {
		return nil
	}
	first := uint64(r.Seq)
	if from, ok := batchrepr.SeqJump(rec); ok {
		first = uint64(from)
	}
	if first > f.m.LastSeq+1 {
		return fmt.Errorf("%w: the live segment %s starts at sequence number %d, the follower holds up to %d",
			ErrFollowGap, layout.Name(layout.TypeLog, live), first, f.m.LastSeq)
	}
	return nil
}

// shipSegment checks that segment num follows what the follower holds
// without a gap, stores it (the part its parent lacks) and records it in
// the manifest.
func (f *follower) shipSegment(num layout.FileNum) (Shipment, error) {
	name := layout.Name(layout.TypeLog, num)
	path := filepath.Join(f.dbDir, name)
	last, clock, err := f.checkSegment(num)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Shipment{}, fmt.Errorf("%w: segment %s left the database before it was shipped: %w", ErrFollowGap, name, err)
		}
		return Shipment{}, err
	}
	// The part the parent holds comes from the chain below dest.
	below := &chain{backups: f.chain.backups[1:]}
	file, err := storeFile(f.fs, path, f.dest, name, below)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Shipment{}, fmt.Errorf("%w: segment %s left the database before it was shipped: %w", ErrFollowGap, name, err)
		}
		return Shipment{}, err
	}
	if err := f.fs.SyncDir(f.dest); err != nil {
		return Shipment{}, err
	}
	m := *f.m
	m.Files = slices.Clone(f.m.Files)
	if i := slices.IndexFunc(m.Files, func(x File) bool { return x.Name == name }); i >= 0 {
		m.Files[i] = file
	} else {
		m.Files = append(m.Files, file)
		sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Name < m.Files[j].Name })
	}
	m.Shipped = num
	m.LastSeq = max(m.LastSeq, last)
	if clock != 0 {
		// A millisecond short of the newest operation shipped: a later
		// operation, in the live segment, may share its millisecond.
		if t := time.UnixMilli(int64(clock.Physical()) - 1); t.After(m.Time) {
			m.Time = t
		}
	}
	if err := writeManifest(f.fs, f.dest, &m); err != nil {
		return Shipment{}, err
	}
	f.m = &m
	f.chain.backups[0].Manifest = &m
	return Shipment{Segment: name, Bytes: file.Stored(), LastSeq: m.LastSeq, Time: m.Time}, nil
}

// checkSegment reads segment num's records: they must continue the
// follower's sequence numbers with no gap. It returns the last sequence
// number and the newest operation timestamp past what the follower holds.
func (f *follower) checkSegment(num layout.FileNum) (uint64, oplog.Timestamp, error) {
	sr, err := wal.OpenSegment(f.fs, f.dbDir, num)
	if err != nil {
		return 0, 0, err
	}
	defer sr.Close()
	path := layout.Path(f.dbDir, layout.TypeLog, num)
	next := f.m.LastSeq + 1
	var clock oplog.Timestamp
	for {
		rec, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return next - 1, clock, nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("backup: follow: %w", err)
		}
		r, err := batchrepr.NewReader(rec)
		if err != nil {
			return 0, 0, errs.Corruptf(path, -1, "record: %v", err)
		}
		first, last := uint64(r.Seq), uint64(r.Seq)+uint64(r.Count)-1
		if from, ok := batchrepr.SeqJump(rec); ok && uint64(from) == next {
			// A replica rejoining skips the sequence numbers of its own
			// operations it takes back, on purpose: the run goes on.
			first = next
		}
		switch {
		case last < next:
			continue // the parent holds it
		case first > next:
			return 0, 0, fmt.Errorf("%w: %s starts at sequence number %d, the follower holds up to %d",
				ErrFollowGap, path, first, next-1)
		case first < next:
			return 0, 0, errs.Corruptf(path, -1, "record %d-%d straddles the backup's last sequence number %d", first, last, next-1)
		}
		ts, err := pluresdb.RecordClock(rec)
		if err != nil {
			return 0, 0, errs.Corruptf(path, -1, "record at %d: %v", first, err)
		}
		clock = max(clock, ts)
		next = last + 1
	}
}

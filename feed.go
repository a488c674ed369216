package pluresdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/wal"
)

// Position is a place in the change feed: the sequence number of the log
// entry that holds an operation and the operation's index within that
// entry (an import logs several operations in one entry; a local write has
// index 0). Positions rise in commit order and survive restarts, so a
// subscriber that saves the position of the last change it handled resumes
// exactly after it. The zero Position is the start of the retained log.
type Position struct {
	Seq   uint64
	Index uint32
}

// Less orders positions.
func (p Position) Less(q Position) bool {
	return p.Seq < q.Seq || p.Seq == q.Seq && p.Index < q.Index
}

// Change is one committed operation of the change feed.
type Change struct {
	Pos Position
	Op  oplog.Op // its byte slices belong to the receiver
}

// liveQueueLen is how many commits a subscriber's live queue holds. A
// subscriber that falls further behind reads the log instead: writers never
// wait for subscribers and no change is dropped.
const liveQueueLen = 1024

// subscribers are the DB's live change-feed subscriptions.
type subscribers struct {
	n    atomic.Int32
	mu   sync.Mutex
	set  map[*Subscription]struct{}
	pub  atomic.Pointer[chan struct{}] // closed and replaced at every publish while n > 0
	done chan struct{}                 // closed by Close
	once sync.Once
}

func (ss *subscribers) init() {
	ss.set = map[*Subscription]struct{}{}
	ch := make(chan struct{})
	ss.pub.Store(&ch)
	ss.done = make(chan struct{})
}

// notify hands a committed record to the live subscriptions. Called with
// commitMu held, in commit order.
func (ss *subscribers) notify(rec []byte, last lsm.SeqNum) {
	if ss.n.Load() == 0 {
		return
	}
	cp := bytes.Clone(rec)
	ss.mu.Lock()
	for s := range ss.set {
		if s.lagging.Load() {
			continue
		}
		select {
		case s.q <- cp:
		default:
			// Full: the subscriber goes back to the log.
			s.lagging.Store(true)
		}
	}
	ss.mu.Unlock()
}

// published wakes subscriptions waiting for commits to become visible.
func (ss *subscribers) published() {
	if ss.n.Load() == 0 {
		return
	}
	ch := make(chan struct{})
	if old := ss.pub.Swap(&ch); old != nil {
		close(*old)
	}
}

func (ss *subscribers) close() {
	ss.once.Do(func() { close(ss.done) })
}

// Subscription is a change feed: every operation committed after a
// position, local or imported, in commit order. It catches up from the log
// and then follows commits live. Changes appear once they are visible to
// readers and durable (a write made with NoSync is synced for the feed). A
// Subscription is used by one goroutine at a time.
type Subscription struct {
	db  *DB
	ctx context.Context
	pos Position // the last change delivered

	q       chan []byte
	lagging atomic.Bool
	live    bool // registered and caught up: changes come from q
	reg     bool // registered with the DB

	// Catch-up from the log.
	segs    []segRef
	reader  *wal.SegmentReader
	upTo    lsm.SeqNum // catch-up covers records up to this sequence number
	pending []Change
	err     error
}

type segRef struct {
	num      layout.FileNum
	limit    int64 // bytes to read; -1: all
	archived bool
}

// Subscribe starts a change feed after from (the zero Position: from the
// start of the log). ctx ends it. It resumes anywhere in the retained
// history, archived history included (but for archives written before
// they kept positions); from older than the retained history, or in such
// an archive, gives ErrHistoryUnavailable (from Subscribe or the first
// Next).
func (db *DB) Subscribe(ctx context.Context, from Position) (*Subscription, error) {
	if db.closed.Load() {
		return nil, errs.ErrClosed
	}
	// Without the op log's metadata the history floor is unknown: a gap
	// could not be told from a resumable position.
	if err := db.opLogUsable(); err != nil {
		return nil, err
	}
	s := &Subscription{db: db, ctx: ctx, pos: from}
	if err := s.startCatchUp(true); err != nil {
		return nil, err
	}
	return s, nil
}

// startCatchUp registers s for live changes and lists the log segments that
// hold what came before.
func (s *Subscription) startCatchUp(first bool) error {
	db := s.db
	ss := &db.ol.subs
	db.commitMu.Lock()
	if db.closed.Load() {
		db.commitMu.Unlock()
		return errs.ErrClosed
	}
	size, err := db.liveLogSize()
	if err != nil {
		db.commitMu.Unlock()
		return err
	}
	s.upTo = db.lastSeq
	curNum := db.ol.cur.num
	ss.mu.Lock()
	s.q = make(chan []byte, liveQueueLen)
	s.lagging.Store(false)
	ss.set[s] = struct{}{}
	ss.mu.Unlock()
	if !s.reg {
		ss.n.Add(1)
		s.reg = true
	}
	db.ol.mu.Lock()
	segs := db.ol.snapshotSegs()
	floorSet := len(db.ol.floor) > 0
	db.ol.mu.Unlock()
	db.commitMu.Unlock()

	if db.historyGap(s.pos, segs, floorSet, first) {
		s.Close()
		return fmt.Errorf("%w: position %d/%d is older than the retained history", ErrHistoryUnavailable, s.pos.Seq, s.pos.Index)
	}
	s.segs = s.segs[:0]
	for _, g := range segs {
		if g.lastSeq != 0 && uint64(g.lastSeq) < s.pos.Seq {
			continue
		}
		s.segs = append(s.segs, segRef{g.num, -1, g.archived})
	}
	s.segs = append(s.segs, segRef{curNum, size, false})
	s.live = false
	return nil
}

// Next returns the next change, waiting for one. It returns ctx's error
// once ctx is done and ErrClosed once the database closes.
func (s *Subscription) Next() (Change, error) {
	c, _, err := s.next(true)
	return c, err
}

// TryNext is Next without the wait: ok is false when the feed has
// delivered every change committed so far. A reader of a database no one
// writes to (a read-only open) stops there.
func (s *Subscription) TryNext() (c Change, ok bool, err error) {
	return s.next(false)
}

func (s *Subscription) next(wait bool) (Change, bool, error) {
	for {
		if s.err != nil {
			return Change{}, false, s.err
		}
		if len(s.pending) > 0 {
			c := s.pending[0]
			s.pending = s.pending[1:]
			s.pos = c.Pos
			return c, true, nil
		}
		if err := s.ctx.Err(); err != nil {
			s.fail(err)
			continue
		}
		if !s.live {
			if err := s.catchUpStep(); err != nil {
				s.fail(err)
			}
			continue
		}
		if s.lagging.Load() && len(s.q) == 0 {
			// The queue overflowed: what it missed is in the log.
			if err := s.startCatchUp(false); err != nil {
				s.fail(err)
			}
			continue
		}
		if !wait {
			select {
			case rec := <-s.q:
				s.take(rec)
				continue
			default:
				return Change{}, false, nil
			}
		}
		select {
		case rec := <-s.q:
			s.take(rec)
		case <-s.ctx.Done():
		case <-s.db.ol.subs.done:
			s.fail(errs.ErrClosed)
		}
	}
}

// take queues the changes of a live record.
func (s *Subscription) take(rec []byte) {
	if err := s.waitVisible(rec); err != nil {
		s.fail(err)
		return
	}
	if err := s.add(rec); err != nil {
		s.fail(err)
	}
}

func (s *Subscription) fail(err error) {
	if s.err == nil {
		s.err = err
	}
	s.Close()
}

// catchUpStep reads the next record of the catch-up range, or switches to
// live changes at its end.
func (s *Subscription) catchUpStep() error {
	select {
	case <-s.db.ol.subs.done:
		return errs.ErrClosed
	default:
	}
	for s.reader == nil {
		if len(s.segs) == 0 {
			// Everything up to upTo is read; it must be visible before
			// it is delivered, as live changes are.
			if err := s.waitSeq(s.upTo); err != nil {
				return err
			}
			s.live = true
			return nil
		}
		g := s.segs[0]
		s.segs = s.segs[1:]
		if g.archived {
			return s.addArchive(g.num)
		}
		r, err := wal.OpenSegmentPrefix(s.db.fs, s.db.dir, g.num, g.limit)
		if err != nil {
			if s.db.closed.Load() {
				return errs.ErrClosed
			}
			if errors.Is(err, os.ErrNotExist) && g.limit < 0 {
				// Archived since the listing.
				return s.addArchive(g.num)
			}
			return err
		}
		s.reader = r
	}
	rec, err := s.reader.Next()
	if err != nil {
		s.reader.Close()
		s.reader = nil
		if isEOF(err) {
			return nil
		}
		return err
	}
	return s.add(rec)
}

// add decodes the changes of a record that lie after the position.
func (s *Subscription) add(rec []byte) error {
	return decodeRecord(rec, s.db.ol.self, func(pos Position, op *oplog.Op, class opClass) error {
		if !class.history() || pos.Seq > uint64(s.upToLimit()) || !s.pos.Less(pos) {
			return nil
		}
		c := Change{Pos: pos, Op: *op}
		c.Op.Key = bytes.Clone(op.Key)
		c.Op.Field = bytes.Clone(op.Field)
		c.Op.Value = bytes.Clone(op.Value)
		s.pending = append(s.pending, c)
		return nil
	})
}

// addArchive queues the changes of archived segment num that lie after
// the position, in log order.
func (s *Subscription) addArchive(num layout.FileNum) error {
	a, err := s.db.readArchive(num)
	if err != nil {
		if s.db.closed.Load() {
			return errs.ErrClosed
		}
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: segment %s was dropped while the feed caught up", ErrHistoryUnavailable, num)
		}
		return err
	}
	if a.pos == nil {
		return fmt.Errorf("%w: position %d/%d is in archived history written without positions (segment %s)",
			ErrHistoryUnavailable, s.pos.Seq, s.pos.Index, num)
	}
	start := len(s.pending)
	for i, p := range a.pos {
		if !a.class(i).history() || p.Seq > uint64(s.upToLimit()) || !s.pos.Less(p) {
			continue
		}
		s.pending = append(s.pending, Change{Pos: p, Op: a.stream.Ops[i]})
	}
	added := s.pending[start:]
	sort.Slice(added, func(i, j int) bool { return added[i].Pos.Less(added[j].Pos) })
	return nil
}

// historyGap reports whether history after from is gone: an operation
// after from was in a segment retention dropped. segs are the retained
// segments; floorSet says some history was dropped. A feed that fell
// behind its live queue (first false) is checked again: retention may
// have dropped what it had not read yet.
func (db *DB) historyGap(from Position, segs []*segIndex, floorSet, first bool) bool {
	db.ol.mu.Lock()
	ff, ok := db.ol.feedFloor, db.ol.feedFloorSet
	db.ol.mu.Unlock()
	if ok {
		return from.Less(ff)
	}
	// History dropped before the last dropped position was recorded:
	// judge by the first retained record.
	return first && floorSet && len(segs) > 0 && uint64(segs[0].firstSeq) > from.Seq+1
}

// upToLimit bounds what catch-up delivers: records past upTo arrive
// through the live queue.
func (s *Subscription) upToLimit() lsm.SeqNum {
	if s.live {
		return lsm.MaxSeqNum
	}
	return s.upTo
}

func (s *Subscription) waitVisible(rec []byte) error {
	r, err := batchrepr.NewReader(rec)
	if err != nil {
		return err
	}
	return s.waitSeq(r.Seq + lsm.SeqNum(r.Count) - 1)
}

// waitSeq waits until seq is visible to readers, and makes it durable:
// a change that leaves the process must survive a crash, or its position
// would be reused for another.
func (s *Subscription) waitSeq(seq lsm.SeqNum) error {
	ss := &s.db.ol.subs
	for {
		ch := *ss.pub.Load()
		if lsm.SeqNum(s.db.visible.Load()) >= seq {
			return s.db.syncThrough(seq)
		}
		select {
		case <-ch:
		case <-s.ctx.Done():
			return s.ctx.Err()
		case <-ss.done:
			return errs.ErrClosed
		}
	}
}

// Position returns the position of the last change delivered.
func (s *Subscription) Position() Position { return s.pos }

// Close ends the subscription.
func (s *Subscription) Close() error {
	if s.reader != nil {
		s.reader.Close()
		s.reader = nil
	}
	if s.reg {
		ss := &s.db.ol.subs
		ss.mu.Lock()
		delete(ss.set, s)
		ss.mu.Unlock()
		ss.n.Add(-1)
		s.reg = false
	}
	if s.err == nil {
		s.err = errs.ErrClosed
	}
	return nil
}

package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/oplog"
)

// Message headers. Every message of the stream carries the range of its
// publisher's operations it holds, (From, To], and their count; the body
// is a change stream (ExportChanges' format) holding exactly that range.
const (
	HeaderReplica = "Pluresdb-Replica"
	HeaderFrom    = "Pluresdb-From"
	HeaderTo      = "Pluresdb-To"
	HeaderOps     = "Pluresdb-Ops"
)

// requestTimeout bounds each JetStream request. A request sent while the
// connection is down may never be answered: the next try must come soon.
const requestTimeout = 2 * time.Second

// reqCtx is the context of one JetStream request.
func (r *Replicator) reqCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.ctx, requestTimeout)
}

// Replicator replicates one database through a JetStream stream: it
// publishes this replica's own durable operations to its subject and
// imports every other replica's (see the package doc).
type Replicator struct {
	db      *pluresdb.DB
	nc      *nats.Conn
	js      jetstream.JetStream
	cfg     Config
	self    oplog.ReplicaID
	subject string
	stream  jetstream.Stream
	objs    jetstream.ObjectStore

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	pubMu       sync.Mutex // one publishing round at a time
	published   uint64     // under pubMu: own operations up to here are in the stream
	lastSubjSeq uint64     // under pubMu: stream sequence of the last message on subject (0: none)

	peersMu sync.Mutex
	running map[oplog.ReplicaID]*peerWorker

	snapMu sync.Mutex // one snapshot import at a time

	st stats

	stopOnce sync.Once
	stopErr  error
}

// Start creates (or updates) the stream and the snapshot bucket, learns
// from the stream where this replica's publishing left off, loads the
// newest snapshot if the replica is new (see Config.NoBootstrap), and
// starts publishing and consuming. It refuses, wrapping
// pluresdb.ErrRewound, a replica whose own operations in the stream go
// beyond its own last (it was restored from an older copy: its peers hold
// writes it lacks, and its next writes would reuse their numbers).
//
// The database should be opened without Options.NoSync: an import is
// acknowledged once ImportChanges returns, durable only then. (Nothing
// is lost either way: the version vector, not the acknowledgement, says
// where a consumer resumes.) Stop the replicator before closing the
// database; the caller owns nc and db.
func Start(db *pluresdb.DB, nc *nats.Conn, cfg Config) (*Replicator, error) {
	if db == nil || nc == nil {
		return nil, errors.New("replication: Start needs a database and a connection")
	}
	cfg, err := cfg.withDefaults(nc.MaxPayload())
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("replication: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Replicator{
		db: db, nc: nc, js: js, cfg: cfg, self: db.ReplicaID(),
		ctx: ctx, cancel: cancel,
		running: map[oplog.ReplicaID]*peerWorker{},
		st: stats{
			peers:        map[oplog.ReplicaID]*PeerStatus{},
			firstPending: map[oplog.ReplicaID]time.Time{},
		},
	}
	r.subject = r.subjectOf(r.self)
	if err := r.setUp(); err != nil {
		cancel()
		return nil, err
	}
	if !cfg.NoBootstrap && len(cfg.Prefixes) == 0 && r.isNew() {
		if _, err := r.loadSnapshot(ctx); err != nil && !errors.Is(err, errNoSnapshot) {
			cancel()
			return nil, fmt.Errorf("replication: bootstrap: %w", err)
		}
	}
	r.wg.Add(2)
	go r.publishLoop()
	go r.discoverLoop()
	if cfg.SnapshotInterval > 0 && len(cfg.Prefixes) == 0 {
		r.wg.Add(1)
		go r.snapshotLoop()
	}
	return r, nil
}

func (r *Replicator) subjectOf(id oplog.ReplicaID) string {
	return r.cfg.Name + ".ops." + id.String()
}

func (r *Replicator) setUp() error {
	ctx, cancel := context.WithTimeout(r.ctx, 4*requestTimeout)
	defer cancel()
	stream, err := r.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        r.cfg.Name,
		Description: "PluresDB replication: each replica's operations on its own subject",
		Subjects:    []string{r.cfg.Name + ".ops.*"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      r.cfg.Retention,
		Duplicates:  r.cfg.DuplicateWindow,
		Storage:     jetstream.FileStorage,
		Replicas:    r.cfg.StreamReplicas,
	})
	if err != nil {
		return fmt.Errorf("replication: stream %s: %w", r.cfg.Name, err)
	}
	r.stream = stream
	objs, err := r.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      r.cfg.Name + "-snapshots",
		Description: "PluresDB replication: the newest state snapshot of each replica",
		Storage:     jetstream.FileStorage,
		Replicas:    r.cfg.StreamReplicas,
	})
	if err != nil {
		return fmt.Errorf("replication: snapshot bucket: %w", err)
	}
	r.objs = objs
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	if err := r.readPublished(ctx); err != nil {
		return err
	}
	if own := r.db.VersionVector()[r.self]; r.published > own {
		return fmt.Errorf("%w: the stream %s holds this replica's (%s) operations up to %d, its own last is %d; "+
			"do not write on this copy: rejoin as a new replica (a new directory bootstrapped from a snapshot)",
			pluresdb.ErrRewound, r.cfg.Name, r.self, r.published, own)
	}
	r.st.mu.Lock()
	r.st.published = r.published
	r.st.mu.Unlock()
	return nil
}

// readPublished reads the last message of this replica's subject: the
// stream is the record of what was published. Called with pubMu held.
func (r *Replicator) readPublished(ctx context.Context) error {
	m, err := r.stream.GetLastMsgForSubject(ctx, r.subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		r.lastSubjSeq = 0
		return nil
	}
	if err != nil {
		return fmt.Errorf("replication: reading the last message of %s: %w", r.subject, err)
	}
	_, to, err := parseRange(m.Header)
	if err != nil {
		return fmt.Errorf("replication: the last message of %s (stream sequence %d): %w", r.subject, m.Sequence, err)
	}
	r.lastSubjSeq = m.Sequence
	r.published = max(r.published, to)
	return nil
}

// isNew says whether the database holds no other replica's operations.
func (r *Replicator) isNew() bool {
	for id, seq := range r.db.VersionVector() {
		if id != r.self && seq > 0 {
			return false
		}
	}
	return true
}

// Stop stops the loops, waits for them, then publishes what is left of
// this replica's durable operations (within a few seconds), and returns
// that last round's error. It neither closes the connection nor the
// database.
func (r *Replicator) Stop() error {
	r.stopOnce.Do(func() {
		r.cancel()
		r.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 2*requestTimeout)
		defer cancel()
		r.stopErr = r.publishRound(ctx)
	})
	return r.stopErr
}

// Flush publishes this replica's durable operations not yet in the
// stream and returns when the stream holds them (or on error).
func (r *Replicator) Flush(ctx context.Context) error { return r.publishRound(ctx) }

func (r *Replicator) logf(format string, args ...any) {
	if r.cfg.Logf != nil {
		r.cfg.Logf(format, args...)
	}
}

// sleep waits d or until the replicator stops; false if it stopped.
func (r *Replicator) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ---- publishing ----

func (r *Replicator) publishLoop() {
	defer r.wg.Done()
	for r.sleep(r.cfg.PublishInterval) {
		if err := r.publishRound(r.ctx); err != nil && r.ctx.Err() == nil {
			r.logf("replication: publish: %v", err)
			r.sleep(r.cfg.RetryBackoff)
		}
	}
}

// publishRound publishes every durable operation of this replica beyond
// what the stream holds.
func (r *Replicator) publishRound(ctx context.Context) (err error) {
	r.pubMu.Lock()
	defer r.pubMu.Unlock()
	defer func() {
		r.st.mu.Lock()
		r.st.published = r.published
		if err != nil {
			r.st.m.Errors++
			r.st.publishError = err.Error()
		} else {
			r.st.publishError = ""
		}
		r.st.mu.Unlock()
	}()
	if r.db.VersionVector()[r.self] <= r.published {
		return nil
	}
	// Only this replica's own operations: upTo names no other replica.
	// ExportChangesUpTo exports durable operations only.
	var buf bytes.Buffer
	_, err = r.db.ExportChangesUpTo(&buf, oplog.VersionVector{r.self: r.published}, oplog.VersionVector{r.self: math.MaxUint64})
	if errors.Is(err, pluresdb.ErrHistoryUnavailable) {
		// This replica's history after what it published is gone
		// (Retention passed while it was not publishing). Its peers get
		// those operations from a snapshot: publish one, then go on
		// from its entry. The next message starts past what peers have,
		// which sends them to the snapshot.
		info, serr := r.PublishSnapshot(ctx)
		if serr != nil {
			return fmt.Errorf("replication: own history after %d no longer retained (%w), and publishing a snapshot failed: %w", r.published, err, serr)
		}
		r.logf("replication: own history after %d no longer retained: published a snapshot up to %d", r.published, info.VersionVector[r.self])
		r.published = max(r.published, info.VersionVector[r.self])
		return nil
	}
	if err != nil {
		return fmt.Errorf("replication: exporting own operations after %d: %w", r.published, err)
	}
	pieces, split, err := splitOwn(buf.Bytes(), r.self, r.cfg.MaxMessageBytes)
	if err != nil {
		return err
	}
	if split > 0 {
		r.st.mu.Lock()
		r.st.m.SplitTransactions += uint64(split)
		r.st.mu.Unlock()
	}
	for _, p := range pieces {
		if p.to <= r.published {
			continue
		}
		if err := r.publishPiece(ctx, p); err != nil {
			return err
		}
		r.published = p.to
	}
	return nil
}

// publishPiece publishes one message, retrying on failure with the same
// message ID (the stream drops a duplicate within its window) and
// expecting the subject's last sequence to be the one this replica
// published last (a second publisher of the same replica is refused).
func (r *Replicator) publishPiece(ctx context.Context, p piece) error {
	id := fmt.Sprintf("%s:%d:%d", r.self, p.from, p.to)
	for attempt := 0; ; attempt++ {
		msg := nats.NewMsg(r.subject)
		msg.Data = p.data
		msg.Header.Set(HeaderReplica, r.self.String())
		msg.Header.Set(HeaderFrom, strconv.FormatUint(p.from, 10))
		msg.Header.Set(HeaderTo, strconv.FormatUint(p.to, 10))
		msg.Header.Set(HeaderOps, strconv.Itoa(p.ops))
		pctx, cancel := context.WithTimeout(ctx, requestTimeout)
		ack, err := r.js.PublishMsg(pctx, msg, jetstream.WithMsgID(id), jetstream.WithExpectLastSequencePerSubject(r.lastSubjSeq))
		cancel()
		if err == nil {
			r.lastSubjSeq = ack.Sequence
			r.st.mu.Lock()
			if !ack.Duplicate {
				r.st.m.MessagesOut++
				r.st.m.OperationsOut += uint64(p.ops)
				r.st.m.BytesOut += uint64(len(p.data))
			}
			r.st.mu.Unlock()
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if wrongLastSeq(err) {
			// The subject moved: an earlier attempt was stored after
			// all, or its last message aged out. Ask the stream.
			rctx, cancel := context.WithTimeout(ctx, requestTimeout)
			prev := r.published
			r.published = 0
			rerr := r.readPublished(rctx)
			cancel()
			last := r.published
			r.published = prev
			if rerr != nil {
				return rerr
			}
			if last >= p.to {
				return nil
			}
			if last > p.from {
				return fmt.Errorf("replication: the stream holds this replica's operations up to %d, inside the piece (%d, %d]: another publisher for %s?", last, p.from, p.to, r.self)
			}
			continue
		}
		r.st.mu.Lock()
		r.st.m.Errors++
		r.st.publishError = err.Error()
		r.st.mu.Unlock()
		r.logf("replication: publishing (%d, %d] (attempt %d): %v", p.from, p.to, attempt+1, err)
		if !r.sleepCtx(ctx, r.cfg.RetryBackoff) {
			return ctx.Err()
		}
	}
}

func (r *Replicator) sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func wrongLastSeq(err error) bool {
	var je jetstream.JetStreamError
	if errors.As(err, &je) && je.APIError() != nil {
		c := je.APIError().ErrorCode
		return c == jetstream.JSErrCodeStreamWrongLastSequence || c == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return false
}

// parseRange reads a message's (From, To] headers.
func parseRange(h nats.Header) (from, to uint64, err error) {
	from, err1 := strconv.ParseUint(h.Get(HeaderFrom), 10, 64)
	to, err2 := strconv.ParseUint(h.Get(HeaderTo), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("replication: message headers %s/%s: %w", HeaderFrom, HeaderTo, err)
	}
	if from > to {
		return 0, 0, fmt.Errorf("replication: message range (%d, %d] runs backwards", from, to)
	}
	return from, to, nil
}

// ---- snapshots ----

var errNoSnapshot = errors.New("replication: no snapshot of another replica in the bucket")

func (r *Replicator) snapshotName(id oplog.ReplicaID) string { return "snapshot-" + id.String() }

func (r *Replicator) snapshotLoop() {
	defer r.wg.Done()
	for r.sleep(r.cfg.SnapshotInterval) {
		if _, err := r.PublishSnapshot(r.ctx); err != nil && r.ctx.Err() == nil {
			r.logf("replication: snapshot: %v", err)
		}
	}
}

// PublishSnapshot writes a state snapshot of the database (ExportSnapshot)
// to the bucket, as this replica's object (replacing its previous one).
// A selective replica (Config.Prefixes) publishes none: its state lacks
// the other keys, and its version vector the peers it imports.
func (r *Replicator) PublishSnapshot(ctx context.Context) (pluresdb.SnapshotInfo, error) {
	if len(r.cfg.Prefixes) > 0 {
		return pluresdb.SnapshotInfo{}, errors.New("replication: a selective replica (Config.Prefixes) publishes no snapshot")
	}
	pr, pw := io.Pipe()
	type result struct {
		info pluresdb.SnapshotInfo
		err  error
	}
	done := make(chan result, 1)
	go func() {
		info, err := r.db.ExportSnapshot(pw)
		pw.CloseWithError(err)
		done <- result{info, err}
	}()
	_, err := r.objs.Put(ctx, jetstream.ObjectMeta{
		Name:        r.snapshotName(r.self),
		Description: "PluresDB state snapshot of replica " + r.self.String(),
	}, pr)
	pr.CloseWithError(errors.Join(err, io.ErrClosedPipe))
	res := <-done
	if err = errors.Join(res.err, err); err != nil {
		r.st.mu.Lock()
		r.st.m.Errors++
		r.st.mu.Unlock()
		return res.info, fmt.Errorf("replication: publishing a snapshot: %w", err)
	}
	r.st.mu.Lock()
	r.st.m.SnapshotsOut++
	r.st.m.SnapshotBytesOut += uint64(res.info.Bytes)
	r.st.mu.Unlock()
	return res.info, nil
}

// loadSnapshot imports the newest snapshot of another replica.
func (r *Replicator) loadSnapshot(ctx context.Context) (pluresdb.SnapshotInfo, error) {
	r.snapMu.Lock()
	defer r.snapMu.Unlock()
	lctx, cancel := context.WithTimeout(ctx, requestTimeout)
	list, err := r.objs.List(lctx)
	cancel()
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return pluresdb.SnapshotInfo{}, errNoSnapshot
	}
	if err != nil {
		return pluresdb.SnapshotInfo{}, fmt.Errorf("replication: listing snapshots: %w", err)
	}
	var newest *jetstream.ObjectInfo
	for _, o := range list {
		if o.Deleted || o.Name == r.snapshotName(r.self) || !strings.HasPrefix(o.Name, "snapshot-") {
			continue
		}
		if newest == nil || o.ModTime.After(newest.ModTime) {
			newest = o
		}
	}
	if newest == nil {
		return pluresdb.SnapshotInfo{}, errNoSnapshot
	}
	res, err := r.objs.Get(ctx, newest.Name)
	if err != nil {
		return pluresdb.SnapshotInfo{}, fmt.Errorf("replication: reading snapshot %s: %w", newest.Name, err)
	}
	defer res.Close()
	info, err := r.db.ImportSnapshot(res)
	if err != nil {
		r.st.mu.Lock()
		r.st.m.Errors++
		r.st.mu.Unlock()
		return info, fmt.Errorf("replication: importing snapshot %s: %w", newest.Name, err)
	}
	r.st.mu.Lock()
	r.st.m.SnapshotsIn++
	r.st.m.SnapshotBytesIn += uint64(info.Bytes)
	r.st.mu.Unlock()
	r.logf("replication: loaded snapshot %s (%d documents, %d counters)", newest.Name, info.Documents, info.Counters)
	return info, nil
}

// ---- status ----

// Status returns the replicator's state: what it published, and per peer
// what it imported, its lag and its errors.
func (r *Replicator) Status() Status {
	own := r.db.VersionVector()[r.self]
	r.st.mu.Lock()
	defer r.st.mu.Unlock()
	s := Status{
		Replica: r.self, Stream: r.cfg.Name, Subject: r.subject,
		Published: r.st.published, Local: own, PublishError: r.st.publishError,
		Metrics: r.st.m,
	}
	now := time.Now()
	for _, p := range r.st.peers {
		ps := *p
		ps.Imported = r.have(p.Replica)
		ps.Published = max(ps.Published, ps.Imported) // the last look at the stream may be older
		if ps.Published > ps.Imported {
			ps.LagSeq = ps.Published - ps.Imported
			if t, ok := r.st.firstPending[p.Replica]; ok {
				ps.LagSeconds = now.Sub(t).Seconds()
			}
		}
		s.Peers = append(s.Peers, ps)
	}
	slices.SortFunc(s.Peers, func(a, b PeerStatus) int { return a.Replica.Compare(b.Replica) })
	return s
}

// have is what this replica holds of peer's operations: its version
// vector's entry, or with Config.Prefixes the least of the prefix
// cursors (PrefixVersionVector).
func (r *Replicator) have(peer oplog.ReplicaID) uint64 {
	if len(r.cfg.Prefixes) == 0 {
		return r.db.VersionVector()[peer]
	}
	have := uint64(math.MaxUint64)
	for _, p := range r.cfg.Prefixes {
		have = min(have, r.db.PrefixVersionVector(p)[peer])
	}
	return have
}

package replication

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/oplog"
)

// discoverLoop finds the peers' subjects in the stream, starts a worker
// for each new one, and reads each peer's last message (for Status).
func (r *Replicator) discoverLoop() {
	defer r.wg.Done()
	for {
		if err := r.discover(); err != nil && r.ctx.Err() == nil {
			r.logf("replication: discovering peers: %v", err)
		}
		if !r.sleep(r.cfg.DiscoverInterval) {
			return
		}
	}
}

func (r *Replicator) discover() error {
	ctx, cancel := context.WithTimeout(r.ctx, requestTimeout)
	defer cancel()
	info, err := r.stream.Info(ctx, jetstream.WithSubjectFilter(r.cfg.Name+".ops.*"))
	if err != nil {
		return err
	}
	prefix := r.cfg.Name + ".ops."
	for subj := range info.State.Subjects {
		id, err := oplog.ParseReplicaID(strings.TrimPrefix(subj, prefix))
		if err != nil || id == r.self {
			continue
		}
		r.peersMu.Lock()
		if r.running[id] == nil && r.ctx.Err() == nil {
			// A worker starts by repositioning the consumer: the
			// version vector says where to resume, and deliveries a
			// previous process took but never acknowledged (it was
			// killed) would hold the consumer until they time out.
			w := &peerWorker{r: r, peer: id, subject: subj, durable: r.self.String() + "_" + id.String(), reposition: true}
			r.running[id] = w
			r.st.mu.Lock()
			r.st.peer(id)
			r.st.mu.Unlock()
			r.wg.Add(1)
			go w.run()
		}
		r.peersMu.Unlock()
	}
	// The peers' positions, and for a peer not caught up the age of its
	// oldest message not imported yet.
	r.peersMu.Lock()
	workers := make([]*peerWorker, 0, len(r.running))
	for _, w := range r.running {
		workers = append(workers, w)
	}
	r.peersMu.Unlock()
	for _, w := range workers {
		m, err := r.stream.GetLastMsgForSubject(ctx, w.subject)
		if err != nil {
			continue
		}
		_, to, err := parseRange(m.Header)
		if err != nil {
			continue
		}
		have := r.have(w.peer)
		var pending time.Time
		if to > have {
			r.st.mu.Lock()
			next := r.st.peer(w.peer).lastStreamSeq + 1
			r.st.mu.Unlock()
			if nm, err := r.stream.GetMsg(ctx, next, jetstream.WithGetMsgSubject(w.subject)); err == nil {
				pending = nm.Time
			}
		}
		r.st.mu.Lock()
		p := r.st.peer(w.peer)
		p.Published, p.PublishedAt = to, m.Time
		if pending.IsZero() {
			delete(r.st.firstPending, w.peer)
		} else {
			r.st.firstPending[w.peer] = pending
		}
		r.st.mu.Unlock()
	}
	return nil
}

// peerWorker imports one peer's subject through a durable pull consumer
// named after this replica and the peer.
type peerWorker struct {
	r       *Replicator
	peer    oplog.ReplicaID
	subject string
	durable string
	// reposition: the consumer must be moved to the first message this
	// replica lacks before the next fetch (after a gap, a refusal, or at
	// its creation).
	reposition   bool
	needSnapshot bool
}

// stuckFetches is how many empty fetches in a row (of about a second
// each) while the stream has more of the peer make the worker reposition
// its consumer.
const stuckFetches = 5

// behind says whether the peer's last message in the stream (as of the
// last discovery) holds operations this replica lacks.
func (w *peerWorker) behind() bool {
	w.r.st.mu.Lock()
	published := w.r.st.peer(w.peer).Published
	w.r.st.mu.Unlock()
	return published > w.r.have(w.peer)
}

// errReposition ends a batch: the consumer is to be moved.
var errReposition = errors.New("replication: consumer to be repositioned")

// errBehindStream: the operations this replica lacks of a peer are no
// longer in the stream.
var errBehindStream = errors.New("replication: the peer's operations this replica lacks are no longer in the stream")

func (w *peerWorker) run() {
	r := w.r
	defer r.wg.Done()
	for r.ctx.Err() == nil {
		err := w.consume()
		if err == nil || r.ctx.Err() != nil {
			continue
		}
		r.st.mu.Lock()
		p := r.st.peer(w.peer)
		p.Errors++
		p.LastError = err.Error()
		p.BehindStream = errors.Is(err, errBehindStream)
		r.st.m.Errors++
		r.st.mu.Unlock()
		r.logf("replication: peer %s: %v", w.peer, err)
		if !r.sleep(r.cfg.RetryBackoff) {
			return
		}
	}
}

// consume fetches and imports messages until an error or Stop.
func (w *peerWorker) consume() error {
	r := w.r
	cons, err := w.consumer()
	if err != nil {
		return err
	}
	idle := 0 // fetches in a row that brought nothing while the peer had more
	for r.ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(r.ctx, time.Second)
		batch, err := cons.Fetch(r.cfg.FetchBatch, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			return fmt.Errorf("fetching from %s: %w", w.subject, err)
		}
		var stop error
		got := 0
		for m := range batch.Messages() {
			got++
			if stop != nil {
				continue // left unacknowledged: the consumer is repositioned
			}
			stop = w.handle(m)
		}
		cancel()
		if got == 0 && w.behind() {
			idle++
		} else {
			idle = 0
		}
		if stop == nil && idle >= stuckFetches {
			// The stream has more of the peer than this replica, and the
			// consumer delivers nothing: its state is off (deliveries
			// lost, a consumer edited by hand). Start it again.
			idle = 0
			stop = w.gap("the consumer delivers nothing while the peer has more")
		}
		if stop == nil {
			if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) && r.ctx.Err() == nil {
				return fmt.Errorf("fetching from %s: %w", w.subject, err)
			}
			// A clean fetch: an earlier error is over.
			r.st.mu.Lock()
			p := r.st.peer(w.peer)
			p.LastError, p.BehindStream = "", false
			r.st.mu.Unlock()
			continue
		}
		w.reposition = true
		if !errors.Is(stop, errReposition) {
			return stop
		}
		if cons, err = w.consumer(); err != nil {
			return err
		}
	}
	return nil
}

// handle imports one message. A message this replica holds already is
// acknowledged and skipped; one that starts past what it holds, or that
// the engine refuses, is left unacknowledged and ends the batch.
func (w *peerWorker) handle(m jetstream.Msg) error {
	r := w.r
	meta, err := m.Metadata()
	if err != nil {
		return w.refused(fmt.Errorf("message metadata: %w", err))
	}
	from, to, err := parseRange(m.Headers())
	if err != nil {
		return w.refused(fmt.Errorf("stream sequence %d: %w", meta.Sequence.Stream, err))
	}
	have := r.have(w.peer)
	if to <= have {
		_ = m.Ack()
		r.st.mu.Lock()
		p := r.st.peer(w.peer)
		p.Duplicates++
		p.lastStreamSeq = meta.Sequence.Stream
		r.st.m.Duplicates++
		r.st.mu.Unlock()
		return nil
	}
	if from > have {
		return w.gap(fmt.Sprintf("stream sequence %d holds (%d, %d], this replica has up to %d", meta.Sequence.Stream, from, to, have))
	}
	var n int
	if len(r.cfg.Prefixes) == 0 {
		n, err = r.db.ImportChanges(bytes.NewReader(m.Data()))
	} else {
		n, err = importSelective(r.db, m.Data(), w.peer, to, r.cfg.Prefixes)
	}
	switch {
	case errors.Is(err, pluresdb.ErrCausalGap):
		return w.gap(err.Error())
	case errors.Is(err, pluresdb.ErrHistoryUnavailable):
		// ErrStaleReplica: this replica collected tombstones the peer's
		// operations may need; the engine asks for a snapshot.
		w.needSnapshot = true
		return w.refused(fmt.Errorf("stream sequence %d: %w", meta.Sequence.Stream, err))
	case err != nil:
		return w.refused(fmt.Errorf("stream sequence %d (%d, %d]: %w", meta.Sequence.Stream, from, to, err))
	}
	// Durable: ImportChanges syncs its records before it returns.
	_ = m.Ack()
	r.st.mu.Lock()
	p := r.st.peer(w.peer)
	p.Messages++
	p.Operations += uint64(n)
	p.BytesIn += uint64(len(m.Data()))
	p.lastStreamSeq = meta.Sequence.Stream
	p.LastError = ""
	p.BehindStream = false
	r.st.m.MessagesIn++
	r.st.m.OperationsIn += uint64(n)
	r.st.m.BytesIn += uint64(len(m.Data()))
	r.st.mu.Unlock()
	return nil
}

func (w *peerWorker) gap(what string) error {
	r := w.r
	r.st.mu.Lock()
	r.st.peer(w.peer).CatchUps++
	r.st.m.CatchUps++
	r.st.mu.Unlock()
	r.logf("replication: peer %s: gap (%s): catching up", w.peer, what)
	return errReposition
}

func (w *peerWorker) refused(err error) error {
	r := w.r
	r.st.mu.Lock()
	r.st.peer(w.peer).Refusals++
	r.st.m.Refusals++
	r.st.mu.Unlock()
	return fmt.Errorf("refused (left unacknowledged, retried): %w", err)
}

// consumer returns the peer's durable consumer, creating it, or moving
// it to the first message this replica lacks, when needed. Each request
// has a timeout of its own: one sent while the connection was down may
// get no answer, and the next try should not wait for it long.
func (w *peerWorker) consumer() (jetstream.Consumer, error) {
	r := w.r
	if !w.reposition {
		ctx, cancel := r.reqCtx()
		c, err := r.stream.Consumer(ctx, w.durable)
		cancel()
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, err
		}
	}
	if w.needSnapshot {
		if err := w.snapshot(r.ctx); err != nil {
			return nil, err
		}
	}
	start, err := w.locate()
	if errors.Is(err, errBehindStream) {
		if err := w.snapshot(r.ctx); err != nil {
			return nil, err
		}
		start, err = w.locate()
	}
	if err != nil {
		return nil, err
	}
	ctx, cancel := r.reqCtx()
	err = r.stream.DeleteConsumer(ctx, w.durable)
	cancel()
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	ctx, cancel = r.reqCtx()
	defer cancel()
	c, err := r.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:           w.durable,
		Description:       "PluresDB replica " + r.self.String() + " importing " + w.peer.String(),
		FilterSubject:     w.subject,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           30 * time.Second,
		MaxAckPending:     4 * r.cfg.FetchBatch,
		InactiveThreshold: r.cfg.Retention,
	})
	if err != nil {
		return nil, err
	}
	w.reposition = false
	return c, nil
}

func (w *peerWorker) snapshot(ctx context.Context) error {
	r := w.r
	if len(r.cfg.Prefixes) > 0 {
		return fmt.Errorf("%w (a selective replica cannot bootstrap from a full snapshot: rebuild it)", errBehindStream)
	}
	_, err := r.loadSnapshot(ctx)
	if errors.Is(err, errNoSnapshot) {
		return fmt.Errorf("%w, and %w", errBehindStream, err)
	}
	if err == nil {
		w.needSnapshot = false
	}
	return err
}

// locate returns the stream sequence of the first message of the peer
// holding operations this replica lacks (past the stream's end if none),
// by a binary search over the stream (messages of one subject hold
// ascending ranges). errBehindStream if that message does not follow
// what this replica has.
func (w *peerWorker) locate() (uint64, error) {
	r := w.r
	have := r.have(w.peer)
	ctx, cancel := r.reqCtx()
	info, err := r.stream.Info(ctx)
	cancel()
	if err != nil {
		return 0, err
	}
	first, last := max(info.State.FirstSeq, 1), info.State.LastSeq
	get := func(seq uint64) (from, to, at uint64, found bool, err error) {
		ctx, cancel := r.reqCtx()
		defer cancel()
		m, err := r.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(w.subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, 0, 0, false, nil
		}
		if err != nil {
			return 0, 0, 0, false, err
		}
		from, to, err = parseRange(m.Header)
		if err != nil {
			return 0, 0, 0, false, fmt.Errorf("stream sequence %d: %w", m.Sequence, err)
		}
		return from, to, m.Sequence, true, nil
	}
	from, to, at, found, err := get(first)
	if err != nil || !found {
		return last + 1, err
	}
	if from > have {
		return 0, fmt.Errorf("%w: its first message (stream sequence %d) holds (%d, %d], this replica has up to %d", errBehindStream, at, from, to, have)
	}
	if to > have {
		return at, nil
	}
	lo, hi := at, last+1
	ans, ansFrom := last+1, uint64(0)
	for lo+1 < hi {
		mid := lo + (hi-lo)/2
		from, to, at, found, err := get(mid)
		if err != nil {
			return 0, err
		}
		switch {
		case !found:
			hi = mid
		case to > have:
			hi, ans, ansFrom = mid, at, from
		default:
			lo = at
		}
	}
	if ans <= last && ansFrom > have {
		return 0, fmt.Errorf("%w: stream sequence %d holds (%d, ...], this replica has up to %d", errBehindStream, ans, ansFrom, have)
	}
	return ans, nil
}

package replication

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/plures/pluresdb/oplog"
)

// Status is a replicator's state at one moment (see Replicator.Status).
type Status struct {
	Replica oplog.ReplicaID `json:"replica"`
	Stream  string          `json:"stream"`
	Subject string          `json:"subject"`
	// Published is the last sequence number of this replica's own
	// operations in the stream; Local its own last (VersionVector).
	Published uint64 `json:"published"`
	Local     uint64 `json:"local"`
	// PublishError is the last publishing error, cleared by a success.
	PublishError string       `json:"publish_error,omitempty"`
	Peers        []PeerStatus `json:"peers"`
	Metrics      Metrics      `json:"metrics"`
}

// PeerStatus is what this replica knows of one peer.
type PeerStatus struct {
	Replica oplog.ReplicaID `json:"replica"`
	// Imported is the peer's last sequence number this replica holds
	// every operation up to (its version vector's entry, or with
	// Config.Prefixes the least of the prefixes' cursors).
	Imported uint64 `json:"imported"`
	// Published is the last sequence number the peer has in the stream,
	// and PublishedAt when it was published (as of the last look, every
	// Config.DiscoverInterval).
	Published   uint64    `json:"published"`
	PublishedAt time.Time `json:"published_at"`
	// LagSeq is Published - Imported when positive: sequence numbers,
	// an upper bound of the operations missing (a peer's numbers also
	// count the operations it imported). LagSeconds is the age of the
	// oldest message of the peer not imported yet (0 when none).
	LagSeq     uint64  `json:"lag_seq"`
	LagSeconds float64 `json:"lag_seconds"`
	// Messages, Operations and BytesIn count what was imported from the
	// peer; Duplicates the messages skipped as already held.
	Messages   uint64 `json:"messages"`
	Operations uint64 `json:"operations"`
	BytesIn    uint64 `json:"bytes_in"`
	Duplicates uint64 `json:"duplicates"`
	// CatchUps counts repositionings of the peer's consumer after a gap;
	// Refusals the messages the engine refused (left unacknowledged and
	// retried); Errors every failure; LastError the latest, cleared by a
	// successful import.
	CatchUps  uint64 `json:"catch_ups"`
	Refusals  uint64 `json:"refusals"`
	Errors    uint64 `json:"errors"`
	LastError string `json:"last_error,omitempty"`
	// BehindStream: the peer's operations this replica lacks are no longer
	// in the stream (aged out) and no snapshot covered them yet.
	BehindStream bool `json:"behind_stream,omitempty"`

	lastStreamSeq uint64 // the stream sequence of the last message handled
}

// Metrics are a replicator's counters since Start.
type Metrics struct {
	MessagesOut       uint64 `json:"messages_out"`
	OperationsOut     uint64 `json:"operations_out"`
	BytesOut          uint64 `json:"bytes_out"`
	SplitTransactions uint64 `json:"split_transactions"`
	MessagesIn        uint64 `json:"messages_in"`
	OperationsIn      uint64 `json:"operations_in"`
	BytesIn           uint64 `json:"bytes_in"`
	Duplicates        uint64 `json:"duplicates"`
	CatchUps          uint64 `json:"catch_ups"`
	Refusals          uint64 `json:"refusals"`
	Errors            uint64 `json:"errors"`
	SnapshotsOut      uint64 `json:"snapshots_out"`
	SnapshotBytesOut  uint64 `json:"snapshot_bytes_out"`
	SnapshotsIn       uint64 `json:"snapshots_in"`
	SnapshotBytesIn   uint64 `json:"snapshot_bytes_in"`
}

// stats guards the counters the loops update.
type stats struct {
	mu           sync.Mutex
	m            Metrics
	published    uint64
	publishError string
	peers        map[oplog.ReplicaID]*PeerStatus
	// firstPending: per peer, the publish time of the oldest message not
	// imported yet, when known.
	firstPending map[oplog.ReplicaID]time.Time
}

func (s *stats) peer(id oplog.ReplicaID) *PeerStatus {
	p := s.peers[id]
	if p == nil {
		p = &PeerStatus{Replica: id}
		s.peers[id] = p
	}
	return p
}

// Metrics returns the replicator's counters (Status().Metrics, without
// reading the peers).
func (r *Replicator) Metrics() Metrics {
	r.st.mu.Lock()
	defer r.st.mu.Unlock()
	return r.st.m
}

// Health returns nil when the replicator publishes and imports without
// trouble, or an error naming each problem: the last publishing error,
// and per peer the last error (a refusal, a failure) and whether the
// operations this replica lacks of it are gone from the stream with no
// snapshot to cover them (it fell behind the stream's retention).
func (r *Replicator) Health() error {
	s := r.Status()
	var errs []error
	if s.PublishError != "" {
		errs = append(errs, fmt.Errorf("publishing: %s", s.PublishError))
	}
	for _, p := range s.Peers {
		switch {
		case p.BehindStream:
			errs = append(errs, fmt.Errorf("peer %s: behind the stream's retention (have %d, it published %d): %s", p.Replica, p.Imported, p.Published, p.LastError))
		case p.LastError != "":
			errs = append(errs, fmt.Errorf("peer %s: %s", p.Replica, p.LastError))
		}
	}
	return errors.Join(errs...)
}

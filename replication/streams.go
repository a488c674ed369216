package replication

import (
	"bytes"
	"fmt"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/oplog"
)

// A piece is one message's worth of this replica's own operations: a
// whole change stream whose one range is (from, to].
type piece struct {
	from, to uint64
	ops      int
	data     []byte
}

// opOverhead is what an op costs in a stream beyond its key, field and
// value, at most (header, sequence number, timestamps, lengths).
const opOverhead = 48

// splitOwn turns a change stream of this replica's own operations (an
// ExportChanges whose since vector excludes every other replica) into
// pieces of at most max bytes, cut where the origin's transactions end.
// A transaction larger than max alone is cut between operations (split
// counts them); an operation that cannot fit a message is an error.
func splitOwn(data []byte, self oplog.ReplicaID, max int) (pieces []piece, split int, err error) {
	if len(data) <= max {
		vs, err := oplog.VerifyStream(bytes.NewReader(data))
		if err != nil {
			return nil, 0, err
		}
		r, err := ownRange(vs.Header, self)
		if err != nil || r == nil {
			return nil, 0, err
		}
		return []piece{{from: r.From, to: r.To, ops: vs.Count, data: data}}, 0, nil
	}
	s, err := oplog.ReadStream(bytes.NewReader(data))
	if err != nil {
		return nil, 0, err
	}
	r, err := ownRange(s.Header, self)
	if err != nil || r == nil {
		return nil, 0, err
	}
	isEnd := make(map[int]bool, len(s.Ends))
	for _, e := range s.Ends {
		isEnd[e] = true
	}
	budget := max - 256 // the header and trailer
	from := r.From
	start := 0
	for start < len(s.Ops) {
		// Take whole transactions while they fit; if the first one does
		// not, as many of its ops as fit.
		size, end, lastEnd := 0, start, -1
		for end < len(s.Ops) {
			op := &s.Ops[end]
			size += len(op.Key) + len(op.Field) + len(op.Value) + opOverhead
			if size > budget {
				break
			}
			if isEnd[end] {
				lastEnd = end
			}
			end++
		}
		var stop int // exclusive
		switch {
		case end == len(s.Ops):
			stop = end
		case lastEnd >= 0:
			stop = lastEnd + 1
		case end > start:
			stop = end
			split++
		default:
			op := &s.Ops[start]
			return nil, split, fmt.Errorf("replication: operation %s/%d (key %q) of %d bytes does not fit a message of %d bytes (raise the server's max_payload)",
				op.Replica, op.Seq, op.Key, len(op.Key)+len(op.Field)+len(op.Value), max)
		}
		to := s.Ops[stop-1].Seq
		if stop == len(s.Ops) {
			to = r.To
		}
		var buf bytes.Buffer
		sw, err := oplog.NewStreamWriter(&buf, oplog.StreamHeader{Source: s.Header.Source, Ranges: []oplog.Range{{Replica: self, From: from, To: to}}})
		if err != nil {
			return nil, split, err
		}
		for i := start; i < stop; i++ {
			if err := sw.Add(&s.Ops[i]); err != nil {
				return nil, split, err
			}
			if isEnd[i] {
				sw.EndTransaction()
			}
		}
		n, err := sw.Close()
		if err != nil {
			return nil, split, err
		}
		if buf.Len() > max {
			return nil, split, fmt.Errorf("replication: a piece of %d operations came to %d bytes, above the %d-byte message limit", n, buf.Len(), max)
		}
		pieces = append(pieces, piece{from: from, to: to, ops: n, data: buf.Bytes()})
		from, start = to, stop
	}
	return pieces, split, nil
}

// ownRange returns the stream's range of self's operations (nil: none)
// and refuses a stream that holds any other replica's.
func ownRange(h oplog.StreamHeader, self oplog.ReplicaID) (*oplog.Range, error) {
	var own *oplog.Range
	for i := range h.Ranges {
		if h.Ranges[i].Replica != self {
			return nil, fmt.Errorf("replication: the export of this replica's (%s) operations holds replica %s's", self, h.Ranges[i].Replica)
		}
		own = &h.Ranges[i]
	}
	return own, nil
}

// filterPrefix rewrites a peer's full change stream as the selective
// stream ExportChangesPrefix would have written for prefix: the same
// range, the operations on keys with the prefix, the transaction ends
// kept.
func filterPrefix(s *oplog.Stream, prefix []byte) ([]byte, error) {
	var buf bytes.Buffer
	h := oplog.StreamHeader{Source: s.Header.Source, Prefix: prefix, Ranges: s.Header.Ranges}
	sw, err := oplog.NewStreamWriter(&buf, h)
	if err != nil {
		return nil, err
	}
	e := 0
	for i := range s.Ops {
		if bytes.HasPrefix(s.Ops[i].Key, prefix) {
			if err := sw.Add(&s.Ops[i]); err != nil {
				return nil, err
			}
		}
		if e < len(s.Ends) && s.Ends[e] == i {
			sw.EndTransaction()
			e++
		}
	}
	if _, err := sw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// importSelective imports a peer's message through the engine's prefix
// cursors: one selective stream per configured prefix that does not hold
// the message already. It returns the operations applied.
func importSelective(db *pluresdb.DB, data []byte, peer oplog.ReplicaID, to uint64, prefixes [][]byte) (int, error) {
	s, err := oplog.ReadStream(bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	total := 0
	for _, p := range prefixes {
		if db.PrefixVersionVector(p)[peer] >= to {
			continue
		}
		b, err := filterPrefix(s, p)
		if err != nil {
			return total, err
		}
		n, err := db.ImportChanges(bytes.NewReader(b))
		total += n
		if err != nil {
			return total, fmt.Errorf("prefix %q: %w", p, err)
		}
	}
	return total, nil
}

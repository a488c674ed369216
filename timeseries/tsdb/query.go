package tsdb

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries"
)

// Store is what the engine gives the queries: its series namespace, read
// at one consistent view, the values of chunk keys folded (a state).
type Store interface {
	// Scan calls fn for every key in [lo, hi) (keys within the series
	// namespace, as this package makes them), in key order, with its
	// value; key and value are valid during the call only.
	Scan(lo, hi []byte, fn func(key, value []byte) error) error
	// Span returns the first and the last key in [lo, hi); ok false
	// when there is none.
	Span(lo, hi []byte) (first, last []byte, ok bool, err error)
}

// Index is the engine's in-memory index of its series: their names, a
// local number each, and the label postings (timeseries.Postings). It is
// rebuilt at open from the series table (Load) and told of each series a
// commit creates (Add). Safe for concurrent use.
type Index struct {
	mu    sync.RWMutex
	ids   map[string]timeseries.SeriesID
	names []string // by ID - 1
	post  *timeseries.Postings
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{ids: map[string]timeseries.SeriesID{}, post: timeseries.NewPostings()}
}

// Has reports whether the series is known.
func (x *Index) Has(canonical string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.ids[canonical]
	return ok
}

// Add indexes a series by its canonical name (idempotent). A name that
// does not parse is an error wrapping timeseries.ErrInvalidSeries.
func (x *Index) Add(canonical string) error {
	if x.Has(canonical) {
		return nil
	}
	ls, err := timeseries.ParseSeries(canonical)
	if err != nil {
		return err
	}
	if ls.String() != canonical {
		return fmt.Errorf("%w: %q is not in canonical form (%q)", timeseries.ErrInvalidSeries, canonical, ls.String())
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.ids[canonical]; ok {
		return nil
	}
	x.names = append(x.names, canonical)
	id := timeseries.SeriesID(len(x.names))
	x.ids[canonical] = id
	x.post.Add(id, ls)
	return nil
}

// Load indexes every series of the series table.
func (x *Index) Load(st Store) error {
	lo := SeriesPrefix()
	hi := []byte{prefixSeries + 1}
	return st.Scan(lo, hi, func(key, _ []byte) error {
		name, ok := SeriesOfKey(key)
		if !ok {
			return nil
		}
		if err := x.Add(name); err != nil {
			return fmt.Errorf("series table: %w", err)
		}
		return nil
	})
}

// Len is the number of series.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.names)
}

// Select returns the canonical names of the series every matcher
// matches, sorted.
func (x *Index) Select(ms ...*timeseries.Matcher) []string {
	bm := x.post.Select(ms...)
	x.mu.RLock()
	out := make([]string, 0, bm.GetCardinality())
	it := bm.Iterator()
	for it.HasNext() {
		out = append(out, x.names[it.Next()-1])
	}
	x.mu.RUnlock()
	sort.Strings(out)
	return out
}

// Labels returns the labels of a known series.
func (x *Index) Labels(canonical string) (timeseries.Labels, bool) {
	x.mu.RLock()
	id, ok := x.ids[canonical]
	x.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return x.post.Labels(id)
}

// Postings returns the label postings (label names and values).
func (x *Index) Postings() *timeseries.Postings { return x.post }

// Query returns the samples of a series in [from, to), ascending T.
func Query(st Store, self oplog.ReplicaID, canonical string, from, to int64) ([]timeseries.Sample, error) {
	var out []timeseries.Sample
	err := scanChunks(st, canonical, from, to, func(bucket int64, value []byte) error {
		samples, err := DecodeSamplesIn(value, self, from, to)
		if err != nil {
			return fmt.Errorf("series %s, %s: %w", canonical, fmtBucket(bucket), err)
		}
		for _, s := range samples {
			if s.T >= from && s.T < to {
				out = append(out, s)
			}
		}
		return nil
	})
	return out, err
}

// Iterate calls fn with the samples of a series in [from, to), a chunk
// at a time, ascending; the slice is valid during the call only.
func Iterate(st Store, self oplog.ReplicaID, canonical string, from, to int64, fn func([]timeseries.Sample) error) error {
	buf := sampleBufs.Get().(*[]timeseries.Sample)
	defer func() {
		if cap(*buf) <= maxPooledSamples {
			sampleBufs.Put(buf)
		}
	}()
	return scanChunks(st, canonical, from, to, func(bucket int64, value []byte) error {
		var samples []timeseries.Sample
		var err error
		if IsOperand(value) {
			samples, err = DecodeSamples(value, self)
		} else {
			samples, err = decodeSamplesInto(*buf, value, from, to, true)
			*buf = samples
		}
		if err != nil {
			return fmt.Errorf("series %s, %s: %w", canonical, fmtBucket(bucket), err)
		}
		lo := sort.Search(len(samples), func(i int) bool { return samples[i].T >= from })
		hi := sort.Search(len(samples), func(i int) bool { return samples[i].T >= to })
		if lo < hi {
			return fn(samples[lo:hi])
		}
		return nil
	})
}

func scanChunks(st Store, canonical string, from, to int64, fn func(bucket int64, value []byte) error) error {
	b0, b1, ok := bucketRange(from, to)
	if !ok {
		return nil
	}
	// Only the buckets the database holds chunks of.
	first, last, ok, err := st.Span(BucketPrefix(nil, b0), BucketPrefix(nil, b1+BucketMillis))
	if err != nil || !ok {
		return err
	}
	_, fb, err := ParseChunkKey(first)
	if err != nil {
		return err
	}
	_, lb, err := ParseChunkKey(last)
	if err != nil {
		return err
	}
	// One seek per bucket that holds any chunk: from this series' key of
	// bucket b, the first key is its chunk, or another series' in b (go
	// on to b+1), or the first chunk of a later bucket (no chunk of any
	// series lies between: go on from there).
	end := min(b1, lb)
	hi := BucketPrefix(nil, end+BucketMillis)
	var key []byte
	for b := max(b0, fb); b <= end; {
		key = ChunkKey(key[:0], canonical, b)
		next := end + BucketMillis // nothing left, unless a key says otherwise
		err := st.Scan(key, hi, func(k, value []byte) error {
			name, kb, err := ParseChunkKey(k)
			if err != nil {
				return err
			}
			switch {
			case kb == b && name == canonical:
				if err := fn(b, value); err != nil {
					return err
				}
				next = b + BucketMillis
			case kb == b:
				next = b + BucketMillis
			default:
				next = kb
			}
			return errStop
		})
		if err != nil && err != errStop {
			return err
		}
		b = next
	}
	return nil
}

// errStop ends a Scan after its first key.
var errStop = errors.New("stop")

// Aggregate returns one sample per non-empty window of a series (see
// timeseries.Aggregate), streaming the chunks into a
// timeseries.Aggregator. A chunk whose samples lie wholly inside one
// window is taken from its rollup (its Summary) without decoding them,
// for every function but the quantiles (and Avg where a sum is not
// finite); so long ranges at coarse steps cost a chunk's header each. A
// Sum or Avg from rollups adds the same values in a different order than
// one over the raw samples, and may differ in its last bits. The others
// are decoded, only the cold blocks the range needs, into a buffer
// reused from query to query.
func Aggregate(st Store, self oplog.ReplicaID, canonical string, from, to, step int64, fn timeseries.Agg) ([]timeseries.Sample, error) {
	a, err := timeseries.NewAggregator(from, to, step, fn)
	if err != nil {
		return nil, err
	}
	_, quantile := fn.Quantile()
	buf := sampleBufs.Get().(*[]timeseries.Sample)
	defer func() {
		if cap(*buf) <= maxPooledSamples {
			sampleBufs.Put(buf)
		}
	}()
	err = scanChunks(st, canonical, from, to, func(bucket int64, value []byte) error {
		if !quantile && !IsOperand(value) {
			s, nonEmpty, err := StateSummary(value)
			if err != nil {
				return fmt.Errorf("series %s, %s: %w", canonical, fmtBucket(bucket), err)
			}
			if !nonEmpty {
				return nil
			}
			if BucketOf(s.FirstT) != bucket || BucketOf(s.LastT) != bucket {
				return fmt.Errorf("series %s, %s: %w", canonical, fmtBucket(bucket),
					errs.Corruptf("series chunk", 0, "summary of samples at %d..%d", s.FirstT, s.LastT))
			}
			r := s.Rollup()
			if ok, err := a.AddRollup(&r); err != nil {
				return chunkOrderError(canonical, bucket, err)
			} else if ok {
				return nil
			}
		}
		var samples []timeseries.Sample
		var err error
		if IsOperand(value) {
			samples, err = DecodeSamples(value, self)
		} else {
			// The order of the samples is the Aggregator's to check.
			samples, err = decodeSamplesInto(*buf, value, from, to, false)
			*buf = samples
		}
		if err != nil {
			return fmt.Errorf("series %s, %s: %w", canonical, fmtBucket(bucket), err)
		}
		if err := a.AddAll(samples); err != nil {
			return chunkOrderError(canonical, bucket, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a.Result()
}

// chunkOrderError is the error of an Aggregator fed a chunk: samples out
// of order there (within a chunk, or before the chunk's day) are a
// damaged chunk.
func chunkOrderError(canonical string, bucket int64, err error) error {
	if errors.Is(err, timeseries.ErrOutOfOrder) {
		err = errs.Corruptf("series chunk", 0, "%v", err)
	}
	return fmt.Errorf("series %s, %s: %w", canonical, fmtBucket(bucket), err)
}

// sampleBufs holds the buffers Aggregate and Iterate decode into; one of
// more than maxPooledSamples is left to the collector.
var sampleBufs = sync.Pool{New: func() any { return new([]timeseries.Sample) }}

const maxPooledSamples = 1 << 18

// SpanOnce wraps st so that Span of the same range is read once: a query
// over many series asks each time for the days holding chunks. Safe for
// concurrent use.
func SpanOnce(st Store) Store { return &spanOnce{Store: st, spans: map[string]span{}} }

type span struct {
	first, last []byte
	ok          bool
}

type spanOnce struct {
	Store
	mu    sync.Mutex
	spans map[string]span
}

func (s *spanOnce) Span(lo, hi []byte) ([]byte, []byte, bool, error) {
	k := string(lo) + "\x00" + string(hi)
	s.mu.Lock()
	sp, hit := s.spans[k]
	s.mu.Unlock()
	if hit {
		return sp.first, sp.last, sp.ok, nil
	}
	first, last, ok, err := s.Store.Span(lo, hi)
	if err != nil {
		return nil, nil, false, err
	}
	s.mu.Lock()
	s.spans[k] = span{first, last, ok}
	s.mu.Unlock()
	return first, last, ok, nil
}

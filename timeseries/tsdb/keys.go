// Package tsdb stores time series in the engine's LSM, as projections of
// the op log (ARCHITECTURE.md, "Time series: storage"). It defines the
// stored keys and values of the series namespace, the merge of sample
// operands into chunk states (last writer wins per timestamp), the
// per-chunk rollups, and the queries; the engine wires it in. It never
// imports the root package: queries read through the narrow Store
// interface the engine implements.
//
// Within the series namespace (the engine prefixes its namespace byte):
//
//	's' canonical                  the series table: value 0x01
//	'c' bucket(8, BE) canonical    a chunk: the series' samples of one bucket
//	'd' canonical                  a deletion floor (delete.go)
//
// Chunk keys lead with time (the bucket's start, its sign bit flipped), so
// one day's chunks of every series sort together: the tables of old days
// hold nothing else, and retention drops them in compactions that read
// no live data. A series' chunks are found by seeking day by day,
// skipping the days without any chunk (see scanChunks).
package tsdb

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/timeseries"
)

// Key prefixes within the series namespace.
const (
	prefixSeries = 's'
	prefixChunk  = 'c'
)

// SeriesKey appends the series-table key of canonical to dst.
func SeriesKey(dst []byte, canonical string) []byte {
	dst = append(dst, prefixSeries)
	return append(dst, canonical...)
}

// SeriesPrefix is the prefix of every series-table key.
func SeriesPrefix() []byte { return []byte{prefixSeries} }

// SeriesOfKey returns the canonical name of a series-table key.
func SeriesOfKey(key []byte) (string, bool) {
	if len(key) < 2 || key[0] != prefixSeries {
		return "", false
	}
	return string(key[1:]), true
}

// ChunkKey appends the key of canonical's chunk for the bucket starting at
// bucket to dst.
func ChunkKey(dst []byte, canonical string, bucket int64) []byte {
	dst = BucketPrefix(dst, bucket)
	return append(dst, canonical...)
}

// BucketPrefix appends the prefix of every chunk key of the bucket
// starting at bucket to dst.
func BucketPrefix(dst []byte, bucket int64) []byte {
	dst = append(dst, prefixChunk)
	return binary.BigEndian.AppendUint64(dst, uint64(bucket)^(1<<63))
}

// ChunkPrefix is the prefix of every chunk key.
func ChunkPrefix() []byte { return []byte{prefixChunk} }

// ParseChunkKey splits a chunk key into the series and the bucket start.
// Errors wrap ErrCorruption.
func ParseChunkKey(key []byte) (canonical string, bucket int64, err error) {
	if len(key) < 1+8+1 || key[0] != prefixChunk {
		return "", 0, errs.Corruptf("series chunk key", 0, "%q is not a chunk key", key)
	}
	b := int64(binary.BigEndian.Uint64(key[1:9]) ^ (1 << 63))
	if BucketOf(b) != b {
		return "", 0, errs.Corruptf("series chunk key", 1, "bucket %d is not a bucket start", b)
	}
	name := key[9:]
	if bytes.IndexByte(name, 0) >= 0 {
		return "", 0, errs.Corruptf("series chunk key", 9, "%q: a series name with a 0 byte", key)
	}
	return string(name), b, nil
}

// Aliases of the timeseries package's bucket and time range.
const (
	BucketMillis = timeseries.BucketMillis
	MinTime      = timeseries.MinTime
	MaxTime      = timeseries.MaxTime
)

// BucketOf is timeseries.BucketOf.
func BucketOf(t int64) int64 { return timeseries.BucketOf(t) }

// bucketRange returns the buckets that may hold samples in [from, to),
// clamped to [MinTime, MaxTime]: first..last inclusive; ok false for none.
func bucketRange(from, to int64) (first, last int64, ok bool) {
	from, to = max(from, MinTime), min(to, MaxTime+1)
	if to <= from {
		return 0, 0, false
	}
	return BucketOf(from), BucketOf(to - 1), true
}

func fmtBucket(b int64) string { return fmt.Sprintf("the chunk from %d", b) }

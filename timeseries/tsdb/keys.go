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
//	's' canonical                       the series table: value 0x01
//	'c' canonical 0x00 bucket(8, BE)    a chunk: the series' samples of one bucket
//
// A canonical series name (timeseries.Labels.String) never holds a 0x00
// byte (values are quoted), so a series' chunks sort together, in time
// order (the bucket's start, its sign bit flipped), before any other
// series whose name extends this one.
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
	dst = ChunkPrefix(dst, canonical)
	return binary.BigEndian.AppendUint64(dst, uint64(bucket)^(1<<63))
}

// ChunkPrefix appends the prefix of canonical's chunk keys to dst.
func ChunkPrefix(dst []byte, canonical string) []byte {
	dst = append(dst, prefixChunk)
	dst = append(dst, canonical...)
	return append(dst, 0)
}

// ParseChunkKey splits a chunk key into the series and the bucket start.
// Errors wrap ErrCorruption.
func ParseChunkKey(key []byte) (canonical string, bucket int64, err error) {
	if len(key) < 1+1+1+8 || key[0] != prefixChunk || key[len(key)-9] != 0 {
		return "", 0, errs.Corruptf("series chunk key", 0, "%q is not a chunk key", key)
	}
	name := key[1 : len(key)-9]
	if bytes.IndexByte(name, 0) >= 0 {
		return "", 0, errs.Corruptf("series chunk key", 0, "%q: a series name with a 0 byte", key)
	}
	b := int64(binary.BigEndian.Uint64(key[len(key)-8:]) ^ (1 << 63))
	if BucketOf(b) != b {
		return "", 0, errs.Corruptf("series chunk key", int64(len(key)-8), "bucket %d is not a bucket start", b)
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

// ChunkRange returns the key range [lo, hi) of canonical's chunks that
// may hold samples in [from, to), both clamped to [MinTime, MaxTime+1].
func ChunkRange(canonical string, from, to int64) (lo, hi []byte) {
	from, to = max(from, MinTime), min(to, MaxTime+1)
	lo = ChunkKey(nil, canonical, BucketOf(from))
	if to <= from {
		return lo, lo
	}
	return lo, ChunkKey(nil, canonical, BucketOf(to-1)+BucketMillis)
}

func fmtBucket(b int64) string { return fmt.Sprintf("the chunk from %d", b) }

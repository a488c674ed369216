package hnsw

import (
	"iter"
	"unsafe"
)

// KeySet is a set of keys, the stable form of a search filter
// (SearchOptions.Keys): a search returns only keys the set contains,
// resolved against the index as it is during the search, so deletes,
// replaces, repairs and rebuilds never make it select another key. A key
// without a vector in the index is simply not returned.
//
// Len is the number of keys (an upper bound is allowed: it only steers
// the choice between a scan of the set and a graph walk). Contains reports
// membership; All yields every key once. A search calls Len once,
// Contains on the nodes a graph walk meets, and All when it scans the set;
// all from the searching goroutine, with the index's lock held shared, so
// they must not call the index. The keys passed to Contains and yielded by
// All must not be modified or kept.
//
// Keys is the in-memory implementation; a set computed elsewhere (a query
// over another index resolved through a key lookup) implements the
// interface directly.
type KeySet interface {
	Len() int
	Contains(key []byte) bool
	All() iter.Seq[[]byte]
}

// Keys is an immutable in-memory KeySet: the keys are copied into one
// buffer and hashed once, so building it costs one pass and a lookup is
// one hash probe. Build it once with NewKeys and reuse it across searches
// and goroutines.
type Keys struct {
	buf  []byte // every key, back to back; never modified
	ends []int  // end of each distinct key in buf, in first-seen order
	set  map[string]struct{}
}

// NewKeys returns the set of keys, duplicates dropped. keys is not
// retained.
func NewKeys(keys [][]byte) *Keys {
	size := 0
	for _, k := range keys {
		size += len(k)
	}
	s := &Keys{
		buf:  make([]byte, 0, size),
		ends: make([]int, 0, len(keys)),
		set:  make(map[string]struct{}, len(keys)),
	}
	for _, k := range keys {
		if _, dup := s.set[string(k)]; dup {
			continue
		}
		start := len(s.buf)
		s.buf = append(s.buf, k...)
		s.ends = append(s.ends, len(s.buf))
		s.set[s.str(start, len(s.buf))] = struct{}{}
	}
	return s
}

// str views buf[start:end] as a string without copying: buf was sized for
// every key up front, is never appended past its capacity and never
// modified, so the bytes under the string never change.
func (s *Keys) str(start, end int) string {
	if start == end {
		return ""
	}
	return unsafe.String(&s.buf[start], end-start)
}

// Len returns the number of distinct keys.
func (s *Keys) Len() int { return len(s.ends) }

// Contains reports whether key is in the set.
func (s *Keys) Contains(key []byte) bool {
	_, ok := s.set[string(key)]
	return ok
}

// All yields the keys in the order NewKeys first saw them.
func (s *Keys) All() iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		start := 0
		for _, end := range s.ends {
			if !yield(s.buf[start:end:end]) {
				return
			}
			start = end
		}
	}
}

package lsm

// The merging iterator turns several sorted sources (memtables, L0 tables,
// one level iterator per deeper level) into one sorted stream of internal
// keys. It does not hide anything: shadowed versions, tombstones and
// entries newer than a snapshot all pass through, in CompareInternal order,
// for UserIter (or compaction) to interpret.

// mergingIter is a binary min-heap of child iterators, hand-written over a
// slice of child indexes so that comparisons are direct calls rather than
// container/heap's interface calls. Each child's current key is cached, so
// a sift does not call Key through the interface.
//
// Ties between equal internal keys (which a correct DB never produces) are
// broken by child index: the lower index, the newer source, comes first.
//
// Moving backward (Last, SeekLT, Prev) the same heap is a max-heap: less
// inverts the order, ties included, so Prev yields exactly the reverse of
// Next. On a direction switch every child but the current one is
// re-positioned relative to the current key (as LevelDB and Pebble do),
// since a child that is not on top stands on the wrong side of it.
//
// Like every InternalIterator it is used by one goroutine at a time.
type mergingIter struct {
	children []InternalIterator
	keys     [][]byte // keys[i]: children[i]'s current key, while i is in heap
	heap     []int    // child indexes; heap[0] is the smallest (largest backward)
	reverse  bool     // moving backward: heap is a max-heap
	err      error
	closed   bool
}

var _ InternalIterator = (*mergingIter)(nil)

// NewMergingIter returns an iterator over the union of iters, in
// CompareInternal order. List newer sources first: equal keys come out in
// argument order. The first child error stops the iteration and is returned
// by Err. Close closes every child.
func NewMergingIter(iters ...InternalIterator) InternalIterator {
	return &mergingIter{
		children: iters,
		keys:     make([][]byte, len(iters)),
		heap:     make([]int, 0, len(iters)),
	}
}

// Positioning calls for position.
const (
	posFirst = iota
	posSeekGE
	posLast
	posSeekLT
)

func (m *mergingIter) First() bool { return m.position(posFirst, nil) }

func (m *mergingIter) SeekGE(ikey []byte) bool { return m.position(posSeekGE, ikey) }

func (m *mergingIter) Last() bool { return m.position(posLast, nil) }

func (m *mergingIter) SeekLT(ikey []byte) bool { return m.position(posSeekLT, ikey) }

// position moves every child by op and rebuilds the heap. An earlier error
// is forgotten: a fresh positioning call starts over.
func (m *mergingIter) position(op int, ikey []byte) bool {
	m.err = nil
	m.heap = m.heap[:0]
	m.reverse = op == posLast || op == posSeekLT
	for i, it := range m.children {
		var ok bool
		switch op {
		case posFirst:
			ok = it.First()
		case posSeekGE:
			ok = it.SeekGE(ikey)
		case posLast:
			ok = it.Last()
		default:
			ok = it.SeekLT(ikey)
		}
		if ok {
			m.keys[i] = it.Key()
			m.heap = append(m.heap, i)
		} else if err := it.Err(); err != nil {
			m.err = err
			m.heap = m.heap[:0]
			return false
		}
	}
	for i := len(m.heap)/2 - 1; i >= 0; i-- {
		m.sift(i)
	}
	return len(m.heap) > 0
}

func (m *mergingIter) Next() bool {
	if m.err != nil || len(m.heap) == 0 {
		return false
	}
	if m.reverse {
		return m.switchDir(false)
	}
	top := m.heap[0]
	it := m.children[top]
	if it.Next() {
		m.keys[top] = it.Key()
		m.down(0)
		return true
	}
	if err := it.Err(); err != nil {
		m.err = err
		m.heap = m.heap[:0]
		return false
	}
	last := len(m.heap) - 1
	m.heap[0] = m.heap[last]
	m.heap = m.heap[:last]
	if last > 0 {
		m.down(0)
	}
	return len(m.heap) > 0
}

func (m *mergingIter) Prev() bool {
	if m.err != nil || len(m.heap) == 0 {
		return false
	}
	if !m.reverse {
		return m.switchDir(true)
	}
	top := m.heap[0]
	it := m.children[top]
	if it.Prev() {
		m.keys[top] = it.Key()
		m.downRev(0)
		return true
	}
	return m.pop(it)
}

// pop removes the exhausted top child from the (backward) heap, or stops the
// iteration on its error.
func (m *mergingIter) pop(it InternalIterator) bool {
	if err := it.Err(); err != nil {
		m.err = err
		m.heap = m.heap[:0]
		return false
	}
	last := len(m.heap) - 1
	m.heap[0] = m.heap[last]
	m.heap = m.heap[:last]
	if last > 0 {
		m.downRev(0)
	}
	return len(m.heap) > 0
}

// switchDir turns the iteration around at the current entry (child top at
// key k) and takes one step in the new direction. Every other child is
// placed on its nearest entry past (k, top) in the new direction, in the
// order (key, child index) that less uses; then the top child steps.
func (m *mergingIter) switchDir(reverse bool) bool {
	top := m.heap[0]
	// k aliases the top child's key: that child moves last, so k stays
	// intact while the others seek to it.
	k := m.keys[top]
	m.heap = m.heap[:0]
	for i, it := range m.children {
		if i == top {
			continue
		}
		var ok bool
		if reverse {
			// Entries before (k, top): keys < k, and k itself if i < top.
			ok = it.SeekGE(k)
			if ok && i < top && CompareInternal(it.Key(), k) == 0 {
				// stays on k
			} else if ok {
				ok = it.Prev()
			} else if it.Err() == nil {
				ok = it.Last()
			}
		} else {
			// Entries after (k, top): keys > k, and k itself if i > top.
			ok = it.SeekGE(k)
			for ok && i < top && CompareInternal(it.Key(), k) == 0 {
				ok = it.Next()
			}
		}
		if ok {
			m.keys[i] = it.Key()
			m.heap = append(m.heap, i)
		} else if err := it.Err(); err != nil {
			m.err = err
			m.heap = m.heap[:0]
			return false
		}
	}
	it := m.children[top]
	var ok bool
	if reverse {
		ok = it.Prev()
	} else {
		ok = it.Next()
	}
	if ok {
		m.keys[top] = it.Key()
		m.heap = append(m.heap, top)
	} else if err := it.Err(); err != nil {
		m.err = err
		m.heap = m.heap[:0]
		return false
	}
	m.reverse = reverse
	for i := len(m.heap)/2 - 1; i >= 0; i-- {
		m.sift(i)
	}
	return len(m.heap) > 0
}

// less orders heap entries a and b (child indexes) moving forward.
func (m *mergingIter) less(a, b int) bool {
	if c := CompareInternal(m.keys[a], m.keys[b]); c != 0 {
		return c < 0
	}
	return a < b
}

// lessRev is less moving backward: the exact reverse order, ties included.
func (m *mergingIter) lessRev(a, b int) bool {
	if c := CompareInternal(m.keys[a], m.keys[b]); c != 0 {
		return c > 0
	}
	return a > b
}

// sift restores the heap property below position i in the current
// direction. Forward Next calls down directly: its comparisons stay free of
// a direction test.
func (m *mergingIter) sift(i int) {
	if m.reverse {
		m.downRev(i)
	} else {
		m.down(i)
	}
}

// down restores the heap property below position i.
func (m *mergingIter) down(i int) {
	h := m.heap
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		j := l
		if r := l + 1; r < n && m.less(h[r], h[l]) {
			j = r
		}
		if !m.less(h[j], h[i]) {
			return
		}
		h[i], h[j] = h[j], h[i]
		i = j
	}
}

// downRev is down for the max-heap of backward iteration.
func (m *mergingIter) downRev(i int) {
	h := m.heap
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		j := l
		if r := l + 1; r < n && m.lessRev(h[r], h[l]) {
			j = r
		}
		if !m.lessRev(h[j], h[i]) {
			return
		}
		h[i], h[j] = h[j], h[i]
		i = j
	}
}

func (m *mergingIter) Valid() bool { return m.err == nil && len(m.heap) > 0 }

func (m *mergingIter) Key() []byte {
	if !m.Valid() {
		return nil
	}
	return m.keys[m.heap[0]]
}

func (m *mergingIter) Value() []byte {
	if !m.Valid() {
		return nil
	}
	return m.children[m.heap[0]].Value()
}

func (m *mergingIter) Err() error { return m.err }

// Close closes every child once and returns the iteration error, or else
// the first error a child's Close returned.
func (m *mergingIter) Close() error {
	if m.closed {
		return m.err
	}
	m.closed = true
	m.heap = m.heap[:0]
	for _, it := range m.children {
		if err := it.Close(); err != nil && m.err == nil {
			m.err = err
		}
	}
	return m.err
}

package index

import (
	"github.com/google/btree"
)

// memStore is the Store the tests use: a sorted map.
type memStore struct {
	t *btree.BTreeG[pending]
}

func newMem() *memStore { return &memStore{t: btree.NewG(32, lessPending)} }

func (m *memStore) Get(key []byte) ([]byte, bool, error) {
	p, ok := m.t.Get(pending{key: string(key)})
	return p.value, ok, nil
}

func (m *memStore) Scan(lo, hi []byte, fn func(k, v []byte) error) error {
	var err error
	m.t.AscendGreaterOrEqual(pending{key: string(lo)}, func(p pending) bool {
		if hi != nil && p.key >= string(hi) {
			return false
		}
		err = fn([]byte(p.key), p.value)
		return err == nil
	})
	return err
}

func (m *memStore) Set(key, value []byte) {
	m.t.ReplaceOrInsert(pending{key: string(key), value: append([]byte{}, value...)})
}

func (m *memStore) Delete(key []byte) { m.t.Delete(pending{key: string(key)}) }

// commit applies an overlay's writes.
func (m *memStore) commit(o *Overlay) {
	_ = o.Writes(func(k, v []byte, del bool) error {
		if del {
			m.Delete(k)
		} else {
			m.Set(k, v)
		}
		return nil
	})
}

// clone copies the store.
func (m *memStore) clone() *memStore { return &memStore{t: m.t.Clone()} }

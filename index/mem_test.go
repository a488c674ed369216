package index

import (
	"bytes"

	"github.com/google/btree"
)

// memStore is the Store the tests use: a sorted map.
type memStore struct {
	t *btree.BTreeG[kv]
}

type kv struct{ key, value []byte }

func newMem() *memStore {
	return &memStore{t: btree.NewG(32, func(a, b kv) bool { return bytes.Compare(a.key, b.key) < 0 })}
}

func (m *memStore) Get(key []byte) ([]byte, bool, error) {
	p, ok := m.t.Get(kv{key: key})
	return p.value, ok, nil
}

func (m *memStore) Scan(lo, hi []byte, fn func(k, v []byte) error) error {
	var err error
	m.t.AscendGreaterOrEqual(kv{key: lo}, func(p kv) bool {
		if hi != nil && bytes.Compare(p.key, hi) >= 0 {
			return false
		}
		err = fn(p.key, p.value)
		return err == nil
	})
	return err
}

func (m *memStore) Set(key, value []byte) {
	m.t.ReplaceOrInsert(kv{key: bytes.Clone(key), value: append([]byte{}, value...)})
}

func (m *memStore) Delete(key []byte) { m.t.Delete(kv{key: key}) }

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

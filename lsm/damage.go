package lsm

import (
	"errors"
	"slices"
	"sync"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
)

// DamagedTable is a table a read or a compaction found damaged: a block,
// the index or the footer failed its checksum or could not be decoded.
type DamagedTable struct {
	Num  layout.FileNum
	Path string
	Err  error // the first error found, wrapping errs.ErrCorruption
}

// damageRegistry remembers the damaged tables of a TableCache. It is
// written on error paths only; reads of healthy tables never touch it.
type damageRegistry struct {
	mu sync.Mutex
	m  map[layout.FileNum]DamagedTable
}

// noteDamage records num as damaged if err is corruption (an I/O error or
// a closed file says nothing about the bytes).
func (tc *TableCache) noteDamage(num layout.FileNum, path string, err error) {
	if !errors.Is(err, errs.ErrCorruption) {
		return
	}
	tc.MarkDamaged(num, path, err)
}

// damaged records t as damaged when err is corruption, and returns err.
func (t *Table) damaged(err error) error {
	if t.tc != nil {
		t.tc.noteDamage(t.num, t.name, err)
	}
	return err
}

// MarkDamaged records table num (at path) as damaged by err; the first
// error recorded for a table is kept.
func (tc *TableCache) MarkDamaged(num layout.FileNum, path string, err error) {
	r := &tc.damage
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[num]; ok {
		return
	}
	if r.m == nil {
		r.m = make(map[layout.FileNum]DamagedTable)
	}
	r.m[num] = DamagedTable{Num: num, Path: path, Err: err}
}

// IsDamaged reports whether table num was found damaged.
func (tc *TableCache) IsDamaged(num layout.FileNum) bool {
	r := &tc.damage
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.m[num]
	return ok
}

// Damaged lists the tables found damaged, by number.
func (tc *TableCache) Damaged() []DamagedTable {
	r := &tc.damage
	r.mu.Lock()
	out := make([]DamagedTable, 0, len(r.m))
	for _, d := range r.m {
		out = append(out, d)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b DamagedTable) int {
		switch {
		case a.Num < b.Num:
			return -1
		case a.Num > b.Num:
			return 1
		}
		return 0
	})
	return out
}

// ForgetDamaged drops the record of table num (its file is gone: no
// version references it any more).
func (tc *TableCache) ForgetDamaged(num layout.FileNum) {
	r := &tc.damage
	r.mu.Lock()
	delete(r.m, num)
	r.mu.Unlock()
}

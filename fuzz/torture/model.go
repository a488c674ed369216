package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/plures/pluresdb"
)

// doc is what a key holds, as DB.GetFields shows it: a value (Put), fields
// (SetField) and counters (Incr). The zero doc is an absent key.
type doc struct {
	exists   bool
	value    string
	fields   map[string]string
	counters map[string]int64
}

// String is a canonical form, for comparing and printing.
func (d doc) String() string {
	if !d.exists && len(d.counters) == 0 {
		return "<absent>"
	}
	var b strings.Builder
	if d.exists {
		fmt.Fprintf(&b, "value=%s", short(d.value))
	} else {
		b.WriteString("deleted")
	}
	for _, f := range slices.Sorted(mapKeys(d.fields)) {
		fmt.Fprintf(&b, " %s=%s", f, short(d.fields[f]))
	}
	for _, c := range slices.Sorted(mapKeys(d.counters)) {
		fmt.Fprintf(&b, " %s:%d", c, d.counters[c])
	}
	return b.String()
}

// short abbreviates a value: its length and first bytes.
func short(v string) string {
	if len(v) <= 16 {
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprintf("%q..(%dB)", v[:16], len(v))
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// opKind is the kind of one write of a batch.
type opKind int

const (
	opPut opKind = iota
	opDelete
	opSetField
	opIncr
)

// op is one write of a batch.
type op struct {
	kind         opKind
	key          string
	field, value string
	delta        int64
}

// apply returns d after o (o.key is d's key). It follows the engine's
// documented semantics: Put and Delete replace the value and drop the
// fields, SetField makes the document exist and keeps its value, counters
// live beside the document and are left alone by Put and Delete.
func (d doc) apply(o op) doc {
	n := doc{exists: d.exists, value: d.value, fields: d.fields, counters: d.counters}
	switch o.kind {
	case opPut:
		n.exists, n.value, n.fields = true, o.value, nil
	case opDelete:
		n.exists, n.value, n.fields = false, "", nil
	case opSetField:
		n.exists = true
		n.fields = make(map[string]string, len(d.fields)+1)
		for k, v := range d.fields {
			n.fields[k] = v
		}
		n.fields[o.field] = o.value
	case opIncr:
		n.counters = make(map[string]int64, len(d.counters)+1)
		for k, v := range d.counters {
			n.counters[k] = v
		}
		n.counters[o.field] += o.delta
	}
	return n
}

// batch is the writes of one commit, applied whole or not at all.
type batch []op

// keys returns the distinct keys the batch writes.
func (b batch) keys() []string {
	var ks []string
	for _, o := range b {
		if !slices.Contains(ks, o.key) {
			ks = append(ks, o.key)
		}
	}
	return ks
}

// commit writes b to db in one batch.
func (b batch) commit(db *pluresdb.DB) error {
	wb := db.NewBatch()
	for _, o := range b {
		var err error
		switch o.kind {
		case opPut:
			err = wb.Put([]byte(o.key), []byte(o.value))
		case opDelete:
			err = wb.Delete([]byte(o.key))
		case opSetField:
			err = wb.SetField([]byte(o.key), []byte(o.field), []byte(o.value))
		case opIncr:
			err = wb.Incr([]byte(o.key), []byte(o.field), o.delta)
		}
		if err != nil {
			return err
		}
	}
	return wb.Commit(nil)
}

// workload generates batches of random writes over a fixed key space.
type workload struct {
	rng    *rand.Rand
	keys   int // keys are key00000 .. key(keys-1)
	maxOps int // writes per batch, 1 to maxOps
	maxVal int // value length, 1 to maxVal
	tag    string
	n      int
}

func newWorkload(seed, stream uint64, keys, maxOps, maxVal int, tag string) *workload {
	return &workload{rng: rand.New(rand.NewPCG(seed, stream)), keys: keys, maxOps: maxOps, maxVal: maxVal, tag: tag}
}

func keyName(i int) string { return fmt.Sprintf("key%05d", i) }

// next returns the next batch. Values name the batch, so that a value read
// back tells which write it came from.
func (w *workload) next() batch {
	n := 1 + w.rng.IntN(w.maxOps)
	b := make(batch, 0, n)
	for i := range n {
		o := op{key: keyName(w.rng.IntN(w.keys))}
		switch r := w.rng.IntN(100); {
		case r < 50:
			o.kind, o.value = opPut, w.value(i)
		case r < 62:
			o.kind = opDelete
		case r < 82:
			o.kind, o.field, o.value = opSetField, fmt.Sprintf("f%d", w.rng.IntN(4)), w.value(i)
		default:
			o.kind, o.field, o.delta = opIncr, fmt.Sprintf("c%d", w.rng.IntN(3)), w.rng.Int64N(2001)-1000
		}
		b = append(b, o)
	}
	w.n++
	return b
}

func (w *workload) value(i int) string {
	head := fmt.Sprintf("%s/b%d/o%d/", w.tag, w.n, i)
	n := 1 + w.rng.IntN(w.maxVal)
	if n <= len(head) {
		return head
	}
	pad := make([]byte, n-len(head))
	for j := range pad {
		pad[j] = 'a' + byte(w.rng.IntN(26))
	}
	return head + string(pad)
}

// model is the exact state of every key written so far.
type model map[string]doc

func (m model) apply(b batch) {
	for _, o := range b {
		m[o.key] = m[o.key].apply(o)
	}
}

// after returns the states of b's keys were b applied to m, leaving m as
// it is.
func (m model) after(b batch) map[string]doc {
	out := map[string]doc{}
	for _, o := range b {
		d, ok := out[o.key]
		if !ok {
			d = m[o.key]
		}
		out[o.key] = d.apply(o)
	}
	return out
}

// readDoc reads key from db with GetFields and Get, which must agree. A
// key with neither value nor counters reads as the zero doc.
func readDoc(db *pluresdb.DB, key string) (doc, error) {
	d, err := db.GetFields([]byte(key))
	if errors.Is(err, pluresdb.ErrNotFound) {
		d, err = pluresdb.Document{}, nil
	}
	if err != nil {
		return doc{}, err
	}
	got := doc{exists: d.Exists, value: string(d.Value)}
	if len(d.Fields) > 0 {
		got.fields = map[string]string{}
		for f, v := range d.Fields {
			got.fields[f] = string(v)
		}
	}
	if len(d.Counters) > 0 {
		got.counters = d.Counters
	}
	v, err := db.Get([]byte(key))
	switch {
	case errors.Is(err, pluresdb.ErrNotFound):
		if got.exists {
			return got, fmt.Errorf("%s: Get says not found, GetFields finds %s", key, got)
		}
	case err != nil:
		return doc{}, err
	case !got.exists || string(v) != got.value:
		return got, fmt.Errorf("%s: Get returns %s, GetFields %s", key, short(string(v)), got)
	}
	return got, nil
}

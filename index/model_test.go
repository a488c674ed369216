package index

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
)

// The model: documents as plain maps, indexes as their definitions and
// build state; queries answered by looking at every document.

type refDoc struct {
	value  []byte // nil: none
	fields map[string]string
}

type refIndex struct {
	spec    Spec
	ready   bool
	cursor  string          // building: last key the build indexed
	touched map[string]bool // building: documents Update saw since creation
}

type model struct {
	docs    map[string]refDoc
	indexes map[string]*refIndex
}

func (m *model) clone() *model {
	c := &model{docs: map[string]refDoc{}, indexes: map[string]*refIndex{}}
	for k, d := range m.docs {
		f := map[string]string{}
		for n, v := range d.fields {
			f[n] = v
		}
		c.docs[k] = refDoc{value: d.value, fields: f}
	}
	for n, x := range m.indexes {
		t := map[string]bool{}
		for k := range x.touched {
			t[k] = true
		}
		c.indexes[n] = &refIndex{spec: x.spec, ready: x.ready, cursor: x.cursor, touched: t}
	}
	return c
}

func (d refDoc) document() oplog.Document {
	doc := oplog.Document{Exists: true, Value: d.value}
	if len(d.fields) > 0 {
		doc.Fields = map[string][]byte{}
		for n, v := range d.fields {
			doc.Fields[n] = []byte(v)
		}
	}
	return doc
}

// refParse is the reference parse of a field's text.
func refParse(k Kind, s string) (any, bool) {
	switch k {
	case Bytes:
		return []byte(s), true
	case String:
		return s, utf8.ValidString(s)
	case Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	case Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) {
			return nil, false
		}
		if f == 0 {
			f = 0
		}
		return f, true
	}
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || tm.Before(minTime) || tm.After(maxTime) {
		return nil, false
	}
	return tm, true
}

func extractX(_, value []byte) ([]byte, bool) {
	s, ok := strings.CutPrefix(string(value), "x=")
	return []byte(s), ok
}

// value is the reference value of document key in index x.
func (m *model) value(x *refIndex, key string) (any, bool) {
	d, ok := m.docs[key]
	if !ok {
		return nil, false
	}
	var raw string
	if x.spec.Extract != nil {
		r, ok := x.spec.Extract([]byte(key), d.value)
		if !ok {
			return nil, false
		}
		raw = string(r)
	} else if raw, ok = d.fields[x.spec.Field]; !ok {
		return nil, false
	}
	return refParse(x.spec.Kind, raw)
}

// indexed reports whether the engine must hold key in x.
func (m *model) indexed(x *refIndex, key string) (any, bool) {
	v, ok := m.value(x, key)
	if !ok || !(x.ready || key <= x.cursor || x.touched[key]) {
		return nil, false
	}
	return v, true
}

// holder returns a document other than key that x holds v for.
func (m *model) holder(x *refIndex, key string, v any) (string, bool) {
	for k := range m.docs {
		if k == key {
			continue
		}
		if w, ok := m.indexed(x, k); ok && cmpValue(x.spec.Kind, v, w) == 0 {
			return k, true
		}
	}
	return "", false
}

func (m *model) sortedKeys() []string {
	keys := make([]string, 0, len(m.docs))
	for k := range m.docs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (m *model) docsFunc() Docs {
	return func(after []byte, fn func([]byte, oplog.Document) error) error {
		for _, k := range m.sortedKeys() {
			if after != nil && k <= string(after) {
				continue
			}
			if err := fn([]byte(k), m.docs[k].document()); err != nil {
				return err
			}
		}
		return nil
	}
}

// Random content: small domains so values collide, with edge cases and
// values that do not parse.
var domains = map[string][]string{
	"n": {"-3", "-1", "0", "1", "2", "3", "9223372036854775807", "-9223372036854775808", "x", "", "1.5"},
	"f": {"-1.5", "0", "-0", "2", "2.0", "1e300", "-Inf", "Inf", "NaN", "y", "3"},
	"t": {"2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00", "2024-01-01T00:00:00.5Z", "1970-01-01T00:00:00Z", "2262-04-11T00:00:00Z", "3000-01-01T00:00:00Z", "bad"},
	"s": {"", "a", "ab", "abc", "b", "é", "\xff", "a\x00", "ba"},
	"b": {"", "\x00", "\x00\x00", "\x00\x01", "a", "a\x00", "a\x00b", "\xff", "\xff\xff", "ab"},
	"u": {"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"},
}

var specs = []Spec{
	{Name: "byN", Field: "n", Kind: Int64},
	{Name: "byF", Field: "f", Kind: Float64},
	{Name: "byT", Field: "t", Kind: Time},
	{Name: "byS", Field: "s", Kind: String},
	{Name: "byB", Field: "b", Kind: Bytes},
	{Name: "byU", Field: "u", Kind: String, Unique: true},
	{Name: "byX", Kind: Int64, Extract: extractX},
	{Name: "byS2", Field: "s", Kind: Bytes, Unique: true},
}

var extractors = map[string]Extractor{"byX": extractX}

type harness struct {
	t   *testing.T
	r   *rand.Rand
	st  *memStore
	set *Set
	m   *model
	// What the run exercised.
	violations, buildViolations, steps, queries, nonEmpty int
}

func (h *harness) fatalf(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf(format, args...)
}

// batch runs a random batch of document changes through one overlay and
// commits it, or checks the unique violation the model predicts and
// discards it.
func (h *harness) batch() {
	r := h.r
	pend := h.m.clone()
	ov := NewOverlay(h.st)
	remote := r.IntN(10) == 0
	var wantViolation bool
	for range 1 + r.IntN(4) {
		key := fmt.Sprintf("d%02d", r.IntN(30))
		prev := map[string]any{}
		for n, x := range pend.indexes {
			if v, ok := pend.indexed(x, key); ok {
				prev[n] = v
			}
		}
		d, exists := pend.docs[key]
		if !exists {
			d = refDoc{fields: map[string]string{}}
		} else {
			d = pend.clone().docs[key]
		}
		// ch describes the write as a local change (UpdateChange) where
		// one can: a Put clears the fields.
		var ch *Change
		switch r.IntN(10) {
		case 0:
			delete(pend.docs, key)
			exists = false
			ch = &Change{Whole: true}
		case 1:
			if r.IntN(2) == 0 {
				d.value = []byte("x=" + domains["n"][r.IntN(len(domains["n"]))])
			} else {
				d.value = []byte("other")
			}
			if r.IntN(3) == 0 {
				d.fields = map[string]string{}
				ch = &Change{Whole: true, Put: true, Value: d.value}
			}
			exists = true
		case 2:
			names := []string{"n", "f", "t", "s", "b", "u"}
			n := names[r.IntN(len(names))]
			delete(d.fields, n)
			exists = true
			ch = &Change{Fields: []FieldWrite{{Name: []byte(n), Deleted: true}}}
		default:
			ch = &Change{}
			for range 1 + r.IntN(3) {
				names := []string{"n", "f", "t", "s", "b", "u"}
				n := names[r.IntN(len(names))]
				d.fields[n] = domains[n][r.IntN(len(domains[n]))]
				ch.Fields = append(ch.Fields, FieldWrite{Name: []byte(n), Value: []byte(d.fields[n])})
			}
			exists = true
		}
		if ch != nil && !ch.Whole && r.IntN(3) == 0 {
			// A Put or Delete before the field writes, in the same batch.
			ch.Whole = true
			if r.IntN(2) == 0 {
				ch.Put, ch.Value = true, []byte("x=2")
			}
			d.value = ch.Value
			kept := map[string]string{}
			for _, f := range ch.Fields {
				if !f.Deleted {
					kept[string(f.Name)] = string(f.Value)
				} else {
					delete(kept, string(f.Name))
				}
			}
			d.fields = kept
			exists = ch.Put || len(kept) > 0
			if !exists {
				delete(pend.docs, key)
			}
		}
		if remote || r.IntN(2) == 0 {
			ch = nil
		}
		if exists {
			pend.docs[key] = d
		}
		// What the model says of this write.
		for n, x := range pend.indexes {
			if !x.spec.Unique || remote || ch != nil && !ch.touches(x.spec) {
				continue
			}
			v, ok := pend.value(x, key)
			if !ok {
				continue
			}
			if p, had := prev[n]; had && cmpValue(x.spec.Kind, p, v) == 0 {
				continue // unchanged: not checked again
			}
			if _, held := pend.holder(x, key, v); held {
				wantViolation = true
			}
		}
		doc := oplog.Document{}
		if exists {
			doc = d.document()
		}
		var err error
		if ch != nil {
			err = h.set.UpdateChange(ov, []byte(key), ch, func() (oplog.Document, error) { return doc, nil })
		} else {
			err = h.set.Update(ov, []byte(key), doc, remote)
		}
		for _, x := range pend.indexes {
			if ch == nil || ch.touches(x.spec) {
				x.touched[key] = true
			}
		}
		if wantViolation {
			if !errors.Is(err, ErrUniqueViolation) {
				h.fatalf("update of %q: %v, want a unique violation", key, err)
			}
			h.violations++
			return
		}
		if err != nil {
			h.fatalf("update of %q: %v", key, err)
		}
	}
	h.st.commit(ov)
	h.m = pend
}

// touches reports whether UpdateChange reads index sp for c: an index
// whose field c does not write, with no Put or Delete, is left alone.
func (c *Change) touches(sp Spec) bool {
	if c.Whole || sp.Extract != nil {
		return true
	}
	for _, f := range c.Fields {
		if string(f.Name) == sp.Field {
			return true
		}
	}
	return false
}

// create adds a random index of specs not yet present, built in the
// background by later steps.
func (h *harness) create() {
	var free []Spec
	for _, sp := range specs {
		if h.m.indexes[sp.Name] == nil {
			free = append(free, sp)
		}
	}
	if len(free) == 0 {
		return
	}
	sp := free[h.r.IntN(len(free))]
	ov := NewOverlay(h.st)
	set, err := h.set.Create(ov, sp, uint64(len(h.m.docs)))
	if err != nil {
		h.fatalf("create %s: %v", sp.Name, err)
	}
	if _, err := set.Create(NewOverlay(ov), sp, 0); !errors.Is(err, ErrInvalid) {
		h.fatalf("creating %s twice: %v", sp.Name, err)
	}
	h.st.commit(ov)
	h.set = set
	h.m.indexes[sp.Name] = &refIndex{spec: sp, touched: map[string]bool{}}
}

// drop removes a random index.
func (h *harness) drop(name string) {
	ov := NewOverlay(h.st)
	set, err := h.set.Drop(ov, name)
	if err != nil {
		h.fatalf("drop %s: %v", name, err)
	}
	h.st.commit(ov)
	h.set = set
	delete(h.m.indexes, name)
	p := catalogKey(name)
	if _, ok, _ := h.st.Get(p); ok {
		h.fatalf("dropped %s still in the catalog", name)
	}
}

// build runs one build step of a random building index, checking the
// unique violation the model predicts (then the index is dropped).
func (h *harness) build() {
	var building []string
	for n, x := range h.m.indexes {
		if !x.ready {
			building = append(building, n)
		}
	}
	if len(building) == 0 {
		return
	}
	slices.Sort(building)
	name := building[h.r.IntN(len(building))]
	n := 1 + h.r.IntN(8)
	// The model's build.
	pend := h.m.clone()
	px := pend.indexes[name]
	violation := false
	count := 0
	finished := true
	for _, k := range pend.sortedKeys() {
		if k <= px.cursor {
			continue
		}
		if count == n {
			finished = false
			break
		}
		if v, ok := pend.value(px, k); ok && px.spec.Unique {
			if p, had := pend.indexed(px, k); had && cmpValue(px.spec.Kind, p, v) == 0 {
				// already indexed under it: not checked again
			} else if _, held := pend.holder(px, k, v); held {
				violation = true
				break
			}
		}
		px.touched[k] = true
		px.cursor = k
		count++
	}
	if finished && !violation {
		px.ready, px.cursor, px.touched = true, "", map[string]bool{}
	}
	ov := NewOverlay(h.st)
	in, err := h.set.BuildStep(ov, name, h.m.docsFunc(), n)
	if violation {
		if !errors.Is(err, ErrUniqueViolation) {
			h.fatalf("build step of %s: %v, want a unique violation", name, err)
		}
		h.buildViolations++
		h.drop(name)
		return
	}
	if err != nil {
		h.fatalf("build step of %s: %v", name, err)
	}
	if in.Ready != px.ready || string(in.Cursor) != px.cursor {
		h.fatalf("build step of %s: ready %v cursor %q, model %v %q", name, in.Ready, in.Cursor, px.ready, px.cursor)
	}
	h.steps++
	h.st.commit(ov)
	h.m = pend
}

// restart loads the Set again from the store.
func (h *harness) restart() {
	set, err := Load(h.st, extractors)
	if err != nil {
		h.fatalf("load: %v", err)
	}
	if got, want := len(set.Names()), len(h.m.indexes); got != want {
		h.fatalf("load: %d indexes, model %d", got, want)
	}
	h.set = set
}

// refQuery is a query beside the model's answer to it.
type refQuery struct {
	q     Query
	match func(key string) bool
	ready bool
}

func (h *harness) randLeaf() refQuery {
	r := h.r
	names := make([]string, 0, len(h.m.indexes))
	for n := range h.m.indexes {
		names = append(names, n)
	}
	slices.Sort(names)
	x := h.m.indexes[names[r.IntN(len(names))]]
	k := x.spec.Kind
	field := x.spec.Field
	if field == "" {
		field = "n"
	}
	randV := func() any {
		for {
			if v, ok := refParse(k, domains[field][r.IntN(len(domains[field]))]); ok {
				return v
			}
		}
	}
	rq := refQuery{ready: x.ready}
	name := x.spec.Name
	switch r.IntN(3) {
	case 0:
		v := randV()
		rq.q = Eq(name, v)
		rq.match = func(key string) bool {
			w, ok := h.m.value(x, key)
			return ok && cmpValue(k, v, w) == 0
		}
	case 1:
		mk := func() (Bound, func(w any, lo bool) bool) {
			switch r.IntN(3) {
			case 0:
				return Unbounded(), func(any, bool) bool { return true }
			case 1:
				v := randV()
				return Inclusive(v), func(w any, lo bool) bool {
					if lo {
						return cmpValue(k, w, v) >= 0
					}
					return cmpValue(k, w, v) <= 0
				}
			}
			v := randV()
			return Exclusive(v), func(w any, lo bool) bool {
				if lo {
					return cmpValue(k, w, v) > 0
				}
				return cmpValue(k, w, v) < 0
			}
		}
		lo, inLo := mk()
		hi, inHi := mk()
		rq.q = Range(name, lo, hi)
		rq.match = func(key string) bool {
			w, ok := h.m.value(x, key)
			return ok && inLo(w, true) && inHi(w, false)
		}
	default:
		if !k.escaped() {
			return h.randLeaf()
		}
		p := domains[field][r.IntN(len(domains[field]))]
		if len(p) > 0 {
			p = p[:r.IntN(len(p)+1)]
		}
		rq.q = Prefix(name, p)
		rq.match = func(key string) bool {
			w, ok := h.m.value(x, key)
			if !ok {
				return false
			}
			var b []byte
			if s, isStr := w.(string); isStr {
				b = []byte(s)
			} else {
				b = w.([]byte)
			}
			return bytes.HasPrefix(b, []byte(p))
		}
	}
	return rq
}

func (h *harness) randQuery(depth int) refQuery {
	if depth == 0 || h.r.IntN(3) == 0 {
		return h.randLeaf()
	}
	a, b := h.randQuery(depth-1), h.randQuery(depth-1)
	rq := refQuery{ready: a.ready && b.ready}
	switch h.r.IntN(3) {
	case 0:
		rq.q = And(a.q, b.q)
		rq.match = func(k string) bool { return a.match(k) && b.match(k) }
	case 1:
		rq.q = Or(a.q, b.q)
		rq.match = func(k string) bool { return a.match(k) || b.match(k) }
	default:
		rq.q = AndNot(a.q, b.q)
		rq.match = func(k string) bool { return a.match(k) && !b.match(k) }
	}
	return rq
}

// docNum reads the document number of key from the store.
func (h *harness) docNum(key string) uint32 {
	f, ok, err := lookupForward(h.st, []byte(key))
	if err != nil || !ok {
		h.fatalf("document %q has no number (%v)", key, err)
	}
	return f.Doc
}

// verify checks the store against the model: Check finds nothing, and
// random queries of every kind agree.
func (h *harness) verify() {
	rep, err := h.set.Check(h.st, h.m.docsFunc())
	if err != nil {
		h.fatalf("check: %v", err)
	}
	if len(rep.Problems) > 0 {
		h.fatalf("check: %d problems, first %v", len(rep.Problems), rep.Problems[0])
	}
	if len(h.m.indexes) == 0 {
		return
	}
	for range 6 {
		rq := h.randQuery(2)
		var want []string
		for _, k := range h.m.sortedKeys() {
			if rq.match(k) {
				want = append(want, k)
			}
		}
		b, err := Eval(h.st, rq.q)
		if !rq.ready {
			if !errors.Is(err, ErrNotReady) {
				h.fatalf("query on a building index: %v", err)
			}
			continue
		}
		if err != nil {
			h.fatalf("eval: %v", err)
		}
		var got []string
		for _, num := range b.ToArray() {
			v, ok, _ := h.st.Get(docNumKey(nil, num))
			if !ok {
				h.fatalf("result number %d has no key", num)
			}
			got = append(got, string(v))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			plan, _ := Explain(h.st, rq.q)
			h.fatalf("query\n%s\ngot  %q\nwant %q", plan, got, want)
		}
		h.queries++
		if len(want) > 0 {
			h.nonEmpty++
		}
		if n, err := Count(h.st, rq.q); err != nil || n != uint64(len(want)) {
			h.fatalf("count %d, %v; want %d", n, err, len(want))
		}
		// Key order, in pages.
		limit := h.r.IntN(4)
		pages := h.pages(rq.q, FindOptions{Order: KeyOrder, Limit: limit})
		if !slices.Equal(pages, want) {
			h.fatalf("key order pages of %d: %q, want %q", limit, pages, want)
		}
		// Index order by a ready index.
		var ready []string
		for n, x := range h.m.indexes {
			if x.ready {
				ready = append(ready, n)
			}
		}
		slices.Sort(ready)
		by := h.m.indexes[ready[h.r.IntN(len(ready))]]
		type kv struct {
			key string
			v   any
			num uint32
		}
		var ordered []kv
		for _, k := range want {
			if v, ok := h.m.value(by, k); ok {
				ordered = append(ordered, kv{k, v, h.docNum(k)})
			}
		}
		slices.SortFunc(ordered, func(a, b kv) int {
			if c := cmpValue(by.spec.Kind, a.v, b.v); c != 0 {
				return c
			}
			return int(int64(a.num) - int64(b.num))
		})
		var wantIdx []string
		for _, e := range ordered {
			wantIdx = append(wantIdx, e.key)
		}
		pages = h.pages(rq.q, FindOptions{Order: IndexOrder, By: by.spec.Name, Limit: limit})
		if !slices.Equal(pages, wantIdx) {
			plan, _ := Explain(h.st, rq.q)
			h.fatalf("index order by %s, pages of %d:\n%s\ngot  %q\nwant %q", by.spec.Name, limit, plan, pages, wantIdx)
		}
	}
}

// pages runs a Find to the end, page by page.
func (h *harness) pages(q Query, opt FindOptions) []string {
	var out []string
	for i := 0; ; i++ {
		p, err := Find(h.st, q, opt)
		if err != nil {
			h.fatalf("find %+v: %v", opt, err)
		}
		if opt.Limit > 0 && len(p.Keys) > opt.Limit {
			h.fatalf("page of %d keys, limit %d", len(p.Keys), opt.Limit)
		}
		for _, k := range p.Keys {
			out = append(out, string(k))
		}
		if p.Next == nil {
			return out
		}
		if len(p.Keys) == 0 || i > 1000 {
			h.fatalf("a page with a cursor and %d keys", len(p.Keys))
		}
		opt.Cursor = p.Next
	}
}

// TestModel runs random batches, index creations, interrupted builds,
// drops and restarts against the model, checking after every step.
func TestModel(t *testing.T) {
	seeds := 30
	steps := 300
	if testing.Short() {
		seeds, steps = 8, 150
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			h := &harness{t: t, r: rand.New(rand.NewPCG(uint64(seed), 99)), st: newMem(),
				m: &model{docs: map[string]refDoc{}, indexes: map[string]*refIndex{}}}
			h.restart()
			for range steps {
				switch x := h.r.IntN(100); {
				case x < 60:
					h.batch()
				case x < 66:
					h.create()
				case x < 85:
					h.build()
				case x < 88:
					h.restart()
				case x < 90 && len(h.m.indexes) > 0:
					names := h.set.Names()
					h.drop(names[h.r.IntN(len(names))])
				}
				h.verify()
			}
			t.Logf("%d unique violations, %d in builds, %d build steps, %d queries (%d non-empty)",
				h.violations, h.buildViolations, h.steps, h.queries, h.nonEmpty)
		})
	}
}

// TestUniqueInBatch: within one batch a value freed by one document can
// be taken by another, and taken twice it fails, leaving the overlay
// as it was before the failing write.
func TestUniqueInBatch(t *testing.T) {
	st := newMem()
	set, _ := Load(st, nil)
	ov := NewOverlay(st)
	set, err := set.Create(ov, Spec{Name: "email", Field: "e", Kind: String, Unique: true}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.BuildStep(ov, "email", func([]byte, func([]byte, oplog.Document) error) error { return nil }, 10); err != nil {
		t.Fatal(err)
	}
	st.commit(ov)
	doc := func(e string) oplog.Document {
		return oplog.Document{Exists: true, Fields: map[string][]byte{"e": []byte(e)}}
	}
	ov = NewOverlay(st)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(set.Update(ov, []byte("a"), doc("x@"), false))
	must(set.Update(ov, []byte("a"), doc("y@"), false)) // a frees x@
	must(set.Update(ov, []byte("b"), doc("x@"), false)) // b takes it
	before := ov.Len()
	err = set.Update(ov, []byte("c"), doc("y@"), false)
	if !errors.Is(err, ErrUniqueViolation) || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("c taking a's value: %v", err)
	}
	if ov.Len() != before {
		t.Fatalf("a failed update wrote %d keys", ov.Len()-before)
	}
	must(set.Update(ov, []byte("c"), doc("y@"), true)) // imported: indexed anyway
	st.commit(ov)
	if n, err := Count(st, Eq("email", "y@")); err != nil || n != 2 {
		t.Fatalf("count after an imported duplicate: %d, %v", n, err)
	}
	in, _ := set.Info(st, "email")
	if in.Duplicates != 1 {
		t.Fatalf("duplicates %d, want 1", in.Duplicates)
	}
}

// TestErrors: queries on unknown, building and mistyped indexes; bad
// cursors; an unbound extractor; a damaged catalog.
func TestErrors(t *testing.T) {
	st := newMem()
	set, _ := Load(st, nil)
	ov := NewOverlay(st)
	set, err := set.Create(ov, Spec{Name: "n", Field: "n", Kind: Int64}, 5)
	if err != nil {
		t.Fatal(err)
	}
	set, err = set.Create(ov, Spec{Name: "x", Kind: Int64, Extract: extractX}, 5)
	if err != nil {
		t.Fatal(err)
	}
	st.commit(ov)
	if _, err := Eval(st, Eq("n", 1)); !errors.Is(err, ErrNotReady) {
		t.Fatalf("building: %v", err)
	}
	if _, err := Eval(st, Eq("nope", 1)); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	for _, sp := range []Spec{{Name: "", Field: "a", Kind: Int64}, {Name: "a", Kind: Int64}, {Name: "a", Field: "a", Kind: 9},
		{Name: "a", Field: "a", Kind: Int64, Extract: extractX}} {
		if _, err := set.Create(NewOverlay(st), sp, 0); !errors.Is(err, ErrInvalid) {
			t.Fatalf("spec %+v: %v", sp, err)
		}
	}
	none := func([]byte, func([]byte, oplog.Document) error) error { return nil }
	ov = NewOverlay(st)
	for _, n := range []string{"n", "x"} {
		if _, err := set.BuildStep(ov, n, none, 1); err != nil {
			t.Fatal(err)
		}
	}
	st.commit(ov)
	for _, q := range []Query{{}, Eq("n", "text"), Eq("n", 1.5), Prefix("n", "1"), And(), Range("n", Inclusive(time.Now()), Unbounded())} {
		if _, err := Eval(st, q); !errors.Is(err, ErrInvalid) {
			t.Fatalf("query %+v: %v", q, err)
		}
	}
	for _, opt := range []FindOptions{{Cursor: []byte("zz")}, {Order: IndexOrder, By: "n", Cursor: []byte("k1")}, {Limit: -1}, {Order: 7}} {
		if _, err := Find(st, Eq("n", 1), opt); !errors.Is(err, ErrInvalid) {
			t.Fatalf("find %+v: %v", opt, err)
		}
	}
	// Loaded without the extractor: writes fail, naming the index.
	unbound, err := Load(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = unbound.Update(NewOverlay(st), []byte("k"), oplog.Document{Exists: true, Value: []byte("x=1")}, false)
	if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), `"x"`) {
		t.Fatalf("update with an unbound extractor: %v", err)
	}
	// A damaged catalog value fails Load and queries with ErrCorruption.
	v, _, _ := st.Get(catalogKey("n"))
	bad := slices.Clone(v)
	bad[3] ^= 4
	st.Set(catalogKey("n"), bad)
	if _, err := Load(st, extractors); !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("load of a damaged catalog: %v", err)
	}
	if _, err := Eval(st, Eq("n", 1)); !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("query of a damaged catalog: %v", err)
	}
}

// TestCheckFindsDamage: Check names a missing entry, an extra entry, a
// wrong forward key and a broken document number; Rebuild repairs them.
func TestCheckFindsDamage(t *testing.T) {
	st := newMem()
	m := &model{docs: map[string]refDoc{}}
	for i := range 50 {
		m.docs[fmt.Sprintf("k%02d", i)] = refDoc{fields: map[string]string{"n": fmt.Sprint(i % 7)}}
	}
	set, _ := Load(st, nil)
	ov := NewOverlay(st)
	set, _ = set.Create(ov, Spec{Name: "n", Field: "n", Kind: Int64}, 50)
	st.commit(ov)
	for {
		ov := NewOverlay(st)
		in, err := set.BuildStep(ov, "n", m.docsFunc(), 7)
		if err != nil {
			t.Fatal(err)
		}
		st.commit(ov)
		if in.Ready {
			if in.Done != 50 {
				t.Fatalf("built %d documents, want 50", in.Done)
			}
			break
		}
	}
	clean := st.clone()
	check := func(want ...string) {
		t.Helper()
		rep, err := set.Check(st, m.docsFunc())
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range rep.Problems {
			got = append(got, p.String())
		}
		all := strings.Join(got, "\n")
		for _, w := range want {
			if !strings.Contains(all, w) {
				t.Fatalf("check found\n%s\nnot %q", all, w)
			}
		}
		if len(want) == 0 && len(got) > 0 {
			t.Fatalf("check of a clean index found\n%s", all)
		}
	}
	check()
	fwd, _, _ := lookupForward(st, []byte("k03"))
	num := fwd.Doc
	enc, _ := EncodeValue(Int64, 3)
	st.Delete(entryKey(nil, 1, enc, num))
	check(`document "k03": no entry for its forward value`)
	st = clean.clone()
	enc9, _ := EncodeValue(Int64, 9)
	st.Set(entryKey(nil, 1, enc9, num), nil)
	check(`document "k03": extra entry int64 "9"`)
	st = clean.clone()
	st.Set(forwardKey(nil, []byte("k03")), AppendForward(nil, Forward{Doc: num, Values: []IndexValue{{ID: 1, Value: enc9}}}))
	check(`document "k03": indexed under int64 "9", holds int64 "3"`, `document "k03": extra entry int64 "3": the forward key says int64 "9"`)
	st = clean.clone()
	st.Delete(docNumKey(nil, num))
	check(`document numbers: "k03": number`)
	st = clean.clone()
	st.Set(forwardKey(nil, []byte("k03")), AppendForward(nil, Forward{Doc: num}))
	check(`document "k03": missing: holds int64 "3"`)
	st = clean.clone()
	st.Delete(forwardKey(nil, []byte("k03")))
	check(`document "k03": missing: holds int64 "3"`, `document numbers: "k03": number`)
	st = clean.clone()
	st.Set(forwardKey(nil, []byte("gone")), AppendForward(nil, Forward{Doc: 77, Values: []IndexValue{{ID: 1, Value: enc9}}}))
	check(`index "n": document "gone": extra forward value int64 "9": no such document`, `"gone": number 77 at or above the next number`)
	st = clean.clone()
	st.Set(forwardKey(nil, []byte("k03")), AppendForward(nil, Forward{Doc: num, Values: []IndexValue{{ID: 1, Value: enc}, {ID: 5, Value: enc9}}}))
	check(`document numbers: "k03": forward key holds a value of index id 5, which does not exist`)
	st = clean.clone()
	st.Set(forwardKey(nil, []byte("k03")), []byte{0, 0, 1})
	check(`document numbers: "k03": forward key: pluresdb: corruption in index forward value`)
	// A forward key holds every index's value: one that does not decode
	// stops a Rebuild or a Drop loudly rather than lose them.
	if err := set.Rebuild(NewOverlay(st), "n"); !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("rebuild over a damaged forward key: %v", err)
	}
	if _, err := set.Drop(NewOverlay(st), "n"); !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("drop over a damaged forward key: %v", err)
	}
	// Rebuild repairs the index from the documents.
	st = clean.clone()
	st.Set(entryKey(nil, 1, enc9, num), nil)
	st.Set(forwardKey(nil, []byte("k05")), AppendForward(nil, Forward{Doc: 5}))
	ov = NewOverlay(st)
	if err := set.Rebuild(ov, "n"); err != nil {
		t.Fatal(err)
	}
	st.commit(ov)
	if _, err := Eval(st, Eq("n", 1)); !errors.Is(err, ErrNotReady) {
		t.Fatalf("query during a rebuild: %v", err)
	}
	ov = NewOverlay(st)
	if in, err := set.BuildStep(ov, "n", m.docsFunc(), 100); err != nil || !in.Ready {
		t.Fatalf("rebuild: %+v, %v", in, err)
	}
	st.commit(ov)
	check()
	if n, err := Count(st, Eq("n", 3)); err != nil || n != 7 {
		t.Fatalf("after rebuild: %d, %v", n, err)
	}
}

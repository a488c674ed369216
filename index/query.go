package index

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/plures/pluresdb/internal/errs"
)

// Query selects documents by their indexed values. Build one with Eq,
// Range, Prefix, And, Or and AndNot; the zero Query is invalid.
type Query struct {
	op     op
	index  string
	v      any
	lo, hi Bound
	subs   []Query
}

type op uint8

const (
	opInvalid op = iota
	opEq
	opRange
	opPrefix
	opAnd
	opOr
	opAndNot
)

// Bound is one end of a Range: Inclusive, Exclusive or Unbounded (the
// zero Bound).
type Bound struct {
	v    any
	excl bool
	set  bool
}

// Inclusive is an end of a range that includes v.
func Inclusive(v any) Bound { return Bound{v: v, set: true} }

// Exclusive is an end of a range that excludes v.
func Exclusive(v any) Bound { return Bound{v: v, excl: true, set: true} }

// Unbounded is an open end of a range.
func Unbounded() Bound { return Bound{} }

// Eq selects the documents whose value in index is v (a Go value of the
// index's kind, see EncodeValue).
func Eq(index string, v any) Query { return Query{op: opEq, index: index, v: v} }

// Range selects the documents whose value in index lies between lo and hi.
func Range(index string, lo, hi Bound) Query {
	return Query{op: opRange, index: index, lo: lo, hi: hi}
}

// Prefix selects the documents whose value in index (Bytes or String)
// starts with p (a string or []byte).
func Prefix(index string, p any) Query { return Query{op: opPrefix, index: index, v: p} }

// And selects the documents every query selects.
func And(qs ...Query) Query { return Query{op: opAnd, subs: qs} }

// Or selects the documents any query selects.
func Or(qs ...Query) Query { return Query{op: opOr, subs: qs} }

// AndNot selects the documents a selects and b does not.
func AndNot(a, b Query) Query { return Query{op: opAndNot, subs: []Query{a, b}} }

// node is a query resolved against the catalog: leaves hold the key
// range of entries they read.
type node struct {
	op     op
	in     Info
	lo, hi []byte
	desc   string
	subs   []*node
}

// resolve checks q against the catalog of st (every index named must be
// ready) and computes each leaf's key range.
func resolve(st Store, q Query, cat map[string]Info) (*node, error) {
	switch q.op {
	case opAnd, opOr, opAndNot:
		if len(q.subs) == 0 {
			return nil, fmt.Errorf("%w: an empty %s", ErrInvalid, opName(q.op))
		}
		n := &node{op: q.op}
		for _, s := range q.subs {
			c, err := resolve(st, s, cat)
			if err != nil {
				return nil, err
			}
			n.subs = append(n.subs, c)
		}
		return n, nil
	case opEq, opRange, opPrefix:
	default:
		return nil, fmt.Errorf("%w: the zero Query", ErrInvalid)
	}
	in, err := readyIndex(st, q.index, cat)
	if err != nil {
		return nil, err
	}
	n := &node{op: q.op, in: in}
	base := entryPrefix(nil, in.ID)
	switch q.op {
	case opEq:
		enc, err := EncodeValue(in.Kind, q.v)
		if err != nil {
			return nil, fmt.Errorf("index %q: %w", q.index, err)
		}
		n.lo = append(base, enc...)
		n.hi = prefixEnd(n.lo)
		n.desc = fmt.Sprintf("%s = %v", q.index, q.v)
	case opPrefix:
		if !in.Kind.escaped() {
			return nil, fmt.Errorf("%w: prefix query on %v index %q", ErrInvalid, in.Kind, q.index)
		}
		var p []byte
		switch v := q.v.(type) {
		case string:
			p = []byte(v)
		case []byte:
			p = v
		default:
			return nil, fmt.Errorf("%w: a %T prefix for index %q", ErrInvalid, q.v, q.index)
		}
		n.lo = appendEscaped(base, p)
		n.hi = prefixEnd(n.lo)
		n.desc = fmt.Sprintf("%s prefix %q", q.index, p)
	case opRange:
		n.lo, n.hi = base, prefixEnd(base)
		lo, hi := "(-inf", "+inf)"
		if q.lo.set {
			enc, err := EncodeValue(in.Kind, q.lo.v)
			if err != nil {
				return nil, fmt.Errorf("index %q: %w", q.index, err)
			}
			n.lo, lo = append(slices.Clip(base), enc...), fmt.Sprintf("[%v", q.lo.v)
			if q.lo.excl {
				n.lo, lo = prefixEnd(n.lo), fmt.Sprintf("(%v", q.lo.v)
			}
		}
		if q.hi.set {
			enc, err := EncodeValue(in.Kind, q.hi.v)
			if err != nil {
				return nil, fmt.Errorf("index %q: %w", q.index, err)
			}
			n.hi, hi = prefixEnd(append(slices.Clip(base), enc...)), fmt.Sprintf("%v]", q.hi.v)
			if q.hi.excl {
				n.hi, hi = append(slices.Clip(base), enc...), fmt.Sprintf("%v)", q.hi.v)
			}
		}
		n.desc = fmt.Sprintf("%s in %s, %s", q.index, lo, hi)
	}
	return n, nil
}

// readyIndex reads the catalog entry of name, which must be ready.
func readyIndex(st Store, name string, cat map[string]Info) (Info, error) {
	if in, ok := cat[name]; ok {
		return in, nil
	}
	in, ok, err := readCatalog(st, name)
	switch {
	case err != nil:
		return Info{}, err
	case !ok:
		return Info{}, fmt.Errorf("%w: index %q", errs.ErrNotFound, name)
	case !in.Ready:
		return Info{}, fmt.Errorf("%w: index %q is being built (%d of about %d documents)", ErrNotReady, name, in.Done, in.Estimate)
	}
	cat[name] = in
	return in, nil
}

func opName(o op) string {
	return [...]string{"invalid", "eq", "range", "prefix", "and", "or", "andnot"}[o]
}

// eval computes the documents n selects, scanning only its leaves' ranges.
func (n *node) eval(st Store) (*roaring.Bitmap, error) {
	switch n.op {
	case opEq, opRange, opPrefix:
		b := roaring.New()
		if bytes.Compare(n.lo, n.hi) >= 0 {
			return b, nil
		}
		var buf []uint32
		err := st.Scan(n.lo, n.hi, func(k, _ []byte) error {
			if len(k) < 1+4+1+4 {
				return errs.Corruptf(whatKey, -1, "index %q: entry key %x", n.in.Name, k)
			}
			buf = append(buf, binary.BigEndian.Uint32(k[len(k)-4:]))
			if len(buf) == 4096 {
				b.AddMany(buf)
				buf = buf[:0]
			}
			return nil
		})
		b.AddMany(buf)
		return b, err
	}
	acc, err := n.subs[0].eval(st)
	if err != nil {
		return nil, err
	}
	for _, s := range n.subs[1:] {
		if acc.IsEmpty() && n.op != opOr {
			break
		}
		b, err := s.eval(st)
		if err != nil {
			return nil, err
		}
		switch n.op {
		case opAnd:
			acc.And(b)
		case opOr:
			acc.Or(b)
		case opAndNot:
			acc.AndNot(b)
		}
	}
	return acc, nil
}

// Eval returns the numbers of the documents q selects, reading only the
// entry ranges q names in st (never the documents). An index that is not
// ready is an error wrapping ErrNotReady; an unknown one errs.ErrNotFound.
func Eval(st Store, q Query) (*roaring.Bitmap, error) {
	n, err := resolve(st, q, map[string]Info{})
	if err != nil {
		return nil, err
	}
	return n.eval(st)
}

// Count returns how many documents q selects, without looking up their
// keys.
func Count(st Store, q Query) (uint64, error) {
	b, err := Eval(st, q)
	if err != nil {
		return 0, err
	}
	return b.GetCardinality(), nil
}

// Order is the order Find returns documents in.
type Order uint8

const (
	// KeyOrder: by document key.
	KeyOrder Order = iota
	// IndexOrder: by value in the index FindOptions.By, then by document
	// number. Only documents holding a value in that index are returned.
	IndexOrder
)

// FindOptions shape a Find.
type FindOptions struct {
	Order  Order
	By     string // IndexOrder: the index whose values order the result
	Limit  int    // at most this many keys; 0: no limit
	Cursor []byte // a Page.Next of the same query and order: resume after it
}

// Page is one page of a Find.
type Page struct {
	Keys [][]byte // the documents' keys, in the order asked for
	Next []byte   // nil when the result is complete; else the cursor for the next page
}

// Find returns the keys of the documents q selects, in key or index
// order, a page of at most Limit at a time. Key order evaluates the whole
// query and looks up each selected document's key (O(result) per page);
// index order walks the entries of one index in value order within the
// range the query allows it, keeping the selected documents, and stops
// after Limit. A cursor stays valid across writes: the next page starts
// after its key (or entry) in the view it reads.
func Find(st Store, q Query, opt FindOptions) (Page, error) {
	if opt.Limit < 0 {
		return Page{}, fmt.Errorf("%w: limit %d", ErrInvalid, opt.Limit)
	}
	cat := map[string]Info{}
	n, err := resolve(st, q, cat)
	if err != nil {
		return Page{}, err
	}
	b, err := n.eval(st)
	if err != nil {
		return Page{}, err
	}
	switch opt.Order {
	case KeyOrder:
		return findKeyOrder(st, b, opt)
	case IndexOrder:
		return findIndexOrder(st, n, b, opt, cat)
	}
	return Page{}, fmt.Errorf("%w: order %d", ErrInvalid, opt.Order)
}

// cursorKeyOrder starts a key-order cursor (the last key returned
// follows).
const cursorKeyOrder = 'k'

func findKeyOrder(st Store, b *roaring.Bitmap, opt FindOptions) (Page, error) {
	var after []byte
	if opt.Cursor != nil {
		if len(opt.Cursor) < 2 || opt.Cursor[0] != cursorKeyOrder {
			return Page{}, fmt.Errorf("%w: cursor %x is not a key-order cursor", ErrInvalid, opt.Cursor)
		}
		after = opt.Cursor[1:]
	}
	keys := make([][]byte, 0, b.GetCardinality())
	it := b.Iterator()
	kb := make([]byte, 0, 5)
	for it.HasNext() {
		num := it.Next()
		v, ok, err := st.Get(docNumKey(kb[:0], num))
		if err != nil {
			return Page{}, err
		}
		if !ok {
			return Page{}, errs.Corruptf(whatKey, -1, "document number %d has an entry and no key", num)
		}
		if after == nil || bytes.Compare(v, after) > 0 {
			keys = append(keys, append([]byte(nil), v...))
		}
	}
	slices.SortFunc(keys, bytes.Compare)
	var p Page
	if opt.Limit > 0 && len(keys) > opt.Limit {
		keys = keys[:opt.Limit]
		p.Next = append([]byte{cursorKeyOrder}, keys[len(keys)-1]...)
	}
	p.Keys = keys
	return p, nil
}

// span returns the part of index id's entries that can hold documents n
// selects.
func (n *node) span(id uint32) (lo, hi []byte) {
	switch n.op {
	case opEq, opRange, opPrefix:
		if n.in.ID == id {
			return n.lo, n.hi
		}
	case opAnd:
		lo, hi = n.subs[0].span(id)
		for _, s := range n.subs[1:] {
			l, h := s.span(id)
			if bytes.Compare(l, lo) > 0 {
				lo = l
			}
			if bytes.Compare(h, hi) < 0 {
				hi = h
			}
		}
		return lo, hi
	case opOr:
		lo, hi = n.subs[0].span(id)
		for _, s := range n.subs[1:] {
			l, h := s.span(id)
			if bytes.Compare(l, lo) < 0 {
				lo = l
			}
			if bytes.Compare(h, hi) > 0 {
				hi = h
			}
		}
		return lo, hi
	case opAndNot:
		return n.subs[0].span(id)
	}
	p := entryPrefix(nil, id)
	return p, prefixEnd(p)
}

func findIndexOrder(st Store, n *node, b *roaring.Bitmap, opt FindOptions, cat map[string]Info) (Page, error) {
	by, err := readyIndex(st, opt.By, cat)
	if err != nil {
		return Page{}, err
	}
	lo, hi := n.span(by.ID)
	if opt.Cursor != nil {
		k, err := ParseKey(opt.Cursor)
		if err != nil || k.Type != pEntry || k.ID != by.ID {
			return Page{}, fmt.Errorf("%w: cursor %x is not an index-order cursor of index %q", ErrInvalid, opt.Cursor, opt.By)
		}
		if c := append(slices.Clip(opt.Cursor), 0); bytes.Compare(c, lo) > 0 {
			lo = c
		}
	}
	var p Page
	if bytes.Compare(lo, hi) >= 0 || b.IsEmpty() {
		return p, nil
	}
	var nums []uint32
	var last []byte
	err = st.Scan(lo, hi, func(k, _ []byte) error {
		if len(k) < 1+4+1+4 {
			return errs.Corruptf(whatKey, -1, "index %q: entry key %x", opt.By, k)
		}
		num := binary.BigEndian.Uint32(k[len(k)-4:])
		if !b.Contains(num) {
			return nil
		}
		if opt.Limit > 0 && len(nums) == opt.Limit {
			p.Next = last
			return errStop
		}
		nums = append(nums, num)
		last = append(last[:0], k...)
		return nil
	})
	if err != nil && err != errStop {
		return Page{}, err
	}
	for _, num := range nums {
		v, ok, err := st.Get(docNumKey(nil, num))
		if err != nil {
			return Page{}, err
		}
		if !ok {
			return Page{}, errs.Corruptf(whatKey, -1, "document number %d has an entry and no key", num)
		}
		p.Keys = append(p.Keys, append([]byte(nil), v...))
	}
	return p, nil
}

// Step is one key range a query reads.
type Step struct {
	Index  string
	ID     uint32
	Kind   Kind
	What   string // the condition, as written
	Lo, Hi []byte // the entry keys read: [Lo, Hi), within the namespace
}

// Plan says how a query is answered: which indexes and key ranges it
// reads, and how their bitmaps combine (Text).
type Plan struct {
	Steps []Step
	Text  string
}

func (p Plan) String() string { return p.Text }

// Explain resolves q against the catalog of st as Eval would (the same
// errors) and says what it reads, without reading it.
func Explain(st Store, q Query) (Plan, error) {
	n, err := resolve(st, q, map[string]Info{})
	if err != nil {
		return Plan{}, err
	}
	var p Plan
	var sb strings.Builder
	var walk func(n *node, depth int)
	walk = func(n *node, depth int) {
		sb.WriteString(strings.Repeat("  ", depth))
		switch n.op {
		case opEq, opRange, opPrefix:
			p.Steps = append(p.Steps, Step{Index: n.in.Name, ID: n.in.ID, Kind: n.in.Kind, What: n.desc, Lo: n.lo, Hi: n.hi})
			fmt.Fprintf(&sb, "scan index %q (%v, id %d) for %s: keys [%x, %x)\n", n.in.Name, n.in.Kind, n.in.ID, n.desc, n.lo, n.hi)
			return
		}
		fmt.Fprintf(&sb, "%s of bitmaps\n", opName(n.op))
		for _, s := range n.subs {
			walk(s, depth+1)
		}
	}
	walk(n, 0)
	p.Text = sb.String()
	return p, nil
}

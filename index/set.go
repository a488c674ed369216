package index

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
)

// Extractor returns the value a document is indexed under from its key
// and whole value (a JSON field, say); ok false leaves the document out
// of the index. It must be deterministic and must not keep its arguments.
// Its result goes through ParseValue like a field's bytes.
type Extractor func(key, value []byte) (v []byte, ok bool)

// Spec defines an index: over one document field (Field, as SetField
// writes it) or, with Extract, over the whole value. A document has at
// most one value in an index.
type Spec struct {
	Name    string // 1 to MaxNameLen bytes of UTF-8
	Field   string // the field; empty with Extract
	Kind    Kind
	Unique  bool // a local write giving a held value to another document fails
	Extract Extractor
}

// MaxNameLen is the longest index name.
const MaxNameLen = 255

// MaxValueLen is the longest encoded value an index holds; a document
// whose value encodes longer is left out of the index and counted in
// Info.Unparsed, as an unparsable value is.
const MaxValueLen = 4096

func (sp Spec) validate() error {
	switch {
	case sp.Name == "" || len(sp.Name) > MaxNameLen || !utf8.ValidString(sp.Name):
		return fmt.Errorf("%w: index name %q: 1 to %d bytes of UTF-8", ErrInvalid, sp.Name, MaxNameLen)
	case !sp.Kind.valid():
		return fmt.Errorf("%w: index %q: %v", ErrInvalid, sp.Name, sp.Kind)
	case (sp.Field == "") == (sp.Extract == nil):
		return fmt.Errorf("%w: index %q: give a field or an extractor, not both or neither", ErrInvalid, sp.Name)
	}
	return nil
}

// ix is one index of a Set.
type ix struct {
	name     string
	id       uint32
	kind     Kind
	field    string
	unique   bool
	extract  Extractor
	unbound  bool // the catalog says Extract, and Load was given no extractor
	unparsed atomic.Uint64
	dups     atomic.Uint64
}

// Set is the indexes of a database, as of the last Load, Create or Drop.
// It is immutable: Create and Drop return a new Set, which the engine
// adopts once the batch holding their writes has committed (in-memory
// counters are shared between the two). Methods that write (Update,
// BuildStep, Create, Drop, Rebuild) must run under the engine's commit
// lock, one at a time; queries read any consistent view concurrently.
type Set struct {
	list   []*ix // by id
	byName map[string]*ix
}

// Load reads the catalog. extractors gives the extractor of each index
// created with one (by name); such an index without its extractor is
// unbound: Update fails (ErrNotReady) rather than let it fall behind the
// documents, until the engine loads again with it or drops the index.
func Load(st Store, extractors map[string]Extractor) (*Set, error) {
	s := &Set{byName: map[string]*ix{}}
	err := st.Scan([]byte{pCatalog}, []byte{pCatalog + 1}, func(k, v []byte) error {
		in, err := DecodeCatalog(v)
		if err != nil {
			return fmt.Errorf("index %q: %w", k[1:], err)
		}
		x := &ix{name: string(k[1:]), id: in.ID, kind: in.Kind, field: in.Field, unique: in.Unique}
		if in.Extract {
			x.extract = extractors[x.name]
			x.unbound = x.extract == nil
		}
		s.byName[x.name] = x
		s.list = append(s.list, x)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(s.list, func(a, b *ix) int { return int(int64(a.id) - int64(b.id)) })
	for i := 1; i < len(s.list); i++ {
		if s.list[i].id == s.list[i-1].id {
			return nil, errs.Corruptf(whatCatalog, -1, "indexes %q and %q share id %d", s.list[i-1].name, s.list[i].name, s.list[i].id)
		}
	}
	return s, nil
}

// with returns a copy of s with x added (or, x nil, name removed).
func (s *Set) with(x *ix, drop string) *Set {
	n := &Set{byName: map[string]*ix{}}
	for _, y := range s.list {
		if y.name != drop {
			n.list = append(n.list, y)
			n.byName[y.name] = y
		}
	}
	if x != nil {
		n.list = append(n.list, x)
		n.byName[x.name] = x
	}
	return n
}

// Names returns the names of the indexes, in creation order.
func (s *Set) Names() []string {
	out := make([]string, len(s.list))
	for i, x := range s.list {
		out[i] = x.name
	}
	return out
}

// Info returns what the catalog in st says of the index name, with the
// Set's counters. An index not in the Set is an error wrapping
// errs.ErrNotFound.
func (s *Set) Info(st Store, name string) (Info, error) {
	x, in, err := s.lookup(st, name)
	if err != nil {
		return Info{}, err
	}
	in.Unparsed, in.Duplicates = x.unparsed.Load(), x.dups.Load()
	return in, nil
}

// lookup returns the index name and its catalog entry, which must agree.
func (s *Set) lookup(st Store, name string) (*ix, Info, error) {
	x := s.byName[name]
	if x == nil {
		return nil, Info{}, fmt.Errorf("%w: index %q", errs.ErrNotFound, name)
	}
	in, ok, err := readCatalog(st, name)
	switch {
	case err != nil:
		return nil, Info{}, err
	case !ok || in.ID != x.id:
		return nil, Info{}, errs.Corruptf(whatCatalog, -1, "index %q (id %d) is not in the catalog", name, x.id)
	}
	return x, in, nil
}

// Create writes a new index's catalog entry, not ready, to be built by
// BuildStep (estimate: the documents the engine expects the build to
// visit, for progress). It returns the Set holding it. A name in use is
// an error wrapping ErrInvalid.
func (s *Set) Create(rw ReadWriter, sp Spec, estimate uint64) (*Set, error) {
	if err := sp.validate(); err != nil {
		return nil, err
	}
	if _, ok := s.byName[sp.Name]; ok {
		return nil, fmt.Errorf("%w: index %q exists", ErrInvalid, sp.Name)
	}
	if _, ok, err := readCatalog(rw, sp.Name); err != nil || ok {
		if err == nil {
			err = fmt.Errorf("%w: index %q exists in the catalog", ErrInvalid, sp.Name)
		}
		return nil, err
	}
	id := uint32(1)
	v, ok, err := rw.Get([]byte{pNextID})
	switch {
	case err != nil:
		return nil, err
	case ok && len(v) != 4:
		return nil, errs.Corruptf(whatCatalog, -1, "next index id of %d bytes", len(v))
	case ok:
		id = binary.BigEndian.Uint32(v)
	}
	if id == 0 || id == math.MaxUint32 {
		return nil, fmt.Errorf("%w: index ids exhausted", ErrInvalid)
	}
	rw.Set([]byte{pNextID}, binary.BigEndian.AppendUint32(nil, id+1))
	in := Info{Name: sp.Name, ID: id, Kind: sp.Kind, Field: sp.Field, Unique: sp.Unique, Extract: sp.Extract != nil, Estimate: estimate}
	rw.Set(catalogKey(sp.Name), appendCatalog(nil, in))
	x := &ix{name: sp.Name, id: id, kind: sp.Kind, field: sp.Field, unique: sp.Unique, extract: sp.Extract}
	return s.with(x, ""), nil
}

// Drop deletes the index name: its catalog entry, entries and forward
// keys (as many writes as it has entries, twice). Document numbers stay.
// It returns the Set without it.
func (s *Set) Drop(rw ReadWriter, name string) (*Set, error) {
	x, _, err := s.lookup(rw, name)
	if err != nil {
		return nil, err
	}
	if err := clearIndex(rw, x.id); err != nil {
		return nil, err
	}
	rw.Delete(catalogKey(name))
	return s.with(nil, name), nil
}

// Rebuild deletes the entries and forward keys of the index name and puts
// it back to building from the first document (fsck's repair of a damaged
// index); BuildStep then builds it again.
func (s *Set) Rebuild(rw ReadWriter, name string) error {
	x, in, err := s.lookup(rw, name)
	if err != nil {
		return err
	}
	if err := clearIndex(rw, x.id); err != nil {
		return err
	}
	in.Ready, in.Cursor, in.Done = false, nil, 0
	rw.Set(catalogKey(name), appendCatalog(nil, in))
	return nil
}

// clearIndex deletes the entries of index id and its values in the
// forward keys (which stay, holding the document numbers).
func clearIndex(rw ReadWriter, id uint32) error {
	p := entryPrefix(nil, id)
	var keys [][]byte
	err := rw.Scan(p, prefixEnd(p), func(k, _ []byte) error {
		keys = append(keys, append([]byte(nil), k...))
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		rw.Delete(k)
	}
	type rewrite struct{ key, value []byte }
	var rws []rewrite
	err = rw.Scan([]byte{pForward}, []byte{pForward + 1}, func(k, v []byte) error {
		f, err := DecodeForward(v)
		if err != nil {
			return fmt.Errorf("forward key of document %q: %w", k[1:], err)
		}
		i := slices.IndexFunc(f.Values, func(v IndexValue) bool { return v.ID == id })
		if i < 0 {
			return nil
		}
		f.Values = slices.Delete(f.Values, i, i+1)
		rws = append(rws, rewrite{append([]byte(nil), k...), AppendForward(nil, f)})
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range rws {
		rw.Set(r.key, r.value)
	}
	return nil
}

// value returns the encoded value doc has in x; ok false if none.
func (x *ix) value(key []byte, doc oplog.Document) ([]byte, bool) {
	if !doc.Exists {
		return nil, false
	}
	if x.extract != nil {
		return x.parse(x.extract(key, doc.Value))
	}
	raw, ok := doc.Fields[x.field]
	return x.parse(raw, ok)
}

// parse encodes the raw value a document has in x (ok false: none),
// counting a value that does not parse or is too long.
func (x *ix) parse(raw []byte, ok bool) ([]byte, bool) {
	if !ok {
		return nil, false
	}
	enc, err := ParseValue(x.kind, raw)
	if err != nil || len(enc) > MaxValueLen {
		x.unparsed.Add(1)
		return nil, false
	}
	return enc, true
}

// Update keeps every index in step with one document change: doc is the
// document's state after the change (doc.Exists false: deleted). It reads
// the document's number and, per index, the value it was indexed under
// (its forward key); where that differs from the new value it deletes
// the old entry and writes the new one and the forward key, assigning the
// document a number on its first entry. The writes go to rw, whose reads
// must see them (an Overlay): the engine runs every document of a batch
// through one rw and commits the writes with the batch.
//
// A new value of a unique index that another document holds fails the
// call with an error wrapping ErrUniqueViolation before anything is
// written, unless remote (an imported operation, which replicas must
// apply alike): then both documents are indexed and Info.Duplicates
// counts it. An index whose extractor is not registered fails every
// Update with ErrNotReady.
func (s *Set) Update(rw ReadWriter, key []byte, doc oplog.Document, remote bool) error {
	return update(rw, s.list, key, docSource{doc}, remote)
}

// FieldWrite is one field write of a Change: SetField, or DeleteField
// when Deleted.
type FieldWrite struct {
	Name, Value []byte
	Deleted     bool
}

// Change is a local write to one document as its own operations say it,
// without the stored state: a local write orders above everything the
// replica has stored (ARCHITECTURE.md, "Secondary indexes"), so a Put
// gives the document its value and clears every field, a Delete leaves
// nothing, and a field write decides the field. Whole says the change
// replaced the document (Put says how: a Put of Value, else a Delete);
// Fields are the field writes after that replacement (or all of them),
// in order, the last write of a field winning.
type Change struct {
	Whole  bool
	Put    bool
	Value  []byte
	Fields []FieldWrite
}

// UpdateChange is Update for a local change described by its operations
// (Change): an index whose field the change does not write, with no Put
// or Delete, is left alone without a read. An extractor's index needs the
// document's whole value, which a change of fields alone does not give:
// then doc is called (once) for the document's state after the change.
// Unique indexes are checked as by Update, with remote false.
func (s *Set) UpdateChange(rw ReadWriter, key []byte, c *Change, doc func() (oplog.Document, error)) error {
	return update(rw, s.list, key, &changeSource{c: c, full: doc}, false)
}

// source gives the value a document has in an index after a change;
// touched false when the change leaves the index alone.
type source interface {
	value(x *ix, key []byte) (enc []byte, ok, touched bool, err error)
}

type docSource struct{ doc oplog.Document }

func (d docSource) value(x *ix, key []byte) ([]byte, bool, bool, error) {
	enc, ok := x.value(key, d.doc)
	return enc, ok, true, nil
}

type changeSource struct {
	c      *Change
	full   func() (oplog.Document, error)
	doc    oplog.Document
	loaded bool
}

func (s *changeSource) value(x *ix, key []byte) ([]byte, bool, bool, error) {
	c := s.c
	if x.extract == nil {
		for i := len(c.Fields) - 1; i >= 0; i-- {
			if f := &c.Fields[i]; string(f.Name) == x.field {
				if f.Deleted {
					return nil, false, true, nil
				}
				enc, ok := x.parse(f.Value, true)
				return enc, ok, true, nil
			}
		}
		return nil, false, c.Whole, nil
	}
	if c.Whole {
		if !c.Put && !c.liveField() {
			return nil, false, true, nil
		}
		enc, ok := x.parse(x.extract(key, c.Value))
		return enc, ok, true, nil
	}
	if !s.loaded {
		doc, err := s.full()
		if err != nil {
			return nil, false, false, err
		}
		s.doc, s.loaded = doc, true
	}
	enc, ok := x.value(key, s.doc)
	return enc, ok, true, nil
}

// liveField reports whether some field's last write in c sets it.
func (c *Change) liveField() bool {
	for i := range c.Fields {
		if c.Fields[i].Deleted {
			continue
		}
		last := true
		for j := i + 1; j < len(c.Fields); j++ {
			if bytes.Equal(c.Fields[j].Name, c.Fields[i].Name) {
				last = false
				break
			}
		}
		if last {
			return true
		}
	}
	return false
}

// change is one index's entry change for a document.
type change struct {
	x             *ix
	old, new      []byte
	hadOld, isNew bool
}

func update(rw ReadWriter, xs []*ix, key []byte, src source, remote bool) error {
	if len(xs) == 0 {
		return nil
	}
	if len(key) == 0 {
		return fmt.Errorf("%w: empty document key", ErrInvalid)
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	var num uint32
	var have, looked bool
	olds := sc.olds[:0]
	changes := sc.changes[:0]
	for _, x := range xs {
		if x.unbound {
			return fmt.Errorf("%w: index %q: its extractor is not registered", ErrNotReady, x.name)
		}
		nv, isNew, touched, err := src.value(x, key)
		if err != nil {
			return err
		}
		if !touched {
			continue
		}
		if !looked {
			sc.fk = forwardKey(sc.fk[:0], key)
			v, ok, err := rw.Get(sc.fk)
			if err != nil {
				return err
			}
			if ok {
				sc.fv = append(sc.fv[:0], v...)
				if num, olds, err = decodeForward(olds, sc.fv); err != nil {
					return fmt.Errorf("forward key of document %q: %w", key, err)
				}
				have = true
			}
			looked = true
		}
		var ov []byte
		var hadOld bool
		if i := slices.IndexFunc(olds, func(v IndexValue) bool { return v.ID == x.id }); i >= 0 {
			ov, hadOld = olds[i].Value, true
			if n, err := valueLen(x.kind, ov); err != nil || n != len(ov) {
				return fmt.Errorf("index %q: forward key of document %q: %w", x.name, key, errs.Corruptf(whatValue, -1, "bad stored value %x", ov))
			}
		}
		if hadOld == isNew && (!isNew || bytes.Equal(ov, nv)) {
			continue
		}
		if isNew && x.unique {
			other, held, err := holder(rw, x, nv, num, have)
			if err != nil {
				return err
			}
			if held {
				if !remote {
					return fmt.Errorf("%w: index %q: document %q holds the value document %q is given", ErrUniqueViolation, x.name, other, key)
				}
				x.dups.Add(1)
			}
		}
		changes = append(changes, change{x: x, old: ov, new: nv, hadOld: hadOld, isNew: isNew})
	}
	sc.olds, sc.changes = olds[:0], changes[:0]
	if len(changes) == 0 {
		return nil
	}
	if !have {
		var err error
		if num, err = assignNum(rw, key, sc); err != nil {
			return err
		}
	}
	// The new forward value: the old values with the changed ones
	// replaced, removed or added, in id order.
	vals := sc.vals[:0]
	for _, o := range olds {
		if !slices.ContainsFunc(changes, func(c change) bool { return c.x.id == o.ID }) {
			vals = append(vals, o)
		}
	}
	kb := sc.kb[:0]
	for _, c := range changes {
		if c.hadOld {
			kb = entryKey(kb[:0], c.x.id, c.old, num)
			rw.Delete(kb)
		}
		if c.isNew {
			kb = entryKey(kb[:0], c.x.id, c.new, num)
			rw.Set(kb, nil)
			vals = append(vals, IndexValue{ID: c.x.id, Value: c.new})
		}
	}
	slices.SortFunc(vals, func(a, b IndexValue) int { return cmp.Compare(a.ID, b.ID) })
	sc.buf = AppendForward(sc.buf[:0], Forward{Doc: num, Values: vals})
	rw.Set(sc.fk, sc.buf)
	sc.kb, sc.vals = kb, vals[:0]
	return nil
}

// scratch is update's reusable buffers.
type scratch struct {
	fk, fv, kb, buf []byte
	olds, vals      []IndexValue
	changes         []change
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// holder returns the key of a document other than num holding enc in x.
func holder(st Store, x *ix, enc []byte, num uint32, have bool) ([]byte, bool, error) {
	p := entryKey(nil, x.id, enc, 0)
	p = p[:len(p)-4]
	var other uint32
	found := false
	err := st.Scan(p, prefixEnd(p), func(k, _ []byte) error {
		if len(k) != len(p)+4 {
			return errs.Corruptf(whatKey, -1, "index %q: entry key %x", x.name, k)
		}
		if n := binary.BigEndian.Uint32(k[len(p):]); !have || n != num {
			other, found = n, true
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return nil, false, err
	}
	if !found {
		return nil, false, nil
	}
	dk, ok, err := st.Get(docNumKey(nil, other))
	if err != nil {
		return nil, false, err
	}
	if !ok {
		return nil, false, errs.Corruptf(whatKey, -1, "document number %d has no key", other)
	}
	return append([]byte(nil), dk...), true, nil
}

// lookupForward returns the forward value of the document key (Values
// alias a copy).
func lookupForward(st Store, key []byte) (Forward, bool, error) {
	v, ok, err := st.Get(forwardKey(nil, key))
	if err != nil || !ok {
		return Forward{}, false, err
	}
	f, err := DecodeForward(slices.Clone(v))
	if err != nil {
		return Forward{}, false, fmt.Errorf("forward key of document %q: %w", key, err)
	}
	return f, true, nil
}

// assignNum gives key the next document number (its forward key is the
// caller's to write).
func assignNum(rw ReadWriter, key []byte, sc *scratch) (uint32, error) {
	var next uint64
	v, ok, err := rw.Get([]byte{pNextNum})
	switch {
	case err != nil:
		return 0, err
	case ok && len(v) != 8:
		return 0, errs.Corruptf(whatKey, -1, "next document number of %d bytes", len(v))
	case ok:
		next = binary.BigEndian.Uint64(v)
	}
	if next > math.MaxUint32 {
		return 0, fmt.Errorf("%w: document numbers exhausted (2^32 documents indexed)", ErrInvalid)
	}
	num := uint32(next)
	sc.kb = binary.BigEndian.AppendUint64(append(sc.kb[:0], pNextNum), next+1)
	rw.Set(sc.kb[:1], sc.kb[1:])
	sc.kb = docNumKey(sc.kb[:0], num)
	rw.Set(sc.kb, key)
	return num, nil
}

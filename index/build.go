package index

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/plures/pluresdb/oplog"
)

// Docs is the engine's documents in key order: it calls fn for every
// existing document whose key is above after (after nil: from the first),
// and returns fn's first error unchanged. key and doc are valid during
// the call only.
type Docs func(after []byte, fn func(key []byte, doc oplog.Document) error) error

// BuildStep builds the index name over existing documents: it indexes up
// to n documents after the catalog's cursor and writes the new cursor in
// the same writes, so a build stopped anywhere (a restart included)
// resumes where its last committed step ended. When the documents run out
// it marks the index ready. It returns the index's state after the step.
//
// The engine runs it under the commit lock, with rw and docs reading
// every committed write, and commits its writes before the next batch:
// Update keeps a building index in step for every document (before and
// after the cursor alike), so a step never indexes a stale state. A
// document that breaks Unique fails the step with ErrUniqueViolation and
// the build cannot finish: the engine reports it and drops the index.
func (s *Set) BuildStep(rw ReadWriter, name string, docs Docs, n int) (Info, error) {
	x, in, err := s.lookup(rw, name)
	if err != nil || in.Ready {
		return in, err
	}
	if n <= 0 {
		return in, fmt.Errorf("%w: build step of %d documents", ErrInvalid, n)
	}
	count := 0
	finished := true
	var last []byte
	xs := []*ix{x}
	err = docs(in.Cursor, func(key []byte, doc oplog.Document) error {
		if count == n {
			finished = false
			return errStop
		}
		if err := update(rw, xs, key, docSource{doc}, false); err != nil {
			return err
		}
		count++
		last = append(last[:0], key...)
		return nil
	})
	if err != nil && err != errStop {
		return in, err
	}
	in.Done += uint64(count)
	if finished {
		in.Ready, in.Cursor = true, nil
	} else {
		in.Cursor = last
	}
	rw.Set(catalogKey(name), appendCatalog(nil, in))
	in.Unparsed, in.Duplicates = x.unparsed.Load(), x.dups.Load()
	return in, nil
}

// Problem is one disagreement Check found.
type Problem struct {
	Index  string // empty for the document numbers
	Doc    []byte // the document key, when known
	Reason string
}

func (p Problem) String() string {
	if p.Index == "" {
		return fmt.Sprintf("document numbers: %q: %s", p.Doc, p.Reason)
	}
	return fmt.Sprintf("index %q: document %q: %s", p.Index, p.Doc, p.Reason)
}

// Report is what Check found.
type Report struct {
	Docs     uint64    // documents read
	Entries  uint64    // entries read, all indexes
	Problems []Problem // nothing wrong when empty
}

// maxProblems bounds a Report; Check stops collecting beyond it.
const maxProblems = 1000

// Check compares every index of the Set with the documents, reading st
// and docs at one view: each document's expected value against its
// forward key and entry (missing or wrong), every forward key and entry
// against the documents (extra), and the document numbers both ways.
// A building index is checked for the documents up to its cursor; beyond
// it, what is indexed must still be right. Damaged keys and values are
// problems; an error is returned only when reading fails.
func (s *Set) Check(st Store, docs Docs) (Report, error) {
	var r Report
	add := func(index string, doc []byte, format string, args ...any) {
		if len(r.Problems) < maxProblems {
			r.Problems = append(r.Problems, Problem{Index: index, Doc: append([]byte(nil), doc...), Reason: fmt.Sprintf(format, args...)})
		}
	}
	type state struct {
		x    *ix
		in   Info
		seen *roaring.Bitmap // documents whose forward key was found
	}
	var xs []*state
	for _, x := range s.list {
		_, in, err := s.lookup(st, x.name)
		if err != nil {
			add(x.name, nil, "%v", err)
			continue
		}
		xs = append(xs, &state{x: x, in: in, seen: roaring.New()})
	}
	err := docs(nil, func(key []byte, doc oplog.Document) error {
		r.Docs++
		var f Forward
		v, have, err := st.Get(forwardKey(nil, key))
		if err != nil {
			return err
		}
		if have {
			if f, err = DecodeForward(bytes.Clone(v)); err != nil {
				add("", key, "forward key: %v", err)
				have = false
			}
		}
		if have {
			back, ok, err := st.Get(docNumKey(nil, f.Doc))
			if err != nil {
				return err
			}
			if !ok || !bytes.Equal(back, key) {
				add("", key, "number %d maps back to %q (present %v)", f.Doc, back, ok)
			}
		}
		for _, t := range xs {
			if t.x.unbound {
				continue
			}
			want, wantOK := t.x.value(key, doc)
			covered := t.in.Ready || bytes.Compare(key, t.in.Cursor) <= 0
			got, gotOK := f.value(t.x.id)
			switch {
			case gotOK:
				t.seen.Add(f.Doc)
				if n, err := valueLen(t.x.kind, got); err != nil || n != len(got) {
					add(t.x.name, key, "forward value %x does not decode", got)
					continue
				}
				if !wantOK {
					add(t.x.name, key, "indexed under %s, holds no value", show(t.x.kind, got))
				} else if !bytes.Equal(got, want) {
					add(t.x.name, key, "indexed under %s, holds %s", show(t.x.kind, got), show(t.x.kind, want))
				}
				_, ok, err := st.Get(entryKey(nil, t.x.id, got, f.Doc))
				if err != nil {
					return err
				}
				if !ok {
					add(t.x.name, key, "no entry for its forward value %s", show(t.x.kind, got))
				}
			case wantOK && covered:
				add(t.x.name, key, "missing: holds %s, not indexed", show(t.x.kind, want))
			}
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	for _, t := range xs {
		if err := checkEntries(st, t.x, &r, add); err != nil {
			return r, err
		}
	}
	seen := map[uint32]*state{}
	for _, t := range xs {
		seen[t.x.id] = t
	}
	return r, checkForward(st, func(id uint32) (*ix, *roaring.Bitmap) {
		if t := seen[id]; t != nil {
			return t.x, t.seen
		}
		if x := s.byID(id); x != nil {
			return x, nil
		}
		return nil, nil
	}, add)
}

// value returns the value f holds for index id.
func (f Forward) value(id uint32) ([]byte, bool) {
	for _, v := range f.Values {
		if v.ID == id {
			return v.Value, true
		}
	}
	return nil, false
}

// byID returns the index id, nil if none.
func (s *Set) byID(id uint32) *ix {
	for _, x := range s.list {
		if x.id == id {
			return x
		}
	}
	return nil
}

// checkEntries checks index x's entries against the forward keys.
func checkEntries(st Store, x *ix, r *Report, add func(string, []byte, string, ...any)) error {
	type entry struct {
		num uint32
		v   []byte
	}
	// Entries are checked against forward keys a group at a time, not
	// holding a Scan open across Gets.
	p := entryPrefix(nil, x.id)
	from := p
	for {
		var group []entry
		err := st.Scan(from, prefixEnd(p), func(k, _ []byte) error {
			r.Entries++
			kk, err := ParseKey(k)
			if err == nil && kk.Type != pEntry {
				err = fmt.Errorf("not an entry key")
			}
			if err != nil {
				add(x.name, nil, "entry key %x: %v", k, err)
				return nil
			}
			if n, err := valueLen(x.kind, kk.Value); err != nil || n != len(kk.Value) {
				add(x.name, nil, "entry key %x: value does not decode", k)
				return nil
			}
			group = append(group, entry{kk.Doc, append([]byte(nil), kk.Value...)})
			if len(group) == 4096 {
				from = append(append([]byte(nil), k...), 0)
				return errStop
			}
			return nil
		})
		if err != nil && err != errStop {
			return err
		}
		for _, e := range group {
			dk, ok, gerr := st.Get(docNumKey(nil, e.num))
			if gerr != nil {
				return gerr
			}
			if !ok {
				add(x.name, []byte(fmt.Sprintf("#%d", e.num)), "extra entry %s: the document number has no key", show(x.kind, e.v))
				continue
			}
			dk = bytes.Clone(dk)
			var says []byte
			v, ok, gerr := st.Get(forwardKey(nil, dk))
			if gerr != nil {
				return gerr
			}
			if ok {
				if f, err := DecodeForward(v); err == nil && f.Doc == e.num {
					says, _ = f.value(x.id)
				}
			}
			if !bytes.Equal(says, e.v) {
				add(x.name, dk, "extra entry %s: the forward key says %s", show(x.kind, e.v), show(x.kind, says))
			}
		}
		if err != errStop {
			return nil
		}
	}
}

// checkForward checks the forward keys: each decodes, names an index
// (which) and holds only values of documents the document pass found
// (seen nil: not checked, an index whose catalog entry is unreadable),
// and the document numbers agree both ways and are below the next number.
func checkForward(st Store, which func(id uint32) (*ix, *roaring.Bitmap), add func(string, []byte, string, ...any)) error {
	var next uint64
	v, ok, err := st.Get([]byte{pNextNum})
	if err != nil {
		return err
	}
	if ok {
		if len(v) != 8 {
			add("", nil, "next document number of %d bytes", len(v))
		} else {
			next = binary.BigEndian.Uint64(v)
		}
	}
	nums := map[uint32][]byte{}
	err = st.Scan([]byte{pForward}, []byte{pForward + 1}, func(k, v []byte) error {
		key := k[1:]
		f, err := DecodeForward(v)
		if err != nil {
			add("", key, "forward key: %v", err)
			return nil
		}
		for _, iv := range f.Values {
			x, seen := which(iv.ID)
			switch {
			case x == nil:
				add("", key, "forward key holds a value of index id %d, which does not exist", iv.ID)
			case seen != nil && !seen.Contains(f.Doc):
				add(x.name, key, "extra forward value %s: no such document", show(x.kind, iv.Value))
			}
		}
		if prev, dup := nums[f.Doc]; dup {
			add("", key, "shares number %d with %q", f.Doc, prev)
		}
		nums[f.Doc] = bytes.Clone(key)
		if uint64(f.Doc) >= next {
			add("", key, "number %d at or above the next number %d", f.Doc, next)
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = st.Scan([]byte{pDocNum}, []byte{pDocNum + 1}, func(k, v []byte) error {
		if len(k) != 5 {
			add("", v, "number key %x has a bad length", k)
			return nil
		}
		num := binary.BigEndian.Uint32(k[1:])
		if key, ok := nums[num]; !ok || !bytes.Equal(key, v) {
			add("", v, "number %d names it, but its key maps to %q (present %v)", num, key, ok)
		}
		delete(nums, num)
		return nil
	})
	if err != nil {
		return err
	}
	for num, key := range nums {
		add("", key, "number %d has no number key", num)
	}
	return nil
}

// show formats an encoded value for a message.
func show(k Kind, enc []byte) string {
	if enc == nil {
		return "nothing"
	}
	v, err := DecodeValue(k, enc)
	if err != nil {
		return fmt.Sprintf("%x (undecodable)", enc)
	}
	return fmt.Sprintf("%v %q", k, fmt.Sprint(v))
}

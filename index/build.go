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
		num, have, err := lookupNum(st, key)
		if err != nil {
			add("", key, "%v", err)
			have = false
		}
		if have {
			back, ok, err := st.Get(docNumKey(nil, num))
			if err != nil {
				return err
			}
			if !ok || !bytes.Equal(back, key) {
				add("", key, "number %d maps back to %q (present %v)", num, back, ok)
			}
		}
		for _, t := range xs {
			if t.x.unbound {
				continue
			}
			want, wantOK := t.x.value(key, doc)
			covered := t.in.Ready || bytes.Compare(key, t.in.Cursor) <= 0
			var got []byte
			var gotOK bool
			if have {
				v, ok, err := st.Get(forwardKey(nil, t.x.id, num))
				if err != nil {
					return err
				}
				got, gotOK = append([]byte(nil), v...), ok
			}
			switch {
			case gotOK:
				t.seen.Add(num)
				if n, err := valueLen(t.x.kind, got); err != nil || n != len(got) {
					add(t.x.name, key, "forward value %x does not decode", got)
					continue
				}
				if !wantOK {
					add(t.x.name, key, "indexed under %s, holds no value", show(t.x.kind, got))
				} else if !bytes.Equal(got, want) {
					add(t.x.name, key, "indexed under %s, holds %s", show(t.x.kind, got), show(t.x.kind, want))
				}
				_, ok, err := st.Get(entryKey(nil, t.x.id, got, num))
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
		if err := checkKeys(st, t.x, t.seen, &r, add); err != nil {
			return r, err
		}
	}
	return r, checkNumbers(st, add)
}

// checkKeys checks index x's forward keys and entries against each other
// and the documents (seen: the numbers of documents holding a forward key).
func checkKeys(st Store, x *ix, seen *roaring.Bitmap, r *Report, add func(string, []byte, string, ...any)) error {
	docOf := func(num uint32) []byte {
		v, ok, err := st.Get(docNumKey(nil, num))
		if err != nil || !ok {
			return []byte(fmt.Sprintf("#%d", num))
		}
		return append([]byte(nil), v...)
	}
	p := forwardPrefix(nil, x.id)
	type fwd struct {
		num uint32
		v   []byte
	}
	var extra []fwd
	err := st.Scan(p, prefixEnd(p), func(k, v []byte) error {
		if len(k) != len(p)+4 {
			add(x.name, nil, "forward key %x has a bad length", k)
			return nil
		}
		if num := binary.BigEndian.Uint32(k[len(p):]); !seen.Contains(num) {
			extra = append(extra, fwd{num, append([]byte(nil), v...)})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, f := range extra {
		add(x.name, docOf(f.num), "extra forward key %s: no such document", show(x.kind, f.v))
	}
	// Entries are checked against forward keys a group at a time, not
	// holding a Scan open across Gets.
	p = entryPrefix(nil, x.id)
	from := p
	for {
		var group []fwd
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
			group = append(group, fwd{kk.Doc, append([]byte(nil), kk.Value...)})
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
			v, ok, gerr := st.Get(forwardKey(nil, x.id, e.num))
			if gerr != nil {
				return gerr
			}
			if !ok || !bytes.Equal(v, e.v) {
				var says []byte
				if ok {
					says = v
				}
				add(x.name, docOf(e.num), "extra entry %s: the forward key says %s", show(x.kind, e.v), show(x.kind, says))
			}
		}
		if err != errStop {
			return nil
		}
	}
}

// checkNumbers checks the document numbers both ways and against the
// next number.
func checkNumbers(st Store, add func(string, []byte, string, ...any)) error {
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
	err = st.Scan([]byte{pDocKey}, []byte{pDocKey + 1}, func(k, v []byte) error {
		if len(v) != 4 {
			add("", k[1:], "document number of %d bytes", len(v))
			return nil
		}
		num := binary.BigEndian.Uint32(v)
		if prev, dup := nums[num]; dup {
			add("", k[1:], "shares number %d with %q", num, prev)
		}
		nums[num] = append([]byte(nil), k[1:]...)
		if uint64(num) >= next {
			add("", k[1:], "number %d at or above the next number %d", num, next)
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

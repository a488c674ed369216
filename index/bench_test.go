package index

import (
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/plures/pluresdb/oplog"
)

func benchSet(b *testing.B, st *memStore, specs ...Spec) *Set {
	set, _ := Load(st, nil)
	ov := NewOverlay(st)
	var err error
	for _, sp := range specs {
		if set, err = set.Create(ov, sp, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := set.BuildStep(ov, sp.Name, func([]byte, func([]byte, oplog.Document) error) error { return nil }, 1); err != nil {
			b.Fatal(err)
		}
	}
	st.commit(ov)
	return set
}

// BenchmarkUpdate: the cost of keeping one index in step, per document
// write, in batches of 100 through one overlay, committed to the
// in-memory store: new documents (a number each, an entry, a forward
// key), then rewrites of existing ones to a new value.
func BenchmarkUpdate(b *testing.B) {
	for _, mode := range []string{"insert", "rewrite"} {
		b.Run(mode, func(b *testing.B) {
			st := newMem()
			set := benchSet(b, st, Spec{Name: "n", Field: "n", Kind: Int64})
			keys := 100000
			doc := oplog.Document{Exists: true, Fields: map[string][]byte{"n": nil}}
			if mode == "rewrite" {
				ov := NewOverlay(st)
				for i := range keys {
					doc.Fields["n"] = strconv.AppendInt(doc.Fields["n"][:0], int64(i), 10)
					if err := set.Update(ov, fmt.Appendf(nil, "key%08d", i), doc, false); err != nil {
						b.Fatal(err)
					}
				}
				st.commit(ov)
			}
			b.ReportAllocs()
			b.ResetTimer()
			ov := NewOverlay(st)
			key := make([]byte, 0, 16)
			for i := 0; i < b.N; i++ {
				k := i
				if mode == "rewrite" {
					k = i % keys
				}
				key = fmt.Appendf(key[:0], "key%08d", k)
				doc.Fields["n"] = strconv.AppendInt(doc.Fields["n"][:0], int64(i*7), 10)
				if err := set.Update(ov, key, doc, false); err != nil {
					b.Fatal(err)
				}
				if ov.Len() >= 500 {
					st.commit(ov)
					ov = NewOverlay(st)
				}
			}
			st.commit(ov)
		})
	}
}

var (
	millionOnce sync.Once
	millionSt   *memStore
)

// million returns a store of 1M documents indexed by "mod" (i % 1000:
// each value 0.1% of the documents) and "seq" (i: a range of 1000 values
// is 0.1%).
func million(b *testing.B) *memStore {
	millionOnce.Do(func() {
		st := newMem()
		set := benchSet(b, st, Spec{Name: "mod", Field: "mod", Kind: Int64}, Spec{Name: "seq", Field: "seq", Kind: Int64})
		ov := NewOverlay(st)
		doc := oplog.Document{Exists: true, Fields: map[string][]byte{}}
		for i := range 1_000_000 {
			doc.Fields["mod"] = strconv.AppendInt(nil, int64(i%1000), 10)
			doc.Fields["seq"] = strconv.AppendInt(nil, int64(i), 10)
			if err := set.Update(ov, fmt.Appendf(nil, "doc%08d", i), doc, false); err != nil {
				b.Fatal(err)
			}
			if ov.Len() >= 50000 {
				st.commit(ov)
				ov = NewOverlay(st)
			}
		}
		st.commit(ov)
		millionSt = st
	})
	return millionSt
}

// BenchmarkQuery1M: 0.1%-selective queries (1,000 of 1M documents) on
// the in-memory store: the bitmap (Eval), and the first page of 100 keys
// in key order (Find, which looks up every selected key to sort them).
func BenchmarkQuery1M(b *testing.B) {
	st := million(b)
	for _, c := range []struct {
		name string
		q    Query
	}{
		{"Eq", Eq("mod", 417)},
		{"Range", Range("seq", Inclusive(500_000), Exclusive(501_000))},
		{"And", And(Range("seq", Inclusive(0), Exclusive(100_000)), Eq("mod", 417))},
	} {
		b.Run(c.name+"/Eval", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				bm, err := Eval(st, c.q)
				if err != nil {
					b.Fatal(err)
				}
				if n := bm.GetCardinality(); n != 1000 && n != 100 {
					b.Fatalf("%d results", n)
				}
			}
		})
		b.Run(c.name+"/FindKeys100", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				p, err := Find(st, c.q, FindOptions{Limit: 100})
				if err != nil {
					b.Fatal(err)
				}
				if len(p.Keys) != 100 {
					b.Fatalf("%d keys", len(p.Keys))
				}
			}
		})
	}
}

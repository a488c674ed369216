package pluresdb

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/plures/pluresdb/hnsw"
	"github.com/plures/pluresdb/index"
	"github.com/plures/pluresdb/internal/vfs"
)

// waitIndexesReady waits for every index build to finish.
func waitIndexesReady(t testing.TB, db *DB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		infos, err := db.Indexes()
		must(t, err)
		ready := true
		for _, in := range infos {
			ready = ready && in.Ready
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("index builds not done: %+v", infos)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestIndexesBasic: an index over a field follows writes, deletes and
// imports; a unique index refuses a local duplicate; an index created
// over existing documents says it is not ready, then answers.
func TestIndexesBasic(t *testing.T) {
	fs := vfs.NewMem()
	db := openReplica(t, fs, "/a")
	defer db.Close()
	for i := range 300 {
		k := fmt.Appendf(nil, "user%03d", i)
		must(t, db.SetField(k, []byte("age"), strconv.AppendInt(nil, int64(i%50), 10)))
		must(t, db.SetField(k, []byte("email"), fmt.Appendf(nil, "u%d@x", i)))
	}
	must(t, db.CreateIndex(IndexSpec{Name: "age", Field: "age", Kind: index.Int64}))
	if _, err := db.Count(index.Eq("age", 7)); err != nil && !errors.Is(err, index.ErrNotReady) {
		t.Fatalf("a query of a building index: %v", err)
	}
	must(t, db.CreateIndex(IndexSpec{Name: "email", Field: "email", Kind: index.String, Unique: true}))
	waitIndexesReady(t, db)
	n, err := db.Count(index.Eq("age", 7))
	must(t, err)
	if n != 6 {
		t.Fatalf("Count(age=7) = %d, want 6", n)
	}
	f, err := db.Find(index.Range("age", index.Inclusive(10), index.Exclusive(12)), FindOptions{Limit: 5})
	must(t, err)
	if len(f.Keys) != 5 || f.Next == nil || string(f.Docs[0].Fields["age"]) != "10" {
		t.Fatalf("Find page: %q next %q", f.Keys, f.Next)
	}
	// A local duplicate of a unique value fails, and writes nothing.
	err = db.SetField([]byte("user001"), []byte("email"), []byte("u2@x"))
	if !errors.Is(err, index.ErrUniqueViolation) {
		t.Fatalf("duplicate email: %v", err)
	}
	d, err := db.GetFields([]byte("user001"))
	must(t, err)
	if string(d.Fields["email"]) != "u1@x" {
		t.Fatalf("the refused write changed the document: %q", d.Fields["email"])
	}
	// Deletes leave the index.
	must(t, db.Delete([]byte("user007")))
	if n, _ := db.Count(index.Eq("age", 7)); n != 5 {
		t.Fatalf("after a delete: Count(age=7) = %d", n)
	}
	// Imports keep it in step.
	b := openReplica(t, fs, "/b")
	defer b.Close()
	must(t, b.SetField([]byte("user999"), []byte("age"), []byte("7")))
	syncPair(t, b, db)
	if n, _ := db.Count(index.Eq("age", 7)); n != 6 {
		t.Fatalf("after an import: Count(age=7) = %d", n)
	}
	rep, err := db.CheckIndexes()
	must(t, err)
	if len(rep.Problems) != 0 {
		t.Fatalf("check: %v", rep.Problems)
	}
	plan, err := db.Explain(index.And(index.Eq("age", 7), index.Prefix("email", "u1")))
	must(t, err)
	if !bytes.Contains([]byte(plan.String()), []byte("age")) {
		t.Fatalf("Explain: %s", plan)
	}
}

// indexModel is what the indexes must say: the documents' fields.
type indexModel map[string]map[string]string

func (m indexModel) eqAge(v int) []string {
	var out []string
	for k, f := range m {
		if a, ok := f["age"]; ok && a == strconv.Itoa(v) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func (m indexModel) rangeAgeTag(lo, hi int, tag string) []string {
	var out []string
	for k, f := range m {
		a, ok := f["age"]
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(a)
		if n >= lo && n < hi && f["tag"] != tag {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// extractW indexes a whole value "w=<n>" under n.
func extractW(_, value []byte) ([]byte, bool) {
	return bytes.CutPrefix(value, []byte("w="))
}

// TestIndexesModel: random documents, field writes, deletes, whole-value
// puts, imports from a peer, index creation over existing data, crashes
// and restarts; after every step, queries of every kind agree with a
// model and CheckIndexes finds nothing.
func TestIndexesModel(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			fs := vfs.NewMem()
			rng := rand.New(rand.NewPCG(seed, 9))
			opts := &Options{FS: fs, MemtableSize: 1 << 20, IndexExtractors: map[string]index.Extractor{"w": extractW}}
			db, err := Open("/a", opts)
			must(t, err)
			peer := openReplica(t, fs, "/p")
			defer peer.Close()
			m := indexModel{}
			created := false
			key := func() string { return fmt.Sprintf("k%03d", rng.IntN(120)) }
			check := func(step int) {
				t.Helper()
				if !created {
					return
				}
				waitIndexesReady(t, db)
				v := rng.IntN(20)
				got, err := db.Find(index.Eq("age", v), FindOptions{})
				must(t, err)
				var keys []string
				for _, k := range got.Keys {
					keys = append(keys, string(k))
				}
				if want := m.eqAge(v); !slices.Equal(keys, want) {
					t.Fatalf("step %d: age=%d: %v, want %v", step, v, keys, want)
				}
				lo := rng.IntN(20)
				q := index.AndNot(index.Range("age", index.Inclusive(lo), index.Exclusive(lo+5)), index.Eq("tag", "red"))
				want := m.rangeAgeTag(lo, lo+5, "red")
				n, err := db.Count(q)
				must(t, err)
				if n != uint64(len(want)) {
					t.Fatalf("step %d: count of age in [%d,%d) but red: %d, want %d", step, lo, lo+5, n, len(want))
				}
				// Paged, in key order.
				var paged []string
				opt := FindOptions{Limit: 3}
				for {
					f, err := db.Find(q, opt)
					must(t, err)
					for _, k := range f.Keys {
						paged = append(paged, string(k))
					}
					if f.Next == nil {
						break
					}
					opt.Cursor = f.Next
				}
				if !slices.Equal(paged, want) {
					t.Fatalf("step %d: paged %v, want %v", step, paged, want)
				}
				rep, err := db.CheckIndexes()
				must(t, err)
				if len(rep.Problems) != 0 {
					t.Fatalf("step %d: check: %v", step, rep.Problems)
				}
			}
			for step := range 400 {
				switch r := rng.IntN(20); {
				case r < 8:
					k := key()
					f := "age"
					v := strconv.Itoa(rng.IntN(20))
					if rng.IntN(3) == 0 {
						f, v = "tag", []string{"red", "blue"}[rng.IntN(2)]
					}
					must(t, db.SetField([]byte(k), []byte(f), []byte(v)))
					if m[k] == nil {
						m[k] = map[string]string{}
					}
					m[k][f] = v
				case r < 10:
					k := key()
					must(t, db.Delete([]byte(k)))
					delete(m, k)
				case r < 11:
					k := key()
					must(t, db.Put([]byte(k), []byte("whole")))
					m[k] = map[string]string{} // a whole value replaces the fields
				case r < 12:
					k := key()
					must(t, db.DeleteField([]byte(k), []byte("age")))
					delete(m[k], "age")
				case r < 15:
					// The peer writes; its writes come later by the clock
					// and win.
					b := peer.NewBatch()
					var ks []string
					for range 1 + rng.IntN(5) {
						k := key()
						v := strconv.Itoa(rng.IntN(20))
						must(t, b.SetField([]byte(k), []byte("age"), []byte(v)))
						ks = append(ks, k, v)
					}
					must(t, b.Commit(nil))
					syncPair(t, peer, db)
					for i := 0; i < len(ks); i += 2 {
						// db holds the peer's state of those keys now:
						// read it back for the model (the peer may have
						// lacked db's later writes of other fields).
						d, err := db.GetFields([]byte(ks[i]))
						must(t, err)
						mm := map[string]string{}
						for f, v := range d.Fields {
							mm[f] = string(v)
						}
						m[ks[i]] = mm
					}
				case r < 16:
					if !created {
						must(t, db.CreateIndex(IndexSpec{Name: "age", Field: "age", Kind: index.Int64}))
						must(t, db.CreateIndex(IndexSpec{Name: "tag", Field: "tag", Kind: index.String}))
						must(t, db.CreateIndex(IndexSpec{Name: "w", Kind: index.Int64, Extract: extractW}))
						created = true
					}
				case r < 17:
					// A crash (or a clean restart), builds maybe mid-way.
					if rng.IntN(2) == 0 {
						crashed := fs.CrashClone()
						db.Close()
						fs = crashed
						opts.FS = fs
					} else {
						must(t, db.Close())
					}
					db, err = Open("/a", opts)
					must(t, err)
				default:
					if rng.IntN(4) == 0 {
						must(t, db.Flush())
					}
					if rng.IntN(2) == 0 {
						break
					}
					// A batch of several writes, some on the same
					// document: each applies over the ones before it.
					b := db.NewBatch()
					ks := []string{key(), key(), key()}
					for range 2 + rng.IntN(6) {
						k := ks[rng.IntN(len(ks))]
						switch rng.IntN(5) {
						case 0:
							v := []string{"whole", "w=1", "w=2", "w=x"}[rng.IntN(4)]
							must(t, b.Put([]byte(k), []byte(v)))
							m[k] = map[string]string{}
						case 1:
							must(t, b.Delete([]byte(k)))
							delete(m, k)
						case 2:
							f := []string{"age", "tag"}[rng.IntN(2)]
							must(t, b.DeleteField([]byte(k), []byte(f)))
							delete(m[k], f)
						default:
							f, v := "age", strconv.Itoa(rng.IntN(20))
							if rng.IntN(3) == 0 {
								f, v = "tag", []string{"red", "blue"}[rng.IntN(2)]
							}
							must(t, b.SetField([]byte(k), []byte(f), []byte(v)))
							if m[k] == nil {
								m[k] = map[string]string{}
							}
							m[k][f] = v
						}
					}
					must(t, b.Commit(nil))
				}
				check(step)
			}
			db.Close()
		})
	}
}

// TestVectorSearchFilteredByIndex: vector search filtered by an index
// query returns only the selected keys, and their nearest neighbours
// (recall ≥ 0.95 at the default ef) for cluster-aligned and random
// filters of about 1%, 10% and 50%, after deletes and replaces too.
func TestVectorSearchFilteredByIndex(t *testing.T) {
	db := openReplica(t, vfs.NewMem(), "/db")
	defer db.Close()
	const n, dim, clusters = 6000, 32, 20
	rng := rand.New(rand.NewPCG(5, 6))
	centers := make([][]float32, clusters)
	for c := range centers {
		centers[c] = make([]float32, dim)
		for j := range centers[c] {
			centers[c][j] = float32(rng.NormFloat64() * 10)
		}
	}
	vi, err := db.VectorIndex("v", hnsw.Config{Dim: dim})
	must(t, err)
	vecs := map[string][]float32{}
	must(t, db.CreateIndex(IndexSpec{Name: "cluster", Field: "cluster", Kind: index.Int64}))
	must(t, db.CreateIndex(IndexSpec{Name: "bucket", Field: "bucket", Kind: index.Int64}))
	write := func(i int) {
		k := fmt.Sprintf("doc%05d", i)
		c := rng.IntN(clusters)
		v := make([]float32, dim)
		for j := range v {
			v[j] = centers[c][j] + float32(rng.NormFloat64())
		}
		b := db.NewBatch()
		must(t, b.SetField([]byte(k), []byte("cluster"), strconv.AppendInt(nil, int64(c), 10)))
		must(t, b.SetField([]byte(k), []byte("bucket"), strconv.AppendInt(nil, int64(rng.IntN(100)), 10)))
		must(t, b.Commit(nil))
		must(t, vi.Add([]byte(k), v))
		vecs[k] = v
	}
	for i := range n {
		write(i)
	}
	// Deletes and replaces: internal IDs move under the filter.
	for range 500 {
		i := rng.IntN(n)
		k := fmt.Sprintf("doc%05d", i)
		must(t, db.Delete([]byte(k)))
		must(t, vi.Delete([]byte(k)))
		delete(vecs, k)
		write(n + i)
	}
	waitIndexesReady(t, db)
	cases := []struct {
		name string
		q    Query
	}{
		{"cluster 1 of 20 (5%)", index.Eq("cluster", 3)},
		{"clusters 2 of 20 (10%)", index.Range("cluster", index.Inclusive(4), index.Exclusive(6))},
		{"clusters 10 of 20 (50%)", index.Range("cluster", index.Inclusive(0), index.Exclusive(10))},
		{"random 1%", index.Eq("bucket", 7)},
		{"random 10%", index.Range("bucket", index.Inclusive(0), index.Exclusive(10))},
		{"random 50%", index.Range("bucket", index.Inclusive(0), index.Exclusive(50))},
	}
	const k, queries = 10, 60
	for _, c := range cases {
		keys, err := db.FindKeys(c.q)
		must(t, err)
		hits, found := 0, 0
		for range queries {
			// Queries near a random cluster, allowed or not.
			q := make([]float32, dim)
			cc := centers[rng.IntN(clusters)]
			for j := range q {
				q[j] = cc[j] + float32(rng.NormFloat64())
			}
			res, err := vi.Search(q, k, &hnsw.SearchOptions{Keys: keys})
			must(t, err)
			// Exact answer over the allowed keys.
			type cand struct {
				key string
				d   float32
			}
			var all []cand
			for key := range keys.All() {
				v, ok := vecs[string(key)]
				if !ok {
					t.Fatalf("%s: the index selected %q, which has no vector (deleted)", c.name, key)
				}
				var d float32
				for j := range v {
					x := v[j] - q[j]
					d += x * x
				}
				all = append(all, cand{string(key), d})
			}
			slices.SortFunc(all, func(a, b cand) int {
				switch {
				case a.d < b.d:
					return -1
				case a.d > b.d:
					return 1
				}
				return 0
			})
			want := map[string]bool{}
			for _, x := range all[:min(k, len(all))] {
				want[x.key] = true
			}
			for _, h := range res {
				if !keys.Contains(h.Key) {
					t.Fatalf("%s: hit %q outside the filter", c.name, h.Key)
				}
				if want[string(h.Key)] {
					hits++
				}
			}
			found += len(want)
		}
		recall := float64(hits) / float64(found)
		t.Logf("%s: %d keys, recall %.4f", c.name, keys.Len(), recall)
		if recall < 0.95 {
			t.Errorf("%s: recall %.4f < 0.95", c.name, recall)
		}
	}
}

// BenchmarkIndexUpkeep: SetField batches of 100 documents with 0, 1 and 2
// indexes over the fields written: new documents, then rewrites of
// existing ones (10 000, written once before the timer starts), whose
// old entries are replaced.
func BenchmarkIndexUpkeep(b *testing.B) {
	for _, mode := range []string{"new", "rewrite"} {
		for _, nidx := range []int{0, 1, 2} {
			b.Run(fmt.Sprintf("%s/indexes=%d", mode, nidx), func(b *testing.B) {
				db, err := Open(b.TempDir(), &Options{NoSync: true})
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				if nidx >= 1 {
					must(b, db.CreateIndex(IndexSpec{Name: "age", Field: "age", Kind: index.Int64}))
				}
				if nidx >= 2 {
					must(b, db.CreateIndex(IndexSpec{Name: "city", Field: "city", Kind: index.String}))
				}
				rng := rand.New(rand.NewPCG(1, 1))
				const pool = 10000
				batch := db.NewBatch()
				write := func(k []byte) {
					must(b, batch.SetField(k, []byte("age"), strconv.AppendInt(nil, int64(rng.IntN(1000)), 10)))
					must(b, batch.SetField(k, []byte("city"), fmt.Appendf(nil, "city%d", rng.IntN(100))))
				}
				if mode == "rewrite" {
					for i := range pool {
						write(fmt.Appendf(nil, "%016d", i))
						if batch.Len() >= 200 {
							must(b, batch.Commit(nil))
							batch.Reset()
						}
					}
					must(b, batch.Commit(nil))
					if nidx > 0 {
						waitIndexesReady(b, db)
					}
				}
				i := 0
				b.ResetTimer()
				for b.Loop() {
					batch.Reset()
					for range 100 {
						n := rng.IntN(1 << 30)
						if mode == "rewrite" {
							n %= pool
						}
						write(fmt.Appendf(nil, "%016d", n))
						i++
					}
					must(b, batch.Commit(nil))
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i), "ns/doc")
			})
		}
	}
}

//go:build !nopluresdb

package main

// This file holds the index workload: the engine's secondary indexes
// (ARCHITECTURE.md, "Secondary indexes") measured end to end, against a
// full scan of the documents and against bbolt with an index made by hand,
// the way a Go user writes one today. It runs only when named:
//
//	go run . -workloads index -index-docs 1000000
//
// Every document i (key: i as 16 digits) has an age, uniform in 0..999, so
// an equality is 0.1% selective, a city of 100 values, and a 100-byte
// value whose first two bytes are the age (big-endian) and third the city,
// so a scan can test the age without decoding fields. Documents are loaded
// in a random key order, 1000 per batch (Put of the value, SetField of
// "age" as decimal text and of "city"), NoSync.
//
//  1. Loads into empty databases: no index, an Int64 index on age, and
//     that plus a String index on city (created before the load, waited
//     ready). docs/s over the timed batches, and including the settle
//     (Flush + WaitForCompactions) that follows; the ratio to the no-index
//     load and the cost per index. Then CreateIndex("age") over the
//     no-index database once it settled: the background build's time.
//  2. Lookups on the two-index database, settled and reopened: Eq keys
//     (FindKeys), Eq with the documents (Find), Count, a 0.1% Range and a
//     1% Range with the documents. Each run uses another value, and every
//     answer is checked against the generated data after it is timed.
//  3. The same queries by a full scan (NewIter over every document, the
//     age read from the value).
//  4. bbolt: bucket docs key->value, bucket idx_age (8-byte big-endian age
//     + key -> empty) written in the same Update, 1000 documents per
//     Update, NoSync like ours; lookups with a cursor Seek and a walk of
//     the prefix, Get of each document for the "+ docs" queries.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/hnsw"
	"github.com/plures/pluresdb/index"
)

const (
	workloadIndex = "index"

	defaultIndexDocs = 1_000_000
	defaultIndexReps = 11
	indexBatch       = 1000
	indexAges        = 1000 // ages 0..999: an Eq selects 0.1%
	indexCities      = 100
	// indexScanReps caps the runs of a full scan (each reads every
	// document).
	indexScanReps = 5
)

func init() {
	knownWorkloads = append(knownWorkloads, workloadIndex)
	indexBench.name = workloadIndex
	indexBench.run = func(rc runConfig) (opLogSection, error) {
		rep, err := runIndexBench(rc)
		if rep == nil {
			return nil, err
		}
		return rep, err
	}
}

// ---- data ----

// ixData is the generated data set: document i's age and city.
type ixData struct {
	seed  uint64
	ages  []uint16
	city  []uint8
	order []uint32 // load order
	byAge [indexAges][]uint32
}

func genIxData(seed uint64, n int) *ixData {
	d := &ixData{seed: seed, ages: make([]uint16, n), city: make([]uint8, n), order: permutation(n, seed, 0x1d3)}
	for i := range n {
		h := mix64(seed ^ mix64(uint64(i)<<8|0x1d))
		d.ages[i] = uint16(h % indexAges)
		d.city[i] = uint8((h >> 32) % indexCities)
		d.byAge[d.ages[i]] = append(d.byAge[d.ages[i]], uint32(i))
	}
	return d
}

func ixCityName(c uint8) string { return fmt.Sprintf("city-%02d", c) }

// value writes document i's 100-byte value into dst.
func (d *ixData) value(dst []byte, i int) {
	makeValue(dst, d.seed, i, 7)
	binary.BigEndian.PutUint16(dst, d.ages[i])
	dst[2] = d.city[i]
}

// want returns the documents with an age in [lo, hi), in key order.
func (d *ixData) want(lo, hi int) []uint32 {
	var out []uint32
	for a := lo; a < hi; a++ {
		out = append(out, d.byAge[a]...)
	}
	slices.Sort(out)
	return out
}

// ---- results ----

type ixLoad struct {
	Engine        string  `json:"engine"`
	Indexes       string  `json:"indexes"`
	NIndexes      int     `json:"n_indexes"`
	Docs          int     `json:"docs"`
	Seconds       float64 `json:"seconds"`
	PerSec        float64 `json:"docs_per_sec"`
	Settle        float64 `json:"settle_seconds"`
	PerSecSettled float64 `json:"docs_per_sec_with_settle"`
	// Ratio is PerSec over the same engine's no-index load.
	Ratio float64 `json:"ratio"`
	// RatioSettled is PerSecSettled over the same.
	RatioSettled float64 `json:"ratio_with_settle"`
	DiskBytes    int64   `json:"disk_bytes"`
}

type ixQuery struct {
	Name    string  `json:"name"`
	Results int     `json:"results"` // median documents selected
	Reps    int     `json:"reps"`
	Median  float64 `json:"median_ns"`
	Min     float64 `json:"min_ns"`
	Max     float64 `json:"max_ns"`
	// The scan and bbolt doing the same.
	ScanReps   int     `json:"scan_reps"`
	ScanMedian float64 `json:"scan_median_ns"`
	ScanMin    float64 `json:"scan_min_ns"`
	ScanMax    float64 `json:"scan_max_ns"`
	BoltMedian float64 `json:"bbolt_median_ns"`
	BoltMin    float64 `json:"bbolt_min_ns"`
	BoltMax    float64 `json:"bbolt_max_ns"`
}

type ixReport struct {
	Docs         int       `json:"docs"`
	Seed         uint64    `json:"seed"`
	Loads        []ixLoad  `json:"loads"`
	BuildSeconds float64   `json:"build_seconds"` // CreateIndex("age") over the loaded no-index database
	Queries      []ixQuery `json:"queries"`
	Notes        []string  `json:"notes"`
}

var errIndexMismatch = errors.New("answer differs from the generated data")

func runIndexBench(rc runConfig) (*ixReport, error) {
	n, reps := rc.indexDocs, rc.indexReps
	if n < indexAges || reps <= 0 {
		return nil, fmt.Errorf("index: -index-docs must be at least %d and -index-reps positive", indexAges)
	}
	rc.logf("index: generating %d documents, seed %d", n, rc.seed)
	d := genIxData(rc.seed, n)
	rep := &ixReport{Docs: n, Seed: rc.seed}

	// 1. Loads.
	configs := []struct {
		name  string
		specs []pluresdb.IndexSpec
	}{
		{"none", nil},
		{"age", []pluresdb.IndexSpec{{Name: "age", Field: "age", Kind: index.Int64}}},
		{"age, city", []pluresdb.IndexSpec{{Name: "age", Field: "age", Kind: index.Int64}, {Name: "city", Field: "city", Kind: index.String}}},
	}
	dirs := map[string]string{}
	for _, c := range configs {
		dir := filepath.Join(rc.dir, fmt.Sprintf("pluresdb-%d", len(c.specs)))
		dirs[c.name] = dir
		var prof string
		if len(c.specs) == 2 {
			prof = rc.indexProfile
		}
		l, err := ixLoadOurs(rc, dir, d, c.specs, prof)
		if err != nil {
			return rep, fmt.Errorf("load (%s): %w", c.name, err)
		}
		l.Indexes = c.name
		rc.logf("index: pluresdb load, indexes %s: %.0f docs/s (settle %.2f s)", c.name, l.PerSec, l.Settle)
		rep.Loads = append(rep.Loads, l)
	}
	for _, withIndex := range []bool{false, true} {
		dir := filepath.Join(rc.dir, fmt.Sprintf("bbolt-%v", withIndex))
		l, err := ixLoadBolt(dir, d, withIndex)
		if err != nil {
			return rep, fmt.Errorf("bbolt load: %w", err)
		}
		rc.logf("index: bbolt load, indexes %s: %.0f docs/s", l.Indexes, l.PerSec)
		rep.Loads = append(rep.Loads, l)
		if !withIndex {
			os.RemoveAll(dir)
		} else {
			dirs["bbolt"] = dir
		}
	}
	base := map[string]ixLoad{}
	for _, l := range rep.Loads {
		if l.NIndexes == 0 {
			base[l.Engine] = l
		}
	}
	for i := range rep.Loads {
		b := base[rep.Loads[i].Engine]
		rep.Loads[i].Ratio = rep.Loads[i].PerSec / b.PerSec
		rep.Loads[i].RatioSettled = rep.Loads[i].PerSecSettled / b.PerSecSettled
	}

	// The build over the loaded no-index database.
	secs, err := ixBuild(dirs["none"], d)
	if err != nil {
		return rep, fmt.Errorf("build: %w", err)
	}
	rep.BuildSeconds = secs
	rc.logf("index: CreateIndex(age) over %d documents: %.2f s", n, secs)
	os.RemoveAll(dirs["none"])
	os.RemoveAll(dirs["age"])

	// 2-4. Lookups.
	if err := ixQueries(rc, dirs["age, city"], dirs["bbolt"], d, reps, rep); err != nil {
		return rep, fmt.Errorf("queries: %w", err)
	}
	return rep, nil
}

// ---- loads ----

func ixLoadOurs(rc runConfig, dir string, d *ixData, specs []pluresdb.IndexSpec, profile string) (ixLoad, error) {
	l := ixLoad{Engine: "pluresdb", NIndexes: len(specs), Docs: len(d.ages)}
	writeBack()
	runtime.GC()
	opts := &pluresdb.Options{NoSync: true}
	if rc.cache > 0 {
		opts.CacheSize = rc.cache
	}
	db, err := pluresdb.Open(dir, opts)
	if err != nil {
		return l, err
	}
	fail := func(err error) (ixLoad, error) {
		db.Close()
		return l, err
	}
	for _, s := range specs {
		if err := db.CreateIndex(s); err != nil {
			return fail(err)
		}
	}
	if err := ixWaitReady(db, time.Minute); err != nil {
		return fail(err)
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(err)
		}
	}
	key := make([]byte, keySize)
	val := make([]byte, valueSize)
	var num []byte
	start := time.Now()
	b := db.NewBatch()
	for j, i := range d.order {
		makeKey(key, int(i))
		d.value(val, int(i))
		num = strconv.AppendInt(num[:0], int64(d.ages[i]), 10)
		if err := b.Put(key, val); err != nil {
			return fail(err)
		}
		if err := b.SetField(key, []byte("age"), num); err != nil {
			return fail(err)
		}
		if err := b.SetField(key, []byte("city"), []byte(ixCityName(d.city[i]))); err != nil {
			return fail(err)
		}
		if (j+1)%indexBatch == 0 || j == len(d.order)-1 {
			if err := b.Commit(nil); err != nil {
				return fail(err)
			}
			b = db.NewBatch()
		}
	}
	l.Seconds = time.Since(start).Seconds()
	t0 := time.Now()
	if err := db.Flush(); err != nil {
		return fail(err)
	}
	if err := db.WaitForCompactions(); err != nil {
		return fail(err)
	}
	l.Settle = time.Since(t0).Seconds()
	if profile != "" {
		pprof.StopCPUProfile()
	}
	l.PerSec = float64(l.Docs) / l.Seconds
	l.PerSecSettled = float64(l.Docs) / (l.Seconds + l.Settle)
	if err := db.Close(); err != nil {
		return l, err
	}
	l.DiskBytes, err = diskUsage(dir)
	return l, err
}

// ixWaitReady polls Indexes until every index is ready.
func ixWaitReady(db *pluresdb.DB, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ins, err := db.Indexes()
		if err != nil {
			return err
		}
		ready := true
		for _, in := range ins {
			ready = ready && in.Ready
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("indexes not ready after %v: %+v", limit, ins)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

var (
	boltDocs   = []byte("docs")
	boltIdxAge = []byte("idx_age")
)

func ixLoadBolt(dir string, d *ixData, withIndex bool) (ixLoad, error) {
	l := ixLoad{Engine: "bbolt", Indexes: "none", Docs: len(d.ages)}
	if withIndex {
		l.Indexes, l.NIndexes = "age (hand-made)", 1
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return l, err
	}
	writeBack()
	runtime.GC()
	db, err := bolt.Open(filepath.Join(dir, "bolt.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		return l, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket(boltDocs); err != nil {
			return err
		}
		_, err := tx.CreateBucket(boltIdxAge)
		return err
	})
	if err != nil {
		db.Close()
		return l, err
	}
	start := time.Now()
	for j := 0; j < len(d.order); j += indexBatch {
		err := db.Update(func(tx *bolt.Tx) error {
			docs, idx := tx.Bucket(boltDocs), tx.Bucket(boltIdxAge)
			for _, i := range d.order[j:min(j+indexBatch, len(d.order))] {
				// bbolt keeps the slices until the tx ends: fresh ones per put.
				kv := make([]byte, keySize+valueSize)
				makeKey(kv[:keySize], int(i))
				d.value(kv[keySize:], int(i))
				if err := docs.Put(kv[:keySize], kv[keySize:]); err != nil {
					return err
				}
				if withIndex {
					ik := make([]byte, 8+keySize)
					binary.BigEndian.PutUint64(ik, uint64(d.ages[i]))
					copy(ik[8:], kv[:keySize])
					if err := idx.Put(ik, nil); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			db.Close()
			return l, err
		}
	}
	l.Seconds = time.Since(start).Seconds()
	l.PerSec = float64(l.Docs) / l.Seconds
	l.PerSecSettled = l.PerSec
	if err := db.Close(); err != nil {
		return l, err
	}
	l.DiskBytes, err = diskUsage(dir)
	return l, err
}

// ixBuild opens the loaded no-index database, creates the age index and
// times its background build until Indexes says it is ready; then checks
// it with Count.
func ixBuild(dir string, d *ixData) (float64, error) {
	db, err := pluresdb.Open(dir, &pluresdb.Options{NoSync: true})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := db.CreateIndex(pluresdb.IndexSpec{Name: "age", Field: "age", Kind: index.Int64}); err != nil {
		db.Close()
		return 0, err
	}
	if err := ixWaitReady(db, time.Hour); err != nil {
		db.Close()
		return 0, err
	}
	secs := time.Since(start).Seconds()
	all, err := db.Count(index.Range("age", index.Unbounded(), index.Unbounded()))
	if err == nil && all != uint64(len(d.ages)) {
		err = fmt.Errorf("%w: the built index counts %d documents, want %d", errIndexMismatch, all, len(d.ages))
	}
	if err == nil {
		var one uint64
		one, err = db.Count(index.Eq("age", 500))
		if err == nil && one != uint64(len(d.byAge[500])) {
			err = fmt.Errorf("%w: the built index counts %d documents of age 500, want %d", errIndexMismatch, one, len(d.byAge[500]))
		}
	}
	return secs, errors.Join(err, db.Close())
}

// ---- queries ----

// ixAnswer is what a query returned: keys (and values), a key set, or a
// count; it is checked after the timed run.
type ixAnswer struct {
	keys  [][]byte
	vals  [][]byte
	set   *hnsw.Keys
	count int
}

// ixCase is one query done three ways, for the age range [v, v+width).
type ixCase struct {
	name  string
	width int
	docs  bool // the answer includes the documents
	count bool // the answer is a count
	ours  func(v int) (ixAnswer, error)
	scan  func(v int) (ixAnswer, error)
	bolt  func(v int) (ixAnswer, error)
}

func ixQueries(rc runConfig, dir, boltDir string, d *ixData, reps int, rep *ixReport) error {
	db, err := pluresdb.Open(dir, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	bdb, err := bolt.Open(filepath.Join(boltDir, "bolt.db"), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer bdb.Close()
	if err := ixWaitReady(db, time.Minute); err != nil {
		return err
	}

	eq := func(v, _ int) index.Query { return index.Eq("age", v) }
	rangeQ := func(v, w int) index.Query {
		return index.Range("age", index.Inclusive(v), index.Exclusive(v+w))
	}
	findKeys := func(q func(v, w int) index.Query) func(v int) (ixAnswer, error) {
		return func(v int) (ixAnswer, error) {
			s, err := db.FindKeys(q(v, 1))
			return ixAnswer{set: s}, err
		}
	}
	find := func(q func(v, w int) index.Query, w int) func(v int) (ixAnswer, error) {
		return func(v int) (ixAnswer, error) {
			f, err := db.Find(q(v, w), pluresdb.FindOptions{})
			if err != nil {
				return ixAnswer{}, err
			}
			a := ixAnswer{keys: f.Keys}
			for i, doc := range f.Docs {
				if string(doc.Fields["age"]) != strconv.Itoa(int(binary.BigEndian.Uint16(doc.Value))) {
					return a, fmt.Errorf("%w: document %s: field age %q, value's age %d", errIndexMismatch, f.Keys[i], doc.Fields["age"], binary.BigEndian.Uint16(doc.Value))
				}
				a.vals = append(a.vals, doc.Value)
			}
			return a, nil
		}
	}
	count := func(v int) (ixAnswer, error) {
		c, err := db.Count(index.Eq("age", v))
		return ixAnswer{count: int(c)}, err
	}
	scan := func(w int, docs, onlyCount bool) func(v int) (ixAnswer, error) {
		return func(v int) (ixAnswer, error) {
			var a ixAnswer
			it := db.NewIter(nil, nil)
			for ok := it.First(); ok; ok = it.Next() {
				val := it.Value()
				if len(val) < 2 {
					it.Close()
					return a, fmt.Errorf("%w: document %s: value of %d bytes", errIndexMismatch, it.Key(), len(val))
				}
				if age := int(binary.BigEndian.Uint16(val)); age < v || age >= v+w {
					continue
				}
				a.count++
				if onlyCount {
					continue
				}
				a.keys = append(a.keys, slices.Clone(it.Key()))
				if docs {
					a.vals = append(a.vals, slices.Clone(val))
				}
			}
			return a, it.Close()
		}
	}
	boltQ := func(w int, docs, onlyCount bool) func(v int) (ixAnswer, error) {
		return func(v int) (ixAnswer, error) {
			var a ixAnswer
			err := bdb.View(func(tx *bolt.Tx) error {
				docsB, idx := tx.Bucket(boltDocs), tx.Bucket(boltIdxAge)
				var lo, hi [8]byte
				binary.BigEndian.PutUint64(lo[:], uint64(v))
				binary.BigEndian.PutUint64(hi[:], uint64(v+w))
				c := idx.Cursor()
				for k, _ := c.Seek(lo[:]); k != nil && bytes.Compare(k[:8], hi[:]) < 0; k, _ = c.Next() {
					a.count++
					if onlyCount {
						continue
					}
					key := slices.Clone(k[8:])
					a.keys = append(a.keys, key)
					if docs {
						val := docsB.Get(key)
						if val == nil {
							return fmt.Errorf("%w: bbolt: index entry of %s without its document", errIndexMismatch, key)
						}
						a.vals = append(a.vals, slices.Clone(val))
					}
				}
				return nil
			})
			return a, err
		}
	}
	cases := []ixCase{
		{name: "Eq keys (FindKeys)", width: 1, ours: findKeys(eq), scan: scan(1, false, false), bolt: boltQ(1, false, false)},
		{name: "Eq + docs (Find)", width: 1, docs: true, ours: find(eq, 1), scan: scan(1, true, false), bolt: boltQ(1, true, false)},
		{name: "Count Eq", width: 1, count: true, ours: count, scan: scan(1, false, true), bolt: boltQ(1, false, true)},
		{name: "Range [v, v+1) keys (FindKeys)", width: 1, ours: findKeys(rangeQ), scan: scan(1, false, false), bolt: boltQ(1, false, false)},
		{name: "Range [v, v+1) + docs (Find)", width: 1, docs: true, ours: find(rangeQ, 1), scan: scan(1, true, false), bolt: boltQ(1, true, false)},
		{name: "Range [v, v+10) + docs (Find), 1%", width: 10, docs: true, ours: find(rangeQ, 10), scan: scan(10, true, false), bolt: boltQ(10, true, false)},
	}
	val := make([]byte, valueSize)
	check := func(c ixCase, v int, a ixAnswer) (int, error) {
		want := d.want(v, v+c.width)
		if c.count {
			if a.count != len(want) {
				return 0, fmt.Errorf("%w: count %d, want %d", errIndexMismatch, a.count, len(want))
			}
			return a.count, nil
		}
		keys := a.keys
		if a.set != nil {
			for k := range a.set.All() {
				keys = append(keys, k)
			}
		}
		if len(keys) != len(want) {
			return 0, fmt.Errorf("%w: %d documents, want %d", errIndexMismatch, len(keys), len(want))
		}
		// Key order for the comparison (bbolt's range walk is in age order).
		ord := make([]int, len(keys))
		for i := range ord {
			ord[i] = i
		}
		slices.SortFunc(ord, func(x, y int) int { return bytes.Compare(keys[x], keys[y]) })
		key := make([]byte, keySize)
		for j, i := range want {
			makeKey(key, int(i))
			if !bytes.Equal(keys[ord[j]], key) {
				return 0, fmt.Errorf("%w: document %d is %s, want %s", errIndexMismatch, j, keys[ord[j]], key)
			}
			if c.docs {
				d.value(val, int(i))
				if !bytes.Equal(a.vals[ord[j]], val) {
					return 0, fmt.Errorf("%w: the value of %s", errIndexMismatch, key)
				}
			}
		}
		return len(keys), nil
	}
	timeIt := func(c ixCase, how string, fn func(int) (ixAnswer, error), runs int) (med, lo, hi float64, results int, err error) {
		times := make([]float64, runs)
		counts := make([]float64, runs)
		for r := range runs {
			v := (r*379 + 17) % (indexAges - c.width + 1)
			t0 := time.Now()
			a, err := fn(v)
			times[r] = float64(time.Since(t0).Nanoseconds())
			if err != nil {
				return 0, 0, 0, 0, fmt.Errorf("%s, %s, age %d: %w", c.name, how, v, err)
			}
			n, err := check(c, v, a)
			if err != nil {
				return 0, 0, 0, 0, fmt.Errorf("%s, %s, age %d: %w", c.name, how, v, err)
			}
			counts[r] = float64(n)
		}
		med, lo, hi = medianRange(times)
		nm, _, _ := medianRange(counts)
		return med, lo, hi, int(nm), nil
	}
	scanReps := min(reps, indexScanReps)
	for _, c := range cases {
		// An untimed pass over the same values first (checked too), so
		// both engines answer from warm caches: bbolt's mmap faults its
		// pages in on first touch, ours reads blocks into its cache.
		for _, w := range []struct {
			how string
			fn  func(int) (ixAnswer, error)
		}{{"pluresdb", c.ours}, {"bbolt", c.bolt}} {
			if _, _, _, _, err := timeIt(c, w.how, w.fn, reps); err != nil {
				return err
			}
		}
		q := ixQuery{Name: c.name, Reps: reps, ScanReps: scanReps}
		var err error
		if q.Median, q.Min, q.Max, q.Results, err = timeIt(c, "pluresdb", c.ours, reps); err != nil {
			return err
		}
		if q.ScanMedian, q.ScanMin, q.ScanMax, _, err = timeIt(c, "scan", c.scan, scanReps); err != nil {
			return err
		}
		if q.BoltMedian, q.BoltMin, q.BoltMax, _, err = timeIt(c, "bbolt", c.bolt, reps); err != nil {
			return err
		}
		rc.logf("index: %s: %.3f ms, scan %.1f ms, bbolt %.3f ms", c.name, q.Median/1e6, q.ScanMedian/1e6, q.BoltMedian/1e6)
		rep.Queries = append(rep.Queries, q)
	}
	return nil
}

// ---- printing ----

func (rep *ixReport) print(w io.Writer, markdown bool) {
	title := fmt.Sprintf("index: %s documents (age uniform 0..999, city of 100, 100-byte value), loaded in random key order, %d per batch, seed %d",
		groupThousands(int64(rep.Docs)), indexBatch, rep.Seed)
	loadHead := []string{"engine", "indexes", "docs/s", "vs no index", "cost per index", "settle s", "docs/s with settle", "vs no index", "disk MiB"}
	var loads [][]string
	for _, l := range rep.Loads {
		vs, cost, vsS, settle := "", "", "", ""
		if l.NIndexes > 0 {
			vs = fmt.Sprintf("%.2f", l.Ratio)
			cost = fmt.Sprintf("%.0f%%", 100*(1-l.Ratio)/float64(l.NIndexes))
			vsS = fmt.Sprintf("%.2f", l.RatioSettled)
		}
		if l.Engine == "pluresdb" {
			settle = fmt.Sprintf("%.2f", l.Settle)
		}
		loads = append(loads, []string{l.Engine, l.Indexes, groupThousands(int64(l.PerSec + 0.5)), vs, cost, settle,
			groupThousands(int64(l.PerSecSettled + 0.5)), vsS, fmt.Sprintf("%.1f", float64(l.DiskBytes)/(1<<20))})
	}
	ms := func(x float64) string { return fmt.Sprintf("%.3f", x/1e6) }
	rng := func(lo, hi float64) string { return fmt.Sprintf("%.3f–%.3f", lo/1e6, hi/1e6) }
	queryHead := []string{"query", "docs", "pluresdb ms", "min–max", "scan ms", "min–max", "vs scan", "bbolt ms", "min–max", "vs bbolt"}
	var queries [][]string
	for _, q := range rep.Queries {
		queries = append(queries, []string{q.Name, groupThousands(int64(q.Results)), ms(q.Median), rng(q.Min, q.Max),
			fmt.Sprintf("%.1f", q.ScanMedian/1e6), fmt.Sprintf("%.1f–%.1f", q.ScanMin/1e6, q.ScanMax/1e6),
			fmt.Sprintf("%.0f×", q.ScanMedian/q.Median), ms(q.BoltMedian), rng(q.BoltMin, q.BoltMax),
			fmt.Sprintf("%.2f×", q.BoltMedian/q.Median)})
	}
	notes := []string{
		"load: every document is one Put of its 100-byte value (age big-endian in bytes 0-1, city in byte 2) and SetField of \"age\" (decimal text: an Int64 index parses it) and \"city\"; 1000 documents per batch, NoSync, default options; each configuration into an empty database, its indexes created (and ready) before the first write. docs/s is over the timed batches; settle (Flush + WaitForCompactions) follows, \"with settle\" includes it. cost per index = (1 − docs/s ÷ no-index docs/s) ÷ indexes (target ≤ 30%).",
		"bbolt: bucket docs key → value, and with the index bucket idx_age (8-byte big-endian age + key → empty) put in the same Update; 1000 documents per Update, NoSync like ours, defaults otherwise; no settle (no background work).",
		fmt.Sprintf("build: CreateIndex(age) over the settled no-index database, reopened, until Indexes says it is ready (background build, %d documents per step): %.2f s, %s docs/s; checked with Count.",
			512, rep.BuildSeconds, groupThousands(int64(float64(rep.Docs)/max(rep.BuildSeconds, 1e-9)+0.5))),
		"queries: on the two-index database, settled, closed and reopened; bbolt on its indexed file reopened read-only. Each run asks for another age v (so another 0.1% of the documents); every answer of every run is checked against the generated data after it is timed (keys, and values for + docs). An untimed pass over the same ages first, for both engines, so both answer from warm caches. Times are medians over -index-reps runs (scans: at most 5).",
		"pluresdb: FindKeys returns the keys as a set (hnsw.Keys); Find returns keys and documents (values, fields) in key order; Count reads the index only. scan: NewIter over every document, the age read from the value's first two bytes, keys (and values) of the matching ones copied. bbolt: a read tx, Cursor.Seek to the age, a walk while the entry's age is in range, the key copied, and for + docs a Get in docs and the value copied; its count walks the entries.",
		"vs scan = scan ms ÷ pluresdb ms (target ≥ 100× for the 0.1% queries); vs bbolt = bbolt ms ÷ pluresdb ms (≥ 1: pluresdb at least as fast; the target).",
	}
	if markdown {
		fmt.Fprintf(w, "\n%s.\n\n", title)
		mdTable(w, loadHead, loads)
		fmt.Fprintln(w)
		mdTable(w, queryHead, queries)
		fmt.Fprintln(w)
		for _, n := range append(notes, rep.Notes...) {
			fmt.Fprintln(w, "-", n)
		}
		return
	}
	fmt.Fprintf(w, "\n%s\n\n", title)
	textTable(w, loadHead, loads)
	fmt.Fprintln(w)
	textTable(w, queryHead, queries)
	fmt.Fprintln(w, "\nnotes:")
	for _, n := range append(notes, rep.Notes...) {
		fmt.Fprintln(w, "  -", n)
	}
}

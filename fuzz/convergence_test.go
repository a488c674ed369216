package fuzz

// The convergence test (DESIGN.md §5): replicas make random puts, field
// writes, counter increments and deletes, exchange change streams in random
// order, with duplicates, truncated (refused) and repeated deliveries and
// restarts in between. After a full exchange every replica must hold the
// same state, compared by a full scan, and every counter must equal the sum
// of its increments.

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries"
)

var convergenceSeed = flag.Uint64("convergence.seed", 0, "seed of TestConvergence (0: from the clock)")

func TestConvergence(t *testing.T) {
	seed := *convergenceSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -convergence.seed=%d)", seed, seed)
	rounds := 4
	if testing.Short() {
		rounds = 2
	}
	for r := range rounds {
		runConvergence(t, seed+uint64(r), 3, 400)
	}
}

// FuzzConvergence drives the same exchange from fuzzer-chosen bytes: each
// byte picks the next action.
func FuzzConvergence(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add(bytes.Repeat([]byte{3, 200, 17, 99, 250, 8}, 20))
	f.Fuzz(func(t *testing.T, program []byte) {
		if len(program) > 400 {
			program = program[:400]
		}
		c := newCluster(t, 3, rand.New(rand.NewPCG(uint64(len(program)), 7)))
		defer c.close()
		for _, b := range program {
			c.step(int(b))
		}
		c.converge()
	})
}

func runConvergence(t *testing.T, seed uint64, replicas, steps int) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	c := newCluster(t, replicas, rng)
	defer c.close()
	for range steps {
		c.step(rng.IntN(256))
	}
	c.converge()
}

// cluster is a set of replicas sharing one in-memory filesystem.
type cluster struct {
	t       *testing.T
	rng     *rand.Rand
	fs      *vfs.MemFS
	dbs     []*pluresdb.DB
	mailbox []delivery       // streams made but not yet delivered
	sums    map[string]int64 // key/field → sum of increments, over all replicas
	seen    []oplog.VersionVector
}

type delivery struct {
	to     int
	stream []byte
}

func newCluster(t *testing.T, n int, rng *rand.Rand) *cluster {
	c := &cluster{t: t, rng: rng, fs: vfs.NewMem(), sums: map[string]int64{}}
	for i := range n {
		c.dbs = append(c.dbs, c.open(i))
		c.seen = append(c.seen, oplog.VersionVector{})
	}
	return c
}

func (c *cluster) open(i int) *pluresdb.DB {
	db, err := pluresdb.Open(fmt.Sprintf("/r%d", i), &pluresdb.Options{
		FS: c.fs, NoSync: true, MemtableSize: 1 << 20, LBaseMaxBytes: 1 << 20, TargetFileSize: 64 << 10,
	})
	if err != nil {
		c.t.Fatalf("open replica %d: %v", i, err)
	}
	return db
}

func (c *cluster) close() {
	for _, db := range c.dbs {
		db.Close()
	}
}

func (c *cluster) key() []byte { return fmt.Appendf(nil, "k%02d", c.rng.IntN(24)) }

func (c *cluster) field() []byte { return fmt.Appendf(nil, "f%d", c.rng.IntN(4)) }

// series names one of a few time series; samples are a few samples of
// replica i over three days, timestamps often repeated across writes.
func (c *cluster) series() string { return fmt.Sprintf(`s{k="%d"}`, c.rng.IntN(4)) }

func (c *cluster) samples(i int) []timeseries.Sample {
	var out []timeseries.Sample
	for range 1 + c.rng.IntN(6) {
		out = append(out, timeseries.Sample{T: c.rng.Int64N(3*timeseries.BucketMillis/60_000) * 60_000, V: float64(i*1000 + c.rng.IntN(1000))})
	}
	return out
}

// step runs one action chosen by a.
func (c *cluster) step(a int) {
	t := c.t
	i := c.rng.IntN(len(c.dbs))
	db := c.dbs[i]
	switch a % 16 {
	case 0, 1, 2:
		if err := db.Put(c.key(), fmt.Appendf(nil, "v%d-%d", i, c.rng.IntN(1000))); err != nil {
			t.Fatal(err)
		}
	case 3:
		if err := db.Delete(c.key()); err != nil {
			t.Fatal(err)
		}
	case 4, 5:
		if err := db.SetField(c.key(), c.field(), fmt.Appendf(nil, "x%d", c.rng.IntN(1000))); err != nil {
			t.Fatal(err)
		}
	case 6:
		switch c.rng.IntN(6) {
		case 0, 1, 2:
			if err := db.AppendSamples(c.series(), c.samples(i)...); err != nil {
				t.Fatal(err)
			}
			return
		case 3:
			if err := db.DeleteSeries(c.series()); err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := db.DeleteField(c.key(), c.field()); err != nil {
			t.Fatal(err)
		}
	case 7, 8:
		k, f, d := c.key(), c.field(), int64(c.rng.IntN(21)-10)
		if err := db.Incr(k, f, d); err != nil {
			t.Fatal(err)
		}
		c.sums[string(k)+"/"+string(f)] += d
	case 9:
		// A batch mixing kinds.
		b := db.NewBatch()
		for range 1 + c.rng.IntN(5) {
			_ = b.Put(c.key(), []byte("batch"))
			_ = b.SetField(c.key(), c.field(), []byte("bf"))
			k, f := c.key(), c.field()
			_ = b.Incr(k, f, 1)
			c.sums[string(k)+"/"+string(f)]++
			if err := b.AppendSamples(c.series(), c.samples(i)...); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(nil); err != nil {
			t.Fatal(err)
		}
	case 10, 11:
		// Export now, deliver later (random order).
		j := c.other(i)
		c.mailbox = append(c.mailbox, delivery{to: j, stream: c.export(i, c.since(j))})
	case 12:
		// Deliver a pending stream: maybe twice, maybe cut short.
		if len(c.mailbox) == 0 {
			return
		}
		k := c.rng.IntN(len(c.mailbox))
		d := c.mailbox[k]
		if c.rng.IntN(4) == 0 {
			cut := d.stream[:c.rng.IntN(len(d.stream))]
			c.importRefused(d.to, cut)
			return
		}
		c.importOK(d.to, d.stream, true)
		if c.rng.IntN(3) != 0 {
			c.mailbox = append(c.mailbox[:k], c.mailbox[k+1:]...)
		}
	case 13:
		// Direct sync, since what the receiver has.
		j := c.other(i)
		c.importOK(j, c.export(i, c.dbs[j].VersionVector()), false)
	case 14:
		// Restart.
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		c.dbs[i] = c.open(i)
	case 15:
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}

func (c *cluster) other(i int) int {
	j := c.rng.IntN(len(c.dbs) - 1)
	if j >= i {
		j++
	}
	return j
}

// since picks what to ask for: usually what the receiver has, sometimes an
// older vector it had (duplicates), sometimes everything.
func (c *cluster) since(j int) oplog.VersionVector {
	switch c.rng.IntN(4) {
	case 0:
		return nil
	case 1:
		return c.seen[j]
	}
	vv := c.dbs[j].VersionVector()
	c.seen[j] = vv
	return vv
}

func (c *cluster) export(i int, since oplog.VersionVector) []byte {
	var buf bytes.Buffer
	if _, err := c.dbs[i].ExportChanges(&buf, since); err != nil {
		c.t.Fatalf("replica %d export: %v", i, err)
	}
	return buf.Bytes()
}

func (c *cluster) importOK(j int, stream []byte, mayGap bool) {
	if _, err := c.dbs[j].ImportChanges(bytes.NewReader(stream)); err != nil {
		if mayGap && errors.Is(err, pluresdb.ErrCausalGap) {
			return // made before the receiver caught up elsewhere; a later exchange covers it
		}
		c.t.Fatalf("replica %d import: %v", j, err)
	}
}

func (c *cluster) importRefused(j int, stream []byte) {
	before := scan(c.t, c.dbs[j])
	vv := c.dbs[j].VersionVector()
	_, err := c.dbs[j].ImportChanges(bytes.NewReader(stream))
	if err == nil {
		c.t.Fatalf("replica %d accepted a stream cut to %d bytes", j, len(stream))
	}
	if !errors.Is(err, pluresdb.ErrCorruption) {
		c.t.Fatalf("truncated stream: %v, want ErrCorruption", err)
	}
	if scan(c.t, c.dbs[j]) != before || !c.dbs[j].VersionVector().Equal(vv) {
		c.t.Fatalf("replica %d changed by a refused stream", j)
	}
}

// converge exchanges everything and checks that all replicas agree.
func (c *cluster) converge() {
	for range 3 {
		for i := range c.dbs {
			for j := range c.dbs {
				if i != j {
					c.importOK(j, c.export(i, c.dbs[j].VersionVector()), false)
				}
			}
		}
	}
	want := scan(c.t, c.dbs[0])
	for i, db := range c.dbs[1:] {
		if got := scan(c.t, db); got != want {
			c.t.Fatalf("replica %d differs from replica 0:\n%s\n---\n%s", i+1, got, want)
		}
		if !db.VersionVector().Equal(c.dbs[0].VersionVector()) {
			c.t.Fatalf("version vectors differ: %v vs %v", db.VersionVector(), c.dbs[0].VersionVector())
		}
	}
	for kf, sum := range c.sums {
		var k, f string
		for n := range len(kf) {
			if kf[n] == '/' {
				k, f = kf[:n], kf[n+1:]
				break
			}
		}
		for i, db := range c.dbs {
			d, err := db.GetFields([]byte(k))
			if err != nil {
				c.t.Fatalf("replica %d GetFields(%s): %v", i, k, err)
			}
			if d.Counters[f] != sum {
				c.t.Fatalf("replica %d counter %s = %d, increments sum to %d", i, kf, d.Counters[f], sum)
			}
		}
	}
}

// scan is a full scan of a replica: values, fields and counters.
func scan(t *testing.T, db *pluresdb.DB) string {
	var out bytes.Buffer
	it := db.NewIter(nil, nil)
	for ok := it.First(); ok; ok = it.Next() {
		d, err := db.GetFields(it.Key())
		if err != nil {
			t.Fatalf("GetFields(%q): %v", it.Key(), err)
		}
		fmt.Fprintf(&out, "%s=%q %v %v\n", it.Key(), it.Value(), d.Fields, d.Counters)
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	names, err := db.SelectSeries(`s`)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		samples, err := db.QuerySamples(name, math.MinInt64, math.MaxInt64)
		if err != nil {
			t.Fatalf("QuerySamples(%s): %v", name, err)
		}
		fmt.Fprintf(&out, "%s %v\n", name, samples)
	}
	return out.String()
}

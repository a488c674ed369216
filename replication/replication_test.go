package replication_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/replication"
	"github.com/plures/pluresdb/replication/embedded"
	"github.com/plures/pluresdb/timeseries"
)

// cluster is a set of replicas syncing through one embedded server.
type cluster struct {
	t     testing.TB
	store string
	srv   *embedded.Server
	addr  string
	reps  []*replica
	// incr counts the increments of "counter"/"n" across replicas.
	incr atomic.Int64
}

type replica struct {
	name  string
	dir   string
	db    *pluresdb.DB
	nc    *nats.Conn
	rep   *replication.Replicator
	proxy *proxy
	cfg   replication.Config
}

func newCluster(t testing.TB) *cluster {
	c := &cluster{t: t, store: t.TempDir()}
	srv, err := embedded.Start(embedded.Options{StoreDir: c.store})
	if err != nil {
		t.Fatal(err)
	}
	c.srv, c.addr = srv, srv.Addr()
	t.Cleanup(func() {
		for _, r := range c.reps {
			r.stop(t)
		}
		c.srv.Shutdown()
	})
	return c
}

func testConfig() replication.Config {
	return replication.Config{
		PublishInterval:  5 * time.Millisecond,
		DiscoverInterval: 100 * time.Millisecond,
		RetryBackoff:     50 * time.Millisecond,
		SnapshotInterval: -1,
		Logf:             testLogf,
	}
}

// add opens a new replica (through a proxy to the server, so that its
// connection can be cut) and starts its replicator.
func (c *cluster) add(name string, cfg replication.Config) *replica {
	r := &replica{name: name, dir: c.t.TempDir(), cfg: cfg}
	r.proxy = newProxy(c.t, c.addr)
	r.open(c.t)
	c.reps = append(c.reps, r)
	return r
}

func (r *replica) open(t testing.TB) {
	t.Helper()
	db, err := pluresdb.Open(r.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(testURL(r), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
		nats.RetryOnFailedConnect(true), nats.Timeout(time.Second),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := replication.Start(db, nc, r.cfg)
	if err != nil {
		t.Fatalf("%s: %v", r.name, err)
	}
	r.db, r.nc, r.rep = db, nc, rep
}

func (r *replica) stop(t testing.TB) {
	t.Helper()
	if r.db == nil {
		return
	}
	if err := r.rep.Stop(); err != nil {
		t.Errorf("%s: Stop: %v", r.name, err)
	}
	r.nc.Close()
	if err := r.db.Close(); err != nil {
		t.Errorf("%s: Close: %v", r.name, err)
	}
	r.db = nil
}

// write runs n mixed writes on r: documents, fields, counters, samples.
func (c *cluster) write(r *replica, n int) error {
	for i := range n {
		var err error
		switch i % 4 {
		case 0:
			err = r.db.Put(fmt.Appendf(nil, "doc/%s/%d", r.name, i), fmt.Appendf(nil, "value %s %d", r.name, i))
		case 1:
			err = r.db.SetField(fmt.Appendf(nil, "shared/%d", i%16), []byte("f-"+r.name), fmt.Appendf(nil, "%d", i))
		case 2:
			if err = r.db.Incr([]byte("counter"), []byte("n"), 1); err == nil {
				c.incr.Add(1)
			}
		case 3:
			err = r.db.AppendSamples(`cpu{host="`+r.name+`"}`, timeseries.Sample{T: int64(1_700_000_000_000 + i), V: float64(i)})
		}
		if err != nil {
			return fmt.Errorf("%s write %d: %w", r.name, i, err)
		}
	}
	return nil
}

// writeAll writes n operations on each replica, concurrently.
func (c *cluster) writeAll(n int, reps ...*replica) {
	c.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(reps))
	for _, r := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.write(r, n); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		c.t.Fatal(err)
	}
}

// converge waits until every replica has the same version vector, each
// replica's own entry included, the same full scan and the counter equal
// to the sum of increments. (A version vector counts an import a moment
// before its operations are visible: the scans are compared until they
// agree or the time is up.)
func (c *cluster) converge(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		problem := c.differences()
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			for _, r := range c.reps {
				st := r.rep.Status()
				c.t.Logf("%s: %v published %d errors %d refusals %d", r.name, r.db.VersionVector(), st.Published, st.Metrics.Errors, st.Metrics.Refusals)
				for _, p := range st.Peers {
					c.t.Logf("  peer %s: imported %d published %d last error %q", p.Replica, p.Imported, p.Published, p.LastError)
				}
			}
			c.t.Fatalf("no convergence in %v: %s", timeout, problem)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// differences says how the replicas differ ("" if they do not).
func (c *cluster) differences() string {
	vv0 := c.reps[0].db.VersionVector()
	if len(vv0) < len(c.reps) {
		return fmt.Sprintf("%s's version vector %v lacks replicas", c.reps[0].name, vv0)
	}
	for _, r := range c.reps[1:] {
		if vv := r.db.VersionVector(); !vv.Equal(vv0) {
			return fmt.Sprintf("version vectors: %s %v, %s %v", c.reps[0].name, vv0, r.name, vv)
		}
	}
	want := c.scan(c.reps[0])
	for _, r := range c.reps[1:] {
		if got := c.scan(r); !bytes.Equal(got, want) {
			gl, wl := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
			for i := range min(len(gl), len(wl)) {
				if !bytes.Equal(gl[i], wl[i]) {
					return fmt.Sprintf("scans differ, line %d:\n%s: %s\n%s: %s", i, r.name, gl[i], c.reps[0].name, wl[i])
				}
			}
			return fmt.Sprintf("scans differ in length: %s %d lines, %s %d", r.name, len(gl), c.reps[0].name, len(wl))
		}
	}
	for _, r := range c.reps {
		doc, err := r.db.GetFields([]byte("counter"))
		if err != nil {
			return fmt.Sprintf("%s: counter: %v", r.name, err)
		}
		if got, want := doc.Counters["n"], c.incr.Load(); got != want {
			return fmt.Sprintf("%s: counter is %d, the sum of increments %d", r.name, got, want)
		}
	}
	return ""
}

// scan renders a replica's whole state: every document with its fields
// and counters, and every writer's samples.
func (c *cluster) scan(r *replica) []byte {
	c.t.Helper()
	var b bytes.Buffer
	it := r.db.NewIter(nil, nil)
	for ok := it.First(); ok; ok = it.Next() {
		doc, err := r.db.GetFields(it.Key())
		if err != nil {
			c.t.Fatalf("%s: %q: %v", r.name, it.Key(), err)
		}
		fmt.Fprintf(&b, "%q=%q fields=%v counters=%v\n", it.Key(), it.Value(), doc.Fields, doc.Counters)
	}
	if err := it.Close(); err != nil {
		c.t.Fatal(err)
	}
	for _, w := range c.reps {
		s, err := r.db.QuerySamples(`cpu{host="`+w.name+`"}`, math.MinInt64, math.MaxInt64)
		if err != nil {
			c.t.Fatalf("%s: samples of %s: %v", r.name, w.name, err)
		}
		fmt.Fprintf(&b, "%s: %v\n", w.name, s)
	}
	return b.Bytes()
}

func TestThreeReplicasConverge(t *testing.T) {
	c := newCluster(t)
	a, b, d := c.add("a", testConfig()), c.add("b", testConfig()), c.add("c", testConfig())
	c.writeAll(400, a, b, d)
	c.converge(20 * time.Second)
	for _, r := range c.reps {
		st := r.rep.Status()
		if st.Published != st.Local || len(st.Peers) != 2 {
			t.Fatalf("%s: status %+v", r.name, st)
		}
		for _, p := range st.Peers {
			if p.Imported != p.Published || p.LagSeq != 0 || p.Refusals != 0 || p.Operations == 0 {
				t.Fatalf("%s: peer %+v", r.name, p)
			}
		}
	}
}

// A replica's connection is cut while everyone writes, then restored.
func TestPartitionHeals(t *testing.T) {
	c := newCluster(t)
	a, b, d := c.add("a", testConfig()), c.add("b", testConfig()), c.add("c", testConfig())
	c.writeAll(100, a, b, d)
	b.proxy.cut(true)
	c.writeAll(200, a, b, d)
	time.Sleep(300 * time.Millisecond)
	if b.db.VersionVector()[a.db.ReplicaID()] == a.db.VersionVector()[a.db.ReplicaID()] {
		t.Fatal("the cut replica is level with a: the partition did not partition")
	}
	b.proxy.cut(false)
	c.writeAll(50, a, b, d)
	c.converge(20 * time.Second)
}

// The server is restarted (on its store) while replicas write.
func TestServerRestart(t *testing.T) {
	c := newCluster(t)
	a, b, d := c.add("a", testConfig()), c.add("b", testConfig()), c.add("c", testConfig())
	c.writeAll(100, a, b, d)
	c.srv.Shutdown()
	c.writeAll(100, a, b, d)
	srv, err := embedded.Start(embedded.Options{StoreDir: c.store, Listen: c.addr})
	if err != nil {
		t.Fatal(err)
	}
	c.srv = srv
	c.writeAll(100, a, b, d)
	c.converge(30 * time.Second)
}

// A replica is closed and reopened while the others go on writing: it
// resumes where it was, publishing nothing twice and importing nothing
// twice (the counter equals the sum of increments).
func TestReplicaRestart(t *testing.T) {
	c := newCluster(t)
	a, b, d := c.add("a", testConfig()), c.add("b", testConfig()), c.add("c", testConfig())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.writeAll(300, a, d)
	}()
	if err := c.write(b, 100); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	before := b.rep.Status()
	b.stop(t)
	time.Sleep(100 * time.Millisecond)
	b.open(t)
	if err := c.write(b, 100); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	c.converge(20 * time.Second)
	after := b.rep.Status()
	// The first replicator published up to Stop; the second went on
	// from there: the stream holds each of b's operations once.
	if after.Metrics.OperationsOut+before.Metrics.OperationsOut > 200 {
		t.Fatalf("b published %d + %d operations for its 200", before.Metrics.OperationsOut, after.Metrics.OperationsOut)
	}
}

// A replica joins late, after the stream lost the early history (here
// purged): it loads the newest snapshot from the object store and
// consumes from its version vector.
func TestLateJoinBySnapshot(t *testing.T) {
	c := newCluster(t)
	a, b := c.add("a", testConfig()), c.add("b", testConfig())
	c.writeAll(200, a, b)
	c.converge(20 * time.Second)
	if _, err := a.rep.PublishSnapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The stream forgets everything so far: only the snapshot has it.
	nc, err := nats.Connect(c.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	purgeStream(t, nc, "pluresdb")
	c.writeAll(100, a, b)
	d := c.add("c", testConfig())
	c.writeAll(50, a, b, d)
	c.converge(20 * time.Second)
	if st := d.rep.Status(); st.Metrics.SnapshotsIn == 0 {
		t.Fatalf("the late replica loaded no snapshot: %+v", st)
	}
}

// A replica importing only some key prefixes gets those keys and no
// others.
func TestSelectivePrefixes(t *testing.T) {
	c := newCluster(t)
	a := c.add("a", testConfig())
	cfg := testConfig()
	cfg.Prefixes = [][]byte{[]byte("shared/")}
	sel := c.add("sel", cfg)
	c.reps = c.reps[:1] // sel does not converge on everything
	defer func() { c.reps = append(c.reps, sel) }()
	c.writeAll(200, a)
	deadline := time.Now().Add(10 * time.Second)
	for sel.db.PrefixVersionVector([]byte("shared/"))[a.db.ReplicaID()] < a.db.VersionVector()[a.db.ReplicaID()] {
		if time.Now().After(deadline) {
			t.Fatalf("selective replica did not catch up: %+v", sel.rep.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := 1; i < 16; i += 4 { // the keys write sets fields of
		key := fmt.Appendf(nil, "shared/%d", i)
		want, err := a.db.GetFields(key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := sel.db.GetFields(key)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if fmt.Sprint(got.Fields) != fmt.Sprint(want.Fields) {
			t.Fatalf("%s: %v, want %v", key, got.Fields, want.Fields)
		}
	}
	if _, err := sel.db.Get([]byte("doc/a/0")); err == nil {
		t.Fatal("a key outside the prefixes was imported")
	}
}

func purgeStream(t testing.TB, nc *nats.Conn, name string) {
	t.Helper()
	resp, err := nc.Request("$JS.API.STREAM.PURGE."+name, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(resp.Data, []byte(`"success":true`)) {
		t.Fatalf("purge: %s", resp.Data)
	}
}

// proxy forwards TCP connections to the server; cut drops them all and
// refuses new ones until restored.
type proxy struct {
	t      testing.TB
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.cut(true) })
	go p.serve()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			in.Close()
			continue
		}
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); out.Close(); in.Close() }()
		go func() { _, _ = io.Copy(in, out); out.Close(); in.Close() }()
	}
}

func (p *proxy) cut(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

var testLogf func(string, ...any)

var direct string

func testURL(r *replica) string {
	if direct != "" {
		return direct
	}
	return "nats://" + r.proxy.addr()
}

// A message the engine refuses (a corrupt change stream) is left
// unacknowledged and reported, never skipped: the replica does not
// advance past it, and the other peers go on.
func TestRefusedMessageReported(t *testing.T) {
	c := newCluster(t)
	a, b := c.add("a", testConfig()), c.add("b", testConfig())
	bogus := oplog.NewReplicaID()
	nc, err := nats.Connect(c.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg("pluresdb.ops." + bogus.String())
	m.Data = []byte("PLRSCHNG\x02 damaged change stream")
	m.Header.Set(replication.HeaderFrom, "0")
	m.Header.Set(replication.HeaderTo, "5")
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	c.writeAll(100, a, b)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var refused *replication.PeerStatus
		for _, p := range a.rep.Status().Peers {
			if p.Replica == bogus {
				refused = &p
			}
		}
		if refused != nil && refused.Refusals >= 2 && strings.Contains(refused.LastError, "corrupt") && strings.Contains(refused.LastError, "stream sequence 1 ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no refusal reported: %+v", a.rep.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.rep.Health(); err == nil || !strings.Contains(err.Error(), bogus.String()) {
		t.Fatalf("Health: %v", err)
	}
	if got := a.db.VersionVector()[bogus]; got != 0 {
		t.Fatalf("the refused message advanced the version vector to %d", got)
	}
	c.converge(10 * time.Second) // a and b agree all the same
}

// A consumer that is ahead of what its replica holds (here moved forward
// by hand while the replica was cut off) meets a gap: the replica catches
// up from the right message, never skipping the ones in between.
func TestGapCatchUp(t *testing.T) {
	c := newCluster(t)
	a, b := c.add("a", testConfig()), c.add("b", testConfig())
	c.writeAll(50, a, b)
	c.converge(10 * time.Second)
	b.proxy.cut(true)
	c.writeAll(100, a)
	if err := a.rep.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(c.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := js.Stream(ctx, "pluresdb")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// b's consumer of a's subject now starts at the stream's last message.
	name := b.db.ReplicaID().String() + "_" + a.db.ReplicaID().String()
	if err := s.DeleteConsumer(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: name, FilterSubject: "pluresdb.ops." + a.db.ReplicaID().String(),
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: info.State.LastSeq,
		AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	b.proxy.cut(false)
	c.converge(10 * time.Second)
	if m := b.rep.Metrics(); m.CatchUps == 0 {
		t.Fatalf("no catch-up: %+v", m)
	}
}

// A replica that was down while the stream lost what it lacks (here
// purged) finds the hole when it comes back, loads the newest snapshot
// and goes on from the stream.
func TestBehindStreamLoadsSnapshot(t *testing.T) {
	c := newCluster(t)
	a, b := c.add("a", testConfig()), c.add("b", testConfig())
	c.writeAll(50, a, b)
	c.converge(10 * time.Second)
	b.stop(t)
	c.writeAll(100, a)
	if err := a.rep.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.rep.PublishSnapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(c.srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	purgeStream(t, nc, "pluresdb")
	c.writeAll(20, a)
	b.open(t)
	c.converge(10 * time.Second)
	// b is not new: it loaded a snapshot because the stream lacked what
	// it missed.
	if st := b.rep.Status(); st.Metrics.SnapshotsIn == 0 {
		t.Fatalf("b came back without a snapshot: %+v", st.Metrics)
	}
}

// An export larger than a message is cut where transactions end (and a
// transaction larger than a message between operations); the peers get
// every operation.
func TestLargeExportSplit(t *testing.T) {
	c := newCluster(t)
	cfg := testConfig()
	cfg.MaxMessageBytes = 16 << 10
	cfg.PublishInterval = 200 * time.Millisecond // let exports grow past a message
	a, b := c.add("a", cfg), c.add("b", testConfig())
	rng := rand.New(rand.NewPCG(1, 2))
	value := make([]byte, 300) // random: the stream's compression cannot shrink it
	for i := range 40 {
		batch := a.db.NewBatch()
		n := 10
		if i == 20 {
			n = 200 // about 75 KiB: more than a message
		}
		for j := range n {
			for k := range value {
				value[k] = byte(rng.Uint32())
			}
			if err := batch.Put(fmt.Appendf(nil, "big/%d/%d", i, j), value); err != nil {
				t.Fatal(err)
			}
		}
		if err := batch.Commit(nil); err != nil {
			t.Fatal(err)
		}
	}
	c.writeAll(10, a, b)
	c.converge(20 * time.Second)
	m := a.rep.Metrics()
	if m.SplitTransactions == 0 || m.MessagesOut < 5 {
		t.Fatalf("no split: %+v", m)
	}
	t.Logf("a published %d operations in %d messages (%d bytes), %d transactions split", m.OperationsOut, m.MessagesOut, m.BytesOut, m.SplitTransactions)
	if err := b.rep.Health(); err != nil {
		t.Fatal(err)
	}
}

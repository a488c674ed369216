package pluresdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/vfs"
)

// A replica exports NoSync writes, loses power, and writes again after the
// restart. Its new writes must not take the sequence numbers of the writes
// the peer already holds: after a full exchange both ways, the replicas
// hold the same keys and values and the same version vector.
func TestExportOnlyDurable(t *testing.T) {
	memA := vfs.NewMem()
	a := openReplica(t, memA, "/a") // NoSync
	b := openReplica(t, vfs.NewMem(), "/b")
	defer b.Close()
	for i := range 10 {
		must(t, a.Put(fmt.Appendf(nil, "before%d", i), []byte("sent to b")))
	}
	syncPair(t, a, b)
	for i := range 5 {
		must(t, a.Put(fmt.Appendf(nil, "unsent%d", i), []byte("never exported")))
	}

	crashed := memA.CrashClone()
	a.Close()
	a = openReplica(t, crashed, "/a")
	defer a.Close()
	for i := range 20 {
		must(t, a.Put(fmt.Appendf(nil, "after%d", i), []byte("after the crash")))
	}
	must(t, b.Put([]byte("fromb"), []byte("b's")))
	syncPair(t, a, b)
	syncPair(t, b, a)
	syncPair(t, a, b)

	da, db := dump(t, a), dump(t, b)
	if da != db {
		t.Fatalf("replicas diverged:\na:\n%s\nb:\n%s", da, db)
	}
	for i := range 10 {
		if v, err := a.Get(fmt.Appendf(nil, "before%d", i)); err != nil || string(v) != "sent to b" {
			t.Fatalf("before%d on a after the crash: %q, %v", i, v, err)
		}
	}
	for i := range 20 {
		if v, err := b.Get(fmt.Appendf(nil, "after%d", i)); err != nil || string(v) != "after the crash" {
			t.Fatalf("after%d on b: %q, %v", i, v, err)
		}
	}
	if va, vb := a.VersionVector(), b.VersionVector(); !va.Equal(vb) {
		t.Fatalf("version vectors differ: a %v, b %v", va, vb)
	}
}

// A change the feed delivered survives a power cut, even one written
// with NoSync: its position is never reused for another change.
func TestFeedDeliversOnlyDurable(t *testing.T) {
	mem := vfs.NewMem()
	a := openReplica(t, mem, "/a") // NoSync
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub, err := a.Subscribe(ctx, Position{})
	must(t, err)
	must(t, a.Put([]byte("k"), []byte("delivered")))
	c, err := sub.Next()
	must(t, err)
	if string(c.Op.Key) != "k" {
		t.Fatalf("feed delivered %q", c.Op.Key)
	}
	sub.Close()

	crashed := mem.CrashClone()
	a.Close()
	a = openReplica(t, crashed, "/a")
	defer a.Close()
	if v, err := a.Get([]byte("k")); err != nil || !bytes.Equal(v, []byte("delivered")) {
		t.Fatalf("a change the feed delivered was lost in a crash: %q, %v", v, err)
	}
}

// TestPowerCutAcrossReplicas: three replicas writing with NoSync exchange
// full and selective streams at random; now and then one loses power
// (each crash mode in turn: unsynced writes dropped, or a random prefix
// or subset of them kept), restarts and writes again. After a full
// exchange every replica holds the same state and version vector, and
// every write a replica exported before its crash is still there.
func TestPowerCutAcrossReplicas(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 17))
	const n = 3
	fss := make([]*vfs.MemFS, n)
	dbs := make([]*DB, n)
	for i := range dbs {
		fss[i] = vfs.NewMem()
		dbs[i] = openReplica(t, fss[i], "/r")
	}
	defer func() {
		for _, db := range dbs {
			db.Close()
		}
	}()
	crashes := 0
	rounds := 400
	if testing.Short() {
		rounds = 150
	}
	for step := range rounds {
		i := rng.IntN(n)
		switch p := rng.IntN(10); {
		case p < 5:
			k := fmt.Appendf(nil, "%s/%d", []string{"a", "b"}[rng.IntN(2)], rng.IntN(30))
			if rng.IntN(3) == 0 {
				must(t, dbs[i].Incr(k, []byte("n"), 1))
			} else {
				must(t, dbs[i].Put(k, fmt.Appendf(nil, "%d-%d", i, step)))
			}
		case p < 7:
			if j := rng.IntN(n); j != i {
				syncPair(t, dbs[i], dbs[j])
			}
		case p < 8:
			if j := rng.IntN(n); j != i {
				prefixSync(t, dbs[i], dbs[j], "a/")
			}
		default:
			// Power cut: what the others hold of this replica's
			// writes must survive it.
			mode := vfs.CrashModes[crashes%len(vfs.CrashModes)]
			crashes++
			crashed := fss[i].CrashCloneWith(rand.New(rand.NewPCG(seed, uint64(step))), mode)
			dbs[i].Close()
			fss[i] = crashed
			db, err := Open("/r", &Options{FS: crashed, NoSync: true, MemtableSize: 1 << 20})
			if err != nil {
				t.Fatalf("seed %d step %d %v: reopen after a power cut: %v", seed, step, mode, err)
			}
			dbs[i] = db
		}
	}
	for range 2 {
		for i := range dbs {
			for j := range dbs {
				if i != j {
					syncPair(t, dbs[i], dbs[j])
				}
			}
		}
	}
	want, wantVV := dump(t, dbs[0]), dbs[0].VersionVector()
	for i := 1; i < n; i++ {
		if got := dump(t, dbs[i]); got != want {
			t.Fatalf("seed %d: replica %d diverged after %d power cuts:\n%s---\n%s", seed, i, crashes, got, want)
		}
		if vv := dbs[i].VersionVector(); !vv.Equal(wantVV) {
			t.Fatalf("seed %d: replica %d version vector %v, want %v", seed, i, vv, wantVV)
		}
	}
	if crashes == 0 {
		t.Fatal("no power cut")
	}
}

// TestReplayedLogSurvivesPowerCut: a process killed after NoSync writes
// leaves what it wrote to the log in the page cache, not on disk; the
// next open replays it into tables. A power cut after that must not take
// it from the op history while the tables keep it (the replica would
// hold state it can never export): every document this replica reads, a
// peer gets by sync.
func TestReplayedLogSurvivesPowerCut(t *testing.T) {
	fs := vfs.NewMem()
	opts := func(fs vfs.FS) *Options { return &Options{FS: fs, NoSync: true, MemtableSize: 16 << 20} }
	a, err := Open("/a", opts(fs))
	must(t, err)
	// More than the log's write buffer, less than a memtable: most of it
	// reaches the file, none of it is synced.
	for i := range 30000 {
		must(t, a.Put(fmt.Appendf(nil, "k%05d", i), bytes.Repeat([]byte("v"), 100)))
	}
	killed := fs.KillClone()
	a.Close()
	a, err = Open("/a", opts(killed)) // replays what reached the file
	must(t, err)
	replayed := strings.Count(dump(t, a), "\n")
	if replayed < 1000 {
		t.Fatalf("setup: only %d writes reached the log file", replayed)
	}
	crashed := killed.CrashClone() // and then the power goes
	a.Close()
	a, err = Open("/a", opts(crashed))
	must(t, err)
	defer a.Close()
	b := openReplica(t, vfs.NewMem(), "/b")
	defer b.Close()
	syncPair(t, a, b)
	if da, db := dump(t, a), dump(t, b); da != db {
		t.Fatalf("a holds what it cannot export: a %d documents, b %d", strings.Count(da, "\n"), strings.Count(db, "\n"))
	}
	if n := strings.Count(dump(t, a), "\n"); n != replayed {
		t.Fatalf("%d documents after the power cut, %d replayed before it", n, replayed)
	}
}

// TestRewoundReplicaRefused: a replica restored in place from an older
// copy lacks its own operations that its peers hold. An import from a
// peer says so (ErrRewound) instead of letting it write again under
// sequence numbers the peers hold for other operations.
func TestRewoundReplicaRefused(t *testing.T) {
	fs := vfs.NewMem()
	a := openReplica(t, fs, "/a")
	b := openReplica(t, fs, "/b")
	defer b.Close()
	for i := range 5 {
		must(t, a.Put(fmt.Appendf(nil, "k%d", i), []byte("old")))
	}
	must(t, a.Checkpoint("/a-copy"))
	for i := range 5 {
		must(t, a.Put(fmt.Appendf(nil, "later%d", i), []byte("v")))
	}
	syncPair(t, a, b)
	must(t, a.Close())

	// The lost node comes back from the copy, same replica ID.
	restored := openReplica(t, fs, "/a-copy")
	defer restored.Close()
	if restored.ReplicaID() != a.ReplicaID() {
		t.Fatal("setup: the checkpoint has another replica ID")
	}
	var buf bytes.Buffer
	_, err := b.ExportChanges(&buf, restored.VersionVector())
	must(t, err)
	if _, err := restored.ImportChanges(&buf); !errors.Is(err, ErrRewound) {
		t.Fatalf("import into a rewound replica: %v, want ErrRewound", err)
	}
	// The snapshot path says the same.
	var snap bytes.Buffer
	_, err = b.ExportSnapshot(&snap)
	must(t, err)
	if _, err := restored.ImportSnapshot(&snap); !errors.Is(err, ErrRewound) {
		t.Fatalf("snapshot into a rewound replica: %v, want ErrRewound", err)
	}
}

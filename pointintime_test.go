package pluresdb

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
)

// TestVersionVectorAtRebuildsPastStates records a replica's state at
// points in time while it writes and exchanges with a peer, then
// rebuilds each state on a new replica from VersionVectorAt and
// ExportChangesUpTo alone, across flushed and sealed log segments.
func TestVersionVectorAtRebuildsPastStates(t *testing.T) {
	fs := vfs.NewMem()
	a := openReplica(t, fs, "a")
	defer a.Close()
	b := openReplica(t, fs, "b")
	defer b.Close()
	rng := rand.New(rand.NewPCG(1, 2))

	type point struct {
		ts   oplog.Timestamp
		dump string
	}
	var points []point
	for phase := range 8 {
		randomWrites(t, rng, a, 40)
		if phase%2 == 1 {
			// A batch: one record, never split by a point in time.
			batch := a.NewBatch()
			for i := range 5 {
				batch.Put(fmt.Appendf(nil, "batch%d", i), fmt.Appendf(nil, "phase%d", phase))
			}
			must(t, batch.Commit(nil))
		}
		syncPair(t, a, b)
		randomWrites(t, rng, b, 30)
		syncPair(t, b, a)
		if phase%3 == 2 {
			must(t, a.Flush())
		}
		points = append(points, point{a.Now(), fullDump(t, a)})
		// Later writes, here or on the peer, get later timestamps.
		time.Sleep(2 * time.Millisecond)
	}
	randomWrites(t, rng, a, 40)

	for i, p := range points {
		vv, err := a.VersionVectorAt(p.ts)
		if err != nil {
			t.Fatalf("point %d: %v", i, err)
		}
		c := openReplica(t, fs, fmt.Sprintf("c%d", i))
		var buf bytes.Buffer
		if _, err := a.ExportChangesUpTo(&buf, nil, vv); err != nil {
			t.Fatalf("point %d: export: %v", i, err)
		}
		if _, err := c.ImportChanges(&buf); err != nil {
			t.Fatalf("point %d: import: %v", i, err)
		}
		if got := fullDump(t, c); got != p.dump {
			t.Fatalf("point %d: rebuilt state differs\ngot:\n%s\nwant:\n%s", i, got, p.dump)
		}
		must(t, c.Close())
	}

	// Before the first operation: nothing.
	vv, err := a.VersionVectorAt(1)
	if err != nil || len(vv) != 0 {
		t.Fatalf("VersionVectorAt(1) = %v, %v; want empty", vv, err)
	}
}

// TestVersionVectorAtAfterDroppedHistory: once retention has dropped
// history, a time it can no longer vouch for is ErrHistoryUnavailable,
// and a later one still works.
func TestVersionVectorAtAfterDroppedHistory(t *testing.T) {
	fs := vfs.NewMem()
	a := openReplica(t, fs, "a")
	defer a.Close()
	must(t, a.Put([]byte("k1"), []byte("v1")))
	early := a.Now()
	time.Sleep(2 * time.Millisecond)
	must(t, a.Put([]byte("k2"), []byte("v2")))
	must(t, a.Flush())
	// Drop everything retained so far.
	if err := a.dropHistory(time.Now().Add(30 * 24 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if a.ol.floor[a.ReplicaID()] == 0 {
		t.Skip("retention kept the history; nothing to check")
	}
	time.Sleep(2 * time.Millisecond)
	must(t, a.Put([]byte("k3"), []byte("v3")))
	if _, err := a.VersionVectorAt(early); !errors.Is(err, ErrHistoryUnavailable) {
		t.Fatalf("VersionVectorAt before the dropped history: %v, want ErrHistoryUnavailable", err)
	}
	vv, err := a.VersionVectorAt(a.Now())
	if err != nil {
		t.Fatal(err)
	}
	if want := a.VersionVector(); !vv.Equal(want) {
		t.Fatalf("VersionVectorAt(now) = %v, want %v", vv, want)
	}
}

package pluresdb

import (
	"bytes"
	"context"
	"fmt"
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

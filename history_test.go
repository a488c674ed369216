package pluresdb

import (
	"testing"
	"time"

	"github.com/plures/pluresdb/internal/vfs"
)

// TestClockSurvivesDroppedHistory: a replica that imported writes from a
// peer whose clock runs 50 s ahead, and then dropped that history, must
// not come back from a restart with a clock behind them. Its later local
// write to the same key must win on both replicas.
func TestClockSurvivesDroppedHistory(t *testing.T) {
	fs := vfs.NewMem()
	ahead := func() time.Time { return time.Now().Add(50 * time.Second) }
	a, err := Open("/a", &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, Clock: ahead})
	must(t, err)
	defer func() { a.Close() }()
	bOpts := &Options{FS: fs, NoSync: true, MemtableSize: 1 << 20, Retention: -1}
	b, err := Open("/b", bOpts)
	must(t, err)
	must(t, a.Put([]byte("k"), []byte("from a")))
	if n := syncPair(t, a, b); n != 1 {
		t.Fatalf("synced %d", n)
	}
	must(t, b.Flush())
	must(t, b.applyRetention(time.Now()))
	if b.Metrics().OpLog.SegmentsDropped == 0 {
		t.Fatal("no history dropped")
	}
	must(t, b.Close())
	b, err = Open("/b", bOpts)
	must(t, err)
	defer func() { b.Close() }()
	must(t, b.Put([]byte("k"), []byte("from b, later")))
	syncPair(t, b, a)
	syncPair(t, a, b)
	for name, db := range map[string]*DB{"a": a, "b": b} {
		v, err := db.Get([]byte("k"))
		must(t, err)
		if string(v) != "from b, later" {
			t.Errorf("%s reads %q, want b's later write", name, v)
		}
	}
}

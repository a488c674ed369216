package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/wal"
)

// dumpAll describes every document of db: value, fields and counters.
func dumpAll(t testing.TB, db *pluresdb.DB) string {
	t.Helper()
	var out strings.Builder
	it := db.NewIter(nil, nil)
	for ok := it.First(); ok; ok = it.Next() {
		d, err := db.GetFields(it.Key())
		must(t, err)
		fmt.Fprintf(&out, "%q=%q fields=%v counters=%v\n", it.Key(), it.Value(), d.Fields, d.Counters)
	}
	must(t, it.Close())
	return out.String()
}

func openDump(t testing.TB, fs vfs.FS, dir string) (string, *pluresdb.DB) {
	t.Helper()
	db, err := pluresdb.Open(dir, &pluresdb.Options{FS: fs, ReadOnly: true})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	return dumpAll(t, db), db
}

func randomWrites(t testing.TB, rng *rand.Rand, db *pluresdb.DB, n int) {
	t.Helper()
	for i := range n {
		k := fmt.Appendf(nil, "k%03d", rng.IntN(80))
		switch p := rng.IntN(100); {
		case p < 40:
			must(t, db.Put(k, fmt.Appendf(nil, "v%d-%s", i, strings.Repeat("x", rng.IntN(300)))))
		case p < 50:
			must(t, db.Delete(k))
		case p < 75:
			must(t, db.SetField(k, fmt.Appendf(nil, "f%d", rng.IntN(3)), fmt.Appendf(nil, "x%d", i)))
		default:
			must(t, db.Incr(k, []byte("n"), rng.Int64N(11)-5))
		}
	}
}

// point is the state of a database at a time.
type point struct {
	at   time.Time
	dump string
}

// mark records db's state now, clear of the timestamps of the writes
// before and after it.
func mark(t testing.TB, db *pluresdb.DB) point {
	time.Sleep(3 * time.Millisecond)
	p := point{time.Now(), dumpAll(t, db)}
	time.Sleep(3 * time.Millisecond)
	return p
}

// TestRestoreAtPointInTime: a chain of a full and two incremental
// backups restores the state of every earlier moment, as a new replica,
// from the base that precedes it and the log the newest backup carries.
func TestRestoreAtPointInTime(t *testing.T) {
	fs := vfs.NewMem()
	db, err := pluresdb.Open("/db", &pluresdb.Options{FS: fs, MemtableSize: 1 << 20, NoSync: true})
	must(t, err)
	defer db.Close()
	rng := rand.New(rand.NewPCG(3, 4))

	var points []point
	backups := []string{}
	for phase := range 7 {
		randomWrites(t, rng, db, 400)
		if phase%2 == 0 {
			must(t, db.Flush())
		}
		points = append(points, mark(t, db))
		switch phase {
		case 1:
			_, err = Create(db, "/bk/full", &Options{FS: fs})
			backups = append(backups, "/bk/full")
		case 3, 5:
			dir := fmt.Sprintf("/bk/inc%d", phase)
			_, err = Create(db, dir, &Options{FS: fs, Since: backups[len(backups)-1]})
			backups = append(backups, dir)
		}
		must(t, err)
	}
	newest := backups[len(backups)-1]
	m, err := ReadManifest(fs, newest)
	must(t, err)

	for i, p := range points {
		target := fmt.Sprintf("/restored/p%d", i)
		_, err := Restore(newest, target, &Options{FS: fs, At: p.at})
		if p.at.After(m.Time) {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("point %d, after the backup: %v, want ErrRefused", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("point %d: %v", i, err)
		}
		got, rdb := openDump(t, fs, target)
		if rdb.ReplicaID() == db.ReplicaID() {
			t.Fatalf("point %d: restored as the same replica", i)
		}
		must(t, rdb.Close())
		if got != p.dump {
			t.Fatalf("point %d: restored state differs\ngot:\n%s\nwant:\n%s", i, got, p.dump)
		}
	}
	if _, err := Restore(newest, "/restored/same", &Options{FS: fs, At: points[0].at, SameReplica: true}); !errors.Is(err, ErrRefused) {
		t.Fatalf("point in time as the same replica: %v, want ErrRefused", err)
	}
	if names, _ := fs.List("/restored"); slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, ".") }) {
		t.Fatalf("temporary directories left: %v", names)
	}
}

// bulkStream is a change stream of a peer's n writes, large enough that
// importing it writes tables directly (an ingest).
func bulkStream(t testing.TB, n int) []byte {
	t.Helper()
	fs := vfs.NewMem()
	peer, err := pluresdb.Open("/peer", &pluresdb.Options{FS: fs, NoSync: true})
	must(t, err)
	defer peer.Close()
	for i := range n {
		must(t, peer.Put(fmt.Appendf(nil, "bulk%06d", i), bytes.Repeat([]byte{'b'}, 100)))
	}
	var buf bytes.Buffer
	_, err = peer.ExportChanges(&buf, nil)
	must(t, err)
	return buf.Bytes()
}

// TestFollow: a follower ships each sealed segment; restored (as the
// same replica, as a new one, and to a point in time) it holds what the
// database held when its last shipped segment sealed, a bulk import's
// tables included, and it resumes where it stopped.
func TestFollow(t *testing.T) {
	fs := vfs.NewMem()
	db, err := pluresdb.Open("/db", &pluresdb.Options{FS: fs, MemtableSize: 1 << 20, NoSync: true})
	must(t, err)
	defer db.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	randomWrites(t, rng, db, 500)
	_, err = Create(db, "/bk/full", &Options{FS: fs})
	must(t, err)

	randomWrites(t, rng, db, 500)
	before := db.Metrics().IngestedTables
	_, err = db.ImportChanges(bytes.NewReader(bulkStream(t, 8000)))
	must(t, err)
	if db.Metrics().IngestedTables == before {
		t.Fatal("the import was not a bulk one")
	}
	mid := mark(t, db)
	randomWrites(t, rng, db, 300)
	must(t, db.Flush()) // seals the live segment
	want1 := dumpAll(t, db)

	var shipped []Shipment
	opts := &FollowOptions{FS: fs, Once: true, Shipped: func(s Shipment) { shipped = append(shipped, s) }}
	m, err := Follow(context.Background(), "/db", "/bk/full", "/bk/follow", opts)
	must(t, err)
	if len(shipped) == 0 || !m.Follow || m.Shipped == 0 {
		t.Fatalf("nothing shipped: %+v %+v", shipped, m)
	}
	if rep, err := Verify("/bk/follow", &Options{FS: fs}); err != nil {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	check := func(what, dir string, opts *Options, want string) {
		t.Helper()
		if _, err := Restore("/bk/follow", dir, opts); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got, rdb := openDump(t, fs, dir)
		must(t, rdb.Close())
		if got != want {
			t.Fatalf("%s: restored state differs (%d bytes, want %d)", what, len(got), len(want))
		}
	}
	check("same replica", "/r/same1", &Options{FS: fs, SameReplica: true}, want1)
	check("new replica", "/r/new1", &Options{FS: fs}, want1)
	check("point in time", "/r/at1", &Options{FS: fs, At: mid.at}, mid.dump)

	// Nothing new sealed: nothing shipped.
	shipped = nil
	_, err = Follow(context.Background(), "/db", "/bk/full", "/bk/follow", opts)
	must(t, err)
	if len(shipped) != 0 {
		t.Fatalf("shipped %v again", shipped)
	}
	// More, then resume.
	randomWrites(t, rng, db, 300)
	must(t, db.Flush())
	want2 := dumpAll(t, db)
	_, err = Follow(context.Background(), "/db", "/bk/full", "/bk/follow", opts)
	must(t, err)
	if len(shipped) == 0 {
		t.Fatal("nothing shipped on resume")
	}
	check("same replica, resumed", "/r/same2", &Options{FS: fs, SameReplica: true}, want2)

	// A follower of another database's backup is refused.
	other, err := pluresdb.Open("/other", &pluresdb.Options{FS: fs, NoSync: true})
	must(t, err)
	must(t, other.Close())
	if _, err := Follow(context.Background(), "/other", "/bk/full", "/bk/f2", opts); !errors.Is(err, ErrRefused) {
		t.Fatalf("follow another replica: %v, want ErrRefused", err)
	}
	// A follower is not a base.
	if _, err := Follow(context.Background(), "/db", "/bk/follow", "/bk/f3", opts); !errors.Is(err, ErrRefused) {
		t.Fatalf("follow a follower: %v, want ErrRefused", err)
	}

	// A sealed segment that leaves before it is shipped stops the
	// follower, loudly, and what it holds stays restorable.
	randomWrites(t, rng, db, 300)
	must(t, db.Flush())
	randomWrites(t, rng, db, 10)
	must(t, db.Close())
	nums, err := wal.List(fs, "/db")
	must(t, err)
	slices.Sort(nums)
	gone := nums[len(nums)-2]
	must(t, fs.Remove(layout.Path("/db", layout.TypeLog, gone)))
	if _, err := Follow(context.Background(), "/db", "/bk/full", "/bk/follow", opts); !errors.Is(err, ErrFollowGap) {
		t.Fatalf("follow past a missing segment: %v, want ErrFollowGap", err)
	}
	check("same replica, after the gap", path.Join("/r", "same3"), &Options{FS: fs, SameReplica: true}, want2)
}

// TestFollowAcrossRejoin: a replica restored in place from a backup, and
// rejoined (its own later operations taken back from a peer past a
// sequence jump), is followed from that same backup without a false gap.
func TestFollowAcrossRejoin(t *testing.T) {
	fs := vfs.NewMem()
	opts := &pluresdb.Options{FS: fs, MemtableSize: 1 << 20, NoSync: true}
	a, err := pluresdb.Open("/a", opts)
	must(t, err)
	rng := rand.New(rand.NewPCG(9, 10))
	randomWrites(t, rng, a, 300)
	_, err = Create(a, "/bk/full", &Options{FS: fs})
	must(t, err)
	randomWrites(t, rng, a, 300) // lost with a, held by b
	b, err := pluresdb.Open("/b", opts)
	must(t, err)
	defer b.Close()
	var buf bytes.Buffer
	_, err = a.ExportChanges(&buf, nil)
	must(t, err)
	_, err = b.ImportChanges(&buf)
	must(t, err)
	must(t, a.Close())

	_, err = Restore("/bk/full", "/r", &Options{FS: fs, SameReplica: true})
	must(t, err)
	r, err := pluresdb.Open("/r", opts)
	must(t, err)
	defer r.Close()
	buf.Reset()
	_, err = b.ExportChanges(&buf, r.VersionVector())
	must(t, err)
	_, err = r.ImportChanges(&buf)
	must(t, err)
	must(t, r.FinishRejoin())
	randomWrites(t, rng, r, 300)
	must(t, r.Flush())
	want := dumpAll(t, r)

	if _, err := Follow(context.Background(), "/r", "/bk/full", "/bk/follow", &FollowOptions{FS: fs, Once: true}); err != nil {
		t.Fatalf("follow across the rejoin: %v", err)
	}
	_, err = Restore("/bk/follow", "/r2", &Options{FS: fs})
	must(t, err)
	got, rdb := openDump(t, fs, "/r2")
	must(t, rdb.Close())
	if got != want {
		t.Fatalf("restored follower differs (%d bytes, want %d)", len(got), len(want))
	}
}

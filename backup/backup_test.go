package backup

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/oplog"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func scanAll(t testing.TB, db *pluresdb.DB) map[string]string {
	t.Helper()
	it := db.NewIter(nil, nil)
	out := map[string]string{}
	for ok := it.First(); ok; ok = it.Next() {
		out[string(it.Key())] = string(it.Value())
	}
	must(t, it.Close())
	return out
}

// restoreAndScan restores dir into target and scans the result.
func restoreAndScan(t testing.TB, fs vfs.FS, dir, target string) (map[string]string, oplog.VersionVector, oplog.ReplicaID) {
	t.Helper()
	if _, err := Restore(dir, target, &Options{FS: fs, SameReplica: true}); err != nil {
		t.Fatalf("restore %s: %v", dir, err)
	}
	db, err := pluresdb.Open(target, &pluresdb.Options{FS: fs})
	if err != nil {
		t.Fatalf("open restored %s: %v", target, err)
	}
	defer db.Close()
	return scanAll(t, db), db.VersionVector(), db.ReplicaID()
}

func write(t testing.TB, db *pluresdb.DB, prefix string, n int) {
	t.Helper()
	for i := range n {
		must(t, db.Put(fmt.Appendf(nil, "%s%06d", prefix, i), fmt.Appendf(nil, "%s value %d %s", prefix, i, strings.Repeat("x", i%200))))
	}
}

func TestFullBackupRestore(t *testing.T) {
	fs := vfs.NewMem()
	db, err := pluresdb.Open("/db", &pluresdb.Options{FS: fs, MemtableSize: 1 << 20, NoSync: true})
	must(t, err)
	defer db.Close()
	write(t, db, "a", 5000)
	must(t, db.Flush())
	write(t, db, "b", 300) // in the log only
	must(t, db.Delete([]byte("a000007")))
	want := scanAll(t, db)
	wantVV := db.VersionVector()

	var progress []int64
	m, err := Create(db, "/backups/full", &Options{FS: fs, Progress: func(done, total int64) { progress = append(progress, done) }})
	must(t, err)
	if !m.Full() || m.Replica != db.ReplicaID() || !m.VersionVector.Equal(wantVV) {
		t.Fatalf("manifest %+v", m)
	}
	if len(progress) == 0 {
		t.Fatal("no progress reported")
	}
	// Later writes are not in the backup.
	write(t, db, "c", 100)

	rep, err := Verify("/backups/full", &Options{FS: fs})
	must(t, err)
	if rep.Files != len(m.Files) || len(rep.Chain) != 1 {
		t.Fatalf("verify report %+v", rep)
	}
	got, vv, id := restoreAndScan(t, fs, "/backups/full", "/restored")
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("restored scan differs: %d keys, want %d", len(got), len(want))
	}
	if id != db.ReplicaID() || !vv.Equal(wantVV) {
		t.Fatalf("restored replica %s vv %v, want %s %v", id, vv, db.ReplicaID(), wantVV)
	}
	// The staging checkpoint is gone from the database's directory.
	names, _ := fs.List("/db")
	for _, n := range names {
		if strings.Contains(n, "staging") {
			t.Fatalf("staging left in the database directory: %s", n)
		}
	}
}

// TestIncrementalChain: a full backup and two incremental ones, with
// flushes, compactions and a growing log segment between them; each
// restores to the database as it was.
func TestIncrementalChain(t *testing.T) {
	fs := vfs.NewMem()
	db, err := pluresdb.Open("/db", &pluresdb.Options{FS: fs, MemtableSize: 1 << 20, NoSync: true})
	must(t, err)
	defer db.Close()

	write(t, db, "a", 4000)
	must(t, db.Flush())
	write(t, db, "live", 50)
	wants := []map[string]string{scanAll(t, db)}
	full, err := Create(db, "/b/0-full", &Options{FS: fs})
	must(t, err)

	// Only the live segment grows: the first incremental stores its tail.
	for i := range 40 {
		must(t, db.Put(fmt.Appendf(nil, "live%06d", i), []byte("rewritten")))
	}
	wants = append(wants, scanAll(t, db))
	inc1, err := Create(db, "/b/1-inc", &Options{FS: fs, Since: "/b/0-full"})
	must(t, err)
	if inc1.Parent != full.ID {
		t.Fatalf("parent %s, want %s", inc1.Parent, full.ID)
	}
	var tail bool
	for _, f := range inc1.Files {
		if strings.HasSuffix(f.Name, ".log") && f.Base > 0 && f.Stored() > 0 {
			tail = true
		}
		if strings.HasSuffix(f.Name, ".sst") && f.Stored() != 0 {
			t.Fatalf("incremental stores unchanged table %s", f.Name)
		}
	}
	if !tail {
		t.Fatalf("the grown log segment was not stored as a tail: %+v", inc1.Files)
	}
	if inc1.StoredBytes()*10 > full.StoredBytes() {
		t.Fatalf("incremental stores %d bytes, the full one %d", inc1.StoredBytes(), full.StoredBytes())
	}

	// New tables, a compaction, deletions.
	write(t, db, "b", 3000)
	for i := range 100 {
		must(t, db.Delete(fmt.Appendf(nil, "a%06d", i)))
	}
	must(t, db.Compact(nil, nil))
	write(t, db, "c", 20)
	wants = append(wants, scanAll(t, db))
	_, err = Create(db, "/b/2-inc", &Options{FS: fs, Since: "/b/1-inc"})
	must(t, err)

	for i, dir := range []string{"/b/0-full", "/b/1-inc", "/b/2-inc"} {
		rep, err := Verify(dir, &Options{FS: fs})
		must(t, err)
		if len(rep.Chain) != i+1 {
			t.Fatalf("%s: chain of %d, want %d", dir, len(rep.Chain), i+1)
		}
		got, _, _ := restoreAndScan(t, fs, dir, fmt.Sprintf("/r%d", i))
		if !reflect.DeepEqual(got, wants[i]) {
			t.Fatalf("%s restores %d keys, want %d", dir, len(got), len(wants[i]))
		}
	}
	listed, err := List("/b", &Options{FS: fs})
	must(t, err)
	if len(listed) != 3 || listed[0].Manifest.ID != full.ID || listed[2].Manifest.Parent != inc1.ID {
		t.Fatalf("list: %+v", listed)
	}

	// A chain moved elsewhere together still resolves (parents are looked
	// for beside the backup too).
	for _, n := range []string{"0-full", "1-inc", "2-inc"} {
		must(t, copyTree(fs, "/b/"+n, "/moved/x/"+n))
	}
	_, err = Verify("/moved/x/2-inc", &Options{FS: fs})
	must(t, err)

	// A missing parent breaks the chain, clearly.
	must(t, vfs.RemoveAll(fs, "/moved/x/0-full"))
	if _, err := Verify("/moved/x/2-inc", &Options{FS: fs}); !errors.Is(err, pluresdb.ErrCorruption) || !strings.Contains(err.Error(), "chain incomplete") {
		t.Fatalf("verify of a broken chain: %v", err)
	}
	if _, err := Restore("/moved/x/2-inc", "/r-broken", &Options{FS: fs, SameReplica: true}); !errors.Is(err, pluresdb.ErrCorruption) {
		t.Fatalf("restore of a broken chain: %v", err)
	}
	if _, err := fs.Stat("/r-broken"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed restore left its target: %v", err)
	}
}

func copyTree(fs vfs.FS, src, dst string) error {
	if err := fs.MkdirAll(dst); err != nil {
		return err
	}
	names, err := fs.List(src)
	if err != nil {
		return err
	}
	for _, n := range names {
		in, err := fs.Open(filepath.Join(src, n))
		if err != nil {
			return err
		}
		size, _ := in.Size()
		buf := make([]byte, size)
		if _, err := in.ReadAt(buf, 0); err != nil && size > 0 {
			return err
		}
		in.Close()
		if err := vfs.WriteFileAtomic(fs, filepath.Join(dst, n+".tmp"), filepath.Join(dst, n), buf); err != nil {
			return err
		}
	}
	return nil
}

// flipBit flips one bit in the middle of name.
func flipBit(t *testing.T, fs vfs.FS, name string) {
	t.Helper()
	f, err := fs.OpenReadWrite(name)
	must(t, err)
	defer f.Close()
	size, err := f.Size()
	must(t, err)
	b := make([]byte, 1)
	_, err = f.ReadAt(b, size/2)
	must(t, err)
	b[0] ^= 0x10
	buf := make([]byte, size)
	_, err = f.ReadAt(buf, 0)
	must(t, err)
	buf[size/2] = b[0]
	must(t, f.Truncate(0))
	_, err = f.Write(buf)
	must(t, err)
	must(t, f.Sync())
}

func TestVerifyDetectsDamage(t *testing.T) {
	fs := vfs.NewMem()
	db, err := pluresdb.Open("/db", &pluresdb.Options{FS: fs, MemtableSize: 1 << 20, NoSync: true})
	must(t, err)
	defer db.Close()
	write(t, db, "a", 3000)
	must(t, db.Flush())
	write(t, db, "b", 10)
	m, err := Create(db, "/bk", &Options{FS: fs})
	must(t, err)
	var table, log string
	for _, f := range m.Files {
		switch {
		case strings.HasSuffix(f.Name, ".sst") && table == "":
			table = f.Name
		case strings.HasSuffix(f.Name, ".log"):
			log = f.Name
		}
	}
	if table == "" || log == "" {
		t.Fatalf("backup lacks a table or a log: %+v", m.Files)
	}

	flipBit(t, fs, "/bk/"+table)
	_, err = Verify("/bk", &Options{FS: fs})
	if !errors.Is(err, pluresdb.ErrCorruption) || !strings.Contains(err.Error(), table) {
		t.Fatalf("verify after a flipped bit in %s: %v", table, err)
	}
	if _, err := Restore("/bk", "/r", &Options{FS: fs, SameReplica: true}); !errors.Is(err, pluresdb.ErrCorruption) || !strings.Contains(err.Error(), table) {
		t.Fatalf("restore after a flipped bit: %v", err)
	}
	if _, err := fs.Stat("/r"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a failed restore left its target")
	}

	must(t, fs.Remove("/bk/"+log))
	rep, err := Verify("/bk", &Options{FS: fs})
	if !errors.Is(err, pluresdb.ErrCorruption) || !strings.Contains(err.Error(), log) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("verify of a backup missing %s: %v", log, err)
	}
	if len(rep.Problems) != 2 {
		t.Fatalf("want both problems reported, got %v", rep.Problems)
	}

	// A damaged manifest.
	flipBit(t, fs, "/bk/"+ManifestName)
	if _, err := Verify("/bk", &Options{FS: fs}); !errors.Is(err, pluresdb.ErrCorruption) || !strings.Contains(err.Error(), ManifestName) {
		t.Fatalf("verify with a damaged manifest: %v", err)
	}
	listed, err := List("/", &Options{FS: fs})
	must(t, err)
	if len(listed) != 1 || listed[0].Err == nil {
		t.Fatalf("list of a damaged backup: %+v", listed)
	}
}

func TestRestoreRefusals(t *testing.T) {
	fs := vfs.NewMem()
	db, err := pluresdb.Open("/db", &pluresdb.Options{FS: fs, NoSync: true})
	must(t, err)
	defer db.Close()
	write(t, db, "a", 10)
	_, err = Create(db, "/bk", &Options{FS: fs})
	must(t, err)

	must(t, fs.MkdirAll("/r"))
	must(t, vfs.WriteFileAtomic(fs, "/r/x.tmp", "/r/x", []byte("keep me")))
	for _, same := range []bool{true, false} {
		if _, err := Restore("/bk", "/r", &Options{FS: fs, SameReplica: same}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "not empty") {
			t.Fatalf("restore (same replica %v) into a non-empty directory: %v", same, err)
		}
	}
	if fi, err := fs.Stat("/r/x"); err != nil || fi.Size() != 7 {
		t.Fatal("the non-empty target was touched")
	}
	if _, err := Create(db, "/r", &Options{FS: fs}); !errors.Is(err, ErrRefused) {
		t.Fatalf("backup into a non-empty directory: %v", err)
	}
	// An empty directory is a fine target.
	must(t, fs.MkdirAll("/empty"))
	_, err = Restore("/bk", "/empty", &Options{FS: fs, SameReplica: true})
	must(t, err)

	// An incremental backup of another replica is refused.
	other, err := pluresdb.Open("/other", &pluresdb.Options{FS: fs, NoSync: true})
	must(t, err)
	defer other.Close()
	if _, err := Create(other, "/inc", &Options{FS: fs, Since: "/bk"}); !errors.Is(err, ErrRefused) {
		t.Fatalf("incremental backup on another replica's: %v", err)
	}
	if _, err := Verify("/db", &Options{FS: fs}); !errors.Is(err, ErrNotBackup) {
		t.Fatalf("verify of a database directory: %v", err)
	}
}

// TestBackupOSFS runs a full and an incremental backup on the operating
// system's filesystem, where the staging checkpoint is hard-linked.
func TestBackupOSFS(t *testing.T) {
	root := t.TempDir()
	db, err := pluresdb.Open(filepath.Join(root, "db"), &pluresdb.Options{MemtableSize: 1 << 20, NoSync: true})
	must(t, err)
	defer db.Close()
	write(t, db, "a", 3000)
	must(t, db.Flush())
	want0 := scanAll(t, db)
	_, err = Create(db, filepath.Join(root, "bk", "full"), nil)
	must(t, err)
	write(t, db, "b", 500)
	want1 := scanAll(t, db)
	_, err = Create(db, filepath.Join(root, "bk", "inc"), &Options{Since: filepath.Join(root, "bk", "full")})
	must(t, err)
	for dir, want := range map[string]map[string]string{"full": want0, "inc": want1} {
		got, _, _ := restoreAndScan(t, vfs.Default, filepath.Join(root, "bk", dir), filepath.Join(root, "r-"+dir))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: restored %d keys, want %d", dir, len(got), len(want))
		}
	}
}

func TestManifestRoundTrip(t *testing.T) {
	m := &Manifest{ID: newID(), Parent: newID(), ParentPath: "../full", Replica: oplog.NewReplicaID(),
		Time: time.Unix(0, 1700000000123456789), LastSeq: 42,
		VersionVector: oplog.VersionVector{oplog.NewReplicaID(): 7},
		Files:         []File{{Name: "000004.sst", Size: 100, Sum: 1, Base: 100}, {Name: "000005.log", Size: 50, Sum: 2, Base: 10, StoredSum: 3}, {Name: "REPLICA", Size: 37, Sum: 4, StoredSum: 4}}}
	b := m.Encode()
	got, err := DecodeManifest(b, "BACKUP")
	must(t, err)
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip: %+v, want %+v", got, m)
	}
	// Every truncation and every flipped bit is refused as corruption.
	for i := range len(b) {
		if _, err := DecodeManifest(b[:i], "BACKUP"); !errors.Is(err, pluresdb.ErrCorruption) {
			t.Fatalf("truncated to %d: %v", i, err)
		}
	}
	for i := range len(b) * 8 {
		c := append([]byte(nil), b...)
		c[i/8] ^= 1 << (i % 8)
		if _, err := DecodeManifest(c, "BACKUP"); err == nil {
			t.Fatalf("bit %d flipped: accepted", i)
		}
	}
	// A follower's fields round-trip too.
	f := *m
	f.Follow, f.Shipped = true, 12
	got, err = DecodeManifest(f.Encode(), "BACKUP")
	must(t, err)
	if !reflect.DeepEqual(got, &f) {
		t.Fatalf("follower round trip: %+v, want %+v", got, &f)
	}
	// A version 1 manifest (no flags) still reads.
	body := b[len(manifestMagic)+1 : len(b)-8]
	n, k := binary.Uvarint(body)
	v1 := append([]byte(manifestMagic), 1)
	v1 = binary.AppendUvarint(v1, n-2)
	v1 = append(v1, body[k:len(body)-2]...)
	v1 = binary.LittleEndian.AppendUint64(v1, xxhash.Sum64(v1))
	got, err = DecodeManifest(v1, "BACKUP")
	must(t, err)
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("version 1: %+v, want %+v", got, m)
	}
	newer := append([]byte(nil), b...)
	newer[len(manifestMagic)] = manifestVersion + 1
	if _, err := DecodeManifest(newer, "BACKUP"); !errors.Is(err, pluresdb.ErrNewerFormat) {
		t.Fatalf("newer version: %v", err)
	}
}

// TestRestoreAsNewReplica: by default a restore makes a new replica that
// holds the backed-up state, runs beside the source, and converges with
// it by sync, each side's later writes included; nothing temporary is
// left beside the target.
func TestRestoreAsNewReplica(t *testing.T) {
	fs := vfs.NewMem()
	src, err := pluresdb.Open("/db", &pluresdb.Options{FS: fs, NoSync: true})
	must(t, err)
	defer src.Close()
	write(t, src, "a", 200)
	must(t, src.SetField([]byte("doc"), []byte("f"), []byte("v")))
	must(t, src.Incr([]byte("doc"), []byte("n"), 3))
	_, err = Create(src, "/bk", &Options{FS: fs})
	must(t, err)
	write(t, src, "after-backup", 20)

	m, err := Restore("/bk", "/new", &Options{FS: fs})
	must(t, err)
	dst, err := pluresdb.Open("/new", &pluresdb.Options{FS: fs, NoSync: true})
	must(t, err)
	defer dst.Close()
	if dst.ReplicaID() == src.ReplicaID() || dst.ReplicaID() == m.Replica {
		t.Fatal("a default restore kept the source's replica ID")
	}
	if dst.Rejoining() {
		t.Fatal("a new replica is rejoining")
	}
	if d, err := dst.GetFields([]byte("doc")); err != nil || string(d.Fields["f"]) != "v" || d.Counters["n"] != 3 {
		t.Fatalf("restored doc: %+v, %v", d, err)
	}
	must(t, dst.Put([]byte("from-new"), []byte("x")))
	for range 2 {
		for _, p := range [][2]*pluresdb.DB{{src, dst}, {dst, src}} {
			var buf bytes.Buffer
			_, err := p[0].ExportChanges(&buf, p[1].VersionVector())
			must(t, err)
			_, err = p[1].ImportChanges(&buf)
			must(t, err)
		}
	}
	if a, b := scanAll(t, src), scanAll(t, dst); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("source (%d keys) and new replica (%d keys) differ after sync", len(a), len(b))
	}
	if d, err := dst.GetFields([]byte("doc")); err != nil || d.Counters["n"] != 3 {
		t.Fatalf("counter after sync: %+v, %v (counted twice?)", d, err)
	}
	names, err := fs.List("/")
	must(t, err)
	for _, n := range names {
		if strings.HasPrefix(n, ".new.") {
			t.Fatalf("restore left %s beside the target", n)
		}
	}
}

// TestRestoreSameReplicaRejoins: a replica restored in place refuses
// local writes until it has its later operations back from a peer and
// the rejoin is finished; then the two converge.
func TestRestoreSameReplicaRejoins(t *testing.T) {
	fs := vfs.NewMem()
	opts := &pluresdb.Options{FS: fs, NoSync: true}
	src, err := pluresdb.Open("/db", opts)
	must(t, err)
	peer, err := pluresdb.Open("/peer", opts)
	must(t, err)
	defer peer.Close()
	write(t, src, "a", 100)
	_, err = Create(src, "/bk", &Options{FS: fs})
	must(t, err)
	write(t, src, "after-backup", 20)
	sync := func(from, to *pluresdb.DB) int {
		t.Helper()
		var buf bytes.Buffer
		_, err := from.ExportChanges(&buf, to.VersionVector())
		must(t, err)
		n, err := to.ImportChanges(&buf)
		must(t, err)
		return n
	}
	sync(src, peer)
	held := peer.VersionVector()[src.ReplicaID()]
	must(t, src.Close())

	if _, err := Restore("/bk", "/r", &Options{FS: fs, SameReplica: true}); err != nil {
		t.Fatal(err)
	}
	r, err := pluresdb.Open("/r", opts)
	must(t, err)
	defer r.Close()
	if !r.Rejoining() || r.Health().Writable {
		t.Fatalf("restored in place: rejoining %v, health %+v", r.Rejoining(), r.Health())
	}
	if err := r.Put([]byte("x"), []byte("y")); !errors.Is(err, pluresdb.ErrRejoining) {
		t.Fatalf("write after an in-place restore: %v, want ErrRejoining", err)
	}
	if n := sync(peer, r); n != 20 {
		t.Fatalf("the import brought %d operations back, want 20", n)
	}
	must(t, r.FinishRejoin())
	must(t, r.Put([]byte("x"), []byte("y")))
	if got := r.VersionVector()[r.ReplicaID()]; got <= held {
		t.Fatalf("first write after the rejoin at %d, the peer holds the replica's operations up to %d", got, held)
	}
	sync(r, peer)
	if a, b := scanAll(t, r), scanAll(t, peer); fmt.Sprint(a) != fmt.Sprint(b) || len(a) != 121 {
		t.Fatalf("restored (%d keys) and peer (%d keys) differ", len(a), len(b))
	}
}

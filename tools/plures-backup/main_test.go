package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/backup"
)

func runTool(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func expect(t *testing.T, want int, args ...string) string {
	t.Helper()
	code, out, errOut := runTool(t, args...)
	if code != want {
		t.Fatalf("%v: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, want, out, errOut)
	}
	return out + errOut
}

func TestExitCodes(t *testing.T) {
	root := t.TempDir()
	dbDir := filepath.Join(root, "db")
	db, err := pluresdb.Open(dbDir, &pluresdb.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		if err := db.Put(fmt.Appendf(nil, "k%05d", i), fmt.Appendf(nil, "v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}

	full, inc := filepath.Join(root, "bk", "full"), filepath.Join(root, "bk", "inc")
	// The database is open here: the tool is refused the lock.
	if out := expect(t, exitDamage, "create", "--db", dbDir, full); !strings.Contains(out, "another process") {
		t.Fatalf("locked database: %s", out)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Usage errors.
	expect(t, exitFailure)
	expect(t, exitFailure, "frobnicate")
	expect(t, exitFailure, "create", full)
	expect(t, exitFailure, "create", "--db", dbDir)
	expect(t, exitFailure, "create", "--db", dbDir, "--bogus", full)
	expect(t, exitFailure, "restore", "--same-replica", full)
	expect(t, exitOK, "help")
	// I/O errors: no such directory, no database.
	expect(t, exitFailure, "verify", filepath.Join(root, "nope"))
	expect(t, exitFailure, "create", "--db", filepath.Join(root, "nope"), full)

	out := expect(t, exitOK, "create", "--json", "--db", dbDir, full)
	var m manifestJSON
	if err := json.Unmarshal([]byte(out), &m); err != nil || !m.Full || m.Files == 0 {
		t.Fatalf("create --json: %v %+v\n%s", err, m, out)
	}
	db, err = pluresdb.Open(dbDir, &pluresdb.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := db.Put(fmt.Appendf(nil, "new%03d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{}
	it := db.NewIter(nil, nil)
	for ok := it.First(); ok; ok = it.Next() {
		want[string(it.Key())] = string(it.Value())
	}
	it.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	expect(t, exitOK, "create", "--db", dbDir, "--since", full, inc)
	// Into an existing, non-empty directory: refused.
	expect(t, exitDamage, "create", "--db", dbDir, full)

	out = expect(t, exitOK, "list", "--json", filepath.Join(root, "bk"))
	var listed []manifestJSON
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed) != 2 || listed[1].Parent != listed[0].ID {
		t.Fatalf("list --json: %v %+v", err, listed)
	}
	expect(t, exitOK, "verify", inc)
	out = expect(t, exitOK, "verify", "--json", inc)
	var vr struct {
		OK    bool `json:"ok"`
		Files int  `json:"files"`
	}
	if err := json.Unmarshal([]byte(out), &vr); err != nil || !vr.OK || vr.Files == 0 {
		t.Fatalf("verify --json: %v %s", err, out)
	}
	// Not a backup.
	expect(t, exitDamage, "verify", dbDir)

	// Restore: as a new replica by default, as the same one with
	// --same-replica; refused into a non-empty directory.
	newTarget := filepath.Join(root, "new-replica")
	if out := expect(t, exitOK, "restore", inc, newTarget); !strings.Contains(out, "as the new replica") {
		t.Fatalf("restore as a new replica: %s", out)
	}
	target := filepath.Join(root, "restored")
	expect(t, exitOK, "restore", "--same-replica", inc, target)
	expect(t, exitDamage, "restore", "--same-replica", inc, target)
	rdb, err := pluresdb.Open(target, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	it = rdb.NewIter(nil, nil)
	for ok := it.First(); ok; ok = it.Next() {
		got[string(it.Key())] = string(it.Value())
	}
	it.Close()
	rdb.Close()
	if len(got) != len(want) {
		t.Fatalf("restored %d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("restored %q = %q, want %q", k, got[k], v)
		}
	}

	// Damage: a flipped bit in a stored table.
	names, _ := os.ReadDir(full)
	var table string
	for _, n := range names {
		if strings.HasSuffix(n.Name(), ".sst") {
			table = filepath.Join(full, n.Name())
			break
		}
	}
	b, err := os.ReadFile(table)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(table, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := expect(t, exitDamage, "verify", inc); !strings.Contains(out, filepath.Base(table)) {
		t.Fatalf("verify names no file: %s", out)
	}
	out = expect(t, exitDamage, "verify", "--json", full)
	if err := json.Unmarshal([]byte(out), &vr); err != nil || vr.OK {
		t.Fatalf("verify --json of a damaged backup: %v %s", err, out)
	}
	expect(t, exitDamage, "restore", "--same-replica", full, filepath.Join(root, "r2"))
}

// TestRestoreSameReplicaWithPeers: restore --same-replica --peer takes the
// replica's later operations back from its peers, says how many came from
// each, and finishes the rejoin; without --peer the database stays
// rejoining until rejoin-finish.
func TestRestoreSameReplicaWithPeers(t *testing.T) {
	root := t.TempDir()
	dbDir, peerDir, otherDir := filepath.Join(root, "db"), filepath.Join(root, "peer"), filepath.Join(root, "other")
	open := func(dir string) *pluresdb.DB {
		t.Helper()
		db, err := pluresdb.Open(dir, &pluresdb.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	sync := func(from, to *pluresdb.DB) {
		t.Helper()
		var buf bytes.Buffer
		if _, err := from.ExportChanges(&buf, to.VersionVector()); err != nil {
			t.Fatal(err)
		}
		if _, err := to.ImportChanges(&buf); err != nil {
			t.Fatal(err)
		}
	}
	put := func(db *pluresdb.DB, prefix string, n int) {
		t.Helper()
		for i := range n {
			if err := db.Put(fmt.Appendf(nil, "%s%03d", prefix, i), []byte(prefix)); err != nil {
				t.Fatal(err)
			}
		}
	}
	db := open(dbDir)
	put(db, "before", 50)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	bk := filepath.Join(root, "bk")
	expect(t, exitOK, "create", "--db", dbDir, bk)
	db, peer, other := open(dbDir), open(peerDir), open(otherDir)
	put(db, "after", 30)
	put(peer, "peer", 7)
	sync(db, peer) // peer holds 30 of db's later operations
	put(db, "late", 5)
	sync(db, other) // other holds all 35, and none of peer's
	put(other, "other", 3)
	self := db.ReplicaID()
	want := other.VersionVector()[self]
	for _, d := range []*pluresdb.DB{db, peer, other} {
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}

	expect(t, exitFailure, "restore", "--peer", peerDir, bk, filepath.Join(root, "no-same"))
	target := filepath.Join(root, "restored")
	out := expect(t, exitOK, "restore", "--same-replica", "--json", "--peer", peerDir, "--peer", otherDir, bk, target)
	var res struct {
		Rejoining bool `json:"rejoining"`
		Peers     []struct {
			Dir    string `json:"dir"`
			Own    int    `json:"own_ops"`
			Others int    `json:"other_ops"`
			OwnTo  uint64 `json:"own_to"`
		} `json:"peers"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("restore --json: %v\n%s", err, out)
	}
	if res.Rejoining || len(res.Peers) != 2 ||
		res.Peers[0].Own != 30 || res.Peers[0].Others != 7 ||
		res.Peers[1].Own != 5 || res.Peers[1].Others != 3 || res.Peers[1].OwnTo != want {
		t.Fatalf("restore --peer: %+v (own operations up to %d wanted)\n%s", res, want, out)
	}
	r := open(target)
	if r.Rejoining() {
		t.Fatal("still rejoining after restore --peer")
	}
	if err := r.Put([]byte("new"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if got := r.VersionVector()[self]; got <= want {
		t.Fatalf("first write after the rejoin at %d, peers hold up to %d", got, want)
	}
	n := 0
	it := r.NewIter(nil, nil)
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	it.Close()
	if n != 50+30+5+7+3+1 {
		t.Fatalf("restored database holds %d keys, want %d", n, 50+30+5+7+3+1)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	// Without --peer: rejoining, and the output says how to finish.
	target2 := filepath.Join(root, "restored2")
	if out := expect(t, exitOK, "restore", "--same-replica", bk, target2); !strings.Contains(out, "rejoin-finish "+target2) {
		t.Fatalf("restore --same-replica without --peer: %s", out)
	}
	r = open(target2)
	if err := r.Put([]byte("x"), []byte("y")); !errors.Is(err, pluresdb.ErrRejoining) {
		t.Fatalf("write while rejoining: %v", err)
	}
	peer = open(peerDir)
	sync(peer, r)
	peer.Close()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	// Finished early (other holds 5 more of the replica's operations):
	// an import from other is refused, not applied under reused numbers.
	out = expect(t, exitOK, "rejoin-finish", "--json", target2)
	if !strings.Contains(out, `"was_rejoining": true`) {
		t.Fatalf("rejoin-finish --json: %s", out)
	}
	if out := expect(t, exitOK, "rejoin-finish", target2); !strings.Contains(out, "not rejoining") {
		t.Fatalf("rejoin-finish again: %s", out)
	}
	r = open(target2)
	defer r.Close()
	other = open(otherDir)
	defer other.Close()
	var buf bytes.Buffer
	if _, err := other.ExportChanges(&buf, r.VersionVector()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ImportChanges(&buf); !errors.Is(err, pluresdb.ErrRewound) {
		t.Fatalf("import from a peer holding more of the replica's operations after rejoin-finish: %v, want ErrRewound", err)
	}
}

// TestFollowAndPointInTime: follow ships the segments an open database
// seals (the tool takes no lock), and restore --at rebuilds an earlier
// state from the follower.
func TestFollowAndPointInTime(t *testing.T) {
	root := t.TempDir()
	dbDir := filepath.Join(root, "db")
	db, err := pluresdb.Open(dbDir, &pluresdb.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	put := func(prefix string, n int) {
		for i := range n {
			if err := db.Put(fmt.Appendf(nil, "%s%04d", prefix, i), fmt.Appendf(nil, "v%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	put("a", 500)
	full := filepath.Join(root, "bk", "full")
	if _, err := backup.Create(db, full, nil); err != nil {
		t.Fatal(err)
	}
	put("b", 500)
	time.Sleep(3 * time.Millisecond)
	mid := time.Now()
	time.Sleep(3 * time.Millisecond)
	put("c", 500)
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}

	follower := filepath.Join(root, "bk", "follow")
	expect(t, exitFailure, "follow", full, follower) // --db missing
	out := expect(t, exitOK, "follow", "--db", dbDir, "--once", "--json", full, follower)
	if !strings.Contains(out, `"segment"`) {
		t.Fatalf("follow --json shipped nothing: %s", out)
	}
	out = expect(t, exitOK, "list", "--json", follower)
	var listed []manifestJSON
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed) != 1 || !listed[0].Follow || listed[0].Shipped == "" {
		t.Fatalf("list --json of a follower: %v %s", err, out)
	}
	expect(t, exitOK, "verify", follower)

	expect(t, exitFailure, "restore", "--at", "yesterday", follower, filepath.Join(root, "x"))
	expect(t, exitFailure, "restore", "--same-replica", "--at", mid.Format(time.RFC3339Nano), follower, filepath.Join(root, "x"))
	expect(t, exitDamage, "restore", "--at", time.Now().Add(time.Hour).Format(time.RFC3339Nano), follower, filepath.Join(root, "x"))
	target := filepath.Join(root, "at-mid")
	if out := expect(t, exitOK, "restore", "--at", mid.Format(time.RFC3339Nano), follower, target); !strings.Contains(out, "as of") {
		t.Fatalf("restore --at: %s", out)
	}
	rdb, err := pluresdb.Open(target, &pluresdb.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	n, prefixes := 0, map[byte]int{}
	it := rdb.NewIter(nil, nil)
	for ok := it.First(); ok; ok = it.Next() {
		n++
		prefixes[it.Key()[0]]++
	}
	it.Close()
	if n != 1000 || prefixes['a'] != 500 || prefixes['b'] != 500 {
		t.Fatalf("restored as of the middle: %d keys %v, want a and b only", n, prefixes)
	}
}

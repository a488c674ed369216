package pluresdb

import (
	"encoding/binary"
	"testing"

	"github.com/plures/pluresdb/internal/vfs"
)

// These measure the per-call cost and allocations of the hot paths; the
// side-by-side comparison with other engines lives in bench/.

func benchDB(b *testing.B) *DB {
	db, err := Open("/db", &Options{FS: vfs.NewMem(), NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

func BenchmarkPut(b *testing.B) {
	db := benchDB(b)
	key := make([]byte, 16)
	val := make([]byte, 100)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(key[8:], uint64(i)*0x9e3779b97f4a7c15)
		if err := db.Put(key, val); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	db := benchDB(b)
	key := make([]byte, 16)
	val := make([]byte, 100)
	const n = 100_000
	for i := range n {
		binary.BigEndian.PutUint64(key[8:], uint64(i))
		db.Put(key, val)
	}
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(key[8:], uint64(i%n))
		if _, err := db.Get(key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIterNext(b *testing.B) {
	db := benchDB(b)
	key := make([]byte, 16)
	val := make([]byte, 100)
	for i := range 100_000 {
		binary.BigEndian.PutUint64(key[8:], uint64(i))
		db.Put(key, val)
	}
	db.Flush()
	it := db.NewIter(nil, nil)
	defer it.Close()
	it.First()
	b.ReportAllocs()
	for b.Loop() {
		if !it.Next() {
			it.First()
		}
	}
}

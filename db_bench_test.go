package pluresdb

import (
	"bytes"
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

// BenchmarkImportChanges applies a change stream of 100,000 puts (random
// 16-byte keys, 100-byte values) to an empty in-memory database; one op
// is one whole import. The rate against other engines' work and the 1M
// ops/s target is bench/'s sync-apply.
func BenchmarkImportChanges(b *testing.B) {
	const n = 100_000
	src := benchDB(b)
	key := make([]byte, 16)
	val := make([]byte, 100)
	batch := src.NewBatch()
	for i := range n {
		binary.BigEndian.PutUint64(key[8:], uint64(i)*0x9e3779b97f4a7c15)
		binary.BigEndian.PutUint64(val, uint64(i))
		batch.Put(key, val)
		if i%1000 == 999 {
			if err := batch.Commit(nil); err != nil {
				b.Fatal(err)
			}
			batch = src.NewBatch()
		}
	}
	var stream bytes.Buffer
	if _, err := src.ExportChanges(&stream, nil); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(stream.Len()))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		db, err := Open("/db", &Options{FS: vfs.NewMem(), NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		got, err := db.ImportChanges(bytes.NewReader(stream.Bytes()))
		if err != nil || got != n {
			b.Fatalf("imported %d of %d: %v", got, n, err)
		}
		b.StopTimer()
		db.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "ops/s")
}

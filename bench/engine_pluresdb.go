//go:build !nopluresdb

package main

// The PluresDB adapter. It lives in its own file, behind the nopluresdb
// build tag, so the harness can still run the other engines (go run
// -tags nopluresdb .) while the engine itself does not build.

import (
	"errors"
	"time"

	"github.com/plures/pluresdb"
)

func init() {
	defaultCacheSize = pluresdb.DefaultCacheSize
	registerEngine(engineSpec{
		name: "pluresdb",
		notes: "PluresDB with CacheSize = -cache and NoSync for the fills (synced puts for fillsync); " +
			"single Put per key; settle = Flush + WaitForCompactions.",
		open: openPluresDB,
	})
}

type pluresEngine struct {
	db *pluresdb.DB
}

func openPluresDB(dir string, cfg engineConfig) (engine, error) {
	db, err := pluresdb.Open(dir, &pluresdb.Options{NoSync: !cfg.sync, CacheSize: cfg.cache})
	if err != nil {
		return nil, err
	}
	return &pluresEngine{db: db}, nil
}

func (e *pluresEngine) put(k, v []byte) error { return e.db.Put(k, v) }

func (e *pluresEngine) get(k []byte) ([]byte, error) {
	v, err := e.db.Get(k)
	if errors.Is(err, pluresdb.ErrNotFound) {
		return nil, errNotFound
	}
	return v, err
}

func (e *pluresEngine) scan(fn func(k, v []byte) error) (int, error) {
	it := e.db.NewIter(nil, nil)
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			it.Close()
			return n, err
		}
		n++
	}
	err := it.Err()
	return n, errors.Join(err, it.Close())
}

func (e *pluresEngine) settle() error {
	if err := e.db.Flush(); err != nil {
		return err
	}
	return e.db.WaitForCompactions()
}

func (e *pluresEngine) close() error { return e.db.Close() }

func (e *pluresEngine) writeStalls() (int64, time.Duration) {
	m := e.db.Metrics()
	return int64(m.Stalls), m.StallTime
}

package pluresdb

import (
	"context"
	"fmt"
	"slices"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/verify"
)

// Verify checks the database's files while it runs, as plures-fsck does
// for a closed one (see "Checking a database" in ARCHITECTURE.md): every
// checksum of every table, log segment, archive, vector checkpoint, the
// MANIFEST, CURRENT and REPLICA, and the tables' invariants. It reads a
// fixed set of files, so writes, flushes and compactions go on
// meanwhile: the tables of the current version (pinned until it
// returns), the op-log segments and archives as of one moment between
// commits, the live segment up to what was written then, and the vector
// checkpoints then on disk. A file the database removes before it is
// read (an archived segment, a replaced checkpoint) is listed in
// Report.Skipped. The directory itself is not compared with the MANIFEST
// (files come and go); plures-fsck does that on a closed database.
//
// progress, if not nil, is called with the bytes checked and the bytes
// to check. Damage is in the report; the error says the check could not
// run (the database is closed, ctx was cancelled, the directory cannot
// be listed).
func (db *DB) Verify(ctx context.Context, progress func(done, total int64)) (*verify.Report, error) {
	if db.closed.Load() {
		return nil, errs.ErrClosed
	}
	db.stateMu.RLock()
	v := db.version
	v.Ref()
	db.stateMu.RUnlock()
	defer v.Unref()

	set := &verify.FileSet{Levels: v.Levels}
	// A consistent cut of the op log, as ExportChangesPrefix takes it.
	db.commitMu.Lock()
	if db.closed.Load() {
		db.commitMu.Unlock()
		return nil, errs.ErrClosed
	}
	size, err := db.liveLogSize()
	if err != nil {
		db.commitMu.Unlock()
		return nil, err
	}
	live := db.ol.cur.num
	db.ol.mu.Lock()
	for _, s := range db.ol.snapshotSegs() {
		set.Segments = append(set.Segments, verify.Segment{Num: s.num, Archived: s.archived, Limit: -1})
	}
	db.ol.mu.Unlock()
	db.commitMu.Unlock()
	set.Segments = append(set.Segments, verify.Segment{Num: live, Limit: size})
	slices.SortFunc(set.Segments, func(a, b verify.Segment) int { return int(min(max(int64(a.Num)-int64(b.Num), -1), 1)) })

	names, err := db.fs.List(db.dir)
	if err != nil {
		return nil, fmt.Errorf("pluresdb: verify: %w", err)
	}
	for _, name := range names {
		if t, n, ok := layout.Parse(name); ok && t == layout.TypeVectorGraph {
			set.Vectors = append(set.Vectors, n)
		}
	}
	return verify.Dir(ctx, db.fs, db.dir, verify.Options{ColdDir: db.opts.ColdDir, Progress: progress, Files: set})
}

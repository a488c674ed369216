//go:build !nopluresdb

package main

// This file holds the op-log workloads. They measure what only PluresDB
// has, so they run once, on PluresDB alone, after the engines, and print
// tables of their own. Both are in the -workloads default when pluresdb is
// among the engines (each takes about 17 s at -keys 1000000 on 2 cores);
// alone:
//
//	go run . -workloads sync-apply,oplog-bytes
//
// sync-apply: the remote apply rate. Replica A puts -keys keys (fillrandom's
// keys, order and values), exports every operation to a file
// (ExportChanges, timed), and replica B imports the file (ImportChanges,
// timed: the headline, against the 1M ops/s target). A second replica C
// first writes half of A's keys itself (every even key, other values, then
// flush and compaction, so they are in tables), then imports the same file:
// every remote operation is merged with stored state, half of them with a
// document C wrote later, which must win. Right after each import, random
// Gets time what the imported operands cost readers; then the compactions
// the import left behind are timed to their end (settle, not in the
// rate). Both are checked: the op count ImportChanges returns, a full scan
// (count and order), and a sample of Gets against A and the value
// generator.
//
//	A: put N ──ExportChanges──▶ file ──ImportChanges──▶ B (empty)
//	                                 └─ImportChanges──▶ C (holds N/2 of the keys)
//
// oplog-bytes: what the op log costs per operation beyond the key and value,
// for fillrandom's 16+100-byte keys and values and for structured keys
// (31 bytes: "tenant-07/users/0001234/profile"), both in random order:
//
//   - hot: the bytes of batches appended to the log (Metrics().WALBytes) and
//     the size of the .log files after the writes and a flush, per op;
//   - archive: a second database opened with HotHistory -1 gets the same
//     puts and a flush, then the background archiver moves every flushed
//     segment into the cold archive; the .oparc files' size per op;
//   - change stream: ExportChanges of the hot database (S2 chunks), per op.
//
// The hot log is uncompressed, so its bytes per op minus key and value is
// the overhead directly. The archive and the change stream are compressed,
// and the values compress to about half, so "bytes per op minus key and
// value" (the naive figure, printed too) comes out negative: it measures the
// codec, not the log. What the op log adds beyond key and value there is the
// difference between the archive and the same keys and values compressed by
// the same codec alone, as one stream of key|value pairs in the archive's
// order (zstd at the archive's level and window; S2 in the change stream's
// 64 KiB chunks). That difference is the figure held against the target of
// at most 4 bytes per op in the archive. (The zstd baseline is one stream,
// while the archive compresses 64 KiB chunks independently, so the
// difference also charges the archive for its chunking: it errs high.)

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/plures/pluresdb"
)

const (
	workloadSyncApply  = "sync-apply"
	workloadOpLogBytes = "oplog-bytes"

	// applyTarget is the target for the remote apply rate, ops/s.
	applyTarget = 1_000_000
	// archiveTarget is the target for the archive's bytes per op
	// beyond key and value.
	archiveTarget = 4.0
	// sampleGets is how many keys (at most) each apply check reads.
	sampleGets = 10_000
	// archiveTimeout bounds the wait for the background archiver.
	archiveTimeout = 2 * time.Minute
	// streamChunk is the change stream's chunk size (oplog's
	// streamChunkTarget), used for the S2 baseline.
	streamChunk = 64 << 10
)

// streamApplySample is the PRNG stream of the keys checked after an
// apply, apart from those of workloads.go.
const streamApplySample = 100

func init() {
	opLogBench.workloads = []string{workloadSyncApply, workloadOpLogBytes}
	opLogBench.run = runOpLog
	knownWorkloads = append(knownWorkloads, opLogBench.workloads...)
}

// opLogResults is the op-log section of the report.
type opLogResults struct {
	Keys int    `json:"keys"`
	Seed uint64 `json:"seed"`
	// LoadAvgBefore and LoadAvgAfter are /proc/loadavg's 1, 5 and 15
	// minute figures before and after the workloads (the machine may be
	// shared); empty where unavailable.
	LoadAvgBefore string `json:"loadavg_before,omitempty"`
	LoadAvgAfter  string `json:"loadavg_after,omitempty"`
	// Seconds is each workload's wall time, setup and checks included.
	Seconds map[string]float64 `json:"seconds"`
	Apply   []applyRow         `json:"apply,omitempty"`
	Bytes   []bytesRow         `json:"bytes,omitempty"`
	Err     string             `json:"error,omitempty"`
}

// applyRow is one timed phase of sync-apply.
type applyRow struct {
	Phase   string  `json:"phase"`
	Ops     int64   `json:"ops"`
	Seconds float64 `json:"seconds"`
	// Bytes is what the phase moved: the change stream's size for export
	// and apply, keys and values for the local fill.
	Bytes     int64   `json:"bytes"`
	OpsPerSec float64 `json:"ops_per_sec"`
	MBPerSec  float64 `json:"mb_per_sec"` // 10^6 bytes
	// RatioToTarget is OpsPerSec over 1M ops/s, for the apply phases.
	RatioToTarget float64 `json:"ratio_to_target,omitempty"`
	// Stalls and StallSeconds are the write stalls during an apply (waits
	// for a flush or compaction) and their total time.
	Stalls       uint64  `json:"stalls,omitempty"`
	StallSeconds float64 `json:"stall_seconds,omitempty"`
	// SettleSeconds is how long the compactions an apply left behind
	// took to finish: from its end, with its Gets running meanwhile, to
	// the end of WaitForCompactions.
	SettleSeconds float64 `json:"settle_seconds,omitempty"`
	// Checked is the number of Gets compared after an apply.
	Checked int `json:"checked,omitempty"`
}

// bytesRow is one oplog-bytes measurement: BytesPerOp of the log's form
// against KVBytesPerOp, what the keys and values alone take in the same
// form (raw, or compressed by the same codec).
type bytesRow struct {
	Keys         string  `json:"keys"`
	Measure      string  `json:"measure"`
	Ops          int64   `json:"ops"`
	BytesPerOp   float64 `json:"bytes_per_op"`
	KVBytesPerOp float64 `json:"kv_bytes_per_op"`
	// BeyondKV is BytesPerOp - KVBytesPerOp.
	BeyondKV float64 `json:"beyond_kv_bytes_per_op"`
	// Target is the bound on BeyondKV, 0 where there is none.
	Target float64 `json:"target,omitempty"`
}

// runOpLog runs the op-log workloads named in rc.workloads. It always
// returns a section, with what was measured before any error.
func runOpLog(rc runConfig) (opLogSection, error) {
	res := &opLogResults{Keys: rc.keys, Seed: rc.seed, LoadAvgBefore: loadAvg(), Seconds: map[string]float64{}}
	var errs []error
	for _, w := range opLogBench.workloads {
		if !rc.workloads[w] {
			continue
		}
		dir := filepath.Join(rc.dir, w)
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		start := time.Now()
		var err error
		switch w {
		case workloadSyncApply:
			err = runSyncApply(rc, dir, res)
		case workloadOpLogBytes:
			err = runOpLogBytes(rc, dir, res)
		}
		res.Seconds[w] = time.Since(start).Seconds()
		rc.logf("%-16s %-12s %8.2fs in all", "pluresdb", w, res.Seconds[w])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", w, err))
		}
		// The databases are closed; free the disk for the next workload.
		os.RemoveAll(dir)
	}
	res.LoadAvgAfter = loadAvg()
	err := errors.Join(errs...)
	if err != nil {
		res.Err = err.Error()
	}
	return res, err
}

// openOpLogDB opens a fresh database in dir, unsynced like the fills.
func openOpLogDB(dir string, cache int64, hotHistory time.Duration) (*pluresdb.DB, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	return pluresdb.Open(dir, &pluresdb.Options{NoSync: true, CacheSize: cache, HotHistory: hotHistory})
}

// keyGen appends key i of one key scheme to dst.
type keyGen func(dst []byte, i int) []byte

// digitKey is the harness's standard key: 16 decimal digits.
func digitKey(dst []byte, i int) []byte {
	var k [keySize]byte
	makeKey(k[:], i)
	return append(dst, k[:]...)
}

// structuredKey is a document-store key of 31 bytes: a tenant, a user and
// a document name, most of it shared with other keys.
func structuredKey(dst []byte, i int) []byte {
	var d [7]byte
	dst = append(dst, "tenant-"...)
	dst = append(dst, byte('0'+i%16/10), byte('0'+i%16%10))
	dst = append(dst, "/users/"...)
	u := i / 16
	for j := len(d) - 1; j >= 0; j-- {
		d[j] = byte('0' + u%10)
		u /= 10
	}
	dst = append(dst, d[:]...)
	return append(dst, "/profile"...)
}

// putAll puts key(order[j]) for every j, values of generation gen, and
// returns the bytes of keys and values written.
func putAll(db *pluresdb.DB, order []uint32, key keyGen, seed, gen uint64) (int64, error) {
	var kv int64
	k := make([]byte, 0, 64)
	var v [valueSize]byte
	for _, i := range order {
		k = key(k[:0], int(i))
		makeValue(v[:], seed, int(i), gen)
		if err := db.Put(k, v[:]); err != nil {
			return kv, fmt.Errorf("put key %d: %w", i, err)
		}
		kv += int64(len(k) + valueSize)
	}
	return kv, nil
}

// ---- sync-apply ----

// runSyncApply fills replica A, exports its operations to a file and
// imports the file into an empty replica B and into a replica C that holds
// half of the keys already.
func runSyncApply(rc runConfig, dir string, res *opLogResults) (err error) {
	n := rc.keys
	logf := func(phase string, r applyRow) {
		rc.logf("%-16s %-12s %-28s %8.2fs  %s ops/s", "pluresdb", workloadSyncApply, phase, r.Seconds, groupThousands(int64(r.OpsPerSec+0.5)))
	}
	var dbs []*pluresdb.DB
	open := func(name string) (*pluresdb.DB, error) {
		db, err := openOpLogDB(filepath.Join(dir, name), rc.cache, 0)
		if err == nil {
			dbs = append(dbs, db)
		}
		return db, err
	}
	defer func() {
		for _, db := range dbs {
			err = errors.Join(err, db.Close())
		}
	}()

	a, err := open("a")
	if err != nil {
		return err
	}
	start := time.Now()
	kv, err := putAll(a, permutation(n, rc.seed, streamFillRandom), digitKey, rc.seed, 0)
	fill := rate(applyRow{Phase: "fill A (local puts)", Ops: int64(n), Seconds: time.Since(start).Seconds(), Bytes: kv})
	if err != nil {
		return fmt.Errorf("fill A: %w", err)
	}
	res.Apply = append(res.Apply, fill)
	logf("fill A", fill)
	filled := time.Now()

	file := filepath.Join(dir, "changes")
	start = time.Now()
	exported, size, err := exportToFile(a, file)
	export := rate(applyRow{Phase: "export A to a file", Ops: int64(exported), Seconds: time.Since(start).Seconds(), Bytes: size})
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if exported != n {
		return fmt.Errorf("export: wrote %d operations, want %d", exported, n)
	}
	res.Apply = append(res.Apply, export)
	logf("export", export)

	// Each apply is timed with no other database of the run busy: A's
	// compactions of the fill finish first (and B's before C's apply).
	if err := a.WaitForCompactions(); err != nil {
		return err
	}
	// What the imported operands cost readers until compaction folds
	// them: random Gets right after each apply, against A's.
	gets := func(phase string, db *pluresdb.DB) error {
		r, err := timeGets(db, n, rc.seed)
		if err != nil {
			return fmt.Errorf("%s: %w", phase, err)
		}
		r.Phase = phase
		res.Apply = append(res.Apply, r)
		logf(phase, r)
		return nil
	}
	if err := gets("Gets on A (local puts)", a); err != nil {
		return err
	}
	// apply imports the file into db, reads it back at once, then times
	// the compactions the import left behind and checks the result.
	apply := func(db *pluresdb.DB, phase, getsPhase string, own func(i int) (uint64, bool)) error {
		r, err := importFile(db, file, n)
		if err != nil {
			return fmt.Errorf("%s: %w", phase, err)
		}
		r.Phase = phase
		imported := time.Now()
		if err := gets(getsPhase, db); err != nil {
			return err
		}
		if err := db.WaitForCompactions(); err != nil {
			return err
		}
		r.SettleSeconds = time.Since(imported).Seconds()
		if r.Checked, err = checkApplied(db, a, n, rc.seed, own); err != nil {
			return fmt.Errorf("%s: %w", phase, err)
		}
		// The apply's row goes before its Gets'.
		res.Apply = slices.Insert(res.Apply, len(res.Apply)-1, r)
		logf(phase, r)
		return nil
	}
	b, err := open("b")
	if err != nil {
		return err
	}
	if err := apply(b, "apply into empty B", "Gets on B right after", nil); err != nil {
		return err
	}

	// C writes every even key with generation 1 values after A's last
	// put, in a later millisecond, so its documents are newer than A's
	// and must survive the import.
	c, err := open("c")
	if err != nil {
		return err
	}
	time.Sleep(time.Until(filled.Add(2 * time.Millisecond)))
	var evens []uint32
	for _, i := range permutation(n, rc.seed, streamOverwrite) {
		if i%2 == 0 {
			evens = append(evens, i)
		}
	}
	if _, err := putAll(c, evens, digitKey, rc.seed, 1); err != nil {
		return fmt.Errorf("replica C's own writes: %w", err)
	}
	if err := c.Flush(); err != nil {
		return err
	}
	for _, db := range []*pluresdb.DB{b, c} {
		if err := db.WaitForCompactions(); err != nil {
			return err
		}
	}
	ownGen := func(i int) (uint64, bool) { return 1, i%2 == 0 }
	return apply(c, "apply into C holding N/2 keys", "Gets on C right after", ownGen)
}

// readBackGets is how many random Gets timeGets makes at most (one per
// key of the workload below that).
const readBackGets = 200_000

// timeGets times Gets of random keys among the n of the workload.
func timeGets(db *pluresdb.DB, n int, seed uint64) (applyRow, error) {
	r := rand.New(rand.NewPCG(seed, streamApplySample+1))
	var k [keySize]byte
	var bytes int64
	gets := min(n, readBackGets)
	start := time.Now()
	for range gets {
		makeKey(k[:], r.IntN(n))
		v, err := db.Get(k[:])
		if err != nil {
			return applyRow{}, err
		}
		bytes += int64(len(k) + len(v))
	}
	return rate(applyRow{Ops: int64(gets), Seconds: time.Since(start).Seconds(), Bytes: bytes}), nil
}

// rate fills in the rates of r.
func rate(r applyRow) applyRow {
	if r.Seconds > 0 {
		r.OpsPerSec = float64(r.Ops) / r.Seconds
		r.MBPerSec = float64(r.Bytes) / r.Seconds / 1e6
	}
	return r
}

// exportToFile writes every operation of db to a new file and returns the
// operation count and the file's size.
func exportToFile(db *pluresdb.DB, path string) (int, int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, 0, err
	}
	cw := &countingWriter{w: f}
	bw := bufio.NewWriterSize(cw, 1<<20)
	n, err := db.ExportChanges(bw, nil)
	if err == nil {
		err = bw.Flush()
	}
	return n, cw.n, errors.Join(err, f.Close())
}

// importFile times db.ImportChanges of the file at path, reading included,
// and checks it applied want operations.
func importFile(db *pluresdb.DB, path string, want int) (applyRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return applyRow{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return applyRow{}, err
	}
	writeBack()
	before := db.Metrics()
	start := time.Now()
	n, err := db.ImportChanges(bufio.NewReaderSize(f, 1<<20))
	r := rate(applyRow{Ops: int64(n), Seconds: time.Since(start).Seconds(), Bytes: st.Size()})
	r.RatioToTarget = r.OpsPerSec / applyTarget
	after := db.Metrics()
	r.Stalls = after.Stalls - before.Stalls
	r.StallSeconds = (after.StallTime - before.StallTime).Seconds()
	if err == nil && n != want {
		err = fmt.Errorf("applied %d operations, want %d", n, want)
	}
	return r, err
}

// checkApplied checks replica got every one of source's n keys: a full scan
// (count, order, sizes) and Gets of a sample of keys, compared with source
// and with the generator. own says which keys got their last write on got
// itself (and of which generation); nil: none, every value is source's.
// It returns the number of keys read.
func checkApplied(got, source *pluresdb.DB, n int, seed uint64, own func(i int) (uint64, bool)) (int, error) {
	if scanned, err := readSeq(&pluresEngine{db: got}); err != nil || scanned != n {
		return 0, fmt.Errorf("scan: %d keys, want %d (%v)", scanned, n, err)
	}
	r := rand.New(rand.NewPCG(seed, streamApplySample))
	samples := min(n, sampleGets)
	var k [keySize]byte
	var want [valueSize]byte
	for range samples {
		i := r.IntN(n)
		makeKey(k[:], i)
		v, err := got.Get(k[:])
		if err != nil {
			return 0, fmt.Errorf("get key %d: %w", i, err)
		}
		if gen, ok := ownValue(own, i); ok {
			makeValue(want[:], seed, i, gen)
			if !bytes.Equal(v, want[:]) {
				return 0, fmt.Errorf("key %d: the import replaced this replica's newer value", i)
			}
			continue
		}
		sv, err := source.Get(k[:])
		if err != nil {
			return 0, fmt.Errorf("get key %d from the source: %w", i, err)
		}
		makeValue(want[:], seed, i, 0)
		if !bytes.Equal(v, sv) || !bytes.Equal(v, want[:]) {
			return 0, fmt.Errorf("key %d: value differs from the source's", i)
		}
	}
	return samples, nil
}

// ownValue calls own, if there is one.
func ownValue(own func(i int) (uint64, bool), i int) (uint64, bool) {
	if own == nil {
		return 0, false
	}
	return own(i)
}

// ---- oplog-bytes ----

// keySchemes are the key variants of oplog-bytes.
var keySchemes = []struct {
	name string
	key  keyGen
}{
	{"16-digit (16+100 B)", digitKey},
	{"structured (31+100 B)", structuredKey},
}

func runOpLogBytes(rc runConfig, dir string, res *opLogResults) error {
	for _, ks := range keySchemes {
		rows, err := measureOpLogBytes(rc, dir, ks.name, ks.key)
		res.Bytes = append(res.Bytes, rows...)
		if err != nil {
			return fmt.Errorf("%s: %w", ks.name, err)
		}
	}
	return nil
}

// measureOpLogBytes puts rc.keys keys of one scheme into a database with
// hot history and into one that archives at once, and returns the log's
// bytes per op in each form against those of the keys and values alone.
func measureOpLogBytes(rc runConfig, dir, scheme string, key keyGen) ([]bytesRow, error) {
	n := rc.keys
	ops := float64(n)
	order := permutation(n, rc.seed, streamFillRandom)
	zstdKV, s2KV, kv, err := compressKV(order, key, rc.seed)
	if err != nil {
		return nil, err
	}
	kvPerOp := float64(kv) / ops
	row := func(measure string, total, alone int64) bytesRow {
		r := bytesRow{Keys: scheme, Measure: measure, Ops: int64(n), BytesPerOp: float64(total) / ops, KVBytesPerOp: float64(alone) / ops}
		r.BeyondKV = r.BytesPerOp - r.KVBytesPerOp
		return r
	}

	// Hot: the log as written.
	hotDir := filepath.Join(dir, "hot")
	db, err := openOpLogDB(hotDir, rc.cache, 0)
	if err != nil {
		return nil, err
	}
	if _, err := putAll(db, order, key, rc.seed, 0); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.Flush(); err != nil {
		db.Close()
		return nil, err
	}
	walBytes := int64(db.Metrics().WALBytes)
	cw := &countingWriter{w: io.Discard}
	exported, err := db.ExportChanges(cw, nil)
	if err == nil && exported != n {
		err = fmt.Errorf("export wrote %d operations, want %d", exported, n)
	}
	if err = errors.Join(err, db.Close()); err != nil {
		return nil, err
	}
	logFiles, err := filesSize(hotDir, ".log")
	if err != nil {
		return nil, err
	}

	// Archive: the same puts, every flushed segment archived.
	start := time.Now()
	archived, err := archiveAll(filepath.Join(dir, "archive"), rc, order, key)
	if err != nil {
		return nil, err
	}
	rc.logf("%-16s %-12s %-28s archived in %.2fs after the puts", "pluresdb", workloadOpLogBytes, scheme, time.Since(start).Seconds())

	rows := []bytesRow{
		row("hot: log appended (WALBytes)", walBytes, kv),
		row("hot: .log files", logFiles, kv),
		row("archive − zstd(k|v alone)", archived, zstdKV),
		row("archive, naive", archived, kv),
		row("change stream − S2(k|v alone)", cw.n, s2KV),
		row("change stream, naive", cw.n, kv),
	}
	rows[2].Target = archiveTarget
	rc.logf("%-16s %-12s %-28s k+v %.1f B/op, beyond: hot %.2f, archive %.2f, stream %.2f", "pluresdb", workloadOpLogBytes, scheme,
		kvPerOp, rows[0].BeyondKV, rows[2].BeyondKV, rows[4].BeyondKV)
	return rows, nil
}

// archiveAll puts the keys into a fresh database that archives history as
// soon as it is flushed, flushes, waits until the archiver has moved every
// flushed segment, and returns the archive's size.
func archiveAll(dir string, rc runConfig, order []uint32, key keyGen) (size int64, err error) {
	db, err := openOpLogDB(dir, rc.cache, -1)
	if err != nil {
		return 0, err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	if _, err := putAll(db, order, key, rc.seed, 0); err != nil {
		return 0, err
	}
	if err := db.Flush(); err != nil {
		return 0, err
	}
	// After the flush every segment but the live one is flushed; the
	// archiver runs in the background after each flush.
	deadline := time.Now().Add(archiveTimeout)
	for {
		// The archiver marks a segment archived before it counts its
		// bytes and operations: wait for both.
		m := db.Metrics().OpLog
		if m.ArchivedOps > uint64(len(order)) {
			return 0, fmt.Errorf("archive holds %d operations, want %d", m.ArchivedOps, len(order))
		}
		if m.HotSegments <= 1 && m.ArchivedOps == uint64(len(order)) {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("archiver: %d hot segments, %d archived with %d operations of %d after %v",
				m.HotSegments, m.ArchivedSegments, m.ArchivedOps, len(order), archiveTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return filesSize(dir, ".oparc")
}

// compressKV returns the size of the keys and values written in order as
// one stream of key|value pairs compressed by zstd at the archive's
// settings, the same cut into the change stream's 64 KiB chunks and
// compressed by S2, and uncompressed.
func compressKV(order []uint32, key keyGen, seed uint64) (zstdSize, s2Size, raw int64, err error) {
	zc := &countingWriter{w: io.Discard}
	// oplog's archive encoder: SpeedBetterCompression, a window of two
	// chunks.
	zw, err := zstd.NewWriter(zc, zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
		zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(2*streamChunk))
	if err != nil {
		return 0, 0, 0, err
	}
	chunk := make([]byte, 0, streamChunk+256)
	var out []byte
	flushChunk := func() error {
		if len(chunk) == 0 {
			return nil
		}
		out = s2.Encode(out[:cap(out)], chunk)
		s2Size += int64(len(out))
		raw += int64(len(chunk))
		_, err := zw.Write(chunk)
		chunk = chunk[:0]
		return err
	}
	var v [valueSize]byte
	for _, i := range order {
		chunk = key(chunk, int(i))
		makeValue(v[:], seed, int(i), 0)
		chunk = append(chunk, v[:]...)
		if len(chunk) >= streamChunk {
			if err := flushChunk(); err != nil {
				return 0, 0, 0, err
			}
		}
	}
	if err := flushChunk(); err != nil {
		return 0, 0, 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, 0, 0, err
	}
	return zc.n, s2Size, raw, nil
}

// filesSize sums the sizes of the files in dir whose names end in suffix.
func filesSize(dir, suffix string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), suffix) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return 0, err
		}
		total += info.Size()
	}
	return total, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// loadAvg returns the 1, 5 and 15 minute load averages, "" if unknown.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// ---- printing ----

var (
	applyHeader = []string{"phase", "ops", "s", "ops/s", "MB/s", "stream MiB", "stalls (s)", "settle s", "vs 1M ops/s"}
	bytesHeader = []string{"keys", "measure", "B/op", "k+v alone B/op", "beyond k+v B/op", "target"}
)

// opLogNotes are printed under the tables: applyNotes when sync-apply ran,
// bytesNotes when oplog-bytes did.
var applyNotes = []string{
	"sync-apply: A puts the keys of fillrandom (random order, NoSync), ExportChanges writes all its operations to a file, ImportChanges applies the file " +
		"(reading included; the other replicas' compactions finished and the page cache written back first) to an empty replica B, then to a replica C that first wrote every even key itself (newer values, flushed and compacted), " +
		"so every operation merges with stored state and half lose to it. Checked: the op count returned, a full scan, " +
		fmt.Sprintf("%d Gets against A and the generator (C's own keys must keep C's values).", sampleGets),
	"Gets: random Gets on A once its compactions finished, and on B and C right after their applies (imported operations are merge operands until compaction folds them). " +
		"MB/s: change-stream bytes per second for export and apply (10^6 B), key+value bytes for the fill and Gets; stalls: the apply's waits for a flush or compaction, and their time; " +
		"settle s: from the end of the apply (its Gets running meanwhile) until WaitForCompactions returns (a bulk import leaves L0 to compact once it ends), not in ops/s; " +
		"vs 1M ops/s: the issue's target for the remote apply rate.",
}

var bytesNotes = []string{
	"oplog-bytes: the puts in random order, NoSync. hot: Metrics().WALBytes after the puts and a flush, and the .log files' size, per op, against key+value. " +
		"archive: a second database with HotHistory -1, the same puts, a flush, and a wait until the archiver moved every flushed segment; the .oparc files per op. " +
		"change stream: ExportChanges of the hot database (S2 chunks).",
	"beyond k+v: B/op minus what the keys and values alone take in the same form. For the compressed forms that is the same codec over the key|value pairs " +
		"in the same order (zstd at the archive's level and window, as one stream; S2 in 64 KiB chunks): the bytes the op log adds. " +
		"The naive rows subtract the raw key+value size instead; they go negative because values compress to about half.",
}

func applyCells(r applyRow) []string {
	ratio, stalls, settle := "", "", ""
	if r.RatioToTarget > 0 {
		ratio = fmt.Sprintf("%.2fx", r.RatioToTarget)
		stalls = fmt.Sprintf("%d (%.2f)", r.Stalls, r.StallSeconds)
		settle = fmt.Sprintf("%.2f", r.SettleSeconds)
	}
	return []string{
		r.Phase,
		groupThousands(r.Ops),
		fmt.Sprintf("%.2f", r.Seconds),
		groupThousands(int64(r.OpsPerSec + 0.5)),
		fmt.Sprintf("%.0f", r.MBPerSec),
		fmt.Sprintf("%.1f", float64(r.Bytes)/(1<<20)),
		stalls,
		settle,
		ratio,
	}
}

func bytesCells(r bytesRow) []string {
	target := ""
	if r.Target > 0 {
		verdict := "met"
		if r.BeyondKV > r.Target {
			verdict = "missed"
		}
		target = fmt.Sprintf("<= %g: %s", r.Target, verdict)
	}
	return []string{
		r.Keys,
		r.Measure,
		fmt.Sprintf("%.2f", r.BytesPerOp),
		fmt.Sprintf("%.2f", r.KVBytesPerOp),
		fmt.Sprintf("%+.2f", r.BeyondKV),
		target,
	}
}

// opLogTable is one table of the section, ready to print.
type opLogTable struct {
	title string
	head  []string
	names int // leading columns that hold names (left-aligned)
	rows  [][]string
}

func (res *opLogResults) tables() []opLogTable {
	var out []opLogTable
	if len(res.Apply) > 0 {
		t := opLogTable{
			title: fmt.Sprintf("%s: remote apply rate (%.1f s in all)", workloadSyncApply, res.Seconds[workloadSyncApply]),
			head:  applyHeader, names: 1,
		}
		for _, r := range res.Apply {
			t.rows = append(t.rows, applyCells(r))
		}
		out = append(out, t)
	}
	if len(res.Bytes) > 0 {
		t := opLogTable{
			title: fmt.Sprintf("%s: op log bytes per operation beyond key and value (%.1f s in all)", workloadOpLogBytes, res.Seconds[workloadOpLogBytes]),
			head:  bytesHeader, names: 2,
		}
		for _, r := range res.Bytes {
			t.rows = append(t.rows, bytesCells(r))
		}
		out = append(out, t)
	}
	return out
}

func (res *opLogResults) print(w io.Writer, markdown bool) {
	title := fmt.Sprintf("op log (PluresDB only): %s keys, seed %d", groupThousands(int64(res.Keys)), res.Seed)
	if res.LoadAvgBefore != "" {
		title += fmt.Sprintf(", load average %s before, %s after (1, 5, 15 min)", res.LoadAvgBefore, res.LoadAvgAfter)
	}
	var notes []string
	if len(res.Apply) > 0 {
		notes = append(notes, applyNotes...)
	}
	if len(res.Bytes) > 0 {
		notes = append(notes, bytesNotes...)
	}
	if res.Err != "" {
		notes = append(notes, "error: "+res.Err)
	}
	if markdown {
		fmt.Fprintf(w, "\n%s.\n", title)
		for _, t := range res.tables() {
			fmt.Fprintf(w, "\n%s:\n\n| %s |\n", t.title, strings.Join(t.head, " | "))
			fmt.Fprintf(w, "|%s%s|\n", strings.Repeat(":--|", t.names), strings.Repeat("--:|", len(t.head)-t.names-1)+"--:")
			for _, cs := range t.rows {
				fmt.Fprintf(w, "| %s |\n", strings.Join(cs, " | "))
			}
		}
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, "-", n)
		}
		return
	}
	fmt.Fprintf(w, "\n%s\n", title)
	for _, t := range res.tables() {
		fmt.Fprintf(w, "\n%s:\n\n", t.title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		widths := make([]int, t.names)
		for _, cs := range append([][]string{t.head}, t.rows...) {
			for i := range widths {
				widths[i] = max(widths[i], len([]rune(cs[i])))
			}
		}
		line := func(cs []string) {
			// tabwriter aligns every column right: pad the name columns
			// left-aligned ourselves.
			for i, c := range cs[:t.names] {
				fmt.Fprintf(tw, "%s%s\t", c, strings.Repeat(" ", widths[i]-len([]rune(c))))
			}
			fmt.Fprintf(tw, "%s\t\n", strings.Join(cs[t.names:], "\t"))
		}
		line(t.head)
		for _, cs := range t.rows {
			line(cs)
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\nnotes:")
	for _, n := range notes {
		fmt.Fprintln(w, "  -", n)
	}
}

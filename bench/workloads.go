package main

// This file holds the db_bench-style workloads and the measurements taken
// around them.
//
// Keys are 16 bytes: the key's index as 16 zero-padded decimal digits, so
// index order is byte order. Values are 100 bytes: 50 pseudo-random bytes
// followed by the same 50 again, so a block compressor halves them. A value
// is a function of (seed, key index, generation), where the generation is 0
// for the first fill and 1 after overwrite; this lets readrandom check every
// value it reads without keeping a model of the database in memory.
//
// Per engine the workloads run in this order, each database in its own
// directory:
//
//	fillseq     fresh db "seq"
//	fillrandom  fresh db "random"       (also run, unreported, when only the reads or overwrite are asked for)
//	overwrite   reopen "random"
//	readrandom  reopen "random" after it settled
//	readseq     same handle as readrandom
//	fillsync    fresh db "sync", 16 goroutines, synced puts
//	fillrandom-sustained  fresh db "sustained" (only when asked for; see sustained.go)
//
// After every write phase the engine settles (flush, wait for compactions)
// and closes before disk size and bytes written are measured, so background
// work is charged to the workload that caused it.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	keySize   = 16
	valueSize = 100
	// syncWriters is the number of goroutines in fillsync.
	syncWriters = 16
)

// allWorkloads is the -workloads default, in the order they run.
var allWorkloads = []string{"fillseq", "fillrandom", "overwrite", "readrandom", "readseq", "fillsync"}

// result is one engine × workload measurement.
type result struct {
	Engine   string `json:"engine"`
	Workload string `json:"workload"`
	Ops      int64  `json:"ops"`
	// Seconds is the timed part only: the puts or reads, not open, settle
	// or close.
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec"`
	// SettleSeconds is the flush and compaction wait after a write phase.
	SettleSeconds float64 `json:"settle_seconds"`
	// RatioToPebble is OpsPerSec over the "pebble" engine's for the same
	// workload; 0 when Pebble was not run.
	RatioToPebble float64 `json:"ratio_to_pebble"`
	// DiskBytes is the space the database directory takes (allocated
	// blocks, as du counts) after the engine settled and closed.
	DiskBytes int64 `json:"disk_bytes"`
	// WriteBytes is the growth of write_bytes in /proc/self/io across the
	// workload including settle and close; -1 where unavailable.
	WriteBytes int64 `json:"write_bytes"`
	// LogicalBytes is keys × (16+100) written by the workload; 0 for reads.
	LogicalBytes int64 `json:"logical_bytes"`
	// WriteAmp is WriteBytes / LogicalBytes; 0 when not applicable.
	WriteAmp float64 `json:"write_amp"`
	// Warning says what makes the numbers less comparable (a settle that
	// timed out); the row is still reported.
	Warning string `json:"warning,omitempty"`
	Err     string `json:"error,omitempty"`
	// Sustained holds the throughput series and stall figures of
	// fillrandom-sustained; nil for the other workloads.
	Sustained *sustainedStats `json:"sustained,omitempty"`
}

// runConfig is what one engine's run needs from the command line.
type runConfig struct {
	keys      int
	syncOps   int
	cache     int64
	seed      uint64
	dir       string // this engine's directory; its databases go below it
	workloads map[string]bool
	logf      func(format string, args ...any)
	// sustainedKeys is the number of puts in fillrandom-sustained.
	sustainedKeys int
	// sustainedEngines limits fillrandom-sustained to these engines; nil
	// means every engine that runs.
	sustainedEngines []string
	// The series workload's sizes (series.go).
	seriesCount, seriesCalls, seriesReps int
	seriesNoProm                         bool
	// The index workload's sizes (indexes.go) and where to write the CPU
	// profile of its two-index load ("": none).
	indexDocs, indexReps int
	indexProfile         string
}

// makeKey writes key i as 16 zero-padded decimal digits.
func makeKey(dst []byte, i int) {
	for j := keySize - 1; j >= 0; j-- {
		dst[j] = byte('0' + i%10)
		i /= 10
	}
}

// makeValue writes the value of key i at generation gen: 50 bytes from a
// splitmix64 stream whose start is a hash of (seed, i, gen), then the same
// 50 again. Hashing the start keeps the streams of nearby keys apart; with a
// plain seed^i start, key i+2's stream is key i's shifted by two words, and
// the values compress across keys.
func makeValue(dst []byte, seed uint64, i int, gen uint64) {
	s := mix64(seed ^ mix64(uint64(i)<<8|gen))
	half := valueSize / 2
	for j := 0; j < half; j += 8 {
		s += 0x9e3779b97f4a7c15
		z := mix64(s)
		for b := 0; b < 8 && j+b < half; b++ {
			dst[j+b] = byte(z >> (8 * b))
		}
	}
	copy(dst[half:valueSize], dst[:half])
}

// mix64 is splitmix64's output function: a bijection that scatters every
// input bit over the whole word.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// permutation returns 0..n-1 shuffled by a PRNG seeded with (seed, stream).
func permutation(n int, seed, stream uint64) []uint32 {
	p := make([]uint32, n)
	for i := range p {
		p[i] = uint32(i)
	}
	r := rand.New(rand.NewPCG(seed, stream))
	r.Shuffle(n, func(i, j int) { p[i], p[j] = p[j], p[i] })
	return p
}

// PRNG streams, one per use, so workloads do not share random sequences.
const (
	streamFillRandom = iota + 1
	streamOverwrite
	streamReadRandom
	streamFillSync
	streamSustained
)

// runEngine runs the selected workloads on one engine and returns their
// results in run order. An error stops this engine's run; the results
// gathered so far are returned with it.
func runEngine(spec engineSpec, rc runConfig) ([]result, error) {
	var out []result
	logical := int64(rc.keys) * (keySize + valueSize)
	want := rc.workloads

	if want["fillseq"] {
		r, err := writePhase(spec, rc, "fillseq", "seq", engineConfig{cache: rc.cache}, true, func(e engine) error {
			return fill(e, nil, rc.keys, rc.seed, 0)
		})
		r.Workload, r.Ops, r.LogicalBytes = "fillseq", int64(rc.keys), logical
		out = append(out, finish(withErr(r, err)))
		if err != nil {
			return out, fmt.Errorf("fillseq: %w", err)
		}
	}

	needFilled := want["overwrite"] || want["readrandom"] || want["readseq"]
	gen := uint64(0)
	if want["fillrandom"] || needFilled {
		order := permutation(rc.keys, rc.seed, streamFillRandom)
		r, err := writePhase(spec, rc, "fillrandom", "random", engineConfig{cache: rc.cache}, true, func(e engine) error {
			return fill(e, order, rc.keys, rc.seed, 0)
		})
		r.Workload, r.Ops, r.LogicalBytes = "fillrandom", int64(rc.keys), logical
		if want["fillrandom"] {
			out = append(out, finish(withErr(r, err)))
		}
		if err != nil {
			return out, fmt.Errorf("fillrandom: %w", err)
		}
	}

	if want["overwrite"] {
		order := permutation(rc.keys, rc.seed, streamOverwrite)
		gen = 1
		r, err := writePhase(spec, rc, "overwrite", "random", engineConfig{cache: rc.cache}, false, func(e engine) error {
			return fill(e, order, rc.keys, rc.seed, gen)
		})
		r.Workload, r.Ops, r.LogicalBytes = "overwrite", int64(rc.keys), logical
		out = append(out, finish(withErr(r, err)))
		if err != nil {
			return out, fmt.Errorf("overwrite: %w", err)
		}
	}

	if want["readrandom"] || want["readseq"] {
		rs, err := readPhase(spec, rc, gen)
		out = append(out, rs...)
		if err != nil {
			return out, err
		}
	}

	if want["fillsync"] {
		n := rc.syncOps
		r, err := writePhase(spec, rc, "fillsync", "sync", engineConfig{sync: true, cache: rc.cache}, true, func(e engine) error {
			return fillSync(e, n, rc.keys, rc.seed)
		})
		r.Workload, r.Ops, r.LogicalBytes = "fillsync", int64(n), int64(n)*(keySize+valueSize)
		out = append(out, finish(withErr(r, err)))
		if err != nil {
			return out, fmt.Errorf("fillsync: %w", err)
		}
	}

	if want[workloadSustained] && (rc.sustainedEngines == nil || slices.Contains(rc.sustainedEngines, spec.name)) {
		r, err := runSustained(spec, rc)
		out = append(out, r)
		if err != nil {
			return out, fmt.Errorf("%s: %w", workloadSustained, err)
		}
	}
	return out, nil
}

// writePhase opens database db (fresh: in an emptied directory), times
// workload's work, then settles and closes the engine and measures disk size and bytes
// written since the open.
func writePhase(spec engineSpec, rc runConfig, workload, db string, cfg engineConfig, fresh bool, work func(engine) error) (result, error) {
	r := result{Engine: spec.name, WriteBytes: -1}
	dir := filepath.Join(rc.dir, db)
	if fresh {
		if err := os.RemoveAll(dir); err != nil {
			return r, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	runtime.GC()
	io0, ioOK := processWriteBytes()
	e, err := spec.open(dir, cfg)
	if err != nil {
		return r, fmt.Errorf("open: %w", err)
	}
	start := time.Now()
	err = work(e)
	r.Seconds = time.Since(start).Seconds()
	if err != nil {
		e.close()
		return r, err
	}
	start = time.Now()
	err = e.settle()
	r.SettleSeconds = time.Since(start).Seconds()
	if errors.Is(err, errSettleTimeout) {
		r.Warning = fmt.Sprintf("settle: %v (%v)", err, settleTimeout)
		rc.logf("%-16s %-10s warning: %s", spec.name, workload, r.Warning)
		err = nil
	}
	if err != nil {
		e.close()
		return r, fmt.Errorf("settle: %w", err)
	}
	if err := e.close(); err != nil {
		return r, fmt.Errorf("close: %w", err)
	}
	if io1, ok := processWriteBytes(); ok && ioOK {
		r.WriteBytes = io1 - io0
	}
	r.DiskBytes, err = diskUsage(dir)
	rc.logf("%-16s %-10s %8.2fs + settle %6.2fs", spec.name, workload, r.Seconds, r.SettleSeconds)
	return r, err
}

// readPhase reopens the settled "random" database and runs readrandom and
// readseq on it, checking every value readrandom reads and that readseq sees
// every key once, in order.
func readPhase(spec engineSpec, rc runConfig, gen uint64) ([]result, error) {
	dir := filepath.Join(rc.dir, "random")
	runtime.GC()
	io0, ioOK := processWriteBytes()
	e, err := spec.open(dir, engineConfig{cache: rc.cache})
	if err != nil {
		return nil, fmt.Errorf("reopen for reads: %w", err)
	}
	var out []result
	fail := func(err error) ([]result, error) {
		e.close()
		for i := range out {
			out[i].Err = err.Error()
		}
		return out, err
	}
	if rc.workloads["readrandom"] {
		r := result{Engine: spec.name, Workload: "readrandom", Ops: int64(rc.keys), WriteBytes: -1}
		start := time.Now()
		err := readRandom(e, rc.keys, rc.keys, rc.seed, gen)
		r.Seconds = time.Since(start).Seconds()
		out = append(out, r)
		if err != nil {
			return fail(fmt.Errorf("readrandom: %w", err))
		}
		rc.logf("%-16s %-10s %8.2fs", spec.name, "readrandom", r.Seconds)
	}
	if rc.workloads["readseq"] {
		r := result{Engine: spec.name, Workload: "readseq", WriteBytes: -1}
		start := time.Now()
		n, err := readSeq(e)
		r.Seconds = time.Since(start).Seconds()
		r.Ops = int64(n)
		out = append(out, r)
		if err == nil && n != rc.keys {
			err = fmt.Errorf("scanned %d keys, want %d", n, rc.keys)
		}
		if err != nil {
			return fail(fmt.Errorf("readseq: %w", err))
		}
		rc.logf("%-16s %-10s %8.2fs", spec.name, "readseq", r.Seconds)
	}
	if err := e.close(); err != nil {
		return out, fmt.Errorf("close after reads: %w", err)
	}
	disk, err := diskUsage(dir)
	if err != nil {
		return out, err
	}
	io1, ok := processWriteBytes()
	for i := range out {
		out[i].DiskBytes = disk
		if ok && ioOK {
			out[i].WriteBytes = io1 - io0
		}
		out[i] = finish(out[i])
	}
	return out, nil
}

func withErr(r result, err error) result {
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

// finish derives the rates from the raw measurements.
func finish(r result) result {
	if r.Seconds > 0 {
		r.OpsPerSec = float64(r.Ops) / r.Seconds
	}
	if r.LogicalBytes > 0 && r.WriteBytes > 0 {
		r.WriteAmp = float64(r.WriteBytes) / float64(r.LogicalBytes)
	}
	return r
}

// fill puts n keys, in the order given or ascending when order is nil.
func fill(e engine, order []uint32, n int, seed, gen uint64) error {
	var k [keySize]byte
	var v [valueSize]byte
	for j := range n {
		i := j
		if order != nil {
			i = int(order[j])
		}
		makeKey(k[:], i)
		makeValue(v[:], seed, i, gen)
		if err := e.put(k[:], v[:]); err != nil {
			return fmt.Errorf("put key %d: %w", i, err)
		}
	}
	return nil
}

// fillSync puts n distinct random keys out of 0..keys-1 (all of them if
// n > keys) from syncWriters goroutines, each put synced on its own.
func fillSync(e engine, n, keys int, seed uint64) error {
	order := permutation(max(n, keys), seed, streamFillSync)[:n]
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, syncWriters)
	for w := range syncWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var k [keySize]byte
			var v [valueSize]byte
			for {
				j := next.Add(1) - 1
				if j >= int64(n) {
					return
				}
				i := int(order[j])
				makeKey(k[:], i)
				makeValue(v[:], seed, i, 0)
				if err := e.put(k[:], v[:]); err != nil {
					errs[w] = fmt.Errorf("put key %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// readRandom does n point reads of uniformly random keys out of 0..keys-1
// (all present) and checks each value.
func readRandom(e engine, n, keys int, seed, gen uint64) error {
	r := rand.New(rand.NewPCG(seed, streamReadRandom))
	var k [keySize]byte
	var want [valueSize]byte
	for range n {
		i := r.IntN(keys)
		makeKey(k[:], i)
		v, err := e.get(k[:])
		if err != nil {
			return fmt.Errorf("get key %d: %w", i, err)
		}
		makeValue(want[:], seed, i, gen)
		if !bytes.Equal(v, want[:]) {
			return fmt.Errorf("get key %d: wrong value (%d bytes)", i, len(v))
		}
	}
	return nil
}

// readSeq scans the whole database, checking that keys ascend strictly and
// values have the right size.
func readSeq(e engine) (int, error) {
	var prev [keySize]byte
	first := true
	return e.scan(func(k, v []byte) error {
		if len(k) != keySize || len(v) != valueSize {
			return fmt.Errorf("key %q: got %d-byte key, %d-byte value", k, len(k), len(v))
		}
		if !first && bytes.Compare(prev[:], k) >= 0 {
			return fmt.Errorf("key %q after %q: not ascending", k, prev[:])
		}
		first = false
		copy(prev[:], k)
		return nil
	})
}

// processWriteBytes reads write_bytes from /proc/self/io: the bytes this
// process caused to be sent to storage, counted when pages are dirtied, so
// it includes background compactions and mmap writes (Badger).
func processWriteBytes() (int64, bool) {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "write_bytes:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// diskUsage sums the allocated size of every file under dir.
func diskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += allocatedSize(info)
		return nil
	})
	return total, err
}

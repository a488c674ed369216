package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/record"
	"github.com/plures/pluresdb/internal/vfs"
)

var seedFlag = flag.Uint64("seed", 1, "seed for randomized tests")

func newRand(t testing.TB) *rand.Rand {
	t.Logf("seed %d", *seedFlag)
	return rand.New(rand.NewPCG(*seedFlag, 0x5eed))
}

const dir = "/db"

func newMem(t testing.TB) *vfs.MemFS {
	fs := vfs.NewMem()
	if err := fs.MkdirAll(dir); err != nil {
		t.Fatal(err)
	}
	return fs
}

// rec makes a recognisable record: its index, then filler.
func rec(rng *rand.Rand, i, n int) []byte {
	p := make([]byte, max(n, 8))
	binary.LittleEndian.PutUint64(p, uint64(i))
	for j := 8; j < len(p); j++ {
		p[j] = byte(rng.Uint32())
	}
	return p[:max(n, 8)]
}

type replayed struct {
	recs [][]byte
	segs []layout.FileNum
}

func replay(t testing.TB, fs vfs.FS, salvage bool, nums ...layout.FileNum) (replayed, Result, error) {
	t.Helper()
	var out replayed
	if nums == nil {
		var err error
		if nums, err = List(fs, dir); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Replay(RecoverOptions{FS: fs, Dir: dir, Salvage: salvage}, nums, func(seg layout.FileNum, r []byte) error {
		out.recs = append(out.recs, bytes.Clone(r))
		out.segs = append(out.segs, seg)
		return nil
	})
	if res.Records != len(out.recs) {
		t.Fatalf("Result.Records = %d, fn saw %d", res.Records, len(out.recs))
	}
	return out, res, err
}

func wantRecords(t testing.TB, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d differs (%d bytes, want %d)", i, len(got[i]), len(want[i]))
		}
	}
}

func fileSize(t testing.TB, fs vfs.FS, num layout.FileNum) int64 {
	t.Helper()
	fi, err := fs.Stat(layout.Path(dir, layout.TypeLog, num))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func readFile(t testing.TB, fs vfs.FS, num layout.FileNum) []byte {
	t.Helper()
	f, err := fs.Open(layout.Path(dir, layout.TypeLog, num))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, fs vfs.FS, num layout.FileNum, b []byte) {
	t.Helper()
	f, err := fs.Create(layout.Path(dir, layout.TypeLog, num))
	if err != nil {
		t.Fatal(err)
	}
	f.Write(b)
	f.Sync()
	f.Close()
	fs.SyncDir(dir)
}

func TestRoundTrip(t *testing.T) {
	rng := newRand(t)
	fs := newMem(t)
	w, err := Create(Options{FS: fs, Dir: dir, BufferSize: 4096}, 7)
	if err != nil {
		t.Fatal(err)
	}
	if w.Size() != headerSize || w.Num() != 7 {
		t.Fatalf("new writer: size %d num %d", w.Size(), w.Num())
	}
	szs := []int{0, 1, 100, record.BlockSize - record.HeaderSize, record.BlockSize, 3*record.BlockSize + 17, 5 << 20}
	for range 200 {
		szs = append(szs, rng.IntN(2000))
	}
	var want [][]byte
	for i, n := range szs {
		r := rec(rng, i, n)
		if n == 0 {
			r = nil
		}
		want = append(want, r)
		if err := w.Append(r, i%3 == 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Append(make([]byte, MaxRecordSize+1), true); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("oversized record: %v", err)
	}
	size := w.Size()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, fs, 7); got != size {
		t.Fatalf("file size %d, Size() %d", got, size)
	}
	if err := w.Append([]byte("x"), false); !errors.Is(err, errs.ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if err := w.Close(); !errors.Is(err, errs.ErrClosed) {
		t.Fatalf("second close: %v", err)
	}

	got, res, err := replay(t, fs, false)
	if err != nil || res.TornTail || len(res.Dropped) != 0 {
		t.Fatalf("replay: %v %+v", err, res)
	}
	for i := range want {
		if want[i] == nil {
			want[i] = []byte{}
		}
	}
	wantRecords(t, got.recs, want)

	// The op log's reader sees the same records.
	sr, err := OpenSegment(fs, dir, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer sr.Close()
	for i := range want {
		r, err := sr.Next()
		if err != nil || !bytes.Equal(r, want[i]) {
			t.Fatalf("SegmentReader record %d: %v", i, err)
		}
	}
	if _, err := sr.Next(); err != io.EOF {
		t.Fatalf("SegmentReader end: %v", err)
	}
}

func TestMaxRecord(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("64 MiB record: slow under -race and -short")
	}
	fs := newMem(t)
	w, _ := Create(Options{FS: fs, Dir: dir}, 1)
	big := bytes.Repeat([]byte("pluresdb"), MaxRecordSize/8)
	if err := w.Append(big, true); err != nil {
		t.Fatal(err)
	}
	w.Append([]byte("after"), true)
	w.Close()
	got, _, err := replay(t, fs, false)
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, got.recs, [][]byte{big, []byte("after")})
}

// slowSync makes every fsync take a while, as on a real disk, so that
// committers pile up behind it.
func slowSync(d time.Duration) vfs.Injector {
	return func(op vfs.Op, _ string) error {
		if op == vfs.OpSync {
			time.Sleep(d)
		}
		return nil
	}
}

func TestGroupCommit(t *testing.T) {
	t.Run("synced appends", func(t *testing.T) {
		testGroupCommit(t, func(w *Writer, r []byte) error { return w.Append(r, true) })
	})
	// The DB appends under its commit lock, then syncs outside it.
	t.Run("append then sync", func(t *testing.T) {
		var commitMu sync.Mutex
		testGroupCommit(t, func(w *Writer, r []byte) error {
			commitMu.Lock()
			err := w.Append(r, false)
			commitMu.Unlock()
			if err != nil {
				return err
			}
			return w.Sync()
		})
	})
}

func testGroupCommit(t *testing.T, commit func(w *Writer, r []byte) error) {
	mem := newMem(t)
	w, err := Create(Options{FS: vfs.WithFaults(mem, slowSync(200*time.Microsecond)), Dir: dir}, 1)
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, perG = 16, 100
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				if err := commit(w, fmt.Appendf(nil, "g%02d-%04d", g, i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := w.Stats()
	// Every acknowledged record is durable without Close.
	got, _, err := replay(t, mem.CrashClone(), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.recs) != goroutines*perG {
		t.Fatalf("%d records survive a crash, want %d", len(got.recs), goroutines*perG)
	}
	next := make([]int, goroutines)
	for _, r := range got.recs {
		var g, i int
		if _, err := fmt.Sscanf(string(r), "g%02d-%04d", &g, &i); err != nil || i != next[g] {
			t.Fatalf("record %q out of order (want g%02d-%04d)", r, g, next[g])
		}
		next[g]++
	}
	t.Logf("%d synced commits, %d fsyncs, %d writes", st.Appends, st.Syncs, st.Writes)
	if st.Appends != goroutines*perG || st.Syncs > st.Appends/4 {
		t.Fatalf("group commit: %d fsyncs for %d synced appends", st.Syncs, st.Appends)
	}
	w.Close()
}

func TestBufferedWrites(t *testing.T) {
	fs := newMem(t)
	w, _ := Create(Options{FS: fs, Dir: dir, BufferSize: 1000}, 1)
	for i := range 9 {
		w.Append(make([]byte, 100), false)
		if got := fileSize(t, fs, 1); got != headerSize {
			t.Fatalf("append %d: written before the buffer filled (%d)", i, got)
		}
	}
	w.Append(make([]byte, 100), false)
	if got, want := fileSize(t, fs, 1), w.Size(); got != want {
		t.Fatalf("full buffer not written: file %d, size %d", got, want)
	}
	if st := w.Stats(); st.Syncs != 1 {
		t.Fatalf("unsynced appends fsynced: %+v", st)
	}
	w.Close()
}

func TestNoSync(t *testing.T) {
	fs := newMem(t)
	w, _ := Create(Options{FS: fs, Dir: dir, NoSync: true}, 1)
	w.Append([]byte("a"), true)
	// Written (visible to a reader of the file) but not fsynced.
	if fileSize(t, fs, 1) != w.Size() || w.Stats().Syncs != 1 {
		t.Fatalf("NoSync append: file %d size %d stats %+v", fileSize(t, fs, 1), w.Size(), w.Stats())
	}
	got, _, _ := replay(t, fs.CrashClone(), false)
	if len(got.recs) != 0 {
		t.Fatal("an unsynced record survived a crash")
	}
	if err := w.Rotate(2); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil { // an explicit Sync still syncs
		t.Fatal(err)
	}
	w.Append([]byte("b"), false)
	w.Close()
	got, _, err := replay(t, fs, false)
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, got.recs, [][]byte{[]byte("a"), []byte("b")})
}

func TestRotate(t *testing.T) {
	rng := newRand(t)
	fs := newMem(t)
	w, _ := Create(Options{FS: fs, Dir: dir, SegmentSize: 10000}, 3)
	var want [][]byte
	wantSegs := []layout.FileNum{3}
	next := layout.FileNum(4)
	for i := range 300 {
		r := rec(rng, i, rng.IntN(300))
		want = append(want, r)
		if err := w.Append(r, i%2 == 0); err != nil {
			t.Fatal(err)
		}
		if w.Full() {
			if err := w.Rotate(next); err != nil {
				t.Fatal(err)
			}
			if w.Num() != next || w.Size() != headerSize {
				t.Fatalf("after rotate: num %d size %d", w.Num(), w.Size())
			}
			wantSegs = append(wantSegs, next)
			next += 2 // numbers come from a shared counter: gaps are normal
		}
	}
	// Sealed segments are durable without Close.
	crash := fs.CrashClone()
	w.Close()
	nums, err := List(fs, dir)
	if err != nil || fmt.Sprint(nums) != fmt.Sprint(wantSegs) || len(nums) < 5 {
		t.Fatalf("List = %v %v, want %v", nums, err, wantSegs)
	}
	got, _, err := replay(t, fs, false)
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, got.recs, want)
	for i := 1; i < len(got.segs); i++ {
		if got.segs[i] < got.segs[i-1] {
			t.Fatal("segments replayed out of order")
		}
	}
	gotCrash, _, err := replay(t, crash, false)
	if err != nil || len(gotCrash.recs) < len(want)-1 {
		t.Fatalf("after crash: %d records, %v", len(gotCrash.recs), err)
	}
}

// A crash while the last record was being written leaves any prefix of its
// bytes. Replay must yield exactly the records before it, truncate the
// segment, and leave a directory that accepts a new segment.
func TestTornTail(t *testing.T) {
	rng := newRand(t)
	for _, tc := range []struct {
		name         string
		before, last int // size of the record before the last one, and of the last one
		stride       int
	}{
		// The last record starts 5 bytes before a block boundary: padding first.
		{"after padding", record.BlockSize - record.HeaderSize - 5 - 2*(record.HeaderSize+8), 3000, 1},
		{"straddling a block", record.BlockSize - 1000, 3000, 1},
		{"multi-block", 100, 3*record.BlockSize + 100, 37},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newMem(t)
			w, _ := Create(Options{FS: fs, Dir: dir}, 1)
			want := [][]byte{rec(rng, 0, 8), rec(rng, 1, 8), rec(rng, 2, tc.before)}
			for _, r := range want {
				w.Append(r, false)
			}
			prevEnd := w.Size()
			w.Append(rec(rng, 3, tc.last), true)
			w.Close()
			full := readFile(t, fs, 1)
			for cut := prevEnd; cut < int64(len(full)); cut++ {
				if tc.stride > 1 && cut%int64(tc.stride) != 0 && cut-prevEnd > 100 && int64(len(full))-cut > 100 {
					continue
				}
				fs := newMem(t)
				writeFile(t, fs, 1, full[:cut])
				got, res, err := replay(t, fs, false)
				if err != nil {
					t.Fatalf("cut %d: %v", cut, err)
				}
				wantRecords(t, got.recs, want)
				if res.TornTail != (cut > prevEnd) || (res.TornTail && res.TruncatedAt != prevEnd) {
					t.Fatalf("cut %d: result %+v (previous record ends at %d)", cut, res, prevEnd)
				}
				if sz := fileSize(t, fs, 1); sz != prevEnd {
					t.Fatalf("cut %d: segment is %d bytes after replay, want %d", cut, sz, prevEnd)
				}
				if (cut-prevEnd)%8 != 0 && cut-prevEnd > 30 && int64(len(full))-cut > 30 {
					continue // the rest is the same for every cut; check a sample
				}
				// The truncation is durable.
				if sz := fileSize(t, fs.CrashClone(), 1); sz != prevEnd {
					t.Fatalf("cut %d: truncation not synced (%d)", cut, sz)
				}
				w, err := Create(Options{FS: fs, Dir: dir}, 2)
				if err != nil {
					t.Fatal(err)
				}
				w.Append([]byte("next"), true)
				w.Close()
				got, res, err = replay(t, fs, false)
				if err != nil || res.TornTail {
					t.Fatalf("cut %d: replay after reopen: %v %+v", cut, err, res)
				}
				wantRecords(t, got.recs, append(append([][]byte{}, want...), []byte("next")))
			}
		})
	}
}

// writeSegments writes segments 1..n, each with perSeg records of 1000
// bytes (about 2.2 blocks), and returns the records.
func writeSegments(t *testing.T, fs vfs.FS, n, perSeg int) [][]byte {
	rng := newRand(t)
	w, err := Create(Options{FS: fs, Dir: dir}, 1)
	if err != nil {
		t.Fatal(err)
	}
	var all [][]byte
	for s := 1; s <= n; s++ {
		if s > 1 {
			if err := w.Rotate(layout.FileNum(s)); err != nil {
				t.Fatal(err)
			}
		}
		for range perSeg {
			r := rec(rng, len(all), 1000)
			all = append(all, r)
			w.Append(r, false)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return all
}

func flipByte(t *testing.T, fs vfs.FS, num layout.FileNum, off int64) {
	b := readFile(t, fs, num)
	b[off] ^= 0x40
	writeFile(t, fs, num, b)
}

// recordEnd is the file offset at which record k (0-based) of a segment of
// 1000-byte records ends.
func recordEnd(k int) int64 {
	var f record.Framer
	n := 0
	for range k + 1 {
		n += f.FramedSize(1000)
		f = record.NewFramer(int64(n))
	}
	return headerSize + int64(n)
}

func TestCorruptMiddleSegment(t *testing.T) {
	fs := newMem(t)
	all := writeSegments(t, fs, 3, 70)
	damageAt := recordEnd(40) + 20 // inside record 41 of segment 2
	flipByte(t, fs, 2, damageAt)

	got, _, err := replay(t, fs, false)
	var ce *errs.CorruptionError
	if !errors.As(err, &ce) || !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("err = %v", err)
	}
	if _, err := fs.Stat("/db/quarantine"); err == nil {
		t.Fatal("a replay without Salvage made a quarantine")
	}
	if !strings.HasSuffix(ce.File, "000002.log") || ce.Offset != recordEnd(40) {
		t.Fatalf("error names %s at %d, want 000002.log at %d", ce.File, ce.Offset, recordEnd(40))
	}
	if len(got.recs) != 70+41 {
		t.Fatalf("%d records before the error, want %d", len(got.recs), 70+41)
	}
	before := readFile(t, fs, 2)

	// Salvage: copy segment 2 aside, drop only the damaged record, keep
	// the records after it and segment 3.
	got, res, err := replay(t, fs, true)
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, got.recs, append(append([][]byte{}, all[:70+41]...), all[70+42:]...))
	if len(res.Dropped) != 1 {
		t.Fatalf("Dropped = %+v", res.Dropped)
	}
	d := res.Dropped[0]
	if d.Segment != 2 || d.Offset != recordEnd(40) || d.Bytes != recordEnd(41)-recordEnd(40) || d.Records != 70+41 ||
		!errors.Is(d.Err, errs.ErrCorruption) {
		t.Fatalf("Damage = %+v", d)
	}
	if d.Quarantined != "/db/quarantine/000002.log" {
		t.Fatalf("quarantined as %q", d.Quarantined)
	}
	// The copy is the segment as it was, and durable.
	crashed := fs.CrashClone()
	if q := readPath(t, crashed, d.Quarantined); !bytes.Equal(q, before) {
		t.Fatal("the quarantined copy differs from the damaged segment")
	}
	// The salvage is durable: a second replay is clean.
	got, res, err = replay(t, crashed, false)
	if err != nil || len(res.Dropped) != 0 {
		t.Fatalf("after salvage: %+v, %v", res, err)
	}
	wantRecords(t, got.recs, append(append([][]byte{}, all[:70+41]...), all[70+42:]...))

	// Damage again, salvaged again: the first copy is never overwritten.
	flipByte(t, fs, 2, recordEnd(5)+20)
	_, res, err = replay(t, fs, true)
	if err != nil || len(res.Dropped) != 1 || res.Dropped[0].Quarantined != "/db/quarantine/000002.log.1" {
		t.Fatalf("second salvage: %+v, %v", res, err)
	}
	if q := readPath(t, fs, "/db/quarantine/000002.log"); !bytes.Equal(q, before) {
		t.Fatal("the first quarantined copy was overwritten")
	}
}

func readPath(t testing.TB, fs vfs.FS, path string) []byte {
	t.Helper()
	f, err := fs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCorruptLastSegmentValidFollows(t *testing.T) {
	fs := newMem(t)
	all := writeSegments(t, fs, 2, 100) // about 3 blocks per segment
	flipByte(t, fs, 2, recordEnd(9)+500)
	_, _, err := replay(t, fs, false)
	var ce *errs.CorruptionError
	if !errors.As(err, &ce) || !strings.HasSuffix(ce.File, "000002.log") || ce.Offset != recordEnd(9) {
		t.Fatalf("damage with valid records after it: %v", err)
	}
	got, res, err := replay(t, fs, true)
	if err != nil || res.TornTail || len(res.Dropped) != 1 || res.Dropped[0].Offset != recordEnd(9) {
		t.Fatalf("salvage: %+v %v", res, err)
	}
	wantRecords(t, got.recs, append(append([][]byte{}, all[:110]...), all[111:]...))
	if fileSize(t, fs, 2) != recordEnd(98) {
		t.Fatalf("rewritten segment is %d bytes, want %d (99 records)", fileSize(t, fs, 2), recordEnd(98))
	}
}

// A whole record that fails its checksum is corruption, even the last one
// of the last segment: a torn write leaves zeros or a short file, never a
// whole chunk of other bytes.
func TestCorruptLastRecordIsCorruption(t *testing.T) {
	fs := newMem(t)
	all := writeSegments(t, fs, 1, 100)
	size := fileSize(t, fs, 1)
	for _, at := range []int64{size - 1500, size - 10} { // inside record 98, inside record 99 (the last)
		flipByte(t, fs, 1, at)
		var ce *errs.CorruptionError
		if _, _, err := replay(t, fs, false); !errors.As(err, &ce) || ce.Offset > at || ce.Offset < recordEnd(97) {
			t.Fatalf("flip at %d: %v, want ErrCorruption", at, err)
		}
		if fileSize(t, fs, 1) != size {
			t.Fatalf("flip at %d: the segment was changed", at)
		}
		flipByte(t, fs, 1, at) // undo
	}
	got, _, err := replay(t, fs, false)
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, got.recs, all)
}

func header(version uint32, magicStr string) []byte {
	h := make([]byte, headerSize)
	copy(h, magicStr)
	binary.LittleEndian.PutUint32(h[8:], version)
	binary.LittleEndian.PutUint32(h[12:], uint32(xxhash.Sum64(h[:12])))
	return h
}

func TestHeader(t *testing.T) {
	valid := header(formatVersion, magic)
	enc := encodeHeader()
	if !bytes.Equal(valid, enc[:]) {
		t.Fatal("encodeHeader disagrees with the documented layout")
	}
	badSum := bytes.Clone(valid)
	badSum[13] ^= 1
	for _, tc := range []struct {
		name string
		seg1 []byte // first of two segments
		last []byte // the last segment
		want error
	}{
		{"newer version", valid, header(2, magic), errs.ErrNewerFormat},
		{"newer version middle", header(9, magic), valid, errs.ErrNewerFormat},
		{"bad magic", valid, header(1, "NOTAWAL\x00"), errs.ErrCorruption},
		{"bad checksum", valid, badSum, errs.ErrCorruption},
		{"short middle", valid[:10], valid, errs.ErrCorruption},
		{"short last", valid, valid[:5], nil},
		{"empty last", valid, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newMem(t)
			writeFile(t, fs, 1, tc.seg1)
			writeFile(t, fs, 2, tc.last)
			_, res, err := replay(t, fs, false)
			if tc.want == nil {
				if err != nil || !res.TornTail || fileSize(t, fs, 2) != headerSize {
					t.Fatalf("%+v %v", res, err)
				}
				if _, _, err := replay(t, fs, false, 1, 2); err != nil {
					t.Fatalf("second replay: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), ".log") {
				t.Fatalf("error does not name the segment: %v", err)
			}
			if _, err := OpenSegment(fs, dir, 2); tc.last != nil && !bytes.Equal(tc.last, valid) && !errors.Is(err, tc.want) {
				t.Fatalf("OpenSegment: %v", err)
			}
			_, _, err = replay(t, fs, true)
			if errors.Is(tc.want, errs.ErrNewerFormat) != errors.Is(err, errs.ErrNewerFormat) {
				t.Fatalf("salvage: %v", err)
			}
		})
	}
}

func TestReplayCallbackError(t *testing.T) {
	fs := newMem(t)
	writeSegments(t, fs, 1, 5)
	stop := errors.New("stop")
	n := 0
	res, err := Replay(RecoverOptions{FS: fs, Dir: dir}, []layout.FileNum{1}, func(layout.FileNum, []byte) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 || res.Records != 3 {
		t.Fatalf("err %v n %d res %+v", err, n, res)
	}
	if _, err := Replay(RecoverOptions{FS: fs, Dir: dir}, []layout.FileNum{9}, nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing segment: %v", err)
	}
}

func TestSyncFailureBreaksWriter(t *testing.T) {
	var failing atomic.Bool
	mem := newMem(t)
	fs := vfs.WithFaults(mem, func(op vfs.Op, path string) error {
		if op == vfs.OpSync && failing.Load() {
			return vfs.ErrInjected
		}
		return nil
	})
	w, err := Create(Options{FS: fs, Dir: dir}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append([]byte("durable"), true); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	if err := w.Append([]byte("lost"), true); !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("append with failing fsync: %v", err)
	}
	failing.Store(false) // a retry must not report success
	for name, call := range map[string]func() error{
		"append":      func() error { return w.Append([]byte("x"), false) },
		"append sync": func() error { return w.Append([]byte("x"), true) },
		"sync":        w.Sync,
		"rotate":      func() error { return w.Rotate(2) },
		"close":       w.Close,
	} {
		if err := call(); !errors.Is(err, vfs.ErrInjected) {
			t.Fatalf("%s on a broken writer: %v", name, err)
		}
	}
	got, _, err := replay(t, mem.CrashClone(), false)
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, got.recs, [][]byte{[]byte("durable")})
}

func TestWriteFailureENOSPC(t *testing.T) {
	mem := newMem(t)
	var full atomic.Bool
	fs := vfs.WithTornWrites(mem, func(op vfs.Op, path string) error {
		if op == vfs.OpWrite && full.Load() {
			return syscall.ENOSPC
		}
		return nil
	})
	w, _ := Create(Options{FS: fs, Dir: dir}, 1)
	w.Append([]byte("ok"), true)
	full.Store(true)
	if err := w.Append(make([]byte, 5000), true); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v", err)
	}
	full.Store(false)
	if err := w.Append([]byte("x"), true); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writer not broken: %v", err)
	}
	w.Close()
	// The torn half-write is in the file (never synced): Replay on the live
	// FS treats it as a torn tail.
	got, res, err := replay(t, mem, false)
	if err != nil || !res.TornTail {
		t.Fatalf("%+v %v", res, err)
	}
	wantRecords(t, got.recs, [][]byte{[]byte("ok")})
}

// The crash torture test: run a workload that dies at every possible
// operation, then look at what a power cut leaves. Every record whose
// synced Append (or a later Rotate/Sync) returned nil survives, and replay
// yields a prefix of what was appended: nothing invented, nothing out of
// order.
func TestCrashAtEveryOperation(t *testing.T) {
	rng := newRand(t)
	var recs [][]byte
	for i := range 40 {
		recs = append(recs, rec(rng, i, []int{10, 300, 5000, 40000}[i%4]))
	}
	workload := func(fs vfs.FS) (durable int) {
		w, err := Create(Options{FS: fs, Dir: dir, BufferSize: 2000}, 1)
		if err != nil {
			return 0
		}
		defer w.Close()
		for i, r := range recs {
			sync := i%3 == 2
			if err := w.Append(r, sync); err != nil {
				return durable
			}
			if sync {
				durable = i + 1
			}
			if i == 20 {
				if err := w.Rotate(2); err != nil {
					return durable
				}
				durable = i + 1
			}
		}
		if err := w.Sync(); err != nil {
			return durable
		}
		return len(recs)
	}
	probe := vfs.FailAfter(math.MaxInt64, vfs.ErrInjected)
	if n := workload(vfs.WithFaults(newMem(t), probe.Inject)); n != len(recs) {
		t.Fatalf("workload without faults: %d", n)
	}
	seed := *seedFlag
	for _, mode := range vfs.CrashModes {
		for _, torn := range []bool{false, true} {
			for n := range probe.Count() + 1 {
				mem := newMem(t)
				cd := vfs.FailAfter(n, vfs.ErrInjected)
				wrap := vfs.WithFaults
				if torn {
					wrap = vfs.WithTornWrites
				}
				durable := workload(wrap(mem, cd.Inject))
				crash := mem.CrashCloneWith(rand.New(rand.NewPCG(seed, uint64(n))), mode)
				where := fmt.Sprintf("seed %d %v torn=%v crash at op %d", seed, mode, torn, n)
				got, _, err := replay(t, crash, false)
				if err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				if len(got.recs) < durable || len(got.recs) > len(recs) {
					t.Fatalf("%s: %d records survive, %d were durable", where, len(got.recs), durable)
				}
				wantRecords(t, got.recs, recs[:len(got.recs)])
				// Recovery leaves a directory that replays cleanly again.
				if _, res, err := replay(t, crash, false); err != nil || res.TornTail {
					t.Fatalf("%s: second replay %+v %v", where, res, err)
				}
			}
		}
	}
}

// TestCrashManyUnsyncedWrites keeps many unsynced writes in flight (a tiny
// buffer: one write per record) and crashes with each mode: every synced
// record survives, the replay is a prefix of what was appended, and a
// subset crash (lost writes before kept ones) still reads as a torn tail.
func TestCrashManyUnsyncedWrites(t *testing.T) {
	seed := *seedFlag
	rng := newRand(t)
	var recs [][]byte
	for i := range 60 {
		recs = append(recs, rec(rng, i, 1+rng.IntN(3000)))
	}
	for _, mode := range vfs.CrashModes {
		for iter := range 100 {
			crng := rand.New(rand.NewPCG(seed, uint64(iter)))
			mem := newMem(t)
			w, err := Create(Options{FS: mem, Dir: dir, BufferSize: 1}, 1)
			if err != nil {
				t.Fatal(err)
			}
			durable := 0
			syncAt := crng.IntN(len(recs))
			for i, r := range recs {
				if err := w.Append(r, i == syncAt); err != nil {
					t.Fatal(err)
				}
				if i == syncAt {
					durable = i + 1
				}
			}
			crash := mem.CrashCloneWith(crng, mode)
			where := fmt.Sprintf("seed %d %v iter %d", seed, mode, iter)
			got, _, err := replay(t, crash, false)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if len(got.recs) < durable {
				t.Fatalf("%s: %d records survive, %d were synced", where, len(got.recs), durable)
			}
			wantRecords(t, got.recs, recs[:len(got.recs)])
			if _, res, err := replay(t, crash, false); err != nil || res.TornTail {
				t.Fatalf("%s: second replay %+v %v", where, res, err)
			}
			w.Close()
		}
	}
}

// A lost write followed by kept ones leaves a zero hole and then valid
// chunks that were never synced: a torn tail, truncated at the hole.
func TestZeroHoleThenValidChunks(t *testing.T) {
	fs := newMem(t)
	all := writeSegments(t, fs, 1, 30)
	b := readFile(t, fs, 1)
	clear(b[recordEnd(19):recordEnd(21)]) // records 20 and 21 lost, 22.. kept
	writeFile(t, fs, 1, b)
	got, res, err := replay(t, fs, false)
	if err != nil || !res.TornTail || res.TruncatedAt != recordEnd(19) {
		t.Fatalf("%+v %v", res, err)
	}
	wantRecords(t, got.recs, all[:20])
	if fileSize(t, fs.CrashClone(), 1) != recordEnd(19) {
		t.Fatal("truncation not durable")
	}

	// The same hole with a bit flip in a later whole record: not what a
	// crash leaves.
	fs = newMem(t)
	writeSegments(t, fs, 1, 30)
	b = readFile(t, fs, 1)
	clear(b[recordEnd(19):recordEnd(21)])
	b[recordEnd(25)+100] ^= 0x10
	writeFile(t, fs, 1, b)
	var ce *errs.CorruptionError
	if _, _, err := replay(t, fs, false); !errors.As(err, &ce) || ce.Offset != recordEnd(19) {
		t.Fatalf("hole then a damaged whole record: %v", err)
	}
}

// replayClean replays with a clean-close record.
func replayClean(t testing.TB, fs vfs.FS, clean CleanClose, salvage bool) (replayed, Result, error) {
	t.Helper()
	nums, err := List(fs, dir)
	if err != nil {
		t.Fatal(err)
	}
	var out replayed
	res, err := Replay(RecoverOptions{FS: fs, Dir: dir, Clean: &clean, Salvage: salvage}, nums, func(seg layout.FileNum, r []byte) error {
		out.recs = append(out.recs, bytes.Clone(r))
		return nil
	})
	return out, res, err
}

// After a clean close a torn tail cannot exist: damage that a crash could
// explain is corruption, naming segment and offset, and the segment is
// left as it is.
func TestCleanCloseRefusesDamage(t *testing.T) {
	build := func() (*vfs.MemFS, [][]byte, CleanClose) {
		fs := newMem(t)
		all := writeSegments(t, fs, 2, 40)
		return fs, all, CleanClose{Segment: 2, Size: fileSize(t, fs, 2)}
	}
	fs, all, clean := build()
	got, res, err := replayClean(t, fs, clean, false)
	if err != nil || res.TornTail || len(res.Dropped) != 0 {
		t.Fatalf("undamaged: %+v %v", res, err)
	}
	wantRecords(t, got.recs, all)

	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
		offset int64
	}{
		{"bit flip in the last record", func(b []byte) []byte { b[len(b)-10] ^= 1; return b }, recordEnd(38)},
		{"last record cut short", func(b []byte) []byte { return b[:len(b)-10] }, -10},
		{"last record zeroed", func(b []byte) []byte { clear(b[recordEnd(38):]); return b }, recordEnd(38)},
		{"zeros appended", func(b []byte) []byte { return append(b, make([]byte, 20)...) }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, _, clean := build()
			b := tc.damage(readFile(t, fs, 2))
			writeFile(t, fs, 2, b)
			want := tc.offset
			if want <= 0 {
				want += clean.Size
			}
			_, _, err := replayClean(t, fs, clean, false)
			var ce *errs.CorruptionError
			if !errors.As(err, &ce) || !strings.HasSuffix(ce.File, "000002.log") || ce.Offset != want {
				t.Fatalf("got %v, want corruption in 000002.log at %d", err, want)
			}
			if !bytes.Equal(readFile(t, fs, 2), b) {
				t.Fatal("the damaged segment was changed")
			}
		})
	}

	// A segment after the one recorded, or the recorded one missing.
	fs, _, clean = build()
	writeFile(t, fs, 3, encodeHeaderSlice())
	if _, _, err := replayClean(t, fs, clean, false); !errors.Is(err, errs.ErrCorruption) || !strings.Contains(err.Error(), "000003.log") {
		t.Fatalf("extra segment: %v", err)
	}
	fs, _, clean = build()
	if err := fs.Remove(layout.Path(dir, layout.TypeLog, 2)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := replayClean(t, fs, clean, false); !errors.Is(err, errs.ErrCorruption) || !strings.Contains(err.Error(), "000002.log") {
		t.Fatalf("missing segment: %v", err)
	}

	// Salvage after a clean close: the cut-short tail is reported lost,
	// not taken for a torn write.
	fs, all, clean = build()
	b := readFile(t, fs, 2)
	writeFile(t, fs, 2, b[:recordEnd(38)+5])
	got, res, err = replayClean(t, fs, clean, true)
	if err != nil || res.TornTail || len(res.Dropped) == 0 {
		t.Fatalf("salvage: %+v %v", res, err)
	}
	wantRecords(t, got.recs, all[:79])
	for _, d := range res.Dropped {
		if d.Records != 79 || d.Segment != 2 {
			t.Fatalf("damage %+v", d)
		}
	}
}

func encodeHeaderSlice() []byte { h := encodeHeader(); return h[:] }

// Salvage of a segment whose header is damaged: the segment is copied
// aside, and every record after the header is kept.
func TestSalvageBadHeader(t *testing.T) {
	fs := newMem(t)
	all := writeSegments(t, fs, 2, 30)
	b := readFile(t, fs, 1)
	b[3] ^= 0xff
	writeFile(t, fs, 1, b)
	var damages []Damage
	var seen int
	res, err := Replay(RecoverOptions{FS: fs, Dir: dir, Salvage: true, OnDamage: func(d Damage) {
		if d.Records != seen {
			t.Errorf("OnDamage after %d records, Records = %d", seen, d.Records)
		}
		damages = append(damages, d)
	}}, []layout.FileNum{1, 2}, func(layout.FileNum, []byte) error { seen++; return nil })
	if err != nil || res.Records != len(all) || len(damages) != 1 || damages[0].Offset != 0 || damages[0].Bytes != headerSize {
		t.Fatalf("%+v %+v %v", res, damages, err)
	}
	if q := readPath(t, fs, damages[0].Quarantined); !bytes.Equal(q, b) {
		t.Fatal("quarantined copy differs")
	}
	got, res, err := replay(t, fs, false)
	if err != nil || len(res.Dropped) != 0 {
		t.Fatalf("after salvage: %+v %v", res, err)
	}
	wantRecords(t, got.recs, all)
}

func BenchmarkAppendSync16(b *testing.B) {
	fs := vfs.Default
	d := b.TempDir()
	w, err := Create(Options{FS: fs, Dir: d}, 1)
	if err != nil {
		b.Fatal(err)
	}
	rec := make([]byte, 128)
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	b.ResetTimer()
	const goroutines = 16
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < b.N; i += goroutines {
				if err := w.Append(rec, true); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	st := w.Stats()
	b.ReportMetric(float64(st.Appends)/float64(st.Syncs), "appends/fsync")
	w.Close()
}

func BenchmarkAppendNoSync(b *testing.B) {
	d := b.TempDir()
	w, err := Create(Options{FS: vfs.Default, Dir: d}, 1)
	if err != nil {
		b.Fatal(err)
	}
	rec := make([]byte, 128)
	// Warm the two buffers up, then measure the steady state.
	for range 20000 {
		w.Append(rec, false)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		if err := w.Append(rec, false); err != nil {
			b.Fatal(err)
		}
		if w.Full() { // keep the disk footprint bounded; rare, so amortised away
			old := w.Num()
			if err := w.Rotate(old + 1); err != nil {
				b.Fatal(err)
			}
			vfs.Default.Remove(layout.Path(d, layout.TypeLog, old))
		}
	}
	w.Close()
}

// A Sync that races with a Rotate must return once the sealed segment is
// synced, not wait for the new segment to reach the old one's size.
func TestSyncDuringRotate(t *testing.T) {
	fs, dir := vfs.NewMem(), "/wal"
	if err := fs.MkdirAll(dir); err != nil {
		t.Fatal(err)
	}
	w, err := Create(Options{FS: fs, Dir: dir}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rec := bytes.Repeat([]byte("x"), 5000)
	for i := range 200 {
		if err := w.Append(rec, false); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- w.Sync() }()
		if err := w.Rotate(layout.FileNum(i + 2)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("iteration %d: Sync did not return after Rotate", i)
		}
	}
}

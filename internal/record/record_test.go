package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
)

var seedFlag = flag.Uint64("seed", 1, "seed for randomized tests")

func newRand(t testing.TB) *rand.Rand {
	t.Logf("seed %d", *seedFlag)
	return rand.New(rand.NewPCG(*seedFlag, 0x9e3779b97f4a7c15))
}

// base is a pretend file header, so offsets in errors are tested too.
const base = 16

func payload(rng *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p
}

// encode frames recs into a stream and returns it with each record's
// [start, end) file offsets (start is the first chunk header, after any
// padding).
func encode(recs [][]byte) (stream []byte, starts, ends []int64) {
	var f Framer
	for _, r := range recs {
		before := len(stream)
		stream = f.Append(stream, r)
		// Padding, if any, precedes the first header.
		pad := len(stream) - before - framedNoPad(len(r), before)
		starts = append(starts, base+int64(before+pad))
		ends = append(ends, base+int64(len(stream)))
	}
	return stream, starts, ends
}

func framedNoPad(n, streamLen int) int {
	off := streamLen % BlockSize
	if BlockSize-off < HeaderSize {
		off = 0
	}
	total := 0
	for first := true; first || n > 0; first = false {
		if BlockSize-off < HeaderSize {
			total += BlockSize - off
			off = 0
		}
		c := min(n, BlockSize-off-HeaderSize)
		total += HeaderSize + c
		off += HeaderSize + c
		n -= c
	}
	return total
}

func readAll(t *testing.T, stream []byte) ([][]byte, *Reader, error) {
	t.Helper()
	r := NewReader(bytes.NewReader(stream), "test.log", base)
	var out [][]byte
	for {
		rec, err := r.Next()
		if err != nil {
			return out, r, err
		}
		out = append(out, bytes.Clone(rec))
	}
}

func sizes(rng *rand.Rand) []int {
	s := []int{0, 1, 7, HeaderSize, BlockSize - 2*HeaderSize, BlockSize - HeaderSize - 1,
		BlockSize - HeaderSize, BlockSize - HeaderSize + 1, BlockSize, BlockSize + 1,
		3*BlockSize + 5, 0, 2}
	for range 60 {
		switch rng.IntN(3) {
		case 0:
			s = append(s, rng.IntN(64))
		case 1:
			s = append(s, rng.IntN(4096))
		default:
			s = append(s, rng.IntN(3*BlockSize))
		}
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	rng := newRand(t)
	var recs [][]byte
	for _, n := range sizes(rng) {
		recs = append(recs, payload(rng, n))
	}
	stream, starts, ends := encode(recs)
	r := NewReader(bytes.NewReader(stream), "test.log", base)
	if r.End() != base {
		t.Fatalf("End before any record = %d", r.End())
	}
	for i, want := range recs {
		got, err := r.Next()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("record %d: %d bytes, want %d", i, len(got), len(want))
		}
		if r.Offset() != starts[i] || r.End() != ends[i] {
			t.Fatalf("record %d: offset %d end %d, want %d %d", i, r.Offset(), r.End(), starts[i], ends[i])
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after last: %v", err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("EOF is not sticky: %v", err)
	}
}

func TestWriterMatchesFramer(t *testing.T) {
	rng := newRand(t)
	var buf bytes.Buffer
	w := NewWriter(&buf)
	var recs [][]byte
	for i, n := range sizes(rng) {
		p := payload(rng, n)
		recs = append(recs, p)
		w.Write(p)
		if i%5 == 0 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	w.Flush()
	stream, _, _ := encode(recs)
	if !bytes.Equal(buf.Bytes(), stream) {
		t.Fatal("Writer output differs from Framer output")
	}
}

func TestFramedSizeAndResume(t *testing.T) {
	rng := newRand(t)
	var f Framer
	var stream []byte
	for _, n := range sizes(rng) {
		p := payload(rng, n)
		want := f.FramedSize(n)
		// A Framer made for the stream so far frames identically.
		g := NewFramer(int64(len(stream)))
		viaNew := g.Append(nil, p)
		before := len(stream)
		stream = f.Append(stream, p)
		if got := len(stream) - before; got != want {
			t.Fatalf("FramedSize(%d) = %d, Append added %d", n, want, got)
		}
		if !bytes.Equal(viaNew, stream[before:]) {
			t.Fatalf("NewFramer(%d) frames a %d-byte record differently", before, n)
		}
	}
}

func TestEmptyStream(t *testing.T) {
	_, r, err := readAll(t, nil)
	if err != io.EOF || r.End() != base {
		t.Fatalf("err %v end %d", err, r.End())
	}
}

// A stream cut anywhere yields exactly the whole records before the cut,
// then either a clean EOF (cut at a record boundary or inside the padding
// that follows one) or a corruption error; End is the end of the last
// whole record.
func TestTruncatedStream(t *testing.T) {
	rng := newRand(t)
	recs := [][]byte{payload(rng, 100), payload(rng, BlockSize-100-2*HeaderSize-5), payload(rng, 3),
		payload(rng, BlockSize+300), payload(rng, 50)}
	stream, _, ends := encode(recs)
	for cut := 0; cut <= len(stream); cut++ {
		if cut > 200 && cut < len(stream)-200 && cut%BlockSize > 200 && cut%BlockSize < BlockSize-200 && cut%97 != 0 {
			continue // keep the test fast: all cuts near boundaries, a sample elsewhere
		}
		got, r, err := readAll(t, stream[:cut])
		whole := 0
		for whole < len(recs) && ends[whole] <= base+int64(cut) {
			whole++
		}
		if len(got) != whole {
			t.Fatalf("cut %d: %d records, want %d (err %v)", cut, len(got), whole, err)
		}
		for i := range got {
			if !bytes.Equal(got[i], recs[i]) {
				t.Fatalf("cut %d: record %d differs", cut, i)
			}
		}
		wantEnd := int64(base)
		if whole > 0 {
			wantEnd = ends[whole-1]
		}
		if r.End() != wantEnd {
			t.Fatalf("cut %d: End %d, want %d", cut, r.End(), wantEnd)
		}
		if err != io.EOF {
			if !errors.Is(err, errs.ErrCorruption) {
				t.Fatalf("cut %d: %v", cut, err)
			}
			if base+int64(cut)-wantEnd < HeaderSize && base+int64(cut) == wantEnd {
				t.Fatalf("cut %d at a record end gave %v", cut, err)
			}
		} else if gap := base + int64(cut) - wantEnd; gap >= HeaderSize {
			t.Fatalf("cut %d: clean EOF with %d unread bytes", cut, gap)
		}
	}
}

// Every byte of a stream is covered by a checksum or the zero-padding
// check: flipping any one byte never yields wrong data, and is reported.
func TestEveryByteFlipDetected(t *testing.T) {
	rng := newRand(t)
	recs := [][]byte{payload(rng, 10), payload(rng, BlockSize-10-2*HeaderSize-4), payload(rng, 700),
		payload(rng, 2*BlockSize), payload(rng, 1)}
	stream, starts, _ := encode(recs)
	mut := bytes.Clone(stream)
	for i := range stream {
		if i%BlockSize > 100 && i%BlockSize < BlockSize-100 && i%13 != 0 {
			continue
		}
		mut[i] ^= 1 << (i % 8)
		got, _, err := readAll(t, mut)
		mut[i] = stream[i]
		var ce *errs.CorruptionError
		if !errors.As(err, &ce) || ce.File != "test.log" {
			t.Fatalf("flip at %d: err %v", i, err)
		}
		if ce.Offset < base || ce.Offset > base+int64(i) {
			t.Fatalf("flip at %d: reported offset %d", i, ce.Offset)
		}
		for j := range got {
			if !bytes.Equal(got[j], recs[j]) {
				t.Fatalf("flip at %d: record %d returned wrong data", i, j)
			}
			if starts[j] > base+int64(i) {
				t.Fatalf("flip at %d: record %d (at %d) returned past the damage", i, j, starts[j])
			}
		}
	}
}

// tailWrites frames recs as one write each and returns the stream with a
// pretend header (base zero bytes) in front, and each write's [start, end)
// file offsets. Payload bytes are never zero, so a damaged whole chunk
// never reads as cut short (the ambiguity CheckTail documents).
func tailWrites(rng *rand.Rand, n int) (file []byte, starts, ends []int64) {
	var f Framer
	file = make([]byte, base)
	for range n {
		size := 1 + rng.IntN(3*BlockSize/2)
		if rng.IntN(3) == 0 {
			size = 1 + rng.IntN(200)
		}
		p := payload(rng, size)
		for i := range p {
			p[i] |= 1
		}
		starts = append(starts, int64(len(file)))
		file = f.Append(file[base:], p)
		file = append(make([]byte, base), file...)
		ends = append(ends, int64(len(file)))
	}
	return file, starts, ends
}

// TestCheckTail builds the crash outcomes a log can show after its last
// whole record (writes lost, kept out of order, torn) and checks that all
// of them are torn tails, and that a bit flip in a whole chunk, or garbage,
// is corruption naming its offset.
func TestCheckTail(t *testing.T) {
	rng := newRand(t)
	for iter := range 300 {
		file, starts, ends := tailWrites(rng, 2+rng.IntN(6))
		k := rng.IntN(len(starts)) // writes before k are whole and synced
		from := starts[k]
		crashed := bytes.Clone(file)
		var desc string
		switch rng.IntN(3) {
		case 0: // a prefix of the file
			cut := from + rng.Int64N(int64(len(file))-from+1)
			crashed = crashed[:cut]
			desc = fmt.Sprintf("cut at %d", cut)
		case 1: // a subset of the writes, each maybe torn
			last := int64(from)
			for w := k; w < len(starts); w++ {
				switch rng.IntN(3) {
				case 0: // lost
					clear(crashed[starts[w]:ends[w]])
				case 1: // torn at a sector boundary, if one is inside
					q := (starts[w]/SectorSize + 1) * SectorSize
					if q < ends[w] {
						q += rng.Int64N((ends[w]-q+SectorSize-1)/SectorSize) * SectorSize
						clear(crashed[q:ends[w]])
					}
					last = ends[w]
				default:
					last = ends[w]
				}
			}
			crashed = crashed[:max(last, from)]
			desc = "subset"
		default: // the first unsynced write lost, a later one kept
			clear(crashed[starts[k]:ends[k]])
			desc = "hole"
		}
		if err := CheckTail(bytes.NewReader(crashed), "test.log", base, from, int64(len(crashed))); err != nil {
			var nz []int
			for w := range starts {
				if int(starts[w]) < len(crashed) {
					nz = append(nz, int(crashed[starts[w]]), int(crashed[min(int64(len(crashed)), ends[w])-1]))
				}
			}
			t.Fatalf("iter %d (%s, tail from %d of %d, writes %v..%v, first/last bytes %v): %v", iter, desc, from, len(crashed), starts, ends, nz, err)
		}

		// A bit flip inside a whole chunk of the tail is corruption, found
		// at that chunk (or a chunk before it that the flip made look
		// longer).
		w := k + rng.IntN(len(starts)-k)
		flipAt := starts[w] + rng.Int64N(ends[w]-starts[w]-1)
		if (flipAt-base)%BlockSize >= BlockSize-HeaderSize || isLengthByte(file, starts[w], flipAt) {
			// Block padding: checked below. A flipped length can make the
			// last chunk run past the end of the file, which is what a cut
			// write looks like (the documented ambiguity).
			continue
		}
		bad := bytes.Clone(file)
		bad[flipAt] ^= 0x40
		err := CheckTail(bytes.NewReader(bad), "test.log", base, from, int64(len(bad)))
		var ce *errs.CorruptionError
		if !errors.As(err, &ce) || ce.File != "test.log" || ce.Offset > flipAt || ce.Offset < from {
			t.Fatalf("iter %d: flip at %d (write %d at %d..%d, tail from %d, %d writes, size %d): %v\n%x", iter, flipAt, w, starts[w], ends[w], from, len(starts), len(bad), err, bad[starts[w]:min(ends[w], starts[w]+40)])
		}
	}

	for _, tc := range []struct {
		name string
		tail []byte
		want int64 // offset of the error, -1 for a torn tail
	}{
		{"zeros", make([]byte, 100), -1},
		{"zeros then garbage", append(append(make([]byte, 50), bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 4)...), make([]byte, 40)...), base + 50},
		{"short garbage at the end", []byte{1, 2, 3}, -1},
		// A write torn at the sector boundary 512 (file offset) four bytes
		// into a header; the same bytes one byte earlier are not a tear.
		{"header cut at a sector boundary, then zeros", append(append(make([]byte, 492), 9, 9, 9, 9), make([]byte, 40)...), -1},
		{"header cut inside a sector", append(append(make([]byte, 484), 9, 9, 9, 9), make([]byte, 40)...), base + 484},
		{"whole header, payload cut by the end", []byte{1, 2, 3, 4, 5, 6, 7, 8, 200, 0, 1, 7, 7}, -1},
		{"chunk longer than its block", []byte{1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 1, 7, 7}, base},
	} {
		file := append(make([]byte, base), tc.tail...)
		err := CheckTail(bytes.NewReader(file), "test.log", base, base, int64(len(file)))
		var ce *errs.CorruptionError
		switch {
		case tc.want < 0 && err != nil:
			t.Errorf("%s: %v, want a torn tail", tc.name, err)
		case tc.want >= 0 && (!errors.As(err, &ce) || ce.Offset != tc.want):
			t.Errorf("%s: %v, want corruption at %d", tc.name, err, tc.want)
		}
	}
	// Non-zero padding at a block's end.
	file := make([]byte, base+BlockSize)
	file[base+BlockSize-3] = 1
	if err := CheckTail(bytes.NewReader(file), "test.log", base, base, int64(len(file))); !errors.Is(err, errs.ErrCorruption) {
		t.Errorf("non-zero padding: %v", err)
	}
}

// isLengthByte reports whether off is in the length field of a chunk of
// the write that starts at start.
func isLengthByte(file []byte, start, off int64) bool {
	for p := start; p < off; {
		if BlockSize-(p-base)%BlockSize < HeaderSize {
			p += BlockSize - (p-base)%BlockSize
			continue
		}
		if off == p+8 || off == p+9 {
			return true
		}
		p += HeaderSize + int64(binary.LittleEndian.Uint16(file[p+8:p+10]))
	}
	return false
}

// TestResync damages one record and reads on from the next record start:
// every record after the damaged one comes back.
func TestResync(t *testing.T) {
	rng := newRand(t)
	for iter := range 100 {
		var recs [][]byte
		for range 3 + rng.IntN(8) {
			recs = append(recs, payload(rng, 1+rng.IntN(BlockSize)))
		}
		stream, starts, ends := encode(recs)
		file := append(make([]byte, base), stream...)
		k := rng.IntN(len(recs))
		flipAt := starts[k] + rng.Int64N(ends[k]-starts[k])
		file[flipAt] ^= 0x08
		off, ok, err := NextRecordStart(bytes.NewReader(file), base, flipAt+1, int64(len(file)))
		if err != nil {
			t.Fatal(err)
		}
		if k == len(recs)-1 {
			if ok {
				t.Fatalf("iter %d: a record start at %d after the last record", iter, off)
			}
			continue
		}
		if !ok || off != starts[k+1] {
			t.Fatalf("iter %d: resync at %d, %v; record %d starts at %d", iter, off, ok, k+1, starts[k+1])
		}
		r := NewReaderAt(bytes.NewReader(file), "test.log", base, off, int64(len(file)))
		for j := k + 1; j < len(recs); j++ {
			rec, err := r.Next()
			if err != nil || !bytes.Equal(rec, recs[j]) || r.Offset() != starts[j] {
				t.Fatalf("iter %d: record %d after resync: %v at %d", iter, j, err, r.Offset())
			}
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("iter %d: after the last record: %v", iter, err)
		}
	}
}

func TestErrorsNameReason(t *testing.T) {
	var f Framer
	stream := f.Append(nil, []byte("hello"))
	cases := map[string]func([]byte){
		"invalid chunk type":  func(b []byte) { b[10] = 9 },
		"zeroed chunk header": func(b []byte) { clear(b) },
		"checksum mismatch":   func(b []byte) { b[len(b)-1] ^= 1 },
		"overruns block":      func(b []byte) { b[8] = 200 },
	}
	for want, damage := range cases {
		mut := bytes.Clone(stream)
		damage(mut)
		_, _, err := readAll(t, mut)
		if !errors.Is(err, errs.ErrCorruption) || !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Fatalf("%s: got %v", want, err)
		}
	}
	// A fragment with no first chunk.
	var g Framer
	big := g.Append(nil, make([]byte, BlockSize+10))
	_, _, err := readAll(t, big[BlockSize:])
	if !errors.Is(err, errs.ErrCorruption) {
		t.Fatalf("orphan fragment: %v", err)
	}
}

func BenchmarkFramerAppend(b *testing.B) {
	p := make([]byte, 128)
	buf := make([]byte, 0, 1<<20)
	var f Framer
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if len(buf) > 1<<20-4096 {
			buf = buf[:0]
		}
		buf = f.Append(buf, p)
	}
}

func BenchmarkReaderNext(b *testing.B) {
	var f Framer
	var stream []byte
	for range 10000 {
		stream = f.Append(stream, make([]byte, 128))
	}
	br := bytes.NewReader(stream)
	r := NewReader(br, "bench", 0)
	b.ReportAllocs()
	b.SetBytes(128)
	for b.Loop() {
		if _, err := r.Next(); err != nil {
			br.Reset(stream)
			*r = *NewReader(br, "bench", 0)
		}
	}
}

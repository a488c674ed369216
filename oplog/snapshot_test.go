package oplog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/plures/pluresdb/internal/errs"
)

type snapEntry struct {
	ns         byte
	key, state []byte
}

// testSnapshot writes n entries with codec and returns the bytes and the
// entries.
func testSnapshot(t *testing.T, n int, codec SnapshotCodec) ([]byte, []snapEntry, SnapshotHeader) {
	t.Helper()
	h := SnapshotHeader{Source: repA, VV: VersionVector{repA: 40, repB: 7}, Horizon: testTS + 3, Clock: testTS + 99}
	var buf bytes.Buffer
	sw, err := NewSnapshotWriter(&buf, h, codec)
	if err != nil {
		t.Fatal(err)
	}
	var entries []snapEntry
	for i := range n {
		ns := byte(1)
		if i >= n*3/4 {
			ns = 5
		}
		st := apply(t, nil, repA, Op{Replica: repB, Seq: uint64(i + 1), HLC: testTS + Timestamp(i), Kind: KindPut,
			Value: bytes.Repeat([]byte{byte(i)}, i%300)})
		p, err := AppendPortableState(nil, st, repA, 40)
		if err != nil {
			t.Fatal(err)
		}
		e := snapEntry{ns, fmt.Appendf(nil, "key%08d", i), p}
		if err := sw.Add(e.ns, e.key, e.state); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	tr, err := sw.Close()
	if err != nil {
		t.Fatal(err)
	}
	if tr.Entries != uint64(n) || sw.Written() != int64(buf.Len()) {
		t.Fatalf("trailer %+v, written %d of %d", tr, sw.Written(), buf.Len())
	}
	return buf.Bytes(), entries, h
}

func readSnapshot(b []byte) ([]snapEntry, SnapshotHeader, error) {
	sr, err := NewSnapshotReader(bytes.NewReader(b))
	if err != nil {
		return nil, SnapshotHeader{}, err
	}
	var out []snapEntry
	for {
		ns, k, s, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return out, sr.Header(), nil
		}
		if err != nil {
			return out, sr.Header(), err
		}
		out = append(out, snapEntry{ns, bytes.Clone(k), bytes.Clone(s)})
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	for _, codec := range []SnapshotCodec{SnapshotS2, SnapshotZstd, SnapshotRaw} {
		for _, n := range []int{0, 1, 5000} {
			b, want, h := testSnapshot(t, n, codec)
			got, gh, err := readSnapshot(b)
			if err != nil {
				t.Fatalf("codec %d, %d entries: %v", codec, n, err)
			}
			if gh.Source != h.Source || !gh.VV.Equal(h.VV) || gh.Horizon != h.Horizon || gh.Clock != h.Clock {
				t.Fatalf("header %+v, want %+v", gh, h)
			}
			if len(got) != len(want) {
				t.Fatalf("codec %d: %d entries, want %d", codec, len(got), len(want))
			}
			for i := range got {
				if got[i].ns != want[i].ns || !bytes.Equal(got[i].key, want[i].key) || !bytes.Equal(got[i].state, want[i].state) {
					t.Fatalf("codec %d: entry %d differs", codec, i)
				}
			}
		}
	}
}

// Every truncation and every flipped bit is refused with ErrCorruption
// (a flipped version byte may read as a newer format), never a panic,
// and never an io.EOF that would pass a damaged snapshot as whole.
func TestSnapshotDamage(t *testing.T) {
	b, _, _ := testSnapshot(t, 300, SnapshotS2)
	check := func(what string, d []byte) {
		t.Helper()
		_, _, err := readSnapshot(d)
		if err == nil {
			t.Fatalf("%s: accepted", what)
		}
		if !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
			t.Fatalf("%s: %v does not wrap ErrCorruption", what, err)
		}
	}
	for n := 0; n < len(b); n += 1 + n/50 {
		check(fmt.Sprintf("truncated to %d", n), b[:n])
	}
	check("one byte short", b[:len(b)-1])
	check("a byte after the trailer", append(bytes.Clone(b), 0))
	for i := 0; i < len(b); i += 1 + i/200 {
		d := bytes.Clone(b)
		d[i] ^= 1 << (i % 8)
		check(fmt.Sprintf("bit flipped at %d", i), d)
	}
	d := bytes.Clone(b)
	d[len(snapshotMagic)] = snapshotVersion + 1
	if _, _, err := readSnapshot(d); !errors.Is(err, errs.ErrNewerFormat) {
		t.Fatalf("newer version: %v", err)
	}
}

// The writer refuses entries out of order, and the reader refuses a
// stream whose entries are out of order even with valid checksums.
func TestSnapshotOrder(t *testing.T) {
	var buf bytes.Buffer
	sw, err := NewSnapshotWriter(&buf, SnapshotHeader{Source: repA}, SnapshotS2)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := AppendPortableState(nil, AppendPutState(nil, testTS, []byte("v")), repA, 1)
	if err := sw.Add(1, []byte("b"), p); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b"} {
		if err := sw.Add(1, []byte(k), p); err == nil {
			t.Errorf("key %q after b accepted", k)
		}
	}
	if err := sw.Add(0, []byte("z"), p); err == nil {
		t.Error("a lower namespace accepted")
	}
	if _, err := NewSnapshotWriter(&buf, SnapshotHeader{}, SnapshotS2); err == nil {
		t.Error("snapshot of the zero replica accepted")
	}
}

// The reader holds a chunk at a time: reading a large snapshot from a
// reader that counts what was pulled shows Next returning entries long
// before the end.
func TestSnapshotReaderStreams(t *testing.T) {
	b, _, _ := testSnapshot(t, 20000, SnapshotRaw)
	cr := &countingReader{r: bytes.NewReader(b)}
	sr, err := NewSnapshotReader(cr)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := sr.Next(); err != nil {
		t.Fatal(err)
	}
	if cr.n > int64(len(b))/4 {
		t.Fatalf("first entry after reading %d of %d bytes", cr.n, len(b))
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func BenchmarkSnapshotWrite(b *testing.B) {
	p, _ := AppendPortableState(nil, AppendPutState(nil, testTS, bytes.Repeat([]byte("v"), 100)), repA, 1)
	b.SetBytes(int64(len(p) + 12))
	sw, err := NewSnapshotWriter(io.Discard, SnapshotHeader{Source: repA}, SnapshotS2)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		if err := sw.Add(1, fmt.Appendf(nil, "key%012d", i), p); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := sw.Close(); err != nil {
		b.Fatal(err)
	}
}

package lsm

import (
	"bytes"
	"fmt"
	"sort"
	"testing"
)

func TestBlockRoundTrip(t *testing.T) {
	rng := sstRand(t)
	for _, interval := range []int{1, 2, 16, 100} {
		for _, n := range []int{0, 1, 15, 16, 17, 500} {
			keys := map[string]bool{}
			for len(keys) < n {
				keys[fmt.Sprintf("k%0*d", rng.IntN(6)+1, rng.IntN(1000000))] = true
			}
			var es []sstEntry
			for k := range keys {
				es = append(es, sstEntry{MakeInternalKey([]byte(k), SeqNum(rng.IntN(100)), KindSet), bytes.Repeat([]byte{byte(len(es))}, rng.IntN(300))})
			}
			sort.Slice(es, func(i, j int) bool { return CompareInternal(es[i].ikey, es[j].ikey) < 0 })
			w := blockWriter{restartInterval: interval}
			for _, e := range es {
				w.add(e.ikey, e.value)
			}
			if w.estimatedSize() != len(w.finish()) {
				t.Fatal("estimatedSize differs from the finished size")
			}
			b, err := parseBlock(w.buf)
			if err != nil {
				t.Fatalf("interval %d n %d: %v", interval, n, err)
			}
			if want := (n + interval - 1) / interval; b.numRestarts != want {
				t.Fatalf("interval %d n %d: %d restarts, want %d", interval, n, b.numRestarts, want)
			}
			var it blockIter
			it.init(b, TrailerLen)
			i := 0
			for ok := it.First(); ok; ok = it.Next() {
				if !bytes.Equal(it.key, es[i].ikey) || !bytes.Equal(it.val, es[i].value) {
					t.Fatalf("entry %d: got %q want %q", i, it.key, es[i].ikey)
				}
				i++
			}
			if i != n || it.err != nil {
				t.Fatalf("iterated %d of %d entries, err %v", i, n, it.err)
			}
			for j, e := range es {
				uk, tr := splitSeekKey(e.ikey)
				if !it.seekGE(uk, tr) || !bytes.Equal(it.key, e.ikey) {
					t.Fatalf("seek to entry %d landed on %q", j, it.key)
				}
				// Just before the key: a user key one byte shorter sorts
				// before it and after the previous one only sometimes, so
				// check against the model.
				target := MakeInternalKey(uk[:len(uk)-1], MaxSeqNum, KindMax)
				k := sort.Search(len(es), func(x int) bool { return CompareInternal(es[x].ikey, target) >= 0 })
				ok := it.seekGE(splitSeekKey(target))
				if ok != (k < len(es)) || (ok && !bytes.Equal(it.key, es[k].ikey)) {
					t.Fatalf("seek to %q: ok %v key %q", target, ok, it.key)
				}
			}
			if it.seekGE([]byte{0xff, 0xff, 0xff}, 0) {
				t.Fatal("seek past the end found an entry")
			}
			var iks, vals [][]byte
			for _, e := range es {
				iks, vals = append(iks, e.ikey), append(vals, e.value)
			}
			checkRandomWalk(t, blockWalker{&it}, iks, vals, 500, rng.IntN, func() []byte {
				if n > 0 && rng.IntN(2) == 0 {
					return es[rng.IntN(n)].ikey
				}
				return MakeInternalKey(fmt.Appendf(nil, "k%0*d", rng.IntN(6)+1, rng.IntN(1000000)), MaxSeqNum, KindMax)
			})
		}
	}
}

// blockWalker adapts a blockIter to InternalIterator for checkRandomWalk.
type blockWalker struct{ *blockIter }

func (w blockWalker) SeekGE(k []byte) bool { return w.seekGE(splitSeekKey(k)) }
func (w blockWalker) SeekLT(k []byte) bool { return w.seekLT(splitSeekKey(k)) }
func (w blockWalker) Valid() bool          { return w.valid }
func (w blockWalker) Key() []byte          { return w.key }
func (w blockWalker) Value() []byte        { return w.val }
func (w blockWalker) Err() error           { return w.err }
func (w blockWalker) Close() error         { return nil }

func TestParseBlockRejects(t *testing.T) {
	var w blockWriter
	w.add(MakeInternalKey([]byte("a"), 1, KindSet), []byte("x"))
	w.add(MakeInternalKey([]byte("b"), 1, KindSet), []byte("y"))
	good := append([]byte(nil), w.finish()...)
	bad := map[string][]byte{
		"empty":              nil,
		"three bytes":        {1, 0, 0},
		"count too large":    append(append([]byte(nil), good[:len(good)-4]...), 9, 0, 0, 0),
		"no restarts, data":  append(append([]byte(nil), good[:len(good)-8]...), 0, 0, 0, 0),
		"restart not zero":   append(append([]byte(nil), good[:len(good)-8]...), 1, 0, 0, 0, 1, 0, 0, 0),
		"restart past data":  append(append([]byte(nil), good[:len(good)-8]...), 0, 0, 0, 0, 0xff, 0, 0, 0, 2, 0, 0, 0),
		"restarts unordered": append(append([]byte(nil), good[:len(good)-8]...), 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0),
	}
	for name, b := range bad {
		if _, err := parseBlock(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Entries that overrun the block or share more than the previous key
	// are caught while iterating, not at parse time.
	trunc := append([]byte{0, 20, 1, 'a'}, 0, 0, 0, 0, 1, 0, 0, 0)
	b, err := parseBlock(trunc)
	if err != nil {
		t.Fatal(err)
	}
	var it blockIter
	it.init(b, 0)
	if it.First() || it.err == nil {
		t.Fatal("overrunning entry accepted")
	}
}

func TestCompressRoundTrip(t *testing.T) {
	var z compressor
	defer z.release()
	inputs := [][]byte{
		[]byte("x"),
		bytes.Repeat([]byte("compressible "), 1000),
		make([]byte, 5<<20), // beyond the 1024:1 bound: stored raw
	}
	for _, c := range []Compression{CompressionS2, CompressionZstd} {
		for i, raw := range inputs {
			payload, used := z.compress(c, raw)
			payload = append([]byte(nil), payload...)
			if i == 0 && used != CompressionNone {
				t.Errorf("%s: a 1-byte block was stored compressed", c)
			}
			if i == 1 && used != c {
				t.Errorf("%s: compressible block stored as %s", c, used)
			}
			if i == 2 && used != CompressionNone {
				t.Errorf("%s: %d:1 block stored compressed (%d bytes)", c, len(raw)/len(payload), len(payload))
			}
			got, err := decompress(payload, byte(used))
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("%s input %d: round trip failed: %v", c, i, err)
			}
		}
	}
	// A compressed payload whose length prefix lies is rejected.
	payload, _ := z.compress(CompressionS2, inputs[1])
	payload = append([]byte{0x80, 0x80, 0x80, 0x40}, payload[2:]...) // claims 128 MiB
	if _, err := decompress(payload, byte(CompressionS2)); err == nil {
		t.Fatal("implausible length accepted")
	}
}

package hnsw

import (
	"encoding/binary"
	"math"
	"slices"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/plures/pluresdb/internal/errs"
)

// Wire format constants (see doc.go for the byte picture).
const (
	magic         = "PLRHNSW\x00"
	formatVersion = 2
	// Version 1 had no TombstoneRatio in the header and no free slots;
	// Unmarshal still reads it.
	headerSizeV1 = 8 + 4*8 // magic, version, dim, metric, M, efC, count, entry, top+1
	headerSize   = headerSizeV1 + 8
	trailerSize  = 8 // xxhash64
	flagDeleted  = 1
	flagFree     = 2 // version 2: an unused slot, kept so IDs stay put
	// maxKeyLen bounds a key's length field.
	maxKeyLen = 1 << 20
)

// encodingName names the encoded graph in corruption errors; the caller
// that stores the bytes knows the real location.
const encodingName = "hnsw graph"

// MarshalBinary encodes the whole graph: configuration, vectors, keys,
// tombstones, free slots and links. It waits for running writers (and
// makes new ones wait for it); searches go on.
func (x *Index) MarshalBinary() ([]byte, error) {
	x.writeMu.Lock()
	defer x.writeMu.Unlock()
	x.allocMu.Lock()
	n := int(x.count)
	x.allocMu.Unlock()
	size := headerSize + trailerSize + n*(2+4+4*x.cfg.Dim+2+4*x.m0)
	b := make([]byte, 0, size)
	b = append(b, magic...)
	le := binary.LittleEndian
	var entryID, topPlus1 uint32
	if ep, top, ok := x.loadEntry(); ok {
		entryID, topPlus1 = ep, uint32(top+1)
	}
	for _, v := range []uint32{formatVersion, uint32(x.cfg.Dim), uint32(x.cfg.Metric), uint32(x.cfg.M),
		uint32(x.cfg.EfConstruction)} {
		b = le.AppendUint32(b, v)
	}
	b = le.AppendUint64(b, math.Float64bits(x.cfg.TombstoneRatio))
	for _, v := range []uint32{uint32(n), entryID, topPlus1} {
		b = le.AppendUint32(b, v)
	}
	for id := uint32(0); id < uint32(n); id++ {
		var flags byte
		switch atomic.LoadUint32(&x.state[id]) {
		case stateDead:
			flags = flagDeleted
		case stateFree:
			// Level 0, empty key, zero vector, no links.
			b = append(b, flagFree, 0, 0, 0, 0, 0)
			b = append(b, make([]byte, 4*x.cfg.Dim+2)...)
			continue
		}
		level := int(x.levels[id])
		b = append(b, flags, byte(level))
		b = le.AppendUint32(b, uint32(len(x.keys[id])))
		b = append(b, x.keys[id]...)
		for _, f := range x.vec(id) {
			b = le.AppendUint32(b, math.Float32bits(f))
		}
		for l := 0; l <= level; l++ {
			// Writer holds writeMu, so links are stable without stripes.
			ll := x.linkList(id, l)
			b = le.AppendUint16(b, uint16(ll[0]))
			for _, nb := range ll[1 : 1+ll[0]] {
				b = le.AppendUint32(b, nb)
			}
		}
	}
	return le.AppendUint64(b, xxhash.Sum64(b)), nil
}

// decoder reads little-endian fields off b and remembers the first error.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = errs.Corruptf(encodingName, int64(d.off), format, args...)
	}
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.fail("truncated: need %d bytes, %d left", n, len(d.b)-d.off)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u8() byte {
	if p := d.bytes(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if p := d.bytes(2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if p := d.bytes(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

// Unmarshal decodes bytes written by MarshalBinary. It loads the graph as
// stored (nothing is recomputed) after checking the checksum and every
// invariant a search relies on, so arbitrary bytes give an error wrapping
// errs.ErrCorruption (or errs.ErrNewerFormat), never a panic. Memory is
// bounded by a small multiple of len(b).
func Unmarshal(b []byte) (*Index, error) {
	if len(b) < headerSizeV1+trailerSize {
		return nil, errs.Corruptf(encodingName, 0, "%d bytes, shorter than header and checksum", len(b))
	}
	if string(b[:len(magic)]) != magic {
		return nil, errs.Corruptf(encodingName, 0, "bad magic %q", b[:len(magic)])
	}
	version := binary.LittleEndian.Uint32(b[len(magic):])
	if version > formatVersion {
		return nil, errs.NewerFormatf(encodingName, version, formatVersion)
	}
	if version == 0 {
		return nil, errs.Corruptf(encodingName, int64(len(magic)), "format version 0")
	}
	hdrSize := headerSize
	if version == 1 {
		hdrSize = headerSizeV1
	}
	if len(b) < hdrSize+trailerSize {
		return nil, errs.Corruptf(encodingName, 0, "%d bytes, shorter than header and checksum", len(b))
	}
	body := b[:len(b)-trailerSize]
	if got, want := xxhash.Sum64(body), binary.LittleEndian.Uint64(b[len(body):]); got != want {
		return nil, errs.Corruptf(encodingName, int64(len(body)), "checksum mismatch: computed %#x, stored %#x", got, want)
	}

	d := &decoder{b: body, off: len(magic) + 4}
	var cfg Config
	cfg.Dim = int(d.u32())
	cfg.Metric = Metric(d.u32())
	cfg.M = int(d.u32())
	cfg.EfConstruction = int(d.u32())
	cfg.TombstoneRatio = DefaultTombstoneRatio
	if version >= 2 {
		cfg.TombstoneRatio = math.Float64frombits(binary.LittleEndian.Uint64(d.bytes(8)))
	}
	countOff := int64(d.off)
	count := d.u32()
	entryID := d.u32()
	topPlus1 := d.u32()
	if cfg.Dim == 0 || cfg.M == 0 || cfg.EfConstruction == 0 || cfg.TombstoneRatio == 0 {
		return nil, errs.Corruptf(encodingName, 12, "zero field in configuration %+v", cfg)
	}
	if _, err := cfg.withDefaults(); err != nil {
		return nil, errs.Corruptf(encodingName, 12, "bad configuration: %v", err)
	}
	// Each node, free slots too, needs at least flags, level, key length,
	// vector and one link count: bound count by the bytes present before
	// allocating.
	minNode := 2 + 4 + 4*cfg.Dim + 2
	if int64(count) > int64(len(body)-hdrSize)/int64(minNode) {
		return nil, errs.Corruptf(encodingName, countOff, "node count %d does not fit in %d bytes", count, len(body))
	}
	x := newIndex(cfg)
	if count > 0 {
		n := int(count)
		x.vecs = make([]float32, n*cfg.Dim)
		x.levels = make([]uint8, n)
		x.links0 = make([]uint32, n*(1+x.m0))
		x.upper = make([][]uint32, n)
		x.state = make([]uint32, n)
		x.keys = make([][]byte, n)
		if cfg.Metric == Dot {
			x.sqNorms = make([]float32, n)
		}
	}
	live, dead := int64(0), int64(0)
	for id := uint32(0); id < count && d.err == nil; id++ {
		nodeOff := d.off
		flags := d.u8()
		level := int(d.u8())
		if flags == flagFree && version >= 2 {
			// Exactly the bytes MarshalBinary writes for a free slot.
			if keyLen := d.u32(); level != 0 || keyLen != 0 {
				d.off = nodeOff
				d.fail("node %d: free slot with level %d, key length %d", id, level, keyLen)
				break
			}
			for _, c := range d.bytes(4*cfg.Dim + 2) {
				if c != 0 {
					d.off = nodeOff
					d.fail("node %d: free slot with a vector or links", id)
					break
				}
			}
			x.free = append(x.free, id)
			continue
		}
		if flags&^flagDeleted != 0 {
			d.fail("node %d: unknown flags %#x", id, flags)
		}
		if level > maxLevel {
			d.fail("node %d: level %d above %d", id, level, maxLevel)
		}
		keyLen := d.u32()
		if keyLen == 0 || keyLen > maxKeyLen {
			d.fail("node %d: key length %d", id, keyLen)
		}
		key := d.bytes(int(keyLen))
		raw := d.bytes(4 * cfg.Dim)
		if d.err != nil {
			break
		}
		x.keys[id] = append([]byte(nil), key...)
		v := x.vec(id)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		if !finite(v) {
			d.off = nodeOff
			d.fail("node %d: vector holds NaN or infinity", id)
			break
		}
		x.levels[id] = uint8(level)
		if cfg.Metric == Dot {
			x.sqNorms[id] = dot(v, v)
			if x.sqNorms[id] > math.Float32frombits(x.maxSqNorm.Load()) {
				x.maxSqNorm.Store(math.Float32bits(x.sqNorms[id]))
			}
		}
		if level > 0 {
			x.upper[id] = make([]uint32, level*(1+cfg.M))
		}
		for l := 0; l <= level && d.err == nil; l++ {
			cnt := int(d.u16())
			if cnt > x.maxLinks(l) {
				d.fail("node %d layer %d: %d links, at most %d", id, l, cnt, x.maxLinks(l))
				break
			}
			ll := x.linkList(id, l)
			ll[0] = uint32(cnt)
			for i := 0; i < cnt; i++ {
				ll[1+i] = d.u32()
				if d.err == nil && ll[1+i] >= count {
					d.fail("node %d layer %d: link to %d, only %d nodes", id, l, ll[1+i], count)
				}
			}
		}
		if flags&flagDeleted != 0 {
			x.state[id] = stateDead
			dead++
			continue
		}
		x.state[id] = stateLive
		if _, dup := x.ids[string(key)]; dup {
			d.off = nodeOff
			d.fail("node %d: key %q is live twice", id, key)
			break
		}
		x.ids[string(key)] = id
		live++
	}
	if d.err != nil {
		return nil, d.err
	}
	if d.off != len(body) {
		return nil, errs.Corruptf(encodingName, int64(d.off), "%d bytes after the last node", len(body)-d.off)
	}
	// A link at layer l must point at a node that has layer l: the search
	// reads the target's list at that layer. A free slot has no layer.
	for id := uint32(0); id < count; id++ {
		if x.state[id] == stateFree {
			continue
		}
		for l := 0; l <= int(x.levels[id]); l++ {
			ll := x.linkList(id, l)
			for _, nb := range ll[1 : 1+ll[0]] {
				if x.state[nb] == stateFree || int(x.levels[nb]) < l {
					return nil, errs.Corruptf(encodingName, -1, "node %d links at layer %d to node %d of level %d", id, l, nb, x.levels[nb])
				}
			}
		}
	}
	switch {
	case topPlus1 == 0 && count != uint32(len(x.free)):
		return nil, errs.Corruptf(encodingName, countOff+4, "no entry point for %d nodes", count)
	case topPlus1 != 0 && (entryID >= count || x.state[entryID] == stateFree || uint32(x.levels[entryID])+1 != topPlus1):
		return nil, errs.Corruptf(encodingName, countOff+4, "bad entry point %d at layer %d", entryID, int64(topPlus1)-1)
	}
	// Descending, so that alloc hands out the lowest first.
	slices.Reverse(x.free)
	if topPlus1 != 0 {
		x.storeEntry(entryID, int(topPlus1)-1)
	}
	x.count = count
	x.live.Store(live)
	x.dead.Store(dead)
	return x, nil
}

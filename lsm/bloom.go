package lsm

// This file owns the table filter: one blocked bloom filter over the user
// keys of a table (Putze, Sanders, Singler, "Cache-, Hash- and
// Space-Efficient Bloom Filters"). A key's probes all fall in one 64-byte
// cache line, so a negative lookup costs one cache miss at most. The layout
// is RocksDB's "fast local bloom":
//
//	filter block payload (stored uncompressed):
//	+-------------+-------------+-----+----------------+------------+---------------+
//	| line 0 (64) | line 1 (64) | ... | line m-1 (64)  | probes (1) | m (uint32 LE) |
//	+-------------+-------------+-----+----------------+------------+---------------+
//
// For a key with h = xxhash64(user key): the line is (hi32(h) * m) >> 32;
// the probes are the top 9 bits of lo32(h), lo32(h)*0x9e3779b9,
// lo32(h)*0x9e3779b9^2, ... (mod 2^32), each naming a bit of the 512-bit
// line, bit i being byte i/8, bit i%8. At 10 bits per key and 6 probes the
// false-positive rate is about 1%. These rules are part of the format.

import (
	"encoding/binary"
	"errors"
)

const (
	bloomLineBytes = 64
	bloomMaxProbes = 30
	bloomProbeMul  = 0x9e3779b9
)

// bloomProbes picks the probe count for a density; slightly under the
// classic ln2*bits because probes share one line (RocksDB's table).
func bloomProbes(bitsPerKey int) int {
	k := (bitsPerKey*3 + 2) / 5
	return max(1, min(k, 12))
}

// bloomLine maps a hash to a line without division.
func bloomLine(h uint64, lines uint32) uint32 {
	return uint32((h >> 32) * uint64(lines) >> 32)
}

// buildBloom returns the filter block payload for the given key hashes.
func buildBloom(hashes []uint64, bitsPerKey int) []byte {
	lines := (uint64(len(hashes))*uint64(bitsPerKey) + bloomLineBytes*8 - 1) / (bloomLineBytes * 8)
	lines = max(lines, 1)
	probes := bloomProbes(bitsPerKey)
	out := make([]byte, lines*bloomLineBytes+5)
	for _, h := range hashes {
		line := out[bloomLine(h, uint32(lines))*bloomLineBytes:][:bloomLineBytes]
		x := uint32(h)
		for i := 0; i < probes; i++ {
			bit := x >> 23
			line[bit>>3] |= 1 << (bit & 7)
			x *= bloomProbeMul
		}
	}
	out[lines*bloomLineBytes] = byte(probes)
	binary.LittleEndian.PutUint32(out[lines*bloomLineBytes+1:], uint32(lines))
	return out
}

// bloomFilter is a decoded, read-only filter.
type bloomFilter struct {
	lines  []byte
	n      uint32 // number of lines
	probes int
}

func decodeBloom(payload []byte) (bloomFilter, error) {
	if len(payload) < 5 {
		return bloomFilter{}, errors.New("filter shorter than its trailer")
	}
	body := len(payload) - 5
	probes := int(payload[body])
	n := binary.LittleEndian.Uint32(payload[body+1:])
	if probes < 1 || probes > bloomMaxProbes || n == 0 || uint64(n)*bloomLineBytes != uint64(body) {
		return bloomFilter{}, errors.New("bad filter geometry")
	}
	return bloomFilter{lines: payload[:body:body], n: n, probes: probes}, nil
}

// mayContain reports whether the key with hash h may be in the set; false
// is definite.
func (f *bloomFilter) mayContain(h uint64) bool {
	line := f.lines[bloomLine(h, f.n)*bloomLineBytes:][:bloomLineBytes]
	x := uint32(h)
	for i := 0; i < f.probes; i++ {
		bit := x >> 23
		if line[bit>>3]&(1<<(bit&7)) == 0 {
			return false
		}
		x *= bloomProbeMul
	}
	return true
}

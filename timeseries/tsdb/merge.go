package tsdb

import (
	"encoding/binary"
	"math"
	"slices"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries"
	"github.com/plures/pluresdb/timeseries/chunk"
)

// State layout (a chunk's samples folded):
//
//	0x02 | summary | uvarint stamps | stamps × (uvarint HLC | origin 16) |
//	uvarint runs | runs × (uvarint stamp index | uvarint length) |
//	encoding u8 | the samples (timeseries/chunk): 0 hot: uvarint n, then
//	n × (uvarint length | a hot chunk of at most 32,768 samples); 1 cold:
//	uvarint n, then n × (varint first T | varint last T | uvarint samples |
//	uvarint length | a cold block of one quarter of the day's samples); 2 raw: count × (T i64 LE | V bits u64 LE), what a read
//	folds into (compactions write hot or cold)
//
//	summary: uvarint count | flags u8 (bit 0: a non-NaN value) |
//	         min, max, sum, sum compensation, drops, first V, last V
//	         (f64 LE each) | varint first T | varint last T
//
// The runs give each sample, in order, the stamp of the write it came
// from; their lengths add up to the count; the stamps are sorted. Every
// origin is spelled out, so a state means the same on every replica and
// snapshots carry it as it is (replicas that folded the same writes hold
// the same samples and stamps, though one may have encoded them hot and
// another cold).

// Chunk is a decoded chunk: its samples, each with the stamp of the write
// that put it there, and its summary.
type Chunk struct {
	Samples []timeseries.Sample
	Stamps  []Stamp  // distinct, by index
	Of      []uint32 // the stamp index of each sample
	Summary Summary
}

// Merger folds a chunk key's operands onto its state: for each
// timestamp the sample of the write whose Stamp is highest. It has the
// method set of lsm.Merger. Self is the replica the local operands come
// from. Cold makes it encode chunks of many samples with the cold
// encoding, the others hot (compactions); else raw (reads, which fold and
// decode at once).
type Merger struct {
	Self oplog.ReplicaID
	Cold bool
	// Floors, if set, returns a series' deletion floor once no reader
	// could still read the samples it deleted: the fold drops them
	// (compactions).
	Floors func(canonical string) (Stamp, bool)
}

// Merge folds operands (oldest first) onto base (a state, if hasBase).
// Errors wrap ErrCorruption.
func (m *Merger) Merge(key []byte, operands [][]byte, base []byte, hasBase bool) ([]byte, error) {
	return m.MergeAppend(nil, key, operands, base, hasBase)
}

// MergeAppend is Merge appending the state to dst.
func (m *Merger) MergeAppend(dst, key []byte, operands [][]byte, base []byte, hasBase bool) ([]byte, error) {
	if len(key) > 0 && key[0] == prefixDelete {
		return mergeDelete(dst, operands, base, hasBase, m.Self)
	}
	var c Chunk
	if hasBase {
		if err := c.decodeValue(base, m.Self); err != nil {
			return nil, err
		}
	}
	var buf []timeseries.Sample
	for _, v := range operands {
		o, err := DecodeOperand(v)
		if err != nil {
			return nil, err
		}
		st := Stamp{HLC: o.HLC, Origin: m.Self}
		if o.Remote {
			st.Origin = o.Origin
		}
		if buf, err = chunk.DecodeHot(o.Chunk, buf[:0]); err != nil {
			return nil, err
		}
		c.add(buf, st)
	}
	if m.Floors != nil {
		if name, _, err := ParseChunkKey(key); err == nil {
			if floor, ok := m.Floors(name); ok {
				c.filter(floor)
			}
		}
	}
	return c.appendState(dst, m.Cold)
}

// stampIndex returns the index of st in c.Stamps, adding it.
func (c *Chunk) stampIndex(st Stamp) uint32 {
	for i := len(c.Stamps) - 1; i >= 0; i-- {
		if c.Stamps[i] == st {
			return uint32(i)
		}
	}
	c.Stamps = append(c.Stamps, st)
	return uint32(len(c.Stamps) - 1)
}

// add merges samples (ascending, unique T) written with stamp st.
func (c *Chunk) add(samples []timeseries.Sample, st Stamp) {
	if len(samples) == 0 {
		return
	}
	si := c.stampIndex(st)
	if n := len(c.Samples); n == 0 || samples[0].T > c.Samples[n-1].T {
		// Appended after the last: the common case.
		c.Samples = append(c.Samples, samples...)
		for range samples {
			c.Of = append(c.Of, si)
		}
		return
	}
	// Interleaved: merge by T; on a tie the higher stamp wins.
	out := make([]timeseries.Sample, 0, len(c.Samples)+len(samples))
	of := make([]uint32, 0, cap(out))
	i, j := 0, 0
	for i < len(c.Samples) || j < len(samples) {
		switch {
		case j == len(samples) || i < len(c.Samples) && c.Samples[i].T < samples[j].T:
			out, of = append(out, c.Samples[i]), append(of, c.Of[i])
			i++
		case i == len(c.Samples) || samples[j].T < c.Samples[i].T:
			out, of = append(out, samples[j]), append(of, si)
			j++
		default: // the same T
			if st.Above(c.Stamps[c.Of[i]]) {
				out, of = append(out, samples[j]), append(of, si)
			} else {
				out, of = append(out, c.Samples[i]), append(of, c.Of[i])
			}
			i++
			j++
		}
	}
	c.Samples, c.Of = out, of
	c.compactStamps()
}

// compactStamps drops the stamps no sample uses any more and sorts the
// rest (ascending), so a chunk's encoding does not depend on the order
// its writes were folded in.
func (c *Chunk) compactStamps() {
	used := make([]bool, len(c.Stamps))
	for _, s := range c.Of {
		used[s] = true
	}
	order := make([]int, 0, len(c.Stamps))
	for i := range c.Stamps {
		if used[i] {
			order = append(order, i)
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		switch {
		case c.Stamps[b].Above(c.Stamps[a]):
			return -1
		case c.Stamps[a].Above(c.Stamps[b]):
			return 1
		}
		return 0
	})
	if len(order) == len(c.Stamps) && slices.IsSorted(order) {
		return
	}
	remap := make([]uint32, len(c.Stamps))
	kept := make([]Stamp, len(order))
	for k, i := range order {
		remap[i] = uint32(k)
		kept[k] = c.Stamps[i]
	}
	for i := range c.Of {
		c.Of[i] = remap[c.Of[i]]
	}
	c.Stamps = kept
}

// appendState encodes c as a state.
func (c *Chunk) appendState(dst []byte, cold bool) ([]byte, error) {
	c.compactStamps()
	dst = append(dst, kindState)
	if len(c.Samples) == 0 {
		dst = binary.AppendUvarint(dst, 0)
		return dst, nil
	}
	s := Summarize(c.Samples)
	dst = s.append(dst)
	dst = binary.AppendUvarint(dst, uint64(len(c.Stamps)))
	for _, st := range c.Stamps {
		dst = binary.AppendUvarint(dst, uint64(st.HLC))
		dst = append(dst, st.Origin[:]...)
	}
	// Runs of samples of one stamp.
	var runs [][2]uint64
	for i, si := range c.Of {
		if i > 0 && uint64(si) == runs[len(runs)-1][0] {
			runs[len(runs)-1][1]++
			continue
		}
		runs = append(runs, [2]uint64{uint64(si), 1})
	}
	dst = binary.AppendUvarint(dst, uint64(len(runs)))
	for _, r := range runs {
		dst = binary.AppendUvarint(dst, r[0])
		dst = binary.AppendUvarint(dst, r[1])
	}
	if cold && len(c.Samples) >= coldFrom {
		// A block per quarter of the day (coldSpan), each with its time
		// span, so a query of part of the day decodes only the blocks it
		// needs, and a whole day few of them.
		dst = append(dst, encCold)
		var starts []int
		for i, x := range c.Samples {
			if i == 0 || coldQuarter(x.T) != coldQuarter(c.Samples[i-1].T) || i-starts[len(starts)-1] >= coldMax {
				starts = append(starts, i)
			}
		}
		dst = binary.AppendUvarint(dst, uint64(len(starts)))
		var block []byte
		for k, i := range starts {
			end := len(c.Samples)
			if k+1 < len(starts) {
				end = starts[k+1]
			}
			part := c.Samples[i:end]
			var err error
			if block, err = chunk.EncodeCold(block[:0], part); err != nil {
				return nil, err
			}
			dst = binary.AppendVarint(dst, part[0].T)
			dst = binary.AppendVarint(dst, part[len(part)-1].T)
			dst = binary.AppendUvarint(dst, uint64(len(part)))
			dst = binary.AppendUvarint(dst, uint64(len(block)))
			dst = append(dst, block...)
		}
		return dst, nil
	}
	if !cold {
		// A read folds and decodes at once: raw samples, nothing to
		// encode or decode.
		dst = append(dst, encRaw)
		for _, x := range c.Samples {
			dst = binary.LittleEndian.AppendUint64(dst, uint64(x.T))
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(x.V))
		}
		return dst, nil
	}
	// Hot: chunks of at most hotMax samples (a hot chunk counts to
	// 65,535; a day at one second is more), each length-prefixed.
	dst = append(dst, encHot)
	n := (len(c.Samples) + hotMax - 1) / hotMax
	dst = binary.AppendUvarint(dst, uint64(n))
	for i := 0; i < len(c.Samples); i += hotMax {
		a := chunk.NewAppender()
		for _, x := range c.Samples[i:min(i+hotMax, len(c.Samples))] {
			if err := a.Append(x.T, x.V); err != nil {
				return nil, err
			}
		}
		dst = binary.AppendUvarint(dst, uint64(len(a.Bytes())))
		dst = append(dst, a.Bytes()...)
	}
	return dst, nil
}

// hotMax is the most samples a hot chunk of a state holds; coldSpan the
// time a cold block covers at most (a quarter of the day), coldMax the
// samples.
const (
	hotMax   = 32768
	coldSpan = BucketMillis / 4
	coldMax  = 1 << 17 // and at most this many samples
)

// coldQuarter is the quarter of its day t falls in.
func coldQuarter(t int64) int64 { return (t - BucketOf(t)) / coldSpan }

// decodeValue decodes a stored value of a chunk key: a state, or (a
// lone operand, as a read that found no state folds it) an operand.
func (c *Chunk) decodeValue(v []byte, self oplog.ReplicaID) error {
	if IsOperand(v) {
		o, err := DecodeOperand(v)
		if err != nil {
			return err
		}
		st := Stamp{HLC: o.HLC, Origin: self}
		if o.Remote {
			st.Origin = o.Origin
		}
		samples, err := chunk.DecodeHot(o.Chunk, nil)
		if err != nil {
			return err
		}
		*c = Chunk{}
		c.add(samples, st)
		return nil
	}
	return c.decodeState(v)
}

// DecodeSamples decodes the samples of a stored chunk value (a state or
// an operand), without their stamps. Errors wrap ErrCorruption.
func DecodeSamples(v []byte, self oplog.ReplicaID) ([]timeseries.Sample, error) {
	if IsOperand(v) {
		c, err := DecodeChunk(v, self)
		if err != nil {
			return nil, err
		}
		return c.Samples, nil
	}
	return DecodeSamplesIn(v, self, math.MinInt64, math.MaxInt64)
}

// DecodeSamplesIn is DecodeSamples for a query of [from, to): it may
// return fewer samples than the chunk holds, but all of those in the
// range (a cold state decodes only the blocks that may hold some).
func DecodeSamplesIn(v []byte, self oplog.ReplicaID, from, to int64) ([]timeseries.Sample, error) {
	if IsOperand(v) {
		c, err := DecodeChunk(v, self)
		if err != nil {
			return nil, err
		}
		return c.Samples, nil
	}
	return decodeSamplesInto(nil, v, from, to, true)
}

// decodeSamplesInto decodes the samples of state v that [from, to) needs
// (DecodeSamplesIn) into dst[:0], growing it as needed. checkOrder false
// leaves out the check that T ascends, for a caller that checks it
// itself (an Aggregator).
func decodeSamplesInto(dst []timeseries.Sample, v []byte, from, to int64, checkOrder bool) ([]timeseries.Sample, error) {
	c := Chunk{Samples: dst[:0]}
	if err := c.decodeStateOf(v, true, from, to, checkOrder); err != nil {
		return c.Samples[:0], err
	}
	return c.Samples, nil
}

// DecodeChunk decodes a stored chunk value: a state, or an operand (a
// lone local operand's origin is self). Errors wrap ErrCorruption.
func DecodeChunk(v []byte, self oplog.ReplicaID) (*Chunk, error) {
	c := &Chunk{}
	if err := c.decodeValue(v, self); err != nil {
		return nil, err
	}
	if len(c.Samples) > 0 && c.Summary.Count == 0 {
		c.Summary = Summarize(c.Samples)
	}
	return c, nil
}

// state decoder
type sdec struct {
	b   []byte
	off int
	err error
}

func (d *sdec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = errs.Corruptf("series chunk", int64(d.off), format, args...)
	}
}

func (d *sdec) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("%s: bad uvarint", what)
		return 0
	}
	d.off += n
	return v
}

func (d *sdec) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("%s: bad varint", what)
		return 0
	}
	d.off += n
	return v
}

func (d *sdec) fixed(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b)-d.off < n {
		d.fail("%s: truncated", what)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *sdec) f64(what string) float64 {
	p := d.fixed(8, what)
	if p == nil {
		return 0
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(p))
}

// decodeSummary reads a state's summary; ok false for an empty state.
func (d *sdec) summary() (Summary, bool) {
	var s Summary
	n := d.uvarint("sample count")
	if d.err != nil || n == 0 {
		return s, false
	}
	if n > 1<<20 {
		d.fail("%d samples in a chunk", n)
		return s, false
	}
	s.Count = int(n)
	flags := d.fixed(1, "summary flags")
	if flags != nil {
		if flags[0]&^1 != 0 {
			d.fail("unknown summary flags %#x", flags[0])
		}
		s.hasMinMaxNonNaN = flags[0]&1 != 0
	}
	s.Min, s.Max = d.f64("min"), d.f64("max")
	s.Sum, s.SumC = d.f64("sum"), d.f64("sum compensation")
	s.Drops = d.f64("drops")
	s.FirstV, s.LastV = d.f64("first value"), d.f64("last value")
	s.FirstT, s.LastT = d.varint("first T"), d.varint("last T")
	return s, true
}

// StateSummary returns the summary of a state without decoding its
// samples (ok false: an empty state). Errors wrap ErrCorruption.
func StateSummary(v []byte) (Summary, bool, error) {
	if len(v) == 0 || v[0] != kindState {
		return Summary{}, false, errs.Corruptf("series chunk", 0, "not a chunk state")
	}
	d := sdec{b: v, off: 1}
	s, ok := d.summary()
	return s, ok, d.err
}

func (c *Chunk) decodeState(v []byte) error {
	*c = Chunk{}
	return c.decodeStateOf(v, false, math.MinInt64, math.MaxInt64, true)
}

// decodeStateOf decodes a state into c (whose Samples, if any, it reuses
// as a buffer); samplesOnly leaves the stamps (Stamps, Of) out, for
// reads that want the samples, and then only the cold blocks that may
// hold samples in [from, to) are decoded (c.Samples is a part of the
// chunk's samples holding all of those in the range). checkOrder false
// leaves out the check that the samples' T ascend (the caller's).
func (c *Chunk) decodeStateOf(v []byte, samplesOnly bool, from, to int64, checkOrder bool) error {
	if !samplesOnly {
		from, to = math.MinInt64, math.MaxInt64
	}
	*c = Chunk{Samples: c.Samples[:0]}
	if len(v) == 0 || v[0] != kindState {
		return errs.Corruptf("series chunk", 0, "not a chunk state or operand")
	}
	d := sdec{b: v, off: 1}
	s, ok := d.summary()
	if d.err != nil {
		return d.err
	}
	if !ok {
		if d.off != len(v) {
			d.fail("%d bytes after an empty state", len(v)-d.off)
		}
		return d.err
	}
	c.Summary = s
	ns := d.uvarint("stamps")
	if d.err == nil && ns > uint64(len(v)-d.off)/17 {
		d.fail("%d stamps in %d bytes", ns, len(v)-d.off)
	}
	for i := uint64(0); d.err == nil && i < ns; i++ {
		st := Stamp{HLC: oplog.Timestamp(d.uvarint("stamp HLC"))}
		copy(st.Origin[:], d.fixed(16, "stamp origin"))
		if !samplesOnly {
			c.Stamps = append(c.Stamps, st)
		}
	}
	nr := d.uvarint("runs")
	if d.err == nil && nr > uint64(s.Count) {
		d.fail("%d runs for %d samples", nr, s.Count)
	}
	if !samplesOnly {
		c.Of = make([]uint32, 0, s.Count)
	}
	covered := 0
	for i := uint64(0); d.err == nil && i < nr; i++ {
		si, n := d.uvarint("run stamp"), d.uvarint("run length")
		if d.err != nil {
			break
		}
		if si >= ns || n == 0 || n > uint64(s.Count-covered) {
			d.fail("run %d: stamp %d of %d, length %d", i, si, ns, n)
			break
		}
		covered += int(n)
		if !samplesOnly {
			for range n {
				c.Of = append(c.Of, uint32(si))
			}
		}
	}
	if d.err == nil && covered != s.Count {
		d.fail("runs cover %d of %d samples", covered, s.Count)
	}
	enc := d.fixed(1, "encoding")
	if d.err != nil {
		return d.err
	}
	var err error
	switch enc[0] {
	case encHot:
		n := d.uvarint("hot chunks")
		if d.err == nil && n > uint64(s.Count) {
			d.fail("%d hot chunks for %d samples", n, s.Count)
		}
		c.Samples = slices.Grow(c.Samples, s.Count)
		for i := uint64(0); d.err == nil && err == nil && i < n; i++ {
			l := d.uvarint("hot chunk length")
			b := d.fixed(int(min(l, uint64(len(v)))), "hot chunk")
			if d.err == nil && uint64(len(b)) != l {
				d.fail("hot chunk of %d bytes", l)
			}
			if d.err == nil {
				c.Samples, err = chunk.DecodeHot(b, c.Samples)
			}
		}
		if d.err != nil {
			return d.err
		}
		if err == nil && d.off != len(v) {
			return errs.Corruptf("series chunk", int64(d.off), "%d bytes after the hot chunks", len(v)-d.off)
		}
	case encCold:
		n := d.uvarint("cold blocks")
		if d.err == nil && n > uint64(s.Count) {
			d.fail("%d cold blocks for %d samples", n, s.Count)
		}
		// The headers first (at most a few a day), so the samples are
		// allocated once, for the blocks the range needs.
		type block struct {
			first, last int64
			count       int
			b           []byte
			off         int
		}
		var blocksArr [8]block
		blocks := blocksArr[:0]
		total, want := 0, 0
		for i := uint64(0); d.err == nil && i < n; i++ {
			first, last := d.varint("block first T"), d.varint("block last T")
			count, l := d.uvarint("block samples"), d.uvarint("block length")
			b := d.fixed(int(min(l, uint64(len(v)))), "cold block")
			if d.err == nil && (uint64(len(b)) != l || count == 0 || count > uint64(s.Count-total) || last < first) {
				d.fail("cold block %d: %d samples, %d bytes, T %d..%d", i, count, l, first, last)
			}
			if d.err != nil {
				break
			}
			total += int(count)
			if last < from || first >= to {
				continue // outside the range asked for
			}
			want += int(count)
			blocks = append(blocks, block{first, last, int(count), b, d.off})
		}
		if d.err != nil {
			return d.err
		}
		if total != s.Count || d.off != len(v) {
			return errs.Corruptf("series chunk", int64(d.off), "cold blocks of %d samples (the summary says %d), %d bytes after", total, s.Count, len(v)-d.off)
		}
		c.Samples = slices.Grow(c.Samples, want)
		for i, bl := range blocks {
			base := len(c.Samples)
			if c.Samples, err = chunk.DecodeCold(bl.b, c.Samples); err != nil {
				return err
			}
			if len(c.Samples)-base != bl.count || c.Samples[base].T != bl.first || c.Samples[len(c.Samples)-1].T != bl.last {
				return errs.Corruptf("series chunk", int64(bl.off), "cold block %d of the range does not hold what its header says", i)
			}
		}
		if from != math.MinInt64 || to != math.MaxInt64 {
			// A part: the count check below is for a whole chunk.
			if checkOrder {
				for i := 1; i < len(c.Samples); i++ {
					if c.Samples[i].T <= c.Samples[i-1].T {
						return errs.Corruptf("series chunk", int64(d.off), "samples out of order")
					}
				}
			}
			return nil
		}
	case encRaw:
		raw := v[d.off:]
		if len(raw) != 16*s.Count {
			return errs.Corruptf("series chunk", int64(d.off), "%d bytes of raw samples for %d", len(raw), s.Count)
		}
		c.Samples = slices.Grow(c.Samples, s.Count)[:s.Count]
		for i := range c.Samples {
			c.Samples[i] = timeseries.Sample{T: int64(binary.LittleEndian.Uint64(raw[16*i:])),
				V: math.Float64frombits(binary.LittleEndian.Uint64(raw[16*i+8:]))}
		}
	default:
		return errs.Corruptf("series chunk", int64(d.off-1), "unknown encoding %d", enc[0])
	}
	if err != nil {
		return err
	}
	if len(c.Samples) != s.Count {
		return errs.Corruptf("series chunk", int64(d.off), "%d samples, the summary says %d", len(c.Samples), s.Count)
	}
	for i := 1; checkOrder && i < len(c.Samples); i++ {
		if c.Samples[i].T <= c.Samples[i-1].T {
			return errs.Corruptf("series chunk", int64(d.off), "samples out of order")
		}
	}
	return nil
}

// Reencode returns a stored chunk value (a state in any encoding, or a
// lone operand) as a compaction would write it: hot, or cold in blocks.
// A snapshot carries chunks so, not as reads fold them (raw).
func Reencode(v []byte, self oplog.ReplicaID) ([]byte, error) {
	var c Chunk
	if err := c.decodeValue(v, self); err != nil {
		return nil, err
	}
	return c.appendState(nil, true)
}

// CheckStored checks an entry of the series namespace a state snapshot
// carries: a series-table key with its value, a deletion key with its
// state, or a chunk key with a state whose samples lie in its bucket. Errors wrap ErrCorruption.
func CheckStored(key, value []byte) error {
	if name, ok := DeleteOfKey(key); ok {
		return checkDeleteStored(name, value)
	}
	if name, ok := SeriesOfKey(key); ok {
		if c, err := timeseries.Canonical(name); err != nil || c != name {
			return errs.Corruptf("series table", 0, "series %q is not a canonical name", name)
		}
		if len(value) != 1 || value[0] != 1 {
			return errs.Corruptf("series table", 0, "series %q: value %x", name, value)
		}
		return nil
	}
	name, bucket, err := ParseChunkKey(key)
	if err != nil {
		return err
	}
	if c, err := timeseries.Canonical(name); err != nil || c != name {
		return errs.Corruptf("series chunk", 0, "series %q is not a canonical name", name)
	}
	if IsOperand(value) {
		return errs.Corruptf("series chunk", 0, "%s of %s: an operand, not a state", fmtBucket(bucket), name)
	}
	var c Chunk
	if err := c.decodeState(value); err != nil {
		return err
	}
	for _, s := range c.Samples {
		if timeseries.BucketOf(s.T) != bucket {
			return errs.Corruptf("series chunk", 0, "%s of %s holds a sample at %d", fmtBucket(bucket), name, s.T)
		}
	}
	return nil
}

// JoinState joins state p (a chunk state, as a snapshot carries it) into
// local (a stored chunk value, if hasLocal): for each timestamp the sample
// of the higher stamp. It returns the new state (cold-encoded, as a
// compaction would) and whether it holds anything local did not.
func JoinState(local []byte, hasLocal bool, p []byte, self oplog.ReplicaID) ([]byte, bool, error) {
	var c Chunk
	if hasLocal {
		if err := c.decodeValue(local, self); err != nil {
			return nil, false, err
		}
	}
	var o Chunk
	if err := o.decodeState(p); err != nil {
		return nil, false, err
	}
	before := len(c.Samples)
	beforeStamps := slices.Clone(c.Stamps)
	beforeOf := slices.Clone(c.Of)
	beforeSamples := slices.Clone(c.Samples)
	for si, st := range o.Stamps {
		var part []timeseries.Sample
		for i, s := range o.Samples {
			if o.Of[i] == uint32(si) {
				part = append(part, s)
			}
		}
		c.add(part, st)
	}
	c.compactStamps()
	changed := !hasLocal || len(c.Samples) != before || !slices.Equal(c.Stamps, beforeStamps)
	if !changed {
		for i := range c.Samples {
			if c.Of[i] != beforeOf[i] || c.Samples[i].T != beforeSamples[i].T ||
				math.Float64bits(c.Samples[i].V) != math.Float64bits(beforeSamples[i].V) {
				changed = true
				break
			}
		}
	}
	out, err := c.appendState(nil, true)
	return out, changed, err
}

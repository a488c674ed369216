package tsdb

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/timeseries"
)

// Deleting a series (ARCHITECTURE.md, "Time series: storage"). A
// deletion is an operation like any write: its projection is a merge
// operand on the series' deletion key,
//
//	'd' canonical                  the series' deletion floor
//
// whose state is the highest stamp of the deletions folded (the floor).
// Every sample written under a stamp the floor is not below is deleted:
// the samples of writes the deleting replica had seen, and of concurrent
// writes that lose to it by (HLC, replica), as a document's tombstone
// does. Writes after it (above the floor) live, so a series can be
// written again. The rule depends on stamps only, so every replica that
// holds the same operations reads the same samples, whatever the order
// they arrived in.
//
// Reads apply the floor (WithDeletes); compactions drop the deleted
// samples once no reader could still see them (Merger.Floors).

const prefixDelete = 'd'

// Value kinds of a deletion key. Part of the format.
const (
	kindDeleteOperand = 0x03 // one deletion (a merge operand)
	kindDeleteState   = 0x04 // the floor: the highest deletion's stamp
)

// Deletion operand layout (the timestamp at OperandHLCOffset, as a
// samples operand's, for the engine to stamp at commit):
//
//	0x03 | flags | HLC u64 LE | [origin 16, if flags&flagRemote]
//
// Deletion state layout: 0x04 | HLC u64 LE | origin 16.
const deleteStateLen = 1 + 8 + 16

// DeleteKey appends the deletion key of canonical to dst.
func DeleteKey(dst []byte, canonical string) []byte {
	dst = append(dst, prefixDelete)
	return append(dst, canonical...)
}

// DeleteOfKey returns the series of a deletion key.
func DeleteOfKey(key []byte) (string, bool) {
	if len(key) < 2 || key[0] != prefixDelete {
		return "", false
	}
	return string(key[1:]), true
}

// AppendLocalDelete appends a local deletion operand to dst, its
// timestamp left 0 for the engine to stamp at OperandHLCOffset.
func AppendLocalDelete(dst []byte) []byte {
	dst = append(dst, kindDeleteOperand, 0)
	return binary.LittleEndian.AppendUint64(dst, 0)
}

// AppendRemoteDelete appends the operand of another replica's deletion.
func AppendRemoteDelete(dst []byte, hlc oplog.Timestamp, origin oplog.ReplicaID) []byte {
	dst = append(dst, kindDeleteOperand, flagRemote)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(hlc))
	return append(dst, origin[:]...)
}

// DecodeDelete parses a stored value of a deletion key (a state, or an
// operand whose origin, if local, is self) into its stamp. Errors wrap
// ErrCorruption.
func DecodeDelete(v []byte, self oplog.ReplicaID) (st Stamp, remote bool, err error) {
	switch {
	case len(v) == deleteStateLen && v[0] == kindDeleteState:
		st.HLC = oplog.Timestamp(binary.LittleEndian.Uint64(v[1:9]))
		copy(st.Origin[:], v[9:])
		return st, true, nil
	case len(v) >= 2 && v[0] == kindDeleteOperand:
		switch {
		case v[1] == 0 && len(v) == 10:
			st.HLC = oplog.Timestamp(binary.LittleEndian.Uint64(v[2:10]))
			st.Origin = self
			return st, false, nil
		case v[1] == flagRemote && len(v) == 26:
			st.HLC = oplog.Timestamp(binary.LittleEndian.Uint64(v[2:10]))
			copy(st.Origin[:], v[10:])
			return st, true, nil
		}
	}
	return st, false, errs.Corruptf("series deletion", 0, "not a deletion (%d bytes, %x)", len(v), v[:min(len(v), 2)])
}

// appendDeleteState appends the state of floor st.
func appendDeleteState(dst []byte, st Stamp) []byte {
	dst = append(dst, kindDeleteState)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(st.HLC))
	return append(dst, st.Origin[:]...)
}

// mergeDelete folds deletion operands onto a floor: the highest stamp.
func mergeDelete(dst []byte, operands [][]byte, base []byte, hasBase bool, self oplog.ReplicaID) ([]byte, error) {
	var floor Stamp
	any := false
	if hasBase {
		st, _, err := DecodeDelete(base, self)
		if err != nil {
			return nil, err
		}
		floor, any = st, true
	}
	for _, v := range operands {
		st, _, err := DecodeDelete(v, self)
		if err != nil {
			return nil, err
		}
		if !any || st.Above(floor) {
			floor, any = st, true
		}
	}
	if !any {
		return nil, errs.Corruptf("series deletion", 0, "nothing to fold")
	}
	return appendDeleteState(dst, floor), nil
}

// JoinDelete joins a snapshot's deletion state p into local (a stored
// value of the key, if hasLocal): the higher floor. It returns the state
// and whether it differs from local.
func JoinDelete(local []byte, hasLocal bool, p []byte, self oplog.ReplicaID) ([]byte, bool, error) {
	theirs, _, err := DecodeDelete(p, self)
	if err != nil {
		return nil, false, err
	}
	if len(p) != deleteStateLen {
		return nil, false, errs.Corruptf("series deletion", 0, "an operand where a state belongs")
	}
	if hasLocal {
		mine, _, err := DecodeDelete(local, self)
		if err != nil {
			return nil, false, err
		}
		if !theirs.Above(mine) {
			return appendDeleteState(nil, mine), local[0] != kindDeleteState, nil
		}
	}
	return appendDeleteState(nil, theirs), true, nil
}

// Floor reads the deletion floor of a series: ok false when it was never
// deleted.
func Floor(st Store, self oplog.ReplicaID, canonical string) (floor Stamp, ok bool, err error) {
	key := DeleteKey(nil, canonical)
	hi := append(DeleteKey(nil, canonical), 0)
	err = st.Scan(key, hi, func(k, v []byte) error {
		var err error
		if floor, _, err = DecodeDelete(v, self); err != nil {
			return fmt.Errorf("series %s: %w", canonical, err)
		}
		ok = true
		return nil
	})
	return floor, ok, err
}

// FilterChunk removes from a stored chunk value (a state or a lone
// operand) the samples whose stamp is not above floor. It returns v
// itself when none is (no copy), else a raw state of the rest (empty
// when no sample survives).
func FilterChunk(v []byte, self oplog.ReplicaID, floor Stamp) ([]byte, error) {
	var c Chunk
	if err := c.decodeValue(v, self); err != nil {
		return nil, err
	}
	if !c.filter(floor) {
		return v, nil
	}
	return c.appendState(nil, false)
}

// AllDeleted reports whether floor deletes every sample of a stored
// chunk value (a state or a lone operand), from the stamps alone.
func AllDeleted(v []byte, self oplog.ReplicaID, floor Stamp) (bool, error) {
	if IsOperand(v) {
		o, err := DecodeOperand(v)
		if err != nil {
			return false, err
		}
		st := Stamp{HLC: o.HLC, Origin: self}
		if o.Remote {
			st.Origin = o.Origin
		}
		return !st.Above(floor), nil
	}
	newest, ok, err := newestStamp(v)
	if err != nil || !ok {
		return err == nil, err
	}
	return !newest.Above(floor), nil
}

// newestStamp returns the highest stamp of a state (its stamps are
// sorted) without decoding its samples; ok false for an empty state.
func newestStamp(v []byte) (Stamp, bool, error) {
	if len(v) == 0 || v[0] != kindState {
		return Stamp{}, false, errs.Corruptf("series chunk", 0, "not a chunk state")
	}
	d := sdec{b: v, off: 1}
	if _, ok := d.summary(); !ok || d.err != nil {
		return Stamp{}, false, d.err
	}
	ns := d.uvarint("stamps")
	if d.err == nil && (ns == 0 || ns > uint64(len(v)-d.off)/17) {
		d.fail("%d stamps in %d bytes", ns, len(v)-d.off)
	}
	var st Stamp
	for i := uint64(0); d.err == nil && i < ns; i++ {
		st.HLC = oplog.Timestamp(d.uvarint("stamp HLC"))
		copy(st.Origin[:], d.fixed(16, "stamp origin"))
	}
	return st, d.err == nil, d.err
}

// filter drops the samples whose stamp is not above floor; it reports
// whether it dropped any.
func (c *Chunk) filter(floor Stamp) bool {
	dead := make([]bool, len(c.Stamps))
	anyDead := false
	for i, st := range c.Stamps {
		if !st.Above(floor) {
			dead[i], anyDead = true, true
		}
	}
	if !anyDead {
		return false
	}
	n := 0
	for i, s := range c.Samples {
		if !dead[c.Of[i]] {
			c.Samples[n], c.Of[n] = s, c.Of[i]
			n++
		}
	}
	dropped := n != len(c.Samples)
	c.Samples, c.Of = c.Samples[:n], c.Of[:n]
	c.compactStamps()
	return dropped
}

// WithDeletes returns a Store whose chunk values hold no deleted sample:
// a chunk of a series with a deletion floor is filtered (FilterChunk) as
// it is read. mayBeDeleted says whether a series may have a floor (false:
// no floor is read for it); it must not say false for a series whose
// deletion st holds (the engine records a floor before the deletion
// becomes visible).
func WithDeletes(st Store, self oplog.ReplicaID, mayBeDeleted func(canonical string) bool) Store {
	return &deletesStore{Store: st, self: self, may: mayBeDeleted, floors: map[string]floorOf{}}
}

type floorOf struct {
	floor Stamp
	ok    bool
}

type deletesStore struct {
	Store
	self   oplog.ReplicaID
	may    func(string) bool
	mu     sync.Mutex
	floors map[string]floorOf
}

func (s *deletesStore) floorOf(canonical string) (floorOf, error) {
	if !s.may(canonical) {
		return floorOf{}, nil
	}
	s.mu.Lock()
	f, ok := s.floors[canonical]
	s.mu.Unlock()
	if ok {
		return f, nil
	}
	floor, has, err := Floor(s.Store, s.self, canonical)
	if err != nil {
		return floorOf{}, err
	}
	f = floorOf{floor: floor, ok: has}
	s.mu.Lock()
	s.floors[canonical] = f
	s.mu.Unlock()
	return f, nil
}

func (s *deletesStore) Scan(lo, hi []byte, fn func(key, value []byte) error) error {
	return s.Store.Scan(lo, hi, func(key, value []byte) error {
		if len(key) == 0 || key[0] != prefixChunk {
			return fn(key, value)
		}
		name, bucket, err := ParseChunkKey(key)
		if err != nil {
			return err
		}
		f, err := s.floorOf(name)
		if err != nil || !f.ok {
			if err != nil {
				return err
			}
			return fn(key, value)
		}
		v, err := FilterChunk(value, s.self, f.floor)
		if err != nil {
			return fmt.Errorf("series %s, %s: %w", name, fmtBucket(bucket), err)
		}
		return fn(key, v)
	})
}

// HasSamples reports whether a series holds any sample in st (through
// WithDeletes: any sample its deletion left).
func HasSamples(st Store, self oplog.ReplicaID, canonical string) (bool, error) {
	found := false
	err := scanChunks(st, canonical, math.MinInt64, math.MaxInt64, func(bucket int64, value []byte) error {
		n, err := chunkLen(value, self)
		if err != nil {
			return fmt.Errorf("series %s, %s: %w", canonical, fmtBucket(bucket), err)
		}
		if n > 0 {
			found = true
			return errStop
		}
		return nil
	})
	if err == errStop {
		err = nil
	}
	return found, err
}

// chunkLen is the number of samples of a stored chunk value.
func chunkLen(v []byte, self oplog.ReplicaID) (int, error) {
	if IsOperand(v) {
		return 1, nil // an operand holds at least one sample
	}
	s, ok, err := StateSummary(v)
	if err != nil || !ok {
		return 0, err
	}
	return s.Count, nil
}

// Deletes is the engine's in-memory record of deleted series: each
// series' floor with the sequence number of the record that set it (so a
// compaction drops deleted samples only once every reader sees the
// deletion), and for listing, which deleted series hold samples again.
// Safe for concurrent use.
type Deletes struct {
	mu      sync.RWMutex
	floors  map[string]deleted
	touched map[string]uint64 // series with a floor: the last record that wrote it
	resetAt uint64            // live answers before this are stale for every series
}

type deleted struct {
	floor Stamp
	seq   uint64 // of the record that set it; 0: loaded at open
	// live says whether the series held samples above the floor at
	// liveAt (valid while no record wrote it since).
	live, liveKnown bool
	liveAt          uint64
}

// NewDeletes returns an empty record.
func NewDeletes() *Deletes {
	return &Deletes{floors: map[string]deleted{}, touched: map[string]uint64{}}
}

// Load records every deletion floor st holds (at open: every reader sees
// them).
func (d *Deletes) Load(st Store, self oplog.ReplicaID) error {
	return st.Scan([]byte{prefixDelete}, []byte{prefixDelete + 1}, func(key, value []byte) error {
		name, ok := DeleteOfKey(key)
		if !ok {
			return nil
		}
		floor, _, err := DecodeDelete(value, self)
		if err != nil {
			return fmt.Errorf("series %s: %w", name, err)
		}
		d.Set(name, floor, 0)
		return nil
	})
}

// Set records that series canonical has floor (if above the one it had)
// from the record ending at seq. Call it before that record becomes
// visible.
func (d *Deletes) Set(canonical string, floor Stamp, seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.floors[canonical]
	if ok && !floor.Above(e.floor) {
		e.seq = max(e.seq, seq)
	} else {
		e = deleted{floor: floor, seq: seq}
	}
	e.liveKnown = false
	d.floors[canonical] = e
	d.touched[canonical] = max(d.touched[canonical], seq)
}

// Any reports whether any series was ever deleted.
func (d *Deletes) Any() bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return len(d.floors) > 0
}

// Has reports whether series canonical has a floor.
func (d *Deletes) Has(canonical string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	_, ok := d.floors[canonical]
	return ok
}

// Floor returns the floor of canonical if every reader sees it: the
// record that set it is at or below readable (the oldest sequence number
// a reader may read at).
func (d *Deletes) Floor(canonical string, readable uint64) (Stamp, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	e, ok := d.floors[canonical]
	if !ok || e.seq > readable {
		return Stamp{}, false
	}
	return e.floor, true
}

// Touch records that the record ending at seq wrote samples of the
// series. Call it before the record becomes visible.
func (d *Deletes) Touch(canonical string, seq uint64) {
	d.mu.RLock()
	_, ok := d.floors[canonical]
	d.mu.RUnlock()
	if !ok {
		return
	}
	d.mu.Lock()
	d.touched[canonical] = max(d.touched[canonical], seq)
	d.mu.Unlock()
}

// TouchAll makes every listing answer before seq stale (a snapshot
// import rewrote chunks of any series).
func (d *Deletes) TouchAll(seq uint64) {
	d.mu.Lock()
	d.resetAt = max(d.resetAt, seq)
	d.mu.Unlock()
}

// Live says whether series canonical holds samples at sequence number at,
// read through st (a Store at that sequence number, through
// WithDeletes): a series never deleted is; a deleted one is when a
// sample above its floor is left. Answers are kept until a record writes
// the series again.
func (d *Deletes) Live(st Store, self oplog.ReplicaID, canonical string, at uint64) (bool, error) {
	d.mu.RLock()
	e, ok := d.floors[canonical]
	touched, resetAt := d.touched[canonical], d.resetAt
	d.mu.RUnlock()
	if !ok {
		return true, nil
	}
	if e.liveKnown && e.liveAt >= touched && e.liveAt >= resetAt && e.liveAt <= at {
		return e.live, nil
	}
	live, err := HasSamples(st, self, canonical)
	if err != nil {
		return false, err
	}
	d.mu.Lock()
	if cur, ok := d.floors[canonical]; ok && cur.floor == e.floor && (!cur.liveKnown || cur.liveAt < at) {
		cur.live, cur.liveKnown, cur.liveAt = live, true, at
		d.floors[canonical] = cur
	}
	d.mu.Unlock()
	return live, nil
}

// checkDeleteStored checks a deletion key and state a snapshot carries.
func checkDeleteStored(name string, value []byte) error {
	if c, err := timeseries.Canonical(name); err != nil || c != name {
		return errs.Corruptf("series deletion", 0, "series %q is not a canonical name", name)
	}
	if len(value) != deleteStateLen || value[0] != kindDeleteState {
		return errs.Corruptf("series deletion", 0, "series %q: not a deletion state (%d bytes)", name, len(value))
	}
	return nil
}

// ExportValue returns a stored value of the series namespace as a state
// snapshot carries it: chunks as a compaction would write them
// (Reencode), deletions as their state, the series table as it is.
func ExportValue(key, v []byte, self oplog.ReplicaID) ([]byte, error) {
	switch {
	case len(key) > 0 && key[0] == prefixChunk:
		return Reencode(v, self)
	case len(key) > 0 && key[0] == prefixDelete:
		st, _, err := DecodeDelete(v, self)
		if err != nil {
			return nil, err
		}
		return appendDeleteState(nil, st), nil
	}
	return v, nil
}

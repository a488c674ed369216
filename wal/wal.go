// Package wal is the write-ahead log: a sequence of segment files, each
// holding the encoded batches committed while it was live. A write is
// framed once, written once and shared one fsync with every commit that
// arrived while the previous fsync was in flight (group commit). Sealed
// segments are not deleted: the op log reads them (OpenSegment).
//
// A segment is named layout.Name(layout.TypeLog, num) ("000012.log"):
//
//	+-------------+-------------+--------------+---------------------------+
//	| magic (8)   | version (4) | checksum (4) | record stream ...         |
//	| "PLURWAL\0" | uint32 LE=1 | uint32 LE    | (internal/record, 32 KiB  |
//	|             |             |              |  blocks from offset 16)   |
//	+-------------+-------------+--------------+---------------------------+
//	0             8             12             16
//
// checksum is the low 32 bits of xxhash64 over bytes 0..11. Records are
// opaque payloads (up to 64 MiB; larger than a block is fine, the record
// layer fragments them). The header is written and synced, and the
// directory entry made durable, before Create returns, so a segment shorter
// than 16 bytes can only be one whose creation was cut short.
//
// Recovery (Replay) holds to these rules:
//
//   - A record whose full length is present but fails its checksum is
//     corruption, never a torn tail: a write cut short leaves zeros or a
//     short file, not other bytes.
//   - A torn tail exists only after a crash, and only at the end of the last
//     segment. On a clean close the owner records the last segment and its
//     size (the root package puts them in the MANIFEST); given them
//     (RecoverOptions.Clean), Replay refuses any damage, another last
//     segment or another size with errs.ErrCorruption naming segment and
//     offset.
//   - After a crash, what follows the last whole record of the last segment
//     is truncated away only if a crash explains all of it
//     (record.CheckTail): records cut short (a chunk running past the end
//     of the file, a chunk or header whose bytes are zero from a sector
//     boundary on: disks write 512-byte sectors whole), zeros, and
//     whole valid chunks after a zero hole (a lost write followed by a kept
//     one: everything after the first hole was never synced, or the hole
//     could not exist). A whole chunk of non-zero bytes with a bad checksum
//     anywhere in it is corruption.
//   - The one ambiguity: damage that looks exactly like a lost or cut write
//     (bytes zeroed in synced data, a flip in a chunk whose own bytes are
//     zero from a sector boundary on, a flip that makes the last chunk's
//     length run past the end of the file) is taken for a torn tail after
//     a crash. After a clean close it is
//     refused.
//   - Damage anywhere else is corruption and stops recovery, unless
//     salvaging: then the segment is first copied into the database's
//     quarantine/ directory (never over an existing copy), every valid
//     record after the damage is kept (reading resynchronises at the next
//     chunk that starts a record), the segment is rewritten with the kept
//     records (a new file, synced, renamed over it), and each dropped range
//     is reported with the number of records before it, so the owner can
//     name the sequence numbers lost.
package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/record"
	"github.com/plures/pluresdb/internal/vfs"
)

// Segment header constants; part of the format.
const (
	headerSize    = 16
	formatVersion = 1
	magic         = "PLURWAL\x00"
)

// MaxRecordSize is the largest record Append accepts.
const MaxRecordSize = 64 << 20

// Defaults for Options.
const (
	DefaultSegmentSize = 64 << 20
	DefaultBufferSize  = 512 << 10
)

// ErrRecordTooLarge is returned by Append for a record over MaxRecordSize.
var ErrRecordTooLarge = errors.New("wal: record too large")

func encodeHeader() [headerSize]byte {
	var h [headerSize]byte
	copy(h[:8], magic)
	binary.LittleEndian.PutUint32(h[8:12], formatVersion)
	binary.LittleEndian.PutUint32(h[12:16], uint32(xxhash.Sum64(h[:12])))
	return h
}

// checkHeader validates a segment header read from file.
func checkHeader(h []byte, file string) error {
	if string(h[:8]) != magic {
		return errs.Corruptf(file, 0, "bad segment magic %q", h[:8])
	}
	if binary.LittleEndian.Uint32(h[12:16]) != uint32(xxhash.Sum64(h[:12])) {
		return errs.Corruptf(file, 0, "segment header checksum mismatch")
	}
	if v := binary.LittleEndian.Uint32(h[8:12]); v > formatVersion {
		return errs.NewerFormatf(file, v, formatVersion)
	} else if v == 0 {
		return errs.Corruptf(file, 0, "segment format version 0")
	}
	return nil
}

// Options configure a Writer. The zero value of each field means its
// default.
type Options struct {
	// FS is the filesystem; nil means vfs.Default.
	FS vfs.FS
	// Dir is the database directory holding the segments.
	Dir string
	// SegmentSize is the size past which the owner should Rotate (see
	// Writer.Full); default 64 MiB. Bigger segments mean fewer files and
	// longer replays.
	SegmentSize int64
	// NoSync: Append with sync=true still writes, but never
	// fsync (bulk loads; a crash loses what the OS had not written back).
	// Sync and Close always fsync.
	NoSync bool
	// BufferSize is how many bytes unsynced appends collect before one
	// write(2); default 512 KiB.
	BufferSize int
}

func (o *Options) ensureDefaults() {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.BufferSize <= 0 {
		o.BufferSize = DefaultBufferSize
	}
}

// Stats counts a Writer's work since Create.
type Stats struct {
	Appends int64 // records appended
	Writes  int64 // write(2) calls on segments
	Syncs   int64 // fsyncs of segments (group commit makes this far fewer than synced appends)
	Bytes   int64 // bytes written to segments, headers and framing included
}

// Writer appends records to the live segment.
//
// Concurrency: all methods are safe for concurrent use, except that Rotate
// must not run concurrently with Append (the owner holds its commit lock).
// mu guards the in-memory buffer, the framer and the sticky error; it is
// held only to copy a record in. writeMu is held by whichever goroutine
// writes the buffer to the file and fsyncs it (the group commit leader), so
// file writes are ordered and one fsync covers everyone who appended before
// it. A synced Append that finds another leader in flight waits on
// syncCond (under syncMu) rather than queueing on writeMu, so one broadcast
// releases every committer the leader's fsync covered. Lock order: syncMu,
// writeMu, mu (syncMu is released while the leader writes).
type Writer struct {
	opts Options

	syncMu   sync.Mutex
	syncCond sync.Cond // signalled when a leader finishes; L is &syncMu
	syncing  bool      // a leader is writing and fsyncing; guarded by syncMu

	writeMu sync.Mutex
	file    vfs.File // guarded by writeMu (replaced by Rotate)
	written int64    // file offset written so far; guarded by writeMu
	spare   []byte   // the buffer not in use; guarded by writeMu
	synced  atomic.Int64

	mu     sync.Mutex
	buf    []byte // framed bytes not yet written
	framer record.Framer
	size   int64 // header + everything appended to the live segment
	num    layout.FileNum
	err    error // sticky: the first write or fsync error, or ErrClosed

	appends, writes, syncs, bytes atomic.Int64
}

// Create creates segment num in opts.Dir, writes and syncs its header and
// makes its directory entry durable.
func Create(opts Options, num layout.FileNum) (*Writer, error) {
	opts.ensureDefaults()
	w := &Writer{opts: opts}
	w.syncCond.L = &w.syncMu
	if err := w.openSegment(num); err != nil {
		return nil, err
	}
	return w, nil
}

// openSegment creates segment num and makes it the live one. writeMu must
// be held, or w not yet shared.
func (w *Writer) openSegment(num layout.FileNum) error {
	path := layout.Path(w.opts.Dir, layout.TypeLog, num)
	f, err := w.opts.FS.Create(path)
	if err != nil {
		return fmt.Errorf("wal: create segment: %w", err)
	}
	h := encodeHeader()
	if _, err := f.Write(h[:]); err != nil {
		f.Close()
		return fmt.Errorf("wal: write segment header: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("wal: sync segment header: %w", err)
	}
	if err := w.opts.FS.SyncDir(w.opts.Dir); err != nil {
		f.Close()
		return fmt.Errorf("wal: sync directory: %w", err)
	}
	w.writes.Add(1)
	w.syncs.Add(1)
	w.bytes.Add(headerSize)
	w.file = f
	w.written = headerSize
	w.synced.Store(headerSize)
	w.mu.Lock()
	w.num = num
	w.size = headerSize
	w.framer = record.Framer{}
	w.buf = w.buf[:0]
	w.mu.Unlock()
	return nil
}

// Append frames rec into the buffer. With sync (and not Options.NoSync) it
// returns once rec is written and fsynced; concurrent synced appends share
// one write and one fsync. With Options.NoSync, sync=true still writes rec
// to the file before returning. Without sync the buffer is written once it
// holds BufferSize bytes.
func (w *Writer) Append(rec []byte, sync bool) error {
	if len(rec) > MaxRecordSize {
		return fmt.Errorf("%w: %d bytes (max %d)", ErrRecordTooLarge, len(rec), MaxRecordSize)
	}
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	before := len(w.buf)
	if n := before + w.framer.FramedSize(len(rec)); n > cap(w.buf) {
		// Grow once to what the record needs: a big record (an import
		// batch) would otherwise be copied again at every doubling.
		w.buf = append(make([]byte, 0, max(n, 2*cap(w.buf))), w.buf...)
	}
	w.buf = w.framer.Append(w.buf, rec)
	w.size += int64(len(w.buf) - before)
	end, seg := w.size, w.num
	full := len(w.buf) >= w.opts.BufferSize
	w.mu.Unlock()
	w.appends.Add(1)

	switch {
	case sync && !w.opts.NoSync:
		return w.syncTo(end, seg)
	case sync || full:
		return w.writeTo(end)
	}
	return nil
}

// syncTo returns once the segment is durable up to end. If no sync is in
// flight the caller becomes the leader: it writes everything buffered (its
// own record and those of everyone who appended meanwhile) and fsyncs once.
// Everyone else waits for the leader's broadcast, and either finds its
// record covered or elects the next leader among themselves.
//
// end is an offset in segment seg. If seg was sealed meanwhile, Rotate
// fsynced all of it and there is nothing left to do.
func (w *Writer) syncTo(end int64, seg layout.FileNum) error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	for w.synced.Load() < end {
		if err := w.stickyErr(); err != nil {
			return err
		}
		if w.Num() != seg {
			return nil
		}
		if w.syncing {
			w.syncCond.Wait()
			continue
		}
		w.syncing = true
		w.syncMu.Unlock()
		// Let committers that are already runnable append first: one
		// fsync then covers them too. Without this the leader usually
		// syncs before they are scheduled, and groups stay small (about
		// 6 of 16 concurrent writers instead of about 9 here).
		runtime.Gosched()
		w.writeMu.Lock()
		err := w.flushAndSyncLocked()
		w.writeMu.Unlock()
		w.syncMu.Lock()
		w.syncing = false
		w.syncCond.Broadcast()
		if err != nil && w.synced.Load() < end {
			return err
		}
	}
	return nil
}

// writeTo returns once the segment is written (not necessarily synced) up
// to end.
func (w *Writer) writeTo(end int64) error {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	if w.written >= end {
		return w.stickyErr()
	}
	return w.flushLocked()
}

// WriteBuffered writes every record appended so far to the segment file
// (without fsync) and returns the segment's size: a reader of the segment
// may read up to that offset while writing goes on.
func (w *Writer) WriteBuffered() (int64, error) {
	w.mu.Lock()
	end := w.size
	w.mu.Unlock()
	if err := w.writeTo(end); err != nil {
		return 0, err
	}
	return end, nil
}

func (w *Writer) stickyErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// fail records err as the sticky error (keeping the first) and returns the
// sticky error.
func (w *Writer) fail(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
	return w.err
}

// flushLocked writes everything buffered. It swaps the buffer for the
// spare one under mu, so appenders keep filling a buffer while the write
// runs. writeMu must be held.
func (w *Writer) flushLocked() error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	buf := w.buf
	w.buf = w.spare[:0]
	end := w.size
	w.mu.Unlock()
	if len(buf) == 0 {
		w.spare = buf
		return nil
	}
	_, err := w.file.Write(buf)
	// Keep the buffer for reuse, unless one huge record blew it up and
	// this write did not fill it (big records keep their big buffer while
	// they come, as an import's batches do).
	if cap(buf) <= 4*w.opts.BufferSize || len(buf) > cap(buf)/2 {
		w.spare = buf[:0]
	} else {
		w.spare = nil
	}
	if err != nil {
		return w.fail(fmt.Errorf("wal: write segment %s: %w", w.num, err))
	}
	w.writes.Add(1)
	w.bytes.Add(int64(len(buf)))
	w.written = end
	return nil
}

// flushAndSyncLocked writes everything buffered and fsyncs. writeMu must
// be held.
func (w *Writer) flushAndSyncLocked() error {
	if err := w.flushLocked(); err != nil {
		return err
	}
	if w.synced.Load() >= w.written {
		return nil
	}
	if err := w.file.Sync(); err != nil {
		// The kernel may have dropped the dirty pages; a retry could report
		// success for data that is gone, so the writer stays broken.
		return w.fail(fmt.Errorf("wal: sync segment %s: %w", w.num, err))
	}
	w.syncs.Add(1)
	w.synced.Store(w.written)
	return nil
}

// Size returns the bytes appended to the live segment so far, header and
// buffered bytes included.
func (w *Writer) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}

// Full reports whether the live segment has reached Options.SegmentSize,
// so the owner should Rotate.
func (w *Writer) Full() bool { return w.Size() >= w.opts.SegmentSize }

// Num returns the live segment's number.
func (w *Writer) Num() layout.FileNum {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.num
}

// Stats returns the Writer's counters.
func (w *Writer) Stats() Stats {
	return Stats{Appends: w.appends.Load(), Writes: w.writes.Load(), Syncs: w.syncs.Load(), Bytes: w.bytes.Load()}
}

// Rotate seals the live segment (writes and fsyncs everything buffered,
// even under NoSync, then closes it) and creates segment next. No
// Append may run concurrently.
func (w *Writer) Rotate(next layout.FileNum) error {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	// A sealed segment is always fsynced, NoSync or not: replay treats
	// damage in any segment but the last as corruption, so a sealed
	// segment must never be left with a torn tail. One fsync per segment.
	if err := w.flushAndSyncLocked(); err != nil {
		return err
	}
	cerr := w.file.Close()
	w.file = nil
	if cerr != nil {
		return w.fail(fmt.Errorf("wal: close segment %s: %w", w.num, cerr))
	}
	if err := w.openSegment(next); err != nil {
		return w.fail(err)
	}
	return nil
}

// Sync returns once everything appended before the call is written and
// fsynced, even under NoSync. Concurrent Syncs (and synced Appends) share
// one fsync, so "Append(rec, false) under the commit lock, then Sync
// outside it" is a group commit too.
func (w *Writer) Sync() error {
	w.mu.Lock()
	end, seg, err := w.size, w.num, w.err
	w.mu.Unlock()
	if err != nil {
		return err
	}
	return w.syncTo(end, seg)
}

// Close syncs and closes the live segment. Later calls return
// errs.ErrClosed (or the write error that broke the Writer).
func (w *Writer) Close() error {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	if w.file == nil {
		return w.stickyErr()
	}
	err := w.flushAndSyncLocked()
	if cerr := w.file.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("wal: close segment %s: %w", w.num, cerr)
	}
	w.file = nil
	w.fail(fmt.Errorf("wal: %w", errs.ErrClosed))
	return err
}

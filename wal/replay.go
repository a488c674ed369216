package wal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/record"
	"github.com/plures/pluresdb/internal/vfs"
)

// RecoverOptions configure Replay.
type RecoverOptions struct {
	FS  vfs.FS // nil means vfs.Default
	Dir string
	// Clean, if set, says the database was closed cleanly with this last
	// segment and size (the MANIFEST recorded it). A torn tail is then
	// impossible: any damage, a different last segment or size, is
	// corruption. nil after a crash.
	Clean *CleanClose
	// Salvage: instead of failing on damage that is not a torn tail, copy
	// the damaged segment into Dir's quarantine/ subdirectory, keep every
	// valid record found after the damage (resynchronising at the next
	// chunk that starts a record), and rewrite the segment with exactly
	// those records. Result.Dropped lists what was lost, for the caller to
	// report and a peer or backup to supply.
	Salvage bool
	// OnDamage, if set, is called for each range Salvage drops, in log
	// order: after the records before it were passed to fn and before the
	// records after it are.
	OnDamage func(Damage)
	// ReadOnly: write nothing. A torn tail is reported (Result.TornTail,
	// TruncatedAt) but left in place; Salvage is refused.
	ReadOnly bool
}

// CleanClose is what a clean shutdown recorded of the log: its last
// segment and that segment's size, everything in it synced.
type CleanClose struct {
	Segment layout.FileNum
	Size    int64
}

// Result describes a Replay.
type Result struct {
	Records     int      // records passed to fn
	TornTail    bool     // the last segment ended in a torn write, now truncated away
	TruncatedAt int64    // the last segment's size after removing the torn tail
	Dropped     []Damage // what Salvage cut away
}

// Damage is a range of a segment that Salvage dropped.
type Damage struct {
	Segment layout.FileNum
	Offset  int64 // where the dropped range starts, in the segment as it was
	Bytes   int64 // how many bytes were dropped
	// Records is how many records Replay had passed to fn before the
	// damage: the record before it is number Records-1, the record after
	// it (if any) number Records. A caller that knows each record's
	// sequence numbers computes the missing ones from these two.
	Records int
	// Quarantined is the copy of the segment as it was before Salvage
	// rewrote it ("" if nothing was rewritten).
	Quarantined string
	Err         error // the corruption found, naming the exact offset
}

// QuarantineDir is the subdirectory of the database directory that holds
// copies of damaged files.
const QuarantineDir = "quarantine"

// List returns the numbers of the segments in dir, ascending.
func List(fs vfs.FS, dir string) ([]layout.FileNum, error) {
	if fs == nil {
		fs = vfs.Default
	}
	names, err := fs.List(dir)
	if err != nil {
		return nil, err
	}
	var nums []layout.FileNum
	for _, name := range names {
		if t, n, ok := layout.Parse(name); ok && t == layout.TypeLog {
			nums = append(nums, n)
		}
	}
	sort.Slice(nums, func(i, j int) bool { return nums[i] < nums[j] })
	return nums, nil
}

// Replay reads segments nums of opts.Dir in order and calls fn with each
// record (rec is valid only during the call). An error from fn stops the
// replay and is returned as is.
//
// After a crash (opts.Clean nil), damage in the last segment that is a
// torn tail (see the package doc) is truncated away, the truncation synced,
// and Replay ends cleanly; a last segment shorter than its header was cut
// short while being created and gets its header rewritten. Any other
// damage returns an error wrapping errs.ErrCorruption that names the
// segment and offset, unless opts.Salvage (see RecoverOptions). A header
// from a newer format gives errs.ErrNewerFormat, salvage or not.
func Replay(opts RecoverOptions, nums []layout.FileNum, fn func(seg layout.FileNum, rec []byte) error) (Result, error) {
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	var res Result
	if opts.ReadOnly && opts.Salvage {
		return res, errors.New("wal: Replay: Salvage rewrites segments, ReadOnly writes nothing")
	}
	var missing error
	if c := opts.Clean; c != nil && (len(nums) == 0 || nums[len(nums)-1] < c.Segment) {
		path := layout.Path(opts.Dir, layout.TypeLog, c.Segment)
		missing = errs.Corruptf(path, 0, "segment missing: it was the last one, %d bytes, at a clean close", c.Size)
		if !opts.Salvage {
			return res, missing
		}
	}
	for i, num := range nums {
		rs := &segmentReplay{opts: opts, num: num, last: i == len(nums)-1, fn: fn, res: &res,
			path: layout.Path(opts.Dir, layout.TypeLog, num)}
		err := rs.run()
		if err != nil {
			return res, err
		}
		if rs.short != nil {
			res.drop(opts, *rs.short)
		}
	}
	if missing != nil {
		res.drop(opts, Damage{Segment: opts.Clean.Segment, Bytes: opts.Clean.Size, Err: missing})
	}
	return res, nil
}

func (res *Result) drop(opts RecoverOptions, d Damage) {
	d.Records = res.Records
	res.Dropped = append(res.Dropped, d)
	if opts.OnDamage != nil {
		opts.OnDamage(d)
	}
}

// segmentReplay replays one segment.
type segmentReplay struct {
	opts RecoverOptions
	num  layout.FileNum
	path string
	last bool
	fn   func(layout.FileNum, []byte) error
	res  *Result

	f    vfs.File
	size int64
	// short: the segment is shorter than at a clean close (salvaging);
	// reported after its records.
	short *Damage
}

// tornOK reports whether the segment may end in a torn tail: it is the
// last one, after a crash.
func (rs *segmentReplay) tornOK() bool { return rs.last && rs.opts.Clean == nil }

func (rs *segmentReplay) run() error {
	opts, path := rs.opts, rs.path
	f, err := opts.FS.Open(path)
	if err != nil {
		return fmt.Errorf("wal: open segment: %w", err)
	}
	defer f.Close()
	rs.f = f
	if rs.size, err = f.Size(); err != nil {
		return fmt.Errorf("wal: segment %s: %w", path, err)
	}
	size := rs.size

	if c := opts.Clean; c != nil && rs.last && (rs.num != c.Segment || size != c.Size) {
		var cerr error
		if rs.num != c.Segment {
			cerr = errs.Corruptf(path, 0, "segment follows %s, the last one at a clean close", c.Segment)
		} else {
			cerr = errs.Corruptf(path, min(size, c.Size), "segment is %d bytes, %d at a clean close", size, c.Size)
		}
		if !opts.Salvage {
			return cerr
		}
		if rs.num == c.Segment && size < c.Size {
			rs.short = &Damage{Segment: rs.num, Offset: size, Bytes: c.Size - size, Err: cerr}
		}
		// A longer segment: what follows the recorded size is checked as
		// any damage is.
	}

	if size < headerSize {
		cerr := errs.Corruptf(path, 0, "segment shorter than its header (%d bytes)", size)
		if rs.tornOK() {
			// Cut short while being created: nothing was ever in it.
			if opts.ReadOnly {
				rs.res.TornTail, rs.res.TruncatedAt = true, 0
				return nil
			}
			if err := rewriteHeader(opts.FS, path); err != nil {
				return err
			}
			rs.res.TornTail, rs.res.TruncatedAt = true, headerSize
			return nil
		}
		if !opts.Salvage {
			return cerr
		}
		q, err := quarantine(opts.FS, opts.Dir, path)
		if err != nil {
			return err
		}
		if err := rewriteHeader(opts.FS, path); err != nil {
			return err
		}
		rs.res.drop(opts, Damage{Segment: rs.num, Offset: 0, Bytes: size, Quarantined: q, Err: cerr})
		return nil
	}
	var h [headerSize]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return fmt.Errorf("wal: read segment header %s: %w", path, err)
	}
	if err := checkHeader(h[:], path); err != nil {
		// A synced header cannot be torn; never overwrite a newer format.
		if !opts.Salvage || errors.Is(err, errs.ErrNewerFormat) {
			return err
		}
		return rs.salvage(headerSize, 0, headerSize-1, err)
	}

	r := record.NewReader(io.NewSectionReader(f, headerSize, size-headerSize), path, headerSize)
	for {
		rec, err := r.Next()
		if err == nil {
			rs.res.Records++
			if err := rs.fn(rs.num, rec); err != nil {
				return err
			}
			continue
		}
		if err == io.EOF {
			if r.End() == size {
				return nil
			}
			// Only zero padding follows the last record (the record
			// reader checked it).
			if rs.tornOK() {
				return rs.truncateTorn(r.End())
			}
			err = errs.Corruptf(path, r.End(), "%d zero bytes after the last record", size-r.End())
		}
		if !errors.Is(err, errs.ErrCorruption) {
			return fmt.Errorf("wal: read segment %s: %w", path, err)
		}
		if rs.tornOK() {
			terr := record.CheckTail(f, path, headerSize, r.End(), size)
			if terr == nil {
				return rs.truncateTorn(r.End())
			}
			if !errors.Is(terr, errs.ErrCorruption) {
				return fmt.Errorf("wal: read segment %s: %w", path, terr)
			}
		}
		if !opts.Salvage {
			return err
		}
		return rs.salvage(r.End(), r.End(), r.Offset(), err)
	}
}

func (rs *segmentReplay) truncateTorn(end int64) error {
	if rs.opts.ReadOnly {
		rs.res.TornTail, rs.res.TruncatedAt = true, end
		return nil
	}
	if err := truncate(rs.opts.FS, rs.path, end); err != nil {
		return err
	}
	rs.res.TornTail, rs.res.TruncatedAt = true, end
	return nil
}

// salvage handles damage that is not a torn tail: bytes [headerSize, kept)
// are whole records already passed to fn, the damage damageErr (found at
// damageAt) begins at lostFrom (0 for a damaged header). It copies the segment into quarantine, passes every valid
// record found after the damage to fn, and rewrites the segment (a new
// file renamed over it) with all the records it kept.
func (rs *segmentReplay) salvage(kept, lostFrom, damageAt int64, damageErr error) error {
	opts, path, f, size := rs.opts, rs.path, rs.f, rs.size
	q, err := quarantine(opts.FS, opts.Dir, path)
	if err != nil {
		return err
	}
	tmp := layout.Path(opts.Dir, layout.TypeTemp, rs.num)
	out, err := opts.FS.Create(tmp)
	if err != nil {
		return fmt.Errorf("wal: salvage %s: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			out.Close()
			opts.FS.Remove(tmp) // our own partial copy; the segment is untouched
		}
	}()
	bw := bufio.NewWriterSize(out, 256<<10)
	h := encodeHeader()
	bw.Write(h[:])
	if _, err := io.Copy(bw, io.NewSectionReader(f, headerSize, kept-headerSize)); err != nil {
		return fmt.Errorf("wal: salvage %s: %w", path, err)
	}
	framer := record.NewFramer(kept - headerSize)
	var framed []byte

	lostErr := damageErr
	for {
		start, found, err := record.NextRecordStart(f, headerSize, damageAt+1, size)
		if err != nil {
			return fmt.Errorf("wal: salvage %s: %w", path, err)
		}
		if !found {
			start = size
		}
		if start > lostFrom {
			torn := !found && rs.tornOK() && record.CheckTail(f, path, headerSize, lostFrom, size) == nil
			if torn {
				rs.res.TornTail, rs.res.TruncatedAt = true, kept
			} else {
				rs.res.drop(opts, Damage{Segment: rs.num, Offset: lostFrom, Bytes: start - lostFrom, Quarantined: q, Err: lostErr})
			}
		}
		if !found {
			break
		}
		r := record.NewReaderAt(f, path, headerSize, start, size)
		for {
			rec, err := r.Next()
			if err == nil {
				rs.res.Records++
				if err := rs.fn(rs.num, rec); err != nil {
					return err
				}
				framed = framer.Append(framed[:0], rec)
				bw.Write(framed)
				kept += int64(len(framed))
				continue
			}
			if err == io.EOF {
				if r.End() < size {
					err = errs.Corruptf(path, r.End(), "%d zero bytes after the last record", size-r.End())
				}
			} else if !errors.Is(err, errs.ErrCorruption) {
				return fmt.Errorf("wal: read segment %s: %w", path, err)
			}
			lostFrom, lostErr, damageAt = r.End(), err, max(r.Offset(), start)
			break
		}
		if lostErr == io.EOF {
			break
		}
	}

	err = bw.Flush()
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = opts.FS.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("wal: salvage %s: write the kept records: %w", path, err)
	}
	ok = true
	if err := opts.FS.SyncDir(opts.Dir); err != nil {
		return fmt.Errorf("wal: salvage %s: %w", path, err)
	}
	return nil
}

// quarantine copies path into the quarantine subdirectory of dir, under
// its own name or, if a file of that name is there already, the first free
// name.N; it never overwrites. The copy and the directory entries are
// synced. It returns the copy's path.
func quarantine(fs vfs.FS, dir, path string) (string, error) {
	qdir := filepath.Join(dir, QuarantineDir)
	if err := fs.MkdirAll(qdir); err != nil {
		return "", fmt.Errorf("wal: quarantine %s: %w", path, err)
	}
	if err := fs.SyncDir(dir); err != nil {
		return "", fmt.Errorf("wal: quarantine %s: %w", path, err)
	}
	base := filepath.Base(path)
	dst := filepath.Join(qdir, base)
	for i := 1; ; i++ {
		_, err := fs.Stat(dst)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("wal: quarantine %s: %w", path, err)
		}
		dst = filepath.Join(qdir, fmt.Sprintf("%s.%d", base, i))
	}
	src, err := fs.Open(path)
	if err != nil {
		return "", fmt.Errorf("wal: quarantine %s: %w", path, err)
	}
	defer src.Close()
	out, err := fs.Create(dst)
	if err != nil {
		return "", fmt.Errorf("wal: quarantine %s: %w", path, err)
	}
	_, err = io.Copy(out, src)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.SyncDir(qdir)
	}
	if err != nil {
		return "", fmt.Errorf("wal: quarantine %s to %s: %w", path, dst, err)
	}
	return dst, nil
}

func truncate(fs vfs.FS, path string, size int64) error {
	f, err := fs.OpenReadWrite(path)
	if err != nil {
		return fmt.Errorf("wal: truncate segment: %w", err)
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: truncate segment %s to %d: %w", path, size, err)
	}
	return nil
}

// rewriteHeader turns path into an empty, valid segment.
func rewriteHeader(fs vfs.FS, path string) error {
	f, err := fs.OpenReadWrite(path)
	if err != nil {
		return fmt.Errorf("wal: repair segment header: %w", err)
	}
	h := encodeHeader()
	err = f.Truncate(0)
	if err == nil {
		_, err = f.Write(h[:])
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: repair segment header %s: %w", path, err)
	}
	return nil
}

// SegmentReader reads the records of a sealed segment in order. It is not
// safe for concurrent use.
type SegmentReader struct {
	f vfs.File
	r *record.Reader
}

// OpenSegment opens segment num of dir and checks its header.
func OpenSegment(fs vfs.FS, dir string, num layout.FileNum) (*SegmentReader, error) {
	return OpenSegmentPrefix(fs, dir, num, -1)
}

// OpenSegmentPrefix is OpenSegment reading only the first size bytes of
// the file (size < 0: all of it). It reads the segment being written up to
// the size Writer.WriteBuffered returned.
func OpenSegmentPrefix(fs vfs.FS, dir string, num layout.FileNum, limit int64) (*SegmentReader, error) {
	if fs == nil {
		fs = vfs.Default
	}
	path := layout.Path(dir, layout.TypeLog, num)
	f, err := fs.Open(path)
	if err != nil {
		return nil, fmt.Errorf("wal: open segment: %w", err)
	}
	size, err := f.Size()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("wal: segment %s: %w", path, err)
	}
	if limit >= 0 && limit < size {
		size = limit
	}
	if size < headerSize {
		f.Close()
		return nil, errs.Corruptf(path, 0, "segment shorter than its header (%d bytes)", size)
	}
	var h [headerSize]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("wal: read segment header %s: %w", path, err)
	}
	if err := checkHeader(h[:], path); err != nil {
		f.Close()
		return nil, err
	}
	sr := io.NewSectionReader(f, headerSize, size-headerSize)
	return &SegmentReader{f: f, r: record.NewReader(sr, path, headerSize)}, nil
}

// Next returns the next record, valid until the next call; io.EOF at the
// end. Damage gives an error wrapping errs.ErrCorruption naming the segment
// and offset.
func (r *SegmentReader) Next() ([]byte, error) { return r.r.Next() }

// Close closes the segment file.
func (r *SegmentReader) Close() error { return r.f.Close() }

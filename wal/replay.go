package wal

import (
	"errors"
	"fmt"
	"io"
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
	// Salvage: instead of failing on damage that is not a torn tail,
	// truncate the damaged segment at the end of its last whole record
	// (dropping the damaged record and everything after it in that
	// segment, valid or not) and go on with the next segment. Result.Dropped
	// lists what was lost, for fsck to report and a peer or backup to
	// supply.
	Salvage bool
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
	Offset  int64 // where the dropped range starts (the segment's new size)
	Bytes   int64 // how many bytes were dropped
	Err     error // the corruption found, naming the exact offset
}

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
// In the last segment, a damaged record with no valid chunk in any later
// block is a torn tail: the segment is truncated to the end of its last
// whole record and synced, and Replay ends cleanly. Trailing zero padding
// after the last record is trimmed the same way. A last segment shorter
// than its header was cut short while being created: its header is
// rewritten. Any other damage returns an error wrapping errs.ErrCorruption
// that names the segment and offset, unless opts.Salvage (see
// RecoverOptions). A header from a newer format gives errs.ErrNewerFormat.
func Replay(opts RecoverOptions, nums []layout.FileNum, fn func(seg layout.FileNum, rec []byte) error) (Result, error) {
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	var res Result
	for i, num := range nums {
		if err := replaySegment(opts, num, i == len(nums)-1, fn, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

func replaySegment(opts RecoverOptions, num layout.FileNum, last bool, fn func(layout.FileNum, []byte) error, res *Result) error {
	path := layout.Path(opts.Dir, layout.TypeLog, num)
	f, err := opts.FS.Open(path)
	if err != nil {
		return fmt.Errorf("wal: open segment: %w", err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return fmt.Errorf("wal: segment %s: %w", path, err)
	}

	if size < headerSize {
		cerr := errs.Corruptf(path, 0, "segment shorter than its header (%d bytes)", size)
		if !last && !opts.Salvage {
			return cerr
		}
		if err := rewriteHeader(opts.FS, path); err != nil {
			return err
		}
		if last {
			res.TornTail, res.TruncatedAt = true, headerSize
		} else {
			res.Dropped = append(res.Dropped, Damage{Segment: num, Offset: 0, Bytes: size, Err: cerr})
		}
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
		if err := rewriteHeader(opts.FS, path); err != nil {
			return err
		}
		res.Dropped = append(res.Dropped, Damage{Segment: num, Offset: 0, Bytes: size, Err: err})
		return nil
	}

	r := record.NewReader(io.NewSectionReader(f, headerSize, size-headerSize), path, headerSize)
	for {
		rec, err := r.Next()
		if err == nil {
			res.Records++
			if err := fn(num, rec); err != nil {
				return err
			}
			continue
		}
		if err == io.EOF {
			if last && r.End() < size {
				// Only zero padding follows the last record (the record
				// reader checked it): trim it so the segment ends cleanly.
				if err := truncate(opts.FS, path, r.End()); err != nil {
					return err
				}
				res.TornTail, res.TruncatedAt = true, r.End()
			}
			return nil
		}
		if !errors.Is(err, errs.ErrCorruption) {
			return fmt.Errorf("wal: read segment %s: %w", path, err)
		}
		end := r.End()
		if last {
			follows, ferr := record.ValidChunkAfter(f, headerSize, r.Offset()+1, size)
			if ferr != nil {
				return fmt.Errorf("wal: read segment %s: %w", path, ferr)
			}
			if !follows {
				if err := truncate(opts.FS, path, end); err != nil {
					return err
				}
				res.TornTail, res.TruncatedAt = true, end
				return nil
			}
		}
		if !opts.Salvage {
			return err
		}
		if err := truncate(opts.FS, path, end); err != nil {
			return err
		}
		res.Dropped = append(res.Dropped, Damage{Segment: num, Offset: end, Bytes: size - end, Err: err})
		return nil
	}
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

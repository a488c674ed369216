package verify

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/plures/pluresdb/internal/archive"
	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/record"
	"github.com/plures/pluresdb/wal"
)

// segmentHeaderSize is the size of a log segment's header (wal's format).
const segmentHeaderSize = 16

// historyResult is the check of one op-log history file: a log segment
// or an archive.
type historyResult struct {
	seg  Segment
	path string
	// checked: the file was read (it exists).
	checked bool
	// first and next are the log sequence numbers of the file's first
	// whole record and one past its last (first 0: none). For an archive
	// they bound the positions of its operations, which leave out the
	// records that held none.
	first, next uint64
	// jumpFrom: the file's first record is a sequence jump record
	// (batchrepr.SeqJump) declaring the numbers from jumpFrom up to it
	// skipped; 0: it is not.
	jumpFrom uint64
	// exact: next is where the following file must start (a log segment
	// read to its end); otherwise only a lower bound.
	exact    bool
	findings []Finding
	// losses are findings whose lost sequence numbers are bounded by the
	// files around this one.
	losses []loss
	segIdx []segIndexEntry // the op log's segment indexes its records write (segindex.go)
}

// loss is a lost range of log sequence numbers, From..To; 0: bounded by
// the previous (from) or the next (to) file.
type loss struct {
	finding  int // index in findings
	from, to uint64
}

// statHistory finds the history file and the size to read; false when it
// is gone (a running database archived or dropped it).
func (c *checker) statHistory(h *historyResult) (int64, bool) {
	typ := layout.TypeLog
	if h.seg.Archived {
		typ = layout.TypeArchive
	}
	h.path = layout.Path(c.dir, typ, h.seg.Num)
	fi, err := c.fs.Stat(h.path)
	if err != nil && c.opts.Files != nil && !h.seg.Archived {
		// Archived since the snapshot: its archive holds it now.
		h.seg.Archived, h.seg.Limit = true, -1
		return c.statHistory(h)
	}
	if err != nil {
		c.notFound(h.path, err, "op-log history")
		return 0, false
	}
	size := fi.Size()
	if h.seg.Limit >= 0 && h.seg.Limit < size {
		size = h.seg.Limit
	}
	return size, true
}

// checkSegment reads a log segment record by record. torn says damage at
// its end may be a torn tail (the newest segment after a crash).
func (c *checker) checkSegment(h *historyResult, size int64, torn bool) error {
	h.checked = true
	p := &fileProgress{c: c, size: size}
	defer p.finish()
	add := func(f Finding) int {
		f.File = h.path
		h.findings = append(h.findings, f)
		return len(h.findings) - 1
	}
	if c.ms != nil && c.ms.CleanClose != nil && c.opts.Files == nil {
		cl := c.ms.CleanClose
		switch {
		case h.seg.Num > cl.LogNum:
			add(Finding{Kind: Extra, Offset: -1, Message: fmt.Sprintf("segment follows %s, the last one at the clean close the MANIFEST records", cl.LogNum)})
		case h.seg.Num == cl.LogNum && size < cl.LogSize:
			add(Finding{Kind: Truncated, Offset: size, Message: fmt.Sprintf("segment is %d bytes, %d at the clean close the MANIFEST records", size, cl.LogSize)})
		case h.seg.Num == cl.LogNum && size > cl.LogSize:
			add(Finding{Kind: WrongSize, Offset: cl.LogSize, Message: fmt.Sprintf("segment is %d bytes, %d at the clean close the MANIFEST records", size, cl.LogSize)})
		}
	}
	if size < segmentHeaderSize {
		if torn {
			add(Finding{Kind: Warning, Offset: 0, Message: fmt.Sprintf("segment of %d bytes, shorter than its header: cut short while being created (a crash); the next open rewrites it", size)})
		} else {
			h.losses = append(h.losses, loss{finding: add(Finding{Kind: Truncated, Offset: 0, Message: fmt.Sprintf("segment of %d bytes is shorter than its header", size)})})
		}
		return nil
	}
	// The header, checked by the wal package.
	sr, err := wal.OpenSegmentPrefix(c.fs, c.dir, h.seg.Num, size)
	if err != nil && c.archivedMeanwhile(h, err) {
		return c.checkArchive(h, -1)
	}
	if err != nil {
		f := findingOf(err, h.path)
		if !isCorruption(err) {
			f = c.openFailed(h.path, err)
		}
		h.losses = append(h.losses, loss{finding: add(f)})
		return nil
	}
	sr.Close()
	file, err := c.fs.Open(h.path)
	if err != nil && c.archivedMeanwhile(h, err) {
		return c.checkArchive(h, -1)
	}
	if err != nil {
		h.losses = append(h.losses, loss{finding: add(c.openFailed(h.path, err))})
		return nil
	}
	defer file.Close()
	c.count("log", size)
	p.add(segmentHeaderSize)
	cr := &counted{r: io.NewSectionReader(file, segmentHeaderSize, size-segmentHeaderSize), p: p}
	r := record.NewReader(bufio.NewReaderSize(cr, ioBuffer), h.path, segmentHeaderSize)

	var expected uint64 // the next record's sequence number; 0: not known
	pending := -1       // index in h.losses of a loss whose end is the next record
	h.exact = true
	for {
		rec, err := r.Next()
		if err == nil {
			br, derr := batchrepr.NewReader(rec)
			if derr != nil {
				h.losses = append(h.losses, loss{finding: add(Finding{Kind: Corrupt, Offset: r.Offset(),
					Message: fmt.Sprintf("a record that passes its checksum does not decode: %v", derr)}), from: expected})
				pending = len(h.losses) - 1
				expected = 0
				continue
			}
			seq := uint64(br.Seq)
			// A sequence jump record starts past the numbers it declares
			// skipped (a replica taking its own operations back after an
			// in-place restore): they run on from its declared start.
			start := seq
			if from, ok := batchrepr.SeqJump(rec); ok {
				start = uint64(from)
				if h.first == 0 {
					h.jumpFrom = start
				}
			}
			switch {
			case pending >= 0:
				h.losses[pending].to = start - 1
				pending = -1
			case expected != 0 && start == expected:
			case expected != 0 && seq > expected:
				add(Finding{Kind: SeqGap, Offset: r.Offset(), Seqs: []SeqRange{{From: expected, To: seq - 1}},
					Message: fmt.Sprintf("log sequence numbers %d to %d are missing: the record before ends at %d, this one starts at %d", expected, seq-1, expected-1, seq)})
			case expected != 0 && seq < expected:
				add(Finding{Kind: SeqGap, Offset: r.Offset(), Seqs: []SeqRange{{From: seq, To: expected - 1}},
					Message: fmt.Sprintf("log sequence numbers go back: the record before ends at %d, this one starts at %d", expected-1, seq)})
			}
			if h.first == 0 {
				h.first = seq
			}
			if c.opts.Files == nil {
				recordSegIndexes(h, br)
			}
			expected = seq + uint64(br.Count)
			h.next = expected
			continue
		}
		if err == io.EOF {
			if end := r.End(); end != size {
				msg := fmt.Sprintf("%d zero bytes after the last record", size-end)
				if torn {
					add(Finding{Kind: Warning, Offset: end, Message: msg + ": a torn tail after a crash; the next open truncates it"})
				} else {
					add(Finding{Kind: Corrupt, Offset: end, Message: msg})
				}
			}
			break
		}
		if !errors.Is(err, errs.ErrCorruption) {
			h.losses = append(h.losses, loss{finding: add(Finding{Kind: Unreadable, Offset: r.Offset(), Message: err.Error()}), from: expected})
			h.exact = false
			return nil
		}
		if torn {
			terr := record.CheckTail(file, h.path, segmentHeaderSize, r.End(), size)
			if terr == nil {
				add(Finding{Kind: Warning, Offset: r.End(), Message: fmt.Sprintf("%d bytes after the last whole record are a torn tail after a crash (%v); the next open truncates them", size-r.End(), err)})
				break
			}
			if !errors.Is(terr, errs.ErrCorruption) {
				h.losses = append(h.losses, loss{finding: add(Finding{Kind: Unreadable, Offset: r.End(), Message: terr.Error()}), from: expected})
				h.exact = false
				return nil
			}
		}
		f := findingOf(err, h.path)
		off, found, serr := record.NextRecordStart(file, segmentHeaderSize, r.Offset()+1, size)
		switch {
		case serr != nil:
			f.Message += fmt.Sprintf("; the records after it could not be read: %v", serr)
		case found:
			f.Message += fmt.Sprintf("; records resume at offset %d", off)
		default:
			f.Message += "; no whole record follows"
		}
		h.losses = append(h.losses, loss{finding: add(f), from: expected})
		pending = len(h.losses) - 1
		expected = 0
		if serr != nil || !found {
			break
		}
		r = record.NewReaderAt(file, h.path, segmentHeaderSize, off, size)
	}
	if pending >= 0 {
		h.exact = false
	}
	return nil
}

// archivedMeanwhile reports whether a log segment of a fixed file set
// could not be opened because the running database archived it, and
// then makes h its archive.
func (c *checker) archivedMeanwhile(h *historyResult, err error) bool {
	if c.opts.Files == nil || !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	h.seg.Archived, h.seg.Limit = true, -1
	h.path = layout.Path(c.dir, layout.TypeArchive, h.seg.Num)
	return true
}

// checkArchive reads and checks an archive.
func (c *checker) checkArchive(h *historyResult, _ int64) error {
	h.checked = true
	data, found := c.readFile(h.path, "archive")
	if found != nil {
		for _, f := range found {
			h.findings = append(h.findings, f)
			h.losses = append(h.losses, loss{finding: len(h.findings) - 1})
		}
		return nil
	}
	a, err := archive.Decode(h.path, data)
	if err != nil {
		h.findings = append(h.findings, findingOf(err, h.path))
		h.losses = append(h.losses, loss{finding: len(h.findings) - 1})
		return nil
	}
	var seqs []SeqRange
	for _, rg := range a.Stream.Header.Ranges {
		if rg.To > rg.From {
			seqs = append(seqs, SeqRange{Replica: rg.Replica.String(), From: rg.From + 1, To: rg.To})
		}
	}
	for i := 1; i < len(a.Pos); i++ {
		if !a.Pos[i-1].Less(a.Pos[i]) {
			h.findings = append(h.findings, Finding{Kind: Corrupt, File: h.path, Offset: a.StreamOffset + a.StreamLen, Seqs: seqs,
				Message: fmt.Sprintf("operation positions do not rise: %d/%d follows %d/%d", a.Pos[i].Seq, a.Pos[i].Index, a.Pos[i-1].Seq, a.Pos[i-1].Index)})
			return nil
		}
	}
	if n := len(a.Pos); n > 0 {
		h.first, h.next = a.Pos[0].Seq, a.Pos[n-1].Seq+1
	}
	return nil
}

// checkHistory checks that log sequence numbers run on from each history
// file to the next, and bounds the lost ranges by the files around them.
func (c *checker) checkHistory(history []*historyResult) {
	var seq []*historyResult // the files in sequence: a log beside its archive stands for both
	for i, h := range history {
		if h.seg.Archived && i > 0 && history[i-1].seg.Num == h.seg.Num && history[i-1].checked {
			continue
		}
		if h.checked {
			seq = append(seq, h)
		}
	}
	var prevNext uint64 // one past the previous file's last sequence number; 0: not known
	prevExact := false
	for i, h := range seq {
		for j := range h.losses {
			if l := &h.losses[j]; l.from == 0 {
				l.from = prevNext
			}
		}
		if h.first != 0 && prevNext != 0 {
			switch {
			case h.jumpFrom == prevNext:
			case prevExact && !h.seg.Archived && h.first > prevNext:
				h.findings = append(h.findings, Finding{Kind: SeqGap, File: h.path, Offset: segmentHeaderSize,
					Seqs:    []SeqRange{{From: prevNext, To: h.first - 1}},
					Message: fmt.Sprintf("log sequence numbers %d to %d are missing: the segment before ends at %d, this one starts at %d (a segment missing?)", prevNext, h.first-1, prevNext-1, h.first)})
			case h.first < prevNext:
				h.findings = append(h.findings, Finding{Kind: SeqGap, File: h.path, Offset: -1,
					Seqs:    []SeqRange{{From: h.first, To: prevNext - 1}},
					Message: fmt.Sprintf("log sequence numbers go back: the file before reaches %d, this one starts at %d", prevNext-1, h.first)})
			}
		}
		if h.next != 0 {
			prevNext, prevExact = h.next, h.exact && !h.seg.Archived
		} else if len(h.losses) > 0 {
			prevExact = false
		}
		// The lost ranges that run to the end of this file end where the
		// next file starts.
		var nextFirst uint64
		for _, n := range seq[i+1:] {
			if n.first != 0 {
				nextFirst = n.first
				if n.jumpFrom != 0 {
					nextFirst = n.jumpFrom
				}
				break
			}
		}
		for _, l := range h.losses {
			to := l.to
			if to == 0 && nextFirst != 0 {
				to = nextFirst - 1
			}
			if l.from != 0 && to != 0 && to < l.from {
				continue // nothing lost between them
			}
			h.findings[l.finding].Seqs = append(h.findings[l.finding].Seqs, SeqRange{From: l.from, To: to})
		}
	}
	for _, h := range history {
		c.rep.Findings = append(c.rep.Findings, h.findings...)
	}
}

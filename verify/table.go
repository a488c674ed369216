package verify

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/lsm"
)

// tableResult is the check of one table.
type tableResult struct {
	meta     *lsm.FileMeta // its MANIFEST entry; nil: the MANIFEST is unreadable
	level    int
	path     string
	findings []Finding
	segIdx   []segIndexEntry // the op log's segment indexes it holds (segindex.go)
}

// statTable checks that the table exists with the size its entry
// records, and returns the size to read.
func (c *checker) statTable(res *tableResult) (int64, bool) {
	fi, err := c.fs.Stat(res.path)
	if err != nil {
		f := c.openFailed(res.path, err)
		if f.Kind == Missing {
			f.Message = fmt.Sprintf("table of level %d the MANIFEST lists is missing", res.level)
		}
		c.tableRanges(&f, res.meta)
		c.rep.add(f)
		return 0, false
	}
	size := fi.Size()
	if m := res.meta; m != nil && uint64(size) != m.Size {
		f := Finding{Kind: WrongSize, File: res.path, Offset: -1,
			Message: fmt.Sprintf("table is %d bytes, the MANIFEST recorded %d", size, m.Size)}
		if uint64(size) < m.Size {
			f.Kind, f.Offset = Truncated, size
		}
		c.tableRanges(&f, m)
		res.findings = append(res.findings, f)
	}
	return size, true
}

// tableRanges sets the ranges of a finding that concerns a whole table.
func (c *checker) tableRanges(f *Finding, m *lsm.FileMeta) {
	if m != nil {
		f.Keys, f.Seqs = tableKeys(m), tableSeqs(m)
	}
}

// checkTable reads and checks a whole table.
func (c *checker) checkTable(res *tableResult, size int64) error {
	file, err := c.fs.Open(res.path)
	if err != nil {
		f := c.openFailed(res.path, err)
		c.tableRanges(&f, res.meta)
		res.findings = append(res.findings, f)
		return nil
	}
	defer file.Close()
	p := &fileProgress{c: c, size: size}
	var collect []byte
	if c.opts.Files == nil {
		collect = segIndexPrefix // the op log's index of its history files (segindex.go)
	}
	tc, err := lsm.CheckTableCollect(file, size, res.path, p.add, collect)
	p.finish()
	c.count("table", size)
	if err != nil {
		f := Finding{Kind: Unreadable, File: res.path, Offset: -1, Message: err.Error()}
		c.tableRanges(&f, res.meta)
		res.findings = append(res.findings, f)
		return nil
	}
	for _, is := range tc.Issues {
		f := findingOf(is.Err, res.path)
		switch is.Kind {
		case lsm.TableChecksum:
			f.Kind = Checksum
		case lsm.TableFormat:
			f.Kind = Corrupt
		case lsm.TableKeyOrder:
			f.Kind = KeyOrder
		case lsm.TablePropsMismatch:
			f.Kind = MetaMismatch
		case lsm.TableNewerFormat:
			f.Kind = NewerFormat
		}
		c.tableRanges(&f, res.meta)
		if is.Upper != nil {
			// A data block: the keys after the previous block's separator
			// (which may share its user key) up to its own.
			f.Keys = &KeyRange{Smallest: bytes.Clone(userKey(is.Lower)), Largest: bytes.Clone(userKey(is.Upper))}
		}
		res.findings = append(res.findings, f)
	}
	if m := res.meta; m != nil {
		res.findings = append(res.findings, compareMeta(res.path, m, tc)...)
	}
	res.segIdx = tableSegIndexes(tc.Collected)
	return nil
}

// compareMeta compares a table's MANIFEST entry with its properties, or,
// when they are unreadable, with what its data blocks hold.
func compareMeta(path string, m *lsm.FileMeta, tc *lsm.TableCheck) []Finding {
	var diffs []string
	switch {
	case tc.PropsOK:
		p := &tc.Props
		if !bytes.Equal(p.Smallest, m.Smallest) || !bytes.Equal(p.Largest, m.Largest) {
			diffs = append(diffs, fmt.Sprintf("keys %q..%q, the MANIFEST %q..%q", userKey(p.Smallest), userKey(p.Largest), userKey(m.Smallest), userKey(m.Largest)))
		}
		if p.SmallestSeq != m.SmallestSeq || p.LargestSeq != m.LargestSeq {
			diffs = append(diffs, fmt.Sprintf("sequence numbers %d..%d, the MANIFEST %d..%d", p.SmallestSeq, p.LargestSeq, m.SmallestSeq, m.LargestSeq))
		}
		if p.NumEntries != m.NumEntries || p.NumDeletions != m.NumDeletions {
			diffs = append(diffs, fmt.Sprintf("%d entries (%d deletions), the MANIFEST %d (%d)", p.NumEntries, p.NumDeletions, m.NumEntries, m.NumDeletions))
		}
	case tc.DataBlocks > 0 && tc.BlocksChecked == tc.DataBlocks:
		if !bytes.Equal(tc.Smallest, m.Smallest) || !bytes.Equal(tc.Largest, m.Largest) {
			diffs = append(diffs, fmt.Sprintf("data keys %q..%q, the MANIFEST %q..%q", userKey(tc.Smallest), userKey(tc.Largest), userKey(m.Smallest), userKey(m.Largest)))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	return []Finding{{Kind: MetaMismatch, File: path, Offset: -1, Message: "the table holds " + strings.Join(diffs, "; "),
		Keys: tableKeys(m), Seqs: tableSeqs(m)}}
}

// checkLevels checks the order of the tables of each level against each
// other (levels >= 1 are sorted and do not overlap), and adds the tables'
// findings to the report.
func (c *checker) checkLevels(levels [][]*tableResult) {
	for _, files := range levels {
		for i, res := range files {
			c.rep.Findings = append(c.rep.Findings, res.findings...)
			m := res.meta
			if m == nil {
				continue
			}
			if lsm.CompareInternal(m.Smallest, m.Largest) > 0 {
				c.rep.add(Finding{Kind: KeyOrder, File: res.path, Offset: -1, Keys: tableKeys(m), Seqs: tableSeqs(m),
					Message: fmt.Sprintf("the MANIFEST bounds the table by %q..%q, in reverse", userKey(m.Smallest), userKey(m.Largest))})
			}
			level := res.level
			if level <= 0 || i == 0 {
				continue
			}
			prev := files[i-1]
			pm := prev.meta
			if bytes.Compare(userKey(pm.Largest), userKey(m.Smallest)) < 0 {
				continue
			}
			f := Finding{Kind: Overlap, File: res.path, Offset: -1, Seqs: append(tableSeqs(pm), tableSeqs(m)...),
				Keys: &KeyRange{Smallest: bytes.Clone(userKey(m.Smallest)), Largest: bytes.Clone(userKey(pm.Largest))},
				Message: fmt.Sprintf("level %d: keys %q..%q overlap those of %s (%q..%q)", level,
					userKey(m.Smallest), userKey(m.Largest), prev.path, userKey(pm.Smallest), userKey(pm.Largest))}
			if lsm.CompareInternal(m.Smallest, pm.Smallest) < 0 {
				f.Kind = KeyOrder
				f.Message = fmt.Sprintf("level %d: the table (%q..%q) is listed after %s (%q..%q), whose keys are greater", level,
					userKey(m.Smallest), userKey(m.Largest), prev.path, userKey(pm.Smallest), userKey(pm.Largest))
			}
			c.rep.add(f)
		}
	}
}

// isCorruption reports whether err says something about the bytes.
func isCorruption(err error) bool {
	return errors.Is(err, errs.ErrCorruption) || errors.Is(err, errs.ErrNewerFormat)
}

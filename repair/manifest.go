package repair

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/internal/errs"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/verify"
	"github.com/plures/pluresdb/wal"
)

// tableFile is a table file found in the directory (or the cold one),
// checked with lsm.CheckTable.
type tableFile struct {
	num  layout.FileNum
	path string
	cold bool
	size int64
	// meta is built from the table's properties when they are readable.
	meta  *lsm.FileMeta
	clean bool
	why   string // what is wrong, when not clean
	// newer: written by a newer format version; never quarantined.
	newer bool
	// level is the table's level in a MANIFEST that lists it.
	level int
	// missing: the MANIFEST lists it, the directory does not hold it.
	missing bool
}

// segmentSeqs are the log sequence numbers a log segment holds.
type segmentSeqs struct {
	num         layout.FileNum
	first, last lsm.SeqNum // first 0: no record
	damaged     error      // damage stopped the reading
}

// repairTables rewrites the MANIFEST when it cannot be read or lists a
// table that is damaged or gone, moving the damaged tables and the
// replaced MANIFEST and CURRENT to quarantine/.
func (r *repairer) repairTables() error {
	ms, msErr := lsm.ReadManifestState(r.fs, r.dir)
	switch {
	case msErr == nil:
	case errors.Is(msErr, errs.ErrNewerFormat):
		r.res.Refused = append(r.res.Refused, fmt.Sprintf("the MANIFEST is of a newer format than this build reads (%v): repair it with a newer plures-fsck", msErr))
		return nil
	case !errors.Is(msErr, errs.ErrCorruption):
		return fmt.Errorf("repair: reading the MANIFEST: %w", msErr)
	}
	tables, err := r.checkTables()
	if err != nil {
		return err
	}
	byPath := map[string]*tableFile{}
	for _, t := range tables {
		byPath[t.path] = t
	}
	for _, t := range tables {
		if t.newer {
			r.res.Refused = append(r.res.Refused, fmt.Sprintf("%s is of a newer table format than this build reads: repair it with a newer plures-fsck", t.path))
			return nil
		}
	}

	// Keep the MANIFEST's placement when it can be trusted: readable,
	// and agreeing with every table that checks clean.
	keep := msErr == nil && r.manifestAgrees(ms, byPath)
	var levels [lsm.NumLevels][]*lsm.FileMeta
	var dropped []*tableFile // damaged or missing tables the new MANIFEST leaves out
	if keep {
		for level, files := range ms.Version.Levels {
			for _, m := range files {
				path := layout.Path(lsm.TableDir(r.dir, r.coldDir, m.Cold), layout.TypeTable, m.Num)
				t := byPath[path]
				switch {
				case t == nil:
					dropped = append(dropped, &tableFile{num: m.Num, path: path, meta: m, level: level, missing: true, why: "missing: the MANIFEST lists it"})
				case !t.clean:
					t.meta, t.level = m, level // the MANIFEST's ranges, whatever the file says
					dropped = append(dropped, t)
				default:
					levels[level] = append(levels[level], m)
				}
			}
		}
		if len(dropped) == 0 {
			return nil // nothing to rewrite
		}
		if format, err := lsm.ManifestFormat(r.fs, r.dir); err == nil && format == 1 {
			r.res.Refused = append(r.res.Refused, "the MANIFEST is of the first format, whose log segments hold raw values: open the database once with the engine (which upgrades it) before repairing its tables")
			return nil
		}
	} else {
		var placed []*placedTable
		for _, t := range tables {
			if t.clean {
				placed = append(placed, &placedTable{meta: t.meta, path: t.path})
			} else {
				dropped = append(dropped, t)
			}
		}
		if levels, err = r.place(placed); err != nil {
			r.res.Refused = append(r.res.Refused, fmt.Sprintf("the MANIFEST cannot be rebuilt: %v", err))
			return nil
		}
	}

	segs, err := r.scanLog()
	if err != nil {
		return err
	}
	maxNum, err := r.maxFileNum()
	if err != nil {
		return err
	}
	if ms != nil {
		maxNum = max(maxNum, ms.NextFileNum-1)
	}
	manifestNum := maxNum + 1

	// A damaged table the log does not hold, whose keys reach into the
	// op log's metadata, is kept where it is (or, when it cannot be, the
	// tables are not repaired): see refuseMetaTable. Keeping one changes
	// the plan, so the plan is made again until nothing more is kept.
	var p replayPlan
	for {
		p = r.plan(levels, segs, ms, keep, manifestNum)
		var still []*tableFile
		for _, t := range dropped {
			if p.recovers(t.meta) || t.meta != nil && !holdsMeta(t.meta) {
				still = append(still, t)
				continue
			}
			if !keep || t.missing {
				r.refuseMetaTable(t, false)
				return nil
			}
			r.refuseMetaTable(t, true)
			levels[t.level] = append(levels[t.level], t.meta)
		}
		if len(still) == len(dropped) {
			break
		}
		dropped = still
	}
	if keep && len(dropped) == 0 {
		return nil // every damaged table stays
	}
	if !keep {
		for _, t := range tables {
			r.handled[t.path] = true
		}
	}

	// Damaged tables to quarantine; their ranges lost unless replayed.
	for _, t := range dropped {
		m := t.meta
		if p.recovers(m) {
			r.res.Recovered = append(r.res.Recovered, Recovered{File: t.path, Keys: tableKeys(m), Seqs: tableSeqs(m), FromLog: layout.Name(layout.TypeLog, p.logNum)})
		} else {
			why := "table " + t.why + "; the retained log does not hold all of its entries"
			if m != nil && logHolds(segs, m) {
				why = fmt.Sprintf("table %s; the retained log holds its sequence numbers %d..%d, but they are not replayed: the tables "+
					"kept hold entries of the same records, and a merge operand replayed above the value a compaction folded it into "+
					"reads wrong", t.why, m.SmallestSeq, m.LargestSeq)
			}
			loss := Loss{File: t.path, Why: why}
			if m != nil {
				loss.Keys, loss.Seqs = tableKeys(m), tableSeqs(m)
			} else {
				loss.Why = "table " + t.why + "; its bounds are unreadable: which keys it held is not known (any key may be affected)"
			}
			r.res.Lost = append(r.res.Lost, loss)
		}
		r.handled[t.path] = true
		if _, err := r.fs.Stat(t.path); err == nil {
			if _, err := r.quarantine(t.path, "damaged table: "+t.why); err != nil {
				return err
			}
		}
	}
	logNum, lastSeq := p.logNum, p.lastSeq
	for _, t := range tables {
		if t.meta != nil {
			lastSeq = max(lastSeq, t.meta.LargestSeq)
		}
	}

	// The replaced CURRENT and MANIFESTs go to quarantine; the new ones
	// are written between (WriteManifest refuses to write over a CURRENT).
	why := "replaced by a MANIFEST rebuilt from the tables"
	if keep {
		why = "replaced by a MANIFEST without the damaged or missing tables"
	}
	cur := layout.Path(r.dir, layout.TypeCurrent, 0)
	if _, err := r.fs.Stat(cur); err == nil {
		if _, err := r.quarantine(cur, why); err != nil {
			return err
		}
	}
	r.handled[cur] = true
	v := &lsm.Version{Levels: levels}
	if err := lsm.WriteManifest(r.fs, r.dir, manifestNum, v, logNum, manifestNum+1, lastSeq); err != nil {
		return fmt.Errorf("repair: writing the new MANIFEST: %w", err)
	}
	mpath := layout.Path(r.dir, layout.TypeManifest, manifestNum)
	r.res.Manifest, r.res.LogNum = mpath, layout.Name(layout.TypeLog, logNum)
	r.wrote(mpath, fmt.Sprintf("%d tables (%s); the next open replays the log from %s", countTables(levels), describeLevels(levels), layout.Name(layout.TypeLog, logNum)))
	r.wrote(cur, "names "+layout.Name(layout.TypeManifest, manifestNum))
	names, err := r.fs.List(r.dir)
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	for _, name := range names {
		if t, n, ok := layout.Parse(name); ok && t == layout.TypeManifest && n != manifestNum {
			path := filepath.Join(r.dir, name)
			r.handled[path] = true
			if _, err := r.quarantine(path, why); err != nil {
				return err
			}
		}
	}
	return nil
}

// manifestAgrees reports whether every table the MANIFEST lists that
// checks clean matches its entry, and the check found no overlap or
// order problem between the MANIFEST's tables.
func (r *repairer) manifestAgrees(ms *lsm.ManifestState, byPath map[string]*tableFile) bool {
	for _, f := range r.before.Findings {
		if f.Kind == verify.Overlap {
			return false
		}
		if t := byPath[f.File]; t != nil && t.clean && (f.Kind == verify.KeyOrder || f.Kind == verify.MetaMismatch || f.Kind == verify.WrongSize) {
			return false
		}
	}
	// A clean table the MANIFEST neither lists nor deleted, holding
	// sequence numbers past the MANIFEST's last: the MANIFEST lost the
	// edits that added it (cut short at a record boundary, which reads as
	// a crash's torn tail), and the table holds data nothing else does.
	listed := map[string]bool{}
	for _, files := range ms.Version.Levels {
		for _, m := range files {
			listed[layout.Path(lsm.TableDir(r.dir, r.coldDir, m.Cold), layout.TypeTable, m.Num)] = true
		}
	}
	for path, t := range byPath {
		if _, deleted := ms.Deleted[t.num]; t.clean && !listed[path] && !deleted && t.meta != nil && t.meta.LargestSeq > ms.LastSeq {
			return false
		}
	}
	for _, files := range ms.Version.Levels {
		for _, m := range files {
			t := byPath[layout.Path(lsm.TableDir(r.dir, r.coldDir, m.Cold), layout.TypeTable, m.Num)]
			if t == nil || !t.clean {
				continue
			}
			p := t.meta
			if uint64(t.size) != m.Size || !bytes.Equal(p.Smallest, m.Smallest) || !bytes.Equal(p.Largest, m.Largest) ||
				p.SmallestSeq != m.SmallestSeq || p.LargestSeq != m.LargestSeq {
				return false
			}
		}
	}
	return true
}

// place opens the clean tables and places them (placeTables).
func (r *repairer) place(placed []*placedTable) ([lsm.NumLevels][]*lsm.FileMeta, error) {
	var levels [lsm.NumLevels][]*lsm.FileMeta
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for _, p := range placed {
		f, err := r.fs.Open(p.path)
		if err != nil {
			return levels, err
		}
		closers = append(closers, f)
		t, err := lsm.OpenTable(f, p.path, p.meta.Num, nil)
		if err != nil {
			return levels, err
		}
		closers = append(closers, t)
		p.iter = t.NewIter()
		closers = append(closers, p.iter)
	}
	prec, err := tableConstraints(placed)
	if err != nil {
		return levels, err
	}
	return placeTables(placed, prec)
}

// checkTables checks every table file of the directory and the cold one.
func (r *repairer) checkTables() ([]*tableFile, error) {
	var out []*tableFile
	dirs := []string{r.dir}
	if r.coldDir != "" && r.coldDir != r.dir {
		dirs = append(dirs, r.coldDir)
	}
	for i, dir := range dirs {
		names, err := r.fs.List(dir)
		if err != nil {
			return nil, fmt.Errorf("repair: listing %s: %w", dir, err)
		}
		for _, name := range names {
			t, n, ok := layout.Parse(name)
			if !ok || t != layout.TypeTable {
				continue
			}
			tf := &tableFile{num: n, path: filepath.Join(dir, name), cold: i == 1}
			if err := r.checkTable(tf); err != nil {
				return nil, err
			}
			out = append(out, tf)
		}
	}
	return out, nil
}

// checkTable reads a whole table with lsm.CheckTable.
func (r *repairer) checkTable(tf *tableFile) error {
	if err := r.ctx.Err(); err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	f, err := r.fs.Open(tf.path)
	if err != nil {
		tf.why = "unreadable: " + err.Error()
		return nil
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		tf.why = "unreadable: " + err.Error()
		return nil
	}
	tf.size = size
	tc, err := lsm.CheckTable(f, size, tf.path, nil)
	if err != nil {
		tf.why = "unreadable: " + err.Error()
		return nil
	}
	if tc.PropsOK {
		p := &tc.Props
		tf.meta = &lsm.FileMeta{Num: tf.num, Size: uint64(size), Smallest: p.Smallest, Largest: p.Largest,
			SmallestSeq: p.SmallestSeq, LargestSeq: p.LargestSeq, NumEntries: p.NumEntries, NumDeletions: p.NumDeletions, Cold: tf.cold}
	}
	for _, is := range tc.Issues {
		if is.Kind == lsm.TableNewerFormat {
			tf.newer = true
		}
	}
	switch {
	case len(tc.Issues) > 0:
		tf.why = fmt.Sprintf("damaged in %d places, the first: %v", len(tc.Issues), tc.Issues[0].Err)
	case !tc.PropsOK || tf.meta.NumEntries == 0 || len(tf.meta.Smallest) < lsm.TrailerLen || len(tf.meta.Largest) < lsm.TrailerLen:
		tf.why = "its properties do not describe it"
	default:
		tf.clean = true
	}
	return nil
}

// scanLog reads the sequence numbers of every log segment.
func (r *repairer) scanLog() ([]segmentSeqs, error) {
	nums, err := wal.List(r.fs, r.dir)
	if err != nil {
		return nil, fmt.Errorf("repair: %w", err)
	}
	out := make([]segmentSeqs, 0, len(nums))
	for _, n := range nums {
		s := segmentSeqs{num: n}
		sr, err := wal.OpenSegment(r.fs, r.dir, n)
		if err != nil {
			s.damaged = err
			out = append(out, s)
			continue
		}
		for {
			rec, err := sr.Next()
			if err == io.EOF {
				break
			}
			if err == nil {
				var br batchrepr.Reader
				if br, err = batchrepr.NewReader(rec); err == nil {
					if s.first == 0 {
						s.first = br.Seq
					}
					s.last = max(s.last, br.Seq+lsm.SeqNum(br.Count)-1)
					continue
				}
			}
			s.damaged = err
			break
		}
		sr.Close()
		out = append(out, s)
	}
	// A torn tail of the newest segment is what a crash leaves: the next
	// open truncates it, nothing acknowledged is lost.
	if n := len(out); n > 0 && out[n-1].damaged != nil && !r.hasDamage(layout.Path(r.dir, layout.TypeLog, out[n-1].num)) {
		out[n-1].damaged = nil
	}
	return out, nil
}

// hasDamage reports whether the check found damage in path.
func (r *repairer) hasDamage(path string) bool {
	return slices.ContainsFunc(r.before.Findings, func(f verify.Finding) bool { return f.File == path && f.Kind.Damage() })
}

// maxFileNum returns the largest file number in the directory, the cold
// directory and their quarantine folders.
func (r *repairer) maxFileNum() (layout.FileNum, error) {
	var top layout.FileNum
	dirs := []string{r.dir, filepath.Join(r.dir, wal.QuarantineDir)}
	if r.coldDir != "" && r.coldDir != r.dir {
		dirs = append(dirs, r.coldDir, filepath.Join(r.coldDir, wal.QuarantineDir))
	}
	for _, dir := range dirs {
		names, err := r.fs.List(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("repair: listing %s: %w", dir, err)
		}
		for _, name := range names {
			if _, n, ok := layout.Parse(name); ok {
				top = max(top, n)
			} else if i := strings.LastIndexByte(name, '.'); i > 0 {
				// A quarantined file with a suffix that keeps it unique.
				if _, n, ok := layout.Parse(name[:i]); ok {
					top = max(top, n)
				}
			}
		}
	}
	return top, nil
}

func countTables(levels [lsm.NumLevels][]*lsm.FileMeta) int {
	n := 0
	for _, files := range levels {
		n += len(files)
	}
	return n
}

func describeLevels(levels [lsm.NumLevels][]*lsm.FileMeta) string {
	var parts []string
	for l, files := range levels {
		if len(files) > 0 {
			parts = append(parts, fmt.Sprintf("L%d: %d", l, len(files)))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// logHolds reports whether the retained log segments hold every sequence
// number of the table, with no damage from the first one on.
func logHolds(segs []segmentSeqs, m *lsm.FileMeta) bool {
	from := -1
	for i, s := range segs {
		if s.first != 0 && s.first <= m.SmallestSeq {
			from = i
		}
	}
	if from < 0 {
		return false
	}
	var last lsm.SeqNum
	for _, s := range segs[from:] {
		if s.damaged != nil {
			return false
		}
		last = max(last, s.last)
	}
	return last >= m.LargestSeq
}

// nsMeta is the namespace byte of the engine's metadata (keyspace.go in
// the root package; part of the on-disk format).
const nsMeta = 0x00

// holdsMeta reports whether a table's key range reaches into the meta
// namespace.
func holdsMeta(m *lsm.FileMeta) bool {
	k := lsm.UserKey(m.Smallest)
	return len(k) == 0 || k[0] == nsMeta
}

// refuseMetaTable records that a damaged or missing table whose keys may
// reach into the op log's metadata is not dropped: kept says it stays in
// the MANIFEST as it is, otherwise the tables are not repaired at all.
func (r *repairer) refuseMetaTable(t *tableFile, kept bool) {
	msg := fmt.Sprintf("%s (%s): its key range reaches into (or, unreadable, may reach into) the op log's metadata, "+
		"which the log does not hold: dropping it would lose this replica's sequence floor and clock mark (new operations "+
		"could reuse sequence numbers) and the document format mark (the next open would re-encode every document). ", t.path, t.why)
	if kept {
		msg += "It is left in the MANIFEST as it is: the engine opens with it, reads that touch its damaged blocks fail " +
			"with ErrCorruption, and sync stays off if the metadata is among them. "
	} else {
		msg += "The tables and the MANIFEST are left as they were. "
	}
	r.res.Refused = append(r.res.Refused, msg+"A backup (plures-backup restore) or a peer is needed")
}

// replayPlan is what the next open replays: the log from logNum, whose
// first record has sequence number from and whose last has last.
type replayPlan struct {
	logNum     layout.FileNum
	from, last lsm.SeqNum
	intact     bool // no damage in the segments replayed
	lastSeq    lsm.SeqNum
}

// plan makes the next open replay every log segment holding a sequence
// number above the newest one the kept tables hold, and no older one
// (with a trusted MANIFEST, also those it says to replay).
func (r *repairer) plan(levels [lsm.NumLevels][]*lsm.FileMeta, segs []segmentSeqs, ms *lsm.ManifestState, keep bool, manifestNum layout.FileNum) replayPlan {
	var newest lsm.SeqNum
	for _, files := range levels {
		for _, m := range files {
			newest = max(newest, m.LargestSeq)
		}
	}
	p := replayPlan{logNum: manifestNum, intact: true} // manifestNum: nothing to replay
	if ms != nil {
		p.lastSeq = ms.LastSeq
	}
	for _, s := range segs {
		if s.first != 0 && s.last > newest {
			p.logNum = s.num
			break
		}
	}
	if keep {
		p.logNum = min(p.logNum, ms.LogNum)
	}
	for _, s := range segs {
		p.lastSeq = max(p.lastSeq, s.last)
		if s.num < p.logNum {
			continue
		}
		if p.from == 0 {
			p.from = s.first
		}
		p.last = max(p.last, s.last)
		if s.damaged != nil {
			p.intact = false
		}
	}
	return p
}

// recovers reports whether the replay holds every entry of the table.
func (p replayPlan) recovers(m *lsm.FileMeta) bool {
	return m != nil && p.intact && p.from != 0 && p.from <= m.SmallestSeq && m.LargestSeq <= p.last
}

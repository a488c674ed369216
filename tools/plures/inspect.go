package main

// inspect.go: commands that read a database, or one of its files, and
// print what it holds: get, scan, history, feed (over a read-only open),
// dump-wal and dump-sst (over a single file, without opening the
// database). Each prints text, or with -json one JSON object per line.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/internal/layout"
	"github.com/plures/pluresdb/internal/vfs"
	"github.com/plures/pluresdb/lsm"
	"github.com/plures/pluresdb/oplog"
	"github.com/plures/pluresdb/tools/internal/human"
	"github.com/plures/pluresdb/wal"
)

// openRO opens dir read-only: an inspection writes nothing.
func openRO(dir string) (*pluresdb.DB, error) {
	return pluresdb.Open(dir, &pluresdb.Options{ReadOnly: true})
}

// bytesJSON is a byte string in JSON output: as text when it is printable
// ASCII, always as hex too, so nothing is lost or mangled.
type bytesJSON struct {
	Text string `json:"text,omitempty"`
	Hex  string `json:"hex"`
}

func jsonBytes(b []byte) bytesJSON {
	j := bytesJSON{Hex: hex.EncodeToString(b)}
	if isPrintable(b) {
		j.Text = string(b)
	}
	return j
}

// printer writes records as text or as JSON lines.
type printer struct {
	w    io.Writer
	json bool
	err  error
}

// print writes v as a JSON line, or text as a line.
func (p *printer) print(v any, text string) {
	if p.err != nil {
		return
	}
	if p.json {
		b, err := json.Marshal(v)
		if err != nil {
			p.err = err
			return
		}
		_, p.err = fmt.Fprintf(p.w, "%s\n", b)
		return
	}
	_, p.err = fmt.Fprintln(p.w, text)
}

// documentJSON is a document as get and scan print it.
type documentJSON struct {
	Key      bytesJSON            `json:"key"`
	Exists   bool                 `json:"exists"`
	Value    *bytesJSON           `json:"value,omitempty"`
	Fields   map[string]bytesJSON `json:"fields,omitempty"`
	Counters map[string]int64     `json:"counters,omitempty"`
}

func documentOut(key []byte, d pluresdb.Document) (documentJSON, string) {
	j := documentJSON{Key: jsonBytes(key), Exists: d.Exists, Counters: d.Counters}
	var text strings.Builder
	text.WriteString(formatKey(key, 200))
	if d.Exists {
		v := jsonBytes(d.Value)
		j.Value = &v
		fmt.Fprintf(&text, " = %s", formatKey(d.Value, 200))
	} else {
		text.WriteString(" (no whole value)")
	}
	if len(d.Fields) > 0 {
		j.Fields = map[string]bytesJSON{}
		for f, v := range d.Fields {
			j.Fields[f] = jsonBytes(v)
			fmt.Fprintf(&text, " %s=%s", formatKey([]byte(f), 60), formatKey(v, 100))
		}
	}
	for c, n := range d.Counters {
		fmt.Fprintf(&text, " %s:%d", formatKey([]byte(c), 60), n)
	}
	return j, text.String()
}

// getCommand runs `plures get [-json] DIR KEY`.
func getCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageErrorf("usage: plures get [-json] DIR KEY")
	}
	db, err := openRO(fs.Arg(0))
	if err != nil {
		return err
	}
	defer db.Close()
	key := []byte(fs.Arg(1))
	d, err := db.GetFields(key)
	if err != nil {
		return err
	}
	p := &printer{w: stdout, json: *asJSON}
	j, text := documentOut(key, d)
	p.print(j, text)
	return p.err
}

// scanCommand runs `plures scan [-json] [-prefix P] [-limit N] DIR`.
func scanCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("scan", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON lines")
	prefix := fs.String("prefix", "", "only keys with this `prefix`")
	limit := fs.Int("limit", 0, "at most `n` documents (0: all)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("usage: plures scan [-json] [-prefix P] [-limit N] DIR")
	}
	db, err := openRO(fs.Arg(0))
	if err != nil {
		return err
	}
	defer db.Close()
	var lower, upper []byte
	if *prefix != "" {
		lower = []byte(*prefix)
		upper = prefixEnd(lower)
	}
	p := &printer{w: stdout, json: *asJSON}
	it := db.NewIter(lower, upper)
	n := 0
	for ok := it.First(); ok && p.err == nil && (*limit == 0 || n < *limit); ok = it.Next() {
		d, err := db.GetFields(it.Key())
		if err != nil {
			it.Close()
			return err
		}
		j, text := documentOut(it.Key(), d)
		p.print(j, text)
		n++
	}
	if err := it.Close(); err != nil {
		return err
	}
	return p.err
}

// prefixEnd returns the smallest key above every key with prefix p (nil:
// none).
func prefixEnd(p []byte) []byte {
	end := append([]byte{}, p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// changeJSON is an operation as history and feed print it.
type changeJSON struct {
	Seq     uint64     `json:"seq"`   // the log position: record sequence number
	Index   uint32     `json:"index"` // and index in the record
	Replica string     `json:"replica"`
	OpSeq   uint64     `json:"op_seq"`
	HLC     string     `json:"hlc"`
	Kind    string     `json:"kind"`
	Key     bytesJSON  `json:"key"`
	Field   *bytesJSON `json:"field,omitempty"`
	Value   *bytesJSON `json:"value,omitempty"`
	Delta   int64      `json:"delta,omitempty"`
}

func changeOut(c pluresdb.Change) (changeJSON, string) {
	op := &c.Op
	j := changeJSON{Seq: c.Pos.Seq, Index: c.Pos.Index, Replica: op.Replica.String(), OpSeq: op.Seq,
		HLC: op.HLC.String(), Kind: op.Kind.String(), Key: jsonBytes(op.Key), Delta: op.Delta}
	text := fmt.Sprintf("%d/%d %s/%d %s %s %s", c.Pos.Seq, c.Pos.Index, op.Replica, op.Seq, op.HLC, op.Kind, formatKey(op.Key, 100))
	if len(op.Field) > 0 {
		f := jsonBytes(op.Field)
		j.Field = &f
		text += " ." + formatKey(op.Field, 60)
	}
	switch op.Kind {
	case oplog.KindPut, oplog.KindSetField:
		v := jsonBytes(op.Value)
		j.Value = &v
		text += " = " + formatKey(op.Value, 100)
	case oplog.KindIncr:
		text += fmt.Sprintf(" %+d", op.Delta)
	}
	return j, text
}

// historyCommand runs `plures history [-json] DIR KEY`.
func historyCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("history", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageErrorf("usage: plures history [-json] DIR KEY")
	}
	db, err := openRO(fs.Arg(0))
	if err != nil {
		return err
	}
	defer db.Close()
	changes, complete, err := db.KeyHistory([]byte(fs.Arg(1)))
	if err != nil {
		return err
	}
	p := &printer{w: stdout, json: *asJSON}
	for _, c := range changes {
		j, text := changeOut(c)
		p.print(j, text)
	}
	if !complete && !*asJSON {
		p.print(nil, "(retention has dropped older history: earlier operations may be missing)")
	}
	return p.err
}

// feedCommand runs `plures feed [-json] [-from SEQ[/INDEX]] DIR`: the
// change feed after a position, to the end of the log.
func feedCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("feed", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON lines")
	from := fs.String("from", "", "start after this `position` (SEQ or SEQ/INDEX; default: the start of the log)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("usage: plures feed [-json] [-from SEQ[/INDEX]] DIR")
	}
	pos, err := parsePosition(*from)
	if err != nil {
		return &usageError{err}
	}
	db, err := openRO(fs.Arg(0))
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, err := db.Subscribe(ctx, pos)
	if err != nil {
		return err
	}
	defer sub.Close()
	p := &printer{w: stdout, json: *asJSON}
	// Nothing writes to a read-only open: the feed ends where the log does.
	for p.err == nil {
		c, ok, err := sub.TryNext()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		j, text := changeOut(c)
		p.print(j, text)
	}
	return p.err
}

func parsePosition(s string) (pluresdb.Position, error) {
	if s == "" {
		return pluresdb.Position{}, nil
	}
	seq, idx, hasIdx := strings.Cut(s, "/")
	var p pluresdb.Position
	var err error
	if p.Seq, err = strconv.ParseUint(seq, 10, 64); err != nil {
		return p, fmt.Errorf("position %q: %w", s, err)
	}
	if hasIdx {
		i, err := strconv.ParseUint(idx, 10, 32)
		if err != nil {
			return p, fmt.Errorf("position %q: %w", s, err)
		}
		p.Index = uint32(i)
	}
	return p, nil
}

// entryJSON is one entry of a log record or a table.
type entryJSON struct {
	Seq       uint64    `json:"seq"`
	Kind      string    `json:"kind"`
	Namespace uint8     `json:"ns"`
	Key       bytesJSON `json:"key"`
	ValueLen  int       `json:"value_len"`
	// Ops are an import record's operations (its op log entry).
	Ops []changeJSON `json:"ops,omitempty"`
}

// recordJSON is a log record as dump-wal prints it.
type recordJSON struct {
	Offset  int64       `json:"offset"` // of the record, in the segment
	Seq     uint64      `json:"seq"`
	Count   uint32      `json:"count"`
	Bytes   int         `json:"bytes"`
	Entries []entryJSON `json:"entries"`
}

// dumpWALCommand runs `plures dump-wal [-json] FILE`: every record of a
// log segment, every checksum checked; damage stops the dump with an
// error that names the offset.
func dumpWALCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dump-wal", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("usage: plures dump-wal [-json] FILE.log")
	}
	path := fs.Arg(0)
	t, num, ok := layout.Parse(filepath.Base(path))
	if !ok || t != layout.TypeLog {
		return fmt.Errorf("%s: not a log segment (NNNNNN.log)", path)
	}
	sr, err := wal.OpenSegment(vfs.Default, filepath.Dir(path), num)
	if err != nil {
		return err
	}
	defer sr.Close()
	p := &printer{w: stdout, json: *asJSON}
	for p.err == nil {
		rec, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		r, err := batchrepr.NewReader(rec)
		if err != nil {
			return fmt.Errorf("%s: record: %w", path, err)
		}
		j := recordJSON{Seq: uint64(r.Seq), Count: r.Count, Bytes: len(rec)}
		var text strings.Builder
		fmt.Fprintf(&text, "record seq %d, %d entries, %d bytes", r.Seq, r.Count, len(rec))
		for i := uint64(0); ; i++ {
			e, ok, err := r.Next()
			if err != nil {
				return fmt.Errorf("%s: record at seq %d: %w", path, r.Seq, err)
			}
			if !ok {
				break
			}
			ej, etext, err := entryOut(uint64(r.Seq)+i, e)
			if err != nil {
				return fmt.Errorf("%s: record at seq %d: %w", path, r.Seq, err)
			}
			j.Entries = append(j.Entries, ej)
			text.WriteString("\n  " + etext)
		}
		p.print(j, text.String())
	}
	return p.err
}

// entryOut describes a batch entry; an op log entry's operations are
// decoded.
func entryOut(seq uint64, e batchrepr.Entry) (entryJSON, string, error) {
	j := entryJSON{Seq: seq, Kind: kindName(e.Kind), ValueLen: len(e.Value)}
	key := e.Key
	if len(key) > 0 {
		j.Namespace, key = key[0], key[1:]
	}
	j.Key = jsonBytes(key)
	text := fmt.Sprintf("%d %s ns=%d %s (%d bytes)", seq, j.Kind, j.Namespace, formatKey(key, 100), len(e.Value))
	if e.Kind != batchrepr.KindLogData {
		return j, text, nil
	}
	for p := e.Value; len(p) > 0; {
		_, ops, n, err := oplog.DecodeBatch(nil, p)
		if err != nil {
			return j, "", err
		}
		p = p[n:]
		for _, op := range ops {
			cj, ctext := changeOut(pluresdb.Change{Op: op})
			j.Ops = append(j.Ops, cj)
			text += "\n    " + ctext
		}
	}
	return j, text, nil
}

func kindName(k lsm.Kind) string {
	switch k {
	case lsm.KindSet:
		return "set"
	case lsm.KindDelete:
		return "delete"
	case lsm.KindMerge:
		return "merge"
	case batchrepr.KindLogData:
		return "oplog"
	}
	return fmt.Sprintf("kind(%d)", k)
}

// dumpSSTCommand runs `plures dump-sst [-json] FILE`: a table's
// properties and every entry, every block's checksum checked.
func dumpSSTCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dump-sst", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("usage: plures dump-sst [-json] FILE.sst")
	}
	path := fs.Arg(0)
	t, num, ok := layout.Parse(filepath.Base(path))
	if !ok || t != layout.TypeTable {
		return fmt.Errorf("%s: not a table (NNNNNN.sst)", path)
	}
	f, err := vfs.Default.Open(path)
	if err != nil {
		return err
	}
	tbl, err := lsm.OpenTable(f, path, num, nil)
	if err != nil {
		f.Close()
		return err
	}
	defer tbl.Close()
	p := &printer{w: stdout, json: *asJSON}
	props := tbl.Props()
	p.print(struct {
		Props lsm.TableProps `json:"props"`
	}{props}, fmt.Sprintf("table %s: %d entries (%d deletions, %d merges), seq %d..%d, %d data blocks, %s",
		num, props.NumEntries, props.NumDeletions, props.NumMerges, props.SmallestSeq, props.LargestSeq,
		props.DataBlocks, human.Bytes(props.FileSize)))
	it := tbl.NewIter()
	for ok := it.First(); ok && p.err == nil; ok = it.Next() {
		ukey, seq, kind, ok := lsm.SplitInternalKey(it.Key())
		if !ok {
			return fmt.Errorf("%s: %w: entry with a key of %d bytes", path, pluresdb.ErrCorruption, len(it.Key()))
		}
		j, text, err := entryOut(uint64(seq), batchrepr.Entry{Kind: kind, Key: ukey, Value: it.Value()})
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		p.print(j, text)
	}
	if err := it.Err(); err != nil {
		return err
	}
	return p.err
}

package main

// lsm.go: `plures lsm [-html FILE] DIR` shows the shape of the tree, one
// line per table, and optionally draws it as a self-contained HTML page.
//
// The drawing maps keys to [0,1] by rank among all table boundary keys, not
// by byte value: keys are arbitrary bytes, and rank spreads the tables of a
// real key space evenly, so a level's coverage and the overlap between
// levels stay readable whatever the key distribution.
//
// The page is written as well-formed XML (polyglot HTML5): every tag is
// closed, every key passes through html.EscapeString, and keys that are not
// printable ASCII are shown in hex, so no control byte reaches the output.

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"flag"
	"fmt"
	"html"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/tools/internal/human"
)

// lsmCommand runs `plures lsm [-html FILE] DIR`.
func lsmCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("lsm", flag.ContinueOnError)
	htmlOut := fs.String("html", "", "also write the tree as a self-contained HTML `file`")
	asJSON := fs.Bool("json", false, "print each table as a JSON line")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("usage: plures lsm [-json] [-html FILE] DIR")
	}
	dir := fs.Arg(0)
	// Read-only: an inspection tool writes nothing, and creates no
	// database where there is none.
	db, err := pluresdb.Open(dir, &pluresdb.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	tables, m := db.Tables(), db.Metrics()
	if err := db.Close(); err != nil {
		return err
	}

	if *asJSON {
		p := &printer{w: stdout, json: true}
		for _, t := range tables {
			p.print(struct {
				Level       int       `json:"level"`
				Num         uint64    `json:"num"`
				Size        uint64    `json:"size"`
				Cold        bool      `json:"cold"`
				Smallest    bytesJSON `json:"smallest"`
				Largest     bytesJSON `json:"largest"`
				SmallestSeq uint64    `json:"smallest_seq"`
				LargestSeq  uint64    `json:"largest_seq"`
				Entries     uint64    `json:"entries"`
				Deletions   uint64    `json:"deletions"`
			}{t.Level, t.Num, t.Size, t.Cold, jsonBytes(t.Smallest), jsonBytes(t.Largest),
				t.SmallestSeq, t.LargestSeq, t.Entries, t.Deletions}, "")
		}
		if p.err != nil {
			return p.err
		}
	} else {
		fmt.Fprintln(stdout, dir)
		if err := writeLSMText(stdout, tables); err != nil {
			return err
		}
	}
	if *htmlOut == "" {
		return nil
	}
	var buf bytes.Buffer
	if err := writeLSMHTML(&buf, dir, tables, &m); err != nil {
		return err
	}
	if err := os.WriteFile(*htmlOut, buf.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", *htmlOut)
	return nil
}

// levelSummary is what the text and the page say about one level.
type levelSummary struct {
	level       int
	files, cold int
	bytes       uint64
	tables      []pluresdb.TableInfo
}

func (s levelSummary) tier() string {
	switch s.cold {
	case 0:
		return "hot"
	case s.files:
		return "cold"
	}
	return "mixed"
}

// summarizeLevels groups tables by level, in level order, keeping the
// order within a level that the caller gave (db.Tables: by key, L0 newest
// first). Empty levels are left out.
func summarizeLevels(tables []pluresdb.TableInfo) []levelSummary {
	var out []levelSummary
	byLevel := map[int]int{}
	for _, t := range tables {
		i, ok := byLevel[t.Level]
		if !ok {
			i = len(out)
			byLevel[t.Level] = i
			out = append(out, levelSummary{level: t.Level})
		}
		s := &out[i]
		s.files++
		s.bytes += t.Size
		if t.Cold {
			s.cold++
		}
		s.tables = append(s.tables, t)
	}
	slices.SortStableFunc(out, func(a, b levelSummary) int { return cmp.Compare(a.level, b.level) })
	return out
}

// writeLSMText prints each non-empty level and its tables.
func writeLSMText(w io.Writer, tables []pluresdb.TableInfo) error {
	var b strings.Builder
	var total uint64
	levels := summarizeLevels(tables)
	for _, s := range levels {
		total += s.bytes
		fmt.Fprintf(&b, "L%d  %-5s %4d tables %10s\n", s.level, s.tier(), s.files, human.Bytes(s.bytes))
		for _, t := range s.tables {
			tier := ""
			if s.tier() == "mixed" && t.Cold {
				tier = "  cold"
			}
			fmt.Fprintf(&b, "  %06d %10s  entries %d  deletions %d  seq %d-%d  %s .. %s%s\n",
				t.Num, human.Bytes(t.Size), t.Entries, t.Deletions, t.SmallestSeq, t.LargestSeq,
				formatKey(t.Smallest, 32), formatKey(t.Largest, 32), tier)
		}
	}
	if len(levels) == 0 {
		b.WriteString("no tables\n")
	} else {
		fmt.Fprintf(&b, "total %d tables, %s\n", len(tables), human.Bytes(total))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// formatKey shows a key as text when every byte is printable ASCII, as hex
// (0x...) otherwise, in at most limit runes (an ellipsis marks a cut).
func formatKey(k []byte, limit int) string {
	s := ""
	switch {
	case len(k) == 0:
		return `""`
	case isPrintable(k):
		s = string(k)
	default:
		s = "0x" + hex.EncodeToString(k)
	}
	if len(s) > limit { // ASCII only, so bytes are runes
		s = s[:limit-1] + "…"
	}
	return s
}

func isPrintable(k []byte) bool {
	for _, c := range k {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// keyRanks maps every boundary key of tables to its position in [0,1]
// within the sorted list of distinct boundary keys.
func keyRanks(tables []pluresdb.TableInfo) func([]byte) float64 {
	keys := make([][]byte, 0, 2*len(tables))
	for _, t := range tables {
		keys = append(keys, t.Smallest, t.Largest)
	}
	slices.SortFunc(keys, bytes.Compare)
	keys = slices.CompactFunc(keys, bytes.Equal)
	return func(k []byte) float64 {
		if len(keys) < 2 {
			return 0
		}
		i, _ := slices.BinarySearchFunc(keys, k, bytes.Compare)
		return float64(i) / float64(len(keys)-1)
	}
}

// assignLanes gives each table of one level the first lane whose previous
// table ends before it starts, so overlapping tables (L0) are drawn one
// above the other instead of on top of each other. It returns the lane of
// each table, in the order given, and the number of lanes.
func assignLanes(tables []pluresdb.TableInfo) ([]int, int) {
	order := make([]int, len(tables))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return bytes.Compare(tables[a].Smallest, tables[b].Smallest)
	})
	lanes := make([]int, len(tables))
	var laneEnd [][]byte // largest key of the last table in each lane
	for _, i := range order {
		lane := -1
		for l, end := range laneEnd {
			if bytes.Compare(end, tables[i].Smallest) < 0 {
				lane = l
				break
			}
		}
		if lane < 0 {
			lane = len(laneEnd)
			laneEnd = append(laneEnd, nil)
		}
		laneEnd[lane] = tables[i].Largest
		lanes[i] = lane
	}
	return lanes, max(len(laneEnd), 1)
}

// Geometry of the drawing, in SVG user units (pixels).
const (
	svgLabelWidth = 190 // the level labels left of the key axis
	svgAxisWidth  = 900
	svgLaneHeight = 22
	svgRowGap     = 10
	svgMinWidth   = 3 // a table holding one key still shows
)

// writeLSMHTML writes a self-contained page that draws tables: a row per
// level from L0 to the deepest non-empty one, each table a rectangle placed
// by its key range and coloured by tier, with its details in a tooltip. m,
// when not nil, adds the engine's counters to the summary.
func writeLSMHTML(w io.Writer, title string, tables []pluresdb.TableInfo, m *pluresdb.Metrics) error {
	var b strings.Builder
	esc := html.EscapeString
	levels := summarizeLevels(tables)
	deepest := -1
	if len(levels) > 0 {
		deepest = levels[len(levels)-1].level
	}
	byLevel := map[int]levelSummary{}
	var total uint64
	for _, s := range levels {
		byLevel[s.level] = s
		total += s.bytes
	}

	b.WriteString(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<title>PluresDB tree: ` + esc(title) + `</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; }
table.summary { border-collapse: collapse; margin: 0 2em 1em 0; display: inline-table; vertical-align: top; }
table.summary td, table.summary th { padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: right; }
table.summary th:first-child, table.summary td:first-child { text-align: left; }
.hot { fill: #e8743b; }
.cold { fill: #3b7ae8; }
rect.table { stroke: #fff; stroke-width: 1; }
rect.table:hover { stroke: #000; }
text { font: 11px monospace; fill: #222; }
text.inside { fill: #fff; pointer-events: none; }
.swatch { display: inline-block; width: 1em; height: 1em; vertical-align: middle; }
</style>
</head>
<body>
<h1>PluresDB tree: ` + esc(title) + `</h1>
`)

	// Summary: level sizes, then the counters.
	b.WriteString("<table class=\"summary\">\n<tr><th>level</th><th>tier</th><th>tables</th><th>size</th></tr>\n")
	for _, s := range levels {
		fmt.Fprintf(&b, "<tr><td>L%d</td><td>%s</td><td>%d</td><td>%s</td></tr>\n",
			s.level, s.tier(), s.files, human.Bytes(s.bytes))
	}
	fmt.Fprintf(&b, "<tr><th>total</th><th></th><th>%d</th><th>%s</th></tr>\n</table>\n",
		len(tables), human.Bytes(total))
	if m != nil {
		// Counters start at zero on every Open: for a database opened
		// just to draw it they say what opening cost, not its history.
		b.WriteString("<table class=\"summary\">\n<tr><th colspan=\"2\">counters since this open</th></tr>\n")
		row := func(k, v string) { fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td></tr>\n", k, esc(v)) }
		row("write amplification", fmt.Sprintf("%.2f", m.WriteAmplification))
		row("log bytes", human.Bytes(m.WALBytes))
		row("flushes", fmt.Sprintf("%d (%s)", m.Flushes, human.Bytes(m.FlushBytes)))
		row("compactions", fmt.Sprintf("%d (%s)", m.Compactions, human.Bytes(m.CompactionBytes)))
		row("stalls", fmt.Sprintf("%d (%s)", m.Stalls, m.StallTime))
		row("cache hits / misses", fmt.Sprintf("%d / %d", m.CacheHits, m.CacheMisses))
		row("memtable", fmt.Sprintf("%s, %d immutable", human.Bytes(uint64(max(m.MemtableBytes, 0))), m.ImmutableMemtables))
		b.WriteString("</table>\n")
	}
	b.WriteString(`<p><span class="swatch" style="background:#e8743b"></span> hot
<span class="swatch" style="background:#3b7ae8"></span> cold
&#8212; x: key range, by rank among all table boundary keys; hover a table for details.</p>
`)

	// The drawing.
	rank := keyRanks(tables)
	type row struct {
		s     levelSummary
		lanes []int
		n     int
		y     int
	}
	rows := make([]row, 0, deepest+1)
	y := 0
	for l := 0; l <= deepest; l++ {
		s := byLevel[l]
		lanes, n := assignLanes(s.tables)
		rows = append(rows, row{s: s, lanes: lanes, n: n, y: y})
		y += n*svgLaneHeight + svgRowGap
	}
	height := max(y, svgLaneHeight)
	width := svgLabelWidth + svgAxisWidth + 10
	fmt.Fprintf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n",
		width, height, width, height)
	if len(tables) == 0 {
		b.WriteString("<text x=\"0\" y=\"15\">no tables</text>\n")
	}
	for l, r := range rows {
		fmt.Fprintf(&b, "<g class=\"level\" data-level=\"%d\">\n", l)
		label := fmt.Sprintf("L%d: empty", l)
		if r.s.files > 0 {
			label = fmt.Sprintf("L%d: %d tables, %s", l, r.s.files, human.Bytes(r.s.bytes))
		}
		fmt.Fprintf(&b, "<rect x=\"0\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#f4f4f4\"/>\n",
			r.y, width, r.n*svgLaneHeight)
		fmt.Fprintf(&b, "<text x=\"4\" y=\"%d\">%s</text>\n", r.y+15, esc(label))
		for i, t := range r.s.tables {
			x0 := float64(svgLabelWidth) + rank(t.Smallest)*svgAxisWidth
			w := max((rank(t.Largest)-rank(t.Smallest))*svgAxisWidth, svgMinWidth)
			ty := r.y + r.lanes[i]*svgLaneHeight + 1
			tier := "hot"
			if t.Cold {
				tier = "cold"
			}
			fmt.Fprintf(&b, "<rect class=\"table %s\" data-table=\"%d\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\">",
				tier, t.Num, x0, ty, w, svgLaneHeight-2)
			fmt.Fprintf(&b, "<title>L%d table %06d (%s)\n%s, %d entries, %d deletions\nseq %d-%d\n%s .. %s</title></rect>\n",
				t.Level, t.Num, tier, human.Bytes(t.Size), t.Entries, t.Deletions, t.SmallestSeq, t.LargestSeq,
				esc(formatKey(t.Smallest, 128)), esc(formatKey(t.Largest, 128)))
			if w >= 50 {
				fmt.Fprintf(&b, "<text class=\"inside\" x=\"%.1f\" y=\"%d\">%06d</text>\n", x0+4, ty+14, t.Num)
			}
		}
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n</body>\n</html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

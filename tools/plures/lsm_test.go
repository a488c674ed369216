package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/plures/pluresdb"
	"github.com/plures/pluresdb/tools/internal/human"
)

// buildDB writes a small database with tables in L0 and in a deeper level.
func buildDB(t *testing.T) (string, []pluresdb.TableInfo) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "db")
	opts := &pluresdb.Options{
		MemtableSize:          1 << 20,
		TargetFileSize:        32 << 10, // several tables out of the compaction
		NoCompression:         true,
		DisableAutoCompaction: true,
		NoSync:                true,
	}
	db, err := pluresdb.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	val := bytes.Repeat([]byte("v"), 100)
	put := func(from, to int) {
		for i := from; i < to; i++ {
			if err := db.Put(fmt.Appendf(nil, "user:%06d", i), val); err != nil {
				t.Fatal(err)
			}
		}
	}
	put(0, 4000)
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	put(0, 100) // overlaps the first table: the compaction rewrites, not moves
	if err := db.Delete([]byte("user:000007")); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(nil, nil); err != nil {
		t.Fatal(err)
	}
	put(1000, 1500) // one L0 table on top of the compacted level
	if err := db.Put([]byte{0xff, 0x00, '<'}, val); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	tables := db.Tables()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	levels := map[int]bool{}
	for _, ti := range tables {
		levels[ti.Level] = true
	}
	if len(tables) < 3 || len(levels) < 2 {
		t.Fatalf("want several tables on at least two levels, got %+v", tables)
	}
	return dir, tables
}

func TestLSMCommandText(t *testing.T) {
	dir, tables := buildDB(t)
	var out bytes.Buffer
	if err := lsmCommand([]string{dir}, &out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	t.Log("\n" + text)
	for _, ti := range tables {
		line := fmt.Sprintf("  %06d %10s  entries %d  deletions %d  seq %d-%d  %s .. %s",
			ti.Num, human.Bytes(ti.Size), ti.Entries, ti.Deletions, ti.SmallestSeq, ti.LargestSeq,
			formatKey(ti.Smallest, 32), formatKey(ti.Largest, 32))
		if !strings.Contains(text, line+"\n") {
			t.Errorf("output lacks the line for table %d: %q", ti.Num, line)
		}
	}
	for _, s := range summarizeLevels(tables) {
		head := fmt.Sprintf("L%d  %-5s %4d tables %10s\n", s.level, s.tier(), s.files, human.Bytes(s.bytes))
		if !strings.Contains(text, head) {
			t.Errorf("output lacks the level header %q", head)
		}
	}
	if got, want := strings.Count(text, "entries "), len(tables); got != want {
		t.Errorf("%d table lines, want %d", got, want)
	}
	// The binary key is the largest of its table: shown in hex.
	if !strings.Contains(text, "0xff003c") {
		t.Errorf("binary key not shown in hex")
	}
}

func TestLSMCommandHTML(t *testing.T) {
	dir, tables := buildDB(t)
	out := filepath.Join(t.TempDir(), "tree.html")
	if err := lsmCommand([]string{"-html", out, dir}, io.Discard); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	rects := parsePage(t, page)
	for _, ti := range tables {
		r, ok := rects[ti.Num]
		if !ok {
			t.Errorf("no rectangle for table %d", ti.Num)
			continue
		}
		tier := "hot"
		if ti.Cold {
			tier = "cold"
		}
		if !strings.Contains(r.title, fmt.Sprintf("L%d table %06d (%s)", ti.Level, ti.Num, tier)) {
			t.Errorf("table %d tooltip %q", ti.Num, r.title)
		}
	}
	if len(rects) != len(tables) {
		t.Errorf("%d rectangles, want %d", len(rects), len(tables))
	}
	if !bytes.Contains(page, []byte("write amplification")) {
		t.Errorf("page lacks the metrics summary")
	}
}

func TestLSMCommandRefusesNonDatabase(t *testing.T) {
	dir := t.TempDir()
	err := lsmCommand([]string{dir}, io.Discard)
	if !errors.Is(err, pluresdb.ErrNotDatabase) {
		t.Fatalf("got %v, want ErrNotDatabase", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("inspecting created files: %v", entries)
	}
	if err := lsmCommand(nil, io.Discard); err == nil {
		t.Fatal("no DIR: want a usage error")
	}
}

type drawnTable struct {
	level    int
	x, width float64
	y        int
	cold     bool
	title    string
}

// parsePage checks that the whole page is well-formed XML and returns the
// table rectangles by table number.
func parsePage(t *testing.T, page []byte) map[uint64]drawnTable {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(page))
	dec.Strict = true
	rects := map[uint64]drawnTable{}
	level := -1
	var cur *drawnTable
	var curNum uint64
	inTitle := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("page is not well-formed: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			attr := map[string]string{}
			for _, a := range tok.Attr {
				attr[a.Name.Local] = a.Value
			}
			switch {
			case tok.Name.Local == "g" && attr["data-level"] != "":
				level, _ = strconv.Atoi(attr["data-level"])
			case tok.Name.Local == "rect" && attr["data-table"] != "":
				num, _ := strconv.ParseUint(attr["data-table"], 10, 64)
				x, _ := strconv.ParseFloat(attr["x"], 64)
				w, _ := strconv.ParseFloat(attr["width"], 64)
				y, _ := strconv.Atoi(attr["y"])
				if _, dup := rects[num]; dup {
					t.Fatalf("table %d drawn twice", num)
				}
				cur, curNum = &drawnTable{level: level, x: x, width: w, y: y,
					cold: strings.Contains(attr["class"], "cold")}, num
			case tok.Name.Local == "title" && cur != nil:
				inTitle = true
			}
		case xml.CharData:
			if inTitle {
				cur.title += string(tok)
			}
		case xml.EndElement:
			switch tok.Name.Local {
			case "title":
				inTitle = false
			case "rect":
				if cur != nil {
					rects[curNum] = *cur
					cur = nil
				}
			}
		}
	}
	return rects
}

// TestLSMHTMLLayout draws fixed tables and checks their geometry: key
// ranges map to x by rank, a level's tables do not overlap, overlapping L0
// tables get separate lanes, tier picks the colour, keys are escaped.
func TestLSMHTMLLayout(t *testing.T) {
	k := func(s string) []byte { return []byte(s) }
	tables := []pluresdb.TableInfo{
		{Level: 0, Num: 9, Size: 100, Smallest: k("b"), Largest: k("e"), SmallestSeq: 90, LargestSeq: 99, Entries: 10},
		{Level: 0, Num: 8, Size: 100, Smallest: k("a"), Largest: k("c"), SmallestSeq: 80, LargestSeq: 89, Entries: 10},
		{Level: 2, Num: 5, Size: 1000, Smallest: k("a"), Largest: k("c"), Entries: 100, Deletions: 3},
		{Level: 2, Num: 6, Size: 1000, Smallest: k("d"), Largest: k("<script>&"), Entries: 100},
		{Level: 6, Num: 1, Size: 5000, Cold: true, Smallest: k("<script>&"), Largest: k("z"), Entries: 500},
	}
	// Boundary keys sorted: "<script>&" a b c d e z -> ranks 0..6 of 6.
	var buf bytes.Buffer
	if err := writeLSMHTML(&buf, "<dir & co>", tables, nil); err != nil {
		t.Fatal(err)
	}
	page := buf.Bytes()
	if bytes.Contains(page, []byte("<script>")) || bytes.Contains(page, []byte("<dir")) {
		t.Fatal("a key or the title reached the page unescaped")
	}
	if bytes.Contains(page, []byte("write amplification")) {
		t.Error("metrics summary shown without metrics")
	}
	rects := parsePage(t, page)
	if len(rects) != len(tables) {
		t.Fatalf("%d rectangles, want %d", len(rects), len(tables))
	}
	x := func(rank float64) float64 { return svgLabelWidth + rank/6*svgAxisWidth }
	near := func(a, b float64) bool { return a-b < 0.2 && b-a < 0.2 }
	for _, ti := range tables {
		r := rects[ti.Num]
		if r.level != ti.Level || r.cold != ti.Cold {
			t.Errorf("table %d: level %d cold %v, want %d %v", ti.Num, r.level, r.cold, ti.Level, ti.Cold)
		}
	}
	want := map[uint64][2]float64{9: {2, 5}, 8: {1, 3}, 5: {1, 3}, 6: {4, 0}, 1: {0, 6}}
	for num, rr := range want {
		r := rects[num]
		wantW := max((rr[1]-rr[0])/6*svgAxisWidth, svgMinWidth)
		if !near(r.x, x(rr[0])) || !near(r.width, wantW) {
			t.Errorf("table %d at x=%.1f w=%.1f, want x=%.1f w=%.1f", num, r.x, r.width, x(rr[0]), wantW)
		}
	}
	// Tables 8 and 9 overlap (b..c): they must be in different lanes.
	if rects[8].y == rects[9].y {
		t.Errorf("overlapping L0 tables drawn in the same lane")
	}
	// Table 6 has smallest "d" > largest "<script>&": drawn at its
	// smallest key with the minimum width rather than a negative one.
	if rects[6].width <= 0 {
		t.Errorf("negative width")
	}
	if !strings.Contains(rects[1].title, "&lt;script&gt;&amp;") && !strings.Contains(rects[1].title, "<script>&") {
		t.Errorf("tooltip of table 1 lacks its key: %q", rects[1].title)
	}
	if !strings.Contains(rects[1].title, "(cold)") || !strings.Contains(rects[5].title, "3 deletions") {
		t.Errorf("tooltips lack details: %q, %q", rects[1].title, rects[5].title)
	}
}

func TestLSMEmpty(t *testing.T) {
	var text, page bytes.Buffer
	if err := writeLSMText(&text, nil); err != nil {
		t.Fatal(err)
	}
	if text.String() != "no tables\n" {
		t.Errorf("empty tree text %q", text.String())
	}
	if err := writeLSMHTML(&page, "empty", nil, &pluresdb.Metrics{}); err != nil {
		t.Fatal(err)
	}
	if rects := parsePage(t, page.Bytes()); len(rects) != 0 {
		t.Errorf("empty tree drew %d tables", len(rects))
	}
}

func TestFormatKey(t *testing.T) {
	for _, c := range []struct {
		key  []byte
		want string
	}{
		{nil, `""`},
		{[]byte("user:42"), "user:42"},
		{[]byte{0, 1, 0xab}, "0x0001ab"},
		{[]byte("tab\there"), "0x" + fmt.Sprintf("%x", "tab\there")},
		{[]byte(strings.Repeat("k", 32)), strings.Repeat("k", 32)},
		{[]byte(strings.Repeat("k", 33)), strings.Repeat("k", 31) + "…"},
		{bytes.Repeat([]byte{0xff}, 20), "0x" + strings.Repeat("ff", 14) + "f…"},
	} {
		if got := formatKey(c.key, 32); got != c.want {
			t.Errorf("formatKey(%q) = %q, want %q", c.key, got, c.want)
		}
		if n := len([]rune(formatKey(c.key, 32))); n > 32 {
			t.Errorf("formatKey(%q) is %d runes", c.key, n)
		}
	}
}

func TestLSMTextFixed(t *testing.T) {
	long := []byte(strings.Repeat("x", 40))
	tables := []pluresdb.TableInfo{
		{Level: 5, Num: 12, Size: 3 << 20, Smallest: []byte("a"), Largest: []byte("m"), SmallestSeq: 1, LargestSeq: 50, Entries: 50, Deletions: 2},
		{Level: 5, Num: 13, Size: 1 << 20, Cold: true, Smallest: []byte("n"), Largest: long, SmallestSeq: 51, LargestSeq: 60, Entries: 10},
		{Level: 6, Num: 4, Size: 2048, Cold: true, Smallest: []byte{0}, Largest: []byte{0xff}, Entries: 7},
	}
	var out bytes.Buffer
	if err := writeLSMText(&out, tables); err != nil {
		t.Fatal(err)
	}
	want := `L5  mixed    2 tables    4.0 MiB
  000012    3.0 MiB  entries 50  deletions 2  seq 1-50  a .. m
  000013    1.0 MiB  entries 10  deletions 0  seq 51-60  n .. ` + strings.Repeat("x", 31) + `…  cold
L6  cold     1 tables    2.0 KiB
  000004    2.0 KiB  entries 7  deletions 0  seq 0-0  0x00 .. 0xff
total 3 tables, 4.0 MiB
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

package timeseries

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestParseSeries(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`cpu`, `cpu`},
		{`cpu{}`, `cpu`},
		{`cpu{host="a"}`, `cpu{host="a"}`},
		{` cpu { host = "a" , core="3", } `, `cpu{core="3",host="a"}`},
		{`{__name__="cpu",host="a"}`, `cpu{host="a"}`},
		{`{host="a"}`, `{host="a"}`},
		{`cpu{host="",core="3"}`, `cpu{core="3"}`},
		{`node:cpu_seconds:rate5m{mode="idle"}`, `node:cpu_seconds:rate5m{mode="idle"}`},
		{`cpu{path="a\"b\\c\n"}`, `cpu{path="a\"b\\c\n"}`},
		{`cpu{x="ünï"}`, `cpu{x="ünï"}`},
	} {
		ls, err := ParseSeries(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if got := ls.String(); got != c.want {
			t.Fatalf("%s: canonical %s, want %s", c.in, got, c.want)
		}
		// The canonical form parses to itself.
		again, err := ParseSeries(ls.String())
		if err != nil || again.String() != c.want || !slices.Equal(again, ls) {
			t.Fatalf("%s: canonical form %s parses to %v, %v", c.in, ls, again, err)
		}
	}
	for _, bad := range []string{
		``, `{}`, `1cpu`, `cpu{`, `cpu{host}`, `cpu{host="a"`, `cpu{host=a}`, `cpu{host!="a"}`,
		`cpu{host="a",host="b"}`, `cpu{__name__="mem"}`, `cpu{1x="a"}`, `cpu x`, `cpu{host="a"}x`,
		`{__name__="1x"}`, `cpu{host="\q"}`, `cpu{a:b="x"}`, strings.Repeat("a", MaxSeriesLen+1),
	} {
		if _, err := ParseSeries(bad); !errors.Is(err, ErrInvalidSeries) {
			t.Fatalf("%q: %v, want ErrInvalidSeries", bad, err)
		}
	}
	var many strings.Builder
	many.WriteString("m{")
	for i := range MaxLabels + 1 {
		fmt.Fprintf(&many, "l%d=\"v\",", i)
	}
	many.WriteString("}")
	if _, err := ParseSeries(many.String()); !errors.Is(err, ErrInvalidSeries) {
		t.Fatalf("too many labels: %v", err)
	}
}

func TestFromMap(t *testing.T) {
	ls, err := FromMap(map[string]string{MetricLabel: "cpu", "host": "a", "empty": ""})
	if err != nil || ls.String() != `cpu{host="a"}` {
		t.Fatalf("FromMap: %v %v", ls, err)
	}
	if _, err := FromMap(map[string]string{"bad-name": "x"}); !errors.Is(err, ErrInvalidSeries) {
		t.Fatalf("bad name: %v", err)
	}
}

func TestParseSelector(t *testing.T) {
	ms, err := ParseSelector(`cpu{host=~"a.*", core!="3", dc!~"eu|us", env=""}`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.String())
	}
	want := []string{`__name__="cpu"`, `host=~"a.*"`, `core!="3"`, `dc!~"eu|us"`, `env=""`}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if !ms[1].Matches("abc") || ms[1].Matches("xa") {
		t.Fatal("regexp must match the whole value")
	}
	for _, bad := range []string{``, `{}`, `cpu{host=~"("}`, `cpu{host}`, `cpu{`} {
		if _, err := ParseSelector(bad); !errors.Is(err, ErrInvalidSeries) {
			t.Fatalf("%q: %v, want ErrInvalidSeries", bad, err)
		}
	}
}

// TestSelectMatchesReference checks Select against trying every matcher
// on every series, on random label sets and matchers.
func TestSelectMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	p := NewPostings()
	series := map[SeriesID]Labels{}
	values := []string{"a", "b", "ab", "c1", "zz"}
	names := []string{"host", "dc", "core"}
	for id := SeriesID(1); id <= 400; id++ {
		m := map[string]string{MetricLabel: []string{"cpu", "mem", "disk"}[rng.IntN(3)]}
		for _, n := range names {
			if rng.IntN(3) > 0 {
				m[n] = values[rng.IntN(len(values))]
			}
		}
		ls, err := FromMap(m)
		if err != nil {
			t.Fatal(err)
		}
		p.Add(id, ls)
		series[id] = ls
	}
	// Some series go away.
	for id := SeriesID(1); id <= 400; id += 7 {
		p.Remove(id)
		delete(series, id)
	}
	if p.Len() != len(series) {
		t.Fatalf("Len %d, want %d", p.Len(), len(series))
	}
	types := []MatchType{MatchEqual, MatchNotEqual, MatchRegexp, MatchNotRegexp}
	patterns := []string{"a", "", "a.*", "b|c1", ".*", "z+", "ab"}
	for range 500 {
		var ms []*Matcher
		for range 1 + rng.IntN(3) {
			name := append(names, MetricLabel)[rng.IntN(len(names)+1)]
			v := patterns[rng.IntN(len(patterns))]
			if name == MetricLabel && rng.IntN(2) == 0 {
				v = []string{"cpu", "mem"}[rng.IntN(2)]
			}
			ms = append(ms, MustMatcher(types[rng.IntN(len(types))], name, v))
		}
		got := p.Select(ms...).ToArray()
		var want []SeriesID
		for id, ls := range series {
			ok := true
			for _, m := range ms {
				ok = ok && m.Matches(ls.Get(m.Name))
			}
			if ok {
				want = append(want, id)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%v: got %v, want %v", ms, got, want)
		}
	}
	if names := p.LabelNames(); !slices.Contains(names, "host") || !slices.Contains(names, MetricLabel) {
		t.Fatalf("LabelNames %v", names)
	}
	if vs := p.LabelValues(MetricLabel); !slices.Equal(vs, []string{"cpu", "disk", "mem"}) {
		t.Fatalf("LabelValues %v", vs)
	}
}

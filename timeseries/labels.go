package timeseries

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ErrInvalidSeries: a series name or a selector that does not parse, or
// breaks a limit (see ParseSeries, ParseSelector).
var ErrInvalidSeries = errors.New("pluresdb: invalid series")

// MetricLabel is the label that holds a series' metric name.
const MetricLabel = "__name__"

// Limits on a series name.
const (
	// MaxSeriesLen bounds a series' canonical form.
	MaxSeriesLen = 16 << 10
	// MaxLabels bounds a series' labels, the metric name included.
	MaxLabels = 64
)

// Label is one name="value" pair of a series.
type Label struct {
	Name, Value string
}

// Labels are a series' labels sorted by name, each name once, no empty
// value (an empty value is the same as no label). The metric name is the
// label MetricLabel.
type Labels []Label

// Get returns the value of the label name, "" if there is none.
func (ls Labels) Get(name string) string {
	i, ok := slices.BinarySearchFunc(ls, name, func(l Label, n string) int { return strings.Compare(l.Name, n) })
	if !ok {
		return ""
	}
	return ls[i].Value
}

// Metric returns the metric name ("" if none).
func (ls Labels) Metric() string { return ls.Get(MetricLabel) }

// String returns the canonical form: the metric name, then the other
// labels in name order in braces, each value quoted as Go quotes a
// string: cpu{core="3",host="a"}. A series without a metric name is
// {host="a"}; one with nothing but a metric name has no braces. Two label
// sets are the same series exactly when their canonical forms are equal.
func (ls Labels) String() string {
	var b strings.Builder
	b.WriteString(ls.Metric())
	n := 0
	for _, l := range ls {
		if l.Name == MetricLabel {
			continue
		}
		if n == 0 {
			b.WriteByte('{')
		} else {
			b.WriteByte(',')
		}
		n++
		b.WriteString(l.Name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l.Value))
	}
	if n > 0 {
		b.WriteByte('}')
	} else if b.Len() == 0 {
		b.WriteString("{}")
	}
	return b.String()
}

// FromMap makes Labels of a map (empty values dropped), checking names.
func FromMap(m map[string]string) (Labels, error) {
	ls := make(Labels, 0, len(m))
	for n, v := range m {
		if v == "" {
			continue
		}
		ls = append(ls, Label{n, v})
	}
	slices.SortFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	return ls, ls.check()
}

// check enforces the rules of Labels and the limits.
func (ls Labels) check() error {
	if len(ls) == 0 {
		return fmt.Errorf("%w: a series needs a metric name or a label", ErrInvalidSeries)
	}
	if len(ls) > MaxLabels {
		return fmt.Errorf("%w: %d labels, at most %d", ErrInvalidSeries, len(ls), MaxLabels)
	}
	for i, l := range ls {
		if l.Name == MetricLabel {
			if !validMetricName(l.Value) {
				return fmt.Errorf("%w: metric name %q (letters, digits, '_' and ':', not starting with a digit)", ErrInvalidSeries, l.Value)
			}
		} else if !validLabelName(l.Name) {
			return fmt.Errorf("%w: label name %q (letters, digits and '_', not starting with a digit)", ErrInvalidSeries, l.Name)
		}
		if l.Value == "" {
			return fmt.Errorf("%w: label %s has an empty value", ErrInvalidSeries, l.Name)
		}
		if i > 0 && ls[i-1].Name >= l.Name {
			return fmt.Errorf("%w: label %s given twice", ErrInvalidSeries, l.Name)
		}
	}
	if n := len(ls.String()); n > MaxSeriesLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidSeries, n, MaxSeriesLen)
	}
	return nil
}

func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func validLabelName(s string) bool {
	if s == "" || s == MetricLabel {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ParseSeries parses a series name: a metric name, labels in braces, or
// both (cpu, cpu{host="a"}, {__name__="cpu",host="a"}). Values are
// double-quoted strings with Go's escapes; spaces around the punctuation
// are allowed; labels come in any order. Errors wrap ErrInvalidSeries.
func ParseSeries(s string) (Labels, error) {
	if len(s) > MaxSeriesLen {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidSeries, len(s), MaxSeriesLen)
	}
	p := parser{s: s}
	var ls Labels
	if name := p.ident(true); name != "" {
		ls = append(ls, Label{MetricLabel, name})
	}
	if p.peek() == '{' {
		pairs, err := p.braces(func(name, op, value string) error {
			if op != "=" {
				return fmt.Errorf("a series name has only = (got %s for %s)", op, name)
			}
			if name == MetricLabel && len(ls) > 0 && ls[0].Name == MetricLabel {
				return fmt.Errorf("metric name given twice")
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrInvalidSeries, s, err)
		}
		for _, m := range pairs {
			if m.Value != "" {
				ls = append(ls, Label{m.Name, m.Value})
			}
		}
	}
	if p.skipSpace(); p.i != len(p.s) {
		return nil, fmt.Errorf("%w: %q: unexpected %q at offset %d", ErrInvalidSeries, s, p.s[p.i:], p.i)
	}
	slices.SortStableFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	if err := ls.check(); err != nil {
		return nil, fmt.Errorf("%w (in %q)", err, s)
	}
	return ls, nil
}

// Canonical returns the canonical form of a series name (see
// Labels.String).
func Canonical(series string) (string, error) {
	ls, err := ParseSeries(series)
	if err != nil {
		return "", err
	}
	return ls.String(), nil
}

// parser reads series names and selectors.
type parser struct {
	s string
	i int
}

func (p *parser) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n') {
		p.i++
	}
}

func (p *parser) peek() byte {
	p.skipSpace()
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

// ident reads a metric name (metric: ':' allowed) or a label name.
func (p *parser) ident(metric bool) string {
	p.skipSpace()
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (metric && c == ':') || (p.i > start && c >= '0' && c <= '9') {
			p.i++
			continue
		}
		break
	}
	return p.s[start:p.i]
}

// pair is one name op "value" inside braces.
type pair struct {
	Name, Op, Value string
}

// braces reads {name op "value", ...}; check vets each pair.
func (p *parser) braces(check func(name, op, value string) error) ([]pair, error) {
	p.skipSpace()
	p.i++ // '{'
	var out []pair
	for {
		if p.peek() == '}' {
			p.i++
			return out, nil
		}
		if len(out) > 0 {
			if p.peek() != ',' {
				return nil, fmt.Errorf("want , or } at offset %d", p.i)
			}
			p.i++
			if p.peek() == '}' { // a trailing comma
				p.i++
				return out, nil
			}
		}
		name := p.ident(false)
		if name == "" {
			return nil, fmt.Errorf("want a label name at offset %d", p.i)
		}
		p.skipSpace()
		var op string
		for _, o := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(p.s[p.i:], o) {
				op = o
				break
			}
		}
		if op == "" {
			return nil, fmt.Errorf("want =, !=, =~ or !~ after %s at offset %d", name, p.i)
		}
		p.i += len(op)
		p.skipSpace()
		value, err := p.quoted()
		if err != nil {
			return nil, fmt.Errorf("label %s: %v", name, err)
		}
		if err := check(name, op, value); err != nil {
			return nil, err
		}
		for _, q := range out {
			if q.Name == name && op == "=" && q.Op == "=" {
				return nil, fmt.Errorf("label %s given twice", name)
			}
		}
		out = append(out, pair{name, op, value})
		if len(out) > MaxLabels {
			return nil, fmt.Errorf("more than %d labels", MaxLabels)
		}
	}
}

// quoted reads a double-quoted string with Go's escapes.
func (p *parser) quoted() (string, error) {
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return "", fmt.Errorf("want a double-quoted value at offset %d", p.i)
	}
	for j := p.i + 1; j < len(p.s); j++ {
		switch p.s[j] {
		case '\\':
			j++
		case '"':
			v, err := strconv.Unquote(p.s[p.i : j+1])
			if err != nil {
				return "", fmt.Errorf("value at offset %d: %v", p.i, err)
			}
			p.i = j + 1
			return v, nil
		}
	}
	return "", fmt.Errorf("unterminated value at offset %d", p.i)
}

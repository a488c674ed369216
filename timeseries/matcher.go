package timeseries

import (
	"fmt"
	"regexp"
)

// MatchType is how a Matcher compares a label's value.
type MatchType uint8

// The match types, as a selector writes them: =, !=, =~, !~.
const (
	MatchEqual MatchType = iota
	MatchNotEqual
	MatchRegexp
	MatchNotRegexp
)

func (t MatchType) String() string {
	switch t {
	case MatchEqual:
		return "="
	case MatchNotEqual:
		return "!="
	case MatchRegexp:
		return "=~"
	case MatchNotRegexp:
		return "!~"
	}
	return fmt.Sprintf("MatchType(%d)", uint8(t))
}

// Matcher selects series by one label. A series without the label
// matches as if its value were "" (so name="" selects the series without
// it, and name!="x" selects those too). A regular expression (RE2 syntax)
// must match the whole value.
type Matcher struct {
	Type  MatchType
	Name  string
	Value string
	re    *regexp.Regexp
}

// NewMatcher makes a matcher; a regular expression that does not compile
// is an error wrapping ErrInvalidSeries.
func NewMatcher(t MatchType, name, value string) (*Matcher, error) {
	m := &Matcher{Type: t, Name: name, Value: value}
	switch t {
	case MatchEqual, MatchNotEqual:
	case MatchRegexp, MatchNotRegexp:
		re, err := regexp.Compile("^(?s:" + value + ")$")
		if err != nil {
			return nil, fmt.Errorf("%w: label %s: %v", ErrInvalidSeries, name, err)
		}
		m.re = re
	default:
		return nil, fmt.Errorf("%w: unknown match type %d", ErrInvalidSeries, t)
	}
	if name != MetricLabel && !validLabelName(name) {
		return nil, fmt.Errorf("%w: label name %q", ErrInvalidSeries, name)
	}
	return m, nil
}

// MustMatcher is NewMatcher that panics on an error, for matchers written
// in the program.
func MustMatcher(t MatchType, name, value string) *Matcher {
	m, err := NewMatcher(t, name, value)
	if err != nil {
		panic(err)
	}
	return m
}

// Matches reports whether a label value (or "" for a missing label)
// matches.
func (m *Matcher) Matches(v string) bool {
	switch m.Type {
	case MatchEqual:
		return v == m.Value
	case MatchNotEqual:
		return v != m.Value
	case MatchRegexp:
		return m.re.MatchString(v)
	case MatchNotRegexp:
		return !m.re.MatchString(v)
	}
	return false
}

func (m *Matcher) String() string {
	return fmt.Sprintf("%s%s%q", m.Name, m.Type, m.Value)
}

// ParseSelector parses a series selector: a metric name, matchers in
// braces, or both: cpu, cpu{host=~"a.*",core!="3"}, {job="node"}. The
// metric name is the matcher __name__="name". Errors wrap
// ErrInvalidSeries.
func ParseSelector(s string) ([]*Matcher, error) {
	if len(s) > MaxSeriesLen {
		return nil, fmt.Errorf("%w: selector of %d bytes, at most %d", ErrInvalidSeries, len(s), MaxSeriesLen)
	}
	p := parser{s: s}
	var ms []*Matcher
	if name := p.ident(true); name != "" {
		ms = append(ms, &Matcher{Type: MatchEqual, Name: MetricLabel, Value: name})
	}
	if p.peek() == '{' {
		pairs, err := p.braces(func(name, op, value string) error { return nil })
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrInvalidSeries, s, err)
		}
		for _, q := range pairs {
			t := map[string]MatchType{"=": MatchEqual, "!=": MatchNotEqual, "=~": MatchRegexp, "!~": MatchNotRegexp}[q.Op]
			m, err := NewMatcher(t, q.Name, q.Value)
			if err != nil {
				return nil, fmt.Errorf("%w (in %q)", err, s)
			}
			ms = append(ms, m)
		}
	}
	if p.skipSpace(); p.i != len(p.s) {
		return nil, fmt.Errorf("%w: %q: unexpected %q at offset %d", ErrInvalidSeries, s, p.s[p.i:], p.i)
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("%w: %q: an empty selector", ErrInvalidSeries, s)
	}
	return ms, nil
}

package timeseries

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// SeriesResult is one series' labels and samples: a series' windows from
// Aggregate, or a group's from GroupBy.
type SeriesResult struct {
	Labels  Labels
	Samples []Sample
}

// GroupBy aggregates across series: the series of results (each with its
// samples strictly ascending in T, typically the windows of one
// aggregation over the same from and step) are grouped by the values of
// the labels named in by, and fn combines, for each T, the values the
// group's series have at that T. Each group's labels are the labels named
// in by that its series carry (the metric name only if by names
// MetricLabel); by empty makes one group of every series. A group has a
// sample at each T where one of its series has one; groups come sorted
// by their labels' canonical form, and a group without samples is left
// out.
//
// Across series: Min, Max, Sum and Avg of the values (NaN as over time);
// Count the number of series with a value at T; Rate the sum of the
// values (the sum of the series' rates); a Quantile the q-quantile of
// the values. First and Last have no meaning across series: they are an
// error wrapping ErrInvalidQuery, as is an invalid fn. A series whose
// samples do not ascend is an error wrapping ErrOutOfOrder.
func GroupBy(results []SeriesResult, by []string, fn Agg) ([]SeriesResult, error) {
	if !fn.Valid() {
		return nil, fmt.Errorf("%w: unknown aggregation %v", ErrInvalidQuery, fn)
	}
	kind := fn.kind()
	switch kind {
	case First, Last:
		return nil, fmt.Errorf("%w: %v is not an aggregation across series", ErrInvalidQuery, fn)
	case Rate:
		kind = Sum
	}
	q, _ := fn.Quantile()
	by = slices.Clone(by)
	slices.Sort(by)
	by = slices.Compact(by)

	type group struct {
		labels  Labels
		key     string
		members []int
	}
	var groups []*group
	index := map[string]*group{}
	var buf []byte
	for i, r := range results {
		for j := 1; j < len(r.Samples); j++ {
			if r.Samples[j].T <= r.Samples[j-1].T {
				return nil, fmt.Errorf("%w: series %v: a sample at %d after one at %d", ErrOutOfOrder, r.Labels, r.Samples[j].T, r.Samples[j-1].T)
			}
		}
		if len(r.Samples) == 0 {
			continue
		}
		// The group's key: its labels, each name and value after its
		// length (a value may hold any byte).
		buf = buf[:0]
		for _, l := range r.Labels {
			if _, ok := slices.BinarySearch(by, l.Name); ok && l.Value != "" {
				buf = binary.AppendUvarint(buf, uint64(len(l.Name)))
				buf = append(buf, l.Name...)
				buf = binary.AppendUvarint(buf, uint64(len(l.Value)))
				buf = append(buf, l.Value...)
			}
		}
		g := index[string(buf)]
		if g == nil {
			ls := Labels{}
			for _, l := range r.Labels {
				if _, ok := slices.BinarySearch(by, l.Name); ok && l.Value != "" {
					ls = append(ls, l)
				}
			}
			g = &group{labels: ls, key: ls.String()}
			index[string(buf)] = g
			groups = append(groups, g)
		}
		g.members = append(g.members, i)
	}
	slices.SortFunc(groups, func(a, b *group) int { return strings.Compare(a.key, b.key) })

	out := make([]SeriesResult, 0, len(groups))
	var accs []acc
	for _, g := range groups {
		times := groupTimes(results, g.members)

		if cap(accs) < len(times) {
			accs = make([]acc, len(times))
		}
		accs = accs[:len(times)]
		for i := range accs {
			accs[i].reset()
		}
		for _, m := range g.members {
			addSeries(accs, times, kind, results[m].Samples)
		}
		samples := make([]Sample, 0, len(times))
		for i, t := range times {
			if v, ok := accs[i].result(kind, q); ok {
				samples = append(samples, Sample{T: t, V: v})
			}
		}
		out = append(out, SeriesResult{Labels: g.labels, Samples: samples})
	}
	return out, nil
}

// groupTimes returns the union of the times of the series results[m] for
// m in members: the first series' times when every series has those (the
// windows of one grid, none empty), else their merge.
func groupTimes(results []SeriesResult, members []int) []int64 {
	first := results[members[0]].Samples
	same := true
	for _, m := range members[1:] {
		ss := results[m].Samples
		if len(ss) != len(first) {
			same = false
			break
		}
		for i := range ss {
			if ss[i].T != first[i].T {
				same = false
				break
			}
		}
		if !same {
			break
		}
	}
	times := func(ss []Sample) []int64 {
		ts := make([]int64, len(ss))
		for i, s := range ss {
			ts[i] = s.T
		}
		return ts
	}
	if same {
		return times(first)
	}
	lists := make([][]int64, len(members))
	for i, m := range members {
		lists[i] = times(results[m].Samples)
	}
	return unionTimes(lists)
}

// addSeries adds a series' samples to the windows accs of times (which
// holds every sample's time).
func addSeries(accs []acc, times []int64, kind Agg, ss []Sample) {
	if len(ss) == len(times) { // the series has every time: no seeking
		switch kind {
		case Sum:
			for i, s := range ss {
				a := &accs[i]
				a.n++
				a.v, a.c = kahanSumInc(s.V, a.v, a.c)
			}
			return
		case Count:
			for i := range ss {
				accs[i].n++
			}
			return
		}
		for i, s := range ss {
			accs[i].add(kind, s.T, s.V)
		}
		return
	}
	j := 0
	for _, s := range ss {
		j = seek(times, j, s.T)
		accs[j].add(kind, s.T, s.V)
	}
}

// unionTimes merges ascending lists into one ascending list without
// repeats, pairwise: O(n log k) for k lists of n times in all, and O(n)
// when the lists share their times, as windows of one grid do.
func unionTimes(lists [][]int64) []int64 {
	if len(lists) == 0 {
		return nil
	}
	for len(lists) > 1 {
		next := lists[:0:0]
		for i := 0; i+1 < len(lists); i += 2 {
			next = append(next, mergeTimes(lists[i], lists[i+1]))
		}
		if len(lists)%2 == 1 {
			next = append(next, lists[len(lists)-1])
		}
		lists = next
	}
	return lists[0]
}

// mergeTimes merges two ascending lists without repeats.
func mergeTimes(a, b []int64) []int64 {
	if slices.Equal(a, b) {
		return a
	}
	out := make([]int64, 0, max(len(a), len(b)))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			out = append(out, a[i])
			i++
		case b[j] < a[i]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// seek returns the index of t in times (which holds it) at or after j:
// first where the previous one left off, then by galloping.
func seek(times []int64, j int, t int64) int {
	if times[j] == t {
		return j
	}
	if j+1 < len(times) && times[j+1] == t {
		return j + 1
	}
	step := 1
	for j+step < len(times) && times[j+step] < t {
		j += step
		step *= 2
	}
	hi := min(j+step, len(times)-1)
	k, _ := slices.BinarySearch(times[j:hi+1], t)
	return j + k
}

// Package timeseries is the engine's native time series: series names
// and selectors (labels.go, matcher.go), the label postings (index.go),
// aggregation over time and across series (aggregate.go, group.go), and
// the sample encodings (package timeseries/chunk). See ARCHITECTURE.md,
// "Time series".
package timeseries

// Sample is one point of a series: T is in milliseconds since the Unix
// epoch, V the value, any float64 bit pattern (NaN payloads, ±Inf and -0
// are kept exactly by every encoding).
type Sample struct {
	T int64
	V float64
}

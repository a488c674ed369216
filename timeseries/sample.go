// Package timeseries is the engine's native time series: samples, their
// encodings (package timeseries/chunk) and, to come, series, labels and
// their storage on top of the LSM (ARCHITECTURE.md, "Time series: sample
// encodings").
package timeseries

// Sample is one point of a series: T is in milliseconds since the Unix
// epoch, V the value, any float64 bit pattern (NaN payloads, ±Inf and -0
// are kept exactly by every encoding).
type Sample struct {
	T int64
	V float64
}

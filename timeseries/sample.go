package timeseries

// Sample is one point of a series: T in milliseconds since the Unix
// epoch, V its value (any float64, NaN and ±Inf included, kept bit for bit).
type Sample struct {
	T int64
	V float64
}

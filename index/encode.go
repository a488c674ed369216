package index

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/plures/pluresdb/internal/errs"
)

// Kind is the type of an index's values; it decides how a field's bytes
// are parsed (ParseValue) and how values are encoded in keys. Part of the
// format.
type Kind uint8

// The kinds of index.
const (
	Bytes   Kind = 1 // any bytes, ordered bytewise
	String  Kind = 2 // valid UTF-8, ordered bytewise (code point order)
	Int64   Kind = 3 // signed 64-bit integers, decimal text in fields
	Float64 Kind = 4 // float64 without NaN, decimal text in fields; -0 == +0
	Time    Kind = 5 // instants as int64 Unix nanoseconds, RFC 3339 text in fields
)

func (k Kind) String() string {
	switch k {
	case Bytes:
		return "bytes"
	case String:
		return "string"
	case Int64:
		return "int64"
	case Float64:
		return "float64"
	case Time:
		return "time"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) valid() bool { return k >= Bytes && k <= Time }

// escaped reports whether values of the kind are escaped and terminated
// (variable width) rather than 8 bytes wide.
func (k Kind) escaped() bool { return k == Bytes || k == String }

// minTime and maxTime bound the instants a Time index holds: those whose
// Unix nanoseconds fit an int64 (years 1677 to 2262).
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// ParseValue turns the bytes of a document field (or what an extractor
// returned) into the encoded value the index stores, by the one convention
// of each kind:
//
//	Bytes    the bytes as they are
//	String   the bytes, which must be valid UTF-8
//	Int64    decimal text (strconv.ParseInt base 10: optional sign, digits)
//	Float64  decimal text (strconv.ParseFloat: "1.5", "-2e10", "Inf"); NaN refused
//	Time     RFC 3339 text with optional fractional seconds, within the
//	         int64 Unix nanoseconds (years 1677 to 2262)
//
// Binary forms are not guessed (an 8-byte field could be either): an
// application storing binary numbers indexes them through an extractor
// that formats them. A value that does not parse is an error wrapping
// ErrInvalid; the engine then leaves the document out of that index and
// counts it (Info.Unparsed), it does not fail the write.
func ParseValue(k Kind, raw []byte) ([]byte, error) {
	switch k {
	case Bytes:
		return appendTerminated(nil, raw), nil
	case String:
		if !utf8.Valid(raw) {
			return nil, fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalid, raw)
		}
		return appendTerminated(nil, raw), nil
	case Int64:
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %q is not a decimal int64", ErrInvalid, raw)
		}
		return appendInt(nil, n), nil
	case Float64:
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %q is not a decimal float64", ErrInvalid, raw)
		}
		return appendFloat(nil, f)
	case Time:
		t, err := time.Parse(time.RFC3339Nano, string(raw))
		if err != nil {
			return nil, fmt.Errorf("%w: %q is not an RFC 3339 time", ErrInvalid, raw)
		}
		return appendTime(nil, t)
	}
	return nil, fmt.Errorf("%w: %v", ErrInvalid, k)
}

// EncodeValue encodes a Go value for an index of kind k (what queries
// take): Bytes takes []byte or string; String a string or valid UTF-8
// []byte; Int64 any Go integer that fits; Float64 a float64 (not NaN) or
// an integer; Time a time.Time. Anything else is an error wrapping
// ErrInvalid.
func EncodeValue(k Kind, v any) ([]byte, error) {
	switch k {
	case Bytes, String:
		var b []byte
		switch v := v.(type) {
		case []byte:
			b = v
		case string:
			b = []byte(v)
		default:
			return nil, fmt.Errorf("%w: a %T for a %v index", ErrInvalid, v, k)
		}
		if k == String && !utf8.Valid(b) {
			return nil, fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalid, b)
		}
		return appendTerminated(nil, b), nil
	case Int64:
		n, ok := toInt64(v)
		if !ok {
			return nil, fmt.Errorf("%w: a %T (%v) for an int64 index", ErrInvalid, v, v)
		}
		return appendInt(nil, n), nil
	case Float64:
		if f, ok := v.(float64); ok {
			return appendFloat(nil, f)
		}
		if n, ok := toInt64(v); ok {
			return appendFloat(nil, float64(n))
		}
		return nil, fmt.Errorf("%w: a %T for a float64 index", ErrInvalid, v)
	case Time:
		t, ok := v.(time.Time)
		if !ok {
			return nil, fmt.Errorf("%w: a %T for a time index", ErrInvalid, v)
		}
		return appendTime(nil, t)
	}
	return nil, fmt.Errorf("%w: %v", ErrInvalid, k)
}

func toInt64(v any) (int64, bool) {
	switch v := v.(type) {
	case int:
		return int64(v), true
	case int8:
		return int64(v), true
	case int16:
		return int64(v), true
	case int32:
		return int64(v), true
	case int64:
		return v, true
	case uint8:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint32:
		return int64(v), true
	case uint:
		return int64(v), v <= math.MaxInt64
	case uint64:
		return int64(v), v <= math.MaxInt64
	}
	return 0, false
}

// DecodeValue decodes an encoded value of kind k, the whole of enc:
// []byte for Bytes, string for String, int64, float64, time.Time (UTC).
// It never panics; errors wrap errs.ErrCorruption.
func DecodeValue(k Kind, enc []byte) (any, error) {
	n, err := valueLen(k, enc)
	if err != nil {
		return nil, err
	}
	if n != len(enc) {
		return nil, errs.Corruptf(whatValue, int64(n), "%d bytes after a %v value", len(enc)-n, k)
	}
	switch k {
	case Bytes:
		return unescape(enc), nil
	case String:
		return string(unescape(enc)), nil
	case Int64:
		return int64(binary.BigEndian.Uint64(enc) ^ signBit), nil
	case Float64:
		return decodeFloat(binary.BigEndian.Uint64(enc)), nil
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(enc)^signBit)).UTC(), nil
}

const whatValue = "index value"

const signBit = 1 << 63

// appendTerminated appends v escaped (0x00 as 0x00 0xFF) and the
// terminator 0x00 0x01: a prefix-free encoding whose bytewise order is
// v's, whatever key bytes follow it.
func appendTerminated(dst, v []byte) []byte {
	dst = appendEscaped(dst, v)
	return append(dst, 0x00, 0x01)
}

// appendEscaped appends v with each 0x00 written 0x00 0xFF. Escaped v is
// a prefix of the encoding of every value having v as a prefix (Prefix
// queries).
func appendEscaped(dst, v []byte) []byte {
	for {
		i := bytes.IndexByte(v, 0)
		if i < 0 {
			return append(dst, v...)
		}
		dst = append(dst, v[:i]...)
		dst = append(dst, 0x00, 0xFF)
		v = v[i+1:]
	}
}

// unescape returns the value of a checked escaped encoding (terminator
// included).
func unescape(enc []byte) []byte {
	out := make([]byte, 0, len(enc)-2)
	for i := 0; i < len(enc)-2; i++ {
		out = append(out, enc[i])
		if enc[i] == 0 {
			i++
		}
	}
	return out
}

func appendInt(dst []byte, n int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(n)^signBit)
}

func appendTime(dst []byte, t time.Time) ([]byte, error) {
	if t.Before(minTime) || t.After(maxTime) {
		return nil, fmt.Errorf("%w: %v is outside int64 Unix nanoseconds", ErrInvalid, t)
	}
	return appendInt(dst, t.UnixNano()), nil
}

// appendFloat appends the order-preserving form of f: positive numbers
// with the sign bit set, negative ones with every bit flipped, so that
// unsigned byte order is numeric order (-Inf first, +Inf last). -0 is
// written as +0; NaN, which has no place in the order, is refused.
func appendFloat(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) {
		return nil, fmt.Errorf("%w: NaN cannot be indexed", ErrInvalid)
	}
	if f == 0 {
		f = 0 // -0 as +0
	}
	b := math.Float64bits(f)
	if b&signBit != 0 {
		b = ^b
	} else {
		b |= signBit
	}
	return binary.BigEndian.AppendUint64(dst, b), nil
}

func decodeFloat(u uint64) float64 {
	if u&signBit != 0 {
		return math.Float64frombits(u &^ signBit)
	}
	return math.Float64frombits(^u)
}

// negZero is the encoding -0 would have; appendFloat never writes it.
const negZero = ^uint64(signBit)

// valueLen returns the length of the encoded value of kind k at the start
// of b, checking it is one the encoder writes (an escape is 0x00 0xFF,
// the terminator 0x00 0x01, a string is UTF-8, a float is neither NaN
// nor -0). Errors wrap errs.ErrCorruption.
func valueLen(k Kind, b []byte) (int, error) {
	switch k {
	case Bytes, String:
		for i := 0; ; {
			j := bytes.IndexByte(b[i:], 0)
			if j < 0 || i+j+1 >= len(b) {
				return 0, errs.Corruptf(whatValue, int64(len(b)), "%v value without its terminator", k)
			}
			i += j
			switch b[i+1] {
			case 0xFF:
				i += 2
				continue
			case 0x01:
				if k == String && !utf8.Valid(unescape(b[:i+2])) {
					return 0, errs.Corruptf(whatValue, 0, "string value is not valid UTF-8")
				}
				return i + 2, nil
			}
			return 0, errs.Corruptf(whatValue, int64(i+1), "byte %#x after 0x00 is neither escape nor terminator", b[i+1])
		}
	case Int64, Time:
		if len(b) < 8 {
			return 0, errs.Corruptf(whatValue, int64(len(b)), "%v value truncated to %d bytes", k, len(b))
		}
		return 8, nil
	case Float64:
		if len(b) < 8 {
			return 0, errs.Corruptf(whatValue, int64(len(b)), "float64 value truncated to %d bytes", len(b))
		}
		u := binary.BigEndian.Uint64(b)
		if u == negZero {
			return 0, errs.Corruptf(whatValue, 0, "float64 -0, which is stored as +0")
		}
		if math.IsNaN(decodeFloat(u)) {
			return 0, errs.Corruptf(whatValue, 0, "float64 NaN")
		}
		return 8, nil
	}
	return 0, errs.Corruptf(whatValue, 0, "unknown index kind %d", uint8(k))
}

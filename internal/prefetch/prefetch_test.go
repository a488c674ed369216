package prefetch

import (
	"testing"
	"unsafe"
)

// Lines is a hint: any address, even one at the end of a buffer, is fine,
// and it changes nothing.
func TestLines(t *testing.T) {
	buf := make([]byte, 100)
	for i := range buf {
		buf[i] = byte(i)
	}
	for i := range buf {
		Lines(unsafe.Pointer(&buf[i]))
	}
	for i := range buf {
		if buf[i] != byte(i) {
			t.Fatalf("byte %d changed", i)
		}
	}
}

// Package human formats figures for the command-line tools' reports.
package human

import (
	"fmt"
	"io"
	"os"
)

// Bytes formats n with a binary unit and one decimal: 512 B, 1.5 KiB,
// 2.0 MiB, ... up to PiB.
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n)/unit, 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[i])
}

// IsTerminal reports whether w is a terminal (a character device), where
// a progress bar may be drawn.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

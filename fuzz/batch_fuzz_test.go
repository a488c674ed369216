package fuzz

import (
	"testing"

	"github.com/plures/pluresdb/internal/batchrepr"
	"github.com/plures/pluresdb/lsm"
)

// FuzzBatchDecode feeds arbitrary bytes to the batch decoder that WAL
// replay uses: it must return entries inside the input or an error, never
// panic, and never report more entries than the header claims.
func FuzzBatchDecode(f *testing.F) {
	valid := make([]byte, batchrepr.HeaderLen)
	valid = batchrepr.AppendEntry(valid, lsm.KindSet, 1, []byte("key"), []byte("value"))
	valid = batchrepr.AppendEntry(valid, lsm.KindDelete, 1, []byte("gone"), nil)
	valid = batchrepr.SetHeader(valid, 42, 2)
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := batchrepr.NewReader(data)
		if err != nil {
			return
		}
		var n uint32
		for {
			e, ok, err := r.Next()
			if err != nil || !ok {
				break
			}
			n++
			if n > r.Count {
				t.Fatalf("decoded %d entries, header says %d", n, r.Count)
			}
			if len(e.Key) == 0 || len(e.Key)+len(e.Value) > len(data) {
				t.Fatalf("entry of %d+%d bytes from %d input bytes", len(e.Key), len(e.Value), len(data))
			}
		}
	})
}

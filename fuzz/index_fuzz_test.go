package fuzz

import (
	"bytes"
	"errors"
	"testing"

	"github.com/plures/pluresdb/index"
	"github.com/plures/pluresdb/internal/errs"
)

// FuzzIndexDecoders feeds arbitrary bytes to the index namespace's
// decoders (values of every kind, keys, catalog values, forward values): each returns a
// result or an error wrapping ErrCorruption (ErrNewerFormat for a newer
// catalog), never panics; a value that decodes encodes back to the same
// bytes.
func FuzzIndexDecoders(f *testing.F) {
	for _, s := range [][]byte{{}, {0x80, 0, 0, 0, 0, 0, 0, 1}, {'a', 0, 0xff, 0, 1}, {'e', 0, 0, 0, 1, 'x', 0, 1, 0, 0, 0, 9},
		{'f', 'd', 'o', 'c'}, {0, 0, 0, 2, 0, 0, 0, 1, 0, 2, 0, 1, 0, 0, 0, 3, 0, 8, 0x80, 0, 0, 0, 0, 0, 0, 1}, {'i', 'n'}, {'N'}, {2, 0, 0, 0, 1, 3, 0, 1, 'n', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ok := func(err error) {
			if err != nil && !errors.Is(err, errs.ErrCorruption) && !errors.Is(err, errs.ErrNewerFormat) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
		}
		for _, k := range []index.Kind{index.Bytes, index.String, index.Int64, index.Float64, index.Time, 0, 9} {
			v, err := index.DecodeValue(k, data)
			ok(err)
			if err == nil {
				enc, err := index.EncodeValue(k, v)
				if err != nil || !bytes.Equal(enc, data) {
					t.Fatalf("%v: %x decodes to %v, which encodes to %x (%v)", k, data, v, enc, err)
				}
			}
		}
		key, err := index.ParseKey(data)
		ok(err)
		if err == nil && key.Value != nil {
			_, err := index.DecodeValue(index.Int64, key.Value)
			ok(err)
		}
		_, err = index.DecodeCatalog(data)
		ok(err)
		fwd, err := index.DecodeForward(data)
		ok(err)
		if err == nil {
			if enc := index.AppendForward(nil, fwd); !bytes.Equal(enc, data) {
				t.Fatalf("forward value %x decodes to %+v, which encodes to %x", data, fwd, enc)
			}
		}
	})
}

package batchrepr

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/plures/pluresdb/lsm"
)

func TestRoundTrip(t *testing.T) {
	for _, seq := range []lsm.SeqNum{1, 127, 128, 1 << 20, lsm.MaxSeqNum - 1000} {
		for _, n := range []int{1, 2, 130, 1000} {
			data := make([]byte, HeaderLen)
			var want []Entry
			for i := range n {
				kind := lsm.KindSet
				if i%3 == 1 {
					kind = lsm.KindDelete
				}
				key := fmt.Appendf(nil, "key-%d", i)
				var val []byte
				if kind != lsm.KindDelete {
					val = bytes.Repeat([]byte{byte(i)}, i%300)
				}
				data = AppendEntry(data, kind, 7, key, val)
				want = append(want, Entry{kind, append([]byte{7}, key...), val})
			}
			enc := SetHeader(data, seq, uint32(n))
			r, err := NewReader(enc)
			if err != nil {
				t.Fatalf("seq %d n %d: %v", seq, n, err)
			}
			if r.Seq != seq || int(r.Count) != n {
				t.Fatalf("header %d/%d, want %d/%d", r.Seq, r.Count, seq, n)
			}
			for i := 0; ; i++ {
				e, ok, err := r.Next()
				if err != nil {
					t.Fatalf("entry %d: %v", i, err)
				}
				if !ok {
					if i != n {
						t.Fatalf("%d entries, want %d", i, n)
					}
					break
				}
				w := want[i]
				if e.Kind != w.Kind || !bytes.Equal(e.Key, w.Key) || !bytes.Equal(e.Value, w.Value) {
					t.Fatalf("entry %d = %+v, want %+v", i, e, w)
				}
			}
		}
	}
}

func TestDamage(t *testing.T) {
	data := AppendEntry(make([]byte, HeaderLen), lsm.KindSet, 1, []byte("k"), []byte("value"))
	enc := SetHeader(data, 5, 1)
	for cut := range len(enc) {
		r, err := NewReader(enc[:cut])
		if err != nil {
			continue
		}
		for {
			_, ok, err := r.Next()
			if err != nil {
				break
			}
			if !ok {
				t.Fatalf("truncated to %d bytes decoded cleanly", cut)
			}
		}
	}
	wrongCount := SetHeader(append([]byte(nil), data...), 5, 2)
	r, _ := NewReader(wrongCount)
	r.Next()
	if _, _, err := r.Next(); err == nil {
		t.Fatal("count mismatch not reported")
	}
}

func TestSeqJump(t *testing.T) {
	rec := func(seq lsm.SeqNum, entries ...[]byte) []byte {
		data := make([]byte, HeaderLen)
		for _, e := range entries {
			data = append(data, e...)
		}
		return SetHeader(data, seq, uint32(len(entries)))
	}
	jump := func(kind lsm.Kind, key string, v []byte) []byte {
		return AppendEntry(nil, kind, key[0], []byte(key[1:]), v)
	}
	good := jump(lsm.KindSet, SeqJumpKey, AppendSeqJumpValue(nil, 7))
	if from, ok := SeqJump(rec(100, good)); !ok || from != 7 {
		t.Fatalf("SeqJump = %d, %v; want 7, true", from, ok)
	}
	for name, r := range map[string][]byte{
		"two entries":    rec(100, good, good),
		"delete":         rec(100, jump(lsm.KindDelete, SeqJumpKey, nil)),
		"other key":      rec(100, jump(lsm.KindSet, "\x00oplog/vv", AppendSeqJumpValue(nil, 7))),
		"from not below": rec(7, good),
		"from zero":      rec(100, jump(lsm.KindSet, SeqJumpKey, AppendSeqJumpValue(nil, 0))),
		"trailing byte":  rec(100, jump(lsm.KindSet, SeqJumpKey, append(AppendSeqJumpValue(nil, 7), 0))),
		"truncated":      rec(100, good)[:5],
	} {
		if _, ok := SeqJump(r); ok {
			t.Errorf("%s: taken for a sequence jump", name)
		}
	}
}

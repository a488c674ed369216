package tsdb

import (
	"testing"
	"time"
)

func TestRetentionPolicy(t *testing.T) {
	day := time.Duration(BucketMillis) * time.Millisecond
	r := Retention{Default: 3 * day, For: []PrefixRetention{{Prefix: "cpu", Keep: day}, {Prefix: `cpu{host="a"`, Keep: 0}}}
	if r.Keep(`mem`) != 3*day || r.Keep(`cpu{host="b"}`) != day || r.Keep(`cpu{host="a"}`) != 0 {
		t.Fatal("Keep: the longest prefix must win")
	}
	now := time.UnixMilli(100 * BucketMillis).Add(time.Hour)
	if h, ok := r.Horizon(now); !ok || h != 99*BucketMillis {
		t.Fatalf("Horizon = %d, %v; want the shortest retention's", h, ok)
	}
	if _, ok := r.HorizonAll(now); ok {
		t.Fatal("HorizonAll with a series kept for ever")
	}
	if h, ok := (Retention{Default: 3 * day, For: []PrefixRetention{{"cpu", day}}}).HorizonAll(now); !ok || h != 97*BucketMillis {
		t.Fatalf("HorizonAll = %d, %v; want the longest retention's", h, ok)
	}
	if !r.Expired(ChunkKey(nil, `cpu{host="b"}`, 98*BucketMillis), now) || r.Expired(ChunkKey(nil, `cpu{host="b"}`, 99*BucketMillis), now) {
		t.Fatal("Expired: a day before the horizon goes, the day holding it stays")
	}
	if r.Expired(ChunkKey(nil, `cpu{host="a"}`, 0), now) || r.Expired([]byte("cxx"), now) || r.Expired(SeriesKey(nil, "cpu"), now) {
		t.Fatal("Expired: kept for ever, unreadable keys and series keys stay")
	}
	if _, ok := (Retention{}).Horizon(now); ok {
		t.Fatal("no retention: nothing expires")
	}
}

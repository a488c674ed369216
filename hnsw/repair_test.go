package hnsw

import (
	"fmt"
	"sync"
	"testing"
)

// checkNoDeadLinks fails if a live node links to a node that is not live,
// or the entry point is not live.
func checkNoDeadLinks(t *testing.T, x *Index) {
	t.Helper()
	x.mu.RLock()
	defer x.mu.RUnlock()
	for id := uint32(0); id < x.count; id++ {
		if !x.isLive(id) {
			continue
		}
		for l := 0; l <= int(x.levels[id]); l++ {
			ll := x.linkList(id, l)
			for _, nb := range ll[1 : 1+ll[0]] {
				if !x.isLive(nb) {
					t.Fatalf("live node %d links at layer %d to %d in state %d", id, l, nb, x.state[nb])
				}
			}
		}
	}
	if ep, _, ok := x.loadEntry(); ok && !x.isLive(ep) {
		t.Fatalf("entry point %d is not live", ep)
	}
}

func TestRepair(t *testing.T) {
	r := testRand(t)
	n := size(t, 6000)
	points, queries := split(blobData(r, n+100, 32, 10, 8), 100)
	x, data := build(t, Config{Dim: 32, EfConstruction: 100, TombstoneRatio: -1}, points)
	for i := 0; i < n; i++ {
		if r.IntN(10) < 3 {
			if err := x.Delete(keyOf(i)); err != nil {
				t.Fatal(err)
			}
			delete(data, i)
		}
	}
	// Replace a few too: their old nodes are tombstones as well.
	for i := range data {
		if r.IntN(20) == 0 {
			v := blobData(r, 1, 32, 1, 4)[0]
			copy(v, points[(i+1)%n])
			if err := x.Add(keyOf(i), v); err != nil {
				t.Fatal(err)
			}
			data[i] = v
		}
	}
	dead := x.Tombstones()
	if dead < n/4 {
		t.Fatalf("%d tombstones after deleting 30%%", dead)
	}
	ids := map[int]uint32{}
	for i := range data {
		ids[i], _ = x.ID(keyOf(i))
	}
	// Searches run during the repair and return only live keys.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for j := 0; ; j++ {
			select {
			case <-stop:
				return
			default:
			}
			hits, err := x.Search(queries[j%len(queries)], 10, nil)
			if err != nil {
				t.Error(err)
				return
			}
			for _, h := range hits {
				var i int
				fmt.Sscanf(string(h.Key), "k%d", &i)
				if _, ok := data[i]; !ok {
					t.Errorf("search during repair returned deleted %q", h.Key)
					return
				}
			}
		}
	}()
	x.Repair()
	close(stop)
	wg.Wait()

	if x.Tombstones() != 0 || x.Len() != len(data) {
		t.Fatalf("after repair: %d tombstones, Len %d, want 0, %d", x.Tombstones(), x.Len(), len(data))
	}
	for i, id := range ids {
		if got, _ := x.ID(keyOf(i)); got != id {
			t.Fatalf("key %d moved from ID %d to %d", i, id, got)
		}
	}
	checkNoDeadLinks(t, x)
	rec := meanRecall(t, x, data, queries, 10, 100, nil, nil)
	t.Logf("recall@10 of the remaining 70%% after repair: %.4f", rec)
	if rec < 0.95 {
		t.Errorf("recall@10 %.4f < 0.95", rec)
	}

	// Freed IDs are reused, and the index stays searchable and encodable.
	freed, slots := len(x.free), x.count
	for i := n; i < n+freed/2; i++ {
		v := points[i-n]
		if err := x.Add(keyOf(i), v); err != nil {
			t.Fatal(err)
		}
		data[i] = v
	}
	if x.count != slots || len(x.free) != freed-freed/2 {
		t.Fatalf("%d slots, %d free after %d reuses of %d; want %d slots", x.count, len(x.free), freed/2, freed, slots)
	}
	rec = meanRecall(t, x, data, queries, 10, 100, nil, nil)
	t.Logf("recall@10 after reusing half the freed IDs: %.4f", rec)
	if rec < 0.95 {
		t.Errorf("recall@10 %.4f < 0.95", rec)
	}
	b, err := x.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	y, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(y.free) != len(x.free) || y.Len() != x.Len() {
		t.Fatalf("loaded: %d free, Len %d; want %d, %d", len(y.free), y.Len(), len(x.free), x.Len())
	}
	if b2, _ := y.MarshalBinary(); string(b2) != string(b) {
		t.Fatal("re-encoding with free slots differs")
	}
	lowest := y.free[len(y.free)-1]
	if err := y.Add([]byte("new"), queries[0]); err != nil {
		t.Fatal(err)
	}
	if id, _ := y.ID([]byte("new")); id != lowest {
		t.Fatalf("new key got ID %d, want the lowest free slot %d", id, lowest)
	}
}

// TestBackgroundRepair deletes past the threshold and waits for the
// background repair through Close.
func TestBackgroundRepair(t *testing.T) {
	r := testRand(t)
	n := size(t, 3000)
	x, data := build(t, Config{Dim: 16, EfConstruction: 64, TombstoneRatio: 0.2}, uniformData(r, n, 16))
	for i := 0; i < n/2; i++ {
		if err := x.Delete(keyOf(i)); err != nil {
			t.Fatal(err)
		}
		delete(data, i)
	}
	x.Close()
	// Repairs ran at 20% and (once that one ended) later; at most what
	// piled up after the last one remains.
	if d := x.Tombstones(); float64(d) > 0.2*float64(n) {
		t.Fatalf("%d tombstones after background repairs", d)
	}
	x.Repair()
	if x.Tombstones() != 0 {
		t.Fatalf("%d tombstones after Repair", x.Tombstones())
	}
	checkNoDeadLinks(t, x)
	rec := meanRecall(t, x, data, uniformData(r, 50, 16), 10, 100, nil, nil)
	t.Logf("recall@10 after deleting half: %.4f", rec)
	if rec < 0.95 {
		t.Errorf("recall@10 %.4f < 0.95", rec)
	}
	// Deleting everything empties the graph; it then starts afresh.
	for i := range data {
		if err := x.Delete(keyOf(i)); err != nil {
			t.Fatal(err)
		}
	}
	x.Repair()
	if _, _, ok := x.loadEntry(); ok || x.Len() != 0 || x.Tombstones() != 0 {
		t.Fatalf("all deleted: entry %v, Len %d, tombstones %d", ok, x.Len(), x.Tombstones())
	}
	v := uniformData(r, 1, 16)[0]
	if err := x.Add([]byte("again"), v); err != nil {
		t.Fatal(err)
	}
	if h, err := x.Search(v, 1, nil); err != nil || len(h) != 1 || string(h[0].Key) != "again" {
		t.Fatalf("search after emptying: %v %v", h, err)
	}
}

package hnsw

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
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

// graphFaults lists broken graph invariants (the first few): a link from a
// node that is not free to a free slot; an entry point that is free or not
// at its top layer; a live node that the entry point does not reach on
// layer 0 through live or dead links. With strong, as Repair leaves the
// graph: on every layer, every live node is reached from the entry point
// and reaches it back, through live nodes only.
func graphFaults(x *Index, strong bool) []string {
	x.writeMu.Lock() // no writer, no repair
	defer x.writeMu.Unlock()
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := x.count
	var faults []string
	fault := func(format string, args ...any) {
		if len(faults) < 5 {
			faults = append(faults, fmt.Sprintf(format, args...))
		}
	}
	links := func(id uint32, l int) []uint32 {
		ll := x.linkList(id, l)
		return ll[1 : 1+ll[0]]
	}
	ep, top, ok := x.loadEntry()
	if !ok {
		if x.Len() != 0 {
			fault("no entry point for %d live nodes", x.Len())
		}
		return faults
	}
	if x.state[ep] == stateFree || int(x.levels[ep]) != top {
		fault("entry point %d in state %d at level %d, top %d", ep, x.state[ep], x.levels[ep], top)
		return faults
	}
	for id := range n {
		if x.state[id] == stateFree {
			continue
		}
		for l := 0; l <= int(x.levels[id]); l++ {
			for _, nb := range links(id, l) {
				if nb >= n || x.state[nb] == stateFree {
					fault("node %d (state %d) links to free %d at layer %d", id, x.state[id], nb, l)
				}
			}
		}
	}
	if len(faults) > 0 {
		return faults
	}
	notFree := func(id uint32) bool { return x.state[id] != stateFree }
	isLive := func(id uint32) bool { return x.state[id] == stateLive }
	for id, seen := range reachable(x, ep, 0, notFree, false) {
		if !seen && isLive(uint32(id)) {
			fault("live node %d not reachable from entry point %d on layer 0", id, ep)
		}
	}
	if !strong {
		return faults
	}
	for l := 0; l <= top; l++ {
		fwd := reachable(x, ep, l, isLive, false)
		back := reachable(x, ep, l, isLive, true)
		for id := range n {
			if isLive(id) && int(x.levels[id]) >= l && !(fwd[id] && back[id]) {
				fault("live node %d: reached from entry point %d on layer %d %v, reaches it %v", id, ep, l, fwd[id], back[id])
			}
		}
	}
	return faults
}

// reachable marks the nodes that ep reaches on layer through nodes that
// pass ok, following the links or, with back, against them. The caller
// holds mu.
func reachable(x *Index, ep uint32, layer int, ok func(uint32) bool, back bool) []bool {
	n := x.count
	links := func(id uint32) []uint32 {
		ll := x.linkList(id, layer)
		return ll[1 : 1+ll[0]]
	}
	var rev [][]uint32
	if back {
		rev = make([][]uint32, n)
		for id := range n {
			if ok(id) && int(x.levels[id]) >= layer {
				for _, nb := range links(id) {
					rev[nb] = append(rev[nb], id)
				}
			}
		}
	}
	seen := make([]bool, n)
	seen[ep] = true
	queue := []uint32{ep}
	for i := 0; i < len(queue); i++ {
		nbs := links(queue[i])
		if back {
			nbs = rev[queue[i]]
		}
		for _, nb := range nbs {
			if !seen[nb] && ok(nb) {
				seen[nb] = true
				queue = append(queue, nb)
			}
		}
	}
	return seen
}

// missingKeys returns the live keys of want (the last few) that a search
// for their own vector with Ef 200 does not return first.
func missingKeys(t *testing.T, x *Index, want map[string][]float32) []string {
	t.Helper()
	var missing []string
	for k, v := range want {
		hits, err := x.Search(v, 1, &SearchOptions{Ef: 200})
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) != 1 || string(hits[0].Key) != k {
			missing = append(missing, k)
		}
	}
	slices.Sort(missing)
	return missing[max(0, len(missing)-5):]
}

// slidingOps applies ops random writes to x: keys from a pool of 400 are
// replaced (4 in 5) or deleted, and every new vector lies further along
// the first axis, so the graph dies region by region, leaving old
// survivors behind wide dead regions. It records the live keys in want and
// calls after (if not nil) after each write.
func slidingOps(t *testing.T, x *Index, r *rand.Rand, ops int, want map[string][]float32, after func(i int)) {
	t.Helper()
	for i := range ops {
		k := fmt.Sprintf("w%d-%03d", i%4, r.IntN(100))
		if r.IntN(5) == 0 {
			if err := x.Delete([]byte(k)); err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatal(err)
			}
			delete(want, k)
		} else {
			v := make([]float32, 8)
			for j := range v {
				v[j] = r.Float32()*2 - 1
			}
			v[0] = float32(i / 4)
			if err := x.Add([]byte(k), v); err != nil {
				t.Fatal(err)
			}
			want[k] = v
		}
		if after != nil {
			after(i)
		}
	}
}

// TestRepairKeepsKeysReachable is the engine's report: with background
// repairs at the default ratio, keys stayed live but no search found them,
// in some runs without concurrent searches and in every run with two
// (which starve the repair goroutine, so it runs late, on a graph more
// than half dead). Every live key must be found by a search for its own
// vector, and the graph keep its invariants.
func TestRepairKeepsKeysReachable(t *testing.T) {
	r := testRand(t)
	runs := 10
	if testing.Short() || raceEnabled {
		runs = 3
	}
	for run := range runs {
		for _, searchers := range []int{0, 2} {
			seed := r.Uint64()
			x, err := New(Config{Dim: 8, M: 8, EfConstruction: 32})
			if err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for s := range searchers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sr := rand.New(rand.NewPCG(seed, uint64(s)))
					q := make([]float32, 8)
					for {
						select {
						case <-stop:
							return
						default:
						}
						for j := range q {
							q[j] = sr.Float32()*2 - 1
						}
						q[0] = sr.Float32() * 400
						if _, err := x.Search(q, 5, nil); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			want := map[string][]float32{}
			slidingOps(t, x, rand.New(rand.NewPCG(seed, 2)), 1600, want, nil)
			close(stop)
			wg.Wait()
			x.Close() // waits for the background repair
			if f := graphFaults(x, false); len(f) > 0 {
				t.Errorf("run %d (%d searchers, seed %d): graph faults %v", run, searchers, seed, f)
			}
			if m := missingKeys(t, x, want); len(m) > 0 {
				t.Errorf("run %d (%d searchers, seed %d): keys not found: %v", run, searchers, seed, m)
			}
			x.Repair()
			if f := graphFaults(x, true); len(f) > 0 {
				t.Errorf("run %d (%d searchers, seed %d): after Repair: graph faults %v", run, searchers, seed, f)
			}
			if m := missingKeys(t, x, want); len(m) > 0 {
				t.Errorf("run %d (%d searchers, seed %d): after Repair: keys not found: %v", run, searchers, seed, m)
			}
		}
	}
}

// TestLateRepair is the same workload with repairs run explicitly, each
// once tombstones pass a share of the nodes drawn from 10% to 60%: the
// late background repairs of TestRepairKeepsKeysReachable, reproducibly.
func TestLateRepair(t *testing.T) {
	r := testRand(t)
	runs := 8
	if testing.Short() || raceEnabled {
		runs = 3
	}
	for run := range runs {
		x, err := New(Config{Dim: 8, M: 8, EfConstruction: 32, TombstoneRatio: -1})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]float32{}
		sr := rand.New(rand.NewPCG(r.Uint64(), 3))
		share, repairs, failed := 0.1, 0, false
		slidingOps(t, x, r, 1600, want, func(i int) {
			dead := x.Tombstones()
			if failed || dead < minRepair || float64(dead) < share*float64(dead+x.Len()) {
				return
			}
			x.Repair()
			repairs++
			if f := graphFaults(x, true); len(f) > 0 {
				t.Errorf("run %d, op %d, repair at %d%% tombstones: graph faults %v", run, i, int(100*share), f)
				failed = true
			}
			if m := missingKeys(t, x, want); len(m) > 0 {
				t.Errorf("run %d, op %d, repair at %d%% tombstones: keys not found: %v", run, i, int(100*share), m)
				failed = true
			}
			share = 0.1 + 0.5*sr.Float64()
		})
		t.Logf("run %d: %d repairs", run, repairs)
		if !failed && repairs < 2 {
			t.Errorf("run %d: only %d repairs", run, repairs)
		}
	}
}

// TestRepairReconnects cuts live nodes off by hand, as Repair may find
// them in a graph it damaged before or that heavy deletes left behind:
// one node (above layer 0) loses every in-link on every layer, and a
// group of neighbours loses every layer-0 link out of the group. Repair
// must link them back so that the graph is strongly connected on every
// layer, and searches find them.
func TestRepairReconnects(t *testing.T) {
	r := testRand(t)
	n := size(t, 2000)
	data := uniformData(r, n, 16)
	x, _ := build(t, Config{Dim: 16, M: 8, EfConstruction: 64, TombstoneRatio: -1}, data)
	ep, _, _ := x.loadEntry()
	orphan := -1
	for i := range n {
		if id, _ := x.ID(keyOf(i)); id != ep && x.levels[id] >= 1 {
			orphan = i
			break
		}
	}
	if orphan < 0 {
		t.Fatal("no node above layer 0")
	}
	orphanID, _ := x.ID(keyOf(orphan))
	others := map[int][]float32{}
	for i, v := range data {
		if i != orphan {
			others[i] = v
		}
	}
	truth := bruteForce(L2, others, data[(orphan+1)%n], 20, nil)
	group := map[uint32]bool{}
	for _, k := range truth {
		id, _ := x.ID([]byte(k))
		group[id] = true
	}
	if group[ep] {
		t.Skip("the group holds the entry point; try another -seed")
	}
	for id := range x.count {
		for l := 0; l <= int(x.levels[id]); l++ {
			ll := x.linkList(id, l)
			kept := slices.DeleteFunc(slices.Clone(ll[1:1+ll[0]]), func(nb uint32) bool {
				return nb == orphanID || l == 0 && group[id] && !group[nb]
			})
			storeLinks(ll, kept)
		}
	}
	if f := graphFaults(x, true); len(f) == 0 {
		t.Fatal("cutting links left the graph strongly connected")
	}
	// A tombstone, so that Repair has work.
	for i := range n {
		if id, _ := x.ID(keyOf(i)); i != orphan && !group[id] && id != ep {
			if err := x.Delete(keyOf(i)); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	x.Repair()
	if f := graphFaults(x, true); len(f) > 0 {
		t.Fatalf("after Repair: %v", f)
	}
	want := map[string][]float32{string(keyOf(orphan)): data[orphan]}
	for _, k := range truth {
		var i int
		fmt.Sscanf(k, "k%d", &i)
		want[k] = data[i]
	}
	if m := missingKeys(t, x, want); len(m) > 0 {
		t.Fatalf("after Repair, keys not found: %v", m)
	}
}

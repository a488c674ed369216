// Package hnsw is the in-memory HNSW vector index (Malkov & Yashunin,
// "Efficient and robust approximate nearest neighbor search using
// Hierarchical Navigable Small World graphs"): insert, replace, delete and
// k-nearest-neighbour search with filters, and the binary encoding of the
// graph that the engine persists. Persisting through the storage interface
// comes later; this package knows nothing of the engine.
//
// # Algorithm
//
// Each node gets a random top layer floor(-ln(U) * 1/ln(M)). Layer 0 keeps
// up to 2*M links per node, upper layers M. An insert descends greedily
// from the entry point to its own top layer, then on each layer below runs
// an EfConstruction-wide beam search, links to M neighbours chosen by the
// paper's heuristic (algorithm 4) and adds the reverse links, re-running
// the heuristic on a neighbour whose list is full. A search descends
// greedily to layer 0 and runs an ef-wide beam search there.
//
// Storage is flat, as in hnswlib: one []float32 for all vectors, one
// []uint32 of fixed-size layer-0 link arrays (count, then 2*M IDs), a
// small link array only for the few nodes above layer 0, and a visited
// set of epoch stamps reused across searches through a pool.
//
// Metrics: L2 is squared Euclidean; Cosine normalizes vectors (and
// queries) once and uses 1 - dot; Dot uses -dot. Smaller is nearer. For
// Dot the graph itself is built on L2 over vectors augmented with one
// coordinate sqrt(maxNorm² - |v|²) (the reduction of maximum inner product
// to nearest neighbour search): -dot is not a distance, and a graph built
// on it collapses onto a few long vectors. Searches rank by -dot, which is
// exactly L2 in the augmented space for a query augmented with 0. The
// augmentation is derived from the vectors, never stored. Maximum inner
// product search stays harder than L2 when the answers lie outside the
// query's cluster.
//
// Updates: Add on an existing key inserts a new node and tombstones the old
// one, so a search never sees a vector change under it; the key's internal
// ID changes. Delete tombstones a node: searches walk through tombstones
// (the graph stays connected) but never return them. Tombstones are kept
// until a rebuild.
//
// Filters: SearchOptions.Filter is a roaring bitmap of allowed internal
// IDs. A beam search only puts allowed, live nodes into its result heap but
// walks through every node. When the allowed set is small (at most
// max(2048, 16*ef) IDs) or under a tenth of the nodes, the search instead
// computes the distance to every allowed ID: exact, and cheaper than a
// beam that must wade through ef/selectivity nodes to fill up.
//
// # Concurrency
//
// See Index: one writer at a time (Add, Delete, MarshalBinary), any number
// of searches alongside it, link lists under striped RWMutexes.
//
// # Encoding
//
// MarshalBinary writes, all integers little-endian:
//
//	+------------------+-------------+-----+--------+-----+-----+-------+-------+-------+
//	| magic "PLRHNSW\0"| version u32 | dim | metric |  M  | efC | count | entry | top+1 |   header, 40 bytes
//	+------------------+-------------+-----+--------+-----+-----+-------+-------+-------+   (all u32; top+1 = 0: empty)
//	| node 0 | node 1 | ... | node count-1 |
//	+--------+--------+-----+--------------+
//	| xxhash64 of everything before, u64    |
//	+---------------------------------------+
//
//	node:
//	+----------+----------+-------------+-----+------------------+-----------------------------+
//	| flags u8 | level u8 | keyLen u32  | key | dim × f32 vector | layer 0..level: n u16, n × u32 IDs |
//	+----------+----------+-------------+-----+------------------+-----------------------------+
//	flags bit 0: deleted. Vectors are stored as indexed (normalized for Cosine).
//
// Unmarshal checks the checksum and every invariant a search depends on
// (link counts within capacity, link targets exist and reach the linked
// layer, entry point at the top layer, finite vectors, one live node per
// key), and loads the graph without recomputing it. It allocates only
// after bounding the node count by the input length; link arrays are sized
// for later inserts (2*M+1 words per node, plus M+1 per upper layer), so a
// hostile input can make it allocate up to a few hundred times its length,
// never more.
package hnsw

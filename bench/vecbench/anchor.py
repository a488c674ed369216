"""vecbench anchors: hnswlib and faiss HNSW on the files vecbench measured.

Written to a temporary directory and run by vecbench with Debian's
/usr/bin/python3 (apt-get install -y python3-hnswlib python3-faiss).
One process per build, so the resident-set growth it reports is that
build's alone. Reads the same .fvecs/.bvecs/.ivecs files, builds one
index (--engine) on --threads threads, then, unless --efs is empty, for
each ef searches one query at a time on one thread and reports recall@k,
queries per second and latency percentiles (the fastest of --runs
passes). Progress goes to stderr; one
JSON object goes to stdout:

  {"engine": str, "version": str, "threads": int, "build_s": float,
   "build_rate": float, "memory_bytes": int, "error": str,
   "searches": [{"ef": int, "recall": float, "qps": float,
                 "qps_batch": float, "p50_us": float, "p99_us": float}]}
"""

import argparse
import gc
import json
import os
import sys
import time

try:
    import numpy as np
except ImportError as e:  # numpy comes with both packages
    print(json.dumps({"error": "not installed (numpy: %s)" % e}))
    sys.exit(0)


def log(msg):
    print("anchor: " + msg, file=sys.stderr, flush=True)


def read_vecs(path, limit=0):
    """Reads .fvecs/.bvecs (as float32) or .ivecs (as int32)."""
    ext = os.path.splitext(path)[1].lower()
    comp = {".fvecs": np.float32, ".ivecs": np.int32, ".bvecs": np.uint8}[ext]
    raw = np.fromfile(path, dtype=np.uint8)
    dim = int(raw[:4].view(np.int32)[0])
    rec = 4 + dim * np.dtype(comp).itemsize
    if dim <= 0 or raw.size % rec != 0:
        raise ValueError("%s: not a TEXMEX file of dimension %d" % (path, dim))
    rows = raw.reshape(-1, rec)
    if limit > 0:
        rows = rows[:limit]
    out = np.ascontiguousarray(rows[:, 4:]).view(comp)
    if comp == np.uint8:
        out = out.astype(np.float32)
    return np.ascontiguousarray(out)


def rss_bytes():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def recall(found, truth, k):
    hit = 0
    for f, t in zip(found, truth):
        hit += len(set(int(x) for x in f[:k]) & set(int(x) for x in t[:k]))
    return hit / (k * len(truth))


def measure(search_one, search_batch, queries, truth, k, ef, runs):
    """One query at a time on one thread, runs passes, the fastest counts;
    also the fastest of runs batched calls."""
    nq = len(queries)
    singles = [queries[i:i + 1] for i in range(nq)]
    for q in singles[:min(nq, 100)]:  # warm up caches and code paths
        search_one(q, k)
    best = {"ef": ef, "qps": 0.0}
    lat = np.empty(nq)
    found = [None] * nq
    for _ in range(max(runs, 1)):
        t0 = time.perf_counter()
        for i, q in enumerate(singles):
            s = time.perf_counter()
            found[i] = search_one(q, k)
            lat[i] = time.perf_counter() - s
        qps = nq / (time.perf_counter() - t0)
        if qps > best["qps"]:
            best.update(qps=qps,
                        p50_us=float(np.percentile(lat, 50)) * 1e6,
                        p99_us=float(np.percentile(lat, 99)) * 1e6)
    best["recall"] = recall(found, truth, k)
    batch = float("inf")
    for _ in range(max(runs, 1)):
        t1 = time.perf_counter()
        search_batch(queries, k)
        batch = min(batch, time.perf_counter() - t1)
    best["qps_batch"] = nq / batch
    return best


def run_hnswlib(a, base, queries, truth):
    import hnswlib
    space = {"l2": "l2", "cosine": "cosine", "dot": "ip"}[a.metric]
    rss0 = rss_bytes()
    index = hnswlib.Index(space=space, dim=base.shape[1])
    index.init_index(max_elements=len(base), M=a.M, ef_construction=a.efc, random_seed=100)
    log("hnswlib: building %d vectors on %d thread(s)" % (len(base), a.threads))
    t0 = time.perf_counter()
    index.add_items(base, np.arange(len(base)), num_threads=a.threads)
    build = time.perf_counter() - t0
    r = {"engine": "hnswlib", "version": getattr(hnswlib, "__version__", ""), "threads": a.threads,
         "build_s": build, "build_rate": len(base) / build,
         "memory_bytes": max(rss_bytes() - rss0, 0), "searches": []}
    index.set_num_threads(1)
    for ef in a.efs:
        index.set_ef(max(ef, a.k))
        r["searches"].append(measure(
            lambda q, k: index.knn_query(q, k=k, num_threads=1)[0][0],
            lambda q, k: index.knn_query(q, k=k, num_threads=1),
            queries, truth, a.k, ef, a.runs))
        log("hnswlib: ef %d recall %.4f" % (ef, r["searches"][-1]["recall"]))
    return r


def run_faiss(a, base, queries, truth):
    import faiss
    metric = faiss.METRIC_L2 if a.metric == "l2" else faiss.METRIC_INNER_PRODUCT
    if a.metric == "cosine":
        base = base / np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-30)
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-30)
        base = np.ascontiguousarray(base, dtype=np.float32)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
    gc.collect()
    rss0 = rss_bytes()
    faiss.omp_set_num_threads(a.threads)
    index = faiss.IndexHNSWFlat(base.shape[1], a.M, metric)
    index.hnsw.efConstruction = a.efc
    log("faiss: building %d vectors on %d thread(s)" % (len(base), a.threads))
    t0 = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - t0
    r = {"engine": "faiss", "version": getattr(faiss, "__version__", ""), "threads": a.threads,
         "build_s": build, "build_rate": len(base) / build,
         "memory_bytes": max(rss_bytes() - rss0, 0), "searches": []}
    faiss.omp_set_num_threads(1)
    for ef in a.efs:
        index.hnsw.efSearch = max(ef, a.k)
        r["searches"].append(measure(
            lambda q, k: index.search(q, k)[1][0],
            lambda q, k: index.search(q, k),
            queries, truth, a.k, ef, a.runs))
        log("faiss: ef %d recall %.4f" % (ef, r["searches"][-1]["recall"]))
    return r


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--engine", choices=["hnswlib", "faiss"], required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--query", required=True)
    p.add_argument("--truth", required=True)
    p.add_argument("--nq", type=int, default=0)
    p.add_argument("--metric", choices=["l2", "cosine", "dot"], default="l2")
    p.add_argument("--M", type=int, default=16)
    p.add_argument("--efc", type=int, default=200)
    p.add_argument("--efs", default="10,20,40,80,120,200", help="empty: build only")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    a.efs = [int(x) for x in a.efs.split(",") if x]
    a.threads = max(a.threads, 1)

    res = {"engine": a.engine, "threads": a.threads}
    try:
        base = read_vecs(a.base)
        queries = read_vecs(a.query, a.nq)
        truth = read_vecs(a.truth, a.nq)
        gc.collect()
        res = {"hnswlib": run_hnswlib, "faiss": run_faiss}[a.engine](a, base, queries, truth)
    except ImportError as e:
        res["error"] = "not installed (%s)" % e
    except Exception as e:  # reported in the table; the other anchors still run
        res["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(res))


if __name__ == "__main__":
    main()

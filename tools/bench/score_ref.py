"""Reference scoring speeds for scripts/bench.sh: numpy and faiss IndexFlatIP
on the very matrix and user vectors that `recd bench model` wrote (raw
row-major float32), so the figures sit next to `recd bench score`'s.

    /usr/bin/python3 tools/bench/score_ref.py --matrix Y.f32 --queries Q.f32 \
        --factors 64 [--k 10] [--seconds 1] [--rounds 3]

One query = all items scored + top-k, like recd's; figures are medians
of per-call times. Everything runs on one
thread (BLAS and OpenMP): a recd worker scores on one thread, so this compares
work per core. Prints one JSON line; every figure is a list, one per round.
"""

import argparse
import json
import os
import statistics
import sys
import time

# Before numpy and faiss load their BLAS / OpenMP runtimes.
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

import faiss  # noqa: E402
import numpy as np  # noqa: E402


def timed_rounds(fn, seconds, rounds, per_call=1):
    """Calls fn(i) for i = 0, 1, ... in `rounds` rounds of about `seconds`;
    returns the median milliseconds of one call in each round, divided by
    per_call (the queries one call answers). Medians, as on the C side: the
    other work on the machine adds outliers that would move a mean."""
    fn(0)  # touches the mapped pages
    t = time.perf_counter()
    fn(1)
    one = max(time.perf_counter() - t, 1e-7)
    calls = max(5, min(100000, int(seconds / one)))
    out = []
    for _ in range(rounds):
        ms = []
        for i in range(calls):
            t = time.perf_counter()
            fn(i)
            ms.append((time.perf_counter() - t) * 1e3)
        out.append(statistics.median(ms) / per_call)
    return out


def loaded_blas():
    """File name of the BLAS library this process has mapped."""
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line}
    return sorted(os.path.basename(p) for p in libs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--matrix", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--factors", type=int, required=True)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    f, k = a.factors, a.k
    y = np.memmap(a.matrix, dtype=np.float32, mode="r").reshape(-1, f)
    q = np.fromfile(a.queries, dtype=np.float32).reshape(-1, f)
    n, nq = y.shape[0], q.shape[0]
    faiss.omp_set_num_threads(1)

    def top_k(s):
        idx = np.argpartition(s, -k)[-k:]
        return idx[np.argsort(-s[idx])]

    res = {"what": "reference", "items": n, "factors": f, "k": k}
    res["numpy_gemv_ms"] = timed_rounds(lambda i: y @ q[i % nq], a.seconds, a.rounds)
    res["numpy_query_ms"] = timed_rounds(lambda i: top_k(y @ q[i % nq]), a.seconds, a.rounds)
    res["blas"] = loaded_blas()

    t = time.perf_counter()
    index = faiss.IndexFlatIP(f)
    index.add(np.ascontiguousarray(y))
    res["faiss_add_s"] = time.perf_counter() - t
    res["faiss_query_ms"] = timed_rounds(
        lambda i: index.search(q[i % nq : i % nq + 1], k), a.seconds, a.rounds
    )
    for b in (32, 256):
        if nq < b:
            continue
        batches = [q[s : s + b] for s in range(0, nq - b + 1, b)]
        res[f"faiss_batch{b}_ms_per_query"] = timed_rounds(
            lambda i: index.search(batches[i % len(batches)], k), a.seconds, a.rounds, b
        )
    json.dump(res, sys.stdout, separators=(",", ":"))
    print()


if __name__ == "__main__":
    main()

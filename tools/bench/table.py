"""Prints scripts/bench.sh's results (JSON lines) as a compact table.

    python3 tools/bench/table.py results.jsonl

Figures measured in rounds show the median and, in brackets, the spread
(min-max) over the rounds. Ratios compare medians.
"""

import json
import statistics
import sys

# benfred/implicit's ALS on a random 100,000 x 20,000 matrix with 5,000,000
# nonzeros, 64 factors, 2 threads, on this kind of machine: a published
# figure, not measured by this benchmark (implicit is not installable here).
IMPLICIT_REF_S_PER_ITER = 0.86
IMPLICIT_REF_SHAPE = (100000, 20000, 5000000, 64, 2)


def med(v):
    return statistics.median(v)


def spread(v, fmt="{:.3g}"):
    """'median [min-max]', or the value alone for one round."""
    if len(v) == 1:
        return fmt.format(v[0])
    return f"{fmt.format(med(v))} [{fmt.format(min(v))}-{fmt.format(max(v))}]"


def mb(n):
    return f"{n / 1e6:.0f} MB" if n >= 1e7 else f"{n / 1e6:.1f} MB"


def scoring(score, ref, kernels, against):
    n, f, k, b = score["items"], score["factors"], score["k"], score["batch"]
    print(f"\nScoring {n:,} items x {f} factors ({mb(score['matrix_bytes'])} as float32, "
          f"{mb(score['panel_bytes'])} as recd's bfloat16 panels), top-{k}, one thread; "
          f"median ms per query, median [min-max] of {len(score['qps'])} rounds")
    rows = [
        ("recd (bf16 panels, exact float32 near the cut)", score["p50_ms"]),
        ("recd float32: score_items (sgemv) + topk_select", score["f32_ms"]),
    ]
    if ref:
        rows += [
            ("numpy Y @ q", ref["numpy_gemv_ms"]),
            (f"numpy Y @ q + argpartition top-{k}", ref["numpy_query_ms"]),
            ("faiss IndexFlatIP, 1 query", ref["faiss_query_ms"]),
        ]
    rows.append((f"recd batched: {b} queries per pass", score["batch_ms"]))
    for bb in (32, 256):
        if ref and f"faiss_batch{bb}_ms_per_query" in ref:
            rows.append((f"faiss IndexFlatIP, batches of {bb}", ref[f"faiss_batch{bb}_ms_per_query"]))
    recd_ms = med(score["p50_ms"])
    print(f"  {'':48} {'ms/query':>24} {'queries/s':>10} {'time / recd':>11}")
    for name, v in rows:
        print(f"  {name:48} {spread(v):>24} {1e3 / med(v):10.0f} {med(v) / recd_ms:11.2f}")
    print(f"  recd one query: p99 {med(score['p99_ms']):.3g} ms, {med(score['qps']):.0f} queries/s "
          f"over whole rounds; reads the panels at {score['panel_bytes'] / recd_ms / 1e6:.1f} GB/s")
    print(f"  this build: -march {score['march']}, scoring kernel {score['kernel']} (chosen on this CPU)")
    rows = [(f"kernel {r['kernel']}" + (" (chosen)" if r["chosen"] else ""), r) for r in kernels]
    if against:
        rows.append((f"other build: -march {against['march']}, kernel {against['kernel']}", against))
    for name, r in rows:
        ratio = med(r["p50_ms"]) / recd_ms
        print(f"  {name:48} {spread(r['p50_ms']):>24} batched {spread(r['batch_ms'])}, "
              f"x{ratio:.2f} of this build's")


def grpc(cat, runs, rss, ready, model, score):
    if not runs:
        return
    print(f"\ngRPC on 127.0.0.1, {cat['items']:,} items: recd serve --threads {rss['threads'] if rss else '?'}, "
          "h2load -t1 -c C -m1 (the client shares the cores); calls/s median [min-max] of "
          f"{max(len(v) for v in runs.values())} runs, other columns medians; "
          "cpu = the server's CPU microseconds per call")
    print(f"  {'C':>3} {'Recommend calls/s':>20} {'p50 ms':>7} {'p99 ms':>7} {'cpu':>5}  "
          f"{'Health calls/s':>20} {'p50 ms':>7} {'p99 ms':>7} {'cpu':>5}  {'Rec/Health':>10} {'by cpu':>6}")
    rec_cpu_all, health_cpu_all = [], []
    for c in sorted({c for _, c in runs}):
        rec = runs.get(("/recd.v1.Recommender/Recommend", c), [])
        hl = runs.get(("/grpc.health.v1.Health/Check", c), [])
        rec_cpu_all += [r["server_cpu_us_per_call"] for r in rec]
        health_cpu_all += [r["server_cpu_us_per_call"] for r in hl]

        def cols(v):
            if not v:
                return f"{'-':>20} {'-':>7} {'-':>7} {'-':>5}"
            return (f"{spread([r['calls_per_s'] for r in v], '{:.0f}'):>20} "
                    f"{med([r['p50_ms'] for r in v]):7.3g} {med([r['p99_ms'] for r in v]):7.3g} "
                    f"{med([r['server_cpu_us_per_call'] for r in v]):5.0f}")

        ratio = ""
        if rec and hl:
            calls = med([r["calls_per_s"] for r in rec]) / med([r["calls_per_s"] for r in hl])
            cpu = med([r["server_cpu_us_per_call"] for r in hl]) / med([r["server_cpu_us_per_call"] for r in rec])
            ratio = f"{calls:10.0%} {cpu:6.0%}"
        print(f"  {c:>3} {cols(rec)}  {cols(hl)}  {ratio}")
    if rec_cpu_all and health_cpu_all and score:
        extra = med(rec_cpu_all) - med(health_cpu_all)
        print(f"  Recommend costs the server {extra:.0f} us of CPU per call more than Health; "
              f"scoring alone (recd bench score) is {med(score['p50_ms']) * 1e3:.0f} us")
    bad = [r for v in runs.values() for r in v if r["failed"] or r["succeeded"] == 0]
    if bad:
        print(f"  WARNING: {len(bad)} runs had failed calls")
    rec_bytes = [r["data_bytes_per_call"] for (m, _), v in runs.items() for r in v if "Recommend" in m]
    if rec_bytes:
        print(f"  Recommend answers carry {med(rec_bytes):.0f} bytes of data per call "
              "(an error answer would carry none)")
    if rss and model:
        print(f"  server RSS {rss['VmRSS_kb'] / 1024:.0f} MiB (peak {rss['VmHWM_kb'] / 1024:.0f} MiB): "
              f"anonymous {rss['RssAnon_kb'] / 1024:.0f} MiB, file-backed {rss['RssFile_kb'] / 1024:.0f} MiB "
              f"of which model pages {rss['model_rss_kb'] / 1024:.0f} MiB; model data.mdb "
              f"{model['data_mdb_bytes'] / 2**20:.0f} MiB (item matrix "
              f"{model['items'] * model['factors'] * 4 / 2**20:.0f} MiB)")
    if ready:
        print(f"  start to first answer: {ready['first_answer_s']:.3f} s "
              f"(port open after {ready['port_file_s']:.3f} s; model in the page cache)")


def main():
    with open(sys.argv[1]) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    cats, cur = [], None
    for r in recs:
        if r["what"] == "host":
            print(f"recd bench on {r['cpu']}, {r['cpus']} CPUs, {r['mem_gib']} GiB; "
                  f"load average at start {r['load']}")
        elif r["what"] == "catalogue":
            cur = {"cat": r, "runs": {}}
            cats.append(cur)
        elif r["what"] == "grpc":
            cur["runs"].setdefault((r["method"], r["concurrency"]), []).append(r)
        elif r["what"] in ("model", "score", "reference", "ready", "rss", "score_against"):
            cur[r["what"]] = r
        elif r["what"] == "score_kernel":
            cur.setdefault("kernels", []).append(r)
    for c in cats:
        if "score" in c:
            scoring(c["score"], c.get("reference"), c.get("kernels", []), c.get("score_against"))
        grpc(c["cat"], c["runs"], c.get("rss"), c.get("ready"), c.get("model"), c.get("score"))
    for r in recs:
        if r["what"] == "train":
            s = r["s_per_iteration"]
            shape = (r["users"], r["items"], r["nnz"], r["factors"], r["threads"])
            print(f"\nALS, random {r['users']:,} x {r['items']:,} matrix, {r['nnz']:,} nonzeros, "
                  f"{r['factors']} factors, {r['threads']} threads, {r['cg_steps']} CG steps: "
                  f"{spread(s)} s/iteration (median [min-max] of {len(s)} iterations)")
            if shape == IMPLICIT_REF_SHAPE:
                print(f"  reference figure, NOT measured in this run: benfred/implicit "
                      f"{IMPLICIT_REF_S_PER_ITER} s/iteration on this shape and machine -> "
                      f"recd takes {med(s) / IMPLICIT_REF_S_PER_ITER:.2f}x its time")
        elif r["what"] == "items":
            if r["model"] == "als":
                print(f"\nitem-item families, random {r['users']:,} x {r['items']:,} matrix, "
                      f"{r['nnz']:,} nonzeros (scoring: 1 thread, one user's scores + top-k):")
            print(f"  {r['model']:<12} train {r['train_s']:8.2f} s  model {mb(r['bytes']):>10}  "
                  f"{r['query_ms']:.3f} ms/query ({r['vs_als']:.2f}x ALS)")
        elif r["what"] == "shop":
            s = r["s_per_iteration"]
            print(f"\nrecd gen {r['users']:,} users x {r['items']:,} items x {r['events']:,} events: "
                  f"{r['gen_s']:.1f} s, {mb(r['csv_bytes'])} CSV, peak RSS {r['gen_peak_kb'] / 1024:.0f} MiB")
            print(f"recd train --iterations {len(s)} --threads 2 ({r['nonzeros']:,} nonzeros): "
                  f"{spread(s)} s/iteration, {r['train_s']:.1f} s in all (import, train, publish), "
                  f"peak RSS {r['train_peak_kb'] / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

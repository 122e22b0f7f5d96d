"""The summary and verdict of scripts/soak.sh, from its samples.

    python3 tools/bench/soak_report.py --samples samples.csv --warmup S \
        --peak CALLS_PER_S --target CALLS_PER_S --h2load h2load.txt \
        --writer writer.json [--threshold-mib 4] [--threshold-pct 2] \
        [--svg plot.svg] [--json FILE]

samples.csv has one row every few seconds of the server's memory
(/proc/PID/status: VmRSS, RssAnon, RssFile in kB) and its call counters
(the Prometheus scrape), the last row taken after the load stopped. The
measured window is the rows from --warmup seconds on.

The verdict is on RssAnon, the server's own heap and stacks: a leak shows
there. RssFile is the mapped model and event-store pages; the event store's
file grows with every recorded event and its pages are read by fold-ins, so
RssFile may legitimately grow (and the kernel may drop those pages at any
time). "flat" means the anonymous memory grew less than the threshold over
the window, both by the least-squares line (slope x window) and from the
first to the last sample: --threshold-mib or --threshold-pct of the first
sample, whichever is larger.

Failed calls are every non-OK status the server counted from the first
sample (the start of the warm-up) to the last, except RESOURCE_EXHAUSTED,
its documented load shedding, which is reported on its own; plus h2load's
own failed / errored / timed-out requests, the writer's client-side errors
and events the server rejected. The calls that the timed peak run of h2load
cut off when its time was up (--peak-cut, checked by soak.sh) are printed
apart. Exit status 1 when the verdict is not flat or a call failed, else 0.
"""

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys


def fit(ts, ys):
    """Least-squares slope and intercept of ys over ts."""
    n = len(ts)
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0, my
    slope = sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var
    return slope, my - slope * mt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", required=True)
    ap.add_argument("--warmup", type=float, required=True)
    ap.add_argument("--peak", type=float, required=True)
    ap.add_argument("--target", type=float, required=True)
    ap.add_argument("--h2load", required=True, help="h2load's output of the soak run")
    ap.add_argument("--writer", required=True, help="soak_writer.py's JSON line")
    ap.add_argument("--peak-cut", type=int, default=0,
                    help="calls cut off when the timed peak run of h2load ended")
    ap.add_argument("--threshold-mib", type=float, default=4.0)
    ap.add_argument("--threshold-pct", type=float, default=2.0)
    ap.add_argument("--svg")
    ap.add_argument("--json")
    a = ap.parse_args()

    with open(a.samples, newline="") as f:
        rows = [{k: (v if k == "phase" else float(v)) for k, v in r.items()} for r in csv.DictReader(f)]
    window = [r for r in rows if r["phase"] == "window"]
    if len(window) < 3:
        sys.exit("soak_report: fewer than 3 samples in the measured window")
    last = rows[-1]
    t0, t1 = window[0]["t_s"], window[-1]["t_s"]
    span_s = t1 - t0

    def mem(col):
        ts = [r["t_s"] for r in window]
        ys = [r[col] / 1024 for r in window]  # MiB
        slope, icpt = fit(ts, ys)
        return {
            "start_mib": ys[0],
            "end_mib": ys[-1],
            "max_mib": max(ys),
            "min_mib": min(ys),
            "slope_mib_per_h": slope * 3600,
            "fit_growth_mib": slope * span_s,
            "fit_intercept_mib": icpt,
        }

    anon, file_, rss = mem("rss_anon_kb"), mem("rss_file_kb"), mem("vmrss_kb")
    limit = max(a.threshold_mib, a.threshold_pct / 100 * anon["start_mib"])
    growth = max(anon["fit_growth_mib"], anon["end_mib"] - anon["start_mib"])
    flat = growth < limit

    with open(a.h2load) as f:
        text = f.read()
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    req = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", text)
    if not m or not req:
        sys.stderr.write(text)
        sys.exit("soak_report: cannot read h2load's summary")
    h2_failed = int(req.group(4)) + int(req.group(5)) + int(req.group(6))
    with open(a.writer) as f:
        writer = json.loads(f.readline())

    rec_rate = (window[-1]["recommend_ok"] - window[0]["recommend_ok"]) / span_s
    all_rate = (window[-1]["calls_ok"] - window[0]["calls_ok"]) / span_s
    server_failed = int(last["calls_failed"] - rows[0]["calls_failed"])
    shed = int(last["calls_shed"] - rows[0]["calls_shed"])
    failed = server_failed + h2_failed + writer["failed"] + writer["events_rejected"]
    events = int(last["events_ingested"] - rows[0]["events_ingested"])

    out = {
        "what": "soak",
        "window_s": round(span_s, 1),
        "warmup_s": a.warmup,
        "samples": len(window),
        "peak_calls_per_s": a.peak,
        "target_calls_per_s": a.target,
        "recommend_ok_per_s": round(rec_rate, 1),
        "all_ok_per_s": round(all_rate, 1),
        "h2load_req_per_s": float(m.group(2)),
        "h2load_requests": int(req.group(1)),
        "failed": failed,
        "failed_server": server_failed,
        "failed_h2load": h2_failed,
        "failed_writer": writer["failed"],
        "events_rejected": writer["events_rejected"],
        "shed": shed,
        "peak_cut": a.peak_cut,
        "events_recorded": events,
        "fold_ins": int(last["fold_ins"] - rows[0]["fold_ins"]),
        "rss_anon": anon,
        "rss_file": file_,
        "vmrss": rss,
        "threshold_mib": round(limit, 2),
        "anon_growth_mib": round(growth, 2),
        "verdict": "flat" if flat else "GROWING",
    }
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")

    def line(name, d):
        return (f"  {name:<8} start {d['start_mib']:7.1f}  end {d['end_mib']:7.1f}  "
                f"max {d['max_mib']:7.1f}  slope {d['slope_mib_per_h']:+8.2f} MiB/h")

    print(f"soak: {span_s / 60:.1f} min measured after {a.warmup:.0f} s of warm-up, "
          f"{len(window)} samples")
    print(f"  Recommend  {rec_rate:,.0f} calls/s OK ({rec_rate / a.target:.0%} of the target "
          f"{a.target:,.0f} = {a.target / a.peak:.0%} of the measured peak {a.peak:,.0f}); "
          f"h2load {float(m.group(2)):,.0f} req/s over warm-up + window")
    print(f"  writes     {events:,} events recorded, {out['fold_ins']:,} fold-ins, "
          f"writer calls: {json.dumps(writer['calls'], separators=(',', ':'))}")
    print(f"  failed     {failed} (server non-OK statuses {server_failed}, h2load {h2_failed}, "
          f"writer {writer['failed']}, rejected events {writer['events_rejected']}); "
          f"shed (RESOURCE_EXHAUSTED) {shed}")
    if a.peak_cut:
        print(f"             (before: {a.peak_cut} calls cut off in flight when the timed peak run of "
              "h2load ended,\n             counted INVALID_ARGUMENT by the server for a client "
              "that had gone)")
    print("  memory, MiB (first / last / max sample of the window, least-squares slope):")
    print(line("RssAnon", anon))
    print(line("RssFile", file_))
    print(line("VmRSS", rss))
    print(f"  verdict    {out['verdict']}: RssAnon grew {growth:+.2f} MiB over the window "
          f"(max of the fitted line's rise and last - first), threshold {limit:.2f} MiB "
          f"(the larger of {a.threshold_mib:g} MiB and {a.threshold_pct:g}% of the start).")
    print("             The verdict is on anonymous memory (heap, stacks): a leak shows there.")
    print("             RssFile is the model's and the event store's mapped pages; the event")
    print("             store's file grows with every recorded event, so it may rise legitimately.")

    if a.svg and shutil.which("gnuplot"):
        warm = a.warmup / 60
        slope_s = anon["slope_mib_per_h"] / 3600
        icpt = anon["fit_intercept_mib"]
        script = f"""
set terminal svg size 960,420 font "sans,11" background rgb "white"
set output "{a.svg}"
set datafile separator ","
set title "recd serve under soak: {a.target:,.0f} Recommend calls/s target + writes"
set xlabel "minutes"
set ylabel "MiB"
set key outside right top vertical Left reverse
set yrange [0:*]
set arrow from {warm},graph 0 to {warm},graph 1 nohead dashtype 2 lc rgb "gray"
set label "end of warm-up" at {warm},graph 0.95 offset 0.5,0 textcolor rgb "gray"
plot "{a.samples}" every ::1 using ($1/60):($3/1024) with lines lw 2 title "VmRSS", \\
     "" every ::1 using ($1/60):($4/1024) with lines lw 2 title "RssAnon", \\
     "" every ::1 using ($1/60):($5/1024) with lines lw 2 title "RssFile", \\
     "" every ::1 using ($1/60):(strcol(2) eq "window" ? {icpt} + {slope_s} * $1 : NaN) \\
        with lines dashtype 2 lc rgb "black" \\
        title sprintf("RssAnon fit, %+.2f MiB/h", {anon['slope_mib_per_h']})
"""
        p = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            print("soak_report: gnuplot failed, no plot", file=sys.stderr)
    sys.exit(0 if flat and failed == 0 else 1)


if __name__ == "__main__":
    main()

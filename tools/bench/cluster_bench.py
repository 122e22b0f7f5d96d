"""The cluster benchmark of scripts/bench.sh (README, Running a cluster):
one nats-server, two `recd serve --bus` replicas, HAProxy with
deploy/haproxy.cfg and one plain `recd serve --events` as the reference, all
on loopback, started and stopped by PID. Prints durable RecordEvents
events/s through the bus against the local LMDB store (same client, same
run), the visibility lag on the other replica (p50/p99), Recommend calls/s
through HAProxy against one replica direct, and the time from a replica's
SIGKILL to HAProxy marking it DOWN. On 2 cores everything shares the CPUs,
so each rate comes with the CPU time the server side spent per call
(replicas, NATS, HAProxy; /proc/PID/stat, the Python client left out).
usage: cluster_bench.py MODEL_DIR WORK_DIR"""
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(SOURCE / "tests/integration"))
os.environ.setdefault("RECD_SOURCE_DIR", str(SOURCE))

import grpc  # noqa: E402
from test_cluster import HAPROXY, Nats, free_port  # noqa: E402
from conftest import Server  # noqa: E402


def stubs(tmp):
    from grpc_tools import protoc
    out = tmp / "stubs"
    out.mkdir(exist_ok=True)
    assert protoc.main(["protoc", f"-I{SOURCE / 'proto'}", f"--python_out={out}",
                        f"--grpc_python_out={out}", "recd/v1/recommender.proto"]) == 0
    sys.path.insert(0, str(out))
    import recd.v1.recommender_pb2 as rec
    import recd.v1.recommender_pb2_grpc as rec_grpc
    return rec, rec_grpc


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def metric(port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def cpu_ms(*pids):
    """User + system CPU milliseconds the processes have used so far."""
    total = 0
    for pid in pids:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total * TICK_MS


def per_call(fn, n, pids):
    """Runs fn(n); returns (calls/s, server-side CPU ms per call)."""
    c0 = cpu_ms(*pids)
    rate = fn(n)
    return rate, (cpu_ms(*pids) - c0) / n


def writes(stub, rec, n, tag):
    t0 = time.perf_counter()
    base = int(time.time())
    for i in range(n):
        ev = rec.Event(user_id=f"{tag}{i % 200}", item_id=f"i{i % 150}", type=rec.PURCHASE,
                       timestamp_unix=base - i)
        stub.RecordEvents(rec.RecordEventsRequest(events=[ev]), timeout=10)
    return n / (time.perf_counter() - t0)


def recommends(channel, rec, rec_grpc, n):
    stub = rec_grpc.RecommenderStub(channel)
    t0 = time.perf_counter()
    for i in range(n):
        stub.Recommend(rec.RecommendRequest(user_id=f"u{i % 400}", k=10), timeout=10,
                       metadata=[("x-recd-user", f"u{i % 400}")])
    return n / (time.perf_counter() - t0)


def main():
    model, tmp = Path(sys.argv[1]), Path(sys.argv[2])
    tmp.mkdir(parents=True, exist_ok=True)
    rec, rec_grpc = stubs(tmp)
    nats = Nats(tmp)
    mports = [free_port(), free_port()]
    reps = [Server(model, tmp, "--events", tmp / f"ev{i}", "--bus", nats.url, "--replica-id",
                   f"b{i}", "--http-listen", f"127.0.0.1:{mports[i]}") for i in range(2)]
    local = Server(model, tmp, "--events", tmp / "evlocal")
    bind = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, RECD_PROXY_BIND=bind, RECD_REPLICA1=reps[0].address,
               RECD_REPLICA2=reps[1].address, RECD_REPLICA3="127.0.0.1:1")
    hlog = open(tmp / "haproxy.log", "w+")
    hap = subprocess.Popen([HAPROXY, "-db", "-f", str(SOURCE / "deploy/haproxy.cfg")], env=env,
                           stdout=hlog, stderr=hlog)
    try:
        time.sleep(2)
        n = 1500
        rep_pids = [r.proc.pid for r in reps]
        s_local, c_local = per_call(
            lambda k: writes(rec_grpc.RecommenderStub(local.channel), rec, k, "L"), n,
            [local.proc.pid])
        s_bus, c_bus = per_call(
            lambda k: writes(rec_grpc.RecommenderStub(reps[0].channel), rec, k, "B"), n,
            rep_pids + [nats.proc.pid])
        print(f"RecordEvents, one event per call, one client: local LMDB {s_local:.0f} events/s, "
              f"through the bus {s_bus:.0f} events/s (ratio {s_bus / s_local:.2f}); server CPU "
              f"per call {c_local:.3f} ms local, {c_bus:.3f} ms bus (both replicas + NATS)")
        # Visibility: a write acknowledged by replica 0, until replica 1 applied it.
        stub0 = rec_grpc.RecommenderStub(reps[0].channel)
        lags = []
        for i in range(200):
            ev = rec.Event(user_id=f"V{i}", item_id="i1", type=rec.VIEW,
                           timestamp_unix=int(time.time()) - i)
            stub0.RecordEvents(rec.RecordEventsRequest(events=[ev]), timeout=10)
            t0 = time.perf_counter()
            want = metric(mports[0], "recd_bus_applied_sequence")
            while metric(mports[1], "recd_bus_applied_sequence") < want:
                time.sleep(0.0005)
            lags.append((time.perf_counter() - t0) * 1000)
        print(f"visibility on the other replica (incl. ~1 metrics scrape): p50 {pct(lags, 50):.2f} "
              f"ms, p99 {pct(lags, 99):.2f} ms")
        with grpc.insecure_channel(bind) as ch:
            r_hap, c_hap = per_call(lambda k: recommends(ch, rec, rec_grpc, k), 2000,
                                    rep_pids + [hap.pid])
        r_dir, c_dir = per_call(lambda k: recommends(reps[0].channel, rec, rec_grpc, k), 2000,
                                [reps[0].proc.pid])
        print(f"Recommend, one client, sequential: through HAProxy {r_hap:.0f} calls/s, direct "
              f"{r_dir:.0f} calls/s (ratio {r_hap / r_dir:.2f}; 2 cores shared by client, "
              f"HAProxy and replicas); server CPU per call {c_hap:.3f} ms through HAProxy "
              f"(replicas + HAProxy), {c_dir:.3f} ms direct")
        t0 = time.monotonic()
        reps[1].proc.kill()
        reps[1].proc.wait()
        while "recd/r2 is DOWN" not in open(tmp / "haproxy.log").read():
            time.sleep(0.01)
            if time.monotonic() - t0 > 30:
                break
        print(f"replica SIGKILL to HAProxy marking it DOWN: {time.monotonic() - t0:.2f} s "
              f"(inter 500ms, fall 2)")
    finally:
        hap.send_signal(signal.SIGTERM)
        hap.wait()
        for s in reps + [local]:
            if s.proc.poll() is None:
                s.stop()
        nats.stop()


if __name__ == "__main__":
    main()

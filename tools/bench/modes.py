"""What explain and mode TRENDING cost next to a plain Recommend, on
servers of this machine (a benchmark that prints figures, not a test).

    python3 tools/bench/modes.py --recd build/recd [--items 100000] [--repeat 100] [--rounds 5]

Publishes a random model (`recd bench model`: --items items x 64 factors,
10,000 members who bought 5 items each) and starts three `recd serve
--events` on it at once: a plain one, one with --trending-personal 0.5,
and one more of those with only 1% of the items trending. Records one
event on every item (views, carts and purchases in turn, so the whole
catalogue trends: TRENDING's worst case) and 20 fresh views for member
u1, then times each kind of call with `recd query --repeat N` (one call at
a time), every kind once per round so that other work on the machine
weighs on all of them alike, and prints the median over the rounds of
each one's p50 and p99 and the p50's ratio to a plain Recommend of member
u0. A restart of the first server shows what rebuilding the trending
counts from its store costs. Needs grpcio and grpc_tools (as
tests/integration/conftest.py).
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

HERE = Path(__file__).resolve().parent


def stubs(tmp):
    from grpc_tools import protoc
    src = HERE.parent.parent / "proto"
    tmp.mkdir()
    rc = protoc.main(["protoc", f"-I{src}", f"--python_out={tmp}", f"--grpc_python_out={tmp}",
                      str(src / "recd/v1/recommender.proto")])
    assert rc == 0
    sys.path.insert(0, str(tmp))
    from recd.v1 import recommender_pb2, recommender_pb2_grpc
    return recommender_pb2, recommender_pb2_grpc


class Serve:
    def __init__(self, recd, tmp, model, events, *extra):
        self.log = tmp / f"serve-{time.monotonic_ns()}.log"
        port = tmp / f"port-{time.monotonic_ns()}"
        started = time.monotonic()
        self.proc = subprocess.Popen([recd, "serve", "--model", model, "--events", events,
                                      "--listen", "127.0.0.1:0", "--port-file", port,
                                      "--threads", "2", *map(str, extra)],
                                     stderr=open(self.log, "w"))
        while not (port.exists() and port.read_text().endswith("\n")):
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.02)
        self.start_s = time.monotonic() - started
        self.address = f"127.0.0.1:{int(port.read_text())}"

    def rebuilt(self):
        """The trending rebuild's log fields (events, items, seconds)."""
        m = re.search(r"trending counts rebuilt\" events=(\d+) items=(\d+).*seconds=([0-9.]+)",
                      self.log.read_text())
        return (int(m.group(1)), int(m.group(2)), float(m.group(3))) if m else None

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def timed(recd, address, repeat, *args):
    p = subprocess.run([recd, "query", "--server", address, "--json", "--repeat", str(repeat),
                        "recommend", *args], capture_output=True, text=True, check=True)
    d = json.loads(p.stdout)
    return d["p50_ms"], d["p99_ms"]


def rounds(a, rows):
    """(label, (p50, p99)) of each (label, address, args) row: medians over
    a.rounds rounds, every row once per round."""
    seen = {label: [] for label, _, _ in rows}
    for _ in range(a.rounds):
        for label, address, args in rows:
            seen[label].append(timed(a.recd, address, a.repeat, *args))
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return [(label, (med([x[0] for x in seen[label]]), med([x[1] for x in seen[label]])))
            for label, _, _ in rows]


def fill(pb, address, n_items):
    """One event on each of items i0 .. i(n_items - 1), views, carts and
    purchases in turn; 20 fresh views for member u1."""
    pb, pb_grpc = pb
    stub = pb_grpc.RecommenderStub(grpc.insecure_channel(address))
    types = [pb.VIEW, pb.ADD_TO_CART, pb.PURCHASE]
    for start in range(0, n_items, 10000):
        stub.RecordEvents(pb.RecordEventsRequest(events=[
            pb.Event(user_id=f"shopper{i}", item_id=f"i{i}", type=types[i % 3])
            for i in range(start, min(n_items, start + 10000))]), timeout=60)
    stub.RecordEvents(pb.RecordEventsRequest(events=[
        pb.Event(user_id="u1", item_id=f"i{7 * j}", type=pb.VIEW) for j in range(20)]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recd", required=True)
    ap.add_argument("--items", type=int, default=100000)
    ap.add_argument("--repeat", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    few = max(1, a.items // 100)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pb = stubs(tmp / "py")
        subprocess.run([a.recd, "bench", "model", "--model", tmp / "m", "--items", str(a.items)],
                       check=True, capture_output=True)
        # Three servers at once, so that every row of a round meets the same
        # machine: all items trending; the same blended; a few blended.
        s = Serve(a.recd, tmp, tmp / "m", tmp / "ev")
        b = Serve(a.recd, tmp, tmp / "m", tmp / "ev-b", "--trending-personal", 0.5)
        f = Serve(a.recd, tmp, tmp / "m", tmp / "ev-f", "--trending-personal", 0.5)
        try:
            fill(pb, s.address, a.items)
            fill(pb, b.address, a.items)
            fill(pb, f.address, few)
            trend = ["u0", "--mode", "trending"]
            got = rounds(a, [
                ("plain (member u0)", s.address, ["u0"]),
                ("explain", s.address, ["u0", "--explain"]),
                ("fold-in (u1, 20 views)", s.address, ["u1"]),
                ("fold-in + explain", s.address, ["u1", "--explain"]),
                ("session (2-item cart)", s.address, ["", "--context", "i3", "--context", "i5"]),
                ("session + explain", s.address,
                 ["", "--context", "i3", "--context", "i5", "--explain"]),
                ("TRENDING", s.address, trend),
                ("TRENDING, diversity 0.3", s.address, trend + ["--diversity", "0.3"]),
                ("TRENDING, personal 0.5", b.address, trend),
                ("TRENDING, personal + explain", b.address, trend + ["--explain"]),
                (f"TRENDING, personal, {few} trend", f.address, trend),
            ])
        finally:
            for x in (s, b, f):
                x.stop()
        r = Serve(a.recd, tmp, tmp / "m", tmp / "ev")
        r.stop()
        rebuilt = r.rebuilt()
        base = got[0][1][0]
        print(f"{a.items} items x 64 factors, one call at a time, {a.rounds} rounds of "
              f"{a.repeat} calls each (medians over the rounds); all {a.items} items trend "
              f"unless said")
        for label, (p50, p99) in got:
            print(f"{label:32s} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  x{p50 / base:.2f} of plain")
        if rebuilt:
            print(f"restart: trending rebuilt from {rebuilt[0]} stored events ({rebuilt[1]} items) "
                  f"in {rebuilt[2]:.3f} s; the server answered {r.start_s:.2f} s after its start")


if __name__ == "__main__":
    main()

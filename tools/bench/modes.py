"""What explain and mode TRENDING cost next to a plain Recommend, on one
server of this machine (a benchmark that prints figures, not a test).

    python3 tools/bench/modes.py --recd build/recd [--items 100000] [--repeat 100] [--rounds 5]

Publishes a random model (`recd bench model`: --items items x 64 factors,
10,000 members who bought 5 items each), starts `recd serve --events`,
records one event on every item (views, carts and purchases in turn, so the
whole catalogue trends: TRENDING's worst case) and 20 fresh views for
member u1, then times each kind of call with `recd query --repeat N` (one
call at a time), every kind once per round so that other work on the
machine weighs on all of them alike, and prints the median over the
rounds of each one's p50 and p99 and the p50's ratio to a plain Recommend
of member u0. A second server on the same event store with
--trending-personal 0.5 times the blended list, and its start shows what
rebuilding the trending counts from the store costs. Needs grpcio and
grpc_tools (as tests/integration/conftest.py).
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


def rounds(a, address, rows):
    """(label, (p50, p99)) of each row: medians over a.rounds rounds."""
    seen = {label: [] for label, _ in rows}
    for _ in range(a.rounds):
        for label, args in rows:
            seen[label].append(timed(a.recd, address, a.repeat, *args))
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return [(label, (med([x[0] for x in seen[label]]), med([x[1] for x in seen[label]])))
            for label, _ in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recd", required=True)
    ap.add_argument("--items", type=int, default=100000)
    ap.add_argument("--repeat", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pb, pb_grpc = stubs(tmp / "py")
        subprocess.run([a.recd, "bench", "model", "--model", tmp / "m", "--items", str(a.items)],
                       check=True, capture_output=True)
        s = Serve(a.recd, tmp, tmp / "m", tmp / "ev")
        try:
            stub = pb_grpc.RecommenderStub(grpc.insecure_channel(s.address))
            types = [pb.VIEW, pb.ADD_TO_CART, pb.PURCHASE]
            for start in range(0, a.items, 10000):
                stub.RecordEvents(pb.RecordEventsRequest(events=[
                    pb.Event(user_id=f"shopper{i}", item_id=f"i{i}", type=types[i % 3])
                    for i in range(start, min(a.items, start + 10000))]), timeout=60)
            stub.RecordEvents(pb.RecordEventsRequest(events=[
                pb.Event(user_id="u1", item_id=f"i{7 * j}", type=pb.VIEW) for j in range(20)]))
            rows = [
                ("plain (member u0)", ["u0"]),
                ("explain", ["u0", "--explain"]),
                ("fold-in (u1, 20 views)", ["u1"]),
                ("fold-in + explain", ["u1", "--explain"]),
                ("session (2-item cart)", ["", "--context", "i3", "--context", "i5"]),
                ("session + explain", ["", "--context", "i3", "--context", "i5", "--explain"]),
                ("TRENDING", ["u0", "--mode", "trending"]),
                ("TRENDING, diversity 0.3", ["u0", "--mode", "trending", "--diversity", "0.3"]),
            ]
            got = rounds(a, s.address, rows)
        finally:
            s.stop()
        b = Serve(a.recd, tmp, tmp / "m", tmp / "ev", "--trending-personal", 0.5)
        try:
            got += rounds(a, b.address, [
                ("TRENDING, personal 0.5", ["u0", "--mode", "trending"]),
                ("TRENDING, personal + explain", ["u0", "--mode", "trending", "--explain"])])
            rebuilt, start_s = b.rebuilt(), b.start_s
        finally:
            b.stop()
        base = got[0][1][0]
        print(f"{a.items} items x 64 factors, one call at a time, {a.rounds} rounds of "
              f"{a.repeat} calls each (medians over the rounds)")
        for label, (p50, p99) in got:
            print(f"{label:30s} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  x{p50 / base:.2f} of plain")
        if rebuilt:
            print(f"restart: trending rebuilt from {rebuilt[0]} stored events ({rebuilt[1]} items) "
                  f"in {rebuilt[2]:.3f} s; the server answered {start_s:.2f} s after its start")


if __name__ == "__main__":
    main()

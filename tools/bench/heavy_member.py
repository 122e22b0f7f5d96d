"""Recommend for one heavy member against a plain one, on one server of
this machine: the cost of folding in whatever a client records.

    python3 tools/bench/heavy_member.py --recd build/recd [--events 200000]

Trains a small model (`recd gen` 400 members, 150 items), starts `recd
serve --events`, records --events view events for member "heavy" (in
RecordEvents calls of 10,000), then times Recommend for "heavy" and for a
member of the model with no fresh events with `recd query --repeat 200`, and prints the
median of each and their ratio. Needs grpcio and the generated stubs
(tests/integration/conftest.py builds them; this imports them the same way).
"""

import argparse
import os
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


def median_ms(recd, address, user):
    p = subprocess.run([recd, "query", "--server", address, "--repeat", "200", "recommend",
                        user], capture_output=True, text=True, check=True)
    m = re.search(r"p50[^0-9]*([0-9.]+) ?(ms|us|µs)", p.stdout + p.stderr)
    assert m, p.stdout + p.stderr
    return float(m.group(1)) / (1000 if m.group(2) != "ms" else 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recd", required=True)
    ap.add_argument("--events", type=int, default=200000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pb, pb_grpc = stubs(tmp / "py")
        run = lambda *args: subprocess.run([a.recd, *map(str, args)], check=True,  # noqa: E731
                                           capture_output=True)
        run("gen", "--users", 400, "--items", 150, "--events", 8000, "--seed", 7, "--output",
            tmp / "shop.csv")
        run("train", "--input", tmp / "shop.csv", "--model", tmp / "m", "--factors", 16,
            "--iterations", 8)
        port = tmp / "port"
        srv = subprocess.Popen([a.recd, "serve", "--model", tmp / "m", "--events", tmp / "ev",
                                "--listen", "127.0.0.1:0", "--port-file", port],
                               stderr=subprocess.DEVNULL)
        try:
            while not (port.exists() and port.read_text().endswith("\n")):
                time.sleep(0.05)
            address = f"127.0.0.1:{int(port.read_text())}"
            stub = pb_grpc.RecommenderStub(grpc.insecure_channel(address))
            rows = [line.split(",") for line in (tmp / "shop.csv").read_text().splitlines()[1:]]
            items = sorted({r[1] for r in rows})
            member = rows[0][0]  # a member of the model, with no fresh events
            left = a.events
            while left:
                n = min(left, 10000)
                ev = [pb.Event(user_id="heavy", item_id=items[i % len(items)], type=pb.VIEW)
                      for i in range(n)]
                stub.RecordEvents(pb.RecordEventsRequest(events=ev), timeout=60)
                left -= n
            heavy = median_ms(a.recd, address, "heavy")
            plain = median_ms(a.recd, address, member)
            print(f"Recommend p50: heavy member ({a.events} events) {heavy:.3f} ms, "
                  f"plain member {plain:.3f} ms, ratio {heavy / plain:.1f}")
        finally:
            srv.terminate()
            srv.wait()


if __name__ == "__main__":
    main()

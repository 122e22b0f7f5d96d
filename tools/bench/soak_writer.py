"""The write side of scripts/soak.sh: a steady, modest mix of RecordEvents,
fold-in Recommends and GetChurnScore calls from shoppers of a real shop, next
to h2load's read load. Prints one JSON line of counts by method and status.

    python3 tools/bench/soak_writer.py --port P --shop shop.csv --seconds S \
        [--rate 20] [--active 1000] [--new-share 0.05] [--churn] [--seed 1]

Each tick (--rate ticks per second, paced on a fixed schedule; ticks that
fall behind are not made up) picks a shopper: a known member from a set of
--active ones taken from the shop's CSV (so their events pile up, as a
returning shopper's do) or, with probability --new-share, a member never
seen before. It records 1-4 events for them (views mostly, some carts,
purchases and favorites, of items of the catalogue, stamped "now"), then
asks for their recommendations: the events are newer than the model's data,
so that call folds them in. With --churn, a known member's churn score too.
One channel, one call at a time, a 5 s deadline each. Stops after --seconds
or at SIGTERM / SIGINT. Stubs are generated from proto/ with grpc_tools at
start, as the integration tests do.
"""

import argparse
import csv
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc

SOURCE = Path(__file__).resolve().parents[2]


def stubs(tmp):
    from grpc_tools import protoc

    rc = protoc.main(["protoc", f"-I{SOURCE / 'proto'}", f"--python_out={tmp}",
                      f"--grpc_python_out={tmp}", "recd/v1/recommender.proto"])
    if rc != 0:
        sys.exit("soak_writer: protoc failed on recd/v1/recommender.proto")
    sys.path.insert(0, tmp)
    import importlib

    return (importlib.import_module("recd.v1.recommender_pb2"),
            importlib.import_module("recd.v1.recommender_pb2_grpc"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--shop", required=True, help="the shop's CSV (user_id,item_id,...)")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--rate", type=float, default=20.0, help="ticks per second")
    ap.add_argument("--active", type=int, default=1000, help="known members who come back")
    ap.add_argument("--new-share", type=float, default=0.05)
    ap.add_argument("--churn", action="store_true", help="also GetChurnScore")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    users, items = set(), set()
    with open(a.shop, newline="") as f:
        for row in csv.DictReader(f):
            users.add(row["user_id"])
            items.add(row["item_id"])
    rnd = random.Random(a.seed)
    users, items = sorted(users), sorted(items)
    active = rnd.sample(users, min(a.active, len(users)))
    types = [1] * 12 + [2] * 4 + [3] * 2 + [4] * 2  # view, cart, purchase, favorite

    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    codes = Counter()  # (method, status name) -> calls
    events_sent = rejected = ticks = new_members = 0
    with tempfile.TemporaryDirectory(prefix="recd-soak-stubs.") as tmp:
        pb, pb_grpc = stubs(tmp)
        # Loopback only: the address is fixed here, not taken from the caller.
        channel = grpc.insecure_channel(f"127.0.0.1:{a.port}")
        stub = pb_grpc.RecommenderStub(channel)

        def call(method, fn, request):
            try:
                r = fn(request, timeout=5)
                codes[(method, "OK")] += 1
                return r
            except grpc.RpcError as err:
                codes[(method, err.code().name)] += 1
                return None

        start = time.monotonic()
        period = 1.0 / a.rate
        next_tick = start
        while not stop and time.monotonic() - start < a.seconds:
            now = time.monotonic()
            if now < next_tick:
                time.sleep(min(next_tick - now, 0.2))
                continue
            next_tick = max(next_tick + period, now - period)
            ticks += 1
            if rnd.random() < a.new_share:
                new_members += 1
                user = f"soak-{os.getpid()}-{new_members}"
            else:
                user = rnd.choice(active)
            evs = [pb.Event(user_id=user, item_id=rnd.choice(items), type=rnd.choice(types),
                            quantity=1, price=round(rnd.uniform(1, 50), 2))
                   for _ in range(rnd.randint(1, 4))]
            events_sent += len(evs)
            r = call("RecordEvents", stub.RecordEvents, pb.RecordEventsRequest(events=evs))
            if r is not None:
                rejected += len(r.rejected)
            call("Recommend", stub.Recommend, pb.RecommendRequest(user_id=user, k=10))
            if a.churn:
                call("GetChurnScore", stub.GetChurnScore,
                     pb.ChurnScoreRequest(user_id=rnd.choice(active)))
        elapsed = time.monotonic() - start
        channel.close()

    by_method = {}
    for (method, code), n in sorted(codes.items()):
        by_method.setdefault(method, {})[code] = n
    json.dump(
        {
            "what": "soak_writer",
            "seconds": round(elapsed, 3),
            "ticks": ticks,
            "events_sent": events_sent,
            "events_rejected": rejected,
            "new_members": new_members,
            "calls": by_method,
            "failed": sum(n for (_, code), n in codes.items() if code != "OK"),
        },
        sys.stdout,
        separators=(",", ":"),
    )
    print()


if __name__ == "__main__":
    main()

"""UpsertItems, user_labels and NEW_ARRIVALS against a real server on a
small generated shop with two tastes (red and blue items) and catalogues
of items (colour as the category column, titles) and members (taste):

- products upserted over gRPC are served in the very next call by
  Recommend, NEW_ARRIVALS, SimilarItems, Rerank and StreamCampaignTargets,
  each to the shoppers of its colour, and still after a restart;
- bad items are rejected one by one with their index and reason, the good
  ones of the call stored;
- a visitor with labels only gets ATTRIBUTES, different from POPULAR and
  closer to their group's taste."""
import csv
import json
import random
import struct
import time

import grpc
import pytest

from conftest import Server, raw_call, run, train

N_ITEMS = 12
NOW = int(time.time())


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    d = tmp_path_factory.mktemp("upsert")
    rng = random.Random(17)
    rows = []
    for u in range(300):
        colour = "r" if u % 2 == 0 else "b"
        for n in range(8):
            c = colour if rng.random() < 0.9 else ("b" if colour == "r" else "r")
            # 200 days of history, ending ten days ago
            rows.append((f"u{u}", f"{c}{rng.randrange(N_ITEMS)}",
                         NOW - 86400 * 200 + rng.randrange(86400 * 190), 2.0))
    with open(d / "shop.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp", "price"])
        w.writerows(rows)
    with open(d / "items.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "colour", "title", "published"])
        for c, name in (("r", "red"), ("b", "blue")):
            for i in range(N_ITEMS):
                w.writerow([f"{c}{i}", name, f"The {name} thing number {i % 3}",
                            NOW - 86400 * 300])
    with open(d / "users.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "taste"])
        for u in range(300):
            w.writerow([f"u{u}", "red" if u % 2 == 0 else "blue"])
    return d


@pytest.fixture(scope="module")
def model(shop, tmp_path_factory):
    m = tmp_path_factory.mktemp("upsert-model") / "m"
    train(shop / "shop.csv", m, "--price-col", "price", "--items", shop / "items.csv",
          "--item-category-col", "colour", "--item-text-col", "title",
          "--item-time-col", "published", "--users", shop / "users.csv",
          "--user-label-cols", "taste", "--churn-horizon", "30d")
    return m


def fresh(pb, colour, n, **kw):
    name = "red" if colour == "r" else "blue"
    return pb.rec.Item(item_id=f"{colour}fresh{n}", categories=[name],
                       title=f"A {name} thing, new", published_unix=NOW - 3600, **kw)


def ids(reply):
    return [i.item_id for i in reply.items]


def test_upserted_items_are_served_at_once_and_after_restart(shop, model, tmp_path, pb):
    events = tmp_path / "events"
    s = Server(model, tmp_path, "--events", events)
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        r = stub.UpsertItems(pb.rec.UpsertItemsRequest(items=[
            fresh(pb, "r", 1), fresh(pb, "b", 1, price=9.5)]))
        assert r.accepted == 2 and not r.rejected and r.model_version, r
        check_served(stub, pb)
    finally:
        assert s.stop() == 0
    s = Server(model, tmp_path, "--events", events)
    try:
        check_served(pb.rec_grpc.RecommenderStub(s.channel), pb)
    finally:
        assert s.stop() == 0
    # The next training reads them: items of the model, with their
    # publication time, and a vector from their labels.
    m2 = tmp_path / "m2"
    p = train(shop / "shop.csv", m2, "--events", events)
    assert "2 items described to the server (UpsertItems)" in p.stderr, p.stderr
    info = json.loads(run("inspect", "--model", m2, "--item", "rfresh1", "--json").stdout)
    assert info["item"]["published_unix"] == NOW - 3600
    assert info["item"]["norm"] > 0


def check_served(stub, pb):
    mode = pb.rec.RecommendRequest.RecommendMode
    # NEW_ARRIVALS: only the two upserted items (the catalogue's are old),
    # the shopper's colour first.
    for user, first in (("u0", "rfresh1"), ("u1", "bfresh1")):
        r = stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=10,
                                                   mode=mode.Value("NEW_ARRIVALS")))
        assert ids(r) == [first, ({"rfresh1", "bfresh1"} - {first}).pop()], r
        assert r.strategy == pb.rec.NEW_ARRIVALS
    r = stub.Recommend(pb.rec.RecommendRequest(user_id="u0", k=10, new_days=1000,
                                               mode=mode.Value("NEW_ARRIVALS")))
    assert len(r.items) == 10, r  # the catalogue's items are within 1000 days
    # Category filter on an upserted category value, and exclusions.
    r = stub.Recommend(pb.rec.RecommendRequest(user_id="u1", k=10, category="blue",
                                               mode=mode.Value("NEW_ARRIVALS")))
    assert ids(r) == ["bfresh1"], r
    r = stub.Recommend(pb.rec.RecommendRequest(user_id="u0", k=10, exclude_item_ids=["rfresh1"],
                                               mode=mode.Value("NEW_ARRIVALS")))
    assert ids(r) == ["bfresh1"], r
    # The default list: the new red item ranks above the new blue one for
    # a red member (both compete with every item).
    r = stub.Recommend(pb.rec.RecommendRequest(user_id="u0", k=40))
    got = ids(r)
    assert "rfresh1" in got and ("bfresh1" not in got or
                                 got.index("rfresh1") < got.index("bfresh1")), got
    r = stub.Recommend(pb.rec.RecommendRequest(user_id="u0", k=40, category="red"))
    assert "rfresh1" in ids(r) and all(i.startswith("r") for i in ids(r)), r
    # SimilarItems of it: its colour; and it among the look-alikes of a red item.
    r = stub.SimilarItems(pb.rec.SimilarItemsRequest(item_id="rfresh1", k=6))
    assert sum(g.startswith("r") for g in ids(r)) >= 5, r
    r = stub.SimilarItems(pb.rec.SimilarItemsRequest(item_id="r0", k=30))
    assert "rfresh1" in ids(r), r
    # Rerank orders them by taste.
    r = stub.Rerank(pb.rec.RerankRequest(user_id="u0", candidate_item_ids=["bfresh1", "rfresh1"]))
    assert ids(r) == ["rfresh1", "bfresh1"], r
    r = stub.Rerank(pb.rec.RerankRequest(user_id="u1", candidate_item_ids=["rfresh1", "bfresh1"]))
    assert ids(r) == ["bfresh1", "rfresh1"], r
    # Who should hear about the new red product: red members first.
    targets = list(stub.StreamCampaignTargets(pb.rec.CampaignTargetsRequest(
        item_id="rfresh1", order=pb.rec.BY_AFFINITY, limit=20)))
    assert targets, "no campaign targets"
    red = sum(int(t.user_id[1:]) % 2 == 0 for t in targets)
    assert red >= 16, [t.user_id for t in targets]


def test_purchase_of_an_upserted_item_is_not_offered_back(model, tmp_path, pb):
    s = Server(model, tmp_path, "--events", tmp_path / "events")
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        stub.UpsertItems(pb.rec.UpsertItemsRequest(items=[fresh(pb, "r", 2)]))
        mode = pb.rec.RecommendRequest.RecommendMode.Value("NEW_ARRIVALS")
        assert ids(stub.Recommend(pb.rec.RecommendRequest(user_id="u2", k=5, mode=mode))) == \
            ["rfresh2"]
        stub.RecordEvents(pb.rec.RecordEventsRequest(events=[pb.rec.Event(
            user_id="u2", item_id="rfresh2", type=pb.rec.PURCHASE, timestamp_unix=NOW)]))
        assert ids(stub.Recommend(pb.rec.RecommendRequest(user_id="u2", k=5, mode=mode))) == []
        assert "rfresh2" not in ids(stub.Recommend(pb.rec.RecommendRequest(user_id="u2", k=50)))
    finally:
        assert s.stop() == 0


def encode_item(item_id: bytes, labels=(), price=None):
    """An Item message by hand: the Python protobuf library refuses to send
    the invalid UTF-8 that a hostile client can."""
    def field(num, data):
        return bytes([num << 3 | 2]) + varint(len(data)) + data
    out = field(1, item_id) + b"".join(field(3, label) for label in labels)
    if price is not None:
        out += bytes([5 << 3 | 1]) + struct.pack("<d", price)
    return out


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def test_bad_items_rejected_one_by_one(model, tmp_path, pb):
    s = Server(model, tmp_path, "--events", tmp_path / "events")
    try:
        items = [encode_item(b"ok1", [b"colour:red"]),
                 encode_item(b""),
                 encode_item(b"many", [b"l%d" % i for i in range(10000)]),
                 encode_item(b"bad\xff\xfe"),
                 encode_item(b"nan", price=float("nan")),
                 encode_item(b"ok2", price=3.0)]
        payload = b"".join(bytes([1 << 3 | 2]) + varint(len(i)) + i for i in items)
        reply = pb.rec.UpsertItemsResponse.FromString(
            raw_call(s.channel, "/recd.v1.Recommender/UpsertItems", payload))
        assert reply.accepted == 2, reply
        why = {r.index: r.reason for r in reply.rejected}
        assert sorted(why) == [1, 2, 3, 4], reply
        assert "empty" in why[1] and "labels" in why[2] and "UTF-8" in why[3]
        assert "price" in why[4]
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        # The good ones are servable: Rerank knows them (a score, not the tail).
        r = stub.Rerank(pb.rec.RerankRequest(user_id="u0", candidate_item_ids=["ok1", "ok2"]))
        assert {i.item_id for i in r.items} == {"ok1", "ok2"}
        with pytest.raises(grpc.RpcError) as e:
            stub.UpsertItems(pb.rec.UpsertItemsRequest(
                items=[pb.rec.Item(item_id=f"x{i}") for i in range(10001)]))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        assert s.stop() == 0


def test_upsert_needs_an_events_folder(model, tmp_path, pb):
    s = Server(model, tmp_path)
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        with pytest.raises(grpc.RpcError) as e:
            stub.UpsertItems(pb.rec.UpsertItemsRequest(items=[fresh(pb, "r", 1)]))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "--events" in e.value.details()
    finally:
        assert s.stop() == 0


def test_visitor_with_labels_gets_attributes(model, tmp_path, pb):
    s = Server(model, tmp_path)
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        popular = stub.Recommend(pb.rec.RecommendRequest(user_id="newcomer", k=10))
        assert popular.strategy == pb.rec.POPULAR
        for taste, colour in (("red", "r"), ("blue", "b")):
            r = stub.Recommend(pb.rec.RecommendRequest(user_id="newcomer", k=10,
                                                       user_labels=[f"taste:{taste}"]))
            assert r.strategy == pb.rec.ATTRIBUTES, r
            assert ids(r) != ids(popular)
            assert sum(i.startswith(colour) for i in ids(r)) >= 8, r
        # An anonymous visitor may come with labels alone.
        r = stub.Recommend(pb.rec.RecommendRequest(k=5, user_labels=["taste:blue"]))
        assert r.strategy == pb.rec.ATTRIBUTES
        # Unknown labels say nothing: POPULAR.
        r = stub.Recommend(pb.rec.RecommendRequest(user_id="newcomer", k=5,
                                                   user_labels=["planet:mars"]))
        assert r.strategy == pb.rec.POPULAR
        # A member with history keeps their own vector.
        r = stub.Recommend(pb.rec.RecommendRequest(user_id="u0", k=5, user_labels=["taste:blue"]))
        assert r.strategy == pb.rec.PERSONALIZED
    finally:
        assert s.stop() == 0


def test_query_upsert_and_labels(model, tmp_path):
    s = Server(model, tmp_path, "--events", tmp_path / "events")
    try:
        p = run("query", "--server", s.address, "upsert", "cli-red", "--category", "red",
                "--title", "A red thing", "--price", 4, "--time", NOW - 60)
        assert p.stdout.startswith("accepted 1 (model "), p.stdout
        p = run("query", "--server", s.address, "--json", "recommend", "", "--label",
                "taste:red", "--mode", "new-arrivals", "--new-days", 2)
        r = json.loads(p.stdout)
        assert r["strategy"] == "NEW_ARRIVALS" and [i["item_id"] for i in r["items"]] == \
            ["cli-red"], r
        p = run("query", "--server", s.address, "upsert", "", check=False)
        assert p.returncode == 0 and "rejected item 0: item_id is empty" in p.stdout, p.stdout
    finally:
        assert s.stop() == 0


def test_upsert_on_one_replica_is_served_by_another(model, tmp_path, pb):
    """In a cluster UpsertItems goes through the bus like every write: the
    replica that took it serves the item at once, the other within the lag
    bound, and both keep it in their own events folder."""
    from test_cluster import NATS, LAG_BOUND_S, Nats, Replica
    import os
    if not os.path.exists(NATS):
        pytest.skip("nats-server is not installed (scripts/setup.sh test)")
    nats = Nats(tmp_path)
    replicas = [Replica(model, tmp_path, f"r{i}", nats.url) for i in range(2)]
    try:
        a, b = (pb.rec_grpc.RecommenderStub(r.server.channel) for r in replicas)
        r = a.UpsertItems(pb.rec.UpsertItemsRequest(items=[fresh(pb, "r", 7)]))
        assert r.accepted == 1, r
        mode = pb.rec.RecommendRequest.RecommendMode.Value("NEW_ARRIVALS")
        ask = pb.rec.RecommendRequest(user_id="u0", k=5, mode=mode)
        assert ids(a.Recommend(ask)) == ["rfresh7"]
        deadline = time.monotonic() + LAG_BOUND_S
        while ids(b.Recommend(ask)) != ["rfresh7"]:
            assert time.monotonic() < deadline, "the other replica never served it"
            time.sleep(0.1)
        # A retried call is the same bus message: stored once, still one item.
        assert a.UpsertItems(pb.rec.UpsertItemsRequest(items=[fresh(pb, "r", 7)])).accepted == 1
        assert ids(b.Recommend(ask)) == ["rfresh7"]
    finally:
        rcs = [r.server.stop() for r in replicas]
        nats.stop()
    assert rcs == [0, 0]
    # Each replica's own store has it: a restarted one serves it without the bus.
    s = Server(model, tmp_path, "--events", replicas[1].events)
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        assert ids(stub.Recommend(ask)) == ["rfresh7"]
    finally:
        assert s.stop() == 0

"""Real-time personalization over gRPC: events recorded durably and folded in
at request time, anonymous carts, the storefront's item rules, diversity,
reranking, and retraining from the event store."""
import os
import signal
import time

import grpc
import pytest

from conftest import Server, run, train


@pytest.fixture(scope="module")
def live(model_dir, tmp_path_factory, pb):
    """A server with an event store, shared by the tests of this module."""
    tmp = tmp_path_factory.mktemp("live")
    s = Server(model_dir, tmp, "--events", tmp / "events")
    s.stub = pb.rec_grpc.RecommenderStub(s.channel)
    s.events_dir = tmp / "events"
    yield s
    assert s.stop() == 0


def rec(live, pb, **kw):
    kw.setdefault("k", 10)
    return live.stub.Recommend(pb.rec.RecommendRequest(**kw))


def record(live, pb, *events):
    return live.stub.RecordEvents(pb.rec.RecordEventsRequest(
        events=[pb.rec.Event(**e) for e in events]))


def ids(resp):
    return [i.item_id for i in resp.items]


def test_new_member_is_personalized_after_one_purchase(live, pb, shop):
    user = "new-member-1"
    assert rec(live, pb, user_id=user).strategy == pb.rec.POPULAR
    bought = shop.popularity.most_common(30)[-1][0]
    r = record(live, pb, dict(user_id=user, item_id=bought, type=pb.rec.PURCHASE))
    assert r.accepted == 1 and not r.rejected
    after = rec(live, pb, user_id=user)
    assert after.strategy == pb.rec.PERSONALIZED
    assert bought not in ids(after), "a purchase never comes back in the next response"
    # ... and the items come from the bought item's neighbourhood.
    near = set(ids(live.stub.SimilarItems(pb.rec.SimilarItemsRequest(item_id=bought, k=40))))
    assert len(near & set(ids(after))) >= 5, (ids(after), near)


def test_a_purchase_disappears_from_the_next_response(live, pb, shop):
    user = max(shop.bought, key=lambda u: len(shop.bought[u]))
    first = rec(live, pb, user_id=user)
    top = first.items[0].item_id
    record(live, pb, dict(user_id=user, item_id=top, type=pb.rec.PURCHASE, quantity=2,
                          price=9.99))
    after = rec(live, pb, user_id=user)
    assert after.strategy == pb.rec.PERSONALIZED
    assert top not in ids(after)
    assert top in ids(rec(live, pb, user_id=user, include_purchased=True, k=50))


def test_views_change_the_list_without_excluding(live, pb, shop):
    user = "viewer-1"
    seed = shop.popularity.most_common(50)[-1][0]
    record(live, pb, *[dict(user_id=user, item_id=seed, type=pb.rec.VIEW) for _ in range(3)])
    r = rec(live, pb, user_id=user, k=50)
    assert r.strategy == pb.rec.PERSONALIZED


def test_anonymous_cart_gets_session_results(live, pb, shop):
    cart = [i for i, _ in shop.popularity.most_common(12)[-2:]]
    r = rec(live, pb, context_item_ids=cart)
    assert r.strategy == pb.rec.SESSION
    assert len(r.items) == 10 and not set(cart) & set(ids(r))
    with pytest.raises(grpc.RpcError) as e:
        rec(live, pb)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A cart of items the model does not know yet falls back to the best sellers.
    assert rec(live, pb, context_item_ids=["brand-new-item"]).strategy == pb.rec.POPULAR


def test_out_of_stock_items_never_appear(live, pb, shop):
    user = max(shop.bought, key=lambda u: len(shop.bought[u]))
    gone = ids(rec(live, pb, user_id=user))[:2] + [shop.popularity.most_common(1)[0][0]]
    live.stub.SetItemAvailability(pb.rec.SetItemAvailabilityRequest(
        items=[pb.rec.ItemAvailability(item_id=i, available=False) for i in gone]))
    try:
        seen = set()
        seen |= set(ids(rec(live, pb, user_id=user, k=100)))
        seen |= set(ids(rec(live, pb, user_id="someone-unknown", k=100)))
        seen |= set(ids(rec(live, pb, context_item_ids=[gone[0]], k=100)))
        seen |= set(ids(live.stub.SimilarItems(pb.rec.SimilarItemsRequest(item_id=gone[0], k=100))))
        rr = live.stub.Rerank(pb.rec.RerankRequest(user_id=user, candidate_item_ids=gone))
        seen |= set(ids(rr))
        assert not seen & set(gone)
    finally:
        live.stub.SetItemAvailability(pb.rec.SetItemAvailabilityRequest(
            items=[pb.rec.ItemAvailability(item_id=i, available=True) for i in gone]))
    assert gone[0] in ids(rec(live, pb, user_id=user))


def test_boost_moves_an_item_up(live, pb, shop):
    user = sorted(shop.bought)[3]
    base = rec(live, pb, user_id=user, k=20)
    target = base.items[15].item_id
    live.stub.SetItemBoosts(pb.rec.SetItemBoostsRequest(
        boosts=[pb.rec.ItemBoost(item_id=target, multiplier=50)]))
    try:
        assert ids(rec(live, pb, user_id=user, k=20)).index(target) < 15
    finally:
        live.stub.SetItemBoosts(pb.rec.SetItemBoostsRequest(
            boosts=[pb.rec.ItemBoost(item_id=target, multiplier=1)]))
    with pytest.raises(grpc.RpcError) as e:
        live.stub.SetItemBoosts(pb.rec.SetItemBoostsRequest(
            boosts=[pb.rec.ItemBoost(item_id=target, multiplier=-1)]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_category_filter(live, pb, shop):
    user = max(shop.bought, key=lambda u: len(shop.bought[u]))
    category = shop.category[shop.popularity.most_common(1)[0][0]]
    r = rec(live, pb, user_id=user, category=category, k=5)
    assert r.items and all(shop.category[i] == category for i in ids(r))
    with pytest.raises(grpc.RpcError) as e:
        rec(live, pb, user_id=user, category="no-such-category")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_diversity_spreads_the_list(live, pb, shop):
    user = max(shop.bought, key=lambda u: len(shop.bought[u]))
    plain = rec(live, pb, user_id=user, k=10)
    diverse = rec(live, pb, user_id=user, k=10, diversity=0.9)
    cats = lambda r: len({shop.category[i] for i in ids(r)})
    assert cats(diverse) >= cats(plain)
    assert ids(diverse) != ids(plain)
    assert ids(diverse)[0] == ids(plain)[0], "the best item stays first"
    with pytest.raises(grpc.RpcError):
        rec(live, pb, user_id=user, diversity=1.5)


def test_rerank_orders_candidates_for_the_shopper(live, pb, shop):
    user = max(shop.bought, key=lambda u: len(shop.bought[u]))
    candidates = [i for i, _ in shop.popularity.most_common(15)]
    mixed = candidates[:5] + ["unknown-a"] + candidates[5:] + ["unknown-b", candidates[0]]
    r = live.stub.Rerank(pb.rec.RerankRequest(user_id=user, candidate_item_ids=mixed))
    assert r.strategy == pb.rec.PERSONALIZED
    assert ids(r)[-2:] == ["unknown-a", "unknown-b"]
    assert sorted(ids(r)[:-2]) == sorted(candidates)
    scores = [i.score for i in r.items[:-2]]
    assert scores == sorted(scores, reverse=True)
    # Rerank's scores are Recommend's for the items not bought (bought ones
    # are on the repurchase model's scale under include_purchased).
    full = {i.item_id: i.score for i in rec(live, pb, user_id=user, k=1000).items}
    assert any(i.item_id in full for i in r.items[:-2])
    assert all(abs(full[i.item_id] - i.score) < 1e-4 for i in r.items[:-2] if i.item_id in full)


def test_similar_items_for_a_cart(live, pb, shop):
    cart = [i for i, _ in shop.popularity.most_common(3)]
    r = live.stub.SimilarItems(pb.rec.SimilarItemsRequest(item_ids=cart + ["unknown"], k=10))
    assert len(r.items) == 10 and not set(cart) & set(ids(r))


def test_bad_events_are_rejected_one_by_one(live, pb, shop):
    now = int(time.time())
    good = dict(user_id="ev-user", item_id="i-new", type=pb.rec.ADD_TO_CART)
    events = [good,
              dict(good, user_id=""),
              dict(good, item_id=""),
              dict(good, type=0),
              dict(good, type=42),
              dict(good, quantity=1_000_000),
              dict(good, timestamp_unix=-5),
              dict(good, timestamp_unix=now + 10 * 86400),
              dict(good, price=-1.0),
              dict(good, price=float("nan")),
              dict(good, item_id="another-new-item", type=pb.rec.FAVORITE)]
    r = record(live, pb, *events)
    assert r.accepted == 2
    assert [x.index for x in r.rejected] == list(range(1, 10))
    reasons = " | ".join(x.reason for x in r.rejected)
    for words in ["user_id is empty", "item_id is empty", "unknown event type", "absurd",
                  "negative", "future", "price"]:
        assert words in reasons, reasons


def test_record_events_needs_an_event_store(stub, pb):
    with pytest.raises(grpc.RpcError) as e:
        stub.RecordEvents(pb.rec.RecordEventsRequest(events=[pb.rec.Event(
            user_id="u", item_id="i", type=pb.rec.VIEW)]))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_acknowledged_events_survive_kill_9(model_dir, tmp_path, pb):
    events_dir = tmp_path / "events"
    s = Server(model_dir, tmp_path, "--events", events_dir)
    stub = pb.rec_grpc.RecommenderStub(s.channel)
    acknowledged = 0
    for batch in range(20):
        r = stub.RecordEvents(pb.rec.RecordEventsRequest(events=[
            pb.rec.Event(user_id=f"k9-{batch}", item_id=f"item-{j}", type=pb.rec.PURCHASE)
            for j in range(50)]))
        acknowledged += r.accepted
    s.proc.send_signal(signal.SIGKILL)  # right after the last OK
    s.proc.wait()
    s.channel.close()
    s.log.close()
    out = run("events", "export", "--events", events_dir).stdout.splitlines()
    assert len(out) - 1 == acknowledged == 1000


def test_retraining_from_the_event_store_is_served_without_restart(shop, tmp_path, pb):
    model = tmp_path / "m"
    train(shop.path, model)
    s = Server(model, tmp_path, "--events", tmp_path / "ev", "--reload-interval", "0.2")
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        before = stub.GetModelInfo(pb.rec.GetModelInfoRequest())
        item = shop.popularity.most_common(1)[0][0]
        stub.RecordEvents(pb.rec.RecordEventsRequest(events=[
            pb.rec.Event(user_id="joined-today", item_id=item, type=pb.rec.PURCHASE),
            pb.rec.Event(user_id="joined-today", item_id="brand-new-item", type=pb.rec.PURCHASE)]))
        # The trainer reads the store while the server keeps writing to it.
        train(shop.path, model, "--events", tmp_path / "ev")
        deadline = time.monotonic() + 10
        while stub.GetModelInfo(pb.rec.GetModelInfoRequest()).model_version == before.model_version:
            assert time.monotonic() < deadline, "retrained model not picked up"
            time.sleep(0.1)
        after = stub.GetModelInfo(pb.rec.GetModelInfoRequest())
        assert after.users == before.users + 1 and after.items == before.items + 1
        r = stub.Recommend(pb.rec.RecommendRequest(user_id="joined-today", k=5))
        assert r.strategy == pb.rec.PERSONALIZED and r.model_version == after.model_version
        assert not {item, "brand-new-item"} & set(ids(r))
    finally:
        assert s.stop() == 0


def test_recd_query_drives_the_real_time_rpcs(live, shop):
    import json
    q = lambda *a, **kw: run("query", "--server", live.address, "--json", *a, **kw)
    item = shop.popularity.most_common(20)[-1][0]
    doc = json.loads(q("event", "cli-user", item, "purchase", "--quantity", 2, "--price",
                       3.5).stdout)
    assert doc == {"accepted": 1, "rejected": []}
    doc = json.loads(q("recommend", "cli-user", "-k", 5).stdout)
    assert doc["strategy"] == "PERSONALIZED" and item not in [i["item_id"] for i in doc["items"]]
    top = doc["items"][0]["item_id"]
    assert json.loads(q("available", top, "no").stdout) == {"updated": 1}
    assert top not in [i["item_id"] for i in json.loads(q("recommend", "cli-user").stdout)["items"]]
    assert json.loads(q("available", top, "yes").stdout) == {"updated": 1}
    assert json.loads(q("boost", top, "2.5").stdout) == {"updated": 1}
    assert json.loads(q("boost", top, "1").stdout) == {"updated": 1}
    doc = json.loads(q("recommend", "", "--context", item, "--diversity", "0.5").stdout)
    assert doc["strategy"] == "SESSION"
    doc = json.loads(q("rerank", "cli-user", top, "not-in-model", item).stdout)
    assert [i["item_id"] for i in doc["items"]][-1] == "not-in-model"
    doc = json.loads(q("similar", item, top, "-k", 3).stdout)
    assert len(doc["items"]) == 3
    p = q("event", "cli-user", item, "teleport", check=False)
    assert p.returncode == 2 and "teleport" in p.stderr
    p = q("event", "", item, "view")
    assert json.loads(p.stdout)["rejected"][0]["reason"] == "user_id is empty"
    lat = json.loads(q("--repeat", 20, "recommend", "cli-user").stdout)
    assert lat["calls"] == 20 and 0 < lat["p50_ms"] <= lat["p99_ms"]


def test_a_heavy_member_is_folded_in_from_their_newest_events_only(model_dir, tmp_path, pb,
                                                                   shop):
    """A member with more fresh events than one fold-in reads (1,000): their
    call reads the newest 1,000 only (counted in recd_fold_in_capped_total),
    and a purchase after thousands of views still changes the next answer."""
    import urllib.request
    s = Server(model_dir, tmp_path, "--events", tmp_path / "ev", "--metrics-listen",
               "127.0.0.1:0", "--metrics-port-file", tmp_path / "mport")
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        items = [item for item, _ in shop.popularity.most_common(20)]
        user = "heavy-member"
        views = [pb.rec.Event(user_id=user, item_id=items[i % 20], type=pb.rec.VIEW)
                 for i in range(2500)]
        assert stub.RecordEvents(pb.rec.RecordEventsRequest(events=views), timeout=30).accepted \
            == 2500
        first = stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=10), timeout=10)
        assert first.strategy == pb.rec.PERSONALIZED
        top = first.items[0].item_id
        stub.RecordEvents(pb.rec.RecordEventsRequest(events=[pb.rec.Event(
            user_id=user, item_id=top, type=pb.rec.PURCHASE)]), timeout=10)
        after = stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=10), timeout=10)
        assert top not in ids(after), "the newest event, a purchase, is folded in"
        port = int((tmp_path / "mport").read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert "recd_fold_in_capped_total 2" in text, [line for line in text.splitlines()
                                                        if "fold" in line]
    finally:
        assert s.stop() == 0

"""Recommend with explain over real gRPC (and its JSON over HTTP): each item
names the shopper's own items it is most owed to - a member's purchases,
events recorded since, an anonymous visitor's context - on an ALS model
and an item-item one; nothing for POPULAR or without explain; on ALS the
same items as benfred/implicit's explain (its algorithm in numpy) ranks
first."""
import json
import urllib.request

import pytest
from google.protobuf import json_format

from conftest import Server, train


@pytest.fixture(scope="module", params=["als", "ease"])
def esrv(request, shop, tmp_path_factory, pb):
    tmp = tmp_path_factory.mktemp("explain_" + request.param)
    extra = ["--algorithm", "ease", "--lambda", 50] if request.param == "ease" else []
    train(shop.path, tmp / "m", *extra)
    s = Server(tmp / "m", tmp, "--events", tmp / "ev", "--http-listen", "127.0.0.1:0",
               "--http-port-file", tmp / "hport")
    s.http = f"http://127.0.0.1:{int((tmp / 'hport').read_text())}"
    s.stub = pb.rec_grpc.RecommenderStub(s.channel)
    yield s
    out = s.output()
    assert s.stop() == 0, out


def members(shop, n):
    """n members with a few purchases each, the same every run."""
    return sorted(u for u, b in shop.bought.items() if len(b) >= 5)[:n]


def test_members_get_their_own_items(esrv, shop, pb):
    explained = 0
    for user in members(shop, 20):
        r = esrv.stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=10, explain=True))
        assert r.strategy == pb.rec.PERSONALIZED
        for it in r.items:
            assert len(it.because_item_ids) <= 3
            assert len(set(it.because_item_ids)) == len(it.because_item_ids)
            assert set(it.because_item_ids) <= shop.bought[user], (user, it)
            assert it.item_id not in it.because_item_ids  # bought items are not listed
        explained += sum(1 for it in r.items if it.because_item_ids)
        # The same list as without explain, which names nothing.
        plain = esrv.stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=10))
        assert [i.item_id for i in plain.items] == [i.item_id for i in r.items]
        assert all(not i.because_item_ids for i in plain.items)
    # Almost every recommended item is owed to something the member bought.
    assert explained >= 0.9 * 20 * 10


def test_a_recorded_event_and_the_context_explain(esrv, shop, pb):
    user = members(shop, 1)[0]
    fresh = next(i for i in sorted(shop.items) if i not in shop.bought[user])
    esrv.stub.RecordEvents(pb.rec.RecordEventsRequest(events=[
        pb.rec.Event(user_id=user, item_id=fresh, type=pb.rec.PURCHASE, quantity=5)]))
    r = esrv.stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=20, explain=True))
    named = {b for it in r.items for b in it.because_item_ids}
    assert named <= shop.bought[user] | {fresh}
    assert fresh in named  # five fresh purchases weigh in
    # An anonymous visitor: only the cart explains.
    cart = sorted(shop.bought[user])[:2]
    r = esrv.stub.Recommend(pb.rec.RecommendRequest(context_item_ids=cart, k=10, explain=True))
    assert r.strategy == pb.rec.SESSION
    assert all(set(it.because_item_ids) <= set(cart) for it in r.items)
    assert any(it.because_item_ids for it in r.items)


def test_popular_names_nothing(esrv, pb):
    r = esrv.stub.Recommend(pb.rec.RecommendRequest(user_id="nobody-at-all", k=10, explain=True))
    assert r.strategy == pb.rec.POPULAR and len(r.items) == 10
    assert all(not it.because_item_ids for it in r.items)


def test_json_carries_because_item_ids(esrv, shop, pb):
    user = members(shop, 2)[1]
    want = json_format.MessageToDict(
        esrv.stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=5, explain=True)))
    req = urllib.request.Request(esrv.http + "/v1/Recommend",
                                 data=json.dumps({"userId": user, "k": 5,
                                                  "explain": True}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        got = json.loads(resp.read())
    assert any(it.get("becauseItemIds") for it in got["items"])
    for k in ("requestId",):  # differs per call
        got.pop(k), want.pop(k)
    assert got == want


def implicit_explain(Y, lam, conf, item, n=3):
    """benfred/implicit's AlternatingLeastSquares.explain (cpu/als.py), in
    numpy: A = YtY + lam I + sum (c_j - 1) y_j y_j^T, w = A^-1 y_item, item
    j contributes c_j w . y_j; the top n. conf maps item index -> c_j, the
    confidence implicit reads from user_items (recd's 1 + alpha r_j)."""
    import numpy as np
    A = Y.T @ Y + lam * np.eye(Y.shape[1])
    for j, c in conf.items():
        A += (c - 1) * np.outer(Y[j], Y[j])
    w = np.linalg.solve(A, Y[item])
    contrib = sorted(((c * w @ Y[j], j) for j, c in conf.items()), reverse=True)
    return contrib[:n]


def test_agrees_with_implicits_explain(shop, tmp_path, pb):
    """On an ALS model, a visitor's cart (context items: each a cart event of
    weight 0.3, so its confidences are known exactly) gets, for every item,
    the items that implicit's explain ranks first (those that add)."""
    import numpy as np
    from conftest import run
    m = tmp_path / "m"
    train(shop.path, m)
    items = sorted(shop.items)
    index = {i: k for k, i in enumerate(items)}
    info = json.loads(run("inspect", "--model", m, "--json").stdout)
    Y = np.array([json.loads(run("inspect", "--model", m, "--json", "--item", i).stdout)
                  ["item"]["factors"] for i in items], dtype=np.float64)
    s = Server(m, tmp_path)
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        same = total = 0
        for u in sorted(shop.bought)[:30]:
            cart = sorted(shop.bought[u])[:4]
            lam = info["regularization"] + info.get("frequency_regularization", 0) * len(cart)
            conf = {index[i]: 1 + info["alpha"] * 0.3 for i in cart}
            r = stub.Recommend(pb.rec.RecommendRequest(context_item_ids=cart, k=10, explain=True))
            for it in r.items:
                want = [items[j] for c, j in implicit_explain(Y, lam, conf, index[it.item_id])
                        if c > 0]
                same += list(it.because_item_ids) == want
                total += 1
        assert total >= 250 and same / total >= 0.98, (same, total)
    finally:
        assert s.stop() == 0

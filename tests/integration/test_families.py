"""The item-item model families (`recd train --algorithm ease|knn|rp3beta`,
and a blend with the ALS factors) served over gRPC through the same paths
as ALS: scores checked against numpy's EASE, exclusions, the storefront's
rules, category, fold-in of a recorded purchase (exact for an item-item
model: it adds the item's row), an anonymous cart, Rerank, SimilarItems,
batching, and hot swap between families."""
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import Server, run, train

LAMBDA = 20.0
FAMILIES = {
    "ease": ["--algorithm", "ease", "--lambda", LAMBDA],
    "knn": ["--algorithm", "knn", "--neighbors", 30],
    "rp3beta": ["--algorithm", "rp3beta", "--neighbors", 30],
    "ease+als": ["--algorithm", "ease", "--lambda", LAMBDA, "--blend-with", "als",
                 "--blend-share", 0.3],
}


@pytest.fixture(scope="module")
def servers(shop, tmp_path_factory, pb):
    tmp = tmp_path_factory.mktemp("families")
    out = {}
    for name, extra in FAMILIES.items():
        train(shop.path, tmp / name, *extra)
        s = Server(tmp / name, tmp, "--events", tmp / f"events-{name}")
        s.stub = pb.rec_grpc.RecommenderStub(s.channel)
        out[name] = s
    yield out
    for s in out.values():
        assert s.stop() == 0


@pytest.fixture(scope="module")
def ease(shop):
    """EASE in numpy on the shop's binary matrix: items, B."""
    items = sorted(shop.items)
    at = {i: k for k, i in enumerate(items)}
    users = sorted(shop.bought)
    x = np.zeros((len(users), len(items)))
    for u, user in enumerate(users):
        for i in shop.bought[user]:
            x[u, at[i]] = 1
    p = np.linalg.inv(x.T @ x + LAMBDA * np.eye(len(items)))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0)
    return items, at, b


def rec(s, pb, **kw):
    kw.setdefault("k", 10)
    return s.stub.Recommend(pb.rec.RecommendRequest(**kw))


def ids(resp):
    return [i.item_id for i in resp.items]


def heavy(shop, n=5):
    return sorted(shop.bought, key=lambda u: (-len(shop.bought[u]), u))[:n]


def test_model_info_names_the_family(servers, pb):
    for name, s in servers.items():
        assert s.stub.GetModelInfo(pb.rec.GetModelInfoRequest()).algorithm == name


def test_ease_scores_are_the_closed_form(servers, pb, shop, ease):
    items, at, b = ease
    for user in heavy(shop):
        r = rec(servers["ease"], pb, user_id=user, k=10)
        assert r.strategy == pb.rec.PERSONALIZED
        want = b[[at[i] for i in shop.bought[user]]].sum(axis=0)
        for i in shop.bought[user]:
            want[at[i]] = -np.inf
        best = [items[k] for k in np.argsort(-want, kind="stable")[:10]]
        assert ids(r) == best
        np.testing.assert_allclose([i.score for i in r.items], [want[at[i]] for i in best],
                                   rtol=1e-3, atol=1e-5)


def test_every_family_excludes_and_filters(servers, pb, shop):
    user = heavy(shop, 1)[0]
    category = shop.category[shop.popularity.most_common(1)[0][0]]
    for name, s in servers.items():
        r = rec(s, pb, user_id=user, k=20)
        got = ids(r)
        assert r.strategy == pb.rec.PERSONALIZED and len(got) == 20, name
        assert not set(got) & shop.bought[user], name
        scores = [i.score for i in r.items]
        assert scores == sorted(scores, reverse=True), name
        drop = got[:3]
        assert not set(ids(rec(s, pb, user_id=user, k=20, exclude_item_ids=drop))) & set(drop)
        c = ids(rec(s, pb, user_id=user, k=5, category=category))
        assert c and all(shop.category[i] == category for i in c), name
        # Rules: out of stock never appears, a boost moves an item up.
        s.stub.SetItemAvailability(pb.rec.SetItemAvailabilityRequest(
            items=[pb.rec.ItemAvailability(item_id=got[0], available=False)]))
        try:
            assert got[0] not in ids(rec(s, pb, user_id=user, k=20)), name
        finally:
            s.stub.SetItemAvailability(pb.rec.SetItemAvailabilityRequest(
                items=[pb.rec.ItemAvailability(item_id=got[0], available=True)]))
        target = got[10]
        s.stub.SetItemBoosts(pb.rec.SetItemBoostsRequest(
            boosts=[pb.rec.ItemBoost(item_id=target, multiplier=100)]))
        try:
            assert ids(rec(s, pb, user_id=user, k=20)).index(target) < 10, name
        finally:
            s.stub.SetItemBoosts(pb.rec.SetItemBoostsRequest(
                boosts=[pb.rec.ItemBoost(item_id=target, multiplier=1)]))
        d = ids(rec(s, pb, user_id=user, k=10, diversity=0.5))
        assert len(d) == 10 and not set(d) & shop.bought[user], name


def test_a_recorded_purchase_is_folded_in_exactly(servers, pb, shop, ease):
    items, at, b = ease
    user = heavy(shop, 3)[2]
    s = servers["ease"]
    first = rec(s, pb, user_id=user, k=10)
    top = first.items[0].item_id
    s.stub.RecordEvents(pb.rec.RecordEventsRequest(
        events=[pb.rec.Event(user_id=user, item_id=top, type=pb.rec.PURCHASE)]))
    after = rec(s, pb, user_id=user, k=10)
    assert top not in ids(after) and ids(after) != ids(first)
    want = b[[at[i] for i in shop.bought[user] | {top}]].sum(axis=0)
    np.testing.assert_allclose([i.score for i in after.items],
                               [want[at[i]] for i in ids(after)], rtol=1e-3, atol=1e-5)
    for name, s in servers.items():
        if name == "ease":
            continue
        member = heavy(shop, 4)[3]
        before = rec(s, pb, user_id=member, k=10)
        t = before.items[0].item_id
        s.stub.RecordEvents(pb.rec.RecordEventsRequest(
            events=[pb.rec.Event(user_id=member, item_id=t, type=pb.rec.PURCHASE)]))
        assert t not in ids(rec(s, pb, user_id=member, k=10)), name


def test_cart_rerank_similar_and_batch(servers, pb, shop, ease):
    items, at, b = ease
    cart = [i for i, _ in shop.popularity.most_common(12)[-2:]]
    user = heavy(shop, 5)[4]
    for name, s in servers.items():
        r = rec(s, pb, context_item_ids=cart)
        assert r.strategy == pb.rec.SESSION and len(r.items) == 10, name
        assert not set(cart) & set(ids(r)), name
        single = rec(s, pb, user_id=user, k=30)
        cands = ids(single)[::-1]
        rr = s.stub.Rerank(pb.rec.RerankRequest(user_id=user, candidate_item_ids=cands))
        assert ids(rr) == ids(single), name
        sim = s.stub.SimilarItems(pb.rec.SimilarItemsRequest(item_id=cart[0], k=5))
        assert len(sim.items) == 5 and cart[0] not in ids(sim), name
        if name == "ease":
            row = b[at[cart[0]]].copy()
            row[at[cart[0]]] = -np.inf
            assert ids(sim) == [items[k] for k in np.argsort(-row, kind="stable")[:5]]
        # Concurrent callers: the server batches the calls that queue up.
        users = heavy(shop, 40)
        alone = {u: ids(rec(s, pb, user_id=u)) for u in users}
        with ThreadPoolExecutor(16) as ex:
            for u, got in ex.map(lambda u: (u, ids(rec(s, pb, user_id=u))), users * 2):
                assert got == alone[u], name


def test_hot_swap_between_families(shop, tmp_path, pb):
    model = tmp_path / "m"
    train(shop.path, model)
    s = Server(model, tmp_path, "--reload-interval", "0.05")
    stub = pb.rec_grpc.RecommenderStub(s.channel)
    user = heavy(shop, 1)[0]
    try:
        for name in ["ease", "knn", "als", "rp3beta"]:
            extra = FAMILIES.get(name, [])
            train(shop.path, model, *extra)
            deadline = time.monotonic() + 10
            while stub.GetModelInfo(pb.rec.GetModelInfoRequest()).algorithm != name:
                assert time.monotonic() < deadline, f"{name} was not served"
                time.sleep(0.05)
            r = stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=10))
            assert len(r.items) == 10 and not set(ids(r)) & shop.bought[user]
    finally:
        assert s.stop() == 0


def test_bad_family_flags_are_refused(shop, tmp_path):
    for extra, why in [(["--algorithm", "EASE"], "'als', 'ease', 'knn' or 'rp3beta'"),
                       (["--algorithm", "ease", "--lambda", -1], "--lambda"),
                       (["--blend-with", "knn", "--blend-share", 0.3], "--blend-share needs"),
                       (["--algorithm", "knn", "--neighbors", 0], "--neighbors")]:
        p = run("train", "--input", shop.path, "--model", tmp_path / "m", *extra, check=False)
        assert p.returncode == 2 and why in p.stderr, (extra, p.stderr)
    assert not (tmp_path / "m").exists()
    p = run("eval", "--input", shop.path, "--algorithm", "slim", check=False)
    assert p.returncode == 2 and "--algorithm" in p.stderr


def test_churn_and_campaign_affinity_on_an_item_item_model(shop, tmp_path, pb):
    # The factors trained beside the rows answer affinity and churn reasons.
    train(shop.path, tmp_path / "m", "--algorithm", "ease", "--churn-horizon", "90d")
    s = Server(tmp_path / "m", tmp_path)
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        item = shop.popularity.most_common(5)[-1][0]
        t = list(stub.StreamCampaignTargets(pb.rec.CampaignTargetsRequest(
            item_id=item, order=pb.rec.BY_AFFINITY, limit=30)))
        aff = [x.affinity for x in t]
        assert len(t) == 30 and aff == sorted(aff, reverse=True)
        user = heavy(shop, 1)[0]
        c = stub.GetChurnScore(pb.rec.ChurnScoreRequest(user_id=user))
        assert 0 <= c.probability <= 1
    finally:
        assert s.stop() == 0

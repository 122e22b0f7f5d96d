"""The popularity blend of a model (`recd train --popularity-blend W`,
chosen by `recd tune`): served over gRPC as x_u.y_i + W * popularity / the
largest popularity in every personalized path (single and batched Recommend,
session, Rerank), and W = inf as the most-popular list for everyone."""
import math
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import Server, run, train

BIG = 1000.0  # far above any ALS score: popularity decides, ALS breaks ties


@pytest.fixture(scope="module")
def servers(shop, tmp_path_factory, pb):
    """Three servers on the same factors (same data and seed): pure ALS, a
    blend of BIG, popularity only."""
    tmp = tmp_path_factory.mktemp("blend")
    out = {}
    for name, extra in [("pure", []), ("big", ["--popularity-blend", BIG]),
                        ("inf", ["--popularity-blend", "inf"])]:
        train(shop.path, tmp / name, *extra)
        s = Server(tmp / name, tmp)
        s.stub = pb.rec_grpc.RecommenderStub(s.channel)
        out[name] = s
    yield out
    for s in out.values():
        assert s.stop() == 0


def members(shop, n=40):
    return sorted(shop.bought)[:n]


def assert_popularity_order(shop, items, excluded):
    """items are the most popular items outside excluded, ties in any order."""
    counts = [shop.popularity[i] for i in items]
    assert counts == sorted(counts, reverse=True), counts
    assert not set(items) & excluded
    rest = [shop.popularity[i] for i in shop.items - excluded - set(items)]
    assert not rest or counts[-1] >= max(rest), (counts, max(rest))


def test_model_info_and_inspect_report_the_blend(servers, pb, tmp_path):
    infos = {n: s.stub.GetModelInfo(pb.rec.GetModelInfoRequest()) for n, s in servers.items()}
    assert infos["pure"].popularity_blend == 0
    assert infos["big"].popularity_blend == BIG
    assert math.isinf(infos["inf"].popularity_blend)
    assert "popularity_blend    inf (popularity only)" in run(
        "query", "--server", servers["inf"].address, "info").stdout


def test_popularity_only_answers_popular_without_purchases(servers, pb, shop):
    s = servers["inf"]
    for user in members(shop):
        r = s.stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=10))
        assert r.strategy == pb.rec.POPULAR
        items = [i.item_id for i in r.items]
        assert len(items) == 10
        assert_popularity_order(shop, items, shop.bought[user])
        assert [i.score for i in r.items] == [shop.popularity[i] for i in items]
    # An anonymous session and Rerank answer POPULAR too.
    ctx = sorted(shop.items)[:2]
    r = s.stub.Recommend(pb.rec.RecommendRequest(context_item_ids=ctx, k=5))
    assert r.strategy == pb.rec.POPULAR
    assert_popularity_order(shop, [i.item_id for i in r.items], set(ctx))
    cands = sorted(shop.items)[:20]
    rr = s.stub.Rerank(pb.rec.RerankRequest(user_id=members(shop)[0], candidate_item_ids=cands))
    assert rr.strategy == pb.rec.POPULAR
    assert [i.score for i in rr.items] == sorted((shop.popularity[c] for c in cands), reverse=True)


def test_blend_adds_weighted_popularity_to_every_personalized_score(servers, pb, shop):
    top = max(shop.popularity.values())
    cands = sorted(shop.items)
    for user in members(shop, 10):
        pure = {i.item_id: i.score for i in servers["pure"].stub.Rerank(
            pb.rec.RerankRequest(user_id=user, candidate_item_ids=cands)).items}
        blend = servers["big"].stub.Rerank(pb.rec.RerankRequest(user_id=user,
                                                               candidate_item_ids=cands))
        assert blend.strategy == pb.rec.PERSONALIZED
        for i in blend.items:
            want = pure[i.item_id] + BIG * shop.popularity[i.item_id] / top
            assert i.score == pytest.approx(want, rel=1e-5), i.item_id
        r = servers["big"].stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=10))
        assert r.strategy == pb.rec.PERSONALIZED
        for i in r.items:
            want = pure[i.item_id] + BIG * shop.popularity[i.item_id] / top
            assert i.score == pytest.approx(want, rel=1e-5), i.item_id
        # Popularity decides the order: the blend moved the list to best sellers.
        assert_popularity_order(shop, [i.item_id for i in r.items], shop.bought[user])
    ctx = sorted(shop.items)[:2]
    r = servers["big"].stub.Recommend(pb.rec.RecommendRequest(context_item_ids=ctx, k=5))
    assert r.strategy == pb.rec.SESSION
    assert_popularity_order(shop, [i.item_id for i in r.items], set(ctx))


def test_batched_answers_equal_single_ones(servers, pb, shop):
    """Concurrent calls are scored together in item blocks (svc_recommend_batch):
    the blend must be there as in a call answered alone."""
    s = servers["big"]
    users = members(shop, 60)
    alone = {u: [i.item_id for i in s.stub.Recommend(pb.rec.RecommendRequest(user_id=u, k=8)).items]
             for u in users}
    with ThreadPoolExecutor(16) as pool:
        futures = [(u, pool.submit(s.stub.Recommend, pb.rec.RecommendRequest(user_id=u, k=8)))
                   for u in users * 3]
        for u, f in futures:
            assert [i.item_id for i in f.result().items] == alone[u], u

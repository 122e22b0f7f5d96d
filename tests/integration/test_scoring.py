"""Recommend's scoring against an independent reference: numpy's float64
dot products over the same item matrix. recd scores from bfloat16 panels and
re-scores in float32 whatever could be within the error bound of the cut,
so its answer must be the exact ranking - up to ties closer than float32 can
tell apart - for single and batched calls, any catalogue size (a padded
last panel) and any factor count (an odd one leaves half a pair)."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import Server, run

USERS = 120  # queried users; all of their vectors come out of `recd bench model`
K = 40


@pytest.fixture(scope="module", params=[(20001, 64), (3000, 33)], ids=["20001x64", "3000x33"])
def served(request, tmp_path_factory, pb):
    items, factors = request.param
    tmp = tmp_path_factory.mktemp("scoring")
    run("bench", "model", "--model", tmp / "m", "--items", items, "--factors", factors,
        "--users", USERS, "--matrix", tmp / "items.f32", "--queries", tmp / "users.f32")
    y = np.fromfile(tmp / "items.f32", dtype=np.float32).reshape(items, factors)
    x = np.fromfile(tmp / "users.f32", dtype=np.float32).reshape(-1, factors)[:USERS]
    s = Server(tmp / "m", tmp)
    s.stub = pb.rec_grpc.RecommenderStub(s.channel)
    yield s, y.astype(np.float64), x.astype(np.float64)
    assert s.stop() == 0


def check_exact(y, xu, answer):
    exact = y @ xu
    order = np.lexsort((np.arange(len(exact)), -exact))[:K]  # score desc, then index
    got = [int(i.item_id[1:]) for i in answer.items]
    assert len(got) == K
    tol = 1e-5 * max(1.0, float(np.abs(exact[order[0]])))
    for rank, (g, want) in enumerate(zip(got, order)):
        # The same item, or one whose exact score float32 cannot tell apart.
        assert abs(exact[g] - exact[want]) <= tol, (rank, g, want, exact[g], exact[want])
    assert len(set(got)) == K
    for item, g in zip(answer.items, got):
        assert item.score == pytest.approx(exact[g], rel=1e-4, abs=1e-6)


def test_single_calls_return_the_exact_ranking(served, pb):
    s, y, x = served
    for u in range(0, USERS, 4):
        r = s.stub.Recommend(pb.rec.RecommendRequest(user_id=f"u{u}", k=K, include_purchased=True))
        check_exact(y, x[u], r)


def test_batched_calls_return_the_exact_ranking(served, pb):
    s, y, x = served

    def ask(u):
        return u, s.stub.Recommend(
            pb.rec.RecommendRequest(user_id=f"u{u}", k=K, include_purchased=True))

    # 24 callers at once: the server scores the calls that queue up together
    # in one pass.
    with ThreadPoolExecutor(24) as ex:
        for _ in range(3):
            for u, r in ex.map(ask, range(USERS)):
                check_exact(y, x[u], r)

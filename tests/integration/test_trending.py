"""Recommend mode TRENDING over real gRPC: events recorded through
RecordEvents trend in the very next call, their weight halves every
--trending-half-life, the counts survive a restart (rebuilt from the event
store), the rules of every list apply, --trending-personal blends in the
shopper's own score, and a server without --events refuses the mode."""
import time

import grpc
import pytest

from conftest import Server, run

TRENDING = 2  # RecommendRequest.RecommendMode
HALF_LIFE_S = 2.0


def trending(pb, stub, user="visitor-1", k=10, **kw):
    return stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=k, mode=TRENDING, **kw))


def record(pb, stub, item, n, type_=None, user="buyer"):
    stub.RecordEvents(pb.rec.RecordEventsRequest(events=[
        pb.rec.Event(user_id=f"{user}-{item}-{j}", item_id=item,
                     type=type_ or pb.rec.PURCHASE) for j in range(n)]))


def test_recorded_events_trend_at_once_and_decay(model_dir, shop, tmp_path, pb):
    s = Server(model_dir, tmp_path, "--events", tmp_path / "ev", "--trending-half-life",
               HALF_LIFE_S / 3600)
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        r = trending(pb, stub)
        assert r.strategy == pb.rec.TRENDING and list(r.items) == []
        a, b, c = sorted(shop.items)[:3]
        record(pb, stub, a, 4)
        record(pb, stub, c, 10, pb.rec.VIEW)  # ten views weigh one purchase
        r = trending(pb, stub)
        assert [i.item_id for i in r.items] == [a, c]
        assert r.items[0].score == pytest.approx(1.0, abs=0.05)
        assert r.items[1].score == pytest.approx(0.25, abs=0.05)
        # Two half-lives later a's four purchases weigh one; b's two fresh
        # ones outrank them.
        time.sleep(2 * HALF_LIFE_S)
        record(pb, stub, b, 2)
        r = trending(pb, stub)
        assert [i.item_id for i in r.items][:2] == [b, a]
        assert 0.3 < r.items[1].score < 0.55
    finally:
        assert s.stop() == 0


@pytest.fixture(scope="module")
def tsrv(model_dir, tmp_path_factory, pb):
    tmp = tmp_path_factory.mktemp("trending")
    s = Server(model_dir, tmp, "--events", tmp / "ev", "--trending-half-life", 1)
    s.stub = pb.rec_grpc.RecommenderStub(s.channel)
    s.tmp = tmp
    yield s
    out = s.output()
    assert s.stop() == 0, out


@pytest.fixture(scope="module")
def hot(tsrv, shop, pb):
    """Eight items with 8, 7, ..., 1 purchases, hottest first."""
    items = sorted(shop.items)[10:18]
    for n, item in zip(range(8, 0, -1), items):
        record(pb, tsrv.stub, item, n)
    return items


def test_the_rules_of_every_list_apply(tsrv, hot, shop, pb):
    assert [i.item_id for i in trending(pb, tsrv.stub).items] == hot
    r = trending(pb, tsrv.stub, k=3, exclude_item_ids=[hot[0]])
    assert [i.item_id for i in r.items] == hot[1:4]
    cat = shop.category[hot[2]]
    r = trending(pb, tsrv.stub, category=cat)
    assert [i.item_id for i in r.items] == [i for i in hot if shop.category[i] == cat]
    # A cart's items are not offered; diversity keeps the list's items.
    r = trending(pb, tsrv.stub, user="", context_item_ids=[hot[1]])
    assert hot[1] not in [i.item_id for i in r.items]
    r = trending(pb, tsrv.stub, diversity=0.5)
    assert sorted(i.item_id for i in r.items) == sorted(hot)
    # A member's purchases are theirs: not offered again.
    tsrv.stub.RecordEvents(pb.rec.RecordEventsRequest(events=[
        pb.rec.Event(user_id="regular", item_id=hot[0], type=pb.rec.PURCHASE)]))
    assert hot[0] not in [i.item_id for i in trending(pb, tsrv.stub, user="regular").items]
    # An unblended list is everyone's and has no reasons to name.
    r = trending(pb, tsrv.stub, explain=True)
    assert all(not i.because_item_ids for i in r.items)


def test_query_mode_trending(tsrv, hot):
    p = run("query", "--server", tsrv.address, "--json", "recommend", "someone", "--mode",
            "trending", "-k", 2)
    assert '"strategy":"TRENDING"' in p.stdout and hot[0] in p.stdout


def test_a_restart_keeps_what_is_trending(model_dir, tmp_path, pb, shop):
    ev = tmp_path / "ev"
    items = sorted(shop.items)[20:23]
    s = Server(model_dir, tmp_path, "--events", ev)
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        for n, item in zip((3, 2, 1), items):
            record(pb, stub, item, n)
        before = [(i.item_id, i.score) for i in trending(pb, stub).items]
    finally:
        assert s.stop() == 0
    s = Server(model_dir, tmp_path, "--events", ev)
    try:
        after = trending(pb, pb.rec_grpc.RecommenderStub(s.channel)).items
        assert [i.item_id for i in after] == items == [i for i, _ in before]
        assert [i.score for i in after] == pytest.approx([v for _, v in before], rel=1e-3)
        assert "trending counts rebuilt" in s.output()
    finally:
        assert s.stop() == 0


def test_personal_blend_orders_trending_items_for_the_shopper(model_dir, tmp_path, pb, shop):
    s = Server(model_dir, tmp_path, "--events", tmp_path / "ev", "--trending-personal", 0.7)
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        items = sorted(shop.items)[30:60]
        for item in items:  # all as hot: the shopper's taste decides
            record(pb, stub, item, 2)
        users = sorted(u for u, b in shop.bought.items() if len(b) >= 5)[:10]
        lists = set()
        for user in users:
            r = trending(pb, stub, user=user, k=5, explain=True)
            assert r.strategy == pb.rec.TRENDING
            got = [i.item_id for i in r.items]
            assert set(got) <= set(items) and len(got) == 5
            lists.add(tuple(got))
            # The order is the member's own among the trending items.
            mine = [i.item_id for i in stub.Recommend(pb.rec.RecommendRequest(
                user_id=user, k=len(shop.items))).items if i.item_id in set(items)]
            assert got == mine[:5]
            for it in r.items:
                assert set(it.because_item_ids) <= shop.bought[user]
            assert any(it.because_item_ids for it in r.items)
        assert len(lists) > 1
    finally:
        assert s.stop() == 0


def test_trending_needs_the_event_store_and_sane_flags(model_dir, tmp_path, pb):
    s = Server(model_dir, tmp_path)
    try:
        with pytest.raises(grpc.RpcError) as e:
            trending(pb, pb.rec_grpc.RecommenderStub(s.channel))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "--events" in e.value.details()
    finally:
        assert s.stop() == 0
    for flag, value in (("--trending-personal", 2), ("--trending-half-life", 0),
                        ("--trending-half-life", "soon")):
        p = run("serve", "--model", model_dir, "--events", tmp_path / "ev2", flag, value,
                check=False)
        assert p.returncode == 2 and flag in p.stderr, p.stderr

"""Buy it again over real gRPC, on a model trained by `recd train` from a
shop whose members rebuy "milk" every week and "soap" every month, with the
clock of today: a member whose milk is due sees it first in mode BUY_AGAIN
and near the top with include_purchased, a member who bought it yesterday
does not; a purchase recorded through RecordEvents resets the clock at
once; the storefront's rules apply; the mode the server does not answer
(NEW_ARRIVALS) is refused with UNIMPLEMENTED, unknown ones with
INVALID_ARGUMENT."""
import csv
import json
import random
import time

import grpc
import pytest

from conftest import Server, run, train

DAY = 86400
HORIZON = 3  # --repeat-horizon: "bought within the next 3 days"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    rng = random.Random(14)
    now = int(time.time())
    rows = []

    def rhythm(user, item, last_days_ago, gap, times, jitter=0.0):
        for k in range(times):
            # Never ahead of now: a server folds in only events after the
            # model's latest one.
            ago = max(0.01, last_days_ago + k * gap + rng.uniform(-jitter, jitter))
            rows.append((user, item, now - int(ago * DAY) - 60))

    items = [f"i{j}" for j in range(60)]
    for u in range(200):
        user = f"u{u}"
        rhythm(user, "milk", rng.uniform(0, 7), 7, 30, jitter=0.3)
        if u % 2 == 0:
            rhythm(user, "soap", rng.uniform(0, 30), 30, 7, jitter=1)
        for _ in range(10):  # new things, once, any time in the last 210 days
            rows.append((user, rng.choice(items[: rng.randrange(1, 61)]),
                         now - rng.randrange(60, 210 * DAY)))
    # due: milk last bought 6 days ago (due tomorrow), soap 2 days ago.
    rhythm("due", "milk", 6, 7, 30)
    rhythm("due", "soap", 2, 30, 7)
    # just: milk yesterday.
    rhythm("just", "milk", 1, 7, 30)
    for user in ("due", "just"):
        for j in range(5):
            rows.append((user, items[j], now - (100 + j) * DAY))
    path = tmp_path_factory.mktemp("buyagain") / "shop.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp", "quantity", "price", "category"])
        for user, item, ts in rows:
            w.writerow([user, item, ts, 1, 1.0, "home" if item == "soap" else "food"])
    return path


@pytest.fixture(scope="module")
def bserver(shop, tmp_path_factory):
    d = tmp_path_factory.mktemp("buyagain_model") / "m"
    train(shop, d, "--repeat-horizon", HORIZON)
    tmp = tmp_path_factory.mktemp("buyagain_server")
    s = Server(d, tmp, "--events", tmp / "events")
    s.model_dir = d
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def bstub(bserver, pb):
    return pb.rec_grpc.RecommenderStub(bserver.channel)


def recommend(pb, stub, user, k=10, **kw):
    return stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=k, **kw))


def buy_again(pb, stub, user, k=10, **kw):
    return recommend(pb, stub, user, k, mode=pb.rec.RecommendRequest.BUY_AGAIN, **kw)


def ids(r):
    return [i.item_id for i in r.items]


def test_buy_again_lists_only_bought_items_most_due_first(bstub, pb):
    r = buy_again(pb, bstub, "due")
    assert r.strategy == pb.rec.BUY_AGAIN
    assert set(ids(r)) == {"milk", "soap", "i0", "i1", "i2", "i3", "i4"}
    assert ids(r)[0] == "milk"
    assert r.items[0].score > 0.5  # due tomorrow, within the 3 days
    scores = [i.score for i in r.items]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= s <= 1 for s in scores)
    # Bought yesterday: still listed (bought before), but not due.
    r = buy_again(pb, bstub, "just")
    assert "milk" in ids(r)
    assert r.items[ids(r).index("milk")].score < 0.1


def test_include_purchased_ranks_a_due_item_high_and_a_fresh_one_low(bstub, pb):
    due = recommend(pb, bstub, "due", include_purchased=True)
    assert due.strategy == pb.rec.PERSONALIZED
    assert "milk" in ids(due)[:3]
    just = recommend(pb, bstub, "just", include_purchased=True)
    assert "milk" not in ids(just)[:5]
    assert len(ids(just)) == 10 and len(set(ids(just))) == 10
    for r in (due, just):
        scores = [i.score for i in r.items]
        assert scores == sorted(scores, reverse=True)
    # Without include_purchased nothing bought comes back, as before.
    plain = recommend(pb, bstub, "due")
    assert not {"milk", "soap", "i0", "i1", "i2", "i3", "i4"} & set(ids(plain))


def test_a_recorded_purchase_resets_the_clock_at_once(bstub, pb):
    before = buy_again(pb, bstub, "due")
    assert ids(before)[0] == "milk"
    r = bstub.RecordEvents(pb.rec.RecordEventsRequest(events=[pb.rec.Event(
        user_id="due", item_id="milk", type=pb.rec.PURCHASE)]))
    assert r.accepted == 1
    after = buy_again(pb, bstub, "due")
    assert after.items[ids(after).index("milk")].score < 0.1
    assert ids(after)[0] != "milk"
    assert "milk" not in ids(recommend(pb, bstub, "due", include_purchased=True))[:5]


def test_a_new_purchase_is_bought_before_at_once(bstub, pb):
    assert "i59" not in ids(buy_again(pb, bstub, "just", k=100))
    bstub.RecordEvents(pb.rec.RecordEventsRequest(events=[pb.rec.Event(
        user_id="just", item_id="i59", type=pb.rec.PURCHASE)]))
    assert "i59" in ids(buy_again(pb, bstub, "just", k=100))


def test_storefront_rules_exclusions_and_category_apply(bstub, pb):
    r = buy_again(pb, bstub, "just", exclude_item_ids=["milk"])
    assert "milk" not in ids(r)
    r = buy_again(pb, bstub, "just", category="home")
    assert ids(r) == []
    bstub.SetItemAvailability(pb.rec.SetItemAvailabilityRequest(
        items=[pb.rec.ItemAvailability(item_id="i0", available=False)]))
    try:
        assert "i0" not in ids(buy_again(pb, bstub, "just"))
    finally:
        bstub.SetItemAvailability(pb.rec.SetItemAvailabilityRequest(
            items=[pb.rec.ItemAvailability(item_id="i0", available=True)]))
    assert "i0" in ids(buy_again(pb, bstub, "just"))


def test_a_member_without_purchases_gets_an_empty_list(bstub, pb):
    r = buy_again(pb, bstub, "nobody-at-all")
    assert r.strategy == pb.rec.BUY_AGAIN and ids(r) == []


@pytest.mark.parametrize("mode,code,words", [
    (99, grpc.StatusCode.INVALID_ARGUMENT, "not a RecommendMode"),
    (-1, grpc.StatusCode.INVALID_ARGUMENT, "not a RecommendMode"),
])
def test_values_that_are_no_mode_are_refused_with_a_message(bstub, pb, mode, code, words):
    with pytest.raises(grpc.RpcError) as e:
        recommend(pb, bstub, "due", mode=mode)
    assert e.value.code() == code
    assert words in e.value.details()


def test_buy_again_needs_a_member(bstub, pb):
    with pytest.raises(grpc.RpcError) as e:
        bstub.Recommend(pb.rec.RecommendRequest(
            k=5, context_item_ids=["milk"], mode=pb.rec.RecommendRequest.BUY_AGAIN))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "user_id" in e.value.details()


def test_a_model_without_a_repurchase_model_refuses_buy_again(shop, pb, tmp_path):
    d = tmp_path / "m"
    train(shop, d, "--repeat-horizon", 0)
    s = Server(d, tmp_path)
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        with pytest.raises(grpc.RpcError) as e:
            buy_again(pb, stub, "due")
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "repurchase" in e.value.details()
        # include_purchased then scores bought items as any.
        assert recommend(pb, stub, "due", include_purchased=True).items
    finally:
        assert s.stop() == 0


def test_inspect_shows_the_repurchase_model(bserver):
    out = json.loads(run("inspect", "--model", bserver.model_dir, "--json").stdout)
    assert out["rebuy"]["horizon_days"] == HORIZON
    assert 0 < out["rebuy"]["repeat_share"] <= 1


def test_query_recommend_mode_buy_again(bserver):
    p = run("query", "--server", bserver.address, "--json", "recommend", "just", "--mode",
            "buy-again", "-k", 3)
    out = json.loads(p.stdout)
    assert out["strategy"] == "BUY_AGAIN"
    assert len(out["items"]) == 3
    p = run("query", "--server", bserver.address, "--json", "recommend", "due", "--mode",
            "new-arrivals")
    assert json.loads(p.stdout)["strategy"] == "NEW_ARRIVALS"
    p = run("query", "--server", bserver.address, "recommend", "due", "--mode", "weekly",
            check=False)
    assert p.returncode == 2 and "--mode" in p.stderr

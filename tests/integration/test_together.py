"""SimilarItems with relation BOUGHT_TOGETHER over real gRPC, on a model
trained by `recd train` from a synthetic shop whose baskets pair items:
complements come back with the scores training/together.h defines, a cart's
seeds add up, the storefront's rules apply, an item never bought with
anything falls back to SIMILAR and says so, and an unknown relation is
refused."""
import csv
import json
import random
import re
from collections import Counter, defaultdict

import grpc
import pytest

from conftest import Server, run, train

PAIRS = 20
BETA = 10.0  # together_params_init's shrinkage


@pytest.fixture(scope="module")
def baskets(tmp_path_factory):
    """Each member buys 4 baskets at distinct times: a pair (a<k>, b<k>) and
    a filler; "lonely" is only ever bought alone."""
    rng = random.Random(5)
    rows, out = [], []
    for u in range(300):
        for b in range(4):
            k = rng.randrange(PAIRS)
            basket = [f"a{k}", f"b{k}", f"f{rng.randrange(30)}"]
            ts = 1_700_000_000 + u * 1000 + b * 100
            out.append(basket)
            rows += [(f"u{u}", item, ts) for item in basket]
        if u % 10 == 0:
            rows.append((f"u{u}", "lonely", 1_700_000_000 + u * 1000 + 900))
            out.append(["lonely"])
    path = tmp_path_factory.mktemp("together") / "shop.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp", "quantity", "price", "category"])
        for user, item, ts in rows:
            # a0.. in category "a", b0.. in "b", the fillers in "f", lonely in "l"
            w.writerow([user, item, ts, 1, 1.0, item[0]])
    return path, out


def expected_scores(baskets, seeds):
    """The conditional measure, c_ij / (c_i + beta), summed over seeds."""
    count, co = Counter(), defaultdict(Counter)
    for b in baskets:
        for i in set(b):
            count[i] += 1
            for j in set(b) - {i}:
                co[i][j] += 1
    total = Counter()
    for s in seeds:
        for j, c in co[s].items():
            total[j] += c / (count[s] + BETA)
    for s in seeds:
        total.pop(s, None)
    return total


@pytest.fixture(scope="module")
def tserver(baskets, tmp_path_factory):
    d = tmp_path_factory.mktemp("together_model") / "m"
    train(baskets[0], d)
    tmp = tmp_path_factory.mktemp("together_server")
    # Availability and boosts are kept in the events folder.
    s = Server(d, tmp, "--events", tmp / "events")
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def tstub(tserver, pb):
    return pb.rec_grpc.RecommenderStub(tserver.channel)


def together(pb, stub, seeds, k=10):
    return stub.SimilarItems(pb.rec.SimilarItemsRequest(
        item_id=seeds[0], item_ids=seeds[1:], k=k, relation=pb.rec.BOUGHT_TOGETHER))


def assert_matches(items, want, k):
    got = [(i.item_id, i.score) for i in items]
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    for item, score in got:
        assert score == pytest.approx(want[item], rel=1e-5), item
    assert len(got) == min(k, len(want))
    cut = got[-1][1]
    assert all(s <= cut * (1 + 1e-5) for j, s in want.items() if j not in dict(got))


def test_complement_comes_first_with_the_trained_scores(tstub, pb, baskets):
    for k in range(5):
        r = together(pb, tstub, [f"a{k}"])
        assert not r.fell_back_to_similar
        assert r.items[0].item_id == f"b{k}"
        assert_matches(r.items, expected_scores(baskets[1], [f"a{k}"]), 10)


def test_a_cart_adds_its_seeds_up_and_never_returns_them(tstub, pb, baskets):
    cart = ["a0", "a1", "f3"]
    r = together(pb, tstub, cart, k=8)
    assert not set(cart) & {i.item_id for i in r.items}
    assert {"b0", "b1"} <= {i.item_id for i in r.items[:2]}
    assert_matches(r.items, expected_scores(baskets[1], cart), 8)


def test_only_co_bought_items_come_back(tstub, pb, baskets):
    r = together(pb, tstub, ["a2"], k=1000)
    assert {i.item_id for i in r.items} == set(expected_scores(baskets[1], ["a2"]))


def test_availability_and_boosts_apply(tstub, pb, baskets):
    want = expected_scores(baskets[1], ["a3"])
    filler = min((j for j in want if j.startswith("f")), key=lambda j: want[j])
    tstub.SetItemAvailability(pb.rec.SetItemAvailabilityRequest(
        items=[pb.rec.ItemAvailability(item_id="b3", available=False)]))
    tstub.SetItemBoosts(pb.rec.SetItemBoostsRequest(
        boosts=[pb.rec.ItemBoost(item_id=filler, multiplier=100)]))
    try:
        r = together(pb, tstub, ["a3"])
        assert "b3" not in {i.item_id for i in r.items}
        assert r.items[0].item_id == filler
        assert r.items[0].score == pytest.approx(100 * want[filler], rel=1e-5)
    finally:
        tstub.SetItemAvailability(pb.rec.SetItemAvailabilityRequest(
            items=[pb.rec.ItemAvailability(item_id="b3", available=True)]))
        tstub.SetItemBoosts(pb.rec.SetItemBoostsRequest(
            boosts=[pb.rec.ItemBoost(item_id=filler, multiplier=1)]))
    assert together(pb, tstub, ["a3"]).items[0].item_id == "b3"


def test_exclusions_and_category_apply_to_both_relations(tstub, pb, baskets):
    want = expected_scores(baskets[1], ["a4"])
    for relation in [pb.rec.BOUGHT_TOGETHER, pb.rec.RELATION_SIMILAR]:
        r = tstub.SimilarItems(pb.rec.SimilarItemsRequest(
            item_id="a4", k=10, relation=relation, exclude_item_ids=["b4", "no-such-item"]))
        assert r.items and "b4" not in {i.item_id for i in r.items}
        r = tstub.SimilarItems(pb.rec.SimilarItemsRequest(
            item_id="a4", k=10, relation=relation, category="f"))
        assert r.items and all(i.item_id.startswith("f") for i in r.items)
        with pytest.raises(grpc.RpcError) as e:
            tstub.SimilarItems(pb.rec.SimilarItemsRequest(item_id="a4", k=5, relation=relation,
                                                          category="no-such-category"))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert "no-such-category" in e.value.details()
    r = tstub.SimilarItems(pb.rec.SimilarItemsRequest(
        item_id="a4", k=3, relation=pb.rec.BOUGHT_TOGETHER, category="f"))
    assert not r.fell_back_to_similar
    fillers = {j: w for j, w in want.items() if j.startswith("f")}
    assert_matches(r.items, fillers, 3)
    # The b items bought with a4 excluded and only category "b" allowed: no
    # co-purchase passes, so SIMILAR answers, with the other b items.
    r = tstub.SimilarItems(pb.rec.SimilarItemsRequest(
        item_id="a4", k=3, relation=pb.rec.BOUGHT_TOGETHER, category="b",
        exclude_item_ids=[j for j in want if j.startswith("b")]))
    assert r.fell_back_to_similar
    assert r.items and all(i.item_id.startswith("b") and i.item_id not in want for i in r.items)


def test_item_without_co_purchases_falls_back_to_similar(tstub, pb):
    r = together(pb, tstub, ["lonely"], k=5)
    assert r.fell_back_to_similar
    similar = tstub.SimilarItems(pb.rec.SimilarItemsRequest(item_id="lonely", k=5))
    assert not similar.fell_back_to_similar
    assert len(r.items) == 5
    assert [(i.item_id, i.score) for i in r.items] == [(i.item_id, i.score) for i in similar.items]


def test_unknown_relation_is_invalid_argument(tstub, pb):
    with pytest.raises(grpc.RpcError) as e:
        tstub.SimilarItems(pb.rec.SimilarItemsRequest(item_id="a0", k=5, relation=99))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "relation 99" in e.value.details()
    assert len(together(pb, tstub, ["a0"]).items) > 0


def eval_tables(out):
    """{table: {model: (HR@1, HR@10, queries)}} of recd eval --bought-together -k 1,10."""
    tables, table = {}, None
    for line in out.splitlines():
        if line.startswith(("one seed", "carts of two seeds")):
            table = tables.setdefault(line.split("  ")[0], {})
        m = re.match(r"(bought-together \(\w+|similar|most-popular)\S*.*?\s+([0-9.]+)\s+([0-9.]+)"
                     r"\s+(\d+)", line)
        if m and table is not None:
            table[m.group(1)] = (float(m.group(2)), float(m.group(3)), int(m.group(4)))
    return tables


def test_eval_bought_together_measures_the_served_lists(baskets):
    """recd eval --bought-together: a pair item seeds its partner first (2 of
    each basket's 3 seeds), which popularity cannot do; a cart of the two
    pair items has only the filler left to find."""
    out = run("eval", "--input", baskets[0], "--bought-together", "-k", "1,10",
              "--factors", 16, "--iterations", 8, "--threads", 2).stdout
    tables = eval_tables(out)
    assert set(tables) == {"one seed", "carts of two seeds"}, out
    models = {"bought-together (conditional", "bought-together (lift", "similar", "most-popular"}
    one, two = tables["one seed"], tables["carts of two seeds"]
    assert set(one) == models and set(two) == models, out
    # 300 members, less the 30 whose last basket is "lonely" alone: x 3
    # seeds, or one cart of two (the third item is left over).
    assert {q for _, _, q in one.values()} == {270 * 3}, out
    assert {q for _, _, q in two.values()} == {270}, out
    assert one["bought-together (conditional"][0] >= 2 / 3, out
    assert one["most-popular"][0] < 0.2, out
    assert one["bought-together (conditional"][1] > one["most-popular"][1], out


def test_a_model_without_lists_answers_as_similar(baskets, tmp_path, pb):
    d = tmp_path / "m"
    train(baskets[0], d, "--together-neighbors", 0)
    s = Server(d, tmp_path)
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        r = together(pb, stub, ["a0"], k=5)
        similar = stub.SimilarItems(pb.rec.SimilarItemsRequest(item_id="a0", k=5))
        assert r.fell_back_to_similar
        assert [i.item_id for i in r.items] == [i.item_id for i in similar.items]
    finally:
        assert s.stop() == 0


def test_recd_query_similar_together(tserver):
    out = run("query", "--server", tserver.address, "--json", "similar", "a0", "f1",
              "--together", "-k", 3).stdout
    doc = json.loads(out)
    assert doc["fell_back_to_similar"] is False
    assert doc["items"][0]["item_id"] == "b0"
    out = run("query", "--server", tserver.address, "similar", "lonely", "--together").stdout
    assert "fell back to SIMILAR" in out
    doc = json.loads(run("query", "--server", tserver.address, "--json", "similar", "a0").stdout)
    assert doc["fell_back_to_similar"] is False
    doc = json.loads(run("query", "--server", tserver.address, "--json", "similar", "a0",
                         "--together", "--exclude", "b0", "--category", "f").stdout)
    assert doc["items"] and all(i["item_id"].startswith("f") for i in doc["items"])

"""recd train --items/--users and recd eval --cold-items/--cold-users on a
small generated shop with two tastes (red and blue items) and a catalogue
that has catalogue-only items and bad rows: the bad rows are counted by
reason with their lines, catalogue-only items are in the model with a
vector from their labels that points towards their colour's items, and the
cold-start evaluation ranks better than random."""
import csv
import json
import random

import pytest

from conftest import run, train

N_ITEMS = 12


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    d = tmp_path_factory.mktemp("catalog")
    rng = random.Random(13)
    rows = []
    for u in range(200):
        colour = "r" if u % 2 == 0 else "b"
        for n in range(8):
            # mostly the member's colour, a little of the other
            c = colour if rng.random() < 0.9 else ("b" if colour == "r" else "r")
            rows.append((f"u{u}", f"{c}{rng.randrange(N_ITEMS)}", 1_700_000_000 + u * 100 + n))
    with open(d / "shop.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp"])
        w.writerows(rows)
    with open(d / "items.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "colour", "title", "price", "published"])
        for c, name in (("r", "red"), ("b", "blue")):
            for i in range(N_ITEMS):
                w.writerow([f"{c}{i}", name, f"The {name} thing number {i % 3}", 2.5 + i,
                            "2023-11-01T00:00:00Z"])
            w.writerow([f"{c}new", name, f"A new {name} thing", 3, "2023-12-01T00:00:00Z"])
        w.writerow(["", "red", "no id", 1, ""])                      # line 28: missing id
        w.writerow(["r1", "blue", "again", 1, ""])                   # 29: duplicate
        w.writerow(["x1", "|".join(str(k) for k in range(100)), "", 1, ""])  # 30: too many
        w.writerow(["x2", "red", "", "NaN", ""])                     # 31: bad price
        w.writerow(["x3", "red", "", "1", "soon"])                   # 32: bad time
    with open(d / "users.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "taste"])
        for u in range(200):
            w.writerow([f"u{u}", "red" if u % 2 == 0 else "blue"])
    return d


ITEM_FLAGS = ["--item-label-cols", "colour", "--item-text-col", "title", "--item-price-col",
              "price", "--item-time-col", "published"]


def item(model, item_id):
    p = run("inspect", "--model", model, "--item", item_id, "--json")
    return json.loads(p.stdout)["item"]


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(x * x for x in b) ** 0.5
    return dot / (na * nb)


def test_train_with_catalogue(shop, tmp_path):
    model = tmp_path / "m"
    p = train(shop / "shop.csv", model, "--items", shop / "items.csv", *ITEM_FLAGS,
              "--users", shop / "users.csv", "--user-label-cols", "taste")
    err = p.stderr
    assert "26 items, 5 skipped" in err, err
    assert "missing id 1 [line 28]" in err
    assert "duplicate id (first row kept) 1 [line 29]" in err
    assert "too many labels 1 [line 30]" in err
    assert "bad price 1 [line 31]" in err
    assert "bad time 1 [line 32]" in err
    assert "2 items without interactions got their vector from their labels" in err
    info = json.loads(run("inspect", "--model", model, "--json").stdout)
    assert info["items"] == 2 * N_ITEMS + 2
    assert info["item_map_lambda"] > 0 and info["user_map_lambda"] > 0
    new_red, new_blue = item(model, "rnew"), item(model, "bnew")
    assert new_red["popularity_rank"] > 2 * N_ITEMS  # never bought
    assert new_red["published_unix"] == 1701388800
    assert new_red["price"] == 3
    assert new_red["norm"] > 0
    reds = [item(model, f"r{i}")["factors"] for i in range(N_ITEMS)]
    blues = [item(model, f"b{i}")["factors"] for i in range(N_ITEMS)]
    def mean(vs):
        return [sum(c) / len(vs) for c in zip(*vs)]
    red, blue = mean(reds), mean(blues)
    assert cosine(new_red["factors"], red) > cosine(new_red["factors"], blue)
    assert cosine(new_blue["factors"], blue) > cosine(new_blue["factors"], red)


def table(stdout):
    rows = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in ("attribute-map", "random", "content-profile",
                                            "popular", "same-attribute-popular"):
            rows[parts[0]] = float(parts[1])
    return rows


def test_eval_cold_items_and_users(shop):
    p = run("eval", "--input", shop / "shop.csv", "--items", shop / "items.csv", *ITEM_FLAGS,
            "--cold-items", 0.3, "-k", 10, "--factors", 8, "--threads", 2)
    rows = table(p.stdout)
    assert set(rows) == {"attribute-map", "random", "content-profile"}, p.stdout
    assert rows["attribute-map"] > rows["random"], p.stdout
    assert "summary: cold items NDCG@10" in p.stdout
    p = run("eval", "--input", shop / "shop.csv", "--users", shop / "users.csv",
            "--user-label-cols", "taste", "--cold-users", 0.3, "-k", 10, "--factors", 8,
            "--threads", 2)
    rows = table(p.stdout)
    assert set(rows) == {"attribute-map", "random", "popular", "same-attribute-popular"}, p.stdout
    assert rows["attribute-map"] > rows["popular"], p.stdout


def test_eval_cold_needs_catalogue(shop):
    p = run("eval", "--input", shop / "shop.csv", "--cold-items", 0.2, check=False)
    assert p.returncode == 2 and "--cold-items needs --items" in p.stderr


def test_catalogue_only_item_is_served(shop, tmp_path, pb):
    """An item only in the catalogue is in the served model: SimilarItems
    of it answers with its colour's items, and Rerank scores it for a
    member of its colour above the other new item."""
    from conftest import Server
    model = tmp_path / "m"
    train(shop / "shop.csv", model, "--items", shop / "items.csv", *ITEM_FLAGS)
    s = Server(model, tmp_path)
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        r = stub.SimilarItems(pb.rec.SimilarItemsRequest(item_id="rnew", k=6))
        got = [i.item_id for i in r.items]
        assert sum(g.startswith("r") for g in got) >= 5, got
        r = stub.Rerank(pb.rec.RerankRequest(user_id="u0", candidate_item_ids=["bnew", "rnew"]))
        assert [i.item_id for i in r.items] == ["rnew", "bnew"], r
        r = stub.Rerank(pb.rec.RerankRequest(user_id="u1", candidate_item_ids=["rnew", "bnew"]))
        assert [i.item_id for i in r.items] == ["bnew", "rnew"], r
    finally:
        assert s.stop() == 0

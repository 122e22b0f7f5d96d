"""Recommendation quality on the real datasets of ../shared/data, through the
same `recd eval` command whose figures README quotes."""
import re

import pytest

from conftest import SHARED, run

ML100K = SHARED / "ml-100k" / "u.data"
RETAIL = SHARED / "online_retail_uci" / "online_retail.csv"


def ndcg_of(output, model):
    m = re.search(rf"^{model}\s.*$", output, re.M)
    assert m, f"no {model} row in:\n{output}"
    header = next(line for line in output.splitlines() if "NDCG@10" in line).split()
    return float(m.group(0).split()[header.index("NDCG@10")])


@pytest.mark.skipif(not ML100K.exists(), reason=f"{ML100K} absent (a fresh clone without ../shared/data)")
def test_ml100k_ndcg(tmp_path):
    data = tmp_path / "ml100k.tsv"
    data.write_text("user_id\titem_id\trating\ttimestamp\n" + ML100K.read_text())
    p = run("eval", "--input", data, "--delimiter", "tab", "--factors", 64,
            "--iterations", 15, "--regularization", 0.01, "--alpha", 1.0)
    als, pop = ndcg_of(p.stdout, "als"), ndcg_of(p.stdout, "most-popular")
    assert als >= 0.17, p.stdout
    assert abs(pop - 0.116) < 0.01, p.stdout


RETAIL_FLAGS = ["--user-col", "CustomerID", "--item-col", "StockCode", "--time-col", "InvoiceDate",
                "--quantity-col", "Quantity", "--price-col", "UnitPrice",
                "--factors", 64, "--iterations", 15, "--regularization", 0.01]


@pytest.mark.skipif(not RETAIL.exists(), reason=f"{RETAIL} absent (a fresh clone without ../shared/data)")
def test_online_retail_ndcg_on_the_reference_split():
    # Within an invoice many items share a second. The published figures
    # (implicit 0.082, most-popular 0.018) are reproduced only when those ties
    # go by descending item id; the baseline checks that this is that split.
    p = run("eval", "--input", RETAIL, *RETAIL_FLAGS, "--tie-order", "desc")
    assert "missing user" in p.stderr
    assert abs(ndcg_of(p.stdout, "most-popular") - 0.018) < 0.002, p.stdout
    assert ndcg_of(p.stdout, "als") >= 0.078, p.stdout


@pytest.mark.skipif(not RETAIL.exists(), reason=f"{RETAIL} absent (a fresh clone without ../shared/data)")
def test_online_retail_ndcg_on_the_readme_split():
    # The README protocol (ties by ascending id) gives every model other
    # numbers; ALS must still be far ahead of popularity there.
    p = run("eval", "--input", RETAIL, *RETAIL_FLAGS)
    als, pop = ndcg_of(p.stdout, "als"), ndcg_of(p.stdout, "most-popular")
    assert als >= 0.074 and als >= 2.5 * pop, p.stdout


@pytest.mark.skipif(not ML100K.exists(), reason=f"{ML100K} absent (a fresh clone without ../shared/data)")
@pytest.mark.parametrize("family,flags,floor", [
    ("ease", ["--lambda", 200], 0.193),
    ("knn", ["--neighbors", 100], 0.180),
    ("rp3beta", ["--rp3-alpha", 0.5, "--rp3-beta", 0.5], 0.175),
])
def test_ml100k_item_item_families(tmp_path, family, flags, floor):
    # Each family on the README split, with fixed settings of the kind the
    # literature uses (not tuned on this test split).
    data = tmp_path / "ml100k.tsv"
    data.write_text("user_id\titem_id\trating\ttimestamp\n" + ML100K.read_text())
    p = run("eval", "--input", data, "--delimiter", "tab", "--algorithm", family, *flags,
            "--threads", 2)
    got, als = ndcg_of(p.stdout, family), ndcg_of(p.stdout, "als")
    assert got >= floor, p.stdout
    if family == "ease":
        assert got > als, p.stdout


@pytest.mark.skipif(not ML100K.exists(), reason=f"{ML100K} absent (a fresh clone without ../shared/data)")
def test_ml100k_tune_chooses_a_family_that_beats_every_baseline(tmp_path):
    # Test part cut first; the family and its settings are chosen on a
    # validation split of the rest; the winner is measured on the test part.
    data = tmp_path / "ml100k.tsv"
    data.write_text("user_id\titem_id\trating\ttimestamp\n" + ML100K.read_text())
    p = run("tune", "--input", data, "--delimiter", "tab", "--model", tmp_path / "m",
            "--budget", 20, "--threads", 2, "--test-fraction", 0.2)
    for family in ["als", "ease", "knn", "rp3beta"]:
        assert re.search(rf"^  {family}\s+0\.\d+", p.stdout, re.M), p.stdout
    winner = float(re.search(r"^test: winner NDCG@10 ([0-9.]+)", p.stdout, re.M).group(1))
    assert winner >= 0.195, p.stdout
    test = p.stdout[p.stdout.index("\ntest ("):]
    assert winner > ndcg_of(test, "als-tuned") and winner > ndcg_of(test, "knn"), test
    assert winner > 1.5 * ndcg_of(test, "most-popular"), test
    info = run("inspect", "--model", tmp_path / "m").stdout
    decided = re.search(r"^decision: (\S+?)[ ,]", p.stdout, re.M).group(1)
    want = decided if re.match(r"(ease|knn|rp3beta)", decided) else "als"
    assert re.search(rf"^algorithm\s+{re.escape(want)}$", info, re.M), (info, p.stdout)

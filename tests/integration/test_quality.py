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

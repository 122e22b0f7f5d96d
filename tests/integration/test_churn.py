"""Churn scores and campaign targeting over gRPC (grpcio and recd query):
GetChurnScore and the server-streaming StreamCampaignTargets."""
import csv
import io
import math

import grpc
import pytest

from conftest import Server, run, train

BANDS = {"light", "medium", "heavy"}
SEGMENTS = {"high-value active", "mid-value active", "low-value active", "promising", "at-risk",
            "dormant"}
TIERS = {"ordinary", "bronze", "silver", "gold", "diamond"}


@pytest.fixture(scope="module")
def churn(shop, tmp_path_factory, pb):
    tmp = tmp_path_factory.mktemp("churn")
    p = train(shop.path, tmp / "m", "--churn-horizon", "90d")
    assert "ROC-AUC" in p.stderr  # the evaluation report
    s = Server(tmp / "m", tmp, "--events", tmp / "events")
    s.report = p.stderr
    s.stub = pb.rec_grpc.RecommenderStub(s.channel)
    yield s
    assert s.stop() == 0


def targets(s, pb, **kw):
    return list(s.stub.StreamCampaignTargets(pb.rec.CampaignTargetsRequest(**kw)))


def test_churn_scores_are_probabilities_with_reasons(churn, pb, shop):
    version = churn.stub.GetModelInfo(pb.rec.GetModelInfoRequest()).model_version
    for user in sorted(shop.bought)[:40]:
        c = churn.stub.GetChurnScore(pb.rec.ChurnScoreRequest(user_id=user))
        assert c.user_id == user and c.model_version == version
        assert 0.0 <= c.probability <= 1.0
        assert c.risk_band in BANDS and c.segment in SEGMENTS and c.tier in TIERS
        assert c.rfm.frequency >= 1 and c.rfm.recency_days >= 0 and c.rfm.monetary > 0
        mags = [abs(f.contribution) for f in c.top_factors]
        assert 1 <= len(mags) <= 5 and mags == sorted(mags, reverse=True)


def test_churn_errors(churn, pb, stub):
    with pytest.raises(grpc.RpcError) as e:
        churn.stub.GetChurnScore(pb.rec.ChurnScoreRequest(user_id="nobody-at-all"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        churn.stub.GetChurnScore(pb.rec.ChurnScoreRequest(user_id=""))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:  # a model trained without --churn-horizon
        stub.GetChurnScore(pb.rec.ChurnScoreRequest(user_id="u0001"))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_stream_every_member_ordered_by_churn_probability(churn, pb, shop):
    all_targets = targets(churn, pb)
    assert len(all_targets) == len(shop.bought)
    probs = [t.churn_probability for t in all_targets]
    assert probs == sorted(probs, reverse=True)
    assert len({t.user_id for t in all_targets}) == len(all_targets)
    one = churn.stub.GetChurnScore(pb.rec.ChurnScoreRequest(user_id=all_targets[7].user_id))
    assert math.isclose(one.probability, all_targets[7].churn_probability, rel_tol=1e-6)


def test_stream_filters_are_honoured(churn, pb):
    t = targets(churn, pb, min_probability=0.5, max_probability=0.9)
    assert t and all(0.5 <= x.churn_probability <= 0.9 for x in t)
    t = targets(churn, pb, segments=["at-risk", "dormant"], limit=25)
    assert 0 < len(t) <= 25 and all(x.segment in {"at-risk", "dormant"} for x in t)
    t = targets(churn, pb, tiers=["ordinary"], order=pb.rec.BY_VALUE, limit=50)
    assert all(x.tier == "ordinary" for x in t)
    values = [x.monetary for x in t]
    assert values == sorted(values, reverse=True)
    for bad in [dict(segments=["vip"]), dict(tiers=["platinum"]), dict(min_probability=2),
                dict(order=pb.rec.BY_AFFINITY)]:
        with pytest.raises(grpc.RpcError) as e:
            targets(churn, pb, **bad)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad


def test_stream_by_item_affinity(churn, pb, shop):
    item = shop.popularity.most_common(5)[-1][0]
    t = targets(churn, pb, item_id=item, order=pb.rec.BY_AFFINITY, limit=30)
    aff = [x.affinity for x in t]
    assert len(t) == 30 and aff == sorted(aff, reverse=True) and aff[0] > 0
    category = shop.category[item]
    assert targets(churn, pb, category=category, order=pb.rec.BY_AFFINITY, limit=5)
    with pytest.raises(grpc.RpcError) as e:
        targets(churn, pb, item_id="no-such-item")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_stream_cancelled_early_leaves_the_server_serving(churn, pb):
    for _ in range(6):  # more than the cap of concurrent streams, one after another
        stream = churn.stub.StreamCampaignTargets(pb.rec.CampaignTargetsRequest())
        first = [next(stream) for _ in range(5)]
        stream.cancel()
        assert len(first) == 5
    assert churn.stub.GetModelInfo(pb.rec.GetModelInfoRequest()).users > 0
    assert len(targets(churn, pb, limit=3)) == 3


def test_viewed_but_not_bought(churn, pb, shop):
    item = shop.popularity.most_common(3)[-1][0]
    lookers = sorted(shop.bought)[:6]
    churn.stub.RecordEvents(pb.rec.RecordEventsRequest(events=[
        pb.rec.Event(user_id=u, item_id=item, type=pb.rec.VIEW) for u in lookers] + [
        pb.rec.Event(user_id=lookers[0], item_id=item, type=pb.rec.PURCHASE)]))
    t = targets(churn, pb, item_id=item, viewed_not_bought_days=7)
    assert {x.user_id for x in t} == set(lookers[1:])


def test_recd_query_churn_and_targets_csv(churn, shop):
    user = sorted(shop.bought)[0]
    out = run("query", "--server", churn.address, "churn", user).stdout
    assert "churn probability" in out and "why" in out
    p = run("query", "--server", churn.address, "targets", "--min-prob", "0.7", "--limit", 40,
            "--csv")
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert 0 < len(rows) <= 40 and all(float(r["churn_probability"]) >= 0.7 for r in rows)
    assert "targets:" in p.stderr
    p = run("query", "--server", churn.address, "targets", "--tier", "platinum", check=False)
    assert p.returncode == 1 and "INVALID_ARGUMENT" in p.stderr


def test_clv_fields_and_expected_value_order(churn, pb):
    """BG/NBD and Gamma-Gamma scores travel with every churn score and target."""
    t = targets(churn, pb, order=pb.rec.BY_EXPECTED_VALUE, limit=40)
    assert len(t) == 40
    values = [x.expected_value for x in t]
    assert values == sorted(values, reverse=True) and values[0] > values[-1] >= 0
    assert all(0 <= x.p_alive <= 1 for x in t)
    c = churn.stub.GetChurnScore(pb.rec.ChurnScoreRequest(user_id=t[0].user_id))
    assert 0 <= c.p_alive <= 1 and c.expected_orders > 0
    assert abs(c.expected_value - t[0].expected_value) < 1e-6 * (1 + t[0].expected_value)


def test_the_served_validation_figures_are_the_training_reports(churn, pb):
    """GetChurnModelInfo answers the figures recd train printed (stored in
    the model), and recd query churn-model shows them."""
    info = churn.stub.GetChurnModelInfo(pb.rec.ChurnModelInfoRequest())
    line = next(l for l in churn.report.splitlines() if "logistic regression (calibrated)" in l)
    auc, pr_auc, brier = (float(x) for x in line.split()[-3:])
    assert info.roc_auc == pytest.approx(auc, abs=5e-5)
    assert info.pr_auc == pytest.approx(pr_auc, abs=5e-5)
    assert info.brier == pytest.approx(brier, abs=5e-5)
    recency = next(l for l in churn.report.splitlines() if "recency alone" in l)
    assert info.recency_roc_auc == pytest.approx(float(recency.split()[-3]), abs=5e-5)
    assert f"({info.validation_members} active, {info.validation_churned} churned)" in churn.report
    assert len(info.calibration) == 10
    assert sum(b.members for b in info.calibration) == info.validation_members
    for b in info.calibration:
        assert b.members == 0 or 0 <= b.observed <= 1 and b.low <= b.mean_predicted <= b.high
    out = run("query", "--server", churn.address, "churn-model").stdout
    assert f"ROC-AUC  {info.roc_auc:.3f}" in out, out

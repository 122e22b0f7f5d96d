"""Operators' view: the Prometheus endpoint (parsed with the text-format
parser of the Prometheus Python client) and structured JSON logs."""
import json
import time
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}, text


def sample(families, name, **labels):
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_endpoint_counts_what_happens(model_dir, tmp_path, pb, shop):
    s = Server(model_dir, tmp_path, "--events", tmp_path / "ev", "--metrics-listen",
               "127.0.0.1:0", "--metrics-port-file", tmp_path / "mport", "--log-format", "json")
    try:
        port = int((tmp_path / "mport").read_text())
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        user = sorted(shop.bought)[0]
        for _ in range(7):
            stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=5))
        with pytest.raises(grpc.RpcError):
            stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=0))
        stub.RecordEvents(pb.rec.RecordEventsRequest(events=[
            pb.rec.Event(user_id="m-user", item_id=next(iter(shop.items)), type=pb.rec.VIEW)]))
        stub.Recommend(pb.rec.RecommendRequest(user_id="m-user", k=5))  # a fold-in
        families, text = scrape(port)
        rec = "/recd.v1.Recommender/Recommend"
        grpc_ = {"transport": "grpc", "method": rec}
        assert sample(families, "recd_calls_total", **grpc_, code="OK") == 8
        assert sample(families, "recd_calls_total", **grpc_, code="INVALID_ARGUMENT") == 1
        assert sample(families, "recd_call_seconds_count", **grpc_) == 9
        assert sample(families, "recd_call_seconds_bucket", **grpc_, le="+Inf") == 9
        assert sample(families, "recd_model_info", variant="control") == 1
        assert sample(families, "recd_model_items", variant="control") == len(shop.items)
        assert sample(families, "recd_experiment_share", variant="control") == 1
        assert sample(families, "recd_events_ingested_total") == 1
        assert sample(families, "recd_fold_ins_total") == 1
        assert sample(families, "recd_event_store_commits_total") >= 1
        assert families["recd_call_seconds"].type == "histogram"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
        assert e.value.code == 404
    finally:
        out = s.output()
        assert s.stop() == 0
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "msg"} <= set(l) for l in lines)
    assert any(l["msg"] == "model loaded" and l["variant"] == "control" for l in lines)
    assert any(l["msg"] == "http" and int(l["port"]) == port for l in lines)  # /metrics: HTTP port

"""Every RPC of recd.v1.Recommender and grpc.health.v1.Health over real gRPC,
with the Python grpcio client, and the bad inputs that must get a clean status
while the server keeps serving."""
import re

import grpc
import pytest

from conftest import raw_call

RECOMMEND = "/recd.v1.Recommender/Recommend"


def assert_ranked(items):
    scores = [i.score for i in items]
    assert scores == sorted(scores, reverse=True)
    ids = [i.item_id for i in items]
    assert len(ids) == len(set(ids)), "items must be distinct"


def heavy_buyers(shop, n=20):
    return sorted(shop.bought, key=lambda u: (-len(shop.bought[u]), u))[:n]


def test_recommend_known_user_is_personalized_and_never_a_purchase(stub, pb, shop):
    info = stub.GetModelInfo(pb.rec.GetModelInfoRequest())
    for user in heavy_buyers(shop):
        r = stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=10))
        assert r.strategy == pb.rec.PERSONALIZED
        assert r.model_version == info.model_version
        assert len(r.items) == 10
        assert_ranked(r.items)
        bought = {i.item_id for i in r.items} & shop.bought[user]
        assert not bought, f"{user} was recommended items already bought: {bought}"


def test_include_purchased_lets_bought_items_back(stub, pb, shop):
    seen_bought = False
    for user in heavy_buyers(shop):
        r = stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=20, include_purchased=True))
        assert_ranked(r.items)
        seen_bought |= bool({i.item_id for i in r.items} & shop.bought[user])
    # A user's own purchases score highest under implicit ALS.
    assert seen_bought


def test_exclude_item_ids_are_never_returned(stub, pb, shop):
    user = heavy_buyers(shop)[0]
    first = stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=5))
    excluded = [i.item_id for i in first.items[:3]] + ["no-such-item"]
    r = stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=5, exclude_item_ids=excluded))
    assert len(r.items) == 5
    assert not {i.item_id for i in r.items} & set(excluded)
    assert r.items[0].item_id == first.items[3].item_id


def test_unknown_user_gets_most_popular(stub, pb, shop):
    r = stub.Recommend(pb.rec.RecommendRequest(user_id="never-seen-user", k=10))
    assert r.strategy == pb.rec.POPULAR
    assert len(r.items) == 10
    assert_ranked(r.items)
    counts = [shop.popularity[i.item_id] for i in r.items]
    assert counts == sorted(shop.popularity.values(), reverse=True)[:10]


def test_k_larger_than_catalogue_returns_what_there_is(stub, pb, shop):
    user = heavy_buyers(shop)[0]
    r = stub.Recommend(pb.rec.RecommendRequest(user_id=user, k=1000))
    assert len(r.items) == len(shop.items) - len(shop.bought[user])


def test_similar_items(stub, pb, shop):
    seed = shop.popularity.most_common(1)[0][0]
    r = stub.SimilarItems(pb.rec.SimilarItemsRequest(item_id=seed, k=10))
    assert len(r.items) == 10
    assert seed not in {i.item_id for i in r.items}
    assert_ranked(r.items)
    assert all(-1.0001 <= i.score <= 1.0001 for i in r.items), "cosine similarity"
    assert r.model_version


def test_similar_unknown_item_is_not_found(stub, pb):
    with pytest.raises(grpc.RpcError) as e:
        stub.SimilarItems(pb.rec.SimilarItemsRequest(item_id="no-such-item", k=5))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-item" in e.value.details()


def test_model_info_matches_the_training_data(stub, pb, shop):
    info = stub.GetModelInfo(pb.rec.GetModelInfoRequest())
    assert info.users == len(shop.bought)
    assert info.items == len(shop.items)
    assert info.interactions == shop.rows
    assert info.factors == 16
    assert info.iterations == 8
    assert info.format_version == 2
    assert info.trained_at_unix > 1_700_000_000
    assert len(info.source_fingerprint) == 16
    # <UTC time>-<8 hex of the content fingerprint>[-n] (docs/model-format.md)
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}(-\d+)?", info.model_version), info.model_version


def test_health_check(server, pb):
    h = pb.health_grpc.HealthStub(server.channel)
    ok = pb.health.HealthCheckResponse.SERVING
    assert h.Check(pb.health.HealthCheckRequest()).status == ok
    assert h.Check(pb.health.HealthCheckRequest(service="recd.v1.Recommender")).status == ok
    with pytest.raises(grpc.RpcError) as e:
        h.Check(pb.health.HealthCheckRequest(service="no.such.Service"))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def _bytes_field(number, payload):
    """A length-delimited protobuf field, written by hand so that it can hold
    what the generated classes refuse to encode (invalid UTF-8)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


BAD_REQUESTS = [
    ("k zero", lambda pb: pb.rec.RecommendRequest(user_id="u1", k=0).SerializeToString(),
     grpc.StatusCode.INVALID_ARGUMENT, "k must be"),
    ("k too large", lambda pb: pb.rec.RecommendRequest(user_id="u1", k=1001).SerializeToString(),
     grpc.StatusCode.INVALID_ARGUMENT, "k must be"),
    ("empty user", lambda pb: pb.rec.RecommendRequest(user_id="", k=5).SerializeToString(),
     grpc.StatusCode.INVALID_ARGUMENT, "user_id is empty"),
    ("long user", lambda pb: pb.rec.RecommendRequest(user_id="u" * 257, k=5).SerializeToString(),
     grpc.StatusCode.INVALID_ARGUMENT, "longer than 256"),
    ("invalid utf-8", lambda pb: _bytes_field(1, b"\xff\xfeuser") + b"\x10\x05",
     grpc.StatusCode.INVALID_ARGUMENT, "UTF-8"),
    ("invalid utf-8 exclusion", lambda pb: _bytes_field(1, b"u1") + b"\x10\x05"
     + _bytes_field(4, b"\xc0\xaf"), grpc.StatusCode.INVALID_ARGUMENT, "UTF-8"),
    ("truncated message", lambda pb: b"\x0a\x10abc", grpc.StatusCode.INVALID_ARGUMENT,
     "malformed"),
    ("garbage", lambda pb: b"\xff\xff\xff\xff\xff", grpc.StatusCode.INVALID_ARGUMENT, "malformed"),
    ("empty message", lambda pb: b"", grpc.StatusCode.INVALID_ARGUMENT, "k must be"),
    ("oversized message", lambda pb: b"\x0a" + b"\x80\x80\x80\x03" + b"x" * (6 << 20),
     grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
]


@pytest.mark.parametrize("name,make,code,words", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_recommend_requests_get_a_clear_status(server, pb, stub, name, make, code, words):
    with pytest.raises(grpc.RpcError) as e:
        raw_call(server.channel, RECOMMEND, make(pb))
    assert e.value.code() == code, e.value.details()
    assert words in (e.value.details() or "")
    # ... and the server keeps serving.
    assert stub.GetModelInfo(pb.rec.GetModelInfoRequest()).items > 0


def test_bad_similar_requests(stub, pb):
    for req, words in [(pb.rec.SimilarItemsRequest(item_id="", k=5), "item_id is empty"),
                       (pb.rec.SimilarItemsRequest(item_id="i1", k=0), "k must be")]:
        with pytest.raises(grpc.RpcError) as e:
            stub.SimilarItems(req)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in e.value.details()


def test_unknown_method_is_unimplemented(server, stub, pb):
    for method in ["/recd.v1.Recommender/NoSuchMethod", "/other.Service/Call",
                   "/grpc.health.v1.Health/Watch"]:
        with pytest.raises(grpc.RpcError) as e:
            raw_call(server.channel, method, b"")
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert stub.GetModelInfo(pb.rec.GetModelInfoRequest()).items > 0


def test_concurrent_clients(stub, pb, shop):
    from concurrent.futures import ThreadPoolExecutor

    users = heavy_buyers(shop, 40)
    def ask(u):
        return stub.Recommend(pb.rec.RecommendRequest(user_id=u, k=10))
    with ThreadPoolExecutor(16) as ex:
        results = list(ex.map(ask, users * 5))
    assert all(len(r.items) == 10 for r in results)
    # The same question gets the same answer whichever worker served it.
    assert [r.items[0].item_id for r in results[:40]] == [r.items[0].item_id for r in results[40:80]]

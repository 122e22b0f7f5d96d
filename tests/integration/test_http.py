"""JSON over HTTP (`recd serve --http-listen`): every unary RPC answers the
same over HTTP/JSON as over gRPC (json_format.MessageToDict of the gRPC
reply is the oracle of the proto3 JSON mapping), errors get the HTTP status
of their gRPC code, bad inputs get a clean answer, and the campaign targets
stream as NDJSON and CSV."""
import csv
import http.client
import io
import json
import socket
import ssl
import time
import urllib.error
import urllib.request

import grpc
import pytest
from google.protobuf import json_format

from conftest import Server, run, train

WRITE = "w-token-123"
READ = "r-token-456"
ORIGIN = "https://shop.example"

# gRPC status name -> the HTTP status the issue asks for.
HTTP_OF = {"OK": 200, "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "UNAUTHENTICATED": 401,
           "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429,
           "INTERNAL": 500, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}


@pytest.fixture(scope="module")
def srv(shop, tmp_path_factory, pb):
    tmp = tmp_path_factory.mktemp("http")
    train(shop.path, tmp / "m", "--churn-horizon", "90d")
    (tmp / "wt").write_text(WRITE + "\n")
    (tmp / "rt").write_text(READ + "\n")
    s = Server(tmp / "m", tmp, "--events", tmp / "ev", "--write-token-file", tmp / "wt",
               "--read-token-file", tmp / "rt", "--http-listen", "127.0.0.1:0",
               "--http-port-file", tmp / "hport", "--http-cors-origin",
               f"{ORIGIN},https://other.example", "--max-message-bytes", 1 << 20)
    s.http = f"http://127.0.0.1:{int((tmp / 'hport').read_text())}"
    s.stub = pb.rec_grpc.RecommenderStub(s.channel)
    s.tmp = tmp
    yield s
    out = s.output()
    assert s.stop() == 0, out


def post(s, path, body, headers=None, raw=False, timeout=10):
    """POSTs body (a dict, or bytes as they are) to path; returns (status,
    headers, parsed JSON or the bytes)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(s.http + path, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    return fetch(req, raw, timeout)


def fetch(req, raw=False, timeout=10):
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            return r.status, r.headers, body if raw else json.loads(body)
    except urllib.error.HTTPError as e:
        body = e.read()
        return e.code, e.headers, body if raw else json.loads(body)


def grpc_call(s, pb, method, request_dict, token=None):
    """The gRPC answer to the same request: ("OK", MessageToDict) or
    (status name, details)."""
    stub_method = getattr(s.stub, method)
    req = json_format.ParseDict(request_dict, REQUEST_TYPES[method](pb)())
    md = [("authorization", f"Bearer {token}")] if token else None
    try:
        return "OK", json_format.MessageToDict(stub_method(req, metadata=md, timeout=10))
    except grpc.RpcError as e:
        return e.code().name, e.details()


REQUEST_TYPES = {
    "Recommend": lambda pb: pb.rec.RecommendRequest,
    "SimilarItems": lambda pb: pb.rec.SimilarItemsRequest,
    "GetModelInfo": lambda pb: pb.rec.GetModelInfoRequest,
    "RecordEvents": lambda pb: pb.rec.RecordEventsRequest,
    "SetItemAvailability": lambda pb: pb.rec.SetItemAvailabilityRequest,
    "SetItemBoosts": lambda pb: pb.rec.SetItemBoostsRequest,
    "Rerank": lambda pb: pb.rec.RerankRequest,
    "GetChurnScore": lambda pb: pb.rec.ChurnScoreRequest,
    "ForgetUser": lambda pb: pb.rec.ForgetUserRequest,
    "SetPersonalization": lambda pb: pb.rec.SetPersonalizationRequest,
    "RecordFeedback": lambda pb: pb.rec.RecordFeedbackRequest,
    "SetExperiment": lambda pb: pb.rec.SetExperimentRequest,
    "UpsertItems": lambda pb: pb.rec.UpsertItemsRequest,
    "GetItemStats": lambda pb: pb.rec.ItemStatsRequest,
    "GetChurnModelInfo": lambda pb: pb.rec.ChurnModelInfoRequest,
    "GetMemberOverview": lambda pb: pb.rec.MemberOverviewRequest,
}


def test_every_unary_rpc_of_the_proto_is_covered(pb):
    """The table below has a case for every unary method of the service."""
    service = pb.rec.DESCRIPTOR.services_by_name["Recommender"]
    unary = {m.name for m in service.methods if not m.server_streaming}
    assert unary == set(REQUEST_TYPES)
    assert unary == {c[0] for c in CASES if c[2] == "OK"}


def cases():
    """(method, request as proto3 JSON, the gRPC status expected, token)."""
    return [
        ("Recommend", {"userId": "u000", "k": 5}, "OK", None),
        ("Recommend", {"user_id": "u001", "k": 3, "excludeItemIds": ["i001"],
                       "includePurchased": True}, "OK", None),
        ("Recommend", {"userId": "", "contextItemIds": ["i003", "i004"], "k": 4}, "OK", None),
        ("Recommend", {"userId": "u000", "k": 0}, "INVALID_ARGUMENT", None),
        ("Recommend", {"userId": "u000", "k": 5, "category": "no-such-category"}, "NOT_FOUND",
         None),
        ("SimilarItems", {"itemId": "i003", "k": 5}, "OK", None),
        ("SimilarItems", {"itemId": "i003", "k": 5, "relation": "BOUGHT_TOGETHER"}, "OK", None),
        ("SimilarItems", {"itemId": "i003", "k": 5, "relation": 1}, "OK", None),
        ("SimilarItems", {"itemId": "no-such-item", "k": 5}, "NOT_FOUND", None),
        ("GetModelInfo", {}, "OK", None),
        ("GetItemStats", {"k": 5}, "OK", None),
        ("GetItemStats", {"k": 1001}, "INVALID_ARGUMENT", None),
        ("GetItemStats", {"variant": "nope"}, "NOT_FOUND", None),
        ("Rerank", {"userId": "u002", "candidateItemIds": ["i001", "i002", "zzz"]}, "OK", None),
        ("Rerank", {"userId": "u002"}, "INVALID_ARGUMENT", None),
        ("GetChurnScore", {"userId": "u003"}, "OK", READ),
        ("GetChurnModelInfo", {}, "OK", None),
        ("GetMemberOverview", {}, "OK", READ),
        ("GetMemberOverview", {}, "UNAUTHENTICATED", WRITE),
        ("GetChurnScore", {"userId": "u003"}, "UNAUTHENTICATED", None),
        ("GetChurnScore", {"userId": "nobody-at-all"}, "NOT_FOUND", READ),
        ("RecordEvents", {"events": [{"userId": "u010", "itemId": "i005", "type": "VIEW",
                                      "timestampUnix": str(int(time.time()) - 60)},
                                     {"userId": "u010", "itemId": "", "type": "PURCHASE"}]},
         "OK", WRITE),
        ("RecordEvents", {"events": [{"userId": "u010", "itemId": "i005"}]}, "UNAUTHENTICATED",
         None),
        ("RecordEvents", {"events": [{"userId": "u010", "itemId": "i005"}]}, "UNAUTHENTICATED",
         READ),
        ("SetItemAvailability", {"items": [{"itemId": "i140", "available": True}]}, "OK", WRITE),
        ("SetItemBoosts", {"boosts": [{"itemId": "i141", "multiplier": 1.5}]}, "OK", WRITE),
        ("UpsertItems", {"items": [{"itemId": "n1", "categories": ["c"], "labels": ["x:y"],
                                    "title": "A new thing", "price": 2.5,
                                    "publishedUnix": "1700000000"}, {"itemId": ""}]}, "OK",
         WRITE),
        ("UpsertItems", {"items": [{"itemId": "n2", "price": "NaN"}]}, "OK", WRITE),
        ("SetItemBoosts", {"boosts": [{"itemId": "i141", "multiplier": -1}]}, "INVALID_ARGUMENT",
         WRITE),
        ("ForgetUser", {"userId": "u399"}, "OK", WRITE),
        ("SetPersonalization", {"userId": "u398", "optedOut": False}, "OK", WRITE),
        ("RecordFeedback", {"feedback": [{"requestId": "control:0123456789abcdef",
                                          "userId": "u000", "itemId": "i001",
                                          "type": "IMPRESSION"}]}, "OK", WRITE),
        ("SetExperiment", {"shares": [{"variant": "control", "share": 1}]}, "OK", WRITE),
        ("SetExperiment", {"shares": [{"variant": "nope", "share": 1}]}, "INVALID_ARGUMENT",
         WRITE),
    ]


CASES = cases()


def volatile(method, answer):
    """Drops what differs between two calls by design (a Recommend request id)."""
    if isinstance(answer, dict):
        answer = dict(answer)
        answer.pop("requestId", None)
    return answer


@pytest.mark.parametrize("method,request_json,code,token", CASES,
                         ids=[f"{c[0]}-{i}-{c[2]}" for i, c in enumerate(CASES)])
def test_http_answers_as_grpc(srv, pb, method, request_json, code, token):
    g_code, g_answer = grpc_call(srv, pb, method, request_json, token)
    assert g_code == code, g_answer
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, _, body = post(srv, f"/v1/{method}", request_json, headers)
    assert status == HTTP_OF[code], body
    if code == "OK":
        assert volatile(method, body) == volatile(method, g_answer)
    else:
        assert body["status"] == code
        assert body["code"] == getattr(grpc.StatusCode, code).value[0]
        # The same words: the core's message, or the front end's for tokens.
        if code == "UNAUTHENTICATED":
            assert "Bearer" in body["message"] and "Bearer" in g_answer
        else:
            assert body["message"] == g_answer


def test_64_bit_integers_are_strings_and_accepted_as_numbers(srv):
    status, _, info = post(srv, "/v1/GetModelInfo", {})
    assert status == 200 and isinstance(info["trainedAtUnix"], str)
    assert isinstance(info["interactions"], str) and int(info["interactions"]) > 0
    events = {"events": [{"userId": "u011", "itemId": "i006", "type": 1,
                          "timestampUnix": int(time.time()) - 30}]}
    status, _, body = post(srv, "/v1/RecordEvents", events, {"Authorization": f"Bearer {WRITE}"})
    assert status == 200 and body == {"accepted": 1}, body


@pytest.mark.parametrize("body,words", [
    (b"{", "invalid JSON"),
    (b"{\"userId\": \"u000\", \"k\": 5,}", "invalid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"{\"userId\": 5, \"k\": 5}", "expected a string"),
    (b"{\"userId\": \"u000\", \"k\": \"five\"}", "not an integer"),
    (b"{\"userId\": \"u000\", \"k\": -1}", "negative"),
    (b"{\"userId\": \"u000\", \"k\": 4294967296}", "out of range"),
    (b"{\"userId\": \"u000\", \"k\": 1.5}", "not an integer"),
    (b"{\"userId\": \"u000\", \"diversity\": NaN}", "not JSON"),
    (b"{\"userId\": \"u000\", \"diversity\": 1e999}", "finite"),
    (b"{\"userId\": \"u000\", /* c */ \"k\": 2}", "not JSON"),
    (b"{\"userId\": \"u000\", \"includePurchased\": \"yes\"}", "true or false"),
    (b"{\"userId\": \"u000\", \"excludeItemIds\": \"i001\"}", "expected an array"),
    (b"{\"userId\": \"u000\", \"excludeItemIds\": [null]}", "null in a list"),
    (b"{\"userId\": \"u\\u0000x\", \"k\": 5}", "NUL"),
    (b"{\"userId\": \"\xff\xfe\", \"k\": 5}", "invalid JSON"),
    (b"{\"userId\": \"u000\", \"user_id\": \"u001\"}", "given twice"),
    (b"{\"userId\": \"u000\", \"userId\": \"u001\"}", "twice in one object"),
    (b"{\"userId\": \"u000\", \"nope\": 1}", "no field 'nope'"),
    (b"{\"userId\": \"u000\"} trailing", "invalid JSON"),
    (b"[" * 100 + b"]" * 100, "invalid JSON"),
    (b"{\"a\":" * 100 + b"1" + b"}" * 100, "invalid JSON"),
])
def test_bad_json_gets_400_and_the_server_keeps_serving(srv, body, words):
    status, _, answer = post(srv, "/v1/Recommend", body)
    assert status == 400, answer
    assert answer["status"] == "INVALID_ARGUMENT" and answer["code"] == 3
    assert words in answer["message"], answer["message"]
    assert post(srv, "/v1/Recommend", {"userId": "u000", "k": 2})[0] == 200


def test_an_error_quoting_cut_utf8_is_still_valid_json(srv):
    """The message quotes 40 bytes of the bad value: a cut inside a
    character must not make the answer invalid UTF-8."""
    bad_enum = "a" + "é" * 30  # 40 bytes end inside a character
    status, _, raw = post(srv, "/v1/SimilarItems", {"itemId": "i003", "relation": bad_enum},
                          raw=True)
    assert status == 400
    answer = json.loads(raw.decode("utf-8"))
    assert "Relation" in answer["message"] and "?" in answer["message"]


def test_enum_by_unknown_name_is_refused(srv):
    status, _, answer = post(srv, "/v1/SimilarItems", {"itemId": "i003", "relation": "NEXT"})
    assert status == 400 and "Relation" in answer["message"]


def test_an_empty_body_is_the_empty_message(srv):
    status, _, info = post(srv, "/v1/GetModelInfo", b"")
    assert status == 200 and info["factors"] == 16


def test_a_10_mb_body_gets_413(srv):
    status, headers, answer = post(srv, "/v1/Recommend", b"{\"userId\": \"" + b"x" * (10 << 20)
                                   + b"\"}")
    assert status == 413
    assert answer["status"] == "RESOURCE_EXHAUSTED" and "limit" in answer["message"]
    assert post(srv, "/v1/Recommend", {"userId": "u000", "k": 2})[0] == 200


def peak_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])


def test_a_body_of_a_million_values_is_refused_before_json_c_builds_it(srv):
    """600 kB of [0,0,...] would cost json-c ~250 bytes a value: refused
    by the count first, fast, without the server's peak memory moving."""
    before = peak_kib(srv.proc.pid)
    body = b'{"userId": "u000", "excludeItemIds": [' + b",".join([b"0"] * 300000) + b"]}"
    t = time.monotonic()
    for _ in range(4):
        status, _, answer = post(srv, "/v1/Recommend", body)
        assert status == 400 and "values and keys" in answer["message"], answer
    assert time.monotonic() - t < 5
    assert peak_kib(srv.proc.pid) - before < 20 * 1024


def test_a_chunked_body_over_the_limit_gets_413(srv):
    """No Content-Length to refuse up front: the body is read, not kept."""
    host, port = srv.http[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as c:
        c.sendall(b"POST /v1/Recommend HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        for _ in range(20):  # 1.3 MB > the 1 MB limit
            c.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        c.sendall(b"0\r\n\r\n")
        answer = c.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_wrong_verb_gets_405_and_unknown_path_404(srv):
    status, headers, answer = fetch(urllib.request.Request(srv.http + "/v1/Recommend"))
    assert status == 405 and "POST" in headers["Allow"]
    status, _, answer = post(srv, "/v1/NoSuchMethod", {})
    assert status == 404 and answer["status"] == "NOT_FOUND"
    status, _, answer = fetch(urllib.request.Request(srv.http + "/etc/passwd"))
    assert status == 404
    status, _, answer = post(srv, "/v1/campaign-targets.csv", {})
    assert status == 405


def test_timeout_header(srv):
    status, _, answer = post(srv, "/v1/Recommend", {"userId": "u000", "k": 2},
                             {"X-Recd-Timeout": "0m"})
    assert status == 504 and answer["status"] == "DEADLINE_EXCEEDED"
    status, _, answer = post(srv, "/v1/Recommend", {"userId": "u000", "k": 2},
                             {"X-Recd-Timeout": "soon"})
    assert status == 400
    for ok in ["200ms", "200m", "2S", "1M"]:
        assert post(srv, "/v1/Recommend", {"userId": "u000", "k": 2},
                    {"X-Recd-Timeout": ok})[0] == 200


def test_cors_for_the_configured_origins_only(srv):
    req = urllib.request.Request(srv.http + "/v1/Recommend", method="OPTIONS", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    status, headers, _ = fetch(req, raw=True)
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in headers["Access-Control-Allow-Headers"]
    status, headers, _ = post(srv, "/v1/GetModelInfo", {}, {"Origin": "https://other.example"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://other.example"
    status, headers, _ = post(srv, "/v1/GetModelInfo", {}, {"Origin": "https://evil.example"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    req = urllib.request.Request(srv.http + "/v1/Recommend", method="OPTIONS",
                                 headers={"Origin": "https://evil.example"})
    assert fetch(req, raw=True)[0] == 403


def grpc_targets(srv, pb, request):
    md = [("authorization", f"Bearer {READ}")]
    req = json_format.ParseDict(request, pb.rec.CampaignTargetsRequest())
    return [json_format.MessageToDict(t) for t in srv.stub.StreamCampaignTargets(req, metadata=md)]


def test_ndjson_stream_equals_the_grpc_stream(srv, pb):
    for request in [{}, {"limit": 7, "order": "BY_VALUE"},
                    {"minProbability": 0.5, "segments": ["at-risk", "dormant"]},
                    {"itemId": "i003", "order": "BY_AFFINITY", "limit": 20}]:
        status, headers, body = post(srv, "/v1/StreamCampaignTargets", request,
                                     {"Authorization": f"Bearer {READ}"}, raw=True)
        assert status == 200 and headers["Content-Type"] == "application/x-ndjson"
        assert headers["Transfer-Encoding"] == "chunked"
        lines = [json.loads(line) for line in body.decode().splitlines()]
        assert lines == grpc_targets(srv, pb, request)
        assert lines, request


def test_stream_errors_before_the_first_target_get_their_status(srv):
    status, _, answer = post(srv, "/v1/StreamCampaignTargets", {"itemId": "no-such-item"},
                             {"Authorization": f"Bearer {READ}"})
    assert status == 404 and answer["status"] == "NOT_FOUND"
    status, _, answer = post(srv, "/v1/StreamCampaignTargets", {})
    assert status == 401


def test_a_client_that_goes_away_frees_its_stream_slot(srv):
    """More abandoned streams than the core's 4 slots: each slot comes back."""
    host, port = srv.http[len("http://"):].split(":")
    body = b"{}"
    for _ in range(8):
        c = socket.create_connection((host, int(port)), timeout=10)
        c.sendall(b"POST /v1/StreamCampaignTargets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  + READ.encode() + b"\r\nContent-Length: 2\r\n\r\n" + body)
        assert c.recv(64).startswith(b"HTTP/1.1 200")
        c.close()
    deadline = time.monotonic() + 15
    while True:
        status, _, _ = post(srv, "/v1/StreamCampaignTargets", {"limit": 1},
                            {"Authorization": f"Bearer {READ}"}, raw=True)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200


def test_csv_equals_recd_query_targets_csv(srv):
    query = [("limit", "25"), ("order", "BY_VALUE"), ("segments", "at-risk,dormant"),
             ("tiers", "ordinary"), ("tiers", "bronze"), ("minProbability", "0.2")]
    url = srv.http + "/v1/campaign-targets.csv?" + "&".join(f"{k}={v}" for k, v in query)
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {READ}"})
    status, headers, body = fetch(req, raw=True)
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    token = srv.tmp / "rt"
    p = run("query", "--server", srv.address, "--token-file", token, "targets", "--csv",
            "--limit", 25, "--order", "value", "--segment", "at-risk", "--segment", "dormant",
            "--tier", "ordinary", "--tier", "bronze", "--min-prob", 0.2)
    assert body.decode() == p.stdout
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert rows and all(r["segment"] in ("at-risk", "dormant") for r in rows)


def test_csv_bad_query_gets_400(srv):
    req = urllib.request.Request(srv.http + "/v1/campaign-targets.csv?nope=1",
                                 headers={"Authorization": f"Bearer {READ}"})
    status, _, answer = fetch(req)
    assert status == 400 and "nope" in answer["message"]


def test_healthz_and_metrics_share_the_port(srv):
    status, _, body = fetch(urllib.request.Request(srv.http + "/healthz"))
    assert status == 200 and body == {"status": "SERVING"}
    status, _, text = fetch(urllib.request.Request(srv.http + "/metrics"), raw=True)
    text = text.decode()
    # One family per figure, both transports in it, told apart by a label.
    assert text.count("# TYPE recd_calls_total counter") == 1
    assert text.count("# TYPE recd_call_seconds histogram") == 1
    assert 'recd_calls_total{transport="grpc",method="/recd.v1.Recommender/Recommend",code="OK"}' \
        in text
    assert 'recd_calls_total{transport="http",method="/recd.v1.Recommender/Recommend",code="OK"}' \
        in text
    assert ('recd_calls_total{transport="http",method="/recd.v1.Recommender/Recommend",'
            'code="INVALID_ARGUMENT"}') in text
    assert 'recd_call_seconds_bucket{transport="http",' in text
    assert 'recd_call_seconds_bucket{transport="grpc",' in text
    assert 'recd_recommend_strategy_total{strategy="PERSONALIZED"}' in text
    status, _, history = fetch(urllib.request.Request(srv.http + "/metrics/history"))
    assert status == 200 and history["stepSeconds"] == 10 and history["samples"]
    first = history["samples"][0]
    assert abs(first["t"] - time.time()) < 3600 and 'recd_calls_total{transport="http"' in first["text"]
    assert "recd_model_info" not in first["text"]  # only calls, latency and strategies


from test_security import pki  # noqa: E402,F401  (the fixture: a CA and certificates)


def https_get(port, pki, path, client=None):
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if client:
        ctx.load_cert_chain(str(pki / f"{client}.pem"), str(pki / f"{client}.key"))
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_tls_flags_serve_https_too(model_dir, pki, tmp_path):
    s = Server(model_dir, tmp_path, "--tls-cert", pki / "server.pem", "--tls-key",
               pki / "server.key", "--http-listen", "127.0.0.1:0", "--http-port-file",
               tmp_path / "hport")
    try:
        port = int((tmp_path / "hport").read_text())
        status, info = https_get(port, pki, "/v1/GetModelInfo")
        assert status == 200 and info["items"] > 0
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/GetModelInfo", data=b"{}",
                                   timeout=5)
    finally:
        assert s.stop() == 0


def test_mutual_tls_over_http_needs_a_client_certificate_of_the_ca(model_dir, pki, tmp_path):
    s = Server(model_dir, tmp_path, "--tls-cert", pki / "server.pem", "--tls-key",
               pki / "server.key", "--tls-client-ca", pki / "ca.pem", "--http-listen",
               "127.0.0.1:0", "--http-port-file", tmp_path / "hport")
    try:
        port = int((tmp_path / "hport").read_text())
        assert https_get(port, pki, "/v1/GetModelInfo", client="client")[0] == 200
        for who in [None, "stranger"]:
            try:
                status, answer = https_get(port, pki, "/v1/GetModelInfo", client=who)
            except (urllib.error.URLError, ConnectionError, ssl.SSLError):
                continue  # refused in the handshake: as good
            assert status == 401 and answer["status"] == "UNAUTHENTICATED", who
    finally:
        assert s.stop() == 0


def test_a_stream_stops_at_its_deadline(srv):
    status, _, body = post(srv, "/v1/StreamCampaignTargets", {}, {
        "Authorization": f"Bearer {READ}", "X-Recd-Timeout": "1u"}, raw=True)
    assert status == 200
    last = json.loads(body.decode().splitlines()[-1])
    assert last["error"]["status"] == "DEADLINE_EXCEEDED", last
    status, _, body = post(srv, "/v1/StreamCampaignTargets", {}, {
        "Authorization": f"Bearer {READ}", "X-Recd-Timeout": "20S"}, raw=True)
    assert status == 200 and "error" not in body.decode()


def test_overload_is_shed_with_429(model_dir, tmp_path):
    """One worker and a queue of one: most of 64 concurrent calls are
    refused at once with RESOURCE_EXHAUSTED / 429, as over gRPC."""
    import concurrent.futures

    s = Server(model_dir, tmp_path, "--threads", "1", "--max-queue", "1", "--http-listen",
               "127.0.0.1:0", "--http-port-file", tmp_path / "hport")
    s.http = f"http://127.0.0.1:{int((tmp_path / 'hport').read_text())}"
    try:
        def call(_):
            return post(s, "/v1/Recommend", {"userId": "u000", "k": 100})
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            answers = list(pool.map(call, range(256)))
        codes = [a[0] for a in answers]
        assert 200 in codes and 429 in codes, codes
        assert all(a[2]["status"] == "RESOURCE_EXHAUSTED" for a in answers if a[0] == 429)
    finally:
        assert s.stop() == 0


def healthz_from(port, source):
    """GET /healthz on a new connection from the loopback address source:
    the status line, or None when the server closed the connection first
    (what it does past a connection limit)."""
    c = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    try:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = c.recv(64)
        return head.split(b"\r\n")[0].decode() if head else None
    except (ConnectionResetError, BrokenPipeError):
        return None
    finally:
        c.close()


def held_connection(port, source):
    """A keep-alive connection from source that the server has taken (its
    first answer read), left open."""
    c = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head = b""
    while b"}" not in head.partition(b"\r\n\r\n")[2]:  # the JSON body, read whole
        chunk = c.recv(4096)
        assert chunk, "the server closed a connection it should hold"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return c


def served_soon(port, source, within=5):
    """Whether a new connection from source is served within `within` s (the
    server notices closed or idle holders with a delay)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if healthz_from(port, source) == "HTTP/1.1 200 OK":
            return True
        time.sleep(0.1)
    return False


def test_connection_limits_are_flags_and_the_server_recovers(model_dir, tmp_path):
    """--http-max-connections 8 --http-max-per-address 4: a fifth connection
    from one address and a ninth in all are closed at once, others are
    served, and once the holders go every address is served again (also
    when they only sit idle for --http-timeout)."""
    s = Server(model_dir, tmp_path, "--http-listen", "127.0.0.1:0", "--http-port-file",
               tmp_path / "hport", "--http-max-connections", "8", "--http-max-per-address", "4",
               "--http-timeout", "4")
    port = int((tmp_path / "hport").read_text())
    held = []
    try:
        held += [held_connection(port, "127.0.0.1") for _ in range(4)]
        assert healthz_from(port, "127.0.0.1") is None
        assert healthz_from(port, "127.0.0.2") == "HTTP/1.1 200 OK"
        held += [held_connection(port, "127.0.0.2") for _ in range(4)]
        assert healthz_from(port, "127.0.0.3") is None  # 8 in all
        for c in held:
            c.close()
        held = []
        assert served_soon(port, "127.0.0.1")
        # Idle holders are closed after --http-timeout: the slots come back.
        held += [held_connection(port, "127.0.0.1") for _ in range(4)]
        assert healthz_from(port, "127.0.0.1") is None
        time.sleep(4)
        assert served_soon(port, "127.0.0.1")
    finally:
        for c in held:
            c.close()
        assert s.stop() == 0
    bad = run("serve", "--model", model_dir, "--listen", "127.0.0.1:0", "--http-listen",
              "127.0.0.1:0", "--http-max-connections", "8", "--http-max-per-address", "9",
              check=False, timeout=30)
    assert bad.returncode != 0 and "from one address" in bad.stderr, bad.stderr
    bad = run("serve", "--model", model_dir, "--http-listen", "127.0.0.1:0",
              "--http-max-connections", "10001", check=False, timeout=30)
    assert bad.returncode == 2 and "http-max-connections" in bad.stderr, bad.stderr


def test_gets_keep_the_connection_alive(srv):
    """The page, Chart.js, /metrics, /healthz and the history keep an
    HTTP/1.1 connection open (a scraper or the dashboard polling reuses
    it), as the API's POSTs do."""
    port = int(srv.http.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for path in ["/", "/chart.js", "/dashboard.json", "/metrics", "/metrics/history",
                     "/healthz", "/metrics"]:
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            assert r.status == 200 and not r.will_close, (path, r.getheaders())
        first = conn.sock
        conn.request("POST", "/v1/GetModelInfo", body=b"{}")
        r = conn.getresponse()
        r.read()
        assert r.status == 200 and conn.sock is first
    finally:
        conn.close()

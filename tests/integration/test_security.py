"""Security, privacy and overload over gRPC: TLS, mutual TLS, the write
token, ForgetUser and opt-out (served at once and left out of the next
training), and load shedding that keeps the server answering."""
import subprocess
import threading
import time

import grpc
import pytest

from conftest import RECD, Server, raw_call, run, train


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for localhost / 127.0.0.1 and a client
    certificate, all signed by the CA; and a second CA nobody trusts."""
    d = tmp_path_factory.mktemp("pki")
    for ca in ["ca", "rogue"]:
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                f"/CN=recd test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, issuer in [("server", "ca"), ("client", "ca"), ("stranger", "rogue")]:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
                f"{name}.key", "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey",
                f"{issuer}.key", "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out",
                f"{name}.pem", cwd=d)
    return d


def secure_channel(server, pki, client=None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / f"{client}.key").read_bytes() if client else None,
        certificate_chain=(pki / f"{client}.pem").read_bytes() if client else None)
    return grpc.secure_channel(server.address, creds)


def info(channel, pb, timeout=5):
    return pb.rec_grpc.RecommenderStub(channel).GetModelInfo(pb.rec.GetModelInfoRequest(),
                                                             timeout=timeout)


def test_tls(model_dir, pki, tmp_path, pb):
    s = Server(model_dir, tmp_path, "--tls-cert", pki / "server.pem", "--tls-key",
               pki / "server.key")
    try:
        with secure_channel(s, pki) as ch:
            assert info(ch, pb).items > 0
        with pytest.raises(grpc.RpcError) as e:  # plain-text clients are not served
            info(s.channel, pb, timeout=3)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        out = run("query", "--server", s.address, "--tls-ca", pki / "ca.pem", "info").stdout
        assert "model_version" in out
    finally:
        assert s.stop() == 0


def expired_certificate(d):
    """A self-signed certificate valid only in January 2020: `openssl ca`
    takes explicit dates, which `openssl req -x509` (OpenSSL 3.0) does not."""
    (d / "ca.cnf").write_text("[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\n"
                              "serial=serial\ndefault_md=sha256\npolicy=p\n[p]\n"
                              "commonName=supplied\n")
    (d / "index.txt").write_text("")
    (d / "serial").write_text("01\n")
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout",
            "old.key", "-out", "old.csr", cwd=d)
    openssl("ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", "old.key", "-in",
            "old.csr", "-out", "old.pem", "-startdate", "20200101000000Z", "-enddate",
            "20200201000000Z", cwd=d)
    return d / "old.pem", d / "old.key"


def test_an_expired_certificate_is_named_or_refused(model_dir, pki, tmp_path):
    cert, key = expired_certificate(tmp_path)
    s = Server(model_dir, tmp_path, "--tls-cert", cert, "--tls-key", key)
    try:
        time.sleep(0.2)
        out = s.output()
        assert "the TLS certificate has expired" in out and "not_after=2020-02-01T00:00:00Z" in out, out
    finally:
        assert s.stop() == 0
    p = subprocess.run([RECD, "serve", "--model", model_dir, "--listen", "127.0.0.1:0",
                        "--tls-cert", cert, "--tls-key", key, "--tls-refuse-expired"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 1, p.stderr
    assert "--tls-refuse-expired" in p.stderr and "not_after=2020-02-01T00:00:00Z" in p.stderr
    # A valid chain starts without a word about expiry, also with the flag.
    s = Server(model_dir, tmp_path, "--tls-cert", pki / "server.pem", "--tls-key",
               pki / "server.key", "--tls-refuse-expired")
    try:
        time.sleep(0.2)
        assert "expire" not in s.output()
    finally:
        assert s.stop() == 0


def test_mutual_tls(model_dir, pki, tmp_path, pb):
    s = Server(model_dir, tmp_path, "--tls-cert", pki / "server.pem", "--tls-key",
               pki / "server.key", "--tls-client-ca", pki / "ca.pem")
    try:
        with secure_channel(s, pki, client="client") as ch:
            assert info(ch, pb).items > 0
        for who in [None, "stranger"]:
            with secure_channel(s, pki, client=who) as ch, pytest.raises(grpc.RpcError) as e:
                info(ch, pb, timeout=3)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE, who
        out = run("query", "--server", s.address, "--tls-ca", pki / "ca.pem", "--tls-cert",
                  pki / "client.pem", "--tls-key", pki / "client.key", "health").stdout
        assert out.strip() == "SERVING"
    finally:
        assert s.stop() == 0


def test_the_token_guards_exactly_the_rpcs_serve_help_names(model_dir, tmp_path, pb):
    """Every unary method of the service, called with an empty request and no
    token: the ones answering UNAUTHENTICATED are the write RPCs, and
    `recd serve --help` must name exactly those."""
    (tmp_path / "token").write_text("s3cret-token\n")
    s = Server(model_dir, tmp_path, "--events", tmp_path / "ev", "--write-token-file",
               tmp_path / "token")
    try:
        guarded = set()
        service = pb.rec.DESCRIPTOR.services_by_name["Recommender"]
        for m in service.methods:
            if m.server_streaming:
                continue
            try:
                raw_call(s.channel, f"/recd.v1.Recommender/{m.name}", b"")
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                    guarded.add(m.name)
    finally:
        assert s.stop() == 0
    assert len(guarded) >= 7
    help_text = run("serve", "--help").stdout
    start = help_text.index("--write-token-file")
    named = {m.name for m in service.methods if m.name in help_text[start:start + 400]}
    assert named == guarded


def test_write_rpcs_need_the_token(model_dir, tmp_path, pb):
    (tmp_path / "token").write_text("s3cret-token\n")
    s = Server(model_dir, tmp_path, "--events", tmp_path / "ev", "--write-token-file",
               tmp_path / "token")
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        req = pb.rec.RecordEventsRequest(events=[pb.rec.Event(user_id="u", item_id="i",
                                                              type=pb.rec.VIEW)])
        for md in [None, [("authorization", "Bearer wrong")], [("authorization", "s3cret-token")]]:
            with pytest.raises(grpc.RpcError) as e:
                stub.RecordEvents(req, metadata=md)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for call, msg in [(stub.SetItemAvailability, pb.rec.SetItemAvailabilityRequest()),
                          (stub.SetItemBoosts, pb.rec.SetItemBoostsRequest()),
                          (stub.ForgetUser, pb.rec.ForgetUserRequest(user_id="u")),
                          (stub.SetPersonalization, pb.rec.SetPersonalizationRequest(user_id="u"))]:
            with pytest.raises(grpc.RpcError) as e:
                call(msg)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = [("authorization", "Bearer s3cret-token")]
        assert stub.RecordEvents(req, metadata=ok).accepted == 1
        assert stub.Recommend(pb.rec.RecommendRequest(user_id="u", k=3)).items  # reads stay open
        p = run("query", "--server", s.address, "--token-file", tmp_path / "token", "event", "u",
                "i", "cart")
        assert '"accepted": 1' in p.stdout or "accepted 1" in p.stdout
        p = run("query", "--server", s.address, "event", "u", "i", "cart", check=False)
        assert p.returncode == 1 and "UNAUTHENTICATED" in p.stderr
    finally:
        assert s.stop() == 0


def test_forget_and_opt_out(shop, tmp_path, pb):
    model = tmp_path / "m"
    train(shop.path, model, "--churn-horizon", "90d")
    s = Server(model, tmp_path, "--events", tmp_path / "ev", "--reload-interval", "0.2")
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        users = sorted(shop.bought, key=lambda u: -len(shop.bought[u]))
        gone, shy = users[0], users[1]
        rec = lambda u: stub.Recommend(pb.rec.RecommendRequest(user_id=u, k=5))
        stub.RecordEvents(pb.rec.RecordEventsRequest(events=[
            pb.rec.Event(user_id=gone, item_id=i, type=pb.rec.VIEW) for i in list(shop.items)[:3]]))
        assert rec(gone).strategy == pb.rec.PERSONALIZED
        assert stub.ForgetUser(pb.rec.ForgetUserRequest(user_id=gone)).events_deleted == 3
        assert rec(gone).strategy == pb.rec.POPULAR  # at once, before any retraining
        with pytest.raises(grpc.RpcError) as e:
            stub.GetChurnScore(pb.rec.ChurnScoreRequest(user_id=gone))
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        targets = stub.StreamCampaignTargets(pb.rec.CampaignTargetsRequest())
        assert gone not in {t.user_id for t in targets}
        r = stub.RecordEvents(pb.rec.RecordEventsRequest(events=[
            pb.rec.Event(user_id=gone, item_id="x", type=pb.rec.VIEW)]))
        assert r.accepted == 0 and "forgotten" in r.rejected[0].reason
        with pytest.raises(grpc.RpcError) as e:
            stub.SetPersonalization(pb.rec.SetPersonalizationRequest(user_id=gone))
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        stub.SetPersonalization(pb.rec.SetPersonalizationRequest(user_id=shy, opted_out=True))
        assert rec(shy).strategy == pb.rec.POPULAR
        stub.SetPersonalization(pb.rec.SetPersonalizationRequest(user_id=shy, opted_out=False))
        assert rec(shy).strategy == pb.rec.PERSONALIZED

        # The next training leaves the forgotten member out, CSV rows included.
        before = stub.GetModelInfo(pb.rec.GetModelInfoRequest())
        p = train(shop.path, model, "--events", tmp_path / "ev")
        assert "1 forgotten members left out" in p.stderr
        deadline = time.monotonic() + 10
        while stub.GetModelInfo(pb.rec.GetModelInfoRequest()).model_version == before.model_version:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert stub.GetModelInfo(pb.rec.GetModelInfoRequest()).users == before.users - 1
        out = run("inspect", "--model", model, "--user", gone, check=False)
        assert out.returncode != 0
    finally:
        assert s.stop() == 0


def test_overload_is_shed_not_queued(model_dir, tmp_path, pb):
    s = Server(model_dir, tmp_path, "--threads", "1", "--max-queue", "2")
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        codes, lock = [], threading.Lock()

        def hammer():
            for _ in range(40):
                try:
                    stub.Recommend(pb.rec.RecommendRequest(user_id="u0001", k=1000), timeout=10)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as e:
                    code = e.code()
                with lock:
                    codes.append(code)
        threads = [threading.Thread(target=hammer) for _ in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, set(codes)
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) > 0
        assert codes.count(grpc.StatusCode.OK) > 0
        assert stub.GetModelInfo(pb.rec.GetModelInfoRequest()).items > 0
        assert "server overloaded" in s.output()
    finally:
        assert s.stop() == 0


def test_calls_whose_deadline_passed_in_the_queue_are_not_worked_on(model_dir, tmp_path, pb):
    """24 clients at once against one worker: a deadline must be long enough
    for the request to arrive whole (else the call ends before it is queued)
    and shorter than the wait behind the others. How long each takes depends
    on the build (TSan is ~10x slower), so the deadline grows until calls are
    skipped (in the queue, or when taken from the poller already late);
    every try must end OK or DEADLINE_EXCEEDED."""
    s = Server(model_dir, tmp_path, "--threads", "1")
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        codes, lock = [], threading.Lock()

        def ask(timeout):
            for _ in range(20):
                try:
                    stub.Recommend(pb.rec.RecommendRequest(user_id="u0001", k=1000), timeout=timeout)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as e:
                    code = e.code()
                with lock:
                    codes.append(code)
        for timeout in (0.002, 0.01, 0.05, 0.25):
            threads = [threading.Thread(target=ask, args=(timeout,)) for _ in range(24)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if "deadline passed" in s.output():
                break
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED}, set(codes)
        assert "deadline passed" in s.output(), "no queued call was skipped"
        assert stub.GetModelInfo(pb.rec.GetModelInfoRequest()).items > 0
    finally:
        assert s.stop() == 0


def test_writes_a_restart_would_lose_are_refused_without_events(stub, pb):
    """The session server keeps no events folder: a privacy choice, an item
    rule or an experiment change would vanish on restart, so none of them
    is answered OK (FAILED_PRECONDITION, naming the flag)."""
    for call, msg in [(stub.ForgetUser, pb.rec.ForgetUserRequest(user_id="u")),
                      (stub.SetPersonalization, pb.rec.SetPersonalizationRequest(user_id="u",
                                                                                  opted_out=True)),
                      (stub.SetItemAvailability, pb.rec.SetItemAvailabilityRequest(
                          items=[pb.rec.ItemAvailability(item_id="i", available=False)])),
                      (stub.SetItemBoosts, pb.rec.SetItemBoostsRequest(
                          boosts=[pb.rec.ItemBoost(item_id="i", multiplier=2.0)])),
                      (stub.SetExperiment, pb.rec.SetExperimentRequest(salt="s"))]:
        with pytest.raises(grpc.RpcError) as e:
            call(msg, timeout=10)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, call
        assert "needs --events for durability" in e.value.details()


def test_one_server_per_events_folder(model_dir, tmp_path, pb):
    """A second `recd serve` on the same --events folder would keep its own
    forgotten members and item rules: it is refused with a clear error and a
    non-zero exit, and the folder is free again once the first stops."""
    ev = tmp_path / "ev"
    first = Server(model_dir, tmp_path, "--events", ev)
    try:
        p = subprocess.run([RECD, "serve", "--model", str(model_dir), "--listen", "127.0.0.1:0",
                            "--events", str(ev)], capture_output=True, text=True, timeout=20)
        assert p.returncode != 0
        assert "is in use by another recd serve" in p.stderr, p.stderr
        assert f"pid {first.proc.pid}" in p.stderr, p.stderr
        stub = pb.rec_grpc.RecommenderStub(first.channel)
        assert stub.ForgetUser(pb.rec.ForgetUserRequest(user_id="u"), timeout=10) is not None
    finally:
        assert first.stop() == 0
    again = Server(model_dir, tmp_path, "--events", ev)
    assert again.stop() == 0


def test_member_data_needs_the_read_token_and_recommend_stays_open(model_dir, tmp_path, pb):
    """Token roles: with --read-token-file, GetChurnScore and
    StreamCampaignTargets (members' churn, spend and segments) need the read
    (marketing) token - not the write token - while Recommend stays open to
    the web tier and writes still need the write token alone."""
    (tmp_path / "write").write_text("w-token\n")
    (tmp_path / "read").write_text("marketing-token\n")
    s = Server(model_dir, tmp_path, "--events", tmp_path / "ev", "--write-token-file",
               tmp_path / "write", "--read-token-file", tmp_path / "read")
    read, write = [("authorization", "Bearer marketing-token")], [("authorization", "Bearer w-token")]
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        churn = lambda md: stub.GetChurnScore(pb.rec.ChurnScoreRequest(user_id="u"),  # noqa: E731
                                              metadata=md, timeout=10)
        targets = lambda md: list(stub.StreamCampaignTargets(  # noqa: E731
            pb.rec.CampaignTargetsRequest(), metadata=md, timeout=10))
        for call in [churn, targets]:
            for md in [None, write, [("authorization", "Bearer marketing-tokeN")]]:
                with pytest.raises(grpc.RpcError) as e:
                    call(md)
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, (call, md)
                assert "personal data" in e.value.details()
            with pytest.raises(grpc.RpcError) as e:  # past the token: this model has no churn
                call(read)
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value.details()
        assert stub.Recommend(pb.rec.RecommendRequest(user_id="u", k=3), timeout=10).items
        ev = pb.rec.RecordEventsRequest(events=[pb.rec.Event(user_id="u", item_id="i",
                                                             type=pb.rec.VIEW)])
        with pytest.raises(grpc.RpcError) as e:
            stub.RecordEvents(ev, metadata=read, timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert stub.RecordEvents(ev, metadata=write, timeout=10).accepted == 1
        guarded = set()
        for m in pb.rec.DESCRIPTOR.services_by_name["Recommender"].methods:
            if m.name in ("ForgetUser", "SetPersonalization", "SetExperiment"):
                continue  # writes, checked above
            fn = (s.channel.unary_stream if m.server_streaming else s.channel.unary_unary)(
                f"/recd.v1.Recommender/{m.name}", request_serializer=None,
                response_deserializer=None)
            try:
                r = fn(b"", metadata=write, timeout=10)
                if m.server_streaming:
                    list(r)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                    guarded.add(m.name)
        assert guarded == {"GetChurnScore", "StreamCampaignTargets", "GetMemberOverview"}
    finally:
        assert s.stop() == 0
    help_text = run("serve", "--help").stdout
    start = help_text.index("--read-token-file")
    assert "GetChurnScore" in help_text[start:start + 200]
    assert "StreamCampaignTargets" in help_text[start:start + 200]
    assert "GetMemberOverview" in help_text[start:start + 200]
    (tmp_path / "same").write_text("w-token\n")
    p = run("serve", "--model", model_dir, "--write-token-file", tmp_path / "write",
            "--read-token-file", tmp_path / "same", check=False)
    assert p.returncode == 2 and "one role each" in p.stderr

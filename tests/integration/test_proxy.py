"""The shipped deployment for untrusted clients: HAProxy with
packaging/haproxy.cfg in front of recd. gRPC core 1.51 buffers an endless
HTTP/2 CONTINUATION sequence whatever recd sets (the CVE-2023-33953 class:
200 MB of CONTINUATION frames left recd at 550 MB resident); through HAProxy
the same flood must leave both processes small and recd serving."""
import os
import shutil
import signal
import socket
import subprocess
import time

import grpc
import pytest

import attacks
from conftest import SOURCE, Server

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
MB = 1024  # kB

pytestmark = pytest.mark.skipif(not os.path.exists(HAPROXY),
                                reason="haproxy is not installed (scripts/setup.sh test)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """haproxy -db -f packaging/haproxy.cfg on a free loopback port."""

    def __init__(self, backend, tmp):
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        env = dict(os.environ, RECD_PROXY_BIND=self.address, RECD_BACKEND=backend)
        self.log = open(tmp / f"haproxy-{time.monotonic_ns()}.log", "w+")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(SOURCE / "packaging/haproxy.cfg")],
                                     env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while True:
            assert self.proc.poll() is None, f"haproxy exited:\n{self.output()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"haproxy did not start:\n{self.output()}"
                time.sleep(0.05)

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture(scope="module")
def deployment(model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proxy")
    recd = Server(model_dir, tmp)
    proxy = Proxy(recd.address, tmp)
    yield recd, proxy
    proxy.stop()
    out = recd.output()
    assert recd.stop() == 0, out


def recommend(address, pb, **kw):
    with grpc.insecure_channel(address, **kw) as channel:
        stub = pb.rec_grpc.RecommenderStub(channel)
        return stub.Recommend(pb.rec.RecommendRequest(user_id="anyone", k=3), timeout=10)


def assert_both_serving(deployment, pb):
    recd, proxy = deployment
    assert recd.proc.poll() is None, recd.output()
    assert proxy.proc.poll() is None, proxy.output()
    assert recommend(proxy.address, pb).items


def test_grpc_works_through_the_proxy(deployment, pb):
    recd, proxy = deployment
    assert len(recommend(proxy.address, pb).items) == 3
    with grpc.insecure_channel(proxy.address) as channel:
        health = pb.health_grpc.HealthStub(channel).Check(pb.health.HealthCheckRequest(), timeout=10)
    assert health.status == pb.health.HealthCheckResponse.SERVING


@pytest.mark.parametrize("style", ["small", "huge"])
def test_a_continuation_flood_is_stopped_by_the_proxy(deployment, pb, style):
    """HEADERS without END_HEADERS, then up to 200 MB or 5 s of CONTINUATION
    frames, against the proxy port."""
    recd, proxy = deployment
    recd0, _ = attacks.memory_kb(recd.proc.pid)
    proxy0, _ = attacks.memory_kb(proxy.proc.pid)
    sent = attacks.continuation_flood(proxy.address, total=200 << 20, seconds=5, style=style)
    time.sleep(0.5)
    recd1, _ = attacks.memory_kb(recd.proc.pid)
    proxy1, _ = attacks.memory_kb(proxy.proc.pid)
    print(f"CONTINUATION flood ({style}) through HAProxy: {sent >> 10} KiB taken; recd VmRSS "
          f"{recd0 // MB} -> {recd1 // MB} MB, haproxy {proxy0 // MB} -> {proxy1 // MB} MB")
    assert recd1 < recd0 + 16 * MB
    assert proxy1 < proxy0 + 16 * MB
    assert_both_serving(deployment, pb)


@pytest.mark.parametrize("encoding", ["snappy", "gzip", "x-unknown"])
def test_a_request_in_another_encoding_is_unimplemented(deployment, pb, encoding):
    """gRPC core 1.51 drops a grpc-encoding it does not know and reads the
    message as uncompressed; the proxy answers UNIMPLEMENTED first."""
    recd, proxy = deployment
    request = pb.rec.RecommendRequest(user_id="anyone", k=3).SerializeToString()
    outcome = attacks.raw_unary(proxy.address, "/recd.v1.Recommender/Recommend",
                                attacks.grpc_message(request, compressed=True),
                                [("grpc-encoding", encoding)])
    assert outcome[:2] == ("status", 12), outcome
    assert_both_serving(deployment, pb)


def test_a_grpcio_gzip_client_gets_unimplemented(deployment, pb):
    recd, proxy = deployment
    with pytest.raises(grpc.RpcError) as e:
        recommend(proxy.address, pb, compression=grpc.Compression.Gzip)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED, e.value
    assert_both_serving(deployment, pb)


def test_identity_is_accepted_through_the_proxy(deployment, pb):
    recd, proxy = deployment
    request = pb.rec.RecommendRequest(user_id="anyone", k=3).SerializeToString()
    outcome = attacks.raw_unary(proxy.address, "/recd.v1.Recommender/Recommend",
                                attacks.grpc_message(request), [("grpc-encoding", "identity")])
    assert outcome[:2] == ("status", 0), outcome


@pytest.mark.xfail(strict=True, reason="gRPC core 1.51 buffers CONTINUATION frames without "
                   "limit; recd cannot bound it in-process (README, Security)")
def test_in_process_the_continuation_flood_is_not_bounded(model_dir, tmp_path, pb):
    """The same flood straight at recd, 64 MB of it: the limitation, kept in
    view. Should a gRPC update fix it, this XPASS fails the suite, and README
    must then be changed."""
    recd = Server(model_dir, tmp_path)
    try:
        rss0, _ = attacks.memory_kb(recd.proc.pid)
        sent = attacks.continuation_flood(recd.address, total=64 << 20, seconds=5)
        time.sleep(0.5)
        rss1, peak = attacks.memory_kb(recd.proc.pid)
        print(f"CONTINUATION flood straight at recd: {sent >> 20} MiB taken; VmRSS "
              f"{rss0 // MB} -> {rss1 // MB} MB, VmHWM {peak // MB} MB")
        assert recd.proc.poll() is None
        assert rss1 < rss0 + 32 * MB
    finally:
        assert recd.stop() == 0


@pytest.mark.parametrize("extra", [[], [("grpc-encoding", "identity")]], ids=["none", "identity"])
def test_a_compressed_flag_without_an_encoding_is_internal(deployment, pb, extra):
    """The gRPC spec: a message flagged compressed with no grpc-encoding (or
    identity) is an error, INTERNAL. gRPC core 1.51 hands it to recd as
    plain bytes (see the next test); the proxy looks at the first byte of
    the first message and answers INTERNAL before recd sees it."""
    recd, proxy = deployment
    request = pb.rec.RecommendRequest(user_id="anyone", k=3).SerializeToString()
    outcome = attacks.raw_unary(proxy.address, "/recd.v1.Recommender/Recommend",
                                attacks.grpc_message(request, compressed=True), extra)
    assert outcome[:2] == ("status", 13), outcome
    assert "compressed flag" in outcome[2]
    assert_both_serving(deployment, pb)


@pytest.mark.xfail(strict=True, reason="gRPC core 1.51 drops the compressed flag of a message "
                   "without grpc-encoding and tells the server nothing (README, Security)")
def test_in_process_a_compressed_flag_without_an_encoding_is_misread(deployment, pb):
    """The same message straight at recd: the limitation, kept in view (an
    XPASS after a gRPC update fails the suite, and README must change)."""
    recd, proxy = deployment
    request = pb.rec.RecommendRequest(user_id="anyone", k=3).SerializeToString()
    outcome = attacks.raw_unary(recd.address, "/recd.v1.Recommender/Recommend",
                                attacks.grpc_message(request, compressed=True))
    assert outcome[:2] in (("status", 13), ("status", 12)), outcome


def test_a_bidirectional_call_works_through_the_proxy(deployment):
    """The proxy waits for the first byte of each call's body: a
    bidirectional call (server reflection), whose client sends and then
    waits, still gets its answers."""
    recd, proxy = deployment
    channel = grpc.insecure_channel(proxy.address)
    call = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                 request_serializer=None, response_deserializer=None)
    list_services = b"\x3a\x00"  # ServerReflectionRequest{list_services: ""}
    answers = list(call(iter([list_services, list_services]), timeout=10))
    assert len(answers) == 2 and all(b"recd.v1.Recommender" in a for a in answers)
    channel.close()


def test_client_connections_cost_recd_no_descriptors_through_the_proxy(deployment, pb):
    """gRPC core 1.51 has no connection cap (no channel argument for it), so
    the proxy is the cap: 300 client connections to HAProxy (each with the
    HTTP/2 preface, then idle) cost recd no descriptor - HAProxy multiplexes
    calls onto at most `maxconn 1000` connections to recd and keeps more
    clients than its own maxconn in the kernel's backlog. The same 300
    straight at recd cost it 300 descriptors."""
    recd, proxy = deployment
    fds = lambda: len(os.listdir(f"/proc/{recd.proc.pid}/fd"))  # noqa: E731
    assert recommend(proxy.address, pb).items  # the proxy's connection to recd is open
    before = fds()
    socks = [attacks.connect(proxy.address) for _ in range(300)]
    try:
        time.sleep(0.5)
        through_proxy = fds() - before
        assert recommend(proxy.address, pb).items
    finally:
        for s in socks:
            s.close()
    socks = [attacks.connect(recd.address) for _ in range(300)]
    try:
        time.sleep(0.5)
        direct = fds() - before
    finally:
        for s in socks:
            s.close()
    print(f"\n300 idle clients: recd descriptors +{through_proxy} through the proxy, "
          f"+{direct} direct")
    assert through_proxy <= 2
    assert direct >= 290
    assert_both_serving(deployment, pb)


def test_a_stream_flood_without_settings_ack_is_bounded_by_the_proxy(deployment, pb):
    """5,000 half-sent calls on one connection from a client that never
    acknowledges SETTINGS, so gRPC core 1.51 would not apply recd's stream
    limit: HAProxy refuses streams past 100 whatever the client did."""
    recd, proxy = deployment
    recd0, _ = attacks.memory_kb(recd.proc.pid)
    proxy0, _ = attacks.memory_kb(proxy.proc.pid)
    sent = attacks.stream_flood(proxy.address, 5000, ack=False)
    time.sleep(0.5)
    recd1, _ = attacks.memory_kb(recd.proc.pid)
    proxy1, _ = attacks.memory_kb(proxy.proc.pid)
    print(f"\nstream flood through the proxy: {sent} streams sent; recd {recd0 // MB} -> "
          f"{recd1 // MB} MB, haproxy {proxy0 // MB} -> {proxy1 // MB} MB")
    assert recd1 < recd0 + 16 * MB
    assert proxy1 < proxy0 + 32 * MB
    assert_both_serving(deployment, pb)


def test_a_rapid_reset_flood_is_stopped_by_the_proxy(deployment, pb):
    """HEADERS + RST_STREAM for 20,000 streams on one connection (the HTTP/2
    rapid reset). Straight at recd, 100,000 of them took it from 19 MB to
    1.3 GB, kept after the close, and 26,000 log lines (measured once, not
    in the suite: too heavy); gRPC core 1.51 makes a call of every one.
    HAProxy forwards none of them."""
    recd, proxy = deployment
    recd0, _ = attacks.memory_kb(recd.proc.pid)
    lines0 = recd.output().count("\n")
    sent = attacks.rapid_reset(proxy.address, 20000)
    time.sleep(0.5)
    recd1, _ = attacks.memory_kb(recd.proc.pid)
    lines = recd.output().count("\n") - lines0
    print(f"\nrapid reset through the proxy: {sent} streams; recd {recd0 // MB} -> "
          f"{recd1 // MB} MB, {lines} log lines")
    assert recd1 < recd0 + 16 * MB
    assert lines < 100
    assert_both_serving(deployment, pb)

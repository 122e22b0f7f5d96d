"""Hostile clients and clumsy operators at the process level: signals a
daemon must survive, the descriptor limit, addresses gRPC would wrap,
compression bombs, idle connections and a listener that died. After each
attack the server's resident set (VmRSS, and its peak VmHWM) is measured.
The CONTINUATION flood, which nothing in recd bounds, is in test_proxy.py."""
import json
import os
import re
import resource
import signal
import socket
import subprocess
import time
import urllib.request

import grpc
import pytest

import attacks
from conftest import MEMORY_SLACK, RECD, Server, raw_call, train


def wait_port(port_file, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while not (port_file.exists() and port_file.read_text().endswith("\n")):
        assert proc.poll() is None, f"server exited {proc.returncode}"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    return int(port_file.read_text())


def test_a_dead_log_reader_does_not_kill_the_server(model_dir, tmp_path, pb):
    """`recd serve 2>&1 | tee log` with tee killed: the next log line meets
    a closed pipe (SIGPIPE), and the server must go on and stop cleanly."""
    read_end, write_end = os.pipe()
    port_file = tmp_path / "port"
    proc = subprocess.Popen([RECD, "serve", "--model", model_dir, "--listen", "127.0.0.1:0",
                             "--port-file", port_file], stdout=write_end, stderr=write_end)
    os.close(write_end)
    try:
        wait_port(port_file, proc)
        os.close(read_end)  # the reader dies
        proc.send_signal(signal.SIGTERM)  # "stopping" is logged into the dead pipe
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2])
def test_operator_signals_do_not_stop_the_server(model_dir, tmp_path, pb, sig):
    s = Server(model_dir, tmp_path)
    try:
        s.proc.send_signal(sig)
        time.sleep(0.2)
        assert s.proc.poll() is None, f"{sig.name} killed the server"
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        assert stub.Recommend(pb.rec.RecommendRequest(user_id="anyone", k=3), timeout=10).items
    finally:
        assert s.stop() == 0


def test_the_descriptor_soft_limit_is_raised_to_the_hard_one(model_dir, tmp_path):
    """systemd starts services with a soft limit of 1024 descriptors: one per
    connection, so 1,024 idle clients would stop the listener."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f"the hard descriptor limit here is {hard}: nothing to raise")
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    port_file = tmp_path / "port"
    log = open(tmp_path / "log", "w+")

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, want))

    proc = subprocess.Popen([RECD, "serve", "--model", model_dir, "--listen", "127.0.0.1:0",
                             "--port-file", port_file], stdout=log, stderr=log,
                            preexec_fn=limit)
    try:
        wait_port(port_file, proc)
        limits = (open(f"/proc/{proc.pid}/limits").read())
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        assert line.split()[3:5] == [str(want), str(want)], line
        log.seek(0)
        assert "raised the descriptor limit" in log.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("address", ["127.0.0.1:99999", "127.0.0.1:65536", "127.0.0.1:",
                                     "127.0.0.1:8o8o"])
def test_a_port_out_of_range_is_refused_not_wrapped(model_dir, tmp_path, address):
    p = subprocess.run([RECD, "serve", "--model", model_dir, "--listen", address],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 1
    assert "port 0-65535" in p.stderr


def metrics_server(model_dir, tmp_path, *extra):
    s = Server(model_dir, tmp_path, "--metrics-listen", "127.0.0.1:0", "--metrics-port-file",
               tmp_path / "mport", *extra)
    return s, int((tmp_path / "mport").read_text())


def scrape(port, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
        assert r.status == 200
        return r.read().decode()


def closed_by_peer(sock, timeout):
    """True when the server closes sock (EOF or reset) within timeout s."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_half_sent_requests_do_not_blind_the_metrics_endpoint(model_dir, tmp_path):
    """300 connections from one address that send half a request and wait:
    beyond the per-address limit they are closed at once, the rest when the
    connection timeout passes, and a scraper from another address is
    answered meanwhile."""
    s, port = metrics_server(model_dir, tmp_path)
    socks = []
    try:
        for _ in range(300):
            c = socket.socket()
            c.bind(("127.0.0.2", 0))  # the whole of 127/8 is this host
            c.connect(("127.0.0.1", port))
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never the blank line
            socks.append(c)
        t = time.monotonic()
        assert "recd_" in scrape(port, timeout=5)
        assert time.monotonic() - t < 3
        # Sockets the server refused are closed already (EOF, or a reset).
        refused = sum(closed_by_peer(c, 0.2) for c in socks[-50:])
        assert refused == 50, f"{refused} of the last 50 of 300 half-sent requests closed"
        # The ones it holds are dropped after the timeout (10 s), not kept.
        assert closed_by_peer(socks[0], 20), "a half-sent request was held past the timeout"
        assert "recd_" in scrape(port)
    finally:
        for c in socks:
            c.close()
        assert s.stop() == 0


def test_scrapes_work_with_descriptors_above_fd_setsize(model_dir, tmp_path):
    """select() cannot watch a descriptor above 1023: with 1,100 idle gRPC
    connections open, the scrape's connection gets one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the hard descriptor limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    s, port = metrics_server(model_dir, tmp_path)
    host, grpc_port = s.address.rsplit(":", 1)
    socks = []
    try:
        # HTTP/2 connections that say hello (preface, empty SETTINGS) and
        # then nothing: each holds a descriptor in the server.
        hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
        for _ in range(1100):
            c = socket.create_connection((host, int(grpc_port)))
            c.sendall(hello)
            socks.append(c)
        deadline = time.monotonic() + 20
        while len(os.listdir(f"/proc/{s.proc.pid}/fd")) < 1100:
            assert time.monotonic() < deadline, "the server did not accept the connections"
            time.sleep(0.1)
        t = time.monotonic()
        assert "recd_" in scrape(port, timeout=5)
        assert time.monotonic() - t < 3
    finally:
        for c in socks:
            c.close()
        assert s.stop() == 0


def test_an_idle_client_does_not_delay_the_stop(model_dir, tmp_path, pb):
    """The stop waits for calls in flight, not for connections: a client
    connected with no call must not hold it for the grace period (5 s)."""
    import grpc
    s = Server(model_dir, tmp_path)
    idle = grpc.insecure_channel(s.address)
    try:
        stub = pb.rec_grpc.RecommenderStub(idle)
        stub.Recommend(pb.rec.RecommendRequest(user_id="anyone", k=3), timeout=10)
        time.sleep(0.2)  # connected, no call in flight
        t = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(timeout=20) == 0
        took = time.monotonic() - t
        assert took < 2, f"the stop took {took:.1f} s with one idle client"
    finally:
        idle.close()
        assert s.stop() == 0


# --- compression ---------------------------------------------------------------
# gRPC core 1.51 inflates a gzip message completely before its size check:
# a 1 MB bomb of 1 GiB peaked at 1.1 GB and left 465 MB resident. recd
# enables identity only, so the core refuses gzip and deflate at the headers.

MB = 1024  # kB per MB, for memory_kb figures


def assert_serving(s, pb):
    assert s.proc.poll() is None, f"the server died:\n{s.output()}"
    stub = pb.rec_grpc.RecommenderStub(s.channel)
    assert stub.Recommend(pb.rec.RecommendRequest(user_id="anyone", k=3), timeout=10).items


@pytest.mark.parametrize("algorithm", [grpc.Compression.Gzip, grpc.Compression.Deflate])
def test_a_compressed_request_is_unimplemented(model_dir, tmp_path, pb, algorithm):
    s = Server(model_dir, tmp_path)
    try:
        channel = grpc.insecure_channel(s.address, compression=algorithm)
        stub = pb.rec_grpc.RecommenderStub(channel)
        with pytest.raises(grpc.RpcError) as e:
            stub.Recommend(pb.rec.RecommendRequest(user_id="anyone", k=3), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED, e.value
        channel.close()
        assert_serving(s, pb)
    finally:
        assert s.stop() == 0


def test_a_gzip_bomb_is_refused_before_it_is_inflated(model_dir, tmp_path, pb):
    """1 MB of gzip that inflates to 1 GiB, with the compressed flag set."""
    bomb = attacks.grpc_message(attacks.gzip_bomb(1 << 30), compressed=True)
    s = Server(model_dir, tmp_path)
    try:
        rss0, _ = attacks.memory_kb(s.proc.pid)
        outcome = attacks.raw_unary(s.address, "/recd.v1.Recommender/Recommend", bomb,
                                    [("grpc-encoding", "gzip")])
        assert outcome[:2] == ("status", 12), outcome  # UNIMPLEMENTED
        time.sleep(0.5)
        rss, peak = attacks.memory_kb(s.proc.pid)
        print(f"gzip bomb: VmRSS {rss0 // MB} -> {rss // MB} MB, VmHWM {peak // MB} MB")
        assert peak < rss0 + 32 * MB * MEMORY_SLACK, (rss0, rss, peak)
        assert_serving(s, pb)
    finally:
        assert s.stop() == 0


# --- idle connections and a dead listener ---------------------------------------

def test_an_idle_connection_is_closed(model_dir, tmp_path, pb):
    """--idle-timeout: an HTTP/2 connection that makes no calls gets GOAWAY."""
    s = Server(model_dir, tmp_path, "--idle-timeout", "1")
    try:
        sock = attacks.connect(s.address)
        t0 = time.monotonic()
        assert attacks.wait_goaway(sock, timeout=15) in ("goaway", "eof")
        print(f"idle connection closed after {time.monotonic() - t0:.1f} s")
        sock.close()
        assert_serving(s, pb)
    finally:
        assert s.stop() == 0


def test_a_connection_that_never_speaks_is_closed(model_dir, tmp_path, pb):
    """A TCP connection without the HTTP/2 preface costs a descriptor until
    the handshake timeout (10 s; gRPC's default is 120 s)."""
    s = Server(model_dir, tmp_path)
    try:
        host, port = s.address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=20)
        t0 = time.monotonic()
        assert attacks.wait_goaway(sock, timeout=20) in ("goaway", "eof")
        waited = time.monotonic() - t0
        print(f"silent connection closed after {waited:.1f} s")
        assert waited < 15
        sock.close()
        assert_serving(s, pb)
    finally:
        assert s.stop() == 0


def test_the_self_check_leaves_a_healthy_server_alone(model_dir, tmp_path, pb):
    s = Server(model_dir, tmp_path, "--self-check-interval", "1")
    try:
        time.sleep(5)
        assert_serving(s, pb)
        assert "self-check failed" not in s.output()
    finally:
        assert s.stop() == 0


def test_the_self_check_works_with_tls(model_dir, tmp_path):
    """With TLS the check's HTTP/2 preface is a bad ClientHello: the server
    closing the connection is the answer."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "cert.pem"],
                   cwd=tmp_path, check=True, capture_output=True)
    s = Server(model_dir, tmp_path, "--tls-cert", tmp_path / "cert.pem", "--tls-key",
               tmp_path / "key.pem", "--self-check-interval", "1")
    try:
        time.sleep(5)
        assert s.proc.poll() is None, s.output()
        assert "self-check failed" not in s.output()
    finally:
        assert s.stop() == 0


def log_text(log):
    log.flush()
    log.seek(0)
    return log.read()


def test_a_dead_listener_stops_the_server_with_status_3(model_dir, tmp_path):
    """Soft and hard descriptor limit 256, so that raising the soft limit
    cannot help; 300 idle connections make accept4 fail with EMFILE once,
    after which gRPC 1.51's listener never accepts again, though the
    connections close. The self-check must notice and exit 3."""
    port_file = tmp_path / "port"
    log = open(tmp_path / "log", "w+")

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    proc = subprocess.Popen([RECD, "serve", "--model", model_dir, "--listen", "127.0.0.1:0",
                             "--threads", "2", "--self-check-interval", "1",
                             "--port-file", port_file], stdout=log, stderr=log, preexec_fn=limit)
    socks = []
    try:
        port = wait_port(port_file, proc)
        rss0, _ = attacks.memory_kb(proc.pid)
        for _ in range(300):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        # The server takes them from the backlog at its pace: wait until it
        # has run out of descriptors, else closing them would end the attack.
        deadline = time.monotonic() + 30
        while "Too many open files" not in log_text(log):
            assert time.monotonic() < deadline, "accept4 never failed"
            time.sleep(0.1)
        rss, _ = attacks.memory_kb(proc.pid)
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        print(f"{len(socks)} idle connections: VmRSS {rss0 // MB} -> {rss // MB} MB, {fds} fds")
        for sock in socks:
            sock.close()
        t0 = time.monotonic()
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            rc = None
        out = log_text(log)
        print(f"exited {rc} {time.monotonic() - t0:.1f} s after the connections closed")
        assert rc == 3, out
        assert "Failed accept4: Too many open files" in out
        assert "the listener no longer accepts connections" in out
    finally:
        for sock in socks:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def churn_model(shop, tmp_path_factory):
    d = tmp_path_factory.mktemp("churn") / "m"
    train(shop.path, d, "--churn-horizon", "90d")
    return d


def test_stalled_readers_do_not_hold_the_campaign_stream_slots(churn_model, tmp_path, pb):
    """Six clients open StreamCampaignTargets with a 64-byte window and never
    read on: four hold the four stream slots (the other two are refused),
    until the progress timeout (1 s here) cancels them; then a normal
    client gets its whole stream, and the server's memory stayed bounded."""
    s = Server(churn_model, tmp_path, "--stream-timeout", "1")
    stalled = []
    try:
        before, _ = attacks.memory_kb(s.proc.pid)
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        path = "/recd.v1.Recommender/StreamCampaignTargets"
        stalled = [attacks.stalled_stream(s.address, path, b"") for _ in range(6)]
        time.sleep(0.3)  # all six are in: four hold a slot
        with pytest.raises(grpc.RpcError) as e:
            list(stub.StreamCampaignTargets(pb.rec.CampaignTargetsRequest(), timeout=10))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, "the slots are held"
        started = time.monotonic()
        while True:
            try:
                got = list(stub.StreamCampaignTargets(pb.rec.CampaignTargetsRequest(), timeout=10))
                break
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
                assert time.monotonic() - started < 10, "the stalled readers still hold the slots"
                time.sleep(0.2)
        waited = time.monotonic() - started
        assert len(got) > 100
        after, peak = attacks.memory_kb(s.proc.pid)
        print(f"\nstalled readers: a normal client streamed {len(got)} targets after "
              f"{waited:.1f} s; RSS {before // MB} -> {after // MB} MB (peak {peak // MB} MB)")
        assert after < before + 50 * MB * MEMORY_SLACK
        assert "stream stalled: cancelled" in s.output()
        assert_serving(s, pb)
    finally:
        for sock in stalled:
            sock.close()
        assert s.stop() == 0


LOGFMT_PAIR = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ "]*)(?: |$)')


def logfmt_pairs(line):
    """The key=value pairs of one logfmt line; fails when the line is not
    made of them alone."""
    pairs, at = [], 0
    while at < len(line):
        m = LOGFMT_PAIR.match(line, at)
        assert m, f"not logfmt at {at}: {line!r}"
        pairs.append((m.group(1), m.group(2)))
        at = m.end()
    return pairs


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"a duplicate key: {pairs}"
    return dict(pairs)


FORGERIES = ['x" level=error msg="forged" salt="y',
             'x\nts=2026-01-01T00:00:00.000Z level=error msg="forged"',
             'x\\" msg=\\"forged']


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_client_strings_cannot_forge_log_lines_or_keys(model_dir, tmp_path, pb, fmt):
    """SetExperiment's salt and the ids quoted in a failed call's details
    are the client's: in the log they must stay inside one value of one
    line (no forged line, key or duplicate JSON key)."""
    s = Server(model_dir, tmp_path, "--events", tmp_path / "ev", "--log-format", fmt)
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        for forged in FORGERIES:
            stub.SetExperiment(pb.rec.SetExperimentRequest(salt=forged), timeout=10)
            with pytest.raises(grpc.RpcError):
                stub.Recommend(pb.rec.RecommendRequest(user_id="u", k=3, category=forged),
                               timeout=10)
        assert_serving(s, pb)
    finally:
        out = s.output()
        assert s.stop() == 0
    lines = out.splitlines()
    assert sum("experiment changed" in line for line in lines) == len(FORGERIES)
    for line in lines:
        if fmt == "json":
            fields = json.loads(line, object_pairs_hook=no_duplicates)
        else:
            fields = no_duplicates(logfmt_pairs(line))
        assert "forged" not in fields.get("msg", ""), line
        assert set(fields) & {"ts", "level", "msg"} == {"ts", "level", "msg"}, line


def test_a_connection_cannot_open_unbounded_streams(model_dir, tmp_path, pb):
    """5,000 half-sent calls on one connection: the core's default is no
    stream limit (20,000 took 240 MB, kept after the close). recd sets 100
    per connection, which binds every client that acknowledges the server's
    SETTINGS, as HTTP/2 requires; one that never does is the proxy's
    (test_proxy.py)."""
    s = Server(model_dir, tmp_path)
    try:
        before, _ = attacks.memory_kb(s.proc.pid)
        sent = attacks.stream_flood(s.address, 5000, ack=True)
        time.sleep(0.5)
        after, peak = attacks.memory_kb(s.proc.pid)
        print(f"\nstream flood (acknowledged SETTINGS): {sent} streams sent; RSS "
              f"{before // MB} -> {after // MB} MB, peak {peak // MB} MB")
        assert peak < before + 16 * MB * MEMORY_SLACK
        assert_serving(s, pb)
    finally:
        assert s.stop() == 0


def test_a_flood_of_bad_calls_does_not_flood_the_log(model_dir, tmp_path, pb):
    """3,000 calls reset at once (each one a failed call): at most 20
    "call failed" lines a second reach the log, and the rest are logged as
    one count, so a client cannot fill the disk through the log."""
    s = Server(model_dir, tmp_path)
    try:
        started = time.monotonic()
        attacks.rapid_reset(s.address, 3000)
        time.sleep(1.2)  # a new second: the next failure logs the count held back
        with pytest.raises(grpc.RpcError):
            raw_call(s.channel, "/recd.v1.Recommender/Recommend", b"\xff")
        seconds = time.monotonic() - started
        assert_serving(s, pb)
        out = s.output()
    finally:
        assert s.stop() == 0
    logged = out.count('msg="call failed"')
    held = sum(int(m) for m in re.findall(r'msg="failed calls not logged" held_back=(\d+)', out))
    print(f"\n3,000 reset calls: {logged} lines logged, {held} held back, in {seconds:.1f} s")
    assert logged <= 20 * (int(seconds) + 2)
    assert held > 0

"""Hostile clients and clumsy operators at the process level: signals a
daemon must survive, the descriptor limit, addresses gRPC would wrap."""
import os
import resource
import signal
import subprocess
import time

import pytest

from conftest import RECD, Server


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

"""One h2load run against a gRPC method of a server on this machine, for
scripts/bench.sh: calls/s and latency percentiles as one JSON line.

    python3 tools/bench/grpc_load.py --port P --pid SERVER_PID \
        --method /pkg.Service/Method --body FILE --concurrency C [--seconds 2]

The body file is a framed request (`recd bench body`). C connections with one
call in flight each, one h2load thread. h2load counts HTTP 200 as success even
when the gRPC status in the trailers is an error, so the bytes of response
data per call are reported too: an error answer carries no message.

CPU seconds per call of the server (from /proc/PID/stat) and of h2load are
reported as well: unlike calls/s they hardly move when other work shares
the cores. There is no warm-up period, so that every call the server spent
CPU on is counted (connecting takes a few milliseconds of the run).
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def cpu_seconds(pid):
    """utime + stime of process pid."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="the server's process id")
    ap.add_argument("--method", required=True)
    ap.add_argument("--body", required=True)
    ap.add_argument("--concurrency", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=2.0)
    a = ap.parse_args()
    # Loopback only: the address is fixed here, not taken from the caller.
    url = f"http://127.0.0.1:{a.port}{a.method}"
    with tempfile.TemporaryDirectory(prefix="recd-h2load.") as tmp:
        log = os.path.join(tmp, "requests.log")
        cmd = [
            "h2load", "-t", "1", "-c", str(a.concurrency), "-m", "1",
            "-D", f"{round(a.seconds * 1000)}ms", "--log-file", log, "-d", a.body,
            "-H", "content-type: application/grpc", "-H", "te: trailers", url,
        ]  # fmt: skip
        server0 = cpu_seconds(a.pid)
        client0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.seconds + 60)
        server_cpu = cpu_seconds(a.pid) - server0
        client1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_cpu = client1.ru_utime + client1.ru_stime - client0.ru_utime - client0.ru_stime
        if out.returncode != 0:
            sys.stderr.write(out.stdout + out.stderr)
            sys.exit(f"grpc_load: h2load exited with {out.returncode}")
        # Columns: start (us since epoch), HTTP status, microseconds to the
        # end of the response.
        us = []
        with open(log) as f:
            for line in f:
                cols = line.split()
                if len(cols) == 3 and cols[1] == "200":
                    us.append(int(cols[2]))
    us.sort()
    text = out.stdout
    rate = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", text)
    req = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
    data = re.search(r"\((\d+)\) data", text)
    if not rate or not req or not data:
        sys.stderr.write(text)
        sys.exit("grpc_load: cannot read h2load's summary")
    ok = int(req.group(2))
    json.dump(
        {
            "what": "grpc",
            "method": a.method,
            "concurrency": a.concurrency,
            "seconds": a.seconds,
            "calls_per_s": float(rate.group(1)),
            "succeeded": ok,
            "failed": int(req.group(3)) + int(req.group(4)),
            "p50_ms": percentile(us, 0.5) / 1e3 if us else None,
            "p99_ms": percentile(us, 0.99) / 1e3 if us else None,
            "data_bytes_per_call": int(data.group(1)) / ok if ok else 0,
            "server_cpu_us_per_call": server_cpu / ok * 1e6 if ok else None,
            "client_cpu_us_per_call": client_cpu / ok * 1e6 if ok else None,
        },
        sys.stdout,
        separators=(",", ":"),
    )
    print()


if __name__ == "__main__":
    main()

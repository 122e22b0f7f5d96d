"""The recd command line: query (the C client on the same gRPC API), train's
import diagnostics, model refusal at start-up, hot publication, and --version
with the kernel copies chosen on this CPU (RECD_KERNEL)."""
import json
import os
import platform
import re
import shutil
import subprocess
import time

import pytest

from conftest import Server, run, train


def query(server, *args, check=True):
    return run("query", "--server", server.address, *args, check=check)


def test_query_recommend_table_and_json(server, shop):
    user = max(shop.bought, key=lambda u: len(shop.bought[u]))
    table = query(server, "recommend", user, "-k", 5).stdout
    assert "strategy PERSONALIZED" in table
    rows = [line.split() for line in table.splitlines()[2:]]
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5"]
    doc = json.loads(query(server, "--json", "recommend", user, "-k", 5).stdout)
    assert doc["strategy"] == "PERSONALIZED"
    assert [i["item_id"] for i in doc["items"]] == [r[1] for r in rows]
    assert not {i["item_id"] for i in doc["items"]} & shop.bought[user]


def test_query_exclude_and_unknown_user(server):
    doc = json.loads(query(server, "--json", "recommend", "nobody", "-k", 3).stdout)
    assert doc["strategy"] == "POPULAR" and len(doc["items"]) == 3
    top = doc["items"][0]["item_id"]
    doc = json.loads(query(server, "--json", "recommend", "nobody", "-k", 3,
                           "--exclude", top).stdout)
    assert top not in [i["item_id"] for i in doc["items"]]


def test_query_similar_info_health(server, shop):
    seed = shop.popularity.most_common(1)[0][0]
    doc = json.loads(query(server, "--json", "similar", seed, "-k", 4).stdout)
    assert len(doc["items"]) == 4 and seed not in [i["item_id"] for i in doc["items"]]
    info = json.loads(query(server, "--json", "info").stdout)
    assert info["users"] == len(shop.bought) and info["items"] == len(shop.items)
    assert "model_version" in query(server, "info").stdout
    assert query(server, "health").stdout.strip() == "SERVING"


def test_query_items_counts_what_recommend_served(server):
    before = json.loads(query(server, "--json", "items", "-k", 1000).stdout)
    served = json.loads(query(server, "--json", "recommend", "u007", "-k", 3).stdout)["items"]
    after = json.loads(query(server, "--json", "items", "-k", 1000).stdout)
    assert int(after["recommendAnswers"]) == int(before.get("recommendAnswers", 0)) + 1
    counts = lambda doc: {i["itemId"]: int(i["count"]) for i in doc.get("mostRecommended", [])}
    for item in served:
        assert counts(after)[item["item_id"]] == counts(before).get(item["item_id"], 0) + 1
    assert "Recommend answers since" in query(server, "items").stdout
    p = query(server, "items", "no-such-variant", check=False)
    assert p.returncode == 1 and "NOT_FOUND" in p.stderr


def test_query_errors_exit_nonzero_with_the_status(server):
    p = query(server, "similar", "no-such-item", check=False)
    assert p.returncode == 1 and "NOT_FOUND" in p.stderr and "no-such-item" in p.stderr
    p = query(server, "recommend", "u1", "-k", 0, check=False)
    assert p.returncode == 1 and "INVALID_ARGUMENT" in p.stderr
    p = run("query", "--server", "127.0.0.1:1", "--timeout", "1", "info", check=False)
    assert p.returncode == 1 and "UNAVAILABLE" in p.stderr or "DEADLINE" in p.stderr
    assert run("query", "frobnicate", check=False).returncode == 2


def test_help_for_every_command():
    assert "commands:" in run("--help").stdout
    for cmd in ["gen", "train", "eval", "serve", "query", "inspect"]:
        assert "usage: recd " + cmd in run(cmd, "--help").stdout
    assert run("no-such-command", check=False).returncode == 2


def test_train_refuses_a_file_that_is_not_csv(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\x00\x01\x02\xff binary \x00 data\n" * 10)
    p = run("train", "--input", bad, "--model", tmp_path / "m", check=False)
    assert p.returncode == 1
    assert not (tmp_path / "m" / "current").exists()


def test_train_reports_skipped_rows_with_line_numbers(tmp_path):
    data = tmp_path / "dirty.csv"
    data.write_text("user_id,item_id,timestamp,quantity\n"
                    "u1,i1,2011-12-09T12:50:00,1\n"
                    ",i2,2011-12-09T12:51:00,1\n"          # line 3: missing user
                    "u2,i1,yesterday,1\n"                  # line 4: bad time
                    "u2,i2,1323435000,-2\n"                # line 5: a return
                    "u2,i3,2011-12-09T12:50:00Z,2\n"
                    "u3,i1,2011-12-09T13:50:00+01:00,1\n")
    p = run("train", "--input", data, "--model", tmp_path / "m", "--factors", 4,
            "--iterations", 2)
    assert "3 accepted" in p.stderr or "accepted 3" in p.stderr or " 3 " in p.stderr
    for line in ["3", "4", "5"]:
        assert line in p.stderr
    assert (tmp_path / "m" / "current").exists()


def test_serve_refuses_missing_and_broken_models(tmp_path, model_dir):
    p = run("serve", "--model", tmp_path / "nothing-here", "--listen", "127.0.0.1:0",
            check=False)
    assert p.returncode == 1 and "nothing-here" in p.stderr
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken, symlinks=True)
    data = broken / "current" / "data.mdb"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    p = run("serve", "--model", broken, "--listen", "127.0.0.1:0", check=False)
    assert p.returncode == 1 and "truncated" in p.stderr


def test_publication_is_picked_up_without_restart(shop, tmp_path, pb):
    model = tmp_path / "m"
    first = train(shop.path, model).stdout.strip()
    s = Server(model, tmp_path, "--reload-interval", "0.2")
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        assert stub.GetModelInfo(pb.rec.GetModelInfoRequest()).model_version == first
        second = train(shop.path, model, "--factors", 8).stdout.strip()
        assert second != first
        deadline = time.monotonic() + 10
        while stub.GetModelInfo(pb.rec.GetModelInfoRequest()).model_version != second:
            assert time.monotonic() < deadline, "new model not picked up"
            time.sleep(0.1)
        assert stub.GetModelInfo(pb.rec.GetModelInfoRequest()).factors == 8
        r = stub.Recommend(pb.rec.RecommendRequest(user_id=next(iter(shop.bought)), k=3))
        assert r.model_version == second
    finally:
        assert s.stop() == 0


def cpuinfo_level():
    """The kernel level /proc/cpuinfo's flags allow, as util/cpu.c names it."""
    with open("/proc/cpuinfo") as f:
        flags = next(line for line in f if line.startswith("flags")).split()
    if not {"avx2", "fma"} <= set(flags):
        return "baseline"
    if not {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= set(flags):
        return "avx2"
    return "avx512bf16" if "avx512_bf16" in flags else "avx512"


def test_version_names_the_revision_and_the_kernels_of_this_cpu():
    lines = run("--version").stdout.splitlines()
    m = re.fullmatch(r"recd (\d+\.\d+\.\d+) \(git (\S+)\)", lines[0])
    assert m, lines[0]
    head = subprocess.run(["git", "-C", os.environ["RECD_SOURCE_DIR"], "rev-parse", "--short",
                           "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        # A binary built before the last commit fails here too: rebuild.
        assert head.stdout.strip() in m.group(2), f"HEAD {head.stdout.strip()}, built {lines[0]}"
    assert re.fullmatch(r"compiler: (GNU|Clang) [\d.]+, -march .+", lines[1]), lines[1]
    best = cpuinfo_level() if platform.machine() == "x86_64" else "baseline"
    als = "avx512" if best == "avx512bf16" else best
    assert lines[2] == f"kernels: scoring {best}, als {als} (this CPU supports up to {best})"


def test_recd_kernel_picks_a_lower_level_and_refuses_one_the_cpu_lacks():
    env = dict(os.environ, RECD_KERNEL="baseline")
    assert "kernels: scoring baseline, als baseline" in run("--version", env=env).stdout
    env["RECD_KERNEL"] = "avx1024"
    p = run("--version", env=env, check=False)
    assert p.returncode == 2 and "RECD_KERNEL" in p.stderr and "unknown" in p.stderr
    if cpuinfo_level() != "avx512bf16":
        env["RECD_KERNEL"] = "avx512bf16"
        p = run("gen", "--help", env=env, check=False)
        assert p.returncode == 2 and "cannot run" in p.stderr, p.stderr

"""Publishing while serving: 20 publications under load without one failed
request, rollback, and a trainer killed mid-publish leaving the previous
model served."""
import random
import signal
import subprocess
import threading
import time

import grpc

from conftest import RECD, Server, run, train


def test_twenty_publications_under_load_fail_no_request(shop, tmp_path, pb):
    model = tmp_path / "m"
    train(shop.path, model)
    s = Server(model, tmp_path, "--reload-interval", "0.05")
    stop = threading.Event()
    seen, failures, calls, lock = set(), [], [0], threading.Lock()
    users = sorted(shop.bought)[:50]

    def load():
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        while not stop.is_set():
            try:
                r = stub.Recommend(pb.rec.RecommendRequest(user_id=random.choice(users), k=10),
                                   timeout=5)
                assert len(r.items) == 10
                with lock:
                    seen.add(r.model_version)
                    calls[0] += 1
            except Exception as e:  # any failure at all counts
                with lock:
                    failures.append(repr(e))
    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        published = [train(shop.path, model, "--factors", 8 + i % 3 * 4, "--iterations", 3,
                           "--seed", i).stdout.strip() for i in range(20)]
        time.sleep(0.5)  # let the last one be picked up under load too
    finally:
        stop.set()
        for t in threads:
            t.join()
        out = s.output()
        assert s.stop() == 0
    assert not failures, failures[:5]
    assert calls[0] > 200
    assert published[-1] in seen and len(seen) >= 5, (len(seen), calls[0])
    assert out.count('msg="model loaded"') >= 10
    assert out.count('msg="model closed"') >= 10, "old models are unmapped"


def test_rollback_returns_to_the_previous_version(shop, tmp_path, pb):
    model = tmp_path / "m"
    first = train(shop.path, model).stdout.strip()
    second = train(shop.path, model, "--factors", 8).stdout.strip()
    s = Server(model, tmp_path, "--reload-interval", "0.1")
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        assert stub.GetModelInfo(pb.rec.GetModelInfoRequest()).model_version == second
        assert run("model", "rollback", "--model", model).stdout.strip() == first
        deadline = time.monotonic() + 10
        while stub.GetModelInfo(pb.rec.GetModelInfoRequest()).model_version != first:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        listing = run("model", "versions", "--model", model).stdout.splitlines()
        assert listing == [f"* {first}", f"  {second}"]
    finally:
        assert s.stop() == 0
    only = tmp_path / "single"
    train(shop.path, only)
    p = run("model", "rollback", "--model", only, check=False)
    assert p.returncode == 1 and "rollback" in p.stderr


def test_trainer_killed_mid_publish_leaves_the_previous_model(tmp_path, pb):
    big = tmp_path / "big.csv"
    run("gen", "--users", 40000, "--items", 5000, "--events", 600000, "--output", big)
    model = tmp_path / "m"
    before = run("train", "--input", big, "--model", model, "--factors", 8,
                 "--iterations", 1).stdout.strip()
    s = Server(model, tmp_path, "--reload-interval", "0.05")
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        for delay in [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]:
            p = subprocess.Popen([RECD, "train", "--input", str(big), "--model", str(model),
                                  "--factors", "64", "--iterations", "1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            p.wait()
            current = run("model", "versions", "--model", model).stdout
            r = stub.Recommend(pb.rec.RecommendRequest(user_id="u00001", k=5))
            assert r.items
            if "* " + before in current:  # killed before it could publish: nothing changed
                assert r.model_version == before
        run("inspect", "--model", model)  # whatever is current opens cleanly
        # The next publication cleans up what the killed trainers left.
        train(big, model, "--factors", 8, "--iterations", 1)
        assert not [p for p in (model / "versions").iterdir() if p.name.startswith(".tmp")]
    finally:
        assert s.stop() == 0


def test_a_version_folder_copied_under_a_new_name_is_not_reloaded(shop, tmp_path, pb):
    """An operator copies the served version folder under another name and
    points current at it: the same model, so it is looked into once and not
    reloaded at every interval; a real publication after it still is."""
    import os
    import shutil
    model = tmp_path / "m"
    train(shop.path, model)
    s = Server(model, tmp_path, "--reload-interval", "0.1")
    try:
        stub = pb.rec_grpc.RecommenderStub(s.channel)
        served = stub.GetModelInfo(pb.rec.GetModelInfoRequest(), timeout=10).model_version
        copy = "20991231T000000Z-deadbeef"
        shutil.copytree(model / "versions" / os.readlink(model / "current").split("/")[-1],
                        model / "versions" / copy)
        os.symlink(f"versions/{copy}", model / "current.tmp")
        os.rename(model / "current.tmp", model / "current")
        time.sleep(1.5)  # 15 intervals
        log = s.output()
        assert log.count('msg="model loaded"') == 1, log
        assert log.count("holds the served version: not reloaded") == 1, log
        assert stub.GetModelInfo(pb.rec.GetModelInfoRequest(), timeout=10).model_version == served
        new = train(shop.path, model, "--iterations", 3)
        deadline = time.monotonic() + 10
        while stub.GetModelInfo(pb.rec.GetModelInfoRequest(), timeout=10).model_version == served:
            assert time.monotonic() < deadline, "the next publication was not loaded"
            time.sleep(0.1)
        assert s.output().count('msg="model loaded"') == 2
        assert new.returncode == 0
    finally:
        assert s.stop() == 0

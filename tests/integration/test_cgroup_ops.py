"""Operations engines run through the cgroup: pause/resume, update, events, ps, kill --all (root)."""

import json
import os
import time

import pytest
from testlib import wait_stopped  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]


def state_of(ocipy, cid):
    return json.loads(ocipy("state", cid).stdout)


@pytest.fixture
def running(ocipy, bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # A counter that only advances while the container runs; a second process for kill --all.
    bundle.bind(out, "/out").shell("sleep 1000 & i=0; while :; do i=$((i+1)); echo $i > /out/tick; sleep 0.05; done").write()
    assert ocipy("run", "--detach", "--bundle", bundle.path, "ops").returncode == 0
    yield out / "tick"
    ocipy("delete", "--force", "ops")


def memory_cgroup_file(pid, name):
    for line in open(f"/proc/{pid}/cgroup"):
        _, controllers, path = line.strip().split(":", 2)
        if "memory" in controllers.split(","):
            return f"/sys/fs/cgroup/memory{path}/{name}"
    pytest.skip("no v1 memory controller on this host")


def test_pause_freezes_and_resume_thaws(ocipy, running):
    time.sleep(0.3)
    assert ocipy("pause", "ops").returncode == 0
    assert state_of(ocipy, "ops")["status"] == "paused"
    frozen_at = running.read_text()
    time.sleep(0.4)
    assert running.read_text() == frozen_at, "the container ran while paused"
    r = ocipy("pause", "ops")
    assert r.returncode == 1 and "container not running" in r.stderr
    assert ocipy("resume", "ops").returncode == 0
    assert state_of(ocipy, "ops")["status"] == "running"
    time.sleep(0.4)
    assert running.read_text() != frozen_at
    r = ocipy("resume", "ops")
    assert r.returncode == 1 and "container not paused" in r.stderr


def test_update_from_flags_and_from_stdin(ocipy, running):
    pid = state_of(ocipy, "ops")["pid"]
    assert ocipy("update", "--memory", "64m", "ops").returncode == 0
    assert open(memory_cgroup_file(pid, "memory.limit_in_bytes")).read().strip() == str(64 << 20)
    # docker sends zeros for what it does not change
    docker = {"memory": {"limit": 0, "reservation": 0, "swap": 0}, "cpu": {"shares": 0, "quota": 0, "cpus": ""}, "pids": {"limit": 50}}
    r = ocipy("update", "--resources", "-", "ops", input=json.dumps(docker), capture_output=True)
    assert r.returncode == 0, r.stderr
    assert open(memory_cgroup_file(pid, "memory.limit_in_bytes")).read().strip() == str(64 << 20)
    pids_max = memory_cgroup_file(pid, "memory.limit_in_bytes").replace("/memory/", "/pids/").replace("memory.limit_in_bytes", "pids.max")
    if os.path.exists(pids_max):
        assert open(pids_max).read().strip() == "50"


def test_events_stats_shape(ocipy, running):
    r = ocipy("events", "--stats", "ops")
    assert r.returncode == 0, r.stderr
    event = json.loads(r.stdout)
    assert event["type"] == "stats" and event["id"] == "ops"
    assert {"cpu", "memory", "pids"} <= set(event["data"])
    assert event["data"]["pids"]["current"] >= 3


def test_kill_all_and_ps(ocipy, running):
    pids = json.loads(ocipy("ps", "--format", "json", "ops").stdout)
    assert len(pids) >= 3
    assert ocipy("kill", "--all", "ops", "KILL").returncode == 0
    wait_stopped(ocipy, "ops")
    assert all(not os.path.exists(f"/proc/{p}") or open(f"/proc/{p}/stat").read().split(") ")[1][0] == "Z" for p in pids)
    assert ocipy("delete", "ops").returncode == 0

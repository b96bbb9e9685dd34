"""linux/warm_migration.py: which cgroup.procs it writes, and that it stops."""

import _thread
import os
import time

import pytest

from ocipy.linux import warm_migration


@pytest.mark.parametrize("layout,expected", [
    (["unified/user.slice/s1"], "unified/user.slice/s1"),  # hybrid: v1 controllers elsewhere
    (["user.slice/s1"], "user.slice/s1"),  # pure v2
    (["pids/user.slice"], "pids/user.slice"),  # v1 only: the first controller that is mounted
    (["systemd/user.slice"], "systemd/user.slice"),  # name=systemd
    ([], None),
])
def test_own_procs_file_looks_where_each_layout_mounts_cgroupfs(tmp_path, layout, expected):
    text = "9:name=systemd:/user.slice\n5:pids:/user.slice/\n0::/user.slice/s1\n"
    if "pids/user.slice" in layout and "unified/user.slice/s1" not in layout:
        text = "5:pids:/user.slice/\n9:name=systemd:/user.slice\n"
    for d in layout:
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "cgroup.procs").write_text("")
    found = warm_migration.own_procs_file(text, mounts=str(tmp_path))
    assert found == (None if expected is None else str(tmp_path / expected / "cgroup.procs"))


def test_own_procs_file_finds_this_process_cgroup():
    with open("/proc/self/cgroup") as f:
        found = warm_migration.own_procs_file(f.read())
    if found is None:
        pytest.skip("no cgroup filesystem under /sys/fs/cgroup on this machine")
    with open(found) as f:
        assert str(os.getpid()) in f.read().split()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: writes this process's own cgroup.procs")
def test_begin_keeps_a_thread_writing_until_end():
    def settle(expected):
        deadline = time.monotonic() + 2
        while _thread._count() != expected and time.monotonic() < deadline:
            time.sleep(0.005)
        return _thread._count()

    before = _thread._count()
    warm_migration.begin()
    warm_migration.begin()  # a second begin starts nothing more
    try:
        assert settle(before + 1) == before + 1
        time.sleep(0.05)
        assert _thread._count() == before + 1
    finally:
        warm_migration.end()
    assert settle(before) == before
    with open("/proc/self/cgroup") as f:  # and we are still where we were
        assert warm_migration.own_procs_file(f.read()) is not None

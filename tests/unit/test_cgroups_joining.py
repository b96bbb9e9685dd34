"""Joining a container's cgroups from its state's record (ocipy/linux/cgroups/joining.py), on a
fake tree: which file of which directory gets the "0"."""

import pytest

from ocipy.errors import SetupError
from ocipy.linux.cgroups.joining import RecordedCgroup, join_order
from ocipy.linux.cgroups.v1 import V1Manager


def _tree(tmp_path, names):
    paths = {}
    for name in names:
        d = tmp_path / name.replace("=", "_") / "ctr"
        d.mkdir(parents=True)
        for f in ("tasks", "cgroup.procs"):
            (d / f).write_text("")
        paths[name] = str(d)
    return paths


def _written(paths):
    out = {}
    for name, d in paths.items():
        for f in ("tasks", "cgroup.procs"):
            with open(f"{d}/{f}") as fh:
                if fh.read():
                    out[name] = f
    return out


@pytest.mark.parametrize("skip_v2", [False, True])
def test_hybrid_record_moves_the_thread_through_tasks(tmp_path, skip_v2):
    paths = _tree(tmp_path, ["memory", "pids", "name=systemd", "unified"])
    cg = RecordedCgroup({"version": 1, "driver": "cgroupfs", "paths": paths})
    assert cg.v2_dir() == paths["unified"]
    cg.enter(skip_v2=skip_v2)
    want = {"memory": "tasks", "pids": "tasks", "name=systemd": "tasks"}
    if not skip_v2:
        want["unified"] = "cgroup.procs"
    assert _written(paths) == want


def test_v2_record_writes_cgroup_procs_unless_born_there(tmp_path):
    paths = _tree(tmp_path, ["unified"])
    cg = RecordedCgroup({"version": 2, "driver": "systemd", "paths": paths})
    cg.enter(skip_v2=True)
    assert _written(paths) == {}
    cg.enter(skip_v2=False)
    assert _written(paths) == {"unified": "cgroup.procs"}


def test_disabled_or_missing_record_joins_nothing():
    for record in (None, {}, {"driver": "disabled", "paths": {"memory": "/nonexistent"}}):
        cg = RecordedCgroup(record)
        assert cg.v2_dir() is None
        cg.enter()


def test_a_removed_cgroup_is_a_clear_error(tmp_path):
    cg = RecordedCgroup({"version": 1, "paths": {"pids": str(tmp_path / "gone")}})
    with pytest.raises(SetupError, match=r"^cannot add process \d+ to cgroup .*/gone: No such file or directory$"):
        cg.enter()


def test_same_directories_in_the_same_order_as_the_v1_manager(tmp_path):
    paths = {"cpu": "/cg/cpu,cpuacct/c", "cpuacct": "/cg/cpu,cpuacct/c", "memory": "/cg/memory/c", "unified": "/cg/unified/c"}
    m = V1Manager("c", "/c")
    m.paths = paths
    assert join_order(paths) == m._dirs() == ["/cg/cpu,cpuacct/c", "/cg/memory/c", "/cg/unified/c"]

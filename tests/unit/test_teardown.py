"""delete's lean path: cgroup removal from the recorded state, and the os-free state helpers."""

import os

import pytest

from ocipy.errors import SetupError
from ocipy.fspath import exists
from ocipy.linux.cgroups import teardown
from ocipy.state import StateStore


def _tree(tmp_path):
    """Two fake hierarchies; the container's leaf has a sub-cgroup; one parent is shared."""
    cpu_leaf = tmp_path / "cpu" / "parent" / "ctr"
    mem_leaf = tmp_path / "memory" / "parent" / "ctr"
    (cpu_leaf / "inner").mkdir(parents=True)
    mem_leaf.mkdir(parents=True)
    (tmp_path / "memory" / "parent" / "other").mkdir()  # another container under our parent
    return {
        "version": 1,
        "paths": {"cpu": str(cpu_leaf), "memory": str(mem_leaf)},
        "created": [str(tmp_path / "cpu" / "parent"), str(cpu_leaf), str(tmp_path / "memory" / "parent"), str(mem_leaf)],
    }


def test_destroy_recorded_removes_what_create_made_and_keeps_shared_parents(tmp_path):
    recorded = _tree(tmp_path)
    teardown.destroy_recorded(recorded)
    assert not (tmp_path / "cpu" / "parent").exists()  # ours and empty once the leaf is gone
    assert not (tmp_path / "memory" / "parent" / "ctr").exists()
    assert (tmp_path / "memory" / "parent" / "other").is_dir()  # not ours
    assert (tmp_path / "memory" / "parent").is_dir()  # ours, but another container lives below


def test_destroy_created_returns_what_is_still_there(tmp_path):
    recorded = _tree(tmp_path)
    left = teardown.destroy_created(recorded["created"], set(recorded["paths"].values()))
    assert left == [str(tmp_path / "memory" / "parent")]  # another container lives below
    assert teardown.destroy_created(recorded["created"], set(recorded["paths"].values())) == left  # the rest is gone
    (tmp_path / "memory" / "parent" / "other").rmdir()
    assert teardown.destroy_created(left, set()) == []


def test_destroy_recorded_of_a_disabled_or_missing_record_does_nothing():
    teardown.destroy_recorded({"driver": "disabled"})
    teardown.destroy_recorded(None)


def test_destroy_reports_a_cgroup_that_cannot_be_removed(tmp_path):
    leaf = tmp_path / "pids" / "ctr"
    leaf.mkdir(parents=True)
    (leaf / "cgroup.procs").write_text("4242\n")  # a plain file keeps the directory non-empty
    with pytest.raises(SetupError, match=r"cannot remove cgroup .*ctr.*4242"):
        teardown.destroy_created([str(leaf)], {str(leaf)}, timeout=0.05)


def test_recorded_pids_reads_every_leaf_and_below(tmp_path):
    recorded = _tree(tmp_path)
    cpu_leaf = tmp_path / "cpu" / "parent" / "ctr"
    (cpu_leaf / "cgroup.procs").write_text("10\n11\n")
    (cpu_leaf / "inner" / "cgroup.procs").write_text("12\n")
    (tmp_path / "memory" / "parent" / "ctr" / "cgroup.procs").write_text("10\n")
    assert sorted(teardown.recorded_pids(recorded)) == [10, 11, 12]
    assert teardown.recorded_pids({"paths": {}}) == []


def test_exists_and_release_never_follow_a_symlink_out(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    store = StateStore(str(tmp_path / "root"))
    d = tmp_path / "root" / "c1"
    (d / "sub").mkdir(parents=True)
    (d / "state.json").write_text("{}")
    (d / "sub" / "f").write_text("y")
    os.symlink(outside, d / "link")
    assert exists(str(d / "state.json")) and not exists(str(d / "nope"))
    store.release("c1")
    assert not d.exists()
    assert (outside / "keep").read_text() == "x"

"""create writes the cgroup limits while stage 1 works, all but a pids.limit below 2 (ocipy/create.py)."""

import pytest

from ocipy.create import split_pids_limit


def test_pids_limit_waits_for_stage_1():
    resources = {"memory": {"limit": 1 << 20}, "pids": {"limit": 1}, "devices": [{"allow": False, "access": "rwm"}]}
    early, after = split_pids_limit(resources)
    assert early == {"memory": {"limit": 1 << 20}, "devices": [{"allow": False, "access": "rwm"}]}
    assert after == {"pids": {"limit": 1}}
    assert "pids" in resources  # the config's own dict is left as it was


def test_pids_limit_zero_waits_too():
    assert split_pids_limit({"pids": {"limit": 0}}) == ({}, {"pids": {"limit": 0}})


@pytest.mark.parametrize("pids", [{"limit": 2}, {"limit": 2048}, {"limit": -1}, {}])
def test_a_limit_that_lets_stage_1_fork_goes_in_early(pids):
    """Stage 1 and pid 1 are two tasks: a limit of 2 or more (or none) does not stop the fork."""
    resources = {"cpu": {"shares": 512}, "pids": pids}
    assert split_pids_limit(resources) == (resources, None)


def test_nothing_waits_without_a_pids_limit():
    resources = {"cpu": {"shares": 512}}
    assert split_pids_limit(resources) == (resources, None)
    assert split_pids_limit(None) == (None, None)
    assert split_pids_limit({}) == ({}, None)

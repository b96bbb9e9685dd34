"""create writes the cgroup limits while stage 1 works, all but pids.limit (ocipy/create.py)."""

from ocipy.create import split_pids_limit


def test_pids_limit_waits_for_stage_1():
    resources = {"memory": {"limit": 1 << 20}, "pids": {"limit": 1}, "devices": [{"allow": False, "access": "rwm"}]}
    early, after = split_pids_limit(resources)
    assert early == {"memory": {"limit": 1 << 20}, "devices": [{"allow": False, "access": "rwm"}]}
    assert after == {"pids": {"limit": 1}}
    assert "pids" in resources  # the config's own dict is left as it was


def test_nothing_waits_without_a_pids_limit():
    resources = {"cpu": {"shares": 512}}
    assert split_pids_limit(resources) == (resources, None)
    assert split_pids_limit(None) == (None, None)
    assert split_pids_limit({}) == ({}, None)

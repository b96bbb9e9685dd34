"""The managers' orchestration on a fake cgroup tree made of plain files (no root, no kernel).

This is where the v2 memory/cpu/io/pids paths are driven end to end on a host
whose cgroup2 hierarchy lacks those controllers: the kernel's own checks are
NOT exercised here, only which files ocipy writes, in what order, and which
errors it raises.
"""

import os

import pytest

from ocipy.errors import SetupError
from ocipy.linux import cgroups as cg
from ocipy.linux.cgroups.v1 import V1Manager
from ocipy.linux.cgroups.v2 import V2Manager


def put(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def get(path):
    return path.read_text().strip()


@pytest.fixture
def v2tree(tmp_path):
    root = tmp_path / "cg"
    put(root / "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma\n")
    put(root / "cgroup.subtree_control", "")
    c = root / "ctr"
    for name, text in {
        "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma",
        "cgroup.procs": "", "cgroup.freeze": "0", "cgroup.events": "populated 0\nfrozen 0\n",
        "memory.max": "max", "memory.swap.max": "max", "memory.low": "0", "memory.current": "1000",
        "cpu.max": "max 100000", "cpu.weight": "100", "cpu.max.burst": "0", "cpuset.cpus": "", "cpuset.mems": "",
        "pids.max": "max", "io.weight": "default 100", "io.max": "", "hugetlb.2MB.max": "max",
        "rdma.max": "", "memory.high": "max",
    }.items():
        put(c / name, text)
    m = V2Manager("ctr", "/ctr", str(c), str(root))
    return m, root, c


def test_v2_apply_writes_everything(v2tree):
    m, root, c = v2tree
    m.apply({
        "memory": {"limit": 100 << 20, "swap": 150 << 20, "reservation": 50 << 20, "swappiness": 5},
        "cpu": {"shares": 1024, "quota": 20000, "burst": 500, "cpus": "0", "mems": "0"},
        "pids": {"limit": 7},
        "blockIO": {"weight": 1000, "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 1 << 20}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 2 << 20}],
        "rdma": {"mlx4_0": {"hcaObjects": 9}},
        "unified": {"memory.high": "123456"},
    })
    assert get(c / "memory.max") == str(100 << 20)
    assert get(c / "memory.swap.max") == str(50 << 20)
    assert get(c / "memory.low") == str(50 << 20)
    assert get(c / "cpu.weight") == "100"
    assert get(c / "cpu.max") == "20000 100000"  # period kept from the current value
    assert get(c / "cpu.max.burst") == "500"
    assert get(c / "cpuset.cpus") == "0"
    assert get(c / "pids.max") == "7"
    assert get(c / "io.weight") == "default 10000"  # no io.bfq.weight here: converted
    assert get(c / "io.max") == f"8:0 wbps={1 << 20}"
    assert get(c / "hugetlb.2MB.max") == str(2 << 20)
    assert get(c / "rdma.max") == "mlx4_0 hca_object=9"
    assert get(c / "memory.high") == "123456"  # unified applied after the converted values


def test_v2_bfq_weight_preferred_when_present(v2tree):
    m, root, c = v2tree
    put(c / "io.bfq.weight", "default 100")
    m.apply({"blockIO": {"weight": 300}})
    assert get(c / "io.bfq.weight") == "300"
    assert get(c / "io.weight") == "default 100"


def test_v2_update_swap_alone_uses_current_memory_max(v2tree):
    m, root, c = v2tree
    put(c / "memory.max", str(100 << 20))
    m.update({"memory": {"swap": 300 << 20}})
    assert get(c / "memory.swap.max") == str(200 << 20)


def test_v2_check_before_update(v2tree):
    m, root, c = v2tree
    put(c / "memory.current", "5000000")
    with pytest.raises(SetupError, match="checkBeforeUpdate"):
        m.apply({"memory": {"limit": 1000000, "checkBeforeUpdate": True}})
    assert get(c / "memory.max") == "max"
    m.apply({"memory": {"limit": 1000000}})  # without the check, v2 takes it (and would OOM)
    assert get(c / "memory.max") == "1000000"


def test_v2_missing_controller_enables_then_errors(v2tree):
    m, root, c = v2tree
    put(c / "cgroup.controllers", "cpu")
    with pytest.raises(SetupError) as e:
        m.apply({"pids": {"limit": 3}})
    assert str(e.value).startswith(f"linux.resources.pids.limit: the pids controller is not available in cgroup {c}")
    assert get(root / "cgroup.subtree_control") == "+pids"  # it tried to enable it in the parent
    assert get(c / "pids.max") == "max"


def test_v2_unified_for_unavailable_controller(v2tree):
    m, root, c = v2tree
    put(c / "cgroup.controllers", "memory")
    with pytest.raises(SetupError, match=r"^linux.resources.unified.io.max: the io controller"):
        m.apply({"unified": {"io.max": "8:0 rbps=1"}})


def test_v2_fit_for_create(v2tree):
    m, root, c = v2tree
    m.check_fit_for_create()
    put(c / "cgroup.procs", "123\n")
    with pytest.raises(SetupError, match="not empty: 1 process"):
        m.check_fit_for_create()
    put(c / "cgroup.procs", "")
    put(c / "cgroup.freeze", "1")
    with pytest.raises(SetupError, match="frozen"):
        m.check_fit_for_create()


def test_v2_stats_on_fake_tree(v2tree):
    m, root, c = v2tree
    put(c / "cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 3\nnr_throttled 1\nthrottled_usec 2\n")
    put(c / "memory.stat", "anon 5\nfile 7\n")
    put(c / "pids.current", "2")
    put(c / "io.stat", "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n")
    s = m.stats()
    assert s["cpu"]["usage"] == {"total": 10000, "kernel": 4000, "user": 6000}
    assert s["cpu"]["throttling"] == {"periods": 3, "throttledPeriods": 1, "throttledTime": 2000}
    assert s["memory"]["cache"] == 7 and s["memory"]["usage"]["usage"] == 1000
    assert s["memory"]["usage"]["limit"] == 18446744073709551615
    assert s["pids"] == {"current": 2}
    assert s["blkio"]["ioServiceBytesRecursive"] == [{"major": 8, "op": "Read", "value": 10},
                                                     {"major": 8, "op": "Write", "value": 20}]


@pytest.fixture
def v1tree(tmp_path):
    paths = {}
    files = {
        "memory": {"memory.limit_in_bytes": "9223372036854771712", "memory.memsw.limit_in_bytes": "9223372036854771712",
                   "memory.soft_limit_in_bytes": "", "cgroup.procs": ""},
        "cpu": {"cpu.shares": "1024", "cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000", "cgroup.procs": ""},
        "pids": {"pids.max": "max", "cgroup.procs": ""},
        "devices": {"devices.allow": "", "devices.deny": "", "cgroup.procs": ""},
    }
    for ctrl, fs in files.items():
        d = tmp_path / ctrl / "ctr"
        for n, t in fs.items():
            put(d / n, t)
        paths[ctrl] = str(d)
    m = V1Manager("ctr", "/ctr")
    m.paths = paths
    return m, tmp_path


def test_v1_apply_on_fake_tree(v1tree):
    m, root = v1tree
    m.apply({"memory": {"limit": 1 << 20, "swap": 2 << 20}, "cpu": {"quota": 1000}, "pids": {"limit": 4}})
    d = root / "memory" / "ctr"
    assert get(d / "memory.limit_in_bytes") == str(1 << 20)
    assert get(d / "memory.memsw.limit_in_bytes") == str(2 << 20)
    assert get(root / "cpu" / "ctr" / "cpu.cfs_quota_us") == "1000"
    assert get(root / "pids" / "ctr" / "pids.max") == "4"


def test_v1_missing_controller_and_missing_file(v1tree):
    m, root = v1tree
    with pytest.raises(SetupError, match=r"^linux.resources.blockIO.weight: the blkio cgroup controller is not "):
        m.apply({"blockIO": {"weight": 10}})
    with pytest.raises(SetupError, match=r"^linux.resources.memory.swappiness: this host's memory cgroup has no "
                                         r"memory.swappiness: the kernel offers no such setting in this cgroup "
                                         r"\(cannot write 3 in .*/memory/ctr\)$"):
        m.apply({"memory": {"swappiness": 3}})
    # kernel memory limits on a kernel without them cannot be applied: an error
    with pytest.raises(SetupError, match=r"^linux.resources.memory.kernel: this host's memory cgroup has no "
                                         r"memory.kmem.limit_in_bytes"):
        m.apply({"memory": {"kernel": 1 << 20}})


def test_v1_blkio_weight_without_cfq_or_bfq_names_both_files(v1tree):
    """A kernel without the CFQ and BFQ schedulers has neither weight file (runc fails there too)."""
    m, root = v1tree
    put(root / "blkio" / "ctr" / "blkio.throttle.read_bps_device", "")
    m.paths["blkio"] = str(root / "blkio" / "ctr")
    with pytest.raises(SetupError, match=r"^linux.resources.blockIO.weight: this host's blkio cgroup has no "
                                         r"blkio.weight or blkio.bfq.weight: "):
        m.apply({"blockIO": {"weight": 10}})
    put(root / "blkio" / "ctr" / "blkio.bfq.weight", "default 100")
    m.apply({"blockIO": {"weight": 10}})
    assert get(root / "blkio" / "ctr" / "blkio.bfq.weight") == "10"


def test_a_removed_cgroup_is_not_called_a_missing_setting(v1tree):
    m, root = v1tree
    m.paths["pids"] = str(root / "pids" / "gone")
    with pytest.raises(SetupError, match=r"^linux.resources.pids.limit: cannot write 4 to .*/pids/gone/pids.max: "
                                         r"No such file or directory$"):
        m.apply({"pids": {"limit": 4}})


def test_verified_write_detects_an_ignored_value(v1tree, monkeypatch):
    m, root = v1tree
    put(root / "memory" / "ctr" / "memory.kmem.limit_in_bytes", "")
    from ocipy.linux.cgroups import manager as mg

    monkeypatch.setattr(mg, "write_file", lambda path, value: None)  # the kernel ignores the write
    put(root / "memory" / "ctr" / "memory.kmem.limit_in_bytes", "9223372036854771712")
    with pytest.raises(SetupError, match=r"^linux.resources.memory.kernel: wrote 1048576 to .* but the kernel "
                                         r"applied 9223372036854771712"):
        m.apply({"memory": {"kernel": 1 << 20}})


def test_v1_add_process_writes_every_hierarchy(v1tree):
    m, root = v1tree
    m.add_process(4242)
    for ctrl in ("memory", "cpu", "pids", "devices"):
        assert get(root / ctrl / "ctr" / "cgroup.procs") == "4242"
    assert m.pids() == [4242]


@pytest.mark.parametrize("skip_v2", [False, True])
def test_v1_enter_moves_the_thread_through_tasks(v1tree, skip_v2):
    """v1 hierarchies through `tasks` ("0": the calling thread, no global lock); the unified twin
    of a hybrid host through cgroup.procs, which a process born there skips."""
    m, root = v1tree
    for ctrl in ("memory", "cpu", "pids", "devices"):
        put(root / ctrl / "ctr" / "tasks", "")
    put(root / "unified" / "ctr" / "cgroup.procs", "")
    m.paths[cg.UNIFIED] = str(root / "unified" / "ctr")
    m.enter(skip_v2=skip_v2)
    for ctrl in ("memory", "cpu", "pids", "devices"):
        assert (get(root / ctrl / "ctr" / "tasks"), get(root / ctrl / "ctr" / "cgroup.procs")) == ("0", "")
    assert get(root / "unified" / "ctr" / "cgroup.procs") == ("" if skip_v2 else "0")


def test_v2_enter_writes_cgroup_procs_unless_born_there(v2tree):
    m, root, c = v2tree
    m.enter(skip_v2=True)
    assert get(c / "cgroup.procs") == ""
    m.enter()
    assert get(c / "cgroup.procs") == "0"  # the calling process


def test_v1_freezer_missing_is_reported(v1tree):
    m, root = v1tree
    assert m.is_frozen() is False
    with pytest.raises(SetupError, match="freezer"):
        m.freeze()


def test_v1_create_and_destroy_track_own_dirs(tmp_path):
    m = V1Manager("c", "/a/b")
    m.paths = {"cpu": str(tmp_path / "cpu" / "a" / "b"), "memory": str(tmp_path / "memory" / "a" / "b")}
    (tmp_path / "cpu" / "a").mkdir(parents=True)  # pre-existing parent in one hierarchy
    (tmp_path / "memory").mkdir()
    m.create()
    assert sorted(m.created) == sorted([str(tmp_path / "cpu" / "a" / "b"), str(tmp_path / "memory" / "a"),
                                        str(tmp_path / "memory" / "a" / "b")])
    m.destroy()
    assert (tmp_path / "cpu" / "a").is_dir()  # not ours: kept
    assert not (tmp_path / "memory" / "a").exists()
    assert m.created == []


def test_new_manager_is_cheap_to_import():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import ocipy.linux.cgroups"],
                         capture_output=True, text=True, check=True).stderr
    mods = [line.rsplit("|", 1)[-1].strip() for line in out.splitlines()]
    for heavy in ("ocipy.linux.cgroups.v1", "ocipy.linux.cgroups.v2", "ocipy.linux.cgroups.bpf_devices",
                  "ctypes", "jsonschema", "click"):
        assert heavy not in mods, f"importing ocipy.linux.cgroups pulled in {heavy}"
    assert os.path  # keep the import used
    assert cg.DisabledManager


def test_makedirs_tracked_returns_what_it_made_outermost_first(tmp_path):
    from ocipy.linux.cgroups.manager import makedirs_tracked

    (tmp_path / "a").mkdir()
    made = makedirs_tracked(str(tmp_path / "a" / "b" / "c"))
    assert made == [str(tmp_path / "a" / "b"), str(tmp_path / "a" / "b" / "c")]
    assert makedirs_tracked(str(tmp_path / "a" / "b" / "c")) == []  # there already


def test_makedirs_tracked_refuses_a_file_in_the_way(tmp_path):
    """cgroupsPath "cgroup.procs" names a file of the caller's own cgroup: no cgroup can be
    made there, and create says so (it used to go on and fail at the first limit)."""
    from ocipy.linux.cgroups.manager import makedirs_tracked

    put(tmp_path / "cgroup.procs", "1\n")
    with pytest.raises(NotADirectoryError) as e:
        makedirs_tracked(str(tmp_path / "cgroup.procs"))
    assert e.value.filename == str(tmp_path / "cgroup.procs")

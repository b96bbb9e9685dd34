"""Pure cgroup planning: path resolution, v1/v2 writes and conversions, the device BPF program."""

import json
import struct

import pytest

from ocipy.errors import SetupError
from ocipy.linux import cgroups as cg
from ocipy.linux.cgroups import bpf_devices as bpf
from ocipy.linux.cgroups import manager as mgr
from ocipy.linux.cgroups import resources as res
from ocipy.linux.cgroups import stats

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:38 / /mnt/again rw,relatime - cgroup2 cgroup2 rw
"""

HYBRID_SELF = """\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/bde05f0e
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
"""

V2_MOUNTINFO = "25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"

COMBINED_MOUNTINFO = (
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "33 31 0:30 /docker/abc /sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory\n"
)


# --- discovery and paths ----------------------------------------------------------------------

def test_parse_mountinfo_hybrid():
    hs = mgr.parse_mountinfo(HYBRID_MOUNTINFO, read_controllers=lambda m: ("hugetlb",))
    assert [h.mountpoint for h in hs][:3] == ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/cpuset"]
    assert cg.Hierarchy("/sys/fs/cgroup/systemd", 1, ("name=systemd",), "/") in hs
    v2 = [h for h in hs if h.version == 2]
    assert v2 == [cg.Hierarchy("/sys/fs/cgroup/unified", 2, ("hugetlb",), "/")]  # second mount ignored


def test_parse_mountinfo_combined_controllers_and_root():
    hs = mgr.parse_mountinfo(COMBINED_MOUNTINFO, read_controllers=lambda m: ())
    assert hs[0].controllers == ("cpu", "cpuacct")
    assert hs[1].root == "/docker/abc"


def test_parse_mountinfo_unescapes_space():
    text = r"32 31 0:29 / /tmp/a\040b rw - cgroup2 cgroup2 rw" + "\n"
    assert mgr.parse_mountinfo(text, read_controllers=lambda m: ())[0].mountpoint == "/tmp/a b"


def test_parse_proc_cgroup():
    own = mgr.parse_proc_cgroup(HYBRID_SELF + "10:cpu,cpuacct:/x\n")
    assert own["memory"] == "/process_api/bde05f0e"
    assert own["name=systemd"] == "/"
    assert own[cg.UNIFIED] == "/"
    assert own["cpuacct"] == "/x"


@pytest.mark.parametrize("given,expected", [
    ("/a/b", "/a/b"), ("a/b", "a/b"), ("/a/../../etc", "/etc"), ("../../x", "x"), ("a//b/", "a/b"),
])
def test_clean_path(given, expected):
    assert mgr.clean_path(given) == expected


def test_relative_path_resolves_under_own_cgroup_per_hierarchy():
    m = cg.new_manager("c1", "ocipy-test-x", mountinfo=HYBRID_MOUNTINFO, self_cgroup=HYBRID_SELF)
    assert m.version == 1
    assert m.paths["memory"] == "/sys/fs/cgroup/memory/process_api/bde05f0e/ocipy-test-x"
    assert m.paths["cpu"] == "/sys/fs/cgroup/cpu/ocipy-test-x"
    assert m.paths["name=systemd"] == "/sys/fs/cgroup/systemd/ocipy-test-x"
    assert m.paths[cg.UNIFIED] == "/sys/fs/cgroup/unified/ocipy-test-x"


def test_absolute_path_is_relative_to_mount_point():
    m = cg.new_manager("c1", "/docker/abc", mountinfo=HYBRID_MOUNTINFO, self_cgroup=HYBRID_SELF)
    assert m.paths["memory"] == "/sys/fs/cgroup/memory/docker/abc"
    assert m.paths["pids"] == "/sys/fs/cgroup/pids/docker/abc"


def test_default_path_is_the_id_relative_like_runc():
    m = cg.new_manager("myid", None, mountinfo=HYBRID_MOUNTINFO, self_cgroup=HYBRID_SELF)
    assert m.paths["memory"] == "/sys/fs/cgroup/memory/process_api/bde05f0e/myid"
    assert m.cgroups_path == "myid"


def test_dotdot_cannot_escape_the_hierarchy():
    m = cg.new_manager("c", "/../../../etc", mountinfo=HYBRID_MOUNTINFO, self_cgroup=HYBRID_SELF)
    assert m.paths["memory"] == "/sys/fs/cgroup/memory/etc"
    m = cg.new_manager("c", "../../../etc", mountinfo=HYBRID_MOUNTINFO, self_cgroup=HYBRID_SELF)
    assert m.paths["memory"] == "/sys/fs/cgroup/memory/process_api/bde05f0e/etc"


def test_root_path_is_refused():
    with pytest.raises(SetupError, match="root cgroup"):
        cg.new_manager("c", "/", mountinfo=HYBRID_MOUNTINFO, self_cgroup=HYBRID_SELF)


def test_v2_host_gets_v2_manager():
    m = cg.new_manager("c", "/machine/c", mountinfo=V2_MOUNTINFO, self_cgroup="0::/user.slice/x\n")
    assert m.version == 2
    assert m.paths == {cg.UNIFIED: "/sys/fs/cgroup/machine/c"}
    m = cg.new_manager("c", "sub", mountinfo=V2_MOUNTINFO, self_cgroup="0::/user.slice/x\n")
    assert m.paths == {cg.UNIFIED: "/sys/fs/cgroup/user.slice/x/sub"}


def test_mount_root_inside_cgroup_namespace_is_stripped():
    # memory mounted from /docker/abc; /proc/self/cgroup says we are in /docker/abc/inner
    m = cg.new_manager("c", "child", mountinfo=COMBINED_MOUNTINFO, self_cgroup="4:memory:/docker/abc/inner\n")
    assert m.paths["memory"] == "/sys/fs/cgroup/memory/inner/child"


def test_state_round_trip():
    m = cg.new_manager("c", "/a/b", mountinfo=HYBRID_MOUNTINFO, self_cgroup=HYBRID_SELF)
    m.created = ["/sys/fs/cgroup/memory/a", "/sys/fs/cgroup/memory/a/b"]
    data = json.loads(json.dumps(m.to_state()))
    m2 = cg.manager_from_state(data)
    assert type(m2) is type(m) and m2.paths == m.paths and m2.created == m.created
    v2 = cg.new_manager("c", "/x", mountinfo=V2_MOUNTINFO, self_cgroup="0::/\n")
    r2 = cg.manager_from_state(json.loads(json.dumps(v2.to_state())))
    assert r2.version == 2 and r2.path == "/sys/fs/cgroup/x" and r2.mountpoint == "/sys/fs/cgroup"


def test_disabled_manager_is_noop():
    m = cg.new_manager("c", "/x", driver="disabled")
    m.create(); m.apply({"memory": {"limit": 1}}); m.add_process(1); m.freeze(); m.thaw(); m.kill_all(9); m.destroy()
    assert m.pids() == [] and m.is_frozen() is False
    assert cg.manager_from_state(m.to_state()).pids() == []


def test_systemd_driver_is_a_clear_error():
    with pytest.raises(SetupError, match="systemd"):
        cg.new_manager("c", "system.slice:ocipy:c", driver="systemd")


def test_unknown_driver():
    with pytest.raises(SetupError, match="unknown cgroup driver"):
        cg.new_manager("c", None, driver="lxcfs")


# --- v1 plan ----------------------------------------------------------------------------------

def _files(writes):
    return [(w.controller, w.filename, w.value) for w in writes]


def test_v1_full_plan():
    r = {
        "memory": {"limit": 536870912, "reservation": 268435456, "swap": 1073741824, "kernel": -1,
                   "kernelTCP": 1048576, "swappiness": 0, "disableOOMKiller": True, "useHierarchy": True},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 10000, "realtimeRuntime": 950,
                "realtimePeriod": 1000, "cpus": "0-1", "mems": "0", "idle": 1},
        "pids": {"limit": 32},
        "blockIO": {"weight": 500, "leafWeight": 300,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 400, "leafWeight": 200}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200}],
        "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
        "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
    }
    plan = _files(res.plan_v1(r, {"memory.limit_in_bytes": 9223372036854771712}))
    assert plan == [
        ("memory", "memory.limit_in_bytes", "536870912"),   # shrinking: memory first
        ("memory", "memory.memsw.limit_in_bytes", "1073741824"),
        ("memory", "memory.soft_limit_in_bytes", "268435456"),
        ("memory", "memory.kmem.limit_in_bytes", "-1"),
        ("memory", "memory.kmem.tcp.limit_in_bytes", "1048576"),
        ("memory", "memory.swappiness", "0"),
        ("memory", "memory.oom_control", "1"),
        ("memory", "memory.use_hierarchy", "1"),
        ("cpu", "cpu.shares", "1024"),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "50000"),
        ("cpu", "cpu.cfs_burst_us", "10000"),
        ("cpu", "cpu.rt_period_us", "1000"),
        ("cpu", "cpu.rt_runtime_us", "950"),
        ("cpu", "cpu.idle", "1"),
        ("cpuset", "cpuset.cpus", "0-1"),
        ("cpuset", "cpuset.mems", "0"),
        ("pids", "pids.max", "32"),
        ("blkio", "blkio.weight", "500"),
        ("blkio", "blkio.leaf_weight", "300"),
        ("blkio", "blkio.weight_device", "8:0 400"),
        ("blkio", "blkio.leaf_weight_device", "8:0 200"),
        ("blkio", "blkio.throttle.read_bps_device", "8:0 600"),
        ("blkio", "blkio.throttle.write_iops_device", "8:16 300"),
        ("hugetlb", "hugetlb.2MB.limit_in_bytes", "209715200"),
        ("hugetlb", "hugetlb.2MB.rsvd.limit_in_bytes", "209715200"),
        ("net_cls", "net_cls.classid", "1048577"),
        ("net_prio", "net_prio.ifpriomap", "eth0 5"),
        ("rdma", "rdma.max", "mlx5_1 hca_handle=3 hca_object=10000"),
    ]


def test_v1_memory_growing_writes_memsw_first():
    plan = _files(res.plan_v1({"memory": {"limit": 200, "swap": 400}}, {"memory.limit_in_bytes": 100}))
    assert [f for _, f, _ in plan] == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]


def test_v1_unlimited_memory_also_unlimits_swap():
    plan = res.plan_v1({"memory": {"limit": -1}})
    assert _files(plan) == [("memory", "memory.memsw.limit_in_bytes", "-1"), ("memory", "memory.limit_in_bytes", "-1")]
    assert plan[0].optional


def test_v1_fields_named_for_errors():
    plan = res.plan_v1({"memory": {"limit": 5}, "pids": {"limit": -1}})
    assert [w.field for w in plan] == ["linux.resources.memory.limit", "linux.resources.pids.limit"]
    assert plan[1].value == "max"


def test_zero_means_unchanged_docker_update():
    with open(f"{CORPUS}/docker-update-3.resources-stdin.json") as f:
        r = json.load(f)
    assert res.plan_v1(r) == []
    assert res.plan_v2(r) == []
    with open(f"{CORPUS}/docker-update-2.resources-stdin.json") as f:
        r = json.load(f)
    assert _files(res.plan_v1(r)) == [("memory", "memory.soft_limit_in_bytes", "33554432"),
                                      ("cpu", "cpu.shares", "512"), ("cpuset", "cpuset.cpus", "0")]


def test_pids_zero_is_a_real_limit():
    assert _files(res.plan_v1({"pids": {"limit": 0}})) == [("pids", "pids.max", "0")]
    assert _files(res.plan_v2({"pids": {"limit": 0}})) == [("pids", "pids.max", "0")]


def test_v1_devices_deny_all_first_then_in_order():
    rules = [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
             {"allow": False, "type": "c", "major": 136, "access": "w"},
             {"allow": True, "type": "b", "minor": 0, "access": "r"}]
    assert _files(res.plan_v1({"devices": rules})) == [
        ("devices", "devices.deny", "a"),
        ("devices", "devices.allow", "c 1:3 rwm"),
        ("devices", "devices.deny", "c 136:* w"),
        ("devices", "devices.allow", "b *:0 r"),
    ]


def test_v1_devices_from_docker_config():
    with open(f"{CORPUS}/docker-run-d.config.json") as f:
        devs = json.load(f)["linux"]["resources"]["devices"]
    plan = _files(res.plan_v1({"devices": devs}))
    assert plan[0] == ("devices", "devices.deny", "a")
    assert plan[1] == ("devices", "devices.deny", "a")
    assert plan[-1] == ("devices", "devices.deny", "c 10:229 rwm")


def test_v1_rejects_unified():
    with pytest.raises(SetupError, match=r"linux.resources.unified: .*v1"):
        res.plan_v1({"unified": {"memory.max": "1"}})


def test_v1_burst_above_quota_is_an_error():
    with pytest.raises(SetupError, match="burst"):
        res.plan_v1({"cpu": {"quota": 100, "burst": 200}})


def test_bad_hugepage_size():
    with pytest.raises(SetupError, match=r"hugepageLimits\[0\].pageSize"):
        res.plan_v1({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]})


def test_blkio_weight_falls_back_to_bfq():
    w = res.plan_v1({"blockIO": {"weight": 100}})[0]
    assert w.filename == "blkio.weight" and w.fallback.filename == "blkio.bfq.weight"


# --- conversions and the v2 plan --------------------------------------------------------------

@pytest.mark.parametrize("shares,weight", [(0, 0), (1, 1), (2, 1), (1024, 100), (262144, 10000), (500000, 10000),
                                           (512, 59), (2048, 174), (100, 17)])
def test_cpu_shares_to_weight(shares, weight):
    # 1024 (v1 default) -> 100 (v2 default); endpoints 2->1 and 262144->10000
    assert res.cpu_shares_to_weight(shares) == weight


def test_cpu_shares_to_weight_monotonic():
    ws = [res.cpu_shares_to_weight(s) for s in range(2, 262145, 97)]
    assert ws == sorted(ws) and 1 <= ws[0] and ws[-1] <= 10000


@pytest.mark.parametrize("w,iow", [(0, 0), (10, 1), (1000, 10000), (500, 4950), (100, 910)])
def test_blkio_weight_to_io_weight(w, iow):
    assert res.blkio_weight_to_io_weight(w) == iow


def test_memory_swap_conversion():
    assert res.memory_swap_to_v2(0, 100) is None
    assert res.memory_swap_to_v2(-1, 100) == -1
    assert res.memory_swap_to_v2(0, -1) == -1
    assert res.memory_swap_to_v2(300, 100) == 200
    with pytest.raises(SetupError, match="smaller"):
        res.memory_swap_to_v2(50, 100)
    with pytest.raises(SetupError, match="without a memory limit"):
        res.memory_swap_to_v2(50, 0)


def test_v2_full_plan():
    r = {
        "memory": {"limit": 536870912, "reservation": 268435456, "swap": 1073741824, "swappiness": 10,
                   "disableOOMKiller": False, "useHierarchy": True},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "cpus": "1", "mems": "0",
                "idle": 1},
        "pids": {"limit": -1},
        "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}]},
        "hugepageLimits": [{"pageSize": "1GB", "limit": 1073741824}],
        "rdma": {"mlx5_1": {"hcaHandles": 3}},
        "unified": {"memory.high": "1000000", "cgroup.max.depth": "3"},
    }
    plan = res.plan_v2(r)
    assert _files(plan) == [
        ("memory", "memory.max", "536870912"),
        ("memory", "memory.swap.max", "536870912"),
        ("memory", "memory.low", "268435456"),
        ("cpu", "cpu.weight", "100"),
        ("cpu", "cpu.max", "50000 100000"),
        ("cpu", "cpu.max.burst", "1000"),
        ("cpu", "cpu.idle", "1"),
        ("cpuset", "cpuset.cpus", "1"),
        ("cpuset", "cpuset.mems", "0"),
        ("pids", "pids.max", "max"),
        ("io", "io.bfq.weight", "500"),
        ("io", "io.bfq.weight", "8:0 100"),
        ("io", "io.max", "8:0 rbps=600"),
        ("io", "io.max", "8:16 wiops=300"),
        ("hugetlb", "hugetlb.1GB.max", "1073741824"),
        ("hugetlb", "hugetlb.1GB.rsvd.max", "1073741824"),
        ("rdma", "rdma.max", "mlx5_1 hca_handle=3"),
        ("memory", "memory.high", "1000000"),
        ("cgroup", "cgroup.max.depth", "3"),
    ]
    assert plan[10].fallback.filename == "io.weight" and plan[10].fallback.value == "default 4950"
    assert plan[11].fallback.value == "8:0 910"
    assert res.v2_controllers_needed(plan) == ["memory", "cpu", "cpuset", "pids", "io", "hugetlb", "rdma"]


def test_v2_cpu_max_keeps_the_other_half():
    assert _files(res.plan_v2({"cpu": {"period": 50000}}, {"cpu.max": "20000 100000"})) == [
        ("cpu", "cpu.max", "20000 50000")]
    assert _files(res.plan_v2({"cpu": {"quota": -1}}, {"cpu.max": "20000 100000"})) == [
        ("cpu", "cpu.max", "max 100000")]
    assert _files(res.plan_v2({"cpu": {"quota": 30000}})) == [("cpu", "cpu.max", "30000 100000")]


def test_v2_errors_for_what_v2_cannot_express():
    with pytest.raises(SetupError, match="realtime"):
        res.plan_v2({"cpu": {"realtimeRuntime": 5}})
    with pytest.raises(SetupError, match="linux.resources.network"):
        res.plan_v2({"network": {"classID": 5}})
    with pytest.raises(SetupError, match=r"^linux.resources.memory.kernel: kernel memory limits do not exist"):
        res.plan_v2({"memory": {"kernel": 1 << 20}})
    with pytest.raises(SetupError, match=r"^linux.resources.memory.disableOOMKiller: "):
        res.plan_v2({"memory": {"disableOOMKiller": True}})
    with pytest.raises(SetupError, match=r"^linux.resources.blockIO.leafWeight: "):
        res.plan_v2({"blockIO": {"leafWeight": 10}})
    with pytest.raises(SetupError, match=r"not a cgroup v2 file name"):
        res.plan_v2({"unified": {".../x": "1"}})


def test_v2_podman_update():
    with open(f"{CORPUS}/podman-update.resources.json") as f:
        r = json.load(f)
    assert _files(res.plan_v2(r)) == [("memory", "memory.max", "67108864"), ("memory", "memory.swap.max", "67108864"),
                                      ("cpu", "cpu.max", "50000 100000")]


# --- device BPF program -----------------------------------------------------------------------

def run_bpf(prog: bytes, dev_type: int, major: int, minor: int, access: int) -> int:
    """A tiny eBPF interpreter for the instructions a device program may use."""
    ctx = struct.pack("<III", (access << 16) | dev_type, major, minor)
    regs = [0] * 11
    regs[1] = -1  # the ctx pointer; only used as a base for loads
    insns = [struct.unpack_from("<BBhi", prog, i) for i in range(0, len(prog), 8)]
    pc = 0
    steps = 0
    m64 = (1 << 64) - 1
    while True:
        steps += 1
        assert steps < 10000
        code, regbyte, off, imm = insns[pc]
        dst, src = regbyte & 0xF, regbyte >> 4
        pc += 1
        if code == 0x61:  # ldx w
            assert regs[src] == -1, "load from something other than ctx"
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == 0x54:
            regs[dst] = (regs[dst] & imm) & 0xFFFFFFFF
        elif code == 0x74:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif code == 0xBC:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif code == 0xB7:
            regs[dst] = imm & m64
        elif code == 0x55:
            if regs[dst] != (imm & m64):
                pc += off
        elif code == 0x15:
            if regs[dst] == (imm & m64):
                pc += off
        elif code == 0x05:
            pc += off
        elif code == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


C, B = bpf.DEV_CHAR, bpf.DEV_BLOCK
R, W, M = bpf.ACC_READ, bpf.ACC_WRITE, bpf.ACC_MKNOD


def test_bpf_no_rules_no_program():
    assert bpf.build_program(None) is None


def test_bpf_deny_all_allows_nothing():
    prog = bpf.build_program([{"allow": False, "access": "rwm"}])
    assert run_bpf(prog, C, 1, 3, R) == 0
    assert run_bpf(prog, B, 8, 0, W) == 0
    assert bpf.build_program([]) == prog  # empty list: runc's deny-all


def test_bpf_docker_rules():
    with open(f"{CORPUS}/docker-run-d.config.json") as f:
        devs = json.load(f)["linux"]["resources"]["devices"]
    prog = bpf.build_program(devs)
    assert len(prog) % 8 == 0
    assert run_bpf(prog, C, 1, 3, R | W) == 1       # /dev/null
    assert run_bpf(prog, C, 1, 3, M) == 1
    assert run_bpf(prog, C, 5, 1, R | W) == 1       # /dev/console
    assert run_bpf(prog, C, 10, 229, R) == 0        # /dev/fuse explicitly denied
    assert run_bpf(prog, B, 1, 3, R) == 0           # block 1:3 is not char 1:3
    assert run_bpf(prog, C, 1, 4, R) == 0
    assert run_bpf(prog, B, 8, 0, R) == 0


def test_bpf_wildcards_and_partial_access():
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "major": 136, "access": "rw"},
             {"allow": True, "type": "b", "minor": 7, "access": "r"}]
    prog = bpf.build_program(rules)
    assert run_bpf(prog, C, 136, 0, R | W) == 1
    assert run_bpf(prog, C, 136, 99, R) == 1
    assert run_bpf(prog, C, 136, 99, M) == 0        # m not granted
    assert run_bpf(prog, C, 137, 0, R) == 0
    assert run_bpf(prog, B, 8, 7, R) == 1
    assert run_bpf(prog, B, 8, 7, R | W) == 0


def test_bpf_rules_for_one_device_merge_like_v1():
    prog = bpf.build_program([{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
                              {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "w"}])
    assert run_bpf(prog, C, 1, 3, R | W) == 1
    assert run_bpf(prog, C, 1, 3, M) == 0


def test_bpf_allow_all_then_deny_one():
    prog = bpf.build_program([{"allow": True, "access": "rwm"},
                              {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rw"}])
    assert run_bpf(prog, C, 1, 3, R) == 0
    assert run_bpf(prog, C, 1, 3, W | R) == 0
    assert run_bpf(prog, C, 1, 3, M) == 1           # mknod was not denied
    assert run_bpf(prog, C, 1, 5, R) == 1
    assert run_bpf(prog, B, 1, 3, R) == 1


def test_bpf_later_rule_overrides_earlier():
    prog = bpf.build_program([{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                              {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}])
    assert run_bpf(prog, C, 1, 3, R) == 1
    assert run_bpf(prog, C, 1, 3, W) == 0
    prog = bpf.build_program([{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                              {"allow": False, "access": "rwm"}])
    assert run_bpf(prog, C, 1, 3, R) == 0


def test_bpf_emulator_state():
    assert bpf.emulate_v1([{"allow": True, "access": "rwm"}]) == (True, [])
    allow, exc = bpf.emulate_v1([{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}])
    assert allow is False and exc == [bpf.Exception_("c", 1, 3, R | W)]


def test_bpf_bad_access():
    with pytest.raises(SetupError):
        bpf.build_program([{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "x"}])


# --- stats helpers ----------------------------------------------------------------------------

def test_stats_helpers():
    assert stats.parse_list("0-2,5\n") == [0, 1, 2, 5]
    assert stats.parse_list("") == []
    assert stats.format_page_size(2 * 1024 * 1024) == "2MB"
    assert stats.format_page_size(1 << 30) == "1GB"
    assert stats.format_page_size(64 * 1024) == "64KB"


def test_stats_v1_on_fake_tree(tmp_path):
    mem = tmp_path / "memory"
    mem.mkdir()
    (mem / "memory.limit_in_bytes").write_text("1000\n")
    (mem / "memory.usage_in_bytes").write_text("10\n")
    (mem / "memory.max_usage_in_bytes").write_text("20\n")
    (mem / "memory.failcnt").write_text("0\n")
    (mem / "memory.stat").write_text("cache 5\ntotal_cache 7\nrss 3\n")
    pids = tmp_path / "pids"
    pids.mkdir()
    (pids / "pids.current").write_text("1\n")
    (pids / "pids.max").write_text("max\n")
    s = stats.stats_v1({"memory": str(mem), "pids": str(pids)})
    assert s["pids"] == {"current": 1}
    assert s["memory"]["cache"] == 7
    assert s["memory"]["usage"] == {"limit": 1000, "usage": 10, "max": 20, "failcnt": 0}
    assert s["blkio"] == {} and s["cpu"]["throttling"] == {}
    assert set(s) >= {"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb"}
    # runc (Go) always prints these memory entries, zero or not
    assert s["memory"]["kernelTCP"] == {"limit": 0, "failcnt": 0}


def test_stats_key_names_match_runc_sample(tmp_path):
    with open(f"{CORPUS}/runc-events-stats.json") as f:
        ref = json.load(f)["data"]
    empty = stats.stats_v1({})
    assert set(empty) == set(ref)
    assert set(empty["memory"]) == set(ref["memory"]) - {"cache", "raw"}
    assert set(empty["cpuset"]) == set(ref["cpuset"]) - {"cpus", "mems"}
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    (cpu / "cpu.stat").write_text("nr_periods 4\nnr_throttled 2\nthrottled_time 7\n")
    assert stats.stats_v1({"cpu": str(cpu)})["cpu"]["throttling"] == {"periods": 4, "throttledPeriods": 2,
                                                                      "throttledTime": 7}


def test_hierarchy_mount_helpers():
    hs = {h.mountpoint: h for h in mgr.parse_mountinfo(HYBRID_MOUNTINFO + COMBINED_MOUNTINFO,
                                                       read_controllers=lambda m: ("hugetlb",))}
    sd = hs["/sys/fs/cgroup/systemd"]
    assert (sd.fstype, sd.mount_data, sd.name) == ("cgroup", "none,name=systemd", "systemd")
    cc = hs["/sys/fs/cgroup/cpu,cpuacct"]
    assert (cc.fstype, cc.mount_data, cc.name) == ("cgroup", "cpu,cpuacct", "cpu,cpuacct")
    u = hs["/sys/fs/cgroup/unified"]
    assert (u.fstype, u.mount_data, u.name) == ("cgroup2", "", "unified")


# --- v1 device updates in place -----------------------------------------------------------------

from ocipy.linux.cgroups import devices_rules as dr  # noqa: E402
from shared_paths import CORPUS  # noqa: E402

DOCKERISH = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
             {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]


def test_parse_devices_list():
    assert dr.parse_devices_list("a *:* rwm\n") is None
    assert dr.parse_devices_list("") == (False, [])
    allow, exc = dr.parse_devices_list("c 1:3 rwm\nc 136:* rw\nb *:* m\n")
    assert allow is False
    assert exc == [dr.DeviceException("c", 1, 3, 7), dr.DeviceException("c", 136, -1, R | W),
                   dr.DeviceException("b", -1, -1, M)]


def test_v1_update_devices_same_state_writes_nothing():
    assert res.plan_devices_v1(DOCKERISH, "c 1:3 rwm\nc 1:5 rwm\n") == []


def test_v1_update_devices_diff_without_deny_all():
    plan = _files(res.plan_devices_v1(DOCKERISH, "c 1:3 rw\nc 10:229 rwm\n"))
    assert plan == [("devices", "devices.allow", "c 1:3 m"), ("devices", "devices.allow", "c 1:5 rwm"),
                    ("devices", "devices.deny", "c 10:229 rwm")]


def test_v1_devices_reset_when_state_unknown_or_default_changes():
    plan = _files(res.plan_devices_v1(DOCKERISH, "a *:* rwm\n"))
    assert plan[0] == ("devices", "devices.deny", "a")
    plan = _files(res.plan_devices_v1([{"allow": True, "access": "rwm"}], "c 1:3 rwm\n"))
    assert plan == [("devices", "devices.deny", "a"), ("devices", "devices.allow", "a")]


def test_v1_transition_reaches_the_target_state():
    """Replaying the transition writes on the current state gives exactly the target state."""
    cur = "c 1:3 rw\nc 1:7 rwm\nb 8:* r\n"
    target = DOCKERISH + [{"allow": True, "type": "b", "major": 8, "access": "rw"}]
    writes = dr.v1_transition(target, cur)
    replay = [{"allow": True, "type": t, "major": None if a == "*" else int(a),
               "minor": None if b == "*" else int(b), "access": acc}
              for line in cur.splitlines() for t, (a, b), acc in [(line.split()[0], line.split()[1].split(":"),
                                                                    line.split()[2])]]
    for f, line in writes:
        parts = line.split()
        a, b = parts[1].split(":")
        replay.append({"allow": f == "devices.allow", "type": parts[0], "major": None if a == "*" else int(a),
                       "minor": None if b == "*" else int(b), "access": parts[2]})
    got = dr.emulate_v1(replay)
    want = dr.emulate_v1(target)
    assert got[0] == want[0] and sorted(got[1]) == sorted(want[1])


def test_fifo_and_unbuffered_device_rules():
    rules = [{"allow": True, "type": "p", "major": 0, "minor": 0, "access": "rwm"},
             {"allow": True, "type": "u", "major": 4, "minor": 64, "access": "rw"}]
    assert _files(res.plan_v1({"devices": rules})) == [("devices", "devices.deny", "a"),
                                                       ("devices", "devices.allow", "c 4:64 rw")]
    assert bpf.emulate_v1(rules) == (False, [bpf.Exception_("c", 4, 64, R | W)])


def test_limits_the_kernel_may_silently_change_are_verified():
    plan = res.plan_v1({"memory": {"kernel": 1 << 20}, "hugepageLimits": [{"pageSize": "1GB", "limit": 4 << 20}]})
    assert [(w.filename, w.verify) for w in plan] == [("memory.kmem.limit_in_bytes", True),
                                                      ("hugetlb.1GB.limit_in_bytes", True),
                                                      ("hugetlb.1GB.rsvd.limit_in_bytes", True)]

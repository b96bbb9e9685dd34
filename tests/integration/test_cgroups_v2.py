"""cgroup v2 manager against the real cgroup2 hierarchy of this host (root).

Run only under the shared lock:
    flock /tmp/ocipy-root-tests.lock .venv/bin/python -m pytest tests/integration/test_cgroups_v2.py

On the hybrid development host the cgroup2 hierarchy (/sys/fs/cgroup/unified)
has only the hugetlb controller; every other controller is bound to v1. So these
tests exercise, on the real kernel: mkdir/rmdir, cgroup.procs, cgroup.freeze,
cgroup.kill, the BPF device program (attach, replace), hugetlb limits, core
`cgroup.*` unified keys and the error for a controller that is not available.
memory/cpu/pids/io writes on v2 are covered only by the pure planning tests
(tests/unit/test_cgroups_plan.py) and are reported as such by the skips below.
A second cgroup2 mount would be the same single hierarchy, so we use the one
that is mounted, under this process's own v2 cgroup.
"""

import errno
import json
import os
import signal
import time
import uuid

import pytest

from ocipy.errors import SetupError
from ocipy.linux import cgroups as cg
from ocipy.linux.cgroups import bpf_devices

pytestmark = [pytest.mark.root]

HIERARCHIES = cg.host_hierarchies()
V2 = [h for h in HIERARCHIES if h.version == 2]

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)
if not V2:
    pytest.skip("this host mounts no cgroup2 hierarchy", allow_module_level=True)

V2_MOUNTINFO = "".join(line for line in open("/proc/self/mountinfo") if " - cgroup2 " in line)


# A child that obeys one-line commands on stdin and answers on stdout.
from cgroup_harness import clean_host, read, spawn  # noqa: F401 - clean_host is a fixture
from shared_paths import CORPUS  # noqa: E402

@pytest.fixture
def manager(clean_host):
    m = cg.new_manager("t", f"ocipy-test-{uuid.uuid4().hex[:12]}", mountinfo=V2_MOUNTINFO)
    assert m.version == 2
    try:
        yield m
    finally:
        try:
            m.kill_all(signal.SIGKILL)
        except SetupError:
            pass
        for c in clean_host:
            c.close()
        m.destroy()


def own_v2_path(pid):
    with open(f"/proc/{pid}/cgroup") as f:
        return cg.parse_proc_cgroup(f.read())[cg.UNIFIED]


# --- tests ----------------------------------------------------------------------------------------

def test_lifecycle_on_the_real_cgroup2_hierarchy(manager, clean_host):
    manager.create()
    assert manager.created == [manager.path]
    child = spawn(clean_host)
    manager.add_process(child.pid)
    assert manager.pids() == [child.pid]
    assert own_v2_path(child.pid).endswith("/" + manager.cgroups_path)

    assert child.ask("tick") == "1"
    manager.freeze()
    assert manager.is_frozen()
    time.sleep(0.05)
    child.drain()
    assert not child.readable(0.4), "the child kept running while frozen"
    manager.thaw()
    assert not manager.is_frozen()
    assert child.readable(2.0)

    manager.kill_all(signal.SIGTERM)  # freeze, signal, thaw
    assert child.p.wait(10) == -signal.SIGTERM
    assert not manager.is_frozen()
    path = manager.path
    manager.destroy()
    assert not os.path.exists(path)


def test_kill_all_sigkill_uses_cgroup_kill(manager, clean_host):
    if not os.path.exists(os.path.join(V2[0].mountpoint, "cgroup.procs")):
        pytest.skip("no cgroup2")
    manager.create()
    if not os.path.exists(os.path.join(manager.path, "cgroup.kill")):
        pytest.skip("kernel without cgroup.kill (< 5.14)")
    kids = [spawn(clean_host) for _ in range(3)]
    for k in kids:
        manager.add_process(k.pid)
    manager.freeze()
    manager.kill_all(signal.SIGKILL)
    for k in kids:
        assert k.p.wait(10) == -signal.SIGKILL


def test_state_round_trip(manager, clean_host):
    manager.create()
    child = spawn(clean_host)
    manager.add_process(child.pid)
    again = cg.manager_from_state(json.loads(json.dumps(manager.to_state())))
    assert again.version == 2 and again.path == manager.path and again.created == manager.created
    assert again.pids() == [child.pid]


def test_bpf_device_program_denies_dev_null(manager, clean_host):
    manager.create()
    manager.apply({"devices": [{"allow": True, "access": "rwm"},
                               {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rw"}]})
    child = spawn(clean_host)
    manager.add_process(child.pid)
    assert child.ask("open /dev/null") == f"err {errno.EPERM}"
    assert child.ask("open /dev/zero") == "ok"

    # update replaces the program instead of stacking a second one
    manager.update({"devices": [{"allow": True, "access": "rwm"}]})
    assert child.ask("open /dev/null") == "ok"
    fd = os.open(manager.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert len(bpf_devices.query_programs(fd)) == 1
    finally:
        os.close(fd)


def test_bpf_docker_default_deny_rules(manager, clean_host):
    manager.create()
    with open(f"{CORPUS}/docker-run-d.config.json") as f:
        devices = json.load(f)["linux"]["resources"]["devices"]
    manager.apply({"devices": devices})
    child = spawn(clean_host)
    manager.add_process(child.pid)
    assert child.ask("open /dev/null") == "ok"
    assert child.ask("open /dev/zero") == "ok"
    if os.path.exists("/dev/loop-control"):  # char 10:237, not in docker's list
        assert child.ask("open /dev/loop-control") == f"err {errno.EPERM}"
    if os.path.exists("/dev/mem"):  # char 1:1, not in docker's list
        assert child.ask("open /dev/mem") == f"err {errno.EPERM}"


def test_hugetlb_limit(manager):
    if "hugetlb" not in V2[0].controllers:
        pytest.skip("hugetlb is not on this host's cgroup2 hierarchy")
    manager.create()
    manager.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]})
    assert read(os.path.join(manager.path, "hugetlb.2MB.max")) == str(4 << 20)
    assert "2MB" in manager.stats()["hugetlb"]


def test_core_unified_key(manager):
    manager.create()
    manager.apply({"unified": {"cgroup.max.depth": "2"}})
    assert read(os.path.join(manager.path, "cgroup.max.depth")) == "2"


def test_unavailable_controller_is_an_error_naming_the_field(manager):
    manager.create()
    for ctrl, res, field in (("memory", {"memory": {"limit": 1 << 30}}, "linux.resources.memory.limit"),
                             ("pids", {"pids": {"limit": 10}}, "linux.resources.pids.limit"),
                             ("cpu", {"unified": {"cpu.weight": "50"}}, "linux.resources.unified.cpu.weight")):
        if ctrl in manager.available_controllers():
            continue
        with pytest.raises(SetupError) as e:
            manager.apply(res)
        assert str(e.value).startswith(f"{field}: the {ctrl} controller is not available in cgroup {manager.path}")


@pytest.mark.skipif(not V2 or "memory" not in V2[0].controllers,
                    reason="v2 kernel path NOT exercised on this host: the memory controller is bound to v1 "
                           "(covered only by the pure plan tests)")
def test_memory_limit_v2(manager):
    manager.create()
    manager.apply({"memory": {"limit": 64 << 20}})
    assert read(os.path.join(manager.path, "memory.max")) == str(64 << 20)


@pytest.mark.skipif(not V2 or "pids" not in V2[0].controllers,
                    reason="v2 kernel path NOT exercised on this host: the pids controller is bound to v1 "
                           "(covered only by the pure plan tests)")
def test_pids_limit_v2(manager):
    manager.create()
    manager.apply({"pids": {"limit": 5}})
    assert read(os.path.join(manager.path, "pids.max")) == "5"


def test_join_existing_cgroup_destroy_leaves_it(clean_host):
    rel = f"ocipy-test-{uuid.uuid4().hex[:12]}"
    m = cg.new_manager("j", rel, mountinfo=V2_MOUNTINFO)
    os.mkdir(m.path)
    try:
        m.create()
        assert m.created == []
        child = spawn(clean_host)
        m.add_process(child.pid)
        child.close()
        m.destroy()
        assert os.path.isdir(m.path)
    finally:
        os.rmdir(m.path)


def test_destroy_removes_sub_cgroups_made_inside_the_container(manager):
    manager.create()
    os.makedirs(os.path.join(manager.path, "made-by-container", "deeper"))
    manager.destroy()
    assert not os.path.exists(manager.path)


def test_delegate_chowns_only_the_listed_files(manager):
    manager.create()
    manager.delegate(12345, 23456)
    st = os.stat(manager.path)
    assert (st.st_uid, st.st_gid) == (12345, 23456)
    try:
        with open("/sys/kernel/cgroup/delegate") as f:
            listed = {line.strip() for line in f if line.strip()}
    except OSError:
        listed = {"cgroup.procs", "cgroup.subtree_control", "cgroup.threads"}
    for name in os.listdir(manager.path):
        owner = os.stat(os.path.join(manager.path, name)).st_uid
        assert (owner == 12345) == (name in listed), name


def _stage1_report(manager) -> tuple[int, str]:
    """Fork as create and exec fork stage 1 and let the child enter() the cgroup; return its exit
    code and what it wrote: whether it was born in the v2 cgroup, and the v2 cgroup it ends in."""
    from ocipy.launch import fork_in_cgroup

    r, w = os.pipe()
    pid, born = fork_in_cgroup(manager)
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            manager.enter(skip_v2=born)
            os.write(w, f"{born} {own_v2_path(os.getpid())}".encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), text


def test_stage1_is_born_in_the_v2_cgroup(manager):
    """fork_in_cgroup: the child starts life in the container's cgroup (clone3 CLONE_INTO_CGROUP),
    so enter() has no cgroup.procs write left to do, and the parent is where it was."""
    manager.create()
    before = own_v2_path(os.getpid())
    code, text = _stage1_report(manager)
    assert code == 0
    assert text == f"True {before.rstrip('/')}/{manager.cgroups_path}"
    assert own_v2_path(os.getpid()) == before


def test_fork_into_cgroup_declines_in_a_threaded_process(manager):
    """With another thread running, glibc's fork would have to take its malloc and stdio locks:
    fork_into_cgroup forks nothing and says so, and fork_in_cgroup falls back to os.fork."""
    import threading

    from ocipy.linux import syscalls

    manager.create()
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        fd = os.open(manager.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert syscalls.fork_into_cgroup(fd) is None
        finally:
            os.close(fd)
        code, text = _stage1_report(manager)
    finally:
        stop.set()
        t.join()
    assert code == 0
    assert text.startswith("False ") and text.endswith("/" + manager.cgroups_path)


def test_fork_into_a_missing_cgroup_is_a_clear_error(manager):
    from ocipy.launch import fork_in_cgroup

    with pytest.raises(SetupError, match=r"^cannot open cgroup .*/ocipy-test-\w+: No such file or directory$"):
        fork_in_cgroup(manager)

"""create / start / state / kill / delete / run through the CLI, as engines drive it (root)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from testlib import container_dirs  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def state_of(ocipy, cid):
    r = ocipy("state", cid)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_create_blocks_user_process_until_start(ocipy, bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    bundle.bind(out, "/out").shell("echo started > /out/marker; sleep 100").write()
    r = ocipy("create", "--bundle", bundle.path, "--pid-file", tmp_path / "c.pid", "c1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""  # silence on success
    st = state_of(ocipy, "c1")
    assert st["status"] == "created"
    pid_text = (tmp_path / "c.pid").read_text()
    assert pid_text == str(st["pid"])  # decimal, no newline
    assert set(st) >= {"ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"}
    assert st["bundle"] == str(bundle.path)
    time.sleep(0.2)
    assert not (out / "marker").exists(), "the user process ran before start"

    assert ocipy("start", "c1").returncode == 0
    assert wait_for(lambda: (out / "marker").exists())
    assert state_of(ocipy, "c1")["status"] == "running"

    r = ocipy("start", "c1")
    assert r.returncode == 1 and "cannot start an already running container" in r.stderr
    r = ocipy("delete", "c1")
    assert r.returncode == 1 and "cannot delete container c1 that is not stopped: running" in r.stderr

    assert ocipy("kill", "c1", "KILL").returncode == 0
    assert wait_for(lambda: state_of(ocipy, "c1")["status"] == "stopped")
    st = state_of(ocipy, "c1")
    assert st["pid"] == 0
    r = ocipy("kill", "c1", "9")
    assert r.returncode == 1 and "container not running" in r.stderr
    assert ocipy("kill", "--all", "c1", "9").returncode == 0
    r = ocipy("start", "c1")
    assert r.returncode == 1 and "cannot start a container that has stopped" in r.stderr
    assert ocipy("delete", "c1").returncode == 0
    r = ocipy("state", "c1")
    assert r.returncode == 1 and "container does not exist" in r.stderr


def test_kill_delivers_the_signal_by_name_and_number(ocipy, bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    bundle.bind(out, "/out").shell("trap 'echo usr1 > /out/got; exit 0' USR1; echo ready > /out/ready; while :; do sleep 0.05; done").write()
    assert ocipy("create", "--bundle", bundle.path, "c2").returncode == 0
    assert ocipy("start", "c2").returncode == 0
    assert wait_for(lambda: (out / "ready").exists())
    assert ocipy("kill", "c2", "SIGUSR1").returncode == 0
    assert wait_for(lambda: (out / "got").exists())
    assert wait_for(lambda: state_of(ocipy, "c2")["status"] == "stopped")
    assert ocipy("delete", "c2").returncode == 0


def test_duplicate_id_is_refused(ocipy, bundle):
    bundle.args("sleep", "100").write()
    assert ocipy("create", "--bundle", bundle.path, "dup").returncode == 0
    r = ocipy("create", "--bundle", bundle.path, "dup")
    assert r.returncode == 1 and "exists" in r.stderr
    assert state_of(ocipy, "dup")["status"] == "created"  # the first one is untouched
    r = ocipy("delete", "dup")  # runtime.md: only a stopped container may be deleted
    assert r.returncode == 1 and "cannot delete container dup that is not stopped: created" in r.stderr
    assert ocipy("delete", "--force", "dup").returncode == 0


def test_delete_force_and_missing(ocipy, bundle):
    bundle.args("sleep", "100").write()
    assert ocipy("run", "--detach", "--bundle", bundle.path, "d1").returncode == 0
    assert state_of(ocipy, "d1")["status"] == "running"
    assert ocipy("delete", "--force", "d1").returncode == 0
    assert ocipy("delete", "--force", "d1").returncode == 0  # silent when missing
    r = ocipy("delete", "d1")
    assert r.returncode == 1 and "container does not exist" in r.stderr


def test_run_relays_output_and_exit_status(ocipy, bundle):
    bundle.shell("echo hello; echo oops >&2; exit 3").write()
    r = ocipy("run", "--bundle", bundle.path, "r1")
    assert (r.returncode, r.stdout, r.stderr) == (3, "hello\n", "oops\n")


def test_run_exit_by_signal_is_128_plus_n(state_root, ocipy, bundle, tmp_path):
    # Killed from outside: pid 1 of a pid namespace ignores SIGKILL sent from inside it.
    out = tmp_path / "out"
    out.mkdir()
    bundle.bind(out, "/out").shell("touch /out/ready; exec sleep 100").write()
    proc = subprocess.Popen([sys.executable, "-m", "ocipy", "--root", str(state_root), "run", "--bundle", str(bundle.path), "r2"])
    try:
        assert wait_for(lambda: (out / "ready").exists())
        assert ocipy("kill", "r2", "KILL").returncode == 0
        assert proc.wait(timeout=20) == 128 + 9
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_forwards_signals(state_root, bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    bundle.bind(out, "/out").shell("trap 'exit 42' TERM; touch /out/ready; while :; do sleep 0.05; done").write()
    proc = subprocess.Popen([sys.executable, "-m", "ocipy", "--root", str(state_root), "run", "--bundle", str(bundle.path), "r3"])
    try:
        assert wait_for(lambda: (out / "ready").exists())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 42
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_keep_leaves_a_stopped_container(ocipy, bundle):
    bundle.args("true").write()
    assert ocipy("run", "--keep", "--bundle", bundle.path, "k1").returncode == 0
    assert state_of(ocipy, "k1")["status"] == "stopped"
    assert ocipy("delete", "k1").returncode == 0


def test_list_formats(ocipy, bundle):
    r = ocipy("list", "--format", "json")
    assert r.stdout.strip() == "null"
    bundle.args("sleep", "100").write()
    assert ocipy("create", "--bundle", bundle.path, "l1").returncode == 0
    listed = json.loads(ocipy("list", "--format", "json").stdout)
    assert [s["id"] for s in listed] == ["l1"] and listed[0]["status"] == "created"
    assert ocipy("list", "-q").stdout == "l1\n"
    table = ocipy("list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"] and table[1].split()[0] == "l1"
    assert ocipy("delete", "--force", "l1").returncode == 0


def test_single_dash_long_options_and_equals_form(ocipy, bundle, tmp_path):
    bundle.args("true").write()
    r = ocipy("run", f"-bundle={bundle.path}", "-no-subreaper", "--pid-file", tmp_path / "p", "--keep", "s1")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p").read_text().isdigit()
    assert ocipy("delete", "s1").returncode == 0


def test_json_log_line_on_error(ocipy, tmp_path):
    log = tmp_path / "log.json"
    r = ocipy("--log", log, "--log-format", "json", "kill", "nope", "9")
    assert r.returncode == 1
    lines = log.read_text().splitlines()
    entry = json.loads(lines[-1])
    assert entry["level"] == "error" and entry["msg"] == "container does not exist"
    time.strptime(entry["time"], "%Y-%m-%dT%H:%M:%SZ")


def test_library_drives_a_container_without_a_subprocess(runtime, bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    bundle.bind(out, "/out").shell("echo lib > /out/marker").write()
    c = runtime.create("lib1", str(bundle.path))
    assert c.state()["status"] == "created"
    c.start()
    assert c.wait(10)
    assert runtime.container("lib1").status == "stopped"
    assert (out / "marker").read_text() == "lib\n"
    c.delete()
    assert container_dirs(runtime.root) == []


def test_stage1_holds_pid_1_until_before_orphaning_returns(runtime, bundle):
    """`run` becomes pid 1's subreaper in create's before_orphaning, while stage 1 works. Stage 1
    must not exit, which hands pid 1 to whoever reaps orphans, before that has returned, however
    long it takes: else `run` could not wait for its container."""
    from ocipy.linux import syscalls

    bundle.args("sh", "-c", "exit 3").write()
    was = syscalls.get_child_subreaper()

    def slow_subreaper():
        time.sleep(0.3)  # stage 1 would long have exited
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)

    try:
        c = runtime.create("hold1", str(bundle.path), before_orphaning=slow_subreaper)
        with open(f"/proc/{c.pid}/status") as f:
            ppid = int(next(line for line in f if line.startswith("PPid:")).split()[1])
        assert ppid == os.getpid()
        c.start()
        assert os.waitstatus_to_exitcode(os.waitpid(c.pid, 0)[1]) == 3  # ours to reap
    finally:
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, int(was))
        runtime.delete("hold1", force=True)


def test_pid1_child_makes_pid_1_the_callers_own_child(runtime, bundle):
    """With pid1_child (what `run` asks for), pid 1 is forked as the caller's child (clone3's
    CLONE_PARENT): the caller waits for it with no subreaper, and before_orphaning, which only
    the kernels without that need, is not called."""
    bundle.args("sh", "-c", "exit 4").write()
    called = []
    try:
        c = runtime.create("sib1", str(bundle.path), pid1_child=True, before_orphaning=lambda: called.append(1))
        with open(f"/proc/{c.pid}/status") as f:
            ppid = int(next(line for line in f if line.startswith("PPid:")).split()[1])
        assert ppid == os.getpid() and called == []
        c.start()
        assert os.waitstatus_to_exitcode(os.waitpid(c.pid, 0)[1]) == 4
    finally:
        runtime.delete("sib1", force=True)


def test_run_adopts_the_orphans_of_a_container_in_its_pid_namespace(state_root, bundle):
    """A container without a pid namespace of its own leaves its orphans to the nearest
    subreaper: `run` is that one (as runc's), although pid 1 is its child anyway."""
    bundle.config["linux"]["namespaces"] = [ns for ns in bundle.config["linux"]["namespaces"] if ns["type"] != "pid"]
    bundle.shell('p=$(sh -c "sleep 0.3 >/dev/null 2>&1 & echo \\$!"); sleep 0.1; grep PPid /proc/$p/status').write()
    argv = [sys.executable, "-m", "ocipy", "--root", str(state_root), "run", "--bundle", str(bundle.path), "orph1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.split() == ["PPid:", str(proc.pid)]


def test_cgroup_manager_disabled_runs_without_a_cgroup(ocipy, bundle):
    bundle.shell("cat /proc/self/cgroup").write()
    r = ocipy("--cgroup-manager", "disabled", "run", "--bundle", bundle.path, "nocg")
    assert r.returncode == 0, r.stderr
    rel = bundle.config["linux"]["cgroupsPath"]
    assert rel not in r.stdout  # the container stayed in the caller's cgroups


def test_systemd_cgroup_fails_clearly_and_leaves_nothing(ocipy, bundle, state_root):
    bundle.args("true").write()
    r = ocipy("--systemd-cgroup", "create", "--bundle", bundle.path, "sd")
    assert r.returncode == 1 and "systemd" in r.stderr
    assert container_dirs(state_root) == []


def test_a_cgroup_that_cannot_be_made_fails_create_and_leaves_nothing(ocipy, bundle, state_root):
    """A cgroupsPath naming a file of the caller's own cgroup: create says it cannot make the
    cgroup (it used to go on and fail at the first limit), and leaves nothing behind
    (no_leaks checks the cgroups, processes and mounts)."""
    bundle.config["linux"]["cgroupsPath"] = "cgroup.procs"  # a file in our own cgroup, in every hierarchy
    bundle.args("true").write()
    r = ocipy("create", "--bundle", bundle.path, "nocg")
    assert r.returncode == 1
    assert "cannot create cgroup" in r.stderr and "cgroup.procs" in r.stderr, r.stderr
    assert container_dirs(state_root) == []


def _adopted_children() -> list[int]:
    """Our child processes, which as a subreaper include whatever a command left orphaned."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == os.getpid():
                found.append(int(entry))
    return found


def test_a_failed_create_leaves_no_stage1_behind(ocipy, bundle):
    """The CLI forks stage 1 before it even imports create (ocipy/prefork.py), and so before
    the config is validated or the id reserved: a create that fails there ends stage 1 too.
    As a subreaper we would adopt a stage 1 left behind."""
    from ocipy.linux import syscalls

    bundle.args("sleep", "100").write()
    assert ocipy("create", "--bundle", bundle.path, "taken").returncode == 0
    was = syscalls.get_child_subreaper()
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    try:
        before = _adopted_children()
        r = ocipy("create", "--bundle", bundle.path, "taken")  # the id is in use
        assert r.returncode == 1 and "exists" in r.stderr, r.stderr
        bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_BOGUS", "hard": 1, "soft": 1}]
        bundle.write()
        r = ocipy("create", "--bundle", bundle.path, "invalid")
        assert r.returncode == 1 and "RLIMIT_BOGUS" in r.stderr, r.stderr
        time.sleep(0.2)  # an orphan would have been adopted by now
        assert _adopted_children() == before
    finally:
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, was)
        ocipy("delete", "--force", "taken")

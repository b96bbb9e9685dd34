"""docker (dockerd -> containerd -> containerd-shim-runc-v2) with ocipy as a daemon.json runtime.

dockerd runs privately (conftest `docker` fixture): runtimes "ocipy" and "runcw" (dockerd reserves
the name "runc") point at the logging wrappers. Each test runs one scenario with both and compares.
"""

import json
import time

import pytest

from e2e_support import ERRNO_WORDS, FAILING_COMMANDS, IMAGE, alive, errno_reason, compare, host_cgroup_file, text, uniq, wait_for

pytestmark = pytest.mark.root


def _run(docker, rt, *args, **kw):
    return docker("run", "--runtime", docker.runtime_name(rt), "--network", "none", *args, **kw)


def _detached(docker, rt, name, *cmd, extra=()):
    r = _run(docker, rt, "-d", "--name", name, *extra, IMAGE, *cmd)
    assert r.returncode == 0, f"{rt}: docker run -d failed: {r.stderr}"
    return r.stdout.strip()


def _inspect(docker, name, fmt):
    return docker("inspect", "--format", fmt, name).stdout.strip()


def _rm(docker, name):
    docker("rm", "-f", name)


def test_run_rm_relays_output_and_exit_code(docker, wrappers):
    def scenario(rt):
        r = _run(docker, rt, "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
        return {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}

    assert compare(wrappers, scenario) == {"rc": 3, "stdout": "out\n", "stderr": "err\n"}


def test_run_rm_stdin(docker, wrappers):
    def scenario(rt):
        r = _run(docker, rt, "--rm", "-i", IMAGE, "sh", "-c", "tr a-z A-Z", input="hello\n")
        return {"rc": r.returncode, "stdout": r.stdout}

    assert compare(wrappers, scenario) == {"rc": 0, "stdout": "HELLO\n"}


def test_run_detached_then_exec(docker, wrappers):
    def scenario(rt):
        name = uniq("exec", rt)
        try:
            _detached(docker, rt, name, "sleep", "300")
            e = docker("exec", name, "sh", "-c", "echo in; cat /proc/1/cmdline | tr '\\0' ' '; exit 5")
            env = docker("exec", "-e", "FOO=bar", "-w", "/tmp", name, "sh", "-c", "echo $FOO $(pwd) $(id -u)")
            return {"status": _inspect(docker, name, "{{.State.Status}}"), "exec_rc": e.returncode,
                    "exec_out": e.stdout, "exec_err": e.stderr, "env_out": env.stdout, "env_rc": env.returncode}
        finally:
            _rm(docker, name)

    res = compare(wrappers, scenario)
    assert res["status"] == "running" and res["exec_rc"] == 5 and res["exec_out"] == "in\nsleep 300 "
    assert res["env_out"] == "bar /tmp 0\n"


def test_exec_tty(docker, wrappers):
    def scenario(rt):
        name = uniq("exect", rt)
        try:
            _detached(docker, rt, name, "sleep", "300")
            r = docker("exec", "-t", name, "sh", "-c", "tty; test -t 1 && echo tty1; exit 4")
            return {"rc": r.returncode, "out": text(r.stdout), "err": r.stderr}
        finally:
            _rm(docker, name)

    res = compare(wrappers, scenario)
    assert res["rc"] == 4 and res["out"].startswith("/dev/pts/") and res["out"].endswith("tty1\n")


def test_run_tty(docker, wrappers):
    def scenario(rt):
        r = _run(docker, rt, "--rm", "-t", IMAGE, "sh", "-c", "tty; test -t 0 && echo tty0; exit 6")
        return {"rc": r.returncode, "out": text(r.stdout), "err": r.stderr}

    res = compare(wrappers, scenario)
    assert res["rc"] == 6 and res["out"] == "/dev/pts/0\ntty0\n"


def test_stop_delivers_sigterm(docker, wrappers):
    def scenario(rt):
        name = uniq("stop", rt)
        try:
            _detached(docker, rt, name, "sh", "-c", "trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done")
            wait_for(lambda: "ready" in docker("logs", name).stdout)
            t0 = time.monotonic()
            r = docker("stop", "-t", "20", name)
            return {"rc": r.returncode, "fast": time.monotonic() - t0 < 10,
                    "state": _inspect(docker, name, "{{.State.Status}} {{.State.ExitCode}}")}
        finally:
            _rm(docker, name)

    assert compare(wrappers, scenario) == {"rc": 0, "fast": True, "state": "exited 7"}


def test_stop_escalates_to_sigkill(docker, wrappers):
    def scenario(rt):
        name = uniq("stopk", rt)
        try:
            _detached(docker, rt, name, "sleep", "300")
            r = docker("stop", "-t", "1", name)
            return {"rc": r.returncode, "state": _inspect(docker, name, "{{.State.Status}} {{.State.ExitCode}}")}
        finally:
            _rm(docker, name)

    assert compare(wrappers, scenario) == {"rc": 0, "state": "exited 137"}


def test_kill_signal(docker, wrappers):
    def scenario(rt):
        name = uniq("kill", rt)
        try:
            _detached(docker, rt, name, "sh", "-c", "trap 'exit 9' USR1; echo ready; while :; do sleep 0.1; done")
            wait_for(lambda: "ready" in docker("logs", name).stdout)
            k = docker("kill", "-s", "USR1", name)
            w = docker("wait", name)
            return {"kill_rc": k.returncode, "wait_out": w.stdout.strip()}
        finally:
            _rm(docker, name)

    assert compare(wrappers, scenario) == {"kill_rc": 0, "wait_out": "9"}


def test_pause_unpause(docker, wrappers):
    def scenario(rt):
        name = uniq("pause", rt)
        try:
            _detached(docker, rt, name, "sleep", "300")
            p = docker("pause", name)
            paused = _inspect(docker, name, "{{.State.Status}}")
            pid = int(_inspect(docker, name, "{{.State.Pid}}"))
            freezer = host_cgroup_file(pid, "freezer", "freezer.state").read_text().strip()
            u = docker("unpause", name)
            after = _inspect(docker, name, "{{.State.Status}}")
            e = docker("exec", name, "echo", "alive")
            return {"pause_rc": p.returncode, "paused": paused, "freezer": freezer, "unpause_rc": u.returncode,
                    "after": after, "exec": e.stdout}
        finally:
            _rm(docker, name)

    assert compare(wrappers, scenario) == {"pause_rc": 0, "paused": "paused", "freezer": "FROZEN", "unpause_rc": 0,
                                           "after": "running", "exec": "alive\n"}


def test_top(docker, wrappers):
    """docker top asks the runtime: `ps --format json ID` (stdout and stderr on one pipe)."""

    def scenario(rt):
        name = uniq("top", rt)
        try:
            _detached(docker, rt, name, "sleep", "300")
            docker("exec", "-d", name, "sleep", "301")
            time.sleep(0.5)
            r = docker("top", name, "-o", "pid,user,args")  # docker needs a PID column
            return {"rc": r.returncode, "rows": sorted(line.split()[1:] for line in r.stdout.splitlines()[1:]),
                    "err": r.stderr.replace(rt, "RUNTIME")}
        finally:
            _rm(docker, name)

    res = compare(wrappers, scenario)
    assert res["rc"] == 0 and res["rows"] == [["root", "sleep", "300"], ["root", "sleep", "301"]]


def test_stats_no_stream(docker, wrappers):
    def scenario(rt):
        name = uniq("stats", rt)
        try:
            _detached(docker, rt, name, "sleep", "300", extra=["--memory", "64m"])
            r = docker("stats", "--no-stream", "--format", "{{.PIDs}} {{.MemUsage}}", name)
            fields = r.stdout.split()
            return {"rc": r.returncode, "pids": fields[:1], "limit": fields[-1:], "err": r.stderr}
        finally:
            _rm(docker, name)

    res = compare(wrappers, scenario)
    assert res["rc"] == 0 and res["pids"] == ["1"] and res["limit"] == ["64MiB"]


def test_update_zero_means_unchanged(docker, wrappers):
    """docker update sends every field, 0 for the ones not given: 0 must leave the limit as it is."""

    def limits(pid):
        return {"memory": host_cgroup_file(pid, "memory", "memory.limit_in_bytes").read_text().strip(),
                "shares": host_cgroup_file(pid, "cpu", "cpu.shares").read_text().strip(),
                "quota": host_cgroup_file(pid, "cpu", "cpu.cfs_quota_us").read_text().strip(),
                "pids": host_cgroup_file(pid, "pids", "pids.max").read_text().strip()}

    def scenario(rt):
        name = uniq("update", rt)
        try:
            _detached(docker, rt, name, "sleep", "300",
                      extra=["--memory", "64m", "--memory-swap", "128m", "--cpu-shares", "256", "--pids-limit", "100"])
            pid = int(_inspect(docker, name, "{{.State.Pid}}"))
            before = limits(pid)
            a = docker("update", "--cpu-shares", "512", name)
            after_shares = limits(pid)
            b = docker("update", "--pids-limit", "50", "--cpu-quota", "50000", name)
            after_pids = limits(pid)
            c = docker("update", "--memory", "96m", "--memory-swap", "192m", name)
            after_mem = limits(pid)
            return {"rcs": (a.returncode, b.returncode, c.returncode), "errs": (a.stderr, b.stderr, c.stderr),
                    "before": before, "after_shares": after_shares, "after_pids": after_pids, "after_mem": after_mem,
                    "status": _inspect(docker, name, "{{.State.Status}}")}
        finally:
            _rm(docker, name)

    res = compare(wrappers, scenario)
    assert res["rcs"] == (0, 0, 0) and res["status"] == "running"
    assert res["before"] == {"memory": str(64 << 20), "shares": "256", "quota": "-1", "pids": "100"}
    assert res["after_shares"] == {"memory": str(64 << 20), "shares": "512", "quota": "-1", "pids": "100"}
    assert res["after_pids"] == {"memory": str(64 << 20), "shares": "512", "quota": "50000", "pids": "50"}
    assert res["after_mem"] == {"memory": str(96 << 20), "shares": "512", "quota": "50000", "pids": "50"}


def test_libnetwork_prestart_hook(docker, wrappers):
    """dockerd puts `/proc/<dockerd>/exe libnetwork-setkey ...` in hooks.prestart even with --network none;
    the hook must run (a failing hook is fatal) and the container must come up."""

    def scenario(rt):
        name = uniq("hook", rt)
        try:
            cid = _detached(docker, rt, name, "sleep", "300")
            bundles = list((docker.top / "exec").glob(f"containerd/daemon/io.containerd.runtime.v2.task/moby/{cid}/config.json"))
            hooks = json.loads(bundles[0].read_text()).get("hooks", {}) if bundles else {}
            prestart = ["libnetwork-setkey" in h.get("args", []) for h in hooks.get("prestart", [])]
            return {"prestart": prestart, "status": _inspect(docker, name, "{{.State.Status}}"),
                    "hostname": docker("exec", name, "hostname").stdout.strip() == cid[:12]}
        finally:
            _rm(docker, name)

    assert compare(wrappers, scenario) == {"prestart": [True], "status": "running", "hostname": True}


def test_rm_force_running(docker, wrappers):
    def scenario(rt):
        name = uniq("rmf", rt)
        _detached(docker, rt, name, "sleep", "300")
        pid = int(_inspect(docker, name, "{{.State.Pid}}"))
        r = docker("rm", "-f", name)
        exists = docker("inspect", name).returncode
        return {"rc": r.returncode, "inspect_rc": exists, "process_gone": bool(wait_for(lambda: not alive(pid), 10))}

    assert compare(wrappers, scenario) == {"rc": 0, "inspect_rc": 1, "process_gone": True}


@pytest.mark.parametrize("cmd, rc, words", FAILING_COMMANDS)
def test_failing_command_exit_code(docker, wrappers, cmd, rc, words):
    def scenario(rt):
        r = _run(docker, rt, "--rm", IMAGE, *cmd)
        return {"rc": r.returncode, "reason": errno_reason(r.stderr)}

    res = compare(wrappers, scenario)
    assert res["rc"] == rc and res["reason"] in words


def test_failed_create_leaves_no_container(docker, wrappers):
    """After a failed create docker calls `delete --force`: `docker ps -a` shows it Created, nothing runs."""

    def scenario(rt):
        name = uniq("failc", rt)
        try:
            r = _run(docker, rt, "--name", name, IMAGE, "/nonexistent")
            return {"rc": r.returncode, "state": _inspect(docker, name, "{{.State.Status}} {{.State.ExitCode}}")}
        finally:
            _rm(docker, name)

    assert compare(wrappers, scenario) == {"rc": 127, "state": "created 127"}


def test_exec_failing_command_exit_code(docker, wrappers):
    def scenario(rt):
        name = uniq("execfail", rt)
        try:
            _detached(docker, rt, name, "sleep", "300")
            a = docker("exec", name, "/nonexistent")
            b = docker("exec", name, "/etc/passwd")
            return {"missing_rc": a.returncode, "noexec_rc": b.returncode,
                    "missing_msg": bool(ERRNO_WORDS.search(a.stderr) or ERRNO_WORDS.search(a.stdout)),
                    "noexec_msg": bool(ERRNO_WORDS.search(b.stderr) or ERRNO_WORDS.search(b.stdout))}
        finally:
            _rm(docker, name)

    res = compare(wrappers, scenario)
    assert res["missing_rc"] in (126, 127) and res["noexec_rc"] == 126 and res["missing_msg"] and res["noexec_msg"]


def test_bad_config_error_reaches_user(docker, wrappers):
    """An rlimit above the hard limit: the runtime's create fails, docker must show its error."""

    def scenario(rt):
        r = _run(docker, rt, "--rm", "--ulimit", "nofile=4000000:4000000", IMAGE, "true")
        return {"rc": r.returncode, "runtime_error_shown": "OCI runtime create failed" in r.stderr,
                "mentions_rlimit": "rlimit" in r.stderr.lower()}

    assert compare(wrappers, scenario) == {"rc": 125, "runtime_error_shown": True, "mentions_rlimit": True}

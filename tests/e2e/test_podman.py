"""podman (through conmon) with ocipy as an [engine.runtimes] entry, against runc.

Each test runs one scenario with `--runtime runc` and `--runtime ocipy` and compares what the
podman user sees. Containers are named `<scenario>-<runtime>-...` and removed in `finally`.
"""

import os
import time

import pytest

from e2e_support import ERRNO_WORDS, FAILING_COMMANDS, IMAGE, alive, errno_reason, compare, host_cgroup_file, text, uniq, wait_for

pytestmark = pytest.mark.root

RUN = ["run", "--network", "none"]


def _rm(podman, rt, name):
    podman("rm", "-f", "-t", "0", name, runtime=rt)


def _detached(podman, rt, name, *cmd, extra=()):
    r = podman(*RUN, "-d", "--name", name, *extra, IMAGE, *cmd, runtime=rt)
    assert r.returncode == 0, f"{rt}: podman run -d failed: {r.stderr}"
    return r.stdout.strip()


def _status(podman, rt, name):
    return podman("inspect", "--format", "{{.State.Status}}", name, runtime=rt).stdout.strip()


def _exit_code(podman, rt, name):
    return podman("inspect", "--format", "{{.State.ExitCode}}", name, runtime=rt).stdout.strip()


def test_run_rm_relays_output_and_exit_code(podman, wrappers):
    def scenario(rt):
        r = podman(*RUN, "--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3", runtime=rt)
        return {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}

    res = compare(wrappers, scenario)
    assert res == {"rc": 3, "stdout": "out\n", "stderr": "err\n"}


def test_run_rm_stdin(podman, wrappers):
    def scenario(rt):
        r = podman(*RUN, "--rm", "-i", IMAGE, "sh", "-c", "tr a-z A-Z", runtime=rt, input="hello\n")
        return {"rc": r.returncode, "stdout": r.stdout}

    assert compare(wrappers, scenario) == {"rc": 0, "stdout": "HELLO\n"}


def test_run_detached_then_exec(podman, wrappers):
    def scenario(rt):
        name = uniq("exec", rt)
        try:
            _detached(podman, rt, name, "sleep", "300")
            e = podman("exec", name, "sh", "-c", "echo in; cat /proc/1/cmdline | tr '\\0' ' '; exit 5", runtime=rt)
            env = podman("exec", "-e", "FOO=bar", "-w", "/tmp", name, "sh", "-c", "echo $FOO $(pwd) $(id -u)", runtime=rt)
            return {"status": _status(podman, rt, name), "exec_rc": e.returncode, "exec_out": e.stdout,
                    "exec_err": e.stderr, "env_out": env.stdout, "env_rc": env.returncode}
        finally:
            _rm(podman, rt, name)

    res = compare(wrappers, scenario)
    assert res["status"] == "running" and res["exec_rc"] == 5 and res["exec_out"] == "in\nsleep 300 "
    assert res["env_out"] == "bar /tmp 0\n"


def test_exec_tty(podman, wrappers):
    def scenario(rt):
        name = uniq("exect", rt)
        try:
            _detached(podman, rt, name, "sleep", "300")
            r = podman("exec", "-t", name, "sh", "-c", "tty; test -t 0 && test -t 1 && echo both-tty; exit 4", runtime=rt)
            return {"rc": r.returncode, "out": text(r.stdout), "err": r.stderr}
        finally:
            _rm(podman, rt, name)

    res = compare(wrappers, scenario)
    assert res["rc"] == 4 and res["out"].endswith("both-tty\n") and res["out"].startswith("/dev/pts/")


def test_run_tty(podman, wrappers):
    def scenario(rt):
        r = podman(*RUN, "--rm", "-t", IMAGE, "sh", "-c", "tty; test -t 0 && echo tty0; exit 6", runtime=rt)
        return {"rc": r.returncode, "out": text(r.stdout), "err": r.stderr}

    res = compare(wrappers, scenario)
    assert res["rc"] == 6 and res["out"] == "/dev/pts/0\ntty0\n"


def test_stop_delivers_sigterm(podman, wrappers):
    def scenario(rt):
        name = uniq("stop", rt)
        try:
            _detached(podman, rt, name, "sh", "-c", "trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done")
            wait_for(lambda: "ready" in podman("logs", name, runtime=rt).stdout)
            t0 = time.monotonic()
            r = podman("stop", "-t", "20", name, runtime=rt)
            took = time.monotonic() - t0
            return {"rc": r.returncode, "status": _status(podman, rt, name), "exit": _exit_code(podman, rt, name),
                    "fast": took < 10}
        finally:
            _rm(podman, rt, name)

    assert compare(wrappers, scenario) == {"rc": 0, "status": "exited", "exit": "7", "fast": True}


def test_stop_escalates_to_sigkill(podman, wrappers):
    def scenario(rt):
        name = uniq("stopk", rt)
        try:
            # pid 1 with no handler ignores SIGTERM: podman sends SIGKILL after the timeout
            _detached(podman, rt, name, "sleep", "300")
            r = podman("stop", "-t", "1", name, runtime=rt)
            return {"rc": r.returncode, "status": _status(podman, rt, name), "exit": _exit_code(podman, rt, name)}
        finally:
            _rm(podman, rt, name)

    assert compare(wrappers, scenario) == {"rc": 0, "status": "exited", "exit": "137"}


def test_kill_signal(podman, wrappers):
    def scenario(rt):
        name = uniq("kill", rt)
        try:
            _detached(podman, rt, name, "sh", "-c", "trap 'exit 9' USR1; echo ready; while :; do sleep 0.1; done")
            wait_for(lambda: "ready" in podman("logs", name, runtime=rt).stdout)
            k = podman("kill", "-s", "USR1", name, runtime=rt)
            w = podman("wait", name, runtime=rt)
            return {"kill_rc": k.returncode, "wait_out": w.stdout.strip(), "status": _status(podman, rt, name)}
        finally:
            _rm(podman, rt, name)

    assert compare(wrappers, scenario) == {"kill_rc": 0, "wait_out": "9", "status": "exited"}


def test_pause_unpause(podman, wrappers):
    def scenario(rt):
        name = uniq("pause", rt)
        try:
            _detached(podman, rt, name, "sleep", "300")
            p = podman("pause", name, runtime=rt)
            paused = _status(podman, rt, name)
            pid = int(podman("inspect", "--format", "{{.State.Pid}}", name, runtime=rt).stdout)
            freezer = host_cgroup_file(pid, "freezer", "freezer.state").read_text().strip()
            u = podman("unpause", name, runtime=rt)
            after = _status(podman, rt, name)
            e = podman("exec", name, "echo", "alive", runtime=rt)
            return {"pause_rc": p.returncode, "paused": paused, "freezer": freezer, "unpause_rc": u.returncode,
                    "after": after, "exec": e.stdout}
        finally:
            _rm(podman, rt, name)

    assert compare(wrappers, scenario) == {"pause_rc": 0, "paused": "paused", "freezer": "FROZEN", "unpause_rc": 0,
                                           "after": "running", "exec": "alive\n"}


def test_top(podman, wrappers):
    def scenario(rt):
        name = uniq("top", rt)
        try:
            _detached(podman, rt, name, "sleep", "300")
            r = podman("top", name, "user", "args", runtime=rt)
            return {"rc": r.returncode, "out": [line.split() for line in r.stdout.splitlines()], "err": r.stderr}
        finally:
            _rm(podman, rt, name)

    res = compare(wrappers, scenario)
    assert res["rc"] == 0 and ["root", "sleep", "300"] in res["out"]


def test_stats_no_stream(podman, wrappers):
    def scenario(rt):
        name = uniq("stats", rt)
        try:
            _detached(podman, rt, name, "sleep", "300", extra=["--memory", "64m"])
            r = podman("stats", "--no-stream", "--format", "{{.PIDs}} {{.MemUsage}}", name, runtime=rt)
            fields = r.stdout.split()
            return {"rc": r.returncode, "pids": fields[:1], "limit": fields[-1:], "err": r.stderr}
        finally:
            _rm(podman, rt, name)

    res = compare(wrappers, scenario)
    assert res["rc"] == 0 and res["pids"] == ["1"] and res["limit"] == ["67.11MB"]


def test_update(podman, wrappers):
    def scenario(rt):
        name = uniq("update", rt)
        try:
            _detached(podman, rt, name, "sleep", "300", extra=["--memory", "64m", "--cpu-shares", "256"])
            pid = int(podman("inspect", "--format", "{{.State.Pid}}", name, runtime=rt).stdout)
            before = (host_cgroup_file(pid, "memory", "memory.limit_in_bytes").read_text().strip(),
                      host_cgroup_file(pid, "cpu", "cpu.shares").read_text().strip())
            # podman 4.3's update has no --pids-limit
            r = podman("update", "--memory", "96m", "--cpu-shares", "512", "--cpu-quota", "50000", name, runtime=rt)
            after = (host_cgroup_file(pid, "memory", "memory.limit_in_bytes").read_text().strip(),
                     host_cgroup_file(pid, "cpu", "cpu.shares").read_text().strip(),
                     host_cgroup_file(pid, "cpu", "cpu.cfs_quota_us").read_text().strip())
            return {"rc": r.returncode, "err": r.stderr, "before": before, "after": after,
                    "status": _status(podman, rt, name)}
        finally:
            _rm(podman, rt, name)

    res = compare(wrappers, scenario)
    assert res["rc"] == 0 and res["before"] == (str(64 << 20), "256")
    assert res["after"] == (str(96 << 20), "512", "50000") and res["status"] == "running"


def test_rm_force_running(podman, wrappers):
    def scenario(rt):
        name = uniq("rmf", rt)
        _detached(podman, rt, name, "sleep", "300")
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", name, runtime=rt).stdout)
        r = podman("rm", "-f", "-t", "2", name, runtime=rt)
        gone = podman("container", "exists", name, runtime=rt).returncode
        gone_in_time = wait_for(lambda: not alive(pid), timeout=10)
        return {"rc": r.returncode, "exists_rc": gone, "process_gone": bool(gone_in_time)}

    assert compare(wrappers, scenario) == {"rc": 0, "exists_rc": 1, "process_gone": True}


@pytest.mark.parametrize("cmd, rc, words", FAILING_COMMANDS)
def test_failing_command_exit_code(podman, wrappers, cmd, rc, words):
    def scenario(rt):
        r = podman(*RUN, "--rm", IMAGE, *cmd, runtime=rt)
        return {"rc": r.returncode, "reason": errno_reason(r.stderr)}

    res = compare(wrappers, scenario)
    assert res["rc"] == rc and res["reason"] in words


def test_exec_failing_command_exit_code(podman, wrappers):
    def scenario(rt):
        name = uniq("execfail", rt)
        try:
            _detached(podman, rt, name, "sleep", "300")
            a = podman("exec", name, "/nonexistent", runtime=rt)
            b = podman("exec", name, "/etc/passwd", runtime=rt)
            return {"missing_rc": a.returncode, "noexec_rc": b.returncode,
                    "missing_msg": bool(ERRNO_WORDS.search(a.stderr)), "noexec_msg": bool(ERRNO_WORDS.search(b.stderr))}
        finally:
            _rm(podman, rt, name)

    assert compare(wrappers, scenario) == {"missing_rc": 127, "noexec_rc": 126, "missing_msg": True, "noexec_msg": True}


def _podman_error_class(stderr: str) -> str:
    """podman sorts a runtime's error by its text (libpod getOCIRuntimeError) and names the class."""
    for cls in ("OCI permission denied", "OCI runtime attempted to invoke a command that was not found",
                "OCI runtime error"):
        if cls in stderr:
            return cls
    return "none"


def test_bad_config_error_reaches_user(podman, wrappers):
    """An rlimit above the hard limit: the runtime's create fails, podman must show its error.

    runc's message ends in the errno text ("error setting rlimit type 7: operation not permitted"),
    which podman files as "OCI permission denied"; the wording may differ, the class must not.
    """

    def scenario(rt):
        r = podman(*RUN, "--rm", "--ulimit", "nofile=4000000:4000000", IMAGE, "true", runtime=rt)
        return {"rc": r.returncode, "error_class": _podman_error_class(r.stderr),
                "runtime_message_shown": f"{rt}:" in r.stderr, "mentions_rlimit": "rlimit" in r.stderr.lower()}

    assert compare(wrappers, scenario) == {"rc": 126, "error_class": "OCI permission denied",
                                           "runtime_message_shown": True, "mentions_rlimit": True}


def test_cgroups_disabled_ocipy_only(podman, wrappers):
    """--cgroups=disabled: podman allows it only for names in runtime_supports_nocgroup (ocipy is listed
    in our containers.conf, runc is not), so there is nothing to compare: podman refuses runc."""
    r = podman(*RUN, "--rm", "--cgroups=disabled", IMAGE, "sh", "-c", "echo ok", runtime="runc")
    assert r.returncode != 0, "podman is expected to refuse --cgroups=disabled for runc"
    mark = wrappers["ocipy"].mark()
    r = podman(*RUN, "--rm", "--cgroups=disabled", IMAGE, "sh", "-c", "echo ok; exit 3", runtime="ocipy")
    calls = wrappers["ocipy"].since(mark)
    assert (r.returncode, r.stdout) == (3, "ok\n"), f"rc={r.returncode} stderr={r.stderr}\ncalls:\n{calls}"


def test_restart_and_exec_detached(podman, wrappers):
    def scenario(rt):
        name = uniq("restart", rt)
        try:
            _detached(podman, rt, name, "sh", "-c", "echo started >> /tmp/log; sleep 300")
            d = podman("exec", "-d", name, "sh", "-c", "echo bg > /tmp/bg", runtime=rt)
            wait_for(lambda: podman("exec", name, "cat", "/tmp/bg", runtime=rt).stdout == "bg\n", timeout=10)
            r = podman("restart", "-t", "1", name, runtime=rt)
            log = podman("exec", name, "cat", "/tmp/log", runtime=rt)
            return {"exec_d_rc": d.returncode, "restart_rc": r.returncode, "log": log.stdout,
                    "status": _status(podman, rt, name)}
        finally:
            _rm(podman, rt, name)

    assert compare(wrappers, scenario) == {"exec_d_rc": 0, "restart_rc": 0, "log": "started\nstarted\n",
                                           "status": "running"}


def _pids_running(cmdline: bytes) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if f.read() == cmdline and alive(int(d)):
                        out.append(int(d))
            except OSError:
                pass
    return out


def test_stop_with_host_pid_namespace(podman, wrappers):
    """--pid host: the container's other processes must go too when pid 1 stops.

    (podman 4.3 was seen calling plain `kill ID 15` here, then `delete --force`: it is the runtime's
    delete that has to reap the rest of the cgroup.)"""
    marker = b"sleep\x00301\x00"

    def scenario(rt):
        name = uniq("stopall", rt)
        try:
            _detached(podman, rt, name, "sh", "-c", "sleep 301 & echo ready; wait", extra=["--pid", "host"])
            wait_for(lambda: "ready" in podman("logs", name, runtime=rt).stdout)
            had_child = bool(_pids_running(marker))
            s = podman("stop", "-t", "2", name, runtime=rt)
            return {"had_child": had_child, "stop_rc": s.returncode, "status": _status(podman, rt, name),
                    "child_left": bool(wait_for(lambda: not _pids_running(marker), timeout=5)) is False}
        finally:
            _rm(podman, rt, name)

    assert compare(wrappers, scenario) == {"had_child": True, "stop_rc": 0, "status": "exited", "child_left": False}

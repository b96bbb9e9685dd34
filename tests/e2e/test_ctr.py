"""containerd's ctr with `--runc-binary`: the runc shim (containerd-shim-runc-v2) calls ocipy.

containerd runs privately (conftest `ctr` fixture), each runtime gets its own `--runc-root`,
and each test runs one scenario with runc and with ocipy and compares.
"""

import subprocess

import pytest

from e2e_support import compare, host_cgroup_file, run_in_pty, text, uniq, wait_for

pytestmark = pytest.mark.root


def _run(ctr, rt, cid, *cmd, flags=(), **kw):
    return ctr("run", *ctr.runc_flags(rt), *flags, ctr.image, cid, *cmd, **kw)


def _task_status(ctr, cid):
    for line in ctr("tasks", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == cid:
            return fields[-1]
    return "none"


def _remove(ctr, cid):
    ctr("tasks", "kill", "-s", "SIGKILL", cid)
    wait_for(lambda: _task_status(ctr, cid) in ("STOPPED", "none"), timeout=10)
    ctr("tasks", "delete", cid)
    ctr("containers", "delete", cid)


def _detached(ctr, rt, cid, *cmd):
    r = _run(ctr, rt, cid, *cmd, flags=["-d"])
    assert r.returncode == 0, f"{rt}: ctr run -d failed: {r.stderr}"
    assert wait_for(lambda: _task_status(ctr, cid) == "RUNNING", timeout=10), f"{rt}: task not running"


def test_run_rm_relays_output_and_exit_code(ctr, wrappers):
    def scenario(rt):
        cid = uniq("run", rt)
        try:
            r = _run(ctr, rt, cid, "sh", "-c", "echo out; echo err >&2; exit 3", flags=["--rm"])
            return {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr,
                    "left": ctr("containers", "info", cid).returncode != 0}
        finally:
            _remove(ctr, cid)

    assert compare(wrappers, scenario) == {"rc": 3, "stdout": "out\n", "stderr": "err\n", "left": True}


def test_run_tty(ctr, wrappers):
    def scenario(rt):
        cid = uniq("runt", rt)
        try:
            rc, out = run_in_pty(ctr.argv("run", *ctr.runc_flags(rt), "--rm", "-t", ctr.image, cid, "sh", "-c", "tty; exit 2"))
            return {"rc": rc, "out": text(out).strip()}
        finally:
            _remove(ctr, cid)

    assert compare(wrappers, scenario) == {"rc": 2, "out": "/dev/pts/0"}


def test_exec(ctr, wrappers):
    def scenario(rt):
        cid = uniq("exec", rt)
        try:
            _detached(ctr, rt, cid, "sleep", "300")
            e = ctr("tasks", "exec", *ctr.fifo_flags(), "--exec-id", "e1", cid, "sh", "-c", "echo in; cat /proc/1/cmdline | tr '\\0' ' '; exit 5")
            t_rc, t_out = run_in_pty(ctr.argv("tasks", "exec", *ctr.fifo_flags(), "-t", "--exec-id", "e2", cid, "sh", "-c", "tty; exit 4"))
            m = ctr("tasks", "exec", *ctr.fifo_flags(), "--exec-id", "e3", cid, "/nonexistent")
            return {"rc": e.returncode, "out": e.stdout, "err": e.stderr,
                    "tty_rc": t_rc, "tty_out": text(t_out).strip().startswith("/dev/pts/"),
                    "missing_rc": m.returncode, "missing_msg": "no such file or directory" in m.stderr,
                    "status": _task_status(ctr, cid)}
        finally:
            _remove(ctr, cid)

    res = compare(wrappers, scenario)
    assert res["rc"] == 5 and res["out"] == "in\nsleep 300 " and res["status"] == "RUNNING"
    assert res["tty_rc"] == 4 and res["tty_out"] and res["missing_rc"] != 0 and res["missing_msg"]


def test_kill_and_delete(ctr, wrappers):
    def scenario(rt):
        cid = uniq("kill", rt)
        # ctr run in the foreground relays the exit status; kill it from a second ctr
        fg = subprocess.Popen(ctr.argv("run", *ctr.runc_flags(rt), ctr.image, cid, "sh", "-c",
                                       "trap 'exit 9' USR1; echo ready; while :; do sleep 0.1; done"),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            ready = fg.stdout.readline().strip()
            k = ctr("tasks", "kill", "-s", "SIGUSR1", cid)
            fg_rc = fg.wait(timeout=30)
            stopped = _task_status(ctr, cid)  # the foreground ctr run deleted the task already
            d = ctr("tasks", "delete", cid)
            c = ctr("containers", "delete", cid)
            return {"ready": ready, "kill_rc": k.returncode, "run_rc": fg_rc, "after_kill": stopped,
                    "delete_rc": d.returncode, "container_delete_rc": c.returncode,
                    "gone": ctr("containers", "info", cid).returncode != 0}
        finally:
            if fg.poll() is None:
                fg.kill()
                fg.wait()
            _remove(ctr, cid)

    assert compare(wrappers, scenario) == {"ready": "ready", "kill_rc": 0, "run_rc": 9, "after_kill": "none",
                                           "delete_rc": 1, "container_delete_rc": 0, "gone": True}


def test_delete_force_running_and_kill_all(ctr, wrappers):
    def scenario(rt):
        cid = uniq("delf", rt)
        try:
            _detached(ctr, rt, cid, "sleep", "300")
            ctr("tasks", "exec", *ctr.fifo_flags(), "-d", "--exec-id", "bg", cid, "sleep", "301")
            plain = ctr("tasks", "delete", cid)  # running: refused
            ka = ctr("tasks", "kill", "-a", "-s", "SIGKILL", cid)
            stopped = wait_for(lambda: _task_status(ctr, cid) == "STOPPED", timeout=10)
            d = ctr("tasks", "delete", cid)
            return {"plain_rc": plain.returncode, "kill_all_rc": ka.returncode, "stopped": bool(stopped),
                    "delete_rc": d.returncode, "status": _task_status(ctr, cid)}
        finally:
            _remove(ctr, cid)

    assert compare(wrappers, scenario) == {"plain_rc": 1, "kill_all_rc": 0, "stopped": True, "delete_rc": 0,
                                           "status": "none"}


def test_pause_resume(ctr, wrappers):
    def scenario(rt):
        cid = uniq("pause", rt)
        try:
            _detached(ctr, rt, cid, "sleep", "300")
            pid = int(ctr("tasks", "ls").stdout.split(cid, 1)[1].split()[0])
            p = ctr("tasks", "pause", cid)
            paused = _task_status(ctr, cid)
            freezer = host_cgroup_file(pid, "freezer", "freezer.state").read_text().strip()
            r = ctr("tasks", "resume", cid)
            return {"pause_rc": p.returncode, "paused": paused, "freezer": freezer, "resume_rc": r.returncode,
                    "after": _task_status(ctr, cid)}
        finally:
            _remove(ctr, cid)

    assert compare(wrappers, scenario) == {"pause_rc": 0, "paused": "PAUSED", "freezer": "FROZEN", "resume_rc": 0,
                                           "after": "RUNNING"}


def test_failing_command(ctr, wrappers):
    def scenario(rt):
        cid = uniq("fail", rt)
        try:
            r = _run(ctr, rt, cid, "/nonexistent", flags=["--rm"])
            return {"rc": r.returncode, "msg": "no such file or directory" in r.stderr,
                    "left": ctr("containers", "info", cid).returncode}
        finally:
            _remove(ctr, cid)

    res = compare(wrappers, scenario)
    assert res["rc"] != 0 and res["msg"]

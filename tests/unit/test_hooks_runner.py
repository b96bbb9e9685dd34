"""ocipy.hooks: how a hook is started and fed, and how its failures read (no container needed)."""

import json
import os
import subprocess
import sys
import time

import pytest

import ocipy
from ocipy.errors import HookError
from ocipy.hooks import run_hook, run_hooks, run_hooks_warn
from ocipy.spec import Hook

STATE = {"ociVersion": "1.3.0", "id": "c1", "status": "creating", "pid": 42, "bundle": "/b"}

# The hook reports what it sees as JSON on stdout, to the file named by its first argument.
REPORT = r"""
import json, os, sys
state = sys.stdin.read()
fds = sorted(int(n) for n in os.listdir("/proc/self/fd"))
with open(sys.argv[1], "w") as f:
    json.dump({
        "argv": sys.argv, "state": state, "env": dict(os.environ), "cwd": os.getcwd(),
        "session_leader": os.getsid(0) == os.getpid(), "fds": fds,
    }, f)
"""


def python_hook(code: str, *args, **fields) -> Hook:
    return Hook(path=sys.executable, args=[sys.executable, "-I", "-S", "-c", code, *args], **fields)


def test_hook_gets_state_argv_env_cwd_and_nothing_else(tmp_path):
    report = tmp_path / "report.json"
    stray = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(stray, True)  # an inheritable fd of ours must not reach the hook
    try:
        run_hook(python_hook(REPORT, str(report), env=["FOO=bar", "EMPTY=", "NOEQUALS"]), STATE, kind="prestart",
                 index=0, cwd=str(tmp_path))
    finally:
        os.close(stray)
    seen = json.loads(report.read_text())
    assert json.loads(seen["state"]) == STATE
    assert seen["argv"][1:] == [str(report)]
    seen["env"].pop("LC_CTYPE", None)  # set by Python itself in a C locale (PEP 538)
    assert seen["env"] == {"FOO": "bar", "EMPTY": ""}
    assert seen["cwd"] == str(tmp_path)
    assert seen["session_leader"] is True
    assert stray not in seen["fds"] and seen["fds"][:3] == [0, 1, 2]


def test_signals_python_ignores_are_back_to_their_default(tmp_path):
    out = tmp_path / "sigign"
    run_hook(Hook(path="/bin/sh", args=["sh", "-c", f"grep SigIgn /proc/$$/status > {out}"]), STATE, kind="prestart", index=0)
    ignored = int(out.read_text().split()[1], 16)
    assert not ignored & (1 << (13 - 1)) and not ignored & (1 << (25 - 1))  # SIGPIPE, SIGXFSZ


def test_a_big_state_and_big_output_do_not_deadlock():
    code = "import sys; data = sys.stdin.read(); sys.stdout.write('o' * 300000); sys.stderr.write(str(len(data))); sys.exit(3)"
    state = {**STATE, "annotations": {"big": "x" * 200000}}
    with pytest.raises(HookError) as e:
        run_hook(python_hook(code), state, kind="prestart", index=1)
    assert str(e.value) == f"prestart hook #1 ({sys.executable}) failed: exit status 3: {len(json.dumps(state))}"


def test_a_hook_may_ignore_its_stdin():
    run_hook(Hook(path="/bin/true"), STATE, kind="poststart", index=0)


def test_failure_reports_stdout_when_stderr_is_empty():
    with pytest.raises(HookError, match=r"createRuntime hook #2 \(.*\) failed: exit status 1: out here$"):
        run_hook(python_hook("print('out here'); raise SystemExit(1)"), STATE, kind="createRuntime", index=2)


def test_killed_by_a_signal():
    with pytest.raises(HookError, match=r"failed: killed by signal 9$"):
        run_hook(python_hook("import os; os.kill(os.getpid(), 9)"), STATE, kind="prestart", index=0)


@pytest.mark.parametrize("path, cwd, why", [
    ("/nonexistent/hook", None, "No such file or directory"),
    ("{tmp}/not-executable", None, "Permission denied"),
    ("/bin/true", "/nonexistent", "No such file or directory"),
])
def test_cannot_start(tmp_path, path, cwd, why):
    (tmp_path / "not-executable").write_text("#!/bin/sh\n")
    path = path.format(tmp=tmp_path)
    with pytest.raises(HookError) as e:
        run_hook(Hook(path=path), STATE, kind="prestart", index=0, cwd=cwd)
    assert str(e.value) == f"prestart hook #0 ({path}): cannot start: {why}"


def test_timeout_kills_the_hook_and_its_children(tmp_path):
    pidfile = tmp_path / "pid"
    code = f"import os, time; pid = os.fork() or os.getpid(); open({str(pidfile)!r}, 'a').write(f'{{pid}}\\n'); time.sleep(30)"
    started = time.monotonic()
    with pytest.raises(HookError, match=r"prestart hook #0 \(.*\): timed out after 1s$"):
        run_hook(python_hook(code, timeout=1), STATE, kind="prestart", index=0)
    assert time.monotonic() - started < 10
    time.sleep(0.2)
    for pid in map(int, pidfile.read_text().split()):
        try:
            with open(f"/proc/{pid}/stat") as f:
                assert f.read().split()[2] == "Z", f"hook process {pid} survived"  # a zombie of its session at most
        except FileNotFoundError:
            pass


def test_run_hooks_stops_at_the_first_failure_and_warn_goes_on(tmp_path):
    log = tmp_path / "log"
    ok = python_hook(f"open({str(log)!r}, 'a').write('ok\\n')")
    bad = Hook(path="/bin/false")
    with pytest.raises(HookError, match="poststart hook #1"):
        run_hooks([ok, bad, ok], STATE, kind="poststart")
    assert log.read_text() == "ok\n"
    warnings = []
    run_hooks_warn([bad, ok], STATE, kind="poststop", warn=warnings.append)
    assert warnings == ["poststop hook #0 (/bin/false) failed: exit status 1"]
    assert log.read_text() == "ok\nok\n"


def test_runs_with_nothing_left_to_import(tmp_path):
    """startContainer hooks run after pivot_root, where the host's modules are out of reach."""
    out = tmp_path / "ran"
    code = f"""
import sys
from ocipy.hooks import run_hook
from ocipy.spec import Hook

class NoImports:
    def find_spec(self, name, path=None, target=None):
        raise ImportError(f"{{name}}: nothing can be imported after pivot_root")

sys.meta_path.insert(0, NoImports())
run_hook(Hook(path="/bin/sh", args=["sh", "-c", "cat > {out}"], timeout=5), {{"status": "created"}}, kind="startContainer", index=0)
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(ocipy.__file__)))
    prelude = f"import sys; sys.path.insert(0, {root!r})\n"
    result = subprocess.run([sys.executable, "-I", "-S", "-c", prelude + code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == {"status": "created"}

"""Lifecycle hooks: order, namespace, state on stdin, env, args, timeout and failure (root)."""

import json
import os
import time

import pytest
from testlib import container_dirs, wait_stopped  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]

HOOK = """#!/bin/sh
read -r state
echo "$1 $FOO $(readlink /proc/self/ns/mnt) $state" >> {log}
exit {code}
"""


def write_hook(path, log, code=0):
    path.write_text(HOOK.format(log=log, code=code))
    path.chmod(0o755)
    return str(path)


def hook(path, name, **extra):
    # args[0] is argv[0]; a #! script sees it replaced by its own path, so the name goes in $1.
    return {"path": path, "args": [path, name], "env": ["FOO=bar"], **extra}


def test_hooks_run_in_order_with_state(ocipy, bundle, tmp_path):
    log = tmp_path / "hooks.log"
    script = write_hook(tmp_path / "hook.sh", log)
    # startContainer runs in the container: its path is inside the rootfs, its log bind-mounted.
    out = tmp_path / "out"
    out.mkdir()
    (bundle.rootfs / "hook.sh").write_text(HOOK.format(log="/out/hooks.log", code=0))
    (bundle.rootfs / "hook.sh").chmod(0o755)
    bundle.bind(out, "/out")
    bundle.config["annotations"] = {"org.test": "yes"}
    bundle.config["hooks"] = {
        "prestart": [hook(script, "prestart")],
        "createRuntime": [hook(script, "createRuntime")],
        "createContainer": [hook(script, "createContainer")],
        "startContainer": [hook("/hook.sh", "startContainer")],
        "poststart": [hook(script, "poststart")],
        "poststop": [hook(script, "poststop")],
    }
    bundle.args("true").write()
    assert ocipy("create", "--bundle", bundle.path, "h1").returncode == 0
    pid = json.loads(ocipy("state", "h1").stdout)["pid"]
    assert ocipy("start", "h1").returncode == 0
    wait_stopped(ocipy, "h1")
    assert ocipy("delete", "h1").returncode == 0

    host_rows = [line.split(" ", 3) for line in log.read_text().splitlines()]
    in_ctr = [line.split(" ", 3) for line in (out / "hooks.log").read_text().splitlines()]
    assert [r[0] for r in host_rows] == ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]
    assert [r[0] for r in in_ctr] == ["startContainer"]
    assert all(r[1] == "bar" for r in host_rows + in_ctr)  # env FOO=bar, and only what was given
    host_mnt = os.readlink("/proc/self/ns/mnt")
    by_name = {r[0]: r for r in host_rows + in_ctr}
    # prestart/createRuntime/poststart/poststop: runtime namespace; createContainer/startContainer: container's.
    for name in ("prestart", "createRuntime", "poststart", "poststop"):
        assert by_name[name][2] == host_mnt, name
    for name in ("createContainer", "startContainer"):
        assert by_name[name][2] != host_mnt, name
    states = {name: json.loads(row[3]) for name, row in by_name.items()}
    assert states["prestart"]["status"] == "creating" and states["prestart"]["pid"] == pid
    assert states["createContainer"]["status"] == "creating"
    assert states["startContainer"]["status"] == "created"
    assert states["poststart"]["status"] == "running"
    assert states["poststop"]["status"] == "stopped"
    assert all(s["id"] == "h1" and s["annotations"] == {"org.test": "yes"} for s in states.values())


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_hook_fails_create_and_leaves_nothing(ocipy, bundle, tmp_path, state_root, kind):
    log = tmp_path / "hooks.log"
    bundle.config["hooks"] = {kind: [hook(write_hook(tmp_path / "fail.sh", log, code=3), kind)]}
    bundle.args("true").write()
    r = ocipy("create", "--bundle", bundle.path, "hf")
    assert r.returncode == 1
    assert f"{kind} hook #0" in r.stderr and "exit status 3" in r.stderr
    assert container_dirs(state_root) == []


def test_hook_timeout(ocipy, bundle, tmp_path, state_root):
    slow = tmp_path / "slow.sh"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    bundle.config["hooks"] = {"prestart": [{"path": str(slow), "timeout": 1}]}
    bundle.args("true").write()
    started = time.monotonic()
    r = ocipy("create", "--bundle", bundle.path, "ht")
    assert r.returncode == 1 and "timed out after 1s" in r.stderr
    assert time.monotonic() - started < 15
    assert container_dirs(state_root) == []


def test_failing_poststop_hook_is_a_warning(ocipy, bundle, tmp_path, state_root):
    log = tmp_path / "hooks.log"
    bundle.config["hooks"] = {"poststop": [hook(write_hook(tmp_path / "fail.sh", log, code=1), "poststop"), hook(write_hook(tmp_path / "ok.sh", log), "second")]}
    bundle.args("true").write()
    r = ocipy("run", "--bundle", bundle.path, "hp")
    assert r.returncode == 0
    assert "poststop hook #0" in r.stderr
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["poststop", "second"]
    assert container_dirs(state_root) == []


def test_poststop_warning_of_delete_goes_to_the_log_file(ocipy, bundle, tmp_path, state_root):
    """An engine's `delete` (--log FILE --log-format json) that runs a failing poststop hook
    succeeds, and the warning is a JSON line in the file the engine reads."""
    hooks_log, engine_log = tmp_path / "hooks.log", tmp_path / "log.json"
    bundle.config["hooks"] = {"poststop": [hook(write_hook(tmp_path / "fail.sh", hooks_log, code=1), "poststop")]}
    bundle.args("true").write()
    assert ocipy("create", "--bundle", bundle.path, "hd").returncode == 0
    assert ocipy("start", "hd").returncode == 0
    wait_stopped(ocipy, "hd")
    r = ocipy("--log", engine_log, "--log-format", "json", "delete", "hd")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in engine_log.read_text().splitlines()]
    assert [(line["level"], "poststop hook #0" in line["msg"]) for line in lines] == [("warning", True)]
    assert "poststop hook #0" in r.stderr
    assert hooks_log.read_text().split()[0] == "poststop"
    assert container_dirs(state_root) == []


def test_library_warnings_go_to_the_runtimes_log(bundle, tmp_path, state_root):
    """ocipy.Runtime(log=...) receives the warnings (here a failing poststop hook's), instead of
    the process-wide logger."""
    from ocipy import Runtime

    class Recorder:
        def __init__(self):
            self.lines = []

        def warning(self, message):
            self.lines.append(message)

    recorder = Recorder()
    bundle.config["hooks"] = {"poststop": [hook(write_hook(tmp_path / "fail.sh", tmp_path / "hooks.log", code=1), "poststop")]}
    bundle.args("true").write()
    container = Runtime(str(state_root), log=recorder).create("hl", str(bundle.path))
    try:
        container.start()
        assert container.wait(10)
    finally:
        container.delete(force=True)
    assert len(recorder.lines) == 1 and "poststop hook #0" in recorder.lines[0]
    assert container_dirs(state_root) == []

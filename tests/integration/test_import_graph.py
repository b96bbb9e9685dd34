"""What each command imports, run the way the installed `ocipy` launcher runs it (python -IS).

Every command is a fresh interpreter, and engines call the runtime constantly: `import
json` alone costs about as much as the interpreter's own start, `re`, `enum` (through
`signal`), `typing` and `dataclasses` each a good part of it. The commands engines call
for every container must import none of them; `state`, `start`, `kill`, `delete` and
`list` need no kernel glue, not even `os` (~0.8 ms: they use `posix`), and `delete` of a
stopped container removes its cgroups without the cgroup managers. Speed itself is measured by benchmarks/;
this test keeps the import graph from growing back.
"""

import ast
import json
import os
import subprocess
import sys

import pytest

from ocipy.launcher import module_roots
from testlib import wait_stopped  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]

# Costly standard-library modules, and the dependencies only unusual configs or commands need.
NEVER = {
    "json", "re", "enum", "signal", "typing", "dataclasses", "pathlib", "subprocess", "shutil", "hashlib",
    "inspect", "socket", "tempfile", "copy", "traceback", "jsonschema", "referencing", "pyroute2", "click",
}
# What the commands that only read the state, signal processes and remove a stopped container
# must not load either; nor, when they succeed, the logger (they write no line).
NOT_FOR_STATE = NEVER | {"os", "posixpath", "ctypes", "ocipy.logs", "ocipy.spec", "ocipy.bundle", "ocipy.schema",
                         "ocipy.linux.cgroups.manager", "ocipy.linux.cgroups.v1", "ocipy.linux.cgroups.v2",
                         "ocipy.linux.cgroups.resources"}
# exec of a command line joins namespaces and launches a process: no config validation, no
# mounts or devices, nothing of create (launch.py holds what the two share), and it joins the
# cgroups from the state's record (cgroups/joining.py), not through the managers. Its kernel
# calls go through ocipy.linux.libc, not ctypes (~2.5 ms), and it uses posix, not os (1-1.8 ms).
NOT_FOR_EXEC = NEVER | {"os", "posixpath", "_collections_abc", "ctypes", "ocipy.create", "ocipy.init", "ocipy.bundle", "ocipy.schema", "ocipy.linux.rootfs",
                        "ocipy.linux.devices", "ocipy.linux.mountopts", "ocipy.linux.network",
                        "ocipy.linux.cgroups.manager", "ocipy.linux.cgroups.v1", "ocipy.linux.cgroups.v2",
                        "ocipy.linux.cgroups.resources"}

# create's own process validates and makes the cgroup while stage 1, forked first, imports the
# container side (ctypes, mounts, devices, capabilities): the parent must not import it too, nor
# `os` (~1 ms of the parent's path to stage 1's setup: it uses posix and ocipy.fspath).
NOT_FOR_CREATE = NEVER | {"os", "posixpath", "_collections_abc", "ctypes", "ocipy.init", "ocipy.launch", "ocipy.linux.syscalls", "ocipy.linux.rootfs",
                          "ocipy.linux.devices", "ocipy.linux.process", "ocipy.linux.capabilities"}
# Stage 1 of create and run (ocipy.init and all it imports, and the loader of a cached seccomp
# program) imports while the parent validates and makes the cgroup; in about a third of runs it
# is still importing when the parent's "setup" is sent, so it goes without `os` too (1-1.8 ms here).
NOT_FOR_STAGE1 = NEVER | {"os", "posixpath", "_collections_abc", "ctypes"}

_DRIVER = """
import sys
sys.path += {roots!r}
out, sys.argv = sys.argv[1], ["ocipy", *sys.argv[2:]]
try:
    from ocipy.main import main
    main()
except SystemExit as e:
    code = e.code
else:
    code = 0
with open(out, "w") as f:
    f.write(repr((code, sorted(sys.modules))))
"""


@pytest.fixture
def imports_of(state_root, tmp_path):
    """Run one ocipy command as the launcher does; return (exit code, the listed modules it imported)."""
    driver = _DRIVER.format(roots=module_roots())
    report = tmp_path / "modules"

    def run(*args, unwanted=NEVER):
        argv = [sys.executable, "-IS", "-c", driver, str(report), "--root", str(state_root), *map(str, args)]
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)
        code, modules = ast.literal_eval(report.read_text())
        return code, sorted(m for m in modules if m in unwanted or m.split(".")[0] in unwanted)

    return run


def test_engine_commands_import_nothing_costly(imports_of, bundle, ocipy):
    bundle.args("sleep", "100").write()
    try:
        assert imports_of("create", "--bundle", bundle.path, "c1", unwanted=NOT_FOR_CREATE) == (0, [])
        for command in (["state", "c1"], ["list"], ["start", "c1"], ["kill", "c1", "0"], ["state", "c1"]):
            assert imports_of(*command, unwanted=NOT_FOR_STATE) == (0, []), f"ocipy {' '.join(command)}"
        assert imports_of("exec", "c1", "true", unwanted=NOT_FOR_EXEC) == (0, [])
        # an engine's stop: kill, wait, delete --force
        assert imports_of("kill", "c1", "KILL", unwanted=NOT_FOR_STATE) == (0, [])
        wait_stopped(ocipy, "c1")
        assert imports_of("delete", "--force", "c1", unwanted=NOT_FOR_STATE) == (0, [])
        assert ocipy("state", "c1").returncode == 1
    finally:
        ocipy("delete", "--force", "c1")


def test_delete_force_of_a_running_container_still_kills_it(imports_of, bundle, ocipy):
    """The lean path is only for a stopped container: a running one is killed first."""
    bundle.args("sleep", "100").write()
    try:
        assert ocipy("run", "-d", "--bundle", bundle.path, "c2").returncode == 0
        pid = json.loads(ocipy("state", "c2").stdout)["pid"]
        assert imports_of("delete", "--force", "c2") == (0, [])
        assert not os.path.exists(f"/proc/{pid}/stat") or open(f"/proc/{pid}/stat").read().split(") ")[1][0] in "ZX"
        assert ocipy("state", "c2").returncode == 1
    finally:
        ocipy("delete", "--force", "c2")


def test_run_imports_nothing_costly(imports_of, bundle):
    """Nor does `run`'s own process import the container side: pid 1 is its child (clone3's
    CLONE_PARENT), so with a pid namespace it need not become a subreaper (syscalls, ctypes)."""
    bundle.write()
    assert imports_of("run", "--bundle", bundle.path, "r1", unwanted=NOT_FOR_CREATE) == (0, [])


def test_stage1_imports_nothing_costly():
    """What the CLI's stage 1 imports after its fork (prefork._run_child: ocipy.init), and what
    stage 2 adds for a config with a seccomp profile built by an earlier create."""
    probe = (f"import sys; sys.path += {module_roots()!r}; import ocipy.main, ocipy.prefork; before = set(sys.modules); "
             "import ocipy.init, ocipy.linux.seccomp_load; print(sorted(set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-IS", "-c", probe], capture_output=True, text=True, timeout=60, check=True).stdout
    loaded = ast.literal_eval(out)
    assert "ocipy.linux.rootfs" in loaded  # the probe did import the container side
    assert sorted(m for m in loaded if m in NOT_FOR_STAGE1 or m.split(".")[0] in NOT_FOR_STAGE1) == []

"""CVE-2019-5736 shape: a container reaches the runtime's host executable through /proc/<pid>/exe.

ocipy's container-side stages are forks of the host's Python interpreter, so until
the execve of the user's process, /proc/<pid>/exe of ocipy's init (and of an exec'd
process's set-up) is the host's python binary. Three angles:

* the container's own binary is a symlink to /proc/self/exe (and its rootfs ships
  an "ELF interpreter" of the attacker's making): the kernel then executes the
  host's python in the container, as the container's user, dumpable, and the
  probe, running as that python's ELF interpreter, opens /proc/self/exe;
* a process in the container watches /proc during `ocipy exec` and tries to open
  /proc/<pid>/exe and /proc/<pid>/mem of every process it sees (the exec'd process
  is a python interpreter until its execve);
* a second container in the pid namespace of a created (not started) container
  tries to read the waiting init's exe, mem, environ and fds.

Every test checks afterwards that the host's python binary is unchanged.
"""

import json
import os
import sys
import time

import pytest

from helpers_attacks import EXE_PROBE, build_probe, elf_interpreter, file_fingerprint, run_script

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]

HOST_PYTHON = os.path.realpath(sys.executable)


@pytest.fixture
def python_untouched():
    before = file_fingerprint(HOST_PYTHON)
    yield
    assert file_fingerprint(HOST_PYTHON) == before, f"the host's interpreter {HOST_PYTHON} was modified"


def _plant_exe_trap(bundle, tmp_path, name: str) -> None:
    """/bin/<name> -> /proc/self/exe, and the probe as the host python's ELF interpreter."""
    interp = elf_interpreter(HOST_PYTHON)
    probe = build_probe(EXE_PROBE, tmp_path / "exe_probe")
    target = bundle.rootfs / "bin" / name
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to("/proc/self/exe")
    if interp is None:
        # A static interpreter has no ELF interpreter: the kernel runs it directly, and it is python itself.
        pytest.skip(f"{HOST_PYTHON} is static: the probe cannot ride on its ELF interpreter")
    dest = bundle.rootfs / interp.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(probe.read_bytes())
    dest.chmod(0o755)


def _assert_no_handle_on_host_python(out: str, how: str) -> None:
    host = os.stat(HOST_PYTHON)
    fields = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
    print(f"probe ({how}): {fields}; host python dev={host.st_dev} ino={host.st_ino}")
    assert "exe-open-ro" in fields, f"the probe did not run ({how}): {out!r}"
    got_handle = int(fields["exe-open-ro"]) >= 0 and (int(fields.get("dev", -1)), int(fields.get("ino", -1))) == (host.st_dev, host.st_ino)
    wrote = int(fields["exe-open-wo"]) >= 0
    assert not wrote, f"VULNERABLE ({how}): the container opened the host's {HOST_PYTHON} for WRITING through /proc/self/exe"
    assert not got_handle, (
        f"VULNERABLE ({how}, CVE-2019-5736 shape): a container binary that is a symlink to /proc/self/exe made the kernel "
        f"execute the host's {HOST_PYTHON} inside the container (dumpable, as the container's user), and the container "
        f"holds an open fd on it (dev={fields.get('dev')} ino={fields.get('ino')}); the write open failed only with "
        f"errno {-int(fields['exe-open-wo'])} (ETXTBSY=26 while some python still runs), so once no python runs on the "
        "host the attacker can reopen /proc/self/fd/N for writing and replace the runtime's interpreter"
    )


def test_exec_of_a_binary_that_is_proc_self_exe(ocipy, bundle, tmp_path, python_untouched):
    _plant_exe_trap(bundle, tmp_path, "ash")
    bundle.args("sleep", "100").write()
    assert ocipy("run", "--detach", "--bundle", bundle.path, "exe1").returncode == 0
    try:
        r = ocipy("exec", "exe1", "ash")
        print(f"tried: ocipy exec exe1 ash  (/bin/ash -> /proc/self/exe) rc={r.returncode} out={r.stdout!r} err={r.stderr!r}")
    finally:
        ocipy("delete", "--force", "exe1")
    if r.returncode != 0 and "exe-open-ro" not in r.stdout:
        return  # refused before the probe ran: nothing reached the host binary
    _assert_no_handle_on_host_python(r.stdout, "exec")


def test_start_of_a_binary_that_is_proc_self_exe(ocipy, bundle, tmp_path, python_untouched):
    _plant_exe_trap(bundle, tmp_path, "ash")
    bundle.args("ash").write()
    r = ocipy("run", "--bundle", bundle.path, "exe2")
    print(f"tried: ocipy run with process.args ['ash'] (/bin/ash -> /proc/self/exe) rc={r.returncode} out={r.stdout!r} err={r.stderr!r}")
    if r.returncode != 0 and "exe-open-ro" not in r.stdout:
        return
    _assert_no_handle_on_host_python(r.stdout, "start")


# The watcher uses only shell builtins in its loop (no fork per probe), so it polls fast
# ("true", not ":": a failed redirection on a special builtin would end the shell)
# enough to see the exec'd process while it is still ocipy's Python code.
SNIFFER = r"""
exec 2>/dev/null
bb=$(stat -L -c %d:%i /bin/busybox)
: > /tmp/seen
while [ ! -e /tmp/stop ]; do
  for d in /proc/[0-9]*; do
    n=${d#/proc/}
    [ "$n" = "$$" ] && continue
    [ "$n" = 1 ] && continue
    if { read -r -n 1 x; } < $d/exe; then
      id=$(stat -L -c %d:%i $d/exe)
      [ -z "$id" ] && continue  # gone meanwhile
      [ "$id" = "$bb" ] && continue
      echo "EXE-READABLE $n $id" >> /tmp/seen
      if { true >> $d/exe; }; then echo "EXE-WRITABLE $n" >> /tmp/seen; fi
    elif [ -e $d/stat ]; then
      echo "exe-denied $n" >> /tmp/seen
    fi
    if { true < $d/mem; }; then
      id=$(stat -L -c %d:%i $d/exe)
      [ -z "$id" ] || [ "$id" = "$bb" ] || echo "MEM-OPEN $n $id" >> /tmp/seen
    fi
  done
done
echo done >> /tmp/seen
"""


def test_watcher_during_exec_cannot_open_the_runtimes_exe_or_mem(ocipy, bundle, python_untouched):
    (bundle.rootfs / "sniffer").write_text(SNIFFER)
    bundle.args("/bin/sh", "/sniffer").write()
    assert ocipy("run", "--detach", "--bundle", bundle.path, "snif").returncode == 0
    seen = bundle.rootfs / "tmp" / "seen"
    pids = []
    try:
        for _ in range(15):
            r = ocipy("exec", "snif", "sh", "-c", "echo $$")
            assert r.returncode == 0, r.stderr
            pids.append(r.stdout.strip())
            text = seen.read_text() if seen.exists() else ""
            if any(f"exe-denied {p}" in text for p in pids):
                break  # the watcher saw an exec'd process while it was ocipy's python
    finally:
        (bundle.rootfs / "tmp" / "stop").touch()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "done" not in (seen.read_text() if seen.exists() else ""):
            time.sleep(0.05)
        ocipy("delete", "--force", "snif")
    text = seen.read_text()
    lines = sorted(set(text.splitlines()))
    print(f"tried: a watcher in the container opening /proc/N/exe (read, then O_WRONLY|O_APPEND) and /proc/N/mem of every "
          f"process during {len(pids)} execs (exec'd pids {pids}); it saw: {lines}")
    bad = [line for line in lines if line.startswith(("EXE-READABLE", "EXE-WRITABLE", "MEM-OPEN"))]
    assert not bad, f"VULNERABLE: during exec a container process reached a non-container executable or memory: {bad}"
    if not any(f"exe-denied {p}" in text for p in pids):
        pytest.skip("the watcher never caught an exec'd process before its execve (too fast on this machine)")


PEEK = r"""
exec 2>/dev/null
for f in exe mem environ maps; do
  if { read -r -n 1 x; } < /proc/1/$f 2>/dev/null; then echo "OPEN $f"; else echo "denied $f"; fi
done
if readlink /proc/1/exe >/dev/null 2>&1; then echo "OPEN exe-link"; else echo "denied exe-link"; fi
set -- /proc/1/fd/*
if [ -e "$1" ]; then echo "OPEN fd $*"; else echo "denied fd"; fi
if { true >> /proc/1/exe; }; then echo "OPEN exe-write"; else echo "denied exe-write"; fi
echo "pid1: $(tr '\0' ' ' < /proc/1/cmdline)"
exit 0
"""


@pytest.mark.parametrize("uid", [0, 1000])
@pytest.mark.parametrize("waiting", ["waiter", "python"])
def test_created_init_is_out_of_reach_of_a_container_sharing_its_pid_namespace(ocipy, bundle, tmp_path, busybox_rootfs, uid, waiting, python_untouched):
    from testlib import Bundle

    bundle.config["process"]["user"] = {"uid": uid, "gid": uid}
    if waiting == "python":  # startContainer hooks run in the init after `start`: it waits in Python
        bundle.config["hooks"] = {"startContainer": [{"path": "/bin/true"}]}
    bundle.args("true").write()
    assert ocipy("create", "--bundle", bundle.path, "victim").returncode == 0
    try:
        pid = json.loads(ocipy("state", "victim").stdout)["pid"]
        # Either ocipy's own interpreter or the waiter (linux/trampoline.py) waits; both are
        # non-dumpable while they hold exec.fifo.
        expected = HOST_PYTHON if waiting == "python" else "/memfd:ocipy-wait (deleted)"
        assert os.readlink(f"/proc/{pid}/exe") == expected
        (tmp_path / "b2").mkdir()
        second = Bundle(tmp_path / "b2", busybox_rootfs)
        second.config["process"]["user"] = {"uid": uid, "gid": uid}
        ns = second.config["linux"]["namespaces"]
        second.config["linux"]["namespaces"] = [n for n in ns if n["type"] != "pid"] + [{"type": "pid", "path": f"/proc/{pid}/ns/pid"}]
        r = run_script(ocipy, second, PEEK, "peeker", what=f"uid {uid} container in the pid ns of a created init (pid 1)")
    finally:
        ocipy("delete", "--force", "victim")
    assert r.returncode == 0, r.stderr
    assert "denied exe" in r.stdout, r.stdout
    opened = [line for line in r.stdout.splitlines() if line.startswith("OPEN")]
    assert not opened, f"VULNERABLE: a process sharing the pid namespace reached the waiting init: {opened}"

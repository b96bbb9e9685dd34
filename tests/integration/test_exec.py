"""exec: a new process in a running container, as engines drive it (root)."""

import json
import os
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]


@pytest.fixture
def running(ocipy, bundle):
    bundle.config["linux"]["namespaces"].append({"type": "cgroup"})
    bundle.args("sleep", "1000").write()
    assert ocipy("run", "--detach", "--bundle", bundle.path, "ex").returncode == 0
    yield json.loads(ocipy("state", "ex").stdout)["pid"]
    ocipy("delete", "--force", "ex")


def test_exec_relays_output_and_exit_code(ocipy, running):
    r = ocipy("exec", "ex", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")


def test_exec_joins_the_containers_namespaces_and_cgroup(ocipy, running):
    r = ocipy("exec", "ex", "sh", "-c", "for n in pid net mnt ipc uts cgroup; do readlink /proc/self/ns/$n; done; echo $$")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    expected = [os.readlink(f"/proc/{running}/ns/{n}") for n in ("pid", "net", "mnt", "ipc", "uts", "cgroup")]
    assert lines[:6] == expected
    assert lines[6] != "1"  # a new process in the container's pid namespace, not its init


def test_exec_detach_writes_the_pid_file(ocipy, running, tmp_path):
    r = ocipy("exec", "--detach", "--pid-file", tmp_path / "e.pid", "ex", "sleep", "30")
    assert r.returncode == 0, r.stderr
    pid = int((tmp_path / "e.pid").read_bytes())
    assert open(f"/proc/{pid}/cgroup").read() == open(f"/proc/{running}/cgroup").read()
    assert sorted(json.loads(ocipy("ps", "--format", "json", "ex").stdout)) == sorted([running, pid])
    assert os.getsid(pid) == pid  # a session leader


def test_exec_with_a_process_file_and_overrides(ocipy, running, tmp_path):
    process = {"args": ["sh", "-c", "id -u; id -g; pwd; echo $GREETING"], "cwd": "/tmp", "env": ["PATH=/bin", "GREETING=hey"],
               "user": {"uid": 1000, "gid": 1000}, "terminal": False}
    (tmp_path / "p.json").write_text(json.dumps(process))
    r = ocipy("exec", "--process", tmp_path / "p.json", "ex")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1000", "1000", "/tmp", "hey"]
    r = ocipy("exec", "-u", "1234:4321", "--cwd", "/proc", "-e", "X=1", "ex", "sh", "-c", "id -u; id -g; pwd; echo $X")
    assert r.stdout.split() == ["1234", "4321", "/proc", "1"]


def test_exec_into_a_stopped_container(ocipy, bundle):
    bundle.args("true").write()
    assert ocipy("run", "--keep", "--bundle", bundle.path, "st").returncode == 0
    r = ocipy("exec", "st", "true")
    assert r.returncode == 255 and "exec failed: cannot exec in a stopped container" in r.stderr
    assert ocipy("delete", "st").returncode == 0


def test_exec_missing_binary_message(ocipy, running):
    r = ocipy("exec", "ex", "no-such-binary")
    assert r.returncode == 255
    assert 'executable file not found in $PATH' in r.stderr


def test_exec_passes_only_stdio_and_preserved_fds(state_root, running):
    r_fd, w_fd = os.pipe()
    os.set_inheritable(r_fd, True)
    try:
        r = subprocess.run([sys.executable, "-m", "ocipy", "--root", str(state_root), "exec", "ex", "ls", "/proc/self/fd"],
                           capture_output=True, text=True, timeout=60, pass_fds=(r_fd,))
    finally:
        os.close(r_fd)
        os.close(w_fd)
    assert r.returncode == 0, r.stderr
    assert sorted(int(x) for x in r.stdout.split()) == [0, 1, 2, 3]  # 3: ls's own /proc/self/fd


def test_exec_tty_in_the_foreground(ocipy, running):
    r = ocipy("exec", "-t", "ex", "tty")
    assert r.returncode == 0, r.stderr
    assert "/dev/pts/" in r.stdout

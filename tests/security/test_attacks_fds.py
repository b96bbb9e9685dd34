"""CVE-2024-21626 shape: a descriptor the runtime leaks into the container reaches the host.

The caller (an engine, a shim) may hold inheritable descriptors: an O_PATH handle on
a host directory, a plain file. None may reach the container's first process nor an
exec'd one; and a cwd of /proc/self/fd/N, resolved while such an fd (or one of
ocipy's own) is open, must not leave the process in a host directory.
"""

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]

LEAK_FD = 7  # where the caller parks its host-directory handle (as runc's leaked cgroup fd was 7 or 8)
SECRET = "host-only secret\n"


@pytest.fixture
def host_dir(tmp_path):
    d = tmp_path / "hostdir"
    d.mkdir()
    (d / "secret").write_text(SECRET)
    (tmp_path / "HOST_MARKER").write_text("x")
    return d


def ocipy_with_leaks(state_root, host_dir, *args, timeout=60):
    """Run the ocipy CLI with an inheritable O_PATH fd on `host_dir` at LEAK_FD and a plain file at LEAK_FD+1."""
    script = (
        "import os, sys\n"
        f"d = os.open({str(host_dir)!r}, os.O_PATH | os.O_DIRECTORY)\n"
        f"os.dup2(d, {LEAK_FD}, inheritable=True)\n"
        f"f = os.open({str(host_dir / 'secret')!r}, os.O_RDONLY)\n"
        f"os.dup2(f, {LEAK_FD + 1}, inheritable=True)\n"
        f"os.execv(sys.executable, [sys.executable, '-m', 'ocipy', '--root', {str(state_root)!r}, *sys.argv[1:]])\n"
    )
    r = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    print(f"--- tried: ocipy {' '.join(map(str, args))} with fd {LEAK_FD} = O_PATH {host_dir}, fd {LEAK_FD + 1} = its secret\n"
          f"    rc={r.returncode} stdout={r.stdout!r} stderr={r.stderr!r}")
    return r


# The glob's own directory fd shows up in the listing but is closed before readlink runs
# (its target comes back empty); any other fd above 2 is a leak.
LIST_FDS = 'for f in /proc/self/fd/*; do echo "${f##*/} $(readlink $f)"; done'


def _stray(out: str) -> list[str]:
    rows = [line.split(" ", 1) for line in out.splitlines() if line.strip()]
    return [" ".join(r) for r in rows if int(r[0]) > 2 and len(r) > 1 and r[1].strip()]


def test_no_leaked_fd_in_the_containers_first_process(state_root, bundle, host_dir):
    bundle.shell(LIST_FDS).write()
    r = ocipy_with_leaks(state_root, host_dir, "run", "--bundle", bundle.path, "fds1")
    assert r.returncode == 0, r.stderr
    assert not _stray(r.stdout), f"VULNERABLE: descriptors beyond stdio reached the container: {_stray(r.stdout)}"
    assert str(host_dir) not in r.stdout


def test_no_leaked_fd_in_an_exec_process(state_root, ocipy, bundle, host_dir):
    bundle.args("sleep", "100").write()
    assert ocipy("run", "--detach", "--bundle", bundle.path, "fds2").returncode == 0
    try:
        r = ocipy_with_leaks(state_root, host_dir, "exec", "fds2", "sh", "-c", LIST_FDS)
    finally:
        ocipy("delete", "--force", "fds2")
    assert r.returncode == 0, r.stderr
    assert not _stray(r.stdout), f"VULNERABLE: descriptors beyond stdio reached the exec'd process: {_stray(r.stdout)}"


def _escape_probe(tmp_path) -> str:
    up = "../" * 40
    return (
        "exec 2>/dev/null; echo pwd=$(pwd); "
        "if cat ./secret; then echo LEAKED-SECRET; fi; "
        f"if [ -e {up}{str(tmp_path).lstrip('/')}/HOST_MARKER ]; then echo ESCAPED-TO-HOST; fi; exit 0"
    )


def _assert_not_escaped(r) -> None:
    if r.returncode != 0:
        return  # refused: the defence
    assert "LEAKED-SECRET" not in r.stdout and SECRET.strip() not in r.stdout, f"VULNERABLE: the host secret was read: {r.stdout!r}"
    assert "ESCAPED-TO-HOST" not in r.stdout, f"VULNERABLE: the cwd walked up to the host's root: {r.stdout!r}"
    assert "(unreachable)" not in r.stdout, f"VULNERABLE: the process runs with a cwd outside its root: {r.stdout!r}"


def test_cwd_through_a_leaked_host_fd_is_refused(state_root, bundle, host_dir, tmp_path):
    bundle.config["process"]["cwd"] = f"/proc/self/fd/{LEAK_FD}"
    bundle.shell(_escape_probe(tmp_path)).write()
    r = ocipy_with_leaks(state_root, host_dir, "run", "--bundle", bundle.path, "cwd1")
    _assert_not_escaped(r)


@pytest.mark.parametrize("fd", range(3, 13))
def test_cwd_through_one_of_ocipys_own_fds_is_refused(ocipy, bundle, tmp_path, fd):
    """No leak from the caller: whatever ocipy itself holds open at chdir time must not be a way out."""
    bundle.config["process"]["cwd"] = f"/proc/self/fd/{fd}"
    bundle.shell(_escape_probe(tmp_path)).write()
    r = ocipy("run", "--bundle", bundle.path, f"cwd{fd}")
    print(f"--- tried: process.cwd=/proc/self/fd/{fd}: rc={r.returncode} stdout={r.stdout!r} stderr={r.stderr!r}")
    _assert_not_escaped(r)


def test_exec_cwd_through_a_leaked_host_fd_is_refused(state_root, ocipy, bundle, host_dir, tmp_path):
    bundle.args("sleep", "100").write()
    assert ocipy("run", "--detach", "--bundle", bundle.path, "cwdx").returncode == 0
    try:
        r = ocipy_with_leaks(state_root, host_dir, "exec", "--cwd", f"/proc/self/fd/{LEAK_FD}", "cwdx", "sh", "-c", _escape_probe(tmp_path))
        # And ocipy's own descriptors during exec, without a leak from the caller.
        others = []
        for fd in range(3, 13):
            o = ocipy("exec", "--cwd", f"/proc/self/fd/{fd}", "cwdx", "sh", "-c", _escape_probe(tmp_path))
            print(f"--- tried: exec --cwd /proc/self/fd/{fd}: rc={o.returncode} stdout={o.stdout!r} stderr={o.stderr!r}")
            others.append(o)
    finally:
        ocipy("delete", "--force", "cwdx")
    _assert_not_escaped(r)
    for o in others:
        _assert_not_escaped(o)


def test_a_normal_cwd_still_works(ocipy, bundle):
    """Sanity for the probes above: a normal cwd still works, so a refusal is a refusal of the escape only."""
    bundle.config["process"]["cwd"] = "/tmp"
    bundle.shell("pwd").write()
    r = ocipy("run", "--bundle", bundle.path, "cwdok")
    assert (r.returncode, r.stdout) == (0, "/tmp\n"), r.stderr

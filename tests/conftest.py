"""Fixtures shared by ocipy's tests.

Root tests create real namespaces, mounts and cgroups. Every container a test
makes lives under a temporary --root and a relative cgroupsPath below
`ocipy-test/`, and the `no_leaks` check after each test asserts that no mount,
cgroup, process or state directory is left behind.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bundles.rootfs import build_busybox_rootfs  # noqa: E402
from testlib import CGROUP_PARENT, Bundle, container_dirs  # noqa: E402



def _is_root() -> bool:
    return os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    if _is_root():
        return
    skip = pytest.mark.skip(reason="needs root: creates namespaces, mounts and cgroups")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory) -> Path:
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed (/bin/busybox missing)")
    return Path(build_busybox_rootfs(str(tmp_path_factory.mktemp("busybox") / "rootfs")))


def _own_cgroup_dirs() -> list[Path]:
    """Where relative cgroupsPaths of this process land, one per hierarchy."""
    out = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            names = controllers.split(",") if controllers else ["unified"]
            for name in names:
                name = name.removeprefix("name=")
                base = Path("/sys/fs/cgroup") / name
                if not base.is_dir() and controllers == "":
                    base = Path("/sys/fs/cgroup/unified") if Path("/sys/fs/cgroup/unified").is_dir() else Path("/sys/fs/cgroup")
                if base.is_dir():
                    out.append(base / path.lstrip("/") / CGROUP_PARENT)
    return out


def _mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}


def leftovers(root: Path, mounts_before: set[str], scope: str) -> list[str]:
    found = [f"state dir {p}" for p in container_dirs(root)]
    for d in _own_cgroup_dirs():
        if d.exists():
            found += [f"cgroup {p}" for p in d.iterdir() if p.is_dir()]
            procs = (d / "cgroup.procs").read_text().split() if (d / "cgroup.procs").exists() else []
            found += [f"process {p} in {d}" for p in procs]
    # Mounts are checked where this test run puts things (its temporary tree, anything named
    # ocipy): other programs on the machine may mount elsewhere meanwhile. That a container
    # cannot mount anywhere else on the host is what tests/security checks.
    new = [m for m in _mounts() - mounts_before if m.split(" ", 1)[1].startswith(scope) or "ocipy" in m]
    found += [f"mount {m}" for m in new]
    return found


@pytest.fixture(scope="session", autouse=True)
def _remove_cgroup_parent():
    yield
    if _is_root():
        for d in _own_cgroup_dirs():
            try:
                d.rmdir()
            except OSError:
                pass


@pytest.fixture
def state_root(tmp_path) -> Path:
    root = tmp_path / "state"
    root.mkdir()
    return root


@pytest.fixture
def no_leaks(state_root, tmp_path_factory):
    """After the test: force-delete whatever is left, then fail if anything was left."""
    scope = str(tmp_path_factory.getbasetemp())
    before = _mounts()
    yield
    left_ids = container_dirs(state_root)
    for p in left_ids:
        subprocess.run([sys.executable, "-m", "ocipy", "--root", str(state_root), "delete", "--force", p.name], capture_output=True, timeout=30)
    leaks = leftovers(state_root, before, scope)
    for d in _own_cgroup_dirs():  # clean what we can so one leak does not fail every later test
        for sub in sorted(d.glob("**/"), key=lambda p: -len(p.parts)):
            try:
                sub.rmdir()
            except OSError:
                pass
    assert not left_ids, f"containers left after the test (deleted now): {[p.name for p in left_ids]}"
    assert not leaks, f"left behind: {leaks}"


@pytest.fixture
def bundle(tmp_path, busybox_rootfs) -> Bundle:
    path = tmp_path / "bundle"
    path.mkdir()
    return Bundle(path, busybox_rootfs)


@pytest.fixture
def ocipy(state_root):
    """Run the ocipy CLI as an engine would: a fresh interpreter per command."""

    def run(*args, timeout=60, **kwargs):
        # stdout/stderr go to files, not pipes: `create` hands its stdio to the container,
        # so a pipe would stay open as long as the container lives (engines use files too).
        argv = [sys.executable, "-m", "ocipy", "--root", str(state_root), *map(str, args)]
        if "stdout" in kwargs or "capture_output" in kwargs:
            kwargs.setdefault("text", True)
            return subprocess.run(argv, timeout=timeout, **kwargs)
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(argv, timeout=timeout, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True, **kwargs)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(argv, proc.returncode, out.read(), err.read())

    return run


@pytest.fixture
def runtime(state_root):
    from ocipy import Runtime

    return Runtime(str(state_root))

"""ocipy.linux.syscalls: the wrappers that replaced python-prctl calls and rootfs's private ctypes."""

import errno
import os
import struct
import tempfile

import pytest

from ocipy.linux import capabilities, libc, mountopts, syscalls as sc
from ocipy.linux.rootfs import PROC_SUPER_MAGIC, TMPFS_MAGIC


def in_child(body) -> int:
    """Run body() in a forked child (its prctl and mount changes stay there); its exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            code = body() or 0
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_fstatfs_type():
    fd = os.open("/proc", os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert sc.fstatfs_type(fd) == PROC_SUPER_MAGIC
    finally:
        os.close(fd)
    with pytest.raises(OSError, match=r"^\[Errno 9\] fstatfs: Bad file descriptor$"):
        sc.fstatfs_type(12345)


def test_child_subreaper_round_trip():
    def body():
        before = sc.get_child_subreaper()
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        return 0 if (before, sc.get_child_subreaper()) == (0, 1) else 1

    assert in_child(body) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs CAP_SETPCAP")
def test_drop_bounding_keeps_only_the_mask():
    def body():
        keep = 1 << 5  # CAP_KILL
        capabilities.drop_bounding(keep)
        with open("/proc/self/status") as f:
            bounding = int(next(line for line in f if line.startswith("CapBnd:")).split()[1], 16)
        return 0 if bounding & ~keep == 0 else 1

    assert in_child(body) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a mount namespace")
def test_mount_setattr_open_tree_move_mount():
    top = tempfile.mkdtemp()
    a, b = os.path.join(top, "a"), os.path.join(top, "b")
    os.mkdir(a)
    os.mkdir(b)

    def body():
        sc.unshare(sc.CLONE_NEWNS)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        sc.mount("tmpfs", a, "tmpfs")
        fd = os.open(a, sc.O_PATH | os.O_CLOEXEC)
        sc.mount_setattr(fd, mountopts.MOUNT_ATTR_RDONLY, 0, recursive=True)
        if not os.statvfs(a).f_flag & os.ST_RDONLY:
            return 1
        tree = sc.open_tree(a, recursive=True)
        sc.move_mount_to_fd(tree, os.open(b, sc.O_PATH | os.O_CLOEXEC))
        if sc.fstatfs_type(os.open(b, os.O_RDONLY | os.O_CLOEXEC)) != TMPFS_MAGIC:
            return 2
        try:
            sc.open_tree(os.path.join(top, "missing"), recursive=False)
        except FileNotFoundError as e:
            return 0 if str(e) == f"[Errno 2] open_tree {top}/missing: No such file or directory" else 3
        return 4

    try:
        assert in_child(body) == 0
    finally:
        os.rmdir(a)
        os.rmdir(b)
        os.rmdir(top)


def _fdinfo_mnt_id(fd):
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("mnt_id:"))


@pytest.mark.parametrize("path", ["/", "/proc", "/sys", "/dev"])
def test_mount_id_from_statx_is_the_one_fdinfo_gives(path):
    fd = os.open(path, sc.O_PATH | os.O_CLOEXEC)
    try:
        assert sc.mount_id(fd) == _fdinfo_mnt_id(fd)
    finally:
        os.close(fd)
    assert sc.mount_id(10_000) is None  # not an fd: the caller falls back to fdinfo


def test_clone_fork_as_a_sibling_makes_a_child_of_our_parent():
    """What create's pid1_child relies on: a process forked by our child with sibling=True is
    our own child (we wait() for it, exit code included), not our grandchild."""
    r, w = os.pipe()

    def child():
        pid = sc.clone_fork(sibling=True)
        if pid is None:
            return 42  # no clone3 here: reported below as a skip
        if pid == 0:
            os._exit(7)
        os.write(w, str(pid).encode())
        return 0

    assert in_child(child) in (0, 42)
    os.close(w)
    text = os.read(r, 20).decode()
    os.close(r)
    if not text:
        pytest.skip("this kernel has no clone3 (Linux 5.3)")
    status = os.waitpid(int(text), 0)[1]  # ChildProcessError if it were not ours
    assert os.waitstatus_to_exitcode(status) == 7


def test_libc_functions_return_c_int_or_long_with_errno():
    """libc.function's results: a C int keeps its sign (fstatfs's -1 above), a C long its high
    bits; errno is the call's; integer arguments go as C long, whole."""
    assert libc.function("getpid")() == os.getpid()
    syscall = libc.function("syscall", returns_long=True)
    assert syscall(-1) == -1 and libc.get_errno() == errno.ENOSYS
    labs = libc.function("labs", returns_long=True)
    assert labs(-(1 << 40)) == 1 << 40  # a C int argument would have lost the high bits


def test_libc_buffer_is_written_by_the_kernel():
    buf = libc.buffer(8, b"\xff" * 8)
    assert libc.function("pipe")(buf) == 0
    read_fd, write_fd = struct.unpack("@ii", buf.raw)
    try:
        os.write(write_fd, b"x")
        assert os.read(read_fd, 1) == b"x"
    finally:
        os.close(read_fd)
        os.close(write_fd)

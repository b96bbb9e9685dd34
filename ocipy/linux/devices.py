"""/dev inside the container: default devices, linux.devices, the standard symlinks.

Spec: config-linux.md#default-devices, config-linux.md#devices, runtime-linux.md
(/dev symlinks). Every path is resolved inside the container's root (paths.py): a
rootfs whose /dev/null is a symlink to a host file gets the symlink replaced by a
real node (unlinkat removes the link, never its target); nothing is ever created or
bind-mounted through it (the CVE-2025-31133 / CVE-2025-52565 shapes).

In a user namespace mknod(2) of a device is refused, so, as runc does, the host's
node is bind-mounted onto an empty regular file instead.
"""

from __future__ import annotations

import errno
import posix
import stat

from ocipy import fspath
from ocipy.linux import paths
from ocipy.linux import syscalls as sc
from ocipy.record import Record

_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


class DeviceNode(Record, frozen=True):
    path: str
    type: str  # c, u, b, p
    major: int
    minor: int
    file_mode: int = 0o666
    uid: int = 0
    gid: int = 0
    bind_from_host: bool = False  # user namespace: bind the host's node onto an empty file
    strict: bool = False  # linux.devices entry: an existing, different file is an error

    @property
    def st_type(self) -> int:
        return _TYPES[self.type]

    @property
    def rdev(self) -> int:
        return 0 if self.type == "p" else posix.makedev(self.major, self.minor)


class DevSymlink(Record, frozen=True):
    target: str
    link: str
    replace: bool = False  # replace whatever is at `link` (used for /dev/ptmx)
    only_if_host_has: str | None = None  # runc adds /dev/core only when /proc/kcore exists


# config-linux.md#default-devices (/dev/console and /dev/ptmx are handled apart)
DEFAULT_DEVICES = (
    DeviceNode("/dev/null", "c", 1, 3),
    DeviceNode("/dev/zero", "c", 1, 5),
    DeviceNode("/dev/full", "c", 1, 7),
    DeviceNode("/dev/random", "c", 1, 8),
    DeviceNode("/dev/urandom", "c", 1, 9),
    DeviceNode("/dev/tty", "c", 5, 0),
)

# runtime-linux.md#dev-symbolic-links, plus /dev/core -> /proc/kcore as runc adds it
DEV_SYMLINKS = (
    DevSymlink("/proc/self/fd", "/dev/fd"),
    DevSymlink("/proc/self/fd/0", "/dev/stdin"),
    DevSymlink("/proc/self/fd/1", "/dev/stdout"),
    DevSymlink("/proc/self/fd/2", "/dev/stderr"),
    DevSymlink("/proc/kcore", "/dev/core", only_if_host_has="/proc/kcore"),
)
PTMX_SYMLINK = DevSymlink("pts/ptmx", "/dev/ptmx", replace=True)


def _get(obj, name, default=None):
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def plan_devices(linux, *, in_userns: bool = False) -> list[DeviceNode]:
    """The nodes to create, in order: the defaults (unless linux.devices names the same
    path, which then wins) followed by linux.devices."""
    custom: list[DeviceNode] = []
    for d in _get(linux, "devices") or ():
        dtype = _get(d, "type")
        if dtype not in _TYPES:
            raise ValueError(f"device {_get(d, 'path')}: unknown type {dtype!r}")
        mode = _get(d, "file_mode")
        if mode is None:
            mode = _get(d, "fileMode")
        path = paths.clean(_get(d, "path"))
        custom.append(
            DeviceNode(
                path=path,
                type=dtype,
                major=int(_get(d, "major") or 0),
                minor=int(_get(d, "minor") or 0),
                file_mode=0o666 if mode is None else int(mode) & 0o7777,
                uid=int(_get(d, "uid") or 0),
                gid=int(_get(d, "gid") or 0),
                bind_from_host=in_userns,
                strict=True,
            )
        )
        if dtype != "p" and (_get(d, "major") is None or _get(d, "minor") is None):
            raise ValueError(f"device {path}: type {dtype} needs major and minor")
    named = {d.path for d in custom}
    out = [d._replace(bind_from_host=in_userns) for d in DEFAULT_DEVICES if d.path not in named]
    return out + custom


def plan_symlinks(*, devpts: bool) -> list[DevSymlink]:
    out = list(DEV_SYMLINKS)
    if devpts:
        out.append(PTMX_SYMLINK)
    return out


# --- execution -------------------------------------------------------------------------
def _matches(st: posix.stat_result, node: DeviceNode) -> bool:
    return stat.S_IFMT(st.st_mode) == node.st_type and (node.type == "p" or st.st_rdev == node.rdev)


def create_device(root_fd: int, node: DeviceNode) -> None:
    """Create one node inside the root (mknod, or a bind of the host node in a userns)."""
    parent, name = paths.split_parent(node.path)
    pfd = paths.mkdir_all_in_root(root_fd, parent)
    try:
        if node.bind_from_host:
            _bind_device(pfd, name, node)
        else:
            _mknod_device(pfd, name, node)
    finally:
        posix.close(pfd)


def _bind_device(pfd: int, name: str, node: DeviceNode) -> None:
    if node.strict:
        _refuse_conflict(pfd, name, node, also_ok=stat.S_ISREG)
    host = posix.open(node.path, sc.O_PATH | posix.O_NOFOLLOW | posix.O_CLOEXEC)
    try:
        if not _matches(posix.fstat(host), node):
            raise OSError(errno.EINVAL, f"host {node.path} is not a {node.type} {node.major}:{node.minor} device")
        fd = paths.replace_with_empty_file(pfd, name, keep=lambda st: _matches(st, node))
        try:
            sc.mount(paths.proc_fd_path(host), paths.proc_fd_path(fd), None, sc.MS_BIND)
        finally:
            posix.close(fd)
    finally:
        posix.close(host)


def _conflict(node: DeviceNode) -> OSError:
    what = "fifo" if node.type == "p" else f"{node.type} {node.major}:{node.minor} device"
    return OSError(errno.EEXIST, f"{node.path} already exists and is not the requested {what}")


def _refuse_conflict(pfd: int, name: str, node: DeviceNode, also_ok=None) -> None:
    """config-linux.md#devices: a file already at the path that does not match the
    requested device is an error (a symlink included: it is never followed)."""
    try:
        st = posix.stat(name, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if _matches(st, node) or (also_ok is not None and also_ok(st.st_mode) and st.st_size == 0):
        return
    raise _conflict(node)


def _mknod_device(pfd: int, name: str, node: DeviceNode) -> None:
    for _ in range(4):
        old_umask = posix.umask(0)
        try:
            posix.mknod(name, node.st_type | node.file_mode, node.rdev, dir_fd=pfd)
        except FileExistsError:
            pass
        finally:
            posix.umask(old_umask)
        fd = posix.open(name, sc.O_PATH | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=pfd)
        try:
            st = posix.fstat(fd)
            if _matches(st, node):
                target = paths.proc_fd_path(fd)
                posix.chown(target, node.uid, node.gid)
                posix.chmod(target, node.file_mode)
                return
            if stat.S_ISDIR(st.st_mode):
                raise OSError(errno.EISDIR, f"{node.path} is a directory in the rootfs")
            if node.strict:
                raise _conflict(node)
        finally:
            posix.close(fd)
        # a symlink, a regular file or another device: remove the entry itself
        posix.unlink(name, dir_fd=pfd)
    raise OSError(errno.EAGAIN, f"{node.path} keeps changing under us")


def create_symlink(root_fd: int, link: DevSymlink) -> None:
    if link.only_if_host_has and not fspath.exists(link.only_if_host_has):
        return
    parent, name = paths.split_parent(link.link)
    pfd = paths.mkdir_all_in_root(root_fd, parent)
    try:
        if link.replace:
            try:
                st = posix.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None:
                if stat.S_ISDIR(st.st_mode):
                    raise OSError(errno.EISDIR, f"{link.link} is a directory")
                posix.unlink(name, dir_fd=pfd)
        try:
            posix.symlink(link.target, name, dir_fd=pfd)
        except FileExistsError:
            pass  # as runc: an existing entry is left alone
    finally:
        posix.close(pfd)


def bind_console(root_fd: int, slave_fd: int) -> None:
    """/dev/console inside the root: an empty file with the pty slave bind-mounted on it.
    A symlink (or anything but a file or char device) at /dev/console is replaced first."""
    pfd = paths.mkdir_all_in_root(root_fd, "/dev")
    try:
        fd = paths.replace_with_empty_file(pfd, "console", keep=lambda st: stat.S_ISCHR(st.st_mode))
        try:
            sc.mount(paths.proc_fd_path(slave_fd), paths.proc_fd_path(fd), None, sc.MS_BIND)
        finally:
            posix.close(fd)
    finally:
        posix.close(pfd)

"""The one layer between ocipy and the kernel calls Python lacks (through ocipy.linux.libc).

Python 3.11 has no os.unshare/os.setns, and nothing in the standard library
mounts, pivots or resolves a path inside a root. Every wrapper here raises
OSError with the errno and a message naming what was attempted, so a failure
deep in container set-up reads as `mount proc on /proc: Operation not permitted`.
The kernel's structures are packed with `struct`: bytes where the kernel only reads
them, a libc.buffer where it writes.
"""

import errno as _errno
import posix
import struct
from _signal import SIGCHLD  # the C module behind `signal`, whose enums cost 4 ms of imports

from ocipy import fspath

from . import libc

_unshare = libc.function("unshare")
_setns = libc.function("setns")
_mount = libc.function("mount")
_umount2 = libc.function("umount2")
_fstatfs = libc.function("fstatfs")
_sethostname = libc.function("sethostname")
_setdomainname = libc.function("setdomainname")
_personality = libc.function("personality")
_prctl = libc.function("prctl")
_syscall = libc.function("syscall", returns_long=True)

# --- clone / namespace flags (linux/sched.h) --------------------------------------
CLONE_INTO_CGROUP = 0x200000000
CLONE_PARENT = 0x00008000
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# --- mount flags (linux/mount.h) --------------------------------------------------
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# --- openat2 (linux/openat2.h) ----------------------------------------------------
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
O_PATH = getattr(posix, "O_PATH", 0o10000000)

# --- prctl -------------------------------------------------------------------------
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# --- keyctl ------------------------------------------------------------------------
KEYCTL_JOIN_SESSION_KEYRING = 1

_SYSCALLS = {
    # name: (x86_64, aarch64)
    "pivot_root": (155, 41),
    "setns": (308, 268),
    "unshare": (272, 97),
    "openat2": (437, 437),
    "statx": (332, 291),
    "capget": (125, 90),
    "capset": (126, 91),
    "keyctl": (250, 219),
    "seccomp": (317, 277),
    "sched_setattr": (314, 274),
    "ioprio_set": (251, 30),
    "set_mempolicy": (238, 237),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "mount_setattr": (442, 442),
    "clone3": (435, 435),
}
_ARCH_INDEX = 1 if posix.uname().machine in ("aarch64", "arm64") else 0  # platform.machine(), without importing platform


def _nr(name: str) -> int:
    return _SYSCALLS[name][_ARCH_INDEX]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = libc.get_errno()
        raise OSError(err, f"{what}: {posix.strerror(err)}")
    return result


def _b(path) -> bytes | None:
    if path is None:
        return None
    return fspath.fsencode(path)


# --- namespaces --------------------------------------------------------------------
def unshare(flags: int) -> None:
    _check(_unshare(flags), f"unshare({namespace_flag_names(flags)})")


def setns(fd: int, nstype: int = 0, what: str = "") -> None:
    _check(_setns(fd, nstype), f"setns {what or fd}")


_NS_NAMES = {
    CLONE_NEWNS: "mount",
    CLONE_NEWUTS: "uts",
    CLONE_NEWIPC: "ipc",
    CLONE_NEWUSER: "user",
    CLONE_NEWPID: "pid",
    CLONE_NEWNET: "network",
    CLONE_NEWCGROUP: "cgroup",
    CLONE_NEWTIME: "time",
}


def namespace_flag_names(flags: int) -> str:
    return "|".join(name for bit, name in _NS_NAMES.items() if flags & bit) or "0"


# --- mounts --------------------------------------------------------------------------
def mount(source, target, fstype, flags: int = 0, data: str | None = None) -> None:
    res = _mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    if res < 0:
        err = libc.get_errno()
        kind = fstype or ("bind" if flags & MS_BIND else "propagation" if flags & (MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE) else "")
        raise OSError(err, f"mount {kind} {source or ''} on {target} (flags {flags:#x}{', ' + data if data else ''}): {posix.strerror(err)}")


def umount2(target, flags: int = 0) -> None:
    _check(_umount2(_b(target), flags), f"umount {target}")


def pivot_root(new_root, put_old) -> None:
    _check(_syscall(_nr("pivot_root"), _b(new_root), _b(put_old)), f"pivot_root {new_root}")


# --- the new mount API (detached trees, mount attributes) ----------------------------
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = posix.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004
MOVE_MOUNT_T_EMPTY_PATH = 0x00000040
_AT_FDCWD = -100


_MOUNT_ATTR = struct.Struct("=4Q")  # struct mount_attr: attr_set, attr_clr, propagation, userns_fd


def mount_setattr(fd: int, attr_set: int, attr_clr: int, *, recursive: bool = True, userns_fd: int = 0, what: str | None = None) -> None:
    """mount_setattr(fd, "", AT_EMPTY_PATH [| AT_RECURSIVE]): MOUNT_ATTR_* bits on the mount at `fd`."""
    attr = _MOUNT_ATTR.pack(attr_set, attr_clr, 0, userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    res = _syscall(_nr("mount_setattr"), fd, b"", flags, attr, len(attr))
    _check(res, what or f"mount_setattr(set={attr_set:#x}, clear={attr_clr:#x})")


def open_tree(path: str, recursive: bool) -> int:
    """A detached copy of the mount (tree) at `path`: an fd to attach with move_mount_to_fd."""
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    fd = _syscall(_nr("open_tree"), _AT_FDCWD, fspath.fsencode(path), flags)
    return _check(fd, f"open_tree {path}")


def move_mount_to_fd(tree_fd: int, target_fd: int) -> None:
    """Attach the detached tree `tree_fd` onto the file or directory `target_fd`."""
    flags = MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH
    res = _syscall(_nr("move_mount"), tree_fd, b"", target_fd, b"", flags)
    _check(res, "move_mount")


_STATFS_SIZE = 120  # struct statfs on the 64-bit ABIs; f_type is the long at 0


def fstatfs_type(fd: int) -> int:
    """The filesystem magic number (statfs f_type) of the file at `fd`."""
    buf = libc.buffer(_STATFS_SIZE)
    _check(_fstatfs(fd, buf), "fstatfs")
    return struct.unpack_from("@l", buf.raw)[0] & 0xFFFFFFFF


# --- identity ------------------------------------------------------------------------
def sethostname(name: str) -> None:
    data = name.encode()
    _check(_sethostname(data, len(data)), f"sethostname {name!r}")


def setdomainname(name: str) -> None:
    data = name.encode()
    _check(_setdomainname(data, len(data)), f"setdomainname {name!r}")


def personality(persona: int) -> int:
    return _check(_personality(persona), f"personality({persona:#x})")


# --- openat2: resolve a path inside a root ------------------------------------------
_OPEN_HOW = struct.Struct("=3Q")  # struct open_how: flags, mode, resolve


def openat2(dirfd: int, path, flags: int, resolve: int, mode: int = 0) -> int:
    how = _OPEN_HOW.pack(flags | posix.O_CLOEXEC, mode, resolve)
    fd = _syscall(_nr("openat2"), dirfd, _b(path), how, len(how))
    return _check(fd, f"open {path} inside the container root")


STATX_MNT_ID = 0x1000
_AT_EMPTY_PATH = 0x1000
_STATX_SIZE = 256  # struct statx; stx_mask is the u32 at 0, stx_mnt_id the u64 at 0x90


def mount_id(fd: int) -> int | None:
    """The id of the mount `fd` lives on, from statx(STATX_MNT_ID) (Linux 5.8): one syscall
    where /proc/self/fdinfo costs an open, a read and a parse. None when the kernel does
    not say (the caller falls back to fdinfo)."""
    buf = libc.buffer(_STATX_SIZE)
    res = _syscall(_nr("statx"), fd, b"", _AT_EMPTY_PATH, STATX_MNT_ID, buf)
    if res < 0:
        return None
    raw = buf.raw
    if not struct.unpack_from("=I", raw, 0)[0] & STATX_MNT_ID:
        return None
    return struct.unpack_from("=Q", raw, 0x90)[0]


# --- fork into a cgroup ---------------------------------------------------------------
# libc's syscall() called with the GIL held, as posix.fork() calls fork(): the child must not
# start life in a foreign call that released the GIL.
_syscall_holding_gil = libc.function("syscall", returns_long=True, holding_gil=True)
_before_fork = libc.function("PyOS_BeforeFork", holding_gil=True)
_after_fork_child = libc.function("PyOS_AfterFork_Child", holding_gil=True)
_after_fork_parent = libc.function("PyOS_AfterFork_Parent", holding_gil=True)
_CLONE_ARGS = struct.Struct("11Q")  # struct clone_args up to .cgroup (CLONE_ARGS_SIZE_VER2, 88 bytes)


def fork_into_cgroup(cgroup_fd: int) -> int | None:
    """posix.fork(), except that the child is born in the cgroup2 directory `cgroup_fd`
    (clone3 with CLONE_INTO_CGROUP, Linux 5.7+). None, with nothing forked, when that
    cannot be done here: an older kernel, or a process with more than one thread.

    Why: moving a process with a write to cgroup.procs takes the kernel's global
    cgroup_threadgroup_rwsem for writing, which after a quiet spell first waits for an
    RCU grace period (4-20 ms on this kind of host, on every `run` and `exec`).
    A child born in its cgroup takes that lock only for reading.
    """
    return clone_fork(cgroup_fd)


def clone_fork(cgroup_fd: int | None = None, *, sibling: bool = False) -> int | None:
    """posix.fork() through clone3: the child born in the cgroup2 directory `cgroup_fd` if one
    is given (see fork_into_cgroup), and with `sibling` a child of our own parent rather than
    ours (CLONE_PARENT, as runc's nsexec forks the container's init: the caller of create can
    wait() for it without being a subreaper). None, with nothing forked, when that cannot be
    done here: no clone3 (Linux 5.3), no CLONE_INTO_CGROUP (5.7), or more than one thread.

    The Python side of posix.fork() is kept: PyOS_BeforeFork/AfterFork_* take and reset
    the import lock and the GIL and run posix.register_at_fork hooks. What glibc's fork()
    adds is not: it matters only with other threads (its malloc and stdio locks), hence
    the single-thread rule, and the child's cached thread id stays its parent's, which
    nothing ocipy runs before its exec reads.
    """
    if len(posix.listdir("/proc/self/task")) != 1:
        return None
    flags = (CLONE_INTO_CGROUP if cgroup_fd is not None else 0) | (CLONE_PARENT if sibling else 0)
    # A sibling's exit signal is its new parent's choice (ours, SIGCHLD): clone3 wants 0 here.
    exit_signal = 0 if sibling else SIGCHLD
    args = _CLONE_ARGS.pack(flags, 0, 0, 0, exit_signal, 0, 0, 0, 0, 0, cgroup_fd or 0)
    _before_fork()
    pid = _syscall_holding_gil(_nr("clone3"), args, len(args))
    if pid == 0:
        _after_fork_child()
        return 0
    err = libc.get_errno()
    _after_fork_parent()
    if pid > 0:
        return pid
    if err in (_errno.ENOSYS, _errno.E2BIG, _errno.EINVAL):  # no clone3, or not these flags in it
        return None
    what = "into a cgroup" if cgroup_fd is not None else "as a sibling"
    raise OSError(err, f"clone3 {what}: {posix.strerror(err)}")


# --- prctl and capabilities ------------------------------------------------------------
def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0, what: str = "prctl") -> int:
    return _check(_prctl(option, arg2, arg3, arg4, arg5), what)


def get_child_subreaper() -> int:
    """PR_GET_CHILD_SUBREAPER: the one prctl here that answers through a pointer."""
    value = libc.buffer(4)  # an int
    _check(_prctl(PR_GET_CHILD_SUBREAPER, value, 0, 0, 0), "get child subreaper")
    return struct.unpack("@i", value.raw)[0]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


_CAP_HEADER = struct.Struct("=Ii")  # struct __user_cap_header_struct: version, pid
# Two struct __user_cap_data_struct (effective, permitted, inheritable): capabilities 0-31, then 32-63.
_CAP_DATA = struct.Struct("=6I")


def capget(pid: int = 0) -> tuple[int, int, int]:
    """Return (effective, permitted, inheritable) as 64-bit masks."""
    # a buffer: the kernel writes its own version here if it does not know ours
    hdr = libc.buffer(_CAP_HEADER.size, _CAP_HEADER.pack(_LINUX_CAPABILITY_VERSION_3, pid))
    data = libc.buffer(_CAP_DATA.size)
    _check(_syscall(_nr("capget"), hdr, data), "capget")
    sets = _CAP_DATA.unpack(data.raw)  # the low 32 bits of the three sets, then their high bits
    return tuple(low | (high << 32) for low, high in zip(sets[:3], sets[3:]))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the three per-thread capability sets from 64-bit masks (any capability number)."""
    hdr = _CAP_HEADER.pack(_LINUX_CAPABILITY_VERSION_3, 0)
    sets = (effective, permitted, inheritable)
    data = _CAP_DATA.pack(*[s & 0xFFFFFFFF for s in sets], *[(s >> 32) & 0xFFFFFFFF for s in sets])
    _check(_syscall(_nr("capset"), hdr, data), "capset")


_last_cap: list[int] = []  # read once per process: the kernel's, fixed until reboot


def last_cap() -> int:
    """The highest capability number this kernel knows."""
    if not _last_cap:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                _last_cap.append(int(f.read()))
        except OSError:
            return 40
    return _last_cap[0]


# --- seccomp -----------------------------------------------------------------------------
SECCOMP_SET_MODE_FILTER = 1


_SOCK_FPROG = struct.Struct("@HP")  # struct sock_fprog: len (in 8-byte instructions), filter pointer


def seccomp_set_mode_filter(flags: int, program: bytes | None) -> tuple[int, int]:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, program) -> (return value, errno).

    The raw answer rather than an exception: callers probe which flags the kernel
    accepts with a NULL program (EFAULT means accepted), and a positive return is
    either a listener fd or, with TSYNC, a thread that could not be synchronised.
    """
    if program is None:
        prog_ptr = None
    else:
        buf = libc.buffer(len(program), program)  # alive until the call returns: prog_ptr points into it
        prog_ptr = _SOCK_FPROG.pack(len(program) // 8, libc.addressof(buf))
    libc.set_errno(0)
    rc = _syscall(_nr("seccomp"), SECCOMP_SET_MODE_FILTER, flags, prog_ptr)
    return rc, libc.get_errno()


# --- scheduling, I/O priority, NUMA --------------------------------------------------------
# struct sched_attr: size, sched_policy, sched_flags, sched_nice, sched_priority,
# sched_runtime, sched_deadline, sched_period (48 bytes, no padding)
_SCHED_ATTR = struct.Struct("=IIQiIQQQ")


def sched_setattr(policy: int, *, flags: int = 0, nice: int = 0, priority: int = 0, runtime: int = 0, deadline: int = 0, period: int = 0) -> None:
    attr = _SCHED_ATTR.pack(_SCHED_ATTR.size, policy, flags, nice, priority, runtime, deadline, period)
    _check(_syscall(_nr("sched_setattr"), 0, attr, 0), f"sched_setattr(policy {policy})")


IOPRIO_WHO_PROCESS = 1


def ioprio_set(ioclass: int, priority: int) -> None:
    value = (ioclass << 13) | priority
    _check(_syscall(_nr("ioprio_set"), IOPRIO_WHO_PROCESS, 0, value), f"ioprio_set(class {ioclass}, priority {priority})")


def set_mempolicy(mode: int, nodes: list[int]) -> None:
    maxnode = (max(nodes) + 1) if nodes else 0
    words = (maxnode + 63) // 64 or 1
    mask = [0] * words  # an array of unsigned long, a bit per node
    for n in nodes:
        mask[n // 64] |= 1 << (n % 64)
    # The kernel reads maxnode - 1 bits: pass one more than the highest node.
    packed = struct.pack(f"@{words}L", *mask) if nodes else None
    _check(_syscall(_nr("set_mempolicy"), mode, packed, maxnode + 1 if nodes else 0), f"set_mempolicy(mode {mode:#x})")


# --- keyrings --------------------------------------------------------------------------
def join_session_keyring(name: str | None) -> None:
    res = _syscall(_nr("keyctl"), KEYCTL_JOIN_SESSION_KEYRING, _b(name))
    if res < 0 and libc.get_errno() not in (_errno.ENOSYS, _errno.EACCES):
        _check(res, "join a new session keyring")


# --- terminals -------------------------------------------------------------------------
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414
TIOCGPTPEER = 0x5441


def winsize(height: int, width: int) -> bytes:
    return struct.pack("HHHH", height, width, 0, 0)

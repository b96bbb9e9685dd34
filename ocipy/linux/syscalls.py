"""The one ctypes layer between ocipy and libc.

Python 3.11 has no os.unshare/os.setns, and nothing in the standard library
mounts, pivots or resolves a path inside a root. Every wrapper here raises
OSError with the errno and a message naming what was attempted, so a failure
deep in container set-up reads as `mount proc on /proc: Operation not permitted`.
"""

import ctypes
import errno as _errno
import os
import struct
from _signal import SIGCHLD  # the C module behind `signal`, whose enums cost 4 ms of imports

# The interpreter already has libc loaded: dlopen(NULL) reaches it without find_library,
# which runs `ldconfig -p` in a subprocess (about 9 ms on every command).
_libc = ctypes.CDLL(None, use_errno=True)

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
O_PATH = getattr(os, "O_PATH", 0o10000000)

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
_ARCH_INDEX = 1 if os.uname().machine in ("aarch64", "arm64") else 0  # platform.machine(), without importing platform


def _nr(name: str) -> int:
    return _SYSCALLS[name][_ARCH_INDEX]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _b(path) -> bytes | None:
    if path is None:
        return None
    return os.fsencode(path)


# --- namespaces --------------------------------------------------------------------
def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({namespace_flag_names(flags)})")


def setns(fd: int, nstype: int = 0, what: str = "") -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns {what or fd}")


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
    res = _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    if res < 0:
        err = ctypes.get_errno()
        kind = fstype or ("bind" if flags & MS_BIND else "propagation" if flags & (MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE) else "")
        raise OSError(err, f"mount {kind} {source or ''} on {target} (flags {flags:#x}{', ' + data if data else ''}): {os.strerror(err)}")


def umount2(target, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root, put_old) -> None:
    _check(_libc.syscall(_nr("pivot_root"), _b(new_root), _b(put_old)), f"pivot_root {new_root}")


# --- the new mount API (detached trees, mount attributes) ----------------------------
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004
MOVE_MOUNT_T_EMPTY_PATH = 0x00000040
_AT_FDCWD = -100


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr(fd: int, attr_set: int, attr_clr: int, *, recursive: bool = True, userns_fd: int = 0, what: str | None = None) -> None:
    """mount_setattr(fd, "", AT_EMPTY_PATH [| AT_RECURSIVE]): MOUNT_ATTR_* bits on the mount at `fd`."""
    attr = _MountAttr(attr_set, attr_clr, 0, userns_fd)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    res = _libc.syscall(_nr("mount_setattr"), ctypes.c_int(fd), b"", ctypes.c_uint(flags), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(res, what or f"mount_setattr(set={attr_set:#x}, clear={attr_clr:#x})")


def open_tree(path: str, recursive: bool) -> int:
    """A detached copy of the mount (tree) at `path`: an fd to attach with move_mount_to_fd."""
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    fd = _libc.syscall(_nr("open_tree"), ctypes.c_int(_AT_FDCWD), os.fsencode(path), ctypes.c_uint(flags))
    return _check(fd, f"open_tree {path}")


def move_mount_to_fd(tree_fd: int, target_fd: int) -> None:
    """Attach the detached tree `tree_fd` onto the file or directory `target_fd`."""
    flags = MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH
    res = _libc.syscall(_nr("move_mount"), ctypes.c_int(tree_fd), b"", ctypes.c_int(target_fd), b"", ctypes.c_uint(flags))
    _check(res, "move_mount")


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 112)]


def fstatfs_type(fd: int) -> int:
    """The filesystem magic number (statfs f_type) of the file at `fd`."""
    buf = _Statfs()
    _check(_libc.fstatfs(ctypes.c_int(fd), ctypes.byref(buf)), "fstatfs")
    return buf.f_type & 0xFFFFFFFF


# --- identity ------------------------------------------------------------------------
def sethostname(name: str) -> None:
    data = name.encode()
    _check(_libc.sethostname(data, ctypes.c_size_t(len(data))), f"sethostname {name!r}")


def setdomainname(name: str) -> None:
    data = name.encode()
    _check(_libc.setdomainname(data, ctypes.c_size_t(len(data))), f"setdomainname {name!r}")


def personality(persona: int) -> int:
    return _check(_libc.personality(ctypes.c_ulong(persona)), f"personality({persona:#x})")


# --- openat2: resolve a path inside a root ------------------------------------------
class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path, flags: int, resolve: int, mode: int = 0) -> int:
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = _libc.syscall(_nr("openat2"), ctypes.c_int(dirfd), _b(path), ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    return _check(fd, f"open {path} inside the container root")


STATX_MNT_ID = 0x1000
_AT_EMPTY_PATH = 0x1000
_STATX_SIZE = 256  # struct statx; stx_mask is the u32 at 0, stx_mnt_id the u64 at 0x90


def mount_id(fd: int) -> int | None:
    """The id of the mount `fd` lives on, from statx(STATX_MNT_ID) (Linux 5.8): one syscall
    where /proc/self/fdinfo costs an open, a read and a parse. None when the kernel does
    not say (the caller falls back to fdinfo)."""
    buf = ctypes.create_string_buffer(_STATX_SIZE)
    res = _libc.syscall(_nr("statx"), ctypes.c_int(fd), b"", ctypes.c_int(_AT_EMPTY_PATH), ctypes.c_uint(STATX_MNT_ID), buf)
    if res < 0:
        return None
    raw = buf.raw
    if not int.from_bytes(raw[0:4], "little") & STATX_MNT_ID:
        return None
    return int.from_bytes(raw[0x90:0x98], "little")


# --- fork into a cgroup ---------------------------------------------------------------
# libc's syscall() called with the GIL held (PyDLL), as os.fork() calls fork(): the child
# must not start life in a ctypes call that released the GIL.
_syscall_holding_gil = ctypes.PyDLL(None, use_errno=True).syscall
_syscall_holding_gil.restype = ctypes.c_long
_CLONE_ARGS = struct.Struct("11Q")  # struct clone_args up to .cgroup (CLONE_ARGS_SIZE_VER2, 88 bytes)


def fork_into_cgroup(cgroup_fd: int) -> int | None:
    """os.fork(), except that the child is born in the cgroup2 directory `cgroup_fd`
    (clone3 with CLONE_INTO_CGROUP, Linux 5.7+). None, with nothing forked, when that
    cannot be done here: an older kernel, or a process with more than one thread.

    Why: moving a process with a write to cgroup.procs takes the kernel's global
    cgroup_threadgroup_rwsem for writing, which after a quiet spell first waits for an
    RCU grace period (4-20 ms on this kind of host, on every `run` and `exec`).
    A child born in its cgroup takes that lock only for reading.
    """
    return clone_fork(cgroup_fd)


def clone_fork(cgroup_fd: int | None = None, *, sibling: bool = False) -> int | None:
    """os.fork() through clone3: the child born in the cgroup2 directory `cgroup_fd` if one
    is given (see fork_into_cgroup), and with `sibling` a child of our own parent rather than
    ours (CLONE_PARENT, as runc's nsexec forks the container's init: the caller of create can
    wait() for it without being a subreaper). None, with nothing forked, when that cannot be
    done here: no clone3 (Linux 5.3), no CLONE_INTO_CGROUP (5.7), or more than one thread.

    The Python side of os.fork() is kept: PyOS_BeforeFork/AfterFork_* take and reset
    the import lock and the GIL and run os.register_at_fork hooks. What glibc's fork()
    adds is not: it matters only with other threads (its malloc and stdio locks), hence
    the single-thread rule, and the child's cached thread id stays its parent's, which
    nothing ocipy runs before its exec reads.
    """
    if len(os.listdir("/proc/self/task")) != 1:
        return None
    flags = (CLONE_INTO_CGROUP if cgroup_fd is not None else 0) | (CLONE_PARENT if sibling else 0)
    # A sibling's exit signal is its new parent's choice (ours, SIGCHLD): clone3 wants 0 here.
    exit_signal = 0 if sibling else SIGCHLD
    args = ctypes.create_string_buffer(_CLONE_ARGS.pack(flags, 0, 0, 0, exit_signal, 0, 0, 0, 0, 0, cgroup_fd or 0),
                                       _CLONE_ARGS.size)
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = _syscall_holding_gil(ctypes.c_long(_nr("clone3")), args, ctypes.c_size_t(_CLONE_ARGS.size))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid > 0:
        return pid
    if err in (_errno.ENOSYS, _errno.E2BIG, _errno.EINVAL):  # no clone3, or not these flags in it
        return None
    what = "into a cgroup" if cgroup_fd is not None else "as a sibling"
    raise OSError(err, f"clone3 {what}: {os.strerror(err)}")


# --- prctl and capabilities ------------------------------------------------------------
def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0, what: str = "prctl") -> int:
    return _check(
        _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)),
        what,
    )


def get_child_subreaper() -> int:
    """PR_GET_CHILD_SUBREAPER: the one prctl here that answers through a pointer."""
    value = ctypes.c_int(0)
    _check(_libc.prctl(ctypes.c_int(PR_GET_CHILD_SUBREAPER), ctypes.byref(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)), "get child subreaper")
    return value.value


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def capget(pid: int = 0) -> tuple[int, int, int]:
    """Return (effective, permitted, inheritable) as 64-bit masks."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_CapData * 2)()
    _check(_libc.syscall(_nr("capget"), ctypes.byref(hdr), data), "capget")
    return tuple(data[0].__getattribute__(f) | (data[1].__getattribute__(f) << 32) for f in ("effective", "permitted", "inheritable"))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the three per-thread capability sets from 64-bit masks (any capability number)."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.syscall(_nr("capset"), ctypes.byref(hdr), data), "capset")


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


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_mode_filter(flags: int, program: bytes | None) -> tuple[int, int]:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, program) -> (return value, errno).

    The raw answer rather than an exception: callers probe which flags the kernel
    accepts with a NULL program (EFAULT means accepted), and a positive return is
    either a listener fd or, with TSYNC, a thread that could not be synchronised.
    """
    if program is None:
        prog_ptr = None
    else:
        buf = ctypes.create_string_buffer(program, len(program))
        prog_ptr = ctypes.byref(_SockFprog(len(program) // 8, ctypes.addressof(buf)))
    ctypes.set_errno(0)
    rc = _libc.syscall(_nr("seccomp"), ctypes.c_long(SECCOMP_SET_MODE_FILTER), ctypes.c_ulong(flags), prog_ptr)
    return rc, ctypes.get_errno()


# --- scheduling, I/O priority, NUMA --------------------------------------------------------
class _SchedAttr(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32), ("sched_flags", ctypes.c_uint64),
        ("sched_nice", ctypes.c_int32), ("sched_priority", ctypes.c_uint32), ("sched_runtime", ctypes.c_uint64),
        ("sched_deadline", ctypes.c_uint64), ("sched_period", ctypes.c_uint64),
    ]


def sched_setattr(policy: int, *, flags: int = 0, nice: int = 0, priority: int = 0, runtime: int = 0, deadline: int = 0, period: int = 0) -> None:
    attr = _SchedAttr(ctypes.sizeof(_SchedAttr), policy, flags, nice, priority, runtime, deadline, period)
    _check(_libc.syscall(_nr("sched_setattr"), ctypes.c_int(0), ctypes.byref(attr), ctypes.c_uint(0)), f"sched_setattr(policy {policy})")


IOPRIO_WHO_PROCESS = 1


def ioprio_set(ioclass: int, priority: int) -> None:
    value = (ioclass << 13) | priority
    _check(_libc.syscall(_nr("ioprio_set"), ctypes.c_int(IOPRIO_WHO_PROCESS), ctypes.c_int(0), ctypes.c_int(value)), f"ioprio_set(class {ioclass}, priority {priority})")


def set_mempolicy(mode: int, nodes: list[int]) -> None:
    maxnode = (max(nodes) + 1) if nodes else 0
    words = (maxnode + 63) // 64 or 1
    mask = (ctypes.c_ulong * words)()
    for n in nodes:
        mask[n // 64] |= 1 << (n % 64)
    # The kernel reads maxnode - 1 bits: pass one more than the highest node.
    _check(_libc.syscall(_nr("set_mempolicy"), ctypes.c_int(mode), mask if nodes else None, ctypes.c_ulong(maxnode + 1 if nodes else 0)), f"set_mempolicy(mode {mode:#x})")


# --- keyrings --------------------------------------------------------------------------
def join_session_keyring(name: str | None) -> None:
    res = _libc.syscall(_nr("keyctl"), ctypes.c_int(KEYCTL_JOIN_SESSION_KEYRING), _b(name))
    if res < 0 and ctypes.get_errno() not in (_errno.ENOSYS, _errno.EACCES):
        _check(res, "join a new session keyring")


# --- terminals -------------------------------------------------------------------------
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCSCTTY = 0x540E
TIOCSWINSZ = 0x5414
TIOCGPTPEER = 0x5441


def winsize(height: int, width: int) -> bytes:
    return struct.pack("HHHH", height, width, 0, 0)

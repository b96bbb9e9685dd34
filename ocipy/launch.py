"""What create's and exec's children share: how stage 1 is forked, how a child reports
a failure, and the last steps from the process's identity to the user's executable.

Both commands fork the same way (fork_in_cgroup), and both end in prepare_process and
execute: create's pid 1 (init.py) after its mounts, an exec'd process (exec.py) after
joining the container's namespaces. This module imports only what those steps run, so
that `exec` does not load the mount and device code of create.
"""

from __future__ import annotations

import posix

from .errors import HookError, SetupError
from .linux import capabilities, process, syscalls, trampoline
from .linux.capnames import CAPABILITIES
from .sync import Channel


def fork_in_cgroup(cgroup) -> tuple[int, bool]:
    """Fork stage 1 (of create or exec): (the pid as posix.fork returns it, whether the child was
    born in the cgroup's v2 directory). A child born there is spared the cgroup.procs write,
    which can wait ~10 ms for the kernel's migration lock (syscalls.fork_into_cgroup); it
    passes the flag to cgroup.enter()."""
    directory = cgroup.v2_dir()
    if directory:
        try:
            fd = posix.open(directory, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
        except OSError as e:
            raise SetupError(f"cannot open cgroup {directory}: {posix.strerror(e.errno)}") from None
        try:
            pid = syscalls.fork_into_cgroup(fd)
        except OSError as e:
            raise SetupError(f"cannot add process to cgroup {directory}: {posix.strerror(e.errno)}") from None
        finally:
            posix.close(fd)  # in both processes
        if pid is not None:
            return pid, True
    return posix.fork(), False


def fail_channel(channel: Channel, exc: BaseException) -> None:
    """Report an error to the parent (or, once the channel is closed, to stderr) and exit."""
    msg = str(exc) or exc.__class__.__name__
    try:
        from os import environ  # only on the way out: nothing else here needs os (fspath.py says why)
    except ImportError:  # frozen in the interpreter, but nothing may keep an error from its report
        environ = {}
    if environ.get("OCIPY_DEBUG_INIT"):
        try:
            import traceback  # a debugging aid; after pivot_root it may be out of reach
        except ImportError:
            pass
        else:
            msg += "\n" + traceback.format_exc()
    try:
        channel.send({"type": "error", "msg": msg, "hook": isinstance(exc, HookError)})
    except OSError:
        try:
            posix.write(2, f"ocipy init: {msg}\n".encode())
        except OSError:
            pass
    posix._exit(1)


class Launch:
    """What is left to do between the end of set-up and the user's process."""

    def __init__(self, executable: str, args: list, env: dict, seccomp_filter, notify_fd: int | None,
                 trampoline_fd: int | None, waiter_fd: int | None = None):
        self.executable = executable
        self.args = args
        self.env = env
        self.seccomp_filter = seccomp_filter  # a prepared filter still to load right before execve, or None
        self.notify_fd = notify_fd
        self.trampoline_fd = trampoline_fd  # see linux/trampoline.py: why the last exec is not direct
        # The waiter (linux/trampoline.py) instead: it waits for `start`, loads seccomp_filter, execs.
        self.waiter_fd = waiter_fd


def prepare_process(proc, seccomp: dict | None, seccomp_filter, *, keep_fds: int, also_keep: tuple = (),
                    wait_on_fifo: int | None = None) -> Launch:
    """Everything from rlimits to the moment before execve, shared by init and exec.

    Order matters: rlimits and oom score while still root; a filter without
    no_new_privs loads while we still hold CAP_SYS_ADMIN; the user switch keeps the
    permitted capabilities, then the five sets are set exactly; the executable is
    looked up as the container user, in the container's root, with its PATH.
    With `wait_on_fifo` (exec.fifo's fd), the launch goes through the waiter, which
    waits for `start` before it loads a filter left for the last moment and execs.
    """
    # Both memfds are made before a seccomp filter could forbid memfd_create.
    trampoline_fd = waiter_fd = None
    if wait_on_fifo is not None:
        last_filter = seccomp_filter if proc.no_new_privileges and not notify_seccomp(seccomp) else None
        waiter_fd = trampoline.open_waiter(wait_on_fifo, (last_filter.program, last_filter.flags) if last_filter else None)
    if waiter_fd is None:
        trampoline_fd = trampoline.open_trampoline()
    process.set_rlimits(proc.rlimits)
    process.set_oom_score_adj(proc.oom_score_adj)
    process.set_scheduler(proc.scheduler)
    process.set_io_priority(proc.io_priority)
    try:
        posix.chdir(proc.cwd)  # as root first; checked again as the container user below (as runc)
    except OSError:
        pass
    notify_fd = None
    if seccomp_filter and not proc.no_new_privileges:
        notify_fd = load_filter(seccomp_filter)
        seccomp_filter = None
    _apply_user_and_capabilities(proc, setgroups_allowed=_setgroups_allowed())
    if proc.no_new_privileges:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1, what="set no_new_privs")
    process.change_dir(proc.cwd)
    env = process.env_with_home(proc.env, proc.user.uid)
    executable = process.find_executable(proc.args[0], env)
    if seccomp_filter and notify_seccomp(seccomp):
        # The notify fd must reach the listener through the parent, which waits for "ready".
        notify_fd = load_filter(seccomp_filter)
        seccomp_filter = None
    process.reset_signals()
    process.close_stray_fds(keep_fds, also_keep=also_keep)
    posix.umask(proc.user.umask if proc.user.umask is not None else 0o022)
    env_map = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return Launch(executable, list(proc.args), env_map, seccomp_filter, notify_fd, trampoline_fd, waiter_fd)


def execute(launch: Launch) -> None:
    """Load a filter that waited for the last moment, and become the user's process: through the
    sealed trampoline, so that no path the container controls can lead back to the host's
    interpreter (it execs `executable` with `args`). Or become the waiter, which does both
    once `start` has opened exec.fifo."""
    if launch.waiter_fd is not None:
        try:
            posix.execve(launch.waiter_fd, [launch.executable, *launch.args], launch.env)
        except OSError as e:
            posix.write(2, f"exec: cannot wait for start: {posix.strerror(e.errno).lower()}\n".encode())
            posix._exit(1)
    if launch.seccomp_filter:
        load_filter(launch.seccomp_filter)
    try:
        if launch.trampoline_fd is not None:
            posix.execve(launch.trampoline_fd, [launch.executable, *launch.args], launch.env)
        posix.execve(launch.executable, launch.args, launch.env)
    except OSError as e:
        posix.write(2, f'exec: "{launch.args[0]}": {posix.strerror(e.errno).lower()}\n'.encode())
        posix._exit(127 if e.errno == 2 else 126)


def become_root_in_userns() -> None:
    """Take the namespace's root ids: our host ids may be unmapped there (the overflow id),
    which makes mounts such as devpts with gid= fail."""
    if _setgroups_allowed():
        try:
            posix.setgroups([])
        except PermissionError:
            pass
    posix.setresgid(0, 0, 0)
    posix.setresuid(0, 0, 0)


def _setgroups_allowed() -> bool:
    # posix.open, not open(): the io stack costs a child ~0.1 ms of copy-on-write faults.
    try:
        fd = posix.open("/proc/self/setgroups", posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return True
    try:
        return posix.read(fd, 64).strip() != b"deny"
    except OSError:
        return True
    finally:
        posix.close(fd)


def _apply_user_and_capabilities(proc, *, setgroups_allowed: bool) -> None:
    caps = proc.capabilities
    if caps is not None:
        capabilities.drop_bounding(capabilities.mask(caps.bounding, CAPABILITIES))
    process.switch_user(proc.user, setgroups_allowed=setgroups_allowed)
    if caps is not None:
        capabilities.apply_sets(
            capabilities.mask(caps.effective, CAPABILITIES),
            capabilities.mask(caps.permitted, CAPABILITIES),
            capabilities.mask(caps.inheritable, CAPABILITIES),
            capabilities.mask(caps.ambient, CAPABILITIES),
        )


def notify_seccomp(seccomp: dict | None) -> bool:
    if not seccomp:
        return False
    if seccomp.get("defaultAction") == "SCMP_ACT_NOTIFY":
        return True
    return any(s.get("action") == "SCMP_ACT_NOTIFY" for s in seccomp.get("syscalls") or [])


def load_filter(prepared) -> int | None:
    """Load a prepared seccomp filter; its module was imported where it was prepared."""
    from .linux.seccomp_load import load_prepared

    return load_prepared(prepared)

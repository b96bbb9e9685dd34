"""The container process's own settings: rlimits, user, env, executable, fds, signals.

Everything here runs in the container's pid 1 (or an exec'd process) just before
execve. Messages that engines map to exit codes are spelled as runc's:
"executable file not found in $PATH" / "no such file or directory" -> 127,
"permission denied" -> 126.
"""

import _signal  # the C module behind `signal`: the same calls on plain ints, without its enums (4 ms of imports)
import errno
import posix
import resource
import stat

from .. import fspath
from ..errors import SetupError
from . import syscalls
from .rlimitnames import RLIMITS  # noqa: F401 - re-exported


def _rlim(value: int) -> int:
    return resource.RLIM_INFINITY if value >= 2**63 else value


def set_rlimits(rlimits) -> None:
    """Apply process.rlimits; raising a hard limit needs CAP_SYS_RESOURCE, and the error says so."""
    for rl in rlimits:
        res = RLIMITS.get(rl.type)
        if res is None:
            raise SetupError(f"unknown rlimit {rl.type}")
        soft, hard = _rlim(rl.soft), _rlim(rl.hard)
        try:
            resource.setrlimit(res, (soft, hard))
        except (ValueError, OSError) as e:
            cur_soft, cur_hard = resource.getrlimit(res)
            if cur_hard != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > cur_hard):
                # "operation not permitted" is what podman maps to its permission-denied error.
                raise SetupError(
                    f"setrlimit {rl.type} soft={rl.soft} hard={rl.hard}: operation not permitted: cannot raise the hard "
                    f"limit above {cur_hard} without CAP_SYS_RESOURCE (lower process.rlimits to at most {cur_hard})"
                ) from None
            raise SetupError(f"setrlimit {rl.type} soft={rl.soft} hard={rl.hard}: {e}") from None


SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3, "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
SCHED_FLAGS = {
    "SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02, "SCHED_FLAG_DL_OVERRUN": 0x04,
    "SCHED_FLAG_KEEP_POLICY": 0x08, "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
    "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40,
}
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
MPOL_MODES = {
    "MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3, "MPOL_LOCAL": 4,
    "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6,
}
MPOL_FLAGS = {"MPOL_F_NUMA_BALANCING": 1 << 13, "MPOL_F_RELATIVE_NODES": 1 << 14, "MPOL_F_STATIC_NODES": 1 << 15}


def set_scheduler(sched) -> None:
    """process.scheduler through sched_setattr(2): policy, nice, priority, flags, deadline times."""
    if sched is None:
        return
    flags = 0
    for name in sched.flags or []:
        flags |= SCHED_FLAGS[name]
    try:
        syscalls.sched_setattr(
            SCHED_POLICIES[sched.policy], flags=flags, nice=sched.nice or 0, priority=sched.priority or 0,
            runtime=sched.runtime or 0, deadline=sched.deadline or 0, period=sched.period or 0,
        )
    except OSError as e:
        raise SetupError(f"process.scheduler ({sched.policy}): {e.strerror}") from None


def set_io_priority(iop) -> None:
    if iop is None:
        return
    try:
        syscalls.ioprio_set(IOPRIO_CLASSES[iop.class_], iop.priority)
    except OSError as e:
        raise SetupError(f"process.ioPriority ({iop.class_} {iop.priority}): {e.strerror}") from None


def parse_node_list(text: str | None) -> list[int]:
    """Pure: "0-2,5" -> [0, 1, 2, 5]."""
    nodes = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        nodes.extend(range(int(lo), int(hi or lo) + 1))
    return nodes


def set_memory_policy(policy) -> None:
    """linux.memoryPolicy through set_mempolicy(2): inherited by the process across execve."""
    if policy is None:
        return
    mode = MPOL_MODES[policy.mode]
    for name in policy.flags or []:
        mode |= MPOL_FLAGS[name]
    try:
        syscalls.set_mempolicy(mode, parse_node_list(policy.nodes))
    except OSError as e:
        raise SetupError(f"linux.memoryPolicy ({policy.mode} nodes {policy.nodes!r}): {e.strerror}") from None


def set_oom_score_adj(value: int | None) -> None:
    if value is None:
        return
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except OSError as e:
        raise SetupError(f"set oomScoreAdj to {value}: {e.strerror} (lowering it needs CAP_SYS_RESOURCE)") from None


def switch_user(user, *, setgroups_allowed: bool = True) -> None:
    """Set groups, gid and uid, keeping permitted capabilities across the uid change."""
    if setgroups_allowed:
        posix.setgroups(list(user.additional_gids or []))
    posix.setresgid(user.gid, user.gid, user.gid)
    syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 1, what="set keepcaps")
    try:
        posix.setresuid(user.uid, user.uid, user.uid)
    finally:
        syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 0, what="clear keepcaps")


def env_with_home(env: list[str], uid: int) -> list[str]:
    """Add HOME from the container's /etc/passwd when the config does not set it (as runc)."""
    if any(e.startswith("HOME=") for e in env):
        return list(env)
    home = "/"
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    home = parts[5] or "/"
                    break
    except OSError:
        pass
    return list(env) + [f"HOME={home}"]


def env_value(env: list[str], name: str) -> str | None:
    for e in env:
        if e.startswith(name + "="):
            return e[len(name) + 1 :]
    return None


def _is_executable_file(path: str) -> bool:
    try:
        st = posix.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and posix.access(path, posix.X_OK)


def find_executable(arg0: str, env: list[str]) -> str:
    """Resolve args[0] like Go's exec.LookPath in runc's init, with runc's messages."""
    if "/" in arg0:
        try:
            st = posix.stat(arg0)
        except OSError as e:
            raise SetupError(f'exec: "{arg0}": stat {arg0}: {posix.strerror(e.errno).lower()}') from None
        if stat.S_ISDIR(st.st_mode) or not posix.access(arg0, posix.X_OK):
            raise SetupError(f'exec: "{arg0}": permission denied')
        return arg0
    path = env_value(env, "PATH")
    if path is None:
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for d in path.split(":"):
        candidate = fspath.join(d or ".", arg0)
        if _is_executable_file(candidate):
            return candidate
    raise SetupError(f'exec: "{arg0}": executable file not found in $PATH')


def change_dir(cwd: str) -> None:
    """chdir and make sure the result is inside the container's root (no /proc/self/fd/N escape)."""
    try:
        posix.chdir(cwd)
    except OSError as e:
        raise SetupError(f"chdir to cwd ({cwd!r}) set in config.json failed: {posix.strerror(e.errno).lower()}") from None
    try:
        here = posix.getcwd()
    except FileNotFoundError:
        here = None
    if here is None or not here.startswith("/"):
        raise SetupError(f"cwd {cwd!r} is outside the container's root")


def reset_signals() -> None:
    """Every signal at its default and unblocked: the runtime may have inherited ignores and masks.

    The interpreter read every disposition when it started and tracks its own changes, so
    getsignal() tells which are not the default (usually SIGINT, SIGPIPE and SIGXFSZ):
    only those are set, not all 62 (None is a handler installed outside Python)."""
    for sig in range(1, _signal.NSIG):
        if sig in (_signal.SIGKILL, _signal.SIGSTOP):
            continue
        try:
            if _signal.getsignal(sig) != _signal.SIG_DFL:
                _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


def close_stray_fds(keep_upto: int, also_keep: tuple[int, ...] = ()) -> None:
    """Mark every fd >= keep_upto close-on-exec, except `also_keep`; 0..keep_upto-1 pass into the container."""
    for name in posix.listdir("/proc/self/fd"):
        fd = int(name)
        if fd < keep_upto or fd in also_keep:
            continue
        try:
            posix.set_inheritable(fd, False)
        except OSError as e:
            if e.errno != errno.EBADF:
                raise
    for fd in range(keep_upto):
        try:
            posix.set_inheritable(fd, True)
        except OSError:
            pass

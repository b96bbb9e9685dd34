"""Join a running container's cgroups from what its state file recorded.

`exec` needs two things of the container's cgroup: the cgroup2 directory its stage 1 can
be born in (syscalls.fork_into_cgroup), and a way for that one-thread process to move
itself into every other hierarchy. Both come from the state's "paths"; this module gives
them with posix alone, so `exec` does not import the managers (manager.py, v1.py,
resources.py, teardown.py: about 0.6 ms). The managers' enter() follows the same rule.
"""

import posix

from ocipy.errors import SetupError

# Key used in `paths` for the cgroup2 hierarchy (on a pure v2 host, and for the
# unified hierarchy that a hybrid host mounts beside the v1 ones).
UNIFIED = "unified"


class RecordedCgroup:
    """The cgroup a container's state recorded (`CgroupManager.to_state()`), to join it."""

    def __init__(self, record: dict | None):
        record = record or {}
        paths = {} if record.get("driver") == "disabled" else (record.get("paths") or {})
        self.paths = dict(paths)

    def v2_dir(self) -> str | None:
        """The container's directory in a cgroup2 hierarchy (v2 host, or a hybrid host's
        unified twin); None without one."""
        return self.paths.get(UNIFIED)

    def enter(self, *, skip_v2: bool = False) -> None:
        enter(self.paths, skip_v2=skip_v2)


def enter(paths: dict, *, skip_v2: bool = False) -> None:
    """Move the calling process, which must have one thread, into every directory of `paths`
    (what the managers' enter() does too): a v1 hierarchy by moving the thread through
    `tasks`, which the kernel does without its global migration lock; the cgroup2 directory
    through cgroup.procs, unless `skip_v2`: the process was born there, or it leaves that
    directory to a child it will fork into it (both with syscalls.fork_into_cgroup)."""
    for d in join_order(paths):
        if d == paths.get(UNIFIED):
            if skip_v2:
                continue
            name = "cgroup.procs"  # a v2 directory: one thread cannot leave its process's domain
        else:
            name = "tasks"
        try:
            fd = posix.open(f"{d}/{name}", posix.O_WRONLY | posix.O_CLOEXEC)
            try:
                posix.write(fd, b"0")
            finally:
                posix.close(fd)
        except OSError as e:
            raise SetupError(f"cannot add process {posix.getpid()} to cgroup {d}: {posix.strerror(e.errno)}") from e


def join_order(paths: dict) -> list[str]:
    """Pure: the distinct directories of `paths`, by controller name (controllers that share
    a hierarchy share a directory)."""
    out = []
    for key in sorted(paths):
        if paths[key] not in out:
            out.append(paths[key])
    return out

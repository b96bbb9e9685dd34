"""Take the ~10-20 ms a first cgroup migration costs off the critical path of create and exec.

Moving a process into a cgroup (a write to `cgroup.procs`, what stage 1 of create and
of exec does) takes the kernel's global cgroup_threadgroup_rwsem for writing. When no
migration happened in the last few milliseconds, that lock first waits for an RCU grace
period (its rcu_sync switches every fork and exit to a slow path): 10-20 ms on this kind
of machine, then later migrations are quick until the lock has been idle for a grace
period again. runc pays the same wait, but it overlaps it with its child's start-up.

ocipy overlaps it with its own: as soon as a command that will migrate a process starts,
a background thread "migrates" this process into the cgroup it is already in (a no-op
move, but the same lock), and repeats that every millisecond until the real migration is
done, so that the real one finds the lock warm. Failures are ignored: at worst the real
migration pays the wait itself. The thread uses only os and _thread (no imports that cost).
"""

import _thread
import os
import time

_INTERVAL = 0.001


def own_procs_file(proc_cgroup: str, mounts: str = "/sys/fs/cgroup") -> str | None:
    """The cgroup.procs of the cgroup this process is in, from /proc/self/cgroup's text, under
    the usual mount points (`mounts`, its unified/ on hybrid hosts, or a v1 controller's);
    None when none of them exists. Any hierarchy will do: the lock is global."""
    candidates = []
    for line in proc_cgroup.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        path = path.rstrip("/")
        if hierarchy == "0" and not controllers:
            candidates += [f"{mounts}/unified{path}", f"{mounts}{path}"]
        elif controllers:
            candidates.append(f"{mounts}/{controllers.split(',')[0].removeprefix('name=')}{path}")
    for directory in candidates:
        procs = os.path.join(directory, "cgroup.procs")
        if os.path.exists(procs):
            return procs
    return None


_running = False


def begin() -> None:
    """Start keeping migrations cheap (no-op when already started); end() stops it."""
    global _running
    if _running:
        return
    try:
        with open("/proc/self/cgroup") as f:
            procs = own_procs_file(f.read())
        fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC) if procs else -1
    except OSError:
        return
    if fd >= 0:
        _running = True
        _thread.start_new_thread(_keep_warm, (fd,))


def end() -> None:
    global _running
    _running = False


def _keep_warm(fd: int) -> None:
    try:
        while _running:
            os.write(fd, b"0")  # "0": the writing process itself
            time.sleep(_INTERVAL)
    except OSError:
        pass
    finally:
        os.close(fd)

"""Remove a container's cgroups from what its state file recorded.

`delete` runs for every container an engine stops, so this is all it imports of the
cgroup code: posix and time, not the managers (v1.py, v2.py, resources.py and
`os`, about 2 ms). The managers use the same functions for their own destroy().

What is removed is exactly what create() made (the state's "created" list): the
container's own cgroup (a "leaf", one of the state's "paths") with whatever was made
inside it, and an intermediate directory only when it is empty. A cgroup that was
merely joined is never removed.
"""

import posix
import time

from ocipy.errors import SetupError


def read_pids_file(path: str) -> list[int]:
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def subdirs(path: str) -> list[str]:
    """The child cgroups of `path` (none when it is gone)."""
    try:
        return [e.path for e in posix.scandir(path) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def has_subdirs(path: str) -> bool:
    return bool(subdirs(path))


def pids_below(path: str) -> list[int]:
    """Every pid in cgroup `path` and its descendants, each once, in the order found."""
    found = read_pids_file(f"{path}/cgroup.procs")
    for sub in subdirs(path):
        found += pids_below(sub)
    return list(dict.fromkeys(found))


def rmdir_retry(path: str, timeout: float = 2.0) -> bool:
    """rmdir a cgroup; retry on EBUSY while its last processes finish exiting. Whether it
    is gone.

    A cgroup that still has child cgroups is left in place (another container may
    live under an intermediate directory we created): False. Missing is fine: True.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            posix.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            import errno  # here: a delete whose rmdir succeeds at once needs none of it

            if e.errno in (errno.EBUSY, errno.ENOTEMPTY, errno.EAGAIN):
                if has_subdirs(path):
                    return False
                if time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.1)
                    continue
                raise SetupError(f"cannot remove cgroup {path}: {posix.strerror(e.errno)} "
                                 f"(processes still in it: {read_pids_file(path + '/cgroup.procs')})") from e
            raise SetupError(f"cannot remove cgroup {path}: {posix.strerror(e.errno)}") from e


def remove_tree(path: str, timeout: float = 2.0) -> bool:
    """rmdir a container's own cgroup and the sub-cgroups made inside it (cgroupns, nested
    systemd), deepest first; retry on EBUSY while processes finish exiting. Whether it
    is gone (as rmdir_retry)."""
    try:
        posix.rmdir(path)  # the usual case: no sub-cgroup, no process left
        return True
    except FileNotFoundError:
        return True
    except OSError:
        pass
    for sub in subdirs(path):
        remove_tree(sub, timeout)
    return rmdir_retry(path, timeout)


def destroy_created(created: list[str], leaves: set[str], timeout: float = 2.0) -> list[str]:
    """Remove the directories create() made, deepest first: a leaf (the container's own
    cgroup) with everything below it, an intermediate directory only when it is empty.
    One time budget covers every hierarchy. Returns what is still there, in `created`'s
    order (told by each removal, not by a stat of each afterwards); raises SetupError
    listing the failures."""
    errors = []
    kept = set()
    deadline = time.monotonic() + timeout
    for d in sorted(created, key=lambda p: p.count("/"), reverse=True):
        left = max(0.0, deadline - time.monotonic())
        try:
            gone = remove_tree(d, left) if d in leaves else rmdir_retry(d, left)
        except SetupError as e:
            errors.append(str(e))
            gone = False
        if not gone:
            kept.add(d)
    if errors:
        raise SetupError("; ".join(errors))
    return [d for d in created if d in kept]


def recorded_pids(cgroup_state: dict | None) -> list[int]:
    """The pids still in the container's cgroups, from the state's record of them."""
    paths = (cgroup_state or {}).get("paths") or {}
    return list(dict.fromkeys(p for d in set(paths.values()) for p in pids_below(d)))


def destroy_recorded(cgroup_state: dict | None) -> None:
    """What a manager's destroy() does, from the state's record alone (no manager)."""
    cgroup_state = cgroup_state or {}
    destroy_created(list(cgroup_state.get("created") or []), set((cgroup_state.get("paths") or {}).values()))

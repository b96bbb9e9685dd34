"""Namespaces from linux.namespaces: which to create, which to join by path, and in what order."""

from __future__ import annotations

import posix

from ..record import Record
from . import syscalls

FLAGS = {
    "pid": syscalls.CLONE_NEWPID,
    "network": syscalls.CLONE_NEWNET,
    "mount": syscalls.CLONE_NEWNS,
    "ipc": syscalls.CLONE_NEWIPC,
    "uts": syscalls.CLONE_NEWUTS,
    "user": syscalls.CLONE_NEWUSER,
    "cgroup": syscalls.CLONE_NEWCGROUP,
    "time": syscalls.CLONE_NEWTIME,
}

# /proc/<pid>/ns/<name> for each spec type.
PROC_NAMES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts", "user": "user", "cgroup": "cgroup", "time": "time"}

# Join order: the user namespace first (it decides our privileges over the others),
# mount last among the rest (joining it changes our root), pid and time affect children only.
JOIN_ORDER = ["user", "ipc", "uts", "network", "cgroup", "pid", "time", "mount"]


class NamespacePlan(Record):
    """Who makes what: stage 1 creates the user namespace, then `unshare_flags`; the
    container's pid 1 creates the cgroup namespace itself (`new_cgroup`), since only it is
    sure to be in the container's cgroups by then (it may be born into its cgroup2
    directory while stage 1 stays out: see init.py), and a cgroup namespace's root is
    the cgroup of the process that creates it."""

    new_user: bool = False
    unshare_flags: int = 0  # what stage 1 unshares: everything new but the user and cgroup namespaces
    new_cgroup: bool = False
    join: list = None  # [(type, path)] in JOIN_ORDER

    def is_new(self, ns_type: str) -> bool:
        if ns_type == "user":
            return self.new_user
        if ns_type == "cgroup":
            return self.new_cgroup
        return bool(self.unshare_flags & FLAGS[ns_type])


def plan(namespaces) -> NamespacePlan:
    """Pure: split linux.namespaces into namespaces to join (by path) and to create."""
    p = NamespacePlan(join=[])
    joins = {}
    for ns in namespaces:
        if ns.path:
            joins[ns.type] = ns.path
        elif ns.type == "user":
            p.new_user = True
        elif ns.type == "cgroup":
            p.new_cgroup = True
        else:
            p.unshare_flags |= FLAGS[ns.type]
    p.join = [(t, joins[t]) for t in JOIN_ORDER if t in joins]
    return p


def join(ns_type: str, path: str) -> None:
    fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        syscalls.setns(fd, FLAGS[ns_type], what=f"{ns_type} namespace {path}")
    finally:
        posix.close(fd)


def write_time_offsets(offsets: dict) -> None:
    """Offsets for the time namespace our next child enters (before any process is in it)."""
    names = {"monotonic": "monotonic", "boottime": "boottime"}
    lines = [f"{names[clock]} {int(v.get('secs', 0))} {int(v.get('nanosecs', 0))}" for clock, v in offsets.items() if clock in names]
    for line in lines:
        with open("/proc/self/timens_offsets", "w") as f:
            f.write(line)

"""Container cgroups: choose a manager for this host and rebuild one from the state file.

    mgr = new_manager(container_id, spec_cgroups_path, driver="cgroupfs")
    mgr.create(); mgr.apply(resources); mgr.add_process(pid)
    state["cgroup"] = mgr.to_state()
    ...
    mgr = manager_from_state(state["cgroup"]); mgr.freeze(); mgr.destroy()

Drivers:
- "cgroupfs": write the cgroup filesystem directly. A host that mounts any v1
  controller gets the v1 manager (hybrid hosts included: it also uses the
  unified mount); a host with only cgroup2 gets the v2 manager.
- "systemd": not implemented; raises SetupError (and says whether systemd runs).
- "disabled": every operation is a no-op; pids() is [].

Default cgroupsPath (unset in config.json): the container id relative to the
caller's own cgroup, as runc does. Relative paths resolve under the caller's
own cgroup in each hierarchy (/proc/self/cgroup).

Imports nothing at first: manager.py, v1/v2/bpf/stats load on demand.
"""

from ocipy.errors import SetupError

DRIVERS = ("cgroupfs", "systemd", "disabled")

__all__ = [
    "CgroupManager",
    "Hierarchy",
    "host_hierarchies",
    "manager_from_state",
    "new_manager",
    "systemd_running",
]

# Re-exported from manager.py, which is imported on first use: `delete` imports only
# this package and teardown.py.
_FROM_MANAGER = ("UNIFIED", "CgroupManager", "DisabledManager", "Hierarchy", "clean_path", "default_cgroups_path",
                 "host_hierarchies", "parse_mountinfo", "parse_proc_cgroup")


def __getattr__(name: str):
    if name in _FROM_MANAGER:
        from . import manager

        return getattr(manager, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def systemd_running() -> bool:
    """sd_booted(): systemd is pid 1 when /run/systemd/system exists."""
    import os

    return os.path.isdir("/run/systemd/system")


def new_manager(
    container_id: str,
    cgroups_path: str | None,
    *,
    driver: str = "cgroupfs",
    root_pid: int | None = None,
    mountinfo: str | None = None,
    self_cgroup: str | None = None,
):
    """A CgroupManager for container `container_id` at `cgroups_path` (None: runc's default, the id).

    root_pid: accepted for interface stability; the paths are resolved from the
    caller's own cgroup, not from that process's.
    mountinfo / self_cgroup: the text of /proc/self/mountinfo and /proc/self/cgroup
    (tests pass fakes; None reads the real files).
    """
    from .manager import (
        DisabledManager,
        clean_path,
        default_cgroups_path,
        host_hierarchies,
        parse_mountinfo,
        parse_proc_cgroup,
        resolve_v1_paths,
        resolve_v2_path,
    )

    if driver not in DRIVERS:
        raise SetupError(f"unknown cgroup driver {driver!r} (expected one of {', '.join(DRIVERS)})")
    if driver == "disabled":
        return DisabledManager(container_id, cgroups_path)
    if driver == "systemd":
        if not systemd_running():
            raise SetupError("systemd cgroup driver requested (--systemd-cgroup), but systemd is not running "
                             "on this host (/run/systemd/system does not exist); use the cgroupfs driver")
        raise SetupError("systemd cgroup driver (--systemd-cgroup) is not supported by ocipy yet; "
                         "use the cgroupfs driver")

    path = cgroups_path if cgroups_path else default_cgroups_path(container_id)
    inner = clean_path(path)
    if inner in ("", "/"):
        raise SetupError(f"linux.cgroupsPath: {cgroups_path!r} names the root cgroup; refusing to manage it")

    if mountinfo is None:
        hierarchies = host_hierarchies()
    else:
        hierarchies = parse_mountinfo(mountinfo, read_controllers=lambda m: ())
    if self_cgroup is None:
        try:
            with open("/proc/self/cgroup") as f:
                self_cgroup = f.read()
        except OSError:
            self_cgroup = ""
    own = parse_proc_cgroup(self_cgroup)

    if any(h.version == 1 for h in hierarchies):
        from .v1 import V1Manager

        mgr = V1Manager(container_id, path)
        mgr.paths = resolve_v1_paths(inner, hierarchies, own)
        return mgr
    v2 = [h for h in hierarchies if h.version == 2]
    if v2:
        from .v2 import V2Manager

        return V2Manager(container_id, path, resolve_v2_path(inner, v2[0], own), v2[0].mountpoint)
    raise SetupError("no cgroup filesystem is mounted on this host (nothing of type cgroup or cgroup2 in "
                     "/proc/self/mountinfo)")


def manager_from_state(data: dict | None):
    """Rebuild the CgroupManager recorded by `to_state()` (no host discovery, so it is cheap and stable)."""
    from .manager import DisabledManager

    data = data or {}
    version = data.get("version", 0)
    cid = data.get("container_id", "")
    cpath = data.get("cgroups_path")
    if data.get("driver") == "disabled" or version == 0:
        return DisabledManager(cid, cpath)
    if version == 1:
        from .v1 import V1Manager

        mgr = V1Manager(cid, cpath)
    elif version == 2:
        from .v2 import V2Manager

        mgr = V2Manager(cid, cpath)
    else:
        raise SetupError(f"unknown cgroup manager version {version!r} in the container's state")
    mgr._restore(data)
    return mgr

"""cgroup v1 manager (also the hybrid layout: v1 controllers plus a cgroup2 mount at .../unified).

On a hybrid host the container's cgroup is also created in the unified hierarchy
and in name=systemd, and its processes join them, so that engines reading
/proc/<pid>/cgroup find the container at cgroupsPath everywhere (ENGINES.md).
Controllers that exist only on the unified side of a hybrid host (hugetlb on
the development machine) are driven through their v2 files there.
"""

from __future__ import annotations

import posix  # not os (~1 ms): see ocipy/fspath.py
import time
from _signal import SIGKILL  # the C module behind `signal`, whose enums cost 4 ms of imports

from ocipy import fspath
from ocipy.errors import SetupError

from .manager import (
    UNIFIED,
    CgroupManager,
    makedirs_tracked,
    perform_write,
    read_file,
    write_file,
)
from .joining import join_order

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from . import resources as res  # imported where used: see apply

# Where to read the container's processes from, best first.
_PROCS_ORDER = ("pids", "freezer", "devices", "memory", "cpu", "cpuacct", "cpuset", "blkio", "name=systemd")


class V1Manager(CgroupManager):
    version = 1
    driver = "cgroupfs"

    # --- directories -------------------------------------------------------------------------

    def _dirs(self) -> list[str]:
        """Distinct directories, in a stable order (controllers sharing a hierarchy share a dir)."""
        return join_order(self.paths)

    def create(self) -> None:
        for d in self._dirs():
            try:
                made = makedirs_tracked(d)
            except OSError as e:
                raise SetupError(f"cannot create cgroup {d}: {posix.strerror(e.errno)}") from e
            for m in made:
                if m not in self.created:
                    self.created.append(m)
            if d == self.paths.get("cpuset"):
                self._init_cpuset(made)

    def _init_cpuset(self, made: list[str]) -> None:
        """A new v1 cpuset cgroup starts with empty cpus/mems, and no process can join it: copy
        them down from the nearest ancestor that has them. Walking up from the leaf (not only
        through the directories we made) also covers a parent another container made a moment
        ago and has not initialised yet."""
        if not made:
            return
        leaf = self.paths["cpuset"]
        chain = []
        d = leaf
        while True:
            try:
                ok = all(read_file(fspath.join(d, n)).strip() for n in ("cpuset.cpus", "cpuset.mems"))
            except OSError:
                break  # above the hierarchy root
            if ok:
                break
            chain.append(d)
            parent = fspath.dirname(d)
            if parent == d:
                break
            d = parent
        for d in reversed(chain):
            parent = fspath.dirname(d)
            for name in ("cpuset.cpus", "cpuset.mems"):
                try:
                    if read_file(fspath.join(d, name)).strip():
                        continue
                    value = read_file(fspath.join(parent, name)).strip()
                    if value:
                        write_file(fspath.join(d, name), value)
                except OSError as e:
                    raise SetupError(f"cannot initialise {fspath.join(d, name)} from its parent: "
                                     f"{posix.strerror(e.errno)}") from e

    def _enable_unified_controllers(self, wanted: list[str]) -> None:
        """Hybrid: enable `wanted` unified-side controllers (hugetlb here) for our cgroup, top-down.

        Done only when a setting needs them, so a plain container leaves the
        host's unified subtree_control as it found it."""
        target = self.paths[UNIFIED]
        root = _unified_root(target, self.created)
        chain = []
        d = fspath.dirname(target)
        while True:
            chain.append(d)
            if d == root or len(d) <= len(root):
                break
            d = fspath.dirname(d)
        for parent in reversed(chain):
            try:
                avail = read_file(fspath.join(parent, "cgroup.controllers")).split()
                enabled = read_file(fspath.join(parent, "cgroup.subtree_control")).split()
            except OSError:
                continue
            for c in wanted:
                if c in avail and c not in enabled:
                    try:
                        write_file(fspath.join(parent, "cgroup.subtree_control"), "+" + c)
                    except OSError:
                        pass  # best effort; apply() reports a controller it needs and lacks

    # --- resources ---------------------------------------------------------------------------

    def _current(self, resources: dict) -> dict:
        cur = {}
        dev = self.paths.get("devices")
        if dev and resources.get("devices") is not None:
            try:
                cur["devices.list"] = read_file(fspath.join(dev, "devices.list"))
            except OSError:
                pass
        mem = self.paths.get("memory")
        if mem:
            try:
                cur["memory.limit_in_bytes"] = int(read_file(fspath.join(mem, "memory.limit_in_bytes")))
            except (OSError, ValueError):
                pass
        return cur

    def apply(self, resources: dict | None) -> None:
        if not resources:
            return
        from . import resources as res  # here, not at the top: create applies the limits after handing stage 1 its setup
        writes = res.plan_v1(_without_v2_only(resources, self), self._current(resources))
        extra = self._hybrid_writes(resources)
        self._run(writes + extra)

    def _hybrid_writes(self, resources: dict) -> list[res.Write]:
        """hugepageLimits on a hybrid host whose hugetlb controller lives on the unified side."""
        if "hugetlb" in self.paths or UNIFIED not in self.paths or not resources.get("hugepageLimits"):
            return []
        from . import resources as res

        writes = res.plan_v2({"hugepageLimits": resources["hugepageLimits"]})
        d = self.paths[UNIFIED]

        def have() -> list[str]:
            try:
                return read_file(fspath.join(d, "cgroup.controllers")).split()
            except OSError:
                return []

        if "hugetlb" not in have():
            self._enable_unified_controllers(["hugetlb"])
            if "hugetlb" not in have():
                raise SetupError("linux.resources.hugepageLimits: the hugetlb controller is neither mounted as "
                                 f"cgroup v1 nor available in {d} (cgroup.controllers: {' '.join(have()) or 'none'})")
        return [w._replace(controller=UNIFIED) for w in writes]

    def _run(self, writes: list[res.Write]) -> None:
        for w in writes:
            d = self.paths.get(w.controller)
            if d is None:
                if w.optional:
                    continue
                raise SetupError(f"{w.field}: the {w.controller} cgroup controller is not mounted on this host")
            perform_write(d, w)

    # --- processes ---------------------------------------------------------------------------

    def add_process(self, pid: int) -> None:
        for d in self._dirs():
            path = fspath.join(d, "cgroup.procs")
            try:
                write_file(path, str(pid))
            except OSError as e:
                raise SetupError(f"cannot add process {pid} to cgroup {d}: {posix.strerror(e.errno)}") from e

    def _procs_dir(self) -> str | None:
        for c in _PROCS_ORDER:
            if c in self.paths:
                return self.paths[c]
        dirs = self._dirs()
        return dirs[0] if dirs else None

    def pids(self) -> list[int]:
        d = self._procs_dir()
        if d is None or not fspath.isdir(d):
            return []
        from .teardown import pids_below

        return pids_below(d)

    # --- freezer -----------------------------------------------------------------------------

    def _freezer_state_file(self) -> str:
        d = self.paths.get("freezer")
        if d is None:
            raise SetupError("the freezer cgroup controller is not mounted on this host")
        return fspath.join(d, "freezer.state")

    def freeze(self) -> None:
        path = self._freezer_state_file()
        deadline = time.monotonic() + 5
        delay = 0.001
        try:
            while True:
                write_file(path, "FROZEN")
                state = read_file(path).strip()
                if state == "FROZEN":
                    return
                if time.monotonic() > deadline:
                    write_file(path, "THAWED")
                    raise SetupError(f"cannot freeze cgroup {fspath.dirname(path)}: still {state} after 5s")
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        except OSError as e:
            raise SetupError(f"cannot freeze cgroup: {path}: {posix.strerror(e.errno)}") from e

    def thaw(self) -> None:
        path = self._freezer_state_file()
        try:
            write_file(path, "THAWED")
        except OSError as e:
            raise SetupError(f"cannot thaw cgroup: {path}: {posix.strerror(e.errno)}") from e

    def freeze_probe(self) -> list | None:
        d = self.paths.get("freezer")
        # FREEZING counts: the freeze was asked for (runc reports such a container paused too)
        return None if d is None else [fspath.join(d, "freezer.state"), ["FROZEN", "FREEZING"]]

    def kill_all(self, sig: int) -> None:
        """Signal every process; freeze around it so nothing forks out of reach (runc does the same)."""
        frozen_here = False
        if "freezer" in self.paths and fspath.isdir(self.paths["freezer"]) and not self.is_frozen():
            try:
                self.freeze()
                frozen_here = True
            except SetupError:
                frozen_here = False
        try:
            self._signal_pids(sig)
        finally:
            if frozen_here or (sig == SIGKILL and self.is_frozen()):
                # a frozen task cannot die: SIGKILL needs a thaw to take effect
                try:
                    self.thaw()
                except SetupError:
                    pass

    # --- teardown ----------------------------------------------------------------------------

    def destroy(self) -> None:
        """Remove only what create() made (never a cgroup we merely joined); kill nothing."""
        try:
            from .teardown import destroy_created

            self.created = destroy_created(self.created, set(self.paths.values()))
        except SetupError:
            self.created = [d for d in self.created if fspath.isdir(d)]
            raise

    # --- stats -------------------------------------------------------------------------------

    def stats(self) -> dict:
        from . import stats

        return stats.stats_v1(self.paths)


def _without_v2_only(resources: dict, mgr: V1Manager) -> dict:
    """Drop hugepageLimits from the v1 plan when hybrid hugetlb is handled on the unified side."""
    if "hugetlb" not in mgr.paths and UNIFIED in mgr.paths and resources.get("hugepageLimits"):
        r = dict(resources)
        del r["hugepageLimits"]
        return r
    return resources


def _unified_root(target: str, created: list[str]) -> str:
    """The outermost directory whose subtree_control we touch: the parent of the first
    directory create() made on the path (or the target's parent when we made none)."""
    for d in created:
        if target == d or target.startswith(d + "/"):
            return fspath.dirname(d)
    return fspath.dirname(target)


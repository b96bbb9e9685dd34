"""cgroup v2 (unified hierarchy) manager.

- create: mkdir -p, then (best effort, like runc) enable every controller the
  hierarchy offers in cgroup.subtree_control of each ancestor from the mount
  point down to the container's parent, so the container's cgroup has them.
- apply: the writes from resources.plan_v2 (a controller that is needed but not
  available is an error naming the JSON field), then the device program.
- freeze/thaw: cgroup.freeze, waiting for `frozen 1` in cgroup.events.
- kill_all(SIGKILL): cgroup.kill where the kernel has it (5.14+).
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


DELEGATE_FILE = "/sys/kernel/cgroup/delegate"
DELEGATE_FALLBACK = ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads")


class V2Manager(CgroupManager):
    version = 2
    driver = "cgroupfs"

    def __init__(self, container_id: str, cgroups_path: str | None, path: str = "", mountpoint: str = ""):
        super().__init__(container_id, cgroups_path)
        self.mountpoint = mountpoint
        if path:
            self.paths = {UNIFIED: path}

    @property
    def path(self) -> str:
        return self.paths[UNIFIED]

    def to_state(self) -> dict:
        d = super().to_state()
        d["mountpoint"] = self.mountpoint
        return d

    def _restore(self, data: dict) -> None:
        super()._restore(data)
        self.mountpoint = data.get("mountpoint") or ""

    # --- directories -------------------------------------------------------------------------

    def create(self) -> None:
        try:
            made = makedirs_tracked(self.path)
        except OSError as e:
            raise SetupError(f"cannot create cgroup {self.path}: {posix.strerror(e.errno)}") from e
        self.created += [m for m in made if m not in self.created]
        self._enable_controllers(None)

    def _ancestors(self) -> list[str]:
        """Directories whose subtree_control governs our cgroup: mount point .. parent, top-down."""
        out = []
        d = fspath.dirname(self.path)
        top = self.mountpoint or d
        while True:
            out.append(d)
            if d == top or len(d) <= len(top) or d == "/":
                break
            d = fspath.dirname(d)
        return list(reversed(out))

    def _enable_controllers(self, wanted: list[str] | None) -> None:
        """Enable `wanted` (None: all available) top-down; failures are left to the caller to report."""
        for d in self._ancestors():
            try:
                avail = read_file(fspath.join(d, "cgroup.controllers")).split()
                enabled = read_file(fspath.join(d, "cgroup.subtree_control")).split()
            except OSError:
                continue
            for c in (avail if wanted is None else wanted):
                if c in avail and c not in enabled:
                    try:
                        write_file(fspath.join(d, "cgroup.subtree_control"), "+" + c)
                    except OSError:
                        pass

    def available_controllers(self) -> list[str]:
        try:
            return read_file(fspath.join(self.path, "cgroup.controllers")).split()
        except OSError:
            return []

    # --- resources ---------------------------------------------------------------------------

    def apply(self, resources: dict | None) -> None:
        if not resources:
            return
        from . import resources as res  # here, not at the top: create applies the limits after handing stage 1 its setup
        current = {}
        for name in ("cpu.max", "memory.max"):
            try:
                current[name] = read_file(fspath.join(self.path, name)).strip()
            except OSError:
                pass
        writes = res.plan_v2(resources, current)
        needed = res.v2_controllers_needed(writes)
        have = self.available_controllers()
        missing = [c for c in needed if c not in have]
        if missing:
            self._enable_controllers(missing)
            have = self.available_controllers()
        for w in writes:
            if w.controller != "cgroup" and w.controller not in have:
                if w.optional:
                    continue
                raise SetupError(
                    f"{w.field}: the {w.controller} controller is not available in cgroup {self.path} "
                    f"(cgroup.controllers: {' '.join(have) or 'none'})")
        self._check_before_update(resources)
        for w in writes:
            perform_write(self.path, w)
        if resources.get("devices") is not None:
            self.set_devices(resources["devices"])

    def _check_before_update(self, resources: dict) -> None:
        mem = resources.get("memory") or {}
        limit = mem.get("limit") or 0
        if mem.get("checkBeforeUpdate") and limit > 0:
            try:
                usage = int(read_file(fspath.join(self.path, "memory.current")))
            except (OSError, ValueError):
                return
            if limit < usage:
                raise SetupError(f"linux.resources.memory.limit: {limit} is below the cgroup's current memory "
                                 f"usage {usage} (checkBeforeUpdate)")

    def set_devices(self, rules: list[dict]) -> None:
        from . import bpf_devices

        prog = bpf_devices.build_program(rules)
        if prog is None:
            return
        try:
            bpf_devices.attach(self.path, prog)
        except OSError as e:
            raise SetupError(f"linux.resources.devices: cannot attach the device BPF program to {self.path}: "
                             f"{e.strerror or e}") from e

    def delegate(self, uid: int, gid: int) -> None:
        """chown the cgroup directory and the files /sys/kernel/cgroup/delegate lists (or the
        spec's fallback list) that exist in it, and nothing else.

        The runtime calls this only when the spec's conditions hold: a new cgroup
        namespace and a read-write `cgroup` mount at /sys/fs/cgroup.
        """
        try:
            names = [n.strip() for n in read_file(DELEGATE_FILE).splitlines() if n.strip()]
        except OSError:
            names = list(DELEGATE_FALLBACK)
        try:
            posix.chown(self.path, uid, gid)
            for n in names:
                try:
                    posix.chown(fspath.join(self.path, n), uid, gid)
                except FileNotFoundError:
                    pass
        except OSError as e:
            raise SetupError(f"cannot change the owner of cgroup {self.path} to {uid}:{gid}: "
                             f"{posix.strerror(e.errno)}") from e

    # --- processes ---------------------------------------------------------------------------

    def add_process(self, pid: int) -> None:
        path = fspath.join(self.path, "cgroup.procs")
        try:
            write_file(path, str(pid))
        except OSError as e:
            raise SetupError(f"cannot add process {pid} to cgroup {self.path}: {posix.strerror(e.errno)}") from e

    def pids(self) -> list[int]:
        if not fspath.isdir(self.path):
            return []
        from .teardown import pids_below

        return pids_below(self.path)

    # --- freezer -----------------------------------------------------------------------------

    def _events(self) -> dict[str, str]:
        try:
            text = read_file(fspath.join(self.path, "cgroup.events"))
        except OSError:
            return {}
        return dict(line.split(None, 1) for line in text.splitlines() if " " in line)

    def _set_freeze(self, value: str) -> None:
        path = fspath.join(self.path, "cgroup.freeze")
        try:
            write_file(path, value)
        except OSError as e:
            action = "freeze" if value == "1" else "thaw"
            raise SetupError(f"cannot {action} cgroup: {path}: {posix.strerror(e.errno)}") from e
        deadline = time.monotonic() + 5
        delay = 0.001
        while self._events().get("frozen", value).strip() != value:
            if time.monotonic() > deadline:
                if value == "1":
                    write_file(path, "0")
                raise SetupError(f"cgroup {self.path} did not reach frozen={value} within 5s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def freeze(self) -> None:
        self._set_freeze("1")

    def thaw(self) -> None:
        self._set_freeze("0")

    def freeze_probe(self) -> list | None:
        return [fspath.join(self.path, "cgroup.freeze"), ["1"]]

    def kill_all(self, sig: int) -> None:
        if sig == SIGKILL and fspath.exists(fspath.join(self.path, "cgroup.kill")):
            try:
                write_file(fspath.join(self.path, "cgroup.kill"), "1")
                return
            except OSError:
                pass
        frozen_here = False
        if fspath.isdir(self.path) and not self.is_frozen():
            try:
                self.freeze()
                frozen_here = True
            except SetupError:
                pass
        try:
            self._signal_pids(sig)
        finally:
            if frozen_here or (sig == SIGKILL and self.is_frozen()):
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

    def stats(self) -> dict:
        from . import stats

        return stats.stats_v2(self.path)

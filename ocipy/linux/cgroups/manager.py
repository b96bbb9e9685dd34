"""The CgroupManager interface, host discovery and cgroupsPath resolution.

Everything here is stdlib-only and cheap to import: `kill --all`, `pause` and the
`delete` of a running container rebuild a manager from the state file and must not
pay for anything else (`state` and the `delete` of a stopped one need no manager:
see state.py's freeze probe and teardown.py).

Path rules (config-linux.md, "Cgroups Path"):
- An absolute `cgroupsPath` is taken relative to each hierarchy's mount point.
- A relative `cgroupsPath` is resolved under the calling process's own cgroup in
  each hierarchy, read from /proc/self/cgroup (that is what runc does; on this
  kind of host the memory controller is not at the root, so the container ends
  up at e.g. /sys/fs/cgroup/memory/process_api/<hash>/<path>).
- No `cgroupsPath`: like runc, the container id as a relative path, i.e.
  `<own cgroup>/<id>` in every hierarchy.
- `..` components cannot climb above the hierarchy root (the path is cleaned as
  if it were absolute first, like runc's CleanPath).
"""

from __future__ import annotations

import posix  # not os (~1 ms): see ocipy/fspath.py
from errno import ENOTDIR

from ocipy import fspath
from ocipy.errors import SetupError
from ocipy.record import TupleRecord

from . import joining
from .joining import UNIFIED  # noqa: F401 - the managers' key too, re-exported

MOUNTINFO = "/proc/self/mountinfo"
SELF_CGROUP = "/proc/self/cgroup"


class Hierarchy(TupleRecord):
    """One mounted cgroup hierarchy.

    mountpoint: where it is mounted in our mount namespace.
    version: 1 or 2.
    controllers: v1: the controllers bound to it (a named hierarchy appears as
      "name=systemd"); v2: the controllers listed in the root's cgroup.controllers.
    root: the path inside the hierarchy that is mounted at mountpoint
      (field 4 of mountinfo; "/" unless we are inside a cgroup namespace or a
      bind mount of a sub-cgroup).
    """

    mountpoint: str
    version: int
    controllers: tuple[str, ...]
    root: str = "/"

    @property
    def fstype(self) -> str:
        return "cgroup2" if self.version == 2 else "cgroup"

    @property
    def mount_data(self) -> str:
        """The data argument to mount(2) for this hierarchy: "cpu,cpuacct", "none,name=systemd", ""."""
        if self.version == 2:
            return ""
        if all(c.startswith("name=") for c in self.controllers):
            return ",".join(("none",) + self.controllers)
        return ",".join(self.controllers)

    @property
    def name(self) -> str:
        """The directory name it has under /sys/fs/cgroup ("memory", "cpu,cpuacct", "unified")."""
        return fspath.basename(self.mountpoint.rstrip("/")) or "cgroup"


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in field:
        return field  # as nearly every field is: no walk through it character by character
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and len(field[i + 1 : i + 4]) == 3:
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str, read_controllers=None) -> list[Hierarchy]:
    """Cgroup hierarchies from /proc/self/mountinfo text, first mount of each wins.

    read_controllers(mountpoint) -> tuple of v2 controllers; None means read
    `<mountpoint>/cgroup.controllers` (pass a function in tests).
    """
    if read_controllers is None:
        read_controllers = _read_v2_controllers
    result: list[Hierarchy] = []
    seen: set = set()
    for line in text.splitlines():
        parts = line.split()
        if " - " not in line or len(parts) < 10:
            continue
        sep = parts.index("-")
        fstype = parts[sep + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        root = _unescape_mountinfo(parts[3])
        mountpoint = _unescape_mountinfo(parts[4])
        super_opts = parts[sep + 3].split(",") if len(parts) > sep + 3 else []
        if fstype == "cgroup2":
            key = "cgroup2"
            if key in seen:
                continue
            seen.add(key)
            result.append(Hierarchy(mountpoint, 2, tuple(read_controllers(mountpoint)), root))
            continue
        controllers = tuple(
            o for o in super_opts
            if o not in ("rw", "ro", "relatime", "noprefix", "clone_children", "xattr", "cpuset_v2_mode",
                         "favordynmods")
            and not o.startswith("release_agent=")
        )
        key = frozenset(controllers)
        if not controllers or key in seen:
            continue
        seen.add(key)
        result.append(Hierarchy(mountpoint, 1, controllers, root))
    return result


def _read_v2_controllers(mountpoint: str) -> tuple[str, ...]:
    try:
        with open(fspath.join(mountpoint, "cgroup.controllers")) as f:
            return tuple(f.read().split())
    except OSError:
        return ()


def host_hierarchies() -> list[Hierarchy]:
    """The cgroup hierarchies mounted in our mount namespace (used to mount `cgroup` in a container)."""
    try:
        with open(MOUNTINFO) as f:
            text = f.read()
    except OSError:
        return []
    return parse_mountinfo(text)


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup text -> {controller: path}; the v2 line (`0::/x`) is keyed UNIFIED.

    A v1 line listing several controllers (`2:cpu,cpuacct:/x`) gives one entry
    for each controller; a named hierarchy keeps its `name=` prefix.
    """
    result: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, ctrls, path = parts
        if hid == "0" and ctrls == "":
            result[UNIFIED] = path
            continue
        for c in ctrls.split(","):
            if c:
                result[c] = path
    return result


def clean_path(path: str) -> str:
    """Normalise a cgroupsPath: no `..` escape, no doubled slashes; keeps absolute vs relative."""
    if path.startswith("/"):
        return fspath.normpath("/" + path.lstrip("/")).replace("//", "/")
    cleaned = fspath.normpath("/" + path)
    return cleaned.lstrip("/")


def hierarchy_dir(h: Hierarchy, inner: str, own: str | None) -> str:
    """The absolute directory of cgroup `inner` (clean; absolute or relative) in hierarchy h.

    own: our own path in that hierarchy from /proc/self/cgroup (for a relative inner).
    Paths in /proc/self/cgroup are relative to the hierarchy's root; the mount
    shows `h.root` at `h.mountpoint`, so strip that prefix.
    """
    if inner.startswith("/"):
        return fspath.normpath(fspath.join(h.mountpoint, inner.lstrip("/")))
    base = own or "/"
    if h.root != "/" and (base == h.root or base.startswith(h.root.rstrip("/") + "/")):
        base = "/" + base[len(h.root):].lstrip("/")
    full = fspath.join(h.mountpoint, base.lstrip("/"), inner)
    return fspath.normpath(full)


def resolve_v1_paths(inner: str, hierarchies: list[Hierarchy], own: dict[str, str]) -> dict[str, str]:
    """{controller: dir} for every v1 controller mounted, plus UNIFIED when a cgroup2 hierarchy is
    mounted beside them (hybrid host)."""
    paths: dict[str, str] = {}
    for h in hierarchies:
        if h.version == 1:
            for c in h.controllers:
                paths[c] = hierarchy_dir(h, inner, own.get(c))
        else:
            paths[UNIFIED] = hierarchy_dir(h, inner, own.get(UNIFIED))
    return paths


def resolve_v2_path(inner: str, hierarchy: Hierarchy, own: dict[str, str]) -> str:
    return hierarchy_dir(hierarchy, inner, own.get(UNIFIED))


def default_cgroups_path(container_id: str) -> str:
    """runc's default when cgroupsPath is unset: the id, relative to our own cgroup."""
    return container_id


# --- small file helpers shared by v1 and v2 -------------------------------------------------

def read_file(path: str) -> str:
    with open(path) as f:
        return f.read()


def write_file(path: str, value: str) -> None:
    """One write(2) of value to a cgroup file (cgroup files want a single write per value)."""
    fd = posix.open(path, posix.O_WRONLY | posix.O_TRUNC | posix.O_CLOEXEC)
    try:
        posix.write(fd, value.encode())
    finally:
        posix.close(fd)


def makedirs_tracked(path: str) -> list[str]:
    """mkdir -p that returns the directories it created itself, outermost first.

    If another container's destroy() removes a shared parent between our checks,
    start over (a few times) instead of failing.
    """
    created: list[str] = []
    for attempt in range(5):
        missing = []
        p = path
        while not fspath.isdir(p):
            missing.append(p)
            parent = fspath.dirname(p)
            if parent == p:
                break
            p = parent
        try:
            for d in reversed(missing):
                try:
                    posix.mkdir(d, 0o755)
                    created.append(d)
                except FileExistsError:
                    if not fspath.isdir(d):  # a file of that name (cgroupsPath "cgroup.procs")
                        raise NotADirectoryError(ENOTDIR, posix.strerror(ENOTDIR), d) from None
            return created
        except FileNotFoundError:
            if attempt == 4:
                raise
    return created


def perform_write(directory: str, w) -> None:
    """Carry out one resources.Write in `directory`: fallback, optional, write, verify."""
    path = fspath.join(directory, w.filename)
    tried = [w.filename]
    if w.fallback is not None and not fspath.exists(path):
        w = w.fallback
        path = fspath.join(directory, w.filename)
        tried.append(w.filename)
    if w.optional and not fspath.exists(path):
        return
    try:
        write_file(path, w.value)
    except FileNotFoundError as e:
        if not fspath.isdir(directory):
            raise write_error(w.field, w.value, path, e) from e
        raise SetupError(f"{w.field}: this host's {w.controller} cgroup has no {' or '.join(tried)}: "
                         f"the kernel offers no such setting in this cgroup (cannot write {w.value.strip()} "
                         f"in {directory})") from e
    except OSError as e:
        raise write_error(w.field, w.value, path, e) from e
    if w.verify:
        try:
            got = read_file(path).strip()
        except OSError as e:
            raise write_error(w.field, w.value, path, e) from e
        if got != w.value.strip():
            raise SetupError(f"{w.field}: wrote {w.value.strip()} to {path} but the kernel applied {got} "
                             "(ignored, or rounded to its granularity)")


def write_error(field: str, value: str, path: str, err: OSError) -> SetupError:
    """The SetupError for a value the host refused, naming the JSON field and the file."""
    reason = posix.strerror(err.errno) if err.errno else str(err)
    shown = value.strip().replace("\n", "\\n")
    return SetupError(f"{field}: cannot write {shown} to {path}: {reason}")


# --- the interface --------------------------------------------------------------------------

class CgroupManager:
    """A container's cgroup, in every hierarchy the host mounts.

    `paths` maps each controller (v1) or UNIFIED (v2 / hybrid) to an absolute dir.
    `created` lists the directories create() made itself; destroy() removes only
    those, deepest first, and only when empty.
    """

    version = 0
    driver = "disabled"

    def __init__(self, container_id: str, cgroups_path: str | None):
        self.container_id = container_id
        self.cgroups_path = cgroups_path
        self.paths: dict[str, str] = {}
        self.created: list[str] = []

    # lifecycle
    def create(self) -> None:
        raise NotImplementedError

    def apply(self, resources: dict | None) -> None:
        raise NotImplementedError

    def update(self, resources: dict) -> None:
        """Change limits on a live container; a 0 (or "") leaves that setting as it is."""
        self.apply(resources)

    def add_process(self, pid: int) -> None:
        raise NotImplementedError

    def v2_dir(self) -> str | None:
        """The container's directory in a cgroup2 hierarchy (a v2 host's cgroup, a hybrid host's
        unified twin), where a process can be born (syscalls.fork_into_cgroup); None without one."""
        return self.paths.get(UNIFIED)

    def enter(self, *, skip_v2: bool = False) -> None:
        """Move the calling process, which must have a single thread, into every hierarchy of
        the container's cgroup; `skip_v2`: not v2_dir() (see joining.enter).

        Unlike add_process, this avoids the kernel's global migration lock where it can (a
        wait of up to ~20 ms, see syscalls.fork_into_cgroup): a v1 hierarchy by moving the
        one thread through `tasks`, which the kernel does without that lock (joining.enter)."""
        joining.enter(self.paths, skip_v2=skip_v2)

    def pids(self) -> list[int]:
        raise NotImplementedError

    def freeze(self) -> None:
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def freeze_probe(self) -> list | None:
        """[file, [contents meaning frozen]]: how to tell from one read that the cgroup is frozen
        (or is being frozen); None when there is no freezer. Recorded in the container's state,
        so that `state` and `list` tell a paused container without importing the managers."""
        raise NotImplementedError

    def is_frozen(self) -> bool:
        probe = self.freeze_probe()
        if probe is None:
            return False
        try:
            return read_file(probe[0]).strip() in probe[1]
        except OSError:
            return False

    def kill_all(self, sig: int) -> None:
        raise NotImplementedError

    def destroy(self) -> None:
        raise NotImplementedError

    def stats(self) -> dict:
        raise NotImplementedError

    def exists(self) -> bool:
        return any(fspath.isdir(p) for p in self.paths.values())

    def check_fit_for_create(self) -> None:
        """The spec's optional fitness check: refuse a frozen or non-empty cgroup at create."""
        if self.is_frozen():
            raise SetupError(f"container's cgroup is unexpectedly frozen: {self._where()}")
        pids = self.pids()
        if pids:
            raise SetupError(f"container's cgroup is not empty: {len(pids)} process(es) found in {self._where()}")

    def delegate(self, uid: int, gid: int) -> None:
        """Give the container's user its cgroup (spec "Cgroup ownership"). No-op here: the
        spec says not to on v1, and a disabled manager has nothing; V2Manager does it."""

    def _where(self) -> str:
        dirs = sorted(set(self.paths.values()))
        return dirs[0] if len(dirs) == 1 else (self.cgroups_path or "")

    def to_state(self) -> dict:
        return {
            "version": self.version,
            "driver": self.driver,
            "container_id": self.container_id,
            "cgroups_path": self.cgroups_path,
            "paths": dict(self.paths),
            "created": list(self.created),
            "freeze_probe": self.freeze_probe(),
        }

    def _restore(self, data: dict) -> None:
        self.paths = dict(data.get("paths") or {})
        self.created = list(data.get("created") or [])

    def _signal_pids(self, sig: int) -> None:
        for pid in self.pids():
            try:
                posix.kill(pid, sig)
            except ProcessLookupError:
                pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.container_id} {self.paths}>"


class DisabledManager(CgroupManager):
    """driver "disabled": every operation is a no-op."""

    version = 0
    driver = "disabled"

    def create(self) -> None:
        pass

    def apply(self, resources: dict | None) -> None:
        pass

    def update(self, resources: dict) -> None:
        pass

    def add_process(self, pid: int) -> None:
        pass

    def enter(self, *, skip_v2: bool = False) -> None:
        pass

    def pids(self) -> list[int]:
        return []

    def freeze(self) -> None:
        pass

    def thaw(self) -> None:
        pass

    def freeze_probe(self) -> list | None:
        return None

    def kill_all(self, sig: int) -> None:
        pass

    def destroy(self) -> None:
        pass

    def stats(self) -> dict:
        return {}

    def exists(self) -> bool:
        return False

"""The container's filesystem: mounts, /dev, pivot_root, masked and read-only paths.

Called by the container's pid 1 (ocipy/init.py), in this order, inside its new
mount namespace:

    prepare(spec, rootfs, ...)      propagation of "/", rootfs bind, spec.mounts, /dev
    bind_console(rootfs, slave_fd)  only with process.terminal
    pivot(rootfs)                   pivot_root (or MS_MOVE + chroot with no_pivot)
    finish(spec)                    maskedPaths, readonlyPaths, root.readonly, propagation

`plan(spec, rootfs)` is the pure part: the ordered list of steps prepare() executes.

Every destination is resolved inside the rootfs (paths.py, openat2 RESOLVE_IN_ROOT)
and the mount goes onto /proc/self/fd/N of the resolved O_PATH fd, so a symlink in
the image, or one swapped in while we work, cannot point a mount at the host
(CVE-2021-30465 and friends).
"""

from __future__ import annotations

import errno
import posix
import stat

from ocipy import fspath
from ocipy.errors import SetupError
from ocipy.linux import devices, mountopts, paths
from ocipy.linux import syscalls as sc
from ocipy.linux.mountopts import MountOptions, parse_mount_options
from ocipy.record import Record, factory

PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572
TMPFS_MAGIC = 0x01021994
CGROUP2_SUPER_MAGIC = 0x63677270
CGROUP_SUPER_MAGIC = 0x27E0EB

# destinations under /proc that may be covered (lxcfs and friends), as runc allows
PROC_MOUNT_ALLOWLIST = (
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/pressure",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
)

_FS_WITHOUT_LABEL = ("bind", "proc", "sysfs", "cgroup", "cgroup2", "none")


# --- steps -------------------------------------------------------------------------------
class SetRootPropagation(Record):
    flags: int


class BindRootfs(Record):
    rootfs: str


class IdmapSpec(Record, frozen=True):
    recursive: bool  # "ridmap": every submount of an rbind gets the mapping too
    uid_mappings: tuple  # ((container_id, host_id, size), ...)
    gid_mappings: tuple


class MountStep(Record):
    index: int
    destination: str  # cleaned, absolute, as seen in the container
    source: str | None
    fstype: str | None
    opts: MountOptions
    kind: str  # "bind", "proc", "sysfs", "cgroup", "fs"
    data: str = ""  # opts.data plus the SELinux context when there is one
    readonly_later: bool = False  # /dev tmpfs: mounted rw, made ro after the devices exist
    idmap: IdmapSpec | None = None  # idmapped bind mount

    @property
    def flags(self) -> int:
        return self.opts.flags


class RemountReadonly(Record):
    destination: str


class MakeDevice(Record):
    node: devices.DeviceNode


class MakeSymlink(Record):
    link: devices.DevSymlink


def _get(obj, name, default=None):
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def propagation_flags(name: str | None) -> int:
    """rootfsPropagation -> MS_* (default MS_SLAVE|MS_REC, as runc)."""
    if not name:
        return sc.MS_SLAVE | sc.MS_REC
    try:
        return mountopts.PROPAGATION_OPTIONS[name]
    except KeyError:
        raise ValueError(f"linux.rootfsPropagation: unknown propagation {name!r}") from None


def check_proc_destination(dest: str, kind: str) -> None:
    """runc's rule: /proc itself takes only a proc mount; below /proc only the
    allow-listed files (lxcfs) may be covered."""
    if dest == "/proc":
        if kind != "proc":
            raise ValueError(f"{dest} cannot be mounted because it is not of type proc")
        return
    if dest.startswith("/proc/"):
        if dest in PROC_MOUNT_ALLOWLIST or any(dest.startswith(p + "/") for p in PROC_MOUNT_ALLOWLIST):
            return
        raise ValueError(f"{dest} cannot be mounted because it is inside /proc")


def _dev_is_bind(mounts) -> bool:
    for m in mounts or ():
        if paths.clean(_get(m, "destination") or "") == "/dev":
            opts = parse_mount_options(_get(m, "options") or [])
            if opts.is_bind or _get(m, "type") == "bind":
                return True
    return False


def infer_bundle(spec, rootfs: str) -> str:
    """Relative bind sources are relative to the bundle. When the caller does not say
    where the bundle is: a relative root.path was joined to the bundle to give `rootfs`,
    so strip it again; otherwise fall back to the current directory (runc chdirs into
    the bundle)."""
    rel = _get(_get(spec, "root"), "path")
    if rel and not fspath.isabs(rel):
        full, rel = fspath.normpath(rootfs), fspath.normpath(rel)
        if rel != "." and full.endswith("/" + rel):
            return full[: -len(rel) - 1] or "/"
    return posix.getcwd()


def _triples(mappings) -> tuple:
    out = []
    for mp in mappings or ():
        if isinstance(mp, dict):
            out.append((int(mp["containerID"]), int(mp["hostID"]), int(mp["size"])))
        else:
            out.append((int(mp.container_id), int(mp.host_id), int(mp.size)))
    return tuple(out)


def _idmap_spec(i: int, dest: str, kind: str, opts: MountOptions, m, linux) -> IdmapSpec:
    """config.md: the mount's own uidMappings/gidMappings win; without them the
    container's user namespace mappings are used; with neither it is an error."""
    if kind != "bind":
        raise ValueError(f"mount {i} ({dest}): idmapped mounts are only supported for bind mounts")
    uids, gids = _triples(_get(m, "uid_mappings")), _triples(_get(m, "gid_mappings"))
    if bool(uids) != bool(gids):
        raise ValueError(f"mount {i} ({dest}): uidMappings and gidMappings must be given together")
    if not uids:
        uids, gids = _triples(_get(linux, "uid_mappings")), _triples(_get(linux, "gid_mappings"))
        if not uids or not gids:
            raise ValueError(f"mount {i} ({dest}): idmap needs uidMappings/gidMappings on the mount or a user namespace with mappings")
    return IdmapSpec(opts.idmap == "ridmap", uids, gids)


def plan(spec, rootfs: str, *, in_userns: bool = False, mount_label: str | None = None, bundle: str | None = None) -> list:
    """Ordered steps of prepare(). Pure: reads neither the disk nor the kernel
    (a relative bind source is made absolute against `bundle`, default the cwd)."""
    linux = _get(spec, "linux")
    root_prop = propagation_flags(_get(linux, "rootfs_propagation"))
    if root_prop & sc.MS_UNBINDABLE:
        # an unbindable "/" could not be bind-mounted onto itself: stay rslave until
        # finish() applies "unbindable" to the new root
        root_prop = sc.MS_SLAVE | sc.MS_REC
    steps: list = [SetRootPropagation(root_prop), BindRootfs(rootfs)]
    mounts = _get(spec, "mounts") or []
    devpts = False
    dev_ro = None
    for i, m in enumerate(mounts):
        dest_raw = _get(m, "destination")
        if not dest_raw:
            raise ValueError(f"mount {i}: no destination")
        dest = paths.clean(dest_raw)  # relative destinations are relative to "/"
        fstype = _get(m, "type")
        source = _get(m, "source")
        opts = parse_mount_options(_get(m, "options") or [])
        if fstype == "bind" and not opts.is_bind:
            opts.flags |= sc.MS_BIND
        if opts.is_bind:
            kind = "bind"
            if not source:
                raise ValueError(f"mount {i} ({dest}): a bind mount needs a source")
            if not fspath.isabs(source):
                source = fspath.join(bundle or posix.getcwd(), source)
            source = fspath.normpath(source)
        elif fstype == "proc":
            kind = "proc"
        elif fstype == "sysfs":
            kind = "sysfs"
        elif fstype == "cgroup":
            kind = "cgroup"
        elif not fstype:
            raise ValueError(f"mount {i} ({dest}): no type and not a bind mount")
        else:
            kind = "fs"
        try:
            check_proc_destination(dest, kind)
        except ValueError as e:
            raise ValueError(f"mount {i} ({dest}): {e}") from None
        idmap = None
        if opts.idmap or _get(m, "uid_mappings") or _get(m, "gid_mappings"):
            idmap = _idmap_spec(i, dest, kind, opts, m, linux)
        data = opts.data
        if mount_label and kind == "fs" and fstype not in _FS_WITHOUT_LABEL:
            ctx = f'context="{mount_label}"'
            data = f"{data},{ctx}" if data else ctx
        step = MountStep(i, dest, source, fstype, opts, kind, data, idmap=idmap)
        if dest == "/dev" and kind == "fs" and opts.flags & sc.MS_RDONLY:
            step.readonly_later = True
            dev_ro = dest
        if dest == "/dev/pts" and fstype == "devpts":
            devpts = True
        steps.append(step)
    if not _dev_is_bind(mounts):
        for node in devices.plan_devices(linux, in_userns=in_userns):
            steps.append(MakeDevice(node))
        for link in devices.plan_symlinks(devpts=devpts):
            steps.append(MakeSymlink(link))
    if dev_ro:
        steps.append(RemountReadonly(dev_ro))
    return steps


# --- cgroup mounts ------------------------------------------------------------------------
class CgroupSub(Record):
    name: str  # directory under the cgroup mount's destination
    fstype: str  # "cgroup" or "cgroup2"
    data: str  # for a fresh mount
    host_dir: str | None  # for a bind (and the fallback when a fresh mount is refused)
    symlinks: list[str] = factory(list)  # co-mounted controllers: cpu -> cpu,cpuacct
    fresh: bool = False  # a new cgroup mount (own cgroup namespace) rather than a bind


def cgroup_v1_layout(cgroup_paths: dict[str, str], *, new_cgroupns: bool) -> list[CgroupSub]:
    """Pure: one entry per hierarchy key of `cgroup_paths` (controller list as the host
    names its mount, "systemd"/"name=X" for named ones, "unified" for the v2 one)."""
    out = []
    for key in sorted(cgroup_paths):
        host_dir = cgroup_paths[key]
        if key in ("unified", ""):
            out.append(CgroupSub("unified", "cgroup2", "", host_dir, fresh=new_cgroupns))
            continue
        if key.startswith("name="):
            name = key[len("name="):]
            data = key
        elif key == "systemd":
            name, data = "systemd", "name=systemd"
        else:
            name, data = key, key
        links = [c for c in key.split(",") if c != key and not c.startswith("name=")] if "," in key else []
        out.append(CgroupSub(name, "cgroup", data, host_dir, links, fresh=new_cgroupns))
    return out


def _read_mountinfo(path: str = "/proc/self/mountinfo") -> list[dict]:
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            out.append(
                {
                    "id": int(parts[0]),
                    "parent": int(parts[1]),
                    "root": _unescape(parts[3]),
                    "mountpoint": _unescape(parts[4]),
                    "options": parts[5],
                    "optional": parts[6:sep],
                    "fstype": parts[sep + 1],
                    "source": parts[sep + 2],
                    "super": parts[sep + 3] if len(parts) > sep + 3 else "",
                }
            )
    return out


def _unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


_CGROUP_V1_NON_CONTROLLERS = ("rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods", "nsdelegate")


def _host_cgroup_layout(mounts: list[dict] | None = None) -> tuple[bool, dict[str, str]]:
    """(is_pure_v2, {hierarchy key: host dir of our own cgroup}) from this process's
    /proc/self/cgroup and mountinfo, for when the caller passes no cgroup_paths."""
    mounts = _read_mountinfo() if mounts is None else mounts
    own: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            own[ctrls] = path
    v2_root = [m for m in mounts if m["mountpoint"] == "/sys/fs/cgroup" and m["fstype"] == "cgroup2"]
    if v2_root:
        return True, {"": fspath.join("/sys/fs/cgroup", own.get("", "/").lstrip("/"))}
    out: dict[str, str] = {}
    for m in mounts:
        if not m["mountpoint"].startswith("/sys/fs/cgroup/"):
            continue
        if m["fstype"] == "cgroup2":
            out["unified"] = fspath.join(m["mountpoint"], own.get("", "/").lstrip("/"))
        elif m["fstype"] == "cgroup":
            ctrls = [o for o in m["super"].split(",") if o not in _CGROUP_V1_NON_CONTROLLERS and ("=" not in o or o.startswith("name="))]
            for own_key, path in own.items():
                if own_key and set(own_key.split(",")) == set(ctrls):
                    out[",".join(ctrls)] = fspath.join(m["mountpoint"], path.lstrip("/"))
    return False, out


def _cgroup_mount_keys(mounts: list[dict]) -> list[tuple[str, str]]:
    """(mountpoint, hierarchy key) of each cgroup hierarchy the host mounts; the key is
    the controller list of the mount ("cpu,cpuacct", "name=systemd") or "unified"."""
    out = []
    for m in mounts:
        if m["fstype"] == "cgroup2":
            out.append((m["mountpoint"], "unified"))
        elif m["fstype"] == "cgroup":
            ctrls = [o for o in m["super"].split(",") if o not in _CGROUP_V1_NON_CONTROLLERS and ("=" not in o or o.startswith("name="))]
            out.append((m["mountpoint"], ",".join(ctrls)))
    return out


def normalize_cgroup_paths(cgroup_paths: dict[str, str], mounts: list[dict]) -> dict[str, str]:
    """The caller names hierarchies by single controller ({"cpu": d, "cpuacct": d}); a
    co-mounted hierarchy must be mounted once, under its full controller list. Group
    the entries by the host cgroup mount that holds each directory."""
    hier = sorted(_cgroup_mount_keys(mounts), key=lambda t: -len(t[0]))
    out: dict[str, str] = {}
    for key, d in cgroup_paths.items():
        for mp, hkey in hier:
            if d == mp or d.startswith(mp.rstrip("/") + "/"):
                out[hkey] = d
                break
        else:
            out[key] = d
    return out


def _is_pure_v2(mounts: list[dict] | None = None) -> bool:
    """True when the host mounts only cgroup2 on /sys/fs/cgroup (the top mount wins)."""
    fstype = None
    for m in _read_mountinfo() if mounts is None else mounts:
        if m["mountpoint"] == "/sys/fs/cgroup":
            fstype = m["fstype"]
    return fstype == "cgroup2"


# --- idmapped mounts (the new mount API calls are in syscalls.py) ---------------------------
def _userns_with_mappings(uids: tuple, gids: tuple) -> int:
    """An fd of a fresh user namespace carrying the given mappings: a child process
    unshares it and waits while we write its maps, then we keep only the fd."""
    ready_r, ready_w = posix.pipe()
    go_r, go_w = posix.pipe()
    pid = posix.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            posix.close(ready_r)
            posix.close(go_w)
            sc.unshare(sc.CLONE_NEWUSER)
            # our pid as the mounted /proc numbers it (we may be in a new pid namespace
            # while /proc is still the host's)
            posix.write(ready_w, posix.readlink("/proc/self").encode())
            posix.read(go_r, 1)
            code = 0
        finally:
            posix._exit(code)
    posix.close(ready_w)
    posix.close(go_r)
    try:
        proc_pid = posix.read(ready_r, 32).decode()
        if not proc_pid.isdigit():
            raise OSError(errno.ECHILD, "the helper process for the id mapping died")
        for name, maps in (("uid_map", uids), ("gid_map", gids)):
            text = "".join(f"{c} {h} {n}\n" for c, h, n in maps)
            with open(f"/proc/{proc_pid}/{name}", "w") as f:
                f.write(text)
        return posix.open(f"/proc/{proc_pid}/ns/user", posix.O_RDONLY | posix.O_CLOEXEC)
    finally:
        posix.close(ready_r)
        posix.close(go_w)
        posix.waitpid(pid, 0)


# --- execution ---------------------------------------------------------------------------
def _selinux_enabled() -> bool:
    return fspath.exists("/sys/fs/selinux/enforce")


def _parent_mount(path: str, mounts: list[dict]) -> dict | None:
    best = None
    for m in mounts:
        mp = m["mountpoint"]
        if path == mp or path.startswith(mp.rstrip("/") + "/"):
            if best is None or len(mp) >= len(best["mountpoint"]):
                best = m
    return best


def _make_parent_unshared(real_rootfs: str) -> None:
    """pivot_root refuses a new root whose parent mount is shared. Make that parent a
    slave rather than private: the rootfs bound below it then stays a slave of the
    host's mount (what rootfsPropagation "slave" asks for), and nothing mounted in the
    container can propagate back through it. `real_rootfs`: the rootfs, symlinks resolved."""
    parent = _parent_mount(real_rootfs, _read_mountinfo())
    if parent and any(o.startswith("shared:") for o in parent["optional"]):
        sc.mount(None, parent["mountpoint"], None, sc.MS_SLAVE)


def _unshare_rootfs_mount(rootfs: str, real_rootfs: str, mounts: list[dict]) -> None:
    """pivot_root(".", ".") refuses a shared new root: make the rootfs bind private
    when (and only when) it is shared, so that with rootfsPropagation "slave" (and the
    rslave default) the new root stays a slave of the host's mount. `mounts`: mountinfo
    read after the bind."""
    top = None
    for m in mounts:
        if m["mountpoint"] == real_rootfs:
            top = m
    if top is None or any(o.startswith("shared:") for o in top["optional"]):
        sc.mount(None, rootfs, None, sc.MS_PRIVATE)


def _remount_bind(fd: int, opts: MountOptions, what: str, extra: int = 0) -> None:
    """Apply the per-mount flags of a bind mount: mount(2) ignores them on MS_BIND, a
    MS_REMOUNT|MS_BIND does it. If the kernel refuses (a user namespace locks the
    flags of mounts it did not create), retry keeping the locked flags that are set."""
    wanted = (opts.flags | extra) & mountopts.BIND_REMOUNT_MASK
    target = paths.proc_fd_path(fd)
    try:
        sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | wanted)
    except OSError as e:
        if e.errno != errno.EPERM:
            raise
        current = posix.statvfs(target).f_flag
        flags = mountopts.remount_flags(wanted, opts.clear_flags, current)
        sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_BIND | flags)


def _needs_remount(opts: MountOptions) -> bool:
    return bool(opts.flags & mountopts.BIND_REMOUNT_MASK)


def _apply_after(fd: int, opts: MountOptions) -> None:
    target = paths.proc_fd_path(fd)
    for p in opts.propagation:
        sc.mount(None, target, None, p)
    if opts.has_rec_attrs:
        sc.mount_setattr(fd, opts.rec_attr_set, opts.rec_attr_clr, recursive=True)


def _reopen(root_fd: int, dest: str, before: int) -> int:
    """Re-resolve `dest` after a mount landed on it: the new fd is the root of the
    new mount (the old one still points at the covered directory)."""
    fd = paths.open_in_root(root_fd, dest)
    old_mnt, new_mnt = paths.mnt_id(before), paths.mnt_id(fd)
    if old_mnt is not None and old_mnt == new_mnt:
        posix.close(fd)
        raise OSError(errno.EXDEV, f"{dest} changed while it was being mounted")
    return fd


def _check_fs_type(root_fd: int, fd: int, dest: str) -> None:
    """Below /proc and /sys, once procfs / sysfs is mounted there, the resolved destination
    must live on it (or on a filesystem mounted below it, like the cgroup tmpfs): anything
    else means the path was redirected somewhere it should not go."""
    for top, magic, allowed in (
        ("/proc", PROC_SUPER_MAGIC, (PROC_SUPER_MAGIC,)),
        ("/sys", SYSFS_MAGIC, (SYSFS_MAGIC, TMPFS_MAGIC, CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC)),
    ):
        if not dest.startswith(top + "/"):
            continue
        try:
            tfd = paths.open_in_root(root_fd, top)
        except OSError:
            return
        try:
            mounted = sc.fstatfs_type(tfd) == magic
        finally:
            posix.close(tfd)
        if mounted and sc.fstatfs_type(fd) not in allowed:
            raise OSError(errno.EXDEV, f"{dest} does not resolve to a file on the {top} filesystem")


def _open_dir_dest(root_fd: int, step: MountStep) -> int:
    fd = paths.mkdir_all_in_root(root_fd, step.destination)
    if step.kind in ("proc", "sysfs"):
        # never mount proc or sysfs through a symlink (runc refuses this too)
        try:
            lfd = paths.open_in_root(root_fd, step.destination, nofollow=True)
        except OSError:
            posix.close(fd)
            raise
        st = posix.fstat(lfd)
        posix.close(lfd)
        if not stat.S_ISDIR(st.st_mode):
            posix.close(fd)
            raise OSError(errno.ENOTDIR, f"{step.destination} is a symlink or not a directory")
    if step.destination.startswith(("/proc/", "/sys/")):
        try:
            _check_fs_type(root_fd, fd, step.destination)
        except OSError:
            posix.close(fd)
            raise
    return fd


def _do_bind(root_fd: int, step: MountStep, source: str | None = None) -> None:
    src = source or step.source
    st = posix.stat(src)
    if stat.S_ISDIR(st.st_mode):
        fd = _open_dir_dest(root_fd, step)
    else:
        fd = paths.create_file_in_root(root_fd, step.destination)
        if step.destination.startswith(("/proc/", "/sys/")):
            try:
                _check_fs_type(root_fd, fd, step.destination)
            except OSError:
                posix.close(fd)
                raise
    try:
        if step.idmap is not None:
            _attach_idmapped(src, fd, step)
        else:
            sc.mount(src, paths.proc_fd_path(fd), None, sc.MS_BIND | (step.opts.flags & sc.MS_REC))
        nfd = _reopen(root_fd, step.destination, fd)
    finally:
        posix.close(fd)
    try:
        if _needs_remount(step.opts):
            _remount_bind(nfd, step.opts, step.destination)
        _apply_after(nfd, step.opts)
    finally:
        posix.close(nfd)


def _attach_idmapped(src: str, target_fd: int, step: MountStep) -> None:
    """Clone the source tree detached (open_tree), give it the id mapping
    (mount_setattr MOUNT_ATTR_IDMAP with a user namespace carrying the mapping), then
    attach it onto the resolved destination fd itself (move_mount)."""
    userns = _userns_with_mappings(step.idmap.uid_mappings, step.idmap.gid_mappings)
    try:
        tree = sc.open_tree(src, recursive=bool(step.opts.flags & sc.MS_REC))
        try:
            sc.mount_setattr(tree, mountopts.MOUNT_ATTR_IDMAP, 0, recursive=step.idmap.recursive, userns_fd=userns, what="mount_setattr(MOUNT_ATTR_IDMAP)")
            sc.move_mount_to_fd(tree, target_fd)
        finally:
            posix.close(tree)
    finally:
        posix.close(userns)


def _do_fs(root_fd: int, step: MountStep, fstype: str | None = None, source: str | None = None, flags: int | None = None,
           data: str | None = None, keep: bool = False) -> int | None:
    """Mount a filesystem on step.destination; with `keep`, return an O_PATH fd of its root
    (the caller closes it)."""
    fd = _open_dir_dest(root_fd, step)
    fl = step.opts.flags if flags is None else flags
    if step.readonly_later:
        fl &= ~sc.MS_RDONLY
    copyup = "tmpcopyup" in step.opts.extensions and (fstype or step.fstype) == "tmpfs"
    below = None
    try:
        if copyup:
            # a handle on the directory about to be covered, to copy it into the tmpfs
            below = posix.open(".", posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC, dir_fd=fd)
            if fl & sc.MS_RDONLY:
                fl &= ~sc.MS_RDONLY  # filled first, made read-only after
        sc.mount(source if source is not None else (step.source or "none"), paths.proc_fd_path(fd), fstype or step.fstype, fl, (step.data if data is None else data) or None)
        nfd = _reopen(root_fd, step.destination, fd)
    except BaseException:
        if below is not None:
            posix.close(below)
        raise
    finally:
        posix.close(fd)
    try:
        if copyup:
            top = posix.open(".", posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC, dir_fd=nfd)
            try:
                copy_tree(below, top)
            finally:
                posix.close(top)
            if step.opts.flags & sc.MS_RDONLY:
                sc.mount(None, paths.proc_fd_path(nfd), None, sc.MS_REMOUNT | (fl & ~sc.MS_REMOUNT) | sc.MS_RDONLY, (step.data if data is None else data) or None)
        _apply_after(nfd, step.opts)
    except BaseException:
        posix.close(nfd)
        raise
    finally:
        if below is not None:
            posix.close(below)
    if keep:
        return nfd
    posix.close(nfd)
    return None


def copy_tree(src_fd: int, dst_fd: int) -> None:
    """Copy the directory `src_fd` into `dst_fd` (tmpcopyup): files, directories,
    symlinks (as links, never followed), fifos and device nodes, with owner and mode.
    Everything is opened relative to the two fds with O_NOFOLLOW."""
    st = posix.fstat(src_fd)
    _own(dst_fd, None, st)
    for entry in posix.scandir(src_fd):
        name = entry.name
        est = posix.stat(name, dir_fd=src_fd, follow_symlinks=False)
        mode = stat.S_IMODE(est.st_mode)
        if stat.S_ISDIR(est.st_mode):
            posix.mkdir(name, 0o700, dir_fd=dst_fd)
            s_fd = posix.open(name, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=src_fd)
            d_fd = posix.open(name, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=dst_fd)
            try:
                copy_tree(s_fd, d_fd)
            finally:
                posix.close(s_fd)
                posix.close(d_fd)
        elif stat.S_ISREG(est.st_mode):
            s_fd = posix.open(name, posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=src_fd)
            d_fd = posix.open(name, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW | posix.O_CLOEXEC, 0o600, dir_fd=dst_fd)
            try:
                while True:
                    chunk = memoryview(posix.read(s_fd, 1 << 20))
                    if not chunk:
                        break
                    while chunk:
                        chunk = chunk[posix.write(d_fd, chunk):]
                _own(d_fd, None, est)
            finally:
                posix.close(s_fd)
                posix.close(d_fd)
        elif stat.S_ISLNK(est.st_mode):
            posix.symlink(posix.readlink(name, dir_fd=src_fd), name, dir_fd=dst_fd)
            try:
                posix.chown(name, est.st_uid, est.st_gid, dir_fd=dst_fd, follow_symlinks=False)
            except OSError:
                pass
        else:
            try:
                posix.mknod(name, stat.S_IFMT(est.st_mode) | mode, est.st_rdev, dir_fd=dst_fd)
            except PermissionError:
                continue  # device nodes cannot be made in a user namespace
            n_fd = posix.open(name, sc.O_PATH | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=dst_fd)
            try:
                _own(None, paths.proc_fd_path(n_fd), est)
            finally:
                posix.close(n_fd)


def _own(fd: int | None, path: str | None, st: posix.stat_result) -> None:
    try:
        if fd is not None:
            posix.fchown(fd, st.st_uid, st.st_gid)
        else:
            posix.chown(path, st.st_uid, st.st_gid)
    except OSError:
        pass  # an id the user namespace does not map: keep ours
    if fd is not None:
        posix.fchmod(fd, stat.S_IMODE(st.st_mode))
    else:
        posix.chmod(path, stat.S_IMODE(st.st_mode))


def _do_sysfs(root_fd: int, step: MountStep, *, in_userns: bool, new_netns: bool) -> None:
    try:
        _do_fs(root_fd, step)
    except OSError as e:
        if e.errno != errno.EPERM or not in_userns or new_netns:
            raise
        # sysfs cannot be mounted from a user namespace that does not own the network
        # namespace: bind the host's /sys instead, read-only, as runc does
        opts = MountOptions(
            flags=step.opts.flags | sc.MS_BIND | sc.MS_REC | sc.MS_RDONLY,
            clear_flags=step.opts.clear_flags,
            propagation=step.opts.propagation,
        )
        _do_bind(root_fd, MountStep(step.index, step.destination, "/sys", None, opts, "bind"), "/sys")


def _do_devpts_userns(root_fd: int, step: MountStep) -> None:
    """In a user namespace, a `gid=` the namespace does not map makes devpts fail with
    EINVAL (runc's default config has gid=5): retry without it, as crun does."""
    try:
        _do_fs(root_fd, step)
    except OSError as e:
        opts = step.data.split(",") if step.data else []
        if e.errno != errno.EINVAL or not any(o.startswith("gid=") for o in opts):
            raise
        _do_fs(root_fd, step, data=",".join(o for o in opts if not o.startswith("gid=")))


def _do_cgroup(root_fd: int, step: MountStep, *, new_cgroupns: bool, cgroup_paths: dict[str, str] | None, in_userns: bool,
               host_mounts: list[dict]) -> None:
    """`host_mounts`: mountinfo read once the rootfs was bound (the host's cgroup mounts
    are what it is read for; nothing mounted in the rootfs since is one of them)."""
    pure_v2 = _is_pure_v2(host_mounts)
    if cgroup_paths is None:
        pure_v2, cgroup_paths = _host_cgroup_layout(host_mounts)
    elif not pure_v2:
        cgroup_paths = normalize_cgroup_paths(cgroup_paths, host_mounts)
    flags = step.opts.flags
    if pure_v2:
        host_dir = cgroup_paths.get("") or cgroup_paths.get("unified") or "/sys/fs/cgroup"
        if new_cgroupns:
            try:
                _do_fs(root_fd, step, fstype="cgroup2", source="cgroup2", data="")
                return
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EBUSY):
                    raise
        opts = MountOptions(flags=flags | sc.MS_BIND | sc.MS_REC, clear_flags=step.opts.clear_flags, propagation=step.opts.propagation)
        _do_bind(root_fd, MountStep(step.index, step.destination, host_dir, None, opts, "bind"), host_dir)
        return
    # v1 / hybrid: a tmpfs holding one directory per hierarchy
    tmpfs_flags = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    tstep = MountStep(step.index, step.destination, "tmpfs", "tmpfs", MountOptions(flags=tmpfs_flags, propagation=step.opts.propagation), "fs", "mode=755")
    tmpfs_fd = _do_fs(root_fd, tstep, keep=True)
    try:
        sopts = MountOptions(flags=flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT), clear_flags=step.opts.clear_flags, propagation=list(step.opts.propagation))
        for sub in cgroup_v1_layout(cgroup_paths, new_cgroupns=new_cgroupns):
            _mount_hierarchy(tmpfs_fd, sub, sopts)
            for link in sub.symlinks:
                try:
                    posix.symlink(sub.name, link, dir_fd=tmpfs_fd)
                except FileExistsError:
                    pass
        if flags & sc.MS_RDONLY:
            sc.mount(None, paths.proc_fd_path(tmpfs_fd), None, sc.MS_REMOUNT | sc.MS_BIND | tmpfs_flags | sc.MS_RDONLY)
    finally:
        posix.close(tmpfs_fd)


def _mount_hierarchy(tmpfs_fd: int, sub: CgroupSub, opts: MountOptions) -> None:
    """One hierarchy's directory in the cgroup tmpfs just mounted at `tmpfs_fd`, with a fresh
    mount of the hierarchy on it or, without one (no cgroup namespace of its own, or a user
    namespace that may not mount it), a bind of the container's cgroup. The tmpfs is ours and
    new: nothing in it comes from the image, so its directories are made and opened in its
    root (a directory, never through a symlink), not resolved again from the container's root
    as every destination from config.json is. As for those, the mount is checked to have
    landed where it was made (a joined mount namespace may hold other processes)."""
    posix.mkdir(sub.name, 0o755, dir_fd=tmpfs_fd)
    fd = posix.open(sub.name, sc.O_PATH | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=tmpfs_fd)
    covered = paths.mnt_id(fd)
    try:
        bind = not sub.fresh
        if sub.fresh:
            try:
                sc.mount(sub.fstype, paths.proc_fd_path(fd), sub.fstype, opts.flags, sub.data or None)
            except OSError as e:
                # a v1 hierarchy cannot be mounted from a user namespace: bind instead
                if e.errno not in (errno.EPERM, errno.EBUSY) or not sub.host_dir:
                    raise
                bind = True
        if bind:
            sc.mount(sub.host_dir, paths.proc_fd_path(fd), None, sc.MS_BIND | sc.MS_REC)
    finally:
        posix.close(fd)
    nfd = posix.open(sub.name, sc.O_PATH | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=tmpfs_fd)  # the mount's root
    try:
        if covered is not None and paths.mnt_id(nfd) == covered:
            raise OSError(errno.EXDEV, f"{sub.name} changed while it was being mounted")
        if bind:
            bopts = MountOptions(flags=opts.flags | sc.MS_BIND | sc.MS_REC, clear_flags=opts.clear_flags, propagation=opts.propagation)
            if _needs_remount(bopts):
                _remount_bind(nfd, bopts, sub.name)
        _apply_after(nfd, opts)
    finally:
        posix.close(nfd)


def _why(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e)


def _describe(step) -> str:
    if isinstance(step, MountStep):
        return f"mount {step.index} ({step.destination})"
    if isinstance(step, MakeDevice):
        return f"device {step.node.path}"
    if isinstance(step, MakeSymlink):
        return f"symlink {step.link.link}"
    if isinstance(step, RemountReadonly):
        return f"read-only remount of {step.destination}"
    if isinstance(step, BindRootfs):
        return f"bind of the rootfs {step.rootfs}"
    if isinstance(step, SetRootPropagation):
        return "propagation of /"
    return type(step).__name__


def prepare(
    spec,
    rootfs: str,
    *,
    in_userns: bool,
    new_netns: bool,
    new_cgroupns: bool,
    cgroup_paths: dict[str, str] | None,
    mount_label: str | None = None,
    bundle: str | None = None,
) -> None:
    """Everything before pivot_root: see the module docstring."""
    label = mount_label if mount_label and _selinux_enabled() else None
    if bundle is None:
        bundle = infer_bundle(spec, rootfs)
    try:
        steps = plan(spec, rootfs, in_userns=in_userns, mount_label=label, bundle=bundle)
    except ValueError as e:
        raise SetupError(str(e)) from None
    root_fd = None
    mounts: list[dict] = []
    for step in steps:
        try:
            if isinstance(step, SetRootPropagation):
                sc.mount(None, "/", None, step.flags)
            elif isinstance(step, BindRootfs):
                real_rootfs = fspath.realpath(rootfs)  # as mountinfo shows it
                _make_parent_unshared(real_rootfs)
                sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)
                mounts = _read_mountinfo()
                _unshare_rootfs_mount(rootfs, real_rootfs, mounts)
                root_fd = paths.open_root(rootfs)
            elif isinstance(step, MountStep):
                if step.kind == "bind":
                    _do_bind(root_fd, step)
                elif step.kind == "sysfs":
                    _do_sysfs(root_fd, step, in_userns=in_userns, new_netns=new_netns)
                elif step.kind == "cgroup":
                    _do_cgroup(root_fd, step, new_cgroupns=new_cgroupns, cgroup_paths=cgroup_paths, in_userns=in_userns,
                               host_mounts=mounts)
                elif step.fstype == "devpts" and in_userns:
                    _do_devpts_userns(root_fd, step)
                else:
                    _do_fs(root_fd, step)
            elif isinstance(step, MakeDevice):
                devices.create_device(root_fd, step.node)
            elif isinstance(step, MakeSymlink):
                devices.create_symlink(root_fd, step.link)
            elif isinstance(step, RemountReadonly):
                fd = paths.open_in_root(root_fd, step.destination)
                try:
                    t = paths.proc_fd_path(fd)
                    sc.mount(None, t, None, sc.MS_REMOUNT | sc.MS_RDONLY | (mountopts.statvfs_to_ms(posix.statvfs(t).f_flag) & mountopts.LOCKED_FLAGS))
                finally:
                    posix.close(fd)
        except (OSError, ValueError) as e:
            if root_fd is not None:
                posix.close(root_fd)
            raise SetupError(f"{_describe(step)}: {_why(e)}") from e
    if root_fd is not None:
        posix.close(root_fd)


def bind_console(rootfs: str, slave_fd: int) -> None:
    root_fd = paths.open_root(rootfs)
    try:
        devices.bind_console(root_fd, slave_fd)
    except OSError as e:
        raise SetupError(f"console /dev/console: {_why(e)}") from e
    finally:
        posix.close(root_fd)


def pivot(rootfs: str, *, no_pivot: bool = False) -> None:
    """Make `rootfs` the root of this mount namespace."""
    try:
        if no_pivot:
            posix.chdir(rootfs)
            sc.mount(rootfs, "/", None, sc.MS_MOVE)
            posix.chroot(".")
            posix.chdir("/")
            return
        old = posix.open("/", posix.O_DIRECTORY | posix.O_RDONLY | posix.O_CLOEXEC)
        new = posix.open(rootfs, posix.O_DIRECTORY | posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            posix.fchdir(new)
            try:
                sc.pivot_root(".", ".")
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                # a shared "/" (rootfsPropagation shared) blocks pivot_root: the old
                # root is thrown away just below, so make it private first
                sc.mount(None, "/", None, sc.MS_PRIVATE)
                sc.mount(None, ".", None, sc.MS_PRIVATE)
                sc.pivot_root(".", ".")
            posix.fchdir(old)
            # the old root is stacked under the new one: detach it without letting the
            # unmount propagate anywhere
            sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
            sc.umount2(".", sc.MNT_DETACH)
        finally:
            posix.close(old)
            posix.close(new)
        posix.chdir("/")
    except OSError as e:
        raise SetupError(f"pivot_root {rootfs}: {_why(e)}") from e


# --- after pivot ------------------------------------------------------------------------
class MaskPath(Record):
    path: str


class ReadonlyPath(Record):
    path: str


class RootReadonly(Record):
    pass


class ReapplyPropagation(Record):
    flags: int


def finish_plan(spec) -> list:
    """Pure: the steps of finish()."""
    linux = _get(spec, "linux")
    steps: list = []
    for p in _get(linux, "masked_paths") or ():
        steps.append(MaskPath(paths.clean(p)))
    for p in _get(linux, "readonly_paths") or ():
        steps.append(ReadonlyPath(paths.clean(p)))
    root = _get(spec, "root")
    if _get(root, "readonly"):
        steps.append(RootReadonly())
    prop = _get(linux, "rootfs_propagation")
    if prop:
        steps.append(ReapplyPropagation(propagation_flags(prop)))
    return steps


def _open_dev_null(root_fd: int) -> int:
    """The container's /dev/null, checked to be the real 1:3 char device: masking binds
    it over files, so a symlink or file there must not be used (CVE-2025-31133)."""
    fd = paths.open_in_root(root_fd, "/dev/null", nofollow=True)
    st = posix.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != posix.makedev(1, 3):
        posix.close(fd)
        raise OSError(errno.EINVAL, "/dev/null inside the container is not the null device")
    return fd


def _after_pivot_target(fd: int, path: str) -> str:
    """Where to point mount(2) after pivot_root: /proc/self/fd/N when /proc is mounted
    in the container; otherwise the path itself, which after pivot_root resolves inside
    the container root exactly as the fd did (no container process exists yet), after
    checking it still names the same inode."""
    if fspath.isdir("/proc/self/fd"):
        return paths.proc_fd_path(fd)
    a, b = posix.fstat(fd), posix.lstat(path)
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
        a_follow = posix.stat(path)
        if (a.st_dev, a.st_ino) != (a_follow.st_dev, a_follow.st_ino):
            raise OSError(errno.EXDEV, f"{path} changed while it was being resolved")
    return path


def _mask(root_fd: int, path: str, null_fd_box: list, label: str | None) -> None:
    try:
        fd = paths.open_in_root(root_fd, path, nofollow=True)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        return
    try:
        st = posix.fstat(fd)
        if stat.S_ISLNK(st.st_mode):
            return  # masking the link would mask its target: leave both alone
        target = _after_pivot_target(fd, path)
        if stat.S_ISDIR(st.st_mode):
            data = f'context="{label}"' if label else None
            sc.mount("tmpfs", target, "tmpfs", sc.MS_RDONLY, data)
        else:
            if not null_fd_box:
                null_fd_box.append(_open_dev_null(root_fd))
            sc.mount(_after_pivot_target(null_fd_box[0], "/dev/null"), target, None, sc.MS_BIND)
    finally:
        posix.close(fd)


def _readonly(root_fd: int, path: str) -> None:
    try:
        fd = paths.open_in_root(root_fd, path)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        t = _after_pivot_target(fd, path)
        sc.mount(t, t, None, sc.MS_BIND | sc.MS_REC)
        nfd = _reopen(root_fd, path, fd)
    finally:
        posix.close(fd)
    try:
        t = _after_pivot_target(nfd, path)
        keep = mountopts.statvfs_to_ms(posix.statvfs(t).f_flag) & mountopts.LOCKED_FLAGS
        sc.mount(None, t, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | keep)
    finally:
        posix.close(nfd)


def finish(spec) -> None:
    """After pivot, in the container's root: maskedPaths, readonlyPaths, root.readonly,
    then rootfsPropagation again."""
    linux = _get(spec, "linux")
    label = _get(linux, "mount_label")
    label = label if label and _selinux_enabled() else None
    root_fd = paths.open_root("/")
    null_box: list = []
    try:
        for step in finish_plan(spec):
            try:
                if isinstance(step, MaskPath):
                    _mask(root_fd, step.path, null_box, label)
                elif isinstance(step, ReadonlyPath):
                    _readonly(root_fd, step.path)
                elif isinstance(step, RootReadonly):
                    keep = mountopts.statvfs_to_ms(posix.statvfs("/").f_flag) & mountopts.LOCKED_FLAGS
                    sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | keep)
                elif isinstance(step, ReapplyPropagation):
                    sc.mount(None, "/", None, step.flags)
            except OSError as e:
                what = {MaskPath: "masked path", ReadonlyPath: "readonly path"}.get(type(step))
                name = f"{what} {step.path}" if what else ("read-only root" if isinstance(step, RootReadonly) else "propagation of /")
                raise SetupError(f"{name}: {_why(e)}") from e
    finally:
        for fd in null_box:
            posix.close(fd)
        posix.close(root_fd)

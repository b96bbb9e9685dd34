"""A hostile rootfs tries to point mounts, devices, masked and read-only paths at the host.

Each test plants symlinks in a busybox rootfs that lead to a directory or file on
the host (absolute and "../"-relative shapes), runs rootfs.prepare / pivot / finish
in a forked child with private mount + pid namespaces, and asserts from both sides
that the host was not touched:

* inside the child's mount namespace, before pivot_root (when the host is still
  visible): no mount point at or below the host target;
* on the host: the target's content, type and directory listing are unchanged,
  and (fixture) the host's mount table is unchanged.
"""

import os
import stat
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bundles.rootfs import build_busybox_rootfs  # noqa: E402
from ocipy.errors import SetupError  # noqa: E402
from ocipy.linux import rootfs as rootfs_mod  # noqa: E402
from ocipy.spec import Spec  # noqa: E402

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
]

SECRET = "host secret, must stay untouched\n"


from nsharness import no_mount_left_behind, run_in_namespaces  # noqa: E402,F401 - an autouse fixture


@pytest.fixture
def world():
    """A fresh rootfs and a host directory with a secret file, both in temp dirs."""
    with tempfile.TemporaryDirectory(prefix="ocipy-sec-") as d:
        rootfs = build_busybox_rootfs(os.path.join(d, "rootfs"))
        host = tempfile.mkdtemp(prefix="ocipy-hostdir-")
        secret = os.path.join(host, "hostfile")
        with open(secret, "w") as f:
            f.write(SECRET)
        try:
            yield {"rootfs": rootfs, "host": host, "secret": secret}
        finally:
            # the host dir is outside the rootfs; remove it (and only it)
            for name in os.listdir(host):
                p = os.path.join(host, name)
                if os.path.isdir(p) and not os.path.islink(p):
                    os.rmdir(p)  # would fail if an escape had filled it: good
                else:
                    os.unlink(p)
            os.rmdir(host)


def host_snapshot(world) -> dict:
    st = os.lstat(world["secret"])
    with open(world["secret"]) as f:
        content = f.read()
    return {"listing": sorted(os.listdir(world["host"])), "mode": st.st_mode, "content": content, "ino": st.st_ino}


def mountpoints(text: str) -> list[str]:
    return [line.split()[4] for line in text.splitlines()]


def touching(points: list[str], host: str) -> list[str]:
    return [p for p in points if p == host or p.startswith(host + "/")]


def base_config(rootfs: str, mounts=None, **linux) -> dict:
    cfg = {
        "ociVersion": "1.3.0",
        "root": {"path": rootfs},
        "mounts": mounts if mounts is not None else [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}], **linux},
    }
    return cfg


def prepare_only(cfg, rootfs, in_userns=False):
    """prepare(), then report the child's mount table while the host is still visible."""
    spec = Spec.from_dict(cfg)
    err = None
    try:
        rootfs_mod.prepare(spec, rootfs, in_userns=in_userns, new_netns=True, new_cgroupns=False, cgroup_paths=None)
    except SetupError as e:
        err = str(e)
    with open("/proc/self/mountinfo") as f:
        mi = f.read()
    return {"error": err, "mountinfo": mi}


# --- mount destinations ---------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["absolute", "relative"])
@pytest.mark.parametrize("dest", ["/evil", "/evil/x", "/evil/deeper/x"])
def test_mount_destination_symlink_stays_inside(world, shape, dest):
    rootfs, host = world["rootfs"], world["host"]
    target = host if shape == "absolute" else "../../../../../../../.." + host
    os.symlink(target, os.path.join(rootfs, "evil"))
    before = host_snapshot(world)
    with tempfile.TemporaryDirectory(prefix="ocipy-src-") as src:
        mounts = [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
            {"destination": dest + "-bind", "type": "bind", "source": src, "options": ["rbind", "ro"]},
        ]
        print(f"rootfs/evil -> {target}; mounting tmpfs on {dest} and a bind on {dest}-bind")
        out = run_in_namespaces(prepare_only, base_config(rootfs, mounts), rootfs)
    print("error:", out["error"])
    points = mountpoints(out["mountinfo"])
    assert touching(points, host) == [], "a mount landed on the host directory"
    assert host_snapshot(world) == before
    # the mounts went where the symlink points when read inside the root
    assert out["error"] is None
    inside = os.path.join(rootfs, host.lstrip("/"))
    assert any(p == inside or p.startswith(inside + "/") for p in points), points


def test_proc_on_a_symlink_is_refused(world):
    rootfs, host = world["rootfs"], world["host"]
    os.rmdir(os.path.join(rootfs, "proc"))
    os.symlink(host, os.path.join(rootfs, "proc"))
    before = host_snapshot(world)
    print(f"rootfs/proc -> {host}; mounting proc on /proc")
    out = run_in_namespaces(prepare_only, base_config(rootfs), rootfs)
    print("error:", out["error"])
    assert out["error"] and out["error"].startswith("mount 0 (/proc):")
    assert touching(mountpoints(out["mountinfo"]), host) == []
    assert not any(p.endswith("/proc") and p.startswith(rootfs) for p in mountpoints(out["mountinfo"]))
    assert host_snapshot(world) == before


def test_bind_into_proc_is_refused(world):
    cfg = base_config(world["rootfs"], [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/proc/sys/kernel/core_pattern", "type": "bind", "source": world["secret"], "options": ["bind"]},
    ])
    out = run_in_namespaces(prepare_only, cfg, world["rootfs"])
    print("error:", out["error"])
    assert out["error"] and "inside /proc" in out["error"]


# --- devices ----------------------------------------------------------------------------------
@pytest.mark.parametrize("in_userns", [False, True], ids=["mknod", "bind-from-host"])
def test_dev_null_symlink_to_host_file(world, in_userns):
    rootfs, secret = world["rootfs"], world["secret"]
    os.symlink(secret, os.path.join(rootfs, "dev", "null"))
    os.symlink("../../../../../../.." + secret, os.path.join(rootfs, "dev", "zero"))
    before = host_snapshot(world)
    print(f"rootfs/dev/null -> {secret}, rootfs/dev/zero -> ../..{secret}; /dev is not a tmpfs")

    def attempt():
        out = prepare_only(base_config(rootfs), rootfs, in_userns=in_userns)
        st = os.lstat(os.path.join(rootfs, "dev", "null"))
        out["null"] = [stat.S_ISCHR(st.st_mode) or (in_userns and stat.S_ISREG(st.st_mode)), stat.S_ISLNK(st.st_mode)]
        out["null_rdev"] = os.stat(os.path.join(rootfs, "dev", "null")).st_rdev == os.makedev(1, 3)
        return out

    out = run_in_namespaces(attempt)
    print("error:", out["error"])
    assert out["error"] is None
    assert touching(mountpoints(out["mountinfo"]), world["host"]) == []
    assert out["null"] == [True, False], "the symlink must be replaced by a real node"
    assert out["null_rdev"]
    after = host_snapshot(world)
    assert after == before
    assert stat.S_ISREG(after["mode"]), "the host file must not become a device node"


def test_dev_dir_symlink_to_host_dir(world):
    rootfs, host = world["rootfs"], world["host"]
    os.rmdir(os.path.join(rootfs, "dev"))
    os.symlink(host, os.path.join(rootfs, "dev"))
    before = host_snapshot(world)
    print(f"rootfs/dev -> {host}; default devices and symlinks get created")
    out = run_in_namespaces(prepare_only, base_config(rootfs), rootfs)
    print("error:", out["error"])
    assert host_snapshot(world) == before, "nothing may be created in the host dir"
    inside = os.path.join(rootfs, host.lstrip("/"))
    assert stat.S_ISCHR(os.lstat(os.path.join(inside, "null")).st_mode)
    # tidy the in-rootfs copy (TemporaryDirectory removes it anyway)


def test_console_symlink_to_host_file(world):
    rootfs, secret = world["rootfs"], world["secret"]
    os.symlink(secret, os.path.join(rootfs, "dev", "console"))
    before = host_snapshot(world)
    print(f"rootfs/dev/console -> {secret}; bind_console with a pty")

    def attempt():
        out = prepare_only(base_config(rootfs), rootfs)
        master, slave = os.openpty()
        rootfs_mod.bind_console(rootfs, slave)
        with open("/proc/self/mountinfo") as f:
            out["mountinfo"] = f.read()
        out["console_is_link"] = os.path.islink(os.path.join(rootfs, "dev", "console"))
        return out

    out = run_in_namespaces(attempt)
    points = mountpoints(out["mountinfo"])
    assert touching(points, world["host"]) == []
    assert os.path.join(rootfs, "dev", "console") in points
    assert out["console_is_link"] is False
    assert host_snapshot(world) == before


# --- masked and read-only paths (finish, after pivot) -------------------------------------------
def _full_run(cfg, rootfs, swap=None):
    spec = Spec.from_dict(cfg)
    rootfs_mod.prepare(spec, rootfs, in_userns=False, new_netns=True, new_cgroupns=False, cgroup_paths=None)
    rootfs_mod.pivot(rootfs)
    if swap:
        swap()
    err = None
    try:
        rootfs_mod.finish(spec)
    except SetupError as e:
        err = str(e)
    out = {"error": err}
    with open("/proc/self/mountinfo") as f:
        out["mountinfo"] = f.read()
    with open("/etc/hostname") as f:
        out["hostname"] = f.read()
    with open("/etc/passwd") as f:
        out["passwd"] = f.read()
    out["rw_probe"] = None
    try:
        with open("/etc/probe", "w") as f:
            f.write("x")
        out["rw_probe"] = "written"
    except OSError as e:
        out["rw_probe"] = e.errno
    return out


def test_masked_path_symlink_masks_nothing_else(world):
    rootfs, secret = world["rootfs"], world["secret"]
    with open(os.path.join(rootfs, "etc", "hostname"), "w") as f:
        f.write("container-hostname\n")
    os.symlink("/etc/hostname", os.path.join(rootfs, "masklink"))
    os.symlink(secret, os.path.join(rootfs, "hostlink"))
    os.symlink(world["host"], os.path.join(rootfs, "evil"))
    before = host_snapshot(world)
    cfg = base_config(rootfs, maskedPaths=["/masklink", "/hostlink", "/evil/hostfile", "/evil"])
    print("maskedPaths are symlinks to /etc/hostname, to a host file, and through a host dir")
    out = run_in_namespaces(_full_run, cfg, rootfs)
    print("error:", out["error"], "\n", out["mountinfo"])
    assert out["error"] is None
    points = mountpoints(out["mountinfo"])
    assert "/etc/hostname" not in points and "/masklink" not in points and "/evil" not in points
    assert out["hostname"] == "container-hostname\n"
    assert host_snapshot(world) == before


def test_masking_refuses_a_swapped_dev_null(world):
    """CVE-2025-31133 shape: /dev/null replaced by a symlink before masking."""
    rootfs = world["rootfs"]
    cfg = base_config(rootfs, [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
    ], maskedPaths=["/proc/timer_list", "/proc/keys"])

    def swap():
        os.unlink("/dev/null")
        os.symlink("/etc/passwd", "/dev/null")

    out = run_in_namespaces(_full_run, cfg, rootfs, swap)
    print("error:", out["error"])
    assert out["error"] and "not the null device" in out["error"]
    points = mountpoints(out["mountinfo"])
    assert "/proc/timer_list" not in points and "/proc/keys" not in points
    assert out["passwd"].startswith("root:")


def test_readonly_path_behind_symlink(world):
    rootfs, host = world["rootfs"], world["host"]
    # the same absolute path exists inside the rootfs: that copy is what must become ro
    inside = os.path.join(rootfs, host.lstrip("/"))
    os.makedirs(inside)
    os.symlink(host, os.path.join(rootfs, "rolink"))
    os.symlink(world["secret"], os.path.join(rootfs, "rofilelink"))
    before = host_snapshot(world)
    cfg = base_config(rootfs, readonlyPaths=["/rolink", "/rofilelink", "/etc"])

    def run():
        out = _full_run(cfg, rootfs)
        try:
            with open(os.path.join(host, "probe"), "w") as f:
                f.write("x")
            out["inside_write"] = "written"
        except OSError as e:
            out["inside_write"] = e.errno
        return out

    print(f"readonlyPaths /rolink -> {host}, /rofilelink -> host file (missing inside)")
    out = run_in_namespaces(run)
    print("error:", out["error"], "\n", out["mountinfo"])
    assert out["error"] is None
    assert host in mountpoints(out["mountinfo"])  # the in-container copy
    assert out["inside_write"] == 30
    assert out["rw_probe"] == 30  # /etc read-only
    assert host_snapshot(world) == before
    # and the host dir is still writable from the host
    probe = os.path.join(host, "probe")
    with open(probe, "w") as f:
        f.write("x")
    os.unlink(probe)


# --- races and file destinations ----------------------------------------------------------------
def test_destination_swapped_for_symlink_after_resolution(world):
    """CVE-2021-30465 shape: the destination is replaced by a symlink to the host between
    its resolution and the mount. The mount must land on the resolved directory (now
    renamed, still inside the rootfs), never on the host."""
    rootfs, host = world["rootfs"], world["host"]
    os.makedirs(os.path.join(rootfs, "target"))
    before = host_snapshot(world)
    cfg = base_config(rootfs, [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/target", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "ro"]},
    ])

    def attempt():
        from ocipy.linux import paths as paths_mod

        real = paths_mod.mkdir_all_in_root

        def racing(root_fd, path, mode=0o755):
            fd = real(root_fd, path, mode)
            if path == "/target":
                os.rename(os.path.join(rootfs, "target"), os.path.join(rootfs, "moved"))
                os.symlink(host, os.path.join(rootfs, "target"))
            return fd

        paths_mod.mkdir_all_in_root = racing
        try:
            return prepare_only(cfg, rootfs)
        finally:
            paths_mod.mkdir_all_in_root = real

    print(f"rootfs/target swapped for a symlink to {host} right after it was resolved")
    out = run_in_namespaces(attempt)
    print("error:", out["error"])
    points = mountpoints(out["mountinfo"])
    assert touching(points, host) == []
    assert os.path.join(rootfs, "moved") in points  # where the resolved inode now lives
    assert out["error"] is not None  # the re-resolution notices the swap
    assert host_snapshot(world) == before


def test_file_bind_through_dangling_symlink(world):
    """rootfs/etc/resolv.conf -> <hostdir>/created-by-runtime (missing on the host): the
    file to bind onto must be created inside the rootfs, not on the host."""
    rootfs, host = world["rootfs"], world["host"]
    os.symlink(os.path.join(host, "created-by-runtime"), os.path.join(rootfs, "etc", "resolv.conf"))
    before = host_snapshot(world)
    cfg = base_config(rootfs, [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/etc/resolv.conf", "type": "bind", "source": world["secret"], "options": ["rbind", "ro"]},
    ])
    out = run_in_namespaces(prepare_only, cfg, rootfs)
    print("error:", out["error"])
    assert out["error"] is None
    assert touching(mountpoints(out["mountinfo"]), host) == []
    assert host_snapshot(world) == before
    assert os.path.isfile(os.path.join(rootfs, host.lstrip("/"), "created-by-runtime"))


@pytest.mark.parametrize("in_userns", [False, True], ids=["mknod", "bind-from-host"])
def test_linux_device_over_a_symlink_is_an_error(world, in_userns):
    """A linux.devices path that is a symlink to a host file: an error, never followed."""
    rootfs, secret = world["rootfs"], world["secret"]
    os.symlink(secret, os.path.join(rootfs, "dev", "mydev"))
    before = host_snapshot(world)
    cfg = base_config(rootfs, devices=[{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3}])
    out = run_in_namespaces(prepare_only, cfg, rootfs, in_userns)
    print("error:", out["error"])
    assert out["error"] and out["error"].startswith("device /dev/mydev:") and "already exists" in out["error"]
    assert touching(mountpoints(out["mountinfo"]), world["host"]) == []
    assert host_snapshot(world) == before
    assert os.path.islink(os.path.join(rootfs, "dev", "mydev"))

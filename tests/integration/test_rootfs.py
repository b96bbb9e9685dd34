"""rootfs.prepare + pivot + finish on a real busybox rootfs, as root.

Every test runs the container side in a forked child that unshared its own mount
and pid namespaces and made "/" rprivate first, so nothing it mounts can reach
the host; a second fork is pid 1 of the new pid namespace (a fresh /proc needs
one). That pid 1 reports what it sees to the test through a pipe, as JSON. An
autouse fixture checks the host's mountinfo is the same after each test.
"""

import json
import os
import stat
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bundles.rootfs import build_busybox_rootfs  # noqa: E402
from ocipy.errors import SetupError  # noqa: E402
from ocipy.linux import rootfs as rootfs_mod  # noqa: E402
from ocipy.linux import syscalls as sc  # noqa: E402
from ocipy.spec import Spec  # noqa: E402

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
]

RUNC_SPEC = str(Path(__file__).resolve().parents[3] / "shared" / "corpus" / "engines" / "runc-spec.config.json")


# --- harness -----------------------------------------------------------------------------
from nsharness import no_mount_left_behind, run_in_namespaces  # noqa: E402,F401 - an autouse fixture
from shared_paths import CORPUS  # noqa: E402


@pytest.fixture
def rootfs():
    with tempfile.TemporaryDirectory(prefix="ocipy-rootfs-") as d:
        path = os.path.join(d, "rootfs")
        build_busybox_rootfs(path)
        yield path


def runc_spec_config(rootfs: str) -> dict:
    with open(RUNC_SPEC) as f:
        cfg = json.load(f)
    cfg["root"] = {"path": rootfs, "readonly": True}
    return cfg


def parse_mountinfo(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        sep = parts.index("-")
        out.append({"mountpoint": parts[4], "options": parts[5].split(","), "fstype": parts[sep + 1], "super": parts[sep + 3].split(",")})
    return out


def _inspect() -> dict:
    """Runs inside the container (after finish): what a process there sees."""
    info: dict = {}
    with open("/proc/self/mountinfo") as f:
        info["mountinfo"] = f.read()
    devs = {}
    for name in ("null", "zero", "full", "random", "urandom", "tty", "mydev", "myfifo"):
        p = "/dev/" + name
        try:
            st = os.lstat(p)
            devs[name] = {
                "mode": st.st_mode,
                "major": os.major(st.st_rdev),
                "minor": os.minor(st.st_rdev),
                "uid": st.st_uid,
                "gid": st.st_gid,
            }
        except OSError as e:
            devs[name] = {"error": e.errno}
    info["devices"] = devs
    links = {}
    for name in ("fd", "stdin", "stdout", "stderr", "ptmx", "core"):
        try:
            links[name] = os.readlink("/dev/" + name)
        except OSError as e:
            links[name] = {"error": e.errno}
    info["links"] = links
    info["masked_files"] = {}
    for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"):
        if os.path.exists(p):
            with open(p, "rb") as f:
                info["masked_files"][p] = f.read(16).hex()
    info["firmware"] = os.listdir("/sys/firmware")
    info["acpi"] = os.listdir("/proc/acpi") if os.path.isdir("/proc/acpi") else None

    def try_write(path):
        try:
            with open(path, "w") as f:
                f.write("x")
            return "written"
        except OSError as e:
            return e.errno

    info["write_root"] = try_write("/tmp/x")
    info["write_sys"] = try_write("/proc/sys/kernel/hostname")
    info["write_sysrq"] = try_write("/proc/sysrq-trigger")
    info["write_devshm"] = try_write("/dev/shm/x")
    info["write_dev"] = try_write("/dev/newfile")
    with open("/dev/null", "w") as f:
        f.write("ok")
    with open("/dev/zero", "rb") as f:
        info["zero"] = f.read(4).hex()
    info["cgroup_dirs"] = sorted(os.listdir("/sys/fs/cgroup"))
    info["cwd"] = os.getcwd()
    info["root_listing"] = sorted(os.listdir("/"))
    return info


def _container(cfg: dict, rootfs: str, extra_setup=None, inspect=_inspect, no_pivot: bool = False, **kw):
    spec = Spec.from_dict(cfg)
    if extra_setup:
        extra_setup()
    rootfs_mod.prepare(
        spec,
        rootfs,
        in_userns=kw.get("in_userns", False),
        new_netns=kw.get("new_netns", True),
        new_cgroupns=kw.get("new_cgroupns", False),
        cgroup_paths=kw.get("cgroup_paths"),
        mount_label=None,
    )
    rootfs_mod.pivot(rootfs, no_pivot=no_pivot)
    rootfs_mod.finish(spec)
    return inspect()


def _setup_error(cfg: dict, rootfs: str) -> str:
    """The SetupError a container set-up raises (run it inside run_in_namespaces)."""
    try:
        _container(cfg, rootfs, None, lambda: None)
    except SetupError as e:
        return str(e)
    return "no error"


def _by_mountpoint(mi: list[dict]) -> dict:
    out = {}
    for m in mi:
        out[m["mountpoint"]] = m  # the last (top) mount wins
    return out


# --- tests ---------------------------------------------------------------------------------
def test_runc_spec_defaults(rootfs):
    cfg = runc_spec_config(rootfs)
    cfg["linux"]["devices"] = [
        {"path": "/dev/mydev", "type": "c", "major": 1, "minor": 5, "fileMode": 0o600, "uid": 1000, "gid": 1001},
        {"path": "/dev/myfifo", "type": "p", "fileMode": 0o640},
    ]
    info = run_in_namespaces(_container, cfg, rootfs)
    print(info["mountinfo"])
    mounts = _by_mountpoint(parse_mountinfo(info["mountinfo"]))

    assert "ro" in mounts["/"]["options"], "root.readonly"
    assert mounts["/proc"]["fstype"] == "proc"
    assert mounts["/dev"]["fstype"] == "tmpfs" and "nosuid" in mounts["/dev"]["options"]
    assert "mode=755" in mounts["/dev"]["super"]
    assert mounts["/dev/pts"]["fstype"] == "devpts"
    assert {"nosuid", "noexec"} <= set(mounts["/dev/pts"]["options"])
    assert "ptmxmode=666" in mounts["/dev/pts"]["super"] and "gid=5" in mounts["/dev/pts"]["super"]
    assert mounts["/dev/shm"]["fstype"] == "tmpfs" and {"nosuid", "noexec", "nodev"} <= set(mounts["/dev/shm"]["options"])
    assert mounts["/dev/mqueue"]["fstype"] == "mqueue"
    assert mounts["/sys"]["fstype"] == "sysfs" and {"ro", "nosuid", "noexec", "nodev"} <= set(mounts["/sys"]["options"])
    assert "ro" in mounts["/sys/fs/cgroup"]["options"]
    # masked and read-only paths
    assert info["masked_files"], "no masked file to check on this kernel"
    for p, content in info["masked_files"].items():
        assert content == "", p
        assert mounts[p]["fstype"] in ("devtmpfs", "tmpfs"), p  # /dev/null bound over it
    assert info["firmware"] == []
    if info["acpi"] is not None:
        assert info["acpi"] == []
    assert "ro" in mounts["/proc/sys"]["options"]
    assert info["write_sys"] == 30  # EROFS
    assert info["write_sysrq"] in (30, 2)  # EROFS, or ENOENT where the kernel has no sysrq
    assert info["write_root"] == 30, "root.readonly must refuse writes"
    assert info["write_devshm"] == "written" and info["write_dev"] == "written"

    devs = info["devices"]
    for name, (ma, mi_) in {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}.items():
        assert stat.S_ISCHR(devs[name]["mode"]), name
        assert (devs[name]["major"], devs[name]["minor"]) == (ma, mi_), name
        assert stat.S_IMODE(devs[name]["mode"]) == 0o666, name
    assert stat.S_ISCHR(devs["mydev"]["mode"]) and stat.S_IMODE(devs["mydev"]["mode"]) == 0o600
    assert (devs["mydev"]["uid"], devs["mydev"]["gid"]) == (1000, 1001)
    assert stat.S_ISFIFO(devs["myfifo"]["mode"]) and stat.S_IMODE(devs["myfifo"]["mode"]) == 0o640
    assert info["zero"] == "00000000"

    links = info["links"]
    assert links["fd"] == "/proc/self/fd"
    assert (links["stdin"], links["stdout"], links["stderr"]) == ("/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2")
    assert links["ptmx"] == "pts/ptmx"
    if os.path.exists("/proc/kcore"):
        assert links["core"] == "/proc/kcore"
    assert info["cwd"] == "/"
    assert "bin" in info["root_listing"]
    # v1 / hybrid host: a tmpfs with one directory per hierarchy; pure v2: cgroup2
    if rootfs_mod._is_pure_v2():
        assert mounts["/sys/fs/cgroup"]["fstype"] in ("cgroup2",)
    else:
        assert mounts["/sys/fs/cgroup"]["fstype"] == "tmpfs"
        assert "memory" in info["cgroup_dirs"]
        assert mounts["/sys/fs/cgroup/memory"]["fstype"] == "cgroup"
        assert "ro" in mounts["/sys/fs/cgroup/memory"]["options"]


def test_bind_mounts_with_options(rootfs):
    with tempfile.TemporaryDirectory(prefix="ocipy-src-") as src:
        os.makedirs(os.path.join(src, "dir", "sub"))
        with open(os.path.join(src, "dir", "hello"), "w") as f:
            f.write("hello")
        with open(os.path.join(src, "file"), "w") as f:
            f.write("file content")
        cfg = runc_spec_config(rootfs)
        cfg["root"]["readonly"] = False
        cfg["mounts"] += [
            {"destination": "/data/ro", "type": "bind", "source": os.path.join(src, "dir"), "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]},
            {"destination": "/data/rro", "type": "none", "source": os.path.join(src, "dir"), "options": ["rbind", "rro", "rprivate"]},
            {"destination": "/data/rw", "source": os.path.join(src, "dir"), "options": ["bind", "rw"]},
            {"destination": "/etc/injected", "type": "bind", "source": os.path.join(src, "file"), "options": ["bind", "ro"]},
            {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777", "size=1m", "noatime"]},
        ]

        def submount():  # a mount below the bind source, visible only in our namespace
            sc.mount("tmpfs", os.path.join(src, "dir", "sub"), "tmpfs", 0, "size=1m")

        def inspect():
            out = {"mountinfo": open("/proc/self/mountinfo").read()}
            out["injected"] = open("/etc/injected").read()
            out["hello"] = open("/data/ro/hello").read()
            out["scratch_mode"] = stat.S_IMODE(os.stat("/scratch").st_mode)
            res = {}
            for p in ("/data/ro/x", "/data/rro/x", "/data/rro/sub/x", "/data/rw/x", "/scratch/x", "/etc/injected"):
                try:
                    with open(p, "w") as f:
                        f.write("x")
                    res[p] = "written"
                except OSError as e:
                    res[p] = e.errno
            out["writes"] = res
            return out

        info = run_in_namespaces(_container, cfg, rootfs, submount, inspect)
        print(info["mountinfo"])
        mounts = _by_mountpoint(parse_mountinfo(info["mountinfo"]))
        assert {"ro", "nosuid", "nodev", "noexec"} <= set(mounts["/data/ro"]["options"])
        assert "ro" in mounts["/data/rro"]["options"] and "ro" in mounts["/data/rro/sub"]["options"]
        assert "ro" not in mounts["/data/rw"]["options"]
        assert "ro" in mounts["/etc/injected"]["options"]
        assert {"nosuid", "nodev", "noatime"} <= set(mounts["/scratch"]["options"])
        assert "size=1024k" in mounts["/scratch"]["super"]
        assert info["scratch_mode"] == 0o1777
        assert info["injected"] == "file content" and info["hello"] == "hello"
        w = info["writes"]
        assert w["/data/ro/x"] == 30 and w["/data/rro/x"] == 30 and w["/data/rro/sub/x"] == 30
        assert w["/data/rw/x"] == "written" and w["/scratch/x"] == "written"
        assert w["/etc/injected"] == 30
        # the written file went to the host source dir (a shared bind); tidy it for TemporaryDirectory
        assert os.path.exists(os.path.join(src, "dir", "x"))
    assert not os.path.exists(os.path.join(rootfs, "data", "ro", "x"))


def test_userns_style_devices_are_bind_mounted(rootfs):
    """in_userns=True: devices become binds of the host's nodes onto empty files."""
    cfg = runc_spec_config(rootfs)
    cfg["root"]["readonly"] = False

    def inspect():
        mi = open("/proc/self/mountinfo").read()
        st = os.stat("/dev/null")
        with open("/dev/null", "w") as f:
            f.write("x")
        return {"mountinfo": mi, "rdev": [os.major(st.st_rdev), os.minor(st.st_rdev)], "chr": stat.S_ISCHR(st.st_mode)}

    info = run_in_namespaces(lambda: _container(cfg, rootfs, None, inspect, in_userns=True))
    mounts = _by_mountpoint(parse_mountinfo(info["mountinfo"]))
    assert "/dev/null" in mounts and "/dev/urandom" in mounts and "/dev/tty" in mounts
    assert info["chr"] and info["rdev"] == [1, 3]


def test_no_pivot(rootfs):
    cfg = runc_spec_config(rootfs)
    info = run_in_namespaces(_container, cfg, rootfs, None, _inspect, True)
    mounts = _by_mountpoint(parse_mountinfo(info["mountinfo"]))
    assert mounts["/proc"]["fstype"] == "proc"
    assert info["write_root"] == 30
    assert "bin" in info["root_listing"]


def test_cgroup_namespace_fresh_mounts(rootfs):
    """new_cgroupns: each hierarchy is a fresh cgroup mount, not a bind."""
    cfg = runc_spec_config(rootfs)
    cfg["root"]["readonly"] = False

    def in_cgroupns():
        sc.unshare(sc.CLONE_NEWCGROUP)
        return _container(cfg, rootfs, None, lambda: {"mountinfo": open("/proc/self/mountinfo").read(), "dirs": sorted(os.listdir("/sys/fs/cgroup"))}, new_cgroupns=True)

    info = run_in_namespaces(in_cgroupns)
    mounts = _by_mountpoint(parse_mountinfo(info["mountinfo"]))
    if rootfs_mod._is_pure_v2():
        assert mounts["/sys/fs/cgroup"]["fstype"] == "cgroup2"
    else:
        assert mounts["/sys/fs/cgroup/memory"]["fstype"] == "cgroup"
        assert "memory" in mounts["/sys/fs/cgroup/memory"]["super"]
        assert "ro" in mounts["/sys/fs/cgroup/memory"]["options"]


def test_errors_name_the_mount(rootfs):
    cfg = runc_spec_config(rootfs)
    cfg["mounts"].append({"destination": "/nope", "type": "bind", "source": "/does/not/exist", "options": ["bind"]})

    msg = run_in_namespaces(_setup_error, cfg, rootfs)
    assert msg.startswith(f"mount {len(cfg['mounts']) - 1} (/nope):"), msg


def test_console_bind(rootfs):
    cfg = runc_spec_config(rootfs)

    def with_console():
        spec = Spec.from_dict(cfg)
        rootfs_mod.prepare(spec, rootfs, in_userns=False, new_netns=True, new_cgroupns=False, cgroup_paths=None)
        master, slave = os.openpty()
        # a hostile image would have /dev/console -> somewhere; /dev is a tmpfs here,
        # so plant the link in the tmpfs to check it gets replaced, not followed
        os.symlink("/etc/passwd", os.path.join(rootfs, "dev", "console"))
        rootfs_mod.bind_console(rootfs, slave)
        rootfs_mod.pivot(rootfs)
        st = os.stat("/dev/console")
        os.write(master, b"")
        mi = open("/proc/self/mountinfo").read()
        return {"chr": stat.S_ISCHR(st.st_mode), "rdev": st.st_rdev == os.fstat(slave).st_rdev, "mountinfo": mi, "passwd": open("/etc/passwd").read()}

    info = run_in_namespaces(with_console)
    assert info["chr"] and info["rdev"]
    assert "/dev/console" in _by_mountpoint(parse_mountinfo(info["mountinfo"]))
    assert info["passwd"].startswith("root:")


@pytest.mark.parametrize("config", ["runc-spec.config.json", "runc-spec-rootless.config.json"])
def test_in_a_user_namespace(rootfs, config):
    """A real user namespace: mknod is refused (devices become binds), sysfs cannot be
    mounted without owning the network namespace (falls back to a read-only rbind of
    /sys), flags of inherited mounts are locked (remounts keep them)."""
    with open(os.path.join(CORPUS, config)) as f:
        cfg = json.load(f)
    cfg["root"] = {"path": rootfs, "readonly": True}

    def inspect():
        out = {"mountinfo": open("/proc/self/mountinfo").read()}
        st = os.stat("/dev/null")
        out["null"] = [stat.S_ISCHR(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev)]
        with open("/dev/null", "w") as f:
            f.write("x")
        try:
            open("/tmp/x", "w").close()
            out["write_root"] = "written"
        except OSError as e:
            out["write_root"] = e.errno
        out["masked"] = {p: open(p, "rb").read(8).hex() for p in ("/proc/keys", "/proc/timer_list") if os.path.exists(p)}
        return out

    info = run_in_namespaces(lambda: _container(cfg, rootfs, None, inspect, in_userns=True, new_netns=False), userns=True)
    print(info["mountinfo"])
    mounts = _by_mountpoint(parse_mountinfo(info["mountinfo"]))
    assert "/dev/null" in mounts, "devices are bind mounts in a user namespace"
    assert info["null"] == [True, 1, 3]
    assert "ro" in mounts["/sys"]["options"]
    assert "ro" in mounts["/"]["options"] and info["write_root"] == 30
    assert info["masked"] and all(v == "" for v in info["masked"].values())


def test_cgroup_paths_in_the_lead_shape(rootfs):
    """cgroup_paths as the cgroup manager gives them: one key per controller (co-mounted
    ones share a directory), plus "unified"; each hierarchy is bound once."""
    pure_v2, layout = rootfs_mod._host_cgroup_layout()
    given = {}
    for key, d in layout.items():
        for c in key.split(","):
            given[c.replace("name=", "")] = d
    if pure_v2:
        given = {"unified": layout[""]}
    cfg = runc_spec_config(rootfs)
    cfg["root"]["readonly"] = False
    info = run_in_namespaces(lambda: _container(cfg, rootfs, None, lambda: {"mountinfo": open("/proc/self/mountinfo").read()}, cgroup_paths=given))
    mounts = parse_mountinfo(info["mountinfo"])
    cg = [m for m in mounts if m["mountpoint"].startswith("/sys/fs/cgroup/")]
    assert len({m["mountpoint"] for m in cg}) == len(cg), "a hierarchy was mounted twice"
    if not pure_v2:
        assert any(m["mountpoint"] == "/sys/fs/cgroup/memory" for m in cg)
        assert any(m["mountpoint"] == "/sys/fs/cgroup/systemd" for m in cg)


def test_tmpcopyup(rootfs):
    etc = os.path.join(rootfs, "etc")
    os.makedirs(os.path.join(etc, "sub"))
    with open(os.path.join(etc, "sub", "conf"), "w") as f:
        f.write("conf")
    os.chmod(os.path.join(etc, "sub", "conf"), 0o640)
    os.symlink("/etc/passwd", os.path.join(etc, "link"))
    cfg = runc_spec_config(rootfs)
    cfg["root"]["readonly"] = False
    cfg["mounts"].append({"destination": "/etc", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "nosuid", "size=1m"]})
    cfg["mounts"].append({"destination": "/ro-copy", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "ro"]})
    os.makedirs(os.path.join(rootfs, "ro-copy"))
    open(os.path.join(rootfs, "ro-copy", "f"), "w").close()

    def inspect():
        out = {"mountinfo": open("/proc/self/mountinfo").read(), "passwd": open("/etc/passwd").read(), "conf": open("/etc/sub/conf").read()}
        out["conf_mode"] = stat.S_IMODE(os.stat("/etc/sub/conf").st_mode)
        out["link"] = os.readlink("/etc/link")
        out["ro_files"] = os.listdir("/ro-copy")
        try:
            open("/etc/new", "w").close()
            out["write_etc"] = "written"
        except OSError as e:
            out["write_etc"] = e.errno
        try:
            open("/ro-copy/new", "w").close()
            out["write_ro"] = "written"
        except OSError as e:
            out["write_ro"] = e.errno
        return out

    info = run_in_namespaces(lambda: _container(cfg, rootfs, None, inspect))
    mounts = _by_mountpoint(parse_mountinfo(info["mountinfo"]))
    assert mounts["/etc"]["fstype"] == "tmpfs"
    assert info["passwd"].startswith("root:") and info["conf"] == "conf" and info["conf_mode"] == 0o640
    assert info["link"] == "/etc/passwd"
    assert info["write_etc"] == "written"
    assert not os.path.exists(os.path.join(etc, "new")), "writes go to the tmpfs, not the rootfs"
    assert info["ro_files"] == ["f"] and info["write_ro"] == 30


@pytest.mark.parametrize("prop,tag", [("rshared", "shared:"), ("shared", "shared:"), ("rprivate", None), ("rslave", None), ("private", None), ("runbindable", "unbindable")])
def test_rootfs_propagation(rootfs, prop, tag):
    cfg = runc_spec_config(rootfs)
    cfg["root"]["readonly"] = False
    cfg["linux"]["rootfsPropagation"] = prop

    def inspect():
        return {"mountinfo": open("/proc/self/mountinfo").read()}

    info = run_in_namespaces(lambda: _container(cfg, rootfs, None, inspect))
    root_line = [line for line in info["mountinfo"].splitlines() if line.split()[4] == "/"][0]
    print(prop, root_line)
    optional = root_line.split(" - ")[0].split()[6:]
    if tag:
        assert any(o.startswith(tag) for o in optional), root_line
    else:
        assert not any(o.startswith("shared:") for o in optional), root_line


def test_linux_device_conflicting_file_is_an_error(rootfs):
    with open(os.path.join(rootfs, "ocidev"), "w") as f:
        f.write("regular file")
    cfg = runc_spec_config(rootfs)
    cfg["linux"]["devices"] = [{"path": "/ocidev", "type": "c", "major": 1, "minor": 3}]

    msg = run_in_namespaces(_setup_error, cfg, rootfs)
    assert msg.startswith("device /ocidev:") and "already exists" in msg, msg
    with open(os.path.join(rootfs, "ocidev")) as f:
        assert f.read() == "regular file"


def test_linux_device_matching_node_is_kept(rootfs):
    os.mknod(os.path.join(rootfs, "dev", "mynull"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    cfg = runc_spec_config(rootfs)
    cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/dev"]
    cfg["linux"]["devices"] = [{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o644}]
    info = run_in_namespaces(lambda: _container(cfg, rootfs, None, lambda: {"mode": os.stat("/dev/mynull").st_mode}))
    assert stat.S_ISCHR(info["mode"]) and stat.S_IMODE(info["mode"]) == 0o644


@pytest.mark.parametrize("prop,expect", [
    (None, ["master:"]),
    ("slave", ["master:"]),
    ("rslave", ["master:"]),
    ("shared", ["shared:"]),
    ("rshared", ["shared:"]),
    ("private", []),
    ("rprivate", []),
    ("unbindable", ["unbindable"]),
])
def test_rootfs_propagation_against_a_shared_host_mount(rootfs, prop, expect):
    """The rootfs lives below a shared mount of a "host" namespace that stays alive (a
    namespace of our own, nested, so the real host is never involved): the container's
    "/" must end up as rootfsPropagation says, and nothing the container mounts may
    appear in the "host" namespace."""
    cfg = runc_spec_config(rootfs)
    cfg["root"]["readonly"] = False
    if prop:
        cfg["linux"]["rootfsPropagation"] = prop
    top = os.path.dirname(rootfs)

    def host_side():
        sc.mount(top, top, None, sc.MS_BIND)
        sc.mount(None, top, None, sc.MS_SHARED)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                sc.unshare(sc.CLONE_NEWNS)
                spec = Spec.from_dict(cfg)
                rootfs_mod.prepare(spec, rootfs, in_userns=False, new_netns=True, new_cgroupns=False, cgroup_paths=None)
                rootfs_mod.pivot(rootfs)
                rootfs_mod.finish(spec)
                os.write(w, open("/proc/self/mountinfo").read().encode())
            finally:
                os._exit(0)
        os.close(w)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        os.waitpid(pid, 0)
        host = [line for line in open("/proc/self/mountinfo").read().splitlines() if line.split()[4].startswith(top)]
        return {"container": b"".join(chunks).decode(), "host": host}

    info = run_in_namespaces(host_side)
    root = [line for line in info["container"].splitlines() if line.split()[4] == "/"]
    assert root, info["container"]
    fields = root[-1].split(" - ")[0].split()[6:]
    print(prop, fields)
    for tag in expect:
        assert any(f.startswith(tag) for f in fields), fields
    if not expect:
        assert not any(f.startswith(("shared:", "master:", "unbindable")) for f in fields), fields
    assert len(info["host"]) == 1, f"container mounts reached the host namespace: {info['host']}"


@pytest.mark.parametrize("option", ["idmap", "ridmap"])
def test_idmapped_bind_mount(rootfs, option):
    with tempfile.TemporaryDirectory(prefix="ocipy-src-") as src:
        with open(os.path.join(src, "owned-by-root"), "w") as f:
            f.write("x")
        os.makedirs(os.path.join(src, "sub"))
        maps = [{"containerID": 0, "hostID": 12345, "size": 1}]
        cfg = runc_spec_config(rootfs)
        cfg["root"]["readonly"] = False
        cfg["mounts"].append({"destination": "/mnt/id", "type": "bind", "source": src, "options": ["rbind", option, "nosuid"],
                              "uidMappings": maps, "gidMappings": maps})

        def submount():
            sc.mount("tmpfs", os.path.join(src, "sub"), "tmpfs", 0, "size=1m")

        def inspect():
            st = os.stat("/mnt/id/owned-by-root")
            sub = os.stat("/mnt/id/sub")
            return {"owner": [st.st_uid, st.st_gid], "sub": [sub.st_uid, sub.st_gid], "mountinfo": open("/proc/self/mountinfo").read()}

        info = run_in_namespaces(lambda: _container(cfg, rootfs, submount, inspect))
        mounts = _by_mountpoint(parse_mountinfo(info["mountinfo"]))
        assert info["owner"] == [12345, 12345]
        assert "idmapped" in mounts["/mnt/id"]["options"] and "nosuid" in mounts["/mnt/id"]["options"]
        if option == "ridmap":
            assert info["sub"] == [12345, 12345] and "idmapped" in mounts["/mnt/id/sub"]["options"]
        else:
            assert info["sub"] == [0, 0]


def test_cgroup_namespace_in_a_user_namespace(rootfs):
    """v1 hierarchies cannot be mounted fresh from a user namespace: they fall back to
    binds; cgroup2 can be mounted fresh when the cgroup namespace is ours."""
    cfg = runc_spec_config(rootfs)
    cfg["root"]["readonly"] = False

    def in_cgroupns():
        sc.unshare(sc.CLONE_NEWCGROUP)
        return _container(cfg, rootfs, None, lambda: {"mountinfo": open("/proc/self/mountinfo").read()},
                          in_userns=True, new_netns=False, new_cgroupns=True)

    info = run_in_namespaces(in_cgroupns, userns=True)
    print(info["mountinfo"])
    mounts = _by_mountpoint(parse_mountinfo(info["mountinfo"]))
    if rootfs_mod._is_pure_v2():
        assert mounts["/sys/fs/cgroup"]["fstype"] == "cgroup2"
    else:
        assert mounts["/sys/fs/cgroup/memory"]["fstype"] == "cgroup"
        assert "ro" in mounts["/sys/fs/cgroup/memory"]["options"]
        assert mounts["/sys/fs/cgroup/unified"]["fstype"] == "cgroup2"


def test_lxcfs_style_bind_over_proc_files(rootfs):
    with tempfile.TemporaryDirectory(prefix="ocipy-src-") as src:
        fake = os.path.join(src, "cpuinfo")
        with open(fake, "w") as f:
            f.write("processor : 0\n")
        cfg = runc_spec_config(rootfs)
        cfg["root"]["readonly"] = False
        cfg["mounts"].append({"destination": "/proc/cpuinfo", "type": "bind", "source": fake, "options": ["rbind", "ro"]})
        info = run_in_namespaces(lambda: _container(cfg, rootfs, None, lambda: {"cpuinfo": open("/proc/cpuinfo").read()}))
        assert info["cpuinfo"] == "processor : 0\n"


def test_bind_remount_keeps_locked_flags_in_a_user_namespace(rootfs):
    """A bind of a nosuid,nodev,noexec mount made outside the user namespace: those flags
    are locked, a plain "ro" remount is refused (EPERM) and must be retried keeping them."""
    src = tempfile.mkdtemp(prefix="ocipy-src-")
    try:
        cfg = runc_spec_config(rootfs)
        cfg["root"]["readonly"] = False
        cfg["mounts"].append({"destination": "/locked", "type": "bind", "source": src, "options": ["rbind", "ro"]})

        def outside():
            sc.mount("tmpfs", src, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC, "size=1m")

        def inspect():
            try:
                open("/locked/x", "w").close()
                w = "written"
            except OSError as e:
                w = e.errno
            return {"mountinfo": open("/proc/self/mountinfo").read(), "write": w}

        info = run_in_namespaces(lambda: _container(cfg, rootfs, None, inspect, in_userns=True, new_netns=False),
                                 userns=True, before_userns=outside)
        mounts = _by_mountpoint(parse_mountinfo(info["mountinfo"]))
        assert {"ro", "nosuid", "nodev", "noexec"} <= set(mounts["/locked"]["options"])
        assert info["write"] == 30
    finally:
        os.rmdir(src)


def test_readonly_dev_tmpfs_still_gets_devices(rootfs):
    cfg = runc_spec_config(rootfs)
    cfg["root"]["readonly"] = False
    cfg["mounts"][1]["options"].append("ro")  # /dev

    def inspect():
        try:
            open("/dev/newfile", "w").close()
            w = "written"
        except OSError as e:
            w = e.errno
        return {"mountinfo": open("/proc/self/mountinfo").read(), "write": w, "null": stat.S_ISCHR(os.stat("/dev/null").st_mode)}

    info = run_in_namespaces(lambda: _container(cfg, rootfs, None, inspect))
    mounts = _by_mountpoint(parse_mountinfo(info["mountinfo"]))
    assert "ro" in mounts["/dev"]["options"] and info["write"] == 30 and info["null"]


def test_masked_and_readonly_paths_without_proc(rootfs):
    """No /proc mount in the container: finish() cannot use /proc/self/fd magic links and
    must still mask and make read-only, by path, inside the new root."""
    os.makedirs(os.path.join(rootfs, "secret-dir"))
    with open(os.path.join(rootfs, "secret-dir", "s"), "w") as f:
        f.write("s")
    with open(os.path.join(rootfs, "secret-file"), "w") as f:
        f.write("secret")
    os.makedirs(os.path.join(rootfs, "rodir"))
    cfg = {
        "ociVersion": "1.3.0",
        "root": {"path": rootfs},
        "mounts": [{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}],
        "linux": {"maskedPaths": ["/secret-dir", "/secret-file"], "readonlyPaths": ["/rodir"]},
    }

    def inspect():
        try:
            open("/rodir/x", "w").close()
            w = "written"
        except OSError as e:
            w = e.errno
        return {"dir": os.listdir("/secret-dir"), "file": open("/secret-file").read(), "write": w, "proc": os.path.exists("/proc/self")}

    info = run_in_namespaces(lambda: _container(cfg, rootfs, None, inspect))
    assert info == {"dir": [], "file": "", "write": 30, "proc": False}

"""rootfs.plan / finish_plan / devices plan / cgroup layout: pure, no root needed."""

import glob
import json
import os
import pathlib
import stat
import tempfile

import pytest

from ocipy.linux import devices, mountopts, paths, rootfs
from ocipy.linux import syscalls as sc
from ocipy.linux.mountopts import MOUNT_ATTR_RDONLY
from ocipy.spec import Spec
from shared_paths import CORPUS  # noqa: E402



def load(name: str) -> dict:
    with open(os.path.join(CORPUS, name)) as f:
        return json.load(f)


def spec_of(cfg: dict) -> Spec:
    return Spec.from_dict(cfg)


def mount_steps(steps):
    return [s for s in steps if isinstance(s, rootfs.MountStep)]


def by_dest(steps):
    return {s.destination: s for s in mount_steps(steps)}


@pytest.fixture
def runc_cfg():
    return load("runc-spec.config.json")


# --- plan() on the runc spec default ------------------------------------------------------
def test_runc_spec_plan_order_and_kinds(runc_cfg):
    steps = rootfs.plan(spec_of(runc_cfg), "/r")
    assert isinstance(steps[0], rootfs.SetRootPropagation) and steps[0].flags == sc.MS_SLAVE | sc.MS_REC
    assert isinstance(steps[1], rootfs.BindRootfs) and steps[1].rootfs == "/r"
    ms = mount_steps(steps)
    assert [m.destination for m in ms] == [m["destination"] for m in runc_cfg["mounts"]]
    assert [m.index for m in ms] == list(range(len(ms)))
    kinds = {m.destination: m.kind for m in ms}
    assert kinds == {"/proc": "proc", "/dev": "fs", "/dev/pts": "fs", "/dev/shm": "fs", "/dev/mqueue": "fs", "/sys": "sysfs", "/sys/fs/cgroup": "cgroup"}
    d = by_dest(steps)
    assert d["/dev"].flags == sc.MS_NOSUID | sc.MS_STRICTATIME and d["/dev"].data == "mode=755,size=65536k"
    assert d["/dev/pts"].flags == sc.MS_NOSUID | sc.MS_NOEXEC
    assert d["/dev/pts"].data == "newinstance,ptmxmode=0666,mode=0620,gid=5"
    assert d["/sys"].flags == sc.MS_NOSUID | sc.MS_NOEXEC | sc.MS_NODEV | sc.MS_RDONLY
    assert d["/proc"].flags == 0 and d["/proc"].data == ""


def test_runc_spec_plan_devices_after_mounts(runc_cfg):
    steps = rootfs.plan(spec_of(runc_cfg), "/r")
    last_mount = max(i for i, s in enumerate(steps) if isinstance(s, rootfs.MountStep))
    devs = [(i, s.node) for i, s in enumerate(steps) if isinstance(s, rootfs.MakeDevice)]
    assert all(i > last_mount for i, _ in devs)
    assert [(n.path, n.type, n.major, n.minor, n.file_mode) for _, n in devs] == [
        ("/dev/null", "c", 1, 3, 0o666),
        ("/dev/zero", "c", 1, 5, 0o666),
        ("/dev/full", "c", 1, 7, 0o666),
        ("/dev/random", "c", 1, 8, 0o666),
        ("/dev/urandom", "c", 1, 9, 0o666),
        ("/dev/tty", "c", 5, 0, 0o666),
    ]
    assert not any(n.bind_from_host for _, n in devs)
    links = [s.link for s in steps if isinstance(s, rootfs.MakeSymlink)]
    pairs = {(l.link, l.target) for l in links}
    assert {("/dev/fd", "/proc/self/fd"), ("/dev/stdin", "/proc/self/fd/0"), ("/dev/stdout", "/proc/self/fd/1"), ("/dev/stderr", "/proc/self/fd/2")} <= pairs
    assert ("/dev/ptmx", "pts/ptmx") in pairs  # /dev/pts is a devpts mount
    core = [l for l in links if l.link == "/dev/core"]
    assert core and core[0].only_if_host_has == "/proc/kcore"


def test_userns_devices_are_binds(runc_cfg):
    steps = rootfs.plan(spec_of(runc_cfg), "/r", in_userns=True)
    nodes = [s.node for s in steps if isinstance(s, rootfs.MakeDevice)]
    assert nodes and all(n.bind_from_host for n in nodes)


def test_no_ptmx_link_without_devpts(runc_cfg):
    runc_cfg["mounts"] = [m for m in runc_cfg["mounts"] if m["destination"] != "/dev/pts"]
    links = [s.link.link for s in rootfs.plan(spec_of(runc_cfg), "/r") if isinstance(s, rootfs.MakeSymlink)]
    assert "/dev/ptmx" not in links


def test_dev_bind_from_host_skips_default_devices(runc_cfg):
    runc_cfg["mounts"] = [m for m in runc_cfg["mounts"] if not m["destination"].startswith("/dev")]
    runc_cfg["mounts"].append({"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]})
    steps = rootfs.plan(spec_of(runc_cfg), "/r")
    assert not any(isinstance(s, (rootfs.MakeDevice, rootfs.MakeSymlink)) for s in steps)


def test_rootfs_propagation(runc_cfg):
    for name, flags in (("private", sc.MS_PRIVATE), ("rshared", sc.MS_SHARED | sc.MS_REC), ("rslave", sc.MS_SLAVE | sc.MS_REC)):
        runc_cfg["linux"]["rootfsPropagation"] = name
        assert rootfs.plan(spec_of(runc_cfg), "/r")[0].flags == flags
        fin = rootfs.finish_plan(spec_of(runc_cfg))
        assert isinstance(fin[-1], rootfs.ReapplyPropagation) and fin[-1].flags == flags
    runc_cfg["linux"]["rootfsPropagation"] = "sideways"
    with pytest.raises(ValueError):
        rootfs.plan(spec_of(runc_cfg), "/r")


# --- devices -----------------------------------------------------------------------------------
def test_linux_devices_override_defaults_and_append(runc_cfg):
    runc_cfg["linux"]["devices"] = [
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 0, "gid": 0},
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666, "uid": 0, "gid": 0},
        {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
        {"path": "/dev/ttyunbuf", "type": "u", "major": 4, "minor": 1},
        {"path": "/dev/pipe", "type": "p"},
    ]
    nodes = [s.node for s in rootfs.plan(spec_of(runc_cfg), "/r") if isinstance(s, rootfs.MakeDevice)]
    paths_ = [n.path for n in nodes]
    assert paths_.count("/dev/null") == 1
    assert paths_[-5:] == ["/dev/null", "/dev/fuse", "/dev/sda", "/dev/ttyunbuf", "/dev/pipe"]
    null = [n for n in nodes if n.path == "/dev/null"][0]
    assert null.file_mode == 0o600
    sda = [n for n in nodes if n.path == "/dev/sda"][0]
    assert sda.file_mode == 0o666 and sda.st_type == 0o060000 and sda.rdev == os.makedev(8, 0)
    assert [n for n in nodes if n.path == "/dev/ttyunbuf"][0].st_type == 0o020000
    pipe = [n for n in nodes if n.path == "/dev/pipe"][0]
    assert pipe.st_type == 0o010000 and pipe.rdev == 0


def test_bad_device_type():
    with pytest.raises(ValueError):
        devices.plan_devices({"devices": [{"path": "/dev/x", "type": "z", "major": 1, "minor": 1}]})
    with pytest.raises(ValueError):
        devices.plan_devices({"devices": [{"path": "/dev/x", "type": "c"}]})


# --- bind mounts and destinations ----------------------------------------------------------------
def test_bind_sources_relative_to_bundle(runc_cfg):
    runc_cfg["mounts"].append({"destination": "data", "source": "hostdata", "options": ["rbind", "ro"]})
    runc_cfg["mounts"].append({"destination": "/abs", "type": "bind", "source": "/srv/x/../y"})
    d = by_dest(rootfs.plan(spec_of(runc_cfg), "/r", bundle="/bundle"))
    assert d["/data"].source == "/bundle/hostdata" and d["/data"].kind == "bind"
    assert d["/data"].flags == sc.MS_BIND | sc.MS_REC | sc.MS_RDONLY
    # type "bind" alone is a (non-recursive) bind
    assert d["/abs"].source == "/srv/y" and d["/abs"].flags == sc.MS_BIND


def test_destinations_are_cleaned():
    cfg = {"ociVersion": "1.3.0", "mounts": [{"destination": "/a/../b//c/.", "type": "tmpfs", "source": "tmpfs"}]}
    assert mount_steps(rootfs.plan(spec_of(cfg), "/r"))[0].destination == "/b/c"
    cfg = {"ociVersion": "1.3.0", "mounts": [{"destination": "../../../etc", "type": "tmpfs", "source": "tmpfs"}]}
    assert mount_steps(rootfs.plan(spec_of(cfg), "/r"))[0].destination == "/etc"


@pytest.mark.parametrize("dest,kind,ok", [
    ("/proc", "proc", True),
    ("/proc", "fs", False),
    ("/proc", "bind", False),
    ("/proc/cpuinfo", "bind", True),
    ("/proc/meminfo", "bind", True),
    ("/proc/sys/kernel/core_pattern", "bind", False),
    ("/proc/self/attr", "bind", False),
    ("/proc/sysrq-trigger", "fs", False),
    ("/procfoo", "bind", True),
    ("/sys", "sysfs", True),
])
def test_proc_destinations(dest, kind, ok):
    if ok:
        rootfs.check_proc_destination(dest, kind)
    else:
        with pytest.raises(ValueError):
            rootfs.check_proc_destination(dest, kind)


def test_proc_escape_is_refused_by_plan():
    cfg = {"ociVersion": "1.3.0", "mounts": [{"destination": "/proc/../proc/sys/kernel/core_pattern", "source": "/tmp/x", "options": ["bind"]}]}
    with pytest.raises(ValueError, match="inside /proc"):
        rootfs.plan(spec_of(cfg), "/r")


def test_idmapped_mount_plan():
    maps = [{"containerID": 0, "hostID": 12345, "size": 1}]
    cfg = {"ociVersion": "1.3.0", "mounts": [
        {"destination": "/a", "source": "/tmp", "options": ["rbind", "idmap"], "uidMappings": maps, "gidMappings": maps},
        {"destination": "/b", "source": "/tmp", "options": ["rbind", "ridmap"], "uidMappings": maps, "gidMappings": maps},
        {"destination": "/c", "type": "bind", "source": "/tmp", "uidMappings": maps, "gidMappings": maps},
    ]}
    d = by_dest(rootfs.plan(spec_of(cfg), "/r"))
    assert d["/a"].idmap == rootfs.IdmapSpec(False, ((0, 12345, 1),), ((0, 12345, 1),))
    assert d["/b"].idmap.recursive
    assert d["/c"].idmap is not None and not d["/c"].idmap.recursive
    assert "idmap" not in d["/a"].data


def test_idmap_falls_back_to_the_container_mappings():
    cfg = {"ociVersion": "1.3.0", "mounts": [{"destination": "/x", "source": "/tmp", "options": ["rbind", "idmap"]}],
           "linux": {"uidMappings": [{"containerID": 0, "hostID": 1000, "size": 65536}],
                     "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 65536}]}}
    m = mount_steps(rootfs.plan(spec_of(cfg), "/r"))[0]
    assert m.idmap.uid_mappings == ((0, 1000, 65536),) and m.idmap.gid_mappings == ((0, 2000, 65536),)


@pytest.mark.parametrize("mount,match", [
    ({"destination": "/x", "source": "/tmp", "options": ["rbind", "idmap"]}, "user namespace"),
    ({"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"], "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}], "gidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}, "only supported for bind"),
    ({"destination": "/x", "source": "/tmp", "options": ["rbind", "idmap"], "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}, "together"),
])
def test_idmap_errors(mount, match):
    with pytest.raises(ValueError, match=match):
        rootfs.plan(spec_of({"ociVersion": "1.3.0", "mounts": [mount]}), "/r")


def test_mount_without_type_or_bind_is_refused():
    cfg = {"ociVersion": "1.3.0", "mounts": [{"destination": "/x", "source": "foo"}]}
    with pytest.raises(ValueError, match="mount 0"):
        rootfs.plan(spec_of(cfg), "/r")


def test_recursive_attrs_and_propagation_in_plan():
    cfg = {"ociVersion": "1.3.0", "mounts": [{"destination": "/x", "type": "none", "source": "/tmp", "options": ["rbind", "rro", "rslave"]}]}
    m = mount_steps(rootfs.plan(spec_of(cfg), "/r"))[0]
    assert m.opts.rec_attr_set == MOUNT_ATTR_RDONLY and m.opts.propagation == [sc.MS_SLAVE | sc.MS_REC]


def test_mount_label_goes_to_fs_data_only(runc_cfg):
    runc_cfg["mounts"].append({"destination": "/x", "source": "/tmp", "options": ["rbind"]})
    d = by_dest(rootfs.plan(spec_of(runc_cfg), "/r", mount_label="system_u:object_r:container_file_t:s0"))
    assert d["/dev/shm"].data.endswith(',context="system_u:object_r:container_file_t:s0"')
    assert d["/dev/mqueue"].data == 'context="system_u:object_r:container_file_t:s0"'
    assert "context" not in d["/proc"].data and "context" not in d["/sys"].data and "context" not in d["/x"].data


def test_readonly_dev_tmpfs_is_made_readonly_after_devices(runc_cfg):
    runc_cfg["mounts"][1]["options"].append("ro")
    steps = rootfs.plan(spec_of(runc_cfg), "/r")
    assert by_dest(steps)["/dev"].readonly_later
    assert isinstance(steps[-1], rootfs.RemountReadonly) and steps[-1].destination == "/dev"


# --- engine corpus --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(os.path.basename(p) for p in glob.glob(os.path.join(CORPUS, "*config.json"))))
def test_engine_configs_plan(name):
    cfg = load(name)
    steps = rootfs.plan(spec_of(cfg), "/r", bundle="/bundle")
    ms = mount_steps(steps)
    assert [m.destination for m in ms] == [paths.clean(m["destination"]) for m in cfg["mounts"]]
    for m, raw in zip(ms, cfg["mounts"]):
        opts = raw.get("options") or []
        if "bind" in opts or "rbind" in opts or raw.get("type") == "bind":
            assert m.kind == "bind" and os.path.isabs(m.source)
        known = set(mountopts.FLAG_OPTIONS) | set(mountopts.PROPAGATION_OPTIONS) | set(mountopts.RECURSIVE_OPTIONS)
        data = m.data.split(",") if m.data else []
        assert data == [o for o in opts if o not in known], raw
    assert any(isinstance(s, rootfs.MakeDevice) for s in steps)
    fin = rootfs.finish_plan(spec_of(cfg))
    masked = [s.path for s in fin if isinstance(s, rootfs.MaskPath)]
    assert masked == [paths.clean(p) for p in cfg.get("linux", {}).get("maskedPaths", [])]
    if cfg.get("root", {}).get("readonly"):
        assert any(isinstance(s, rootfs.RootReadonly) for s in fin)


def test_podman_plan_details():
    d = by_dest(rootfs.plan(spec_of(load("podman-run-d.config.json")), "/r"))
    assert d["/dev/shm"].kind == "bind"
    assert d["/dev/shm"].flags == sc.MS_BIND | sc.MS_NOSUID | sc.MS_NOEXEC | sc.MS_NODEV
    assert d["/dev/shm"].opts.propagation == [sc.MS_PRIVATE | sc.MS_REC]
    assert d["/sys/fs/cgroup"].kind == "cgroup" and d["/sys/fs/cgroup"].flags & sc.MS_RDONLY


def test_rootless_sys_is_a_bind():
    d = by_dest(rootfs.plan(spec_of(load("runc-spec-rootless.config.json")), "/r"))
    assert d["/sys"].kind == "bind" and d["/sys"].source == "/sys"
    assert d["/sys"].flags == sc.MS_BIND | sc.MS_REC | sc.MS_NOSUID | sc.MS_NOEXEC | sc.MS_NODEV | sc.MS_RDONLY


# --- finish plan -------------------------------------------------------------------------------------
def test_finish_plan_order(runc_cfg):
    runc_cfg["root"]["readonly"] = True
    fin = rootfs.finish_plan(spec_of(runc_cfg))
    kinds = [type(s).__name__ for s in fin]
    n_mask = len(runc_cfg["linux"]["maskedPaths"])
    n_ro = len(runc_cfg["linux"]["readonlyPaths"])
    assert kinds == ["MaskPath"] * n_mask + ["ReadonlyPath"] * n_ro + ["RootReadonly"]


# --- cgroup layout ----------------------------------------------------------------------------------
def test_cgroup_v1_layout_binds():
    layout = rootfs.cgroup_v1_layout(
        {"memory": "/sys/fs/cgroup/memory/a/b", "cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/a/b", "name=systemd": "/sys/fs/cgroup/systemd/a/b", "unified": "/sys/fs/cgroup/unified/a/b"},
        new_cgroupns=False,
    )
    by = {s.name: s for s in layout}
    assert set(by) == {"memory", "cpu,cpuacct", "systemd", "unified"}
    assert by["memory"].host_dir == "/sys/fs/cgroup/memory/a/b" and not by["memory"].fresh
    assert sorted(by["cpu,cpuacct"].symlinks) == ["cpu", "cpuacct"]
    assert by["unified"].fstype == "cgroup2"


def test_cgroup_v1_layout_fresh_mounts_in_cgroupns():
    layout = rootfs.cgroup_v1_layout({"memory": "/x", "systemd": "/y", "name=foo": "/z", "unified": "/u"}, new_cgroupns=True)
    by = {s.name: s for s in layout}
    assert all(s.fresh for s in layout)
    assert by["memory"].host_dir == "/x"  # kept for the bind fallback
    assert (by["memory"].fstype, by["memory"].data) == ("cgroup", "memory")
    assert by["systemd"].data == "name=systemd" and by["foo"].data == "name=foo"
    assert by["unified"].fstype == "cgroup2"


# --- paths (pure helpers) -------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,clean", [("/", "/"), ("", "/"), ("a/b", "/a/b"), ("/a/../../b", "/b"), ("/a/./b/", "/a/b"), ("//a//b", "/a/b")])
def test_clean(raw, clean):
    assert paths.clean(raw) == clean


def test_split_parent():
    assert paths.split_parent("/dev/null") == ("/dev", "null")
    assert paths.split_parent("/x") == ("/", "x")
    with pytest.raises(ValueError):
        paths.split_parent("/")


def test_paths_resolve_inside_a_root_unprivileged():
    """openat2(RESOLVE_IN_ROOT) needs no privilege: check symlink confinement here too."""
    with tempfile.TemporaryDirectory(prefix="ocipy-paths-") as d:
        _check_confinement(pathlib.Path(d))


def _check_confinement(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "abs").symlink_to(str(outside))
    (root / "rel").symlink_to("../../../../" + str(outside).lstrip("/"))
    (root / "dangling").symlink_to(str(outside / "newdir"))
    rfd = paths.open_root(str(root))
    try:
        for link in ("abs", "rel"):
            fd = paths.mkdir_all_in_root(rfd, f"/{link}/made/here")
            os.close(fd)
        fd = paths.mkdir_all_in_root(rfd, "/dangling/x")
        os.close(fd)
        fd = paths.create_file_in_root(rfd, "/abs/file")
        os.close(fd)
        assert os.listdir(outside) == []
        inside = root / str(outside).lstrip("/")
        assert (inside / "made" / "here").is_dir()
        assert (inside / "newdir" / "x").is_dir()
        assert (inside / "file").is_file()
        for link in ("abs", "rel"):  # all there now: found in one resolution, still inside
            fd = paths.mkdir_all_in_root(rfd, f"/{link}/made/here")
            assert os.path.samestat(os.fstat(fd), os.stat(inside / "made" / "here"))
            os.close(fd)
        (outside / "made" / "here").mkdir(parents=True)  # a twin outside must not be what is found
        fd = paths.mkdir_all_in_root(rfd, "/abs/made/here")
        assert os.path.samestat(os.fstat(fd), os.stat(inside / "made" / "here"))
        os.close(fd)
        fd = paths.open_in_root(rfd, "/abs", nofollow=True)
        assert stat.S_ISLNK(os.fstat(fd).st_mode)  # the link itself, not its target
        os.close(fd)
        with pytest.raises(OSError):
            paths.open_in_root(rfd, "/dangling/../../nothing-here")
    finally:
        os.close(rfd)


def test_normalize_cgroup_paths_groups_comounted_controllers():
    mounts = [
        {"mountpoint": "/sys/fs/cgroup/cpu,cpuacct", "fstype": "cgroup", "super": "rw,cpu,cpuacct"},
        {"mountpoint": "/sys/fs/cgroup/memory", "fstype": "cgroup", "super": "rw,memory"},
        {"mountpoint": "/sys/fs/cgroup/systemd", "fstype": "cgroup", "super": "rw,xattr,name=systemd"},
        {"mountpoint": "/sys/fs/cgroup/unified", "fstype": "cgroup2", "super": "rw,nsdelegate"},
    ]
    given = {
        "cpu": "/sys/fs/cgroup/cpu,cpuacct/a/b",
        "cpuacct": "/sys/fs/cgroup/cpu,cpuacct/a/b",
        "memory": "/sys/fs/cgroup/memory/a/b",
        "systemd": "/sys/fs/cgroup/systemd/a/b",
        "unified": "/sys/fs/cgroup/unified/a/b",
    }
    norm = rootfs.normalize_cgroup_paths(given, mounts)
    assert norm == {
        "cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/a/b",
        "memory": "/sys/fs/cgroup/memory/a/b",
        "name=systemd": "/sys/fs/cgroup/systemd/a/b",
        "unified": "/sys/fs/cgroup/unified/a/b",
    }
    names = sorted(s.name for s in rootfs.cgroup_v1_layout(norm, new_cgroupns=True))
    assert names == ["cpu,cpuacct", "memory", "systemd", "unified"]


def test_unbindable_root_is_applied_only_after_pivot(runc_cfg):
    runc_cfg["linux"]["rootfsPropagation"] = "unbindable"
    assert rootfs.plan(spec_of(runc_cfg), "/r")[0].flags == sc.MS_SLAVE | sc.MS_REC
    assert rootfs.finish_plan(spec_of(runc_cfg))[-1].flags == sc.MS_UNBINDABLE


def test_only_linux_devices_are_strict(runc_cfg):
    runc_cfg["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    nodes = {s.node.path: s.node for s in rootfs.plan(spec_of(runc_cfg), "/r") if isinstance(s, rootfs.MakeDevice)}
    assert nodes["/dev/fuse"].strict and not nodes["/dev/null"].strict


def test_infer_bundle():
    assert rootfs.infer_bundle({"root": {"path": "rootfs"}}, "/b/x/rootfs") == "/b/x"
    assert rootfs.infer_bundle({"root": {"path": "./a/rootfs/"}}, "/b/x/a/rootfs") == "/b/x"
    assert rootfs.infer_bundle({"root": {"path": "/abs/rootfs"}}, "/abs/rootfs") == os.getcwd()
    assert rootfs.infer_bundle({"root": {"path": "rootfs"}}, "/elsewhere/other") == os.getcwd()

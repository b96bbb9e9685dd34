"""ocipy.spec: typed views over the engines' configs and the spec's examples."""

import json
import re
from pathlib import Path

import pytest

from ocipy.record import Record
from ocipy.spec import (
    Capabilities, Device, Hook, IDMapping, IOPriority, Linux, Mount, Namespace, Process, Rlimit, Root, Spec, User,
)

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "engines"
SPEC_GOOD = SHARED / "reference" / "runtime-spec-v1.3.0" / "schema" / "test" / "config" / "good"

# Parts of the config the views keep as plain dicts (compared as data, not walked).
RAW = {"resources", "seccomp", "intel_rdt", "sysctl", "net_devices", "time_offsets", "annotations", "raw"}


def _load(path: Path) -> dict:
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return json.loads(path.read_text())


def _files(directory: Path, pattern: str) -> list:
    if not directory.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{directory} is missing"))]
    return [pytest.param(p, id=p.name) for p in sorted(directory.glob(pattern))]


def snake(key: str) -> str:
    """The naming rule: camelCase JSON key -> snake_case attribute (`class` -> `class_`)."""
    key = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", key)
    key = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()
    return "class_" if key == "class" else key


def test_snake_rule():
    assert snake("noNewPrivileges") == "no_new_privileges"
    assert snake("containerID") == "container_id"
    assert snake("execCPUAffinity") == "exec_cpu_affinity"
    assert snake("createRuntime") == "create_runtime"
    assert snake("oomScoreAdj") == "oom_score_adj"


def assert_mirrors(view, data, where="spec"):
    """Every JSON key of a typed object is an attribute named by the rule, holding the same data."""
    assert isinstance(view, Record), where
    for key, value in data.items():
        name = snake(key)
        if key in ("windows", "solaris", "vm", "zos", "freebsd") and where == "spec":
            continue  # other platforms have no view
        assert hasattr(view, name), f"{where}.{name} is missing (JSON key {key!r})"
        attr = getattr(view, name)
        if name in RAW or name in ("env", "args", "options", "masked_paths", "readonly_paths", "additional_gids"):
            assert attr == value, f"{where}.{name}"
        elif isinstance(value, dict):
            assert_mirrors(attr, value, f"{where}.{name}")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            assert len(attr) == len(value), f"{where}.{name}"
            for i, (item_view, item) in enumerate(zip(attr, value)):
                assert_mirrors(item_view, item, f"{where}.{name}[{i}]")
        else:
            assert attr == value, f"{where}.{name}"


@pytest.mark.parametrize("path", _files(CORPUS, "*config.json"))
def test_corpus_config_views_mirror_the_json(path):
    config = json.loads(path.read_text())
    spec = Spec.from_dict(config)
    assert spec.raw is config
    assert_mirrors(spec, config)


@pytest.mark.parametrize("path", _files(SPEC_GOOD, "*.json"))
def test_spec_example_views_mirror_the_json(path):
    config = json.loads(path.read_text())
    assert_mirrors(Spec.from_dict(config), config)


@pytest.mark.parametrize("path", _files(CORPUS, "*process.json"))
def test_corpus_process_views(path):
    data = json.loads(path.read_text())
    process = Process.from_dict(data)
    assert_mirrors(process, data, "process")
    assert process.args and process.cwd.startswith("/")


def test_docker_run_config():
    config = _load(CORPUS / "docker-run-d.config.json")
    spec = Spec.from_dict(config)
    assert spec.oci_version == config["ociVersion"]
    assert isinstance(spec.root, Root) and spec.root.readonly is False
    assert spec.process.user == User(uid=0, gid=0, umask=None, additional_gids=[0])
    assert spec.process.terminal is False and spec.process.console_size is None
    assert spec.process.oom_score_adj == 0
    assert "CAP_KILL" in spec.process.capabilities.bounding
    assert spec.process.rlimits == []
    assert spec.hooks.prestart[0].path.startswith("/proc/") and spec.hooks.prestart[0].args[0] == "libnetwork-setkey"
    assert spec.hooks.poststop == [] and spec.hooks.create_runtime == []
    assert spec.linux.namespace("network") == Namespace(type="network", path=None)
    assert spec.linux.namespace("user") is None
    assert spec.linux.resources["devices"][0] == {"allow": False, "access": "rwm"}
    assert spec.linux.sysctl["net.ipv4.ip_unprivileged_port_start"] == "0"
    assert spec.linux.seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    assert spec.linux.cgroups_path == config["linux"]["cgroupsPath"]
    assert "/proc/kcore" in spec.linux.masked_paths
    assert spec.linux.uid_mappings == [] and spec.linux.time_offsets == {} and spec.linux.net_devices == {}
    assert spec.linux.personality is None and spec.linux.intel_rdt is None
    assert spec.annotations == {}
    assert spec.mounts[-1] == Mount(
        destination="/etc/hosts", type="bind", source=config["mounts"][-1]["source"], options=["rbind", "rprivate"]
    )


def test_rootless_config_mappings():
    spec = Spec.from_dict(_load(CORPUS / "runc-spec-rootless.config.json"))
    host_id = spec.raw["linux"]["uidMappings"][0]["hostID"]
    assert spec.linux.uid_mappings == [IDMapping(container_id=0, host_id=host_id, size=1)]
    assert spec.linux.namespace("user") == Namespace("user")
    assert spec.linux.namespace("network") is None
    assert spec.linux.resources is None
    assert spec.mounts[0].options == []
    assert spec.process.no_new_privileges is True
    assert spec.process.rlimits == [Rlimit(type="RLIMIT_NOFILE", soft=1024, hard=1024)]


def test_podman_config():
    config = _load(CORPUS / "podman-run-t.config.json")
    spec = Spec.from_dict(config)
    assert spec.process.terminal is True
    assert spec.annotations == config["annotations"]
    assert spec.hostname == config["hostname"]
    assert spec.linux.resources["pids"] == {"limit": 2048}


def test_spec_example_fields():
    spec = Spec.from_dict(_load(SPEC_GOOD / "spec-example.json"))
    assert spec.process.io_priority is None
    assert spec.process.capabilities.ambient == ["CAP_NET_BIND_SERVICE"]
    assert spec.linux.devices[0] == Device(type="c", path="/dev/fuse", major=10, minor=229, file_mode=438, uid=0, gid=0)
    assert spec.linux.time_offsets["monotonic"] == {"secs": 172800, "nanosecs": 0}
    assert spec.linux.rootfs_propagation == "slave"
    assert spec.hooks.poststart == [Hook(path="/usr/bin/notify-start", timeout=5)]
    assert spec.linux.namespace("time") == Namespace("time")


def test_optional_parts_and_defaults():
    spec = Spec.from_dict({"ociVersion": "1.3.0", "root": {"path": "rootfs"}})
    assert spec.process is None and spec.linux is None and spec.hostname is None
    assert spec.mounts == [] and spec.annotations == {}
    assert spec.hooks.prestart == [] and spec.hooks.start_container == []

    process = Process.from_dict({"cwd": "/"})
    assert process.user == User(uid=0, gid=0)
    assert process.args == [] and process.env == [] and process.capabilities is None
    assert process.no_new_privileges is False and process.oom_score_adj is None

    linux = Linux.from_dict({})
    assert linux.namespaces == [] and linux.sysctl == {} and linux.resources is None
    assert linux.namespace("pid") is None


def test_less_common_objects():
    config = {
        "ociVersion": "1.3.0",
        "process": {
            "cwd": "/",
            "args": ["sh"],
            "consoleSize": {"height": 25, "width": 80},
            "user": {"uid": 1, "gid": 2, "umask": 18, "additionalGids": [5]},
            "scheduler": {"policy": "SCHED_FIFO", "priority": 10, "flags": ["SCHED_FLAG_RESET_ON_FORK"]},
            "execCPUAffinity": {"initial": "7", "final": "0-3,7"},
            "capabilities": {"bounding": ["CAP_KILL"]},
            "apparmorProfile": "p",
            "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 4},
            "selinuxLabel": "l",
        },
        "linux": {
            "netDevices": {"eth0": {"name": "ctr0"}},
            "intelRdt": {"closID": "g"},
            "memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0-1"},
            "personality": {"domain": "LINUX32"},
            "mountLabel": "m",
        },
    }
    spec = Spec.from_dict(config)
    assert_mirrors(spec, config)
    p = spec.process
    assert (p.console_size.height, p.console_size.width) == (25, 80)
    assert p.user.umask == 18 and p.user.additional_gids == [5]
    assert p.scheduler.policy == "SCHED_FIFO" and p.scheduler.nice is None
    assert p.exec_cpu_affinity.final == "0-3,7"
    assert p.io_priority == IOPriority(class_="IOPRIO_CLASS_IDLE", priority=4)
    assert p.capabilities == Capabilities(bounding=["CAP_KILL"])
    assert spec.linux.net_devices == {"eth0": {"name": "ctr0"}}
    assert spec.linux.memory_policy.flags == []
    assert spec.linux.personality.flags == []
    assert spec.root is None


def test_records_behave_as_the_dataclasses_they_replace():
    a = Mount("/x", "tmpfs")
    assert a == Mount(destination="/x", type="tmpfs", source=None, options=[])
    assert a.options == [] and a.options is not Mount("/y").options  # a fresh default each time
    assert repr(a) == "Mount(destination='/x', type='tmpfs', source=None, options=[], uid_mappings=[], gid_mappings=[])"
    assert Root("r") != Namespace("r") and Namespace("net") != ("net", None)
    with pytest.raises(TypeError):
        hash(a)  # mutable, so unhashable
    a.source = "tmpfs"
    assert a._replace(type=None) == Mount("/x", None, "tmpfs") and a.type == "tmpfs"
    for bad in (lambda: Mount(), lambda: Mount("/x", destination="/y"), lambda: Mount("/x", bogus=1),
                lambda: Namespace("a", "b", "c")):
        with pytest.raises(TypeError):
            bad()
    spec = Spec.from_dict({"ociVersion": "1.3.0"})
    assert "raw=" not in repr(spec) and spec.raw == {"ociVersion": "1.3.0"}


def test_frozen_and_tuple_records():
    from ocipy.linux.cgroups.resources import Write
    from ocipy.linux.devices import DeviceNode

    node = DeviceNode("/dev/null", "c", 1, 3)
    with pytest.raises(AttributeError):
        node.major = 2
    assert hash(node) == hash(DeviceNode("/dev/null", "c", 1, 3)) and node._replace(minor=5).minor == 5
    w = Write("cpu", "cpu.shares", "2", "f")
    assert w == ("cpu", "cpu.shares", "2", "f", False, None, False) and w.field == "f" and w[1] == "cpu.shares"
    assert sorted([w._replace(controller="z"), w])[0] is w
    assert repr(w) == "Write(controller='cpu', filename='cpu.shares', value='2', field='f', optional=False, fallback=None, verify=False)"


def test_hooks_are_false_unless_one_is_configured():
    from ocipy.spec import Spec

    base = {"ociVersion": "1.3.0", "root": {"path": "rootfs"}}
    assert not Spec.from_dict(base).hooks
    assert not Spec.from_dict({**base, "hooks": {"prestart": []}}).hooks
    assert Spec.from_dict({**base, "hooks": {"poststop": [{"path": "/bin/true"}]}}).hooks


def test_runtime_steps_before_pivot_only_for_prestart_createruntime_hooks_or_net_devices():
    """Both sides of create skip their "hooks" exchange when this is false: any hook kind the
    runtime runs at that moment, or a netDevices entry, must make it true."""
    base = {"ociVersion": "1.3.0", "root": {"path": "rootfs"}, "linux": {}}
    hook = [{"path": "/bin/true"}]
    assert not Spec.from_dict(base).runtime_steps_before_pivot()
    assert not Spec.from_dict({"ociVersion": "1.3.0"}).runtime_steps_before_pivot()
    for kind in ("createContainer", "startContainer", "poststart", "poststop"):
        assert not Spec.from_dict({**base, "hooks": {kind: hook}}).runtime_steps_before_pivot(), kind
    for kind in ("prestart", "createRuntime"):
        assert Spec.from_dict({**base, "hooks": {kind: hook}}).runtime_steps_before_pivot(), kind
    assert Spec.from_dict({**base, "linux": {"netDevices": {"eth1": {}}}}).runtime_steps_before_pivot()

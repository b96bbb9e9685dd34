"""ocipy.bundle: schemas against the spec's own test files and the engines' corpus, one test per semantic rule."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocipy import bundle
from ocipy.bundle import (
    load_config, load_spec, require_process, schema_problems, validate_config, validate_features,
    validate_process, validate_resources, validate_state,
)
from ocipy.errors import ConfigError
from ocipy.linux.capnames import CAPABILITIES

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SPEC_TESTS = SHARED / "reference" / "runtime-spec-v1.3.0" / "schema" / "test"
CORPUS = SHARED / "corpus" / "engines"


def _files(directory: Path, pattern: str = "*.json") -> list:
    """Test parameters for the files of a shared directory, or one skipped parameter naming it."""
    if not directory.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{directory} is missing"))]
    return [pytest.param(p, id=p.name) for p in sorted(directory.glob(pattern))]


def _problems(excinfo) -> list[str]:
    return str(excinfo.value).splitlines()


# --- The spec's schema tests -----------------------------------------------------------------

# Good examples that ocipy's semantic checks refuse on purpose, with the rule that refuses them.
REFUSED_GOOD = {
    # netDevices are moved into the container's network namespace; without one they would stay on the host.
    "linux-netdevice.json": ["config.json: /linux/netDevices: needs a network namespace in /linux/namespaces"],
}


@pytest.mark.parametrize("path", _files(SPEC_TESTS / "config" / "good"))
def test_spec_good_configs_pass_the_schema(path):
    config = json.loads(path.read_text())
    assert schema_problems(config, "config-schema.json", "config.json") == []
    if path.name in REFUSED_GOOD:
        with pytest.raises(ConfigError) as excinfo:
            validate_config(config)
        assert _problems(excinfo) == REFUSED_GOOD[path.name]
    else:
        # Non-Linux examples (freebsd, zos) get the platform-neutral semantic checks only.
        validate_config(config)


@pytest.mark.parametrize("path", _files(SPEC_TESTS / "config" / "bad"))
def test_spec_bad_configs_fail(path):
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError:
        return  # invalid-json.json: not JSON at all, see test_invalid_json_is_reported
    assert schema_problems(config, "config-schema.json", "config.json") != []
    with pytest.raises(ConfigError):
        validate_config(config)


@pytest.mark.parametrize("path", _files(SPEC_TESTS / "state" / "good"))
def test_spec_good_states(path):
    validate_state(json.loads(path.read_text()))


@pytest.mark.parametrize("path", _files(SPEC_TESTS / "state" / "bad"))
def test_spec_bad_states(path):
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError:
        return
    with pytest.raises(ConfigError):
        validate_state(state)


@pytest.mark.parametrize("path", _files(SPEC_TESTS / "features" / "good"))
def test_spec_good_features(path):
    validate_features(json.loads(path.read_text()))


@pytest.mark.parametrize("path", _files(SPEC_TESTS / "features" / "bad"))
def test_spec_bad_features(path):
    with pytest.raises(ConfigError):
        validate_features(json.loads(path.read_text()))


def test_bad_spec_examples_explained():
    path = SPEC_TESTS / "config" / "bad" / "linux-hugepage.json"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    with pytest.raises(ConfigError) as excinfo:
        validate_config(json.loads(path.read_text()))
    assert _problems(excinfo) == [
        'config.json: /linux/resources/hugepageLimits/0/pageSize: "64kB" does not match ^[1-9][0-9]*[KMG]B$'
    ]


# --- The engines' corpus ---------------------------------------------------------------------


@pytest.mark.parametrize("path", _files(CORPUS, "*config.json"))
def test_corpus_configs_validate(path):
    validate_config(json.loads(path.read_text()))


@pytest.mark.parametrize("path", _files(CORPUS, "*process.json"))
def test_corpus_processes_validate(path):
    validate_process(json.loads(path.read_text()))


@pytest.mark.parametrize("path", _files(CORPUS, "*resources*.json"))
def test_corpus_resources_validate(path):
    validate_resources(json.loads(path.read_text()))


@pytest.mark.parametrize("path", _files(CORPUS, "runc-features.json"))
def test_corpus_features_validate(path):
    validate_features(json.loads(path.read_text()))


@pytest.mark.parametrize("path", _files(CORPUS, "podman-state.stdout.json"))
def test_corpus_state_validates(path):
    validate_state(json.loads(path.read_text()))


# --- Loading ---------------------------------------------------------------------------------


def _config(**changes) -> dict:
    """A small valid Linux config; keyword arguments replace top-level keys."""
    config = {
        "ociVersion": "1.3.0",
        "root": {"path": "rootfs"},
        "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]},
        "hostname": "box",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}]},
    }
    config.update(changes)
    return config


def _linux(**changes) -> dict:
    config = _config()
    config["linux"].update(changes)
    return config


def _refused(config: dict, bundle_dir=None) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        validate_config(config, None if bundle_dir is None else str(bundle_dir))
    return _problems(excinfo)


def test_small_config_is_valid():
    validate_config(_config())


def test_load_spec(tmp_path):
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "config.json").write_text(json.dumps(_config()))
    spec = load_spec(str(tmp_path))
    assert spec.process.args == ["sh"]
    assert spec.root.path == "rootfs"


def test_missing_config_is_reported(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load_config(str(tmp_path))
    assert str(excinfo.value) == f"config.json: {tmp_path / 'config.json'}: no such file or directory"


def test_invalid_json_is_reported(tmp_path):
    (tmp_path / "config.json").write_text('{\n  "ociVersion": "1.3.0",\n    "root" {}\n}')
    with pytest.raises(ConfigError) as excinfo:
        load_config(str(tmp_path))
    assert str(excinfo.value) == "config.json: invalid JSON at line 3 column 12: Expecting ':' delimiter"


def test_every_problem_is_listed_one_per_line():
    config = _config()
    config["process"]["cwd"] = "tmp"
    config["process"]["capabilities"] = {"bounding": ["CAP_KILL", "CAP_FOO"]}
    config["mounts"][0]["destination"] = "proc"
    del config["ociVersion"]
    assert _refused(config) == [
        "config.json: /ociVersion: is required",
        'config.json: /process/cwd: "tmp" must be an absolute path',
    ]


# --- Schema messages -------------------------------------------------------------------------


def test_schema_type_message():
    config = _config()
    config["process"]["terminal"] = "yes"
    assert _refused(config) == ['config.json: /process/terminal: "yes" is not a boolean']


def test_schema_enum_message():
    assert _refused(_linux(rootfsPropagation="sideways"))[0].startswith(
        'config.json: /linux/rootfsPropagation: "sideways" is not one of "shared", "slave"'
    )


def test_schema_minimum_message():
    config = _config()
    config["process"]["user"]["uid"] = -1
    assert _refused(config) == ["config.json: /process/user/uid: -1 is less than the minimum 0"]


def test_schema_oci_version_is_semver():
    assert _refused(_config(ociVersion="1.0")) == [
        'config.json: /ociVersion: "1.0" does not match '
        + json.loads((REPO / "schemas" / "defs.json").read_text())["$defs"]["ociVersion"]["pattern"]
    ]


def test_schema_device_numbers_required_unless_fifo():
    config = _linux(devices=[{"type": "c", "path": "/dev/fuse"}, {"type": "p", "path": "/dev/fifo"}])
    assert _refused(config) == [
        "config.json: /linux/devices/0/major: is required",
        "config.json: /linux/devices/0/minor: is required",
    ]


def test_schema_rdma_needs_one_limit():
    config = _linux(resources={"rdma": {"mlx5_1": {}}})
    assert _refused(config) == [
        'config.json: /linux/resources/rdma/mlx5_1: must set at least one of "hcaHandles", "hcaObjects"'
    ]


def test_schema_listener_metadata_needs_listener_path():
    config = _linux(seccomp={"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"})
    assert _refused(config) == ['config.json: /linux/seccomp/listenerMetadata: needs "listenerPath" to be set']


def test_schema_annotation_keys_not_empty():
    assert _refused(_config(annotations={"": "x"})) == ['config.json: /annotations: key "": must not be empty']


def test_schema_hook_timeout_positive():
    config = _config(hooks={"poststart": [{"path": "/bin/true", "timeout": 0}]})
    assert _refused(config) == ["config.json: /hooks/poststart/0/timeout: 0 is less than the minimum 1"]


def test_schema_unknown_properties_are_ignored():
    validate_config(_config(x_vendor={"anything": 1}))


def test_features_nulls_allowed_but_types_checked():
    validate_features({"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "hooks": None, "linux": {"cgroup": None}})
    with pytest.raises(ConfigError) as excinfo:
        validate_features({"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "linux": {"namespaces": ["bogus"]}})
    assert str(excinfo.value).startswith('features.json: /linux/namespaces/0: "bogus" is not one of')


def test_features_only_defined_properties():
    features = {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "bogus": 1, "linux": {"cgroup": {"v3": True}}}
    with pytest.raises(ConfigError) as excinfo:
        validate_features(features)
    assert _problems(excinfo) == [
        "features.json: /bogus: is not a property the spec defines here",
        "features.json: /linux/cgroup/v3: is not a property the spec defines here",
    ]


def test_state_needs_pid_when_running():
    state = {"ociVersion": "1.3.0", "id": "c1", "status": "running", "bundle": "/b"}
    with pytest.raises(ConfigError) as excinfo:
        validate_state(state)
    assert str(excinfo.value) == "state.json: /pid: is required"
    validate_state({**state, "status": "stopped"})
    with pytest.raises(ConfigError) as excinfo:
        validate_state({"ociVersion": "1.3.0", "id": "c1", "bundle": "/b"})
    assert str(excinfo.value) == "state.json: /status: is required"


# --- Semantic rules, one test each -----------------------------------------------------------


def test_root_required():
    config = _config()
    del config["root"]
    assert _refused(config) == ["config.json: /root: is required"]


def test_root_path_not_empty():
    assert _refused(_config(root={"path": ""})) == ["config.json: /root/path: must not be empty"]


def test_root_path_must_exist_in_bundle(tmp_path):
    assert _refused(_config(), tmp_path) == [
        f'config.json: /root/path: "rootfs" does not exist ({tmp_path / "rootfs"})'
    ]
    (tmp_path / "rootfs").write_text("")
    assert _refused(_config(), tmp_path) == [
        f'config.json: /root/path: "rootfs" is not a directory ({tmp_path / "rootfs"})'
    ]


def test_root_path_absolute_or_relative_to_bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    validate_config(_config(), str(tmp_path))
    validate_config(_config(root={"path": str(tmp_path / "rootfs")}), "/nonexistent")


def test_mount_destination_may_be_relative():
    """config.md: on Linux a relative destination is deprecated but allowed, read as relative to "/"."""
    config = _config(mounts=[{"destination": "/dev"}, {"destination": "proc", "type": "proc"}])
    assert validate_config(config) == []


def test_mount_mappings_go_together():
    mapping = [{"containerID": 0, "hostID": 1000, "size": 10}]
    config = _config(mounts=[{"destination": "/data", "source": "/d", "options": ["bind", "idmap"],
                              "uidMappings": mapping}])
    assert _refused(config) == ["config.json: /mounts/0/gidMappings: is required with uidMappings"]


def test_mount_idmap_needs_mappings_or_user_namespace():
    config = _config(mounts=[{"destination": "/data", "source": "/d", "options": ["rbind", "ridmap"]}])
    assert _refused(config) == [
        'config.json: /mounts/0/options/1: "ridmap" needs uidMappings and gidMappings or a user namespace'
    ]


def test_process_cwd_absolute():
    config = _config()
    config["process"]["cwd"] = "home"
    assert _refused(config) == ['config.json: /process/cwd: "home" must be an absolute path']


def test_process_args_not_empty():
    config = _config()
    config["process"]["args"] = []
    assert _refused(config) == ["config.json: /process/args: must have at least one entry"]


def test_process_user_needs_uid_and_gid():
    config = _config()
    config["process"]["user"] = {"uid": 5}
    assert _refused(config) == ["config.json: /process/user/gid: is required"]


def test_process_env_form():
    config = _config()
    config["process"]["env"] = ["PATH=/bin", "JUSTNAME", "=value"]
    assert _refused(config) == [
        'config.json: /process/env/1: "JUSTNAME" is not of the form NAME=value',
        'config.json: /process/env/2: "=value" is not of the form NAME=value',
    ]


def test_process_args_no_nul():
    config = _config()
    config["process"]["args"] = ["sh", "a\0b"]
    assert _refused(config) == ['config.json: /process/args/1: "a\\u0000b" contains a NUL byte']


def test_unknown_capability_is_a_warning():
    """config.md: a capability that cannot be mapped MUST be logged as a warning; SHOULD NOT fail."""
    config = _config()
    config["process"]["capabilities"] = {"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_FOO"], "ambient": ["CAP_BPF"]}
    assert validate_config(config) == ['config.json: /process/capabilities/bounding/2: "CAP_FOO" is not a capability: ignored']


def test_capability_table():
    assert len(CAPABILITIES) == 41
    assert CAPABILITIES["CAP_CHOWN"] == 0
    assert CAPABILITIES["CAP_SYS_ADMIN"] == 21
    assert CAPABILITIES["CAP_CHECKPOINT_RESTORE"] == 40
    assert sorted(CAPABILITIES.values()) == list(range(41))


def test_unknown_rlimit():
    config = _config()
    config["process"]["rlimits"] = [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]
    assert _refused(config) == ['config.json: /process/rlimits/0/type: "RLIMIT_BOGUS" is not an rlimit']


def test_duplicate_rlimit():
    config = _config()
    config["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 10},
    ]
    assert _refused(config) == [
        'config.json: /process/rlimits/2/type: "RLIMIT_NOFILE" is already set at /process/rlimits/0'
    ]


def test_rlimit_soft_above_hard():
    config = _config()
    config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]
    assert _refused(config) == ["config.json: /process/rlimits/0: soft limit 2048 is greater than hard limit 1024"]


def test_oom_score_adj_range():
    config = _config()
    config["process"]["oomScoreAdj"] = 1001
    assert _refused(config) == ["config.json: /process/oomScoreAdj: 1001 is not between -1000 and 1000"]


def test_hook_path_absolute():
    config = _config(hooks={"createRuntime": [{"path": "/bin/true"}, {"path": "hook.sh"}]})
    assert _refused(config) == ['config.json: /hooks/createRuntime/1/path: "hook.sh" must be an absolute path']


def test_duplicate_namespace():
    config = _linux(namespaces=[{"type": "pid"}, {"type": "uts"}, {"type": "pid", "path": "/proc/1/ns/pid"}])
    assert _refused(config) == ['config.json: /linux/namespaces/2/type: "pid" is already listed at /linux/namespaces/0']


def test_namespace_path_absolute():
    config = _linux(namespaces=[{"type": "uts"}, {"type": "network", "path": "run/netns/x"}])
    assert _refused(config) == ['config.json: /linux/namespaces/1/path: "run/netns/x" must be an absolute path']


def _with_user_ns(**mappings) -> dict:
    return _linux(namespaces=[{"type": "uts"}, {"type": "user"}], **mappings)


ONE = [{"containerID": 0, "hostID": 1000, "size": 1000}]


def test_new_user_namespace_needs_mappings():
    assert _refused(_with_user_ns(uidMappings=ONE)) == [
        "config.json: /linux/gidMappings: is required to create a user namespace"
    ]


def test_joined_user_namespace_needs_no_mappings():
    validate_config(_linux(namespaces=[{"type": "uts"}, {"type": "user", "path": "/proc/1/ns/user"}]))


def test_mappings_need_a_user_namespace():
    assert _refused(_linux(uidMappings=ONE, gidMappings=ONE)) == [
        "config.json: /linux/uidMappings: needs a user namespace in /linux/namespaces",
        "config.json: /linux/gidMappings: needs a user namespace in /linux/namespaces",
    ]


def test_overlapping_container_ids():
    uids = [{"containerID": 0, "hostID": 1000, "size": 100}, {"containerID": 50, "hostID": 5000, "size": 10}]
    assert _refused(_with_user_ns(uidMappings=uids, gidMappings=ONE)) == [
        "config.json: /linux/uidMappings/1: containerID range 50-59 overlaps /linux/uidMappings/0"
    ]


def test_overlapping_host_ids():
    gids = [{"containerID": 0, "hostID": 1000, "size": 100}, {"containerID": 100, "hostID": 1099, "size": 1}]
    assert _refused(_with_user_ns(uidMappings=ONE, gidMappings=gids)) == [
        "config.json: /linux/gidMappings/1: hostID range 1099-1099 overlaps /linux/gidMappings/0"
    ]


def test_adjacent_mappings_do_not_overlap():
    uids = [{"containerID": 0, "hostID": 1000, "size": 1}, {"containerID": 1, "hostID": 100000, "size": 65536}]
    validate_config(_with_user_ns(uidMappings=uids, gidMappings=uids))


def test_mapping_size_and_range():
    uids = [{"containerID": 0, "hostID": 1000, "size": 0}, {"containerID": 4294967295, "hostID": 0, "size": 2}]
    assert _refused(_with_user_ns(uidMappings=uids, gidMappings=ONE)) == [
        "config.json: /linux/uidMappings/0/size: must be at least 1",
        "config.json: /linux/uidMappings/1: containerID range 4294967295-4294967296 does not fit in 32 bits",
    ]


def test_time_offsets_need_time_namespace():
    offsets = {"monotonic": {"secs": 10}}
    assert _refused(_linux(timeOffsets=offsets)) == [
        "config.json: /linux/timeOffsets: needs a time namespace in /linux/namespaces"
    ]
    joined = _linux(timeOffsets=offsets, namespaces=[{"type": "uts"}, {"type": "time", "path": "/proc/1/ns/time"}])
    assert _refused(joined) == [
        "config.json: /linux/timeOffsets: cannot be set when joining an existing time namespace"
    ]
    validate_config(_linux(timeOffsets=offsets, namespaces=[{"type": "uts"}, {"type": "time"}]))


def test_time_offsets_clock_names():
    config = _linux(timeOffsets={"realtime": {"secs": 1}}, namespaces=[{"type": "uts"}, {"type": "time"}])
    assert _refused(config) == [
        'config.json: /linux/timeOffsets/realtime: "realtime" is not a clock with a time namespace offset'
        " (monotonic, boottime)"
    ]


def test_hostname_needs_uts_namespace():
    config = _linux(namespaces=[{"type": "pid"}])
    assert _refused(config) == [
        "config.json: /hostname: needs a uts namespace in /linux/namespaces (it would change the host's hostname)"
    ]
    del config["hostname"]
    validate_config(config)


def test_domainname_needs_uts_namespace():
    config = _linux(namespaces=[])
    del config["hostname"]
    config["domainname"] = "example.org"
    assert _refused(config) == [
        "config.json: /domainname: needs a uts namespace in /linux/namespaces (it would change the host's domainname)"
    ]


def test_device_path_absolute():
    config = _linux(devices=[{"type": "c", "path": "dev/fuse", "major": 10, "minor": 229}])
    assert _refused(config) == ['config.json: /linux/devices/0/path: "dev/fuse" must be an absolute path']


def test_masked_and_readonly_paths_absolute():
    config = _linux(maskedPaths=["/proc/kcore", "proc/keys"], readonlyPaths=["sys"])
    assert _refused(config) == [
        'config.json: /linux/maskedPaths/1: "proc/keys" must be an absolute path',
        'config.json: /linux/readonlyPaths/0: "sys" must be an absolute path',
    ]


def test_sysctl_names():
    config = _linux(
        namespaces=[{"type": "uts"}, {"type": "network"}],
        sysctl={
            "net.ipv4.ip_forward": "1",
            "net/ipv4/ping_group_range": "0 0",
            "kernel.shmmax": "1",
            "vm.swappiness": "1",
            "net..x": "1",
            "net/../../etc": "1",
        },
    )
    assert _refused(config) == [
        "config.json: /linux/sysctl/kernel.shmmax: needs a ipc namespace in /linux/namespaces",
        "config.json: /linux/sysctl/vm.swappiness: is not namespaced: setting it would change the host",
        "config.json: /linux/sysctl/net..x: is not a valid sysctl name",
        "config.json: /linux/sysctl/net~1..~1..~1etc: is not a valid sysctl name",
    ]


def test_net_devices_rules():
    config = _linux(netDevices={"eth0": {"name": "a/b"}, "averyveryverylongname": {}})
    assert _refused(config) == [
        "config.json: /linux/netDevices: needs a network namespace in /linux/namespaces",
        'config.json: /linux/netDevices/eth0/name: "a/b": is not a valid interface name',
        'config.json: /linux/netDevices/averyveryverylongname: key "averyveryverylongname": '
        "is not a valid interface name (1 to 15 characters)",
    ]


def test_seccomp_errno_only_with_errno_actions():
    seccomp = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "defaultErrnoRet": 1,
        "syscalls": [
            {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["umount2"], "action": "SCMP_ACT_KILL", "errnoRet": 1},
        ],
    }
    assert _refused(_linux(seccomp=seccomp)) == [
        'config.json: /linux/seccomp/defaultErrnoRet: is not allowed with defaultAction "SCMP_ACT_ALLOW"'
        " (only SCMP_ACT_ERRNO, SCMP_ACT_TRACE)",
        'config.json: /linux/seccomp/syscalls/1/errnoRet: is not allowed with action "SCMP_ACT_KILL"'
        " (only SCMP_ACT_ERRNO, SCMP_ACT_TRACE)",
    ]


def test_wrong_types_do_not_crash_semantic_checks():
    config = _config(mounts="nope", hooks=[], linux={"namespaces": [1, {"type": 3}], "uidMappings": {}})
    config["process"] = {"cwd": 5, "args": "sh", "capabilities": [], "rlimits": [None]}
    problems = _refused(config)
    assert "config.json: /mounts: \"nope\" is not an array" in problems
    assert "config.json: /process/cwd: 5 is not a string" in problems


def test_require_process():
    require_process(_config())
    config = _config()
    del config["process"]
    validate_config(config)
    with pytest.raises(ConfigError) as excinfo:
        require_process(config)
    assert str(excinfo.value) == "config.json: /process: is required to create a container"


# --- validate_process ------------------------------------------------------------------------


def test_validate_process_prefix_and_pointers():
    process = {"cwd": "tmp", "args": ["sh"], "capabilities": {"effective": ["CAP_NOPE"]}}
    with pytest.raises(ConfigError) as excinfo:
        validate_process(process, source="/tmp/runc-process123")
    assert _problems(excinfo) == ['/tmp/runc-process123: /cwd: "tmp" must be an absolute path']
    process["cwd"] = "/tmp"
    assert validate_process(process, source="p.json") == ['p.json: /capabilities/effective/0: "CAP_NOPE" is not a capability: ignored']


def test_validate_process_schema():
    with pytest.raises(ConfigError) as excinfo:
        validate_process({"args": ["sh"]})
    assert _problems(excinfo) == ["process.json: /cwd: is required"]


# --- Lazy imports ----------------------------------------------------------------------------


def test_importing_bundle_and_spec_does_not_load_jsonschema():
    code = (
        "import sys, ocipy.bundle, ocipy.spec\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('jsonschema', 'referencing'))\n"
        "print(','.join(heavy))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _refs(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_schema_ref_resolves():
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    files = sorted((REPO / "schemas").glob("*.json"))
    schemas = {p.name: json.loads(p.read_text()) for p in files}
    registry = Registry().with_resources(
        (name, Resource.from_contents(s, default_specification=DRAFT202012)) for name, s in schemas.items()
    )
    count = 0
    for name, schema in schemas.items():
        resolver = registry.resolver(base_uri=name)
        for ref in _refs(schema):
            resolver.lookup(ref)  # raises if the target does not exist
            count += 1
    assert count > 100


def test_schemas_load_from_the_repo():
    from ocipy.schema import schema_dir

    assert os.path.samefile(schema_dir(), REPO / "schemas")


def test_config_is_not_modified():
    config = _config()
    before = copy.deepcopy(config)
    validate_config(config)
    assert config == before


def test_rlimits_still_importable_from_bundle_and_process():
    from ocipy.linux.process import RLIMITS

    assert bundle.RLIMITS is RLIMITS
    assert RLIMITS["RLIMIT_NOFILE"] == 7


def test_missing_config_path_spelled_as_before(tmp_path, monkeypatch):
    """The path in the message is pathlib's spelling of `<bundle>/config.json`."""
    monkeypatch.chdir(tmp_path)
    for given in (".", "./b/", "b//c"):
        with pytest.raises(ConfigError) as excinfo:
            load_config(given)
        assert str(excinfo.value) == f"config.json: {Path(given) / 'config.json'}: no such file or directory"

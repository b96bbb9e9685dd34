"""ocipy.schema gives exactly the problem lines jsonschema gave (tests/unit/schema_oracle.py).

Every shared document (the engines' corpus, the spec's schema tests) is checked against every
one of our schema targets, then thousands of seeded mutants of them: wherever the two disagree,
ocipy.schema is wrong. Also here: the hand-written pattern predicates against `re.search`, the
refusal of schemas that use a keyword ocipy.schema does not implement, and cheap imports.
"""

import copy
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import schema_oracle
from ocipy import schema
from ocipy.schema import KEYWORDS, PATTERNS, SchemaError, Schemas
from shared_paths import CORPUS, SHARED

REPO = Path(__file__).resolve().parents[2]
SPEC_TESTS = SHARED / "reference" / "runtime-spec-v1.3.0" / "schema" / "test"

TARGETS = {
    "config": "config-schema.json",
    "state": "state-schema.json",
    "features": "features-schema.json",
    "process": "defs.json#/$defs/Process",
    "resources": "defs-linux.json#/$defs/Resources",
}

# Strings that nearly match (or just match) each pattern of our schemas.
NEAR_PATTERNS = [
    "1.3.0", "1.0", "1.0.0.0", "01.0.0", "1.00.0", "0.0.0", "1.0.0-rc.1", "1.0.0-rc..1", "1.0.0-", "1.0.0+",
    "1.0.0+build.5", "1.0.0-rc-1+b-2.x", "1.0.0-a_b", "v1.0.0", "1.0.0 ", "1.0.0\n", "1.0.0\n\n", "\n1.0.0",
    "１.0.0", "1.0.0-é", "1.2.3-+", "1.2.3+a+b",
    "64kB", "2MB", "1GB", "0MB", "10KB", "1TB", "MB", "2MB\n", "2MB ", "٢MB",
    "rwm", "rw", "r", "", "rwx", "RWM", "rwm\n", "mwr\n\n",
    "MB:0=100", "MB:", "MB:\n", "MB:0=1\nL3", "mb:0=1", "MB", "MB:0=1\n",
    "L3:0=ff", "a\nb", "a\n", "\n", "\r", "L3:0=ff;1=ff",
    "0-3", "0,1", "0-3,7", "a", "0-3\n", " ", "٣", "0..3",
    "CAP_SYS_ADMIN", "CAP_", "CAP_X", "cap_chown", "CAP_x", "CAP_A\n", "CAP_Ä", "CAP_SYS ADMIN", "XCAP_A",
]

NEAR_ENUMS = [
    "bogus", "PID", "pid ", "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ARCH_X86_64", "c", "p", "u",
    "b", "a", "shared", "rshared", "private", "running", "created", "stopped", "creating", "paused", "new", "LINUX",
    "MPOL_BIND", "SCHED_FIFO", "IOPRIO_CLASS_RT", "SCMP_CMP_EQ", "SECCOMP_FILTER_FLAG_LOG", "network", "user",
]

OTHER_VALUES = [
    None, True, False, 0, 1, -1, 7, 1.0, 1.5, -0.5, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1,
    2**64 - 1, 2**64, float("inf"), float("nan"), 1e300, "", "x", "é", [], [None], [1, "a"], {}, {"": None},
    {"a": 1}, {"type": "pid"}, ["CAP_CHOWN"],
]

# A config with (nearly) every section of our schemas, so that mutants reach every rule.
RICH_CONFIG = {
    "ociVersion": "1.3.0",
    "root": {"path": "rootfs", "readonly": True},
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid"]},
        {"destination": "/data", "source": "/d", "options": ["bind", "idmap"],
         "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
         "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}]},
    ],
    "process": {
        "terminal": False, "consoleSize": {"height": 24, "width": 80}, "cwd": "/", "env": ["PATH=/bin"],
        "args": ["sh"], "commandLine": "sh", "apparmorProfile": "p", "selinuxLabel": "l",
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}],
        "user": {"uid": 0, "gid": 0, "umask": 18, "additionalGids": [1, 2], "username": "root"},
        "capabilities": {"bounding": ["CAP_CHOWN"], "effective": [], "inheritable": [], "permitted": [], "ambient": []},
        "noNewPrivileges": True, "oomScoreAdj": 100,
        "scheduler": {"policy": "SCHED_DEADLINE", "nice": 0, "priority": 1, "flags": ["SCHED_FLAG_RECLAIM"],
                      "runtime": 1, "deadline": 2, "period": 3},
        "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
        "execCPUAffinity": {"initial": "0-3", "final": "0,1"},
    },
    "hostname": "box",
    "domainname": "example.org",
    "hooks": {
        kind: [{"path": "/bin/true", "args": ["true"], "env": ["A=1"], "timeout": 5}]
        for kind in ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
    },
    "annotations": {"org.example": "x", "z": "y"},
    "linux": {
        "namespaces": [{"type": t} for t in ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 65536}],
        "timeOffsets": {"monotonic": {"secs": 10, "nanosecs": 5}, "boottime": {"secs": -1}},
        "devices": [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0},
                    {"type": "p", "path": "/dev/fifo"}],
        "netDevices": {"eth0": {"name": "eth1"}},
        "cgroupsPath": "/c",
        "resources": {
            "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
            "memory": {"limit": 1, "reservation": 1, "swap": 1, "kernel": 1, "kernelTCP": 1, "swappiness": 1,
                       "disableOOMKiller": False, "useHierarchy": True, "checkBeforeUpdate": True},
            "cpu": {"shares": 1, "quota": 1, "burst": 1, "period": 1, "realtimeRuntime": 1, "realtimePeriod": 1,
                    "cpus": "0", "mems": "0", "idle": 0},
            "blockIO": {"weight": 10, "leafWeight": 10,
                        "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
                        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                        "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                        "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 600}],
                        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 600}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 1}],
            "network": {"classID": 1, "priorities": [{"name": "eth0", "priority": 1}]},
            "pids": {"limit": 32},
            "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 1000}},
            "unified": {"memory.high": "1"},
        },
        "intelRdt": {"closID": "c", "l3CacheSchema": "L3:0=ff", "memBwSchema": "MB:0=20", "schemata": ["L3:0=ff"],
                     "enableMonitoring": True},
        "memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]},
        "sysctl": {"net.ipv4.ip_forward": "1"},
        "seccomp": {
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"], "listenerPath": "/run/l", "listenerMetadata": "m",
            "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                          "args": [{"index": 0, "value": 1, "valueTwo": 2, "op": "SCMP_CMP_EQ"}]}],
        },
        "rootfsPropagation": "rslave",
        "maskedPaths": ["/proc/kcore"],
        "readonlyPaths": ["/proc/sys"],
        "mountLabel": "m",
        "personality": {"domain": "LINUX", "flags": []},
    },
    "freebsd": {
        "devices": [{"path": "/dev/null", "mode": 438}],
        "jail": {"parent": "p", "host": "new", "ip4": "new", "ip4Addr": ["10.0.0.1"], "ip6": "disable",
                 "ip6Addr": [], "vnet": "new", "interface": "em0", "vnetInterfaces": ["e0"], "sysvmsg": "new",
                 "sysvsem": "inherit", "sysvshm": "disable", "enforceStatfs": 2, "allow": {}},
    },
    "solaris": {}, "windows": {}, "vm": {}, "zos": {},
}

RICH_FEATURES = {
    "ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "hooks": ["prestart"], "mountOptions": ["bind"],
    "annotations": {"a": "b"}, "potentiallyUnsafeConfigAnnotations": ["x"],
    "linux": {
        "namespaces": ["pid"], "capabilities": ["CAP_CHOWN"],
        "cgroup": {"v1": True, "v2": True, "systemd": None, "systemdUser": False, "rdma": True},
        "seccomp": {"enabled": True, "actions": ["SCMP_ACT_LOG"], "operators": ["SCMP_CMP_NE"],
                    "archs": ["SCMP_ARCH_ARM"], "knownFlags": ["SECCOMP_FILTER_FLAG_TSYNC"], "supportedFlags": []},
        "apparmor": {"enabled": True}, "selinux": {"enabled": None},
        "memoryPolicy": {"modes": ["MPOL_LOCAL"], "flags": ["MPOL_F_NUMA_BALANCING"]},
        "intelRdt": {"enabled": False, "schemata": True, "monitoring": None},
        "mountExtensions": {"idmap": {"enabled": True}}, "netDevices": {"enabled": True},
    },
}

# Small documents around the rarer rules, so that their mutants hit those rules often.
FOCUSED_DOCUMENTS = [
    ("focus-seccomp", "config", {
        "ociVersion": "1.3.0", "annotations": {"a": "1", "b": "2"},
        "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/l", "listenerMetadata": "m",
                              "syscalls": [{"names": ["a"], "action": "SCMP_ACT_LOG"}]}}}),
    ("focus-devices", "config", {
        "ociVersion": "1.3.0",
        "linux": {"devices": [{"type": "p", "path": "/p"}, {"type": "c", "path": "/c", "major": 1, "minor": 2}],
                  "resources": {"rdma": {"m": {"hcaHandles": 1}}, "hugepageLimits": [{"pageSize": "1GB", "limit": 0}],
                                "blockIO": {"weightDevice": [{"major": 1, "minor": 2, "leafWeight": 10}]},
                                "devices": [{"allow": True, "access": "m"}]},
                  "intelRdt": {"memBwSchema": "MB:1", "schemata": ["a"]}}}),
    ("focus-features", "features", {
        "ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "annotations": {"a": "b", "c": "d"},
        "linux": {"capabilities": ["CAP_A"], "cgroup": {"v2": True}, "mountExtensions": {"idmap": {"enabled": None}}}}),
    ("focus-process", "process", {
        "cwd": "/", "execCPUAffinity": {"initial": "1"}, "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0},
        "user": {"uid": 1, "gid": 1}}),
]

RICH_STATE = {"ociVersion": "1.3.0", "id": "c1", "status": "running", "pid": 4, "bundle": "/b",
              "annotations": {"a": "b"}}


# --- Documents -------------------------------------------------------------------------------


def _kind(path: Path) -> str | None:
    """Which schema a shared file is an instance of (by its name or its spec test directory)."""
    name = path.name
    if path.is_relative_to(SPEC_TESTS):
        return path.relative_to(SPEC_TESTS).parts[0]
    for suffix, kind in (("config.json", "config"), ("process.json", "process"), ("features.json", "features"),
                         ("state.stdout.json", "state")):
        if name.endswith(suffix):
            return kind
    return "resources" if "resources" in name else None


def _shared_documents() -> list:
    """(id, kind or None, document) for every JSON file of the corpus and of the spec's tests."""
    found = []
    for base in (CORPUS, SPEC_TESTS):
        for path in sorted(base.rglob("*.json")) if base.is_dir() else []:
            try:
                document = json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError):
                continue  # invalid-json.json
            found.append((str(path.relative_to(SHARED)), _kind(path), document))
    return found


SHARED_DOCUMENTS = _shared_documents()
RICH_DOCUMENTS = [("rich-config", "config", RICH_CONFIG), ("rich-features", "features", RICH_FEATURES),
                  ("rich-state", "state", RICH_STATE),
                  ("rich-process", "process", RICH_CONFIG["process"]),
                  ("rich-resources", "resources", RICH_CONFIG["linux"]["resources"])] + FOCUSED_DOCUMENTS

needs_shared = pytest.mark.skipif(not SHARED_DOCUMENTS, reason=f"{SHARED} is missing")


def _set_order_ambiguous(document, target: str) -> bool:
    """Where the oracle's own order is not defined: jsonschema checks additionalProperties values
    in the order of a Python set (hash-randomised for strings). After the final sort by path this
    only shows inside an anyOf branch, which in our schemas is features' nullable `annotations`
    with two or more wrong values. There ocipy.schema uses the object's order."""
    annotations = document.get("annotations") if isinstance(document, dict) else None
    return (
        target == TARGETS["features"] and isinstance(annotations, dict)
        and sum(not isinstance(v, str) for v in annotations.values()) >= 2
    )


def _mismatch(document, target: str) -> tuple | None:
    """None if ocipy.schema and the oracle agree on `document`, else (ours, oracle)."""
    ours = schema.problems(document, target, "doc")
    oracle = schema_oracle.schema_problems(document, target, "doc")
    if ours == oracle or (_set_order_ambiguous(document, target) and sorted(ours) == sorted(oracle)):
        return None
    return ours, oracle


def _report(document, target: str, found: tuple) -> str:
    ours, oracle = found
    return (f"target {target}\ndocument {json.dumps(document)[:2000]}\n"
            f"ocipy.schema: {json.dumps(ours, indent=1)}\njsonschema:   {json.dumps(oracle, indent=1)}")


@needs_shared
@pytest.mark.parametrize("target", TARGETS.values())
@pytest.mark.parametrize("name,kind,document", SHARED_DOCUMENTS + RICH_DOCUMENTS,
                         ids=[d[0] for d in SHARED_DOCUMENTS + RICH_DOCUMENTS])
def test_shared_documents_same_lines_as_jsonschema(name, kind, document, target):
    """Each document against every target: its own (mostly valid) and the others (many problems)."""
    found = _mismatch(document, target)
    assert found is None, _report(document, target, found)


@needs_shared
def test_every_kind_of_shared_document_is_found():
    kinds = {kind for _, kind, _ in SHARED_DOCUMENTS}
    assert kinds >= set(TARGETS), kinds
    assert sum(kind == "config" for _, kind, _ in SHARED_DOCUMENTS) >= 15


def test_rich_documents_are_valid():
    """The fuzzer's richest bases start valid, so that each mutant breaks what it mutates."""
    for name, kind, document in RICH_DOCUMENTS:
        assert schema.problems(document, TARGETS[kind], name) == [], name


# --- Mutation fuzzer -------------------------------------------------------------------------


def _nodes(node, path=()):
    """(path, value) of every value in a document, the document itself first."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _nodes(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _nodes(value, path + (index,))


def _replace(document, path: tuple, value):
    """The document with the value at `path` replaced (the whole document if path is empty)."""
    if not path:
        return value
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return document


def _delete(document, path: tuple):
    if path:
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        del parent[path[-1]]
    return document


class Mutator:
    """Seeded mutations of JSON documents, each aimed at a kind of schema rule."""

    def __init__(self, rng: random.Random, bases: list):
        self.rng = rng
        # Values seen under each key in any base: grafting them reaches deep, valid-looking shapes.
        self.by_key: dict = {}
        for _, _, document in bases:
            for path, value in _nodes(document):
                if path and isinstance(path[-1], str):
                    self.by_key.setdefault(path[-1], []).append(value)
        self.keys = sorted(self.by_key)

    def mutant(self, document):
        document = copy.deepcopy(document)
        for _ in range(self.rng.choice((1, 1, 1, 2, 2, 3, 5))):
            path, value = self.site(document)
            operation = self.rng.choice(self.OPERATIONS)
            document = operation(self, document, path, value)
        return document

    def site(self, document) -> tuple:
        """Where to mutate: half the time any value, half the time the end of a random walk
        from the root, so that long lists (seccomp's syscalls) do not get all the mutations."""
        if self.rng.random() < 0.5:
            return self.rng.choice(list(_nodes(document)))
        path, value = (), document
        while isinstance(value, (dict, list)) and value and self.rng.random() < 0.8:
            key = self.rng.choice(list(value)) if isinstance(value, dict) else self.rng.randrange(len(value))
            path, value = path + (key,), value[key]
        return path, value

    def delete(self, document, path, value):
        return _delete(document, path)

    def retype(self, document, path, value):
        return _replace(document, path, copy.deepcopy(self.rng.choice(OTHER_VALUES)))

    def null(self, document, path, value):
        return _replace(document, path, None)

    def empty(self, document, path, value):
        if isinstance(value, (dict, list, str)):
            return _replace(document, path, type(value)())
        return document

    def bad_string(self, document, path, value):
        choices = NEAR_PATTERNS + NEAR_ENUMS
        if isinstance(value, str):
            choices = choices + [value.upper(), value.lower(), value + "x", value + "\n", " " + value, value[:-1]]
        return _replace(document, path, self.rng.choice(choices))

    def bad_number(self, document, path, value):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            choices = [-1, 0, -value, value + 1, value - 1, value * 2**32, float(value), value + 0.5, 2**64, -(2**63) - 1]
            return _replace(document, path, self.rng.choice(choices))
        return self.retype(document, path, value)

    def unknown_key(self, document, path, value):
        if isinstance(value, dict):
            key = self.rng.choice(["x_unknown", "", "propertyNames", "a/b~c", "Z", "0", "type", "enabled"])
            value[key] = copy.deepcopy(self.rng.choice(OTHER_VALUES))
        return document

    def drop_key(self, document, path, value):
        """One key of an object removed (a required one, or what another key depends on)."""
        if isinstance(value, dict) and value:
            del value[self.rng.choice(list(value))]
            return document
        return _delete(document, path)

    def rename(self, document, path, value):
        """A key spelled differently (or empty): now unknown, and what it was is missing."""
        if isinstance(value, dict) and value:
            key = self.rng.choice(list(value))
            new = self.rng.choice(["", key.upper(), key + "s", key[:-1], " " + key])
            value[new] = value.pop(key)
        return document

    def graft(self, document, path, value):
        """Add (to an object) or replace a value by one seen under the same or a random key."""
        if isinstance(value, dict):
            key = self.rng.choice(self.keys)
            value[key] = copy.deepcopy(self.rng.choice(self.by_key[key]))
            return document
        if path and isinstance(path[-1], str) and path[-1] in self.by_key:
            return _replace(document, path, copy.deepcopy(self.rng.choice(self.by_key[path[-1]])))
        return document

    def grow(self, document, path, value):
        """A list gets one more element: a copy of one of its own, or anything."""
        if isinstance(value, list):
            extra = self.rng.choice(value) if value and self.rng.random() < 0.7 else self.rng.choice(OTHER_VALUES)
            value.insert(self.rng.randrange(len(value) + 1), copy.deepcopy(extra))
        return document

    def reorder(self, document, path, value):
        """Keys in another order: problem order must follow the sort, not the input."""
        if isinstance(value, dict):
            items = list(value.items())
            self.rng.shuffle(items)
            value.clear()
            value.update(items)
        return document

    OPERATIONS = [delete, drop_key, drop_key, retype, retype, null, empty, bad_string, bad_string, bad_number, unknown_key,
                  rename, graft, graft, grow, reorder]


FUZZ_SEED = 20251123
MUTANTS_PER_BASE = 120


def _fuzz_bases():
    return [(name, kind, doc) for name, kind, doc in SHARED_DOCUMENTS + RICH_DOCUMENTS if kind is not None]


@needs_shared
@pytest.mark.parametrize("kind", TARGETS)
def test_mutants_same_lines_as_jsonschema(kind):
    """Thousands of mutants of every shared document of one kind (and some cross-kind checks)."""
    bases = _fuzz_bases()
    rng = random.Random(f"{FUZZ_SEED}-{kind}")
    mutator = Mutator(rng, bases)
    mine = [b for b in bases if b[1] == kind]
    failures, checked, with_problems = [], 0, 0
    for name, _, base in mine:
        for _ in range(MUTANTS_PER_BASE * (3 if name.startswith(("rich", "focus")) else 1)):
            mutant = mutator.mutant(base)
            target = TARGETS[kind] if rng.random() < 0.9 else rng.choice(list(TARGETS.values()))
            found = _mismatch(mutant, target)
            checked += 1
            if found is None:
                with_problems += bool(schema_oracle.schema_problems(mutant, target, "doc"))
            elif len(failures) < 5:
                failures.append(_report(mutant, target, found))
    assert not failures, f"{len(failures)}+ mismatches in {checked} mutants; first:\n" + "\n\n".join(failures)
    # The fuzzer must mostly produce documents with problems, or it tests little.
    assert with_problems > checked // 2, (with_problems, checked)


# --- Hand-written edge cases -------------------------------------------------------------------

EDGE_CASES = [
    ("config", {"ociVersion": "1.0.0\n", "root": {"path": "r"}}),  # Python's `$` before a final newline
    ("config", {"ociVersion": 1.0}),
    ("process", {"cwd": "/", "user": {"uid": 1.0, "gid": True}}),  # 1.0 is an integer, true is not
    ("process", {"cwd": "/", "user": {"uid": 2**32, "gid": -1.5}}),
    ("process", {"cwd": "/", "consoleSize": {"height": float("inf")}}),
    ("process", {"cwd": "/", "ioPriority": {"class": 1, "priority": 8}}),
    ("process", {"cwd": "/", "ioPriority": {"class": True, "priority": None}}),
    ("config", {"ociVersion": "1.3.0", "linux": {"devices": [{"type": "p"}, {"type": "c"}, {"path": "/x"}]}}),
    ("config", {"ociVersion": "1.3.0", "linux": {"devices": [{"type": "P", "path": "/x"}]}}),
    ("config", {"ociVersion": "1.3.0", "linux": {"resources": {"rdma": {"a": {}, "b": None, "c": {"hcaHandles": -1}}}}}),
    ("config", {"ociVersion": "1.3.0", "linux": {"resources": {"blockIO": {"weightDevice": [{}]}}}}),
    ("config", {"ociVersion": "1.3.0", "annotations": {"": 1, "b": "x", "a": None}}),
    ("config", {"ociVersion": "1.3.0", "linux": {"seccomp": {"listenerMetadata": 5}}}),
    ("config", {"ociVersion": "1.3.0", "linux": {"seccomp": {"syscalls": [{"names": []}]}}}),
    ("config", {"ociVersion": "1.3.0", "linux": {"sysctl": {"b": 1, "a": [], "c": "x"}}}),
    ("state", {"ociVersion": "1.3.0", "id": "", "status": "created", "bundle": "/b"}),
    ("state", {"ociVersion": "1.3.0", "id": "c", "status": 5, "bundle": "/b"}),
    ("state", {"ociVersion": "1.3.0", "id": "c", "status": "bogus"}),
    ("state", []),
    ("features", {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "linux": None}),
    ("features", {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "annotations": {"": "x"}}),
    ("features", {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "annotations": {"": 1}}),
    ("features", {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "annotations": 5, "hooks": [1, None]}),
    ("features", {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0",
                  "linux": {"cgroup": {"v1": 1, "v9": True}, "seccomp": [], "mountExtensions": {"idmap": {"x": 1}}}}),
    ("features", {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "linux": {"capabilities": ["CAP_A\n", "cap"]}}),
    ("features", {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0",
                  "linux": {"memoryPolicy": {"modes": ["MPOL_X"], "flags": "x"}}}),
    ("resources", {"devices": [{"access": "rwmx"}], "hugepageLimits": [{"pageSize": "2MB\n", "limit": -1}]}),
    ("resources", {"memory": {"limit": 2**63}, "cpu": {"shares": -1, "cpus": 3}, "unified": {"a": 1}}),
]


@pytest.mark.parametrize("kind,document", EDGE_CASES)
def test_edge_cases_same_lines_as_jsonschema(kind, document):
    for target in TARGETS.values():
        found = _mismatch(document, target)
        assert found is None, _report(document, target, found)


def test_python_dollar_is_kept():
    """JSON Schema's `$` (ECMA-262) would refuse "1.0.0\\n"; jsonschema used re.search and took it."""
    assert schema.problems({"ociVersion": "1.0.0\n"}, "config-schema.json", "c") == []
    assert schema.problems({"ociVersion": "1.0.0\n\n"}, "config-schema.json", "c") != []


def test_features_annotations_in_object_order():
    """Where jsonschema's order depended on a set's, ocipy.schema keeps the object's order."""
    features = {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "annotations": {"b": 1, "a": 2}}
    assert schema.problems(features, TARGETS["features"], "f") == [
        "f: /annotations/b: 1 is not a string", "f: /annotations/a: 2 is not a string",
    ]
    assert sorted(schema_oracle.schema_problems(features, TARGETS["features"], "f")) == [
        "f: /annotations/a: 2 is not a string", "f: /annotations/b: 1 is not a string",
    ]


# --- Patterns ----------------------------------------------------------------------------------


def _schema_patterns() -> set:
    found = set()
    for path in (REPO / "schemas").glob("*.json"):
        for match in re.finditer(r'"pattern": ("(?:[^"\\]|\\.)*")', path.read_text()):
            found.add(json.loads(match.group(1)))
    return found


def test_every_schema_pattern_has_a_predicate():
    """No pattern of ours takes the slow path through `re` at runtime."""
    patterns = _schema_patterns()
    assert len(patterns) == 7
    assert patterns == set(PATTERNS)


ALPHABET = "0123456789.-+,: _\n\r\tabzAZCPKMGBrwmMBLé٣１ÄΣ"


def _strings(rng: random.Random, count: int):
    """Edge cases, the near-miss pool with edits, and random strings over a relevant alphabet."""
    yield from ("", "\n", "\n\n", " ", "\r\n", "\x00")
    for s in NEAR_PATTERNS:
        yield from (s, s + "\n", s + "\n\n", "\n" + s, s + "\r", s + " ", s[:-1], s[1:], s * 2, s + "\n" + s)
    for _ in range(count):
        if rng.random() < 0.5:
            s = list(rng.choice(NEAR_PATTERNS))
            for _ in range(rng.randint(1, 3)):
                where = rng.randint(0, len(s))
                edit = rng.randrange(3)
                if edit == 0:
                    s.insert(where, rng.choice(ALPHABET))
                elif s and where < len(s):
                    if edit == 1:
                        del s[where]
                    else:
                        s[where] = rng.choice(ALPHABET)
            yield "".join(s)
        else:
            yield "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_pattern_predicates_are_python_re_search(pattern):
    predicate = PATTERNS[pattern]
    rng = random.Random(f"{FUZZ_SEED}-{pattern}")
    compiled = re.compile(pattern)
    wrong = [s for s in _strings(rng, 20000) if predicate(s) != bool(compiled.search(s))]
    assert not wrong, [(s, bool(compiled.search(s))) for s in wrong[:10]]


def test_pattern_predicates_accept_examples():
    """The random strings above must include matches, or the comparison proves little."""
    for pattern, predicate in PATTERNS.items():
        assert sum(map(predicate, _strings(random.Random(1), 2000))) >= 5, pattern


# --- Schemas that ocipy.schema must refuse, and other schemas ----------------------------------


def _schemas(tmp_path, **files) -> Schemas:
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    return Schemas(str(tmp_path))


@pytest.mark.parametrize("keyword,value", [
    ("uniqueItems", True), ("format", "uri"), ("oneOf", [{"type": "null"}]), ("patternProperties", {"^a": {}}),
    ("allOf", [{}]), ("not", {}), ("maxLength", 3), ("exclusiveMinimum", 0), ("$id", "x"), ("title", "t"),
])
def test_unimplemented_keyword_is_refused(tmp_path, keyword, value):
    schemas = _schemas(tmp_path, **{"s.json": {"type": "object", "properties": {"a": {"items": {keyword: value}}}}})
    with pytest.raises(SchemaError, match=f"s.json#/properties/a/items: keyword '{re.escape(keyword)}' is not implemented"):
        schemas.problems({}, "s.json", "x")


def test_unimplemented_keyword_is_refused_in_a_referenced_file(tmp_path):
    schemas = _schemas(tmp_path, **{"s.json": {"$ref": "t.json#/$defs/A"},
                                    "t.json": {"$defs": {"A": {"type": "string"}, "B": {"contains": {}}}}})
    with pytest.raises(SchemaError, match=r"t.json#/\$defs/B: keyword 'contains'"):
        schemas.problems("x", "s.json", "x")


@pytest.mark.parametrize("content,message", [
    ({"$ref": "missing.json"}, "cannot load schema"),
    ({"$ref": "#/$defs/Nope"}, "does not resolve"),
    ({"$ref": "http://example.com/s.json"}, "is not a schema file of this directory"),
    ({"$ref": "#anchor"}, "is not a schema file of this directory"),
    ({"type": "float"}, "unknown type"),
    ({"items": True}, "a schema must be an object"),
    ({"anyOf": []}, "non-empty list"),
    ({"properties": []}, "must be an object of schemas"),
])
def test_bad_schema_is_refused(tmp_path, content, message):
    with pytest.raises(SchemaError, match=re.escape(message)):
        _schemas(tmp_path, **{"s.json": content}).problems([], "s.json", "x")


def test_all_our_schemas_load():
    schemas = Schemas(schema.schema_dir())
    for path in sorted((REPO / "schemas").glob("*.json")):
        schemas.document(path.name)


def test_every_ref_of_our_schemas_resolves():
    schemas = Schemas(schema.schema_dir())
    refs = set()
    for path in sorted((REPO / "schemas").glob("*.json")):
        for _, value in _nodes(schemas.document(path.name)):
            if isinstance(value, dict) and isinstance(value.get("$ref"), str):
                refs.add(value["$ref"])
    assert len(refs) > 40
    for ref in refs:
        assert isinstance(schemas.target(ref), dict)


def test_other_patterns_fall_back_to_re(tmp_path):
    """A pattern without a predicate still works (through `re`), and says the same as jsonschema."""
    content = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^[a-c]+$"},
                                                "b": {"type": "string", "pattern": "x{2}"}}}
    schemas = _schemas(tmp_path, **{"s.json": content})
    for doc in ({"a": "abc", "b": "axxb"}, {"a": "abd", "b": "x"}, {"a": "ab\n", "b": 1}):
        assert schemas.problems(doc, "s.json", "x") == schema_oracle.schema_problems(doc, "s.json", "x", tmp_path)
    assert schemas.problems({"a": "abd"}, "s.json", "x") == ['x: /a: "abd" does not match ^[a-c]+$']


# --- Import cost and the installed layout ------------------------------------------------------

HEAVY = ("re", "json", "typing", "pathlib", "functools", "enum", "dataclasses", "hashlib", "jsonschema", "referencing")


def _run_isolated(code: str, path: str) -> str:
    """Run `code` in `python -I -S` (no site: nothing imported but what ocipy imports)."""
    script = f"import sys; sys.path.insert(0, {path!r})\n" + code
    out = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@needs_shared
def test_validation_imports_nothing_heavy():
    config = CORPUS / "docker-run-d.config.json"  # no rlimits: ocipy.linux.process is not needed
    bad = {"ociVersion": "1", "root": {"path": ""}, "process": {"cwd": 1}, "linux": {"resources": {"rdma": {"x": {}}}}}
    code = (
        "import ocipy.bundle as b, ocipy.jsonfast as jf\n"
        f"loaded_at_import = [m for m in {HEAVY!r} if m in sys.modules]\n"
        f"b.validate_config(jf.loads(open({str(config)!r}).read()))\n"
        f"try:\n    b.validate_config({bad!r})\nexcept b.ConfigError:\n    pass\n"
        f"print(loaded_at_import, [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    assert _run_isolated(code, str(REPO)) == "[] []"


def test_installed_layout_finds_schemas_in_the_package(tmp_path):
    """Installed (not editable), the schemas are the package directory ocipy/schemas/."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "ocipy", site / "ocipy", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "schemas", site / "ocipy" / "schemas", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import ocipy.schema as s, ocipy.bundle as b\n"
        "print(s.schema_dir())\n"
        "print(b.schema_problems({'ociVersion': 'x'}, 'config-schema.json', 'c'))\n"
    )
    out = _run_isolated(code, str(site)).splitlines()
    assert out[0] == str(site / "ocipy" / "schemas")
    assert out[1] == """['c: /ociVersion: "x" does not match %s']""" % (
        json.loads((REPO / "schemas" / "defs.json").read_text())["$defs"]["ociVersion"]["pattern"].replace("\\", "\\\\")
    )


def _schema_objects(node):
    """Every schema object inside a schema (not the name -> schema maps, not keyword values)."""
    yield node
    for keyword, value in node.items():
        if keyword in ("properties", "$defs"):
            for subschema in value.values():
                yield from _schema_objects(subschema)
        elif keyword == "anyOf":
            for subschema in value:
                yield from _schema_objects(subschema)
        elif keyword in ("items", "propertyNames", "if", "then", "else", "additionalProperties") and isinstance(value, dict):
            yield from _schema_objects(value)


def test_keywords_are_the_ones_our_schemas_use():
    """KEYWORDS grows only with the schemas: each implemented keyword is used somewhere."""
    used = set()
    for path in (REPO / "schemas").glob("*.json"):
        for node in _schema_objects(json.loads(path.read_text())):
            used |= set(node)
    assert used == KEYWORDS

"""Read a bundle's config.json and check it: JSON Schema (schemas/) plus the rules a schema cannot say.

Every problem is reported as one line, `<source>: <JSON pointer>: <rule>`, for example
`config.json: /process/capabilities/bounding/2: "CAP_FOO" is not a capability`, and all of
a document's problems are raised together in one `ConfigError`.

The schemas are applied by ocipy.schema (no jsonschema), and this module imports nothing
costly: `create` validates every config afresh for about a millisecond, and the commands that
never read a config (state, start, kill, delete, list) pay nothing for importing it.
"""

from __future__ import annotations

import posix  # not os (~1 ms): see fspath.py

from ocipy import fspath, jsonfast
from ocipy import schema as _schema
from ocipy.errors import ConfigError
from ocipy.linux.capnames import CAPABILITIES
from ocipy.linux.rlimitnames import RLIMITS
from ocipy.schema import pointer as _ptr
from ocipy.schema import show as _show

__all__ = [
    "load_config", "validate_config", "validate_process",
    "require_process", "load_spec", "validate_state", "validate_features", "validate_resources",
    "schema_problems",
]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from ocipy.spec import Spec


CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
TIME_NAMESPACE_CLOCKS = ("monotonic", "boottime")
ERRNO_ACTIONS = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")

# sysctls that belong to a namespace (as runc allows them); anything else would change the host.
_IPC_SYSCTLS = frozenset({
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
    "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
})
_UTS_SYSCTLS = frozenset({"kernel.hostname", "kernel.domainname"})

CONFIG_SCHEMA = "config-schema.json"
STATE_SCHEMA = "state-schema.json"
FEATURES_SCHEMA = "features-schema.json"
PROCESS_SCHEMA = "defs.json#/$defs/Process"
RESOURCES_SCHEMA = "defs-linux.json#/$defs/Resources"


# ---------------------------------------------------------------------------------------------
# Loading


def _config_path(bundle: str) -> str:
    """`<bundle>/config.json`, spelled as pathlib spells it (no `.` parts, no doubled slashes):
    the path appears in error messages."""
    bundle = posix.fspath(bundle)
    parts = [part for part in bundle.split("/") if part not in ("", ".")]
    if bundle.startswith("//") and not bundle.startswith("///"):
        root = "//"  # POSIX leaves exactly two leading slashes to the system; pathlib keeps them
    elif bundle.startswith("/"):
        root = "/"
    else:
        root = ""
    return root + "/".join(parts + ["config.json"])


def load_config(bundle: str) -> dict:
    """Read `<bundle>/config.json`; ConfigError if it is missing, unreadable or not JSON."""
    path = _config_path(bundle)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"config.json: {path}: no such file or directory") from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError(f"config.json: cannot read {path}: {reason}") from None
    return _parse_json(text, "config.json")


def _parse_json(text: str, source: str) -> object:
    try:
        return jsonfast.loads(text)
    except ValueError as e:  # json.JSONDecodeError, imported by jsonfast only on this path
        if not hasattr(e, "lineno"):
            raise
        raise ConfigError(f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def load_spec(bundle: str) -> Spec:
    """load_config + validate_config (with root.path checked against the bundle) + the Spec view."""
    from ocipy.spec import Spec

    config = load_config(bundle)
    validate_config(config, bundle)
    return Spec.from_dict(config)


# ---------------------------------------------------------------------------------------------
# Public validators


def validate_config(config: dict, bundle: str | None = None) -> list[str]:
    """Schema + semantic checks of a config.json dict; ConfigError listing every problem.

    With `bundle`, root.path (relative to the bundle) must also name an existing directory.
    Returns the warnings the runtime must log (config.md: unknown capabilities are logged,
    not refused).
    """
    problems = _Problems("config.json")
    problems.extend(schema_problems(config, CONFIG_SCHEMA, "config.json"))
    if isinstance(config, dict):
        _check_config(config, problems, bundle)
    problems.raise_if_any()
    return problems.warnings


def validate_process(process: dict, source: str = "process.json") -> list[str]:
    """The same checks for a standalone Process object (`exec --process`), prefixed by `source`;
    returns the warnings to log."""
    problems = _Problems(source)
    problems.extend(schema_problems(process, PROCESS_SCHEMA, source))
    if isinstance(process, dict):
        _check_process(process, problems, (), windows=False, linux=True)
    problems.raise_if_any()
    return problems.warnings


def require_process(config: dict) -> None:
    """`process` is optional in a config but `create`/`run` need it (runtime.md: REQUIRED for start)."""
    if not isinstance(config.get("process"), dict):
        raise ConfigError("config.json: /process: is required to create a container")


def validate_state(state: dict, source: str = "state.json") -> None:
    problems = _Problems(source)
    problems.extend(schema_problems(state, STATE_SCHEMA, source))
    problems.raise_if_any()


def validate_features(features: dict, source: str = "features.json") -> None:
    problems = _Problems(source)
    problems.extend(schema_problems(features, FEATURES_SCHEMA, source))
    problems.raise_if_any()


def validate_resources(resources: dict, source: str = "resources.json") -> None:
    """A linux.resources object on its own (`update --resources`)."""
    problems = _Problems(source)
    problems.extend(schema_problems(resources, RESOURCES_SCHEMA, source))
    problems.raise_if_any()


def schema_problems(instance: object, schema: str, source: str) -> list[str]:
    """Problem lines (`<source>: <pointer>: <rule>`) of `instance` against one of our schemas.

    `schema` is a file in schemas/ (`config-schema.json`) or a pointer into one
    (`defs.json#/$defs/Process`).
    """
    return _schema.problems(instance, schema, source)


# ---------------------------------------------------------------------------------------------
# Problems


class _Problems:
    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []
        self.warnings: list[str] = []

    def warn(self, pointer: str, rule: str) -> None:
        """Something the spec says to log, not to refuse (e.g. an unknown capability)."""
        line = f"{self.source}: {pointer or '/'}: {rule}"
        if line not in self.warnings:
            self.warnings.append(line)

    def add(self, pointer: str, rule: str) -> None:
        line = f"{self.source}: {pointer or '/'}: {rule}"
        if line not in self.lines:
            self.lines.append(line)

    def extend(self, lines) -> None:
        for line in lines:
            if line not in self.lines:
                self.lines.append(line)

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigError("\n".join(self.lines))


# ---------------------------------------------------------------------------------------------
# Semantic checks (what the schema cannot say). Each tolerates values of the wrong type:
# the schema has already reported those, and every problem is listed at once.


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _items(value: object) -> list:
    return value if isinstance(value, list) else []


def _absolute(problems: _Problems, value: object, *path: object) -> None:
    if isinstance(value, str) and not value.startswith("/"):
        problems.add(_ptr(path), f"{_show(value)} must be an absolute path")


def _targets_linux(cfg: dict) -> bool:
    """A config with a linux object, or with no other platform's object."""
    return "linux" in cfg or not any(key in cfg for key in ("windows", "solaris", "zos", "freebsd"))


def _check_root_path(cfg: dict, problems: _Problems, bundle: str | None) -> None:
    root_path = _dict(cfg.get("root")).get("path")
    if bundle is not None and isinstance(root_path, str) and root_path:
        resolved = fspath.join(bundle, root_path)
        if not fspath.isdir(resolved):
            what = "is not a directory" if fspath.exists(resolved) else "does not exist"
            problems.add("/root/path", f"{_show(root_path)} {what} ({resolved})")


def _check_config(cfg: dict, problems: _Problems, bundle: str | None) -> None:
    windows = "windows" in cfg
    on_linux = _targets_linux(cfg)
    linux = _dict(cfg.get("linux"))
    namespaces = _namespaces(linux)

    # root: REQUIRED except on Windows; a directory MUST exist at root.path.
    root = cfg.get("root")
    if root is None and not windows:
        problems.add("/root", "is required")
    _check_root_path(cfg, problems, bundle)

    for i, mount in enumerate(_items(cfg.get("mounts"))):
        _check_mount(_dict(mount), problems, i, windows, namespaces)

    process = cfg.get("process")
    if isinstance(process, dict):
        _check_process(process, problems, ("process",), windows, on_linux)

    hooks = _dict(cfg.get("hooks"))
    for kind in HOOK_KINDS:
        for i, hook in enumerate(_items(hooks.get(kind))):
            hook = _dict(hook)
            _absolute(problems, hook.get("path"), "hooks", kind, i, "path")
            _check_env(hook.get("env"), problems, ("hooks", kind, i, "env"))

    # runc refuses to set the host's names: a hostname needs the container's own UTS namespace.
    for key in ("hostname", "domainname"):
        if on_linux and isinstance(cfg.get(key), str) and cfg[key] and "uts" not in namespaces:
            problems.add(f"/{key}", f"needs a uts namespace in /linux/namespaces (it would change the host's {key})")

    if "linux" in cfg:
        _check_linux(linux, problems, namespaces)


def _namespaces(linux: dict) -> dict[str, dict]:
    """type -> first entry of linux.namespaces."""
    found: dict[str, dict] = {}
    for ns in _items(linux.get("namespaces")):
        ns = _dict(ns)
        if isinstance(ns.get("type"), str):
            found.setdefault(ns["type"], ns)
    return found


def _check_mount(mount: dict, problems: _Problems, i: int, windows: bool, namespaces: dict) -> None:
    # config.md: on Linux a destination MAY be relative (deprecated), read as relative to "/".
    has_uid, has_gid = "uidMappings" in mount, "gidMappings" in mount
    if has_uid != has_gid:
        missing = "gidMappings" if has_uid else "uidMappings"
        problems.add(_ptr(("mounts", i, missing)), "is required with " + ("uidMappings" if has_uid else "gidMappings"))
    for key in ("uidMappings", "gidMappings"):
        _check_mappings(mount.get(key), problems, ("mounts", i, key))
    if has_uid or has_gid or "user" in namespaces:
        return
    for j, option in enumerate(_items(mount.get("options"))):
        if option in ("idmap", "ridmap"):
            problems.add(
                _ptr(("mounts", i, "options", j)),
                f"{_show(option)} needs uidMappings and gidMappings or a user namespace",
            )


def _check_env(env: object, problems: _Problems, path: tuple) -> None:
    for i, entry in enumerate(_items(env)):
        if not isinstance(entry, str):
            continue
        if "\0" in entry:
            problems.add(_ptr(path + (i,)), f"{_show(entry)} contains a NUL byte")
        elif "=" not in entry or entry.startswith("="):
            problems.add(_ptr(path + (i,)), f"{_show(entry)} is not of the form NAME=value")


def _check_process(process: dict, problems: _Problems, base: tuple, windows: bool, linux: bool = True) -> None:
    if not windows:
        _absolute(problems, process.get("cwd"), *base, "cwd")
        args = process.get("args")
        if args is None or args == []:
            problems.add(_ptr(base + ("args",)), "must have at least one entry")
        user = process.get("user")
        if isinstance(user, dict):
            for key in ("uid", "gid"):
                if key not in user:
                    problems.add(_ptr(base + ("user", key)), "is required")
    for i, arg in enumerate(_items(process.get("args"))):
        if isinstance(arg, str) and "\0" in arg:
            problems.add(_ptr(base + ("args", i)), f"{_show(arg)} contains a NUL byte")
    _check_env(process.get("env"), problems, base + ("env",))

    if linux:
        _check_linux_process(process, problems, base)


def _check_linux_process(process: dict, problems: _Problems, base: tuple) -> None:
    capabilities = _dict(process.get("capabilities"))
    for kind in CAPABILITY_SETS:
        for i, name in enumerate(_items(capabilities.get(kind))):
            if isinstance(name, str) and name not in CAPABILITIES:
                # config.md: "MUST be logged as a warning ... SHOULD NOT fail".
                problems.warn(_ptr(base + ("capabilities", kind, i)), f"{_show(name)} is not a capability: ignored")

    rlimits = _items(process.get("rlimits"))
    known = RLIMITS if rlimits else {}
    seen: dict[str, int] = {}
    for i, rlimit in enumerate(rlimits):
        rlimit = _dict(rlimit)
        kind = rlimit.get("type")
        if not isinstance(kind, str):
            continue
        if kind not in known:
            problems.add(_ptr(base + ("rlimits", i, "type")), f"{_show(kind)} is not an rlimit")
        elif kind in seen:
            problems.add(
                _ptr(base + ("rlimits", i, "type")),
                f"{_show(kind)} is already set at {_ptr(base + ('rlimits', seen[kind]))}",
            )
        else:
            seen[kind] = i
        soft, hard = rlimit.get("soft"), rlimit.get("hard")
        if isinstance(soft, int) and isinstance(hard, int) and soft > hard:
            problems.add(_ptr(base + ("rlimits", i)), f"soft limit {soft} is greater than hard limit {hard}")

    oom = process.get("oomScoreAdj")
    if isinstance(oom, int) and not isinstance(oom, bool) and not -1000 <= oom <= 1000:
        problems.add(_ptr(base + ("oomScoreAdj",)), f"{oom} is not between -1000 and 1000")


def _check_mappings(mappings: object, problems: _Problems, path: tuple) -> None:
    """Each range fits in 32 bits, is not empty, and overlaps no other range (container or host side)."""
    ranges = []
    for i, m in enumerate(_items(mappings)):
        m = _dict(m)
        cid, hid, size = m.get("containerID"), m.get("hostID"), m.get("size")
        if not all(isinstance(v, int) and v >= 0 for v in (cid, hid, size)):
            continue
        if size == 0:
            problems.add(_ptr(path + (i, "size")), "must be at least 1")
            continue
        for key, start in (("containerID", cid), ("hostID", hid)):
            if start + size > 2**32:
                problems.add(_ptr(path + (i,)), f"{key} range {start}-{start + size - 1} does not fit in 32 bits")
        ranges.append((i, cid, hid, size))
    for side, key in ((1, "containerID"), (2, "hostID")):
        for a in range(len(ranges)):
            for b in range(a):
                first, second = ranges[b], ranges[a]
                if first[side] < second[side] + second[3] and second[side] < first[side] + first[3]:
                    start, end = second[side], second[side] + second[3] - 1
                    problems.add(
                        _ptr(path + (second[0],)),
                        f"{key} range {start}-{end} overlaps {_ptr(path + (first[0],))}",
                    )


def _check_linux(linux: dict, problems: _Problems, namespaces: dict) -> None:
    seen: dict[str, int] = {}
    for i, ns in enumerate(_items(linux.get("namespaces"))):
        ns = _dict(ns)
        kind = ns.get("type")
        if isinstance(kind, str):
            if kind in seen:
                problems.add(
                    _ptr(("linux", "namespaces", i, "type")),
                    f"{_show(kind)} is already listed at {_ptr(('linux', 'namespaces', seen[kind]))}",
                )
            else:
                seen[kind] = i
        _absolute(problems, ns.get("path"), "linux", "namespaces", i, "path")

    # User namespace and its mappings.
    user_ns = namespaces.get("user")
    for key in ("uidMappings", "gidMappings"):
        mappings = linux.get(key)
        _check_mappings(mappings, problems, ("linux", key))
        if user_ns is None:
            if _items(mappings):
                problems.add(f"/linux/{key}", "needs a user namespace in /linux/namespaces")
        elif "path" not in user_ns and not _items(mappings):
            problems.add(f"/linux/{key}", "is required to create a user namespace")

    # Time namespace offsets can only be written into a namespace the runtime creates.
    offsets = linux.get("timeOffsets")
    if isinstance(offsets, dict) and offsets:
        time_ns = namespaces.get("time")
        if time_ns is None:
            problems.add("/linux/timeOffsets", "needs a time namespace in /linux/namespaces")
        elif "path" in time_ns:
            problems.add("/linux/timeOffsets", "cannot be set when joining an existing time namespace")
        for clock in offsets:
            if clock not in TIME_NAMESPACE_CLOCKS:
                problems.add(
                    _ptr(("linux", "timeOffsets", clock)),
                    f"{_show(clock)} is not a clock with a time namespace offset (monotonic, boottime)",
                )

    for i, device in enumerate(_items(linux.get("devices"))):
        _absolute(problems, _dict(device).get("path"), "linux", "devices", i, "path")
    for key in ("maskedPaths", "readonlyPaths"):
        for i, path in enumerate(_items(linux.get(key))):
            _absolute(problems, path, "linux", key, i)

    net_devices = linux.get("netDevices")
    if isinstance(net_devices, dict) and net_devices:
        if "network" not in namespaces:
            problems.add("/linux/netDevices", "needs a network namespace in /linux/namespaces")
        for host_name, device in net_devices.items():
            rule = _ifname_problem(host_name)
            if rule:
                problems.add(_ptr(("linux", "netDevices", host_name)), f"key {_show(host_name)}: {rule}")
            name = _dict(device).get("name")
            rule = _ifname_problem(name) if isinstance(name, str) else None
            if rule:
                problems.add(_ptr(("linux", "netDevices", host_name, "name")), f"{_show(name)}: {rule}")

    sysctl = linux.get("sysctl")
    if isinstance(sysctl, dict):
        for name in sysctl:
            rule = _sysctl_problem(name, namespaces)
            if rule:
                problems.add(_ptr(("linux", "sysctl", name)), rule)

    seccomp = _dict(linux.get("seccomp"))
    if "defaultErrnoRet" in seccomp and seccomp.get("defaultAction") not in ERRNO_ACTIONS:
        problems.add(
            "/linux/seccomp/defaultErrnoRet",
            f"is not allowed with defaultAction {_show(seccomp.get('defaultAction'))}"
            " (only SCMP_ACT_ERRNO, SCMP_ACT_TRACE)",
        )
    for i, rule in enumerate(_items(seccomp.get("syscalls"))):
        rule = _dict(rule)
        if "errnoRet" in rule and rule.get("action") not in ERRNO_ACTIONS:
            problems.add(
                _ptr(("linux", "seccomp", "syscalls", i, "errnoRet")),
                f"is not allowed with action {_show(rule.get('action'))} (only SCMP_ACT_ERRNO, SCMP_ACT_TRACE)",
            )


def _ifname_problem(name: str) -> str | None:
    """A Linux network interface name: 1 to 15 bytes, no '/', ':' or whitespace, not '.' or '..'."""
    if not 1 <= len(name.encode()) <= 15:
        return "is not a valid interface name (1 to 15 characters)"
    if name in (".", "..") or any(c in "/:" or c.isspace() or c == "\0" for c in name):
        return "is not a valid interface name"
    return None


def _sysctl_problem(name: str, namespaces: dict) -> str | None:
    """Why a sysctl cannot be set in this container, or None.

    Only namespaced sysctls are allowed (as in runc): writing any other would change the host.
    """
    parts = name.split("/") if "/" in name else name.split(".")
    if not name or any(p in ("", ".", "..") or any(c.isspace() or c == "\0" for c in p) for p in parts):
        return "is not a valid sysctl name"
    dotted = ".".join(parts)
    if dotted in _IPC_SYSCTLS or dotted.startswith("fs.mqueue."):
        needed = "ipc"
    elif dotted.startswith("net."):
        needed = "network"
    elif dotted in _UTS_SYSCTLS:
        needed = "uts"
    else:
        return "is not namespaced: setting it would change the host"
    if needed not in namespaces:
        return f"needs a {needed} namespace in /linux/namespaces"
    return None

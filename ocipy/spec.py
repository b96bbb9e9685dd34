"""Typed, read-only-in-spirit views over a config.json dict.

Naming rule: every JSON object of the spec is a record class whose attributes are
the snake_case of its JSON keys (`noNewPrivileges` -> `no_new_privileges`,
`containerID` -> `container_id`). A missing optional scalar is None, a missing
list is [], a missing map is {}, a missing optional object is None. The JSON key
`class` (process.ioPriority) becomes `class_`, the only Python keyword among them.

A few parts stay plain dicts because their consumers walk them as data:
`linux.resources`, `linux.seccomp`, `linux.intel_rdt`, `linux.sysctl`,
`linux.net_devices`, `linux.time_offsets` and `annotations`.

Views are built from a config that `ocipy.bundle.validate_config` accepted;
they do not check types again.

The views are `ocipy.record.Record`s (dataclasses without importing dataclasses:
every command that touches a config pays for its imports).
"""

from __future__ import annotations

__all__ = [
    "Spec", "Root", "Mount", "IDMapping", "Process", "ConsoleSize", "User", "Capabilities",
    "Rlimit", "IOPriority", "Scheduler", "ExecCPUAffinity", "Hooks", "Hook", "Linux",
    "Namespace", "Device", "Personality", "MemoryPolicy",
]

from .record import Record, factory


# --- the views -----------------------------------------------------------------------------


def _list(d: dict, key: str) -> list:
    return list(d.get(key) or [])


def _map(d: dict, key: str) -> dict:
    return dict(d.get(key) or {})


def _obj(d: dict, key: str, cls):
    value = d.get(key)
    return None if value is None else cls.from_dict(value)


class IDMapping(Record):
    container_id: int
    host_id: int
    size: int

    @classmethod
    def from_dict(cls, d: dict) -> IDMapping:
        return cls(container_id=d["containerID"], host_id=d["hostID"], size=d["size"])


def _mappings(d: dict, key: str) -> list[IDMapping]:
    return [IDMapping.from_dict(m) for m in d.get(key) or []]


class Root(Record):
    path: str
    readonly: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> Root:
        return cls(path=d["path"], readonly=bool(d.get("readonly", False)))


class Mount(Record):
    destination: str
    type: str | None = None
    source: str | None = None
    options: list[str] = factory(list)
    uid_mappings: list[IDMapping] = factory(list)
    gid_mappings: list[IDMapping] = factory(list)

    @classmethod
    def from_dict(cls, d: dict) -> Mount:
        return cls(
            destination=d["destination"],
            type=d.get("type"),
            source=d.get("source"),
            options=_list(d, "options"),
            uid_mappings=_mappings(d, "uidMappings"),
            gid_mappings=_mappings(d, "gidMappings"),
        )


class ConsoleSize(Record):
    height: int
    width: int

    @classmethod
    def from_dict(cls, d: dict) -> ConsoleSize:
        return cls(height=d["height"], width=d["width"])


class User(Record):
    """process.user; when the config has no user object, uid 0 / gid 0 (as runc)."""

    uid: int = 0
    gid: int = 0
    umask: int | None = None
    additional_gids: list[int] = factory(list)
    username: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> User:
        return cls(
            uid=d.get("uid", 0),
            gid=d.get("gid", 0),
            umask=d.get("umask"),
            additional_gids=_list(d, "additionalGids"),
            username=d.get("username"),
        )


class Capabilities(Record):
    bounding: list[str] = factory(list)
    effective: list[str] = factory(list)
    inheritable: list[str] = factory(list)
    permitted: list[str] = factory(list)
    ambient: list[str] = factory(list)

    @classmethod
    def from_dict(cls, d: dict) -> Capabilities:
        sets = ("bounding", "effective", "inheritable", "permitted", "ambient")
        return cls(**{name: _list(d, name) for name in sets})


class Rlimit(Record):
    type: str
    soft: int
    hard: int

    @classmethod
    def from_dict(cls, d: dict) -> Rlimit:
        return cls(type=d["type"], soft=d["soft"], hard=d["hard"])


class IOPriority(Record):
    class_: str
    priority: int

    @classmethod
    def from_dict(cls, d: dict) -> IOPriority:
        return cls(class_=d["class"], priority=d.get("priority", 0))


class Scheduler(Record):
    policy: str
    nice: int | None = None
    priority: int | None = None
    flags: list[str] = factory(list)
    runtime: int | None = None
    deadline: int | None = None
    period: int | None = None

    @classmethod
    def from_dict(cls, d: dict) -> Scheduler:
        return cls(
            policy=d["policy"],
            nice=d.get("nice"),
            priority=d.get("priority"),
            flags=_list(d, "flags"),
            runtime=d.get("runtime"),
            deadline=d.get("deadline"),
            period=d.get("period"),
        )


class ExecCPUAffinity(Record):
    initial: str | None = None
    final: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> ExecCPUAffinity:
        return cls(initial=d.get("initial"), final=d.get("final"))


class Process(Record):
    cwd: str
    args: list[str] = factory(list)
    env: list[str] = factory(list)
    terminal: bool = False
    console_size: ConsoleSize | None = None
    user: User = factory(User)
    command_line: str | None = None
    capabilities: Capabilities | None = None
    rlimits: list[Rlimit] = factory(list)
    no_new_privileges: bool = False
    apparmor_profile: str | None = None
    oom_score_adj: int | None = None
    selinux_label: str | None = None
    io_priority: IOPriority | None = None
    scheduler: Scheduler | None = None
    exec_cpu_affinity: ExecCPUAffinity | None = None

    @classmethod
    def from_dict(cls, d: dict) -> Process:
        """A config's `process`, or a standalone process.json (`exec --process`)."""
        user = d.get("user")
        return cls(
            cwd=d["cwd"],
            args=_list(d, "args"),
            env=_list(d, "env"),
            terminal=bool(d.get("terminal", False)),
            console_size=_obj(d, "consoleSize", ConsoleSize),
            user=User() if user is None else User.from_dict(user),
            command_line=d.get("commandLine"),
            capabilities=_obj(d, "capabilities", Capabilities),
            rlimits=[Rlimit.from_dict(r) for r in d.get("rlimits") or []],
            no_new_privileges=bool(d.get("noNewPrivileges", False)),
            apparmor_profile=d.get("apparmorProfile"),
            oom_score_adj=d.get("oomScoreAdj"),
            selinux_label=d.get("selinuxLabel"),
            io_priority=_obj(d, "ioPriority", IOPriority),
            scheduler=_obj(d, "scheduler", Scheduler),
            exec_cpu_affinity=_obj(d, "execCPUAffinity", ExecCPUAffinity),
        )


class Hook(Record):
    path: str
    args: list[str] = factory(list)
    env: list[str] = factory(list)
    timeout: int | None = None

    @classmethod
    def from_dict(cls, d: dict) -> Hook:
        return cls(path=d["path"], args=_list(d, "args"), env=_list(d, "env"), timeout=d.get("timeout"))


class Hooks(Record):
    """Always present on a Spec; every list is empty when the config has no hooks."""

    prestart: list[Hook] = factory(list)
    create_runtime: list[Hook] = factory(list)
    create_container: list[Hook] = factory(list)
    start_container: list[Hook] = factory(list)
    poststart: list[Hook] = factory(list)
    poststop: list[Hook] = factory(list)

    def __bool__(self) -> bool:
        """`if spec.hooks:` asks whether any hook is configured (create imports the runner only then)."""
        return bool(self.prestart or self.create_runtime or self.create_container or self.start_container
                    or self.poststart or self.poststop)

    @classmethod
    def from_dict(cls, d: dict) -> Hooks:
        def hooks(key: str) -> list[Hook]:
            return [Hook.from_dict(h) for h in d.get(key) or []]

        return cls(
            prestart=hooks("prestart"),
            create_runtime=hooks("createRuntime"),
            create_container=hooks("createContainer"),
            start_container=hooks("startContainer"),
            poststart=hooks("poststart"),
            poststop=hooks("poststop"),
        )


class Namespace(Record):
    type: str
    path: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> Namespace:
        return cls(type=d["type"], path=d.get("path"))


class Device(Record):
    type: str
    path: str
    major: int | None = None
    minor: int | None = None
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None

    @classmethod
    def from_dict(cls, d: dict) -> Device:
        return cls(
            type=d["type"],
            path=d["path"],
            major=d.get("major"),
            minor=d.get("minor"),
            file_mode=d.get("fileMode"),
            uid=d.get("uid"),
            gid=d.get("gid"),
        )


class Personality(Record):
    domain: str
    flags: list[str] = factory(list)

    @classmethod
    def from_dict(cls, d: dict) -> Personality:
        return cls(domain=d["domain"], flags=_list(d, "flags"))


class MemoryPolicy(Record):
    mode: str
    nodes: str | None = None
    flags: list[str] = factory(list)

    @classmethod
    def from_dict(cls, d: dict) -> MemoryPolicy:
        return cls(mode=d["mode"], nodes=d.get("nodes"), flags=_list(d, "flags"))


class Linux(Record):
    namespaces: list[Namespace] = factory(list)
    uid_mappings: list[IDMapping] = factory(list)
    gid_mappings: list[IDMapping] = factory(list)
    time_offsets: dict[str, dict] = factory(dict)
    devices: list[Device] = factory(list)
    net_devices: dict[str, dict] = factory(dict)
    cgroups_path: str | None = None
    resources: dict | None = None
    rootfs_propagation: str | None = None
    seccomp: dict | None = None
    sysctl: dict[str, str] = factory(dict)
    masked_paths: list[str] = factory(list)
    readonly_paths: list[str] = factory(list)
    mount_label: str | None = None
    personality: Personality | None = None
    intel_rdt: dict | None = None
    memory_policy: MemoryPolicy | None = None

    @classmethod
    def from_dict(cls, d: dict) -> Linux:
        return cls(
            namespaces=[Namespace.from_dict(n) for n in d.get("namespaces") or []],
            uid_mappings=_mappings(d, "uidMappings"),
            gid_mappings=_mappings(d, "gidMappings"),
            time_offsets=_map(d, "timeOffsets"),
            devices=[Device.from_dict(dev) for dev in d.get("devices") or []],
            net_devices=_map(d, "netDevices"),
            cgroups_path=d.get("cgroupsPath"),
            resources=d.get("resources"),
            rootfs_propagation=d.get("rootfsPropagation"),
            seccomp=d.get("seccomp"),
            sysctl=_map(d, "sysctl"),
            masked_paths=_list(d, "maskedPaths"),
            readonly_paths=_list(d, "readonlyPaths"),
            mount_label=d.get("mountLabel"),
            personality=_obj(d, "personality", Personality),
            intel_rdt=d.get("intelRdt"),
            memory_policy=_obj(d, "memoryPolicy", MemoryPolicy),
        )

    def namespace(self, type: str) -> Namespace | None:
        """The entry of `linux.namespaces` with this type, or None (inherit the runtime's)."""
        for ns in self.namespaces:
            if ns.type == type:
                return ns
        return None


class Spec(Record):
    oci_version: str
    root: Root | None = None
    mounts: list[Mount] = factory(list)
    process: Process | None = None
    hostname: str | None = None
    domainname: str | None = None
    hooks: Hooks = factory(Hooks)
    annotations: dict[str, str] = factory(dict)
    linux: Linux | None = None
    raw: dict = factory(dict)  # the config itself (not in the repr)

    _hidden = ("raw",)

    def runtime_steps_before_pivot(self) -> bool:
        """Whether the runtime has work in its own namespaces once pid 1 has mounted its root
        and before it pivots: prestart or createRuntime hooks, or netDevices to move in. Both
        sides of create ask, and skip their "hooks" exchange without any."""
        return bool(self.hooks.prestart or self.hooks.create_runtime or (self.linux and self.linux.net_devices))

    @classmethod
    def from_dict(cls, cfg: dict) -> Spec:
        hooks = cfg.get("hooks")
        return cls(
            oci_version=cfg["ociVersion"],
            root=_obj(cfg, "root", Root),
            mounts=[Mount.from_dict(m) for m in cfg.get("mounts") or []],
            process=_obj(cfg, "process", Process),
            hostname=cfg.get("hostname"),
            domainname=cfg.get("domainname"),
            hooks=Hooks() if hooks is None else Hooks.from_dict(hooks),
            annotations=_map(cfg, "annotations"),
            linux=_obj(cfg, "linux", Linux),
            raw=cfg,
        )

"""linux.resources -> the ordered list of cgroup file writes, for v1 and for v2.

Pure functions, no I/O: the managers read whatever current values a plan needs,
pass them in, and carry out the writes in order.

Conventions (shared by create-time apply and `update`):
- A 0 (or "") for a limit means "not set / no change": docker sends zeros for
  every field it does not set (ENGINES.md). Exceptions where 0 is a real value:
  pids.limit (the spec says 0 is a valid limit), memory.swappiness, cpu.idle.
- -1 means unlimited: "-1" in v1 files, "max" in v2 files.

Conversions to cgroup v2 (documented here because they are choices):
- cpu.shares -> cpu.weight: the curve crun adopted in 1.23 and runc in 1.3.2 /
  1.4 (opencontainers/runc#4785, containers/crun#1767):
      l = log2(shares); weight = ceil(10 ** ((l*l + 125*l) / 612 - 7/34))
  It maps the v1 default 1024 to the v2 default 100, 2 -> 1 and
  262144 -> 10000 (the old linear formula, 1 + (shares-2)*9999/262142, mapped
  1024 to 39, so a default container was starved next to systemd services).
  Result clamped to [1, 10000].
- blockIO weight (10..1000) -> io.weight (1..10000), runc's linear mapping:
  1 + (weight - 10) * 9999 / 990. When the kernel offers io.bfq.weight (same
  range as v1) the weight is written there unconverted, as runc does.
- memory.swap (v1: memory+swap) -> memory.swap.max = swap - limit; -1 stays max;
  limit -1 with no swap given means swap max too (runc's compatibility rule).
"""

from __future__ import annotations

from ocipy.errors import SetupError
from ocipy.record import TupleRecord


class Write(TupleRecord):
    """One write: `value` into `<dir of controller>/<filename>`.

    field: the JSON field it comes from, for error messages.
    optional: skip silently when the file does not exist on this host.
    fallback: another Write to use instead when `filename` does not exist.
    verify: read the file back after writing; a different number means the kernel
      accepted but did not apply the value (deprecated kernel memory limits are
      ignored, hugetlb limits are rounded down to whole pages): an error.
    """

    controller: str
    filename: str
    value: str
    field: str
    optional: bool = False
    fallback: "Write | None" = None
    verify: bool = False


P = "linux.resources"


def _int(v, field) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SetupError(f"{field}: expected an integer, got {v!r}")
    return v


def _set(v) -> bool:
    """A numeric limit is set when present and non-zero."""
    return v is not None and v != 0


def _v1_num(v: int) -> str:
    return "-1" if v < 0 else str(v)


def _v2_num(v: int) -> str:
    return "max" if v < 0 else str(v)


# ---------------------------------------------------------------------------------------------
# conversions

def cpu_shares_to_weight(shares: int) -> int:
    """v1 cpu.shares -> v2 cpu.weight (see module docstring). 0 -> 0 (unset)."""
    if shares == 0:
        return 0
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    import math  # cgroup v2 only (0.4 ms)

    l = math.log2(shares)
    exponent = (l * l + 125 * l) / 612.0 - 7.0 / 34.0
    return max(1, min(10000, math.ceil(10 ** exponent)))


def blkio_weight_to_io_weight(weight: int) -> int:
    """v1 blkio.weight (10..1000) -> v2 io.weight (1..10000). 0 -> 0 (unset)."""
    if weight == 0:
        return 0
    return max(1, min(10000, 1 + (weight - 10) * 9999 // 990))


def memory_swap_to_v2(swap: int, limit: int) -> int | None:
    """v1 memory+swap limit -> v2 memory.swap.max; None = leave unchanged; -1 = max."""
    if limit == -1 and swap == 0:
        return -1
    if swap == -1:
        return -1
    if swap == 0:
        return None
    if limit in (0, -1):
        raise SetupError(f"{P}.memory.swap: cannot set a swap limit without a memory limit on cgroup v2")
    if swap < limit:
        raise SetupError(f"{P}.memory.swap: memory+swap limit {swap} is smaller than memory limit {limit}")
    return swap - limit


def _is_page_size(text: str) -> bool:
    """`<digits>[KMGTP]B`: 2MB, 1GB, 64KB."""
    number = text.removesuffix("B")
    if number == text:
        return False
    if number.endswith(("K", "M", "G", "T", "P")):
        number = number[:-1]
    return number.isascii() and number.isdigit()


def check_page_size(page_size: str, field: str) -> str:
    if not isinstance(page_size, str) or not _is_page_size(page_size):
        raise SetupError(f"{field}: invalid hugepage size {page_size!r} (expected e.g. 2MB, 1GB, 64KB)")
    return page_size


def _dev(entry: dict, field: str) -> str:
    try:
        return f"{_int(entry['major'], field + '.major')}:{_int(entry['minor'], field + '.minor')}"
    except KeyError as e:
        raise SetupError(f"{field}: {e.args[0]} is required") from None


# ---------------------------------------------------------------------------------------------
# devices (v1 text rules; the v2 program is in bpf_devices.py)

def device_rule_text(rule: dict) -> str:
    """An OCI device rule -> the v1 devices.allow/deny line: "c 1:3 rwm"."""
    t = rule.get("type") or "a"
    if t == "u":
        t = "c"  # an unbuffered character device is a character device to the cgroup
    if t not in ("a", "b", "c"):
        raise SetupError(f"{P}.devices: invalid device type {t!r}")
    if t == "a":
        return "a"
    major = rule.get("major")
    minor = rule.get("minor")
    access = rule.get("access") or "rwm"
    if any(ch not in "rwm" for ch in access):
        raise SetupError(f"{P}.devices: invalid access {access!r}")
    ma = "*" if major is None or major < 0 else str(major)
    mi = "*" if minor is None or minor < 0 else str(minor)
    return f"{t} {ma}:{mi} {access}"


def plan_devices_v1(devices: list | None, current_list: str | None = None) -> list[Write]:
    """runc semantics: when rules are given, deny everything first, then apply them in order.

    current_list: the cgroup's devices.list text. When it shows a known state with
    the same default as the rules produce (a live container being updated), only
    the differing exceptions are written, so the container never passes through
    "deny everything" (see devices_rules.v1_transition).
    """
    if devices is None:
        return []
    if current_list is not None:
        from .devices_rules import emulate_v1, parse_devices_list, v1_transition

        cur = parse_devices_list(current_list)
        if cur is not None and cur[0] == emulate_v1(devices)[0]:
            return [Write("devices", f, line, f"{P}.devices") for f, line in v1_transition(devices, current_list)]
    writes = [Write("devices", "devices.deny", "a", f"{P}.devices")]
    for i, rule in enumerate(devices):
        field = f"{P}.devices[{i}]"
        if "allow" not in rule:
            raise SetupError(f"{field}.allow is required")
        if rule.get("type") == "p":
            continue  # FIFOs are not device-controlled: nothing to allow or deny
        fname = "devices.allow" if rule["allow"] else "devices.deny"
        writes.append(Write("devices", fname, device_rule_text(rule), field))
    return writes


# ---------------------------------------------------------------------------------------------
# v1

def plan_v1(resources: dict | None, current: dict | None = None) -> list[Write]:
    """linux.resources -> ordered v1 writes.

    current: values the plan depends on, read by the manager:
      "memory.limit_in_bytes": int, the current memory limit (to order memory and
      memory+swap writes: the kernel requires memory <= memory+swap at every step);
      "devices.list": str, the current device list (to update devices in place).
    """
    r = resources or {}
    current = current or {}
    w: list[Write] = []

    if r.get("unified"):
        raise SetupError(f"{P}.unified: cgroup v2 files cannot be set on a cgroup v1 host")

    w += plan_devices_v1(r.get("devices"), current.get("devices.list"))

    mem = r.get("memory") or {}
    if mem:
        f = f"{P}.memory"
        limit = mem.get("limit")
        swap = mem.get("swap")
        lim_w = sw_w = None
        if _set(limit):
            lim_w = Write("memory", "memory.limit_in_bytes", _v1_num(_int(limit, f + ".limit")), f + ".limit")
        if _set(swap):
            sw_w = Write("memory", "memory.memsw.limit_in_bytes", _v1_num(_int(swap, f + ".swap")), f + ".swap")
        elif limit == -1:
            # unlimited memory and no swap given: make memory+swap unlimited too (runc)
            sw_w = Write("memory", "memory.memsw.limit_in_bytes", "-1", f + ".limit", optional=True)
        if lim_w and sw_w:
            cur = current.get("memory.limit_in_bytes")
            new_lim = limit if limit > 0 else None
            growing = swap == -1 or limit == -1 or (cur is not None and new_lim is not None and new_lim > cur)
            w += [sw_w, lim_w] if growing else [lim_w, sw_w]
        else:
            w += [x for x in (lim_w, sw_w) if x]
        if _set(mem.get("reservation")):
            w.append(Write("memory", "memory.soft_limit_in_bytes",
                           _v1_num(_int(mem["reservation"], f + ".reservation")), f + ".reservation"))
        if _set(mem.get("kernel")):
            # deprecated: recent kernels lack the file, or accept the write and ignore it
            # (verify catches that); either way the limit cannot be applied: an error
            k = _int(mem["kernel"], f + ".kernel")
            w.append(Write("memory", "memory.kmem.limit_in_bytes", _v1_num(k), f + ".kernel", verify=k > 0))
        if _set(mem.get("kernelTCP")):
            k = _int(mem["kernelTCP"], f + ".kernelTCP")
            w.append(Write("memory", "memory.kmem.tcp.limit_in_bytes", _v1_num(k), f + ".kernelTCP", verify=k > 0))
        if mem.get("swappiness") is not None and mem["swappiness"] != -1:
            sw = _int(mem["swappiness"], f + ".swappiness")
            if not 0 <= sw <= 100:
                raise SetupError(f"{f}.swappiness: {sw} is not between 0 and 100")
            w.append(Write("memory", "memory.swappiness", str(sw), f + ".swappiness"))
        if mem.get("disableOOMKiller"):
            w.append(Write("memory", "memory.oom_control", "1", f + ".disableOOMKiller"))
        if mem.get("useHierarchy") is not None:
            w.append(Write("memory", "memory.use_hierarchy", "1" if mem["useHierarchy"] else "0",
                           f + ".useHierarchy"))
        # checkBeforeUpdate: the v1 kernel itself refuses a limit below usage.

    cpu = r.get("cpu") or {}
    if cpu:
        f = f"{P}.cpu"
        if _set(cpu.get("shares")):
            w.append(Write("cpu", "cpu.shares", str(_int(cpu["shares"], f + ".shares")), f + ".shares"))
        if _set(cpu.get("period")):
            w.append(Write("cpu", "cpu.cfs_period_us", str(_int(cpu["period"], f + ".period")), f + ".period"))
        if _set(cpu.get("quota")):
            w.append(Write("cpu", "cpu.cfs_quota_us", _v1_num(_int(cpu["quota"], f + ".quota")), f + ".quota"))
        if cpu.get("burst") is not None:
            b = _int(cpu["burst"], f + ".burst")
            q = cpu.get("quota")
            if q and q > 0 and b > q:
                raise SetupError(f"{f}.burst: {b} is larger than quota {q}")
            w.append(Write("cpu", "cpu.cfs_burst_us", str(b), f + ".burst", optional=(b == 0)))
        if _set(cpu.get("realtimePeriod")):
            w.append(Write("cpu", "cpu.rt_period_us", str(_int(cpu["realtimePeriod"], f + ".realtimePeriod")),
                           f + ".realtimePeriod"))
        if _set(cpu.get("realtimeRuntime")):
            w.append(Write("cpu", "cpu.rt_runtime_us", str(_int(cpu["realtimeRuntime"], f + ".realtimeRuntime")),
                           f + ".realtimeRuntime"))
        if cpu.get("idle") is not None:
            idle = _int(cpu["idle"], f + ".idle")
            w.append(Write("cpu", "cpu.idle", str(idle), f + ".idle", optional=(idle == 0)))
        if cpu.get("cpus"):
            w.append(Write("cpuset", "cpuset.cpus", str(cpu["cpus"]), f + ".cpus"))
        if cpu.get("mems"):
            w.append(Write("cpuset", "cpuset.mems", str(cpu["mems"]), f + ".mems"))

    pids = r.get("pids")
    if pids and pids.get("limit") is not None:
        lim = _int(pids["limit"], f"{P}.pids.limit")
        w.append(Write("pids", "pids.max", "max" if lim < 0 else str(lim), f"{P}.pids.limit"))

    bio = r.get("blockIO") or {}
    if bio:
        f = f"{P}.blockIO"
        if _set(bio.get("weight")):
            v = str(_int(bio["weight"], f + ".weight"))
            w.append(Write("blkio", "blkio.weight", v, f + ".weight",
                           fallback=Write("blkio", "blkio.bfq.weight", v, f + ".weight")))
        if _set(bio.get("leafWeight")):
            w.append(Write("blkio", "blkio.leaf_weight", str(_int(bio["leafWeight"], f + ".leafWeight")),
                           f + ".leafWeight"))
        for i, d in enumerate(bio.get("weightDevice") or []):
            fi = f"{f}.weightDevice[{i}]"
            dev = _dev(d, fi)
            if d.get("weight"):
                v = f"{dev} {_int(d['weight'], fi + '.weight')}"
                w.append(Write("blkio", "blkio.weight_device", v, fi + ".weight",
                               fallback=Write("blkio", "blkio.bfq.weight_device", v, fi + ".weight")))
            if d.get("leafWeight"):
                w.append(Write("blkio", "blkio.leaf_weight_device",
                               f"{dev} {_int(d['leafWeight'], fi + '.leafWeight')}", fi + ".leafWeight"))
        for key, fname in (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
                           ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
                           ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
                           ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device")):
            for i, d in enumerate(bio.get(key) or []):
                fi = f"{f}.{key}[{i}]"
                w.append(Write("blkio", fname, f"{_dev(d, fi)} {_int(d.get('rate'), fi + '.rate')}", fi + ".rate"))

    for i, h in enumerate(r.get("hugepageLimits") or []):
        fi = f"{P}.hugepageLimits[{i}]"
        size = check_page_size(h.get("pageSize"), fi + ".pageSize")
        v = str(_int(h.get("limit"), fi + ".limit"))
        w.append(Write("hugetlb", f"hugetlb.{size}.limit_in_bytes", v, fi + ".limit", verify=True))
        w.append(Write("hugetlb", f"hugetlb.{size}.rsvd.limit_in_bytes", v, fi + ".limit", optional=True,
                       verify=True))

    net = r.get("network") or {}
    if net:
        f = f"{P}.network"
        if _set(net.get("classID")):
            w.append(Write("net_cls", "net_cls.classid", str(_int(net["classID"], f + ".classID")), f + ".classID"))
        for i, p in enumerate(net.get("priorities") or []):
            fi = f"{f}.priorities[{i}]"
            w.append(Write("net_prio", "net_prio.ifpriomap",
                           f"{p.get('name')} {_int(p.get('priority'), fi + '.priority')}", fi))

    w += _plan_rdma(r.get("rdma"))
    return w


def _plan_rdma(rdma: dict | None) -> list[Write]:
    w = []
    for dev, lim in (rdma or {}).items():
        fi = f"{P}.rdma.{dev}"
        parts = [dev]
        if lim.get("hcaHandles") is not None:
            parts.append(f"hca_handle={_int(lim['hcaHandles'], fi + '.hcaHandles')}")
        if lim.get("hcaObjects") is not None:
            parts.append(f"hca_object={_int(lim['hcaObjects'], fi + '.hcaObjects')}")
        if len(parts) == 1:
            raise SetupError(f"{fi}: one of hcaHandles or hcaObjects is required")
        w.append(Write("rdma", "rdma.max", " ".join(parts), fi))
    return w


# ---------------------------------------------------------------------------------------------
# v2

def plan_v2(resources: dict | None, current: dict | None = None) -> list[Write]:
    """linux.resources -> ordered v2 writes (devices excluded: see bpf_devices.py).

    current: "cpu.max": the current "quota period" text (to change only one half);
      "memory.max": the current memory limit text (to convert a swap limit
      given without a memory limit, as in `update --memory-swap`).
    Settings v2 cannot express raise SetupError (runtime.md: a property the runtime
    cannot apply is an error): kernel/kernelTCP limits, disableOOMKiller true,
    useHierarchy false, leafWeight, realtime cpu, net_cls/net_prio. Settings that
    v2 already satisfies are accepted (useHierarchy true, disableOOMKiller false).
    swappiness is skipped, as runc and crun do: v2 has no per-cgroup swappiness.
    """
    r = resources or {}
    current = current or {}
    w: list[Write] = []

    mem = r.get("memory") or {}
    if mem:
        f = f"{P}.memory"
        limit = mem.get("limit") or 0
        swap = mem.get("swap") or 0
        _int(limit, f + ".limit")
        _int(swap, f + ".swap")
        base = limit
        if swap not in (0, -1) and limit == 0:
            cur = str(current.get("memory.max", "")).strip()
            base = -1 if cur == "max" else int(cur) if cur.isdigit() else 0
        swap_v2 = memory_swap_to_v2(swap, base)
        for key in ("kernel", "kernelTCP"):
            if _set(mem.get(key)) and mem[key] != -1:
                raise SetupError(f"{f}.{key}: kernel memory limits do not exist in cgroup v2")
        if mem.get("disableOOMKiller"):
            raise SetupError(f"{f}.disableOOMKiller: cgroup v2 cannot disable the OOM killer")
        if mem.get("useHierarchy") is False:
            raise SetupError(f"{f}.useHierarchy: cgroup v2 memory accounting is always hierarchical")
        # order: memory.max before memory.swap.max is fine in v2 (independent limits)
        if _set(limit):
            w.append(Write("memory", "memory.max", _v2_num(limit), f + ".limit"))
        if swap_v2 is not None:
            w.append(Write("memory", "memory.swap.max", _v2_num(swap_v2), f + ".swap",
                           optional=(swap == 0)))
        if _set(mem.get("reservation")):
            w.append(Write("memory", "memory.low", _v2_num(_int(mem["reservation"], f + ".reservation")),
                           f + ".reservation"))

    cpu = r.get("cpu") or {}
    if cpu:
        f = f"{P}.cpu"
        if _set(cpu.get("shares")):
            weight = cpu_shares_to_weight(_int(cpu["shares"], f + ".shares"))
            w.append(Write("cpu", "cpu.weight", str(weight), f + ".shares"))
        quota = cpu.get("quota") or 0
        period = cpu.get("period") or 0
        if quota or period:
            cur_q, cur_p = "max", "100000"
            parts = str(current.get("cpu.max", "max 100000")).split()
            if len(parts) == 2:
                cur_q, cur_p = parts
            q = cur_q if quota == 0 else _v2_num(_int(quota, f + ".quota"))
            p = cur_p if period == 0 else str(_int(period, f + ".period"))
            w.append(Write("cpu", "cpu.max", f"{q} {p}", f + (".quota" if quota else ".period")))
        if cpu.get("burst") is not None:
            b = _int(cpu["burst"], f + ".burst")
            if quota and quota > 0 and b > quota:
                raise SetupError(f"{f}.burst: {b} is larger than quota {quota}")
            w.append(Write("cpu", "cpu.max.burst", str(b), f + ".burst", optional=(b == 0)))
        if _set(cpu.get("realtimeRuntime")) or _set(cpu.get("realtimePeriod")):
            raise SetupError(f"{f}.realtimeRuntime: realtime cpu limits do not exist in cgroup v2")
        if cpu.get("idle") is not None:
            idle = _int(cpu["idle"], f + ".idle")
            w.append(Write("cpu", "cpu.idle", str(idle), f + ".idle", optional=(idle == 0)))
        if cpu.get("cpus"):
            w.append(Write("cpuset", "cpuset.cpus", str(cpu["cpus"]), f + ".cpus"))
        if cpu.get("mems"):
            w.append(Write("cpuset", "cpuset.mems", str(cpu["mems"]), f + ".mems"))

    pids = r.get("pids")
    if pids and pids.get("limit") is not None:
        lim = _int(pids["limit"], f"{P}.pids.limit")
        w.append(Write("pids", "pids.max", "max" if lim < 0 else str(lim), f"{P}.pids.limit"))

    bio = r.get("blockIO") or {}
    if bio:
        f = f"{P}.blockIO"
        if _set(bio.get("weight")):
            v = _int(bio["weight"], f + ".weight")
            w.append(Write("io", "io.bfq.weight", str(v), f + ".weight",
                           fallback=Write("io", "io.weight", f"default {blkio_weight_to_io_weight(v)}",
                                          f + ".weight")))
        if _set(bio.get("leafWeight")) or any(d.get("leafWeight") for d in bio.get("weightDevice") or []):
            raise SetupError(f"{f}.leafWeight: cgroup v2 has no leaf weights")
        for i, d in enumerate(bio.get("weightDevice") or []):
            fi = f"{f}.weightDevice[{i}]"
            dev = _dev(d, fi)
            if d.get("weight"):
                v = _int(d["weight"], fi + ".weight")
                w.append(Write("io", "io.bfq.weight", f"{dev} {v}", fi + ".weight",
                               fallback=Write("io", "io.weight", f"{dev} {blkio_weight_to_io_weight(v)}",
                                              fi + ".weight")))
        for key, word in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                          ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
            for i, d in enumerate(bio.get(key) or []):
                fi = f"{f}.{key}[{i}]"
                rate = _int(d.get("rate"), fi + ".rate")
                w.append(Write("io", "io.max", f"{_dev(d, fi)} {word}={rate if rate > 0 else 'max'}", fi + ".rate"))

    for i, h in enumerate(r.get("hugepageLimits") or []):
        fi = f"{P}.hugepageLimits[{i}]"
        size = check_page_size(h.get("pageSize"), fi + ".pageSize")
        v = str(_int(h.get("limit"), fi + ".limit"))
        w.append(Write("hugetlb", f"hugetlb.{size}.max", v, fi + ".limit", verify=True))
        w.append(Write("hugetlb", f"hugetlb.{size}.rsvd.max", v, fi + ".limit", optional=True, verify=True))

    net = r.get("network") or {}
    if _set(net.get("classID")) or net.get("priorities"):
        raise SetupError(f"{P}.network: net_cls and net_prio do not exist in cgroup v2")

    w += _plan_rdma(r.get("rdma"))

    for key, value in (r.get("unified") or {}).items():
        fi = f"{P}.unified.{key}"
        if not isinstance(key, str) or "/" in key or key in ("", ".", "..") or "." not in key:
            raise SetupError(f"{fi}: not a cgroup v2 file name")
        controller = key.split(".", 1)[0]
        w.append(Write(controller, key, str(value), fi))
    return w


def v2_controllers_needed(writes: list[Write]) -> list[str]:
    """The controllers a v2 plan writes to, in first-use order (the core `cgroup.*` files need none)."""
    seen = []
    for wr in writes:
        if wr.controller not in ("cgroup",) and wr.controller not in seen:
            seen.append(wr.controller)
    return seen

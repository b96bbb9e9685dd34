"""Read a container's cgroup statistics in the shape of runc's `events --stats` "data" object.

The keys and their omission rules follow runc's types/events.go as seen in
corpus/engines/runc-events-stats.json: zero-valued fields tagged omitempty in
runc are left out (e.g. "pids": {"current": 1} without "limit"), "blkio" is {}
when there is nothing to say.
"""

from __future__ import annotations

import os

from .manager import UNIFIED

MAX_U64 = 18446744073709551615
_USER_HZ = 100
_NS_PER_TICK = 1_000_000_000 // _USER_HZ


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _int(path: str) -> int | None:
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return MAX_U64
    try:
        return int(text)
    except ValueError:
        return None


def _kv(path: str) -> dict[str, int]:
    out = {}
    for line in (_read(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def parse_list(text: str | None) -> list[int]:
    """"0-2,5" -> [0, 1, 2, 5]."""
    out: list[int] = []
    for part in (text or "").strip().split(","):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def _omit_zero(d: dict, keep=()) -> dict:
    return {k: v for k, v in d.items() if k in keep or (v not in (0, None, [], {}))}


_ZERO_ENTRY = {"limit": 0, "failcnt": 0}
_CPUSET_ZERO = {"cpu_exclusive": 0, "mem_hardwall": 0, "mem_exclusive": 0, "memory_migrate": 0,
                "memory_spread_page": 0, "memory_spread_slab": 0, "memory_pressure": 0, "sched_load_balance": 0,
                "sched_relax_domain_level": 0}


def _empty_memory() -> dict:
    # Go's omitempty does not drop struct values: runc always prints these four entries
    return {"usage": dict(_ZERO_ENTRY), "swap": dict(_ZERO_ENTRY), "kernel": dict(_ZERO_ENTRY),
            "kernelTCP": dict(_ZERO_ENTRY)}


def _empty_stats() -> dict:
    """runc's zero Stats: what `events --stats` prints for a controller it could not read."""
    return {"cpu": {"usage": {"kernel": 0, "user": 0}, "throttling": {}}, "cpuset": dict(_CPUSET_ZERO),
            "memory": _empty_memory(), "pids": {}, "blkio": {}, "hugetlb": {}, "intel_rdt": {},
            "network_interfaces": None}


# --- v1 --------------------------------------------------------------------------------------------

def stats_v1(paths: dict[str, str]) -> dict:
    s = _empty_stats()
    acct = paths.get("cpuacct")
    if acct and os.path.isdir(acct):
        usage = {
            "total": _int(os.path.join(acct, "cpuacct.usage")) or 0,
            "percpu": [int(x) for x in (_read(os.path.join(acct, "cpuacct.usage_percpu")) or "").split()],
            "percpu_kernel": [int(x) for x in (_read(os.path.join(acct, "cpuacct.usage_percpu_sys")) or "").split()],
            "percpu_user": [int(x) for x in (_read(os.path.join(acct, "cpuacct.usage_percpu_user")) or "").split()],
        }
        st = _kv(os.path.join(acct, "cpuacct.stat"))
        usage = _omit_zero(usage)
        usage["kernel"] = st.get("system", 0) * _NS_PER_TICK
        usage["user"] = st.get("user", 0) * _NS_PER_TICK
        s["cpu"]["usage"] = usage
    cpu = paths.get("cpu")
    if cpu and os.path.isdir(cpu):
        st = _kv(os.path.join(cpu, "cpu.stat"))
        s["cpu"]["throttling"] = _omit_zero({"periods": st.get("nr_periods", 0),
                                             "throttledPeriods": st.get("nr_throttled", 0),
                                             "throttledTime": st.get("throttled_time", 0)})
    cs = paths.get("cpuset")
    if cs and os.path.isdir(cs):
        s["cpuset"] = _cpuset(cs, "cpuset.")
    mem = paths.get("memory")
    if mem and os.path.isdir(mem):
        s["memory"] = _memory_v1(mem)
    pids = paths.get("pids")
    if pids and os.path.isdir(pids):
        lim = _int(os.path.join(pids, "pids.max"))
        s["pids"] = _omit_zero({"current": _int(os.path.join(pids, "pids.current")) or 0,
                                "limit": 0 if lim == MAX_U64 else (lim or 0)})
    blk = paths.get("blkio")
    if blk and os.path.isdir(blk):
        s["blkio"] = _blkio_v1(blk)
    hug = paths.get("hugetlb")
    if hug and os.path.isdir(hug):
        s["hugetlb"] = _hugetlb(hug, v2=False)
    elif paths.get(UNIFIED) and os.path.isdir(paths[UNIFIED]):
        s["hugetlb"] = _hugetlb(paths[UNIFIED], v2=True)
    return s


def _cpuset(d: str, prefix: str) -> dict:
    def num(name, default=0):
        v = _int(os.path.join(d, prefix + name))
        return default if v is None else v

    return {
        "cpus": parse_list(_read(os.path.join(d, prefix + "effective_cpus")) or _read(os.path.join(d, prefix + "cpus"))),
        "cpu_exclusive": num("cpu_exclusive"),
        "mems": parse_list(_read(os.path.join(d, prefix + "effective_mems")) or _read(os.path.join(d, prefix + "mems"))),
        "mem_hardwall": num("mem_hardwall"),
        "mem_exclusive": num("mem_exclusive"),
        "memory_migrate": num("memory_migrate"),
        "memory_spread_page": num("memory_spread_page"),
        "memory_spread_slab": num("memory_spread_slab"),
        "memory_pressure": num("memory_pressure"),
        "sched_load_balance": num("sched_load_balance"),
        "sched_relax_domain_level": num("sched_relax_domain_level"),
    }


def _mem_entry(d: str, prefix: str, with_usage=True) -> dict:
    e = {"limit": _int(os.path.join(d, prefix + "limit_in_bytes")) or 0}
    if with_usage:
        e["usage"] = _int(os.path.join(d, prefix + "usage_in_bytes")) or 0
        e["max"] = _int(os.path.join(d, prefix + "max_usage_in_bytes")) or 0
    e["failcnt"] = _int(os.path.join(d, prefix + "failcnt")) or 0
    return _omit_zero(e, keep=("limit", "failcnt"))


def _memory_v1(d: str) -> dict:
    raw = _kv(os.path.join(d, "memory.stat"))
    m = _empty_memory()
    cache = raw.get("total_cache", raw.get("cache", 0))
    if cache:
        m["cache"] = cache
    m["usage"] = _mem_entry(d, "memory.")
    if os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes")):
        m["swap"] = _mem_entry(d, "memory.memsw.")
    if os.path.exists(os.path.join(d, "memory.kmem.limit_in_bytes")):
        m["kernel"] = _mem_entry(d, "memory.kmem.")
    if os.path.exists(os.path.join(d, "memory.kmem.tcp.limit_in_bytes")):
        m["kernelTCP"] = _mem_entry(d, "memory.kmem.tcp.", with_usage=False)
    if raw:
        m["raw"] = raw
    return m


def _blkio_entries(path: str) -> list[dict]:
    out = []
    for line in (_read(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            ma, mi = parts[0].split(":")
            out.append(_omit_zero({"major": int(ma), "minor": int(mi), "op": parts[1], "value": int(parts[2])}))
        elif len(parts) == 2 and ":" in parts[0]:
            ma, mi = parts[0].split(":")
            out.append(_omit_zero({"major": int(ma), "minor": int(mi), "op": "", "value": int(parts[1])}))
    return out


def _blkio_v1(d: str) -> dict:
    names = {
        "ioServiceBytesRecursive": "io_service_bytes_recursive",
        "ioServicedRecursive": "io_serviced_recursive",
        "ioQueueRecursive": "io_queued_recursive",
        "ioServiceTimeRecursive": "io_service_time_recursive",
        "ioWaitTimeRecursive": "io_wait_time_recursive",
        "ioMergedRecursive": "io_merged_recursive",
        "ioTimeRecursive": "time_recursive",
        "sectorsRecursive": "sectors_recursive",
    }
    out = {}
    for key, name in names.items():
        entries = _blkio_entries(os.path.join(d, "blkio." + name))
        if not entries and key in ("ioServiceBytesRecursive", "ioServicedRecursive"):
            # no CFQ/BFQ accounting: fall back to the throttle counters, as runc does
            entries = _blkio_entries(os.path.join(d, "blkio.throttle." + name))
        if entries:
            out[key] = entries
    return out


def _hugetlb(d: str, v2: bool) -> dict:
    out = {}
    for sz in hugepage_sizes():
        if v2:
            usage = _int(os.path.join(d, f"hugetlb.{sz}.current"))
            if usage is None:
                continue
            events = _kv(os.path.join(d, f"hugetlb.{sz}.events"))
            out[sz] = _omit_zero({"usage": usage, "failcnt": events.get("max", 0)}, keep=("failcnt",))
        else:
            usage = _int(os.path.join(d, f"hugetlb.{sz}.usage_in_bytes"))
            if usage is None:
                continue
            out[sz] = _omit_zero({"usage": usage, "max": _int(os.path.join(d, f"hugetlb.{sz}.max_usage_in_bytes")) or 0,
                                  "failcnt": _int(os.path.join(d, f"hugetlb.{sz}.failcnt")) or 0}, keep=("failcnt",))
    return out


def hugepage_sizes() -> list[str]:
    """Sizes as cgroup file names spell them ("2MB", "1GB") from /sys/kernel/mm/hugepages."""
    out = []
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return out
    for n in sorted(names):
        if n.startswith("hugepages-") and n.endswith("kB"):
            kb = int(n[len("hugepages-"):-2])
            out.append(format_page_size(kb * 1024))
    return out


def format_page_size(size: int) -> str:
    for unit in ("", "K", "M", "G", "T", "P"):
        if size < 1024 or size % 1024:
            return f"{size}{unit}B"
        size //= 1024
    return f"{size}EB"


# --- v2 --------------------------------------------------------------------------------------------

def stats_v2(d: str) -> dict:
    s = _empty_stats()
    if not os.path.isdir(d):
        return s
    st = _kv(os.path.join(d, "cpu.stat"))
    if st:
        s["cpu"]["usage"] = {"total": st.get("usage_usec", 0) * 1000, "kernel": st.get("system_usec", 0) * 1000,
                             "user": st.get("user_usec", 0) * 1000}
        s["cpu"]["usage"] = _omit_zero(s["cpu"]["usage"], keep=("kernel", "user"))
        s["cpu"]["throttling"] = _omit_zero({"periods": st.get("nr_periods", 0),
                                             "throttledPeriods": st.get("nr_throttled", 0),
                                             "throttledTime": st.get("throttled_usec", 0) * 1000})
    if os.path.exists(os.path.join(d, "cpuset.cpus.effective")):
        s["cpuset"] = dict(_CPUSET_ZERO, cpus=parse_list(_read(os.path.join(d, "cpuset.cpus.effective"))),
                           mems=parse_list(_read(os.path.join(d, "cpuset.mems.effective"))))
    if os.path.exists(os.path.join(d, "memory.current")):
        raw = _kv(os.path.join(d, "memory.stat"))
        events = _kv(os.path.join(d, "memory.events"))
        usage = _int(os.path.join(d, "memory.current")) or 0
        m = _empty_memory()
        if raw.get("file"):
            m["cache"] = raw["file"]
        m["usage"] = _omit_zero({"limit": _int(os.path.join(d, "memory.max")) or 0, "usage": usage,
                                 "max": _int(os.path.join(d, "memory.peak")) or 0,
                                 "failcnt": events.get("max", 0)}, keep=("limit", "failcnt"))
        if os.path.exists(os.path.join(d, "memory.swap.current")):
            # runc reports v2 swap as memory+swap, to keep the v1 meaning
            swap_usage = (_int(os.path.join(d, "memory.swap.current")) or 0) + usage
            swap_lim = _int(os.path.join(d, "memory.swap.max")) or 0
            mem_lim = _int(os.path.join(d, "memory.max")) or 0
            limit = MAX_U64 if MAX_U64 in (swap_lim, mem_lim) else swap_lim + mem_lim
            m["swap"] = _omit_zero({"limit": limit, "usage": swap_usage, "failcnt": 0}, keep=("limit", "failcnt"))
        if raw:
            m["raw"] = raw
        s["memory"] = m
    if os.path.exists(os.path.join(d, "pids.current")):
        lim = _int(os.path.join(d, "pids.max"))
        s["pids"] = _omit_zero({"current": _int(os.path.join(d, "pids.current")) or 0,
                                "limit": 0 if lim == MAX_U64 else (lim or 0)})
    io = _read(os.path.join(d, "io.stat"))
    if io:
        sb, sv = [], []
        for line in io.splitlines():
            parts = line.split()
            if not parts or ":" not in parts[0]:
                continue
            ma, mi = (int(x) for x in parts[0].split(":"))
            kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            for op, key, target in (("Read", "rbytes", sb), ("Write", "wbytes", sb),
                                    ("Read", "rios", sv), ("Write", "wios", sv)):
                if key in kv:
                    target.append(_omit_zero({"major": ma, "minor": mi, "op": op, "value": int(kv[key])}))
        s["blkio"] = _omit_zero({"ioServiceBytesRecursive": sb, "ioServicedRecursive": sv})
    s["hugetlb"] = _hugetlb(d, v2=True)
    return s

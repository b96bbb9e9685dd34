"""`update`: new linux.resources for a running container, from a JSON document or runc's flags."""

import re

from .errors import OcipyError

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_bytes(text: str) -> int:
    """Pure: "512m", "1G", "1024", "-1" -> bytes (binary units, as runc's flags take them)."""
    text = str(text).strip()
    if text == "-1":
        return -1
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?", text.lower())
    if not m:
        raise OcipyError(f"invalid size {text!r}: expected a number with an optional k, m, g or t suffix")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


# flag -> (section, key, parser)
FLAGS = {
    "memory": ("memory", "limit", parse_bytes),
    "memory_reservation": ("memory", "reservation", parse_bytes),
    "memory_swap": ("memory", "swap", parse_bytes),
    "kernel_memory": ("memory", "kernel", parse_bytes),
    "kernel_memory_tcp": ("memory", "kernelTCP", parse_bytes),
    "cpu_shares": ("cpu", "shares", int),
    "cpu_quota": ("cpu", "quota", int),
    "cpu_period": ("cpu", "period", int),
    "cpu_rt_runtime": ("cpu", "realtimeRuntime", int),
    "cpu_rt_period": ("cpu", "realtimePeriod", int),
    "cpuset_cpus": ("cpu", "cpus", str),
    "cpuset_mems": ("cpu", "mems", str),
    "pids_limit": ("pids", "limit", int),
    "blkio_weight": ("blockIO", "weight", int),
}


def resources_from_flags(**values) -> dict:
    """Pure: runc update's single-value flags -> a LinuxResources object with only those fields."""
    out: dict = {}
    for flag, value in values.items():
        if value is None:
            continue
        section, key, parse = FLAGS[flag]
        out.setdefault(section, {})[key] = parse(value)
    return out


def merge(old: dict | None, new: dict) -> dict:
    """Pure: the container's resources after an update; zeros and empty strings mean "no change"
    (docker sends them for every field it does not set)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (old or {}).items()}
    for section, fields in new.items():
        if isinstance(fields, dict):
            kept = {k: v for k, v in fields.items() if v not in (0, "", None)}
            if kept:
                out.setdefault(section, {}).update(kept)
        elif fields not in (0, "", None, []):
            out[section] = fields
    return out

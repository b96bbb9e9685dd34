"""The v1 device-controller state machine, shared by the v1 writes and the v2 BPF program.

The spec's allowed-device list is the v1 devices.allow/deny model: a default
(allow or deny everything) plus exceptions. `emulate_v1` replays OCI rules the
way the v1 kernel applies devices.allow/deny writes, after runc's initial
"deny all"; `parse_devices_list` reads the current state back from devices.list;
`v1_transition` computes the writes that take a live cgroup from one state to
another without passing through "deny everything" when the default does not
change (so `update` does not make a running container's /dev/null fail).
"""

from __future__ import annotations

from ocipy.errors import SetupError
from ocipy.record import TupleRecord

# access bits and device types as the kernel's bpf_cgroup_dev_ctx encodes them
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
DEV_BLOCK, DEV_CHAR = 1, 2
_ACC = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}
_TYPE = {"b": DEV_BLOCK, "c": DEV_CHAR}
WILDCARD = -1


class DeviceException(TupleRecord):
    type: str          # "b" or "c"
    major: int         # WILDCARD for any
    minor: int         # WILDCARD for any
    access: int        # ACC_* bits


def _access_bits(access: str | None) -> int:
    bits = 0
    for ch in access or "rwm":
        if ch not in _ACC:
            raise SetupError(f"linux.resources.devices: invalid access {access!r}")
        bits |= _ACC[ch]
    return bits


def emulate_v1(rules: list[dict]) -> tuple[bool, list[DeviceException]]:
    """Replay rules as the v1 devices controller would, after an initial deny-all.

    Returns (default_allow, exceptions).
    """
    default_allow = False
    exc: dict[tuple, int] = {}
    for i, rule in enumerate(rules):
        t = rule.get("type") or "a"
        if t == "p":
            continue  # FIFOs are not device-controlled
        if t == "u":
            t = "c"
        if t not in ("a", "b", "c"):
            raise SetupError(f"linux.resources.devices[{i}].type: invalid device type {t!r}")
        allow = bool(rule.get("allow"))
        if t == "a":
            default_allow = allow
            exc.clear()
            continue
        major = rule.get("major")
        minor = rule.get("minor")
        key = (t, WILDCARD if major is None or major < 0 else major, WILDCARD if minor is None or minor < 0 else minor)
        bits = _access_bits(rule.get("access"))
        if allow == default_allow:
            # the rule agrees with the default: it removes those bits from an identical exception
            if key in exc:
                left = exc[key] & ~bits
                if left:
                    exc[key] = left
                else:
                    del exc[key]
        else:
            exc[key] = exc.get(key, 0) | bits
    return default_allow, [DeviceException(k[0], k[1], k[2], v) for k, v in exc.items()]



def access_text(bits: int) -> str:
    return "".join(ch for ch, b in (("r", ACC_READ), ("w", ACC_WRITE), ("m", ACC_MKNOD)) if bits & b)


def exception_text(e: DeviceException, bits: int | None = None) -> str:
    ma = "*" if e.major == WILDCARD else str(e.major)
    mi = "*" if e.minor == WILDCARD else str(e.minor)
    return f"{e.type} {ma}:{mi} {access_text(e.access if bits is None else bits)}"


def parse_devices_list(text: str) -> tuple[bool, list[DeviceException]] | None:
    """devices.list -> (default_allow, exceptions), or None when the exceptions cannot be known.

    In default-allow mode the kernel prints only "a *:* rwm" and hides the deny
    exceptions, so that state is reported as None unless it is plain allow-all
    (which we cannot tell apart: None either way, forcing a reset)."""
    exc: dict[tuple, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        t, dev, acc = parts
        if t == "a":
            return None
        ma, mi = dev.split(":")
        key = (t, WILDCARD if ma == "*" else int(ma), WILDCARD if mi == "*" else int(mi))
        exc[key] = exc.get(key, 0) | _access_bits(acc)
    return False, [DeviceException(k[0], k[1], k[2], v) for k, v in exc.items()]


def v1_transition(rules: list[dict], current_list: str | None) -> list[tuple[str, str]]:
    """[(file, line)] that turn the current devices state into the one `rules` describe.

    Without a readable current state, or when the default changes, reset with
    "a" first (what runc does on create); otherwise only add and remove the
    exceptions that differ, additions first.
    """
    default_allow, target = emulate_v1(rules)
    grant, revoke = ("devices.deny", "devices.allow") if default_allow else ("devices.allow", "devices.deny")
    current = parse_devices_list(current_list) if current_list is not None else None
    if current is None or current[0] != default_allow:
        writes = [("devices.allow" if default_allow else "devices.deny", "a")]
        writes += [(grant, exception_text(e)) for e in target]
        return writes
    have = {(e.type, e.major, e.minor): e.access for e in current[1]}
    want = {(e.type, e.major, e.minor): e.access for e in target}
    writes = []
    for key, bits in want.items():
        missing = bits & ~have.get(key, 0)
        if missing:
            writes.append((grant, exception_text(DeviceException(*key, bits), missing)))
    for key, bits in have.items():
        extra = bits & ~want.get(key, 0)
        if extra:
            writes.append((revoke, exception_text(DeviceException(*key, bits), extra)))
    return writes

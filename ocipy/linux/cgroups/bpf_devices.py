"""cgroup v2 device control: OCI device rules -> a BPF_PROG_TYPE_CGROUP_DEVICE program.

cgroup v2 has no devices.allow/deny files; the kernel instead runs a BPF program
attached to the cgroup (attach type BPF_CGROUP_DEVICE) on every device open and
mknod, with a context `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
u32 minor; }` where access_type = (access << 16) | type, access bits
MKNOD=1 READ=2 WRITE=4 and type BLOCK=1 CHAR=2. It returns 1 to allow, 0 to deny.

Semantics are those of v1 (the spec describes the v1 allowed-device list): the
rules are first replayed the way the v1 kernel applies devices.allow/deny writes
(`emulate_v1`), giving a default verdict plus a list of exceptions; the program
then returns the exception verdict for a matching access and the default
otherwise. As on v1 under runc, a non-empty rule list starts from "deny all".

- In default-deny mode an exception allows an access when the requested access
  bits are a subset of the exception's (v1 merges rules for the same device, so
  "r" then "w" on 1:3 allows "rw").
- In default-allow mode an exception denies an access when it requests any of
  the exception's bits.

`build_program` is pure (unit-tested by interpreting the bytes). `attach` loads
and attaches it through the bpf(2) syscall with ctypes; this module is the one
place that talks to bpf(2), which syscalls.py does not wrap.
"""

from __future__ import annotations

import os
import struct

from .devices_rules import (  # noqa: F401  (re-exported: the program is built from this state)
    ACC_MKNOD,
    ACC_READ,
    ACC_WRITE,
    DEV_BLOCK,
    DEV_CHAR,
    WILDCARD,
    DeviceException,
    emulate_v1,
)

Exception_ = DeviceException
_TYPE = {"b": DEV_BLOCK, "c": DEV_CHAR}


# --- eBPF encoding -------------------------------------------------------------------------------

def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


LDX_W = 0x61        # BPF_LDX | BPF_MEM | BPF_W
ALU32_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
ALU32_RSH_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K
MOV32_X = 0xBC      # BPF_ALU | BPF_MOV | BPF_X
MOV64_K = 0xB7      # BPF_ALU64 | BPF_MOV | BPF_K
JNE_K = 0x55        # BPF_JMP | BPF_JNE | BPF_K
JEQ_K = 0x15        # BPF_JMP | BPF_JEQ | BPF_K
EXIT = 0x95         # BPF_JMP | BPF_EXIT

# registers: r1 ctx (then scratch), r2 type, r3 access, r4 major, r5 minor


def build_program(rules: list[dict] | None) -> bytes | None:
    """The program bytes for these OCI rules; None when there are no rules (no program: allow all)."""
    if rules is None:
        return None
    default_allow, exceptions = emulate_v1(rules)
    verdict = 0 if default_allow else 1
    prog = [
        _insn(LDX_W, 2, 1, 0),
        _insn(ALU32_AND_K, 2, imm=0xFFFF),
        _insn(LDX_W, 3, 1, 0),
        _insn(ALU32_RSH_K, 3, imm=16),
        _insn(LDX_W, 4, 1, 4),
        _insn(LDX_W, 5, 1, 8),
    ]
    for e in exceptions:
        # each check is a conditional jump past the end of this block: build the block, then set offsets
        body: list = []
        body.append(("jmp", JNE_K, 2, _TYPE[e.type]))
        if default_allow:
            # deny when the request shares any bit with the exception (always true for rwm)
            if e.access != 7:
                body.append(("raw", _insn(MOV32_X, 1, 3)))
                body.append(("raw", _insn(ALU32_AND_K, 1, imm=e.access)))
                body.append(("jmp", JEQ_K, 1, 0))
        else:
            # allow when the request is a subset of the exception's bits
            if e.access != 7:
                body.append(("raw", _insn(MOV32_X, 1, 3)))
                body.append(("raw", _insn(ALU32_AND_K, 1, imm=(~e.access) & 0x7)))
                body.append(("jmp", JNE_K, 1, 0))
        if e.major != WILDCARD:
            body.append(("jmp", JNE_K, 4, e.major))
        if e.minor != WILDCARD:
            body.append(("jmp", JNE_K, 5, e.minor))
        body.append(("raw", _insn(MOV64_K, 0, imm=verdict)))
        body.append(("raw", _insn(EXIT)))
        n = len(body)
        for idx, item in enumerate(body):
            if item[0] == "raw":
                prog.append(item[1])
            else:
                _, code, dst, imm = item
                prog.append(_insn(code, dst, off=n - idx - 1, imm=imm))
    prog.append(_insn(MOV64_K, 0, imm=0 if verdict == 1 else 1))
    prog.append(_insn(EXIT))
    return b"".join(prog)


# --- bpf(2) ---------------------------------------------------------------------------------------

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}
_ATTR_SIZE = 128


def _bpf(cmd: int, attr: bytes, out=None) -> int:
    """bpf(cmd, attr); `out`, a ctypes buffer of _ATTR_SIZE, receives the attr the kernel wrote back."""
    import ctypes

    machine = os.uname().machine  # platform.machine(), without importing platform
    nr = _SYS_BPF.get(machine)
    if nr is None:
        raise OSError(0, f"bpf(2) syscall number unknown for {machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    buf = out if out is not None else ctypes.create_string_buffer(_ATTR_SIZE)
    ctypes.memmove(buf, attr, len(attr))
    ret = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(_ATTR_SIZE))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def load_program(prog: bytes) -> int:
    """BPF_PROG_LOAD -> a program fd (the caller closes it)."""
    import ctypes

    insns = ctypes.create_string_buffer(prog, len(prog))
    license_ = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(65536)
    attr = struct.pack(
        "<IIQQIIQII16sII",
        BPF_PROG_TYPE_CGROUP_DEVICE, len(prog) // 8,
        ctypes.addressof(insns), ctypes.addressof(license_),
        1, len(log), ctypes.addressof(log),
        0, 0, b"ocipy_devices", 0, BPF_CGROUP_DEVICE,
    )
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        detail = log.value.decode(errors="replace").strip()
        raise OSError(e.errno, f"{e.strerror}{': ' + detail if detail else ''}") from None


def query_programs(cgroup_fd: int) -> list[int]:
    """Ids of BPF_CGROUP_DEVICE programs attached directly to this cgroup."""
    import ctypes

    ids = (ctypes.c_uint32 * 64)()
    attr = struct.pack("<IIIIQI", cgroup_fd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), 64)
    out = ctypes.create_string_buffer(_ATTR_SIZE)
    _bpf(BPF_PROG_QUERY, attr, out)
    count = struct.unpack_from("<I", out.raw, 24)[0]
    return [ids[i] for i in range(min(count, 64))]


def attach(cgroup_dir: str, prog: bytes) -> None:
    """Attach `prog` to cgroup_dir, replacing device programs attached to it before (update)."""
    dfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            old = query_programs(dfd)
        except OSError:
            old = []
        pfd = load_program(prog)
        try:
            _bpf(BPF_PROG_ATTACH, struct.pack("<IIIII", dfd, pfd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, 0))
        finally:
            os.close(pfd)
        for prog_id in old:
            try:
                ofd = _bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("<III", prog_id, 0, 0))
            except OSError:
                continue
            try:
                _bpf(BPF_PROG_DETACH, struct.pack("<IIIII", dfd, ofd, BPF_CGROUP_DEVICE, 0, 0))
            except OSError:
                pass
            finally:
                os.close(ofd)
    finally:
        os.close(dfd)

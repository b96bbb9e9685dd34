"""Small helpers shared by the end-to-end attack tests (tests/security/test_attack_*.py).

The attack programs that need more than busybox are tiny C files built here with
gcc, static and without libc (raw x86-64 syscalls), so they run in any rootfs and
even as an ELF interpreter. A test that needs one skips when gcc is missing or the
machine is not x86-64.
"""

import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

# Raw syscalls, a string printer and a number printer: enough for every helper below.
_PRELUDE = r"""
static long sys3(long n, long a, long b, long c)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}
static void put(const char *s)
{
    long n = 0;
    while (s[n])
        n++;
    sys3(1, 1, (long)s, n);
}
static void putnum(long v)
{
    char buf[32];
    int i = 31, neg = v < 0;
    buf[i] = 0;
    if (neg)
        v = -v;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (neg)
        buf[--i] = '-';
    put(buf + i);
}
"""

# Run by the kernel as the ELF interpreter of whatever /proc/self/exe was when the
# container's execve started: it reports whether it can open its own exe (the host
# binary behind the magic link) for reading and for writing. The write open is
# O_WRONLY|O_APPEND and writes nothing, so even a success changes no byte.
EXE_PROBE = _PRELUDE + r"""
void _start(void)
{
    long st[32];
    long ro = sys3(2, (long)"/proc/self/exe", 0, 0);
    put("exe-open-ro=");
    putnum(ro);
    if (ro >= 0 && sys3(5, ro, (long)st, 0) == 0) {
        put(" dev=");
        putnum(st[0]);
        put(" ino=");
        putnum(st[1]);
    }
    put(" exe-open-wo=");
    putnum(sys3(2, (long)"/proc/self/exe", 01 | 02000, 0));
    put("\n");
    sys3(60, 0, 0, 0);
}
"""

# Prints the effective uid: made setuid-root, it shows whether execve honoured the bit.
# (busybox drops a setuid gain itself for most applets, so it cannot show this.)
EUID_PROBE = _PRELUDE + r"""
void _start(void)
{
    put("euid=");
    putnum(sys3(107, 0, 0, 0));
    put("\n");
    sys3(60, 0, 0, 0);
}
"""


def build_probe(source: str, dest: Path) -> Path:
    if platform.machine() != "x86_64":
        pytest.skip("the probe programs use raw x86-64 syscalls")
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is needed to build the attack probe")
    src = dest.with_suffix(".c")
    src.write_text(source)
    r = subprocess.run([gcc, "-O1", "-static", "-nostdlib", "-no-pie", "-fno-pic", "-fno-stack-protector", "-o", str(dest), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"building {dest.name} failed: {r.stderr}"
    return dest


def elf_interpreter(path: str) -> str | None:
    """PT_INTERP of a 64-bit little-endian ELF file, or None for a static one."""
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return None
    phoff = int.from_bytes(data[0x20:0x28], "little")
    phentsize = int.from_bytes(data[0x36:0x38], "little")
    phnum = int.from_bytes(data[0x38:0x3A], "little")
    for i in range(phnum):
        ph = data[phoff + i * phentsize: phoff + (i + 1) * phentsize]
        if int.from_bytes(ph[0:4], "little") == 3:  # PT_INTERP
            off = int.from_bytes(ph[8:16], "little")
            size = int.from_bytes(ph[32:40], "little")
            with open(path, "rb") as f:
                f.seek(off)
                return f.read(size).rstrip(b"\0").decode()
    return None


def file_fingerprint(path: str) -> dict:
    st = os.stat(path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return {"sha256": digest, "mtime_ns": st.st_mtime_ns, "size": st.st_size, "ino": st.st_ino}


def run_script(ocipy, bundle, script: str, cid: str, *, what: str = ""):
    """Run `script` with /bin/sh in the container, print what was tried and what came back."""
    bundle.shell(script).write()
    r = ocipy("run", "--bundle", bundle.path, cid)
    print(f"--- attack {what or cid}: sh -c {script!r}\n    rc={r.returncode}\n    stdout={r.stdout!r}\n    stderr={r.stderr!r}")
    return r


def open_reachable(bundle) -> None:
    """Let a mapped root (host uid 100000) reach the bundle through its parents, as under runc."""
    for parent in bundle.path.parents:
        if parent == parent.parent:
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o011)


def userns(bundle, host_uid: int = 100000, host_gid: int = 100000) -> None:
    cfg = bundle.config
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host_uid, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host_gid, "size": 65536}]
    # sysfs cannot be mounted fresh in a user namespace without a new network namespace owner; drop /sys as the
    # integration tests do.
    cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] not in ("/sys", "/sys/fs/cgroup")]
    open_reachable(bundle)

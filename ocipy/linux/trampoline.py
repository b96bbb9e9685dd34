"""The last exec into a container goes through a tiny static program in a sealed memfd.

Until that moment the container's process is the host's Python interpreter (ocipy
forks, it does not re-exec). If the container's command resolves to /proc/self/exe
(a symlink to it, or a `#!/proc/self/exe` script), a direct execve would start the
host's interpreter inside the container, which could then open it through
/proc/self/exe and overwrite it (the CVE-2019-5736 shape). runc answers this by
re-executing itself from a sealed copy; we keep fork-without-re-exec and instead
exec, as the very last step, a 40-byte program held in an anonymous, sealed memfd:
from then on /proc/self/exe is that memfd, with nothing on the host behind it and
seals that forbid writes. The program does one thing:

    execve(argv[0], &argv[1], envp); exit(127);

so `execve(memfd, [path, *args], env)` becomes `execve(path, args, env)`.
"""

import fcntl
import os
import platform
import struct

_BASE = 0x400000
_EHDR = 64
_PHDR = 56

# x86-64 machine code for the entry point (the stack holds argc, argv..., NULL, envp...):
_X86_64 = bytes.fromhex(
    "488b7c2408"  # mov  rdi, [rsp+8]            path = argv[0]
    "488d742410"  # lea  rsi, [rsp+16]           argv = &argv[1]
    "488b0c24"  # mov  rcx, [rsp]              argc
    "488d54cc10"  # lea  rdx, [rsp+rcx*8+16]     envp = &argv[argc+1]
    "b83b000000"  # mov  eax, 59                 execve
    "0f05"  # syscall
    "bf7f000000"  # mov  edi, 127                exit status when execve failed
    "b83c000000"  # mov  eax, 60                 exit
    "0f05"  # syscall
)

MFD_EXEC = 0x0010  # Linux >= 6.3: say the memfd is meant to be executed (else a warning)


def elf(code: bytes = _X86_64, machine: int = 0x3E) -> bytes:
    """Pure: a minimal static ELF64 executable whose only segment is `code`, entered at its start."""
    size = _EHDR + _PHDR + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, version 1, SysV
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, _BASE + _EHDR + _PHDR, _EHDR, 0, 0, _EHDR, _PHDR, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, _BASE, _BASE, size, size, 0x1000)  # PT_LOAD, R+X
    return ehdr + phdr + code


def program() -> bytes | None:
    """The trampoline for this machine, or None where ocipy has none (the exec is then direct)."""
    if platform.machine() in ("x86_64", "amd64"):
        return elf()
    return None


def open_trampoline() -> int | None:
    """A sealed, close-on-exec memfd holding the trampoline, or None on another architecture."""
    code = program()
    if code is None:
        return None
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        fd = os.memfd_create("ocipy-exec", flags | MFD_EXEC)
    except OSError:  # kernels before 6.3 do not know MFD_EXEC
        fd = os.memfd_create("ocipy-exec", flags)
    try:
        os.write(fd, code)
        os.fchmod(fd, 0o555)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    except BaseException:
        os.close(fd)
        raise
    return fd

"""Tiny static programs in sealed memfds: the last exec into a container, and the
wait of a created container.

The exec trampoline
-------------------
Until the last exec the container's process is the host's Python interpreter (ocipy
forks, it does not re-exec). If the container's command resolves to /proc/self/exe
(a symlink to it, or a `#!/proc/self/exe` script), a direct execve would start the
host's interpreter inside the container, which could then open it through
/proc/self/exe and overwrite it (the CVE-2019-5736 shape). runc answers this by
re-executing itself from a sealed copy; we keep fork-without-re-exec and instead
exec, as the very last step, a 54-byte program held in an anonymous, sealed memfd:
from then on /proc/self/exe is that memfd, with nothing on the host behind it and
seals that forbid writes. The program does one thing, once non-dumpable:

    prctl(PR_SET_DUMPABLE, 0); execve(argv[0], &argv[1], envp); exit(127);

so `execve(memfd, [path, *args], env)` becomes `execve(path, args, env)`. The prctl
is for a process in the container watching /proc: execve made us dumpable, so it
could open our /proc/<pid>/mem while the kernel looks up and loads the command.
Nothing of the host is there to read, but the program is not the container's, and
the command's own execve makes it dumpable again as usual. (See also _sealed_memfd.)

The waiter
----------
A created container is a pid 1 that has finished its set-up and waits for
`ocipy start` to open exec.fifo. Done in Python that pid 1 is a forked interpreter
holding ~17 MiB (Pss) for as long as the container stays created; runc's waiting
`runc init` holds ~9 MiB. So once Python has done everything else, it execs the
waiter (`open_waiter`), a ~210-byte program plus one page of data built for this
container, whose process holds a few KiB. The waiter does the rest:

    prctl(PR_SET_DUMPABLE, 0)                   exec made us dumpable again
    fd = open("/proc/self/fd/<fifo_fd>", O_WRONLY|O_CLOEXEC)   blocks until `start`
    write(fd, "0", 1)                           "going on to execve" (see init.py)
    close(fifo_fd)                              the host's handle must not reach the user
    seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)   only when given a filter
    execve(argv[0], &argv[1], envp); exit(127)  as the trampoline, which it replaces

and on a failure before the execve writes one line to fd 2 and exits with 1.

Why non-dumpable: until it closes fifo_fd the waiter holds an O_PATH handle on a
file in the host's state directory, and a filter that must be loaded last
(no_new_privileges) is not in force yet; a dumpable process could be ptraced by
anything in the container running as the same user. execve resets dumpable to 1
(the process keeps its credentials), so the waiter's first act is to clear it again.
It is the same memfd defence as the trampoline: /proc/self/exe is the sealed waiter
when it execs the user's command.

Both programs are hand-assembled below, position-dependent and loaded at a fixed
address (the ELF is not PIE), so the waiter's code refers to its data by absolute
address. There is no build step: the bytes are the source.
"""

import fcntl
import posix
import struct

_BASE = 0x400000
_EHDR = 64
_PHDR = 56

# x86-64 machine code for the entry point (the stack holds argc, argv..., NULL, envp...):
_X86_64 = bytes.fromhex(
    "b89d000000"  # mov  eax, 157                prctl
    "bf04000000"  # mov  edi, 4                  PR_SET_DUMPABLE
    "31f6"  # xor  esi, esi                0: not dumpable (cannot fail)
    "0f05"  # syscall
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
    if _is_x86_64():
        return elf()
    return None


def open_trampoline() -> int | None:
    """A sealed, close-on-exec memfd holding the trampoline, or None on another architecture."""
    code = program()
    if code is None:
        return None
    return _sealed_memfd("ocipy-exec", code)


# --- the waiter ----------------------------------------------------------------------------
#
# One segment, R+X, loaded at _BASE: the ELF headers, the code (the same for every
# container), zeros up to file offset 0x200, then the data built per container:
#
#   WAITER_DATA + 0x000  u32  fifo_fd
#               + 0x004  u32  seccomp(2) flags
#               + 0x008  struct sock_fprog { u16 len (0: no filter); 6 bytes padding;
#                                            u64 filter (WAITER_DATA + 0x140, or 0) }
#               + 0x018  "0"                      the byte written to the fifo
#               + 0x020  "/proc/self/fd/<fifo_fd>\0", 32 bytes
#               + 0x040  four messages, 64 bytes each: a length byte, then the text
#               + 0x140  the seccomp program (struct sock_filter[len]), if any
#
# Nothing is written at run time (the kernel only reads the path, the byte and the
# filter), so the data can live in the read-only, executable segment.

WAITER_DATA = _BASE + 0x200  # the address of the data; its file offset is 0x200
_W_FIFO_FD = 0x000
_W_FLAGS = 0x004
_W_FPROG = 0x008
_W_ZERO = 0x018
_W_PATH = 0x020
_W_MSG_DUMPABLE = 0x040
_W_MSG_OPEN = 0x080
_W_MSG_WRITE = 0x0C0
_W_MSG_SECCOMP = 0x100
_W_FILTER = 0x140
_W_MESSAGES = (
    (_W_MSG_DUMPABLE, b"ocipy: waiting for start: cannot become non-dumpable\n"),
    (_W_MSG_OPEN, b"ocipy: waiting for start: cannot open the exec fifo\n"),
    (_W_MSG_WRITE, b"ocipy: waiting for start: cannot write to the exec fifo\n"),
    (_W_MSG_SECCOMP, b"seccomp: error loading seccomp filter into kernel\n"),
)

_BPF_MAXINSNS = 4096
_SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3

# x86-64 machine code of the waiter, at _BASE + 0x78 (offsets on the left are from
# there). Syscall results come back in rax, negative for an error. A failure loads
# the message's address into esi and jumps to `fail` (0xb6), which writes it to fd 2
# and exits with 1.
_WAITER_X86_64 = bytes.fromhex(
    # prctl(PR_SET_DUMPABLE, 0)
    "b89d000000"  # 00  mov  eax, 157                 prctl
    "bf04000000"  # 05  mov  edi, 4                   PR_SET_DUMPABLE
    "31f6"  # 0a  xor  esi, esi                 0: not dumpable
    "0f05"  # 0c  syscall
    "be40024000"  # 0e  mov  esi, 0x400240            message: DATA+0x040
    "4885c0"  # 13  test rax, rax
    "0f859a000000"  # 16  jnz  fail                     (0xb6)
    # fd = openat(AT_FDCWD, "/proc/self/fd/<fifo_fd>", O_WRONLY|O_CLOEXEC): blocks until `start`
    "b801010000"  # 1c  mov  eax, 257                 openat
    "bf9cffffff"  # 21  mov  edi, -100                AT_FDCWD
    "be20024000"  # 26  mov  esi, 0x400220            path: DATA+0x020
    "ba01000800"  # 2b  mov  edx, 0x80001             O_WRONLY|O_CLOEXEC
    "0f05"  # 30  syscall
    "be80024000"  # 32  mov  esi, 0x400280            message: DATA+0x080
    "4885c0"  # 37  test rax, rax
    "787a"  # 3a  js   fail                     (0xb6)
    # write(fd, "0", 1)
    "89c7"  # 3c  mov  edi, eax                 fd
    "b801000000"  # 3e  mov  eax, 1                   write
    "be18024000"  # 43  mov  esi, 0x400218            "0": DATA+0x018
    "ba01000000"  # 48  mov  edx, 1                   one byte
    "0f05"  # 4d  syscall
    "bec0024000"  # 4f  mov  esi, 0x4002c0            message: DATA+0x0c0
    "4883f801"  # 54  cmp  rax, 1
    "755c"  # 58  jne  fail                     (0xb6)
    # close(fifo_fd)
    "b803000000"  # 5a  mov  eax, 3                   close
    "8b3c2500024000"  # 5f  mov  edi, [0x400200]          fifo_fd: DATA+0x000
    "0f05"  # 66  syscall
    # if there is a filter: seccomp(SECCOMP_SET_MODE_FILTER, flags, &fprog) must return 0
    "66833c250802400000"  # 68  cmp  word [0x400208], 0       fprog.len: DATA+0x008
    "7422"  # 71  je   exec                     (0x95)
    "b83d010000"  # 73  mov  eax, 317                 seccomp
    "bf01000000"  # 78  mov  edi, 1                   SECCOMP_SET_MODE_FILTER
    "8b342504024000"  # 7d  mov  esi, [0x400204]          flags: DATA+0x004
    "ba08024000"  # 84  mov  edx, 0x400208            &fprog: DATA+0x008
    "0f05"  # 89  syscall
    "be00034000"  # 8b  mov  esi, 0x400300            message: DATA+0x100
    "4885c0"  # 90  test rax, rax
    "7521"  # 93  jnz  fail                     (0xb6)
    # exec: execve(argv[0], &argv[1], envp), as the trampoline
    "488b7c2408"  # 95  mov  rdi, [rsp+8]             path = argv[0]
    "488d742410"  # 9a  lea  rsi, [rsp+16]            argv = &argv[1]
    "488b0c24"  # 9f  mov  rcx, [rsp]               argc
    "488d54cc10"  # a3  lea  rdx, [rsp+rcx*8+16]      envp = &argv[argc+1]
    "b83b000000"  # a8  mov  eax, 59                  execve
    "0f05"  # ad  syscall
    "bf7f000000"  # af  mov  edi, 127                 exit status when execve failed
    "eb16"  # b4  jmp  exit                     (0xcc)
    # fail: write(2, esi + 1, [esi]); exit(1)
    "0fb616"  # b6  movzx edx, byte [rsi]         length
    "ffc6"  # b9  inc  esi                      text
    "bf02000000"  # bb  mov  edi, 2                   stderr
    "b801000000"  # c0  mov  eax, 1                   write
    "0f05"  # c5  syscall
    "bf01000000"  # c7  mov  edi, 1                   exit status
    # exit: exit(edi)
    "b83c000000"  # cc  mov  eax, 60                  exit
    "0f05"  # d1  syscall
)


def waiter_program(fifo_fd: int, seccomp: tuple[bytes, int] | None = None) -> bytes:
    """Pure: the waiter's ELF (x86-64) for a container whose exec.fifo is open (O_PATH)
    on `fifo_fd`; `seccomp` is (BPF program, seccomp(2) flags) to load right before the
    execve, as `PreparedFilter.program` and `.flags`, or None.

    Raises ValueError for an fd below 3 (it is closed before the execve) and for a filter
    the waiter cannot load: not whole instructions, none or more than 4096 of them, or
    SECCOMP_FILTER_FLAG_NEW_LISTENER (the waiter could not hand the notify fd over).
    """
    if isinstance(fifo_fd, bool) or not isinstance(fifo_fd, int) or not 3 <= fifo_fd < 1 << 31:
        raise ValueError(f"waiter: fifo fd {fifo_fd!r} is not an fd above stdio")
    if seccomp is None:
        bpf, flags, count, address = b"", 0, 0, 0
    else:
        bpf, flags = bytes(seccomp[0]), seccomp[1]
        count = len(bpf) // 8
        if len(bpf) % 8 or not 0 < count <= _BPF_MAXINSNS:
            raise ValueError(f"waiter: a seccomp program of {len(bpf)} bytes is not 1 to {_BPF_MAXINSNS} instructions")
        if not 0 <= flags < 1 << 32 or flags & _SECCOMP_FILTER_FLAG_NEW_LISTENER:
            raise ValueError(f"waiter: cannot load a filter with seccomp flags {flags:#x}")
        address = WAITER_DATA + _W_FILTER
    data = bytearray(_W_FILTER)
    struct.pack_into("<IIH6xQ", data, _W_FIFO_FD, fifo_fd, flags, count, address)  # fd, flags, sock_fprog
    data[_W_ZERO] = ord("0")
    path = f"/proc/self/fd/{fifo_fd}".encode()
    data[_W_PATH : _W_PATH + len(path)] = path  # NUL-terminated by the zeros after it
    for offset, text in _W_MESSAGES:
        data[offset] = len(text)
        data[offset + 1 : offset + 1 + len(text)] = text
    code = _WAITER_X86_64.ljust(WAITER_DATA - _BASE - _EHDR - _PHDR, b"\0")
    return elf(code + bytes(data) + bpf)


def open_waiter(fifo_fd: int, seccomp: tuple[bytes, int] | None = None) -> int | None:
    """A sealed, close-on-exec memfd holding `waiter_program(fifo_fd, seccomp)`, or None on
    another architecture than x86-64 (the caller then waits in Python).

    The caller execs it as its very last step, `posix.execve(memfd, [executable, *args], env)`,
    once everything else is done: user, capabilities, no_new_privs, cwd, umask, rlimits,
    any filter that does not wait for the last moment, stray fds closed or close-on-exec.
    `fifo_fd` must be inherited (not close-on-exec); nothing else of ocipy's should be.
    """
    if not _is_x86_64():
        return None
    return _sealed_memfd("ocipy-wait", waiter_program(fifo_fd, seccomp))


def _is_x86_64() -> bool:
    return posix.uname().machine in ("x86_64", "amd64")  # not `platform` (7 ms of imports)


def _sealed_memfd(name: str, image: bytes) -> int:
    """A close-on-exec memfd holding `image`, execute-only (0o111) and sealed against writes.

    Execute-only because the kernel leaves a process that execs a file it cannot read
    non-dumpable (fs/exec.c, would_dump). A container process without CAP_DAC_OVERRIDE
    or CAP_DAC_READ_SEARCH is then never dumpable while it runs the trampoline or the
    waiter, not even before their first instruction clears it. One with either
    capability can read the memfd, so its window lasts until that prctl.
    """
    flags = posix.MFD_CLOEXEC | posix.MFD_ALLOW_SEALING
    try:
        fd = posix.memfd_create(name, flags | MFD_EXEC)
    except OSError:  # kernels before 6.3 do not know MFD_EXEC
        fd = posix.memfd_create(name, flags)
    try:
        view = memoryview(image)
        while view:
            view = view[posix.write(fd, view) :]
        posix.fchmod(fd, 0o111)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    except BaseException:
        posix.close(fd)
        raise
    return fd

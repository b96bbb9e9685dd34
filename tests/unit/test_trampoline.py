"""Unit tests for ocipy.linux.trampoline's waiter: the tiny program a created container's
pid 1 becomes while it waits for `start` (and, at the end, for the exec trampoline's
dumpability on its way to the command).

The layout tests are pure. The others run the real waiter in a forked child (no
namespaces): the child opens the fifo O_PATH on WAITER_FD, as init does, and execs the
sealed memfd; the test plays `ocipy start` by opening the fifo for reading. Every child is
killed and reaped in a finally.
"""

import errno
import fcntl
import os
import select
import signal
import struct
import time

import pytest

from ocipy.linux import trampoline
from ocipy.linux.trampoline import WAITER_DATA, open_waiter, waiter_program

WAITER_FD = 100  # where the child puts its O_PATH handle on the fifo
BASE = 0x400000
DATA_OFFSET = WAITER_DATA - BASE
NOBODY = 65534

x86_64 = pytest.mark.skipif(os.uname().machine != "x86_64", reason="the waiter exists for x86-64 only")
root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (changes user, loads seccomp filters)")

MKDIR_DENIED = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}],
}


# --- the ELF, pure ------------------------------------------------------------------------------
def header(image):
    e_type, e_machine, e_version, e_entry, e_phoff = struct.unpack_from("<HHIQQ", image, 16)
    e_phentsize, e_phnum = struct.unpack_from("<HH", image, 54)
    p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align = struct.unpack_from("<IIQQQQQQ", image, 64)
    return dict(type=e_type, machine=e_machine, version=e_version, entry=e_entry, phoff=e_phoff, phentsize=e_phentsize,
                phnum=e_phnum, p_type=p_type, p_flags=p_flags, p_offset=p_offset, p_vaddr=p_vaddr, p_paddr=p_paddr,
                p_filesz=p_filesz, p_memsz=p_memsz, p_align=p_align)


def fprog(image):
    """(len, filter address) of the embedded struct sock_fprog."""
    return struct.unpack_from("<H6xQ", image, DATA_OFFSET + 8)


def at(image, address, size):
    """The bytes the loaded image holds at `address` (the only segment maps file offset 0 at BASE)."""
    return image[address - BASE : address - BASE + size]


def test_waiter_is_one_static_segment_entered_at_its_code():
    image = waiter_program(7)
    assert image[:4] == b"\x7fELF" and image[4:7] == bytes([2, 1, 1])  # ELF64, little-endian, version 1
    h = header(image)
    assert (h["type"], h["machine"], h["version"], h["phoff"], h["phentsize"], h["phnum"]) == (2, 0x3E, 1, 64, 56, 1)
    assert h["entry"] == BASE + 120 and image[120 : 120 + len(trampoline._WAITER_X86_64)] == trampoline._WAITER_X86_64
    assert (h["p_type"], h["p_flags"], h["p_offset"], h["p_vaddr"], h["p_paddr"]) == (1, 5, 0, BASE, BASE)  # PT_LOAD R+X
    assert h["p_filesz"] == h["p_memsz"] == len(image) == DATA_OFFSET + 0x140  # no filter: data ends at the filter's place
    assert h["p_align"] == 0x1000 and BASE % 0x1000 == 0


def test_waiter_data_without_filter():
    image = waiter_program(1234)
    fd, flags = struct.unpack_from("<II", image, DATA_OFFSET)
    assert (fd, flags) == (1234, 0)
    assert fprog(image) == (0, 0)  # len 0: the code skips seccomp(2)
    assert at(image, WAITER_DATA + 0x18, 2) == b"0\0"
    assert at(image, WAITER_DATA + 0x20, 32) == b"/proc/self/fd/1234".ljust(32, b"\0")
    assert waiter_program((1 << 31) - 1)[DATA_OFFSET + 0x20 :].startswith(b"/proc/self/fd/2147483647\0")


def test_waiter_embeds_the_filter_where_its_fprog_points():
    program = bytes(range(8)) * 3 + struct.pack("<HBBI", 6, 0, 0, 0x7FFF0000)  # 4 instructions
    image = waiter_program(3, (program, 0b101))
    assert struct.unpack_from("<I", image, DATA_OFFSET + 4) == (0b101,)
    count, address = fprog(image)
    assert count == 4 and address % 8 == 0
    assert at(image, address, len(program)) == program
    assert address - BASE + len(program) == len(image)  # the program ends the segment, which maps all of it
    assert header(image)["p_filesz"] == len(image) == DATA_OFFSET + 0x140 + len(program)
    big = waiter_program(3, (bytes(8 * 4096), 0))
    assert fprog(big)[0] == 4096 and len(big) == DATA_OFFSET + 0x140 + 8 * 4096


def test_waiter_code_refers_to_the_data_it_is_built_with():
    """The code is hand-assembled with absolute addresses: each one it uses must be the layout's."""
    code = trampoline._WAITER_X86_64
    assert len(code) <= DATA_OFFSET - 120  # the code ends before the data
    for offset in (0x000, 0x004, 0x008, 0x020, 0x018, 0x040, 0x080, 0x0C0, 0x100):
        assert code.count(struct.pack("<I", WAITER_DATA + offset)) == (2 if offset == 0x008 else 1), hex(offset)
    image = waiter_program(5)
    for offset, text in trampoline._W_MESSAGES:
        assert len(text) < 64 and text.endswith(b"\n")  # length byte + text fit in the 64-byte slot
        assert at(image, WAITER_DATA + offset, 1 + len(text)) == bytes([len(text)]) + text


def test_waiter_program_is_pure():
    prog = (struct.pack("<HBBI", 6, 0, 0, 0x7FFF0000), 0)
    assert waiter_program(9, prog) == waiter_program(9, prog)
    assert waiter_program(9) != waiter_program(10) != waiter_program(10, prog)


@pytest.mark.parametrize("fd", [-1, 0, 2, 1 << 31, True, "5"])
def test_waiter_refuses_an_fd_it_could_not_close_safely(fd):
    with pytest.raises(ValueError):
        waiter_program(fd)


@pytest.mark.parametrize("seccomp", [(b"", 0), (bytes(12), 0), (bytes(8 * 4097), 0), (bytes(8), 1 << 3), (bytes(8), -1)])
def test_waiter_refuses_a_filter_it_cannot_load(seccomp):
    with pytest.raises(ValueError):
        waiter_program(3, seccomp)


# --- running it -----------------------------------------------------------------------------------
class Waiter:
    """A forked child that opens the fifo O_PATH on `fd` and execs the waiter memfd with
    `argv` and `env`; its stdout and stderr come back through pipes."""

    def __init__(self, memfd, fifo, argv, env, *, fd=WAITER_FD, uid=None, nnp=False, preload=None):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child
            try:
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                if fifo is not None:
                    handle = os.open(fifo, os.O_PATH)
                    os.dup2(handle, fd, inheritable=True)
                    os.close(handle)
                if uid is not None:
                    os.setgroups([])
                    os.setresgid(uid, uid, uid)
                    os.setresuid(uid, uid, uid)
                if nnp:
                    from ocipy.linux import syscalls

                    syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
                if preload is not None:
                    from ocipy.linux import seccomp

                    seccomp.load_prepared(preload)
                os.execve(memfd, argv, env)
            finally:
                os._exit(99)
        os.close(out_w)
        os.close(err_w)
        self.out, self.err = out_r, err_r
        self.status = None

    def alive(self):
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
        return self.status is None

    def wait(self, timeout=10):
        """Exit code (or -signal), stdout, stderr."""
        deadline = time.monotonic() + timeout
        while self.alive():
            assert time.monotonic() < deadline, "the waiter did not exit"
            time.sleep(0.01)
        return os.waitstatus_to_exitcode(self.status), drain(self.out), drain(self.err)

    def blocked_in_open(self, timeout=10):
        """Wait until the child runs the waiter and sits in openat(2) on the fifo."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.alive(), f"the waiter exited: {os.waitstatus_to_exitcode(self.status)} {drain(self.err)!r}"
            try:
                exe = os.readlink(f"/proc/{self.pid}/exe")
                with open(f"/proc/{self.pid}/syscall") as f:
                    call = f.read().split()
            except OSError:
                exe, call = "", []
            if exe.startswith("/memfd:ocipy-wait") and call[:1] == ["257"]:  # openat
                assert int(call[2], 16) == WAITER_DATA + 0x20  # the path argument
                return
            assert time.monotonic() < deadline, "the waiter never blocked on the fifo"
            time.sleep(0.01)

    def status_field(self, name):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == name:
                    return value.strip()
        raise KeyError(name)

    def close(self):
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            _, self.status = os.waitpid(self.pid, 0)
        for fd in (self.out, self.err):
            try:
                os.close(fd)
            except OSError:
                pass


def drain(fd):
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def start(fifo, timeout=10):
    """What `ocipy start` does: open the fifo for reading and read the waiter's verdict."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the waiter's open for writing returns now
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, "the waiter wrote nothing"
        return os.read(fd, 16)
    finally:
        os.close(fd)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "exec.fifo"
    os.mkfifo(path, 0o622)
    os.chmod(path, 0o622)  # umask aside: writable by the unprivileged waiter
    return str(path)


@pytest.fixture
def running():
    """Every Waiter a test starts; all are killed and reaped at the end."""
    started = []
    memfds = []

    def run(fifo, argv, env, *, fd=WAITER_FD, seccomp=None, **kw):
        memfd = open_waiter(fd, seccomp)
        memfds.append(memfd)
        w = Waiter(memfd, fifo, argv, env, fd=fd, **kw)
        started.append(w)
        return w

    try:
        yield run
    finally:
        for w in started:
            w.close()
        for memfd in memfds:
            os.close(memfd)


@x86_64
def test_open_waiter_is_a_sealed_memfd():
    fd = open_waiter(WAITER_FD)
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        for seal in (fcntl.F_SEAL_SEAL, fcntl.F_SEAL_SHRINK, fcntl.F_SEAL_GROW, fcntl.F_SEAL_WRITE):
            assert seals & seal
        with pytest.raises(PermissionError):
            os.write(fd, b"x")
        assert os.pread(fd, 4096, 0) == waiter_program(WAITER_FD)
        assert os.fstat(fd).st_mode & 0o777 == 0o111  # execute-only: see test_exec_trampoline_is_never_dumpable_*
    finally:
        os.close(fd)


@x86_64
def test_waiter_blocks_until_start_then_execs_the_command(fifo, running):
    script = ('echo "$0|$1|$X|$#"; tr "\\0" "|" </proc/$$/cmdline; echo; '
              'for f in /proc/$$/fd/*; do echo "fd ${f##*/} $(readlink $f)"; done')
    argv = ["/bin/sh", "given-argv0", "-c", script, "zero", "one two"]
    w = running(fifo, argv, {"X": "x y", "PATH": "/usr/bin:/bin"})
    w.blocked_in_open()
    time.sleep(0.2)
    w.blocked_in_open(timeout=0)  # still there: only `start` lets it go on
    assert w.status_field("Threads") == "1"
    assert start(fifo) == b"0"
    code, out, err = w.wait()
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "zero|one two|x y|1"
    assert lines[1] == "given-argv0|-c|" + script + "|zero|one two|"  # exactly argv[1:]
    fds = {line.split()[1]: line.split(" ", 2)[2] for line in lines[2:]}
    assert str(WAITER_FD) not in fds  # the host's O_PATH handle stayed behind
    assert not [target for target in fds.values() if "exec.fifo" in target]  # and so did the write end


@x86_64
def test_waiter_passes_exactly_the_given_environment(fifo, running):
    env = {"A": "1", "EMPTY": "", "SPACES": " a b ", "EQUALS": "x=y"}
    w = running(fifo, ["/usr/bin/env", "env"], env)
    w.blocked_in_open()
    assert start(fifo) == b"0"
    code, out, err = w.wait()
    assert (code, err) == (0, "")
    assert sorted(out.splitlines()) == sorted(f"{k}={v}" for k, v in env.items())


@x86_64
def test_blocked_waiter_holds_a_few_kib(fifo, running):
    w = running(fifo, ["/bin/true", "true"], {})
    w.blocked_in_open()
    rss_kib = int(w.status_field("VmRSS").split()[0])
    assert rss_kib <= 32, w.status_field("VmRSS")  # 12 kB on Linux 6.x: the code page and the stack
    with open(f"/proc/{w.pid}/smaps_rollup") as f:
        pss_kib = int(next(line for line in f if line.startswith("Pss:")).split()[1])
    assert pss_kib <= 32
    assert start(fifo) == b"0"
    assert w.wait()[0] == 0


@x86_64
@root
def test_blocked_waiter_is_not_dumpable(fifo, running):
    """/proc/<pid>/ files of a non-dumpable process belong to root (task_dump_owner), not to
    the process's user: run the waiter as nobody, and its status file is root's while it waits,
    nobody's again once the command (dumpable after its exec) runs."""
    w = running(fifo, ["/bin/sh", "sh", "-c", "echo ready; exec sleep 30"], {}, uid=NOBODY)
    w.blocked_in_open()
    assert w.status_field("Uid").split() == [str(NOBODY)] * 4
    st = os.stat(f"/proc/{w.pid}/status")
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert start(fifo) == b"0"
    assert os.read(w.out, 6) == b"ready\n"  # the command runs (and then sleeps)
    st = os.stat(f"/proc/{w.pid}/status")
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)


@x86_64
@root
def test_waiter_loads_the_filter_last(tmp_path, fifo, running):
    from ocipy.linux import seccomp

    prepared = seccomp.prepare(MKDIR_DENIED)
    w = running(fifo, ["/bin/mkdir", "mkdir", str(tmp_path / "x")], {}, seccomp=(prepared.program, prepared.flags), nnp=True)
    w.blocked_in_open()
    assert w.status_field("Seccomp") == "0"  # not yet: the filter is the last thing before execve
    assert start(fifo) == b"0"
    code, out, err = w.wait()
    assert code == 1 and "Operation not permitted" in err
    assert not (tmp_path / "x").exists()

    script = "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; echo still runs"
    w = running(fifo, ["/bin/sh", "sh", "-c", script], {}, seccomp=(prepared.program, prepared.flags), nnp=True)
    w.blocked_in_open()
    assert start(fifo) == b"0"
    code, out, err = w.wait()
    assert (code, err) == (0, "")
    assert out.split() == ["NoNewPrivs:", "1", "Seccomp:", "2", "still", "runs"]


@x86_64
@root
def test_filter_that_fails_to_load_stops_the_container(fifo, running):
    """Without no_new_privs an unprivileged process may not load a filter (EACCES)."""
    from ocipy.linux import seccomp

    prepared = seccomp.prepare(MKDIR_DENIED)
    w = running(fifo, ["/bin/echo", "echo", "must not run"], {}, seccomp=(prepared.program, prepared.flags), uid=NOBODY)
    w.blocked_in_open()
    assert start(fifo) == b"0"  # the filter comes after the fifo, as in init
    code, out, err = w.wait()
    assert (code, out) == (1, "")
    assert err == "seccomp: error loading seccomp filter into kernel\n"


@x86_64
@root
def test_filter_with_flags_the_kernel_refuses_stops_the_container(fifo, running):
    from ocipy.linux import seccomp

    prepared = seccomp.prepare(MKDIR_DENIED)
    w = running(fifo, ["/bin/echo", "echo", "must not run"], {}, seccomp=(prepared.program, 1 << 20), nnp=True)
    w.blocked_in_open()
    assert start(fifo) == b"0"
    code, out, err = w.wait()
    assert (code, out, err) == (1, "", "seccomp: error loading seccomp filter into kernel\n")


@x86_64
def test_missing_command_exits_127(fifo, running):
    w = running(fifo, ["/no/such/program", "x"], {})
    w.blocked_in_open()
    assert start(fifo) == b"0"
    assert w.wait() == (127, "", "")


@x86_64
def test_fifo_fd_that_is_not_open_exits_1(fifo, running):
    w = running(None, ["/bin/echo", "echo", "must not run"], {}, fd=WAITER_FD)  # nothing on WAITER_FD
    assert w.wait() == (1, "", "ocipy: waiting for start: cannot open the exec fifo\n")


@x86_64
def test_fifo_fd_on_something_else_exits_1(tmp_path, running):
    w = running(str(tmp_path), ["/bin/echo", "echo", "must not run"], {})  # a directory cannot be opened for writing
    assert w.wait() == (1, "", "ocipy: waiting for start: cannot open the exec fifo\n")


@x86_64
@root
def test_waiter_that_cannot_become_non_dumpable_stops(fifo, running):
    """A filter loaded earlier (the no_new_privs=false case) also applies to the waiter."""
    from ocipy.linux import seccomp

    denied = seccomp.prepare({"defaultAction": "SCMP_ACT_ALLOW",
                              "syscalls": [{"names": ["prctl"], "action": "SCMP_ACT_ERRNO"}]})
    w = running(fifo, ["/bin/echo", "echo", "must not run"], {}, preload=denied)
    assert w.wait() == (1, "", "ocipy: waiting for start: cannot become non-dumpable\n")


@x86_64
@root
def test_waiter_that_cannot_write_the_verdict_stops(fifo, running):
    from ocipy.linux import seccomp

    no_write_above_stdio = seccomp.prepare({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["write"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_GE"}]}]})
    w = running(fifo, ["/bin/echo", "echo", "must not run"], {}, preload=no_write_above_stdio)
    w.blocked_in_open()
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        code, out, err = w.wait()
        assert (code, out, err) == (1, "", "ocipy: waiting for start: cannot write to the exec fifo\n")
        assert os.read(fd, 16) == b""  # `start` sees the end of the fifo and no "0"
    finally:
        os.close(fd)


# --- the exec trampoline: never dumpable on the way to the command --------------------------------
_libc = None


def _ptrace(request, pid, addr=0, data=0):
    global _libc
    import ctypes

    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.ptrace.restype = ctypes.c_long
        _libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    ctypes.set_errno(0)
    value = _libc.ptrace(request, pid, addr, data)
    if value == -1 and ctypes.get_errno():
        raise OSError(ctypes.get_errno(), f"ptrace({request})")
    return value


PTRACE_TRACEME, PTRACE_PEEKUSER, PTRACE_CONT, PTRACE_SYSCALL = 0, 3, 7, 24
ORIG_RAX = 15 * 8  # offsetof(struct user_regs_struct, orig_rax): the syscall number at a syscall stop
SYS_EXECVE = 59
CAP_DAC_OVERRIDE = 1


def _stopped(pid):
    _, status = os.waitpid(pid, 0)
    assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGTRAP, status


@x86_64
@root
@pytest.mark.parametrize("dac_override", [False, True], ids=["no-CAP_DAC_OVERRIDE", "CAP_DAC_OVERRIDE"])
def test_exec_trampoline_is_never_dumpable_before_the_commands_exec(dac_override):
    """A container process watching /proc must not open the trampoline's /proc/<pid>/mem
    (tests/security/test_attacks_exe.py tries). The child, uid 1000, runs the trampoline
    under ptrace, which stops it right after the exec (before its first instruction) and at
    its execve of the command. /proc/<pid>/ files of a non-dumpable process belong to root.

    Without CAP_DAC_OVERRIDE the execute-only memfd keeps it non-dumpable from the exec on.
    With it the exec leaves it dumpable (the control: this test sees dumpability), and the
    trampoline's prctl clears that before its execve. The command is dumpable again."""
    from types import SimpleNamespace

    from ocipy.linux import process, syscalls

    memfd = trampoline.open_trampoline()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            process.switch_user(SimpleNamespace(uid=1000, gid=1000, additional_gids=[]))
            caps = 1 << CAP_DAC_OVERRIDE if dac_override else 0
            syscalls.capset(caps, caps, 0)
            _ptrace(PTRACE_TRACEME, 0)
            os.execve(memfd, ["/bin/true", "true"], {})
        finally:
            os._exit(99)
    os.close(memfd)
    owner = {}
    try:
        _stopped(pid)  # the exec of the trampoline
        assert os.readlink(f"/proc/{pid}/exe") == "/memfd:ocipy-exec (deleted)"
        owner["exec"] = os.stat(f"/proc/{pid}/mem").st_uid
        for _ in range(8):  # syscall-entry and -exit stops up to the execve's entry
            _ptrace(PTRACE_SYSCALL, pid)
            _stopped(pid)
            if _ptrace(PTRACE_PEEKUSER, pid, ORIG_RAX) == SYS_EXECVE:
                break
        else:
            pytest.fail("the trampoline never reached its execve")
        owner["execve"] = os.stat(f"/proc/{pid}/mem").st_uid
        _ptrace(PTRACE_CONT, pid)
        _stopped(pid)  # the SIGTRAP of a traced process's successful execve
        assert os.readlink(f"/proc/{pid}/exe") == os.path.realpath("/bin/true")
        owner["command"] = os.stat(f"/proc/{pid}/mem").st_uid
        _ptrace(PTRACE_CONT, pid)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    print(f"owner of /proc/<pid>/mem (root: not dumpable): {owner}")
    assert owner == {"exec": 1000 if dac_override else 0, "execve": 0, "command": 1000}

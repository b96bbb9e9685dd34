"""`run` in the foreground: create + start, then stay as the container's reaper.

The container's pid 1 is forked as our own child (create's pid1_child: clone3's
CLONE_PARENT, as runc does), so we can wait() for its exit status. Where the kernel
cannot do that, ocipy becomes a child subreaper during create, before stage 1 (pid 1's
parent) exits (create's before_orphaning), so pid 1 is reparented to us. Without a pid
namespace of its own, the container's orphans would reach us too: we become their
subreaper before `start` (runc does so for every `run`; the syscalls module that takes
costs ~2 ms, which a container with its own pid namespace is spared).
Signals we receive are forwarded to it (as runc: all but SIGCHLD,
SIGWINCH and SIGURG). With `process.terminal` and no --console-socket, we take
the pty master ourselves and relay it to our own stdin/stdout.
"""

import _signal  # the C module behind `signal` (whose enums cost `run` 4 ms of imports)
import posix  # not os (~1 ms): see fspath.py
import select
import sys

from .prefork import read_config

_NOT_FORWARDED = {_signal.SIGCHLD, _signal.SIGWINCH, _signal.SIGURG, _signal.SIGKILL, _signal.SIGSTOP}


def _wants_terminal(bundle: str, stage1) -> bool:
    """process.terminal, from the config.json the CLI's prefork has read already (else read here)."""
    config = stage1.config if stage1 is not None else read_config(bundle)
    try:
        return bool((config.get("process") or {}).get("terminal"))
    except AttributeError:  # unreadable, or not objects: create reports the real problem
        return False


def run_container(runtime, container_id: str, bundle: str, *, detach: bool, keep: bool, no_subreaper: bool = False, **options) -> int:
    own_console = None
    if not detach and options.get("console_socket") is None and _wants_terminal(bundle, options.get("stage1")):
        import socket

        own_console, options["console_socket"] = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    was_subreaper = []  # set once we have become the subreaper

    def become_subreaper():
        from .linux import syscalls

        was_subreaper.append(syscalls.get_child_subreaper())
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)

    reaper = not detach and not no_subreaper
    if not detach:
        options["pid1_child"] = True
    if reaper:
        options["before_orphaning"] = become_subreaper

    def before_start(container):
        if reaper and not was_subreaper and _orphans_reach_us(container.config):
            become_subreaper()

    try:
        return _create_start_wait(runtime, container_id, bundle, own_console, detach=detach, keep=keep, options=options,
                                  before_start=before_start)
    finally:
        if was_subreaper:
            from .linux import syscalls

            syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, int(was_subreaper[0]))


def _orphans_reach_us(config: dict) -> bool:
    """Pure: whether the container shares our pid namespace, whose orphans go to the nearest
    subreaper (in a pid namespace of its own, made or joined, its init adopts them)."""
    namespaces = (config.get("linux") or {}).get("namespaces") or []
    return not any(ns.get("type") == "pid" for ns in namespaces)


def _create_start_wait(runtime, container_id, bundle, own_console, *, detach, keep, options, before_start) -> int:
    try:
        container = runtime.create(container_id, bundle, **options)
    finally:
        if own_console is not None:
            options["console_socket"].close()
    master = None
    try:
        if own_console is not None:
            from .linux.console import receive_master

            master = receive_master(own_console)
            own_console.close()
        before_start(container)
        container.start()
    except BaseException:
        runtime.delete(container_id, force=True)
        raise
    if detach:
        return 0
    try:
        return wait_pid(container.pid, master)
    finally:
        if not keep:
            runtime.delete(container_id, force=True)


def _forward_signals(pid: int, master: int | None) -> dict:
    """Install the forwarding handlers; return the previous ones to restore."""
    previous = {}

    def forward(signum, _frame):
        try:
            posix.kill(pid, signum)
        except ProcessLookupError:
            pass

    def resize(_signum, _frame):
        _copy_winsize(master)

    for sig in sorted(_signal.valid_signals()):
        if sig in _NOT_FORWARDED:
            continue
        try:
            previous[sig] = _signal.signal(sig, forward)
        except (OSError, ValueError):
            pass
    if master is not None:
        previous[_signal.SIGWINCH] = _signal.signal(_signal.SIGWINCH, resize)
    return previous


def _copy_winsize(master: int | None) -> None:
    if master is None:
        return
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(sys.stdin.fileno(), termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def wait_pid(pid: int, master: int | None) -> int:
    """Wait for `pid` (our child, or reparented to us as its subreaper), forwarding signals and relaying
    its pty when we hold the master; return its exit code."""
    pidfd = posix.pidfd_open(pid)
    previous_handlers = _forward_signals(pid, master)
    saved_tty = None
    try:
        if master is not None:
            import termios
            import tty

            stdin = sys.stdin.fileno()
            if posix.isatty(stdin):
                saved_tty = termios.tcgetattr(stdin)
                tty.setraw(stdin)
                _copy_winsize(master)
            _relay(master, stdin, sys.stdout.fileno(), pidfd)
        else:
            select.select([pidfd], [], [])
        return _reap(pid)
    finally:
        for sig, handler in previous_handlers.items():
            _signal.signal(sig, handler if handler is not None else _signal.SIG_DFL)
        if saved_tty is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved_tty)
        posix.close(pidfd)
        if master is not None:
            posix.close(master)


def _relay(master: int, stdin: int, stdout: int, pidfd: int) -> None:
    """Copy stdin -> pty and pty -> stdout until the container exits and its output is drained."""
    readers = [master, pidfd, stdin]
    exited = False
    while True:
        ready, _, _ = select.select(readers, [], [], 0.05 if exited else None)
        if pidfd in ready:
            exited = True
            readers.remove(pidfd)
        if master in ready:
            try:
                data = posix.read(master, 65536)
            except OSError:  # EIO: the last slave fd is closed
                data = b""
            if not data:
                return
            posix.write(stdout, data)
        elif exited:
            return
        if stdin in ready:
            data = posix.read(stdin, 65536)
            if data:
                posix.write(master, data)
            else:
                readers.remove(stdin)


def _reap(pid: int) -> int:
    """The container's exit code (128+N when killed by signal N); reap orphans it left to us."""
    code = 0
    try:
        _, status = posix.waitpid(pid, 0)
        code = posix.waitstatus_to_exitcode(status)
        if code < 0:
            code = 128 - code
    except ChildProcessError:
        pass  # not our child (an old kernel and --no-subreaper): the status is not ours to read
    while True:
        try:
            if posix.waitpid(-1, posix.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    return code


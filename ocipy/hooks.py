"""Run lifecycle hooks (config.md#posix-platform-hooks).

A hook gets the container state as JSON on stdin, exactly its `env` (nothing
inherited), `args` as argv (args[0] included, as execve takes it), and is killed
after `timeout` seconds. Its cwd is the bundle, as runc does.

A hook is started with fork + execve and fed with poll(2) rather than with
subprocess, for two reasons: `import subprocess` costs ~8 ms (and docker's configs
carry a prestart hook, so every docker create would pay it), and startContainer
hooks run after pivot_root, where nothing can be imported any more. Everything
used here is loaded with this module. The hook sees what subprocess.Popen(...,
start_new_session=True, close_fds=True) would give it.
"""

from __future__ import annotations

import _signal  # the C module behind `signal` (whose enums cost 4 ms of imports)
import fcntl
import os
import select
import time

from . import jsonfast
from .errors import HookError


def run_hook(hook, state: dict, *, kind: str, index: int, cwd: str | None = None) -> None:
    """Run one hook; raise HookError naming the hook when it fails or times out."""
    args = list(hook.args) if hook.args else [hook.path]
    label = f"{kind} hook #{index} ({hook.path})"
    env = dict(e.split("=", 1) for e in hook.env if "=" in e) if hook.env else {}
    try:
        pid, stdin, stdout, stderr = _spawn(hook.path, args, env, cwd)
    except OSError as e:
        raise HookError(f"{label}: cannot start: {e.strerror}") from None
    output = _exchange(stdin, stdout, stderr, jsonfast.dumps(state).encode(), hook.timeout or None)
    if output is None:
        try:
            os.killpg(pid, _signal.SIGKILL)
        except OSError:
            os.kill(pid, _signal.SIGKILL)
        os.waitpid(pid, 0)
        raise HookError(f"{label}: timed out after {hook.timeout}s")
    out, err = output
    returncode = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if returncode != 0:
        detail = (err or out).decode(errors="replace").strip()
        how = f"exit status {returncode}" if returncode > 0 else f"killed by signal {-returncode}"
        raise HookError(f"{label} failed: {how}" + (f": {detail}" if detail else ""))


def run_hooks(hooks: list, state: dict, *, kind: str, cwd: str | None = None) -> None:
    """Run hooks in order; the first failure stops the rest and raises."""
    for i, hook in enumerate(hooks):
        run_hook(hook, state, kind=kind, index=i, cwd=cwd)


def run_hooks_warn(hooks: list, state: dict, *, kind: str, warn, cwd: str | None = None) -> None:
    """Run every hook; a failure is a warning and the rest still run (poststop)."""
    for i, hook in enumerate(hooks):
        try:
            run_hook(hook, state, kind=kind, index=i, cwd=cwd)
        except HookError as e:
            warn(str(e))


# --- a child process with pipes on its stdio -----------------------------------------------


def _spawn(path: str, args: list, env: dict, cwd: str | None) -> tuple[int, int, int, int]:
    """Start `path` in a new session, its stdin, stdout and stderr on pipes and no other fd open.

    Returns (pid, our end of stdin, of stdout, of stderr). Raises OSError (with the
    errno of chdir or execve) when the program cannot be started, as subprocess does.
    """
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    status_r, status_w = os.pipe()  # close-on-exec: EOF when execve succeeded, else the errno
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        _exec_child(path, args, env, cwd, (stdin_r, stdout_w, stderr_w), status_w)
    for fd in (stdin_r, stdout_w, stderr_w, status_w):
        os.close(fd)
    try:
        failure = os.read(status_r, 16)
    finally:
        os.close(status_r)
    if failure:
        os.waitpid(pid, 0)
        for fd in (stdin_w, stdout_r, stderr_r):
            os.close(fd)
        code = int(failure)
        raise OSError(code, os.strerror(code))
    return pid, stdin_w, stdout_r, stderr_r


def _exec_child(path: str, args: list, env: dict, cwd: str | None, stdio: tuple, status_w: int) -> None:
    """In the forked child: session, signals, cwd, stdio and fds as subprocess sets them, then execve."""
    try:
        os.setsid()
        for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):  # ignored by Python; a program expects the default
            _signal.signal(sig, _signal.SIG_DFL)
        if cwd is not None:
            os.chdir(cwd)
        # Move the three ends above 2 first: one of them may be 0, 1 or 2 itself.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in stdio]
        for target, fd in enumerate(high):
            os.dup2(fd, target)  # inheritable
        os.closerange(3, status_w)
        os.closerange(status_w + 1, os.sysconf("SC_OPEN_MAX"))
        os.execve(path, args, env)
    except OSError as e:
        os.write(status_w, str(e.errno or 0).encode())
    finally:
        os._exit(255)


def _exchange(stdin: int, stdout: int, stderr: int, data: bytes, timeout: float | None) -> tuple[bytes, bytes] | None:
    """Write `data` to the child's stdin and read its stdout and stderr to the end, as
    Popen.communicate does; close the three fds. None when `timeout` seconds pass first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    chunks: dict[int, list] = {stdout: [], stderr: []}
    poller = select.poll()
    poller.register(stdout, select.POLLIN)
    poller.register(stderr, select.POLLIN)
    poller.register(stdin, select.POLLOUT)
    pending = {stdin, stdout, stderr}
    sent = 0
    try:
        while pending:
            wait_ms = None
            if deadline is not None:
                wait_ms = (deadline - time.monotonic()) * 1000
                if wait_ms <= 0:
                    return None
            for fd, _event in poller.poll(wait_ms):
                if fd == stdin:
                    try:
                        sent += os.write(stdin, data[sent : sent + select.PIPE_BUF])
                    except BrokenPipeError:
                        sent = len(data)  # the hook does not read its stdin: fine
                    done = sent >= len(data)
                else:
                    chunk = os.read(fd, 32768)
                    chunks[fd].append(chunk)
                    done = not chunk
                if done:
                    poller.unregister(fd)
                    os.close(fd)
                    pending.discard(fd)
    finally:
        for fd in pending:
            os.close(fd)
    return b"".join(chunks[stdout]), b"".join(chunks[stderr])

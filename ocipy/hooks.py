"""Run lifecycle hooks (config.md#posix-platform-hooks).

A hook gets the container state as JSON on stdin, exactly its `env` (nothing
inherited), `args` as argv (args[0] included, as execve takes it), and is killed
after `timeout` seconds. Its cwd is the bundle, as runc does.
"""

import json
import os
import signal
import subprocess

from .errors import HookError


def run_hook(hook, state: dict, *, kind: str, index: int, cwd: str | None = None) -> None:
    """Run one hook; raise HookError naming the hook when it fails or times out."""
    args = list(hook.args) if hook.args else [hook.path]
    label = f"{kind} hook #{index} ({hook.path})"
    try:
        proc = subprocess.Popen(
            args,
            executable=hook.path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(e.split("=", 1) for e in hook.env if "=" in e) if hook.env else {},
            cwd=cwd,
            close_fds=True,
            start_new_session=True,
        )
    except OSError as e:
        raise HookError(f"{label}: cannot start: {e.strerror}") from None
    try:
        out, err = proc.communicate(json.dumps(state).encode(), timeout=hook.timeout or None)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        proc.communicate()
        raise HookError(f"{label}: timed out after {hook.timeout}s") from None
    except BrokenPipeError:
        out, err = b"", b""
        proc.wait()
    if proc.returncode != 0:
        detail = (err or out).decode(errors="replace").strip()
        how = f"exit status {proc.returncode}" if proc.returncode > 0 else f"killed by signal {-proc.returncode}"
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

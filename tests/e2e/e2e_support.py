"""Helpers the e2e tests share (the fixtures are in conftest.py).

Imported by name from the test modules: `tests/e2e` is on sys.path when pytest collects them.
"""

import os
import re
import time
from pathlib import Path

import pytest

IMAGE = "ocipy-busybox"
RUNTIMES = ("runc", "ocipy")  # runc first: it shows what the engine's user should see


# --------------------------------------------------------------------------- comparison


def compare(wrappers: dict, scenario, *args, **kwargs) -> dict:
    """Run `scenario(runtime_name, *args)` with runc, then with ocipy; fail if the results differ.

    The failure message shows both results and the runtime calls each run made, so a failure
    reads as a bug report: what the engine called, what ocipy did, what runc did.
    """
    results, calls = {}, {}
    for rt in RUNTIMES:
        mark = wrappers[rt].mark()
        results[rt] = scenario(rt, *args, **kwargs)
        time.sleep(0.2)  # the engine's clean-up calls (delete) may still be on their way
        calls[rt] = wrappers[rt].since(mark)
    if results["ocipy"] != results["runc"]:
        lines = ["ocipy and runc differ"]
        keys = sorted(set(results["runc"]) | set(results["ocipy"]))
        for k in keys:
            a, b = results["runc"].get(k), results["ocipy"].get(k)
            flag = "  " if a == b else "!!"
            lines.append(f"{flag} {k}: runc={a!r} ocipy={b!r}")
        for rt in RUNTIMES:
            lines.append(f"--- {rt} calls:\n{calls[rt]}")
        pytest.fail("\n".join(lines), pytrace=False)
    return results["runc"]


def text(s: str) -> str:
    """Normalise terminal output (CRLF from a pty) for comparison."""
    return s.replace("\r\n", "\n").replace("\r", "\n")


def first_line_with(s: str, *needles: str) -> str:
    for line in s.splitlines():
        if all(n in line.lower() for n in needles):
            return line
    return ""


# --------------------------------------------------------------------------- small helpers


def host_cgroup_file(pid: int, controller: str, name: str) -> Path:
    """The cgroup file of `pid` in the v1 `controller` hierarchy, read from the host."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/") / name
    raise AssertionError(f"pid {pid} has no {controller} cgroup")


def wait_for(pred, timeout=20.0, interval=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()


def uniq(prefix: str, rt: str) -> str:
    return f"{prefix}-{rt}-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"


ERRNO_WORDS = re.compile(r"(no such file or directory|executable file not found|permission denied|operation not permitted)",
                         re.I)


def run_in_pty(argv: list, timeout: float = 60, env=None) -> tuple[int, str]:
    """Run `argv` with a pty as its stdin/stdout/stderr (ctr -t insists on a terminal); return (rc, output)."""
    import pty
    import select
    import subprocess

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    finally:
        os.close(slave)
    out = b""
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every slave fd closed
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        rc = proc.wait(timeout=max(1.0, end - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return rc, out.decode(errors="replace")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


# A command that cannot run, the exit code engines map it to, and the words that explain why.
FAILING_COMMANDS = [
    (["/nonexistent"], 127, ("no such file or directory", "executable file not found")),
    (["nosuchcommand"], 127, ("executable file not found", "no such file or directory")),
    (["/etc/passwd"], 126, ("permission denied",)),
]


def errno_reason(text: str) -> str | None:
    """The errno words an engine shows for a command that could not run (lowercase), or None."""
    found = ERRNO_WORDS.search(text)
    return found.group(1).lower() if found else None

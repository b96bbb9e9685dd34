"""Log lines in runc's formats (--log FILE, --log-format text|json).

Engines read this file: containerd reports the last `"level":"error"` line,
podman the whole file. Every line is one JSON object with a parseable RFC 3339
time. An error is also printed to stderr, unless stderr is gone (podman closes
it for `state`): a failed write must never crash the command.
"""

import posix  # not os, for the hot commands (see main.py)
import sys
import time

from . import jsonfast

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Logger:
    def __init__(self, path: str | None = None, fmt: str = "text", debug: bool = False):
        self.path = path
        self.fmt = fmt
        self.threshold = _LEVELS["debug" if debug else "info"]

    def _write_file(self, level: str, msg: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + "Z"
        if self.fmt == "json":
            line = jsonfast.dumps({"level": level, "msg": msg, "time": stamp}, separators=(",", ":")) + "\n"
        else:
            line = f'time="{stamp}" level={level} msg="{msg}"\n'
        # O_APPEND so that every operation of a container shares one file safely.
        fd = posix.open(self.path, posix.O_WRONLY | posix.O_CREAT | posix.O_APPEND | posix.O_CLOEXEC, 0o644)
        try:
            posix.write(fd, line.encode())
        finally:
            posix.close(fd)

    def log(self, level: str, msg: str) -> None:
        if _LEVELS[level] < self.threshold:
            return
        if self.path:
            try:
                self._write_file(level, msg)
            except OSError:
                pass
        if level in ("error", "warning") or not self.path:
            _to_stderr(f"{level}: {msg}" if level != "error" else msg)

    def debug(self, msg: str) -> None:
        self.log("debug", msg)

    def info(self, msg: str) -> None:
        self.log("info", msg)

    def warning(self, msg: str) -> None:
        self.log("warning", msg)

    def error(self, msg: str) -> None:
        self.log("error", msg)


def _to_stderr(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


# The process-wide logger; the CLI replaces it from --log/--log-format/--debug.
logger = Logger()


def configure(path: str | None, fmt: str = "text", debug: bool = False) -> Logger:
    global logger
    logger = Logger(path, fmt, debug)
    return logger

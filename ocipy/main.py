"""The `ocipy` entry point: a fast path for the commands engines call constantly.

containerd and podman run `create`, `start`, `state`, `kill`, `delete`, `list` and
`exec` for every container (and `run` is how a person starts one), each in a fresh
interpreter, so those commands parse their flags here without importing click
(15-30 ms). Anything else, or anything unusual
(--help, an unknown flag, a missing argument), goes to the full click CLI, which
also produces the usage errors.
"""

import posix  # not os: `import os` costs ~0.8 ms (collections.abc, posixpath), a tenth of a `state`
import sys

_GLOBAL_VALUES = {"--root": "root", "--log": "log", "--log-format": "log_format", "--cgroup-manager": "cgroup_manager", "--rootless": "rootless"}
_GLOBAL_FLAGS = {"--debug": "debug", "--systemd-cgroup": "systemd_cgroup"}
_CREATE_FLAGS = {"--no-pivot": "no_pivot", "--no-new-keyring": "no_new_keyring"}
_CREATE_VALUES = {"--bundle": "bundle", "-b": "bundle", "--pid-file": "pid_file", "--console-socket": "console_socket", "--preserve-fds": "preserve_fds"}
_COMMAND_FLAGS = {
    "state": {},
    "start": {},
    "kill": {"--all": "all", "-a": "all"},
    "delete": {"--force": "force", "-f": "force"},
    "list": {"--quiet": "quiet", "-q": "quiet"},
    "create": _CREATE_FLAGS,
    "run": {**_CREATE_FLAGS, "--detach": "detach", "-d": "detach", "--keep": "keep", "--no-subreaper": "no_subreaper"},
    "exec": {"--tty": "tty", "-t": "tty", "--detach": "detach", "-d": "detach", "--no-new-privs": "no_new_privs",
             "--ignore-paused": "ignore_paused"},
}
_COMMAND_VALUES = {
    "list": {"--format": "format", "-f": "format"},
    "create": _CREATE_VALUES,
    "run": _CREATE_VALUES,
    "exec": {"--process": "process_file", "-p": "process_file", "--console-socket": "console_socket",
             "--pid-file": "pid_file", "--cwd": "cwd", "--user": "user", "-u": "user", "--preserve-fds": "preserve_fds"},
}
# Options that may be repeated; each use adds a value.
_COMMAND_LISTS = {"exec": {"--env": "env", "-e": "env", "--additional-gids": "additional_gids", "-g": "additional_gids",
                           "--cap": "caps", "-c": "caps"}}
_POSITIONALS = {"state": (1, 1), "start": (1, 1), "kill": (1, 2), "delete": (1, 1), "list": (0, 0), "create": (1, 1),
                "run": (1, 1), "exec": (1, None)}
# After its container id, everything is the command (runc exec sh -c ...).
_OPTIONS_END_AT_POSITIONAL = {"exec"}


def parse_fast(argv: list[str]) -> tuple[dict, str, dict, list[str]] | None:
    """Pure: (global options, command, command options, positionals), or None to use click."""
    opts: dict = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        name, eq, value = argv[i].partition("=")
        if name.startswith("-") and not name.startswith("--") and len(name) > 2:
            name = "-" + name  # runc's single-dash long options
        if name in _GLOBAL_FLAGS and not eq:
            opts[_GLOBAL_FLAGS[name]] = True
        elif name in _GLOBAL_VALUES:
            if not eq:
                i += 1
                if i >= len(argv):
                    return None
                value = argv[i]
            opts[_GLOBAL_VALUES[name]] = value
        else:
            return None
        i += 1
    if i >= len(argv) or argv[i] not in _COMMAND_FLAGS:
        return None
    command = argv[i]
    flags, values = _COMMAND_FLAGS[command], _COMMAND_VALUES.get(command, {})
    lists = _COMMAND_LISTS.get(command, {})
    cmd_opts: dict = {}
    positionals: list[str] = []
    rest = argv[i + 1 :]
    j = 0
    while j < len(rest):
        arg = rest[j]
        if positionals and command in _OPTIONS_END_AT_POSITIONAL:
            positionals.extend(rest[j:])
            break
        if arg.startswith("-") and not arg.lstrip("-").isdigit():
            name, eq, value = arg.partition("=")
            if name.startswith("-") and not name.startswith("--") and len(name) > 2:
                name = "-" + name
            if name in flags and not eq:
                cmd_opts[flags[name]] = True
            elif name in values or name in lists:
                if not eq:
                    j += 1
                    if j >= len(rest):
                        return None
                    value = rest[j]
                if name in lists:
                    cmd_opts.setdefault(lists[name], []).append(value)
                else:
                    cmd_opts[values[name]] = value
            else:
                return None  # --help, an unknown flag: click handles it
        else:
            positionals.append(arg)
        j += 1
    low, high = _POSITIONALS[command]
    if len(positionals) < low or (high is not None and len(positionals) > high):
        return None
    if command == "list" and cmd_opts.get("format", "table") not in ("table", "json"):
        return None
    if "preserve_fds" in cmd_opts:
        if not cmd_opts["preserve_fds"].isdigit():
            return None
        cmd_opts["preserve_fds"] = int(cmd_opts["preserve_fds"])
    if "additional_gids" in cmd_opts:
        if not all(g.isdigit() for g in cmd_opts["additional_gids"]):
            return None
        cmd_opts["additional_gids"] = [int(g) for g in cmd_opts["additional_gids"]]
    if opts.get("log_format", "text") not in ("text", "json"):
        return None
    return opts, command, cmd_opts, positionals


# The commands that import most of ocipy (~50 modules for a create): they take its modules
# from the code pack the launcher built at install time, if it is usable (codepack.py). The
# others import a dozen, which the pack would not repay.
_PACKED_COMMANDS = ("create", "run", "exec")


def run_fast(opts: dict, command: str, cmd_opts: dict, positionals: list[str]) -> int:
    stage1 = None
    if command in _PACKED_COMMANDS:
        from . import codepack

        codepack.install(codepack.default_path(__file__.rpartition("/")[0]))
    if command in ("create", "run"):
        from .prefork import start

        stage1 = start(cmd_opts.get("bundle", "."))  # before the imports below: see prefork.py
    try:
        return _run_fast(opts, command, cmd_opts, positionals, stage1)
    finally:
        if stage1 is not None:
            stage1.abandon()  # when create did not get as far as taking it


class _CommandLog:
    """The command's logger (ocipy.logs, set up from --log, --log-format and --debug), made
    when the first line is written: a `state`, `start`, `kill`, `delete` or `list` that
    succeeds writes none, and need not import ocipy.logs."""

    def __init__(self, opts: dict):
        self._opts = opts
        self._logger = None

    def _get(self):
        if self._logger is None:
            from . import logs

            opts = self._opts
            self._logger = logs.configure(opts.get("log"), opts.get("log_format", "text"), opts.get("debug", False))
        return self._logger

    def warning(self, message: str) -> None:
        self._get().warning(message)

    def error(self, message: str) -> None:
        self._get().error(message)


def _run_fast(opts: dict, command: str, cmd_opts: dict, positionals: list[str], stage1) -> int:
    from .errors import OcipyError
    from .runtime import DEFAULT_ROOT, Runtime

    log = _CommandLog(opts)
    driver = opts.get("cgroup_manager") or ("systemd" if opts.get("systemd_cgroup") else "cgroupfs")
    runtime = Runtime(opts.get("root") or DEFAULT_ROOT, cgroup_manager=driver, log=log)
    try:
        if command in ("create", "run"):
            options = {k: cmd_opts[k] for k in ("pid_file", "console_socket", "no_pivot", "no_new_keyring", "preserve_fds") if k in cmd_opts}
            options["stage1"] = stage1
            bundle = cmd_opts.get("bundle", ".")
            if command == "create":
                runtime.create(positionals[0], bundle, **options)
            else:
                return runtime.run(positionals[0], bundle, detach=cmd_opts.get("detach", False), keep=cmd_opts.get("keep", False),
                                   no_subreaper=cmd_opts.get("no_subreaper", False), **options)
        elif command == "list":
            from .output import list_output

            states = [c.state() for c in runtime.containers()]
            sys.stdout.write(list_output(states, cmd_opts.get("format", "table"), cmd_opts.get("quiet", False)))
        elif command == "delete":
            runtime.delete(positionals[0], force=cmd_opts.get("force", False))
        elif command == "exec":
            from .exec import exec_command

            return exec_command(runtime, positionals[0], positionals[1:], **cmd_opts)
        else:
            container = runtime.container(positionals[0])
            if command == "state":
                from .output import state_json

                sys.stdout.write(state_json(container.state()) + "\n")
            elif command == "start":
                container.start()
            elif command == "kill":
                container.kill(positionals[1] if len(positionals) > 1 else "SIGTERM", all=cmd_opts.get("all", False))
    except (OcipyError, OSError) as e:
        log.error(str(e))
        return getattr(e, "exit_code", 1)
    return 0


def ensure_std_fds() -> None:
    """Open /dev/null on any of fds 0-2 the caller closed (podman closes stderr for `state`),
    so that no socket or file of ours lands there and passes into a container as stdio."""
    for fd in (0, 1, 2):
        try:
            posix.fstat(fd)
        except OSError:
            posix.open("/dev/null", posix.O_RDWR)


def main(argv: list[str] | None = None) -> None:
    ensure_std_fds()
    argv = sys.argv[1:] if argv is None else argv
    parsed = parse_fast(argv)
    if parsed is not None:
        code = run_fast(*parsed)
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        sys.exit(code)
    from .cli import main as click_main

    click_main(argv)


def launch() -> None:
    """The `ocipy` process (what the launcher runs): main(), then straight out.

    A command's few objects need no cycle collector, and its end no interpreter
    teardown: together ~1.5 ms of the ~10 a `state` costs. Everything ocipy writes
    goes through posix.write or closed files; stdout and stderr are flushed here.
    """
    import gc

    gc.disable()
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    posix._exit(code & 0xFF)

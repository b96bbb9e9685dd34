"""`exec`: run a new process in a running container: the parent side, then the two children.

The process comes from --process (a Process JSON, as engines send it) or is built
from the container's own config.json process with the command line's overrides,
as runc builds it. Failures exit 255 with runc's "exec failed: ..." wording.
"""

from __future__ import annotations

import posix

from . import fspath, jsonfast
from .errors import OcipyError
# The children's modules too: after stage 1 joins the container's mount namespace the
# host's files are out of reach.
from .launch import become_root_in_userns, execute, fail_channel, fork_in_cgroup, prepare_process
from .linux import console, namespaces, syscalls
from .linux.cgroups.joining import RecordedCgroup
from .state import write_pid_file
from .sync import Channel, ChildError


class ExecError(OcipyError):
    exit_code = 255

    def __init__(self, message: str):
        super().__init__(f"exec failed: {message}")


def build_process(
    base: dict,
    args: list[str],
    *,
    env: list[str] = (),
    cwd: str | None = None,
    user: str | None = None,
    additional_gids: list[int] = (),
    caps: list[str] = (),
    no_new_privs: bool = False,
    tty: bool = False,
) -> dict:
    """Pure: the container's process with runc exec's overrides (args, env added, cwd, user, caps...)."""
    proc = jsonfast.loads(jsonfast.dumps(base))  # a deep copy of JSON data
    proc["args"] = list(args)
    proc["terminal"] = tty
    proc.pop("consoleSize", None)
    if env:
        names = {e.split("=", 1)[0] for e in env}
        proc["env"] = [e for e in proc.get("env", []) if e.split("=", 1)[0] not in names] + list(env)
    if cwd:
        proc["cwd"] = cwd
    if user:
        uid, _, gid = user.partition(":")
        proc["user"] = {**proc.get("user", {}), "uid": int(uid)}
        if gid:
            proc["user"]["gid"] = int(gid)
    if additional_gids:
        proc.setdefault("user", {"uid": 0, "gid": 0})["additionalGids"] = list(additional_gids)
    if caps:
        sets = proc.setdefault("capabilities", {})
        for name in ("bounding", "effective", "permitted", "ambient"):
            current = sets.setdefault(name, [])
            current += [c for c in caps if c not in current]
    if no_new_privs:
        proc["noNewPrivileges"] = True
    return proc


def namespaces_to_join(config: dict, pid: int) -> list[tuple[str, str]]:
    """The container's namespaces, as /proc/<pid>/ns paths, in join order; ones we share are skipped."""
    from .linux.namespaces import JOIN_ORDER, PROC_NAMES

    types = {ns["type"] for ns in (config.get("linux") or {}).get("namespaces", [])}
    out = []
    for ns_type in JOIN_ORDER:
        if ns_type not in types:
            continue
        path = f"/proc/{pid}/ns/{PROC_NAMES[ns_type]}"
        try:
            if posix.stat(path).st_ino == posix.stat(f"/proc/self/ns/{PROC_NAMES[ns_type]}").st_ino:
                continue  # setns into one's own user namespace is EINVAL; the others are no-ops
        except FileNotFoundError:
            raise ExecError("cannot exec in a stopped container") from None
        out.append((ns_type, path))
    return out


def exec_command(
    runtime,
    container_id: str,
    command: list[str],
    *,
    process_file: str | None = None,
    tty: bool = False,
    console_socket: str | None = None,
    detach: bool = False,
    pid_file: str | None = None,
    cwd: str | None = None,
    env: list[str] = (),
    user: str | None = None,
    additional_gids: list[int] = (),
    caps: list[str] = (),
    no_new_privs: bool = False,
    preserve_fds: int = 0,
    ignore_paused: bool = False,
    apparmor: str | None = None,
    process_label: str | None = None,
    sub_cgroup: str | None = None,
) -> int:
    """`ocipy exec` (runc's flags): the process from --process or from the command line; its exit code."""
    if apparmor or process_label:
        raise ExecError("AppArmor and SELinux labels are not supported by ocipy")
    if sub_cgroup:
        raise ExecError("--cgroup (a sub-cgroup for the process) is not supported by ocipy yet")
    container = runtime.container(container_id)
    if process_file:
        from . import bundle

        try:
            with open(process_file) as f:
                process = jsonfast.loads(f.read())
        except (OSError, ValueError) as e:
            raise ExecError(f"read process file {process_file}: {e}") from None
        for warning in bundle.validate_process(process, source=fspath.basename(process_file)):
            runtime.warn(warning)
    else:
        if not command:
            raise ExecError("exec needs a command (or --process)")
        process = build_process(
            container._state.config.get("process") or {}, list(command), env=list(env), cwd=cwd, user=user,
            additional_gids=list(additional_gids), caps=list(caps), no_new_privs=no_new_privs, tty=tty,
        )
    return container.exec(process, detach=detach, pid_file=pid_file, console_socket=console_socket,
                          preserve_fds=preserve_fds, ignore_paused=ignore_paused)


def exec_in_container(
    container,
    process: dict,
    *,
    detach: bool = False,
    pid_file: str | None = None,
    console_socket=None,  # a socket path, or a connected socket object
    preserve_fds: int = 0,
    ignore_paused: bool = False,
) -> int:
    """Start `process` in the container; in the foreground wait and return its exit code."""
    from .spec import Process

    state = container._state
    status = state.status()
    if status == "stopped":
        raise ExecError("cannot exec in a stopped container")
    if status == "paused" and not ignore_paused:
        raise ExecError("cannot exec in a paused container")
    proc = Process.from_dict(process)
    if proc.terminal and console_socket is None and detach:
        raise ExecError("cannot allocate tty if ocipy will detach without setting console socket")
    if not proc.terminal and console_socket is not None:
        raise ExecError("--console-socket is set but process.terminal is false")

    own_console = None
    if proc.terminal and console_socket is None:
        import socket

        own_console, console_socket = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    console_sock = None
    if isinstance(console_socket, str):
        from .linux.console import connect

        console_sock = connect(console_socket)
    elif console_socket is not None:
        console_sock = console_socket

    seccomp = (state.config.get("linux") or {}).get("seccomp")
    seccomp_filter = None
    if seccomp:
        from .linux import seccomp_cache

        seccomp_filter = seccomp_cache.prepare(state.root, seccomp)  # built once per profile
    parent_ch, child_ch = Channel.pair()
    ctx = ExecContext(
        process=proc,
        joins=namespaces_to_join(state.config, state.pid),
        cgroup=RecordedCgroup(state.data.get("cgroup")),  # not the managers: see joining.py
        channel=child_ch,
        seccomp=seccomp,
        seccomp_filter=seccomp_filter,
        console_fd=console_sock.fileno() if console_sock else None,
        preserve_fds=preserve_fds,
    )
    was_subreaper = syscalls.get_child_subreaper()
    if not detach:
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)  # the exec'd process is reparented to us when stage 1 exits
    try:
        stage1_pid, born_in_v2 = fork_in_cgroup(ctx.cgroup)
        if stage1_pid == 0:
            parent_ch.close()
            exec_stage1(ctx, born_in_v2)
            posix._exit(1)
        child_ch.close()
        if console_sock is not None:
            console_sock.close()
        pid = _converse(parent_ch, stage1_pid, state, seccomp)
        if pid_file:
            write_pid_file(pid_file, pid)
        if detach:
            return 0
        master = None
        if own_console is not None:
            from .linux.console import receive_master

            master = receive_master(own_console)
        from .foreground import wait_pid

        return wait_pid(pid, master)
    finally:
        parent_ch.close()
        if own_console is not None:
            own_console.close()
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, int(was_subreaper))


def _converse(ch: Channel, stage1_pid: int, state, seccomp: dict | None) -> int:
    pid = 0
    try:
        while True:
            msg, fds = ch.recv()
            if msg is None:
                raise ExecError("the exec'd process exited during set-up")
            if msg["type"] == "error":
                raise ChildError(msg["msg"])
            if msg["type"] == "pid":
                pid = msg["pid"]
                posix.waitpid(stage1_pid, 0)
                stage1_pid = 0
                ch.send({"type": "go"})
            elif msg["type"] == "ready":
                if fds:
                    from .linux import seccomp as seccomp_mod

                    try:
                        seccomp_mod.send_to_listener(seccomp.get("listenerPath"), fds[0], state.hook_state("running"), seccomp.get("listenerMetadata", ""), pid=pid)
                    finally:
                        posix.close(fds[0])
                return pid
    except ChildError as e:
        _kill(pid, stage1_pid)
        raise ExecError(f"unable to start container process: {e}") from None
    except BaseException:
        _kill(pid, stage1_pid)
        raise


def _kill(pid: int, stage1_pid: int) -> None:
    from _signal import SIGKILL

    for p in (pid, stage1_pid):
        if p:
            try:
                posix.kill(p, SIGKILL)
            except ProcessLookupError:
                pass
    if stage1_pid:
        try:
            posix.waitpid(stage1_pid, 0)
        except ChildProcessError:
            pass


# --- the child side ---------------------------------------------------------------------
class ExecContext:
    """What the two stages of exec need; handed over by fork."""

    def __init__(
        self, *, process, joins: list, cgroup, channel: Channel, seccomp: dict | None = None, seccomp_filter=None,
        console_fd: int | None = None, preserve_fds: int = 0,
    ):
        self.process = process  # ocipy.spec.Process
        self.joins = joins  # [(type, /proc/<pid>/ns/<name>)] in namespaces.JOIN_ORDER
        self.cgroup = cgroup  # a RecordedCgroup (or a manager): v2_dir() and enter()
        self.channel = channel
        self.seccomp = seccomp
        self.seccomp_filter = seccomp_filter  # prepared in the parent: libseccomp is unreachable after setns(mnt)
        self.console_fd = console_fd
        self.preserve_fds = preserve_fds


def exec_stage1(ctx: ExecContext, born_in_v2: bool = False) -> None:
    """Join the container's cgroup and namespaces (pid last, by forking), report the new pid."""
    try:
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0, what="clear dumpable")
        ctx.cgroup.enter(skip_v2=born_in_v2)
        for ns_type, path in ctx.joins:
            namespaces.join(ns_type, path)
            if ns_type == "user":
                become_root_in_userns()
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0, what="clear dumpable")
        pid = posix.fork()
        if pid == 0:
            exec_stage2(ctx)
        ctx.channel.send({"type": "pid", "pid": pid})
    except BaseException as e:  # noqa: BLE001
        fail_channel(ctx.channel, e)
    posix._exit(0)


def exec_stage2(ctx: ExecContext) -> None:
    """In the container's namespaces: a session and terminal of its own, then launch.py's steps."""
    try:
        ctx.channel.expect("go")
        proc = ctx.process
        posix.setsid()
        if proc.terminal:
            master, slave = console.open_pty("/dev/pts/ptmx")
            if proc.console_size:
                console.set_size(master, proc.console_size.height, proc.console_size.width)
            console.send_master(ctx.console_fd, master)
            posix.close(master)
            console.make_controlling_tty(slave)
        if ctx.console_fd is not None:
            posix.close(ctx.console_fd)
        launch = prepare_process(proc, ctx.seccomp, ctx.seccomp_filter, keep_fds=3 + ctx.preserve_fds, also_keep=(ctx.channel.fileno(),))
        ctx.channel.send({"type": "ready"}, [launch.notify_fd] if launch.notify_fd is not None else [])
        ctx.channel.close()
        execute(launch)
    except BaseException as e:  # noqa: BLE001
        fail_channel(ctx.channel, e)
    posix._exit(1)

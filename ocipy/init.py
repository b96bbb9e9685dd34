"""The child side of `create`: from fork to the container's execve.

Two forked processes, no re-exec of the interpreter:

stage 1  joins the cgroup (born in its v2 directory where it can be: see
         fork_in_cgroup) and the namespaces given by path, creates the new ones
         (the user namespace first, so it owns the rest; the parent writes its
         id maps), then forks stage 2 into the new pid and time namespaces,
         reports stage 2's host pid, and exits.
stage 2  is the container's pid 1: mounts, pivots, sets identity, limits,
         capabilities and seccomp, tells the parent it is ready, then blocks on
         exec.fifo until `start` opens it, runs startContainer hooks and execs
         the user's process. Without startContainer hooks, the blocking and the
         last steps are done by the waiter of linux/trampoline.py, which stage 2
         execs once it is ready: a created container holds a few KiB.

A child never returns into the caller's code: every path ends in os._exit or execve,
and an error is reported to the parent over the channel before exiting.
"""

from __future__ import annotations

import os

from .errors import HookError, SetupError
from .linux import capabilities, console, namespaces, network, process, rootfs, syscalls, trampoline
from .linux.capnames import CAPABILITIES
from .sync import Channel

# After pivot_root the host's files are out of reach: everything stage 2 runs must be
# imported (and libseccomp loaded) before it pivots. Hence the imports above, and the two
# that only some configs need (the hook runner, seccomp) done early in stage 2.


class InitContext:
    """What the two stages of create need; handed over by fork, never serialised."""

    def __init__(
        self, *, container_id: str, spec, bundle: str, rootfs: str, fifo_fd: int, channel: Channel, cgroup,
        ns_plan: namespaces.NamespacePlan, oci_version: str = "1.3.0", console_fd: int | None = None,
        preserve_fds: int = 0, no_pivot: bool = False, no_new_keyring: bool = False, annotations: dict | None = None,
    ):
        self.container_id = container_id
        self.spec = spec  # ocipy.spec.Spec
        self.bundle = bundle
        self.rootfs = rootfs
        self.fifo_fd = fifo_fd  # O_PATH handle on exec.fifo, opened by the parent
        self.channel = channel  # the child end
        self.cgroup = cgroup  # a cgroup manager
        self.ns_plan = ns_plan
        self.oci_version = oci_version
        self.console_fd = console_fd
        self.preserve_fds = preserve_fds
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.annotations = annotations or {}


def _hooks(spec, kind: str) -> list:
    return list(getattr(spec.hooks, kind, None) or []) if spec.hooks else []


def _hook_runner(spec):
    """hooks.run_hooks for a config with hooks (None without), imported while the host's
    files are still reachable: startContainer hooks run after pivot_root."""
    if not spec.hooks:
        return None
    from .hooks import run_hooks

    return run_hooks


def _load_filter(prepared) -> int | None:
    """Load a prepared seccomp filter; its module was imported where it was prepared."""
    from .linux.seccomp import load_prepared

    return load_prepared(prepared)


def _fail_channel(channel: Channel, exc: BaseException) -> None:
    """Report an error to the parent (or, once the channel is closed, to stderr) and exit."""
    msg = str(exc) or exc.__class__.__name__
    if os.environ.get("OCIPY_DEBUG_INIT"):
        try:
            import traceback  # a debugging aid; after pivot_root it may be out of reach
        except ImportError:
            pass
        else:
            msg += "\n" + traceback.format_exc()
    try:
        channel.send({"type": "error", "msg": msg, "hook": isinstance(exc, HookError)})
    except OSError:
        try:
            os.write(2, f"ocipy init: {msg}\n".encode())
        except OSError:
            pass
    os._exit(1)


# --- stage 1 -----------------------------------------------------------------------
def fork_in_cgroup(cgroup) -> tuple[int, bool]:
    """Fork stage 1 (of create or exec): (the pid as os.fork returns it, whether the child was
    born in the cgroup's v2 directory). A child born there is spared the cgroup.procs write,
    which can wait ~10 ms for the kernel's migration lock (syscalls.fork_into_cgroup); it
    passes the flag to cgroup.enter()."""
    directory = cgroup.v2_dir()
    if directory:
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise SetupError(f"cannot open cgroup {directory}: {os.strerror(e.errno)}") from None
        try:
            pid = syscalls.fork_into_cgroup(fd)
        except OSError as e:
            raise SetupError(f"cannot add process to cgroup {directory}: {os.strerror(e.errno)}") from None
        finally:
            os.close(fd)  # in both processes
        if pid is not None:
            return pid, True
    return os.fork(), False


def stage1(ctx: InitContext, born_in_v2: bool = False) -> None:
    try:
        # Non-dumpable before entering any container namespace: a process in the container
        # cannot ptrace us or open /proc/<pid>/exe of the host's interpreter. (The forked
        # child does it, so a library caller of Runtime.create keeps its own setting.)
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0, what="clear dumpable")
        plan = ctx.ns_plan
        ctx.cgroup.enter(born_in_v2=born_in_v2)
        for ns_type, path in plan.join:
            namespaces.join(ns_type, path)
            if ns_type == "user":
                _become_root_in_userns()
        if plan.new_user:
            syscalls.unshare(syscalls.CLONE_NEWUSER)
            ctx.channel.send({"type": "idmap", "pid": os.getpid()})
            ctx.channel.expect("idmap-done")
            _become_root_in_userns()
        if plan.unshare_flags:
            syscalls.unshare(plan.unshare_flags)
        if plan.is_new("time") and ctx.spec.linux.time_offsets:
            namespaces.write_time_offsets(ctx.spec.linux.time_offsets)
        # A credential change (becoming root in a user namespace) resets dumpable: set it again
        # before pid 1 exists.
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0, what="clear dumpable")
        pid = os.fork()
        if pid == 0:
            stage2(ctx)
        ctx.channel.send({"type": "pid", "pid": pid})
    except BaseException as e:  # noqa: BLE001 - a child must report everything
        _fail_channel(ctx.channel, e)
    os._exit(0)


# --- stage 2: the container's pid 1 --------------------------------------------------
def stage2(ctx: InitContext) -> None:
    try:
        _setup_and_exec(ctx)
    except BaseException as e:  # noqa: BLE001
        _fail_channel(ctx.channel, e)
    os._exit(1)


def _notify_seccomp(seccomp: dict | None) -> bool:
    if not seccomp:
        return False
    if seccomp.get("defaultAction") == "SCMP_ACT_NOTIFY":
        return True
    return any(s.get("action") == "SCMP_ACT_NOTIFY" for s in seccomp.get("syscalls") or [])


def _setup_and_exec(ctx: InitContext) -> None:
    spec, linux, proc = ctx.spec, ctx.spec.linux, ctx.spec.process
    plan = ctx.ns_plan
    ch = ctx.channel
    run_hooks = _hook_runner(spec)
    ch.expect("go")

    os.setsid()
    if plan.is_new("network"):
        network.loopback_up()
    if not ctx.no_new_keyring:
        syscalls.join_session_keyring(f"_ses.{ctx.container_id}")
    # The parent's O_PATH handle on the fifo is reopened for writing once set-up is done:
    # after pivot_root (or as a mapped root) the state directory is not reachable by name.
    fifo_fd = ctx.fifo_fd

    in_userns = plan.new_user or any(t == "user" for t, _ in plan.join)
    rootfs.prepare(
        spec,
        ctx.rootfs,
        in_userns=in_userns,
        new_netns=plan.is_new("network"),
        new_cgroupns=plan.is_new("cgroup"),
        cgroup_paths=getattr(ctx.cgroup, "paths", None) or None,
        mount_label=linux.mount_label if linux else None,
        bundle=ctx.bundle,
    )
    slave = None
    if proc.terminal:
        master, slave = console.open_pty(os.path.join(ctx.rootfs, "dev/pts/ptmx"))
        rootfs.bind_console(ctx.rootfs, slave)
        if proc.console_size:
            console.set_size(master, proc.console_size.height, proc.console_size.width)
        console.send_master(ctx.console_fd, master)
        os.close(master)
    if ctx.console_fd is not None:
        os.close(ctx.console_fd)

    # prestart and createRuntime hooks run in the runtime's namespaces (the parent);
    # createContainer hooks here, in the container's namespaces, before pivot_root.
    ch.send({"type": "hooks"})
    ch.expect("hooks-done")
    for host_name, dev in (linux.net_devices or {}).items():  # moved in by the parent just now
        network.link_up(dev.get("name") or host_name)
    # runtime.md: hooks in the container namespace get the pid as the container sees it.
    state = {"ociVersion": ctx.oci_version, "id": ctx.container_id, "status": "creating", "pid": os.getpid(), "bundle": ctx.bundle}
    if ctx.annotations:
        state["annotations"] = ctx.annotations
    if run_hooks:
        run_hooks(_hooks(spec, "create_container"), state, kind="createContainer", cwd=ctx.bundle)

    seccomp = linux.seccomp if linux else None
    seccomp_filter = None
    if seccomp:
        from .linux import seccomp as seccomp_mod  # only a config with a profile loads libseccomp

        seccomp_filter = seccomp_mod.prepare(seccomp)

    rootfs.pivot(ctx.rootfs, no_pivot=ctx.no_pivot)
    if spec.hostname is not None and plan.is_new("uts"):
        syscalls.sethostname(spec.hostname)
    if spec.domainname is not None and plan.is_new("uts"):
        syscalls.setdomainname(spec.domainname)
    for key, value in (linux.sysctl if linux else {}).items():
        _write_sysctl(key, value)
    rootfs.finish(spec)
    if linux and linux.personality:
        syscalls.personality(_PERSONALITY[linux.personality.domain])
    if linux:
        process.set_memory_policy(linux.memory_policy)
    if slave is not None:
        console.make_controlling_tty(slave)

    # Without startContainer hooks to run, the wait for `start` is left to a tiny static
    # program (linux/trampoline.py): a created container then holds a few KiB, not a copy
    # of this interpreter.
    start_hooks = _hooks(spec, "start_container")
    launch = prepare_process(proc, seccomp, seccomp_filter, keep_fds=3 + ctx.preserve_fds, also_keep=(fifo_fd, ch.fileno()),
                             wait_on_fifo=None if start_hooks else fifo_fd)
    notify_fd = launch.notify_fd
    ch.send({"type": "ready"}, [notify_fd] if notify_fd is not None else [])
    if notify_fd is not None:
        os.close(notify_fd)
    ch.close()
    if launch.waiter_fd is not None:
        os.set_inheritable(fifo_fd, True)  # the waiter opens it, then closes it before the user's execve
        execute(launch)

    # Block until `start` opens the fifo for reading, run the startContainer hooks while
    # `start` waits, then tell it "0" (going on to execve) or "1<why>" (stopping here).
    fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.close(fifo_fd)
    start_state = {"ociVersion": ctx.oci_version, "id": ctx.container_id, "status": "created", "pid": os.getpid(), "bundle": ctx.bundle}
    if ctx.annotations:
        start_state["annotations"] = ctx.annotations
    try:
        if start_hooks:  # without them, the waiter only declined (see trampoline.open_waiter)
            run_hooks(start_hooks, start_state, kind="startContainer")
    except Exception as e:  # noqa: BLE001 - reported to `start` through the fifo
        os.write(fd, b"1" + str(e).encode()[:3000])
        os._exit(1)
    os.write(fd, b"0")
    os.close(fd)
    execute(launch)


class Launch:
    """What is left to do between the end of set-up and the user's process."""

    def __init__(self, executable: str, args: list, env: dict, seccomp_filter, notify_fd: int | None,
                 trampoline_fd: int | None, waiter_fd: int | None = None):
        self.executable = executable
        self.args = args
        self.env = env
        self.seccomp_filter = seccomp_filter  # a prepared filter still to load right before execve, or None
        self.notify_fd = notify_fd
        self.trampoline_fd = trampoline_fd  # see linux/trampoline.py: why the last exec is not direct
        # The waiter (linux/trampoline.py) instead: it waits for `start`, loads seccomp_filter, execs.
        self.waiter_fd = waiter_fd


def prepare_process(proc, seccomp: dict | None, seccomp_filter, *, keep_fds: int, also_keep: tuple = (),
                    wait_on_fifo: int | None = None) -> Launch:
    """Everything from rlimits to the moment before execve, shared by init and exec.

    Order matters: rlimits and oom score while still root; a filter without
    no_new_privs loads while we still hold CAP_SYS_ADMIN; the user switch keeps the
    permitted capabilities, then the five sets are set exactly; the executable is
    looked up as the container user, in the container's root, with its PATH.
    With `wait_on_fifo` (exec.fifo's fd), the launch goes through the waiter, which
    waits for `start` before it loads a filter left for the last moment and execs.
    """
    # Both memfds are made before a seccomp filter could forbid memfd_create.
    trampoline_fd = waiter_fd = None
    if wait_on_fifo is not None:
        last_filter = seccomp_filter if proc.no_new_privileges and not _notify_seccomp(seccomp) else None
        waiter_fd = trampoline.open_waiter(wait_on_fifo, (last_filter.program, last_filter.flags) if last_filter else None)
    if waiter_fd is None:
        trampoline_fd = trampoline.open_trampoline()
    process.set_rlimits(proc.rlimits)
    process.set_oom_score_adj(proc.oom_score_adj)
    process.set_scheduler(proc.scheduler)
    process.set_io_priority(proc.io_priority)
    try:
        os.chdir(proc.cwd)  # as root first; checked again as the container user below (as runc)
    except OSError:
        pass
    notify_fd = None
    if seccomp_filter and not proc.no_new_privileges:
        notify_fd = _load_filter(seccomp_filter)
        seccomp_filter = None
    _apply_user_and_capabilities(proc, setgroups_allowed=_setgroups_allowed())
    if proc.no_new_privileges:
        syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1, what="set no_new_privs")
    process.change_dir(proc.cwd)
    env = process.env_with_home(proc.env, proc.user.uid)
    executable = process.find_executable(proc.args[0], env)
    if seccomp_filter and _notify_seccomp(seccomp):
        # The notify fd must reach the listener through the parent, which waits for "ready".
        notify_fd = _load_filter(seccomp_filter)
        seccomp_filter = None
    process.reset_signals()
    process.close_stray_fds(keep_fds, also_keep=also_keep)
    os.umask(proc.user.umask if proc.user.umask is not None else 0o022)
    env_map = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return Launch(executable, list(proc.args), env_map, seccomp_filter, notify_fd, trampoline_fd, waiter_fd)


def execute(launch: Launch) -> None:
    """Load a filter that waited for the last moment, and become the user's process: through the
    sealed trampoline, so that no path the container controls can lead back to the host's
    interpreter (it execs `executable` with `args`). Or become the waiter, which does both
    once `start` has opened exec.fifo."""
    if launch.waiter_fd is not None:
        try:
            os.execve(launch.waiter_fd, [launch.executable, *launch.args], launch.env)
        except OSError as e:
            os.write(2, f"exec: cannot wait for start: {os.strerror(e.errno).lower()}\n".encode())
            os._exit(1)
    if launch.seccomp_filter:
        _load_filter(launch.seccomp_filter)
    try:
        if launch.trampoline_fd is not None:
            os.execve(launch.trampoline_fd, [launch.executable, *launch.args], launch.env)
        os.execve(launch.executable, launch.args, launch.env)
    except OSError as e:
        os.write(2, f'exec: "{launch.args[0]}": {os.strerror(e.errno).lower()}\n'.encode())
        os._exit(127 if e.errno == 2 else 126)


def _become_root_in_userns() -> None:
    """Take the namespace's root ids: our host ids may be unmapped there (the overflow id),
    which makes mounts such as devpts with gid= fail."""
    if _setgroups_allowed():
        try:
            os.setgroups([])
        except PermissionError:
            pass
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def _write_sysctl(key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as e:
        raise OSError(e.errno, f"linux.sysctl {key}={value}: write {path}: {e.strerror}") from None


def _setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() != "deny"
    except OSError:
        return True


def _apply_user_and_capabilities(proc, *, setgroups_allowed: bool) -> None:
    caps = proc.capabilities
    if caps is not None:
        capabilities.drop_bounding(capabilities.mask(caps.bounding, CAPABILITIES))
    process.switch_user(proc.user, setgroups_allowed=setgroups_allowed)
    if caps is not None:
        capabilities.apply_sets(
            capabilities.mask(caps.effective, CAPABILITIES),
            capabilities.mask(caps.permitted, CAPABILITIES),
            capabilities.mask(caps.inheritable, CAPABILITIES),
            capabilities.mask(caps.ambient, CAPABILITIES),
        )


_PERSONALITY = {"LINUX": 0x0000, "LINUX32": 0x0008}



# --- exec: a new process in a running container ------------------------------------------
class ExecContext:
    """What the two stages of exec need; handed over by fork."""

    def __init__(
        self, *, process, joins: list, cgroup, channel: Channel, seccomp: dict | None = None, seccomp_filter=None,
        console_fd: int | None = None, preserve_fds: int = 0,
    ):
        self.process = process  # ocipy.spec.Process
        self.joins = joins  # [(type, /proc/<pid>/ns/<name>)] in namespaces.JOIN_ORDER
        self.cgroup = cgroup
        self.channel = channel
        self.seccomp = seccomp
        self.seccomp_filter = seccomp_filter  # prepared in the parent: libseccomp is unreachable after setns(mnt)
        self.console_fd = console_fd
        self.preserve_fds = preserve_fds


def exec_stage1(ctx: ExecContext, born_in_v2: bool = False) -> None:
    """Join the container's cgroup and namespaces (pid last, by forking), report the new pid."""
    try:
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0, what="clear dumpable")
        ctx.cgroup.enter(born_in_v2=born_in_v2)
        for ns_type, path in ctx.joins:
            namespaces.join(ns_type, path)
            if ns_type == "user":
                _become_root_in_userns()
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0, what="clear dumpable")
        pid = os.fork()
        if pid == 0:
            exec_stage2(ctx)
        ctx.channel.send({"type": "pid", "pid": pid})
    except BaseException as e:  # noqa: BLE001
        _fail_channel(ctx.channel, e)
    os._exit(0)


def exec_stage2(ctx: ExecContext) -> None:
    try:
        ctx.channel.expect("go")
        proc = ctx.process
        os.setsid()
        if proc.terminal:
            master, slave = console.open_pty("/dev/pts/ptmx")
            if proc.console_size:
                console.set_size(master, proc.console_size.height, proc.console_size.width)
            console.send_master(ctx.console_fd, master)
            os.close(master)
            console.make_controlling_tty(slave)
        if ctx.console_fd is not None:
            os.close(ctx.console_fd)
        launch = prepare_process(proc, ctx.seccomp, ctx.seccomp_filter, keep_fds=3 + ctx.preserve_fds, also_keep=(ctx.channel.fileno(),))
        ctx.channel.send({"type": "ready"}, [launch.notify_fd] if launch.notify_fd is not None else [])
        ctx.channel.close()
        execute(launch)
    except BaseException as e:  # noqa: BLE001
        _fail_channel(ctx.channel, e)
    os._exit(1)

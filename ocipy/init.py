"""The child side of `create`: from fork to the container's execve.

Two forked processes, no re-exec of the interpreter:

stage 1  is forked first thing in create (prefork.py), before the config is validated,
         even before the CLI imports the rest of ocipy: it imports
         this side's modules (the kernel calls, the mount and device code: about half of
         create's imports) while the parent validates the config and makes the
         cgroup, then waits for the parent's "setup" message (the validated config,
         the cgroup's directories, exec.fifo and the console socket). It joins the
         cgroup's v1 hierarchies and the namespaces given by path, creates the new
         ones (the user namespace first, so it owns the rest; the parent writes its
         id maps), then forks stage 2 into the new pid and time namespaces and
         straight into the cgroup2 directory if there is one, reports stage 2's host
         pid, and exits. With a user namespace (see prefork.forks_into_cgroup)
         stage 1 is forked later instead, into the cgroup the parent made for it.
stage 2  is the container's pid 1: creates the cgroup namespace, mounts, pivots, sets
         identity, limits, capabilities and seccomp, tells the parent it is ready, then blocks on
         exec.fifo until `start` opens it, runs startContainer hooks and execs
         the user's process. Without startContainer hooks, the blocking and the
         last steps are done by the waiter of linux/trampoline.py, which stage 2
         execs once it is ready: a created container holds a few KiB.

A child never returns into the caller's code: every path ends in posix._exit or execve,
and an error is reported to the parent over the channel before exiting. The steps
from identity to execve are shared with exec, in launch.py.
"""

from __future__ import annotations

import posix

from . import fspath
from .errors import SetupError
from .launch import become_root_in_userns, execute, fail_channel, prepare_process
from .linux import console, namespaces, network, process, rootfs, syscalls
from .linux.cgroups.joining import RecordedCgroup
from .spec import Spec
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
        cgroup_join: str = "join", hold_fd: int | None = None, pid1_sibling: bool = False,
        seccomp_built: dict | None = None,
    ):
        self.container_id = container_id
        self.spec = spec  # ocipy.spec.Spec
        self.bundle = bundle
        self.rootfs = rootfs
        self.fifo_fd = fifo_fd  # O_PATH handle on exec.fifo, opened by the parent
        self.channel = channel  # the child end
        self.cgroup = cgroup  # joining.RecordedCgroup: the directories the parent made
        self.cgroup_join = cgroup_join  # how to enter its cgroup2 directory: see create.setup_message
        self.hold_fd = hold_fd  # stage 1 reads it to its end before exiting (create's before_orphaning)
        self.pid1_sibling = pid1_sibling  # fork pid 1 as a child of create's caller (create's pid1_child)
        self.ns_plan = ns_plan
        self.oci_version = oci_version
        self.console_fd = console_fd
        self.preserve_fds = preserve_fds
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.annotations = annotations or {}
        self.seccomp_built = seccomp_built  # the profile's program, built by an earlier create (seccomp_cache.Built)


def context_from_setup(msg: dict, fds: list, channel: Channel) -> InitContext:
    """The InitContext of a "setup" message (create.setup_message) and the fds that came with it."""
    if msg.get("type") != "setup" or len(fds) != 1 + bool(msg["console"]) + bool(msg["hold"]):
        raise SetupError(f"unexpected message from ocipy create: {msg.get('type')!r} with {len(fds)} fds")
    for fd in fds:
        posix.set_inheritable(fd, False)  # as the parent holds them: only the last steps pass them on
    spec = Spec.from_dict(msg["config"])
    return InitContext(
        container_id=msg["id"],
        spec=spec,
        bundle=msg["bundle"],
        rootfs=msg["rootfs"],
        fifo_fd=fds[0],
        channel=channel,
        cgroup=RecordedCgroup({"paths": msg["cgroup"]}),
        ns_plan=namespaces.plan(spec.linux.namespaces),
        oci_version=spec.oci_version,
        console_fd=fds[1] if msg["console"] else None,
        hold_fd=fds[-1] if msg["hold"] else None,
        preserve_fds=msg["preserve_fds"],
        no_pivot=msg["no_pivot"],
        no_new_keyring=msg["no_new_keyring"],
        annotations=spec.annotations,
        cgroup_join=msg["cgroup_join"],
        pid1_sibling=msg.get("pid1_sibling", False),
        seccomp_built=msg.get("seccomp_built"),
    )


def _hooks(spec, kind: str) -> list:
    return list(getattr(spec.hooks, kind, None) or []) if spec.hooks else []


def _hook_runner(spec):
    """hooks.run_hooks for a config with hooks (None without), imported while the host's
    files are still reachable: startContainer hooks run after pivot_root."""
    if not spec.hooks:
        return None
    from .hooks import run_hooks

    return run_hooks


# --- stage 1 -----------------------------------------------------------------------
def stage1_awaiting_setup(channel: Channel, rejoin=None) -> None:
    """Stage 1 from its fork at the start of create (this module's imports are done by
    then): wait for the parent's "setup", or exit quietly if the parent gives up first
    (an invalid config, an id in use), then go on as stage 1. `rejoin`: what to call
    before the wait and after it (prefork.cpu_rejoin). Never returns."""
    try:
        if rejoin is not None:
            rejoin()  # the work that kept us apart is done; the parent has moved us by now
        msg, fds = channel.recv()
        if msg is None:
            posix._exit(0)
        if rejoin is not None:
            rejoin()  # in case it had not: the parent's move comes before its "setup"
        ctx = context_from_setup(msg, fds, channel)
    except BaseException as e:  # noqa: BLE001 - a child must report everything
        fail_channel(channel, e)
    stage1(ctx)


def stage1(ctx: InitContext) -> None:
    try:
        # Non-dumpable before entering any container namespace: a process in the container
        # cannot ptrace us or open /proc/<pid>/exe of the host's interpreter. (The forked
        # child does it, so a library caller of Runtime.create keeps its own setting.)
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0, what="clear dumpable")
        plan = ctx.ns_plan
        v2_fd = _open_v2_dir(ctx.cgroup.v2_dir()) if ctx.cgroup_join == "fork" else None
        ctx.cgroup.enter(skip_v2=ctx.cgroup_join == "born" or v2_fd is not None)
        for ns_type, path in plan.join:
            namespaces.join(ns_type, path)
            if ns_type == "user":
                become_root_in_userns()
        if plan.new_user:
            syscalls.unshare(syscalls.CLONE_NEWUSER)
            ctx.channel.send({"type": "idmap", "pid": posix.getpid()})
            ctx.channel.expect("idmap-done")
            become_root_in_userns()
        if plan.unshare_flags:
            syscalls.unshare(plan.unshare_flags)
        if plan.is_new("time") and ctx.spec.linux.time_offsets:
            namespaces.write_time_offsets(ctx.spec.linux.time_offsets)
        # A credential change (becoming root in a user namespace) resets dumpable: set it again
        # before pid 1 exists.
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0, what="clear dumpable")
        pid, sibling = _fork_pid1(v2_fd, ctx.cgroup, ctx.pid1_sibling)
        if pid == 0:
            stage2(ctx)
        ctx.channel.send({"type": "pid", "pid": pid, "sibling": sibling})
        if ctx.hold_fd is not None:
            posix.read(ctx.hold_fd, 1)  # until the parent closes its end
    except BaseException as e:  # noqa: BLE001 - a child must report everything
        fail_channel(ctx.channel, e)
    posix._exit(0)


def _open_v2_dir(directory: str | None) -> int | None:
    """An fd on the cgroup2 directory (None without one) that pid 1 is to be born in, while
    stage 1 stays out: stage 1 was forked before the cgroup existed, and moving a process
    by cgroup.procs can wait ~10 ms for the kernel's migration lock (syscalls.fork_into_cgroup).
    The parent asks for this only while stage 1 keeps the host's credentials
    (prefork.forks_into_cgroup)."""
    if directory is None:
        return None
    try:
        return posix.open(directory, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
    except OSError as e:
        raise SetupError(f"cannot open cgroup {directory}: {posix.strerror(e.errno)}") from None


def _fork_pid1(v2_fd: int | None, cgroup: RecordedCgroup, sibling: bool) -> tuple[int, bool]:
    """(the pid as posix.fork() returns it, whether pid 1 is a sibling of ours): pid 1 is born
    in the cgroup2 directory `v2_fd` if given, and with `sibling` as a child of create's caller
    (syscalls.clone_fork). A kernel without clone3's CLONE_INTO_CGROUP (before 5.7) gets a
    plain fork of our child, and the cgroup.procs write, which stage 1 may still do: `v2_fd`
    is only given while it keeps the host's credentials."""
    if v2_fd is None and not sibling:
        return posix.fork(), False
    try:
        pid = syscalls.clone_fork(v2_fd, sibling=sibling)
        if pid is not None:
            return pid, sibling
        if v2_fd is not None:
            cgroup.enter()  # its v1 hierarchies again (a no-op), and cgroup.procs
        return posix.fork(), False
    except OSError as e:
        where = f"add process to cgroup {cgroup.v2_dir()}" if v2_fd is not None else "fork the container's process"
        raise SetupError(f"cannot {where}: {posix.strerror(e.errno)}") from None
    finally:
        if v2_fd is not None:
            posix.close(v2_fd)  # in both processes


# --- stage 2: the container's pid 1 --------------------------------------------------
def stage2(ctx: InitContext) -> None:
    try:
        _setup_and_exec(ctx)
    except BaseException as e:  # noqa: BLE001
        fail_channel(ctx.channel, e)
    posix._exit(1)


def _setup_and_exec(ctx: InitContext) -> None:
    spec, linux, proc = ctx.spec, ctx.spec.linux, ctx.spec.process
    plan = ctx.ns_plan
    ch = ctx.channel
    run_hooks = _hook_runner(spec)
    if ctx.hold_fd is not None:
        posix.close(ctx.hold_fd)  # stage 1's
    if plan.new_cgroup:  # rooted at the cgroup we were born in (see NamespacePlan)
        syscalls.unshare(syscalls.CLONE_NEWCGROUP)
    ch.expect("go")

    posix.setsid()
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
        master, slave = console.open_pty(fspath.join(ctx.rootfs, "dev/pts/ptmx"))
        rootfs.bind_console(ctx.rootfs, slave)
        if proc.console_size:
            console.set_size(master, proc.console_size.height, proc.console_size.width)
        console.send_master(ctx.console_fd, master)
        posix.close(master)
    if ctx.console_fd is not None:
        posix.close(ctx.console_fd)

    # prestart and createRuntime hooks run in the runtime's namespaces (the parent);
    # createContainer hooks here, in the container's namespaces, before pivot_root.
    if spec.runtime_steps_before_pivot():
        ch.send({"type": "hooks"})
        ch.expect("hooks-done")
    for host_name, dev in (linux.net_devices or {}).items():  # moved in by the parent just now
        network.link_up(dev.get("name") or host_name)
    # runtime.md: hooks in the container namespace get the pid as the container sees it.
    state = {"ociVersion": ctx.oci_version, "id": ctx.container_id, "status": "creating", "pid": posix.getpid(), "bundle": ctx.bundle}
    if ctx.annotations:
        state["annotations"] = ctx.annotations
    if run_hooks:
        run_hooks(_hooks(spec, "create_container"), state, kind="createContainer", cwd=ctx.bundle)

    seccomp = linux.seccomp if linux else None
    seccomp_filter = None
    built_here = None  # a program built here, for the parent to keep (linux/seccomp_cache.py)
    if seccomp:
        from .linux.seccomp_cache import Built

        if ctx.seccomp_built is not None:  # no libseccomp (nor ctypes, nor seccomp.py) to load
            from .linux.seccomp_load import prepared

            cached = Built.from_message(ctx.seccomp_built)
            seccomp_filter = prepared(seccomp, cached.program, cached.notify_used)
        else:
            from .linux import seccomp as seccomp_mod

            seccomp_filter = seccomp_mod.prepare(seccomp)
            built_here = Built(seccomp_filter.program, seccomp_filter.notify, seccomp_mod.library_path())

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
    ready = {"type": "ready"}
    if built_here is not None:
        ready["seccomp_built"] = built_here.to_message()
    ch.send(ready, [notify_fd] if notify_fd is not None else [])
    if notify_fd is not None:
        posix.close(notify_fd)
    ch.close()
    if launch.waiter_fd is not None:
        posix.set_inheritable(fifo_fd, True)  # the waiter opens it, then closes it before the user's execve
        execute(launch)

    # Block until `start` opens the fifo for reading, run the startContainer hooks while
    # `start` waits, then tell it "0" (going on to execve) or "1<why>" (stopping here).
    fd = posix.open(f"/proc/self/fd/{fifo_fd}", posix.O_WRONLY | posix.O_CLOEXEC)
    posix.close(fifo_fd)
    start_state = {"ociVersion": ctx.oci_version, "id": ctx.container_id, "status": "created", "pid": posix.getpid(), "bundle": ctx.bundle}
    if ctx.annotations:
        start_state["annotations"] = ctx.annotations
    try:
        if start_hooks:  # without them, the waiter only declined (see trampoline.open_waiter)
            run_hooks(start_hooks, start_state, kind="startContainer")
    except Exception as e:  # noqa: BLE001 - reported to `start` through the fifo
        posix.write(fd, b"1" + str(e).encode()[:3000])
        posix._exit(1)
    posix.write(fd, b"0")
    posix.close(fd)
    execute(launch)


def _write_sysctl(key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as e:
        raise OSError(e.errno, f"linux.sysctl {key}={value}: write {path}: {e.strerror}") from None


_PERSONALITY = {"LINUX": 0x0000, "LINUX32": 0x0008}

"""The parent side of `create`: fork stage 1, validate, reserve the id, make the cgroup, answer the children.

Conversation with the children over one channel (see init.py):
  (parent)                 forks stage 1 first: it imports the container side while we validate
  parent  -> "setup"       the validated config, the cgroup's directories, exec.fifo (and console) fds
  (parent)                 writes the cgroup limits while stage 1 works (a pids.limit below 2 waits)
  stage 1 -> "idmap"       parent writes uid_map/gid_map of stage 1  -> "idmap-done"
  stage 1 -> "pid"         stage 2's host pid (our child with pid1_child); stage 1 exits; (parent writes
                           that pids.limit) -> stage 2 "go"
  stage 2 -> "hooks"       parent moves netDevices, runs prestart and createRuntime hooks -> "hooks-done"
                           (only when there are some: Spec.runtime_steps_before_pivot)
  stage 2 -> "ready"       (+ seccomp notify fd) parent records the state and returns
  anyone  -> "error"       parent undoes everything and raises
A failed create leaves no state directory, cgroup, mount or process behind.

This module imports little at the top: what only the parent needs (validation, the
cgroup managers) is imported after the fork, so that stage 1 does not wait for it.
"""

from __future__ import annotations

import posix  # not os (~1 ms): see fspath.py
from _signal import SIGKILL  # the C module behind `signal`, whose enums cost 4 ms of imports

from . import fspath, prefork
from .errors import ConfigError, HookError, OcipyError, SetupError
from .state import ContainerState, StateStore, make_fifo, proc_start_time, rfc3339_now, wait_exit, write_pid_file
from .sync import Channel, ChildError


def create_container(
    store: StateStore,
    container_id: str,
    bundle: str,
    *,
    pid_file: str | None = None,
    console_socket=None,
    no_pivot: bool = False,
    no_new_keyring: bool = False,
    preserve_fds: int = 0,
    cgroup_driver: str = "cgroupfs",
    before_orphaning=None,
    pid1_child: bool = False,
    stage1: prefork.Stage1 | None = None,
    warn,
) -> ContainerState:
    """Create the container; its pid 1 waits for `start`. console_socket: a socket path or a
    connected socket object. before_orphaning: a function called while stage 1 works; stage 1
    does not exit, which hands pid 1 to the nearest subreaper, until it has returned (`run`
    becomes that subreaper there, importing what it takes while stage 1 works). pid1_child:
    fork pid 1 as the caller's own child where the kernel can (clone3's CLONE_PARENT, Linux
    5.3+), as runc does: the caller can then wait() for it without being a subreaper, and
    before_orphaning is called only when it could not be done. stage1:
    what prefork.start(bundle) returned, before the caller imported the rest of ocipy (as
    the CLI does); create owns it from here. Without it, create calls prefork.start itself.
    warn: called with each warning (a config field ocipy ignores, a failed poststop hook):
    Runtime.warn, which knows where they go.
    """
    # Forked first, stage 1 imports the container side while we validate; but if it will
    # not be able to fork pid 1 into the cgroup2 directory, it is forked into that directory
    # once it exists (see prefork.forks_into_cgroup). The config, read then, decides.
    parent_ch, stage1_pid, read = (stage1 or prefork.start(bundle)).take()
    early = parent_ch is not None
    bundle = fspath.abspath(bundle)
    spec = None
    reserved = False
    cgroup = None
    pid = 0
    console_sock = None
    fifo_fd = None
    hold_r = hold_w = None
    try:
        from .linux import cgroups

        config, rootfs = _load_and_check(bundle, read, console_socket, warn)
        profile = config["linux"].get("seccomp")
        seccomp_cached = None
        if profile:  # a program built by an earlier create spares pid 1 libseccomp (~15 ms)
            from .linux import seccomp_cache

            seccomp_cached = seccomp_cache.lookup(store.root, profile)
        state_dir = store.reserve(container_id)
        reserved = True
        cgroup = cgroups.new_manager(container_id, config["linux"].get("cgroupsPath"), driver=cgroup_driver)
        fifo = fspath.join(state_dir, "exec.fifo")
        make_fifo(fifo)
        fifo_fd = posix.open(fifo, posix.O_PATH | posix.O_CLOEXEC)
        if isinstance(console_socket, str):
            console_sock = _connect_console(console_socket)
        elif console_socket is not None:
            console_sock = console_socket
        cgroup.create()
        if early:  # "join" only for a config that prefork could not read and load_config could
            cgroup_join = "fork" if prefork.forks_into_cgroup(config) else "join"
        else:
            parent_ch, stage1_pid, born_in_v2 = _fork_stage1(cgroup)
            cgroup_join = "born" if born_in_v2 else "join"
        fds = [fifo_fd] + ([console_sock.fileno()] if console_sock is not None else [])
        if before_orphaning is not None:
            hold_r, hold_w = posix.pipe()  # stage 1 exits once hold_w is closed
            fds.append(hold_r)
        setup = setup_message(container_id=container_id, config=config, bundle=bundle, rootfs=rootfs,
                              cgroup_paths=dict(getattr(cgroup, "paths", None) or {}), cgroup_join=cgroup_join,
                              console=console_sock is not None, hold=hold_r is not None, preserve_fds=preserve_fds,
                              no_pivot=no_pivot, no_new_keyring=no_new_keyring, pid1_sibling=pid1_child,
                              seccomp_built=seccomp_cached.to_message() if seccomp_cached else None)
        _send_setup(parent_ch, setup, fds)
        # The config's views, for what is left: built once stage 1 has its setup, since that
        # way is create's longer half (paired: create -0.4 to -0.5 ms).
        from .spec import Spec

        spec = Spec.from_dict(config)
        if hold_r is not None:
            posix.close(hold_r)
            hold_r = None
        if console_sock is not None and isinstance(console_socket, str):
            console_sock.close()
            console_sock = None
        # The limits go in while stage 1 joins the cgroup and makes the namespaces (~2 ms that
        # the parent would otherwise sit out): no process in the cgroup has done anything yet,
        # and pid 1 does nothing before "go". A pids.limit below 2 waits for stage 1 to leave:
        # it would stop stage 1 forking pid 1.
        from .linux import device_rules  # as the limits' own imports (resources.py): once stage 1 has its setup

        limits_now, after_stage1 = split_pids_limit(device_rules.effective_resources(spec.linux.resources, spec.linux.devices))
        cgroup.apply(limits_now)

        def release_stage1(pid1_is_ours: bool) -> None:
            """Let stage 1 exit, which orphans pid 1 unless it is our child: then first
            before_orphaning (`run` becomes pid 1's subreaper)."""
            nonlocal hold_w
            if hold_w is not None:
                if not pid1_is_ours:
                    before_orphaning()
                posix.close(hold_w)
                hold_w = None

        if not pid1_child:
            release_stage1(False)  # while stage 1 works
        notify_fd, pid, pid_start, built = _converse(parent_ch, spec, container_id, bundle, cgroup, stage1_pid,
                                                     after_stage1, release_stage1)
        if after_stage1 is None:  # else _converse reaped it before writing that limit
            posix.waitpid(stage1_pid, 0)  # long gone: it exits right after reporting pid 1
        data = {
            "ociVersion": spec.oci_version,
            "id": container_id,
            "pid": pid,
            "pid_start": pid_start,
            "bundle": bundle,
            "rootfs": rootfs,
            "created": rfc3339_now(),
            "annotations": spec.annotations,
            "owner": "",
            "cgroup": cgroup.to_state(),
            "cgroup_driver": cgroup_driver,
            "config": config,
        }
        state = ContainerState(store.root, container_id, data)
        state.save()
        if built is not None:
            seccomp_cache.store(store.root, profile, seccomp_cache.Built.from_message(built))
        if notify_fd is not None:
            _send_seccomp_notify(spec, state, notify_fd)
        if pid_file:
            write_pid_file(pid_file, pid)
        return state
    except BaseException as e:
        _undo(pid, stage1_pid, cgroup)
        if reserved:
            store.release(container_id)
        if isinstance(e, HookError) or (isinstance(e, ChildError) and e.hook):
            # runtime.md: a failed prestart/createRuntime/createContainer hook stops the container
            # and the lifecycle goes on at step 12: destroyed above, then the poststop hooks.
            _run_poststop(spec, container_id, bundle, warn)
        if isinstance(e, ChildError):
            raise (HookError if e.hook else SetupError)(f"unable to start container process: {e}") from None
        if isinstance(e, EOFError):
            raise SetupError("unable to start container process: container init exited unexpectedly") from None
        if isinstance(e, OSError) and not isinstance(e, OcipyError):
            raise SetupError(f"unable to create container: {e.strerror if not e.filename else e}") from None
        raise
    finally:
        for fd in (fifo_fd, hold_r, hold_w):
            if fd is not None:
                posix.close(fd)
        if parent_ch is not None:
            parent_ch.close()
        if console_sock is not None and isinstance(console_socket, str):
            console_sock.close()


def _load_and_check(bundle: str, read, console_socket, warn) -> tuple:
    """(config, rootfs path) of a valid bundle that create can run; else ConfigError or
    SetupError. `read`: config.json as prefork read it, or None to read it here.

    Reads the few fields it checks from the validated dict: create builds the Spec views
    (ocipy.spec) once stage 1 has its setup."""
    from . import bundle as bundle_mod

    config = read if read is not None else bundle_mod.load_config(bundle)
    for warning in bundle_mod.validate_config(config, bundle):
        warn(warning)
    bundle_mod.require_process(config)
    linux = config.get("linux")
    if linux is None:
        raise ConfigError("config.json: /linux: is required on Linux")
    terminal = config["process"].get("terminal", False)
    if terminal and console_socket is None:
        raise ConfigError("cannot allocate tty if ocipy will detach without setting console socket")
    if not terminal and console_socket is not None:
        raise ConfigError("--console-socket is set but process.terminal is false")
    if linux.get("intelRdt"):
        # config-linux.md#intelrdt: without resctrl the runtime MUST generate an error; with it,
        # ocipy does not implement RDT yet, and says so rather than ignore the request.
        if not _resctrl_mounted():
            raise SetupError("linux.intelRdt: no resctrl filesystem is mounted (/sys/fs/resctrl)")
        raise SetupError("linux.intelRdt: Intel RDT is not supported by ocipy yet")
    root = (config.get("root") or {}).get("path")
    if not root:  # validation lets a config that is also for Windows leave it out
        raise ConfigError("config.json: /root: is required on Linux")
    rootfs = root if root.startswith("/") else fspath.join(bundle, root)
    return config, rootfs


def _fork_stage1(cgroup) -> tuple[Channel, int, bool]:
    """Fork stage 1 into `cgroup`, once that exists, for a config whose stage 1 cannot be
    forked first (see prefork.forks_into_cgroup): (our end of the channel, its pid, whether
    it was born in the cgroup2 directory, launch.fork_in_cgroup). The container side is
    imported here first, as a forked child would pay it after.
    """
    from . import init  # noqa: F401 - see above
    from .launch import fork_in_cgroup

    return prefork.fork(lambda: fork_in_cgroup(cgroup))


def setup_message(*, container_id: str, config: dict, bundle: str, rootfs: str, cgroup_paths: dict, cgroup_join: str,
                  console: bool, hold: bool, preserve_fds: int, no_pivot: bool, no_new_keyring: bool,
                  pid1_sibling: bool = False, seccomp_built: dict | None = None) -> dict:
    """Pure: what we tell stage 1 once the config is valid and the cgroup made. Sent with
    exec.fifo's fd, then the console socket's if `console`, then if `hold` the read end of a
    pipe: stage 1 reads it to its end before exiting. `cgroup_join`: how the cgroup2
    directory, if any, is entered: "born" (stage 1 was born in it), "fork" (stage 1 forks
    pid 1 into it) or "join" (stage 1 writes itself to its cgroup.procs). `pid1_sibling`: fork
    pid 1 as a child of create's caller rather than of stage 1 (create's pid1_child).
    `seccomp_built`: the profile's program as an earlier create built it (seccomp_cache.Built,
    as a message), or None for pid 1 to build it."""
    return {"type": "setup", "id": container_id, "config": config, "bundle": bundle, "rootfs": rootfs,
            "cgroup": cgroup_paths, "cgroup_join": cgroup_join, "console": console, "hold": hold,
            "preserve_fds": preserve_fds, "no_pivot": no_pivot, "no_new_keyring": no_new_keyring,
            "pid1_sibling": pid1_sibling, "seccomp_built": seccomp_built}


def _send_setup(ch: Channel, setup: dict, fds: list[int]) -> None:
    """Hand stage 1 its setup. If it died first (it reports why before exiting), the send
    fails: carry on to _converse, which reads that report."""
    try:
        ch.send(setup, fds)
    except (BrokenPipeError, ConnectionResetError):
        pass


def split_pids_limit(resources: dict | None) -> tuple[dict | None, dict | None]:
    """Pure: (what to apply while stage 1 works, what must wait until it has left or None).

    Until then the cgroup holds stage 1 and, once forked, pid 1: two tasks. A pids.limit of
    0 or 1 would stop that fork, so it waits; any other limit, and everything else, does not.
    """
    limit = ((resources or {}).get("pids") or {}).get("limit")
    if limit is None or limit < 0 or limit >= 2:
        return resources, None
    return {k: v for k, v in resources.items() if k != "pids"}, {"pids": resources["pids"]}


def _converse(ch: Channel, spec, container_id: str, bundle: str, cgroup, stage1_pid: int,
              after_stage1: dict | None, release_stage1) -> tuple[int | None, int, int | None, dict | None]:
    """Answer the children until stage 2 is ready; return (seccomp notify fd, container pid,
    its start time, the seccomp program stage 2 built: seccomp_cache.Built as a message, or
    None). `after_stage1`: the resources to apply once stage 1 is gone.
    `release_stage1(pid 1 is our child)` lets stage 1 exit, once pid 1 exists."""
    pid = 0
    pid_start = None
    while True:
        msg, fds = ch.recv()
        if msg is None:
            raise EOFError
        kind = msg.get("type")
        if kind == "error":
            raise ChildError(msg.get("msg"), hook=msg.get("hook", False))
        if kind == "idmap":
            from .linux import idmap

            try:
                idmap.write_maps(msg["pid"], spec.linux.uid_mappings, spec.linux.gid_mappings)
            except OSError as e:
                raise SetupError(f"write user namespace mappings: {e.strerror}") from None
            ch.send({"type": "idmap-done"})
        elif kind == "pid":
            pid = msg["pid"]
            # Read now: once "ready" comes pid 1 is in its execve, which /proc/<pid>/stat waits
            # for (~0.5 ms, the interpreter's memory being unmapped).
            pid_start = proc_start_time(pid)
            release_stage1(bool(msg.get("sibling")))
            if after_stage1 is not None:
                posix.waitpid(stage1_pid, 0)  # stage 1 has done its part
                # pid 1 is alone in the cgroup and waits for "go": a pids.limit of 0 or 1 is a
                # real limit, and holds from its first fork on.
                cgroup.apply(after_stage1)
            ch.send({"type": "go", "pid": pid})
        elif kind == "hooks":
            if spec.linux.net_devices:
                from .linux import network  # its pyroute2 only for a config that needs them

                network.move_devices(spec.linux.net_devices, f"/proc/{pid}/ns/net")
            state = {"ociVersion": spec.oci_version, "id": container_id, "status": "creating", "pid": pid, "bundle": bundle}
            if spec.annotations:
                state["annotations"] = spec.annotations
            hooks = spec.hooks
            if hooks:
                from .hooks import run_hooks

                run_hooks(hooks.prestart, state, kind="prestart", cwd=bundle)
                run_hooks(hooks.create_runtime, state, kind="createRuntime", cwd=bundle)
            ch.send({"type": "hooks-done"})
        elif kind == "ready":
            return (fds[0] if fds else None), pid, pid_start, msg.get("seccomp_built")
        else:
            raise SetupError(f"unexpected message from container init: {kind!r}")


def _undo(pid: int, stage1_pid: int, cgroup) -> None:
    """Kill whatever was started and remove the cgroup."""
    if stage1_pid:
        try:
            # Only a stage 1 we have not reaped yet may be killed: its pid is not recycled.
            if posix.waitpid(stage1_pid, posix.WNOHANG) == (0, 0):
                posix.kill(stage1_pid, SIGKILL)
                posix.waitpid(stage1_pid, 0)
        except ChildProcessError:
            pass
    if pid:
        try:
            posix.kill(pid, SIGKILL)
        except ProcessLookupError:
            pass
        wait_exit(pid, 5)
        try:
            posix.waitpid(pid, posix.WNOHANG)  # ours to reap when it was forked as our child (pid1_child)
        except ChildProcessError:
            pass
    if cgroup is not None:
        try:
            cgroup.kill_all(SIGKILL)
        except OSError:
            pass
        try:
            cgroup.destroy()
        except OSError:
            pass


def _resctrl_mounted() -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" - ", 1)[-1].startswith("resctrl ") for line in f)


def _run_poststop(spec, container_id: str, bundle: str, warn) -> None:
    from .hooks import run_hooks_warn

    state = {"ociVersion": spec.oci_version, "id": container_id, "status": "stopped", "pid": 0, "bundle": bundle}
    if spec.annotations:
        state["annotations"] = spec.annotations
    run_hooks_warn(spec.hooks.poststop if spec.hooks else [], state, kind="poststop", warn=warn, cwd=bundle)


def _connect_console(path: str):
    from .linux import console

    try:
        return console.connect(path)
    except OSError as e:
        raise SetupError(str(e)) from None


def _send_seccomp_notify(spec, state: ContainerState, fd: int) -> None:
    from .linux import seccomp

    try:
        # The container is still being created: the listener gets the state as hooks do.
        seccomp.send_to_listener(spec.linux.seccomp.get("listenerPath"), fd, state.hook_state("creating"), spec.linux.seccomp.get("listenerMetadata", ""))
    finally:
        posix.close(fd)

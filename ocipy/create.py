"""The parent side of `create`: validate, reserve the id, make the cgroup, fork, answer the children.

Conversation with the children over one channel (see init.py):
  (parent)                 writes the cgroup limits while stage 1 works (a pids.limit below 2 waits)
  stage 1 -> "idmap"       parent writes uid_map/gid_map of stage 1  -> "idmap-done"
  stage 1 -> "pid"         stage 2's host pid; stage 1 exits; (parent writes that pids.limit) -> stage 2 "go"
  stage 2 -> "hooks"       parent moves netDevices, runs prestart and createRuntime hooks -> "hooks-done"
  stage 2 -> "ready"       (+ seccomp notify fd) parent records the state and returns
  anyone  -> "error"       parent undoes everything and raises
A failed create leaves no state directory, cgroup, mount or process behind.
"""

from __future__ import annotations

import os
from _signal import SIGKILL  # the C module behind `signal`, whose enums cost 4 ms of imports

from . import bundle as bundle_mod
from . import logs
from .errors import ConfigError, HookError, OcipyError, SetupError
from .init import InitContext, stage1
from .launch import fork_in_cgroup
from .linux import cgroups, device_rules, idmap, namespaces, syscalls
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
) -> ContainerState:
    """Create the container; its pid 1 waits for `start`. console_socket: a socket path or a
    connected socket object."""
    bundle = os.path.abspath(bundle)
    config = bundle_mod.load_config(bundle)
    for warning in bundle_mod.validate_config(config, bundle):
        logs.logger.warning(warning)
    bundle_mod.require_process(config)
    from .spec import Spec

    spec = Spec.from_dict(config)
    if spec.linux is None:
        raise ConfigError("config.json: /linux: is required on Linux")
    if spec.process.terminal and console_socket is None:
        raise ConfigError("cannot allocate tty if ocipy will detach without setting console socket")
    if not spec.process.terminal and console_socket is not None:
        raise ConfigError("--console-socket is set but process.terminal is false")
    if spec.linux.intel_rdt:
        # config-linux.md#intelrdt: without resctrl the runtime MUST generate an error; with it,
        # ocipy does not implement RDT yet, and says so rather than ignore the request.
        if not _resctrl_mounted():
            raise SetupError("linux.intelRdt: no resctrl filesystem is mounted (/sys/fs/resctrl)")
        raise SetupError("linux.intelRdt: Intel RDT is not supported by ocipy yet")
    rootfs = spec.root.path if os.path.isabs(spec.root.path) else os.path.join(bundle, spec.root.path)

    state_dir = store.reserve(container_id)
    cgroup = None
    pid = 0
    stage1_pid = 0
    console_sock = None
    parent_ch = child_ch = None
    fifo_fd = None
    try:
        cgroup = cgroups.new_manager(container_id, spec.linux.cgroups_path, driver=cgroup_driver)
        fifo = os.path.join(state_dir, "exec.fifo")
        make_fifo(fifo)
        fifo_fd = os.open(fifo, syscalls.O_PATH | os.O_CLOEXEC)
        if isinstance(console_socket, str):
            console_sock = _connect_console(console_socket)
        elif console_socket is not None:
            console_sock = console_socket
        parent_ch, child_ch = Channel.pair()
        ctx = InitContext(
            container_id=container_id,
            spec=spec,
            bundle=bundle,
            rootfs=rootfs,
            fifo_fd=fifo_fd,
            channel=child_ch,
            cgroup=cgroup,
            ns_plan=namespaces.plan(spec.linux.namespaces),
            oci_version=spec.oci_version,
            console_fd=console_sock.fileno() if console_sock else None,
            preserve_fds=preserve_fds,
            no_pivot=no_pivot,
            no_new_keyring=no_new_keyring,
            annotations=spec.annotations,
        )
        cgroup.create()
        stage1_pid, born_in_v2 = fork_in_cgroup(cgroup)
        if stage1_pid == 0:
            parent_ch.close()
            stage1(ctx, born_in_v2)  # never returns
            os._exit(1)
        child_ch.close()
        child_ch = None
        if console_sock is not None and isinstance(console_socket, str):
            console_sock.close()
            console_sock = None
        # The limits go in while stage 1 joins the cgroup and makes the namespaces (~2 ms that
        # the parent would otherwise sit out): no process in the cgroup has done anything yet,
        # and pid 1 does nothing before "go". A pids.limit below 2 waits for stage 1 to leave:
        # it would stop stage 1 forking pid 1.
        early, after_stage1 = split_pids_limit(device_rules.effective_resources(spec.linux.resources, spec.linux.devices))
        cgroup.apply(early)
        notify_fd, pid, pid_start = _converse(parent_ch, spec, ctx, stage1_pid, after_stage1)
        if after_stage1 is None:  # else _converse reaped it before writing that limit
            os.waitpid(stage1_pid, 0)  # long gone: it exits right after reporting pid 1
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
        if notify_fd is not None:
            _send_seccomp_notify(spec, state, notify_fd)
        if pid_file:
            write_pid_file(pid_file, pid)
        return state
    except BaseException as e:
        _undo(pid, stage1_pid, cgroup)
        store.release(container_id)
        if isinstance(e, HookError) or (isinstance(e, ChildError) and e.hook):
            # runtime.md: a failed prestart/createRuntime/createContainer hook stops the container
            # and the lifecycle goes on at step 12: destroyed above, then the poststop hooks.
            _run_poststop(spec, container_id, bundle)
        if isinstance(e, ChildError):
            raise (HookError if e.hook else SetupError)(f"unable to start container process: {e}") from None
        if isinstance(e, EOFError):
            raise SetupError("unable to start container process: container init exited unexpectedly") from None
        if isinstance(e, OSError) and not isinstance(e, OcipyError):
            raise SetupError(f"unable to create container: {e.strerror if not e.filename else e}") from None
        raise
    finally:
        if fifo_fd is not None:
            os.close(fifo_fd)
        for ch in (parent_ch, child_ch):
            if ch is not None:
                ch.close()
        if console_sock is not None and isinstance(console_socket, str):
            console_sock.close()


def split_pids_limit(resources: dict | None) -> tuple[dict | None, dict | None]:
    """Pure: (what to apply while stage 1 works, what must wait until it has left or None).

    Until then the cgroup holds stage 1 and, once forked, pid 1: two tasks. A pids.limit of
    0 or 1 would stop that fork, so it waits; any other limit, and everything else, does not.
    """
    limit = ((resources or {}).get("pids") or {}).get("limit")
    if limit is None or limit < 0 or limit >= 2:
        return resources, None
    return {k: v for k, v in resources.items() if k != "pids"}, {"pids": resources["pids"]}


def _converse(ch: Channel, spec, ctx: InitContext, stage1_pid: int, after_stage1: dict | None) -> tuple[int | None, int, int | None]:
    """Answer the children until stage 2 is ready; return (seccomp notify fd, container pid,
    its start time). `after_stage1`: the resources to apply once stage 1 is gone."""
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
            if after_stage1 is not None:
                os.waitpid(stage1_pid, 0)  # stage 1 has done its part
                # pid 1 is alone in the cgroup and waits for "go": a pids.limit of 0 or 1 is a
                # real limit, and holds from its first fork on.
                ctx.cgroup.apply(after_stage1)
            ch.send({"type": "go", "pid": pid})
        elif kind == "hooks":
            from .linux import network

            if spec.linux.net_devices:
                network.move_devices(spec.linux.net_devices, f"/proc/{pid}/ns/net")
            state = {"ociVersion": spec.oci_version, "id": ctx.container_id, "status": "creating", "pid": pid, "bundle": ctx.bundle}
            if spec.annotations:
                state["annotations"] = spec.annotations
            hooks = spec.hooks
            if hooks:
                from .hooks import run_hooks

                run_hooks(hooks.prestart, state, kind="prestart", cwd=ctx.bundle)
                run_hooks(hooks.create_runtime, state, kind="createRuntime", cwd=ctx.bundle)
            ch.send({"type": "hooks-done"})
        elif kind == "ready":
            return (fds[0] if fds else None), pid, pid_start
        else:
            raise SetupError(f"unexpected message from container init: {kind!r}")


def _undo(pid: int, stage1_pid: int, cgroup) -> None:
    """Kill whatever was started and remove the cgroup."""
    if stage1_pid:
        try:
            # Only a stage 1 we have not reaped yet may be killed: its pid is not recycled.
            if os.waitpid(stage1_pid, os.WNOHANG) == (0, 0):
                os.kill(stage1_pid, SIGKILL)
                os.waitpid(stage1_pid, 0)
        except ChildProcessError:
            pass
    if pid:
        try:
            os.kill(pid, SIGKILL)
        except ProcessLookupError:
            pass
        wait_exit(pid, 5)
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


def _run_poststop(spec, container_id: str, bundle: str) -> None:
    from .hooks import run_hooks_warn

    state = {"ociVersion": spec.oci_version, "id": container_id, "status": "stopped", "pid": 0, "bundle": bundle}
    if spec.annotations:
        state["annotations"] = spec.annotations
    run_hooks_warn(spec.hooks.poststop if spec.hooks else [], state, kind="poststop", warn=logs.logger.warning, cwd=bundle)


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
        os.close(fd)

"""The library: Runtime and Container, the lifecycle as a Python program drives it.

    from ocipy import Runtime
    rt = Runtime(root="/run/ocipy")
    c = rt.create("web", bundle="bundles/busybox")
    c.start()
    print(c.state()["status"])
    c.kill("SIGKILL"); c.wait(); c.delete()

Every method works from facts on disk and in /proc, so a Container object made by
one process can be driven by another (`ocipy start` is a fresh interpreter).
The hot paths (state, start, kill, delete, list) import no schema or netlink code.
"""

import posix  # not os: see main.py
import _signal  # the C module behind `signal`: the same numbers without its enums (4 ms)

from .errors import ContainerNotFound, InvalidState, OcipyError
from .fspath import abspath
from .state import ContainerState, StateStore, remove_quietly, wait_exit

DEFAULT_ROOT = "/run/ocipy"


def parse_signal(sig) -> int:
    """SIGTERM, TERM, term or 15 -> 15."""
    if isinstance(sig, int):
        return sig
    text = str(sig).strip()
    if text.isdigit():
        return int(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    number = getattr(_signal, name, None) if name[3:].isalnum() else None  # not SIG_DFL, SIG_BLOCK...
    if not isinstance(number, int):
        raise OcipyError(f"unknown signal {sig!r}")
    return number


class Container:
    def __init__(self, runtime: "Runtime", state: ContainerState):
        self.runtime = runtime
        self._state = state

    @property
    def id(self) -> str:
        return self._state.id

    @property
    def pid(self) -> int:
        return self._state.pid

    @property
    def config(self) -> dict:
        """The config it was created from."""
        return self._state.config

    @property
    def status(self) -> str:
        return self._state.status()

    def state(self) -> dict:
        """The runtime-spec state (runc's JSON)."""
        return self._state.oci_state()

    def _hooks(self, kind: str) -> list:
        """The config's hooks of one kind (poststart, poststop), read from the saved config."""
        if not (self._state.config.get("hooks") or {}).get(kind):
            return []
        from .spec import Spec

        return getattr(Spec.from_dict(self._state.config).hooks, kind)

    # --- start ---------------------------------------------------------------------
    def start(self) -> None:
        from .errors import HookError

        store = self.runtime.store
        lock = store.lock(self.id)
        try:
            status = self._state.status()
            if status == "stopped":
                raise InvalidState("cannot start a container that has stopped")
            if status != "created":
                raise InvalidState("cannot start an already running container")
            try:
                self._release_init()
            finally:
                remove_quietly(self._state.fifo_path)
        except HookError:
            self._stop_after_failed_hook()
            raise
        finally:
            posix.close(lock)
        poststart = self._hooks("poststart")
        if not poststart:
            return
        from .hooks import run_hooks

        try:
            run_hooks(poststart, self._state.hook_state("running"), kind="poststart", cwd=self._state.data["bundle"])
        except HookError:
            self._stop_after_failed_hook()
            raise

    def _stop_after_failed_hook(self) -> None:
        """runtime.md: a failed startContainer or poststart hook stops the container and the
        lifecycle goes on at step 12: destroy it, run poststop. `delete` then only removes the
        record (and does not run poststop twice)."""
        self._kill_init(_signal.SIGKILL)
        wait_exit(self.pid, 10)
        self._run_poststop()

    def _run_poststop(self) -> None:
        if self._state.data.get("poststop_done"):
            return
        poststop = self._hooks("poststop")
        if not poststop:
            return  # nothing that could run twice: no need to record it
        self._state.data["poststop_done"] = True
        self._state.save()
        from .hooks import run_hooks_warn

        run_hooks_warn(poststop, self._state.hook_state("stopped"), kind="poststop", warn=self.runtime.warn, cwd=self._state.data["bundle"])

    def _release_init(self) -> None:
        """Open exec.fifo for reading: pid 1, blocked opening it, runs the startContainer hooks
        and answers "0" before it execs the user's process, or "1<why>" when a hook failed."""
        import select

        from .errors import HookError

        fd = posix.open(self._state.fifo_path, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
        try:
            pidfd = posix.pidfd_open(self.pid)
        except ProcessLookupError:
            posix.close(fd)
            raise InvalidState("cannot start a container that has stopped") from None
        try:
            # Linux reports no POLLHUP on a fifo no writer has opened yet, so this waits
            # for pid 1's answer or for pid 1's death, whichever comes first.
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            poller.register(pidfd, select.POLLIN)
            ready = dict(poller.poll())
            answer = posix.read(fd, 4096) if fd in ready else b""
        finally:
            posix.close(fd)
            posix.close(pidfd)
        if answer.startswith(b"0"):
            return
        if answer.startswith(b"1"):
            raise HookError(answer[1:].decode(errors="replace"))
        raise OcipyError("container init exited before it could be started")

    # --- kill ----------------------------------------------------------------------
    def kill(self, sig=_signal.SIGTERM, *, all: bool = False) -> None:
        signum = parse_signal(sig)
        status = self._state.status()
        if status == "stopped":
            if all:
                return
            raise InvalidState("container not running")
        if all:
            self._state.cgroup().kill_all(signum)
        self._kill_init(signum, strict=not all)

    def _kill_init(self, signum: int, strict: bool = False) -> None:
        try:
            posix.kill(self.pid, signum)
        except ProcessLookupError:
            if strict:
                raise InvalidState("container not running") from None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the container's init has exited (True) or the timeout passed (False)."""
        return wait_exit(self.pid, timeout) if self._state.init_alive() else True

    # --- delete --------------------------------------------------------------------
    def delete(self, *, force: bool = False) -> None:
        store = self.runtime.store
        lock = store.lock(self.id)
        try:
            status = self._state.status()
            # runtime.md: deleting a container that is not stopped MUST be an error. (runc deletes
            # a created one anyway; engines delete with --force, which kills it first.)
            if status != "stopped" and not force:
                raise InvalidState(f"cannot delete container {self.id} that is not stopped: {status}")
            from .linux.cgroups import teardown  # not the managers: see teardown.py

            recorded = self._state.data.get("cgroup")
            if status != "stopped":
                cgroup = self._state.cgroup()
                if status == "paused" or force:
                    cgroup.kill_all(_signal.SIGKILL)
                self._kill_init(_signal.SIGKILL)
                if status == "paused":
                    cgroup.thaw()
                if not wait_exit(self.pid, 10):
                    raise OcipyError(f"container {self.id}: init did not exit after SIGKILL")
            elif force and teardown.recorded_pids(recorded):
                # processes the init left behind (a container sharing the host's pid namespace)
                self._state.cgroup().kill_all(_signal.SIGKILL)
            teardown.destroy_recorded(recorded)
            self._run_poststop()
            store.release(self.id)
        finally:
            posix.close(lock)

    # --- exec --------------------------------------------------------------------------
    def exec(self, process: dict, **options) -> int:
        """Run `process` (a runtime-spec Process) in this container; options as `ocipy exec`'s
        flags (detach, pid_file, console_socket, preserve_fds, ignore_paused)."""
        from .exec import exec_in_container

        return exec_in_container(self, process, **options)

    # --- cgroup operations -------------------------------------------------------------
    def pause(self) -> None:
        if self._state.status() != "running":
            raise InvalidState("container not running")
        self._state.cgroup().freeze()

    def resume(self) -> None:
        if self._state.status() != "paused":
            raise InvalidState("container not paused")
        self._state.cgroup().thaw()

    def pids(self) -> list[int]:
        return self._state.cgroup().pids()

    def stats(self) -> dict:
        """runc's `events --stats` "data": cpu, memory, pids, blkio, hugetlb."""
        if self._state.status() == "stopped":
            raise InvalidState("container not running")
        return self._state.cgroup().stats()

    def update(self, resources: dict) -> None:
        """Apply new linux.resources (zeros mean no change) and remember them in the state."""
        from .update import merge

        lock = self.runtime.store.lock(self.id)
        try:
            if self._state.status() == "stopped":
                raise InvalidState("container not running")
            self._state.cgroup().update(resources)
            linux = self._state.data["config"].setdefault("linux", {})
            linux["resources"] = merge(linux.get("resources"), resources)
            self._state.save()
        finally:
            posix.close(lock)


class Runtime:
    """All containers under one state root.

    `log`: where warnings go (a failed poststop hook, a config field ocipy ignores), any
    object with a `warning(message)` method; by default ocipy.logs.logger, the process's
    logger that the CLI sets up from --log, --log-format and --debug."""

    def __init__(self, root: str = DEFAULT_ROOT, *, cgroup_manager: str = "cgroupfs", log=None):
        self.root = abspath(root)
        self.store = StateStore(self.root)
        self.cgroup_manager = cgroup_manager
        self.log = log

    def warn(self, message: str) -> None:
        """Write a warning to `log` (see the class)."""
        log = self.log
        if log is None:
            from . import logs

            log = logs.logger
        log.warning(message)

    def create(self, container_id: str, bundle: str = ".", **options) -> Container:
        """Create a container from a bundle; options as `ocipy create`'s flags
        (pid_file, console_socket, no_pivot, no_new_keyring, preserve_fds), and stage1
        (ocipy.prefork: the CLI forks stage 1 before importing this module)."""
        from .create import create_container

        state = create_container(self.store, container_id, bundle, cgroup_driver=self.cgroup_manager, warn=self.warn, **options)
        return Container(self, state)

    def container(self, container_id: str) -> Container:
        return Container(self, self.store.load(container_id))

    def containers(self) -> list[Container]:
        out = []
        for cid in self.store.ids():
            try:
                out.append(self.container(cid))
            except ContainerNotFound:
                pass  # deleted while we listed
        return out

    def delete(self, container_id: str, *, force: bool = False) -> None:
        """Delete by id; with force, a missing container is not an error (runc's `delete --force`)."""
        try:
            container = self.container(container_id)
        except ContainerNotFound:
            if force:
                return
            raise
        container.delete(force=force)

    def run(self, container_id: str, bundle: str = ".", *, detach: bool = False, keep: bool = False, **options) -> int:
        """create + start; in the foreground wait, forward signals and return the exit code."""
        from .foreground import run_container

        return run_container(self, container_id, bundle, detach=detach, keep=keep, **options)

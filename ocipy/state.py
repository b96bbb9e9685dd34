"""The state directory: <root>/<id>/ holds state.json, exec.fifo and the lock.

Status is derived from facts, never trusted from a stored word:
  - the init pid is gone, a zombie, or a different process (start time differs) -> stopped
  - the cgroup is frozen -> paused
  - exec.fifo still exists (pid 1 blocks on it until `start`) -> created
  - otherwise -> running
"""

import posix  # not os: the hot commands (state, start, kill, delete, list) never import it (see main.py)
import time

from . import jsonfast
from .fspath import abspath, exists, makedirs
from .errors import ContainerExists, ContainerNotFound, OcipyError

STATE_FILE = "state.json"
FIFO_NAME = "exec.fifo"
# runc's rule (^[\w+-.]+$ with Go's ASCII \w): letters, digits and "_+-.", nothing else.
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def validate_id(container_id: str) -> None:
    if not container_id or container_id in (".", "..") or not _ID_CHARS.issuperset(container_id):
        raise OcipyError(f"invalid container id format: {container_id!r}")


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), or None when gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def wait_exit(pid: int, timeout: float | None) -> bool:
    """Wait until `pid` has exited (any process, not only a child); True if it did in time."""
    import select

    try:
        fd = posix.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else int(timeout * 1000)))
    finally:
        posix.close(fd)


def rfc3339_now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


class ContainerState:
    """What we recorded at create time, plus the status computed from facts."""

    def __init__(self, root: str, container_id: str, data: dict):
        self.root = root
        self.id = container_id
        self.data = data

    @property
    def dir(self) -> str:
        return f"{self.root}/{self.id}"

    @property
    def fifo_path(self) -> str:
        return f"{self.dir}/{FIFO_NAME}"

    @property
    def pid(self) -> int:
        return self.data.get("pid", 0)

    @property
    def config(self) -> dict:
        return self.data.get("config", {})

    def init_alive(self) -> bool:
        pid = self.pid
        return pid > 0 and proc_start_time(pid) == self.data.get("pid_start")

    def cgroup(self):
        from .linux import cgroups

        return cgroups.manager_from_state(self.data.get("cgroup") or {"driver": "disabled"})

    def status(self) -> str:
        if not self.init_alive():
            return "stopped"
        if exists(self.fifo_path):
            return "created"
        return "paused" if self._frozen() else "running"

    def _frozen(self) -> bool:
        """One read of the file the cgroup manager named at create time (its `freeze_probe`):
        `state` and `list` need not import the managers (state.json written before the probe
        was recorded asks the manager)."""
        cgroup = self.data.get("cgroup")
        if not cgroup:
            return False
        if "freeze_probe" not in cgroup:
            try:
                return self.cgroup().is_frozen()
            except OSError:
                return False
        if cgroup["freeze_probe"] is None:
            return False
        path, frozen = cgroup["freeze_probe"]
        try:
            with open(path) as f:
                return f.read().strip() in frozen
        except OSError:
            return False

    def oci_state(self) -> dict:
        """The runtime-spec state, in runc's field order (engines parse it)."""
        status = self.status()
        out = {
            "ociVersion": self.data.get("ociVersion", "1.3.0"),
            "id": self.id,
            "pid": self.pid if status != "stopped" else 0,
            "status": status,
            "bundle": self.data["bundle"],
            "rootfs": self.data["rootfs"],
            "created": self.data["created"],
        }
        if self.data.get("annotations"):
            out["annotations"] = self.data["annotations"]
        out["owner"] = self.data.get("owner", "")
        return out

    def hook_state(self, status: str) -> dict:
        """The state passed to hooks on stdin."""
        out = {"ociVersion": self.data.get("ociVersion", "1.3.0"), "id": self.id, "status": status, "pid": self.pid, "bundle": self.data["bundle"]}
        if self.data.get("annotations"):
            out["annotations"] = self.data["annotations"]
        return out

    def save(self) -> None:
        tmp = f"{self.dir}/.{STATE_FILE}.tmp"
        with open(tmp, "w") as f:
            f.write(jsonfast.dumps(self.data))
        posix.rename(tmp, f"{self.dir}/{STATE_FILE}")


class StateStore:
    """All containers under one --root."""

    def __init__(self, root: str):
        self.root = root

    def path(self, container_id: str) -> str:
        return f"{self.root}/{container_id}"

    def reserve(self, container_id: str) -> str:
        """Create <root>/<id> exclusively: a second create of the same id fails."""
        validate_id(container_id)
        makedirs(self.root, 0o711)
        path = self.path(container_id)
        try:
            posix.mkdir(path, 0o711)
        except FileExistsError:
            raise ContainerExists(container_id) from None
        return path

    def release(self, container_id: str) -> None:
        """Remove <root>/<id> and whatever is in it (shutil costs `delete` 3 ms of imports)."""
        _remove_tree(self.path(container_id))

    def load(self, container_id: str) -> ContainerState:
        validate_id(container_id)
        try:
            with open(f"{self.path(container_id)}/{STATE_FILE}") as f:
                data = jsonfast.loads(f.read())
        except FileNotFoundError:
            raise ContainerNotFound(container_id) from None
        except (OSError, ValueError) as e:
            raise OcipyError(f"cannot read state of container {container_id}: {e}") from None
        return ContainerState(self.root, container_id, data)

    def ids(self) -> list[str]:
        try:
            names = posix.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if exists(f"{self.root}/{n}/{STATE_FILE}"))

    def lock(self, container_id: str) -> int:
        """An exclusive flock on the container's directory, held until the fd is closed."""
        try:
            fd = posix.open(self.path(container_id), posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
        except FileNotFoundError:
            raise ContainerNotFound(container_id) from None
        import fcntl  # here: `state` and `list` take no lock

        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd


def _remove_tree(top: str) -> None:
    """rm -rf, quietly, never following a symlink out of the tree."""
    try:
        entries = list(posix.scandir(top))
    except OSError:
        entries = []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                _remove_tree(entry.path)
            else:
                posix.unlink(entry.path)
        except OSError:
            pass
    try:
        posix.rmdir(top)
    except OSError:
        pass


def make_fifo(path: str) -> None:
    old = posix.umask(0)
    try:
        posix.mkfifo(path, 0o622)
    finally:
        posix.umask(old)


def remove_quietly(path: str) -> None:
    try:
        posix.unlink(path)
    except FileNotFoundError:
        pass


def write_pid_file(path: str, pid: int) -> None:
    """Decimal pid, no newline (containerd's parser rejects one), written atomically."""
    directory, _, name = abspath(path).rpartition("/")
    tmp = f"{directory}/.{name}.tmp{posix.getpid()}"
    with open(tmp, "w") as f:
        f.write(str(pid))
    posix.rename(tmp, f"{directory}/{name}")

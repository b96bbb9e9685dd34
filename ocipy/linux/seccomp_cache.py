"""Seccomp programs built once and reused: kept under the state root, keyed on the profile.

Why: docker and podman give every container the same profile (docker's default: ~360
rules on three architectures), and libseccomp takes ~15 ms to turn it into BPF; with
ctypes and libseccomp to load first, building the filter was the largest part of
creating such a container (runc pays the same on every create). The program is a pure
function of the profile and of what builds it, so a program built once serves every later
create and exec of the same profile while all of that stays the same:

- the key, compared whole: the profile as canonical JSON, the machine, the kernel release
  (the flags it accepts) and LD_LIBRARY_PATH (which libseccomp the loader finds);
- the builders, compared on every use by (device, inode, size, mtime): the libseccomp
  file that built the program, /etc/ld.so.cache (a new library in the search path) and
  ocipy's own seccomp.py (its ENOSYS stub is part of the program).

An entry is written whole or not at all (a rename), under <root>/ocipy:cache/, which no
container id can name (":" is not an id character); by create's parent or exec, which hold
the host's credentials, never by a process a container could have touched. Anything wrong
with an entry (unreadable, another profile under the same index, a builder changed) is a
miss, which builds the program as before; a cache that cannot be written costs nothing but
the next build. At most _MAX_ENTRIES profiles are kept: the oldest goes first.
"""

from __future__ import annotations

import posix
from binascii import crc32

from ocipy import fspath, jsonfast

CACHE_DIR = "ocipy:cache"
_MAX_ENTRIES = 16
_SECCOMP_SOURCE = fspath.join(fspath.dirname(__file__), "seccomp.py")
_LD_SO_CACHE = "/etc/ld.so.cache"


class Built:
    """A program as seccomp.prepare built it, and the libseccomp file that built it."""

    __slots__ = ("program", "notify_used", "library")

    def __init__(self, program: bytes, notify_used: bool, library: str | None):
        self.program = program
        self.notify_used = notify_used
        self.library = library

    def to_message(self) -> dict:
        """As pid 1 reports it to create's parent (JSON)."""
        return {"program": self.program.hex(), "notify_used": self.notify_used, "library": self.library}

    @classmethod
    def from_message(cls, msg: dict) -> Built:
        return cls(bytes.fromhex(msg["program"]), bool(msg["notify_used"]), msg.get("library"))


def key(profile: dict) -> str:
    """Pure but for the machine and environment it describes: everything the program
    depends on besides the files `_identities` watches."""
    uname = posix.uname()
    ld_path = posix.environ.get(b"LD_LIBRARY_PATH")
    return jsonfast.dumps({"profile": profile, "machine": uname.machine, "kernel": uname.release,
                           "LD_LIBRARY_PATH": ld_path.decode("utf-8", "surrogateescape") if ld_path is not None else None},
                          sort_keys=True)


def _identity(path: str | None) -> list | None:
    if path is None:
        return None
    try:
        st = posix.stat(path)
    except OSError:
        return None
    return [path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _identities(library: str | None) -> list:
    return [_identity(library), _identity(_LD_SO_CACHE), _identity(_SECCOMP_SOURCE)]


def _entry_path(root: str, key_text: str) -> str:
    return fspath.join(root, CACHE_DIR, f"seccomp-{crc32(key_text.encode()):08x}.json")


def lookup(root: str, profile: dict) -> Built | None:
    """The program built before for this profile, if nothing it depends on changed since."""
    key_text = key(profile)
    try:
        with open(_entry_path(root, key_text), "rb") as f:
            entry = jsonfast.loads(f.read().decode())
        if entry["key"] != key_text or entry["builders"] != _identities(entry["library"]) or entry["library"] is None:
            return None
        built = Built(bytes.fromhex(entry["program"]), entry["notify_used"], entry["library"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not built.program or len(built.program) % 8:
        return None  # not a struct sock_filter array
    return built


def store(root: str, profile: dict, built: Built) -> None:
    """Keep `built` for the next create or exec of this profile (best effort: a failure is
    silent). Not without the library's path: a change of it could not be seen."""
    if built.library is None:
        return
    key_text = key(profile)
    directory = fspath.join(root, CACHE_DIR)
    path = _entry_path(root, key_text)
    tmp = f"{path}.{posix.getpid()}.tmp"
    entry = {"key": key_text, "library": built.library, "builders": _identities(built.library),
             "program": built.program.hex(), "notify_used": built.notify_used}
    try:
        try:
            posix.mkdir(directory, 0o700)
        except FileExistsError:
            pass
        fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_CLOEXEC, 0o600)
        try:
            posix.write(fd, jsonfast.dumps(entry).encode())
        finally:
            posix.close(fd)
        posix.rename(tmp, path)
        _evict(directory)
    except OSError:
        try:
            posix.unlink(tmp)
        except OSError:
            pass


def _evict(directory: str) -> None:
    """Remove the oldest entries beyond _MAX_ENTRIES."""
    names = [n for n in posix.listdir(directory) if n.startswith("seccomp-") and n.endswith(".json")]
    if len(names) <= _MAX_ENTRIES:
        return
    aged = []
    for name in names:
        try:
            aged.append((posix.stat(fspath.join(directory, name)).st_mtime_ns, name))
        except OSError:
            pass
    for _, name in sorted(aged)[: len(aged) - _MAX_ENTRIES]:
        try:
            posix.unlink(fspath.join(directory, name))
        except OSError:
            pass


def prepare(root: str, profile: dict):
    """seccomp.prepare(profile) through the cache, in one process that holds the host's
    credentials (exec's): the program built before if there is one, else built and kept."""
    built = lookup(root, profile)
    if built is not None:
        from .seccomp_load import prepared

        return prepared(profile, built.program, built.notify_used)
    from . import seccomp

    filt = seccomp.prepare(profile)
    store(root, profile, Built(filt.program, filt.notify, seccomp.library_path()))
    return filt

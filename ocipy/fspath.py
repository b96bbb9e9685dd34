"""The few os.path functions ocipy's hot paths need, on `posix` alone.

Why: `import os` costs 1 to 1.8 ms on this machine (os.environ is a collections.abc
mapping, and that module builds some thirty classes). The commands engines call for every
container need nothing more of os than `posix` and these: `state`, `start`, `kill`, `delete`
and `list` are little more than the interpreter's own start, `exec` is a command engines wait
on, and both processes of `create` and `run` are on the critical path in turn. The parent
validates and makes the cgroup while stage 1, forked first, imports the container side; in
about a third of runs stage 1 is the one that has not finished when the parent's "setup" is
sent, so its imports count as much as the parent's.

Each function does what its os.path namesake does for str paths (tests/unit/test_fspath.py
compares them).
"""

import posix
import sys

_S_IFMT = 0o170000
_S_IFDIR = 0o040000
_S_IFREG = 0o100000
_S_IFLNK = 0o120000


def join(path: str, *parts: str) -> str:
    path = posix.fspath(path)
    for part in parts:
        part = posix.fspath(part)
        if part.startswith("/"):
            path = part
        elif not path or path.endswith("/"):
            path += part
        else:
            path += "/" + part
    return path


def isabs(path: str) -> bool:
    return posix.fspath(path).startswith("/")


def fsencode(path) -> bytes:
    """A str path as the kernel is to see it (the filesystem encoding, surrogateescape);
    bytes as they are."""
    path = posix.fspath(path)
    if isinstance(path, str):
        return path.encode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())
    return path


def dirname(path: str) -> str:
    head = path[: path.rfind("/") + 1]
    if head and head != "/" * len(head):
        head = head.rstrip("/")
    return head


def basename(path: str) -> str:
    return path[path.rfind("/") + 1 :]


def normpath(path: str) -> str:
    """"." and ".." resolved lexically (no symlink followed); POSIX keeps a leading "//"."""
    if not path:
        return "."
    slashes = 0
    if path.startswith("/"):
        slashes = 2 if path.startswith("//") and not path.startswith("///") else 1
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part != ".." or (not slashes and not parts) or (parts and parts[-1] == ".."):
            parts.append(part)
        elif parts:
            parts.pop()
    return "/" * slashes + "/".join(parts) or "."


def abspath(path: str) -> str:
    path = posix.fspath(path)  # a pathlib.Path, as os.path takes
    return normpath(path if path.startswith("/") else join(posix.getcwd(), path))


def _mode(path: str) -> int | None:
    try:
        return posix.stat(path).st_mode & _S_IFMT
    except (OSError, ValueError):
        return None


def exists(path: str) -> bool:
    return _mode(path) is not None


def isdir(path: str) -> bool:
    return _mode(path) == _S_IFDIR


def isfile(path: str) -> bool:
    return _mode(path) == _S_IFREG


def makedirs(path: str, mode: int = 0o777) -> None:
    """os.makedirs(path, mode, exist_ok=True)."""
    try:
        posix.mkdir(path, mode)
    except FileExistsError:
        if not isdir(path):
            raise
    except FileNotFoundError:
        parent = dirname(path.rstrip("/"))
        if not parent or parent == path:
            raise
        makedirs(parent, mode)
        try:
            posix.mkdir(path, mode)
        except FileExistsError:
            if not isdir(path):
                raise


def realpath(path: str) -> str:
    """Every symlink and "." or ".." resolved, as os.path.realpath (not strict): from where a
    part is missing or a symlink loops, the rest is kept as written."""
    resolved, _ = _resolve("", posix.fspath(path), {})
    return abspath(resolved)


def _resolve(path: str, rest: str, seen: dict) -> tuple[str, bool]:
    """(`rest` resolved onto the resolved `path`, False if a symlink loop cut it short).
    `seen`: symlink -> what it resolved to, None while it is being resolved."""
    if rest.startswith("/"):
        rest, path = rest[1:], "/"
    while rest:
        name, _, rest = rest.partition("/")
        if not name or name == ".":
            continue
        if name == "..":
            if not path:
                path = ".."
            elif basename(path) == "..":
                path = join(path, "..")
            else:
                path = dirname(path)
            continue
        candidate = join(path, name)
        try:
            is_link = posix.lstat(candidate).st_mode & _S_IFMT == _S_IFLNK
        except OSError:
            is_link = False
        if not is_link:
            path = candidate
            continue
        if candidate in seen:
            if seen[candidate] is not None:
                path = seen[candidate]
                continue
            return join(candidate, rest), False  # a loop
        seen[candidate] = None
        path, ok = _resolve(path, posix.readlink(candidate), seen)
        if not ok:
            return join(path, rest), False
        seen[candidate] = path
    return path, True

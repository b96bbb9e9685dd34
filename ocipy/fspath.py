"""The few os.path functions ocipy's hot paths need, on `posix` alone.

Why: `import os` costs about 1 ms (os.environ is a collections.abc mapping, and that
module builds some thirty classes). The parent side of `create` and `run` needs nothing
else from os, and everything it does before handing stage 1 its setup is on the
critical path of both; `state`, `start`, `kill`, `delete` and `list` are little more
than the interpreter's own start. (Stage 1 and pid 1 use os freely: their
imports run while this side works.)

Each function does what its os.path namesake does for str paths (tests/unit/test_fspath.py
compares them).
"""

import posix

_S_IFMT = 0o170000
_S_IFDIR = 0o040000
_S_IFREG = 0o100000


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

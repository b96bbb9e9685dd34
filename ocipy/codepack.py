"""ocipy's compiled modules in one file, imported without importlib's search for each.

Why: every command is a fresh interpreter, and a create imports ~50 of ocipy's modules
(its parent and stage 1 each about half, in parallel). For each one importlib runs a few
dozen of its own Python functions (finders, specs, the cache path, the .pyc header) and
opens the .pyc: ~40 us a module here. create, run and exec (main.py) put a PackFinder
first on sys.meta_path; it serves each module from this pack, which `python -m
ocipy.launcher` builds at install time, with one stat of its source, one read of its code
and marshal. Paired over 500, create took ~0.9 ms less; the commands that import a dozen
modules (state, start, kill, delete, list) do not use it: start was 0.14 ms slower with it.

It never serves stale code: each module's source must still have the size and mtime it
had when the pack was built, else that module is imported the usual way (so is one the
pack lacks); a pack built by another Python, or unreadable, is not used at all. The pack
lives where Python keeps its own caches, ocipy/__pycache__/, and is as trusted as the .pyc
files there. Each module's code is read with an open of its own (of the very file whose
index was read): no descriptor stays open into a container.
"""

from __future__ import annotations

import marshal
import posix
import sys

from _frozen_importlib import ModuleSpec  # importlib.machinery.ModuleSpec, without importing importlib

_MAGIC = b"ocipy-codepack\n"


def default_path(package_dir: str) -> str:
    """Where the pack of the ocipy package in `package_dir` lives."""
    return f"{package_dir}/__pycache__/codepack.{sys.implementation.cache_tag}.bin"


def build(package_dir: str, dest: str) -> int:
    """Compile every module of the package in `package_dir` (ocipy/) into the pack `dest`
    (written whole, by a rename); the number of modules."""
    import os

    base = os.path.dirname(package_dir)
    index: dict[str, tuple] = {}
    blobs: list[bytes] = []
    offset = 0
    for directory, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, base)[:-3].split(os.sep)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())  # before the read: a write after it changes what is checked
                source = f.read()
            try:
                code = compile(source, path, "exec", dont_inherit=True, optimize=0)  # as the launcher runs
            except (SyntaxError, ValueError):
                continue  # left to the usual import, which reports it as usual
            blob = marshal.dumps(code)
            index[".".join(parts)] = (offset, len(blob), is_package, path, st.st_mtime_ns, st.st_size)
            blobs.append(blob)
            offset += len(blob)
    head = marshal.dumps((sys.hexversion, index))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = f"{dest}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(_MAGIC + len(head).to_bytes(4, "little") + head)
        f.write(b"".join(blobs))
    os.rename(tmp, dest)
    return len(index)


def _identity(st) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class PackFinder:
    """A sys.meta_path finder and loader for the modules of one pack."""

    def __init__(self, path: str):
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            start = len(_MAGIC) + 4
            head = posix.pread(fd, start, 0)
            if head[: len(_MAGIC)] != _MAGIC:
                raise ValueError(f"{path}: not an ocipy code pack")
            size = int.from_bytes(head[len(_MAGIC):], "little")
            version, self.index = marshal.loads(posix.pread(fd, size, start))
            self.identity = _identity(posix.fstat(fd))
        finally:
            posix.close(fd)
        if version != sys.hexversion:
            raise ValueError(f"{path}: built by another Python")
        self.path = path
        self.base = start + size

    def find_spec(self, name, path=None, target=None):
        """The module's spec, its code read already (loader_state); None to leave it to the
        usual import: not in the pack, changed since, or the pack rebuilt since we read its
        index (its offsets would not hold)."""
        entry = self.index.get(name)
        if entry is None:
            return None
        offset, length, is_package, origin, mtime, size = entry
        try:
            st = posix.stat(origin)
            if st.st_mtime_ns != mtime or st.st_size != size:
                return None
            fd = posix.open(self.path, posix.O_RDONLY | posix.O_CLOEXEC)
            try:
                if _identity(posix.fstat(fd)) != self.identity:
                    return None
                code = marshal.loads(posix.pread(fd, length, self.base + offset))
            finally:
                posix.close(fd)
        except (OSError, ValueError, EOFError, TypeError):
            return None
        spec = ModuleSpec(name, self, origin=origin, is_package=is_package)
        spec.has_location = True  # __file__ is the source, as tracebacks need
        if is_package:
            spec.submodule_search_locations = [origin.rpartition("/")[0]]
        spec.loader_state = code
        return spec

    def create_module(self, spec):
        return None  # the usual module object

    def exec_module(self, module) -> None:
        exec(module.__spec__.loader_state, module.__dict__)


def install(path: str) -> bool:
    """Serve ocipy's modules from the pack at `path`, if there is a usable one (else the
    usual imports do, as without it). Whether it is used."""
    try:
        finder = PackFinder(path)
    except (OSError, ValueError, EOFError, TypeError):
        return False
    sys.meta_path.insert(0, finder)
    return True

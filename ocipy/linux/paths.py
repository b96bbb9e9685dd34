"""Resolve paths inside a container's root without ever leaving it.

A container image is untrusted: any component of a mount destination, device
path, masked or read-only path may be a symlink (absolute or full of "..") that,
followed naively from the host, lands on a host file. Every lookup here goes
through openat2(RESOLVE_IN_ROOT): the kernel treats `root_fd` as "/" for that
lookup, so "..", absolute symlinks and magic links cannot climb out of it.

The result is always an O_PATH file descriptor. Callers mount onto
`proc_fd_path(fd)` (/proc/self/fd/N), the very inode that was resolved, so a
symlink swapped in after the check cannot redirect the mount (CVE-2021-30465).
"""

import errno
import posix
import stat

from ocipy.linux import syscalls as sc

RESOLVE_FLAGS = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS
O_PATH = sc.O_PATH


def open_root(rootfs: str) -> int:
    """O_PATH|O_DIRECTORY fd of the container's root directory (the host path is trusted)."""
    return posix.open(rootfs, O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)


def _components(path: str) -> list[str]:
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        parts.append(part)
    return parts


def clean(path: str) -> str:
    """Lexically clean `path` as an absolute path ("a/../b" -> "/b"); never touches the disk."""
    out: list[str] = []
    for part in _components(path):
        if part == "..":
            if out:
                out.pop()
        else:
            out.append(part)
    return "/" + "/".join(out)


def open_in_root(root_fd: int, path: str, flags: int = O_PATH, *, nofollow: bool = False, mode: int = 0) -> int:
    """Open `path` as seen from inside the root. With nofollow=True the last component
    is not followed when it is a symlink (the symlink itself is opened, O_PATH only).
    Raises OSError (ENOENT when a component is missing)."""
    rel = "/".join(_components(path)) or "."
    if nofollow:
        flags |= posix.O_NOFOLLOW
    return sc.openat2(root_fd, rel, flags | posix.O_CLOEXEC, RESOLVE_FLAGS, mode)


def proc_fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def fd_stat(fd: int) -> posix.stat_result:
    return posix.fstat(fd)


def mnt_id(fd: int) -> int | None:
    """The mount id an fd lives on (statx, else fdinfo), or None when the kernel does not say."""
    found = sc.mount_id(fd)
    if found is not None:
        return found
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("mnt_id:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _path_in_root(root_fd: int, fd: int) -> str:
    """The physical path of `fd` as seen from inside the root."""
    root = posix.readlink(proc_fd_path(root_fd))
    here = posix.readlink(proc_fd_path(fd))
    if here == root:
        return "/"
    if root == "/":
        return here
    if not here.startswith(root.rstrip("/") + "/"):
        raise OSError(errno.EXDEV, f"{here} is outside the container root")
    return here[len(root.rstrip("/")):]


def mkdir_all_in_root(root_fd: int, path: str, mode: int = 0o755) -> int:
    """Make every missing directory of `path` inside the root, component by component,
    and return an O_PATH fd of the final directory.

    Each prefix is resolved from the root with RESOLVE_IN_ROOT, so an existing symlink
    is followed only as if the root were "/". A missing component is created with
    mkdirat() in the already-resolved parent fd. A dangling symlink is followed the same
    way: its target is read and created inside the root (as runc's securejoin does),
    never on the host."""
    todo = _components(clean(path))
    if todo:
        # Usually it all exists: one resolution of the whole path, with the same rules as
        # the walk below (which reports whatever stops it).
        try:
            return open_in_root(root_fd, "/".join(todo), O_PATH | posix.O_DIRECTORY)
        except OSError:
            pass
    done, cur = _longest_existing_prefix(root_fd, todo)
    todo = todo[len(done):]
    links = 0
    try:
        while todo:
            part = todo.pop(0)
            here = "/".join(done + [part])
            try:
                nxt = open_in_root(root_fd, here, O_PATH | posix.O_DIRECTORY)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise OSError(e.errno, f"resolve /{here} inside the root: {posix.strerror(e.errno)}") from None
                try:
                    posix.mkdir(part, mode, dir_fd=cur)
                except FileExistsError:
                    # a dangling symlink: restart from its target, read inside the root
                    links += 1
                    if links > 40:
                        raise OSError(errno.ELOOP, f"/{here}: too many levels of symbolic links") from None
                    target = posix.readlink(part, dir_fd=cur)
                    base = "/" if target.startswith("/") else _path_in_root(root_fd, cur)
                    todo = _components(clean(base + "/" + target)) + todo
                    done = []
                    posix.close(cur)
                    cur = posix.dup(root_fd)
                    continue
                nxt = posix.open(part, O_PATH | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=cur)
            done.append(part)
            posix.close(cur)
            cur = nxt
        return cur
    except BaseException:
        posix.close(cur)
        raise


def _longest_existing_prefix(root_fd: int, parts: list[str]) -> tuple[list[str], int]:
    """(the longest proper prefix of `parts` that resolves inside the root to a directory,
    an O_PATH fd of it): where mkdir_all_in_root's walk can start, which is usually just
    above the last component (a mount point in a fresh tmpfs). Resolving a prefix from the
    root in one go is what the walk would do for it component by component. Any failure but
    a missing component gives up: the walk starts at the root and reports it."""
    for end in range(len(parts) - 1, 0, -1):
        try:
            return parts[:end], open_in_root(root_fd, "/".join(parts[:end]), O_PATH | posix.O_DIRECTORY)
        except OSError as e:
            if e.errno != errno.ENOENT:
                break
    return [], posix.dup(root_fd)


def split_parent(path: str) -> tuple[str, str]:
    """("/a/b/c") -> ("/a/b", "c"); the root itself has no name."""
    cleaned = clean(path)
    if cleaned == "/":
        raise ValueError("the root itself has no parent")
    parent, name = cleaned.rsplit("/", 1)
    return parent or "/", name


def create_file_in_root(root_fd: int, path: str, mode: int = 0o644, _depth: int = 0) -> int:
    """Make sure `path` exists inside the root (for a file bind mount); return an O_PATH
    fd of it. An existing entry reached through in-root symlinks is used as is; a missing
    one is created (O_EXCL|O_NOFOLLOW) in its resolved parent; a dangling symlink is
    followed inside the root."""
    try:
        return open_in_root(root_fd, path)
    except FileNotFoundError:
        pass
    parent, name = split_parent(path)
    pfd = mkdir_all_in_root(root_fd, parent)
    try:
        try:
            wfd = posix.open(name, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW | posix.O_CLOEXEC, mode, dir_fd=pfd)
            posix.close(wfd)
        except FileExistsError:
            if _depth > 40:
                raise OSError(errno.ELOOP, f"{path}: too many levels of symbolic links") from None
            target = posix.readlink(name, dir_fd=pfd)
            base = "/" if target.startswith("/") else _path_in_root(root_fd, pfd)
            return create_file_in_root(root_fd, clean(base + "/" + target), mode, _depth + 1)
        return posix.open(name, O_PATH | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=pfd)
    finally:
        posix.close(pfd)


def replace_with_empty_file(dir_fd: int, name: str, mode: int = 0o644, keep=None) -> int:
    """In the directory `dir_fd` (already resolved inside the root), make `name` an empty
    regular file and return an O_PATH|O_NOFOLLOW fd of it. Whatever is in the way and
    is not acceptable (`keep(st)` false: a symlink, a fifo, ...) is unlinked first:
    unlinkat removes the link itself, never what it points to."""
    for _ in range(4):
        try:
            fd = posix.open(name, O_PATH | posix.O_NOFOLLOW | posix.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            fd = None
        if fd is not None:
            st = posix.fstat(fd)
            if stat.S_ISREG(st.st_mode) or (keep is not None and keep(st)):
                return fd
            posix.close(fd)
            if stat.S_ISDIR(st.st_mode):
                raise OSError(errno.EISDIR, f"{name} is a directory")
            posix.unlink(name, dir_fd=dir_fd)
        try:
            wfd = posix.open(name, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW | posix.O_CLOEXEC, mode, dir_fd=dir_fd)
            posix.close(wfd)
        except FileExistsError:
            continue
    raise OSError(errno.EAGAIN, f"{name} keeps changing under us")

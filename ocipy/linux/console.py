"""The container's terminal: a pty from the container's own devpts, its master sent to --console-socket.

Protocol (as runc, and as conmon and containerd's shim read it): connect to the
unix stream socket, one sendmsg with payload "/dev/ptmx" and exactly one
SCM_RIGHTS fd (the master), close. Never wait for a reply.
"""

from __future__ import annotations

import _socket  # the C module under `socket` (see ocipy/sync.py): `import socket` costs ~2 ms
import fcntl
import posix
import struct

from ..sync import received_fds, scm_rights
from . import syscalls


def open_pty(ptmx_path: str) -> tuple[int, int]:
    """Open a new pty through `ptmx_path` (the container's /dev/pts/ptmx): (master, slave)."""
    master = posix.open(ptmx_path, posix.O_RDWR | posix.O_NOCTTY | posix.O_CLOEXEC)
    fcntl.ioctl(master, syscalls.TIOCSPTLCK, struct.pack("i", 0))
    # TIOCGPTPEER opens the slave from the master itself: no path lookup to race.
    slave = fcntl.ioctl(master, syscalls.TIOCGPTPEER, posix.O_RDWR | posix.O_NOCTTY | posix.O_CLOEXEC)
    return master, slave


def set_size(fd: int, height: int, width: int) -> None:
    fcntl.ioctl(fd, syscalls.TIOCSWINSZ, syscalls.winsize(height, width))


def send_master(sock_fd: int, master: int) -> None:
    sock = _socket.socket(fileno=posix.dup(sock_fd))
    try:
        sock.sendmsg([b"/dev/ptmx"], scm_rights([master]))
    finally:
        sock.close()


def receive_master(sock) -> int:
    """The receiving side (used by `run` in the foreground with a terminal); `sock` is any socket object."""
    _msg, ancdata, _flags, _addr = sock.recvmsg(4096, _socket.CMSG_SPACE(struct.calcsize("i")))
    fds = received_fds(ancdata)
    if not fds:
        raise OSError("console socket: no pty master received")
    return fds[0]


def connect(path: str) -> _socket.socket:
    """A stream socket connected to the engine's --console-socket (a `_socket.socket`: fileno, sendmsg, close)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"connect to console socket {path}: {e.strerror}") from None
    return sock


def make_controlling_tty(slave: int) -> None:
    """slave becomes stdin/stdout/stderr and the controlling terminal of this session leader."""
    for fd in (0, 1, 2):
        posix.dup2(slave, fd)
    fcntl.ioctl(0, syscalls.TIOCSCTTY, 0)
    if slave > 2:
        posix.close(slave)

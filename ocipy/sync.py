"""The channel between `ocipy create` and the processes it forks: JSON messages on a SEQPACKET socket.

SEQPACKET keeps message boundaries and reports EOF when every child end is closed,
so the parent learns at once when a child dies without saying why. A message longer
than one packet may hold (create's setup message carries the whole config, and a
seccomp profile can make that hundreds of KiB) goes as a header packet, which starts
with a NUL byte (JSON never does) and gives the length, then the JSON in packets.

Sockets come from `_socket`, the C module under `socket`: its socket objects have
everything used here (sendmsg/recvmsg with SCM_RIGHTS), while `import socket`
costs ~2 ms (its enums) on every create.
"""

from __future__ import annotations

import _socket
import struct

from . import jsonfast

_FD_SIZE = struct.calcsize("i")
PACKET = 65536  # the most one packet carries, and what recv asks for
_LONG = struct.Struct("=cQ")  # header of a long message: NUL, its length in bytes


def scm_rights(fds) -> list[tuple]:
    """The ancillary data that passes `fds` with a sendmsg (what socket.send_fds sends)."""
    return [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]


def received_fds(ancdata) -> list[int]:
    """The fds a recvmsg received, from its ancillary data (as socket.recv_fds reads them)."""
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            count = len(data) // _FD_SIZE
            fds += struct.unpack(f"{count}i", data[: count * _FD_SIZE])
    return fds


def split_packets(data: bytes) -> list[bytes]:
    """Pure: `data` in packets of at most PACKET bytes."""
    return [data[i : i + PACKET] for i in range(0, len(data), PACKET)]


class Channel:
    def __init__(self, sock: _socket.socket):
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, msg: dict, fds: list[int] = ()) -> None:
        data = jsonfast.dumps(msg).encode()
        packets = [data] if len(data) <= PACKET else [_LONG.pack(b"\0", len(data)), *split_packets(data)]
        if fds:
            self.sock.sendmsg([packets[0]], scm_rights(fds))
        else:
            self.sock.send(packets[0])
        for packet in packets[1:]:
            self.sock.send(packet)

    def recv(self) -> tuple[dict | None, list[int]]:
        """The next message and any fds with it (at most 4); (None, []) at EOF."""
        data, ancdata, _flags, _addr = self.sock.recvmsg(PACKET, _socket.CMSG_LEN(4 * _FD_SIZE))
        fds = received_fds(ancdata)
        if not data:
            return None, []
        if data[:1] == b"\0":
            size = _LONG.unpack(data)[1]
            parts = []
            while size > 0:
                part = self.sock.recv(PACKET)
                if not part:
                    return None, []  # the sender died halfway
                parts.append(part)
                size -= len(part)
            data = b"".join(parts)
        return jsonfast.loads(data), fds

    def expect(self, kind: str) -> dict:
        msg, _ = self.recv()
        if msg is None:
            raise EOFError(f"channel closed while waiting for {kind!r}")
        if msg.get("type") == "error":
            raise ChildError(msg.get("msg", "unknown error"), hook=msg.get("hook", False))
        if msg.get("type") != kind:
            raise EOFError(f"expected {kind!r}, got {msg.get('type')!r}")
        return msg

    def close(self) -> None:
        self.sock.close()


class ChildError(Exception):
    """An error a child process reported over the channel."""

    def __init__(self, message: str, *, hook: bool = False):
        super().__init__(message)
        self.hook = hook  # a lifecycle hook failed (the lifecycle goes on with poststop)

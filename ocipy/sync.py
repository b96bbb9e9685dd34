"""The channel between `ocipy create` and the processes it forks: JSON messages on a SEQPACKET socket.

SEQPACKET keeps message boundaries and reports EOF when every child end is closed,
so the parent learns at once when a child dies without saying why.
"""

import json
import socket


class Channel:
    def __init__(self, sock: socket.socket):
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple["Channel", "Channel"]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, msg: dict, fds: list[int] = ()) -> None:
        data = json.dumps(msg).encode()
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            self.sock.send(data)

    def recv(self) -> tuple[dict | None, list[int]]:
        """The next message and any fds with it; (None, []) at EOF."""
        data, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, 4)
        if not data:
            return None, []
        return json.loads(data), fds

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

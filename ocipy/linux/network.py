"""Network namespace set-up: loopback up (as runc), and linux.netDevices (pyroute2, imported only then)."""

from __future__ import annotations

import _socket  # the C module under `socket` (see ocipy/sync.py): `import socket` costs ~2 ms
import fcntl
import struct

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def link_up(name: str) -> None:
    """Set an interface up in the current network namespace with two ioctls (no netlink library)."""
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        ifr = struct.pack("16sH14x", name.encode(), 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", name.encode(), flags | IFF_UP))
    except OSError as e:
        raise OSError(e.errno, f"set network interface {name} up: {e.strerror}") from None
    finally:
        s.close()


def loopback_up() -> None:
    """A new network namespace has its loopback up, as runc's does."""
    link_up("lo")


def move_devices(net_devices: dict, netns_path: str) -> None:
    """Move each host interface into the container's network namespace, renamed to `name` if given.

    One RTM_SETLINK carries both the target namespace and the new name, so the device
    never exists under the new name on the host (no clash with a host interface).
    """
    if not net_devices:
        return
    from pyroute2 import IPRoute  # heavy: only when netDevices is used

    with IPRoute() as ipr, open(netns_path) as ns:
        for host_name, dev in net_devices.items():
            found = ipr.link_lookup(ifname=host_name)
            if not found:
                raise OSError(f"linux.netDevices: no network interface named {host_name!r} on the host")
            args = {"index": found[0], "net_ns_fd": ns.fileno()}
            if dev.get("name"):
                args["ifname"] = dev["name"]
            ipr.link("set", **args)

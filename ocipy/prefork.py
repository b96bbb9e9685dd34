"""Stage 1 of create, forked before the rest of ocipy is imported.

create forks stage 1 (init.py) first: stage 1 imports the container side while the
parent imports and runs its own (validation, the state directory, the cgroup), and
acts on nothing before the parent's "setup" message. The CLI forks it earlier still,
before importing runtime and create. That matters twice over: stage 1 starts its
imports ~2.5 ms sooner, and both processes inherit a smaller heap, every page of
which each copies on its first write to it after the fork (~2.7 us a page on a VM).

This module imports only what the fork takes (posix, the channel, the JSON reader),
so that the CLI can call it first. A library caller of Runtime.create need not: create
forks stage 1 itself when it is given none.
"""

from __future__ import annotations

import posix

from . import jsonfast
from .sync import Channel


class Stage1:
    """A stage 1 forked for one create, and the config.json that create read to fork it.

    `pid` is 0 when no process was forked: the config needs stage 1 forked into the
    container's cgroup once that exists (see forks_into_cgroup). `config` is None when
    config.json could not be read or parsed; create reads it again to say why.
    """

    __slots__ = ("channel", "pid", "config")

    def __init__(self, channel: Channel | None, pid: int, config):
        self.channel = channel
        self.pid = pid
        self.config = config

    def take(self) -> tuple[Channel | None, int, object]:
        """(channel, pid, config), handed over once: create owns the process from then on."""
        taken = (self.channel, self.pid, self.config)
        self.channel, self.pid = None, 0
        return taken

    def abandon(self) -> None:
        """Let a stage 1 that create never took exit (it sees its channel close) and reap
        it. A no-op once taken."""
        channel, pid, _ = self.take()
        if channel is not None:
            channel.close()
        if pid:
            try:
                posix.waitpid(pid, 0)
            except ChildProcessError:
                pass


def start(bundle: str) -> Stage1:
    """Read `bundle`'s config.json and fork stage 1 now if it can be (forks_into_cgroup)."""
    config = read_config(bundle)
    if not forks_into_cgroup(config):
        return Stage1(None, 0, config)
    channel, pid, _ = fork()
    return Stage1(channel, pid, config)


def fork(how=None) -> tuple[Channel, int, bool]:
    """Fork stage 1 with a channel to it: (our end, its pid, whether it was born in the
    cgroup2 directory). `how`: a function that forks as launch.fork_in_cgroup does,
    returning (pid, born in the cgroup2 directory); None is a plain fork. The child goes
    on in _run_child."""
    parent_ch, child_ch = Channel.pair()
    try:
        pid, born_in_v2 = how() if how is not None else (posix.fork(), False)
    except BaseException:
        parent_ch.close()
        child_ch.close()
        raise
    if pid == 0:
        parent_ch.close()
        _run_child(child_ch)
    child_ch.close()
    return parent_ch, pid, born_in_v2


def _run_child(channel: Channel) -> None:
    """Stage 1's life after its fork: import the container side, wait for "setup", go on.
    Never returns."""
    try:
        from .init import stage1_awaiting_setup
    except BaseException as e:  # noqa: BLE001 - reported as init's other failures are
        try:
            channel.send({"type": "error", "msg": f"cannot load ocipy's container side: {e}"})
        finally:
            posix._exit(1)
    stage1_awaiting_setup(channel)
    posix._exit(1)


def read_config(bundle: str):
    """config.json parsed, or None for bundle.load_config to read again and say what is wrong
    (bundle.py and its schema are not imported yet)."""
    try:
        with open(f"{bundle}/config.json", "rb") as f:
            return jsonfast.loads(f.read().decode())
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return None


def forks_into_cgroup(config) -> bool:
    """Pure: whether stage 1 can fork pid 1 straight into the container's cgroup2 directory
    (init._fork_pid1), and so be forked before that directory exists. It can while it
    keeps the host's credentials and cgroup namespace: not with a user namespace, made or
    joined (the kernel checks a birth in a cgroup against the forker's credentials), nor
    with a cgroup namespace joined by path. Anything unreadable says yes: validation is
    what reports it."""
    try:
        return not any(ns.get("type") == "user" or (ns.get("type") == "cgroup" and ns.get("path"))
                       for ns in config["linux"]["namespaces"])
    except (KeyError, TypeError, AttributeError):
        return True

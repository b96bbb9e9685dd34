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
    returning (pid, born in the cgroup2 directory); None is a plain fork, whose child we
    then keep off our CPU while both work (keep_apart). The child goes on in _run_child."""
    parent_ch, child_ch = Channel.pair()
    cpus = _affinity() if how is None else None
    apart = away_from_us(cpus) if cpus is not None else None
    try:
        pid, born_in_v2 = how() if how is not None else (posix.fork(), False)
    except BaseException:
        parent_ch.close()
        child_ch.close()
        raise
    if pid == 0:
        parent_ch.close()
        _run_child(child_ch, cpus)
    if apart is not None:
        keep_apart(pid, apart)
    child_ch.close()
    return parent_ch, pid, born_in_v2


def _run_child(channel: Channel, cpus: set[int] | None) -> None:
    """Stage 1's life after its fork: import the container side, wait for "setup", go on.
    Never returns."""
    try:
        if cpus is not None:
            step_aside(cpus)
        rejoin = cpu_rejoin(cpus) if cpus is not None else None
        from .init import stage1_awaiting_setup
    except BaseException as e:  # noqa: BLE001 - reported as init's other failures are
        try:
            channel.send({"type": "error", "msg": f"cannot load ocipy's container side: {e}"})
        finally:
            posix._exit(1)
    stage1_awaiting_setup(channel, rejoin)
    posix._exit(1)


# --- the two halves of create on two CPUs ----------------------------------------------------
def away_from_us(cpus: set[int]) -> set[int] | None:
    """The CPUs for a stage 1 about to be forked, to keep it off the CPU we run on while both
    work (keep_apart), or None to leave it where the scheduler puts it: when no CPU is free
    for it (spare_cpu), or on any error. `cpus`: our affinity. Read before the fork: after
    it, every page these reads touch is copied first (~3 us each), while stage 1 waits on
    our CPU to be moved."""
    try:
        if not spare_cpu(cpus, posix.cpu_count(), _runnable_now() + 1):  # + the child to come
            return None
        return cpus - {_current_cpu()}
    except (OSError, ValueError, IndexError):
        return None


def keep_apart(pid: int, apart: set[int]) -> bool:
    """Move the just-forked stage 1 (`pid`) to the CPUs `apart` (away_from_us): the parent's
    first act after the fork. Stage 1 gives itself every CPU back (cpu_rejoin). Whether it
    was moved.

    From the fork to the setup both processes have ~8 ms of CPU work: we validate and make
    the cgroup, stage 1 imports the container side. A scheduler may still place a new
    child on its parent's CPU while another is idle: this 2-vCPU VM's kernel, which packs
    tasks onto few vCPUs, did in ~40% of forks, and the two then took turns for a tick
    (~4 ms) before one was moved. Kept apart, create takes ~2 ms less (paired medians of
    60-80 creates; start and delete within noise; the container unchanged). With no CPU to
    spare (20 runs at once on 2 CPUs), moving it would only cost: 3% more wall time,
    measured. A scheduler that spreads them anyway makes this a no-op.

    Until it is moved, a stage 1 placed on our CPU waits, so the decision is taken before
    the fork: taken after it, stage 1 first ran a median 0.50 ms after its fork, against
    0.14 ms now (perf sched, 40 creates). A child that runs before we get here moves
    itself (step_aside).
    """
    try:
        posix.sched_setaffinity(pid, apart)
        return True
    except OSError:
        return False


def step_aside(cpus: set[int]) -> bool:
    """keep_apart from stage 1's side, first thing after its fork: if we run on the CPU our
    parent is on, move ourselves off it (under the same conditions). Whether we moved.

    The scheduler may let a new child take its parent's CPU on the spot (EEVDF does when the
    child's first deadline comes before what is left of the parent's slice): the parent then
    waited a tick (~4 ms), with the other CPU idle, before it could keep us apart, in 6 of
    40 creates on this VM (perf sched); none since. Whichever of the two runs first moves
    us, to the same CPUs."""
    try:
        here = _current_cpu()
        if _cpu_of(posix.getppid()) != here or not spare_cpu(cpus, posix.cpu_count(), _runnable_now()):
            return False
        posix.sched_setaffinity(0, cpus - {here})
        return True
    except (OSError, ValueError, IndexError):
        return False


def spare_cpu(cpus: set[int], online: int | None, runnable: int) -> bool:
    """Pure: whether to keep stage 1 apart. `cpus`: the caller's affinity, to be given back
    unchanged; `online`: how many CPUs are online; `runnable`: tasks runnable right now,
    us and stage 1 included. Only where the caller may run on every online CPU (cpu_rejoin
    gives back just that), more than one, and fewer other tasks want one than there are
    CPUs: one passing task (a kworker, the caller) is no load, 20 creates at once are."""
    return 1 < len(cpus) == (online or 0) and runnable - 2 < len(cpus)


def _affinity() -> set[int] | None:
    try:
        return posix.sched_getaffinity(0)
    except OSError:
        return None


def _runnable_now() -> int:
    with open("/proc/loadavg", "rb") as f:  # "0.74 0.96 0.98 2/180 12345": 2 runnable now
        return int(f.read().split()[3].partition(b"/")[0])


def _current_cpu() -> int:
    return _cpu_of("thread-self")


def _cpu_of(pid) -> int:
    """The CPU task `pid` ("thread-self": we) runs on, or waits for, or last ran on."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rpartition(b")")[2].split()[36])  # field 39, after the command's ")"


def cpu_rejoin(inherited: set[int]):
    """For stage 1, which inherited the affinity `inherited`: a function to call when its
    own work is done and again once it has the setup (by then keep_apart is over). If it
    was kept apart, the function allows it every possible CPU again, before it joins the
    cgroup and forks pid 1. Every CPU, not `inherited`: the kernel keeps the request
    (user_cpus_ptr, Linux 6.2+) and intersects each later cpuset with it, so only every
    CPU asks for nothing, as the caller did. Read here, while stage 1 works in parallel."""
    every = _possible_cpus() or inherited

    def rejoin() -> None:
        if posix.sched_getaffinity(0) != inherited:
            posix.sched_setaffinity(0, every)

    return rejoin


def _possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> set[int] | None:
    """The CPUs this kernel could ever run ("0-3,8"), or None if unreadable."""
    try:
        with open(path, "rb") as f:
            return parse_cpu_list(f.read().decode())
    except (OSError, ValueError):
        return None


def parse_cpu_list(text: str) -> set[int]:
    """Pure: a kernel CPU list ("0-3,8-11", "0") -> its CPU numbers. ValueError if malformed."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        first, dash, last = part.partition("-")
        cpus.update(range(int(first), int(last if dash else first) + 1))
    return cpus


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

"""Runtimes, the host (temp dirs, bundles, cgroups, cleanup) and the benchmark scenarios.

Every command runs with stdin on /dev/null and stdout/stderr in a file (never a pipe:
a detached container keeps its stdio open), is waited with os.wait4 for its rusage
(ru_maxrss, KiB) and is killed after a timeout. A command that exits non-zero raises
CommandFailed, which makes the whole scenario FAILED for the report.
"""

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass

CGROUP_PARENT = "ocipy-bench"
SLEEP_ARGS = ["sleep", "100000"]


class CommandFailed(Exception):
    """A runtime command exited non-zero (or timed out): the scenario cannot be reported."""

    def __init__(self, runtime, argv, rc, output):
        self.runtime = runtime
        self.argv = list(argv)
        self.rc = rc
        self.output = output
        super().__init__(self.describe())

    def describe(self):
        tail = " ".join(self.output.strip().split())[-300:]
        what = "timed out" if self.rc is None else f"exit {self.rc}"
        return f"{self.runtime}: `{' '.join(self.argv[1:])}` {what}: {tail}"


@dataclass
class Outcome:
    rc: int | None  # None: killed after the timeout
    wall: float  # seconds
    maxrss: int  # KiB, ru_maxrss of the command (and its reaped descendants)
    output: str


def _kill_tree(pid):
    """SIGKILL `pid` and its direct children (the launcher's command)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        children = []
    for p in children + [pid]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait(pid, deadline):
    """wait4 `pid`, killing it at `deadline` (monotonic); return (rc or None, rusage)."""
    fd = os.pidfd_open(pid)
    try:
        timed_out = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill_tree(pid)
                timed_out = True
                break
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                break
    finally:
        os.close(fd)
    _, status, rusage = os.wait4(pid, 0)
    return (None if timed_out else os.waitstatus_to_exitcode(status)), rusage


def build_launcher(source, dest):
    """Compile maxrss.c (static when possible); None when there is no C compiler."""
    for extra in (["-static"], []):
        try:
            r = subprocess.run(["gcc", "-O2", *extra, "-o", dest, source], capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if r.returncode == 0:
            return dest
    return None


class Spawner:
    """Starts commands with their output in files under `logdir` and times them.

    With `launcher` (the compiled maxrss.c) every command is started through it, so that its
    ru_maxrss is its own and not the Python parent's; the wall time is then taken by the
    launcher around fork+exec+wait of the command. Without it: wall time and wait4 rusage here."""

    def __init__(self, logdir, timeout=60.0, launcher=None):
        self.logdir = logdir
        self.timeout = timeout
        self.launcher = launcher
        self._n = 0

    def spawn(self, argv):
        """Start `argv`; return (pid, log path, start time)."""
        self._n += 1
        log = os.path.join(self.logdir, f"cmd-{self._n}.log")
        if self.launcher:
            argv = [self.launcher, log + ".rusage"] + list(argv)
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            actions = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, out, 2)]
            t0 = time.perf_counter()
            pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
        finally:
            os.close(out)
            os.close(null)
        return pid, log, t0

    def finish(self, pid, log, t0, deadline=None):
        rc, rusage = _wait(pid, deadline if deadline is not None else time.monotonic() + self.timeout)
        wall = time.perf_counter() - t0
        maxrss = rusage.ru_maxrss
        with open(log, errors="replace") as f:
            output = f.read()
        os.unlink(log)
        if self.launcher:
            try:
                with open(log + ".rusage") as f:
                    code, ns, maxrss = (int(v) for v in f.read().split())
                os.unlink(log + ".rusage")
                wall = ns / 1e9
                rc = code if rc is not None else None
            except (OSError, ValueError):  # killed, or the launcher itself failed
                rc = None if rc is None else (rc or 127)
        return Outcome(rc, wall, maxrss, output)

    def run(self, argv):
        return self.finish(*self.spawn(argv))


class Runtime:
    """One runtime under test: its command, its own temporary --root, and the containers it holds."""

    def __init__(self, name, command, root, spawner):
        self.name = name
        self.command = list(command)
        self.root = root
        self.spawner = spawner

    def argv(self, *args):
        return self.command + ["--root", self.root] + [str(a) for a in args]

    def invoke(self, *args, ok_codes=(0,)):
        """Run one runtime command; CommandFailed unless it exits with one of `ok_codes`."""
        argv = self.argv(*args)
        out = self.spawner.run(argv)
        if out.rc not in ok_codes:
            raise CommandFailed(self.name, argv, out.rc, out.output)
        return out

    def container_ids(self):
        try:
            return sorted(e for e in os.listdir(self.root) if os.path.isdir(os.path.join(self.root, e)))
        except FileNotFoundError:
            return []


def _read_cgroup_bases():
    """Every cgroup hierarchy mounted under /sys/fs/cgroup, with this process's own path in it."""
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            own[controllers] = path
    bases = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            mountpoint = left.split()[4]
            fstype, _, options = right.split()[:3]
            if not mountpoint.startswith("/sys/fs/cgroup"):
                continue
            if fstype == "cgroup2":
                bases.append((mountpoint, own.get("", "/")))
            elif fstype == "cgroup":
                opts = set(options.split(","))
                path = next((p for c, p in own.items() if c and set(c.split(",")) <= opts), "/")
                bases.append((mountpoint, path))
    return bases


class Host:
    """The temporary world of one benchmark run: rootfs, bundles, roots, cgroups; and its cleanup."""

    def __init__(self, tmpdir=None):
        self.tmp = tmpdir or tempfile.mkdtemp(prefix="ocipy-bench-")
        self.run_id = uuid.uuid4().hex[:12]
        self.cgroup_rel = f"{CGROUP_PARENT}/{self.run_id}"
        self.rootfs = None
        self.runtimes = []
        self._n = 0
        os.makedirs(os.path.join(self.tmp, "bundles"), exist_ok=True)
        os.makedirs(os.path.join(self.tmp, "logs"), exist_ok=True)

    def build_rootfs(self):
        from bundles.rootfs import build_busybox_rootfs

        self.rootfs = build_busybox_rootfs(os.path.join(self.tmp, "rootfs"))
        return self.rootfs

    def add_runtime(self, name, command, spawner):
        root = os.path.join(self.tmp, f"root-{name}")
        os.makedirs(root, mode=0o700)
        rt = Runtime(name, command, root, spawner)
        self.runtimes.append(rt)
        return rt

    def new_id(self, prefix):
        self._n += 1
        return f"{prefix}-{self._n}-{uuid.uuid4().hex[:6]}"

    def bundle(self, cid, args, resources=None, seccomp=None):
        """A bundle dir for container `cid`: the default spec config (as `runc spec`, terminal off)
        running `args` on the shared busybox rootfs, with its own relative cgroupsPath (and
        `resources` merged into linux.resources, `seccomp` as linux.seccomp)."""
        from ocipy.defaults import default_config

        config = default_config(terminal=False, args=list(args))
        config["root"]["path"] = self.rootfs
        config["linux"]["cgroupsPath"] = f"{self.cgroup_rel}/{cid}"
        if resources:
            config["linux"].setdefault("resources", {}).update(resources)
        if seccomp:
            config["linux"]["seccomp"] = seccomp
        path = os.path.join(self.tmp, "bundles", cid)
        os.makedirs(path)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(config, f)
        return path

    def pid_file(self, cid):
        return os.path.join(self.tmp, "bundles", cid, "pid")

    def cgroup_dirs(self, cid=None):
        """Existing dirs of this run's cgroup parent (or of container `cid`) in every hierarchy."""
        rel = self.cgroup_rel if cid is None else f"{self.cgroup_rel}/{cid}"
        found = []
        for mountpoint, own in _read_cgroup_bases():
            for base in {os.path.join(mountpoint, own.lstrip("/")), mountpoint}:
                d = os.path.join(base, rel)
                if os.path.isdir(d) and d not in found:
                    found.append(d)
        return found

    def cleanup(self, log=print):
        """Delete every container, kill strays in our cgroups, remove cgroups, mounts and temp dirs.
        Returns a list of what could not be removed."""
        left = []
        for rt in self.runtimes:
            for cid in rt.container_ids():
                try:
                    rt.spawner.run(rt.argv("delete", "--force", cid))
                except Exception as e:  # keep cleaning
                    log(f"cleanup: {rt.name} delete --force {cid}: {e}")
        dirs = self.cgroup_dirs()
        for attempt in range(3):
            pids = set()
            for d in dirs:
                for sub, _, _ in os.walk(d):
                    try:
                        with open(os.path.join(sub, "cgroup.procs")) as f:
                            pids.update(int(p) for p in f.read().split())
                    except (OSError, ValueError):
                        pass
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        for d in dirs:
            for sub, _, _ in sorted(os.walk(d), key=lambda w: -w[0].count("/")):
                for _ in range(20):
                    try:
                        os.rmdir(sub)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.05)
                else:
                    left.append(f"cgroup {sub}")
            try:  # the shared parent, when no other run uses it
                os.rmdir(os.path.dirname(d))
            except OSError:
                pass
        mounts = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mountpoint = line.split()[4]
                if mountpoint == self.tmp or mountpoint.startswith(self.tmp + "/"):
                    mounts.append(mountpoint)
        for mountpoint in reversed(mounts):
            if os.system(f"umount -l '{mountpoint}' 2>/dev/null") != 0:
                left.append(f"mount {mountpoint}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        if os.path.exists(self.tmp):
            left.append(f"dir {self.tmp}")
        return left


def wait_gone(pid, timeout=10.0):
    """Wait until `pid` has exited (gone or a zombie)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.002)
    return False


def read_pid(path):
    with open(path) as f:
        return int(f.read().strip())


def smaps_rollup(pid):
    """{field: KiB} from /proc/<pid>/smaps_rollup."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1])
    return fields


def pss_kib(pid):
    """Pss (KiB) of `pid` from /proc/<pid>/smaps_rollup."""
    pss = smaps_rollup(pid).get("Pss")
    if pss is None:
        raise ValueError(f"no Pss in /proc/{pid}/smaps_rollup")
    return pss


def uss_kib(pid):
    """Private memory (Private_Clean + Private_Dirty, KiB) of `pid`: what each more container costs."""
    f = smaps_rollup(pid)
    return f.get("Private_Clean", 0) + f.get("Private_Dirty", 0)


def mem_available_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return None


MIN_AVAILABLE_KIB = 2 * 1024 * 1024  # the list set-up stops (FAILED) rather than push the host into OOM
PER_CONTAINER_PAIR_KIB = 26 * 1024  # measured USS of one created container, ocipy + runc


# ---------------------------------------------------------------- scenarios

class Scenario:
    """A benchmark: setup per runtime, then alternating measure() calls; each returns {row: value}.

    rows: [(row name, unit, target for ocipy/runc or None, report the ratio to the bare start)]
    """

    name = ""
    rows = []
    heavy = False  # uses --heavy-rounds and a single warm-up `run`
    exclusive = False  # one runtime after the other (set-up, rounds, tear-down): too big to hold both at once
    note = None

    def __init__(self, host):
        self.host = host
        self.ctx = {}

    def setup(self, rt):
        pass

    def measure(self, rt):
        raise NotImplementedError

    def warmup(self, rt):
        self.measure(rt)

    def teardown(self, rt):
        pass

    # helpers
    def start_running(self, rt, prefix):
        """create + start a sleeping container (untimed); return its id."""
        cid = self.host.new_id(prefix)
        rt.invoke("create", "--bundle", self.host.bundle(cid, SLEEP_ARGS), "--pid-file", self.host.pid_file(cid), cid)
        rt.invoke("start", cid)
        return cid

    def force_delete(self, rt, cid):
        rt.invoke("delete", "--force", cid)


class BareStart(Scenario):
    """The reference: `<ocipy's python> -I -S -c pass`. Measured once per round (not per runtime), at the
    start of the run and in every round of a scenario with rows compared to it."""

    name = "bare-python"
    rows = [("bare python start", "ms", None, False)]

    def __init__(self, host, python, spawner):
        super().__init__(host)
        self.argv = [python, "-I", "-S", "-c", "pass"]
        self.spawner = spawner

    def measure(self, rt=None):
        out = self.spawner.run(self.argv)
        if out.rc != 0:
            raise CommandFailed("python", self.argv, out.rc, out.output)
        return {"bare python start": out.wall * 1000}


class Run(Scenario):
    name = "run"
    rows = [("run", "ms", 1.0, False), ("peak RSS run", "KiB", None, False)]

    def measure(self, rt):
        cid = self.host.new_id("run")
        out = rt.invoke("run", "--bundle", self.host.bundle(cid, ["true"]), cid)
        return {"run": out.wall * 1000, "peak RSS run": out.maxrss}


# The config docker wrote for `docker run -d` on this machine (../shared beside the repository).
DOCKER_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir, "shared", "corpus",
                             "engines", "docker-run-d.config.json")


def docker_seccomp_profile(path=DOCKER_CONFIG):
    """The seccomp profile docker gives every container, or None without that file."""
    try:
        with open(path) as f:
            return json.load(f)["linux"]["seccomp"]
    except (OSError, ValueError, KeyError):
        return None


class SeccompRun(Scenario):
    """`run` of a `true` container with docker's default seccomp profile (~360 rules, three
    architectures), as every docker and podman container has one. Both runtimes load it through
    libseccomp; ocipy builds its program once per state root and keeps it
    (ocipy/linux/seccomp_cache.py), which the warm-up round does."""

    name = "run-seccomp"
    rows = [("run, docker's seccomp profile", "ms", 1.0, False)]

    def __init__(self, host, profile):
        super().__init__(host)
        self.profile = profile

    def measure(self, rt):
        cid = self.host.new_id("sec")
        out = rt.invoke("run", "--bundle", self.host.bundle(cid, ["true"], seccomp=self.profile), cid)
        return {"run, docker's seccomp profile": out.wall * 1000}


class Lifecycle(Scenario):
    """create + start + delete of a `true` container; delete once it has exited (the wait is untimed)."""

    name = "create-start-delete"
    rows = [("create+start+delete", "ms", 1.0, False), ("create", "ms", None, False), ("start", "ms", None, True),
            ("delete", "ms", None, True), ("peak RSS create", "KiB", None, False)]

    def measure(self, rt):
        cid = self.host.new_id("csd")
        pid_file = self.host.pid_file(cid)
        c = rt.invoke("create", "--bundle", self.host.bundle(cid, ["true"]), "--pid-file", pid_file, cid)
        pid = read_pid(pid_file)
        s = rt.invoke("start", cid)
        if not wait_gone(pid):
            raise CommandFailed(rt.name, ["", "start", cid], None, "the container's `true` did not exit in 10 s")
        d = rt.invoke("delete", cid)
        return {"create+start+delete": (c.wall + s.wall + d.wall) * 1000, "create": c.wall * 1000,
                "start": s.wall * 1000, "delete": d.wall * 1000, "peak RSS create": c.maxrss}


# A resources block of the kind engines send, limited to what both runtimes can apply on a v1 or
# hybrid host (the default spec's device rules stay as they are).
FULL_RESOURCES = {
    "memory": {"limit": 256 << 20, "reservation": 128 << 20, "swap": 512 << 20, "swappiness": 10},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
    "pids": {"limit": 100},
    "blockIO": {"weight": 300},
}

# The knobs the kernel may lack (a build option or an I/O scheduler): the v1 files that carry
# them, and the cgroup2 controller that does. Neither runtime can apply a missing one (both fail).
OPTIONAL_KNOBS = [
    (("blockIO", "weight"), ["blkio/blkio.weight", "blkio/blkio.bfq.weight"], "io"),
    (("memory", "swap"), ["memory/memory.memsw.limit_in_bytes"], "memory"),
    (("memory", "swappiness"), ["memory/memory.swappiness"], None),
]


def _cgroup2_controllers(cgroup_root: str) -> list[str]:
    """The controllers of the cgroup2 hierarchy (pure v2 at the root, a hybrid host's unified)."""
    for path in (os.path.join(cgroup_root, "cgroup.controllers"), os.path.join(cgroup_root, "unified", "cgroup.controllers")):
        try:
            with open(path) as f:
                return f.read().split()
        except OSError:
            pass
    return []


def host_resources(cgroup_root="/sys/fs/cgroup", full=FULL_RESOURCES):
    """FULL_RESOURCES without the knobs this host's cgroups do not offer, and the JSON paths of those
    left out. A knob is offered if one of its v1 files exists at the root of its hierarchy (a v1
    child cgroup has the root's files), or if its controller is in the cgroup2 hierarchy (whose
    root lacks io.weight and memory.swap.max: those are for child cgroups only)."""
    resources = {section: dict(values) for section, values in full.items()}
    v2 = _cgroup2_controllers(cgroup_root)
    omitted = []
    for (section, key), v1_files, controller in OPTIONAL_KNOBS:
        offered = any(os.path.exists(os.path.join(cgroup_root, f)) for f in v1_files) or controller in v2
        if key in resources.get(section, {}) and not offered:
            del resources[section][key]
            omitted.append(f"linux.resources.{section}.{key}")
    return {section: values for section, values in resources.items() if values}, omitted


class ResourcesLifecycle(Scenario):
    """create + delete --force of a container with a full linux.resources block: the cost of
    making, filling and removing its cgroups."""

    name = "resources-create-delete"
    rows = [("create+delete, full resources", "ms", 1.0, False)]

    def __init__(self, host):
        super().__init__(host)
        self.resources, omitted = host_resources()
        if omitted:
            self.note = "left out, this host's cgroups lack them: " + ", ".join(omitted)

    def measure(self, rt):
        cid = self.host.new_id("res")
        c = rt.invoke("create", "--bundle", self.host.bundle(cid, SLEEP_ARGS, resources=self.resources), cid)
        d = rt.invoke("delete", "--force", cid)
        return {"create+delete, full resources": (c.wall + d.wall) * 1000}


class State(Scenario):
    name = "state"
    rows = [("state (running)", "ms", None, True), ("peak RSS state", "KiB", None, False)]

    def setup(self, rt):
        self.ctx[rt.name] = self.start_running(rt, "state")

    def measure(self, rt):
        out = rt.invoke("state", self.ctx[rt.name])
        return {"state (running)": out.wall * 1000, "peak RSS state": out.maxrss}

    def teardown(self, rt):
        if rt.name in self.ctx:
            self.force_delete(rt, self.ctx.pop(rt.name))


class Kill(Scenario):
    """`kill <id> KILL` of a running container (a new one each time; create/start/delete untimed)."""

    name = "kill"
    rows = [("kill (running)", "ms", None, True)]

    def measure(self, rt):
        cid = self.start_running(rt, "kill")
        pid = read_pid(self.host.pid_file(cid))
        try:
            out = rt.invoke("kill", cid, "KILL")
        finally:
            wait_gone(pid)
            self.force_delete(rt, cid)
        return {"kill (running)": out.wall * 1000}


class Exec(Scenario):
    name = "exec"
    rows = [("exec true", "ms", 1.0, False)]

    def setup(self, rt):
        self.ctx[rt.name] = self.start_running(rt, "exec")

    def measure(self, rt):
        return {"exec true": rt.invoke("exec", self.ctx[rt.name], "true").wall * 1000}

    def teardown(self, rt):
        if rt.name in self.ctx:
            self.force_delete(rt, self.ctx.pop(rt.name))


class List(Scenario):
    """`list` with `count` containers in `created` state (created once in setup)."""

    def __init__(self, host, count):
        super().__init__(host)
        self.count = count
        self.name = f"list-{count}"
        self.row = f"list ({count} created)"
        # The bare-start target is for one container; with more, list grows with the count.
        self.rows = [(self.row, "ms", None, count == 1)]
        # created containers hold their blocked pid 1: about 16 MiB (ocipy) + 9 MiB (runc) private each
        available = mem_available_kib()
        if available is not None and count * PER_CONTAINER_PAIR_KIB > available - MIN_AVAILABLE_KIB:
            self.exclusive = True
            self.note = "one runtime at a time (both sets would not fit in memory)"

    def setup(self, rt):
        ids = self.ctx.setdefault(rt.name, [])
        for i in range(self.count):
            if i % 20 == 0:
                available = mem_available_kib()
                if available is not None and available < MIN_AVAILABLE_KIB:
                    raise CommandFailed(rt.name, ["", "create"], None,
                                        f"set-up stopped after {i} containers: MemAvailable {available // 1024} MiB")
            cid = self.host.new_id("list")
            rt.invoke("create", "--bundle", self.host.bundle(cid, SLEEP_ARGS), cid)
            ids.append(cid)

    def measure(self, rt):
        out = rt.invoke("list")
        listed = sum(1 for line in out.output.splitlines()[1:] if line.strip())
        if listed != self.count:
            raise CommandFailed(rt.name, rt.argv("list"), out.rc, f"listed {listed} containers, expected {self.count}")
        return {self.row: out.wall * 1000}

    def teardown(self, rt):
        for cid in self.ctx.pop(rt.name, []):
            self.force_delete(rt, cid)


class CreatedMemory(Scenario):
    """Pss of the blocked pid 1 of a `created` container (runc: `runc init`), and of all its cgroup's processes."""

    name = "created-memory"
    rows = [("Pss created init", "KiB", None, False), ("USS created init", "KiB", None, False),
            ("Pss created container (cgroup)", "KiB", None, False)]

    def measure(self, rt):
        cid = self.host.new_id("mem")
        pid_file = self.host.pid_file(cid)
        rt.invoke("create", "--bundle", self.host.bundle(cid, SLEEP_ARGS), "--pid-file", pid_file, cid)
        try:
            time.sleep(0.2)  # let the blocked init settle
            pid = read_pid(pid_file)
            init = pss_kib(pid)
            private = uss_kib(pid)
            pids = set()
            for d in self.host.cgroup_dirs(cid):
                try:
                    with open(os.path.join(d, "cgroup.procs")) as f:
                        pids.update(int(p) for p in f.read().split())
                except OSError:
                    pass
            pids.add(pid)
            total = sum(pss_kib(p) for p in pids)
        finally:
            self.force_delete(rt, cid)
        return {"Pss created init": init, "USS created init": private, "Pss created container (cgroup)": total}


class Sequential(Scenario):
    heavy = True

    def __init__(self, host, count):
        super().__init__(host)
        self.count = count
        self.name = f"sequential-{count}"
        self.row = f"{count} x run, sequential"
        self.rows = [(self.row, "s", None, False)]

    def warmup(self, rt):
        Run.measure(self, rt)

    def measure(self, rt):
        total = 0.0
        for _ in range(self.count):
            cid = self.host.new_id("seq")
            total += rt.invoke("run", "--bundle", self.host.bundle(cid, ["true"]), cid).wall
        return {self.row: total}


class Parallel(Scenario):
    """`count` runs started at once, all pinned to `cpus`; wall time until the last one exits."""

    heavy = True

    def __init__(self, host, count, cpus):
        super().__init__(host)
        self.count = count
        self.cpus = set(cpus)
        self.name = f"parallel-{count}"
        self.row = f"{count} x run at once on {len(self.cpus)} CPUs"
        self.rows = [(self.row, "s", None, False)]

    def warmup(self, rt):
        Run.measure(self, rt)

    def measure(self, rt):
        argvs = []
        for _ in range(self.count):
            cid = self.host.new_id("par")
            argvs.append(rt.argv("run", "--bundle", self.host.bundle(cid, ["true"]), cid))
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.cpus)  # inherited by the runtimes and their containers
        try:
            t0 = time.perf_counter()
            started = [rt.spawner.spawn(argv) for argv in argvs]
        finally:
            os.sched_setaffinity(0, before)
        deadline = time.monotonic() + rt.spawner.timeout
        outs = [rt.spawner.finish(*s, deadline=deadline) for s in started]
        wall = time.perf_counter() - t0
        for argv, out in zip(argvs, outs):
            if out.rc != 0:
                raise CommandFailed(rt.name, argv, out.rc, out.output)
        return {self.row: wall}

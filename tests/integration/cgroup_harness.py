"""The harness shared by the cgroup manager tests (v1 and v2): a child process the tests move
between cgroups and ask to do things (tick, allocate, fork, open devices), and a fixture that
asserts no ocipy-test* cgroup and no child process is left behind."""

import os
import select
import subprocess
import sys

import pytest

from ocipy.linux import cgroups as cg

HIERARCHIES = cg.host_hierarchies()

CHILD = r"""
import os, sys, time
def say(s):
    sys.stdout.write(s + "\n"); sys.stdout.flush()
say("ready")
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    try:
        if cmd == "open":
            os.close(os.open(arg, os.O_RDWR)); say("ok")
        elif cmd == "fork":
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0); say("ok")
        elif cmd == "alloc":
            b = bytearray(int(arg) << 20)
            for i in range(0, len(b), 4096):
                b[i] = 1
            globals()["keep"] = b
            say("ok")
        elif cmd == "probe":
            import json, stat
            out = []
            for kind, path, acc in json.loads(arg):
                try:
                    if acc == "m":
                        st = os.stat(path)
                        mode = (stat.S_IFCHR if kind == "c" else stat.S_IFBLK) | 0o600
                        os.mknod(path + ".mk", mode, st.st_rdev)
                        os.unlink(path + ".mk")
                    else:
                        flags = (os.O_RDONLY if acc == "r" else os.O_WRONLY) | os.O_NONBLOCK | os.O_NOCTTY
                        os.close(os.open(path, flags))
                    out.append("allow")
                except OSError as e:
                    out.append("deny" if e.errno == 1 else "allow")
            say(json.dumps(out))
        elif cmd == "tick":
            n = 0
            while True:
                n += 1; say(str(n)); time.sleep(0.01)
    except OSError as e:
        say("err %d" % e.errno)
"""


class Child:
    def __init__(self):
        self.p = subprocess.Popen([sys.executable, "-I", "-S", "-c", CHILD], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.readline() == "ready"

    @property
    def pid(self):
        return self.p.pid

    def readline(self, timeout=10.0):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            raise TimeoutError("child did not answer")
        return self.p.stdout.readline().strip()

    def ask(self, cmd, timeout=10.0):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        return self.readline(timeout)

    def readable(self, timeout):
        return bool(select.select([self.p.stdout], [], [], timeout)[0])

    def drain(self):
        fd = self.p.stdout.fileno()
        os.set_blocking(fd, False)
        try:
            while True:
                try:
                    if not os.read(fd, 65536):
                        break
                except BlockingIOError:
                    break
        finally:
            os.set_blocking(fd, True)

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(10)
        for f in (self.p.stdin, self.p.stdout):
            try:
                f.close()
            except OSError:
                pass


def ocipy_test_cgroups():
    found = set()
    for h in cg.host_hierarchies():
        for dirpath, dirnames, _ in os.walk(h.mountpoint):
            for d in dirnames:
                if d.startswith("ocipy-test"):
                    found.add(os.path.join(dirpath, d))
    return found


def live_children():
    me = str(os.getpid())
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            out.append(int(pid))
    return out


@pytest.fixture
def clean_host():
    before = ocipy_test_cgroups()
    unified = [h.mountpoint for h in HIERARCHIES if h.version == 2]
    saved_subtree = None
    if unified:
        with open(os.path.join(unified[0], "cgroup.subtree_control")) as f:
            saved_subtree = f.read().split()
    children = []
    yield children
    for c in children:
        c.close()
    if saved_subtree is not None:
        # hybrid hugetlb enables controllers in the unified root: put it back as we found it
        path = os.path.join(unified[0], "cgroup.subtree_control")
        with open(path) as f:
            now = f.read().split()
        for c in now:
            if c not in saved_subtree:
                try:
                    with open(path, "w") as f:
                        f.write("-" + c)
                except OSError:
                    pass
    left = ocipy_test_cgroups() - before
    assert not left, f"cgroups left behind: {sorted(left)}"
    assert live_children() == [], "child processes left behind"


def spawn(children):
    c = Child()
    children.append(c)
    return c



def read(path):
    with open(path) as f:
        return f.read().strip()

"""The CPUs a container may run on are what its caller and its cpuset allow, whatever
create does with stage 1's affinity on the way (prefork.keep_apart keeps stage 1 off the
parent's CPU until it has the setup; cpu_rejoin gives every CPU back).

Each test reads Cpus_allowed_list as the container's own process sees it, and compares it
with what the caller (this test, or a narrowed child of it) has.
"""

import json
import os

import pytest

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]

OURS = os.sched_getaffinity(0)
two_cpus = pytest.mark.skipif(len(OURS) < 2, reason="needs a caller allowed on 2 CPUs or more")


def cpu_list(cpus) -> str:
    """{0, 1, 2, 5} -> "0-2,5", as /proc/<pid>/status prints it."""
    out, run = [], []
    for n in sorted(cpus):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [n]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def allowed(pid: int) -> str:
    with open(f"/proc/{pid}/status") as f:
        return next(line.split()[1] for line in f if line.startswith("Cpus_allowed_list:"))


def test_cpu_list_prints_as_the_kernel_does():
    assert cpu_list({0}) == "0" and cpu_list({0, 1}) == "0-1" and cpu_list({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"


@two_cpus
def test_run_container_may_use_every_cpu_of_its_caller(ocipy, bundle):
    bundle.args("sh", "-c", "grep Cpus_allowed_list /proc/self/status").write()
    r = ocipy("run", "--bundle", bundle.path, "aff-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["Cpus_allowed_list:", cpu_list(OURS)]


@two_cpus
def test_created_init_and_exec_may_use_every_cpu_of_their_caller(ocipy, bundle):
    bundle.args("sleep", "60").write()
    assert ocipy("create", "--bundle", bundle.path, "aff-created").returncode == 0
    pid = json.loads(ocipy("state", "aff-created").stdout)["pid"]
    assert allowed(pid) == cpu_list(OURS)  # the waiting pid 1, a child of stage 1
    assert ocipy("start", "aff-created").returncode == 0
    assert allowed(pid) == cpu_list(OURS)
    r = ocipy("exec", "aff-created", "sh", "-c", "grep Cpus_allowed_list /proc/self/status")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1] == cpu_list(OURS)
    assert ocipy("delete", "--force", "aff-created").returncode == 0


@two_cpus
def test_a_narrowed_caller_keeps_its_container_narrowed(ocipy, bundle):
    """As with runc: the container inherits the affinity of whoever ran create."""
    one = min(OURS)
    bundle.args("sh", "-c", "grep Cpus_allowed_list /proc/self/status").write()
    r = ocipy("run", "--bundle", bundle.path, "aff-narrow", preexec_fn=lambda: os.sched_setaffinity(0, {one}))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1] == str(one)


@two_cpus
def test_cpuset_decides_and_widening_it_reaches_the_container(ocipy, bundle):
    """linux.resources.cpu.cpus narrows pid 1; `update --cpuset-cpus` widening it again
    reaches pid 1 (the kernel intersects a cpuset with the affinity a process asked for:
    stage 1 must not have left a narrower one behind)."""
    last = max(OURS)
    bundle.config["linux"].setdefault("resources", {})["cpu"] = {"cpus": str(last), "mems": "0"}
    bundle.args("sleep", "60").write()
    assert ocipy("run", "--detach", "--bundle", bundle.path, "aff-cpuset").returncode == 0
    try:
        pid = json.loads(ocipy("state", "aff-cpuset").stdout)["pid"]
        assert allowed(pid) == str(last)
        r = ocipy("update", "--cpuset-cpus", cpu_list(OURS), "aff-cpuset")
        assert r.returncode == 0, r.stderr
        assert allowed(pid) == cpu_list(OURS)
    finally:
        assert ocipy("delete", "--force", "aff-cpuset").returncode == 0


@two_cpus
def test_the_library_caller_is_left_as_it_was(bundle, state_root):
    """Runtime.create forks stage 1 itself: it moves only that child, never its caller."""
    from ocipy import Runtime

    bundle.args("true").write()
    c = Runtime(root=str(state_root)).create("aff-lib", str(bundle.path))
    try:
        assert os.sched_getaffinity(0) == OURS
        assert allowed(c.pid) == cpu_list(OURS)
    finally:
        c.delete(force=True)

"""config.md#posix-platform-hooks and runtime.md#lifecycle: hook order, placement,
namespaces, state on stdin and failure semantics."""

import json
import os
import time

import pytest

from .markers import requirement, runc_deviation
from .test_runtime import no_trace, wait_file

RUNTIME_NS = ("prestart", "createRuntime", "poststart", "poststop")
CONTAINER_NS = ("createContainer", "startContainer")
ALL = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")

# A hook records: its name in hooks.log, its stdin (state), its mount/pid/net
# namespaces, the args and env it got, and what / of the container pid looks like.
HOOK = r"""#!/bin/sh
D=%(dir)s
name="$1"
cat > "$D/state-$name.json"
echo "$name" >> "$D/hooks.log"
readlink /proc/self/ns/mnt > "$D/mntns-$name"
readlink /proc/self/ns/net > "$D/netns-$name"
echo "$@" > "$D/args-$name"
env > "$D/env-$name"
pid=$(sed -n 's/.*"pid": *\([0-9][0-9]*\).*/\1/p' "$D/state-$name.json")
if [ -n "$pid" ]; then
  ls "/proc/$pid/root/" > "$D/root-$name" 2>/dev/null
  tr '\0' ' ' < "/proc/$pid/cmdline" > "$D/cmdline-$name" 2>/dev/null
fi
tr '\0' ' ' < /proc/1/cmdline > "$D/pid1-$name" 2>/dev/null
case " $FAIL_HOOKS " in *" $name "*) exit 1;; esac
exit 0
"""


def hooked_bundle(oci, phases=ALL, fail=(), args=("/bin/sh", "-c", "echo process >> /out/hooks.log")):
    """A bundle with one recording hook per phase; hooks in `fail` exit 1."""
    b = oci.bundle(list(args))
    host = b.write_script("hook.sh", HOOK % {"dir": b.shared})
    b.write_script("oci-start-hook", HOOK % {"dir": "/out"}, in_rootfs=True)
    env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "FAIL_HOOKS=" + " ".join(fail), "HOOKVAR=hook-env"]
    for phase in phases:
        path = "/oci-start-hook" if phase == "startContainer" else host
        b.add_hook(phase, path, args=["hook", phase], env=env)
    return b


def log(b):
    return (b.read_shared("hooks.log") or "").split()


def hook_state(b, phase):
    return json.loads(b.read_shared(f"state-{phase}.json"))


# config.md#poststart: "The poststart hooks MUST be called after the user-specified process
# is executed but before the start operation returns."  runc 1.1.5 runs poststart hooks at
# the end of `create`, before startContainer hooks and before the program is executed.
@runc_deviation("poststart hooks run during create, before startContainer and the user program")
@requirement("config.md#posix-platform-hooks", "Hooks MUST be called in the listed order.")
@requirement("runtime.md#lifecycle", "steps 3-5 at create, 7 before and 9 after the program runs (start), 13 at delete")
def test_hook_order_and_placement(oci):
    b = hooked_bundle(oci)
    oci.create(b)
    assert log(b) == ["prestart", "createRuntime", "createContainer"]
    oci.start(b)
    got = log(b)
    assert got[:4] == ["prestart", "createRuntime", "createContainer", "startContainer"], got
    assert "poststart" in got, "poststart did not run before start returned"
    oci.wait_stopped(b)
    got = log(b)
    assert sorted(got[4:6]) == ["poststart", "process"], got
    assert oci.rt.delete(b.id).ok
    assert log(b)[-1] == "poststop" and len(log(b)) == 7, log(b)


@requirement("config.md#createContainer-hooks", "The createContainer hooks MUST be called after the createRuntime hooks.")
@requirement("config.md#prestart", "The prestart hooks MUST be called before the createRuntime hooks.")
@requirement("runtime.md#lifecycle", "3-5: prestart, createRuntime, createContainer hooks MUST be invoked (during create)")
def test_create_hooks_order(oci):
    b = hooked_bundle(oci, phases=("prestart", "createRuntime", "createContainer"))
    oci.create(b)
    assert log(b) == ["prestart", "createRuntime", "createContainer"]


@requirement("runtime.md#lifecycle", "7. The startContainer hooks MUST be invoked ... 8. The runtime MUST run the user-specified program")
def test_start_container_hook_at_start(oci):
    b = hooked_bundle(oci, phases=("createContainer", "startContainer", "poststop"))
    oci.create(b)
    assert log(b) == ["createContainer"]
    oci.start(b)
    oci.wait_stopped(b)
    assert log(b) == ["createContainer", "startContainer", "process"]
    assert oci.rt.delete(b.id).ok
    assert log(b) == ["createContainer", "startContainer", "process", "poststop"]


@requirement("config.md#posix-platform-hooks", "The state of the container MUST be passed to hooks over stdin")
def test_hooks_get_state_on_stdin(oci):
    b = hooked_bundle(oci)
    oci.run(b)
    for phase in ALL:
        st = hook_state(b, phase)
        assert st["id"] == b.id, (phase, st)
        assert os.path.realpath(st["bundle"]) == os.path.realpath(b.path), (phase, st)
        assert isinstance(st.get("ociVersion"), str) and isinstance(st.get("status"), str), (phase, st)
    for phase in ("prestart", "createRuntime", "createContainer", "startContainer", "poststart"):
        assert isinstance(hook_state(b, phase).get("pid"), int), (phase, "no pid in state")


@requirement("runtime.md#state", "For hooks executed in the runtime namespace, it is the pid as seen by the runtime.")
def test_hook_state_pid_runtime_namespace(oci):
    b = hooked_bundle(oci, args=["/bin/sleep", "30"])
    oci.create(b)
    oci.start(b)
    _, st = oci.rt.state(b.id)
    for phase in ("prestart", "createRuntime", "poststart"):
        assert hook_state(b, phase)["pid"] == st["pid"], phase


@requirement("runtime.md#state", "For hooks executed in the container namespace, it is the pid as seen by the container.")
def test_hook_state_pid_container_namespace(oci):
    b = hooked_bundle(oci, args=["/bin/sleep", "30"])
    oci.create(b)
    oci.start(b)
    for phase in CONTAINER_NS:
        assert hook_state(b, phase)["pid"] == 1, (phase, hook_state(b, phase))


@requirement("config.md#posix-platform-hooks", "prestart, createRuntime, poststart, poststop hooks MUST be executed in the runtime namespace")
def test_runtime_namespace_hooks(oci):
    b = hooked_bundle(oci)
    oci.run(b)
    host_mnt, host_net = os.readlink("/proc/self/ns/mnt"), os.readlink("/proc/self/ns/net")
    for phase in RUNTIME_NS:
        assert b.read_shared(f"mntns-{phase}").strip() == host_mnt, phase
        assert b.read_shared(f"netns-{phase}").strip() == host_net, phase


@requirement("config.md#posix-platform-hooks", "createContainer, startContainer hooks MUST be executed in the container namespace")
def test_container_namespace_hooks(oci):
    b = hooked_bundle(oci, args=["/bin/sleep", "30"])
    oci.create(b)
    oci.start(b)
    _, st = oci.rt.state(b.id)
    mnt, net = os.readlink(f"/proc/{st['pid']}/ns/mnt"), os.readlink(f"/proc/{st['pid']}/ns/net")
    for phase in CONTAINER_NS:
        assert b.read_shared(f"mntns-{phase}").strip() == mnt, phase
        assert b.read_shared(f"netns-{phase}").strip() == net, phase


@requirement("config.md#startContainer-hooks", "The startContainer hooks' path MUST resolve in the container namespace.")
@requirement("config.md#createContainer-hooks", "The createContainer hooks' path MUST resolve in the runtime namespace.")
def test_hook_path_resolution(oci):
    b = hooked_bundle(oci, phases=("createContainer", "startContainer"))
    assert not os.path.exists("/oci-start-hook")  # only inside the rootfs
    assert not os.path.exists(os.path.join(b.rootfs, b.path.lstrip("/"), "hook.sh"))
    oci.run(b)
    assert log(b)[:2] == ["createContainer", "startContainer"]


@requirement("config.md#prestart", "called ... after the runtime environment has been created ... but before the pivot_root")
@requirement("config.md#createRuntime-hooks", "called ... after the runtime environment has been created ... but before the pivot_root")
def test_create_hooks_before_pivot_root(oci):
    b = hooked_bundle(oci, phases=("prestart", "createRuntime"))
    oci.run(b)
    host_mnt = os.readlink("/proc/self/ns/mnt")
    for phase in ("prestart", "createRuntime"):
        # the container process already has its own mount namespace ...
        pid = hook_state(b, phase)["pid"]
        assert pid > 0
        # ... but its root is not yet the bundle rootfs (host dirs such as usr/ are visible)
        root = (b.read_shared(f"root-{phase}") or "").split()
        assert "usr" in root, (phase, root)
    assert host_mnt == b.read_shared("mntns-prestart").strip()


@requirement("config.md#startContainer-hooks", "The startContainer hooks MUST be called before the user-specified process is executed")
def test_start_container_hook_before_exec(oci):
    b = hooked_bundle(oci, phases=("startContainer",), args=["/bin/sleep", "30"])
    oci.create(b)
    oci.start(b)
    assert wait_file(b.shared_file("pid1-startContainer"))
    assert "sleep" not in b.read_shared("pid1-startContainer", "")


# Same runc deviation as test_hook_order_and_placement: poststart runs inside `create`,
# while the container process is still `runc init`.
@runc_deviation("poststart hooks run during create, before the user program is executed")
@requirement("config.md#poststart", "The poststart hooks MUST be called after the user-specified process is executed but before the start operation returns.")
def test_poststart_after_exec(oci):
    b = hooked_bundle(oci, phases=("poststart",), args=["/bin/sleep", "30"])
    oci.create(b)
    assert log(b) == [], "poststart ran during create"
    oci.start(b)
    assert log(b) == ["poststart"], "poststart did not run before start returned"
    assert b.read_shared("cmdline-poststart", "").split()[:2] == ["/bin/sleep", "30"]


@requirement("config.md#poststop", "The poststop hooks MUST be called after the container is deleted but before the delete operation returns.")
def test_poststop_placement(oci):
    b = hooked_bundle(oci, phases=("poststop",))
    oci.create(b)
    oci.start(b)
    oci.wait_stopped(b)
    assert log(b) == ["process"]
    assert oci.rt.delete(b.id).ok
    assert log(b) == ["process", "poststop"]


@requirement("config.md#posix-platform-hooks", "args ... with the same semantics as execv's argv; env ... same semantics as environ")
def test_hook_args_and_env(oci):
    b = hooked_bundle(oci, phases=("prestart",))
    oci.run(b)
    assert b.read_shared("args-prestart").split() == ["prestart"]
    env = b.read_shared("env-prestart").splitlines()
    assert "HOOKVAR=hook-env" in env
    assert not [e for e in env if e.startswith("OCF_RUNTIME_ENV_CANARY=")], "runtime env leaked into hook env"


@requirement("config.md#posix-platform-hooks", "timeout (int, OPTIONAL) is the number of seconds before aborting the hook.")
@requirement("runtime.md#lifecycle", "If any prestart hook fails, the runtime MUST generate an error")
def test_hook_timeout(oci):
    b = oci.bundle()
    slow = b.write_script("slow.sh", f"echo started >> {b.shared}/slow.log\nexec sleep 20\n")
    b.add_hook("prestart", slow, timeout=1)
    t0 = time.monotonic()
    r = oci.create(b, check=False)
    assert time.monotonic() - t0 < 15, "hook was not aborted after its timeout"
    assert not r.ok
    no_trace(oci, b)


@pytest.mark.parametrize("phase", ["prestart", "createRuntime", "createContainer"])
@requirement("runtime.md#lifecycle", "If any prestart/createRuntime/createContainer hook fails, the runtime MUST generate an error, stop the container")
def test_create_hook_failure(oci, phase):
    b = hooked_bundle(oci, phases=(phase,), fail=(phase,))
    r = oci.create(b, check=False)
    assert not r.ok, "create succeeded although a hook failed"
    assert "process" not in log(b)
    no_trace(oci, b)


@pytest.mark.parametrize("phase", ["prestart", "createRuntime", "createContainer"])
@requirement("runtime.md#lifecycle", "continue the lifecycle at step 12 ... 13. The poststop hooks MUST be invoked by the runtime.")
def test_create_hook_failure_runs_poststop(oci, phase):
    b = hooked_bundle(oci, phases=(phase, "poststop"), fail=(phase,))
    assert not oci.create(b, check=False).ok
    assert log(b) == [phase, "poststop"], log(b)


# runtime.md#lifecycle 7: "If any startContainer hook fails, the runtime MUST generate an
# error, stop the container ...".  In runc 1.1.5 the hooks run in `runc init` after `start`
# released it; the init process exits but `runc start` still returns 0.
@runc_deviation("`runc start` exits 0 although a startContainer hook failed")
@requirement("runtime.md#lifecycle", "If any startContainer hook fails, the runtime MUST generate an error, stop the container")
def test_start_container_hook_failure(oci):
    b = hooked_bundle(oci, phases=("startContainer",), fail=("startContainer",))
    oci.create(b)
    r = oci.rt.start(b.id)
    assert not r.ok, "start succeeded although startContainer failed"
    time.sleep(0.3)
    assert "process" not in log(b), "user process ran after a failing startContainer hook"
    st = oci.rt.status(b.id)
    assert st in (None, "stopped"), f"container not stopped: {st}"


# Same lifecycle sentence, step 13: after a failing startContainer hook the lifecycle goes on
# at step 12 and "The poststop hooks MUST be invoked by the runtime."  runc 1.1.5 only runs
# them at a later `delete`.
@runc_deviation("poststop hooks are not run when a startContainer hook fails (only at a later delete)")
@requirement("runtime.md#lifecycle", "continue the lifecycle at step 12 ... 13. The poststop hooks MUST be invoked by the runtime.")
def test_start_container_hook_failure_runs_poststop(oci):
    b = hooked_bundle(oci, phases=("startContainer", "poststop"), fail=("startContainer",))
    oci.create(b)
    oci.rt.start(b.id)  # its exit code is checked by test_start_container_hook_failure
    assert wait_file(b.shared_file("state-poststop.json"), 3), "poststop not invoked"
    assert "process" not in log(b)


# runtime.md#lifecycle 9: "If any poststart hook fails, the runtime MUST generate an error,
# stop the container".  runc 1.1.5 runs poststart at create, so `create` fails instead.
@runc_deviation("a failing poststart hook makes `create` fail (poststart runs during create)")
@requirement("runtime.md#lifecycle", "If any poststart hook fails, the runtime MUST generate an error, stop the container")
def test_poststart_hook_failure(oci):
    b = hooked_bundle(oci, phases=("poststart",), fail=("poststart",), args=["/bin/sleep", "30"])
    oci.create(b)
    r = oci.rt.start(b.id)
    assert not r.ok, "start succeeded although a poststart hook failed"
    st = oci.rt.wait_status(b.id, "stopped", 5)
    assert st in (None, "stopped"), f"container not stopped: {st}"


# runtime.md#lifecycle 13: "If any poststop hook fails, the runtime MUST log a warning, but
# the remaining hooks and lifecycle continue as if the hook had succeeded."  runc 1.1.5
# stops at the first failing poststop hook (delete itself still succeeds).
@runc_deviation("remaining poststop hooks are skipped after one fails")
@requirement("runtime.md#lifecycle", "If any poststop hook fails, the runtime MUST log a warning, but the remaining hooks and lifecycle continue")
@requirement("runtime.md#warnings", "logging a warning does not change the flow of the operation")
def test_poststop_hook_failure(oci):
    b = oci.bundle()
    host = b.write_script("hook.sh", HOOK % {"dir": b.shared})
    env = ["PATH=/usr/bin:/bin", "FAIL_HOOKS=first"]
    b.add_hook("poststop", host, args=["hook", "first"], env=env)
    b.add_hook("poststop", host, args=["hook", "second"], env=env)
    oci.run(b)  # delete must succeed
    no_trace(oci, b)
    assert log(b) == ["first", "second"]


@requirement("runtime.md#warnings", "logging a warning does not change the flow of the operation; it MUST continue as if the warning had not been logged")
def test_poststop_hook_failure_delete_succeeds(oci):
    b = oci.bundle()
    host = b.write_script("hook.sh", HOOK % {"dir": b.shared})
    b.add_hook("poststop", host, args=["hook", "only"], env=["PATH=/usr/bin:/bin", "FAIL_HOOKS=only"])
    oci.run(b)  # asserts that delete succeeds
    assert log(b) == ["only"]
    no_trace(oci, b)

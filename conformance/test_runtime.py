"""runtime.md: state, operations (create/start/kill/delete), lifecycle, errors."""

import os
import subprocess
import time

from . import hostcheck
from .markers import requirement, runc_deviation

WAIT_READY = "while [ ! -e /out/go ]; do sleep 0.05; done"


# The state as runtime.md#state and schema/state-schema.json describe it (written for this
# suite; Linux: pid is required while created or running).
STATE_SCHEMA = {
    "type": "object",
    "required": ["ociVersion", "id", "status", "bundle"],
    "properties": {
        "ociVersion": {"type": "string", "pattern": r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"},
        "id": {"type": "string", "minLength": 1},
        "status": {"type": "string", "minLength": 1},
        "pid": {"type": "integer", "minimum": 0},
        "bundle": {"type": "string", "pattern": "^/"},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "if": {"properties": {"status": {"enum": ["created", "running"]}}},
    "then": {"required": ["pid"]},
}


def check_state_shape(st, b):
    """runtime.md#state + schema/state-schema.json (required fields and types)."""
    assert isinstance(st, dict), st
    import jsonschema
    errors = [e.message for e in jsonschema.Draft202012Validator(STATE_SCHEMA).iter_errors(st)]
    assert not errors, f"state does not match the state schema: {errors}"
    for key in ("ociVersion", "id", "status", "bundle"):
        assert key in st, f"state lacks required {key!r}: {st}"
    assert isinstance(st["ociVersion"], str) and st["ociVersion"]
    assert st["id"] == b.id
    assert isinstance(st["status"], str) and st["status"]
    assert os.path.isabs(st["bundle"]), st["bundle"]
    assert os.path.realpath(st["bundle"]) == os.path.realpath(b.path)
    if "pid" in st:
        assert isinstance(st["pid"], int) and st["pid"] >= 0
    if "annotations" in st:
        assert isinstance(st["annotations"], dict)


def wait_file(path, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.05)
    return False


def pid_gone(pid, timeout=5):
    """True when `pid` has exited (a zombie waiting for its reaper counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def no_trace(oci, b):
    """The runtime keeps nothing of container `b`: no state, process, cgroup."""
    r, _ = oci.rt.state(b.id)
    assert not r.ok, f"state of {b.id} still exists: {r}"
    assert not hostcheck.processes_matching([f"ocipy-conformance/{b.id}", b.rootfs])
    assert not hostcheck.container_cgroup_dirs(b.id), hostcheck.container_cgroup_dirs(b.id)
    assert not hostcheck.mounts_matching(b.path)


# -- State -------------------------------------------------------------------------
@requirement("runtime.md#state", "ociVersion, id, status, bundle REQUIRED; pid REQUIRED when created or running on Linux")
def test_state_fields_when_created(oci):
    b = oci.bundle(["/bin/sleep", "30"])
    oci.create(b)
    r, st = oci.rt.state(b.id)
    assert r.ok, r
    check_state_shape(st, b)
    assert st["status"] == "created"
    assert isinstance(st.get("pid"), int) and st["pid"] > 0, st
    assert os.path.exists(f"/proc/{st['pid']}"), "state pid is not a live process"


@requirement("runtime.md#state", "status: created / running / stopped per lifecycle step")
def test_state_status_per_lifecycle_step(oci):
    b = oci.bundle().sh(f"{WAIT_READY}; exit 0")
    oci.create(b)
    assert oci.rt.status(b.id) == "created"
    oci.start(b)
    r, st = oci.rt.state(b.id)
    check_state_shape(st, b)
    assert st["status"] == "running"
    assert isinstance(st.get("pid"), int) and st["pid"] > 0
    open(b.shared_file("go"), "w").close()
    oci.wait_stopped(b)
    r, st = oci.rt.state(b.id)
    check_state_shape(st, b)
    assert st["status"] == "stopped"


@requirement("runtime.md#state", "pid ... is the ID of the container process")
def test_state_pid_is_container_process(oci):
    b = oci.bundle(["/bin/sleep", "31"])
    oci.create(b)
    oci.start(b)
    _, st = oci.rt.state(b.id)
    with open(f"/proc/{st['pid']}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"/bin/sleep", b"31"]
    assert os.path.samefile(f"/proc/{st['pid']}/root", b.rootfs)


@requirement("runtime.md#state", "annotations (map, OPTIONAL) contains the list of annotations associated with the container")
def test_state_annotations(oci):
    b = oci.bundle(["/bin/sleep", "30"])
    b.config["annotations"] = {"org.example.conformance": "yes", "com.example.k": "v"}
    oci.create(b)
    _, st = oci.rt.state(b.id)
    assert st.get("annotations") == b.config["annotations"]


@requirement("runtime.md#query-state", "This operation MUST generate an error if it is not provided the ID of a container.")
def test_state_without_id(oci):
    assert not oci.rt.run("state").ok


@requirement("runtime.md#query-state", "Attempting to query a container that does not exist MUST generate an error.")
def test_state_of_missing_container(oci):
    assert not oci.rt.state(oci.new_id())[0].ok


# -- Create ------------------------------------------------------------------------
@requirement("runtime.md#create", "MUST generate an error if it is not provided a path to the bundle and the container ID")
def test_create_without_id(oci):
    b = oci.bundle()
    b.write()
    r = oci.rt.run("create", "--bundle", b.path)
    assert not r.ok


@requirement("runtime.md#create", "MUST generate an error if it is not provided a path to the bundle and the container ID")
def test_create_with_missing_bundle(oci):
    cid = oci.new_id()
    oci.rt.created.append(cid)
    r = oci.rt.run("create", "--bundle", os.path.join(oci.tmp, "no-such-bundle"), cid)
    assert not r.ok
    assert not oci.rt.state(cid)[0].ok


@requirement("runtime.md#state", "id ... MUST be unique across all containers on this host")
@requirement("runtime.md#create", "If the ID provided is not unique ... MUST generate an error and a new container MUST NOT be created")
def test_create_duplicate_id(oci):
    a = oci.bundle(["/bin/sleep", "30"])
    oci.create(a)
    _, st1 = oci.rt.state(a.id)
    b = oci.bundle(["/bin/sleep", "30"], cid=a.id + "-dup")
    b.id = a.id  # same id, different bundle
    b.write()
    r = oci.rt.create(a.id, b.path)
    assert not r.ok, "second create with the same id succeeded"
    _, st2 = oci.rt.state(a.id)
    assert st2["pid"] == st1["pid"] and st2["status"] == "created"
    assert os.path.realpath(st2["bundle"]) == os.path.realpath(a.path)


@requirement("runtime.md#create", "If the ID provided ... is not valid in any other way, the implementation MUST generate an error")
def test_create_invalid_id(oci):
    b = oci.bundle()
    b.write()
    bad = "../escaped-" + b.id
    oci.rt.created.append(bad)
    r = oci.rt.create(bad, b.path)
    assert not r.ok, "create accepted an id containing '../'"
    assert not os.path.exists(os.path.join(oci.tmp, "escaped-" + b.id))


@requirement("runtime.md#create", "process.args MUST NOT be applied until triggered by the start operation")
@requirement("runtime.md#lifecycle", "the user-specified program (from process) MUST NOT be run at this time")
def test_create_does_not_run_process(oci):
    b = oci.bundle().sh("echo ran > /out/ran; sleep 30")
    oci.create(b)
    time.sleep(0.5)
    assert not os.path.exists(b.shared_file("ran")), "process ran before start"
    oci.start(b)
    assert wait_file(b.shared_file("ran")), "process did not run after start"


@requirement("runtime.md#create", "All of the properties configured in config.json except for process MUST be applied")
@requirement("runtime.md#lifecycle", "The container's runtime environment MUST be created according to the configuration")
def test_create_applies_config_before_start(oci):
    b = oci.bundle(["/bin/sleep", "30"])
    b.config["hostname"] = "made-at-create"
    oci.create(b)
    _, st = oci.rt.state(b.id)
    pid = st["pid"]
    assert os.readlink(f"/proc/{pid}/ns/uts") != os.readlink("/proc/self/ns/uts")
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert hostcheck.container_cgroup_dirs(b.id), "cgroup not created at create time"
    # the hostname is visible to anybody in the container's UTS namespace
    out = subprocess.run(["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True,
                         text=True, timeout=10).stdout.strip()
    assert out == "made-at-create"


@requirement("runtime.md#lifecycle", "Any updates to config.json after this step MUST NOT affect the container")
def test_config_changes_after_create_ignored(oci):
    b = oci.bundle().sh("echo original > /out/which")
    oci.create(b)
    b.sh("echo changed > /out/which")
    b.config["hostname"] = "changed"
    b.write()
    oci.start(b)
    oci.wait_stopped(b)
    assert b.read_shared("which", "").strip() == "original"


@requirement("runtime.md#create", "If the runtime cannot apply a property ... MUST generate an error and a new container MUST NOT be created")
@requirement("runtime.md#errors", "generating an error MUST leave the state of the environment as if the operation were never attempted")
def test_create_error_leaves_no_trace(oci):
    b = oci.bundle()
    b.config["mounts"].append({"destination": "/mnt/x", "type": "bind",
                               "source": os.path.join(b.path, "does-not-exist"), "options": ["bind"]})
    r = oci.create(b, check=False)
    assert not r.ok, "create succeeded with an impossible mount"
    no_trace(oci, b)
    # the ID is still free
    b.config["mounts"].pop()
    oci.create(b)


@requirement("runtime.md#lifecycle", "If the runtime is unable to create the environment specified in the config.json, it MUST generate an error")
def test_create_error_missing_rootfs(oci):
    b = oci.bundle()
    b.config["root"]["path"] = "no-such-rootfs"
    r = oci.create(b, check=False)
    assert not r.ok
    no_trace(oci, b)


# -- Start -------------------------------------------------------------------------
@requirement("runtime.md#start", "This operation MUST generate an error if it is not provided the container ID.")
def test_start_without_id(oci):
    assert not oci.rt.run("start").ok


@requirement("runtime.md#start", "This operation MUST run the user-specified program as specified by process.")
def test_start_runs_process(oci):
    b = oci.bundle(["/bin/echo", "hello", "from", "the container"])
    assert oci.run(b) == "hello from the container\n"


@requirement("runtime.md#start", "Attempting to start a container that is not created MUST have no effect on the container and MUST generate an error.")
def test_start_running_container(oci):
    b = oci.bundle().sh("echo x >> /out/count; sleep 30")
    oci.create(b)
    oci.start(b)
    assert wait_file(b.shared_file("count"))
    _, st1 = oci.rt.state(b.id)
    r = oci.rt.start(b.id)
    assert not r.ok, "second start succeeded"
    time.sleep(0.3)
    _, st2 = oci.rt.state(b.id)
    assert st2["status"] == "running" and st2["pid"] == st1["pid"]
    assert b.read_shared("count") == "x\n"


@requirement("runtime.md#start", "Attempting to start a container that is not created MUST have no effect on the container and MUST generate an error.")
def test_start_stopped_container(oci):
    b = oci.bundle().sh("echo x >> /out/count")
    oci.create(b)
    oci.start(b)
    oci.wait_stopped(b)
    r = oci.rt.start(b.id)
    assert not r.ok
    assert oci.rt.status(b.id) == "stopped"
    time.sleep(0.2)
    assert b.read_shared("count") == "x\n"


@requirement("runtime.md#start", "Attempting to start a container that is not created MUST ... generate an error.")
def test_start_missing_container(oci):
    assert not oci.rt.start(oci.new_id()).ok


@requirement("runtime.md#start", "This operation MUST generate an error if process was not set.")
def test_start_without_process(oci):
    b = oci.bundle()
    del b.config["process"]
    r = oci.create(b, check=False)
    if r.ok:  # the runtime may accept it at create, but start must fail
        assert not oci.rt.start(b.id).ok
    else:
        assert not oci.rt.state(b.id)[0].ok


# -- Kill --------------------------------------------------------------------------
@requirement("runtime.md#kill", "This operation MUST generate an error if it is not provided the container ID.")
def test_kill_without_id(oci):
    assert not oci.rt.run("kill").ok


@requirement("runtime.md#kill", "This operation MUST send the specified signal to the container process.")
def test_kill_delivers_signal(oci):
    b = oci.bundle().sh("trap 'echo USR1 > /out/sig; exit 0' USR1; touch /out/ready; "
                        "while true; do sleep 0.1; done")
    oci.create(b)
    oci.start(b)
    assert wait_file(b.shared_file("ready"))
    r = oci.rt.kill(b.id, "USR1")
    assert r.ok, r
    assert wait_file(b.shared_file("sig")), "signal not delivered"
    oci.wait_stopped(b)


@requirement("runtime.md#kill", "This operation MUST send the specified signal to the container process.")
def test_kill_numeric_signal_running(oci):
    b = oci.bundle(["/bin/sleep", "30"])
    oci.create(b)
    oci.start(b)
    assert oci.rt.kill(b.id, "9").ok
    oci.wait_stopped(b)


@requirement("runtime.md#kill", "Attempting to send a signal to a container that is neither created nor running MUST ... (created is allowed)")
def test_kill_created_container(oci):
    b = oci.bundle(["/bin/sleep", "30"])
    oci.create(b)
    r = oci.rt.kill(b.id, "KILL")
    assert r.ok, r
    oci.wait_stopped(b)


@requirement("runtime.md#kill", "Attempting to send a signal to a container that is neither created nor running MUST have no effect on the container and MUST generate an error.")
def test_kill_stopped_container(oci):
    b = oci.bundle()
    oci.create(b)
    oci.start(b)
    oci.wait_stopped(b)
    assert not oci.rt.kill(b.id, "KILL").ok
    r, st = oci.rt.state(b.id)
    assert r.ok and st["status"] == "stopped"


@requirement("runtime.md#kill", "Attempting to send a signal to a container that is neither created nor running MUST ... generate an error.")
def test_kill_missing_container(oci):
    assert not oci.rt.kill(oci.new_id(), "KILL").ok


# -- Delete ------------------------------------------------------------------------
@requirement("runtime.md#delete", "This operation MUST generate an error if it is not provided the container ID.")
def test_delete_without_id(oci):
    assert not oci.rt.run("delete").ok


@requirement("runtime.md#delete", "Attempting to delete a container that is not stopped MUST have no effect on the container and MUST generate an error.")
def test_delete_running_container(oci):
    b = oci.bundle(["/bin/sleep", "30"])
    oci.create(b)
    oci.start(b)
    _, st1 = oci.rt.state(b.id)
    assert not oci.rt.delete(b.id).ok
    _, st2 = oci.rt.state(b.id)
    assert st2 and st2["status"] == "running" and st2["pid"] == st1["pid"]


# runtime.md#delete: "Attempting to `delete` a container that is not `stopped` MUST have
# no effect on the container and MUST generate an error."  runc 1.1.5 deletes a container
# in the `created` state without --force (it kills the init process and removes the state).
@runc_deviation("runc deletes a `created` container without --force")
@requirement("runtime.md#delete", "Attempting to delete a container that is not stopped MUST have no effect on the container and MUST generate an error.")
def test_delete_created_container(oci):
    b = oci.bundle(["/bin/sleep", "30"])
    oci.create(b)
    _, st1 = oci.rt.state(b.id)
    r = oci.rt.delete(b.id)
    _, st2 = oci.rt.state(b.id)
    assert not r.ok, "delete of a created container succeeded"
    assert st2 and st2["status"] == "created" and st2["pid"] == st1["pid"]


@requirement("runtime.md#delete", "Deleting a container MUST delete the resources that were created during the create step.")
def test_delete_removes_resources(oci):
    b = oci.bundle(["/bin/sleep", "30"])
    oci.create(b)
    _, st = oci.rt.state(b.id)
    assert hostcheck.container_cgroup_dirs(b.id)
    assert oci.rt.kill(b.id, "KILL").ok
    oci.wait_stopped(b)
    assert oci.rt.delete(b.id).ok
    no_trace(oci, b)
    assert pid_gone(st["pid"]), "container process still alive after delete"


@requirement("runtime.md#delete", "resources associated with the container, but not created by this container, MUST NOT be deleted")
def test_delete_keeps_foreign_resources(oci):
    holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        time.sleep(0.3)
        netns = f"/proc/{holder.pid}/ns/net"
        before = os.readlink(netns)
        b = oci.bundle().sh("echo kept > /out/file")
        b.namespace("network", netns)
        oci.run(b)
        assert holder.poll() is None, "process owning the joined namespace was killed"
        assert os.readlink(netns) == before
        assert b.read_shared("file") == "kept\n", "bind-mount source content was removed"
    finally:
        holder.kill()
        holder.wait()


@requirement("runtime.md#delete", "Once a container is deleted its ID MAY be used by a subsequent container.")
def test_delete_then_reuse_id(oci):
    b = oci.bundle(["/bin/echo", "one"])
    assert oci.run(b) == "one\n"
    b.process["args"] = ["/bin/echo", "two"]
    assert oci.run(b) == "one\ntwo\n"


@requirement("runtime.md#delete", "Attempting to delete a container that is not stopped MUST ... generate an error.")
def test_delete_missing_container(oci):
    assert not oci.rt.delete(oci.new_id()).ok


# -- Lifecycle ---------------------------------------------------------------------
@requirement("runtime.md#scope-of-a-container", "The entity using a runtime to create a container MUST be able to use the operations defined in this specification against that same container.")
@requirement("runtime.md#lifecycle", "steps 1-12: create, start, process exits, delete")
def test_full_lifecycle(oci):
    b = oci.bundle().sh(f"{WAIT_READY}; echo done")
    oci.create(b)
    assert oci.rt.status(b.id) == "created"
    oci.start(b)
    assert oci.rt.status(b.id) == "running"
    open(b.shared_file("go"), "w").close()
    oci.wait_stopped(b)
    assert oci.rt.delete(b.id).ok
    assert b.read_stdout() == "done\n"
    no_trace(oci, b)


@requirement("runtime.md#lifecycle", "10. The container process exits ... 11. delete ... 12. destroyed")
def test_process_exit_is_stopped_not_deleted(oci):
    b = oci.bundle(["/bin/sh", "-c", "exit 3"])
    oci.create(b)
    oci.start(b)
    oci.wait_stopped(b)
    time.sleep(0.3)
    r, st = oci.rt.state(b.id)
    assert r.ok and st["status"] == "stopped", "container vanished before delete"

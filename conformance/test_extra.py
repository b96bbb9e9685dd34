"""Further config.md / config-linux.md requirements: mount sources and id mappings,
hook field validation, annotations values, seccomp actions and the seccomp notify
listener (container process state), memory kernelTCP, cgroup ownership."""

import array
import json
import os
import socket
import threading
import time

import pytest

from . import hostcheck
from .markers import requirement, runc_deviation
from .test_config_linux import read_cg, seccomp_bundle


# -- mounts ------------------------------------------------------------------------
@requirement("config.md#mounts", "source ... Path values for bind mounts are either absolute or relative to the bundle.")
def test_bind_mount_relative_source(oci):
    b = oci.bundle()
    os.makedirs(os.path.join(b.path, "relsrc"))
    with open(os.path.join(b.path, "relsrc", "f"), "w") as f:
        f.write("relative")
    b.config["mounts"].append({"destination": "/mnt/rel", "type": "bind", "source": "relsrc",
                               "options": ["bind"]})
    assert oci.run_ok(b, "cat /mnt/rel/f") == "relative"


# config.md#posix-platform-mounts: "uidMappings ... If specified, it MUST be specified along
# with gidMappings."  runc 1.1.5 does not know mount id mappings and ignores the field.
@runc_deviation("mount uidMappings without gidMappings are accepted (mount id mappings unknown)")
@requirement("config.md#posix-platform-mounts", "uidMappings: If specified, it MUST be specified along with gidMappings.")
def test_mount_uid_mappings_without_gid_mappings(oci):
    b = oci.bundle()
    b.config["mounts"].append({"destination": "/mnt/id", "type": "bind", "source": b.shared,
                               "options": ["rbind", "idmap"],
                               "uidMappings": [{"containerID": 0, "hostID": 12345, "size": 1}]})
    assert not oci.create(b, check=False).ok


@runc_deviation("idmapped mounts (ridmap option) are not supported")
@requirement("config.md#linux-mount-options", "ridmap SHOULD: the mount MUST have an idmapping applied, recursively")
def test_ridmapped_mount(oci):
    b = oci.bundle()
    with open(b.shared_file("owned-by-root"), "w") as f:
        f.write("x")
    b.config["mounts"].append({"destination": "/mnt/id", "type": "bind", "source": b.shared,
                               "options": ["rbind", "ridmap"],
                               "uidMappings": [{"containerID": 0, "hostID": 12345, "size": 1}],
                               "gidMappings": [{"containerID": 0, "hostID": 12345, "size": 1}]})
    assert oci.run_ok(b, "stat -c '%u:%g' /mnt/id/owned-by-root").strip() == "12345:12345"


# -- hooks fields ------------------------------------------------------------------------
# config.md#posix-platform-hooks: "This specification extends the IEEE standard in that path
# MUST be absolute."  runc 1.1.5 runs a relative hook path (resolved against its cwd).
@runc_deviation("a relative hook path is accepted")
@requirement("config.md#posix-platform-hooks", "This specification extends the IEEE standard in that path MUST be absolute.")
def test_hook_relative_path(oci):
    b = oci.bundle()
    b.write_script("hook.sh", "exit 0\n")
    b.add_hook("createRuntime", "hook.sh")
    assert not oci.create(b, check=False).ok


@requirement("config.md#posix-platform-hooks", "If set, timeout MUST be greater than zero.")
def test_hook_timeout_zero(oci):
    b = oci.bundle()
    hook = b.write_script("hook.sh", "exit 0\n")
    b.add_hook("createRuntime", hook, timeout=0)
    assert not oci.create(b, check=False).ok


@requirement("config.md#posix-platform-hooks", "The value of path MUST resolve in the runtime namespace (missing binary is a failing hook)")
def test_hook_missing_binary(oci):
    b = oci.bundle()
    b.add_hook("createRuntime", os.path.join(b.path, "no-such-hook"))
    assert not oci.create(b, check=False).ok
    assert not oci.rt.state(b.id)[0].ok


# -- annotations / state ---------------------------------------------------------------
@requirement("config.md#annotations", "Values MUST be strings.")
def test_annotation_value_not_string(oci):
    b = oci.bundle()
    b.config["annotations"] = {"com.example.n": 1}
    assert not oci.create(b, check=False).ok


@requirement("runtime.md#state", "If no annotations were provided then this property MAY either be absent or an empty map.")
def test_state_without_annotations(oci):
    b = oci.bundle(["/bin/sleep", "30"])
    oci.create(b)
    _, st = oci.rt.state(b.id)
    assert st.get("annotations") in (None, {}), st


# -- seccomp -------------------------------------------------------------------------------
@requirement("config-linux.md#seccomp", "action: SCMP_ACT_TRAP (SIGSYS)")
def test_seccomp_trap(oci):
    b = seccomp_bundle(oci, "mkdir /tmp/d; echo rc=$?", [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_TRAP"}])
    assert "rc=159" in oci.run(b)


# config-linux.md#seccomp: flags "list of flags to use with seccomp(2)".  runc 1.1.5 refuses
# every flag ("seccomp flags are not yet supported by runc").
@runc_deviation("seccomp flags are rejected as unsupported")
@requirement("config-linux.md#seccomp", "flags (array of strings, OPTIONAL) - list of flags to use with seccomp(2)")
def test_seccomp_flags(oci):
    b = seccomp_bundle(oci, "mkdir /tmp/d 2>&1; echo rc=$?",
                       [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}])
    b.linux["seccomp"]["flags"] = ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    assert "rc=1" in oci.run(b)


# config-linux.md#seccomp defaultErrnoRet: "When the action doesn't support an errno, the
# runtime MUST print and error and fail."  runc 1.1.5 accepts it with SCMP_ACT_ALLOW.
@runc_deviation("defaultErrnoRet with a default action that takes no errno is accepted")
@requirement("config-linux.md#seccomp", "defaultErrnoRet ... When the action doesn't support an errno, the runtime MUST print and error and fail.")
def test_seccomp_default_errno_ret_with_wrong_action(oci):
    b = seccomp_bundle(oci, "true", [], default="SCMP_ACT_ALLOW")
    b.linux["seccomp"]["defaultErrnoRet"] = 5
    r = oci.create(b, check=False)
    assert not r.ok or not oci.rt.start(b.id).ok


def listen_once(path, result):
    """Accept one connection: read the JSON payload and SCM_RIGHTS fds until EOF."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    srv.settimeout(20)
    try:
        conn, _ = srv.accept()
        conn.settimeout(10)
        data, fds, first = b"", [], True
        while True:
            fd_buf = array.array("i")
            msg, anc, _, _ = conn.recvmsg(65536, socket.CMSG_LEN(16 * fd_buf.itemsize))
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fd_buf.frombytes(cdata[: len(cdata) - len(cdata) % fd_buf.itemsize])
                    result.setdefault("fd_batches", []).append("first" if first else "later")
            fds += list(fd_buf)
            first = False
            if not msg:
                break
            data += msg
        result["payload"], result["fds"] = data, fds
        conn.close()
        try:  # a second connection must not come (exactly one state per connection)
            srv.settimeout(0.5)
            srv.accept()[0].close()
            result["extra_connection"] = True
        except OSError:
            pass
    except OSError as e:
        result["error"] = repr(e)
    finally:
        srv.close()


@requirement("config-linux.md#the-container-process-state", "The container runtime MUST send the container process state over the UNIX socket as regular payload serialized in JSON and file descriptors MUST be sent using SCM_RIGHTS.")
@requirement("config-linux.md#seccomp", "listenerPath ... The runtime MUST send exactly one container process state per connection ... closed after sending")
def test_seccomp_notify_listener(oci):
    b = seccomp_bundle(oci, "mkdir /tmp/d 2>&1; echo rc=$?",
                       [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}])
    sock = os.path.join(oci.tmp, "seccomp.sock")
    b.linux["seccomp"]["listenerPath"] = sock
    b.linux["seccomp"]["listenerMetadata"] = "conformance-metadata"
    result = {}
    t = threading.Thread(target=listen_once, args=(sock, result), daemon=True)
    t.start()
    while not os.path.exists(sock) and t.is_alive():
        time.sleep(0.01)
    try:
        oci.create(b)
        oci.start(b)
        t.join(15)
        for fd in result.get("fds", []):  # closing the notify fd lets the syscall fail (ENOSYS)
            os.close(fd)
        oci.wait_stopped(b)
    finally:
        for fd in result.get("fds", []):
            try:
                os.close(fd)
            except OSError:
                pass
    assert "payload" in result, result
    st = json.loads(result["payload"])
    assert isinstance(st.get("ociVersion"), str)
    assert isinstance(st.get("pid"), int) and st["pid"] > 0
    assert st.get("metadata") == "conformance-metadata"
    assert st["state"]["id"] == b.id
    assert os.path.realpath(st["state"]["bundle"]) == os.path.realpath(b.path)
    assert "seccompFd" in st.get("fds", []) and len(result["fds"]) == len(st["fds"])
    assert result.get("fd_batches") == ["first"], result.get("fd_batches")
    assert not result.get("extra_connection")


# -- cgroups --------------------------------------------------------------------------------
# config-linux.md#memory: kernelTCP (NOT RECOMMENDED, still specified).  runc 1.1.5 ignores
# kernel memory settings and leaves memory.kmem.tcp.limit_in_bytes unlimited.
@runc_deviation("memory.kernelTCP is ignored")
@requirement("config-linux.md#memory", "kernelTCP (int64, OPTIONAL) - sets hard limit for kernel TCP buffer memory in bytes")
def test_cgroup_memory_kernel_tcp(oci):
    if not hostcheck.controller_mount("memory"):
        pytest.skip("host has no cgroup v1 memory hierarchy")
    b = oci.bundle(["/bin/sleep", "30"])
    b.linux["resources"]["memory"] = {"kernelTCP": 16 << 20}
    oci.create(b)
    assert read_cg("memory", b.id, "memory.kmem.tcp.limit_in_bytes") == str(16 << 20)


@requirement("config-linux.md#cgroup-ownership", "Runtimes SHOULD change the cgroup ownership if and only if the cgroup is v2 and the container has a user namespace")
def test_cgroup_ownership(oci):
    pure_v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    if not pure_v2:
        pytest.skip("cgroup ownership rules apply to cgroup v2 only; this host runs v1 controllers (hybrid)")


# -- absolute-path rules -------------------------------------------------------------------
@requirement("config-linux.md#namespaces", "path ... This value MUST be an absolute path in the runtime mount namespace.")
def test_namespace_relative_path(oci):
    b = oci.bundle()
    b.namespace("network", "proc/self/ns/net")
    assert not oci.create(b, check=False).ok


# config-linux.md#masked-paths / #readonly-paths: "The values MUST be absolute paths in the
# container namespace." with config.md#valid-values "Runtimes MUST generate an error when
# invalid or unsupported values are encountered."  runc 1.1.5 accepts relative entries.
@runc_deviation("relative maskedPaths / readonlyPaths entries are accepted")
@pytest.mark.parametrize("field", ["maskedPaths", "readonlyPaths"])
@requirement("config-linux.md#readonly-paths", "The values MUST be absolute paths in the container namespace.")
@requirement("config-linux.md#masked-paths", "The values MUST be absolute paths in the container namespace.")
def test_masked_readonly_paths_relative(oci, field):
    b = oci.bundle()
    os.makedirs(os.path.join(b.rootfs, "reldir"))
    b.linux[field] = ["reldir"]
    r = oci.create(b, check=False)
    assert not r.ok, f"relative {field} entry accepted"


@requirement("config-linux.md#user-namespace-mappings", "containerID is the starting uid/gid in the container; hostID ... to be mapped to containerID")
def test_user_namespace_non_root_user(oci):
    from .test_config_linux import use_userns
    b = use_userns(oci.bundle()).sh("id -u; id -g; touch /out/by-user")
    b.process["user"] = {"uid": 1000, "gid": 1000}
    assert oci.run(b).split() == ["1000", "1000"]
    st = os.stat(b.shared_file("by-user"))
    assert (st.st_uid, st.st_gid) == (101000, 101000)

"""Run test code in fresh mount and pid namespaces (optionally a user namespace), in a forked
child, and check that the host's mount table is the same afterwards. Shared by the rootfs
integration tests and the mount-escape security tests."""

import json
import os
import traceback

import pytest

from ocipy.linux import syscalls as sc


def _mountinfo_lines():
    with open("/proc/self/mountinfo") as f:
        return sorted(f.read().splitlines())


@pytest.fixture(autouse=True)
def no_mount_left_behind():
    before = _mountinfo_lines()
    yield
    after = _mountinfo_lines()
    assert after == before, "the host's mount table changed"


def run_in_namespaces(fn, *args, userns: bool = False, before_userns=None) -> dict:
    """Run fn(*args) as pid 1 of new mount + pid namespaces; return what it returned
    (a JSON-able value) or raise with the child's traceback. With userns=True the
    child first enters a new user namespace mapping only root to root (the one mapping
    a process may write for itself), then new mount, pid and ipc namespaces owned by it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.close(r)
            if before_userns is not None:
                # a private mount namespace of our own for set-up the user namespace
                # then inherits (its mounts' flags become locked there)
                sc.unshare(sc.CLONE_NEWNS)
                sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
                before_userns()
            if userns:
                sc.unshare(sc.CLONE_NEWUSER)
                for name, text in (("setgroups", "deny"), ("uid_map", "0 0 1"), ("gid_map", "0 0 1")):
                    with open(f"/proc/self/{name}", "w") as f:
                        f.write(text)
                sc.unshare(sc.CLONE_NEWNS | sc.CLONE_NEWPID | sc.CLONE_NEWIPC)
            else:
                sc.unshare(sc.CLONE_NEWNS | sc.CLONE_NEWPID)
            sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
            pid2 = os.fork()
            if pid2 == 0:
                try:
                    result = {"ok": fn(*args)}
                except BaseException:
                    result = {"error": traceback.format_exc()}
                os.write(w, json.dumps(result).encode())
                os._exit(0)
            _, status = os.waitpid(pid2, 0)
            code = os.waitstatus_to_exitcode(status)
        except BaseException:
            os.write(w, json.dumps({"error": traceback.format_exc()}).encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    raw = b"".join(chunks).decode()
    assert raw, f"child exited with status {status} and said nothing"
    out = json.loads(raw)
    if "error" in out:
        raise AssertionError("in the container:\n" + out["error"])
    return out["ok"]

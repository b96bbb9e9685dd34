"""Seccomp through the runtime: the profile docker sends loads, and it filters (root)."""

import json
import shutil
from pathlib import Path

import pytest

from ocipy.linux import seccomp
from ocipy.linux.seccomp_cache import CACHE_DIR
from test_container_view import run_and_read, status_field

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "engines"


def docker_profile():
    path = CORPUS / "docker-run-d.config.json"
    if not path.exists():
        pytest.skip(f"{path} is missing (../shared/corpus not beside the repo)")
    return json.loads(path.read_text())["linux"]["seccomp"]


@pytest.mark.parametrize("nnp", [True, False])
def test_docker_default_profile_filters_the_container(ocipy, bundle, nnp):
    bundle.config["linux"]["seccomp"] = docker_profile()
    bundle.config["process"]["noNewPrivileges"] = nnp
    out = run_and_read(ocipy, bundle, "grep Seccomp: /proc/self/status; unshare -U true 2>&1; echo unshare=$?")
    assert status_field(out, "Seccomp") == "2"
    assert "unshare=1" in out  # unshare(CLONE_NEWUSER) is refused by the profile (EPERM)


def test_errno_ret_reaches_the_process(ocipy, bundle):
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28}],
    }
    out = run_and_read(ocipy, bundle, "mkdir /tmp/x 2>&1; echo rc=$?")
    assert "No space left on device" in out and "rc=1" in out


def test_a_profile_is_built_once_then_the_kept_program_is_loaded(ocipy, bundle, state_root):
    """linux/seccomp_cache.py: the first create builds the program (in pid 1) and keeps it
    under the state root; the next create of the profile loads the kept program without
    building it; a changed builder (libseccomp upgraded) builds it again."""
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28}],
    }
    script = "mkdir /tmp/x 2>/dev/null; echo rc=$?; rmdir /tmp/x 2>/dev/null; true"
    assert "rc=1" in run_and_read(ocipy, bundle, script)
    entries = list((state_root / CACHE_DIR).glob("seccomp-*.json"))
    assert len(entries) == 1
    entry = json.loads(entries[0].read_text())
    assert bytes.fromhex(entry["program"]) == seccomp.program(bundle.config["linux"]["seccomp"])

    # What runs is the kept program: swap in one that allows everything.
    entry["program"] = seccomp.program({"defaultAction": "SCMP_ACT_ALLOW"}).hex()
    entries[0].write_text(json.dumps(entry))
    assert "rc=0" in run_and_read(ocipy, bundle, script, cid="v2")

    # Another libseccomp file (here: another mtime on record) is a miss: built from the profile again.
    entry["builders"][0][4] -= 1
    entries[0].write_text(json.dumps(entry))
    assert "rc=1" in run_and_read(ocipy, bundle, script, cid="v3")
    assert bytes.fromhex(json.loads(entries[0].read_text())["program"]) == seccomp.program(bundle.config["linux"]["seccomp"])


def test_exec_filters_with_the_profile_it_built_once(ocipy, bundle, state_root):
    """exec builds the container's profile once, keeps it, and loads the kept program next time."""
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28}],
    }
    bundle.args("sleep", "1000").write()
    assert ocipy("run", "--detach", "--bundle", bundle.path, "ex").returncode == 0
    try:
        shutil.rmtree(state_root / CACHE_DIR)  # kept by create: let exec build it
        for _ in range(2):
            r = ocipy("exec", "ex", "sh", "-c", "mkdir /tmp/y 2>&1; echo rc=$?")
            assert "No space left on device" in r.stdout and "rc=1" in r.stdout, r.stdout + r.stderr
            assert len(list((state_root / CACHE_DIR).glob("seccomp-*.json"))) == 1
    finally:
        assert ocipy("delete", "--force", "ex").returncode == 0

"""Seccomp through the runtime: the profile docker sends loads, and it filters (root)."""

import json
from pathlib import Path

import pytest

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

"""Small helpers shared by test modules (conftest.py cannot be imported by name: tests/e2e has one too)."""

import copy
import json
import os
import shutil
import time
import uuid
from pathlib import Path

from ocipy.defaults import default_config
from ocipy.linux.seccomp_cache import CACHE_DIR

# One parent cgroup per test run (relative: under our own cgroup), so a run's leak check sees
# only its own containers, and the run removes the parent when it ends.
CGROUP_PARENT = f"ocipy-test-{os.getpid()}"


def container_dirs(root: Path) -> list[Path]:
    """What is in a state root: one directory per container (besides ocipy's cache of
    seccomp programs, which outlives the containers by design)."""
    if not Path(root).exists():
        return []
    return [p for p in Path(root).iterdir() if p.name != CACHE_DIR]


def wait_stopped(ocipy, cid: str, timeout: float = 10.0) -> None:
    """Poll `ocipy state` until the container's status is "stopped"; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while json.loads(ocipy("state", cid).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline, f"{cid} did not stop"
        time.sleep(0.02)


class Bundle:
    """A bundle directory with its own copy of the busybox rootfs and an editable config."""

    def __init__(self, path: Path, rootfs_src: Path):
        self.path = path
        self.rootfs = path / "rootfs"
        shutil.copytree(rootfs_src, self.rootfs, symlinks=True)
        self.config = default_config(terminal=False, args=["true"])
        self.config["root"]["readonly"] = False
        self.config["linux"]["cgroupsPath"] = f"{CGROUP_PARENT}/{uuid.uuid4().hex[:12]}"
        self.config["linux"]["resources"] = {}

    def write(self) -> Path:
        cfg = copy.deepcopy(self.config)
        (self.path / "config.json").write_text(json.dumps(cfg, indent=2))
        return self.path

    def args(self, *args: str) -> "Bundle":
        self.config["process"]["args"] = list(args)
        return self

    def shell(self, script: str) -> "Bundle":
        return self.args("/bin/sh", "-c", script)

    def bind(self, host: Path, dest: str, *options: str) -> "Bundle":
        self.config["mounts"].append({"destination": dest, "type": "bind", "source": str(host), "options": ["rbind", *options]})
        return self

"""config-linux.md features seen from inside the container (root)."""

import json
import os
import shutil
import subprocess
import uuid

import pytest

from test_container_view import run_and_read

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]


def test_sysctl(ocipy, bundle):
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456789"}
    out = run_and_read(ocipy, bundle, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax")
    assert out.split() == ["1", "123456789"]


def test_personality_linux32(ocipy, bundle):
    bundle.config["linux"]["personality"] = {"domain": "LINUX32"}
    assert run_and_read(ocipy, bundle, "uname -m").strip() in ("i686", "armv8l", "armv7l")


def test_no_pivot(ocipy, bundle):
    bundle.shell("cat /proc/self/mountinfo | head -1; echo ok").write()
    r = ocipy("run", "--no-pivot", "--bundle", bundle.path, "np")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("ok\n")


def test_rootfs_propagation_private(ocipy, bundle):
    bundle.config["linux"]["rootfsPropagation"] = "private"
    out = run_and_read(ocipy, bundle, "awk '$5 == \"/\"' /proc/self/mountinfo")
    assert out.strip(), "no mountinfo line for /"
    assert "shared:" not in out and "master:" not in out


def test_cgroup_placement_relative_path(ocipy, bundle):
    """The container's processes are in cgroupsPath, under our own cgroup, in every hierarchy."""
    rel = bundle.config["linux"]["cgroupsPath"]
    bundle.args("sleep", "100").write()
    assert ocipy("run", "--detach", "--bundle", bundle.path, "cg").returncode == 0
    pid = json.loads(ocipy("state", "cg").stdout)["pid"]
    mine = {line.split(":", 2)[1]: line.split(":", 2)[2].strip() for line in open("/proc/self/cgroup")}
    theirs = {line.split(":", 2)[1]: line.split(":", 2)[2].strip() for line in open(f"/proc/{pid}/cgroup")}
    for controller in ("memory", "pids", "cpu,cpuacct" if "cpu,cpuacct" in mine else "cpu", "freezer", "devices"):
        if controller in mine:
            expected = os.path.join(mine[controller], rel)
            assert theirs[controller] == expected, controller
    pids = json.loads(ocipy("ps", "--format", "json", "cg").stdout)
    assert pids == [pid]
    assert ocipy("delete", "--force", "cg").returncode == 0
    assert json.loads(ocipy("list", "--format", "json").stdout) is None


def test_cgroup_mount_shows_the_containers_own_cgroup(ocipy, bundle):
    bundle.config["linux"]["namespaces"].append({"type": "cgroup"})
    out = run_and_read(ocipy, bundle, "cat /proc/self/cgroup; ls /sys/fs/cgroup")
    assert "memory:/" in out.replace("memory:/\n", "memory:/\n")
    assert "memory" in out.split()


@pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 (ip) is not installed")
def test_net_devices_move_and_rename(ocipy, bundle):
    host_name = f"ocv{uuid.uuid4().hex[:8]}"
    peer = host_name + "p"
    made = subprocess.run(["ip", "link", "add", host_name, "type", "veth", "peer", "name", peer], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a veth pair on this kernel: {made.stderr.strip()}")
    try:
        bundle.config["linux"]["netDevices"] = {host_name: {"name": "inside0"}}
        out = run_and_read(ocipy, bundle, "cat /sys/class/net/inside0/type; ls /sys/class/net")
        assert out.split()[0] == "1"  # ARPHRD_ETHER
        assert host_name not in out
        host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert f" {host_name}@" not in host_links and f" {host_name}:" not in host_links
    finally:
        # A veth end dies with the container's netns, and takes its peer with it.
        subprocess.run(["ip", "link", "del", peer], capture_output=True)

"""What a container sees, compared with its config (root): identity, limits, namespaces, mounts, fds."""

import os
import re
import socket
import subprocess
import sys

import pytest

from ocipy.linux.capnames import CAPABILITIES
from testlib import container_dirs  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]


def run_and_read(ocipy, bundle, script, cid="v1"):
    """Run `script` in the container and return its stdout (asserting exit 0)."""
    bundle.shell(script).write()
    r = ocipy("run", "--bundle", bundle.path, cid)
    assert r.returncode == 0, f"rc={r.returncode} stderr={r.stderr}"
    return r.stdout


def status_field(text, name):
    return re.search(rf"^{name}:\s*(.*)$", text, re.M).group(1).strip()


def cap_mask(names):
    return sum(1 << CAPABILITIES[n] for n in names)


def test_identity_hostname_env_cwd_umask(ocipy, bundle):
    cfg = bundle.config
    cfg["hostname"] = "box1"
    cfg["domainname"] = "example.org"
    cfg["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [5, 7], "umask": 0o027}
    cfg["process"]["env"] = ["PATH=/bin", "FOO=bar baz"]
    cfg["process"]["cwd"] = "/tmp"
    out = run_and_read(ocipy, bundle, "hostname; cat /proc/sys/kernel/domainname; cat /proc/self/status; echo FOO=$FOO; echo HOME=$HOME; pwd; umask")
    lines = out.splitlines()
    assert lines[0] == "box1" and lines[1] == "example.org"
    assert status_field(out, "Uid").split() == ["1000"] * 4
    assert status_field(out, "Gid").split() == ["1001"] * 4
    assert sorted(status_field(out, "Groups").split()) == ["5", "7"]
    assert "FOO=bar baz" in lines
    assert "HOME=/" in lines  # no passwd entry for 1000: "/" as runc
    assert "/tmp" in lines and "0027" in lines


def _ignore_and_block():
    """What an engine may hand down (nohup, a shell's job control): ignored and blocked signals."""
    import signal

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})


def test_the_process_starts_with_every_signal_default_and_unblocked(ocipy, bundle):
    """Whatever ocipy inherited or set itself (Python ignores SIGPIPE and SIGXFSZ) must not
    reach the container's process: an ignored SIGPIPE would break every pipeline in it."""
    bundle.args("grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status").write()  # no shell: sh sets its own
    r = ocipy("run", "--bundle", bundle.path, "sig1", preexec_fn=_ignore_and_block)
    assert r.returncode == 0, r.stderr
    assert int(status_field(r.stdout, "SigIgn"), 16) == 0, r.stdout
    assert int(status_field(r.stdout, "SigBlk"), 16) == 0, r.stdout


def test_capabilities_all_five_sets(ocipy, bundle):
    caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    bundle.config["process"]["capabilities"] = {
        "bounding": caps + ["CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"],
        "effective": caps,
        "permitted": caps,
        "inheritable": ["CAP_KILL"],
        "ambient": ["CAP_KILL"],
    }
    bundle.config["process"]["noNewPrivileges"] = True
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    out = run_and_read(ocipy, bundle, "cat /proc/self/status")
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    bnd = cap_mask(caps + ["CAP_SYS_ADMIN"]) | (cap_mask(["CAP_CHECKPOINT_RESTORE"]) if last >= 40 else 0)
    assert int(status_field(out, "CapBnd"), 16) == bnd
    # After execve as uid 1000: permitted/effective come from ambient only.
    assert int(status_field(out, "CapAmb"), 16) == cap_mask(["CAP_KILL"])
    assert int(status_field(out, "CapInh"), 16) == cap_mask(["CAP_KILL"])
    assert int(status_field(out, "CapEff"), 16) == cap_mask(["CAP_KILL"])
    assert status_field(out, "NoNewPrivs") == "1"


def test_root_capabilities_exact(ocipy, bundle):
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    bundle.config["process"]["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
    bundle.config["process"]["noNewPrivileges"] = False
    out = run_and_read(ocipy, bundle, "cat /proc/self/status")
    for field in ("CapBnd", "CapEff", "CapPrm"):
        assert int(status_field(out, field), 16) == cap_mask(caps), field
    assert status_field(out, "NoNewPrivs") == "0"


def test_rlimits_and_oom_score(ocipy, bundle):
    hard_nofile = os.sysconf("SC_OPEN_MAX")
    import resource

    hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    bundle.config["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 256, "hard": min(512, hard_nofile)},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
    ]
    bundle.config["process"]["oomScoreAdj"] = 500
    out = run_and_read(ocipy, bundle, "cat /proc/self/limits; cat /proc/self/oom_score_adj")
    nofile = re.search(r"^Max open files\s+(\d+)\s+(\d+)", out, re.M).groups()
    assert nofile == ("256", str(min(512, hard_nofile)))
    assert re.search(r"^Max core file size\s+0\s+0", out, re.M)
    assert out.splitlines()[-1] == "500"


def test_rlimit_above_hard_limit_fails_clearly_and_leaves_nothing(ocipy, bundle, state_root):
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("RLIMIT_NOFILE hard limit is unlimited here: nothing to exceed")
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]
    bundle.write()
    r = ocipy("create", "--bundle", bundle.path, "rl")
    assert r.returncode == 1
    assert "RLIMIT_NOFILE" in r.stderr and "CAP_SYS_RESOURCE" in r.stderr
    assert container_dirs(state_root) == []


def test_new_namespaces_differ_from_host(ocipy, bundle):
    bundle.config["linux"]["namespaces"] = [{"type": t} for t in ("pid", "network", "mount", "ipc", "uts", "cgroup", "time")]
    out = run_and_read(ocipy, bundle, "for n in pid net mnt ipc uts cgroup time; do echo $n $(readlink /proc/self/ns/$n); done; echo pid=$$; ip link show lo 2>/dev/null || cat /sys/class/net/lo/operstate")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("pid", "net", "mnt", "ipc", "uts", "cgroup", "time"):
            assert parts[1] != os.readlink(f"/proc/self/ns/{parts[0]}"), parts[0]
    assert "pid=1" in out
    assert "UP" in out or "unknown" in out  # loopback up in a new network namespace


def test_time_namespace_offsets(ocipy, bundle):
    bundle.config["linux"]["namespaces"].append({"type": "time"})
    bundle.config["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 365, "nanosecs": 0}}
    out = run_and_read(ocipy, bundle, "cat /proc/uptime")
    host_uptime = float(open("/proc/uptime").read().split()[0])
    assert float(out.split()[0]) - host_uptime > 86400 * 364


def test_join_namespace_by_path(ocipy, bundle, tmp_path, busybox_rootfs):
    Bundle = type(bundle)
    bundle.args("sleep", "100").write()
    assert ocipy("run", "--detach", "--bundle", bundle.path, "first").returncode == 0
    import json

    pid = json.loads(ocipy("state", "first").stdout)["pid"]
    other_dir = tmp_path / "second"
    other_dir.mkdir()
    second = Bundle(other_dir, busybox_rootfs)
    second.config["linux"]["namespaces"] = [
        {"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
        {"type": "uts", "path": f"/proc/{pid}/ns/uts"},
        {"type": "network", "path": f"/proc/{pid}/ns/net"},
    ]
    second.config["hostname"] = None
    del second.config["hostname"]
    out = run_and_read(ocipy, second, "readlink /proc/self/ns/net; readlink /proc/self/ns/uts", cid="second")
    net, uts = out.split()
    assert net == os.readlink(f"/proc/{pid}/ns/net") and uts == os.readlink(f"/proc/{pid}/ns/uts")
    assert ocipy("delete", "--force", "first").returncode == 0


def _use_user_namespace(bundle, *, uid_host: int, gid_host: int) -> None:
    """A new user namespace mapping 0-65535 to uid_host.. and gid_host.."""
    # The mapped root must be able to reach the rootfs, as under runc.
    for parent in bundle.path.parents:
        if parent == parent.parent:
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o011)
    bundle.config["linux"]["namespaces"].append({"type": "user"})
    bundle.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": uid_host, "size": 65536}]
    bundle.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": gid_host, "size": 65536}]
    # A host-root-owned rootfs is fine to read through the mapping; /sys needs a bind in a user ns.
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["destination"] not in ("/sys", "/sys/fs/cgroup")]


def test_user_namespace_mappings(ocipy, bundle):
    _use_user_namespace(bundle, uid_host=100000, gid_host=200000)
    out = run_and_read(ocipy, bundle, "cat /proc/self/uid_map /proc/self/gid_map; id -u")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["0", "100000", "65536"] and rows[1] == ["0", "200000", "65536"] and rows[2] == ["0"]


def _own_cgroups() -> dict:
    """hierarchy id -> this process's cgroup path, from /proc/self/cgroup."""
    with open("/proc/self/cgroup") as f:
        return {line.split(":", 2)[0]: line.rstrip("\n").split(":", 2)[2] for line in f}


@pytest.mark.parametrize("userns", [False, True], ids=["stage1-forks-pid1-into-cgroup2", "stage1-born-in-cgroup2"])
def test_container_process_is_in_its_cgroup_in_every_hierarchy(ocipy, bundle, userns):
    """pid 1 lands in the container's cgroup in each hierarchy, the cgroup2 one too, whichever
    way create forks its stages (without a user namespace stage 1 is forked before the
    cgroup exists, and forks pid 1 into it; with one, stage 1 is forked into it)."""
    if userns:
        _use_user_namespace(bundle, uid_host=100000, gid_host=100000)
    rel = bundle.config["linux"]["cgroupsPath"]
    seen = dict(line.split(":", 2)[0::2] for line in run_and_read(ocipy, bundle, "cat /proc/self/cgroup").splitlines())
    ours = _own_cgroups()
    with open("/proc/self/mountinfo") as f:
        has_cgroup2 = " - cgroup2 " in f.read()
    assert seen.keys() == ours.keys()
    for hierarchy, path in ours.items():
        if hierarchy == "0" and not has_cgroup2:
            continue  # the kernel lists a cgroup2 line with no such hierarchy mounted
        assert seen[hierarchy] == f"{path.rstrip('/')}/{rel}", (hierarchy, seen[hierarchy])


def test_mounts_readonly_root_masked_and_readonly_paths(ocipy, bundle):
    cfg = bundle.config
    cfg["root"]["readonly"] = True
    cfg["linux"]["maskedPaths"] = ["/proc/kcore", "/sys/firmware", "/etc/secret"]
    cfg["linux"]["readonlyPaths"] = ["/proc/sys"]
    (bundle.rootfs / "etc" / "secret").write_text("top secret\n")
    out = run_and_read(
        ocipy, bundle,
        "touch /x 2>&1 || echo ROOT_RO; cat /etc/secret; echo masked=$?; ls /sys/firmware | wc -l;"
        "echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo PROCSYS_RO; grep -E ' / | /proc | /dev ' /proc/self/mountinfo",
    )
    assert "ROOT_RO" in out and "top secret" not in out and "PROCSYS_RO" in out
    assert re.search(r" / ro[ ,]", out)
    assert re.search(r" /proc rw,.* - proc ", out)


def test_default_devices_and_dev_symlinks(ocipy, bundle):
    bundle.config["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    out = run_and_read(
        ocipy, bundle,
        "for d in null zero full random urandom tty; do stat -c '%n %t:%T %a' /dev/$d; done;"
        "for l in fd stdin stdout stderr ptmx; do echo $l $(readlink /dev/$l); done; echo x > /dev/null && echo NULL_OK",
    )
    assert "/dev/null 1:3 666" in out and "/dev/zero 1:5 666" in out and "/dev/tty 5:0 666" in out
    assert "fd /proc/self/fd" in out and "stdin /proc/self/fd/0" in out and "stderr /proc/self/fd/2" in out
    assert "ptmx pts/ptmx" in out and "NULL_OK" in out


def test_only_stdio_and_preserved_fds_reach_the_container(state_root, bundle, tmp_path):
    bundle.shell("ls /proc/self/fd").write()
    r_keep, w_keep = os.pipe()
    r_stray, w_stray = os.pipe()
    os.set_inheritable(r_keep, True)
    os.set_inheritable(r_stray, True)
    try:
        # fd 3 is preserved (--preserve-fds 1); the stray inheritable fd above it must not pass.
        script = (
            f"import os,sys; os.dup2({r_keep}, 3); "
            f"os.execv(sys.executable, [sys.executable, '-m', 'ocipy', '--root', {str(state_root)!r}, 'run', '--preserve-fds', '1', '--bundle', {str(bundle.path)!r}, 'fds'])"
        )
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, pass_fds=(r_keep, r_stray))
    finally:
        for fd in (r_keep, w_keep, r_stray, w_stray):
            os.close(fd)
    assert r.returncode == 0, r.stderr
    fds = sorted(int(x) for x in r.stdout.split())
    # ls itself opens one fd for /proc/self/fd
    assert fds[:4] == [0, 1, 2, 3] and len(fds) == 5, fds


def test_init_is_not_dumpable_while_waiting_for_start(ocipy, bundle):
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.args("true").write()
    assert ocipy("create", "--bundle", bundle.path, "dump").returncode == 0
    import json

    pid = json.loads(ocipy("state", "dump").stdout)["pid"]
    # A dumpable process's /proc files belong to its euid (1000); a non-dumpable one's to root.
    assert os.stat(f"/proc/{pid}/environ").st_uid == 0
    assert status_field(open(f"/proc/{pid}/status").read(), "Uid").split()[0] == "1000"
    assert ocipy("delete", "--force", "dump").returncode == 0


def test_missing_executable_fails_create_with_runc_message(ocipy, bundle, state_root):
    bundle.args("no-such-binary").write()
    r = ocipy("create", "--bundle", bundle.path, "nx")
    assert r.returncode == 1
    assert 'exec: "no-such-binary": executable file not found in $PATH' in r.stderr
    assert container_dirs(state_root) == []
    bundle.args("/etc/passwd").write()
    r = ocipy("create", "--bundle", bundle.path, "nx")
    assert r.returncode == 1 and "permission denied" in r.stderr


def test_invalid_config_names_path_and_rule(ocipy, bundle, state_root):
    bundle.config["process"]["cwd"] = "tmp"
    bundle.config["mounts"][0]["type"] = 7
    bundle.write()
    r = ocipy("create", "--bundle", bundle.path, "bad")
    assert r.returncode == 1
    assert 'config.json: /process/cwd: "tmp" must be an absolute path' in r.stderr
    assert "config.json: /mounts/0/type: 7 is not a string" in r.stderr
    assert container_dirs(state_root) == []


def test_a_config_also_for_windows_still_needs_a_root_on_linux(ocipy, bundle, state_root):
    """The schema lets a config with a windows object leave root out; create says so, where
    it used to fail with a traceback."""
    del bundle.config["root"]
    bundle.config["windows"] = {"layerFolders": ["C:\\layers"]}
    bundle.write()
    r = ocipy("create", "--bundle", bundle.path, "nowroot")
    assert r.returncode == 1
    assert "config.json: /root: is required on Linux" in r.stderr
    assert "Traceback" not in r.stderr
    assert container_dirs(state_root) == []


def test_unknown_capability_is_logged_and_ignored(ocipy, bundle):
    bundle.config["process"]["capabilities"] = {k: ["CAP_KILL", "CAP_FOO"] for k in ("bounding", "effective", "permitted")}
    bundle.shell("grep CapEff /proc/self/status").write()
    r = ocipy("run", "--bundle", bundle.path, "unk")
    assert r.returncode == 0
    assert '/process/capabilities/bounding/1: "CAP_FOO" is not a capability: ignored' in r.stderr
    assert int(r.stdout.split()[1], 16) == 1 << 5  # CAP_KILL only


def test_terminal_through_console_socket(ocipy, bundle, tmp_path):
    from ocipy.linux.console import receive_master

    sock_path = tmp_path / "console.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["consoleSize"] = {"height": 33, "width": 101}
    bundle.shell("tty; stty size; readlink /proc/self/fd/0").write()
    try:
        r = ocipy("create", "--bundle", bundle.path, "--console-socket", sock_path, "tty1")
        assert r.returncode == 0, r.stderr
        conn, _ = server.accept()
        master = receive_master(conn)
        conn.close()
        assert ocipy("start", "tty1").returncode == 0
        data = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        os.close(master)
    finally:
        server.close()
    text = data.decode()
    assert "/dev/pts/0" in text and "33 101" in text
    assert ocipy("delete", "--force", "tty1").returncode == 0


def test_terminal_without_console_socket_is_refused(ocipy, bundle, state_root):
    bundle.config["process"]["terminal"] = True
    bundle.write()
    r = ocipy("create", "--bundle", bundle.path, "t2")
    assert r.returncode == 1 and "console socket" in r.stderr
    assert container_dirs(state_root) == []


def test_run_in_foreground_relays_its_own_pty(ocipy, bundle):
    """terminal: true without --console-socket: `run` takes the pty itself and relays it."""
    bundle.config["process"]["terminal"] = True
    bundle.shell("tty; echo done").write()
    r = ocipy("run", "--bundle", bundle.path, "fgtty")
    assert r.returncode == 0, r.stderr
    assert "/dev/pts/0" in r.stdout and "done" in r.stdout

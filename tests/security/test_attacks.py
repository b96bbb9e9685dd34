"""Attacks from inside a container, end to end through `ocipy run` (root).

Each test runs the attack for real, prints what it tried and what came back, and,
where the outcome could pass by accident, runs a control with the defence switched
off so the test can fail: maskedPaths and readonlyPaths (also after remount and
umount attempts), capabilities (CAP_SYS_ADMIN, CAP_NET_RAW), no_new_privs against a
setuid binary, a mapped root against host-owned files, symlinks in the rootfs.
"""

import os
import re
import stat

import pytest

from helpers_attacks import EUID_PROBE, build_probe, run_script, userns

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("no_leaks")]



def caps(bundle, names):
    bundle.config["process"]["capabilities"] = {k: list(names) for k in ("bounding", "effective", "permitted", "ambient")}


# --- maskedPaths and readonlyPaths ---------------------------------------------------------
CHECK_MASKS = (
    "exec 2>&1; "
    'echo "kcore_bytes=$(wc -c < /proc/kcore)"; '
    'echo "timer_list_bytes=$(wc -c < /proc/timer_list)"; '
    'echo "firmware_entries=$(ls /sys/firmware | wc -l)"; '
    "if echo 50 > /proc/sys/vm/overcommit_ratio; then echo PROCSYS-WRITTEN; fi; "
    "if echo h > /proc/sysrq-trigger; then echo SYSRQ-WRITTEN; fi; "
)


def _nothing_read(out: str, name: str) -> bool:
    """`name_bytes=` empty (the open failed: a kernel without the file, or denied) or 0 (the mask)."""
    m = re.search(rf"^{name}=(\d*)$", out, re.M)
    assert m, f"the probe for {name} did not run: {out!r}"
    return m.group(1) in ("", "0")


def _assert_masks_hold(out: str) -> None:
    assert _nothing_read(out, "kcore_bytes"), f"VULNERABLE: /proc/kcore readable: {out!r}"
    assert _nothing_read(out, "timer_list_bytes"), f"VULNERABLE: /proc/timer_list readable: {out!r}"
    assert _nothing_read(out, "firmware_entries"), f"VULNERABLE: /sys/firmware listable: {out!r}"
    assert "PROCSYS-WRITTEN" not in out, f"VULNERABLE: /proc/sys written: {out!r}"
    assert "SYSRQ-WRITTEN" not in out, f"VULNERABLE: /proc/sysrq-trigger written: {out!r}"


def test_masked_and_readonly_paths_survive_remount_and_umount_without_cap_sys_admin(ocipy, bundle):
    script = (
        "exec 2>&1; "
        "mount -o remount,rw /proc/sys && echo REMOUNTED-procsys; "
        "mount -o remount,rw,bind /proc/sys && echo REMOUNTED-procsys-bind; "
        "umount /proc/kcore && echo UMOUNTED-kcore; "
        "umount -l /proc/timer_list && echo UMOUNTED-timer_list; "
        "umount /sys/firmware && echo UMOUNTED-firmware; "
        "mount -t proc proc /tmp && echo MOUNTED-fresh-proc; "
        + CHECK_MASKS + "exit 0"
    )
    r = run_script(ocipy, bundle, script, "mask1", what="remount/umount masks with the default capabilities")
    assert r.returncode == 0, r.stderr
    for word in ("REMOUNTED", "UMOUNTED", "MOUNTED-fresh"):
        assert word not in r.stdout, f"VULNERABLE: {word} without CAP_SYS_ADMIN: {r.stdout!r}"
    _assert_masks_hold(r.stdout)


def test_masks_hold_for_cap_sys_admin_in_a_nested_user_namespace(ocipy, bundle):
    """CAP_SYS_ADMIN in the container, then a new user+mount namespace: every inherited mount is locked there."""
    # CAP_SETFCAP: mapping uid 0 of the parent namespace needs it (Linux >= 5.12)
    caps(bundle, ["CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETFCAP"])
    nested = (
        "umount /proc/kcore && echo UMOUNTED-kcore; "
        "umount /proc/timer_list && echo UMOUNTED-timer_list; "
        "mount -o remount,rw,bind /proc/sys && echo REMOUNTED-procsys; "
        "mount -o remount,rw /proc/sys && echo REMOUNTED-procsys2; "
        + CHECK_MASKS
    )
    script = f"exec 2>&1; unshare -U -r -m sh -c '{nested}'; echo unshare_rc=$?; exit 0"
    r = run_script(ocipy, bundle, script, "mask2", what="CAP_SYS_ADMIN + unshare -U -r -m, then umount/remount")
    assert r.returncode == 0, r.stderr
    if "unshare_rc=0" not in r.stdout and "kcore_bytes" not in r.stdout:
        pytest.skip(f"could not create a nested user namespace here: {r.stdout!r}")
    for word in ("UMOUNTED", "REMOUNTED"):
        assert word not in r.stdout, f"VULNERABLE: {word} of a locked mount in a nested user namespace: {r.stdout!r}"
    _assert_masks_hold(r.stdout)


def test_masks_hold_for_cap_sys_admin_in_the_containers_user_namespace(ocipy, bundle):
    """A mapped root with CAP_SYS_ADMIN (in its own user namespace): whatever it may unmount, no host data leaks."""
    userns(bundle)
    bundle.config["linux"]["maskedPaths"] = ["/proc/kcore", "/proc/timer_list", "/proc/keys"]
    caps(bundle, ["CAP_SYS_ADMIN"])
    script = (
        "exec 2>&1; "
        "umount /proc/kcore && echo umounted-kcore; "
        "umount /proc/timer_list && echo umounted-timer_list; "
        "mount -o remount,rw,bind /proc/sys && echo remounted-procsys; "
        'echo "kcore_bytes=$(wc -c < /proc/kcore)"; '
        'echo "timer_list_bytes=$(wc -c < /proc/timer_list)"; '
        "if echo 50 > /proc/sys/vm/overcommit_ratio; then echo PROCSYS-WRITTEN; fi; exit 0"
    )
    r = run_script(ocipy, bundle, script, "mask3", what="mapped root with CAP_SYS_ADMIN: umount/remount masks")
    assert r.returncode == 0, r.stderr
    # The masks are this user namespace's own mounts, not locked: CAP_SYS_ADMIN may remove them (as under runc).
    # What must hold is that the kernel then still refuses the host's data to a mapped root.
    print("mask removal by the mapped root:", [w for w in ("umounted-kcore", "umounted-timer_list", "remounted-procsys") if w in r.stdout])
    assert _nothing_read(r.stdout, "kcore_bytes"), f"VULNERABLE: /proc/kcore readable: {r.stdout!r}"
    assert "PROCSYS-WRITTEN" not in r.stdout, f"VULNERABLE: a host sysctl written: {r.stdout!r}"
    assert _nothing_read(r.stdout, "timer_list_bytes"), (
        "VULNERABLE: a mapped root with CAP_SYS_ADMIN unmounted the mask over /proc/timer_list and read the host's "
        f"timers: {r.stdout!r}"
    )


# --- capabilities -----------------------------------------------------------------------------
def test_no_mount_without_cap_sys_admin(ocipy, bundle):
    script = "mount -t tmpfs none /tmp && echo MOUNTED; exit 0"
    r = run_script(ocipy, bundle, script, "cap1", what="mount tmpfs with the default capabilities")
    assert r.returncode == 0, r.stderr
    assert "MOUNTED" not in r.stdout, "VULNERABLE: mounted without CAP_SYS_ADMIN"
    caps(bundle, ["CAP_SYS_ADMIN"])
    r = run_script(ocipy, bundle, script, "cap1b", what="control: the same with CAP_SYS_ADMIN")
    assert "MOUNTED" in r.stdout, f"control failed: the mount does not work even with CAP_SYS_ADMIN: {r.stdout!r} {r.stderr!r}"


def test_no_raw_socket_without_cap_net_raw(ocipy, bundle):
    # In a new network namespace net.ipv4.ping_group_range is "1 0" (no unprivileged ICMP sockets),
    # so busybox ping needs a raw socket, hence CAP_NET_RAW.
    script = "cat /proc/sys/net/ipv4/ping_group_range; ping -c1 -W2 127.0.0.1 >/dev/null 2>&1 && echo PINGED; exit 0"
    r = run_script(ocipy, bundle, script, "raw1", what="ping (raw ICMP socket) with the default capabilities")
    assert r.returncode == 0, r.stderr
    assert "PINGED" not in r.stdout, "VULNERABLE: a raw socket without CAP_NET_RAW"
    caps(bundle, ["CAP_NET_RAW"])
    r = run_script(ocipy, bundle, script, "raw2", what="control: the same with CAP_NET_RAW")
    assert "PINGED" in r.stdout, f"control failed: ping does not work even with CAP_NET_RAW: {r.stdout!r} {r.stderr!r}"


@pytest.mark.parametrize("nnp", [True, False], ids=["noNewPrivileges", "control-without"])
def test_no_new_privs_blocks_a_setuid_gain(ocipy, bundle, tmp_path, nnp):
    probe = build_probe(EUID_PROBE, tmp_path / "euid_probe")
    dest = bundle.rootfs / "bin" / "suid-euid"
    dest.write_bytes(probe.read_bytes())
    os.chown(dest, 0, 0)
    os.chmod(dest, 0o4755)
    assert os.stat(dest).st_mode & stat.S_ISUID
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["process"]["noNewPrivileges"] = nnp
    r = run_script(ocipy, bundle, "id -u; /bin/suid-euid", f"nnp{int(nnp)}", what=f"uid 1000 runs a setuid-root binary, noNewPrivileges={nnp}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "1000"
    if nnp:
        assert "euid=1000" in r.stdout, f"VULNERABLE: setuid gained root despite noNewPrivileges: {r.stdout!r}"
    else:
        assert "euid=0" in r.stdout, f"control failed: the setuid bit does not work here at all: {r.stdout!r}"


# --- user namespaces -----------------------------------------------------------------------------
def test_mapped_root_cannot_write_a_host_owned_file_through_a_bind_mount(ocipy, bundle, tmp_path):
    host = tmp_path / "hostshare"
    host.mkdir()
    os.chmod(host, 0o755)
    victim = host / "victim"
    victim.write_text("host-owned\n")
    os.chmod(victim, 0o644)
    mine = host / "mapped"
    mine.write_text("owned by the mapped root\n")
    os.chown(mine, 100000, 100000)
    userns(bundle)
    (bundle.rootfs / "share").mkdir()  # the mapped root cannot create it in a host-root-owned rootfs
    bundle.bind(host, "/share", "rw")
    script = (
        "exec 2>&1; id -u; "
        "echo pwned >> /share/victim && echo WROTE-victim; "
        "chmod 666 /share/victim && echo CHMOD-victim; "
        "rm -f /share/victim; [ -e /share/victim ] || echo REMOVED-victim; "
        "touch /share/new && echo CREATED-new; "
        "echo ok >> /share/mapped && echo control-wrote-mapped; exit 0"
    )
    r = run_script(ocipy, bundle, script, "uns1", what="mapped root (0 -> 100000) writes host root:root files via a bind mount")
    assert r.returncode == 0, r.stderr
    assert "control-wrote-mapped" in r.stdout, f"control failed: the mapped root cannot write even its own file: {r.stdout!r}"
    for word in ("WROTE-victim", "CHMOD-victim", "REMOVED-victim", "CREATED-new"):
        assert word not in r.stdout, f"VULNERABLE: {word}: {r.stdout!r}"
    assert victim.read_text() == "host-owned\n" and stat.S_IMODE(os.stat(victim).st_mode) == 0o644
    assert not (host / "new").exists()


# --- symlinks in the rootfs, end to end ---------------------------------------------------------
@pytest.fixture
def host_secret(tmp_path):
    d = tmp_path / "hostside"
    d.mkdir()
    f = d / "secret"
    f.write_text("host file, must stay untouched\n")
    os.chmod(f, 0o600)
    return f


def _snapshot(path):
    st = os.lstat(path)
    return (st.st_mode, st.st_ino, st.st_rdev, path.read_text() if stat.S_ISREG(st.st_mode) else None, sorted(os.listdir(path.parent)))


@pytest.mark.parametrize("shape", ["absolute", "relative"])
def test_dev_null_symlink_to_a_host_file_through_run(ocipy, bundle, host_secret, shape):
    # Without a /dev tmpfs the rootfs's own /dev gets the default devices: make /dev/null a trap.
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if not m["destination"].startswith("/dev")]
    dev = bundle.rootfs / "dev"
    dev.mkdir(exist_ok=True)
    target = str(host_secret) if shape == "absolute" else "../" * 30 + str(host_secret).lstrip("/")
    (dev / "null").symlink_to(target)
    before = _snapshot(host_secret)
    r = run_script(ocipy, bundle, "echo pwned > /dev/null; cat /dev/null; ls -l /dev/null; exit 0", f"devnull-{shape}",
                   what=f"/dev/null -> {target}")
    assert "host file" not in r.stdout, f"VULNERABLE: the host file was read through /dev/null: {r.stdout!r}"
    assert _snapshot(host_secret) == before, "VULNERABLE: the host file behind the /dev/null symlink changed"


@pytest.mark.parametrize("shape", ["absolute", "relative"])
def test_mount_destination_symlink_to_a_host_dir_through_run(ocipy, bundle, host_secret, tmp_path, shape):
    host_dir = host_secret.parent
    target = str(host_dir) if shape == "absolute" else "../" * 30 + str(host_dir).lstrip("/")
    (bundle.rootfs / "evil").symlink_to(target)
    bundle.config["mounts"].append({"destination": "/evil", "type": "tmpfs", "source": "tmpfs", "options": ["mode=777"]})
    bundle.config["mounts"].append({"destination": "/evil/sub", "type": "tmpfs", "source": "tmpfs"})
    before = _snapshot(host_secret)
    r = run_script(ocipy, bundle, "echo pwned > /evil/planted; ls -la /evil; cat /evil/secret; exit 0", f"mdst-{shape}",
                   what=f"mount destination /evil -> {target}")
    assert "host file" not in r.stdout, f"VULNERABLE: the host dir is visible inside: {r.stdout!r}"
    assert _snapshot(host_secret) == before, "VULNERABLE: the host dir behind the mount destination changed"
    assert sorted(os.listdir(host_dir)) == ["secret"], f"VULNERABLE: files appeared in the host dir: {os.listdir(host_dir)}"

"""config.md: ociVersion, root, mounts, process, hostname, domainname, annotations,
extensibility (hooks are in test_hooks.py)."""

import array
import os
import re
import resource
import socket
import subprocess
import threading
import time

import pytest

from .markers import requirement, runc_deviation


def limits(text):
    """Parse /proc/self/limits into {name: (soft, hard)}."""
    out = {}
    for line in text.splitlines()[1:]:
        m = re.match(r"(.+?)\s{2,}(\S+)\s+(\S+)\s+", line)
        if m:
            out[m.group(1).strip()] = (m.group(2), m.group(3))
    return out


def status_field(text, name):
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


# -- ociVersion / extensibility --------------------------------------------------------
@requirement("config.md#specification-version", "ociVersion (string, REQUIRED) MUST be in SemVer v2.0.0 format")
def test_oci_version_accepted(oci):
    b = oci.bundle(["/bin/echo", "ok"])
    b.config["ociVersion"] = "1.3.0"
    assert oci.run(b) == "ok\n"


# config.md#valid-values: "Runtimes MUST generate an error when invalid or unsupported values
# are encountered."  runc 1.1.5 does not validate ociVersion and runs the container anyway.
@runc_deviation("ociVersion is not validated: a non-SemVer value is accepted")
@requirement("config.md#valid-values", "Runtimes MUST generate an error when invalid or unsupported values are encountered.")
def test_oci_version_invalid(oci):
    b = oci.bundle()
    b.config["ociVersion"] = "not a version"
    assert not oci.create(b, check=False).ok


@requirement("config.md#extensibility", "Runtimes MAY log unknown properties but MUST otherwise ignore them.")
def test_unknown_properties_ignored(oci):
    b = oci.bundle(["/bin/echo", "ok"])
    b.config["org.example.unknown"] = {"x": 1}
    b.process["org.example.unknown"] = True
    b.linux["org.example.unknown"] = [1, 2]
    assert oci.run(b) == "ok\n"


# -- root --------------------------------------------------------------------------
@requirement("config.md#root", "path ... either an absolute path or a relative path to the bundle")
def test_root_absolute_path(oci):
    b = oci.bundle(["/bin/echo", "ok"])
    b.config["root"]["path"] = b.rootfs
    assert oci.run(b) == "ok\n"


@requirement("config.md#root", "readonly (bool, OPTIONAL) If true then the root filesystem MUST be read-only inside the container")
def test_root_readonly(oci):
    b = oci.bundle()
    b.config["root"]["readonly"] = True
    out = oci.run_ok(b, "touch /newfile 2>&1; echo rc=$?")
    assert "rc=0" not in out, out
    assert not os.path.exists(os.path.join(b.rootfs, "newfile"))


@requirement("config.md#root", "readonly ... defaults to false")
def test_root_writable_by_default(oci):
    b = oci.bundle()
    del b.config["root"]["readonly"]
    assert "rc=0" in oci.run_ok(b, "touch /newfile; echo rc=$?")
    assert os.path.exists(os.path.join(b.rootfs, "newfile"))


# -- mounts --------------------------------------------------------------------------
def mountinfo_of(out, target):
    """(per-mount options, optional fields, fstype, super options) of the top mount at target."""
    found = None
    for line in out.splitlines():
        pre, _, post = line.partition(" - ")
        f = pre.split()
        if len(f) >= 6 and f[4] == target:
            p = post.split()
            found = (set(f[5].split(",")), f[6:], p[0], set(p[2].split(",")) if len(p) > 2 else set())
    return found


def run_mountinfo(oci, b, target):
    out = oci.run_ok(b, "cat /proc/self/mountinfo")
    info = mountinfo_of(out, target)
    assert info, f"{target} not mounted:\n{out}"
    return info


@requirement("config.md#mounts", "The runtime MUST mount entries in the listed order.")
def test_mounts_in_listed_order(oci):
    b = oci.bundle()
    for name in ("first", "second"):
        d = os.path.join(b.path, name)
        os.makedirs(d)
        with open(os.path.join(d, "who"), "w") as f:
            f.write(name)
        b.config["mounts"].append({"destination": "/mnt/m", "type": "bind", "source": d, "options": ["bind"]})
    b.config["mounts"].append({"destination": "/mnt/m/sub", "type": "tmpfs", "source": "tmpfs"})
    out = oci.run_ok(b, "cat /mnt/m/who; echo; grep -c ' /mnt/m/sub ' /proc/self/mountinfo")
    assert out.split() == ["second", "1"]


@requirement("config.md#mounts", "destination ... MAY be a relative path, in which case it MUST be interpreted as relative to \"/\"")
def test_mount_relative_destination(oci):
    b = oci.bundle()
    b.config["mounts"].append({"destination": "mnt/rel", "type": "tmpfs", "source": "tmpfs"})
    info = run_mountinfo(oci, b, "/mnt/rel")
    assert info[2] == "tmpfs"


@pytest.mark.parametrize("mtype,source,fstype", [
    ("tmpfs", "tmpfs", "tmpfs"), ("proc", "proc", "proc"), ("sysfs", "sysfs", "sysfs"),
    ("mqueue", "mqueue", "mqueue"), ("devpts", "devpts", "devpts"), ("bind", None, None)])
@requirement("config.md#mounts", "type (string, OPTIONAL) The type of the filesystem to be mounted")
def test_mount_types(oci, mtype, source, fstype):
    b = oci.bundle()
    m = {"destination": "/mnt/t", "type": mtype, "source": source or b.shared}
    if mtype == "bind":
        m["options"] = ["rbind"]
        with open(b.shared_file("bound"), "w") as f:
            f.write("bound-content")
    if mtype == "devpts":
        m["options"] = ["newinstance"]
    b.config["mounts"].append(m)
    out = oci.run_ok(b, "cat /proc/self/mountinfo; cat /mnt/t/bound 2>/dev/null")
    info = mountinfo_of(out, "/mnt/t")
    assert info, f"/mnt/t not mounted:\n{out}"
    if fstype:
        assert info[2] == fstype
    else:  # the bind mount shows the host directory's content
        assert out.endswith("bound-content"), out[-200:]


@requirement("config.md#mounts", "source ... For bind mounts ... a path on the host")
def test_bind_mount_content_and_write_through(oci):
    b = oci.bundle()
    with open(b.shared_file("host-file"), "w") as f:
        f.write("from host")
    out = oci.run_ok(b, "cat /out/host-file; echo from-container > /out/back")
    assert out == "from host"
    assert b.read_shared("back") == "from-container\n"


@requirement("config.md#mounts", "options ... bind: Bind mount; type may be omitted")
def test_bind_mount_without_type(oci):
    b = oci.bundle()
    b.config["mounts"].append({"destination": "/mnt/b", "source": b.shared, "options": ["bind"]})
    with open(b.shared_file("x"), "w") as f:
        f.write("seen")
    assert oci.run_ok(b, "cat /mnt/b/x") == "seen"


# Options whose effect shows in /proc/self/mountinfo: (option, present, absent) where
# present/absent are tokens expected in the per-mount or super options.
FLAG_OPTIONS = [
    ("ro", {"ro"}, {"rw"}), ("rw", {"rw"}, {"ro"}),
    ("nosuid", {"nosuid"}, set()), ("suid", set(), {"nosuid"}),
    ("nodev", {"nodev"}, set()), ("dev", set(), {"nodev"}),
    ("noexec", {"noexec"}, set()), ("exec", set(), {"noexec"}),
    ("noatime", {"noatime"}, {"relatime"}), ("atime", set(), {"noatime"}),
    ("relatime", {"relatime"}, {"noatime"}), ("strictatime", set(), {"noatime", "relatime"}),
    ("nodiratime", {"nodiratime"}, set()), ("diratime", set(), {"nodiratime"}),
    ("sync", {"sync"}, set()), ("async", set(), {"sync"}),
    ("dirsync", {"dirsync"}, set()), ("lazytime", {"lazytime"}, set()), ("nolazytime", set(), {"lazytime"}),

    ("norelatime", set(), set()), ("nostrictatime", set(), set()),
    ("iversion", set(), set()), ("noiversion", set(), set()),
    ("loud", set(), set()), ("silent", set(), set()),
    ("mand", set(), set()), ("nomand", set(), set()),
]


PER_MOUNT = {"ro", "rw", "nosuid", "nodev", "noexec", "noatime", "relatime", "nodiratime", "nosymfollow"}


# config.md#linux-mount-options: `defaults` is a MUST option ("[^1] mount(8)").
# runc 1.1.5 does not know it and passes it to mount(2) as data: EINVAL for tmpfs.
@runc_deviation("the `defaults` mount option is passed to mount(2) as data and fails")
@requirement("config.md#linux-mount-options", "defaults MUST")
def test_mount_option_defaults(oci):
    b = oci.bundle()
    b.config["mounts"].append({"destination": "/mnt/o", "type": "tmpfs", "source": "tmpfs",
                               "options": ["defaults"]})
    opts, _, _, _ = run_mountinfo(oci, b, "/mnt/o")
    assert "rw" in opts and not ({"ro", "nosuid", "nodev", "noexec"} & opts)


@pytest.mark.parametrize("option,present,absent", FLAG_OPTIONS, ids=[o[0] for o in FLAG_OPTIONS])
@requirement("config.md#linux-mount-options", "Runtimes MUST/SHOULD/MAY implement the following option strings for Linux")
def test_mount_option(oci, option, present, absent):
    b = oci.bundle()
    b.config["mounts"].append({"destination": "/mnt/o", "type": "tmpfs", "source": "tmpfs",
                               "options": [option]})
    opts, _, _, sopts = run_mountinfo(oci, b, "/mnt/o")
    seen = opts | sopts
    assert present <= seen, f"{option}: want {present} in {seen}"
    # ro/rw & co are per-mount flags; the superblock may say otherwise (tmpfs is rw)
    unset = {a for a in absent if a in (opts if a in PER_MOUNT else seen)}
    assert not unset, f"{option}: {unset} should be unset: {opts} / {sopts}"


@requirement("config.md#linux-mount-options", "nosymfollow SHOULD (kernel 5.10+)")
def test_mount_option_nosymfollow(oci):
    b = oci.bundle()
    b.config["mounts"].append({"destination": "/mnt/o", "type": "tmpfs", "source": "tmpfs",
                               "options": ["nosymfollow"]})
    opts, _, _, sopts = run_mountinfo(oci, b, "/mnt/o")
    assert "nosymfollow" in opts


@requirement("config.md#linux-mount-options", "Runtimes SHOULD treat unknown options as filesystem-specific ones")
def test_mount_filesystem_specific_options(oci):
    b = oci.bundle()
    b.config["mounts"].append({"destination": "/mnt/o", "type": "tmpfs", "source": "tmpfs",
                               "options": ["size=1m", "mode=711"]})
    out = oci.run_ok(b, "grep ' /mnt/o ' /proc/self/mountinfo; stat -c %a /mnt/o")
    assert "size=1024k" in out and out.split()[-1] == "711", out


@pytest.fixture
def host_submount(oci):
    """A host dir with a tmpfs mounted below it (for rbind and recursive options)."""
    src = os.path.join(oci.tmp, "rsrc")
    os.makedirs(os.path.join(src, "sub"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", os.path.join(src, "sub")],
                   check=True, timeout=10)
    with open(os.path.join(src, "sub", "marker"), "w") as f:
        f.write("submount")
    yield src
    subprocess.run(["umount", "-l", os.path.join(src, "sub")], timeout=10)


@requirement("config.md#linux-mount-options", "rbind MUST: Recursive bind mount")
def test_mount_rbind_includes_submounts(oci, host_submount):
    b = oci.bundle()
    b.config["mounts"].append({"destination": "/mnt/r", "type": "bind", "source": host_submount,
                               "options": ["rbind"]})
    assert oci.run_ok(b, "cat /mnt/r/sub/marker") == "submount"


@requirement("config.md#linux-mount-options", "bind MUST: Bind mount (not recursive)")
def test_mount_bind_is_not_recursive(oci, host_submount):
    b = oci.bundle()
    b.config["mounts"].append({"destination": "/mnt/r", "type": "bind", "source": host_submount,
                               "options": ["bind"]})
    assert oci.run_ok(b, "cat /mnt/r/sub/marker 2>/dev/null; echo end") == "end\n"


RECURSIVE = [("rro", "ro"), ("rnosuid", "nosuid"), ("rnodev", "nodev"), ("rnoexec", "noexec"),
             ("rnoatime", "noatime"), ("rnodiratime", "nodiratime"), ("rnosymfollow", "nosymfollow"),
             ("rrelatime", "relatime")]


@pytest.mark.parametrize("option,flag", RECURSIVE, ids=[r[0] for r in RECURSIVE])
@requirement("config.md#linux-mount-options", "recursive options SHOULD be implemented (apply to all submounts)")
def test_mount_recursive_option(oci, host_submount, option, flag):
    b = oci.bundle()
    b.config["mounts"].append({"destination": "/mnt/r", "type": "bind", "source": host_submount,
                               "options": ["rbind", option]})
    out = oci.run_ok(b, "cat /proc/self/mountinfo")
    for target in ("/mnt/r", "/mnt/r/sub"):
        info = mountinfo_of(out, target)
        assert info and flag in info[0], f"{option}: {target} {info}"


@pytest.fixture
def host_flagged_submount(oci):
    """Like host_submount, but the host submount is ro,nosuid,nodev,noexec,noatime,..."""
    src = os.path.join(oci.tmp, "fsrc")
    os.makedirs(os.path.join(src, "sub"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro,nosuid,nodev,noexec,noatime,nodiratime,nosymfollow",
                    "tmpfs", os.path.join(src, "sub")], check=True, timeout=10)
    yield src
    subprocess.run(["umount", "-l", os.path.join(src, "sub")], timeout=10)


# runc 1.1.5 turns `ratime` / `rnostrictatime` into a mount_setattr(2) attr_clr holding only
# one bit of MOUNT_ATTR__ATIME, which the kernel rejects with EINVAL, so create fails.
_ATIME_BUG = runc_deviation("ratime/rnostrictatime make mount_setattr(2) fail with EINVAL (partial atime clear)")

# (option, flags that must be gone from the submount)
CLEARING = [("rrw", {"ro"}), ("rsuid", {"nosuid"}), ("rdev", {"nodev"}), ("rexec", {"noexec"}),
            pytest.param("ratime", {"noatime"}, marks=_ATIME_BUG, id="ratime"),
            ("rdiratime", {"nodiratime"}), ("rsymfollow", {"nosymfollow"}),
            ("rstrictatime", {"noatime", "relatime"}), ("rnorelatime", set()),
            pytest.param("rnostrictatime", set(), marks=_ATIME_BUG, id="rnostrictatime")]
CLEARING = [pytest.param(*c, id=c[0]) if type(c) is tuple else c for c in CLEARING]


@pytest.mark.parametrize("option,gone", CLEARING)
@requirement("config.md#linux-mount-options", "recursive clearing options (rrw, rsuid, rdev, ...) SHOULD be implemented")
def test_mount_recursive_clearing_option(oci, host_flagged_submount, option, gone):
    b = oci.bundle()
    b.config["mounts"].append({"destination": "/mnt/r", "type": "bind", "source": host_flagged_submount,
                               "options": ["rbind", option]})
    info = mountinfo_of(oci.run_ok(b, "cat /proc/self/mountinfo"), "/mnt/r/sub")
    assert info, "submount missing"
    assert not (gone & info[0]), f"{option}: {gone & info[0]} still set: {info[0]}"


PROPAGATION = [("private", None), ("rprivate", None), ("shared", "shared:"), ("rshared", "shared:"),
               ("slave", "master:"), ("rslave", "master:"), ("unbindable", "unbindable"),
               ("runbindable", "unbindable")]


@pytest.mark.parametrize("option,tag", PROPAGATION, ids=[p[0] for p in PROPAGATION])
@requirement("config.md#linux-mount-options", "private/shared/slave/unbindable (and r*) MUST: Bind mount propagation")
def test_mount_propagation_option(oci, host_submount, option, tag):
    src = os.path.join(host_submount, "sub")
    # the source is a shared mount on the host, so that slave has a master and
    # private is a real change
    subprocess.run(["mount", "--make-shared", src], check=True, timeout=10)
    b = oci.bundle()
    b.config["mounts"].append({"destination": "/mnt/p", "type": "bind", "source": src,
                               "options": ["rbind", option]})
    _, optional, _, _ = run_mountinfo(oci, b, "/mnt/p")
    fields = " ".join(optional)
    if tag is None:
        assert not re.search(r"shared:|master:|unbindable", fields), fields
    else:
        assert tag in fields, f"{option}: {fields!r}"


# config.md#posix-platform-mounts: uidMappings/gidMappings "The runtime MUST use those values
# for the mount's mapping" (idmap / ridmap, SHOULD since runc 1.2).  runc 1.1.5 ignores them.
@runc_deviation("idmapped mounts (idmap option, uidMappings/gidMappings on mounts) are not supported")
@requirement("config.md#posix-platform-mounts", "If uidMappings or gidMappings are specified for the mount, the runtime MUST use those values for the mount's mapping.")
def test_idmapped_mount(oci):
    b = oci.bundle()
    with open(b.shared_file("owned-by-root"), "w") as f:
        f.write("x")
    b.config["mounts"].append({"destination": "/mnt/id", "type": "bind", "source": b.shared,
                               "options": ["rbind", "idmap"],
                               "uidMappings": [{"containerID": 0, "hostID": 12345, "size": 1}],
                               "gidMappings": [{"containerID": 0, "hostID": 12345, "size": 1}]})
    assert oci.run_ok(b, "stat -c '%u:%g' /mnt/id/owned-by-root").strip() == "12345:12345"


# -- process -------------------------------------------------------------------------
def recv_console(sock_path, result):
    """Accept one connection on a unix socket and receive the pty master fd."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    srv.settimeout(20)
    try:
        conn, _ = srv.accept()
        fds = array.array("i")
        msg, anc, _, _ = conn.recvmsg(1024, socket.CMSG_LEN(4 * fds.itemsize))
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        result["fd"] = fds[0] if fds else None
        conn.close()
    except OSError as e:
        result["error"] = e
    finally:
        srv.close()


def run_with_terminal(oci, b, timeout=20):
    """Run a terminal=true container (runc-style --console-socket); return pty output."""
    b.process["terminal"] = True
    b.write()
    sock = os.path.join(oci.tmp, "console.sock")
    result = {}
    t = threading.Thread(target=recv_console, args=(sock, result), daemon=True)
    t.start()
    while not os.path.exists(sock):
        time.sleep(0.01)
    r = oci.rt.run("create", "--bundle", b.path, "--console-socket", sock, b.id)
    oci.rt.created.append(b.id)
    t.join(20)
    assert r.ok, r
    fd = result.get("fd")
    assert fd is not None, f"no pty master received: {result}"
    try:
        oci.start(b)
        data = b""
        deadline = time.monotonic() + timeout
        os.set_blocking(fd, False)
        stopped = False
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
                continue
            except BlockingIOError:
                if stopped:
                    break  # drained after the process exited
            except OSError:  # EIO once the slave side is closed and drained
                break
            stopped = oci.rt.status(b.id) == "stopped"
            time.sleep(0.05)
        oci.wait_stopped(b)
        return data.decode("utf-8", "replace").replace("\r\n", "\n")
    finally:
        os.close(fd)


@requirement("config.md#process", "terminal ... if set to true on Linux a pseudoterminal pair is allocated for the process and the pseudoterminal pty is duplicated on the process's standard streams")
def test_terminal(oci):
    b = oci.bundle().sh("tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-tty")
    out = run_with_terminal(oci, b)
    assert "/dev/pts/" in out and "all-tty" in out, out


@requirement("config-linux.md#default-devices", "/dev/console is set up if terminal is enabled in the config by bind mounting the pseudoterminal pty to /dev/console")
def test_terminal_dev_console(oci):
    b = oci.bundle().sh("stat -c '%t:%T' /dev/console; stat -c '%t:%T' $(tty)")
    lines = run_with_terminal(oci, b).split()
    assert len(lines) == 2 and lines[0] == lines[1], lines


@requirement("config.md#process", "consoleSize (object, OPTIONAL) specifies the console size in characters of the terminal")
def test_console_size(oci):
    b = oci.bundle().sh("stty size")
    b.process["consoleSize"] = {"height": 33, "width": 111}
    assert run_with_terminal(oci, b).split() == ["33", "111"]


@requirement("config.md#process", "Runtimes MUST ignore consoleSize if terminal is false or unset.")
def test_console_size_ignored_without_terminal(oci):
    b = oci.bundle().sh("[ -t 0 ] || echo no-tty")
    b.process["consoleSize"] = {"height": 33, "width": 111}
    assert oci.run(b) == "no-tty\n"


@requirement("config.md#process", "cwd (string, REQUIRED) is the working directory that will be set for the executable.")
def test_cwd(oci):
    b = oci.bundle(["/bin/pwd"])
    b.process["cwd"] = "/tmp"
    assert oci.run(b) == "/tmp\n"


@requirement("config.md#process", "cwd ... This value MUST be an absolute path.")
def test_cwd_relative_rejected(oci):
    b = oci.bundle(["/bin/pwd"])
    b.process["cwd"] = "tmp"
    r = oci.create(b, check=False)
    if r.ok:
        r = oci.rt.start(b.id)
        time.sleep(0.3)
    assert not r.ok, "relative cwd accepted"


@requirement("config.md#process", "env (array of strings, OPTIONAL) with the same semantics as IEEE Std 1003.1-2008's environ")
def test_env(oci):
    b = oci.bundle(["/bin/env"])
    b.process["env"] = ["PATH=/bin", "FOO=bar", "WITH_EQ=a=b", "EMPTY="]
    env = oci.run(b).splitlines()
    for e in b.process["env"]:
        assert e in env, (e, env)


@requirement("config.md#process", "args ... at least one entry is REQUIRED, and that entry is used with the same semantics as execvp's file")
def test_args_execvp_path_lookup(oci):
    b = oci.bundle(["echo", "found", "via PATH", "  spaced  "])
    b.process["env"] = ["PATH=/nowhere:/bin"]
    assert oci.run(b) == "found via PATH   spaced  \n"


@requirement("config.md#process", "args ... same semantics as execvp (argv[0] is passed as given)")
def test_args_argv0(oci):
    b = oci.bundle(["/bin/sh", "-c", 'echo "$0" "$1"', "zeroth", "first"])
    assert oci.run(b) == "zeroth first\n"


@requirement("config.md#process", "args ... (execution of a missing program is an error)")
def test_args_missing_binary(oci):
    b = oci.bundle(["/no/such/binary"])
    r = oci.create(b, check=False)
    ok = r.ok and oci.rt.start(b.id).ok
    assert not ok, "starting a non-existent program did not generate an error"


RLIMITS = [("RLIMIT_NOFILE", "Max open files", 512, 1000), ("RLIMIT_CORE", "Max core file size", 0, 4096),
           ("RLIMIT_NPROC", "Max processes", 2000, 3000), ("RLIMIT_STACK", "Max stack size", 8388608, 16777216),
           ("RLIMIT_CPU", "Max cpu time", 1000, 2000), ("RLIMIT_FSIZE", "Max file size", 1 << 30, 1 << 31),
           ("RLIMIT_MEMLOCK", "Max locked memory", 65536, 131072), ("RLIMIT_MSGQUEUE", "Max msgqueue size", 8192, 16384),
           ("RLIMIT_NICE", "Max nice priority", 0, 0), ("RLIMIT_SIGPENDING", "Max pending signals", 100, 200),
           ("RLIMIT_AS", "Max address space", 1 << 40, 1 << 41), ("RLIMIT_DATA", "Max data size", 1 << 40, 1 << 41),
           ("RLIMIT_RSS", "Max resident set", 1 << 30, 1 << 31), ("RLIMIT_RTPRIO", "Max realtime priority", 0, 0),
           ("RLIMIT_RTTIME", "Max realtime timeout", 1000, 2000), ("RLIMIT_LOCKS", "Max file locks", 100, 200)]


@pytest.mark.parametrize("rtype,label,soft,hard", RLIMITS, ids=[r[0] for r in RLIMITS])
@requirement("config.md#posix-process", "rlim.rlim_cur MUST match the configured value ... rlim.rlim_max MUST match the configured value")
def test_rlimits(oci, rtype, label, soft, hard):
    host_hard = resource.getrlimit(getattr(resource, rtype, resource.RLIMIT_NOFILE))[1] \
        if hasattr(resource, rtype) else resource.RLIM_INFINITY
    if host_hard != resource.RLIM_INFINITY and hard > host_hard:
        pytest.skip(f"{rtype}: hard limit {hard} above the host's {host_hard} (needs CAP_SYS_RESOURCE)")
    b = oci.bundle(["/bin/cat", "/proc/self/limits"])
    b.process["rlimits"] = [{"type": rtype, "soft": soft, "hard": hard}]
    got = limits(oci.run(b))[label]
    assert got == (str(soft), str(hard)), (rtype, got)


@requirement("config.md#posix-process", "The runtime MUST generate an error for any values which cannot be mapped to a relevant kernel interface.")
def test_rlimit_unknown_type(oci):
    b = oci.bundle()
    b.process["rlimits"] = [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]
    r = oci.create(b, check=False)
    assert not r.ok or not oci.rt.start(b.id).ok


@requirement("config.md#posix-process", "If rlimits contains duplicated entries with same type, the runtime MUST generate an error.")
def test_rlimit_duplicate_type(oci):
    b = oci.bundle()
    b.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100},
                            {"type": "RLIMIT_NOFILE", "soft": 200, "hard": 200}]
    r = oci.create(b, check=False)
    assert not r.ok or not oci.rt.start(b.id).ok


@requirement("config.md#posix-platform-user", "uid, gid, additionalGids: user/group IDs in the container namespace")
def test_user_ids(oci):
    b = oci.bundle(["/bin/sh", "-c", "id -u; id -g; id -G; cat /proc/self/status"])
    b.process["user"] = {"uid": 1234, "gid": 2345, "additionalGids": [3456, 4567]}
    out = oci.run(b)
    lines = out.splitlines()
    assert lines[0] == "1234" and lines[1] == "2345"
    assert set(status_field(out, "Groups").split()) == {"3456", "4567"}


@requirement("config.md#posix-platform-user", "umask (int, OPTIONAL) is the umask of the user")
def test_umask(oci):
    b = oci.bundle().sh("umask; touch /tmp/f; stat -c %a /tmp/f")
    b.process["user"]["umask"] = 0o027
    out = oci.run(b).split()
    assert out == ["0027", "640"], out


CAP_BITS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_KILL": 5, "CAP_NET_BIND_SERVICE": 10,
            "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_AUDIT_WRITE": 29, "CAP_MKNOD": 27}


def capmask(names):
    return sum(1 << CAP_BITS[n] for n in names)


@requirement("config.md#linux-process", "capabilities (object, OPTIONAL) ... effective, bounding, inheritable, permitted, ambient")
def test_capabilities_sets(oci):
    b = oci.bundle(["/bin/cat", "/proc/self/status"])
    b.process["user"] = {"uid": 1000, "gid": 1000}
    b.process["noNewPrivileges"] = False
    caps = {"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SYS_CHROOT"],
            "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
            "inheritable": ["CAP_CHOWN", "CAP_NET_RAW"],
            "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
            "ambient": ["CAP_NET_RAW"]}
    b.process["capabilities"] = caps
    st = oci.run(b)
    # after execve as a non-root user: P' = ambient, E' = ambient, I' = I, B' = B
    assert int(status_field(st, "CapBnd"), 16) == capmask(caps["bounding"])
    assert int(status_field(st, "CapInh"), 16) == capmask(caps["inheritable"])
    assert int(status_field(st, "CapAmb"), 16) == capmask(caps["ambient"])
    assert int(status_field(st, "CapPrm"), 16) == capmask(caps["ambient"])
    assert int(status_field(st, "CapEff"), 16) == capmask(caps["ambient"])


@requirement("config.md#linux-process", "capabilities: effective/permitted sets kept for the process (root)")
def test_capabilities_root(oci):
    b = oci.bundle(["/bin/cat", "/proc/self/status"])
    caps = ["CAP_CHOWN", "CAP_KILL"]
    b.process["capabilities"] = {k: caps for k in ("bounding", "permitted", "effective")}
    st = oci.run(b)
    for f in ("CapBnd", "CapPrm", "CapEff"):
        assert int(status_field(st, f), 16) == capmask(caps), f


@pytest.mark.parametrize("granted", [True, False])
@requirement("config.md#linux-process", "capabilities: only the listed capabilities are usable by the process")
def test_capabilities_effect(oci, granted):
    b = oci.bundle().sh("touch /tmp/f; chown 1:1 /tmp/f 2>/dev/null; echo rc=$?")
    caps = ["CAP_KILL"] + (["CAP_CHOWN"] if granted else [])
    b.process["capabilities"] = {k: list(caps) for k in ("bounding", "permitted", "effective")}
    assert oci.run(b).strip() == ("rc=0" if granted else "rc=1")


@requirement("config.md#linux-process", "capabilities ... which cannot be mapped ... MUST be logged as a warning ... Runtimes SHOULD NOT fail")
def test_capabilities_unknown_warns(oci):
    b = oci.bundle(["/bin/echo", "ran"])
    b.process["capabilities"] = {k: ["CAP_KILL", "CAP_NOT_A_REAL_ONE"] for k in ("bounding", "permitted", "effective")}
    assert oci.run(b) == "ran\n"


@pytest.mark.parametrize("value,expect", [(True, "1"), (False, "0")])
@requirement("config.md#linux-process", "noNewPrivileges (bool, OPTIONAL) setting noNewPrivileges to true prevents the process from gaining additional privileges")
def test_no_new_privileges(oci, value, expect):
    b = oci.bundle(["/bin/cat", "/proc/self/status"])
    b.process["noNewPrivileges"] = value
    assert status_field(oci.run(b), "NoNewPrivs") == expect


@requirement("config.md#linux-process", "If oomScoreAdj is set, the runtime MUST set oom_score_adj to the given value.")
def test_oom_score_adj_set(oci):
    b = oci.bundle(["/bin/cat", "/proc/self/oom_score_adj"])
    b.process["oomScoreAdj"] = 123
    assert oci.run(b).strip() == "123"


@requirement("config.md#linux-process", "If oomScoreAdj is not set, the runtime MUST NOT change the value of oom_score_adj.")
def test_oom_score_adj_unset(oci):
    with open("/proc/self/oom_score_adj") as f:
        mine = f.read().strip()
    b = oci.bundle(["/bin/cat", "/proc/self/oom_score_adj"])
    assert oci.run(b).strip() == mine


# config.md#linux-process: scheduler "sets the scheduler properties for the process" (1.2.0+).
# runc 1.1.5 predates the field and ignores it.
@runc_deviation("process.scheduler is ignored")
@requirement("config.md#linux-process", "scheduler (object, OPTIONAL) is an object describing the scheduler properties for the process")
def test_scheduler(oci):
    b = oci.bundle(["/bin/cat", "/proc/self/stat"])
    b.process["scheduler"] = {"policy": "SCHED_BATCH", "nice": 7}
    fields = oci.run(b).rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): nice is field 19, policy is field 41
    assert fields[19 - 3] == "7" and fields[41 - 3] == "3", (fields[16], fields[38])


# config.md#linux-process: ioPriority "configures the I/O priority settings" (1.2.0+).
@runc_deviation("process.ioPriority is ignored")
@requirement("config.md#linux-process", "ioPriority (object, OPTIONAL) configures the I/O priority settings for the container's processes")
def test_io_priority(oci):
    b = oci.bundle(["/bin/ionice"])
    b.process["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 6}
    assert oci.run(b).strip() == "best-effort: prio 6"


@requirement("config.md#linux-process", "execCPUAffinity ... This setting is not applicable to the container's init process.")
def test_exec_cpu_affinity_not_for_init(oci):
    b = oci.bundle(["/bin/grep", "Cpus_allowed_list", "/proc/self/status"])
    before = oci.run(b)
    b2 = oci.bundle(["/bin/grep", "Cpus_allowed_list", "/proc/self/status"])
    b2.process["execCPUAffinity"] = {"initial": "0", "final": "0"}
    assert oci.run(b2) == before


@requirement("config.md#linux-process", "apparmorProfile (string, OPTIONAL) specifies the name of the AppArmor profile")
def test_apparmor_profile(oci):
    if not os.path.exists("/sys/kernel/security/apparmor/profiles"):
        pytest.skip("AppArmor is not enabled on this host")
    b = oci.bundle(["/bin/cat", "/proc/self/attr/current"])
    b.process["apparmorProfile"] = "unconfined"
    assert oci.run(b).strip() == "unconfined"


@requirement("config.md#linux-process", "selinuxLabel (string, OPTIONAL) specifies the SELinux label for the process")
def test_selinux_label(oci):
    if not os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("SELinux is not enabled on this host")


# -- hostname / domainname / annotations ----------------------------------------------------
@requirement("config.md#hostname", "hostname specifies the container's hostname as seen by processes running inside the container")
def test_hostname(oci):
    b = oci.bundle(["/bin/hostname"])
    b.config["hostname"] = "oci-host-test"
    assert oci.run(b) == "oci-host-test\n"


# config.md#domainname: "domainname (string, OPTIONAL) specifies the container's domainname
# as seen by processes running inside the container."  runc 1.1.5 ignores the field.
@runc_deviation("domainname is ignored (the container sees '(none)')")
@requirement("config.md#domainname", "domainname specifies the container's domainname as seen by processes running inside the container")
def test_domainname(oci):
    b = oci.bundle(["/bin/cat", "/proc/sys/kernel/domainname"])
    b.config["domainname"] = "oci.example"
    assert oci.run(b) == "oci.example\n"


@requirement("config.md#annotations", "Runtimes MUST handle unknown annotation keys like any other unknown property.")
def test_annotations_unknown_keys(oci):
    b = oci.bundle(["/bin/echo", "ok"])
    b.config["annotations"] = {"com.example.whatever": "1", "org.opencontainers.image.os": "linux"}
    assert oci.run(b) == "ok\n"


# config.md#annotations: "Keys MUST NOT be an empty string." with config.md#valid-values
# "Runtimes MUST generate an error when invalid ... values are encountered."  runc accepts it.
@runc_deviation("an empty annotation key is accepted")
@requirement("config.md#annotations", "Keys MUST NOT be an empty string.")
def test_annotations_empty_key(oci):
    b = oci.bundle()
    b.config["annotations"] = {"": "value"}
    assert not oci.create(b, check=False).ok

"""runtime-linux.md: file descriptors and /dev symbolic links."""

import os

import pytest

from .markers import requirement


@requirement("runtime-linux.md#file-descriptors", "By default, only the stdin, stdout and stderr file descriptors are kept open for the application by the runtime.")
def test_only_stdio_fds_open(oci):
    b = oci.bundle(["/bin/sleep", "30"])  # sleep opens nothing by itself
    leak_r, leak_w = os.pipe()  # an inherited extra fd must not reach the container
    try:
        b.write()
        r = oci.rt.create(b.id, b.path, pass_fds=(leak_r,))
        assert r.ok, r
    finally:
        os.close(leak_r)
        os.close(leak_w)
    oci.start(b)
    _, st = oci.rt.state(b.id)
    fds = sorted(int(x) for x in os.listdir(f"/proc/{st['pid']}/fd"))
    assert fds == [0, 1, 2], f"open fds in the container process: {fds}"


@requirement("runtime-linux.md#file-descriptors", "only the stdin, stdout and stderr file descriptors are kept open (they are open)")
def test_stdio_usable(oci):
    b = oci.bundle().sh("echo to-stdout; echo to-stderr >&2; cat; echo stdin-eof")
    out = oci.run(b)
    assert out == "to-stdout\nstdin-eof\n"
    assert "to-stderr" in b.read_stderr()


LINKS = [("/dev/fd", "/proc/self/fd"), ("/dev/stdin", "/proc/self/fd/0"),
         ("/dev/stdout", "/proc/self/fd/1"), ("/dev/stderr", "/proc/self/fd/2")]


@pytest.mark.parametrize("link,target", LINKS, ids=[l for l, _ in LINKS])
@requirement("runtime-linux.md#dev-symbolic-links", "runtimes MUST create the following symlinks if the source file exists after processing mounts")
def test_dev_symlinks(oci, link, target):
    b = oci.bundle().sh(f"[ -L {link} ] && readlink {link}")
    assert oci.run(b).strip() == target


@requirement("runtime-linux.md#dev-symbolic-links", "/dev/stdout -> /proc/self/fd/1 works for the container process")
def test_dev_stdout_writable(oci):
    b = oci.bundle().sh("echo via-dev-stdout > /dev/stdout")
    assert oci.run(b) == "via-dev-stdout\n"


@pytest.mark.parametrize("path,fstype", [("/proc", "proc"), ("/sys", "sysfs"), ("/dev/pts", "devpts"),
                                         ("/dev/shm", "tmpfs")])
@requirement("config-linux.md#default-filesystems", "The following filesystems SHOULD be made available in each container's filesystem")
def test_default_filesystems(oci, path, fstype):
    b = oci.bundle().sh("cat /proc/self/mounts")
    mounts = {line.split()[1]: line.split()[2] for line in oci.run(b).splitlines()}
    assert mounts.get(path) == fstype, mounts

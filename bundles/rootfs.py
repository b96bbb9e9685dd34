"""Assemble a busybox root filesystem from Debian's busybox-static package.

No binary is committed: the rootfs is built at set-up time from /bin/busybox.
Used by the README's demo, the integration tests and the conformance suite.

    python3 bundles/rootfs.py bundles/busybox/rootfs
"""

import os
import shutil
import subprocess
import sys

BUSYBOX = os.environ.get("OCIPY_BUSYBOX", "/bin/busybox")

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def busybox_is_static(path: str = BUSYBOX) -> bool:
    """True when `path` is a statically linked busybox (busybox-static)."""
    try:
        out = subprocess.run(["file", "-L", path], capture_output=True, text=True).stdout
    except FileNotFoundError:  # no `file` command: look for an ELF interpreter instead
        with open(path, "rb") as f:
            return b"/lib64/ld-linux" not in f.read(4096)
    return "statically linked" in out or "static-pie" in out


def build_busybox_rootfs(dest: str, busybox: str = BUSYBOX) -> str:
    """Create `dest` as a minimal rootfs: busybox, one symlink per applet, /etc files."""
    if not os.path.exists(busybox):
        raise FileNotFoundError(f"{busybox} not found: install busybox-static")
    if not busybox_is_static(busybox):
        raise RuntimeError(f"{busybox} is not statically linked: install busybox-static")
    for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "root", "run", "var", "home"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    target = os.path.join(dest, "bin", "busybox")
    shutil.copy2(busybox, target)
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = os.path.join(dest, "bin", applet)
        if applet != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(dest, "etc", "passwd"), "w") as f:
        f.write(PASSWD)
    with open(os.path.join(dest, "etc", "group"), "w") as f:
        f.write(GROUP)
    open(os.path.join(dest, "etc", "hostname"), "w").close()
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: rootfs.py DEST")
    build_busybox_rootfs(sys.argv[1])
    print(f"busybox rootfs ready in {sys.argv[1]}")

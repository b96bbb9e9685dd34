"""Build OCI bundles (config.json + busybox rootfs) in temp dirs.

The base config follows what `runc spec` prints, minus the terminal, plus:
  * a relative cgroupsPath `ocipy-conformance/<id>` (under the caller's own cgroup),
  * a bind mount of the host dir `<bundle>/shared` (mode 0777) at /out, through
    which the container and hooks hand results back to the test.
"""

import copy
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bundles.rootfs import build_busybox_rootfs  # noqa: E402

SPEC_VERSION = "1.3.0"
CGROUP_PARENT = "ocipy-conformance"
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

BASE_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
]

MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def base_config(cid, args=("/bin/true",)):
    return {
        "ociVersion": SPEC_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": [PATH_ENV, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "conformance",
        "mounts": copy.deepcopy(BASE_MOUNTS),
        "linux": {
            "cgroupsPath": f"{CGROUP_PARENT}/{cid}",
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": list(MASKED),
            "readonlyPaths": list(READONLY),
        },
    }


class Bundle:
    """A bundle directory: rootfs/, config.json, shared/ (mounted at /out)."""

    def __init__(self, path, cid, args=("/bin/true",)):
        self.path = path
        self.id = cid
        self.rootfs = os.path.join(path, "rootfs")
        self.shared = os.path.join(path, "shared")
        os.makedirs(path, exist_ok=True)
        build_busybox_rootfs(self.rootfs)
        os.makedirs(os.path.join(self.rootfs, "out"), exist_ok=True)
        os.makedirs(self.shared, exist_ok=True)
        os.chmod(self.shared, 0o777)
        os.chmod(path, 0o755)
        self.config = base_config(cid, args)
        self.config["mounts"].append(
            {"destination": "/out", "type": "bind", "source": self.shared, "options": ["rbind", "rw"]})

    # -- config helpers ------------------------------------------------------
    @property
    def process(self):
        return self.config["process"]

    @property
    def linux(self):
        return self.config["linux"]

    def sh(self, script):
        """Make the container run `/bin/sh -c script`."""
        self.process["args"] = ["/bin/sh", "-c", script]
        return self

    def namespace(self, ns_type, path=None):
        """Add (or replace) a namespace entry."""
        nss = [n for n in self.linux["namespaces"] if n["type"] != ns_type]
        entry = {"type": ns_type}
        if path:
            entry["path"] = path
        nss.append(entry)
        self.linux["namespaces"] = nss
        return self

    def drop_namespace(self, ns_type):
        self.linux["namespaces"] = [n for n in self.linux["namespaces"] if n["type"] != ns_type]
        return self

    def add_hook(self, phase, path, args=None, env=None, timeout=None):
        hook = {"path": path}
        if args is not None:
            hook["args"] = args
        if env is not None:
            hook["env"] = env
        if timeout is not None:
            hook["timeout"] = timeout
        self.config.setdefault("hooks", {}).setdefault(phase, []).append(hook)
        return self

    def write(self):
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(self.config, f, indent=2)
        return self

    # -- files ---------------------------------------------------------------
    def shared_file(self, name):
        return os.path.join(self.shared, name)

    def read_shared(self, name, default=None):
        try:
            with open(self.shared_file(name)) as f:
                return f.read()
        except OSError:
            return default

    def read_stdout(self):
        return _read(os.path.join(self.path, "stdout.txt"))

    def read_stderr(self):
        return _read(os.path.join(self.path, "stderr.txt"))

    def write_script(self, name, body, in_rootfs=False):
        """Write an executable /bin/sh script in the bundle dir (host) or rootfs."""
        base = self.rootfs if in_rootfs else self.path
        p = os.path.join(base, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(body if body.startswith("#!") else "#!/bin/sh\n" + body)
        os.chmod(p, 0o755)
        return p


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""

"""End-to-end tests: real engines (podman, docker, containerd's ctr) drive ocipy in runc's place.

Every scenario runs twice in the same test, once with runc and once with ocipy, and the test
asserts that what the engine's user sees (output, exit codes, states, limits) is the same.

Both runtimes are reached through a logging wrapper (`<tmp>/wrap/<name>/<name>`: the basename
matters to podman) that appends every call's argv, cwd, a few environment variables and, for
`update --resources -`, the JSON read from stdin, to `<tmp>/argv-<name>.log`; a failing
comparison prints the calls each runtime got during the scenario.

Everything is private: podman's --root/--runroot/--tmpdir and containers.conf (CONTAINERS_CONF),
dockerd's and containerd's data roots, exec roots, sockets and configs live in one temporary
directory that the session removes after stopping the daemons. The session fails if a mount or a
cgroup directory that was not there before is still there after the teardown.

Run (as root):  flock /tmp/ocipy-root-tests.lock .venv/bin/python -m pytest tests/e2e
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(HERE))

from bundles.rootfs import build_busybox_rootfs  # noqa: E402
from ocipy.linux.seccomp_cache import CACHE_DIR  # noqa: E402
from ocipy.runtime import DEFAULT_ROOT  # noqa: E402
from e2e_support import IMAGE  # noqa: E402

SETUP = HERE / "setup_engines.sh"
OCIPY = Path(os.environ.get("OCIPY_E2E_BINARY", REPO / ".venv" / "bin" / "ocipy"))
RUNC = Path(os.environ.get("OCIPY_E2E_RUNC", "/usr/sbin/runc"))
DOCKER_CLI = "/usr/bin/docker"  # Debian's; /usr/local/bin may hold another client
CMD_TIMEOUT = 90

# Environment variables worth seeing in the call log (the runtime inherits the engine's environment).
LOGGED_ENV = "PYTHON|XDG_RUNTIME_DIR|_OCI_|NOTIFY_SOCKET|LISTEN_|container"


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: the engines create namespaces, mounts and cgroups")
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(skip)


# --------------------------------------------------------------------------- machine state

# Directories the daemons create whatever their configuration says (dockerd's plugin directory,
# the runc shim's socket directory, ctr's default FIFO directory): removed after the session when
# it created them and they are empty.
HARDCODED_DIRS = ["/run/docker/plugins", "/run/docker", "/run/containerd/s", "/run/containerd/fifo", "/run/containerd"]


def mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}


def cgroup_dirs() -> set[str]:
    """Every cgroup directory in every hierarchy (a few hundred here)."""
    out = set()
    for base in Path("/sys/fs/cgroup").iterdir():
        if not base.is_dir() or base.is_symlink():
            continue
        for dirpath, dirnames, _ in os.walk(base):
            out.add(dirpath)
    return out


# Where the engines put their containers' cgroups (cgroupfs driver): podman /libpod_parent/...,
# docker /docker/<id>, ctr /<namespace>/<id>.
ENGINE_CGROUP_TOPS = ("libpod_parent", "machine.slice", "docker", "ocipy-e2e")


def is_engine_cgroup(d: str) -> bool:
    parts = Path(d).relative_to("/sys/fs/cgroup").parts
    return len(parts) >= 2 and parts[1] in ENGINE_CGROUP_TOPS


def cgroup_procs(d: str) -> list[str]:
    try:
        return Path(d, "cgroup.procs").read_text().split()
    except OSError:
        return []


# --------------------------------------------------------------------------- runtime wrappers

WRAPPER = r"""#!/bin/sh
# Logging wrapper for __NAME__ (ocipy e2e tests): one line per call, then exec the real runtime.
log=__LOG__
env_seen=$(env | grep -E '^(__ENV__)' | tr '\n' ' ')
printf '%s pid=%s ppid=%s cwd=%s env=[%s] argv=%s\n' "$(date +%H:%M:%S.%N)" "$$" "$PPID" "$(pwd)" "$env_seen" "$*" >> "$log"
case " $* " in
*" update "*"--resources - "*|*" update "*"--resources=- "*)
    input=$(cat)
    printf '    stdin=%s\n' "$input" >> "$log"
    printf '%s' "$input" | __REAL__ "$@"
    rc=$?
    printf '    -> rc=%s\n' "$rc" >> "$log"
    exit $rc ;;
esac
exec __REAL__ "$@"
"""


class Wrapper:
    """A logging front for one runtime; `mark()`/`since()` cut its log into scenarios."""

    def __init__(self, name: str, real: Path, top: Path):
        self.name = name
        self.real = real
        self.log = top / f"argv-{name}.log"
        self.log.touch()
        d = top / "wrap" / name
        d.mkdir(parents=True)
        self.path = d / name
        text = (WRAPPER.replace("__NAME__", name).replace("__LOG__", str(self.log))
                .replace("__REAL__", str(real)).replace("__ENV__", LOGGED_ENV))
        self.path.write_text(text)
        self.path.chmod(0o755)

    def mark(self) -> int:
        return self.log.stat().st_size

    def since(self, mark: int) -> str:
        with open(self.log, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")


@pytest.fixture(scope="session")
def e2e_dir():
    """One short private directory for the whole session (unix socket paths must stay < 108 bytes)."""
    if not OCIPY.exists():
        pytest.skip(f"{OCIPY} missing: run .ci/install first")
    if not RUNC.exists():
        pytest.skip(f"{RUNC} missing: apt-get install runc")
    mounts_before = mounts()
    cgroups_before = cgroup_dirs()
    scratch_before = {d for d in HARDCODED_DIRS if os.path.lexists(d)}
    top = Path(tempfile.mkdtemp(prefix="ocipy-e2e-", dir="/tmp"))
    yield top
    for d in HARDCODED_DIRS:  # deepest first; only the ones this session made, only when empty
        if d not in scratch_before:
            try:
                os.rmdir(d)
            except OSError:
                pass
    # Teardown runs after every engine fixture has removed its containers and stopped its daemon.
    left = []
    for d in sorted(cgroup_dirs() - cgroups_before, key=len, reverse=True):
        if not is_engine_cgroup(d):
            continue  # the machine's own cgroups come and go (other sessions' commands)
        procs = cgroup_procs(d)
        if procs:
            left.append(f"cgroup {d} with processes {procs}")
            continue
        try:
            os.rmdir(d)  # engine parents (libpod_parent, docker, the ctr namespace) are created on demand
        except OSError as e:
            left.append(f"cgroup {d}: {e}")
    new_mounts = mounts() - mounts_before
    for m in sorted(new_mounts, key=len, reverse=True):
        mountpoint = m.split(" ", 1)[1]
        if mountpoint.startswith(str(top)):
            subprocess.run(["umount", "-l", mountpoint], capture_output=True)
    if os.environ.get("OCIPY_E2E_KEEP"):
        print(f"\nocipy e2e: kept {top}")
    else:
        shutil.rmtree(top, ignore_errors=True)
    assert not new_mounts, f"mounts left behind by the e2e session: {sorted(new_mounts)}"
    assert not left, f"cgroups left behind by the e2e session: {left}"


@pytest.fixture(scope="session")
def wrappers(e2e_dir) -> dict:
    return {"runc": Wrapper("runc", RUNC, e2e_dir), "ocipy": Wrapper("ocipy", OCIPY, e2e_dir)}


@pytest.fixture(scope="session")
def engines_installed():
    """Install the engines from Debian packages when one is missing (setup_engines.sh install)."""
    need = ["podman", "conmon", "dockerd", "containerd", "ctr", "containerd-shim-runc-v2"]
    if all(shutil.which(b) for b in need) and os.path.exists(DOCKER_CLI) and os.path.exists("/bin/busybox"):
        return
    r = subprocess.run(["bash", str(SETUP), "install"], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        pytest.skip(f"could not install the engines: {(r.stdout + r.stderr)[-800:]}")


@pytest.fixture(scope="session")
def image_tar(e2e_dir, engines_installed) -> Path:
    """The busybox rootfs (bundles/rootfs.py) as a tar stream for `podman import` / `docker import`."""
    rootfs = e2e_dir / "rootfs"
    build_busybox_rootfs(str(rootfs))
    tar = e2e_dir / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    return tar


# --------------------------------------------------------------------------- podman


class Podman:
    """podman with private storage and config; `runtime` picks the [engine.runtimes] entry."""

    def __init__(self, top: Path, wrappers: dict):
        self.top = top / "podman"
        self.top.mkdir()
        self.conf = self.top / "containers.conf"
        # The runtime lines below are what docs/engines.md documents for ocipy:
        #  - runtime_supports_json: podman passes `--log-format=json --log <file>` only to these names
        #    and reads the runtime's error from that file;
        #  - runtime_supports_nocgroup: only these may run with --cgroups=disabled. Podman 4.3
        #    (containers/common) reads this key WITHOUT the final "s"; the spelling of the man page,
        #    runtime_supports_nocgroups, is dropped ("Failed to decode the keys" at --log-level debug).
        # default_ulimits: without CAP_SYS_RESOURCE podman's own defaults (nofile 1048576,
        # nproc 4194304) exceed this machine's hard limits and fail under runc as well.
        self.conf.write_text(f"""\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "ocipy"]
runtime_supports_nocgroup = ["crun", "krun", "ocipy"]

[engine.runtimes]
ocipy = ["{wrappers['ocipy'].path}"]
runc = ["{wrappers['runc'].path}"]
""")
        self.env = dict(os.environ, CONTAINERS_CONF=str(self.conf))
        self.env.pop("CONTAINERS_STORAGE_CONF", None)
        self.base = ["podman", "--root", str(self.top / "root"), "--runroot", str(self.top / "runroot"),
                     "--tmpdir", str(self.top / "tmp"), "--storage-driver", "vfs",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file"]

    def __call__(self, *args, runtime=None, check=False, timeout=CMD_TIMEOUT, input=None, **kw):
        argv = list(self.base)
        if runtime:
            argv += ["--runtime", runtime]
        argv += [str(a) for a in args]
        r = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout,
                           input=input, stdin=None if input is not None else subprocess.DEVNULL, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def cleanup(self):
        self("rm", "-a", "-f", "-t", "0", timeout=120)
        self("rmi", "-a", "-f", timeout=120)


@pytest.fixture(scope="session")
def podman(e2e_dir, wrappers, image_tar):
    # podman passes the runtime no --root (ENGINES.md): ocipy keeps its state, and the seccomp
    # programs it builds (ocipy:cache), in its default root, which these scenarios must leave
    # as they found it.
    cache = Path(DEFAULT_ROOT) / CACHE_DIR
    root_existed, cache_existed = Path(DEFAULT_ROOT).exists(), cache.exists()
    p = Podman(e2e_dir, wrappers)
    try:
        r = p("import", image_tar, IMAGE)
        if r.returncode != 0:
            pytest.skip(f"podman cannot import an image here: {r.stderr.strip()[-500:]}")
        yield p
        p.cleanup()
    finally:
        if not cache_existed:
            shutil.rmtree(cache, ignore_errors=True)
        if not root_existed:
            try:
                Path(DEFAULT_ROOT).rmdir()  # only if nothing else is left in it
            except OSError:
                pass


# --------------------------------------------------------------------------- docker


class Docker:
    def __init__(self, top: Path):
        self.top = top
        self.sock = top / "docker.sock"

    def __call__(self, *args, check=False, timeout=CMD_TIMEOUT, input=None, **kw):
        argv = [DOCKER_CLI, "-H", f"unix://{self.sock}", *map(str, args)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def runtime_name(self, rt: str) -> str:
        return "runcw" if rt == "runc" else rt  # dockerd reserves the name "runc"


@pytest.fixture(scope="session")
def docker(e2e_dir, wrappers, image_tar):
    top = e2e_dir / "docker"
    r = subprocess.run(["bash", str(SETUP), "start-docker", str(top), str(wrappers["ocipy"].path),
                        str(wrappers["runc"].path)], capture_output=True, text=True, timeout=120)
    try:
        if r.returncode != 0:
            pytest.skip(f"dockerd cannot start here: {r.stderr.strip()[-800:]}")
        d = Docker(top)
        r = d("import", image_tar, IMAGE)
        if r.returncode != 0:
            pytest.skip(f"docker cannot import an image here: {r.stderr.strip()[-500:]}")
        yield d
        ids = d("ps", "-a", "-q").stdout.split()
        if ids:
            d("rm", "-f", *ids, timeout=120)
    finally:
        subprocess.run(["bash", str(SETUP), "stop", str(top)], capture_output=True, timeout=120)


# --------------------------------------------------------------------------- containerd / ctr

CTR_NS = "ocipy-e2e"


def oci_archive(rootfs_tar: Path, dest: Path, name: str) -> Path:
    """An OCI image archive (one layer: the busybox rootfs) that `ctr images import` accepts."""
    import gzip
    import hashlib
    import tarfile

    blobs = dest.parent / (dest.name + ".d")
    (blobs / "blobs" / "sha256").mkdir(parents=True)

    def blob(data: bytes) -> tuple[str, int]:
        h = hashlib.sha256(data).hexdigest()
        (blobs / "blobs" / "sha256" / h).write_bytes(data)
        return "sha256:" + h, len(data)

    raw = rootfs_tar.read_bytes()
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    layer, layer_size = blob(gzip.compress(raw, mtime=0))
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    cfg, cfg_size = blob(json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_size},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_size}]}
    man, man_size = blob(json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                 "digest": man, "size": man_size,
                                                 "annotations": {"org.opencontainers.image.ref.name": name}}]}
    (blobs / "index.json").write_text(json.dumps(index))
    (blobs / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    with tarfile.open(dest, "w") as t:
        for p in ("oci-layout", "index.json", "blobs"):
            t.add(blobs / p, arcname=p)
    shutil.rmtree(blobs)
    return dest


class Ctr:
    def __init__(self, top: Path, wrappers: dict):
        self.top = top
        self.sock = top / "containerd.sock"
        self.wrappers = wrappers
        self.image = f"docker.io/library/{IMAGE}:latest"

    def argv(self, *args) -> list:
        return ["ctr", "--address", str(self.sock), "--namespace", CTR_NS, *map(str, args)]

    def __call__(self, *args, check=False, timeout=CMD_TIMEOUT, input=None, **kw):
        argv = self.argv(*args)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def runc_flags(self, rt: str) -> list[str]:
        """ctr run flags that make the runc shim call `rt` (through its wrapper), with a private root."""
        return ["--runc-binary", str(self.wrappers[rt].path), "--runc-root", str(self.top / f"runc-root-{rt}"),
                "--snapshotter", "native", *self.fifo_flags()]

    def fifo_flags(self) -> list[str]:
        """ctr's stdio FIFOs go to /run/containerd/fifo unless told otherwise."""
        return ["--fifo-dir", str(self.top / "fifo")]

    def cleanup(self):
        for cid in self("containers", "list", "-q").stdout.split():
            self("tasks", "kill", "-s", "SIGKILL", cid)
            for _ in range(50):
                if self("tasks", "delete", cid).returncode == 0 or "not found" in self("tasks", "ls").stdout:
                    break
                time.sleep(0.1)
            self("containers", "delete", cid)
        self("images", "rm", self.image)


@pytest.fixture(scope="session")
def ctr(e2e_dir, wrappers, image_tar):
    top = e2e_dir / "containerd"
    r = subprocess.run(["bash", str(SETUP), "start-containerd", str(top)], capture_output=True, text=True, timeout=120)
    try:
        if r.returncode != 0:
            pytest.skip(f"containerd cannot start here: {r.stderr.strip()[-800:]}")
        c = Ctr(top, wrappers)
        archive = oci_archive(image_tar, e2e_dir / "busybox-oci.tar", c.image)
        r = c("images", "import", "--snapshotter", "native", archive)
        if r.returncode != 0:
            pytest.skip(f"ctr cannot import an image here: {r.stderr.strip()[-500:]}")
        yield c
        c.cleanup()
    finally:
        subprocess.run(["bash", str(SETUP), "stop", str(top)], capture_output=True, timeout=120)



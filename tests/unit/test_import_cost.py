"""What `create` imports: the container-side modules and the common create path pull in nothing heavy.

Every ocipy command is a fresh interpreter, so a stdlib module imported on the way
(json 6 ms, re 5 ms, enum 3.5 ms, dataclasses 10 ms, subprocess, socket...) is paid
on every `create`. Each check runs in a fresh `python -I -S` with ocipy and its
dependencies on sys.path, as the `ocipy` launcher starts it.
"""

import json
import os
import subprocess
import sys

import pytest

import ocipy
from ocipy import defaults
from shared_paths import CORPUS  # noqa: E402

# Must not be imported by these modules on the common create path (python-prctl and pyseccomp
# are no longer dependencies: syscalls.prctl and linux/seccomp.py's libseccomp calls replace them).
HEAVY = (
    "json", "re", "enum", "signal", "typing", "dataclasses", "pathlib", "subprocess", "socket", "platform",
    "shutil", "hashlib", "inspect", "tempfile", "collections", "functools", "ipaddress", "urllib",
    "pyroute2", "pyseccomp", "copy", "array", "ctypes.util", "prctl",
)

MODULES = (
    "ocipy.spec", "ocipy.linux.rootfs", "ocipy.linux.process", "ocipy.linux.capabilities", "ocipy.linux.seccomp",
    "ocipy.linux.cgroups", "ocipy.linux.namespaces", "ocipy.linux.network", "ocipy.linux.console",
    "ocipy.linux.device_rules", "ocipy.linux.idmap", "ocipy.linux.capnames", "ocipy.hooks", "ocipy.sync",
    "ocipy.errors", "ocipy.defaults",
)

# The pure part of what create does with a config, module by module (no namespaces, mounts or cgroups).
CREATE_PATH = """
from ocipy import defaults, sync
from ocipy.linux import capabilities, capnames, device_rules, namespaces, rootfs, seccomp
from ocipy.linux.cgroups import resources, v1
from ocipy.spec import Spec

spec = Spec.from_dict(config)
linux = spec.linux
namespaces.plan(linux.namespaces)
rootfs.plan(spec, "/tmp/rootfs", bundle="/tmp")
rootfs.finish_plan(spec)
effective = device_rules.effective_resources(linux.resources, linux.devices)
resources.plan_v1(effective)
if spec.process.capabilities:
    capabilities.mask(spec.process.capabilities.bounding, capnames.CAPABILITIES)
if linux.seccomp:
    seccomp.prepare(linux.seccomp)
a, b = sync.Channel.pair()
a.send({"type": "ready"}, [0])
b.recv()
"""


def _fresh(code: str) -> str:
    """stdout of `code` in a fresh `python -I -S` that finds ocipy and its dependencies."""
    from ocipy.launcher import module_roots

    paths = module_roots()
    prelude = f"import sys; sys.path[:0] = {paths!r}\n"
    out = subprocess.run([sys.executable, "-I", "-S", "-c", prelude + code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _heavy_after(code: str) -> list[str]:
    report = f"\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    return _fresh(code + report).split()


def test_importing_the_container_side_is_cheap():
    assert _heavy_after("import " + ", ".join(MODULES)) == []


def _configs():
    params = [pytest.param(json.dumps(defaults.default_config()), id="ocipy-spec")]
    for name in ("docker-run-d.config.json", "podman-run-t.config.json", "runc-spec.config.json"):
        path = os.path.join(CORPUS, name)
        if os.path.isfile(path):
            with open(path) as f:
                params.append(pytest.param(f.read(), id=name))
    return params


@pytest.mark.parametrize("config_text", _configs())
def test_the_create_path_imports_nothing_heavy(config_text):
    code = f"from ocipy import jsonfast\nconfig = jsonfast.loads({config_text!r})\n" + CREATE_PATH
    assert _heavy_after(code) == []

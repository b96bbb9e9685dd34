"""`ocipy features`: what this build implements, as features.md describes (and nothing it does not)."""

from . import SPEC_VERSION, __version__
from .linux.capnames import CAPABILITIES
from .linux.namespaces import FLAGS


def features() -> dict:
    from .linux import mountopts, seccomp

    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": sorted(set(mountopts.FLAG_OPTIONS) | set(mountopts.PROPAGATION_OPTIONS) | set(mountopts.RECURSIVE_OPTIONS)),
        "linux": {
            "namespaces": sorted(FLAGS),
            "capabilities": sorted(CAPABILITIES, key=CAPABILITIES.get),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": True},
            "seccomp": seccomp.supported_features(),
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
            "netDevices": {"enabled": True},
        },
        "annotations": {"org.opencontainers.runtime.ocipy.version": __version__},
    }

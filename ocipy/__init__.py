"""ocipy: an OCI runtime-spec v1.3.0 container runtime.

`ocipy.Runtime` is the library entry point; the CLI (`ocipy.cli`) is a thin
layer over it. Attributes are imported lazily so that `import ocipy` stays
cheap for the hot commands (state, start, kill, delete, list).
"""

__version__ = "0.1.0"
SPEC_VERSION = "1.3.0"

__all__ = ["Runtime", "Container", "__version__", "SPEC_VERSION"]


def __getattr__(name):
    if name in ("Runtime", "Container"):
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'ocipy' has no attribute {name!r}")

"""Write the `ocipy` command: an entry point that pays for no site processing.

pip's console script starts `python` with its site processing: the venv's
site-packages, every `.pth` file in it (an editable install's import hook
among them) and, without `-I`, the caller's PYTHON* variables and user site.
That costs ~10 ms on every command, more than `ocipy state` does itself, and
engines call the runtime constantly. The launcher written here starts the
interpreter with `-I -S` (isolated from the caller's environment, no `site`)
and puts on sys.path exactly the directories that hold ocipy and its
dependencies, found now, at install time. It names the interpreter binary the
venv was made from, not the venv's `python`, which reads pyvenv.cfg on every start.
It also builds ocipy's code pack (codepack.py), from which create, run and exec take
ocipy's modules:

    python -m ocipy.launcher [PATH]      (default: the `ocipy` beside this python)

Re-run it after moving the installation (the paths are absolute).
"""

from __future__ import annotations

import os
import sys

# Top-level modules ocipy imports from outside the standard library (any command).
RUNTIME_MODULES = ("ocipy", "pyroute2", "click")


def module_roots(names=RUNTIME_MODULES) -> list[str]:
    """The sys.path entries that hold `names`, in order, without duplicates."""
    from importlib.util import find_spec

    roots: list[str] = []
    for name in names:
        spec = find_spec(name)
        if spec is None or not spec.origin:
            raise SystemExit(f"ocipy.launcher: cannot find the module {name!r}: is ocipy installed with its dependencies?")
        path = os.path.dirname(os.path.abspath(spec.origin))
        if spec.submodule_search_locations is not None:  # a package: its parent holds it
            path = os.path.dirname(path)
        if path not in roots:
            roots.append(path)
    return roots


def base_interpreter() -> str:
    """The interpreter binary itself rather than a venv's `python`: that one reads pyvenv.cfg
    and searches for its prefix at every start (about 0.1 ms here), which `-I -S` with explicit
    paths does not need. The venv shares the binary and the standard library with it."""
    real = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    return real if os.access(real, os.X_OK) else sys.executable


def render(python: str, paths: list[str]) -> str:
    """Pure: the text of the launcher for interpreter `python` and sys.path additions `paths`."""
    if " " in python or len(python) > 200:
        raise ValueError(f"interpreter path not usable in a #! line: {python!r}")
    return (
        f"#!{python} -IS\n"
        "# Written by `python -m ocipy.launcher`: no site processing (-S), isolated from the\n"
        "# caller's PYTHON* variables and user site (-I); these are the paths site would add.\n"
        "import sys\n"
        f"sys.path += {paths!r}\n"
        "from ocipy.main import launch\n"
        "launch()\n"
    )


def install(dest: str, python: str | None = None) -> None:
    """Write the launcher `dest`, and build the code pack beside ocipy's .pyc files (a pack
    that cannot be written leaves ocipy importing its modules one by one, as before)."""
    from . import codepack

    paths = module_roots()
    package_dir = os.path.join(paths[0], "ocipy")
    try:
        codepack.build(package_dir, codepack.default_path(package_dir))
    except OSError as e:
        print(f"ocipy.launcher: no code pack ({e}): ocipy's modules are imported one by one", file=sys.stderr)
    text = render(python or base_interpreter(), paths)
    tmp = dest + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.rename(tmp, dest)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    dest = argv[0] if argv else os.path.join(os.path.dirname(sys.executable), "ocipy")
    install(dest)
    print(f"ocipy launcher written to {dest}")


if __name__ == "__main__":
    main()

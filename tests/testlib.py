"""Small helpers shared by test modules (conftest.py cannot be imported by name: tests/e2e has one too)."""

from pathlib import Path

from ocipy.bundle import CACHE_DIR_NAME


def container_dirs(root: Path) -> list[Path]:
    """What is in a state root besides ocipy's validation cache: one directory per container."""
    return [p for p in Path(root).iterdir() if p.name != CACHE_DIR_NAME] if Path(root).exists() else []

"""Where ../shared is: beside the repository (CI clones the repo anywhere, with shared/ next to it)."""

from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "corpus" / "engines"

"""Where the evaluation datasets live: ``$EDGE_DATASETS``, else ``../shared/datasets`` beside the repo."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def datasets_root() -> Path | None:
    """The datasets folder, or None where there is none (a user's fresh clone)."""
    env = os.environ.get("EDGE_DATASETS")
    candidates = [Path(env)] if env else [REPO_ROOT.parent / "shared" / "datasets"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def dataset(name: str) -> Path | None:
    root = datasets_root()
    if root is None:
        return None
    path = root / name
    return path if path.is_dir() else None

"""Gallery fixtures: a fresh state directory, synthetic unit vectors, and cached LFW-dev embeddings."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from edge.state import StateDir

REPO = Path(__file__).resolve().parents[2]
#: LFW-dev pairs the tests embed (dlib, about 0.2 s per image; cached under .cache/gallery)
LFW_TEST_PAIRS = 160


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    st = StateDir(tmp_path / "state")
    st.ensure()
    return st


@pytest.fixture
def unit() -> Callable[..., np.ndarray]:
    rng = np.random.default_rng(1234)

    def make(n: int, dim: int = 128) -> np.ndarray:
        x = rng.standard_normal((n, dim)).astype(np.float32)
        return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True))

    return make


def lfw_module() -> ModuleType:
    bench = str(REPO / "benchmarks")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module("bench_gallery_lfw")


@pytest.fixture(scope="session")
def lfw_embeddings(lfw_dev: Path) -> tuple[ModuleType, list[object], dict[str, np.ndarray]]:
    """(helper module, pairs, {image: L2-normalised dlib descriptor}) for a balanced subset."""
    mod = lfw_module()
    pairs = mod.read_pairs(lfw_dev, LFW_TEST_PAIRS)
    vecs = mod.embed(lfw_dev, {p.a for p in pairs} | {p.b for p in pairs})
    return mod, pairs, vecs

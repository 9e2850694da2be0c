"""Fixtures for the face tests: the real model bundle (built once, reused) and LFW dev samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.datasets import REPO_ROOT


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The bundle `edge models build` makes (scripts/setup.sh builds it; this is a no-op then)."""
    from edge.models.build import build

    target = REPO_ROOT / "models"
    build(target, REPO_ROOT / ".cache" / "models-src", quiet=True)
    return target


@pytest.fixture(scope="session")
def lfw_images(lfw_dev: Path) -> list[Path]:
    """A few real deep-funneled LFW dev images (one face each, different people)."""
    names = ["Eric_Daze/Eric_Daze_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0001.jpg", "Akhmed_Zakayev/Akhmed_Zakayev_0001.jpg"]
    return [lfw_dev / "lfw-deepfunneled" / n for n in names]

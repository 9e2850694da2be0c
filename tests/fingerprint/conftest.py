"""Fixtures for the fingerprint tests: simulators started as separate processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge.fingerprint.sim.process import SimulatorProcess


@pytest.fixture(scope="module")
def sim307() -> Iterator[SimulatorProcess]:
    """An R307 simulator with a finger on the glass (FVC2002-DB1_B-101:1, or synthetic-1:1 without datasets)."""
    with SimulatorProcess(model="r307", finger_always=True) as sim:
        yield sim


@pytest.fixture(scope="module")
def sim503() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(model="r503", finger_always=True) as sim:
        yield sim

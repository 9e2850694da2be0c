"""Shared fixtures: leak detection, dataset locations."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.datasets import REPO_ROOT, dataset
from edge.testing.mosquitto import Mosquitto


def _children() -> set[int]:
    pids: set[int] = set()
    task_dir = Path(f"/proc/{os.getpid()}/task")
    for task in task_dir.iterdir():
        try:
            text = (task / "children").read_text()
        except OSError:
            continue
        pids.update(int(p) for p in text.split())
    return pids


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail any test that leaves a thread or a child process behind.

    Session-scoped services (the test Mosquitto) are started before the first test that uses them
    and registered in ``ALLOWED_PIDS``; everything else must be gone within a second of the test.
    """
    threads_before = set(threading.enumerate())
    children_before = _children()
    yield
    deadline = time.monotonic() + 2.0
    while True:
        extra_threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        extra_children = {p for p in _children() - children_before - ALLOWED_PIDS if _alive(p)}
        if not extra_threads and not extra_children:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    names = ", ".join(sorted(t.name for t in extra_threads))
    pytest.fail(f"test leaked threads [{names}] and child processes {sorted(extra_children)}")


ALLOWED_PIDS: set[int] = set()


@pytest.fixture(autouse=True)
def clean_storage_faults() -> Iterator[None]:
    """No injected storage fault and no storage alarm state outlives the test that made it."""
    from edge import state_faults
    from edge.state_health import HEALTH

    yield
    state_faults.disarm()
    HEALTH.reset()


@pytest.fixture(scope="session")
def lfw_dev() -> Path:
    path = dataset("lfw-dev")
    if path is None:
        pytest.skip("LFW dev data not found (set EDGE_DATASETS or place ../shared/datasets)")
    return path


@pytest.fixture(scope="session")
def fvc_dev() -> Path:
    path = dataset("fingerprints-dev")
    if path is None:
        pytest.skip("FVC2002 dev data not found (set EDGE_DATASETS or place ../shared/datasets)")
    return path


@pytest.fixture(scope="session")
def nuaa_dev() -> Path:
    path = dataset("nuaa-pad-dev")
    if path is None:
        pytest.skip("NUAA dev data not found (set EDGE_DATASETS or place ../shared/datasets)")
    return path


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One real, anonymous Mosquitto on a free loopback port for the whole test session.

    Tests that need TLS, ACLs or kill/restart start their own ``Mosquitto`` instead.
    """
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    assert broker.pid is not None
    ALLOWED_PIDS.add(broker.pid)
    yield broker
    ALLOWED_PIDS.discard(broker.pid)
    broker.stop()


# --------------------------------------------------------------------------- face models (tests/models, tests/vision)


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
    names = [
        "Eric_Daze/Eric_Daze_0001.jpg",
        "Abel_Pacheco/Abel_Pacheco_0001.jpg",
        "Akhmed_Zakayev/Akhmed_Zakayev_0001.jpg",
    ]
    return [lfw_dev / "lfw-deepfunneled" / n for n in names]

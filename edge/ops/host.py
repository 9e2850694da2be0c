"""Facts about the terminal a health event reports: outbox depth, software, load, free disk.

``Host`` reads them when the gate builds a ``Health`` event (``edge.agent.ports.HostPort``);
``QuietHost`` reports nothing beyond an empty outbox (tests, tools without an outbox).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path


class QuietHost:
    def outbox_depth(self) -> int:
        return 0

    def software(self) -> str | None:
        return None

    def load1(self) -> float | None:
        return None

    def disk_free_mb(self) -> int | None:
        return None


def software_version() -> str | None:
    """``gate-edge-<version>`` of the installed distribution, or None when it is not installed."""
    try:
        from importlib.metadata import version

        return "gate-edge-" + version("gate-edge")
    except Exception:
        return None


class Host:
    """The real terminal: the outbox's depth, the installed version, the load and the state disk."""

    def __init__(self, outbox_depth: Callable[[], int], disk: Path | None = None) -> None:
        self._depth = outbox_depth
        self._disk = disk
        self._software = software_version()

    def outbox_depth(self) -> int:
        return int(self._depth())

    def software(self) -> str | None:
        return self._software

    def load1(self) -> float | None:
        with contextlib.suppress(OSError):
            return round(min(os.getloadavg()[0], 1000.0), 2)
        return None

    def disk_free_mb(self) -> int | None:
        if self._disk is None:
            return None
        with contextlib.suppress(OSError):
            return int(shutil.disk_usage(self._disk).free // 2**20)
        return None

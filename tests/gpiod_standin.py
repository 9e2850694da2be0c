"""A stand-in for the libgpiod 2.x Python module, for code that drives GPIO (no chip exists here or
in CI). It has the names the agent uses; each test supplies the line request's behaviour."""

from __future__ import annotations

import enum
import sys
import time
import types
from collections.abc import Callable
from typing import Any

import pytest


class Event:
    def __init__(self, offset: int, t_ns: int, seqno: int) -> None:
        self.line_offset, self.timestamp_ns, self.global_seqno = offset, t_ns, seqno


class Request:
    """A line request: ``batches`` of edge events handed out in turn, ``values`` by line."""

    def __init__(self, offsets: list[int], batches: list[list[Event]], values: dict[Any, Any]) -> None:
        self.offsets = offsets
        self.batches = batches
        self.values = values
        self.released = False
        #: (line, value, clock()) for every set_value, in order; ``clock`` may be a test's virtual one
        self.writes: list[tuple[Any, Any, int]] = []
        self.clock: Callable[[], int] = time.monotonic_ns

    def wait_edge_events(self, timeout: float) -> bool:
        return bool(self.batches)

    def read_edge_events(self) -> list[Event]:
        return self.batches.pop(0)

    def get_value(self, line: Any) -> Any:
        return self.values[line]

    def set_value(self, line: Any, value: Any) -> None:
        self.values[line] = value
        self.writes.append((line, value, self.clock()))

    def get_values(self) -> list[Any]:
        return [self.values[o] for o in self.offsets]

    def release(self) -> None:
        self.released = True


class Bias(enum.Enum):
    PULL_UP = 1


class Direction(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class Edge(enum.Enum):
    FALLING = 1
    RISING = 2
    BOTH = 3


class Value(enum.Enum):
    ACTIVE = 1
    INACTIVE = 2


def install(monkeypatch: pytest.MonkeyPatch, request: Request) -> tuple[types.ModuleType, dict[str, Any]]:
    """Put the stand-in in ``sys.modules``; returns ``gpiod.line`` and a record of the request made."""
    line_mod = types.ModuleType("gpiod.line")
    line_mod.Bias = Bias  # type: ignore[attr-defined]
    line_mod.Direction = Direction  # type: ignore[attr-defined]
    line_mod.Edge = Edge  # type: ignore[attr-defined]
    line_mod.Value = Value  # type: ignore[attr-defined]
    made: dict[str, Any] = {}

    def request_lines(chip: str, **kwargs: Any) -> Request:
        made.update(kwargs, chip=chip)
        return request

    fake = types.ModuleType("gpiod")
    fake.__version__ = "2.5.0"  # type: ignore[attr-defined]
    fake.LineSettings = lambda **kw: kw  # type: ignore[attr-defined]
    fake.request_lines = request_lines  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gpiod", fake)
    monkeypatch.setitem(sys.modules, "gpiod.line", line_mod)
    return line_mod, made

"""Hardware-in-the-loop fixtures: edge-fpsim by default, a real module with --fp-port/--fp-model.

    pytest hil_tests                                         # simulator (r503)
    pytest hil_tests --fp-model r307                         # simulator imitating an R307
    pytest -s hil_tests --fp-port /dev/ttyUSB0 --fp-model r503   # a real module (-s shows the prompts)

With a real module the tests ask the operator (on the terminal) to place finger A, finger B or an
unenrolled finger C, or to lift; see docs/fingerprint-hil.md. Faults are injected only into the
simulator; tests that need them are skipped on hardware.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import pytest

from edge.datasets import dataset
from edge.fingerprint.driver import FingerprintDriver
from edge.fingerprint.sim.process import ControlClient, SimulatorProcess

MODELS = {
    "r307": {"capacity": 1000, "template": 512, "led": False},
    "r503": {"capacity": 200, "template": 1536, "led": True},
}


def pytest_addoption(parser: pytest.Parser) -> None:
    wiegand = parser.getgroup("Wiegand HIL")
    wiegand.addoption("--wiegand-chip", default=None, help="GPIO chip of a real Wiegand reader (e.g. /dev/gpiochip0)")
    wiegand.addoption("--wiegand-d0", default="5", help="D0 line offset or name (default 5)")
    wiegand.addoption("--wiegand-d1", default="6", help="D1 line offset or name (default 6)")
    wiegand.addoption("--wiegand-format", default="H10301", help="the test card's format (default H10301)")
    wiegand.addoption("--wiegand-card", default="1191993", help="the test card's number (its data bits, decimal)")
    wiegand.addoption("--wiegand-keypad", action="store_true", help="the reader has a keypad: test PIN entry")
    osdp = parser.getgroup("OSDP HIL")
    osdp.addoption("--osdp-port", default=None, help="RS-485 adapter on a real panel's reader port (e.g. /dev/ttyUSB0)")
    osdp.addoption("--osdp-baud", type=int, default=9600, help="the panel's reader port speed (default 9600)")
    osdp.addoption("--osdp-address", type=int, default=0, help="this reader's address in the panel (default 0)")
    osdp.addoption(
        "--osdp-scbk-file", default=None, help="file holding the panel's key for this reader (32 hex digits)"
    )
    osdp.addoption("--osdp-card", type=int, default=4242, help="a number the panel grants (its data bits, decimal)")
    osdp.addoption("--osdp-format", default="H10301", help="the panel's card format (default H10301)")
    group = parser.getgroup("fingerprint HIL")
    group.addoption("--fp-port", default=None, help="serial port or pyserial URL of a real EF01 module")
    group.addoption("--fp-model", default="r503", choices=sorted(MODELS), help="model of the module (or to simulate)")
    group.addoption("--fp-password", default="0", help="module password (hex), default 0")


class Presenter(Protocol):
    """Puts fingers on the glass: the simulator's control socket, or a person told what to do."""

    def place(self, finger: str, impression: int) -> None: ...

    def lift(self) -> None: ...


class SimPresenter:
    def __init__(self, control: ControlClient) -> None:
        self.control = control
        fvc = dataset("fingerprints-dev") is not None
        self.fingers = (
            {"A": "FVC2002-DB1_B-101", "B": "FVC2002-DB1_B-102", "C": "FVC2002-DB1_B-103"}
            if fvc
            else {"A": "synthetic-1", "B": "synthetic-2", "C": "synthetic-3"}
        )

    def place(self, finger: str, impression: int) -> None:
        self.control.place(f"{self.fingers[finger]}:{impression}")

    def lift(self) -> None:
        self.control.lift()


class OperatorPresenter:
    """Tells a person at the rig what to do and waits until the sensor sees it."""

    def __init__(self, driver: FingerprintDriver, wait_s: float = 30.0) -> None:
        self.driver = driver
        self.wait_s = wait_s

    def _say(self, text: str) -> None:
        sys.stderr.write(f"\n>>> {text}\n")
        sys.stderr.flush()

    def place(self, finger: str, impression: int) -> None:
        self._say(f"Place finger {finger} (A = right index, B = right middle, C = left thumb), attempt {impression}")
        if not self.driver.wait_for_finger(self.wait_s):
            pytest.fail(f"no finger seen within {self.wait_s:.0f} s")

    def lift(self) -> None:
        self._say("Lift your finger")
        self.driver.wait_for_lift(self.wait_s)
        time.sleep(0.3)


@dataclass
class Rig:
    driver: FingerprintDriver
    presenter: Presenter
    model: str
    sim: SimulatorProcess | None

    @property
    def spec(self) -> dict[str, object]:
        return MODELS[self.model]

    def needs_sim(self, what: str) -> SimulatorProcess:
        if self.sim is None:
            pytest.skip(f"{what} needs the simulator; a real module cannot do it on demand")
        return self.sim


@pytest.fixture(scope="module")
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    port = request.config.getoption("--fp-port")
    model = request.config.getoption("--fp-model")
    password = int(request.config.getoption("--fp-password"), 16)
    if port:
        drv = FingerprintDriver.open(port, password=password, timeout_s=2.0)
        try:
            yield Rig(drv, OperatorPresenter(drv), model, None)
        finally:
            drv.close()
        return
    with SimulatorProcess(model=model) as sim:
        drv = FingerprintDriver.open(sim.port)
        try:
            yield Rig(drv, SimPresenter(sim.control), model, sim)
        finally:
            drv.close()

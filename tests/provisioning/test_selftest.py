"""Selftest checks: each failure names its fix; device checks run against port doubles."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge.agent.ports import Embedding, Frame, Rule
from edge.errors import HardwareError, ModelError
from edge.state import StateDir
from provisioning import checks
from provisioning.selftest import Check, CheckResult, passed, run_checks
from tests.agent.doubles import Observation, unit
from tests.provisioning.conftest import Run


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    s = StateDir(tmp_path / "state")
    s.ensure()
    return s


def test_storage_passes_on_a_private_writable_dir_and_fails_with_the_fix_when_open(state: StateDir) -> None:
    assert checks.storage(state).status in ("pass", "warn")
    state.root.chmod(0o755)
    result = checks.storage(state)
    assert result.status == "fail"
    assert f"chmod 700 {state.root}" in result.fix


def test_storage_flags_a_secret_readable_by_others(state: StateDir) -> None:
    state.gallery_key.write_bytes(os.urandom(32))
    state.gallery_key.chmod(0o644)
    result = checks.storage(state)
    assert result.status == "fail"
    assert "chmod 600" in result.fix


def test_clock_before_2024_fails_and_missing_timedatectl_is_unknown(state: StateDir) -> None:
    assert checks.clock(state, now=lambda: 0.0).status == "fail"
    result = checks.clock(state, timedatectl="timedatectl-not-installed-here")
    assert result.status == "unknown"
    assert "NTP" in result.fix
    assert checks.clock(state).status in ("pass", "fail", "unknown")  # the real timedatectl, whatever it says


def test_a_check_that_raises_is_a_failure_not_a_crash(state: StateDir) -> None:
    def boom(_: StateDir) -> CheckResult:
        raise ZeroDivisionError

    def model(_: StateDir) -> CheckResult:
        raise ModelError("embedder.tflite hash differs from the manifest", hint="rebuild with `edge models build`")

    outcomes = run_checks(
        state, [Check("boom", boom), Check("models", model), Check("ok", lambda s: CheckResult("pass", ""))]
    )
    assert [o.status for o in outcomes] == ["fail", "fail", "pass"]
    assert outcomes[1].fix == "rebuild with `edge models build`"
    assert not passed(outcomes)


class Frames:
    """Camera port double: frames of a given brightness; a 'face' frame carries a marker pixel."""

    def __init__(self, level: int, with_face: bool, count: int = 50) -> None:
        self.level, self.with_face, self.left, self.closed = level, with_face, count, False

    def read(self) -> np.ndarray | None:
        if self.left == 0:
            return None
        self.left -= 1
        frame = np.full((48, 64, 3), self.level, np.uint8)
        frame[0, 0, 0] = 1 if self.with_face else 0
        return frame

    def close(self) -> None:
        self.closed = True


class MarkerPipeline:
    """Finds a face where the camera marked one (the first byte of the frame)."""

    want_points = False

    def process(self, frame: Frame, rule: Rule = "gate") -> Observation | None:
        return Observation(unit(0)) if frame[0, 0, 0] == 1 else None

    def probe(
        self, frame: Frame, rule: Rule = "gate", uncertain: Callable[[Embedding], bool] | None = None
    ) -> Observation | None:
        return self.process(frame, rule)


def test_camera_check_reports_frames_exposure_and_face(state: StateDir) -> None:
    cameras: list[Frames] = []

    def opener(level: int, face: bool, count: int = 50):
        def open_camera() -> Frames:
            cameras.append(Frames(level, face, count))
            return cameras[-1]

        return open_camera

    good = checks.camera_check(opener(120, True), MarkerPipeline(), timeout_s=2).run(state)
    assert good.status == "pass"
    assert "10 frames" in good.detail
    assert "face detected" in good.detail
    dark = checks.camera_check(opener(5, True), MarkerPipeline(), timeout_s=2).run(state)
    assert dark.status == "warn"
    assert "lighting" in dark.fix
    empty = checks.camera_check(opener(120, False), MarkerPipeline(), timeout_s=2).run(state)
    assert empty.status == "warn"
    assert "no face" in empty.detail
    dead = checks.camera_check(opener(120, True, count=0), None, timeout_s=0.3).run(state)
    assert dead.status == "fail"
    assert all(c.closed for c in cameras)


class Sensor:
    capacity = 200

    def __init__(self, count: int) -> None:
        self.count = count

    def template_count(self) -> int:
        return self.count

    def health(self) -> str:
        return "r503 57600 baud"


def test_sensor_check_pass_full_and_unanswering(state: StateDir) -> None:
    assert checks.sensor_check(lambda: Sensor(3)).run(state).status == "pass"
    assert checks.sensor_check(lambda: Sensor(200)).run(state).status == "warn"

    def unplugged() -> Sensor:
        raise HardwareError("no answer to the handshake on /dev/ttyUSB0")

    result = checks.sensor_check(unplugged).run(state)
    assert result.status == "fail"
    assert "wiring" in result.fix


def test_models_check_runs_the_verifier_and_times_inference(state: StateDir) -> None:
    check = checks.models_check(lambda: None, lambda: 0.042)
    result = run_checks(state, [check])[0]
    assert result.status == "pass"
    assert "42 ms" in result.detail


def test_selftest_only_rejects_an_unknown_check(provision: Run) -> None:
    assert provision("init", "--site", "s").code == 0
    result = provision("selftest", "--only", "camra")
    assert result.code == 2
    assert "camera" in result.err
    only = provision("selftest", "--only", "storage", "--json")
    assert only.code == 0
    assert [c["name"] for c in only.json()["checks"]] == ["storage"]


def test_selftest_without_trust_or_broker_fails_with_fixes(provision: Run) -> None:
    assert provision("init", "--site", "s").code == 0
    result = provision("selftest", "--json")
    assert result.code == 3
    found = {c["name"]: c for c in result.json()["checks"]}
    assert found["trust"]["fix"] == "edge-provision trust --consent-key FILE"
    assert found["broker"]["fix"] == "edge-provision broker --url URL"


def test_card_reader_check_opens_the_reader_and_finds_a_line_held_low(state: StateDir, tmp_path: Path) -> None:
    from edge.credentials.readers import SimCredentialReader
    from edge.credentials.wiegand_reader import SimWiegandSource, WiegandReader

    source = SimWiegandSource()
    reader = WiegandReader(source)
    result = checks.card_reader_check(lambda: reader).run(state)
    assert (result.status, result.detail) == ("pass", "WiegandReader opened, D0/D1 idle high")
    source = SimWiegandSource()
    source.hold_low(1)  # a D1 wire shorted to ground, or a level shifter without supply
    result = checks.card_reader_check(lambda: WiegandReader(source)).run(state)
    assert (result.status, result.detail) == ("fail", "Wiegand D1 held low while idle")
    assert "level shifter" in result.fix
    assert source._wake._r == -1  # closed after the check

    def unplugged() -> WiegandReader:
        raise HardwareError("cannot request the GPIO lines of a Wiegand reader", hint="check gpio.wiegand_d0/d1")

    result = checks.card_reader_check(unplugged).run(state)
    assert (result.status, result.fix) == ("fail", "check gpio.wiegand_d0/d1")
    line_reader = SimCredentialReader(tmp_path / "fifo")
    assert checks.card_reader_check(lambda: line_reader).run(state).detail == "SimCredentialReader opened"

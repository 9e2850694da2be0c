"""Enrol, identify, verify and delete through the agent-facing workflows with real FVC2002 images.

A small subset keeps CI cheap (8 impressions of 3 fingers from DB1_B; features are cached by image
SHA-256 under .cache/fpsim). benchmarks/bench_fingerprint_matcher.py measures the full dev set.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.fingerprint import api
from edge.fingerprint.driver import FingerprintDriver
from edge.fingerprint.sim.process import SimulatorProcess
from edge.fingerprint.workflows import CaptureTimeoutError, SensorWorkflows

pytestmark = [pytest.mark.timeout(280), pytest.mark.needs_data]

A, B, C = "FVC2002-DB1_B-101", "FVC2002-DB1_B-102", "FVC2002-DB1_B-103"


class Person:
    """Answers the enrolment prompts by placing the next impression or lifting the finger."""

    def __init__(self, sim: SimulatorProcess, impressions: list[str]) -> None:
        self.sim = sim
        self.queue = list(impressions)
        self.prompts: list[str] = []

    def __call__(self, text: str) -> None:
        self.prompts.append(text)
        if text in (api.PROMPT_PLACE, api.PROMPT_AGAIN):
            ref = self.queue.pop(0)
            if ref == "smudge":
                self.sim.control.smudge()
            else:
                self.sim.control.place(ref)
        else:
            self.sim.control.lift()


@pytest.fixture(scope="module")
def rig(fvc_dev: Path) -> Iterator[tuple[SimulatorProcess, SensorWorkflows]]:
    with SimulatorProcess(model="r503") as sim:
        drv = FingerprintDriver.open(sim.port)
        try:
            yield sim, SensorWorkflows(drv, led=True, lift_timeout_s=1.0)
        finally:
            drv.close()


def test_enrol_identify_reject_duplicate_and_delete(rig: tuple[SimulatorProcess, SensorWorkflows]) -> None:
    sim, sensor = rig
    assert isinstance(sensor, api.FingerprintSensor)
    sensor.empty()
    assert sensor.capacity == 200
    person_a = Person(sim, [f"{A}:1", f"{A}:2"])
    out_a = sensor.enrol(person_a, captures=2, timeout_s=60)
    assert out_a.slot == 0
    assert out_a.duplicate_of is None
    assert out_a.captures == 2
    assert person_a.prompts == [api.PROMPT_PLACE, api.PROMPT_LIFT, api.PROMPT_AGAIN]
    out_b = sensor.enrol(Person(sim, [f"{B}:1", f"{B}:2"]), captures=2, timeout_s=60)
    assert out_b.slot == 1
    assert sensor.template_count() == 2

    # Unseen impressions of the enrolled fingers are identified; an unenrolled finger is rejected.
    sim.control.place(f"{A}:3")
    hit_a = sensor.identify(timeout_s=5)
    sim.control.place(f"{B}:3")
    hit_b = sensor.identify(timeout_s=5)
    sim.control.place(f"{C}:1")
    miss = sensor.identify(timeout_s=5)
    print(f"identify: {A}:3 -> {hit_a}; {B}:3 -> {hit_b}; {C}:1 -> {miss}")
    assert isinstance(hit_a, api.Match)
    assert hit_a.slot == 0
    assert isinstance(hit_b, api.Match)
    assert hit_b.slot == 1
    assert miss == api.NO_MATCH  # a searched finger that matched nothing, told apart from no finger
    assert sim.control.status()["led"][2] == 1  # red after the rejection

    # Enrolling an enrolled finger again reports the duplicate and stores nothing.
    dup = sensor.enrol(Person(sim, [f"{A}:4"]), captures=2, timeout_s=60)
    assert dup.slot is None
    assert dup.duplicate_of == 0
    assert sensor.template_count() == 2

    # 1:1 verify against a slot.
    drv = sensor.driver
    sim.control.place(f"{B}:3")
    assert drv.capture()
    assert drv.image2tz(1) == 0
    assert drv.verify(1) is not None
    assert drv.verify(0) is None

    sensor.delete(0)
    sim.control.place(f"{A}:3")
    assert sensor.identify(timeout_s=5) == api.NO_MATCH
    assert sensor.template_count() == 1
    health = sensor.health()
    assert health.ok
    assert (health.capacity, health.templates) == (200, 1)
    sensor.empty()
    assert sensor.template_count() == 0


def test_enrol_gives_quality_feedback_and_refuses_a_different_finger(
    rig: tuple[SimulatorProcess, SensorWorkflows],
) -> None:
    sim, sensor = rig
    sensor.empty()
    # First presentation smudged, second capture from another finger: both are retaken.
    person = Person(sim, ["smudge", f"{A}:1", f"{C}:1", f"{A}:2"])
    out = sensor.enrol(person, captures=2, timeout_s=60)
    assert out.slot == 0
    assert out.retries == 2
    assert api.PROMPT_POOR in person.prompts
    assert api.PROMPT_DIFFERENT in person.prompts
    sensor.empty()


def test_enrol_and_identify_time_out_when_nobody_comes(rig: tuple[SimulatorProcess, SensorWorkflows]) -> None:
    sim, sensor = rig
    sim.control.nothing()
    assert sensor.identify(timeout_s=0.5) == api.NO_FINGER
    with pytest.raises(CaptureTimeoutError) as err:
        sensor.enrol(lambda text: None, captures=2, timeout_s=0.5)
    assert err.value.hint

"""The adapters between the enforcer, the gallery and the sensor: a subject's deletion frees sensor
slots that are erased on the sensor by the thread owning the UART; orphan templates (a crash
between the gallery delete and the sensor erase) are erased when the sensor opens."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge.agent.subsystems import FingerAdapter, GalleryStore, SlotEraser
from edge.consent.enforce import store_modality, store_name

PROFILES = Path(__file__).resolve().parents[2] / "device_profiles"


@dataclass(frozen=True)
class Report:
    face_templates: int
    sensor_slots: tuple[int, ...]
    modalities: tuple[str, ...]


@dataclass
class Gallery:
    faces: dict[str, int] = field(default_factory=dict)
    slots: dict[int, str] = field(default_factory=dict)

    def subjects(self, modality: str | None = None) -> set[str]:
        if modality == "face":
            return set(self.faces)
        if modality == "fingerprint":
            return set(self.slots.values())
        return set(self.faces) | set(self.slots.values())

    def delete_subject(self, subject: str, modality: str | None = None) -> Report:
        n = self.faces.pop(subject, 0) if modality in (None, "face") else 0
        freed: tuple[int, ...] = ()
        if modality in (None, "fingerprint"):
            freed = tuple(sorted(s for s, who in self.slots.items() if who == subject))
        for slot in freed:
            del self.slots[slot]
        return Report(n, freed, tuple(m for m, has in (("face", n), ("fingerprint", freed)) if has))


class Driver:
    """The driver calls the adapter makes: a finger on the glass matches the first occupied slot."""

    def __init__(self, occupied: list[int]) -> None:
        self._occupied = occupied
        self.closed = False
        self.finger = True
        self.uart_polls = 0  # GenImg calls: wait_for_finger and capture

    def wait_for_finger(self, timeout_s: float) -> bool:
        self.uart_polls += 1
        return self.finger

    def capture(self) -> bool:
        self.uart_polls += 1
        return self.finger

    def image2tz(self, buffer: int) -> int:
        return 0

    def search(self, buffer: int) -> tuple[int, int] | None:
        return (self._occupied[0], 90) if self._occupied else None

    def occupied(self) -> list[int]:
        return list(self._occupied)

    def close(self) -> None:
        self.closed = True


class Sensor:
    def __init__(self, occupied: list[int]) -> None:
        self.driver = Driver(occupied)
        self.deleted: list[int] = []

    def delete(self, slot: int) -> None:
        self.deleted.append(slot)
        self.driver._occupied.remove(slot)


def test_deleting_a_subject_queues_its_slots_and_the_finger_thread_erases_them() -> None:
    gallery = Gallery(faces={"a": 3, "b": 2}, slots={4: "a", 7: "b"})
    eraser = SlotEraser()
    face, finger = GalleryStore(gallery, "face", eraser), GalleryStore(gallery, "fingerprint", eraser)
    assert (store_name(face), store_modality(face), store_modality(finger)) == ("face", "face", "fingerprint")
    assert finger.subjects() == {"a", "b"}
    # a withdrawal of face consent deletes the face templates only: the finger still opens the gate
    assert face.delete_subject("a") == {"templates": 3, "slots": [], "modalities": ["face"]}
    assert eraser.pending() == []
    assert gallery.slots == {4: "a", 7: "b"}
    assert finger.delete_subject("a") == {"templates": 0, "slots": [4], "modalities": ["fingerprint"]}
    assert eraser.pending() == [4]
    sensor = Sensor([4, 7])
    adapter = FingerAdapter(sensor, eraser, is_known=lambda slot: slot in gallery.slots)
    hit = adapter.identify(0.1)
    assert sensor.deleted == [4]  # erased before the next read; the sensor no longer matches "a"
    assert hit is not None
    assert hit.slot == 7
    assert eraser.pending() == []
    adapter.close()
    assert sensor.driver.closed


def test_orphan_templates_are_erased_when_the_sensor_opens() -> None:
    gallery = Gallery(slots={1: "a"})
    sensor = Sensor([1, 2, 9])  # 2 and 9: stored by an enrolment or kept by a crash, in no gallery record
    adapter = FingerAdapter(sensor, SlotEraser(), is_known=lambda slot: slot in gallery.slots)
    adapter.identify(0.1)
    assert sorted(sensor.deleted) == [2, 9]
    assert sensor.driver.occupied() == [1]


def test_a_finger_that_matches_nothing_is_an_attempt_and_no_finger_is_none() -> None:
    sensor = Sensor([])
    adapter = FingerAdapter(sensor, SlotEraser(), is_known=lambda slot: False)
    miss = adapter.identify(0.1)
    assert miss is not None
    assert miss.slot is None  # the gate denies it and counts it towards back-off
    sensor.driver.finger = False
    assert adapter.identify(0.1) is None


def test_an_r503_profile_turns_the_led_cues_on_and_an_r307_profile_off(tmp_path: Path) -> None:
    """The profile's sensor family drives the R503 LED ring cues (they were never switched on)."""
    from edge.agent.subsystems import open_fingerprint
    from edge.config.load import load_config
    from edge.fingerprint.sim.process import SimulatorProcess

    with SimulatorProcess(model="r503") as sim:
        for profile_name, led in (("rpi5-r503-usbcam", True), ("rpi4-r307-picam2", False)):
            path = tmp_path / f"{profile_name}.toml"
            path.write_text(
                f'[device]\nsite = "s"\nprofile = "{profile_name}"\n[camera]\nenabled = false\n'
                f'[fingerprint]\nport = "{sim.port}"\n'
            )
            config, profile = load_config(path)
            sensor = open_fingerprint(config, profile)
            try:
                assert sensor.led is led
            finally:
                sensor.driver.close()


def test_with_a_touch_line_the_uart_is_polled_only_when_a_finger_is_on(caplog: pytest.LogCaptureFixture) -> None:
    from edge.fingerprint.touch import SimTouchLine

    sensor = Sensor([7])
    touch = SimTouchLine()
    adapter = FingerAdapter(sensor, SlotEraser(), is_known=lambda slot: True, touch=touch)
    adapter._orphans_checked = True
    for _ in range(5):
        assert adapter.identify(0.02) is None  # nobody at the sensor: no GenImg over the UART
    assert sensor.driver.uart_polls == 0
    touch.set(True)
    hit = adapter.identify(0.02)
    assert hit is not None
    assert hit.slot == 7
    assert sensor.driver.uart_polls == 1
    # a touch line that never fires: the fallback poll still finds the finger, and says why
    touch.set(False)
    adapter._next_poll = 0.0
    with caplog.at_level(logging.WARNING):
        again = adapter.identify(0.02)
    assert again is not None
    assert "check fingerprint.touch_gpio" in caplog.text
    assert sensor.driver.uart_polls == 2
    assert adapter.identify(0.02) is None  # the next fallback poll is FALLBACK_POLL_S away
    assert sensor.driver.uart_polls == 2
    adapter.close()
    assert sensor.driver.closed


def test_open_touch_follows_the_profile_and_reports_a_missing_chip() -> None:
    from edge.agent.subsystems import open_touch
    from edge.config.load import load_profile
    from edge.errors import HardwareError
    from edge.fingerprint.touch import active_low_for

    assert open_touch(load_profile(PROFILES / "sim.toml")) is None  # simulated GPIO: no line
    assert (active_low_for("r503"), active_low_for("r307"), active_low_for("as608")) == (True, False, False)
    pytest.importorskip("gpiod", reason="the gpio extra is not installed")
    pi = load_profile(PROFILES / "rpi5-r503-usbcam.toml")
    assert pi.fingerprint is not None
    assert pi.fingerprint.touch_gpio == 25
    if not Path(pi.gpio.chip).exists():
        with pytest.raises(HardwareError, match="does not exist"):
            open_touch(pi)


def test_gpiod_touch_line_waits_for_the_level_with_the_familys_polarity(monkeypatch: pytest.MonkeyPatch) -> None:
    """GpiodTouchLine over the libgpiod stand-in: both edges, pull-up, active low for an R503; a
    wait returns the level after the edge (a finger lifted again within the wait reads False)."""
    from edge.fingerprint.touch import GpiodTouchLine
    from tests.gpiod_standin import Event, Request, install

    request = Request([25], [[Event(25, 1, 1)], [Event(25, 2, 2)]], {})
    line, made = install(monkeypatch, request)
    request.values = {25: line.Value.INACTIVE}  # type: ignore[attr-defined]
    touch = GpiodTouchLine("/dev/gpiochip0", 25, active_low=True)
    want = {"edge_detection": line.Edge.BOTH, "bias": line.Bias.PULL_UP, "active_low": True}  # type: ignore[attr-defined]
    assert made["config"] == {25: want}
    assert touch.wait(0.1) is False  # an edge came, but the line is back to idle
    request.values[25] = line.Value.ACTIVE  # type: ignore[attr-defined]
    assert touch.wait(0.1) is True
    touch.close()
    assert request.released

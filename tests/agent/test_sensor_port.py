"""The sensor interface and the enforcer's stores: a subject's deletion queues sensor slots (persisted)
that the sensor erases before its next read, and the receipt is signed only once they are erased;
orphan templates (a crash between an enrolment's store and its record) are erased when the sensor
opens; identify tells no finger, no match and a match apart."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from edge.consent.enforce import store_modality, store_name
from edge.fingerprint.api import NO_FINGER, NO_MATCH, Match
from edge.fingerprint.erasure import EraseQueue, PendingErase
from edge.fingerprint.workflows import SensorWorkflows
from edge.gallery.stores import FaceStore, FingerprintStore

PROFILES = Path(__file__).resolve().parents[2] / "device_profiles"


class Gallery:
    """The gallery calls the stores make, over two dicts."""

    def __init__(self, faces: dict[str, int] | None = None, slots: dict[int, str] | None = None) -> None:
        self.faces = dict(faces or {})
        self.slots = dict(slots or {})

    def subjects(self, modality: str | None = None) -> set[str]:
        if modality == "face":
            return set(self.faces)
        if modality == "fingerprint":
            return set(self.slots.values())
        return set(self.faces) | set(self.slots.values())

    def slots_of(self, subject: str) -> list[int]:
        return sorted(s for s, who in self.slots.items() if who == subject)

    def delete_subject(self, subject: str, modality: str | None = None) -> Any:
        from edge.gallery.store import DeletionReport

        n = self.faces.pop(subject, 0) if modality in (None, "face") else 0
        freed: tuple[int, ...] = ()
        if modality in (None, "fingerprint"):
            freed = tuple(self.slots_of(subject))
        for slot in freed:
            del self.slots[slot]
        mods = tuple(m for m, has in (("face", n), ("fingerprint", freed)) if has)
        return DeletionReport(bool(mods), n, freed, mods)


class Driver:
    """The driver calls the sensor makes: a finger on the glass matches the first occupied slot."""

    def __init__(self, occupied: list[int]) -> None:
        self._occupied = occupied
        self.closed = False
        self.finger = True
        self.poor = False
        self.unplugged = False
        self.uart_polls = 0  # GenImg calls: wait_for_finger and capture
        self.deleted: list[int] = []
        self.url = "loop://"

    def wait_for_finger(self, timeout_s: float) -> bool:
        self.uart_polls += 1
        return self.finger

    def capture(self) -> bool:
        self.uart_polls += 1
        return self.finger

    def image2tz(self, buffer: int) -> int:
        return 6 if self.poor else 0

    def search(self, buffer: int) -> tuple[int, int] | None:
        return (self._occupied[0], 90) if self._occupied else None

    def occupied(self) -> list[int]:
        return list(self._occupied)

    def delete(self, slot: int) -> None:
        from edge.fingerprint.errors import SensorTimeoutError

        if self.unplugged:
            raise SensorTimeoutError("the sensor did not answer", port=self.url)
        self.deleted.append(slot)
        self._occupied.remove(slot)

    def close(self) -> None:
        self.closed = True


def sensor_on(driver: Driver, **kwargs: Any) -> SensorWorkflows:
    return SensorWorkflows(driver, **kwargs)  # type: ignore[arg-type]  # the driver's double


def test_deleting_a_subject_queues_its_slots_and_the_sensor_erases_them_before_its_next_read() -> None:
    gallery = Gallery(faces={"a": 3, "b": 2}, slots={4: "a", 7: "b"})
    queue = EraseQueue()
    face, finger = FaceStore(gallery), FingerprintStore(gallery, queue)  # type: ignore[arg-type]
    assert (store_name(face), store_modality(face), store_modality(finger)) == ("face", "face", "fingerprint")
    assert finger.subjects() == {"a", "b"}
    # a withdrawal of face consent deletes the face templates only: the finger still opens the gate
    assert face.delete_subject("a") == {"templates": 3, "slots": [], "modalities": ["face"]}
    assert queue.slots() == []
    assert gallery.slots == {4: "a", 7: "b"}
    assert finger.schedule_deletion("a", "withdrawn", 5) == 1
    assert queue.pending() == [PendingErase(4, "a", "withdrawn", 5)]
    assert gallery.slots == {7: "b"}
    driver = Driver([4, 7])
    erased: list[list[PendingErase]] = []
    sensor = sensor_on(driver, erase_queue=queue, on_erased=erased.append, is_known=lambda slot: slot in gallery.slots)
    hit = sensor.identify(0.1)
    assert driver.deleted == [4]  # erased before the next read; the sensor no longer matches "a"
    assert erased == [[PendingErase(4, "a", "withdrawn", 5)]]
    assert hit == Match(7, 90)
    assert queue.slots() == []
    sensor.close()
    assert driver.closed


def test_orphan_templates_are_erased_when_the_sensor_opens_and_owe_no_receipt() -> None:
    gallery = Gallery(slots={1: "a"})
    driver = Driver([1, 2, 9])  # 2 and 9: stored by an enrolment or kept by a crash, in no gallery record
    erased: list[list[PendingErase]] = []
    sensor = sensor_on(driver, on_erased=erased.append, is_known=lambda slot: slot in gallery.slots)
    sensor.identify(0.1)
    assert sorted(driver.deleted) == [2, 9]
    assert driver.occupied() == [1]
    assert [p.subject for batch in erased for p in batch] == [None, None]


def test_a_finger_that_matches_nothing_is_an_attempt_and_no_finger_is_not() -> None:
    """``identify`` used to return None both for "no finger" and "no match", so the gate's adapter
    re-implemented it on the driver (losing the reconnect and the LED cues). Tried: an empty library
    with a finger (NoMatch), no finger (NoFinger), and an image too poor to search (NoFinger)."""
    driver = Driver([])
    sensor = sensor_on(driver)
    assert sensor.identify(0.1) == NO_MATCH  # the gate denies it and counts it towards back-off
    driver.poor = True
    assert sensor.identify(0.1) == NO_FINGER
    driver.poor = False
    driver.finger = False
    assert sensor.identify(0.1) == NO_FINGER


def test_a_slot_queued_while_the_sensor_is_down_survives_a_restart_and_gets_its_receipt_when_erased(
    tmp_path: Path,
) -> None:
    """The queue used to live in memory and the receipt was signed at once: with the sensor unplugged
    the receipt claimed a deletion that had not happened, and a restart forgot the slot. Tried: a
    withdrawal while the sensor does not answer, a restart (a new queue on the same file), then a
    sensor that answers."""
    path = tmp_path / "sensor-erase.json"
    gallery = Gallery(slots={4: "a", 7: "b"})
    FingerprintStore(gallery, EraseQueue(path)).schedule_deletion("a", "withdrawn", 3)  # type: ignore[arg-type]
    assert b"a" in path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600
    driver = Driver([4, 7])
    driver.unplugged = True
    erased: list[list[PendingErase]] = []
    down = sensor_on(driver, erase_queue=EraseQueue(path), on_erased=erased.append)
    from edge.fingerprint.errors import SensorTimeoutError

    with pytest.raises(SensorTimeoutError):
        down.identify(0.1)
    assert erased == []  # nothing erased: no receipt
    restarted = EraseQueue(path)  # the agent restarts
    assert restarted.pending() == [PendingErase(4, "a", "withdrawn", 3)]
    driver.unplugged = False
    up = sensor_on(driver, erase_queue=restarted, on_erased=erased.append)
    assert up.identify(0.1) == Match(7, 90)
    assert erased == [[PendingErase(4, "a", "withdrawn", 3)]]
    assert EraseQueue(path).pending() == []


def test_an_unreadable_erase_queue_is_a_storage_error_that_names_the_fix(tmp_path: Path) -> None:
    from edge.errors import StorageError

    path = tmp_path / "sensor-erase.json"
    path.write_bytes(b"{not json")
    with pytest.raises(StorageError, match="erase queue") as err:
        EraseQueue(path)
    assert err.value.hint


def test_an_r503_profile_turns_the_led_cues_on_and_an_r307_profile_off(tmp_path: Path) -> None:
    """The profile's sensor family drives the R503 LED ring cues (they were never switched on)."""
    from edge.agent.assembly import open_fingerprint
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
                sensor.close()


def test_with_a_touch_line_the_uart_is_polled_only_when_a_finger_is_on(caplog: pytest.LogCaptureFixture) -> None:
    from edge.fingerprint.touch import SimTouchLine

    driver = Driver([7])
    touch = SimTouchLine()
    sensor = sensor_on(driver, touch=touch)
    sensor._orphans_checked = True
    for _ in range(5):
        assert sensor.identify(0.02) == NO_FINGER  # nobody at the sensor: no GenImg over the UART
    assert driver.uart_polls == 0
    touch.set(True)
    hit = sensor.identify(0.02)
    assert isinstance(hit, Match)
    assert hit.slot == 7
    assert driver.uart_polls == 1
    # a touch line that never fires: the fallback poll still finds the finger, and says why
    touch.set(False)
    sensor._next_poll = 0.0
    with caplog.at_level(logging.WARNING):
        again = sensor.identify(0.02)
    assert isinstance(again, Match)
    assert "check fingerprint.touch_gpio" in caplog.text
    assert driver.uart_polls == 2
    assert sensor.identify(0.02) == NO_FINGER  # the next fallback poll is FALLBACK_POLL_S away
    assert driver.uart_polls == 2
    sensor.close()
    assert driver.closed


def test_the_touch_line_follows_the_device_plan_and_reports_a_missing_chip() -> None:
    from edge.config.final import device_plan
    from edge.config.load import load_profile
    from edge.config.schema import AgentConfig
    from edge.errors import HardwareError
    from edge.fingerprint.touch import active_low_for
    from edge.fingerprint.workflows import touch_line

    config = AgentConfig.model_validate({"device": {"site": "s"}, "camera": {"enabled": False}})
    sim_plan = device_plan(config, load_profile(PROFILES / "sim.toml")).fingerprint
    assert sim_plan is not None
    assert touch_line(sim_plan) is None  # simulated GPIO: no line
    assert (active_low_for("r503"), active_low_for("r307"), active_low_for("as608")) == (True, False, False)
    pi_plan = device_plan(config, load_profile(PROFILES / "rpi5-r503-usbcam.toml")).fingerprint
    assert pi_plan is not None
    assert pi_plan.touch_gpio == 25
    assert (pi_plan.link.url, pi_plan.led) == ("/dev/ttyUSB0", True)  # the profile's UART, resolved once
    pytest.importorskip("gpiod", reason="the gpio extra is not installed")
    if not Path(pi_plan.gpio_chip).exists():
        with pytest.raises(HardwareError, match="does not exist"):
            touch_line(pi_plan)


def test_gpiod_touch_line_waits_for_the_level_with_the_familys_polarity(monkeypatch: pytest.MonkeyPatch) -> None:
    """GpiodTouchLine over the libgpiod stand-in: both edges, pull-up, active low for an R503; a
    wait returns the level after the edge (a finger lifted again within the wait reads False)."""
    from edge.fingerprint.touch import GpiodTouchLine
    from tests.gpiod_standin import Event, Request, install

    request = Request([25], [[Event(25, 1, 1)], [Event(25, 2, 2)]], {})
    line, made = install(monkeypatch, request)
    request.values = {25: line.Value.INACTIVE}
    touch = GpiodTouchLine("/dev/gpiochip0", 25, active_low=True)
    want = {"edge_detection": line.Edge.BOTH, "bias": line.Bias.PULL_UP, "active_low": True}
    assert made["config"] == {25: want}
    assert touch.wait(0.1) is False  # an edge came, but the line is back to idle
    request.values[25] = line.Value.ACTIVE
    assert touch.wait(0.1) is True
    touch.close()
    assert request.released

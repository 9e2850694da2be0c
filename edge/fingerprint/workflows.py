"""Enrolment and identification on top of :class:`FingerprintDriver` (implements ``FingerprintSensor``).

Enrolment: capture 1 into buffer 1, search the library (a hit means the finger is already enrolled:
nothing is stored); then captures 2..N, each after a lift, into buffer 2 and merged into the
template with RegModel (0x0A means a different finger: prompt and retake); store the template at
the first free slot of the index table. Poor images (Img2Tz 0x06/0x07) prompt a retake.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edge.fingerprint import api
from edge.fingerprint.driver import FingerprintDriver
from edge.fingerprint.errors import FingerprintError, SensorDisconnectedError, SensorTimeoutError

log = logging.getLogger(__name__)

MAX_RETAKES = 5


class CaptureTimeoutError(SensorTimeoutError):
    """No usable finger was presented within the enrolment timeout."""

    hint = "ask the person to place the finger flat on the glass and try again"


class SensorWorkflows:
    """The agent-facing sensor: identify, enrol, delete, empty, health; LED cues on an R503."""

    def __init__(self, driver: FingerprintDriver, *, led: bool = False, lift_timeout_s: float = 3.0) -> None:
        self.driver = driver
        self.led = led
        self.lift_timeout_s = lift_timeout_s

    @property
    def capacity(self) -> int:
        return self.driver.capacity

    def _led(self, name: str) -> None:
        if self.led:
            try:
                self.driver.led_state(name)
            except FingerprintError:
                log.info("LED cue %s failed", name)

    def _with_reconnect(self, fn: Callable[[], object]) -> object:
        try:
            return fn()
        except SensorDisconnectedError:
            log.warning("fingerprint sensor disconnected; reopening once")
            self.driver.recover(timeout_s=2.0)
            return fn()

    # -- identification --------------------------------------------------------------------------

    def identify(self, timeout_s: float) -> api.IdentifyResult | None:
        def run() -> api.IdentifyResult | None:
            self._led("ready")
            if not self.driver.wait_for_finger(timeout_s):
                return None
            self._led("scanning")
            if self.driver.image2tz(1) != 0:
                self._led("failure")
                return None
            hit = self.driver.search(1)
            self._led("success" if hit else "failure")
            return api.IdentifyResult(*hit) if hit else None

        result = self._with_reconnect(run)
        assert result is None or isinstance(result, api.IdentifyResult)
        return result

    # -- enrolment -------------------------------------------------------------------------------

    def _take(self, buffer: int, prompt: Callable[[str], None], text: str, deadline: float) -> int:
        """Capture one usable image into ``buffer``; return the number of retakes."""
        retakes = 0
        prompt(text)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.driver.wait_for_finger(remaining):
                raise CaptureTimeoutError(
                    f"no usable finger on {self.driver.url} before the enrolment timeout",
                    port=self.driver.url,
                    last_frames=tuple(self.driver.frames),
                )
            self._led("scanning")
            code = self.driver.image2tz(buffer)
            if code == 0:
                return retakes
            retakes += 1
            if retakes > MAX_RETAKES:
                raise CaptureTimeoutError(
                    f"{retakes} unusable images in a row on {self.driver.url}",
                    port=self.driver.url,
                    last_frames=tuple(self.driver.frames),
                )
            self._led("failure")
            prompt(api.PROMPT_POOR)
            self.driver.wait_for_lift(min(self.lift_timeout_s, max(0.0, deadline - time.monotonic())))
            prompt(text)

    def enrol(self, prompt: Callable[[str], None], captures: int, timeout_s: float) -> api.EnrolOutcome:
        if captures < 1:
            raise ValueError("captures must be at least 1")
        deadline = time.monotonic() + timeout_s
        drv = self.driver
        self._led("ready")
        retakes = self._take(1, prompt, api.PROMPT_PLACE, deadline)
        hit = drv.search(1)
        if hit is not None:
            self._led("failure")
            return api.EnrolOutcome(slot=None, duplicate_of=hit[0], captures=1, retries=retakes)
        taken = 1
        while taken < captures:
            prompt(api.PROMPT_LIFT)
            drv.wait_for_lift(min(self.lift_timeout_s, max(0.0, deadline - time.monotonic())))
            retakes += self._take(2, prompt, api.PROMPT_AGAIN, deadline)
            if drv.merge():
                taken += 1
                continue
            retakes += 1
            if retakes > MAX_RETAKES:
                raise CaptureTimeoutError(
                    f"the captures on {drv.url} never matched each other",
                    port=drv.url,
                    last_frames=tuple(drv.frames),
                )
            self._led("failure")
            prompt(api.PROMPT_DIFFERENT)
        slot = drv.first_free()
        drv.store(slot, 1)
        self._led("success")
        return api.EnrolOutcome(slot=slot, duplicate_of=None, captures=taken, retries=retakes)

    # -- library ---------------------------------------------------------------------------------

    def delete(self, slot: int) -> None:
        self._with_reconnect(lambda: self.driver.delete(slot))

    def empty(self) -> None:
        self._with_reconnect(self.driver.empty)

    def template_count(self) -> int:
        count = self._with_reconnect(self.driver.template_count)
        assert isinstance(count, int)
        return count

    def health(self) -> api.SensorHealth:
        try:
            params = self.driver.handshake()
            count = self.driver.template_count()
        except FingerprintError as exc:
            return api.SensorHealth(False, self.driver.url, detail=exc.one_line())
        return api.SensorHealth(True, self.driver.url, params.capacity, count, f"{params.baud} baud")


def open_sensor(
    url: str,
    *,
    baud: int = 57600,
    address: int = 0xFFFFFFFF,
    password: int = 0,
    timeout_s: float = 2.0,
    led: bool = False,
) -> SensorWorkflows:
    """Open the module at ``url`` and wrap it as the agent's ``FingerprintSensor``.

    ``led`` turns on the R503 ring cues. Close with ``sensor.driver.close()``.
    """
    return SensorWorkflows(
        FingerprintDriver.open(url, baud=baud, address=address, password=password, timeout_s=timeout_s), led=led
    )

"""Enrolment and identification on top of :class:`FingerprintDriver` (implements ``FingerprintSensor``).

Identification: drain the erase queue (slots whose subjects withdrew, erased before the next read
so a withdrawn finger can never match again), wait for a finger (on the touch line when the profile
wires one, else by polling GenImg), image, search. Reconnects once on a disconnect; LED cues on an
R503.

Enrolment: capture 1 into buffer 1, search the library (a hit means the finger is already enrolled:
nothing is stored); then captures 2..N, each after a lift, into buffer 2 and merged into the
template with RegModel (0x0A means a different finger: prompt and retake); store the template at
the first free slot of the index table. Poor images (Img2Tz 0x06/0x07) prompt a retake.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from edge.fingerprint import api
from edge.fingerprint.driver import FingerprintDriver
from edge.fingerprint.erasure import EraseQueue, PendingErase
from edge.fingerprint.errors import FingerprintError, SensorDisconnectedError, SensorTimeoutError
from edge.fingerprint.touch import TouchLine, open_touch_line

if TYPE_CHECKING:
    from edge.config.final import FingerprintPlan

log = logging.getLogger(__name__)

MAX_RETAKES = 5


class CaptureTimeoutError(SensorTimeoutError):
    """No usable finger was presented within the enrolment timeout."""

    hint = "ask the person to place the finger flat on the glass and try again"


def _nothing_erased(_done: list[PendingErase]) -> None:
    """No receipts to sign (tools that own the sensor and have no event path)."""


def _all_known(_slot: int) -> bool:
    return True


class SensorWorkflows:
    """The agent-facing sensor: identify, enrol, delete, empty, health, close; LED cues on an R503.

    ``erase_queue``: slots to erase before the next read; ``on_erased`` receives what was erased (the
    enforcer signs the receipts). ``is_known``: whether a gallery record refers to a slot; on the first
    ``identify`` every other occupied slot (an orphan a crash left behind) is queued for erasure.
    """

    #: with a touch line, the UART is still polled this often, so a dead line cannot silence the sensor
    FALLBACK_POLL_S = 5.0

    def __init__(
        self,
        driver: FingerprintDriver,
        *,
        led: bool = False,
        lift_timeout_s: float = 3.0,
        touch: TouchLine | None = None,
        erase_queue: EraseQueue | None = None,
        on_erased: Callable[[list[PendingErase]], None] = _nothing_erased,
        is_known: Callable[[int], bool] = _all_known,
    ) -> None:
        self.driver = driver
        self.led = led
        self.lift_timeout_s = lift_timeout_s
        self.touch = touch
        self.erase_queue = erase_queue if erase_queue is not None else EraseQueue()
        self.on_erased = on_erased
        self.is_known = is_known
        self._orphans_checked = False
        self._next_poll = time.monotonic() + self.FALLBACK_POLL_S
        self._warned_touch = False

    def close(self) -> None:
        """Release the port and the touch line (each failure is ignored: this runs after a fault)."""
        with contextlib.suppress(Exception):
            self.driver.close()
        if self.touch is not None:
            with contextlib.suppress(Exception):
                self.touch.close()

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

    def _erase_orphans(self) -> None:
        """Templates left on the sensor by a crash between an enrolment's store and its gallery record."""
        orphans = [slot for slot in self.driver.occupied() if not self.is_known(slot)]
        if orphans:
            self.erase_queue.add(PendingErase(slot) for slot in orphans)
            log.info("erasing %s sensor template(s) no gallery record refers to", len(orphans))

    def erase_pending(self) -> int:
        """Erase the queued slots now; the receipts follow through ``on_erased``."""
        return self.erase_queue.drain(self.delete, self.on_erased)

    def identify(self, timeout_s: float) -> api.Identified:
        if not self._orphans_checked:
            self._with_reconnect(self._erase_orphans)
            self._orphans_checked = True
        if self.erase_pending():
            timeout_s = min(timeout_s, 0.1)

        def run() -> api.Identified:
            self._led("ready")
            if not self._finger_on(timeout_s):
                return api.NO_FINGER
            self._led("scanning")
            if self.driver.image2tz(1) != 0:
                self._led("failure")
                return api.NO_FINGER  # too poor to search: not an attempt
            hit = self.driver.search(1)
            self._led("success" if hit else "failure")
            return api.Match(int(hit[0]), int(hit[1])) if hit else api.NO_MATCH

        result = self._with_reconnect(run)
        assert isinstance(result, (api.NoFinger, api.NoMatch, api.Match))
        return result

    def _finger_on(self, timeout_s: float) -> bool:
        """A finger imaged: after the touch line fires (then GenImg for up to a second), or by
        polling GenImg when there is no touch line or its fallback poll is due."""
        if self.touch is None:
            return bool(self.driver.wait_for_finger(timeout_s))
        if self.touch.wait(min(timeout_s, max(0.0, self._next_poll - time.monotonic()))):
            return bool(self.driver.wait_for_finger(1.0))
        if time.monotonic() < self._next_poll:
            return False
        self._next_poll = time.monotonic() + self.FALLBACK_POLL_S
        found = bool(self.driver.capture())
        if found and not self._warned_touch:
            self._warned_touch = True
            log.warning(
                "a finger was imaged without a signal on the touch line: check fingerprint.touch_gpio "
                "(wiring, polarity) or remove it from the profile; until then fingers are seen every %.0f s",
                self.FALLBACK_POLL_S,
            )
        return found

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

    def template_of(self, slot: int, size: int) -> bytes:
        """The module's own template stored in ``slot`` (LoadChar, UpChar): for site-wide sync only,
        sealed at once (edge.sync); never logged or stored in the clear."""

        def read() -> bytes:
            self.driver.load(slot, buffer=1)
            return self.driver.read_template(1, expected=size)

        data = self._with_reconnect(read)
        assert isinstance(data, bytes)
        return data

    def install(self, template: bytes) -> int:
        """Write a template another gate shared into the first free slot (DownChar, Store); the slot."""

        def write() -> int:
            self.driver.write_template(template, buffer=1)
            slot = self.driver.first_free()
            self.driver.store(slot, 1)
            return slot

        slot = self._with_reconnect(write)
        assert isinstance(slot, int)
        return slot

    def ring(self, colour: str | None) -> None:
        """Show an access panel's LED colour on the ring (reader mode); a sensor without one ignores it."""
        if self.led:
            try:
                self.driver.ring(colour)
            except FingerprintError:
                log.info("LED ring colour %s failed", colour)

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
    touch: Callable[[], TouchLine | None] | None = None,
    erase_queue: EraseQueue | None = None,
    on_erased: Callable[[list[PendingErase]], None] = _nothing_erased,
    is_known: Callable[[int], bool] = _all_known,
) -> SensorWorkflows:
    """Open the module at ``url`` and wrap it as the agent's ``FingerprintSensor``.

    ``led`` turns on the R503 ring cues; ``touch`` opens the touch line (closed with the port if it
    fails to open). Close with ``sensor.close()``.
    """
    driver = FingerprintDriver.open(url, baud=baud, address=address, password=password, timeout_s=timeout_s)
    try:
        line = touch() if touch is not None else None
    except BaseException:
        driver.close()
        raise
    return SensorWorkflows(driver, led=led, touch=line, erase_queue=erase_queue, on_erased=on_erased, is_known=is_known)


def open_planned(
    plan: FingerprintPlan,
    *,
    password: int = 0,
    erase_queue: EraseQueue | None = None,
    on_erased: Callable[[list[PendingErase]], None] = _nothing_erased,
    is_known: Callable[[int], bool] = _all_known,
    touch: bool = False,
) -> SensorWorkflows:
    """The sensor the device plan resolved (``edge.config.final.FingerprintPlan``): its serial link,
    address and family (the R503's LED cues), and with ``touch`` its touch line. The agent passes
    its erase queue, the receipts callback and the gallery's slot check; tools pass none."""
    return open_sensor(
        plan.link.url,
        baud=plan.link.baud,
        address=plan.address,
        password=password,
        led=plan.led,
        touch=(lambda: touch_line(plan)) if touch else None,
        erase_queue=erase_queue,
        on_erased=on_erased,
        is_known=is_known,
    )


def touch_line(plan: FingerprintPlan) -> TouchLine | None:
    """The sensor's touch output when the profile wires one (real GPIO only)."""
    return open_touch_line(plan.gpio_chip, plan.touch_gpio, plan.family, simulated=plan.gpio_simulated)

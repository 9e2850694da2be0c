"""The gate loop's threads: device threads feed one decision thread through a queue.

Concurrency (see docs/operations.md): each device has its own named thread (``camera``,
``fingerprint``, ``credential``) doing blocking I/O and, for the camera, face detection, embedding
and the one gallery search, so a slow or hung device can only stall itself. Their results go
through one queue, as a small union of dataclasses (``Item``), to the ``gate`` thread, which runs
``GateCore`` (``edge.agent.gate``): the only place that reads consent, decides, drives the door and
emits events. The gate thread also services the door, raises health events and feeds the systemd
watchdog, so the watchdog stops only if decisions stop. ``GateRunner`` adds device reopening with
backoff, and shutdown.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from edge.agent.face_step import FaceStep
from edge.agent.gate import Clock, GateCore
from edge.agent.items import (
    IDLE,
    AttackSeen,
    CredentialSeen,
    DeviceDown,
    DeviceUp,
    FaceSeen,
    FingerSeen,
    Idle,
    Item,
    TamperSeen,
)
from edge.agent.ports import (
    CameraPort,
    CredentialReaderPort,
    FaceEscalation,
    FacePipelinePort,
    FingerprintPort,
)
from edge.door.tamper import TamperSwitch
from edge.errors import HardwareError
from edge.fingerprint.api import NoFinger
from edge.vision.liveness import LivenessPolicy

log = logging.getLogger(__name__)


class Device(Protocol):
    """What a device thread needs of its device besides the step: a way to let it go."""

    def close(self) -> None: ...


D = TypeVar("D", bound=Device)


class DeviceWorker(Generic[D]):
    """One named thread owning one device: open, step, and reopen with backoff after a failure.

    ``step(device)`` does one blocking read (bounded by its own timeout) and returns an item for the
    gate queue or None. An exception, or ``stall_s`` without a successful step, marks the device
    failed: it is closed, reported, and reopened after 0.5 s, 1 s, 2 s ... up to ``max_backoff_s``.
    ``mono`` is the monotonic clock the stall and the heartbeat are measured on (the runner's).
    """

    def __init__(
        self,
        name: str,
        open_device: Callable[[], D],
        step: Callable[[D], Item | None],
        out: queue.Queue[Item],
        *,
        stall_s: float | None = None,
        max_backoff_s: float = 30.0,
        first_backoff_s: float = 0.5,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.open_device = open_device
        self.step = step
        self.out = out
        self.stall_s = stall_s
        self.max_backoff_s = max_backoff_s
        self.first_backoff_s = first_backoff_s
        self.mono = mono
        self.stop_event = threading.Event()
        self.heartbeat = mono()
        self.hung = False  # set by the gate thread when the heartbeat is older than the runner's hang_s
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def _put(self, item: Item, *, droppable: bool) -> None:
        if droppable:
            with contextlib.suppress(queue.Full):  # the gate is busy; a newer frame will follow
                self.out.put_nowait(item)
            return
        while not self.stop_event.is_set():
            try:
                self.out.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _close(self, device: D) -> None:
        try:
            device.close()
        except Exception as exc:
            log.debug("closing a failed %s raised %s", self.name, exc.__class__.__name__)

    def _run(self) -> None:
        device: D | None = None
        backoff = self.first_backoff_s
        healthy = False
        last_good = self.mono()
        while not self.stop_event.is_set():
            self.heartbeat = self.mono()
            try:
                if device is None:
                    device = self.open_device()
                    last_good = self.mono()
                item = self.step(device)
                if item is not None or self.stall_s is None:
                    last_good = self.mono()
                elif self.mono() - last_good > self.stall_s:
                    raise HardwareError(f"{self.name}: nothing for {self.stall_s:.0f} s")
                if not healthy:
                    healthy = True
                    backoff = self.first_backoff_s
                    self._put(DeviceUp(self.name), droppable=False)
                if item is not None and not isinstance(item, Idle):
                    self._put(item, droppable=isinstance(item, FaceSeen))
            except Exception as exc:  # any device failure: report, close, retry later
                log.debug("%s step failed: %s", self.name, exc.__class__.__name__)
                if device is not None:
                    self._close(device)
                    device = None
                healthy = False
                self._put(DeviceDown(self.name, exc), droppable=False)
                self.heartbeat = self.mono() + backoff  # waiting on purpose is not hanging
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
        if device is not None:
            self._close(device)


#: The runner's device threads, one per kind of device.
Worker = DeviceWorker[CameraPort] | DeviceWorker[FingerprintPort] | DeviceWorker[CredentialReaderPort]


class Watchdog(Protocol):
    @property
    def watchdog_interval_s(self) -> float | None: ...

    def watchdog(self) -> bool: ...


class GateRunner:
    """Starts the device threads and the gate thread; ``stop()`` ends and joins them all."""

    def __init__(
        self,
        core: GateCore,
        *,
        camera: Callable[[], CameraPort] | None = None,
        face: FacePipelinePort | None = None,
        escalation: FaceEscalation | None = None,
        liveness: LivenessPolicy | None = None,
        prompt: Callable[[str], None] = lambda text: log.info("prompt: %s", text),
        tamper: TamperSwitch | None = None,
        erase_on_tamper: Callable[[], None] | None = None,
        sensor_chore: Callable[[FingerprintPort], None] | None = None,
        fingerprint: Callable[[], FingerprintPort] | None = None,
        credentials: Callable[[], CredentialReaderPort] | None = None,
        notifier: Watchdog | None = None,
        camera_stall_s: float = 5.0,
        read_timeout_s: float = 0.5,
        tick_s: float = 0.05,
        max_backoff_s: float = 30.0,
        hang_s: float = 30.0,
        max_consecutive_errors: int = 50,
        queue_size: int = 64,
        clock: Clock | None = None,
    ) -> None:
        self.core = core
        #: hangs, stalls, the watchdog and the liveness tracker run on this clock (default: the core's)
        self.clock = clock or core.clock
        self.hang_s = hang_s  # a device call blocked this long (a driver without a deadline) is a failure
        self.queue: queue.Queue[Item] = queue.Queue(maxsize=queue_size)
        self.notifier = notifier
        self.tick_s = tick_s
        self.stop_event = threading.Event()
        self.workers: list[Worker] = []
        self.errors: collections.deque[BaseException] = collections.deque(maxlen=20)
        self.consecutive_errors = 0
        # After this many failed iterations in a row the watchdog is no longer fed: systemd restarts
        # the agent, which reopens every store and device (a wedged store rarely heals in place).
        self.max_consecutive_errors = max_consecutive_errors
        if camera is not None:
            if face is None:
                raise ValueError("a camera needs a face pipeline")
            step = FaceStep(
                face, core.gallery, escalation=escalation, liveness=liveness, prompt=prompt, mono=self.clock.mono
            )
            self.workers.append(
                DeviceWorker(
                    "camera",
                    camera,
                    step,
                    self.queue,
                    stall_s=camera_stall_s,
                    max_backoff_s=max_backoff_s,
                    mono=self.clock.mono,
                )
            )
        #: set by the tamper thread; the fingerprint thread (which owns the sensor) empties its library
        self.sensor_erase = threading.Event()
        #: the panel's latest LED colour for the sensor's ring (reader modes), applied by the fingerprint thread
        self._ring: list[str | None] = []
        self._ring_lock = threading.Lock()
        if fingerprint is not None:

            def finger_step(sensor: FingerprintPort) -> Item | None:
                with self._ring_lock:
                    colours, self._ring[:] = list(self._ring), []
                if colours:
                    sensor.ring(colours[-1])  # only the latest colour matters
                if sensor_chore is not None:
                    try:
                        sensor_chore(sensor)  # site sync: templates other gates shared, into the module
                    except HardwareError:
                        raise
                    except Exception as exc:
                        log.error("site sync on the sensor thread failed: %s", exc.__class__.__name__)
                if self.sensor_erase.is_set():
                    sensor.empty()  # the tamper response: every template in the module is gone
                    self.sensor_erase.clear()
                    return TamperSeen(True, ("sensor_library",))
                found = sensor.identify(read_timeout_s)
                return IDLE if isinstance(found, NoFinger) else FingerSeen(found)

            self.workers.append(
                DeviceWorker(
                    "fingerprint",
                    fingerprint,
                    finger_step,
                    self.queue,
                    max_backoff_s=max_backoff_s,
                    mono=self.clock.mono,
                )
            )
        if credentials is not None:

            def credential_step(reader: CredentialReaderPort) -> Item | None:
                credential = reader.read(read_timeout_s)
                return CredentialSeen(credential) if credential is not None else IDLE

            self.workers.append(
                DeviceWorker(
                    "credential",
                    credentials,
                    credential_step,
                    self.queue,
                    max_backoff_s=max_backoff_s,
                    mono=self.clock.mono,
                )
            )
        self.gate_thread = threading.Thread(target=self._gate, name="gate", daemon=True)
        self.tamper_thread: threading.Thread | None = None
        if tamper is not None:
            sensor_present = fingerprint is not None

            def watch(switch: TamperSwitch = tamper) -> None:
                while not self.stop_event.is_set():
                    event = switch.wait(0.2)
                    if event is None:
                        continue
                    erased: tuple[str, ...] = ()
                    if event.opened and erase_on_tamper is not None:
                        # here, not on the gate thread: within a second of the case opening
                        try:
                            erase_on_tamper()
                            erased = ("gallery_key",)
                        except Exception as exc:
                            log.error("tamper: crypto-erase failed (%s)", exc.__class__.__name__)
                        if sensor_present:
                            self.sensor_erase.set()
                    self._put(TamperSeen(event.opened, erased))

            self.tamper_thread = threading.Thread(target=watch, name="tamper", daemon=True)

    def show_ring(self, colour: str | None) -> None:
        """The panel's LED changed (called on the OSDP thread): the fingerprint thread shows it next."""
        with self._ring_lock:
            self._ring.append(colour)

    def _put(self, item: Item) -> None:
        with contextlib.suppress(queue.Full):
            self.queue.put(item, timeout=1.0)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        self.gate_thread.start()
        if self.tamper_thread is not None:
            self.tamper_thread.start()

    def _dispatch(self, item: Item) -> None:
        match item:
            case FaceSeen(hit):
                self.core.on_face(hit)
            case AttackSeen():
                self.core.on_attack()
            case TamperSeen(opened, erased):
                self.core.on_tamper(opened, erased)
            case FingerSeen(result):
                self.core.on_finger(result)
            case CredentialSeen(credential):
                self.core.on_credential(credential)
            case DeviceDown(name, error):
                self.core.device_failed(name, error)
            case DeviceUp(name):
                self.core.device_ok(name)
            case Idle():
                pass

    def _check_hangs(self) -> None:
        now = self.clock.mono()
        for worker in self.workers:
            stale = now - worker.heartbeat > self.hang_s
            if stale and not worker.hung:
                worker.hung = True
                self.core.device_failed(
                    worker.name, HardwareError(f"{worker.name} has not answered for {self.hang_s:.0f} s")
                )
            elif not stale and worker.hung:
                worker.hung = False
                self.core.device_ok(worker.name)

    def _gate(self) -> None:
        next_beat = 0.0
        interval = self.notifier.watchdog_interval_s if self.notifier is not None else None
        while not self.stop_event.is_set():
            try:
                item = self.queue.get(timeout=self.tick_s)
            except queue.Empty:
                item = None
            try:
                started = self.clock.mono()
                if item is not None:
                    self._dispatch(item)
                self._check_hangs()
                self.core.tick()
                if self.core.metrics is not None and item is not None:
                    self.core.metrics.loop_seconds.observe(self.clock.mono() - started)
                if item is not None:  # an idle tick proves little; a handled input proves the gate works
                    self.consecutive_errors = 0
            except Exception as exc:  # a store or port failed mid-decision: log, keep the gate up
                log.error("gate iteration failed: %s", exc.__class__.__name__)
                self.errors.append(exc)
                self.consecutive_errors += 1
                if self.consecutive_errors == self.max_consecutive_errors:
                    log.critical(
                        "%d gate iterations failed in a row; no longer feeding the watchdog", self.consecutive_errors
                    )
            wedged = self.consecutive_errors >= self.max_consecutive_errors
            if interval is not None and self.notifier is not None and not wedged and self.clock.mono() >= next_beat:
                self.notifier.watchdog()
                next_beat = self.clock.mono() + interval

    def stop(self, timeout: float = 5.0) -> None:
        for worker in self.workers:
            worker.stop()
        self.stop_event.set()
        for worker in self.workers:
            worker.join(timeout)
        self.gate_thread.join(timeout)
        if self.tamper_thread is not None:
            self.tamper_thread.join(timeout)
        self.core.door.close()

    def __enter__(self) -> GateRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""The gate loop: device threads feed one decision thread through a queue.

Concurrency (see docs/operations.md): each device has its own named thread (``camera``, ``finger``,
``credential``) doing blocking I/O and, for the camera, face detection and embedding, so a slow or
hung device can only stall itself. Their results go through one queue to the ``gate`` thread, the
only place that reads the gallery and consent, decides, drives the door and emits events. The gate
thread also services the door, raises health events and feeds the systemd watchdog, so the watchdog
stops only if decisions stop.

``GateCore`` is the decision thread's logic with no threads of its own: tests drive it directly
with a fake clock. ``GateRunner`` adds the threads, device reopening with backoff, and shutdown.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edge.agent.decide import (
    BIOMETRIC,
    CONSENT_STALE,
    Decision,
    Evidence,
    PolicyPort,
)
from edge.agent.ports import (
    CameraPort,
    ConsentPort,
    CredentialLike,
    CredentialReaderPort,
    FaceEscalation,
    FaceObservation,
    FacePipelinePort,
    FingerprintPort,
    GalleryPort,
    SearchHit,
)
from edge.credentials.authorise import CredentialAuthoriser
from edge.door.base import DoorOutput
from edge.errors import HardwareError
from edge.events.sink import EventSink
from edge.fingerprint.api import Match, NoFinger, NoMatch
from edge.ops.metrics import Metrics

log = logging.getLogger(__name__)


class Clock(Protocol):
    def wall(self) -> float:
        """Seconds since the epoch (consent validity, event times)."""

    def mono(self) -> float:
        """Monotonic seconds (door deadlines, backoff, debouncing): immune to clock steps."""


class SystemClock:
    def wall(self) -> float:
        return time.time()

    def mono(self) -> float:
        return time.monotonic()


@dataclass
class GateSettings:
    gate: str = "gate-1"
    purpose: str = "access:main-gate"
    door_pulse_s: float = 3.0
    deny_interval_s: float = 2.0  # one denial event per modality and reason per interval (a face stays in view)
    regrant_s: float = 5.0  # the same subject granted again by the same modality is not a new passage
    health_interval_s: float = 60.0
    credential_kinds: frozenset[str] = frozenset({"card", "pin", "qr"})  # [credentials] enables these


@dataclass
class GateCore:
    """Decisions on the gate thread. Every public method is called from that thread only."""

    gallery: GalleryPort
    consent: ConsentPort
    policy: PolicyPort
    door: DoorOutput
    sink: EventSink
    settings: GateSettings = field(default_factory=GateSettings)
    clock: Clock = field(default_factory=SystemClock)
    metrics: Metrics | None = None
    protect: Callable[[str], None] = lambda _subject: None  # the log redactor learns every subject id
    devices: dict[str, str] = field(default_factory=dict)  # name -> "up" | "down"
    decisions: int = 0
    _last_denial: dict[tuple[str, str], float] = field(default_factory=dict)
    _last_grant: dict[tuple[str, str], float] = field(default_factory=dict)
    _alarms: set[str] = field(default_factory=set)
    _stale: bool = False
    _next_health: float = 0.0
    _next_stale_check: float = 0.0
    _next_prune: float = 0.0
    _started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self._started = self.clock.mono()
        self._next_health = self._started + self.settings.health_interval_s

    # ----------------------------------------------------------------- events

    def _emit(self, kind: str, body: Mapping[str, object]) -> None:
        """Hand an event to the sink; a failing sink is counted and logged, never stops the gate."""
        try:
            self.sink.emit(kind, {"gate": self.settings.gate, **body})
        except Exception as exc:  # the door decision is already made; losing the gate would be worse
            log.error("event sink refused a %s event: %s", kind, exc.__class__.__name__)
            if self.metrics is not None:
                self.metrics.sink_errors.inc()

    def _alarm(self, name: str, active: bool, **details: object) -> None:
        if active == (name in self._alarms):
            return
        if active:
            self._alarms.add(name)
            log.warning("alarm raised: %s", name)
            if self.metrics is not None:
                self.metrics.alarms.labels(alarm=name.split(":", maxsplit=1)[0]).inc()
        else:
            self._alarms.discard(name)
            log.info("alarm cleared: %s", name)
        alarm, _, device = name.partition(":")
        body: dict[str, object] = {"alarm": alarm, "active": active, **details}
        if device:
            body["device"] = device
        self._emit("alarm", body)

    @property
    def active_alarms(self) -> set[str]:
        return set(self._alarms)

    # ----------------------------------------------------------------- devices

    def device_failed(self, device: str, error: BaseException) -> None:
        if self.devices.get(device) == "down":
            return
        self.devices[device] = "down"
        log.warning("%s failed (%s); other modalities keep working", device, error.__class__.__name__)
        if self.metrics is not None:
            self.metrics.device_up.labels(device=device).set(0)
        self._alarm(f"device_failed:{device}", True, error=error.__class__.__name__)

    def device_ok(self, device: str) -> None:
        previous = self.devices.get(device)
        self.devices[device] = "up"
        if self.metrics is not None:
            self.metrics.device_up.labels(device=device).set(1)
        if previous == "down":
            log.info("%s recovered", device)
            self._alarm(f"device_failed:{device}", False)

    # ----------------------------------------------------------------- inputs

    def _consent_stale(self) -> bool:
        """Whether biometric decisions must stop (fail closed). The enforcer owns the list's state and
        raises its one alarm (``consent_stale``); the gate only denies and blinks the status LED."""
        self._stale = self.consent.is_stale(self.clock.wall())
        return self._stale

    def _biometric(self, modality: str, subject: str | None, score: float | None, margin: float | None) -> None:
        if subject is not None:
            self.protect(subject)
        if self._consent_stale():
            self._conclude(Decision(False, modality, None, CONSENT_STALE))
            return
        consented = subject is not None and self.consent.allows(
            subject, modality, self.settings.purpose, self.clock.wall()
        )
        self._decide(Evidence(modality, subject, score, margin, consented=consented))

    def on_face(self, hit: SearchHit) -> None:
        """A good face the camera thread searched (``face_seen``): its best candidate and margin."""
        self._biometric("face", hit.subject, float(hit.score), float(hit.margin))

    def on_finger(self, match: Match | NoMatch) -> None:
        """A finger was searched: a match names its slot's subject; ``NoMatch`` is a failed attempt."""
        if isinstance(match, Match):
            self._biometric("fingerprint", self.gallery.subject_for_slot(match.slot), float(match.score), None)
        else:
            self._biometric("fingerprint", None, 0.0, None)

    def on_credential(self, credential: CredentialLike) -> None:
        now = self.clock.wall()
        authoriser = CredentialAuthoriser(
            self.consent, purpose=self.settings.purpose, kinds=self.settings.credential_kinds
        )
        verdict = authoriser.authorise(credential, now)
        if verdict.subject is not None:
            self.protect(verdict.subject)
        if verdict.reason in ("kind-disabled", "purpose-not-allowed"):
            # a kind this gate does not accept, or a subject whose entry does not cover its purpose
            self._conclude(Decision(False, credential.kind, None, verdict.reason.replace("-", "_")))
            return
        subject = verdict.subject
        alternative = subject is not None and not any(
            self.consent.allows(subject, m, self.settings.purpose, now) for m in BIOMETRIC
        )
        self._decide(Evidence(credential.kind, subject, alternative_path=alternative))

    def _recently_granted(self, modality: str, subject: str) -> bool:
        at = self._last_grant.get((modality, subject))
        return at is not None and self.clock.mono() - at < self.settings.regrant_s

    def _decide(self, evidence: Evidence) -> None:
        decision = self.policy.decide(evidence, self.clock.mono())
        if decision is not None:
            self._conclude(decision)

    def _conclude(self, decision: Decision) -> None:
        now = self.clock.mono()
        if not decision.granted:
            key = (decision.modality, decision.reason)
            last = self._last_denial.get(key)
            if decision.modality in BIOMETRIC and last is not None and now - last < self.settings.deny_interval_s:
                return  # the same face still in view: one denial per interval
            self._last_denial[key] = now
        else:
            assert decision.subject is not None
            if all(
                m in BIOMETRIC and self._recently_granted(m, decision.subject) for m in decision.modality.split("+")
            ):
                # a face or finger still in view after a grant: the same passage. Judged only after
                # the policy accepted the match, so a stranger whose best candidate was just let in
                # is denied. Every card, PIN or QR presentation is a new passage.
                return
            for modality in decision.modality.split("+"):
                self._last_grant[(modality, decision.subject)] = now
            try:
                self.door.pulse(self.settings.door_pulse_s, now)
            except Exception as exc:  # the decision stands and is reported; the alarm says the lock did not move
                self.device_failed("door", exc)
            else:
                if self.devices.get("door") == "down":
                    self.device_ok("door")
                if self.metrics is not None:
                    self.metrics.door_pulses.inc()
        self.decisions += 1
        if self.metrics is not None:
            self.metrics.decisions.labels(
                modality=decision.modality, outcome="granted" if decision.granted else "denied"
            ).inc()
        log.info(
            "access %s by %s (%s)", "granted" if decision.granted else "denied", decision.modality, decision.reason
        )
        self._emit(
            "access",
            {
                "granted": decision.granted,
                "modality": decision.modality,
                "subject": decision.subject,
                "reason": decision.reason,
            },
        )

    # ----------------------------------------------------------------- periodic

    def tick(self) -> None:
        now = self.clock.mono()
        try:
            self.door.indicate(bool(self._alarms) or self._stale)
            door_events = self.door.service(now)
        except Exception as exc:
            self.device_failed("door", exc)
            door_events = []
        for event in door_events:
            if event.kind in ("forced_open", "held_open"):
                self._alarm(f"door_{event.kind}", True)
            elif event.kind == "door_closed":
                self._alarm("door_forced_open", False)
                self._alarm("door_held_open", False)
            else:
                log.info("door: %s", event.kind)
        if now >= self._next_stale_check:  # for the LED; biometric inputs check it themselves
            self._next_stale_check = now + 1.0
            self._consent_stale()
        if now >= self._next_prune:  # years of passages must not grow these maps
            self._next_prune = now + 60.0
            self._last_grant = {k: t for k, t in self._last_grant.items() if now - t < self.settings.regrant_s}
            self._last_denial = {k: t for k, t in self._last_denial.items() if now - t < self.settings.deny_interval_s}
        if now >= self._next_health:
            self._next_health = now + self.settings.health_interval_s
            self.emit_health()

    def emit_health(self) -> None:
        self._emit(
            "health",
            {
                "uptime_s": int(self.clock.mono() - self._started),
                "devices": dict(sorted(self.devices.items())),
                "alarms": sorted(self._alarms),
                "decisions": self.decisions,
            },
        )


# =========================================================================== threads


@dataclass(frozen=True)
class FaceSeen:
    """A good face, already searched on the camera thread: the gate never searches again."""

    hit: SearchHit


@dataclass(frozen=True)
class FingerSeen:
    result: Match | NoMatch


@dataclass(frozen=True)
class CredentialSeen:
    credential: CredentialLike


@dataclass(frozen=True)
class DeviceDown:
    name: str
    error: BaseException


@dataclass(frozen=True)
class DeviceUp:
    name: str


@dataclass(frozen=True)
class Idle:
    """A step that saw nothing (no face, a poor one, no finger, no card): alive, nothing to decide."""


IDLE = Idle()
Item = FaceSeen | FingerSeen | CredentialSeen | DeviceDown | DeviceUp | Idle


def face_seen(observation: FaceObservation | None, gallery: GalleryPort) -> FaceSeen | Idle:
    """The camera thread's half of a face decision: no face or a poor one is not an attempt (no
    search); a good one is searched once, here, and the hit goes to the gate."""
    if observation is None or not observation.quality.ok:
        return IDLE
    return FaceSeen(gallery.search(observation.embedding, k=2))


class DeviceWorker:
    """One named thread owning one device: open, step, and reopen with backoff after a failure.

    ``step(device)`` does one blocking read (bounded by its own timeout) and returns an item for the
    gate queue or None. An exception, or ``stall_s`` without a successful step, marks the device
    failed: it is closed, reported, and reopened after 0.5 s, 1 s, 2 s ... up to ``max_backoff_s``.
    """

    def __init__(
        self,
        name: str,
        open_device: Callable[[], Any],
        step: Callable[[Any], Item | None],
        out: queue.Queue[Item],
        *,
        stall_s: float | None = None,
        max_backoff_s: float = 30.0,
        first_backoff_s: float = 0.5,
    ) -> None:
        self.name = name
        self.open_device = open_device
        self.step = step
        self.out = out
        self.stall_s = stall_s
        self.max_backoff_s = max_backoff_s
        self.first_backoff_s = first_backoff_s
        self.stop_event = threading.Event()
        self.heartbeat = time.monotonic()
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

    @staticmethod
    def _close(device: Any) -> None:
        try:
            device.close()
        except Exception as exc:
            log.debug("closing a failed device raised %s", exc.__class__.__name__)

    def _run(self) -> None:
        device: Any = None
        backoff = self.first_backoff_s
        healthy = False
        last_good = time.monotonic()
        while not self.stop_event.is_set():
            self.heartbeat = time.monotonic()
            try:
                if device is None:
                    device = self.open_device()
                    last_good = time.monotonic()
                item = self.step(device)
                if item is not None or self.stall_s is None:
                    last_good = time.monotonic()
                elif time.monotonic() - last_good > self.stall_s:
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
                self.heartbeat = time.monotonic() + backoff  # waiting on purpose is not hanging
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
        if device is not None:
            self._close(device)


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
    ) -> None:
        self.core = core
        self.hang_s = hang_s  # a device call blocked this long (a driver without a deadline) is a failure
        self.queue: queue.Queue[Item] = queue.Queue(maxsize=queue_size)
        self.notifier = notifier
        self.tick_s = tick_s
        self.stop_event = threading.Event()
        self.workers: list[DeviceWorker] = []
        self.errors: collections.deque[BaseException] = collections.deque(maxlen=20)
        self.consecutive_errors = 0
        # After this many failed iterations in a row the watchdog is no longer fed: systemd restarts
        # the agent, which reopens every store and device (a wedged store rarely heals in place).
        self.max_consecutive_errors = max_consecutive_errors
        if camera is not None:
            if face is None:
                raise ValueError("a camera needs a face pipeline")
            pipeline = face
            gallery = core.gallery

            def face_step(cam: CameraPort) -> Item | None:
                frame = cam.read()
                if frame is None:
                    time.sleep(0.01)
                    return None
                searched: list[tuple[Any, SearchHit]] = []

                def uncertain(embedding: Any) -> bool:
                    # on the camera thread: the gallery serialises its calls with one lock
                    assert escalation is not None
                    hit = gallery.search(embedding, k=2)
                    searched.append((embedding, hit))
                    return hit.subject is not None and escalation.uncertain(float(hit.score))

                if escalation is not None:  # fast embedding; the accurate one only for a close call
                    observation = pipeline.probe(frame, rule="gate", uncertain=uncertain)
                else:
                    observation = pipeline.process(frame, rule="gate")
                del frame  # frames live only in this thread, only as long as this step
                if observation is not None and observation.quality.ok and searched:
                    fast, hit = searched[-1]
                    if np.array_equal(fast, observation.embedding):
                        return FaceSeen(hit)  # the fast probe was decisive: its search is the gate's
                return face_seen(observation, gallery)

            self.workers.append(
                DeviceWorker(
                    "camera", camera, face_step, self.queue, stall_s=camera_stall_s, max_backoff_s=max_backoff_s
                )
            )
        if fingerprint is not None:

            def finger_step(sensor: FingerprintPort) -> Item | None:
                found = sensor.identify(read_timeout_s)
                return IDLE if isinstance(found, NoFinger) else FingerSeen(found)

            self.workers.append(
                DeviceWorker("fingerprint", fingerprint, finger_step, self.queue, max_backoff_s=max_backoff_s)
            )
        if credentials is not None:

            def credential_step(reader: CredentialReaderPort) -> Item | None:
                credential = reader.read(read_timeout_s)
                return CredentialSeen(credential) if credential is not None else IDLE

            self.workers.append(
                DeviceWorker("credential", credentials, credential_step, self.queue, max_backoff_s=max_backoff_s)
            )
        self.gate_thread = threading.Thread(target=self._gate, name="gate", daemon=True)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        self.gate_thread.start()

    def _dispatch(self, item: Item) -> None:
        match item:
            case FaceSeen(hit):
                self.core.on_face(hit)
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
        now = time.monotonic()
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
                started = time.monotonic()
                if item is not None:
                    self._dispatch(item)
                self._check_hangs()
                self.core.tick()
                if self.core.metrics is not None and item is not None:
                    self.core.metrics.loop_seconds.observe(time.monotonic() - started)
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
            if interval is not None and self.notifier is not None and not wedged and time.monotonic() >= next_beat:
                self.notifier.watchdog()
                next_beat = time.monotonic() + interval

    def stop(self, timeout: float = 5.0) -> None:
        for worker in self.workers:
            worker.stop()
        self.stop_event.set()
        for worker in self.workers:
            worker.join(timeout)
        self.gate_thread.join(timeout)
        self.core.door.close()

    def __enter__(self) -> GateRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

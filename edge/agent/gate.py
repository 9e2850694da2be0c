"""The gate's decisions (``GateCore``): one thread reads consent, decides, drives the door and emits
events. It has no threads of its own: tests drive it directly with a fake clock. The device threads
and the queue that feeds it are in ``edge.agent.runner``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Protocol

from edge.access.rules import AccessRules, NoRules
from edge.agent.decide import CONSENT_STALE, Decision, Evidence, PolicyPort
from edge.agent.ports import ConsentPort, CredentialLike, GalleryPort, HostPort, PanelReport, SearchHit
from edge.credentials.authorise import CredentialAuthoriser
from edge.door.base import DoorOutput
from edge.events.kinds import Access, Alarm, AnyEvent, Health, Severity, Tamper, Verdict
from edge.events.sink import EventSink
from edge.fingerprint.api import Match, NoMatch
from edge.modality import ALL, BIOMETRIC, CREDENTIALS, Modality
from edge.ops.host import QuietHost
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
    credential_kinds: frozenset[Modality] = frozenset(CREDENTIALS)  # [credentials] enables these
    attack_alarm: int = 3  # [face] attack_alarm: this many attacks within attack_window_s raise one alarm
    attack_window_s: float = 300.0


#: The device threads (``edge.agent.runner``) and the modality each one serves.
DEVICE_MODALITY = {"camera": Modality.face, "fingerprint": Modality.fingerprint, "credential": Modality.card}
#: Alarms a guard must see at once; every other alarm is a warning.
CRITICAL_ALARMS = frozenset({"door_forced_open", "tamper"})
#: A grant in a reader mode for a person whose list entry carries no panel number (or this gate lacks
#: the site credential key to open it): the panel cannot be told, so the terminal denies.
NO_PANEL_NUMBER = "no_panel_number"


#: The access reason and alarm code of a refused presentation attack (a photo or screen at the camera).
PRESENTATION_ATTACK = "presentation_attack"


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
    host: HostPort = field(default_factory=QuietHost)  # what a health event reports about the terminal
    metrics: Metrics | None = None
    protect: Callable[[str], None] = lambda _subject: None  # the log redactor learns every subject id
    #: appends one record to the signed audit log (kind, details); the agent passes AuditLog.append
    audit: Callable[[str, dict[str, object]], object] = lambda _kind, _details: None
    devices: dict[str, str] = field(default_factory=dict)  # name -> "up" | "down"
    decisions: int = 0
    _last_denial: dict[tuple[str, str], float] = field(default_factory=dict)
    _last_grant: dict[tuple[str, str], float] = field(default_factory=dict)
    _alarms: set[str] = field(default_factory=set)
    _attacks: list[float] = field(default_factory=list)  # mono times of refused attacks in the window
    _case_open: bool = False
    #: sensor slots enrolled as duress fingers (edge.access.duress.DuressSlots)
    duress: Container[int] = field(default_factory=frozenset)
    #: schedules and anti-passback (door mode relay); the reader modes leave them to the panel
    rules: AccessRules = field(default_factory=NoRules)
    #: reader modes (osdp, wiegand-out): a grant is reported to the site's panel as the person's panel
    #: number from the signed list, and the panel decides; None: the terminal releases the lock itself
    panel: PanelReport | None = None
    _stale: bool = False
    _next_health: float = 0.0
    _next_stale_check: float = 0.0
    _next_prune: float = 0.0
    _started: float = field(default=0.0)

    def __post_init__(self) -> None:
        self._started = self.clock.mono()
        self._next_health = self._started + self.settings.health_interval_s

    # ----------------------------------------------------------------- events

    def _emit(self, event: AnyEvent) -> None:
        """Hand an event to the sink; a failing sink is counted and logged, never stops the gate."""
        try:
            self.sink.emit(event)
        except Exception as exc:  # the door decision is already made; losing the gate would be worse
            log.error("event sink refused a %s event: %s", event.kind, exc.__class__.__name__)
            if self.metrics is not None:
                self.metrics.sink_errors.inc()

    def _alarm(self, code: str, active: bool, device: str | None = None) -> None:
        """Raise or clear alarm ``code`` (per ``device`` where one is named); an unchanged state is no event."""
        name = code if device is None else f"{code}:{device}"
        if active == (name in self._alarms):
            return
        if active:
            self._alarms.add(name)
            log.warning("alarm raised: %s", name)
            if self.metrics is not None:
                self.metrics.alarms.labels(alarm=code).inc()
        else:
            self._alarms.discard(name)
            log.info("alarm cleared: %s", name)
        severity: Severity = "critical" if code in CRITICAL_ALARMS else "warning"
        self._emit(Alarm(code, severity, "raised" if active else "cleared", device))

    def _silent_alarm(self, code: str, component: str) -> None:
        """An alarm for the site only: signed and published, never on the terminal's LED or log line
        a bystander could read, and not kept as an active alarm (each occurrence is one event)."""
        if self.metrics is not None:
            self.metrics.alarms.labels(alarm=code).inc()
        self._emit(Alarm(code, "critical", "raised", component))

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
        self._alarm("device_failed", True, device)

    def device_ok(self, device: str) -> None:
        previous = self.devices.get(device)
        self.devices[device] = "up"
        if self.metrics is not None:
            self.metrics.device_up.labels(device=device).set(1)
        if previous == "down":
            log.info("%s recovered", device)
            self._alarm("device_failed", False, device)

    # ----------------------------------------------------------------- inputs

    def _consent_stale(self) -> bool:
        """Whether biometric decisions must stop (fail closed). The enforcer owns the list's state and
        raises its one alarm (``consent_stale``); the gate only denies and blinks the status LED."""
        self._stale = self.consent.is_stale(self.clock.wall())
        return self._stale

    def _biometric(self, modality: Modality, subject: str | None, score: float | None, margin: float | None) -> None:
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
        self._biometric(Modality.face, hit.subject, float(hit.score), float(hit.margin))

    def on_attack(self) -> None:
        """The camera thread's liveness check refused the face in view (a photo or a screen).

        Never searched, so no subject: a denied ``access`` event with reason ``presentation_attack``
        (no image, no score), an audit record, and after ``attack_alarm`` attacks within
        ``attack_window_s`` one ``presentation_attack`` alarm, cleared when the window is quiet again.
        """
        now = self.clock.mono()
        window = self.settings.attack_window_s
        self._attacks = [t for t in self._attacks if now - t < window] + [now]
        if self.metrics is not None:
            self.metrics.attacks.inc()
        try:
            self.audit(
                "presentation_attack",
                {"door": self.settings.gate, "recent": len(self._attacks), "window_s": window},
            )
        except Exception as exc:  # the refusal stands; the audit log's own alarm reports its failure
            log.error("could not audit a presentation attack: %s", exc.__class__.__name__)
        self._conclude(Decision(False, Modality.face, None, PRESENTATION_ATTACK))
        if len(self._attacks) >= self.settings.attack_alarm:
            self._alarm(PRESENTATION_ATTACK, True)

    def on_tamper(self, opened: bool, erased: tuple[str, ...] = ()) -> None:
        """The case switch changed (or the tamper response finished an erase): a signed ``tamper``
        event, the critical ``tamper`` alarm while the case is open, and an audit record naming what
        was crypto-erased. The credential path is untouched: card, PIN and QR keep working."""
        changed = opened != self._case_open
        self._case_open = opened
        if changed:
            self._emit(Tamper("case", "raised" if opened else "cleared"))
        if erased:
            log.warning("tamper: crypto-erased %s", ", ".join(erased))
        try:
            details: dict[str, object] = {"opened": opened, "at": self.clock.wall()}
            if erased:
                details["erased"] = list(erased)
            self.audit("tamper", details)
        except Exception as exc:
            log.error("could not audit a tamper event: %s", exc.__class__.__name__)
        self._alarm("tamper", opened)

    def on_finger(self, match: Match | NoMatch) -> None:
        """A finger was searched: a match names its slot's subject; ``NoMatch`` is a failed attempt.

        A duress finger decides like any other finger (the door opens for its owner exactly as
        usual); the site gets a ``duress`` alarm event, which the terminal never shows."""
        if isinstance(match, Match):
            if match.slot in self.duress:
                self._silent_alarm("duress", "fingerprint")
            self._biometric(Modality.fingerprint, self.gallery.subject_for_slot(match.slot), float(match.score), None)
        else:
            self._biometric(Modality.fingerprint, None, 0.0, None)

    def on_credential(self, credential: CredentialLike) -> None:
        kind = next((m for m in CREDENTIALS if m.value == credential.kind), None)
        if kind is None:  # the readers make only card, PIN and QR credentials
            log.warning("a credential of an unknown kind was ignored (expected card, pin or qr)")
            return
        now = self.clock.wall()
        authoriser = CredentialAuthoriser(
            self.consent, purpose=self.settings.purpose, kinds=self.settings.credential_kinds
        )
        verdict = authoriser.authorise(credential, now)
        if verdict.subject is not None:
            self.protect(verdict.subject)
        if verdict.reason in ("kind-disabled", "purpose-not-allowed"):
            # a kind this gate does not accept, or a subject whose entry does not cover its purpose
            self._conclude(Decision(False, kind, None, verdict.reason.replace("-", "_")))
            return
        subject = verdict.subject
        alternative = subject is not None and not any(
            self.consent.allows(subject, m, self.settings.purpose, now) for m in BIOMETRIC
        )
        self._decide(Evidence(kind, subject, alternative_path=alternative))

    def _recently_granted(self, modality: Modality, subject: str) -> bool:
        at = self._last_grant.get((modality, subject))
        return at is not None and self.clock.mono() - at < self.settings.regrant_s

    def _decide(self, evidence: Evidence) -> None:
        decision = self.policy.decide(evidence, self.clock.mono())
        if decision is not None:
            self._conclude(decision)

    def _conclude(self, decision: Decision) -> None:
        now = self.clock.mono()
        if decision.granted:
            assert decision.subject is not None
            if all(m in BIOMETRIC and self._recently_granted(m, decision.subject) for m in decision.factors):
                # a face or finger still in view after a grant: the same passage. Judged only after
                # the policy accepted the match, so a stranger whose best candidate was just let in
                # is denied. Every card, PIN or QR presentation is a new passage.
                return
            refusal = self.rules.refusal(decision.subject, self.clock.wall())
            if refusal is None and self.panel is not None and self.panel.number(decision.subject) is None:
                refusal = NO_PANEL_NUMBER  # the panel could not be told who this is
            if refusal is not None:
                decision = Decision(False, decision.modality, decision.subject, refusal, decision.second)
        if not decision.granted:
            key = (decision.modality, decision.reason)
            last = self._last_denial.get(key)
            if decision.modality in BIOMETRIC and last is not None and now - last < self.settings.deny_interval_s:
                return  # the same face still in view: one denial per interval
            self._last_denial[key] = now
        else:
            assert decision.subject is not None
            for modality in decision.factors:
                self._last_grant[(modality, decision.subject)] = now
            try:
                if self.panel is not None:
                    self.panel.report(decision.subject)
                else:
                    self.door.pulse(self.settings.door_pulse_s, now)
            except Exception as exc:  # the decision stands and is reported; the alarm says the lock did not move
                self.device_failed("door", exc)
            else:
                if self.devices.get("door") == "down":
                    self.device_ok("door")
                if self.metrics is not None:
                    self.metrics.door_pulses.inc()
                self.rules.passed(decision.subject, self.clock.wall())
        self.decisions += 1
        verdict: Verdict = "granted" if decision.granted else "denied"
        if self.metrics is not None:
            # the label names both factors of a two-factor grant (``face+card``): a display string, never parsed
            label = "+".join(m.value for m in decision.factors)
            self.metrics.decisions.labels(modality=label, outcome=verdict).inc()
        log.info("access %s by %s (%s)", verdict, decision.modality, decision.reason)
        self._emit(
            Access(
                verdict,
                decision.modality,
                decision.subject,
                decision.reason,
                door=self.settings.gate or None,
                consent_version=self.consent.version,
            )
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
        if self._attacks and now - self._attacks[-1] >= self.settings.attack_window_s:
            self._attacks = []
            self._alarm(PRESENTATION_ATTACK, False)
        if now >= self._next_prune:  # years of passages must not grow these maps
            self._next_prune = now + 60.0
            self._last_grant = {k: t for k, t in self._last_grant.items() if now - t < self.settings.regrant_s}
            self._last_denial = {k: t for k, t in self._last_denial.items() if now - t < self.settings.deny_interval_s}
        if now >= self._next_health:
            self._next_health = now + self.settings.health_interval_s
            self.emit_health()

    def working(self) -> tuple[Modality, ...]:
        """The modalities whose device is up now, in the product's order."""
        up = {
            DEVICE_MODALITY[name] for name, state in self.devices.items() if state == "up" and name in DEVICE_MODALITY
        }
        return tuple(m for m in ALL if m in up)

    def emit_health(self) -> None:
        host = self.host
        self._emit(
            Health(
                uptime_s=int(self.clock.mono() - self._started),
                outbox_depth=host.outbox_depth(),
                modalities=self.working(),
                consent_version=self.consent.version,
                software=host.software(),
                load1=host.load1(),
                disk_free_mb=host.disk_free_mb(),
            )
        )

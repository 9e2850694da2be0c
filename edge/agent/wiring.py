"""Wiring the gate's ports to the real subsystems, and the agent's lifecycle around the gate loop.

``run_agent`` is the whole of ``edge run`` apart from argument parsing: door, metrics, the gate
threads, READY/WATCHDOG/STOPPING to systemd, and an orderly stop. It takes a ``Wired`` bundle of
ports, so tests run it with in-memory doubles and ``build()`` is the only place that names the
real modules.

``build()`` assembles the real subsystems (``edge.agent.assembly.build_wired``): the signed event
path (egress guard, COSE signer, SQLite outbox, MQTT publisher subscribed to the retained consent
topic), the consent ledger and enforcer (reconciled at start, ticked every second on the ``consent``
thread), the encrypted gallery as the enforcer's two biometric stores, the face pipeline and
camera, the fingerprint sensor, and the card reader. The policy is ``LanePolicy``
(``edge.agent.decide``), the product's one decision policy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from edge.agent.assembly import build_wired
from edge.agent.decide import LanePolicy
from edge.agent.gate import Clock, GateCore, GateSettings, SystemClock
from edge.agent.runner import GateRunner, Watchdog
from edge.agent.wired import Wired
from edge.config.schema import AgentConfig, Profile
from edge.credentials.authorise import enabled_kinds
from edge.door.base import open_door
from edge.door.modes import open_tamper
from edge.ops.metrics import Metrics
from edge.state import StateDir

log = logging.getLogger(__name__)


class Notify(Watchdog, Protocol):
    def ready(self, status: str = "") -> bool: ...

    def status(self, text: str) -> bool: ...

    def stopping(self) -> bool: ...


def build(config: AgentConfig, profile: Profile, state: StateDir) -> Wired:
    """The real ports for this config: stores, signed event path, consent, devices (the plug-in
    ``edge run --wiring`` names by default; the demo and tests pass their own)."""
    return build_wired(config, profile, state)


def _ignore(value: str, label: str) -> None:
    """No redactor configured (tests): nothing to teach."""


def _await_panel(door: object, timeout_s: float = 15.0) -> None:
    """Reader modes: give the panel link (OSDP poll, Secure Channel) a moment before the first decision,
    so the first person at the gate is not reported into a link still coming up. The gate runs either
    way; a link that stays down is the door's alarm."""
    link = getattr(door, "link_status", None)
    if not callable(link):
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if link().ok:
            return
        time.sleep(0.1)
    log.warning("the panel link is not up after %.0f s: %s", timeout_s, link().detail)


def run_agent(
    config: AgentConfig,
    profile: Profile,
    wired: Wired,
    *,
    notifier: Notify,
    stop: threading.Event,
    protect: Callable[[str, str], None] | None = None,
    clock: Clock | None = None,
    metrics_port: int | None = None,
    health_interval_s: float = 60.0,
) -> int:
    """Run the gate until ``stop`` is set; return the process exit code."""
    if protect is None:
        protect = _ignore
    if config.mqtt.password is not None:
        protect(config.mqtt.password.get_secret_value(), "secret")
    for subject in wired.subjects():
        protect(subject, "subject")
    teach = protect
    door = wired.door or open_door(profile.gpio, exit_pulse_s=config.policy.door_pulse_s)
    metrics = Metrics()
    runner: GateRunner | None = None
    try:
        if config.metrics.enabled:
            metrics.serve(config.metrics.bind, config.metrics.port if metrics_port is None else metrics_port)
        core = GateCore(
            gallery=wired.gallery,
            consent=wired.consent,
            policy=wired.policy or LanePolicy(config.policy, wired.face_threshold),
            door=door,
            sink=wired.sink,
            settings=GateSettings(
                gate=config.device.gate,
                purpose=config.consent.purpose,
                door_pulse_s=config.policy.door_pulse_s,
                health_interval_s=health_interval_s,
                credential_kinds=enabled_kinds(config.credentials.card, config.credentials.pin, config.credentials.qr),
                attack_alarm=config.face.attack_alarm,
                attack_window_s=config.face.attack_window_s,
            ),
            clock=clock or SystemClock(),
            host=wired.host,
            metrics=metrics,
            protect=lambda subject: teach(subject, "subject"),
            audit=wired.audit or (lambda _kind, _details: None),
            rules=wired.rules,
            panel=wired.panel,
            duress=wired.duress,
        )
        runner = GateRunner(
            core,
            camera=wired.camera if config.camera.enabled and config.face.enabled else None,
            face=wired.face,
            escalation=wired.face_escalation,
            liveness=wired.liveness,
            tamper=open_tamper(door),
            erase_on_tamper=wired.erase_on_tamper,
            sensor_chore=wired.sensor_chore,
            fingerprint=wired.fingerprint if config.fingerprint.enabled else None,
            credentials=wired.credentials,
            notifier=notifier,
        )
        if hasattr(door, "on_led") and config.fingerprint.enabled:
            door.on_led = runner.show_ring  # the panel's LED on the R503 ring too
        _await_panel(door)
        runner.start()
        core.emit_health()
        modalities = ", ".join(w.name for w in runner.workers) or "no devices"
        notifier.ready(f"gate {config.device.gate} running ({modalities})")
        log.info("gate %s running with %s", config.device.gate, modalities)
        stop.wait()
        log.info("stopping")
        notifier.stopping()
        return 0
    finally:
        if runner is not None:
            runner.stop()
        else:
            door.close()
        metrics.close()
        for close in reversed(wired.closers):
            try:
                close()
            except Exception as exc:
                log.error("closing a subsystem failed: %s", exc.__class__.__name__)

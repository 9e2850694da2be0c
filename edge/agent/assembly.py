"""The real subsystems behind the gate's ports, assembled into a ``Wired`` bundle (``build_wired``).

Every device comes from the ``DevicePlan`` (``edge.config.final.device_plan``, the same resolvers
final validation runs: the sensor's UART, the camera, the credential reader and the door's RS-485
bus resolved once against the profile); nothing here looks at the profile's UARTs. Order of
assembly (each part uses the earlier ones):

1. the signed event path (``open_event_path``): device key, then the audit log, outbox and
   consent ledger (``edge.ops.degrade``: a damaged store is set aside, one that cannot open runs
   on a fallback), then ``EventSigner`` and ``OutboxSink`` (guard, sign, commit typed events);
2. the gallery and the enforcer's two views of it (``edge.gallery.stores``); deleting a subject's
   fingerprint record queues its sensor slots in the persisted ``EraseQueue`` first;
3. consent: the ``Enforcer`` over those views, reconciled once at start, and the ``consent``
   thread (``edge.consent.service.ConsentService``); site sync (``edge.sync.wiring``) when the gate
   has a sync key;
4. the ``MqttPublisher`` draining the outbox, subscribed to the consent topics, the sync inbox
   and, at an anti-passback gate, its partners' access events (``inbox``);
5. device factories: camera and ``FacePipeline`` (``edge.vision``), the fingerprint sensor
   (``edge.fingerprint.workflows.open_planned``), the credential reader (``edge.credentials``),
   and the door's rules or panel (``door_parts``).

Modules that always ship are imported normally. The vision modules (OpenCV, the TFLite runtime)
are imported where a camera or a pipeline is opened, so a card-only gate never loads them; an
extra a config names but this install lacks (faiss, picamera2, gpiod, libosdp) is an installer's
error where that driver is opened.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edge.access.duress import DuressSlots
from edge.access.partners import PartnerPassages, access_filter
from edge.access.passback import PassbackLog
from edge.access.rules import AccessRules, NoRules, StandaloneRules
from edge.agent.ports import (
    CameraPort,
    ConsentPort,
    CredentialReaderPort,
    Embedding,
    FaceEscalation,
    FingerprintPort,
    PanelReport,
    SearchHit,
)
from edge.agent.wired import Wired
from edge.config.final import CameraPlan, CredentialPlan, DoorPlan, device_plan
from edge.config.schema import AgentConfig, Profile
from edge.consent.distribution import ConsentReceiver, pinned_keys
from edge.consent.enforce import Enforcer, Store
from edge.consent.journal import DeletionJournal
from edge.consent.ledger import ConsentLedger
from edge.consent.service import ConsentService
from edge.credentials.readers import open_planned as open_planned_reader
from edge.door.base import DoorController, DoorOutput
from edge.door.modes import credential_for, open_configured_door
from edge.door.report import PanelReporter
from edge.errors import EdgeError, HardwareError
from edge.events.path import open_event_path
from edge.fingerprint.erasure import EraseQueue, PendingErase
from edge.fingerprint.workflows import SensorWorkflows, open_planned
from edge.gallery.sealed import destroy_file
from edge.gallery.store import Gallery
from edge.gallery.stores import FaceStore, FingerprintStore
from edge.ops.degrade import FailClosedConsent, open_gallery, wire_storage
from edge.state import StateDir
from edge.sync import wiring as sync_wiring
from edge.sync.service import SiteSync
from edge.transport import topics
from edge.transport.mqtt import MqttPublisher, MqttSettings
from edge.vision.liveness import LivenessPolicy

if TYPE_CHECKING:
    from edge.vision.pipeline import FacePipeline

log = logging.getLogger(__name__)


# =========================================================================== the gallery


class EmptyGallery:
    """The gallery when none opens (degraded, or safe mode): holds nobody. Never searched: the
    gate's consent port refuses every biometric use then, so no camera is wired."""

    def search(self, _probe: Embedding, k: int = 2) -> SearchHit:
        del k  # GalleryPort's keyword (callers pass k=2): kept by name
        raise EdgeError("no gallery is open: biometric decisions are off")

    def subject_for_slot(self, _slot: int) -> str | None:
        return None


def enforcer_stores(gallery: Gallery, erase_queue: EraseQueue) -> list[Store]:
    """The enforcer's two views of the gallery; the fingerprint view queues sensor slots first."""
    return [FaceStore(gallery), FingerprintStore(gallery, erase_queue)]


def tamper_erase(gallery: Gallery | None, state: StateDir) -> Callable[[], None]:
    """[security] erase_on_tamper: the gallery key destroyed, also when the gallery did not open
    (its file and key are still on the card); the sensor's library is emptied by its own thread."""

    def erase() -> None:
        if gallery is not None:
            gallery.crypto_erase(state)
            return
        for key in (state.gallery_key, state.gallery_key.with_name(state.gallery_key.name + ".next")):
            destroy_file(key)
        log.warning("tamper: gallery key destroyed (the gallery was not open)")

    return erase


# =========================================================================== devices


def fingerprint_password(config: AgentConfig) -> int:
    return int(config.fingerprint.password.get_secret_value() or "0", 16)


def open_fingerprint(config: AgentConfig, profile: Profile) -> SensorWorkflows:
    """The sensor for tools that own it for a moment (enrolment, selftest, factory reset)."""
    plan = device_plan(config, profile).fingerprint
    if plan is None:
        raise HardwareError("the fingerprint sensor is disabled", hint="set [fingerprint] enabled = true")
    return open_planned(plan, password=fingerprint_password(config))


def open_camera(plan: CameraPlan) -> CameraPort:
    from edge.vision.camera import open_planned as open_planned_camera

    return open_planned_camera(plan)


def load_pipeline(config: AgentConfig, profile: Profile) -> FacePipeline:
    """The configured face models (every hash verified), with the liveness model unless it is off."""
    from edge.vision.pipeline import FacePipeline

    models_dir = Path(config.face.models_dir)
    if not models_dir.is_absolute() and not models_dir.exists():
        from edge.datasets import REPO_ROOT

        models_dir = REPO_ROOT / models_dir
    if not (models_dir / "manifest.json").is_file():
        raise EdgeError(
            f"no model bundle in {models_dir}",
            hint="build it once with `edge models build` (scripts/setup.sh does), or set [face] models_dir",
        )
    liveness = config.face.liveness_model if config.face.liveness != "off" else None
    return FacePipeline.load(models_dir, config.face.variant, profile.board.inference_threads, liveness=liveness)


def credential_control(state: StateDir) -> Path:
    """The simulated card reader's control FIFO: lines ``card:NUMBER``, ``pin:1234``, ``qr:TEXT``."""
    return state.root / "credential.fifo"


def credential_factory(plan: CredentialPlan, state: StateDir) -> Callable[[], CredentialReaderPort] | None:
    """Opens the configured reader (``sim`` and ``wiegand`` take the control FIFO); None for ``card = "none"``."""
    if plan.reader == "none":
        return None
    return lambda: open_planned_reader(plan, credential_control(state))


@dataclass
class FaceParts:
    """The face path of a gate whose camera and face recognition are on."""

    pipeline: FacePipeline
    threshold: float
    escalation: FaceEscalation | None  # None: every frame gets the accurate embedding
    liveness: LivenessPolicy | None  # None: [face] liveness = "off"


def face_parts(config: AgentConfig, pipeline: FacePipeline) -> FaceParts:
    info = pipeline.manifest
    threshold = config.face.threshold or float(info.threshold)
    escalation = None
    if config.face.fast_probe:
        # the fast probe's own threshold sits this far below the accurate one (LFW dev calibration);
        # an operator's stricter or looser threshold moves the escalation band with it
        centre = threshold - (float(info.threshold) - float(info.probe_threshold))
        escalation = FaceEscalation(centre, float(info.escalation_band))
    liveness = None
    if pipeline.pad is not None:
        pad_doc = info.bundle.raw["pad"]
        liveness = LivenessPolicy(
            float(pipeline.pad.threshold),
            band=float(pad_doc.get("challenge_band", 0.35)),
            challenge=config.face.liveness == "challenge",
        )
    return FaceParts(pipeline, threshold, escalation, liveness)


# =========================================================================== the door's rules


@dataclass
class DoorParts:
    """Door mode relay: the standalone rules (schedules, anti-passback). Reader modes: the door that
    talks to the site's panel and the reporter that tells it who was recognised (the panel decides)."""

    rules: AccessRules = field(default_factory=NoRules)
    door: DoorOutput | None = None  # None: the relay on the profile's lines (``run_agent`` opens it)
    panel: PanelReport | None = None


def door_parts(
    plan: DoorPlan,
    config: AgentConfig,
    profile: Profile,
    state: StateDir,
    ledger: ConsentLedger,
    device: str,
    passback: PassbackLog | None,
    audit: Callable[[str, dict[str, object]], object],
) -> DoorParts:
    if plan.mode == "relay":
        return DoorParts(rules=StandaloneRules(ledger, passback, device))
    door = open_configured_door(
        config.door,
        profile,
        scbk_path=state.osdp_scbk,
        exit_pulse_s=plan.pulse_s,
        audit=audit,
        port=plan.osdp.url if plan.osdp is not None else None,
    )
    if isinstance(door, DoorController):  # a reader mode always opens a panel output
        door.close()
        raise EdgeError(f"door mode {plan.mode!r} opened a relay, not a panel output")
    return DoorParts(door=door, panel=PanelReporter(door, ledger, credential_for(config.door)))


def duress_slots(state: StateDir) -> Container[int]:
    """The duress finger slots; a damaged file costs the duress function, never the gate."""
    try:
        return DuressSlots(state.duress_slots)
    except EdgeError as exc:
        log.error("duress fingers are off: %s (%s)", exc, exc.hint)
        return frozenset()


# =========================================================================== the MQTT inbox


@dataclass
class Inbox:
    """What the publisher subscribes to, and where each message goes (on the MQTT thread)."""

    subscriptions: list[str]
    on_message: sync_wiring.Receiver


def inbox(
    site: str, state: StateDir, consent: ConsentService, sync: SiteSync | None, partners: PartnerPassages | None
) -> Inbox:
    """The consent topics (a large list's chunks too) to the consent thread; the sync inbox to site
    sync; at an anti-passback gate, the partners' access events to the passback log."""
    subscriptions = topics.consent_subscriptions(site)
    receiver: sync_wiring.Receiver = ConsentReceiver(site, pinned_keys(state), consent.submit).on_message
    if sync is not None:  # the gate's inbox: parcels handled on the consent thread
        receiver = sync_wiring.attach(sync, consent, subscriptions, receiver)
    if partners is None:
        return Inbox(subscriptions, receiver)
    subscriptions.append(access_filter(site))
    others = receiver

    def route(topic: str, payload: bytes, retained: bool) -> None:
        if topic.endswith("/events/access"):
            partners.on_message(topic, payload)
        else:
            others(topic, payload, retained)

    return Inbox(subscriptions, route)


def sensor_chore(sync: SiteSync) -> Callable[[FingerprintPort], None]:
    """Site sync's work on the fingerprint thread: synced templates into the module."""
    chore = sync_wiring.SensorChore(sync)

    def run(sensor: FingerprintPort) -> None:
        if isinstance(sensor, SensorWorkflows):  # the module the plan opened holds the templates
            chore(sensor)

    return run


# =========================================================================== assembly


def _unaudited(kind: str, _details: dict[str, object]) -> int:
    log.error("no audit log: a %s record could not be written", kind)
    return 0


def build_wired(
    config: AgentConfig,
    profile: Profile,
    state: StateDir,
    *,
    pipeline: FacePipeline | None = None,
) -> Wired:
    """The real ports for ``config``. ``pipeline``: an already loaded ``FacePipeline`` to reuse (the
    demo enrols with it first)."""
    plan = device_plan(config, profile)
    closers: list[Callable[[], None]] = []
    try:
        path = open_event_path(config, state)
        closers.append(path.close)
        site, ledger, sink, audit = config.device.site, path.ledger, path.sink, path.audit
        audit_append = audit.append if audit is not None else _unaudited
        biometric = (plan.camera is not None and config.face.enabled) or plan.fingerprint is not None
        erase_queue = EraseQueue(state.sensor_erase_queue)
        opened = open_gallery(state, config.gallery, path.stores.notes)
        if opened is not None:
            closers.append(opened.close)
        gallery = opened if opened is not None else EmptyGallery()
        enforcer = Enforcer(
            ledger,
            enforcer_stores(opened, erase_queue) if opened is not None else [],
            sink,
            audit,
            purpose=config.consent.purpose,
            journal=DeletionJournal(state.pending_deletions),
        )
        enforcer.startup(time.time())
        wire_storage(state, sink.emit, audit, gallery=opened, ledger=ledger, notes=path.stores.notes)
        # without an audit log, a writable ledger or the gallery, no biometric decision is made
        biometric_ok = path.stores.biometric_ok and (opened is not None or not biometric)
        consent = ConsentService(enforcer, sink)
        sync = None
        if biometric_ok:  # no parcel is enrolled without an audit log
            sync = sync_wiring.open_site_sync(
                site=site,
                state=state,
                identity=path.key,
                ledger=ledger,
                enforcer=enforcer,
                gallery=opened,
                outbox=path.outbox,
                sink=sink,
                audit=audit,
                face_model=None,  # set below once the face models are loaded
                sensor_family=plan.fingerprint.family if plan.fingerprint is not None else None,
            )
        if sync is not None:
            sync.face_pending = config.face.enabled and plan.camera is not None  # its model id comes below
            closers.append(sync.store.close)
        passback_log = partners = None
        if plan.door.mode == "relay":
            passback_log = PassbackLog(state.passback_db)
            closers.append(passback_log.close)
            if ledger.passback() is not None:  # an entry or exit gate: its partners' passages count here
                partners = PartnerPassages(site, path.device_id, ledger.gates, passback_log)
        mqtt = inbox(site, state, consent, sync, partners)
        publisher = MqttPublisher(
            MqttSettings.from_section(config.mqtt),
            path.outbox,
            site=site,
            device_id=path.device_id,
            subscriptions=mqtt.subscriptions,
            on_message=mqtt.on_message,
        )

        def stop_publisher() -> None:
            publisher.wait_drained(2.0)  # an orderly stop delivers what is queued, if the broker is there
            publisher.stop()

        closers.append(stop_publisher)  # runs after the consent thread stopped: nothing is emitted later
        consent.start()
        closers.append(consent.stop)
        publisher.start()

        face: FaceParts | None = None
        camera: Callable[[], CameraPort] | None = None
        camera_plan = plan.camera
        if config.face.enabled and camera_plan is not None and biometric_ok:
            face = face_parts(config, pipeline if pipeline is not None else load_pipeline(config, profile))
            if sync is not None:
                sync.face_model = str(face.pipeline.manifest.model_id)
                sync.face_pending = False
                consent.wake()  # face parcels that arrived while the models loaded

            def camera_factory() -> CameraPort:
                return open_camera(camera_plan)

            camera = camera_factory

        fingerprint: Callable[[], FingerprintPort] | None = None
        finger_plan = plan.fingerprint
        if finger_plan is not None and biometric_ok:

            def on_erased(done: list[PendingErase]) -> None:
                enforcer.erased(done, time.time())

            def finger_factory() -> FingerprintPort:
                return open_planned(
                    finger_plan,
                    password=fingerprint_password(config),
                    erase_queue=erase_queue,
                    on_erased=on_erased,
                    is_known=lambda slot: gallery.subject_for_slot(slot) is not None,
                    touch=True,
                )

            fingerprint = finger_factory

        def subjects() -> list[str]:
            return sorted({e.subject for e in ledger.entries()})

        door = door_parts(plan.door, config, profile, state, ledger, path.device_id, passback_log, audit_append)
        consent_port: ConsentPort = ledger if biometric_ok else FailClosedConsent(ledger, "a store is unavailable")
        return Wired(
            gallery=gallery,
            consent=consent_port,
            sink=sink,
            face_threshold=face.threshold if face is not None else 0.6,
            face_escalation=face.escalation if face is not None else None,
            liveness=face.liveness if face is not None else None,
            audit=audit_append,
            erase_on_tamper=tamper_erase(opened, state) if config.security.erase_on_tamper else None,
            duress=duress_slots(state),
            sensor_chore=sensor_chore(sync) if sync is not None and fingerprint is not None else None,
            site_sync=sync,
            rules=door.rules,
            door=door.door,
            panel=door.panel,
            camera=camera,
            face=face.pipeline if face is not None else None,
            fingerprint=fingerprint,
            credentials=credential_factory(plan.credentials, state),
            subjects=subjects,
            host=path.host,
            closers=closers,
        )
    except BaseException:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                close()
        raise

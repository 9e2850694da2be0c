"""The real subsystems behind the gate's ports, assembled into a ``Wired`` bundle (``build_wired``).

Order of assembly (each later part uses the earlier ones):

1. the signed event path: device key -> ``AuditLog`` -> ``Outbox`` -> ``EventSigner`` ->
   ``OutboxSink`` (guard, sign, commit typed events);
2. the gallery (``edge.gallery``) and its two ``BiometricStore`` views, one per modality; deleting a
   subject's fingerprint record queues its sensor slots for erasure on the sensor;
3. consent: ``ConsentLedger`` + ``Enforcer`` over those stores, reconciled once at start, then a
   ``consent`` thread applying lists from the retained topic ``sites/{site}/consent`` and ticking
   the enforcer about once a second;
4. the ``MqttPublisher`` draining the outbox and subscribed to the consent topic;
5. device factories: camera + ``FacePipeline`` (``edge.vision``), fingerprint sensor
   (``edge.fingerprint``), credential reader (``edge.credentials``).

Modules of optional subsystems are imported by name, so a build without one of them still runs
the other modalities; a config that enables a missing one is a loud ``EdgeError``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.access.duress import DuressSlots
from edge.agent.ports import CameraPort, CredentialReaderPort, FaceEscalation, FingerprintPort
from edge.agent.wired import Wired
from edge.config.schema import AgentConfig, Profile
from edge.errors import EdgeError, HardwareError
from edge.events.fields import as_code
from edge.events.kinds import AnyEvent, ConsentApplied, ConsentRejected
from edge.ops.host import Host
from edge.state import StateDir
from edge.vision.liveness import LivenessPolicy

if TYPE_CHECKING:
    from edge.fingerprint.erasure import EraseQueue, PendingErase
    from edge.fingerprint.touch import TouchLine
    from edge.fingerprint.workflows import SensorWorkflows

log = logging.getLogger(__name__)


def optional_module(name: str, what: str) -> Any:
    """Import ``name`` or say which subsystem this build lacks (a config that needs it must not start)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise EdgeError(
                f"this build has no {what} ({name})",
                hint="install a release that includes it, or disable that modality in the agent config",
            ) from None
        raise


def has_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        return False
    return True


class EmptyGallery:
    """The gallery of a build without ``edge.gallery`` (card/PIN/QR only): holds nobody."""

    def search(self, probe: Any, k: int = 2) -> Any:
        raise EdgeError("no gallery in this build")

    def subject_for_slot(self, slot: int) -> str | None:
        return None

    def subjects(self, modality: str | None = None) -> set[str]:
        return set()


# =========================================================================== fingerprint


def open_touch(profile: Profile) -> TouchLine | None:
    """The sensor's touch output when the profile wires one (real GPIO only)."""
    offer = profile.fingerprint
    if offer is None:
        return None
    from edge.fingerprint.touch import open_touch_line

    return open_touch_line(profile.gpio.chip, offer.touch_gpio, offer.family, simulated=profile.gpio.simulated)


def fingerprint_url(config: AgentConfig, profile: Profile) -> tuple[str, int, int]:
    """The sensor's port URL, baud and address from the config's override or the profile's offer."""
    offer = profile.fingerprint
    baud = offer.baud if offer else 57600
    address = offer.address if offer else 0xFFFFFFFF
    if config.fingerprint.port:
        return config.fingerprint.port, baud, address
    if offer is None:
        raise HardwareError(
            f"profile {profile.board.id} offers no fingerprint sensor",
            hint="set [fingerprint] port, or disable it with [fingerprint] enabled = false",
        )
    uart_name = config.fingerprint.uart or offer.uart
    for uart in profile.uarts:
        if uart.name == uart_name:
            return uart.path, baud, address
    raise HardwareError(f"the profile has no UART named {uart_name!r}", hint="check [fingerprint] uart")


def open_fingerprint(
    config: AgentConfig,
    profile: Profile,
    *,
    erase_queue: EraseQueue | None = None,
    on_erased: Callable[[list[PendingErase]], None] | None = None,
    is_known: Callable[[int], bool] | None = None,
    touch: bool = False,
) -> SensorWorkflows:
    """The sensor as ``SensorWorkflows``; the gate passes its erase queue, receipts and touch line."""
    workflows = optional_module("edge.fingerprint.workflows", "fingerprint support")
    url, baud, address = fingerprint_url(config, profile)
    password = int(config.fingerprint.password.get_secret_value() or "0", 16)
    # the R503's LED ring shows ready, scanning, success or failure; the other families have no LED
    led = profile.fingerprint is not None and profile.fingerprint.family == "r503"
    extra: dict[str, Any] = {}
    if erase_queue is not None:
        extra["erase_queue"] = erase_queue
    if on_erased is not None:
        extra["on_erased"] = on_erased
    if is_known is not None:
        extra["is_known"] = is_known
    if touch:
        extra["touch"] = lambda: open_touch(profile)
    sensor: SensorWorkflows = workflows.open_sensor(
        url, baud=baud, address=address, password=password, led=led, **extra
    )
    return sensor


# =========================================================================== camera and face


def camera_source(config: AgentConfig, profile: Profile) -> tuple[str, str]:
    offer = profile.camera
    kind = offer.kind if offer else "replay"
    device = config.camera.source or (offer.device if offer else "")
    return kind, device


def open_camera(config: AgentConfig, profile: Profile) -> CameraPort:
    camera = optional_module("edge.vision.camera", "face support")
    kind, device = camera_source(config, profile)
    opened: CameraPort = camera.open_camera(
        kind,
        device,
        width=config.camera.width,
        height=config.camera.height,
        fps=config.camera.fps,
        mirrored=profile.camera is not None and profile.camera.mirrored,
    )
    return opened


def load_pipeline(config: AgentConfig, profile: Profile) -> Any:
    pipeline = optional_module("edge.vision.pipeline", "face support")
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
    return pipeline.FacePipeline.load(
        models_dir, config.face.variant, profile.board.inference_threads, liveness=liveness
    )


# =========================================================================== the door's rules


def _duress_slots(state: StateDir) -> DuressSlots | frozenset[int]:
    """The duress finger slots; a damaged file costs the duress function, never the gate."""
    try:
        return DuressSlots(state.duress_slots)
    except EdgeError as exc:
        log.error("duress fingers are off: %s (%s)", exc, exc.hint)
        return frozenset()


def door_parts(
    config: AgentConfig,
    profile: Profile,
    state: StateDir,
    ledger: Any,
    device: str,
    passback: Any,
    audit: Callable[[str, dict[str, object]], object] | None = None,
) -> dict[str, Any]:
    """Door mode relay: the standalone rules (schedules, anti-passback over ``passback``, the log).
    Reader modes: the door that talks to the site's panel and the reporter that tells it who was
    recognised (the panel decides)."""
    from edge.access.rules import StandaloneRules

    if config.door.mode == "relay":
        return {"rules": StandaloneRules(ledger, passback, device)}
    from edge.door.modes import credential_for, open_configured_door
    from edge.door.report import PanelReporter

    door = open_configured_door(
        config.door, profile, scbk_path=state.osdp_scbk, exit_pulse_s=config.policy.door_pulse_s, audit=audit
    )
    from edge.door.base import DoorController

    assert not isinstance(door, DoorController)  # a reader mode's door is a PanelOutput
    return {"door": door, "panel": PanelReporter(door, ledger, credential_for(config.door))}


# =========================================================================== consent thread


class ConsentService:
    """Applies consent lists (from MQTT or any caller) and ticks the enforcer, on one thread.

    The MQTT callback only queues the bytes, so a large list never stalls the publisher's loop.
    """

    def __init__(self, enforcer: Any, sink: Any, *, tick_s: float = 1.0, clock: Callable[[], float] = time.time):
        #: more work for this thread on each tick (site sync's incoming parcels), in order
        self.hooks: list[Callable[[float], object]] = []
        self.enforcer = enforcer
        self.sink = sink
        self.tick_s = tick_s
        self.clock = clock
        self.applied = 0
        self.rejected = 0
        self._queue: queue.Queue[bytes] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if payload:
            self._queue.put(bytes(payload))

    def submit(self, payload: bytes) -> None:
        self._queue.put(payload)

    def wake(self) -> None:
        """Run the tick's hooks now (a site-sync parcel arrived): no waiting for the next tick."""
        self._queue.put(b"")

    def apply(self, payload: bytes) -> None:
        from edge.consent.signing import ListRejected

        try:
            outcome = self.enforcer.apply(payload, self.clock())
        except ListRejected as exc:
            self.rejected += 1
            log.warning("consent list rejected: %s", exc.reason)
            self._emit(ConsentRejected(None, as_code(exc.reason)))
            return
        if outcome.changed:
            self.applied += 1
            info = self.enforcer.ledger.info
            log.info("consent list version %s applied (%s)", outcome.version, outcome.kind)
            issued = int(info.issued_at) if info is not None else None
            self._emit(ConsentApplied(int(outcome.version), len(self.enforcer.ledger.entries()), issued))

    def _emit(self, event: AnyEvent) -> None:
        try:
            self.sink.emit(event)
        except Exception as exc:
            log.error("event sink refused a %s event: %s", event.kind, exc.__class__.__name__)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="consent", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_tick = 0.0
        while not self._stop.is_set():
            try:
                payload = self._queue.get(timeout=max(0.0, min(self.tick_s, next_tick - time.monotonic())))
            except queue.Empty:
                payload = None
            try:
                if payload == b"":
                    for hook in self.hooks if not self._stop.is_set() else ():
                        hook(self.clock())
                elif payload is not None:
                    self.apply(payload)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.tick_s
                    self.enforcer.tick(self.clock())
                    for hook in self.hooks:
                        hook(self.clock())
            except Exception:
                log.exception("consent service error; continuing")

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(b"")  # out of its wait now, not at the next tick
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None


# =========================================================================== assembly


@dataclass
class EventPath:
    """The device key, audit log, outbox, consent ledger and the signed sink. ``stores`` says which
    of them run on a fallback (``edge.ops.degrade``); ``audit`` is None when no audit log opens."""

    key: Any
    device_id: str
    audit: Any
    outbox: Any
    ledger: Any
    sink: Any
    host: Host
    stores: Any = None

    def close(self) -> None:
        self.ledger.close()
        self.outbox.close()
        if self.audit is not None:
            self.audit.close()


def open_event_path(config: AgentConfig, state: StateDir) -> EventPath:
    from edge.crypto.keys import device_id, load_signing_key
    from edge.events.envelope import EventSigner
    from edge.events.outbox_sink import OutboxSink
    from edge.ops.degrade import open_event_stores

    if not state.identity_key.exists():
        raise EdgeError(f"{state.root} holds no device identity", hint="run `edge-provision init` first")
    key = load_signing_key(state.identity_key)
    dev = device_id(key.verify_key)
    # a damaged store is set aside and started afresh; one that cannot open runs on a fallback
    stores = open_event_stores(config, state, key, dev)
    audit, outbox, ledger = stores.audit, stores.outbox, stores.ledger
    signer = EventSigner(key, dev, outbox, audit=audit)
    sink = OutboxSink(signer, outbox, config.device.site, audit=audit)
    return EventPath(key, dev, audit, outbox, ledger, sink, Host(outbox.depth, state.root), stores)


def build_wired(config: AgentConfig, profile: Profile, state: StateDir, *, pipeline: Any = None) -> Wired:
    """``pipeline``: an already loaded ``FacePipeline`` to reuse (the demo enrols with it first)."""
    from edge.consent.distribution import ConsentReceiver, consent_subscriptions, pinned_keys
    from edge.consent.enforce import Enforcer
    from edge.transport.mqtt import MqttPublisher, MqttSettings

    closers: list[Callable[[], None]] = []
    try:
        path = open_event_path(config, state)
        closers.append(path.close)
        dev, audit, outbox, ledger, sink = (
            path.device_id,
            path.audit,
            path.outbox,
            path.ledger,
            path.sink,
        )
        site = config.device.site

        from edge.fingerprint.erasure import EraseQueue

        erase_queue = EraseQueue(state.sensor_erase_queue)
        biometric = config.face.enabled or config.fingerprint.enabled
        gallery: Any
        from edge.consent.journal import DeletionJournal
        from edge.ops.degrade import FailClosedConsent, open_gallery, wire_storage

        opened = None
        if has_module("edge.gallery.store") or biometric:
            optional_module("edge.gallery.store", "biometric gallery")
            from edge.gallery.stores import FaceStore, FingerprintStore

            opened = open_gallery(state, config.gallery, path.stores.notes)
        if opened is not None:
            gallery = opened
            closers.append(opened.close)
            stores: list[Any] = [FaceStore(opened), FingerprintStore(opened, erase_queue)]
        else:
            gallery = EmptyGallery()
            stores = []
        enforcer = Enforcer(
            ledger,
            stores,
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

        from edge.sync import wiring as sync_wiring

        sync = (
            None
            if not biometric_ok
            else sync_wiring.open_site_sync(  # no parcel is enrolled without an audit log
                site=site,
                state=state,
                identity=path.key,
                ledger=ledger,
                enforcer=enforcer,
                gallery=gallery,
                outbox=outbox,
                sink=sink,
                audit=audit,
                face_model=None,  # set below once the face models are loaded
                sensor_family=profile.fingerprint.family
                if profile.fingerprint is not None and config.fingerprint.enabled
                else None,
            )
        )
        mqtt_settings = MqttSettings.from_section(config.mqtt)
        subscriptions = list(consent_subscriptions(site))  # the list, and a large list's chunks
        consent_receiver = ConsentReceiver(site, pinned_keys(state), consent.submit).on_message
        receiver: sync_wiring.Receiver = consent_receiver
        if sync is not None:  # the gate's inbox: parcels handled on the consent thread
            sync.face_pending = config.face.enabled and config.camera.enabled  # its model id comes below
            closers.append(sync.store.close)
            receiver = sync_wiring.attach(sync, consent, subscriptions, consent_receiver)
        on_message = receiver
        passback_log = None
        if config.door.mode == "relay":
            from edge.access.passback import PassbackLog

            passback_log = PassbackLog(state.passback_db)
            closers.append(passback_log.close)
            if ledger.passback() is not None:  # an entry or exit gate: its partners' passages count here
                from edge.access.partners import PartnerPassages, access_filter

                partners = PartnerPassages(site, dev, ledger.gates, passback_log)
                subscriptions.append(access_filter(site))

                def on_message(topic: str, payload: bytes, retained: bool) -> None:
                    if topic.endswith("/events/access"):
                        partners.on_message(topic, payload)
                    else:
                        receiver(topic, payload, retained)

        publisher = MqttPublisher(
            mqtt_settings,
            outbox,
            site=site,
            device_id=dev,
            subscriptions=subscriptions,
            on_message=on_message,
        )

        def stop_publisher() -> None:
            publisher.wait_drained(2.0)  # an orderly stop delivers what is queued, if the broker is there
            publisher.stop()

        closers.append(stop_publisher)  # runs after the consent thread stopped: nothing is emitted later
        consent.start()
        closers.append(consent.stop)
        publisher.start()

        face_threshold = 0.6
        face_escalation: FaceEscalation | None = None
        liveness: LivenessPolicy | None = None
        camera: Callable[[], CameraPort] | None = None
        face = None
        if config.face.enabled and config.camera.enabled and biometric_ok:
            face = pipeline if pipeline is not None else load_pipeline(config, profile)
            face_threshold = config.face.threshold or float(face.manifest.threshold)
            if config.face.fast_probe:
                info = face.manifest
                # the fast probe's own threshold sits this far below the accurate one (LFW dev calibration);
                # an operator's stricter or looser threshold moves the escalation band with it
                centre = face_threshold - (float(info.threshold) - float(info.probe_threshold))
                face_escalation = FaceEscalation(centre, float(info.escalation_band))
            if sync is not None:
                sync.face_model = str(face.manifest.model_id)
                sync.face_pending = False
                consent.wake()  # face parcels that arrived while the models loaded
            if face.pad is not None:
                pad_doc = face.manifest.bundle.raw["pad"]
                liveness = LivenessPolicy(
                    float(face.pad.threshold),
                    band=float(pad_doc.get("challenge_band", 0.35)),
                    challenge=config.face.liveness == "challenge",
                )

            def camera_factory() -> CameraPort:
                return open_camera(config, profile)

            camera = camera_factory

        fingerprint: Callable[[], FingerprintPort] | None = None
        if config.fingerprint.enabled and biometric_ok:
            optional_module("edge.fingerprint.workflows", "fingerprint support")

            def is_known(slot: int) -> bool:
                return gallery.subject_for_slot(slot) is not None

            def on_erased(done: list[PendingErase]) -> None:
                enforcer.erased(done, time.time())

            def finger_factory() -> FingerprintPort:
                return open_fingerprint(
                    config, profile, erase_queue=erase_queue, on_erased=on_erased, is_known=is_known, touch=True
                )

            fingerprint = finger_factory

        credentials = credential_factory(config, state, profile)

        def subjects() -> list[str]:
            return sorted({e.subject for e in ledger.entries()})

        def unaudited(kind: str, details: dict[str, object]) -> int:
            log.error("no audit log: a %s record could not be written", kind)
            return 0

        audit_append = path.audit.append if path.audit is not None else unaudited

        return Wired(
            gallery=gallery,
            consent=ledger if biometric_ok else FailClosedConsent(ledger, "a store is unavailable"),
            sink=sink,
            face_threshold=face_threshold,
            face_escalation=face_escalation,
            liveness=liveness,
            audit=audit_append,
            erase_on_tamper=(lambda: gallery.crypto_erase(state)) if config.security.erase_on_tamper else None,
            duress=_duress_slots(state),
            sensor_chore=sync_wiring.SensorChore(sync) if sync is not None and fingerprint is not None else None,
            site_sync=sync,
            **door_parts(config, profile, state, ledger, dev, passback_log, audit_append),
            camera=camera,
            face=face,
            fingerprint=fingerprint,
            credentials=credentials,
            subjects=subjects,
            host=path.host,
            closers=closers,
        )
    except BaseException:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                close()
        raise


def credential_control(state: StateDir) -> Path:
    """The simulated card reader's control FIFO: lines ``card:NUMBER``, ``pin:1234``, ``qr:TEXT``."""
    return state.root / "credential.fifo"


def credential_factory(
    config: AgentConfig, state: StateDir, profile: Profile
) -> Callable[[], CredentialReaderPort] | None:
    from edge.credentials.readers import open_card_reader

    section = config.credentials
    if section.card == "none":
        return None

    def factory() -> CredentialReaderPort:
        reader = open_card_reader(
            section.card,
            url=section.port,
            baud=section.baud,
            control=credential_control(state) if section.card in ("sim", "wiegand") else None,
            gpio=profile.gpio,
            wiegand_formats=section.wiegand_formats,
            wiegand_value=section.wiegand_value,
        )
        if reader is None:
            raise HardwareError("no card reader configured")
        return reader

    return factory

"""Where provisioning reaches hardware and models: the few points the lead wires after merging.

The commands and the check functions (``provisioning.checks``) are written against the agent's
ports; these factories give them the real devices, through the same code the agent uses
(``edge.agent.subsystems``). A subsystem missing from this build, or disabled in the settings, is
reported plainly instead of pretending a device was checked or erased.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.agent.ports import CameraPort, EnrolGalleryPort, EnrolmentPort, FacePipelinePort, FingerEnrolPort
from edge.events.sink import EventSink
from edge.state import StateDir
from provisioning.selftest import Check

#: Erases the fingerprint sensor's template library; returns how many templates it held.
SensorEraser = Callable[[], int]


def _settings(state: StateDir) -> Any:
    from edge.config.load import load_config

    return load_config(state.settings)


def sensor_eraser(state: StateDir) -> SensorEraser | None:
    """The sensor library's erase hook for factory-reset; None when no sensor is configured."""
    if not state.settings.exists():
        return None
    config, profile = _settings(state)
    if not config.fingerprint.enabled:
        return None

    def erase() -> int:
        from edge.agent.subsystems import open_fingerprint

        sensor = open_fingerprint(config, profile)
        try:
            count = int(sensor.template_count())
            sensor.empty()
            return count
        finally:
            sensor.close()

    return erase


class _SensorHealth:
    """``SensorHealthPort`` with ``close`` over the fingerprint library's workflows."""

    def __init__(self, sensor: Any) -> None:
        self.sensor = sensor

    @property
    def capacity(self) -> int:
        return int(self.sensor.capacity)

    def template_count(self) -> int:
        return int(self.sensor.template_count())

    def health(self) -> Any:
        h = self.sensor.health()
        return h.detail or ("ok" if h.ok else "not ok")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sensor.close()


def device_checks(state: StateDir) -> list[Check]:
    """Camera, fingerprint sensor, card reader and model checks for selftest, for what the settings enable."""
    from provisioning.checks import camera_check, card_reader_check, models_check, sensor_check

    if not state.settings.exists():
        return []
    try:
        config, profile = _settings(state)
    except Exception:
        return []  # the settings check reports it
    from edge.agent import subsystems

    checks: list[Check] = []
    pipeline_box: list[Any] = []
    if config.face.enabled:

        def verify() -> object:
            pipeline_box.append(subsystems.load_pipeline(config, profile))  # verifies every hash, loads the models
            return pipeline_box[-1]

        def timed() -> float:
            import numpy as np

            frame = np.full((480, 640, 3), 128, np.uint8)
            started = time.perf_counter()
            pipeline_box[-1].process(frame)
            return time.perf_counter() - started

        checks.append(models_check(verify, timed))
    if config.camera.enabled:

        def open_cam() -> CameraPort:
            return subsystems.open_camera(config, profile)

        class LazyPipeline:
            want_points = False

            def _load(self) -> Any:
                if not pipeline_box:
                    pipeline_box.append(subsystems.load_pipeline(config, profile))
                return pipeline_box[-1]

            def process(self, frame: Any, rule: str = "gate") -> Any:
                return self._load().process(frame, rule)

            def probe(self, frame: Any, rule: str = "gate", uncertain: Any = None) -> Any:
                return self._load().probe(frame, rule, uncertain)

        checks.append(camera_check(open_cam, LazyPipeline() if config.face.enabled else None))
    if config.fingerprint.enabled:
        checks.append(sensor_check(lambda: _SensorHealth(subsystems.open_fingerprint(config, profile))))
    open_reader = subsystems.credential_factory(config, state, profile)
    if open_reader is not None:
        checks.append(card_reader_check(open_reader))
    checks += door_checks(state, config, profile)
    return checks


def door_checks(state: StateDir, config: Any, profile: Any) -> list[Check]:
    """The panel link of a reader mode, and the case switch (issue 15)."""
    from edge.door.modes import door_lines, open_configured_door, open_tamper
    from provisioning.checks import osdp_check, tamper_check, wiegand_out_check

    def open_door(start: bool = True) -> Any:
        return open_configured_door(
            config.door, profile, scbk_path=state.osdp_scbk, exit_pulse_s=config.policy.door_pulse_s, start=start
        )

    checks: list[Check] = []
    if config.door.mode == "osdp":
        checks.append(osdp_check(open_door, secure=config.door.secure, key_path=state.osdp_scbk))
    elif config.door.mode == "wiegand-out":
        checks.append(wiegand_out_check(open_door))

    def open_switch() -> tuple[Any, Any]:
        lines = door_lines(config.door, profile, exit_pulse_s=config.policy.door_pulse_s)
        return open_tamper(lines), lines.close

    checks.append(tamper_check(open_switch))
    return checks


@dataclass
class EnrolPorts:
    """What ``edge-provision enrol`` needs; ``closers`` run when it is done."""

    enforcer: EnrolmentPort
    gallery: EnrolGalleryPort
    sink: EventSink
    camera: Callable[[], CameraPort] | None = None
    pipeline: FacePipelinePort | None = None
    model_id: str = ""
    sensor: Callable[[], FingerEnrolPort] | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    #: applies a signed consent list as `edge consent apply` would (the demo's installer copy)
    apply_list: Callable[[bytes, float], object] | None = None
    #: the config's defaults for the enrol command ([face] enrol_frames, [fingerprint] ...)
    face_frames: int = 5
    finger_captures: int = 2
    finger_timeout_s: float = 10.0
    #: the terminal's duress finger slots (``edge.access.duress.DuressSlots``)
    duress_slots: Any = None
    #: [face] liveness = "challenge": face enrolment starts with an active liveness challenge
    face_challenge: bool = False
    #: site sync (issue 14): share a new enrolment with the gates in the person's consent scope;
    #: None without a sync key. Face: the raw embeddings; finger: the slot just stored.
    share_face: Callable[[str, list[Any]], list[str]] | None = None
    share_finger: Callable[[str, int], list[str]] | None = None


class _FingerEnrol:
    """``FingerEnrolPort`` over the workflows; closes the port when the enrolment is done."""

    def __init__(self, sensor: Any) -> None:
        self.sensor = sensor

    def enrol(self, prompt: Callable[[str], None], captures: int, timeout_s: float) -> Any:
        return self.sensor.enrol(prompt, captures, timeout_s)

    def delete(self, slot: int) -> None:
        self.sensor.delete(slot)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sensor.close()


def enrol_ports(state: StateDir, modality: str | None = None, *, pipeline: Any = None) -> EnrolPorts | None:
    """The real ports for enrolment: the ledger, the gallery, the signed outbox, camera or sensor.

    Stop the agent while enrolling (the sensor's UART has one owner). ``pipeline`` reuses a loaded
    ``FacePipeline`` (the demo); otherwise face enrolment loads the model bundle.
    """
    from edge.agent import subsystems

    config, profile = _settings(state)
    path = subsystems.open_event_path(config, state)
    closers: list[Callable[[], None]] = [path.close]
    try:
        gallery_mod = subsystems.optional_module("edge.gallery.store", "biometric gallery")
        want_face = modality in (None, "face") and config.face.enabled and config.camera.enabled
        if want_face and pipeline is None:
            pipeline = subsystems.load_pipeline(config, profile)
        threshold = None
        if want_face:
            threshold = config.face.threshold or float(pipeline.manifest.threshold)
        gallery = gallery_mod.Gallery.open_configured(state, config.gallery, threshold=threshold)
        closers.append(gallery.close)
        from edge.consent.enforce import Enforcer, Store
        from edge.fingerprint.erasure import EraseQueue
        from edge.gallery.stores import FaceStore, FingerprintStore

        stores: list[Store] = [
            FaceStore(gallery),
            FingerprintStore(gallery, EraseQueue(state.sensor_erase_queue)),
        ]
        enforcer = Enforcer(path.ledger, stores, path.sink, path.audit, purpose=config.consent.purpose)
        ports = EnrolPorts(
            enforcer=enforcer,
            gallery=gallery,
            sink=path.sink,
            apply_list=enforcer.apply,
            face_frames=config.face.enrol_frames,
            finger_captures=config.fingerprint.enrol_captures,
            finger_timeout_s=config.fingerprint.capture_timeout_s,
            face_challenge=config.face.liveness == "challenge",
        )
        ports.closers = closers
        from edge.access.duress import DuressSlots

        ports.duress_slots = DuressSlots(state.duress_slots)
        from edge.sync import wiring as sync_wiring

        family = profile.fingerprint.family if profile.fingerprint is not None else None
        sync = sync_wiring.open_site_sync(
            site=config.device.site,
            state=state,
            identity=path.key,
            ledger=path.ledger,
            enforcer=enforcer,
            gallery=gallery,
            outbox=path.outbox,
            sink=path.sink,
            audit=path.audit,
            face_model=str(pipeline.manifest.model_id) if want_face else None,
            sensor_family=family,
        )
        if sync is not None:
            closers.append(sync.store.close)
            model = str(pipeline.manifest.model_id) if want_face else ""

            def share_face(subject: str, embeddings: list[Any]) -> list[str]:
                return sync_wiring.share_face(sync, subject, embeddings, model, time.time())

            ports.share_face = share_face
        if want_face:
            ports.pipeline = pipeline
            ports.model_id = str(pipeline.manifest.model_id)
            ports.camera = lambda: subsystems.open_camera(config, profile)
        if modality in (None, "fingerprint") and config.fingerprint.enabled:
            opened: list[_FingerEnrol] = []

            def sensor() -> FingerEnrolPort:
                port = _FingerEnrol(subsystems.open_fingerprint(config, profile))
                opened.append(port)
                return port

            ports.sensor = sensor
            if sync is not None and family is not None:

                def share_finger(subject: str, slot: int) -> list[str]:
                    # the template read back from the slot just stored, on the same open port
                    return sync_wiring.share_finger(sync, opened[-1].sensor, subject, slot, family, time.time())

                ports.share_finger = share_finger

            def close_sensors() -> None:
                for port in opened:
                    port.close()

            closers.append(close_sensors)
        return ports
    except BaseException:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                close()
        raise

"""Where provisioning reaches hardware and models: the few points the lead wires after merging.

The commands and the check functions (``provisioning.checks``) are written against the agent's
ports; these factories give them the real devices, through the same code the agent uses
(``edge.agent.assembly``, the devices from the config's ``DevicePlan``). A device disabled in the
settings is reported plainly instead of pretending it was checked or erased.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge.agent.ports import (
    CameraPort,
    Embedding,
    EnrolGalleryPort,
    EnrolmentPort,
    FaceObservation,
    FacePipelinePort,
    FingerEnrolPort,
    Frame,
    Rule,
)
from edge.config.schema import AgentConfig, Profile
from edge.events.sink import EventSink
from edge.state import StateDir
from provisioning.selftest import Check

if TYPE_CHECKING:
    from edge.access.duress import DuressSlots
    from edge.fingerprint.api import EnrolOutcome
    from edge.fingerprint.workflows import SensorWorkflows
    from edge.vision.pipeline import FacePipeline

#: Erases the fingerprint sensor's template library; returns how many templates it held.
SensorEraser = Callable[[], int]


def _settings(state: StateDir) -> tuple[AgentConfig, Profile]:
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
        from edge.agent.assembly import open_fingerprint

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

    def __init__(self, sensor: SensorWorkflows) -> None:
        self.sensor = sensor

    @property
    def capacity(self) -> int:
        return self.sensor.capacity

    def template_count(self) -> int:
        return self.sensor.template_count()

    def health(self) -> str:
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
    from edge.agent import assembly
    from edge.config.final import device_plan

    plan = device_plan(config, profile)
    checks: list[Check] = []
    pipeline_box: list[FacePipeline] = []
    if config.face.enabled:

        def verify() -> object:
            pipeline_box.append(assembly.load_pipeline(config, profile))  # verifies every hash, loads the models
            return pipeline_box[-1]

        def timed() -> float:
            import numpy as np

            frame = np.full((480, 640, 3), 128, np.uint8)
            started = time.perf_counter()
            pipeline_box[-1].process(frame)
            return time.perf_counter() - started

        checks.append(models_check(verify, timed))
    camera_plan = plan.camera
    if camera_plan is not None:

        def open_cam() -> CameraPort:
            return assembly.open_camera(camera_plan)

        class LazyPipeline:
            want_points = False

            def _load(self) -> FacePipeline:
                if not pipeline_box:
                    pipeline_box.append(assembly.load_pipeline(config, profile))
                return pipeline_box[-1]

            def process(self, frame: Frame, rule: Rule = "gate") -> FaceObservation | None:
                return self._load().process(frame, rule)

            def probe(
                self, frame: Frame, rule: Rule = "gate", uncertain: Callable[[Embedding], bool] | None = None
            ) -> FaceObservation | None:
                return self._load().probe(frame, rule, uncertain)

        checks.append(camera_check(open_cam, LazyPipeline() if config.face.enabled else None))
    if plan.fingerprint is not None:
        checks.append(sensor_check(lambda: _SensorHealth(assembly.open_fingerprint(config, profile))))
    open_reader = assembly.credential_factory(plan.credentials, state)
    if open_reader is not None:
        checks.append(card_reader_check(open_reader))
    checks += door_checks(state, config, profile)
    return checks


def door_checks(state: StateDir, config: AgentConfig, profile: Profile) -> list[Check]:
    """The panel link of a reader mode, and the case switch (issue 15)."""
    from edge.door.modes import ConfiguredDoor, door_lines, open_configured_door, open_tamper
    from edge.door.tamper import TamperSwitch
    from provisioning.checks import osdp_check, tamper_check, wiegand_out_check

    def open_door(start: bool = True) -> ConfiguredDoor:
        return open_configured_door(
            config.door, profile, scbk_path=state.osdp_scbk, exit_pulse_s=config.policy.door_pulse_s, start=start
        )

    checks: list[Check] = []
    if config.door.mode == "osdp":
        checks.append(osdp_check(open_door, secure=config.door.secure, key_path=state.osdp_scbk))
    elif config.door.mode == "wiegand-out":
        checks.append(wiegand_out_check(open_door))

    def open_switch() -> tuple[TamperSwitch | None, Callable[[], None]]:
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
    #: the terminal's duress finger slots
    duress_slots: DuressSlots | None = None
    #: [face] liveness = "challenge": face enrolment starts with an active liveness challenge
    face_challenge: bool = False
    #: site sync (issue 14): share a new enrolment with the gates in the person's consent scope;
    #: None without a sync key. Face: the raw embeddings; finger: the slot just stored.
    share_face: Callable[[str, list[Embedding]], list[str]] | None = None
    share_finger: Callable[[str, int], list[str]] | None = None


class _FingerEnrol:
    """``FingerEnrolPort`` over the workflows; closes the port when the enrolment is done."""

    def __init__(self, sensor: SensorWorkflows) -> None:
        self.sensor = sensor

    def enrol(self, prompt: Callable[[str], None], captures: int, timeout_s: float) -> EnrolOutcome:
        return self.sensor.enrol(prompt, captures, timeout_s)

    def delete(self, slot: int) -> None:
        self.sensor.delete(slot)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sensor.close()


def enrol_ports(
    state: StateDir, modality: str | None = None, *, pipeline: FacePipeline | None = None
) -> EnrolPorts | None:
    """The real ports for enrolment: the ledger, the gallery, the signed outbox, camera or sensor.

    Stop the agent while enrolling (the sensor's UART has one owner). ``pipeline`` reuses a loaded
    ``FacePipeline`` (the demo); otherwise face enrolment loads the model bundle.
    """
    from edge.agent import assembly
    from edge.config.final import device_plan
    from edge.events.path import open_event_path
    from edge.gallery.store import Gallery

    config, profile = _settings(state)
    plan = device_plan(config, profile)
    path = open_event_path(config, state)
    closers: list[Callable[[], None]] = [path.close]
    try:
        camera_plan = plan.camera if modality in (None, "face") and config.face.enabled else None
        if camera_plan is not None and pipeline is None:
            pipeline = assembly.load_pipeline(config, profile)
        face = pipeline if camera_plan is not None else None
        threshold = None
        if face is not None:
            threshold = config.face.threshold or float(face.manifest.threshold)
        gallery = Gallery.open_configured(state, config.gallery, threshold=threshold)
        closers.append(gallery.close)
        from edge.consent.enforce import Enforcer, Store
        from edge.fingerprint.erasure import EraseQueue

        stores: list[Store] = assembly.enforcer_stores(gallery, EraseQueue(state.sensor_erase_queue))
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
            face_model=str(face.manifest.model_id) if face is not None else None,
            sensor_family=family,
        )
        if sync is not None:
            closers.append(sync.store.close)
            model = str(face.manifest.model_id) if face is not None else ""

            def share_face(subject: str, embeddings: list[Embedding]) -> list[str]:
                return sync_wiring.share_face(sync, subject, embeddings, model, time.time())

            ports.share_face = share_face
        if face is not None and camera_plan is not None:
            ports.pipeline = face
            ports.model_id = str(face.manifest.model_id)
            ports.camera = lambda: assembly.open_camera(camera_plan)
        if modality in (None, "fingerprint") and plan.fingerprint is not None:
            opened: list[_FingerEnrol] = []

            def sensor() -> FingerEnrolPort:
                port = _FingerEnrol(assembly.open_fingerprint(config, profile))
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

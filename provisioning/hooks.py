"""Where provisioning reaches hardware and models: the few points the lead wires after merging.

Phase 1 ships the commands and the check functions (``provisioning.checks``) against the agent's
ports; these two factories decide which real devices they get. Each returns "nothing" until the
fingerprint, face, gallery and consent modules are merged, and the commands report that plainly instead of
pretending a device was checked or erased.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edge.agent.ports import CameraPort, ConsentPort, EnrolGalleryPort, FacePipelinePort, FingerEnrolPort
from edge.events.sink import EventSink
from edge.state import StateDir
from provisioning.selftest import Check

#: Erases the fingerprint sensor's template library; returns how many templates it held.
SensorEraser = Callable[[], int]


def sensor_eraser(state: StateDir) -> SensorEraser | None:
    """The sensor library's erase hook for factory-reset.

    To wire: load the settings (``edge.config.load_config(state.settings)``), open
    ``FingerprintDriver.open(port, baud=..., address=..., password=...)`` for the configured UART,
    and return a callable doing ``count = sensor.template_count(); sensor.empty(); return count``.
    """
    return None


def device_checks(state: StateDir) -> list[Check]:
    """Camera, fingerprint sensor and model checks for selftest.

    To wire: build them with ``provisioning.checks.camera_check(open_camera, pipeline)``,
    ``sensor_check(open_sensor)`` and ``models_check(lambda: verify_bundle(models_dir))``.
    """
    return []


@dataclass
class EnrolPorts:
    """What ``edge-provision enrol`` needs; ``closers`` run when it is done."""

    consent: ConsentPort
    gallery: EnrolGalleryPort
    sink: EventSink
    purpose: str
    camera: Callable[[], CameraPort] | None = None
    pipeline: FacePipelinePort | None = None
    model_id: str = ""
    sensor: Callable[[], FingerEnrolPort] | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)


def enrol_ports(state: StateDir) -> EnrolPorts | None:
    """The real ports for enrolment.

    To wire: ``load_config(state.settings)``; ``ConsentLedger.open(...)``, ``Gallery.open(...)``,
    the agent's ``OutboxSink``; for face ``open_camera(...)`` and ``FacePipeline.load(...)`` with
    ``model_id = pipeline.manifest.model_id``; for fingerprint ``FingerprintDriver.open(...)``.
    Stop the agent (or share its stores) while enrolling.
    """
    return None

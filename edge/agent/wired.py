"""The ports bundle the agent runs on: what ``edge.agent.assembly.build_wired`` assembles from the
real subsystems, and what tests assemble from doubles. ``edge.agent.wiring.run_agent`` takes it."""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge.access.rules import AccessRules, NoRules
from edge.agent.decide import PolicyPort
from edge.agent.ports import (
    CameraPort,
    ConsentPort,
    CredentialReaderPort,
    FaceEscalation,
    FacePipelinePort,
    FingerprintPort,
    GalleryPort,
    HostPort,
    PanelReport,
)
from edge.door.base import DoorOutput
from edge.events.sink import EventSink
from edge.ops.host import QuietHost
from edge.vision.liveness import LivenessPolicy

if TYPE_CHECKING:
    from edge.sync.service import SiteSync


@dataclass
class Wired:
    gallery: GalleryPort
    consent: ConsentPort
    sink: EventSink
    face_threshold: float = 0.6
    policy: PolicyPort | None = None
    camera: Callable[[], CameraPort] | None = None
    face: FacePipelinePort | None = None
    face_escalation: FaceEscalation | None = None  # None: every frame gets the accurate embedding
    liveness: LivenessPolicy | None = None  # None: no liveness check ([face] liveness = "off")
    #: appends one record to the device's signed audit log (kind, details)
    audit: Callable[[str, dict[str, object]], object] | None = None
    rules: AccessRules = field(default_factory=NoRules)  # schedules, anti-passback (door mode relay)
    panel: PanelReport | None = None  # reader modes: grants go to the site's panel
    #: [security] erase_on_tamper: crypto-erase the gallery (the sensor library is emptied by its thread)
    erase_on_tamper: Callable[[], None] | None = None
    duress: Container[int] = field(default_factory=frozenset)  # duress finger slots
    #: site sync's work on the fingerprint thread (synced templates into the module)
    sensor_chore: Callable[[FingerprintPort], None] | None = None
    site_sync: SiteSync | None = None  # None: no sync key (site-wide enrolment is off)
    fingerprint: Callable[[], FingerprintPort] | None = None
    credentials: Callable[[], CredentialReaderPort] | None = None
    door: DoorOutput | None = None
    subjects: Callable[[], list[str]] = list  # known subject ids, taught to the log redactor at start
    host: HostPort = field(default_factory=QuietHost)  # what health events report about the terminal
    closers: list[Callable[[], None]] = field(default_factory=list)

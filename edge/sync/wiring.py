"""Site sync in the running agent and at enrolment (issue 14): who calls ``SiteSync`` where.

- ``open_site_sync``: the service over this gate's keys and stores, or None when the gate has no
  sync key (provisioned before sync existed: ``edge-provision init`` makes one) — sync is then off
  and everything else runs;
- ``attach``: what the agent's assembly calls once it has the consent thread, the list of MQTT
  subscriptions and the consent receiver: the gate's inbox is subscribed, its messages are queued
  from the MQTT thread (``on_message``) and the consent thread is woken to handle them at once
  (``process``: the enforcer's lock, audit and events, as for a local enrolment; also on each tick,
  for parcels deferred while the list was stale or older than the sender's);
- ``SensorChore``: the fingerprint thread, which owns the sensor, writes waiting fingerprint
  templates into the module (at most once a second);
- ``edge-provision enrol`` shares what it just enrolled: the face embeddings while still in memory
  (``share_face``), the fingerprint template read back from the module's slot (``share_finger``,
  ``SensorWorkflows.template_of``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from edge.state import StateDir

if TYPE_CHECKING:  # the service pulls in numpy and libsodium: imported when sync is opened
    import numpy as np
    from nacl.signing import SigningKey
    from numpy.typing import NDArray

    from edge.audit.log import AuditLog
    from edge.consent.enforce import Enforcer
    from edge.consent.ledger import ConsentLedger
    from edge.events.sink import EventSink
    from edge.sync.service import FaceGallery, RetainedOutbox, SiteSync

log = logging.getLogger(__name__)

#: UpChar template sizes by sensor family (the module's own format; R503: 1536 bytes)
TEMPLATE_SIZE = {"r503": 1536, "r307": 512, "as608": 512, "zfm20": 512}

#: An MQTT message handler: topic, payload, retained
Receiver = Callable[[str, bytes, bool], None]


class SensorTemplates(Protocol):
    """What sync needs of the sensor (``edge.fingerprint.workflows.SensorWorkflows``)."""

    def template_of(self, slot: int, size: int) -> bytes: ...

    def install(self, template: bytes) -> int: ...

    def delete(self, slot: int) -> None: ...


class ConsentThread(Protocol):
    """What sync needs of the agent's consent thread (``ConsentService``): work to run on it, and a
    way to have that work run now rather than at the next tick."""

    @property
    def hooks(self) -> list[Callable[[float], object]]: ...

    def wake(self) -> None: ...


def open_site_sync(
    *,
    site: str,
    state: StateDir,
    identity: SigningKey,
    ledger: ConsentLedger,
    enforcer: Enforcer,
    gallery: FaceGallery | None,
    outbox: RetainedOutbox,
    sink: EventSink,
    audit: AuditLog | None,
    face_model: str | None,
    sensor_family: str | None,
) -> SiteSync | None:
    """The gate's ``SiteSync``, or None without a sync key."""
    if not state.sync_key.exists():
        log.warning("no sync key in %s: site-wide enrolment is off (edge-provision init makes one)", state.root)
        return None
    from edge.crypto.keys import load_box_key
    from edge.sync.service import SiteSync
    from edge.sync.store import SyncStore

    return SiteSync(
        site=site,
        identity=identity,
        box=load_box_key(state.sync_key),
        ledger=ledger,
        enforcer=enforcer,
        gallery=gallery,
        store=SyncStore(state.root / "sync.sqlite3"),
        outbox=outbox,
        sink=sink,
        audit=audit,
        face_model=face_model,
        sensor_family=sensor_family,
    )


def attach(sync: SiteSync, consent: ConsentThread, subscriptions: list[str], receiver: Receiver) -> Receiver:
    """Hook ``sync`` into the agent: its inbox is added to ``subscriptions``, its work to the consent
    thread; returns the MQTT handler to use instead of ``receiver``: inbox messages go to sync (queued,
    then the consent thread is woken), everything else to ``receiver``."""
    consent.hooks.append(sync.process)
    subscriptions.append(sync.subscription)
    prefix = f"sites/{sync.site}/sync/"

    def route(topic: str, payload: bytes, retained: bool) -> None:
        if topic.startswith(prefix):
            sync.on_message(topic, payload, retained)
            consent.wake()  # handled at once on the consent thread, not at the next tick
        else:
            receiver(topic, payload, retained)

    return route


class SensorChore:
    """The fingerprint thread's part: waiting synced templates into the module, at most once a second."""

    def __init__(self, sync: SiteSync, every_s: float = 1.0) -> None:
        self.sync = sync
        self.every_s = every_s
        self._next = 0.0

    def __call__(self, sensor: SensorTemplates) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every_s
        self.sync.install_waiting(sensor.install, sensor.delete, time.time())


def share_face(
    sync: SiteSync | None, subject: str, embeddings: Sequence[NDArray[np.floating[Any]]], model: str, now: float
) -> list[str]:
    if sync is None or not embeddings:
        return []
    return sync.share_face(subject, embeddings, model, int(now), now)


def share_finger(
    sync: SiteSync | None, sensor: SensorTemplates, subject: str, slot: int, family: str, now: float
) -> list[str]:
    """Read the enrolled slot's template back from the module and share it (sealed at once)."""
    if sync is None:
        return []
    template = sensor.template_of(slot, TEMPLATE_SIZE.get(family, 512))
    try:
        return sync.share_fingerprint(subject, template, family, int(now), now)
    finally:
        del template

"""Site sync in the running agent and at enrolment (issue 14): who calls ``SiteSync`` where.

- ``open_site_sync``: the service over this gate's keys and stores, or None when the gate has no
  sync key (provisioned before sync existed: ``edge-provision init`` makes one) — sync is then off
  and everything else runs;
- the agent subscribes the service's inbox filter (``subscription``) and hands those messages to
  ``on_message`` (MQTT thread: queue only); the consent thread calls ``process`` on each tick (the
  enforcer's lock, audit and events, as for a local enrolment); the fingerprint thread, which owns
  the sensor, calls ``sensor_chore`` (at most once a second) to write waiting fingerprint templates
  into the module;
- ``edge-provision enrol`` shares what it just enrolled: the face embeddings while still in memory,
  the fingerprint template read back from the module's slot (``SensorWorkflows.template_of``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from edge.state import StateDir

log = logging.getLogger(__name__)

#: UpChar template sizes by sensor family (the module's own format; R503: 1536 bytes)
TEMPLATE_SIZE = {"r503": 1536, "r307": 512, "as608": 512, "zfm20": 512}


class SensorTemplates(Protocol):
    def template_of(self, slot: int, size: int) -> bytes: ...

    def install(self, template: bytes) -> int: ...

    def delete(self, slot: int) -> None: ...


def open_site_sync(
    *,
    site: str,
    state: StateDir,
    identity: SigningKey,
    ledger: Any,
    enforcer: Any,
    gallery: Any,
    outbox: Any,
    sink: Any,
    audit: Any,
    face_model: str | None,
    sensor_family: str | None,
) -> Any:
    """The gate's ``SiteSync``, or None without a sync key."""
    if not state.sync_key.exists():
        log.warning("no sync key in %s: site-wide enrolment is off (edge-provision init makes one)", state.root)
        return None
    from edge.crypto.keys import load_box_key
    from edge.sync.service import SiteSync
    from edge.sync.store import SyncStore

    box: PrivateKey = load_box_key(state.sync_key)
    return SiteSync(
        site=site,
        identity=identity,
        box=box,
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


class SensorChore:
    """The fingerprint thread's part: waiting synced templates into the module, at most once a second."""

    def __init__(self, sync: Any, every_s: float = 1.0) -> None:
        self.sync = sync
        self.every_s = every_s
        self._next = 0.0

    def __call__(self, sensor: SensorTemplates) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every_s
        self.sync.install_waiting(sensor.install, sensor.delete, time.time())


def share_face(sync: Any, subject: str, embeddings: Sequence[Any], model: str, now: float) -> list[str]:
    if sync is None or not embeddings:
        return []
    return list(sync.share_face(subject, embeddings, model, int(now), now))


def share_finger(sync: Any, sensor: SensorTemplates, subject: str, slot: int, family: str, now: float) -> list[str]:
    """Read the enrolled slot's template back from the module and share it (sealed at once)."""
    if sync is None:
        return []
    template = sensor.template_of(slot, TEMPLATE_SIZE.get(family, 512))
    try:
        return list(sync.share_fingerprint(subject, template, family, int(now), now))
    finally:
        del template


def tick_hook(sync: Any) -> Callable[[float], object] | None:
    return None if sync is None else sync.process

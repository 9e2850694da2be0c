"""The production ``EventSink``: guard, sign with the event's topic, commit to the outbox.

``emit`` only writes SQLite (one transaction) and returns; the ``MqttPublisher`` thread delivers.
A body the egress guard refuses raises ``EgressRefused`` after the refusal is audited; nothing is
queued and no sequence number is used. ``publish(kind, body)`` is the same path for a body that is
already a map (tools replaying bodies, the guard's own tests); producers build typed events.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from edge.events.envelope import EventSigner
from edge.events.guard import AuditLog, check
from edge.events.kinds import AnyEvent
from edge.transport import topics
from edge.transport.outbox import Outbox

log = logging.getLogger(__name__)


class OutboxSink:
    def __init__(self, signer: EventSigner, outbox: Outbox, site: str, *, audit: AuditLog | None = None) -> None:
        self.signer = signer
        self.outbox = outbox
        self.site = site
        self.audit = audit if audit is not None else signer.audit
        if outbox.on_alarm is None:
            outbox.on_alarm = self.emit  # the outbox's own alarms (high, dropped, rejected) are events too

    def topic(self, kind: str) -> str:
        return topics.for_event(self.site, self.signer.device_id, kind)

    def emit(self, event: AnyEvent) -> None:
        self.publish(event.kind, event.body())

    def emit_durably(self, event: AnyEvent) -> None:
        """``emit``, but only once the event is committed to the outbox's file: raises
        ``StorageUnavailable`` on a full or read-only disk instead of holding it in memory (the
        enforcer's deletion receipts: their unit of work stays open until the receipt is durable)."""
        self.publish(event.kind, event.body(), durable=True)

    def publish(self, kind: str, body: Mapping[str, object], *, durable: bool = False) -> None:
        clean = check(kind, body, audit=self.audit)
        topic = self.topic(kind)
        self.outbox.append(topic, lambda seq: self.signer.sign_with_seq(topic, kind, clean, seq), durable=durable)

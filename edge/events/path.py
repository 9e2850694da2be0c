"""The device's signed event path, opened as ``edge run`` and the installer's tools need it.

Device key, then the audit log, outbox and consent ledger (``edge.ops.degrade.open_event_stores``:
a damaged store is set aside and started afresh, one that cannot open runs on a fallback), then
``EventSigner`` and ``OutboxSink``: the one place events are guarded, signed and committed.
"""

from __future__ import annotations

from dataclasses import dataclass

from nacl.signing import SigningKey

from edge.audit.log import AuditLog
from edge.config.schema import AgentConfig
from edge.consent.ledger import ConsentLedger
from edge.crypto.keys import device_id, load_signing_key
from edge.errors import EdgeError
from edge.events.envelope import EventSigner
from edge.events.outbox_sink import OutboxSink
from edge.ops.degrade import EventStores, open_event_stores
from edge.ops.host import Host
from edge.state import StateDir
from edge.transport.outbox import Outbox


@dataclass
class EventPath:
    """The device key, the stores (``stores.notes`` says which run on a fallback), the signed sink and
    the host facts. ``audit`` is None when no audit log opens (biometric decisions are then off)."""

    key: SigningKey
    device_id: str
    audit: AuditLog | None
    outbox: Outbox
    ledger: ConsentLedger
    sink: OutboxSink
    host: Host
    stores: EventStores

    def close(self) -> None:
        self.stores.close()


def open_event_path(config: AgentConfig, state: StateDir) -> EventPath:
    if not state.identity_key.exists():
        raise EdgeError(f"{state.root} holds no device identity", hint="run `edge-provision init` first")
    key = load_signing_key(state.identity_key)
    dev = device_id(key.verify_key)
    stores = open_event_stores(config, state, key, dev)
    audit, outbox, ledger = stores.audit, stores.outbox, stores.ledger
    sink = OutboxSink(EventSigner(key, dev, outbox, audit=audit), outbox, config.device.site, audit=audit)
    return EventPath(key, dev, audit, outbox, ledger, sink, Host(outbox.depth, state.root), stores)

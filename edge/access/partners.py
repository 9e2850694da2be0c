"""Anti-passback across terminals: the passages other gates of this gate's area report (issue 15).

An entry gate and an exit gate are two terminals. Each one records the passages it releases
itself (``edge.access.rules``); the passages at the other gates of the same area reach it as their
signed ``access`` events over MQTT. :class:`PartnerPassages` takes each one, verifies it with the
sending gate's key from the signed list's gate roster (the site verifier's own checks: topic
binding, signature, schema, replay), and records a granted passage with that gate's direction, so
every gate of the area converges on who is inside (the latest passage wins; see
``edge.access.passback``).

Only gates the roster puts in the same area count; everything else on the topic is ignored. The
broker ACL lets a gate read exactly its partners' access topics (``edge.site.acl``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from edge.access.passback import Direction, Passage, PassbackLog
from edge.consent.listformat import Gate
from edge.site.registry import Registry
from edge.site.verifier import Rejected, Verifier
from edge.transport import topics

log = logging.getLogger(__name__)


def partners_of(gates: Mapping[str, Gate], device: str) -> dict[str, Gate]:
    """The other gates of ``device``'s anti-passback area in the roster."""
    me = gates.get(device)
    if me is None or me.passback is None:
        return {}
    area = me.passback.area
    return {gid: g for gid, g in gates.items() if gid != device and g.passback is not None and g.passback.area == area}


def access_filter(site: str) -> str:
    """The subscription for other gates' access events (the ACL narrows it to this gate's partners)."""
    return f"sites/{site}/gates/+/events/access"


class PartnerPassages:
    def __init__(self, site: str, device: str, roster: Callable[[], Mapping[str, Gate]], log_: PassbackLog) -> None:
        self.site = site
        self.device = device
        self.roster = roster
        self.log = log_
        self._verifier: Verifier | None = None
        self._keyed: dict[str, bytes] = {}
        self.recorded = 0
        self.rejected = 0

    def _current(self) -> tuple[dict[str, Gate], Verifier | None]:
        partners = partners_of(self.roster(), self.device)
        keys = {gid: g.public_key for gid, g in partners.items()}
        if keys != self._keyed:  # a new list changed the area's gates: a verifier for the new roster
            registry = Registry()
            for gate in partners.values():
                registry.add(self.site, gate.public_key)
            self._verifier = Verifier(registry) if partners else None
            self._keyed = keys
        return partners, self._verifier

    def on_message(self, topic: str, payload: bytes) -> bool:
        """Handle one message on the access filter; True when it recorded a passage."""
        try:
            where = topics.parse_event(topic)
        except Exception:
            return False
        if where.device_id == self.device or where.kind != "access":
            return False
        partners, verifier = self._current()
        gate = partners.get(where.device_id)
        if gate is None or verifier is None or gate.passback is None:
            return False
        try:
            event = verifier.verify(topic, payload)
        except Rejected as exc:
            self.rejected += 1
            log.warning("anti-passback: an access event from %s was rejected (%s)", where.device_id, exc.reason)
            return False
        subject = event.body.get("subject")
        if event.body.get("decision") != "granted" or not isinstance(subject, str):
            return False
        direction: Direction = "in" if gate.passback.direction == "in" else "out"
        changed = self.log.record(Passage(gate.passback.area, subject, direction, float(event.iat), gate.id, event.seq))
        self.recorded += int(changed)
        return changed

"""The topic layout under ``sites/{site}/...`` (pure; documented in docs/mqtt.md).

- ``sites/{site}/gates/{device}/events/{kind}``  signed events (QoS 1, not retained)
- ``sites/{site}/gates/{device}/availability``   ``online`` / ``offline`` (retained; last will)
- ``sites/{site}/consent``                        the signed consent list (retained, site authority)
- ``sites/{site}/consent/chunks/{sha256 hex}``    the chunks of a list too large for one message

Every topic the product builds comes from here, with its levels checked; the consent topics above
are built nowhere else (the authority publishes and the device subscribes with the same strings).

Site and device ids are single topic levels: no ``/``, ``+``, ``#`` or ``$``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge.errors import TransportError

LEVEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def _level(name: str, value: str) -> str:
    if not LEVEL.fullmatch(value):
        raise TransportError(
            f"{name} {value[:70]!r} cannot be a topic level",
            hint="use letters, digits, '_', '.', '-' (no '/', '+', '#'), at most 64 characters",
        )
    return value


def for_event(site: str, device_id: str, kind: str) -> str:
    if not KIND.fullmatch(kind):
        raise TransportError(f"event kind {kind[:40]!r} cannot be a topic level")
    return f"sites/{_level('site', site)}/gates/{_level('device id', device_id)}/events/{kind}"


def availability(site: str, device_id: str) -> str:
    return f"sites/{_level('site', site)}/gates/{_level('device id', device_id)}/availability"


def consent(site: str) -> str:
    """Where the site authority publishes the signed consent list (retained)."""
    return f"sites/{_level('site', site)}/consent"


def consent_chunks(site: str) -> str:
    """The prefix of a site's consent-list chunk topics."""
    return consent(site) + "/chunks/"


def consent_chunk(site: str, digest: bytes) -> str:
    """The chunk whose SHA-256 is ``digest``."""
    return consent_chunks(site) + digest.hex()


def consent_subscriptions(site: str) -> list[str]:
    """What a device subscribes to for its site's list: the list topic and its chunk topics."""
    return [consent(site), consent_chunks(site) + "+"]


def events_filter(site: str = "+") -> str:
    """The subscription filter for every device's events on one site (or all sites)."""
    return f"sites/{site}/gates/+/events/#"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT v5 shared subscription: instances in one group split the messages between them."""
    _level("share group", group)
    return f"$share/{group}/{topic_filter}"


@dataclass(frozen=True)
class EventTopic:
    site: str
    device_id: str
    kind: str


def parse_event(topic: str) -> EventTopic:
    parts = topic.split("/")
    if (
        len(parts) != 6
        or parts[0] != "sites"
        or parts[2] != "gates"
        or parts[4] != "events"
        or not LEVEL.fullmatch(parts[1])
        or not LEVEL.fullmatch(parts[3])
        or not KIND.fullmatch(parts[5])
    ):
        raise TransportError(f"not an event topic: {topic[:120]!r}")
    return EventTopic(site=parts[1], device_id=parts[3], kind=parts[5])

"""The broker's ACL file, generated from the site's device registry. Pure.

Mosquitto's ACL patterns substitute only ``%u`` (username) and ``%c`` (client id); neither names
a device's site, so a pattern cannot say "a device reads its own site's consent list". Instead
the static part below (site services, and each device's writes keyed on ``%u``) is followed by one
block per registered device granting read access to its own site's list and chunk topics:

    user gw-0123456789abcdef
    topic read sites/hq/consent
    topic read sites/hq/consent/chunks/+
    topic write sites/hq/sync/+/gw-0123456789abcdef/+
    topic readwrite sites/hq/sync/gw-0123456789abcdef/+/+

The last two are template sync (``edge.sync``, docs/sync.md): a gate sends sealed parcels to any
gate of its own site, naming itself as sender, and reads (and clears, once handled) only the
parcels addressed to it. A gate of an anti-passback area (``passback`` in the registry) also reads
the ``access`` events of the other gates of that area (``topic read
sites/hq/gates/gw-.../events/access``, one line per partner), and no other gate's events.

``edge-site broker-acl --registry devices.json --out acl`` writes the file; install it as
``/etc/mosquitto/gate-edge/acl`` and send Mosquitto SIGHUP (it rereads the ACL). A device not in
the registry reads no consent list at all. ``docs/mosquitto/acl`` is this output for an empty
registry (a test keeps them equal).
"""

from __future__ import annotations

from edge.site.registry import Device, Registry
from edge.transport import topics

STATIC = """\
# gate-edge broker ACL (Mosquitto acl_file), as written by `edge-site broker-acl`.
# Read by docs/mosquitto/gate-edge.conf. Regenerate it from the site's device registry whenever a
# device is added or moved: `edge-site broker-acl --registry devices.json --out acl`, then SIGHUP.
#
# Identity is the MQTT username (%u): the device certificate's CN on the mTLS listener
# (use_identity_as_username), or the password-file user on the password listener. Device ids are
# derived from the device's public key, so they are unique across sites.
#
# Why %u and not %c for writes: the client id (%c) is whatever the client sends, so a pattern on %c
# would let any authenticated client write another device's topics by choosing its client id. The
# device publisher uses its device id as client id too, but nothing here trusts it.
#
# Reads of consent lists are per device (the blocks at the end): a pattern cannot name a device's
# site, and `pattern read sites/+/consent` let any device read every site's list.

# Site services.
user site-verifier
topic read sites/+/gates/+/events/#
topic read sites/+/gates/+/availability

user site-authority
topic readwrite sites/+/consent
topic readwrite sites/+/consent/chunks/+

# Every device: write its own events and availability (including its last will).
pattern write sites/+/gates/%u/events/#
pattern readwrite sites/+/gates/%u/availability

# Each registered device reads its own site's consent list and the list's chunks, sends template
# parcels to the gates of its own site, and reads (and clears) only the parcels addressed to it.
"""


def _partner_reads(registry: Registry, dev: Device) -> str:
    """Anti-passback: a gate reads the access events of the other gates of its area, and no others."""
    if dev.passback is None:
        return ""
    partners = sorted(
        other.device_id
        for other in registry.devices.values()
        if other.device_id != dev.device_id
        and other.site == dev.site
        and other.passback is not None
        and other.passback.area == dev.passback.area
    )
    return "".join(f"topic read sites/{dev.site}/gates/{p}/events/access\n" for p in partners)


def render_acl(registry: Registry) -> str:
    """The whole ACL file for the devices in ``registry``."""
    blocks = [
        f"user {dev.device_id}\n"
        + "".join(f"topic read {topic}\n" for topic in topics.consent_subscriptions(dev.site))
        + f"topic write sites/{dev.site}/sync/+/{dev.device_id}/+\n"
        f"topic readwrite sites/{dev.site}/sync/{dev.device_id}/+/+\n" + _partner_reads(registry, dev)
        for dev in sorted(registry.devices.values(), key=lambda d: d.device_id)
    ]
    return STATIC + ("\n" + "\n".join(blocks) if blocks else "")

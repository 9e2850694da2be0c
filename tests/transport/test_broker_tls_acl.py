"""The production broker config (TLS, mTLS, passwords, per-device ACL) against real clients."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest

from edge.crypto.cose import sign1
from edge.crypto.keys import key_id
from edge.errors import TransportError
from edge.events.envelope import EventSigner
from edge.events.kinds import Health
from edge.events.outbox_sink import OutboxSink
from edge.transport import topics
from edge.transport.mqtt import Backoff, MqttPublisher, MqttSettings, close, connect, make_client, publish_once
from edge.transport.outbox import Outbox
from tests.transport.broker_fixtures import ProductionBroker
from tests.transport.mqtt_helpers import Collector

pytestmark = pytest.mark.mosquitto


def test_device_a_cannot_publish_on_device_b_topics(tmp_path: Path, production_broker: ProductionBroker) -> None:
    prod = production_broker
    a, b = prod.ids["a"], prod.ids["b"]
    watcher = Collector(prod.password_settings("site-verifier"), "sites/+/gates/+/events/#")
    alarms: list[str] = []
    outbox = Outbox(tmp_path / "a.sqlite3", on_alarm=lambda alarm: alarms.append(alarm.code))
    signer = EventSigner(prod.keys["a"], a, outbox)
    sink = OutboxSink(signer, outbox, "hq")
    body = {"uptime_s": 1, "outbox_depth": 0}
    # A tries B's topic: correctly signed by A for that topic, so only the ACL can stop it.
    b_topic = topics.for_event("hq", b, "health")
    outbox.put(b_topic, signer.sign(b_topic, "health", body), seq=0)
    sink.emit(Health(uptime_s=1, outbox_depth=0))  # and A's own event (the same body), which must get through
    publisher = MqttPublisher(prod.device_settings("a"), outbox, site="hq", device_id=a, backoff=Backoff(0.05, 0.3))
    try:
        publisher.start()
        assert publisher.wait_drained(15)
        assert watcher.until(lambda: len(watcher.messages) >= 1, 10)
        watcher.until(lambda: False, 1.0)  # give a wrongly routed message time to show up
    finally:
        publisher.stop()
        watcher.close()
    assert [t for t, _, _ in watcher.messages] == [topics.for_event("hq", a, "health")]
    # Mosquitto answers an MQTT v5 publish it denies with PUBACK "not authorised": the row is set aside.
    assert outbox.rejected_count() == 1
    assert alarms == ["outbox_rejected"]
    outbox.close()


def test_a_password_device_is_held_to_its_own_topics_too(production_broker: ProductionBroker) -> None:
    prod = production_broker
    c, a = prod.ids["c"], prod.ids["a"]
    settings = prod.password_settings(c)
    key = prod.keys["c"]
    own = topics.for_event("hq", c, "tamper")
    payload = sign1(key, key_id(key.verify_key), cbor2.dumps({"x": 1}), own.encode())
    publish_once(settings, own, payload, client_id=c)
    with pytest.raises(TransportError, match="refused the publish"):
        publish_once(settings, topics.for_event("hq", a, "tamper"), payload, client_id=c)
    with pytest.raises(TransportError, match="refused the publish"):
        publish_once(settings, topics.consent("hq"), payload, client_id=c)  # only the authority writes lists


def test_connections_without_valid_credentials_are_refused(production_broker: ProductionBroker) -> None:
    prod = production_broker
    tries = {
        "no client certificate on the mTLS listener": MqttSettings.from_url(
            f"mqtts://127.0.0.1:{prod.mtls_port}", ca_file=prod.pki["ca"], connect_timeout_s=3
        ),
        "wrong password": prod.password_settings("site-verifier", "guess", connect_timeout_s=3),
        "no TLS on a TLS listener": MqttSettings.from_url(
            f"mqtt://127.0.0.1:{prod.password_port}", connect_timeout_s=3
        ),
        "a broker certificate from another CA": MqttSettings.from_url(
            f"mqtts://127.0.0.1:{prod.password_port}",
            ca_file=Path("/etc/ssl/certs/ca-certificates.crt"),
            username="site-verifier",
            password="verifier-secret",
            connect_timeout_s=3,
        ),
    }
    for what, settings in tries.items():
        client = make_client(settings, "probe")
        with pytest.raises(TransportError):
            connect(client, settings)
        close(client)
        print("refused as expected:", what)
    # And the good ones are accepted (CONNACK success).
    for settings in (prod.device_settings("a"), prod.password_settings("site-verifier")):
        client = make_client(settings, "probe-ok")
        connect(client, settings)
        client.disconnect()
        client.loop(0.05)
        close(client)


def test_the_authority_publishes_the_retained_consent_list_and_devices_read_it(
    production_broker: ProductionBroker,
) -> None:
    prod = production_broker
    consent_topic = topics.consent("hq")
    publish_once(prod.password_settings("site-authority"), consent_topic, b"signed-list", retain=True)
    reader = Collector(prod.device_settings("b"), consent_topic)  # a device may read the retained list
    try:
        assert reader.until(lambda: reader.messages, 5)
        assert reader.messages[0][1:] == (b"signed-list", True)
    finally:
        reader.close()


def test_a_device_reads_only_its_own_sites_consent_list(production_broker: ProductionBroker) -> None:
    """Issue 17 finding 7: with `pattern read sites/+/consent`, device d of site `other` read hq's
    list (pseudonyms, modalities, credential digests). Now each device reads its own site's only."""
    prod = production_broker
    authority = prod.password_settings("site-authority")
    for site in ("hq", "other"):
        publish_once(authority, topics.consent(site), f"list of {site}".encode(), retain=True)
        chunk = f"sites/{site}/consent/chunks/{'0' * 64}"
        publish_once(authority, chunk, f"chunk of {site}".encode(), retain=True)
    seen: dict[str, list[bytes]] = {}
    for name in ("a", "d"):
        reader = Collector(prod.device_settings(name), "sites/+/consent")  # asks for every site's list
        try:
            reader.client.subscribe("sites/+/consent/chunks/+", qos=1)
            reader.client.subscribe("sites/hq/consent", qos=1)
            reader.client.subscribe("sites/other/consent", qos=1)
            reader.until(lambda: False, 1.5)  # retained messages arrive right after each SUBACK
        finally:
            reader.close()
        seen[name] = sorted({payload for _, payload, _ in reader.messages})
    assert seen["a"] == [b"chunk of hq", b"list of hq"]
    assert seen["d"] == [b"chunk of other", b"list of other"]
    # a password device is held to its site too
    c = prod.ids["c"]
    reader = Collector(prod.password_settings(c), "sites/+/consent", client_id=c)
    try:
        reader.until(lambda: False, 1.0)
    finally:
        reader.close()
    assert [payload for _, payload, _ in reader.messages] == [b"list of hq"]


def test_the_shipped_acl_is_the_generator_output_for_no_devices() -> None:
    from edge.site.acl import render_acl
    from edge.site.registry import Registry
    from edge.testing.mosquitto import DOCS_MOSQUITTO

    assert (DOCS_MOSQUITTO / "acl").read_text() == render_acl(Registry())
    lines = render_acl(Registry()).splitlines()
    assert not [line for line in lines if line.startswith("pattern") and "consent" in line]

"""A 100k-subject consent list with cards, from the authority to a terminal, through the shipped broker.

The broker runs docs/mosquitto/gate-edge.conf as shipped (TLS, mTLS, `max_packet_size 1048576`)
with the ACL `edge-site broker-acl` writes; the authority publishes over the password listener as
`site-authority`, a device (its own certificate, site `hq`) subscribes to its site's list and
chunk topics with the receiver the agent uses, joins the chunks, and its ledger verifies and
applies the list. Printed: list bytes, chunks, wire bytes, publish time, time until the device
holds the whole list, apply time.

Peer, in the same run: the same list as one message through a plain Mosquitto without a packet
limit (what publishing was before issue 17; refused by the shipped config).

    .venv/bin/python benchmarks/bench_consent_distribution.py [--subjects 100000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nacl.signing import SigningKey  # noqa: E402

from edge.consent import trust  # noqa: E402
from edge.consent.authority import Authority  # noqa: E402
from edge.consent.distribution import (  # noqa: E402
    Broker,
    ConsentReceiver,
    pinned_keys,
    publish_list_report,
)
from edge.consent.ledger import ConsentLedger  # noqa: E402
from edge.crypto.keys import device_id  # noqa: E402
from edge.site.acl import render_acl  # noqa: E402
from edge.site.registry import Registry  # noqa: E402
from edge.state import StateDir  # noqa: E402
from edge.testing.mosquitto import Mosquitto, free_port, make_pki, production_config, write_passwords  # noqa: E402
from edge.transport import topics  # noqa: E402
from edge.transport.mqtt import MqttSettings, close, connect, guarded, make_client  # noqa: E402


def receive(settings: MqttSettings, site: str, state: StateDir, timeout_s: float) -> tuple[bytes, float]:
    lists: list[bytes] = []
    receiver = ConsentReceiver(site, pinned_keys(state), lists.append)
    client = make_client(settings, f"bench-device-{time.monotonic_ns()}")
    connect(client, settings)
    client.on_message = guarded("on_message", lambda _c, _u, m: receiver.on_message(m.topic, bytes(m.payload), True))
    started = time.perf_counter()
    for topic in topics.consent_subscriptions(site):
        client.subscribe(topic, qos=1)
    deadline = time.monotonic() + timeout_s
    while not lists and time.monotonic() < deadline:
        client.loop(timeout=0.05)
    took = time.perf_counter() - started
    client.disconnect()
    client.loop(timeout=0.05)
    close(client)
    if not lists:
        raise SystemExit("the device did not receive the whole list")
    return lists[0], took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-distribution-"))

    auth = Authority(work / "authority")
    auth.keygen("hq")
    roster = work / "roster.csv"
    lines = ["subject,purposes,modalities,card"]
    lines += [f"s-{i:07d},access:main-gate,face;fingerprint,{10_000_000 + i}" for i in range(args.subjects)]
    roster.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    message, _ = auth.issue(auth.read_roster(roster, now=time.time()), now=time.time())
    issue_s = time.perf_counter() - started
    state_doc = auth.load_state()
    key = auth.signing_key(state_doc.active_kid)

    device_key = SigningKey.generate()
    dev = device_id(device_key.verify_key)
    etc = work / "etc"
    pki = make_pki(etc, [dev])
    registry = Registry()
    registry.add("hq", device_key.verify_key)
    (etc / "acl").write_text(render_acl(registry))
    write_passwords(etc / "passwd", {"site-authority": "bench-secret"})
    mtls, password = free_port(), free_port()
    broker = Mosquitto(work / "broker", port=mtls, config_text=production_config(mtls, password, etc, work / "data"))
    plain = Mosquitto(work / "plain")
    broker.start()
    plain.start()
    try:
        state = StateDir(work / "device")
        state.ensure()
        for pub in auth.root.glob("consent-authority-*.pub"):
            trust.pin(state, bytes.fromhex(pub.read_text()))
        trust.install_credential_key(state, auth.credential_key())

        shipped = Broker(f"mqtts://127.0.0.1:{password}", "site-authority", "bench-secret", pki["ca"])
        report = publish_list_report(shipped, "hq", message, timeout_s=60, signing_key=key, version=state_doc.version)
        device = MqttSettings.from_url(
            f"mqtts://127.0.0.1:{mtls}", ca_file=pki["ca"], cert_file=pki[f"{dev}.cert"], key_file=pki[f"{dev}.key"]
        )
        whole, receive_s = receive(device, "hq", state, 120)
        assert whole == message
        ledger = ConsentLedger.open(state, "hq", grace_period_s=3600)
        started = time.perf_counter()
        outcome = ledger.apply(whole, time.time())
        apply_s = time.perf_counter() - started
        held = len(ledger.entries())
        ledger.close()

        # the peer: one message, a broker without a packet limit
        peer_started = time.perf_counter()
        import edge.consent.chunks as chunking

        chunking.SINGLE_MESSAGE_MAX = len(message) + 1
        peer = publish_list_report(Broker(plain.url), "hq", message, timeout_s=60)
        peer_publish_s = time.perf_counter() - peer_started
        whole_peer, peer_receive_s = receive(MqttSettings.from_url(plain.url), "hq", state, 120)
        assert whole_peer == message
    finally:
        broker.stop()
        plain.stop()

    wire = report.size + report.chunks * 64  # chunk payloads plus topic names
    print(f"subjects with a card:            {args.subjects}")
    print(f"signed list:                     {len(message)} bytes (issued in {issue_s:.1f} s)")
    print("shipped broker max_packet_size:  1048576 bytes")
    print(f"chunks:                          {report.chunks} x up to {report.chunk_bytes} bytes + a signed manifest")
    print(f"payload bytes on the wire:       ~{wire}")
    print(
        f"publish (TLS, every PUBACK):     {report.seconds:.2f} s   peer, one message, no limit: {peer_publish_s:.2f} s"
    )
    print(f"device holds the whole list:     {receive_s:.2f} s   peer: {peer_receive_s:.2f} s")
    print(f"device verifies and applies it:  {apply_s:.2f} s (version {outcome.version}, {held} entries)")
    assert peer.chunks == 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue 17 finding 2: a list larger than the shipped broker's max_packet_size reaches a terminal.

Before: `edge-site consent publish` of a 10k-subject list with cards (1.8 MB) was disconnected by
the broker ("oversize packet") and died with an uncaught RuntimeError. Now it goes as a signed
manifest and chunks named by hash, through the shipped config and the generated ACL, and device A
(its own certificate) joins them with the receiver the agent uses and applies the list. The
benchmark `benchmarks/bench_consent_distribution.py` does the same with 100k subjects.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from edge.cli.site import main as site_main
from edge.consent import trust
from edge.consent.authority import Authority
from edge.consent.chunks import is_manifest
from edge.consent.distribution import Broker, ConsentReceiver, fetch_retained_list, pinned_keys
from edge.consent.ledger import ConsentLedger
from edge.state import StateDir
from edge.transport import topics
from edge.transport.mqtt import MqttSettings, close, connect, guarded, make_client
from tests.transport.broker_fixtures import ProductionBroker

pytestmark = pytest.mark.mosquitto


def roster_csv(path: Path, n: int) -> Path:
    lines = ["subject,purposes,modalities,card"]
    lines += [f"s-{i:06d},access:main-gate,face;fingerprint,{1_000_000 + i}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def receive_on_device(settings: MqttSettings, site: str, state: StateDir, timeout_s: float) -> list[bytes]:
    """What the agent's consent subscription hands its consent service (a real device client)."""
    lists: list[bytes] = []
    receiver = ConsentReceiver(site, pinned_keys(state), lists.append)
    client = make_client(settings, "device-consent-probe")
    connect(client, settings)
    client.on_message = guarded(
        "on_message", lambda _c, _u, m: receiver.on_message(m.topic, bytes(m.payload), bool(m.retain))
    )
    for topic in topics.consent_subscriptions(site):
        client.subscribe(topic, qos=1)
    deadline = time.monotonic() + timeout_s
    try:
        while not lists and time.monotonic() < deadline:
            client.loop(timeout=0.05)
    finally:
        client.disconnect()
        client.loop(timeout=0.05)
        close(client)
    return lists


def test_a_10k_list_with_cards_is_published_in_chunks_and_applied_by_a_device(
    tmp_path: Path, production_broker: ProductionBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    prod = production_broker
    root = tmp_path / "authority"
    assert site_main(["consent", "--dir", str(root), "keygen", "--site", "hq"]) == 0
    roster = roster_csv(tmp_path / "roster.csv", 10_000)
    assert site_main(["consent", "--dir", str(root), "issue", str(roster)]) == 0
    message = (root / "lists" / "hq-v1.cose").read_bytes()
    assert len(message) > 1_048_576  # over the shipped max_packet_size
    url = f"mqtts://127.0.0.1:{prod.password_port}"
    publish = [
        "consent", "--dir", str(root), "publish", "--broker", url, "--ca-file", str(prod.pki["ca"]),
        "--username", "site-authority", "--password", prod.passwords["site-authority"],
    ]  # fmt: skip
    capsys.readouterr()
    assert site_main(publish) == 0
    assert "in 4 chunks of up to 524288 bytes" in capsys.readouterr().out

    state = StateDir(tmp_path / "device")
    state.ensure()
    for pub in root.glob("consent-authority-*.pub"):
        trust.pin(state, bytes.fromhex(pub.read_text()))
    trust.install_credential_key(state, Authority(root).credential_key())
    (whole,) = receive_on_device(prod.device_settings("a"), "hq", state, 20)
    assert hashlib.sha256(whole).digest() == hashlib.sha256(message).digest()
    ledger = ConsentLedger.open(state, "hq", grace_period_s=3600)
    try:
        outcome = ledger.apply(whole, time.time())
        assert outcome.version == 1
        assert len(ledger.entries()) == 10_000
        assert ledger.credential_subject("card", str(1_000_000 + 9_999), time.time()) == "s-009999"
    finally:
        ledger.close()

    # the next, smaller list goes as one message and the old chunks are cleared from the broker
    small = roster_csv(tmp_path / "small.csv", 10)
    assert site_main(["consent", "--dir", str(root), "issue", str(small)]) == 0
    capsys.readouterr()
    assert site_main(publish) == 0
    assert "as one message" in capsys.readouterr().out
    authority = Broker(url, "site-authority", prod.passwords["site-authority"], prod.pki["ca"])
    retained = fetch_retained_list(authority, "hq", timeout_s=5)
    assert retained == (root / "lists" / "hq-v2.cose").read_bytes()
    assert not is_manifest(retained)
    leftovers: list[str] = []
    reader = make_client(prod.password_settings("site-authority"), "chunk-check")
    connect(reader, prod.password_settings("site-authority"))
    reader.on_message = lambda _c, _u, m: leftovers.append(m.topic)
    reader.subscribe("sites/hq/consent/chunks/+", qos=1)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        reader.loop(timeout=0.05)
    close(reader)
    assert leftovers == []


def test_publish_reports_a_broker_refusal_as_one_line_and_exit_1(
    tmp_path: Path,
    production_broker: ProductionBroker,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prod = production_broker
    root = tmp_path / "authority"
    assert site_main(["consent", "--dir", str(root), "keygen", "--site", "hq"]) == 0
    assert site_main(["consent", "--dir", str(root), "issue", str(roster_csv(tmp_path / "r.csv", 10_000))]) == 0
    url = f"mqtts://127.0.0.1:{prod.password_port}"
    base = ["consent", "--dir", str(root), "publish", "--broker", url, "--ca-file", str(prod.pki["ca"])]
    capsys.readouterr()
    # 1. a user the ACL does not let write the list (a device's password): PUBACK "not authorised"
    c = prod.ids["c"]
    assert site_main([*base, "--username", c, "--password", prod.passwords[c]]) == 1
    err = capsys.readouterr().err
    assert "error: the broker refused the publish on sites/hq/consent/chunks/" in err
    assert "Traceback" not in err
    # 2. the old behaviour forced: the whole 1.8 MB list as one packet; the broker drops the connection
    import edge.consent.chunks as chunking
    import edge.consent.distribution as distribution

    monkeypatch.setattr(chunking, "SINGLE_MESSAGE_MAX", 64 * 1024 * 1024)
    real = distribution._connect_limits
    monkeypatch.setattr(distribution, "_connect_limits", lambda *a: (real(*a)[0], None))
    authority = ["--username", "site-authority", "--password", prod.passwords["site-authority"]]
    assert site_main([*base, *authority]) == 1
    err = capsys.readouterr().err
    assert "error: the broker closed the connection while we published" in err
    assert "max_packet_size" in err
    assert "Traceback" not in err
    assert "RuntimeError" not in err

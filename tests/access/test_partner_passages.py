"""Anti-passback across two terminals: the entry gate learns the exit gate's passages from its signed
access events (issue 15). What is tried: a real exit of the person at the partner gate (accepted;
the entry gate lets them in again), the same event replayed, an event forged with another key, a
denied passage, an event from a gate outside the area, and the roster changing under the receiver.
Then the whole path through a real Mosquitto broker: the agent's publisher on the exit gate, the
entry gate's subscription."""

from __future__ import annotations

from pathlib import Path

from nacl.signing import SigningKey

from edge.access.partners import PartnerPassages, access_filter, partners_of
from edge.access.passback import Passage, PassbackLog
from edge.consent.listformat import Gate, Passback
from edge.crypto.keys import device_id
from edge.events.envelope import EventSigner, MemorySeqStore
from edge.transport import topics

SITE = "hq"
ALICE = "s-alice-01"


def gate(key: SigningKey, area: str | None, direction: str = "in") -> Gate:
    passback = Passback(area, direction) if area else None  # type: ignore[arg-type]
    return Gate(device_id(key.verify_key), bytes(key.verify_key), None, frozenset(), passback)


def access(signer: EventSigner, decision: str = "granted", subject: str | None = ALICE) -> tuple[str, bytes]:
    topic = topics.for_event(SITE, signer.device_id, "access")
    body = {"decision": decision, "modality": "card", "subject": subject, "reason": "match"}
    return topic, signer.sign(topic, "access", body)


def test_the_exit_gates_signed_passage_lets_the_person_in_again(tmp_path: Path) -> None:
    entry_key, exit_key, other_key = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    roster = {
        g.id: g
        for g in (gate(entry_key, "hall", "in"), gate(exit_key, "hall", "out"), gate(other_key, "garage", "out"))
    }
    entry_id = device_id(entry_key.verify_key)
    log = PassbackLog(tmp_path / "passback.sqlite3")
    log.record(Passage("hall", ALICE, "in", 1_700_000_000.0, entry_id, 1))  # she went in here
    assert not log.allows("hall", "in", ALICE)
    receiver = PartnerPassages(SITE, entry_id, lambda: roster, log)
    assert set(partners_of(roster, entry_id)) == {device_id(exit_key.verify_key)}

    exit_signer = EventSigner(exit_key, device_id(exit_key.verify_key), MemorySeqStore(), clock=lambda: 1_700_000_100.0)
    # a denied passage at the exit says nothing about where she is
    assert not receiver.on_message(*access(exit_signer, decision="denied"))
    # someone forges the exit gate's event with another key
    forger = EventSigner(other_key, device_id(exit_key.verify_key), MemorySeqStore(1000), clock=lambda: 1_700_000_100.0)
    assert not receiver.on_message(*access(forger))
    assert receiver.rejected == 1
    # a gate of another area is not a partner, whatever it says
    other_signer = EventSigner(
        other_key, device_id(other_key.verify_key), MemorySeqStore(), clock=lambda: 1_700_000_100.0
    )
    assert not receiver.on_message(*access(other_signer))
    assert not log.allows("hall", "in", ALICE)
    # her real exit
    topic, payload = access(exit_signer)
    assert receiver.on_message(topic, payload)
    assert log.allows("hall", "in", ALICE)
    assert not receiver.on_message(topic, payload)  # the same event again: a replay, nothing changes
    assert receiver.rejected == 2
    # the roster moves the exit gate to another area: its events no longer count here
    roster[device_id(exit_key.verify_key)] = gate(exit_key, "garage", "out")
    log.record(Passage("hall", ALICE, "in", 1_700_000_200.0, entry_id, 2))
    assert not receiver.on_message(*access(exit_signer))
    assert not log.allows("hall", "in", ALICE)
    log.close()


def test_through_a_real_broker_the_entry_gate_hears_the_exit(tmp_path: Path, mosquitto) -> None:
    import threading

    from edge.transport.mqtt import MqttPublisher, MqttSettings
    from edge.transport.outbox import Outbox

    entry_key, exit_key = SigningKey.generate(), SigningKey.generate()
    roster = {g.id: g for g in (gate(entry_key, "hall", "in"), gate(exit_key, "hall", "out"))}
    entry_id, exit_id = device_id(entry_key.verify_key), device_id(exit_key.verify_key)
    log = PassbackLog(tmp_path / "passback.sqlite3")
    log.record(Passage("hall", ALICE, "in", 1.0, entry_id, 1))
    receiver = PartnerPassages(SITE, entry_id, lambda: roster, log)
    heard = threading.Event()

    def on_message(topic: str, payload: bytes, retained: bool) -> None:
        if receiver.on_message(topic, payload):
            heard.set()

    settings = MqttSettings.from_url(mosquitto.url)
    entry_box = Outbox(tmp_path / "entry-outbox.sqlite3")
    listener = MqttPublisher(
        settings, entry_box, site=SITE, device_id=entry_id, subscriptions=[access_filter(SITE)], on_message=on_message
    )
    exit_box = Outbox(tmp_path / "exit-outbox.sqlite3")
    from edge.events.kinds import Access
    from edge.events.outbox_sink import OutboxSink
    from edge.modality import Modality

    sink = OutboxSink(EventSigner(exit_key, exit_id, exit_box), exit_box, SITE)
    with listener:
        assert listener.wait_connected(10)
        with MqttPublisher(settings, exit_box, site=SITE, device_id=exit_id) as publisher:
            assert publisher.wait_connected(10)
            sink.emit(Access("granted", Modality.card, ALICE, "match"))
            assert heard.wait(10), "the entry gate never heard the exit gate's passage"
    assert log.allows("hall", "in", ALICE)
    entry_box.close()
    exit_box.close()
    log.close()


def test_the_acl_lets_a_gate_read_exactly_its_partners_access_events() -> None:
    from edge.site.acl import render_acl
    from edge.site.registry import Registry

    entry_key, exit_key, garage_key, plain_key = (SigningKey.generate() for _ in range(4))
    registry = Registry()
    entry = registry.add(SITE, entry_key.verify_key, passback=Passback("hall", "in"))
    exit_ = registry.add(SITE, exit_key.verify_key, passback=Passback("hall", "out"))
    garage = registry.add(SITE, garage_key.verify_key, passback=Passback("garage", "in"))
    plain = registry.add(SITE, plain_key.verify_key)
    acl = render_acl(registry)
    blocks = {b.splitlines()[0].split()[1]: b for b in acl.split("\n\n") if b.startswith("user gw-")}
    reads = {d: {ln for ln in blocks[d].splitlines() if ln.endswith("/events/access")} for d in blocks}
    assert reads[entry.device_id] == {f"topic read sites/{SITE}/gates/{exit_.device_id}/events/access"}
    assert reads[exit_.device_id] == {f"topic read sites/{SITE}/gates/{entry.device_id}/events/access"}
    assert reads[garage.device_id] == set()  # alone in its area
    assert reads[plain.device_id] == set()  # no anti-passback: reads no gate's events

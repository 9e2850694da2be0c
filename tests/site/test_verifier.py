"""The verifier accepts genuine events once and rejects altered, misplaced and replayed ones."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edge.crypto.cose import sign1
from edge.crypto.keys import device_id, key_id
from edge.errors import StorageError
from edge.events.envelope import EventSigner, MemorySeqStore
from edge.events.guard import check
from edge.site.registry import Registry
from edge.site.verifier import Rejected, Verifier
from edge.transport import topics

ACCESS = {"decision": "granted", "modality": "card", "subject": "p-12", "reason": "card_ok"}


@pytest.fixture
def device() -> tuple[EventSigner, Registry]:
    key = SigningKey.generate()
    registry = Registry()
    registry.add("hq", key.verify_key)
    return EventSigner(key, device_id(key.verify_key), MemorySeqStore()), registry


def event(signer: EventSigner, kind: str = "access", body: dict[str, object] | None = None) -> tuple[str, bytes]:
    topic = topics.for_event("hq", signer.device_id, kind)
    return topic, signer.sign(topic, kind, body or ACCESS)


def test_a_genuine_event_verifies_once_and_a_replay_is_rejected(device: tuple[EventSigner, Registry]) -> None:
    signer, registry = device
    verifier = Verifier(registry)
    topic, payload = event(signer)
    verified = verifier.verify(topic, payload)
    assert (verified.device_id, verified.site, verified.kind, verified.seq) == (signer.device_id, "hq", "access", 1)
    assert json.loads(verified.to_json())["body"] == ACCESS
    with pytest.raises(Rejected) as info:
        verifier.verify(topic, payload)  # the same bytes again
    assert info.value.reason == "replay"


def test_every_modified_byte_of_the_payload_is_rejected(device: tuple[EventSigner, Registry]) -> None:
    signer, registry = device
    topic, payload = event(signer)
    verifier = Verifier(registry)
    for i in range(len(payload)):
        altered = bytearray(payload)
        altered[i] ^= 0x01
        with pytest.raises(Rejected):
            verifier.verify(topic, bytes(altered))
    assert verifier.verify(topic, payload).seq == 1  # the genuine one still goes through afterwards


def test_an_event_on_another_topic_is_rejected(device: tuple[EventSigner, Registry]) -> None:
    signer, registry = device
    other_key = SigningKey.generate()
    registry.add("hq", other_key.verify_key)
    registry.add("branch", SigningKey.generate().verify_key)
    verifier = Verifier(registry)
    topic, payload = event(signer)
    wrong_topics = {
        topic.replace("/access", "/health"): "bad_signature",  # another kind
        topic.replace(signer.device_id, device_id(other_key.verify_key)): "wrong_key",  # another device
        topic.replace("sites/hq/", "sites/branch/"): "wrong_site",
        topic + "/x": "topic",
        "sites/hq/gates/gw-unknown/events/access": "unknown_device",
    }
    for wrong, reason in wrong_topics.items():
        with pytest.raises(Rejected) as info:
            verifier.verify(wrong, payload)
        assert info.value.reason == reason, wrong


def test_a_resigned_event_with_a_foreign_key_or_mismatched_claims_is_rejected(
    device: tuple[EventSigner, Registry],
) -> None:
    signer, registry = device
    verifier = Verifier(registry)
    topic = topics.for_event("hq", signer.device_id, "access")
    intruder = SigningKey.generate()
    forged = EventSigner(intruder, signer.device_id, MemorySeqStore()).sign(topic, "access", ACCESS)
    with pytest.raises(Rejected) as info:
        verifier.verify(topic, forged)
    assert info.value.reason == "wrong_key"
    # Same kid, signed by another key: the signature check catches it.
    claims = cbor2.loads(cbor2.loads(forged).value[2])
    spoofed = sign1(intruder, key_id(signer.signing_key.verify_key), cbor2.dumps(claims), topic.encode())
    with pytest.raises(Rejected) as info:
        verifier.verify(topic, spoofed)
    assert info.value.reason == "bad_signature"
    # Correctly signed by the device, but for a kind other than the topic says.
    health_topic = topics.for_event("hq", signer.device_id, "health")
    body = {"uptime_s": 1, "outbox_depth": 0}
    mismatched = signer.sign(health_topic, "health", body)
    claims = cbor2.loads(cbor2.loads(mismatched).value[2])
    claims["kind"] = "access"
    claims["body"] = ACCESS
    resigned = sign1(signer.signing_key, signer.kid, cbor2.dumps(claims), health_topic.encode())
    with pytest.raises(Rejected) as info:
        verifier.verify(health_topic, resigned)
    assert info.value.reason == "wrong_topic"


def test_replays_by_sequence_number_and_out_of_order_arrivals(device: tuple[EventSigner, Registry]) -> None:
    signer, registry = device
    verifier = Verifier(registry, window=4)
    events = [event(signer) for _ in range(8)]
    # 2 arrives before 1: both accepted once (within the window).
    assert verifier.verify(*events[1]).seq == 2
    assert verifier.verify(*events[0]).seq == 1
    for e in events[2:8]:
        verifier.verify(*e)
    # A fresh cti with an already-seen seq (a re-signed copy) is a replay.
    seq5 = EventSigner(signer.signing_key, signer.device_id, MemorySeqStore(4)).sign(events[0][0], "access", ACCESS)
    with pytest.raises(Rejected, match="sequence number 5"):
        verifier.verify(events[0][0], seq5)
    # Older than the window: rejected even though this exact seq was dropped from memory.
    old = EventSigner(signer.signing_key, signer.device_id, MemorySeqStore(0)).sign(events[0][0], "access", ACCESS)
    with pytest.raises(Rejected, match="too old"):
        verifier.verify(events[0][0], old)


def test_registry_round_trip_and_refusal_of_a_mismatched_id(tmp_path: Path) -> None:
    registry = Registry()
    dev = registry.add("hq", SigningKey.generate().verify_key)
    path = tmp_path / "registry.json"
    registry.save(path)
    loaded = Registry.load(path)
    assert loaded.get(dev.device_id) == dev
    data = json.loads(path.read_text())
    data["devices"]["gw-0000000000000000"] = data["devices"].pop(dev.device_id)
    path.write_text(json.dumps(data))
    with pytest.raises(StorageError, match="does not belong to its public key"):
        Registry.load(path)
    path.write_text("{")
    with pytest.raises(StorageError, match="not readable JSON"):
        Registry.load(path)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), flip=st.integers(min_value=0, max_value=10_000))
def test_outside_bytes_only_ever_raise_rejected(data: bytes, flip: int) -> None:
    key = SigningKey.generate()
    registry = Registry()
    registry.add("hq", key.verify_key)
    signer = EventSigner(key, device_id(key.verify_key), MemorySeqStore())
    topic = topics.for_event("hq", signer.device_id, "access")
    genuine = bytearray(signer.sign(topic, "access", ACCESS))
    genuine[flip % len(genuine)] ^= 1 << (flip % 8)
    verifier = Verifier(registry)
    for payload in (data, bytes(genuine), bytes(genuine) + data):
        with pytest.raises(Rejected):
            verifier.verify(topic, payload)


def test_an_absurd_sequence_jump_is_refused_and_the_device_goes_on(device: tuple[EventSigner, Registry]) -> None:
    """Issue 17 finding 5 on the verifier: one event numbered 2**53 - 1 (a faulty or compromised
    device) used to move the replay window there, so every later event looked like a replay."""
    from edge.site.verifier import MAX_SEQ_STEP

    signer, registry = device
    verifier = Verifier(registry)
    topic = topics.for_event("hq", signer.device_id, "access")
    assert verifier.verify(topic, signer.sign_with_seq(topic, "access", check("access", ACCESS), 5)).seq == 5
    for absurd in (2**53 - 1, 5 + MAX_SEQ_STEP + 1):
        with pytest.raises(Rejected) as refused:
            verifier.verify(topic, signer.sign_with_seq(topic, "access", check("access", ACCESS), absurd))
        assert refused.value.reason == "seq_jump"
    assert verifier.verify(topic, signer.sign_with_seq(topic, "access", check("access", ACCESS), 6)).seq == 6
    assert (
        verifier.verify(topic, signer.sign_with_seq(topic, "access", check("access", ACCESS), 6 + MAX_SEQ_STEP)).seq
        == 6 + MAX_SEQ_STEP
    )
    with pytest.raises(Rejected) as refused:  # past 2**53 - 1 the payload itself is malformed
        verifier.verify(topic, signer.sign_with_seq(topic, "access", check("access", ACCESS), 2**53))
    assert refused.value.reason == "malformed"


def test_an_oversize_payload_is_refused_before_anything_decodes_it(device: tuple[EventSigner, Registry]) -> None:
    from edge.site.verifier import MAX_EVENT_BYTES

    signer, registry = device
    topic = topics.for_event("hq", signer.device_id, "access")
    with pytest.raises(Rejected) as refused:
        Verifier(registry).verify(topic, b"\x81" * (MAX_EVENT_BYTES + 1))
    assert refused.value.reason == "oversize"

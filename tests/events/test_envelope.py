"""The event envelope: pycose verifies it with the exported key; the claims are what we say they are."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edge.crypto.keys import device_id, key_id
from edge.events.envelope import (
    EventSigner,
    MemorySeqStore,
    PayloadError,
    decode_payload,
)
from edge.events.guard import EgressRefused
from edge.transport import topics
from tests.pycose_reference import pycose_payload

ACCESS = {"decision": "granted", "modality": "face", "subject": "p-0001", "reason": "match"}


def make_signer(seq_start: int = 0) -> tuple[EventSigner, SigningKey]:
    key = SigningKey.generate()
    return EventSigner(key, device_id(key.verify_key), MemorySeqStore(seq_start), clock=lambda: 1_700_000_000.5), key


def test_pycose_verifies_an_event_and_the_claims_decode() -> None:
    signer, key = make_signer()
    topic = topics.for_event("hq", signer.device_id, "access")
    message = signer.sign(topic, "access", ACCESS)
    payload = pycose_payload(message, bytes(key.verify_key), topic.encode())
    claims = decode_payload(payload)
    assert claims.iss == signer.device_id
    assert claims.iat == 1_700_000_000
    assert len(claims.cti) == 16
    assert claims.seq == 1
    assert claims.kind == "access"
    assert claims.body == ACCESS
    # Protected header: alg EdDSA (-8) and the kid of the device key.
    protected = cbor2.loads(cbor2.loads(message).value[0])
    assert protected == {1: -8, 4: key_id(key.verify_key)}


def test_pycose_refuses_the_event_under_another_topic() -> None:
    signer, key = make_signer()
    topic = topics.for_event("hq", signer.device_id, "access")
    message = signer.sign(topic, "access", ACCESS)
    with pytest.raises(AssertionError):
        pycose_payload(message, bytes(key.verify_key), topic.replace("/access", "/health").encode())


def test_sequence_numbers_increase_and_cti_is_unique() -> None:
    signer, _ = make_signer(seq_start=41)
    topic = topics.for_event("hq", signer.device_id, "health")
    claims = [
        decode_payload(cbor2.loads(signer.sign(topic, "health", {"uptime_s": i, "outbox_depth": 0})).value[2])
        for i in range(5)
    ]
    assert [c.seq for c in claims] == [42, 43, 44, 45, 46]
    assert len({c.cti for c in claims}) == 5


def test_guard_runs_before_signing_and_uses_no_sequence_number() -> None:
    signer, _ = make_signer()
    topic = topics.for_event("hq", signer.device_id, "access")
    with pytest.raises(EgressRefused):
        signer.sign(topic, "access", {**ACCESS, "embedding": [0.1] * 128})
    message = signer.sign(topic, "access", ACCESS)
    assert decode_payload(cbor2.loads(message).value[2]).seq == 1


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"\x9f\x01", "not CBOR"),
        (cbor2.dumps([1, 2]), "exactly iss"),
        (cbor2.dumps({1: "gw", 6: 1, 7: b"x" * 16, "seq": 0, "kind": "health", "body": {}}), "seq"),
        (cbor2.dumps({1: "gw", 6: 1, 7: b"x" * 15, "seq": 1, "kind": "health", "body": {}}), "cti"),
        (
            cbor2.dumps({1: "gw", 6: 1, 7: b"x" * 16, "seq": 1, "kind": "health", "body": {"uptime_s": b"img"}}),
            "schema",
        ),
        (cbor2.dumps({1: "gw", 6: 1, 7: b"x" * 16, "seq": 1, "kind": "health", "body": {}, "extra": 1}), "exactly"),
    ],
)
def test_decode_rejects_malformed_payloads(payload: bytes, why: str) -> None:
    with pytest.raises(PayloadError, match=why):
        decode_payload(payload)


def test_the_fast_framing_is_byte_identical_to_the_cose_codec() -> None:
    from edge.crypto.cose import sign1
    from edge.events.envelope import fast_sign1

    key = SigningKey.generate()
    kid = key_id(key.verify_key)
    protected = cbor2.dumps({1: -8, 4: kid})
    for size in (0, 5, 23, 24, 255, 256, 70_000):
        payload, aad = bytes(size), b"t" * (size % 300)
        assert fast_sign1(key, protected, payload, aad) == sign1(key, kid, payload, aad)


def test_the_largest_body_the_schema_admits_is_under_1_kib() -> None:
    from edge.events.schema import EVENT_KINDS, INT_MAX, Field

    def biggest(spec: Field) -> object:
        if spec.type == "enum":
            return max(spec.values, key=len)
        if spec.type == "text":
            return "a" * 64
        if spec.type in ("int", "number"):
            return int(spec.maximum) if spec.type == "int" else float(spec.maximum)
        return list(spec.values)

    for kind, fields in EVENT_KINDS.items():
        body = {name: biggest(spec) for name, spec in fields.items()}
        assert len(cbor2.dumps(body)) < 1024, kind
    assert INT_MAX == 2**53


@settings(max_examples=300, deadline=None)
@given(
    seq=st.integers(min_value=1, max_value=2**53),
    iat=st.integers(min_value=0, max_value=2**40),
    body=st.dictionaries(
        st.text(max_size=20),
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**64 - 1)
        | st.floats(allow_nan=False)
        | st.text(max_size=70)
        | st.lists(st.text(max_size=8), max_size=5),
        max_size=9,
    ),
)
def test_the_direct_payload_encoding_is_canonical_cbor(seq: int, iat: int, body: dict[str, object]) -> None:
    from edge.events.envelope import EventClaims, encode_payload

    claims = EventClaims(iss="gw-0123456789abcdef", iat=iat, cti=bytes(range(16)), seq=seq, kind="health", body=body)
    expected = cbor2.dumps(
        {1: claims.iss, 6: iat, 7: claims.cti, "seq": seq, "kind": "health", "body": body}, canonical=True
    )
    assert encode_payload(claims) == expected

"""COSE_Sign1: our codec against an independent implementation (pycose), and tampering."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edge.crypto.cose import CoseError, sign1, verify1
from edge.crypto.keys import key_id
from tests.pycose_reference import pycose_payload


def test_pycose_verifies_our_messages() -> None:
    key = SigningKey.generate()
    payload = cbor2.dumps({"event": "granted", "seq": 1})
    message = sign1(key, key_id(key.verify_key), payload, b"sites/s/gates/g/events")
    assert pycose_payload(message, bytes(key.verify_key), b"sites/s/gates/g/events") == payload


def test_wrong_aad_wrong_key_and_unknown_kid_are_rejected() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    kid = key_id(key.verify_key)
    message = sign1(key, kid, b"hello", b"topic/a")
    assert verify1(message, {kid: key.verify_key}, b"topic/a").payload == b"hello"
    with pytest.raises(CoseError, match="bad signature"):
        verify1(message, {kid: key.verify_key}, b"topic/b")
    with pytest.raises(CoseError, match="bad signature"):
        verify1(message, {kid: other.verify_key}, b"topic/a")
    with pytest.raises(CoseError, match="unknown key id"):
        verify1(message, {b"x" * 8: key.verify_key}, b"topic/a")


def test_every_single_bit_flip_is_rejected() -> None:
    key = SigningKey.generate()
    kid = key_id(key.verify_key)
    message = sign1(key, kid, b"payload bytes", b"aad")
    for position in range(len(message)):
        for bit in range(8):
            tampered = bytearray(message)
            tampered[position] ^= 1 << bit
            with pytest.raises(CoseError):
                verify1(bytes(tampered), {kid: key.verify_key}, b"aad")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_verifies_and_never_crashes(data: bytes) -> None:
    key = SigningKey(b"\x01" * 32)
    with pytest.raises(CoseError):
        verify1(data, {key_id(key.verify_key): key.verify_key})

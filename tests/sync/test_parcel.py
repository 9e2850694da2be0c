"""Sealed template parcels: only the addressed gate opens them, only registered gates send them.

Each test says what was tried. Keys are fresh per test; templates are random unit vectors and
random bytes standing in for a sensor char file (the codec never interprets them).
"""

from __future__ import annotations

import os

import cbor2
import numpy as np
import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from edge.crypto.cose import sign1
from edge.crypto.keys import device_id, key_id
from edge.modality import Modality
from edge.sync.parcel import (
    CONTENT_TYPE,
    Contents,
    FaceTemplates,
    ParcelError,
    SensorTemplate,
    inbox_filter,
    open_parcel,
    parcel_topic,
    seal,
)

SITE = "hq"


class Gate:
    def __init__(self) -> None:
        self.identity = SigningKey.generate()
        self.box = PrivateKey.generate()
        self.id = device_id(self.identity.verify_key)


@pytest.fixture
def gates() -> tuple[Gate, Gate, Gate]:
    return Gate(), Gate(), Gate()


def _face(n: int = 3, dim: int = 128, seed: int = 1) -> FaceTemplates:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return FaceTemplates("dlib_resnet_v1", dim, tuple(v.astype("<f4").tobytes() for v in x))


def _contents(face: bool = True) -> Contents:
    if face:
        return Contents("p-anna", Modality.face, enrolled_at=1_700_000_000, consent_version=3, face=_face())
    return Contents(
        "p-ben",
        Modality.fingerprint,
        enrolled_at=1_700_000_100,
        consent_version=3,
        fingerprint=SensorTemplate("r503", os.urandom(1536)),
    )


def _senders(*gates: Gate) -> dict[str, object]:
    return {g.id: g.identity.verify_key for g in gates}


def _send(sender: Gate, recipient: Gate, contents: Contents, parcel_id: bytes | None = None) -> tuple[str, bytes]:
    return seal(
        contents,
        site=SITE,
        sender_key=sender.identity,
        recipient=recipient.id,
        recipient_box_key=recipient.box.public_key,
        parcel_id=parcel_id or os.urandom(16),
        issued_at=1_700_000_200,
    )


def _open(recipient: Gate, topic: str, message: bytes, *senders: Gate, site: str = SITE):
    return open_parcel(
        message,
        topic,
        site=site,
        recipient_key=recipient.box,
        recipient=recipient.id,
        senders=_senders(*senders),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("face", [True, False])
def test_the_addressed_gate_opens_what_the_sender_sealed(gates, face):
    a, b, _ = gates
    contents = _contents(face)
    topic, message = _send(a, b, contents, parcel_id=b"\x01" * 16)
    assert topic == f"sites/hq/sync/{b.id}/{a.id}/{'01' * 16}"
    opened = _open(b, topic, message, a, b)
    assert opened.contents == contents
    assert (opened.sender, opened.recipient, opened.parcel_id, opened.issued_at) == (
        a.id,
        b.id,
        b"\x01" * 16,
        1_700_000_200,
    )
    assert inbox_filter(SITE, b.id) == f"sites/hq/sync/{b.id}/+/+"


def test_no_template_byte_and_no_subject_travels_in_the_clear(gates):
    # what the broker carries: a float vector, a sensor template or the subject id at any offset
    a, b, _ = gates
    for contents in (_contents(True), _contents(False)):
        topic, message = _send(a, b, contents)
        assert contents.subject.encode() not in message
        assert contents.subject not in topic
        pieces = contents.face.vectors if contents.face else (contents.fingerprint.template,)  # type: ignore[union-attr]
        for piece in pieces:
            for start in range(0, len(piece) - 16, 16):  # any 16-byte window of a template
                assert piece[start : start + 16] not in message


def test_a_parcel_sealed_for_gate_b_cannot_be_opened_by_gate_c(gates):
    # C is registered and subscribes to B's topic (a misconfigured ACL): it still reads nothing,
    # and pretending to be B with its own box key fails at decryption
    a, b, c = gates
    topic, message = _send(a, b, _contents())
    with pytest.raises(ParcelError) as refused:
        _open(c, topic, message, a, b, c)
    assert refused.value.reason == "wrong-recipient"
    with pytest.raises(ParcelError) as refused:
        open_parcel(message, topic, site=SITE, recipient_key=c.box, recipient=b.id, senders=_senders(a, b, c))  # type: ignore[arg-type]
    assert refused.value.reason == "not-for-us"


def test_an_unregistered_sender_is_refused(gates):
    # a gate of another site, or a key nobody registered, sends a well-formed parcel to B
    a, b, outsider = gates
    topic, message = _send(outsider, b, _contents())
    with pytest.raises(ParcelError) as refused:
        _open(b, topic, message, a, b)
    assert refused.value.reason == "unknown-sender"


def test_a_parcel_moved_to_another_topic_or_site_no_longer_verifies(gates):
    # replayed into another gate's inbox, under another sender's name, or for another site
    a, b, c = gates
    topic, message = _send(a, b, _contents(), parcel_id=b"\x02" * 16)
    for wrong in (
        parcel_topic(SITE, c.id, a.id, b"\x02" * 16),
        parcel_topic(SITE, b.id, c.id, b"\x02" * 16),
        parcel_topic(SITE, b.id, a.id, b"\x03" * 16),
        parcel_topic("other", b.id, a.id, b"\x02" * 16),
    ):
        with pytest.raises(ParcelError) as refused:
            _open(b, wrong, message, a, b, c)
        assert refused.value.reason == "bad-signature", wrong
    with pytest.raises(ParcelError) as refused:
        _open(b, topic, message, a, b, site="other")
    assert refused.value.reason in ("bad-signature", "wrong-site")


def test_a_flipped_bit_anywhere_is_refused(gates):
    a, b, _ = gates
    topic, message = _send(a, b, _contents())
    for at in range(0, len(message), max(1, len(message) // 97)):
        damaged = bytearray(message)
        damaged[at] ^= 0x01
        with pytest.raises(ParcelError):
            _open(b, topic, bytes(damaged), a, b)


def test_another_registered_gate_cannot_re_sign_the_ciphertext_as_its_own(gates):
    # C takes A's sealed bytes and wraps them in an envelope it signs itself, naming itself the
    # sender: the contents inside still name A, so B refuses (it would otherwise credit C)
    a, b, c = gates
    _, message = _send(a, b, _contents(), parcel_id=b"\x04" * 16)
    outer = cbor2.loads(cbor2.loads(message).value[2])
    outer["sender"] = c.id
    topic = parcel_topic(SITE, b.id, c.id, b"\x04" * 16)
    forged = sign1(
        c.identity, key_id(c.identity.verify_key), cbor2.dumps(outer, canonical=True), topic.encode(), CONTENT_TYPE
    )
    with pytest.raises(ParcelError) as refused:
        _open(b, topic, forged, a, b, c)
    assert refused.value.reason == "sender-mismatch"


def test_an_envelope_that_names_another_sender_than_its_signer_is_refused(gates):
    a, b, c = gates
    _, message = _send(a, b, _contents(), parcel_id=b"\x05" * 16)
    outer = cbor2.loads(cbor2.loads(message).value[2])
    topic = parcel_topic(SITE, b.id, a.id, b"\x05" * 16)  # still claims A, signed by C
    forged = sign1(
        c.identity, key_id(c.identity.verify_key), cbor2.dumps(outer, canonical=True), topic.encode(), CONTENT_TYPE
    )
    with pytest.raises(ParcelError) as refused:
        _open(b, topic, forged, a, b, c)
    assert refused.value.reason == "sender-mismatch"


def test_templates_that_are_not_templates_are_refused_before_sealing():
    rng = np.random.default_rng(2)
    long = rng.standard_normal(128).astype("<f4").tobytes()  # not unit length
    nan = np.full(128, np.nan, dtype="<f4").tobytes()
    for vectors, dim in (((long,), 128), ((nan,), 128), ((b"\x00" * 12,), 128), ((), 128), (_face().vectors, 0)):
        with pytest.raises(ParcelError):
            FaceTemplates("dlib_resnet_v1", dim, vectors)
    with pytest.raises(ParcelError):
        SensorTemplate("r503", b"")
    with pytest.raises(ParcelError):
        Contents("p-anna", Modality.face, 1, 1, fingerprint=SensorTemplate("r503", b"\x01"))
    with pytest.raises(ParcelError):
        Contents("Anna Smith", Modality.face, 1, 1, face=_face())  # a name, not a pseudonym


def test_a_gate_does_not_address_itself(gates):
    a, _, _ = gates
    with pytest.raises(ParcelError):
        _send(a, a, _contents())


def test_the_fuzz_target_opens_its_own_good_parcel():
    # the hostile-input fuzzer (tests/fuzz, benchmarks/fuzz_decoders.py) mutates a real parcel: it
    # must be one the decoder accepts, or the fuzzer would only ever exercise refusals
    from edge.testing.fuzztargets import targets

    target = next(t for t in targets() if t.name == "sync.parcel")

    class First:
        def integer(self, lo: int, hi: int) -> int:
            return lo

        def raw(self, size: int) -> bytes:
            return bytes(size)

    opened = target.run(target.generate(First()))  # the first choice is the unaltered parcel
    assert opened.contents.subject == "p-1"  # type: ignore[attr-defined]

"""An independent COSE_Sign1 verifier (pycose) the tests hold our messages against."""

from __future__ import annotations


def pycose_verifies(message: bytes, public: bytes, aad: bytes, *, payload: bytes | None = None) -> bool:
    """Whether pycose verifies ``message`` under the Ed25519 key ``public`` and external AAD ``aad``
    (with ``payload``: as if the message carried that payload instead, i.e. altered after signing)."""
    from pycose.keys.curves import Ed25519
    from pycose.keys.okp import OKPKey
    from pycose.messages.sign1message import Sign1Message

    msg = Sign1Message.decode(message)
    if payload is not None:
        msg.payload = payload
    # pycose declares this property's setter after another property, so mypy sees it read-only
    msg.external_aad = aad  # type: ignore[misc]
    msg.key = OKPKey(crv=Ed25519, x=public)
    return bool(msg.verify_signature())


def pycose_payload(message: bytes, public: bytes, aad: bytes) -> bytes:
    """Verify ``message`` with pycose under the Ed25519 key ``public`` and external AAD ``aad``;
    return its payload (an ``AssertionError`` when the signature does not verify)."""
    from pycose.keys.curves import Ed25519
    from pycose.keys.okp import OKPKey
    from pycose.messages.sign1message import Sign1Message

    msg = Sign1Message.decode(message)
    # pycose declares this property's setter after another property, so mypy sees it read-only
    msg.external_aad = aad  # type: ignore[misc]
    msg.key = OKPKey(crv=Ed25519, x=public)
    assert msg.verify_signature()
    payload = msg.payload
    assert payload is not None
    return bytes(payload)

"""The audit kinds issue 15 adds: a tamper record and an OSDP key record that holds only a key id."""

from __future__ import annotations

import pytest

from edge.audit.kinds import AuditRefused, check
from edge.osdp import scbk


def test_tamper_and_key_records_are_allowed_in_their_documented_shape() -> None:
    check("tamper", {"opened": True, "erased": ["gallery_key", "sensor_library"], "at": 1_800_000_000.5})
    check("tamper", {"opened": False})
    check("osdp_key", {"how": "panel_keyset", "key_id": scbk.key_id(bytes(16))})


@pytest.mark.parametrize(
    ("kind", "details"),
    [
        ("osdp_key", {"how": "hex", "key_id": bytes(range(16)).hex()}),  # the key itself, as hex
        ("osdp_key", {"how": "hex", "key_id": "00112233", "key": "00" * 16}),
        ("tamper", {"opened": "yes"}),
        ("tamper", {"opened": True, "erased": ["everything"]}),
    ],
)
def test_anything_else_is_refused(kind: str, details: dict[str, object]) -> None:
    with pytest.raises(AuditRefused):
        check(kind, details)

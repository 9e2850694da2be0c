"""Decoders are total functions: hostile inputs give a value or the product's own error, nothing else.

Hypothesis drives the hostile CBOR generator of ``edge.testing.hostile`` (shared references 28/29,
other tags, indefinite lengths, deep nesting, huge declared lengths, non-canonical heads, duplicate
keys, NaN/inf floats, simple values, truncation, mutations of valid messages) into every entry
point of ``edge.testing.fuzztargets``: COSE_Sign1, consent list bodies (raw and signed by the
authority), chunked-list manifests and the reassembler, event payloads, the site verifier (payloads
signed by a registered device), audit exports, EF01 frames, Wiegand frames, config files and the
device registry. The benchmark ``benchmarks/fuzz_decoders.py`` runs 100 000 inputs per entry point.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.errors import EdgeError
from edge.testing.fuzztargets import Target, run_one, targets
from edge.testing.hostile import issue17_cycle_message

TARGETS = {t.name: t for t in targets()}


class DataChooser:
    """Hypothesis as the generator's source of decisions (so failures shrink)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def raw(self, size: int) -> bytes:
        return self.data.draw(st.binary(min_size=size, max_size=size))


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)


@pytest.mark.parametrize("name", sorted(TARGETS))
@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_hostile_input_gives_a_value_or_the_products_error(name: str, data: st.DataObject) -> None:
    target: Target = TARGETS[name]
    hostile = target.generate(DataChooser(data))
    escaped = run_one(target, hostile)
    assert escaped is None, f"{name} let {escaped} escape on {len(hostile)} bytes"


@pytest.mark.parametrize(
    "name", ["cose.verify1", "consent.verify_list", "consent.decode_body", "consent.manifest", "audit.export"]
)
def test_the_issue_17_cycle_and_its_relatives_are_refused(name: str) -> None:
    """The issue's 129-byte message, and a cycle built inside each decoder's own structure."""
    target = TARGETS[name]
    samples = [
        issue17_cycle_message(),
        b"\xd8\x1c\x81\xd8\x1d\x00",  # an array holding itself
        b"\xd8\x1c\xa1\x01\xd8\x1d\x00",  # a map holding itself
        b"\x81" * 100_000 + b"\x00",  # nested 100 000 deep
        b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff",  # a byte string declaring 2**63 bytes
        b"\xc2\x58\x40" + b"\xff" * 64,  # a 512-bit bignum
        b"\xa2\x01\x01\x01\x02",  # a duplicate key
        b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # NaN
    ]
    for sample in samples:
        with pytest.raises(EdgeError):
            target.run(sample)

"""Panel credentials: the bits a reader sends for a person's panel number, in every format."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.credentials.wiegand import FORMATS, CardRead, decode
from edge.osdp.carddata import CardDataError, PanelCredential, pack, read_back, unpack


@given(st.data())
def test_a_card_number_reads_back_through_the_input_sides_decoder(data: st.DataObject) -> None:
    fmt = data.draw(st.sampled_from(["H10301", "W34", "H10304", "H10302"]))
    spec = FORMATS[fmt]
    card = data.draw(st.integers(0, (1 << spec.card[1]) - 1))
    facility = data.draw(st.integers(0, (1 << spec.facility[1]) - 1)) if spec.facility else None
    cred = PanelCredential.from_card(fmt, card, facility)  # type: ignore[arg-type]
    read = decode(list(cred.bits), (fmt,))
    assert isinstance(read, CardRead)
    assert (read.card, read.facility) == (card, facility)
    assert PanelCredential.from_number(fmt, read.number) == cred  # type: ignore[arg-type]


@given(st.integers(1, 64), st.data())
def test_raw_bits_pack_most_significant_first_and_unpack_again(bits: int, data: st.DataObject) -> None:
    value = data.draw(st.integers(0, (1 << bits) - 1))
    cred = PanelCredential.raw(value, bits)
    packed = cred.packed()
    assert len(packed) == (bits + 7) // 8
    assert int.from_bytes(packed, "big") >> (8 * len(packed) - bits) == value
    assert unpack(packed, bits) == cred.bits
    assert read_back("raw", packed, bits).number() == value


def test_a_26_bit_frame_packs_into_four_bytes_left_aligned() -> None:
    cred = PanelCredential.from_card("H10301", 12345, 17)
    assert cred.packed() == pack(cred.bits)
    assert len(cred.packed()) == 4
    assert cred.packed()[-1] & 0x3F == 0  # the 6 padding bits of the last byte are zero


def test_the_number_never_shows_in_repr_or_in_errors() -> None:
    cred = PanelCredential.from_number("W34", 987654321)
    assert "987654321" not in repr(cred)
    assert "987654321" not in str(cred)
    assert repr(cred) == "PanelCredential(W34, 34 bits)"
    with pytest.raises(CardDataError) as info:
        PanelCredential.from_number("H10301", 987654321)
    assert "987654321" not in str(info.value)
    with pytest.raises(CardDataError) as info:
        PanelCredential.from_card("H10301", 70000, 3)
    assert "70000" not in str(info.value)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: PanelCredential.raw(1, 0), "1 to 64 bits"),
        (lambda: PanelCredential.raw(256, 8), "does not fit"),
        (lambda: PanelCredential.from_card("raw", 1), "no card/facility"),
        (lambda: PanelCredential("H10301", (1, 0)), "26 bits"),
        (lambda: PanelCredential("X", (1,)), "unknown panel card format"),  # type: ignore[arg-type]
        (lambda: PanelCredential("raw", (2,)), "0 and 1"),
    ],
)
def test_bad_credentials_are_refused_with_the_products_error(make: object, why: str) -> None:
    with pytest.raises(CardDataError, match=why):
        make()  # type: ignore[operator]


def test_a_panel_reading_a_frame_with_bad_parity_refuses_it() -> None:
    bits = list(PanelCredential.from_card("H10301", 1, 1).bits)
    bits[0] ^= 1
    with pytest.raises(CardDataError, match="not a valid H10301"):
        read_back("H10301", pack(bits), 26)
    with pytest.raises(CardDataError, match="cannot come in"):
        unpack(b"\x00", 9)

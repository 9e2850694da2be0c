"""A panel credential: the number the site's panel knows a person by, as the bits a reader sends.

Pure. The same value leaves the terminal as an OSDP card read (``osdp_RAW``, format "Wiegand" or
"raw") or as a Wiegand frame on two wires. Formats are the input side's (``edge.credentials.wiegand``):
H10301 (26 bits), W34, H10304 and H10302 (37 bits), with their parity bits; ``raw`` is a bare
N-bit number for panels configured for unformatted card data.

A credential is never a biometric and never printed: ``repr`` shows the format and length only, and
the errors below never hold the number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from edge.credentials.wiegand import FORMATS, MAX_BITS, decode, encode
from edge.errors import EdgeError

#: what a panel can be configured to expect from a reader
PanelFormat = Literal["H10301", "W34", "H10304", "H10302", "raw"]
PANEL_FORMATS: tuple[PanelFormat, ...] = ("H10301", "W34", "H10304", "H10302", "raw")
#: OSDP card data carries at most 64 bytes; Wiegand frames here at most MAX_BITS bits
RAW_MAX_BITS = MAX_BITS


class CardDataError(EdgeError, ValueError):
    """A panel number that cannot be sent in the configured format. Never holds the number."""


@dataclass(frozen=True)
class PanelCredential:
    """The bits of one card read, first sent first. Build one with ``from_card``, ``from_number``
    or ``raw``; the gate hands it to the door (``report_card``)."""

    format: PanelFormat
    bits: tuple[int, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if self.format not in PANEL_FORMATS:
            raise CardDataError(f"unknown panel card format {self.format!r}; use one of {', '.join(PANEL_FORMATS)}")
        if not 1 <= len(self.bits) <= RAW_MAX_BITS or any(b not in (0, 1) for b in self.bits):
            raise CardDataError(f"a card read holds 1 to {RAW_MAX_BITS} bits of 0 and 1")
        if self.format != "raw" and len(self.bits) != FORMATS[self.format].bits:
            raise CardDataError(f"{self.format} frames have {FORMATS[self.format].bits} bits, not {len(self.bits)}")

    def __repr__(self) -> str:
        return f"PanelCredential({self.format}, {len(self.bits)} bits)"

    __str__ = __repr__

    @classmethod
    def from_card(cls, format: PanelFormat, card: int, facility: int | None = None) -> PanelCredential:
        """A card number (and facility code, where the format has one) with the format's parity."""
        if format == "raw":
            raise CardDataError("raw card data has no card/facility fields: use PanelCredential.raw")
        try:
            return cls(format, tuple(encode(format, card=card, facility=facility)))
        except ValueError as exc:
            fmt = FORMATS[format]
            widths = f"card {fmt.card[1]} bits" + (f", facility {fmt.facility[1]} bits" if fmt.facility else "")
            raise CardDataError(f"the panel number does not fit {format} ({widths})") from exc

    @classmethod
    def from_number(cls, format: PanelFormat, number: int) -> PanelCredential:
        """The data bits between the parity bits as one number (``wiegand_value = "number"`` on the
        input side reads such a card back as the same number)."""
        if format == "raw":
            raise CardDataError("raw card data needs a bit count: use PanelCredential.raw")
        fmt = FORMATS[format]
        width = fmt.bits - 2
        if not 0 <= number < 1 << width:
            raise CardDataError(f"{format} carries {width} data bits; the panel number does not fit")
        bits = [0, *_bits_of(number, width), 0]
        bits[0] = sum(bits[1 : fmt.even[1] + 1]) % 2
        bits[-1] = 1 - sum(bits[fmt.odd[0] : fmt.odd[1]]) % 2
        return cls(format, tuple(bits))

    @classmethod
    def raw(cls, value: int, bit_count: int) -> PanelCredential:
        """``bit_count`` bits of ``value``, most significant first, no parity."""
        if not 1 <= bit_count <= RAW_MAX_BITS:
            raise CardDataError(f"raw card data holds 1 to {RAW_MAX_BITS} bits")
        if not 0 <= value < 1 << bit_count:
            raise CardDataError(f"the panel number does not fit {bit_count} bits")
        return cls("raw", tuple(_bits_of(value, bit_count)))

    def packed(self) -> bytes:
        """The bits packed most significant first, the last byte padded with zeros (OSDP card data)."""
        return pack(self.bits)

    def number(self) -> int:
        """The data bits as one number: between the parity bits, or all of them for ``raw``."""
        data = self.bits if self.format == "raw" else self.bits[1:-1]
        return _value_of(data)


def _bits_of(value: int, width: int) -> list[int]:
    return [(value >> (width - 1 - i)) & 1 for i in range(width)]


def _value_of(bits: tuple[int, ...] | list[int]) -> int:
    value = 0
    for bit in bits:
        value = (value << 1) | bit
    return value


def pack(bits: tuple[int, ...] | list[int]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i // 8] |= 0x80 >> (i % 8)
    return bytes(out)


def unpack(data: bytes, bit_count: int) -> tuple[int, ...]:
    """The first ``bit_count`` bits of ``data`` (a panel's view of an OSDP card read)."""
    if not 0 <= bit_count <= 8 * len(data):
        raise CardDataError(f"a card read of {bit_count} bits cannot come in {len(data)} bytes")
    return tuple((data[i // 8] >> (7 - i % 8)) & 1 for i in range(bit_count))


def read_back(format: PanelFormat, data: bytes, bit_count: int) -> PanelCredential:
    """What a panel configured for ``format`` makes of a card read: parity checked for Wiegand
    formats (a ``CardDataError`` when it fails)."""
    bits = unpack(data, bit_count)
    if format != "raw":
        from edge.credentials.wiegand import WiegandError

        try:
            decode(bits, (format,))
        except WiegandError as exc:
            raise CardDataError(f"the card read is not a valid {format} frame: {exc}") from exc
    return PanelCredential(format, bits)

"""Wiegand card readers and keypads: the bit codec and the frame assembler (pure), no I/O.

On the wire a reader has two lines, D0 and D1, idle high. Each bit is a short low pulse on one of
them (D0 for 0, D1 for 1), typically 50-100 us wide and 1-2 ms apart (HID allows pulses of 20-100
us and intervals of 200 us to 20 ms). A frame ends when the lines stay quiet: 25 ms here.

Card formats, by bit length, with their parity bits (the first bit is even parity over the first
half, the last bit odd parity over the second half):

=========  ======  =============================================  =============
name       bits    layout                                         parity spans
=========  ======  =============================================  =============
H10301     26      P | facility 8 | card 16 | P                   0-12, 13-25
W34        34      P | facility 16 | card 16 | P                  0-16, 17-33
H10304     37      P | facility 16 | card 19 | P                  0-18, 18-36
H10302     37      P | card 35 | P                                0-18, 18-36
=========  ======  =============================================  =============

Keypads on the same lines send each key as its own short frame: 4 bits (the key) or 8 bits (the
complement of the key's 4 bits, then the key: ``1`` is ``1110 0001``). 0-9 are digits, 10 is ``*`` (clear) and 11 is ``#``
(enter). ``KeypadBuffer`` collects digits into a PIN.

What a card presents as its credential value is set by ``[credentials] wiegand_value``:
``number`` (the decimal value of the bits between the parity bits; what most readers in line mode
print for the same card), ``facility-card`` (facility and card number, zero-padded to the format's
widths, so the text is unambiguous) or ``card`` (the card number alone, for sites that issue
cards from one facility code).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from edge.errors import HardwareError

WiegandValue = Literal["number", "facility-card", "card"]
VALUES: tuple[WiegandValue, ...] = ("number", "facility-card", "card")

#: a frame ends after this long without a pulse
END_GAP_NS = 25_000_000
#: two pulses closer than this are noise or contact bounce, not two bits (HID's minimum interval
#: is 200 us; a pulse is at most 100 us wide)
MIN_INTERVAL_NS = 150_000
#: longer bursts are not Wiegand frames
MAX_BITS = 64

KEY_CLEAR = 10
KEY_ENTER = 11


class WiegandError(HardwareError, ValueError):
    """A frame that cannot be a credential. The message never holds the frame's bits or number."""


@dataclass(frozen=True)
class WiegandFormat:
    name: str
    bits: int
    #: (first, last) bit indices, inclusive, of the even and the odd parity spans
    even: tuple[int, int]
    odd: tuple[int, int]
    #: (first bit, length) of the facility code (None: the format has none) and the card number
    facility: tuple[int, int] | None
    card: tuple[int, int]


FORMATS: dict[str, WiegandFormat] = {
    f.name: f
    for f in (
        WiegandFormat("H10301", 26, (0, 12), (13, 25), (1, 8), (9, 16)),
        WiegandFormat("W34", 34, (0, 16), (17, 33), (1, 16), (17, 16)),
        WiegandFormat("H10304", 37, (0, 18), (18, 36), (1, 16), (17, 19)),
        WiegandFormat("H10302", 37, (0, 18), (18, 36), None, (1, 35)),
    )
}
DEFAULT_FORMATS = ("H10301", "W34")


@dataclass(frozen=True)
class CardRead:
    format: str
    facility: int | None = field(repr=False)
    card: int = field(repr=False)
    number: int = field(repr=False)

    def value(self, style: WiegandValue) -> str:
        """The credential text for ``style`` (decimal digits)."""
        fmt = FORMATS[self.format]
        if style == "number":
            return str(self.number)
        if style == "card" or fmt.facility is None:
            return str(self.card)
        return f"{self.facility:0{_digits(fmt.facility[1])}d}{self.card:0{_digits(fmt.card[1])}d}"


@dataclass(frozen=True)
class KeyPress:
    key: int  # 0-9, KEY_CLEAR or KEY_ENTER


def _digits(bits: int) -> int:
    return len(str((1 << bits) - 1))


def _field(bits: Sequence[int], first: int, length: int) -> int:
    value = 0
    for bit in bits[first : first + length]:
        value = (value << 1) | bit
    return value


def parity_ok(bits: Sequence[int], fmt: WiegandFormat) -> bool:
    even = sum(bits[fmt.even[0] : fmt.even[1] + 1]) % 2 == 0
    odd = sum(bits[fmt.odd[0] : fmt.odd[1] + 1]) % 2 == 1
    return even and odd


def decode(bits: Sequence[int], formats: Sequence[str] = DEFAULT_FORMATS) -> CardRead | KeyPress:
    """A frame's bits (first received first) as a card read or a key press.

    Formats are tried in the order given; the first whose length and parity fit wins (two formats
    of one length, such as H10304 and H10302, share their parity spans: list the site's one)."""
    if any(b not in (0, 1) for b in bits):
        raise WiegandError("a Wiegand frame holds only 0 and 1 bits")
    n = len(bits)
    if n == 4:
        return _key(_field(bits, 0, 4))
    if n == 8:
        high, low = _field(bits, 0, 4), _field(bits, 4, 4)
        if high != low ^ 0xF:
            raise WiegandError("8-bit keypad frame fails its complement check (noise on the lines?)")
        return _key(low)
    tried = [FORMATS[name] for name in formats if FORMATS[name].bits == n]
    if not tried:
        accepted = ", ".join(f"{name} ({FORMATS[name].bits} bits)" for name in formats)
        raise WiegandError(f"{n}-bit Wiegand frame matches no configured format (accepted: {accepted})")
    for fmt in tried:
        if parity_ok(bits, fmt):
            facility = _field(bits, *fmt.facility) if fmt.facility else None
            return CardRead(fmt.name, facility, _field(bits, *fmt.card), _field(bits, 1, n - 2))
    raise WiegandError(f"{n}-bit Wiegand frame fails its parity check (noise, or a reader set to another format)")


def _key(value: int) -> KeyPress:
    if value > KEY_ENTER:
        raise WiegandError(f"keypad frame carries {value}, which is no key (0-9, * = 10, # = 11)")
    return KeyPress(value)


def encode(fmt_name: str, *, card: int, facility: int | None = None) -> list[int]:
    """The bits a reader sends for a card (simulators and tests; the inverse of :func:`decode`)."""
    fmt = FORMATS[fmt_name]
    bits = [0] * fmt.bits
    fields = [(fmt.card, card)] + ([(fmt.facility, facility or 0)] if fmt.facility else [])
    for (first, length), value in fields:
        if not 0 <= value < 1 << length:
            raise ValueError(f"{fmt_name} holds {length}-bit values; the number given does not fit")
        for i in range(length):
            bits[first + i] = (value >> (length - 1 - i)) & 1
    if facility and fmt.facility is None:
        raise ValueError(f"{fmt_name} has no facility code")
    # the shared bit of overlapping spans is data, so setting the even bit first is enough
    bits[fmt.even[0]] = sum(bits[fmt.even[0] + 1 : fmt.even[1] + 1]) % 2
    bits[fmt.odd[1]] = 1 - sum(bits[fmt.odd[0] : fmt.odd[1]]) % 2
    return bits


def encode_key(key: int, *, width: Literal[4, 8] = 4) -> list[int]:
    if not 0 <= key <= KEY_ENTER:
        raise ValueError("keys are 0-9, 10 (*) and 11 (#)")
    nibble = [(key >> (3 - i)) & 1 for i in range(4)]
    return nibble if width == 4 else [1 - b for b in nibble] + nibble


class FrameAssembler:
    """Pulses (line 0 or 1, kernel timestamp in ns) in, complete frames out.

    A frame closes when ``END_GAP_NS`` passes without a pulse. A frame is spoiled, and reported as
    a ``WiegandError`` instead of bits, when both lines pulse together or closer than
    ``MIN_INTERVAL_NS`` (noise, bounce, a shorted pair), when it runs past ``MAX_BITS``, or when
    the edge source reports that events were lost."""

    def __init__(self, *, end_gap_ns: int = END_GAP_NS, min_interval_ns: int = MIN_INTERVAL_NS) -> None:
        self.end_gap_ns = end_gap_ns
        self.min_interval_ns = min_interval_ns
        self._bits: list[int] = []
        self._last_ns: int | None = None
        self._spoiled: str | None = None

    def push(self, line: int, t_ns: int) -> list[list[int] | WiegandError]:
        """Add one pulse; returns the frame this pulse closed (if the gap before it ended one)."""
        done = self.poll(t_ns)
        if self._last_ns is not None and t_ns - self._last_ns < self.min_interval_ns:
            self._spoil("two pulses closer than a bit interval (noise or bounce on D0/D1)")
        if len(self._bits) >= MAX_BITS:
            self._spoil(f"more than {MAX_BITS} bits without a pause (noise on D0/D1?)")
        self._bits.append(1 if line else 0)
        self._last_ns = t_ns
        return done

    def lost(self) -> None:
        """The edge source dropped events (its buffer overflowed): the open frame is spoiled, or,
        when none is open, the one the next pulse opens (its first bits were among those lost)."""
        self._spoil("edge events were lost (the agent fell behind the reader)")

    def _spoil(self, why: str) -> None:
        if self._spoiled is None:
            self._spoiled = why

    def deadline_ns(self) -> int | None:
        """When the open frame closes if no pulse comes (None: no frame open)."""
        return None if self._last_ns is None else self._last_ns + self.end_gap_ns

    def poll(self, now_ns: int) -> list[list[int] | WiegandError]:
        """The frame that has closed by ``now_ns``, if any."""
        if self._last_ns is None or now_ns - self._last_ns < self.end_gap_ns:
            return []
        bits, spoiled = self._bits, self._spoiled
        self._bits, self._last_ns, self._spoiled = [], None, None
        if spoiled is not None:
            return [WiegandError(f"Wiegand frame discarded: {spoiled}")]
        return [bits]


class KeypadBuffer:
    """Key presses into a PIN: digits collect, ``*`` clears, ``#`` enters, a pause abandons."""

    def __init__(self, *, max_digits: int = 12, timeout_ns: int = 10_000_000_000) -> None:
        self.max_digits = max_digits
        self.timeout_ns = timeout_ns
        self._digits: list[str] = []
        self._last_ns = 0

    def press(self, key: int, t_ns: int) -> str | None:
        """The PIN when ``#`` completes one; None otherwise."""
        if self._digits and t_ns - self._last_ns > self.timeout_ns:
            self._digits.clear()
        self._last_ns = t_ns
        if key == KEY_CLEAR:
            self._digits.clear()
        elif key == KEY_ENTER:
            pin, self._digits = "".join(self._digits), []
            return pin or None
        elif len(self._digits) < self.max_digits:
            self._digits.append(str(key))
        return None

"""Hostile CBOR for fuzzing the product's decoders (tests and ``benchmarks/fuzz_decoders.py``).

One generator, two drivers: it asks a ``Chooser`` for every decision, so hypothesis drives it in
the test suite (``data.draw``: shrinkable, reproducible) and ``random.Random`` drives it in the
benchmark (fast enough for 100 000+ inputs per decoder). It writes CBOR bytes by hand, because
the hostile forms cannot be made with an encoder: shared references (tags 28/29, cycles
included), other tags (bignums, dates, sets, embedded CBOR, unknown numbers), indefinite lengths,
non-shortest heads, declared lengths far beyond the data, deep nesting, duplicate and odd map keys,
NaN/infinite floats, undefined and simple values, stray break bytes, invalid UTF-8, truncation.

``issue17_cycle_message()`` is the 129-byte COSE_Sign1 with a shared-reference cycle that stopped
the site verifier (issue 17, finding 1), byte for byte as the issue gives it.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence
from typing import Protocol

import cbor2


def issue17_cycle_message() -> bytes:
    """The issue's payload: protected header, then an unprotected map whose value is tag 28 over
    a reference to itself (tag 29, index 0), a payload and a 64-byte "signature"."""
    p = cbor2.dumps({1: -8, 4: b"k" * 8, 3: "application/gate-edge-consent+cbor"})
    return bytes(
        b"\xd2\xd8\x1c\x84" + cbor2.dumps(p) + b"\xa1\x01\xd8\x1d\x00" + cbor2.dumps(b"p") + cbor2.dumps(b"s" * 64)
    )


class Chooser(Protocol):
    """Where the generator's decisions come from."""

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``lo..hi`` inclusive."""
        ...

    def raw(self, size: int) -> bytes:
        """``size`` arbitrary bytes."""
        ...


class RandomChooser:
    """Decisions from a seeded ``random.Random`` (the benchmark's driver)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def raw(self, size: int) -> bytes:
        return self.rng.randbytes(size)


def pick(ch: Chooser, options: Sequence[bytes]) -> bytes:
    return options[ch.integer(0, len(options) - 1)]


# --------------------------------------------------------------------------- heads


def head(major: int, arg: int, *, longer: int = 0) -> bytes:
    """An item head; ``longer`` > 0 writes it in a longer form than needed (non-canonical)."""
    sizes = [(24, 0), (0x100, 1), (0x10000, 2), (0x100000000, 4), (1 << 64, 8)]
    for position, (limit, _) in enumerate(sizes):
        if arg < limit:
            size = sizes[min(position + longer, len(sizes) - 1)][1]
            if size == 0:
                return bytes([major << 5 | arg])
            info = {1: 24, 2: 25, 4: 26, 8: 27}[size]
            return bytes([major << 5 | info]) + arg.to_bytes(size, "big")
    raise ValueError("argument too large for a CBOR head")


INTERESTING_INTS = (0, 1, 23, 24, 255, 256, 65535, 65536, 2**31 - 1, 2**32, 2**53, 2**63 - 1, 2**64 - 1)
TAGS = (0, 1, 2, 3, 4, 5, 18, 21, 24, 25, 28, 29, 30, 32, 35, 36, 37, 256, 258, 260, 261, 55799, 1 << 32)
FLOATS = (
    b"\xf9\x7e\x00",  # NaN, half
    b"\xf9\x7c\x00",  # +inf, half
    b"\xf9\xfc\x00",  # -inf, half
    b"\xfa\x7f\xc0\x00\x00",  # NaN, single
    b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # NaN, double
    b"\xfb\x7f\xf0\x00\x00\x00\x00\x00\x00",  # +inf, double
    b"\xf9\x80\x00",  # -0.0
    b"\xfb" + struct.pack(">d", 1.0),  # 1.0, not shortest
    b"\xfb" + struct.pack(">d", 1e308),
)
SIMPLE = (b"\xf4", b"\xf5", b"\xf6", b"\xf7", b"\xf0", b"\xf8\x00", b"\xf8\xff", b"\xff", b"\xfc", b"\x1c", b"\x5f")


def integer(ch: Chooser) -> bytes:
    value = INTERESTING_INTS[ch.integer(0, len(INTERESTING_INTS) - 1)] if ch.integer(0, 1) else ch.integer(0, 1000)
    major = ch.integer(0, 1)
    return head(major, value, longer=ch.integer(0, 4) if ch.integer(0, 5) == 0 else 0)


def string(ch: Chooser, major: int | None = None) -> bytes:
    major = ch.integer(2, 3) if major is None else major
    form = ch.integer(0, 7)
    if form == 0:  # declared length far beyond the data
        return head(major, INTERESTING_INTS[ch.integer(4, len(INTERESTING_INTS) - 1)]) + ch.raw(ch.integer(0, 4))
    if form == 1:  # indefinite-length string of chunks (sometimes of the wrong type)
        chunks = b"".join(
            head(major if ch.integer(0, 3) else 5 - major, 1) + ch.raw(1) for _ in range(ch.integer(0, 3))
        )
        return bytes([major << 5 | 31]) + chunks + (b"\xff" if ch.integer(0, 3) else b"")
    if form == 2 and major == 3:  # invalid UTF-8
        return head(3, 2) + b"\xc3\x28"
    size = ch.integer(0, 40)
    body = ch.raw(size) if major == 2 else bytes(ch.integer(0x20, 0x7E) for _ in range(size))
    return head(major, size, longer=1 if form == 3 else 0) + body


def item(ch: Chooser, depth: int = 0) -> bytes:
    """One hostile CBOR item (or something that only looks like one)."""
    leaf = depth >= 4
    kind = ch.integer(0, 9 if leaf else 15)
    if kind <= 2:
        return integer(ch)
    if kind <= 4:
        return string(ch)
    if kind == 5:
        return FLOATS[ch.integer(0, len(FLOATS) - 1)]
    if kind == 6:
        return SIMPLE[ch.integer(0, len(SIMPLE) - 1)]
    if kind == 7:  # a tag over an item (28/29 shared references among them)
        tag = TAGS[ch.integer(0, len(TAGS) - 1)]
        if tag == 29:
            return head(6, 29) + head(0, ch.integer(0, 3))
        return head(6, tag) + (item(ch, depth + 1) if not leaf else integer(ch))
    if kind == 8:  # a shared-reference cycle: tag 28 over a container holding a reference to it
        return b"\xd8\x1c" + pick(ch, (b"\x81", b"\xa1\x01", b"\xa1\x61a")) + b"\xd8\x1d" + head(0, ch.integer(0, 2))
    if kind == 9:  # a truncated item
        whole = string(ch, 3) if leaf else item(ch, depth + 1)
        return whole[: ch.integer(0, max(0, len(whole) - 1))]
    if kind == 10:  # deep nesting
        levels = ch.integer(1, 20000)
        return pick(ch, (b"\x81", b"\xa1\x00", b"\xd8\x18\x41", b"\x9f")) * levels + b"\x00"
    if kind == 11:  # a container declaring far more items than follow
        return head(ch.integer(4, 5), INTERESTING_INTS[ch.integer(5, len(INTERESTING_INTS) - 1)]) + item(ch, depth + 1)
    if kind == 12:  # indefinite array or map
        inner = b"".join(item(ch, depth + 1) for _ in range(ch.integer(0, 3)))
        return pick(ch, (b"\x9f", b"\xbf")) + inner + (b"\xff" if ch.integer(0, 3) else b"")
    if kind == 13:  # a map, keys of any type, duplicates likely
        count = ch.integer(0, 4)
        keys = [item(ch, depth + 1) if ch.integer(0, 2) == 0 else head(0, ch.integer(0, 2)) for _ in range(count)]
        return head(5, count) + b"".join(k + item(ch, depth + 1) for k in keys)
    # an array
    count = ch.integer(0, 5)
    return head(4, count, longer=ch.integer(0, 1)) + b"".join(item(ch, depth + 1) for _ in range(count))


def text(value: str) -> bytes:
    raw = value.encode()
    return head(3, len(raw)) + raw


def bstr(value: bytes) -> bytes:
    return head(2, len(value)) + value


def hostile_map(ch: Chooser, fields: dict[object, Callable[[], bytes]]) -> bytes:
    """A map with the expected keys and, for some of them, hostile values; sometimes keys dropped,
    repeated or joined by strangers."""
    out: list[bytes] = []
    for key, good in fields.items():
        roll = ch.integer(0, 9)
        if roll == 0:
            continue  # drop it
        encoded_key = text(key) if isinstance(key, str) else head(0 if int(str(key)) >= 0 else 1, abs(int(str(key))))
        value = item(ch, 1) if roll <= 2 else good()
        out.append(encoded_key + value)
        if roll == 3:
            out.append(encoded_key + item(ch, 1))  # a duplicate key
    if ch.integer(0, 4) == 0:
        out.append(item(ch, 1) + item(ch, 1))  # a stranger
    return head(5, len(out)) + b"".join(out)


def mutate(ch: Chooser, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, inserted, deleted or the tail cut."""
    buf = bytearray(data)
    for _ in range(ch.integer(1, 4)):
        op = ch.integer(0, 3)
        at = ch.integer(0, max(0, len(buf) - 1))
        if op == 0 and buf:
            buf[at] ^= 1 << ch.integer(0, 7)
        elif op == 1:
            buf[at:at] = ch.raw(ch.integer(1, 3))
        elif op == 2 and buf:
            del buf[at : at + ch.integer(1, 3)]
        elif op == 3:
            del buf[at:]
    return bytes(buf)

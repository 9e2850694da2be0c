"""A strict CBOR profile for bytes from outside: checked before anything is decoded. Pure.

Every message the product reads from the network or a file (COSE_Sign1 envelopes, event payloads,
consent list bodies and manifests, audit exports) uses a small subset of CBOR (RFC 8949): definite
lengths, shortest-form heads, unsigned/negative integers, byte and text strings, arrays, maps with
integer/text/byte-string keys, false/true/null and, where a profile allows them, finite floats.
``scan`` walks the item heads of ``data`` without building anything and refuses everything else
before cbor2 sees it:

- tags (shared references 28/29 build cycles, 2/3 bignums, 0/1 dates, 258 sets, ...), except the
  one top-level tag a profile names (18 for COSE_Sign1);
- indefinite lengths and non-shortest heads (alternative encodings of one value);
- declared lengths beyond the bytes present (a 2**63-byte string in a 9-byte message), more items
  than a profile allows, nesting deeper than it allows;
- duplicate map keys, and keys that are not integers, text or byte strings (``1`` and ``true`` or
  ``1.0`` would collide once decoded);
- undefined, other simple values, and NaN or infinite floats (invalid UTF-8: by ``loads``);
- trailing bytes after the item.

The walk is iterative (no recursion, whatever the nesting) and linear in ``len(data)``. ``loads``
scans, then decodes with cbor2 inside a ``try``: any failure is a ``CborProfileError``, never
another exception. A scanned value holds only ``dict``, ``list``, ``str``, ``bytes``, ``int``,
``float``, ``bool`` and ``None`` and no cycles, so re-encoding or comparing it cannot fail.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import cbor2

from edge.errors import IntegrityError


class CborProfileError(IntegrityError):
    """Bytes outside the strict CBOR profile. ``reason`` is short and never quotes the data."""

    def __init__(self, reason: str, offset: int | None = None) -> None:
        self.reason = reason
        self.offset = offset
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"CBOR rejected{where}: {reason}")


@dataclass(frozen=True)
class Profile:
    """What one kind of message may contain."""

    max_size: int
    max_depth: int
    max_items: int
    top_tag: int | None = None
    floats: bool = False


def _argument(data: bytes, pos: int, info: int, n: int) -> tuple[int, int]:
    """The head's argument and the position after it; refuses reserved, indefinite and long forms."""
    if info < 24:
        return info, pos
    if info == 24:
        if pos + 1 > n:
            raise CborProfileError("truncated head", pos)
        value = data[pos]
        if value < 24:
            raise CborProfileError("non-shortest head", pos)
        return value, pos + 1
    if info == 25:
        if pos + 2 > n:
            raise CborProfileError("truncated head", pos)
        value = int.from_bytes(data[pos : pos + 2], "big")
        if value < 0x100:
            raise CborProfileError("non-shortest head", pos)
        return value, pos + 2
    if info == 26:
        if pos + 4 > n:
            raise CborProfileError("truncated head", pos)
        value = int.from_bytes(data[pos : pos + 4], "big")
        if value < 0x10000:
            raise CborProfileError("non-shortest head", pos)
        return value, pos + 4
    if info == 27:
        if pos + 8 > n:
            raise CborProfileError("truncated head", pos)
        value = int.from_bytes(data[pos : pos + 8], "big")
        if value < 0x100000000:
            raise CborProfileError("non-shortest head", pos)
        return value, pos + 8
    if info == 31:
        raise CborProfileError("indefinite length", pos - 1)
    raise CborProfileError("reserved head value", pos - 1)


def scan(data: bytes, profile: Profile) -> None:
    """Raise ``CborProfileError`` unless ``data`` is exactly one item within ``profile``."""
    n = len(data)
    if n == 0:
        raise CborProfileError("empty")
    if n > profile.max_size:
        raise CborProfileError(f"{n} bytes, more than the {profile.max_size} allowed")
    pos = 0
    items = 0
    # one frame per open container: [items left, is a map, keys seen (maps only)]
    left: list[int] = [1]
    is_map: list[bool] = [False]
    keys: list[set[bytes] | None] = [None]
    tagged = False  # the top-level tag was seen
    while True:
        while left and left[-1] == 0:
            left.pop()
            is_map.pop()
            keys.pop()
        if not left:
            break
        depth = len(left) - 1
        key_position = is_map[-1] and left[-1] % 2 == 0
        left[-1] -= 1
        items += 1
        if items > profile.max_items:
            raise CborProfileError(f"more than {profile.max_items} items", pos)
        if pos >= n:
            raise CborProfileError("truncated", pos)
        start = pos
        initial = data[pos]
        major, info = initial >> 5, initial & 0x1F
        pos += 1
        if key_position and major not in (0, 1, 2, 3):
            raise CborProfileError("map key is not an integer, text or byte string", start)
        if major == 7:
            if info in (20, 21, 22):
                continue
            if info in (25, 26, 27) and profile.floats:
                size = {25: 2, 26: 4, 27: 8}[info]
                if pos + size > n:
                    raise CborProfileError("truncated float", start)
                value = struct.unpack({25: ">e", 26: ">f", 27: ">d"}[info], data[pos : pos + size])[0]
                if not math.isfinite(value):
                    raise CborProfileError("NaN or infinite float", start)
                pos += size
                continue
            raise CborProfileError("float, undefined or simple value not allowed here", start)
        if info < 24:
            arg = info
        else:
            arg, pos = _argument(data, pos, info, n)
        if major < 2:
            pass
        elif major in (2, 3):
            if arg > n - pos:
                raise CborProfileError("declared length runs past the end", start)
            pos += arg  # invalid UTF-8 in text is refused by the decoder (``loads``)
        elif major in (4, 5):
            count = arg * 2 if major == 5 else arg
            if count > n - pos:  # every item takes at least one byte
                raise CborProfileError("declared item count runs past the end", start)
            if depth + 1 > profile.max_depth:
                raise CborProfileError(f"nested deeper than {profile.max_depth}", start)
            if count:
                left.append(count)
                is_map.append(major == 5)
                keys.append(set() if major == 5 else None)
        else:  # major 6: a tag
            if profile.top_tag is None or arg != profile.top_tag or start != 0 or tagged:
                raise CborProfileError(f"tag {arg} not allowed", start)
            tagged = True
            left[-1] += 1  # the tagged item is this item
            items -= 1
            continue
        if key_position:
            seen = keys[-1]
            assert seen is not None
            key = bytes(data[start:pos])
            if key in seen:
                raise CborProfileError("duplicate map key", start)
            seen.add(key)
    if profile.top_tag is not None and not tagged:
        raise CborProfileError(f"not tagged {profile.top_tag}", 0)
    if pos != n:
        raise CborProfileError(f"{n - pos} bytes after the item", pos)


def loads(data: bytes, profile: Profile) -> object:
    """Scan ``data`` against ``profile``, then decode it; raises ``CborProfileError`` only."""
    raw = bytes(data)
    scan(raw, profile)
    try:
        return cbor2.loads(raw)
    except Exception as exc:  # the scan should make this unreachable; stay total if it is not
        raise CborProfileError(f"undecodable ({exc.__class__.__name__})") from None


# The profiles of the product's messages (sizes in bytes).
MiB = 1 << 20
#: A COSE_Sign1 envelope: tag 18, [bstr, {}, bstr, bstr]. Size bounds the largest signed list.
COSE = Profile(max_size=256 * MiB, max_depth=3, max_items=64, top_tag=18)
#: A COSE protected header: a flat map of small values.
HEADER = Profile(max_size=4096, max_depth=2, max_items=64)
#: A signed event payload: claims map, body map, short lists.
EVENT = Profile(max_size=64 * 1024, max_depth=4, max_items=512, floats=True)
#: A consent list body: body, entries, entry, credentials, credential (the deepest path).
CONSENT_BODY = Profile(max_size=256 * MiB, max_depth=6, max_items=64_000_000)
#: A chunked list's manifest: a map, a list of chunk digests.
MANIFEST = Profile(max_size=64 * 1024, max_depth=3, max_items=4096)
#: An audit export: the document, records, each record, its details (and their nesting).
AUDIT_EXPORT = Profile(max_size=1024 * MiB, max_depth=10, max_items=200_000_000, floats=True)
#: One audit record's details as stored.
AUDIT_DETAILS = Profile(max_size=64 * MiB, max_depth=6, max_items=4_000_000, floats=True)
